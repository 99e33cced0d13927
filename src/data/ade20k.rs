//! The ADE20K scene-parsing layout (`ADEChallengeData2016`, the 150-class benchmark):
//!
//! ```text
//! <root>/images/training/<stem>.jpg         <root>/annotations/training/<stem>.png
//! <root>/images/validation/<stem>.jpg       <root>/annotations/validation/<stem>.png
//! ```
//!
//! `<root>` is the `ADEChallengeData2016` directory or one that holds it. The splits are
//! `train` (`training`) and `val` (`validation`). Annotations store 0 for "other" and the
//! classes as 1 … 150; as every ADE20K benchmark does (`reduce_zero_label`), 0 becomes the
//! ignore index 255 and the classes shift down by one to 0 … 149. A stored value above 150
//! is an error naming the file, the value and the pixel. Class names and colours are the
//! benchmark's (its `objectInfo150` names, first synonym, and the palette of its colour
//! maps).

use std::path::{Path, PathBuf};

use super::paired::{images, pair_split, pngs, Paired};
use super::{bad, DatasetInfo};
use crate::error::Result;

/// The 150 classes in id order (stored value − 1), with their colours.
const CLASSES: [(&str, [u8; 3]); 150] = [
    ("wall", [120, 120, 120]),
    ("building", [180, 120, 120]),
    ("sky", [6, 230, 230]),
    ("floor", [80, 50, 50]),
    ("tree", [4, 200, 3]),
    ("ceiling", [120, 120, 80]),
    ("road", [140, 140, 140]),
    ("bed", [204, 5, 255]),
    ("windowpane", [230, 230, 230]),
    ("grass", [4, 250, 7]),
    ("cabinet", [224, 5, 255]),
    ("sidewalk", [235, 255, 7]),
    ("person", [150, 5, 61]),
    ("earth", [120, 120, 70]),
    ("door", [8, 255, 51]),
    ("table", [255, 6, 82]),
    ("mountain", [143, 255, 140]),
    ("plant", [204, 255, 4]),
    ("curtain", [255, 51, 7]),
    ("chair", [204, 70, 3]),
    ("car", [0, 102, 200]),
    ("water", [61, 230, 250]),
    ("painting", [255, 6, 51]),
    ("sofa", [11, 102, 255]),
    ("shelf", [255, 7, 71]),
    ("house", [255, 9, 224]),
    ("sea", [9, 7, 230]),
    ("mirror", [220, 220, 220]),
    ("rug", [255, 9, 92]),
    ("field", [112, 9, 255]),
    ("armchair", [8, 255, 214]),
    ("seat", [7, 255, 224]),
    ("fence", [255, 184, 6]),
    ("desk", [10, 255, 71]),
    ("rock", [255, 41, 10]),
    ("wardrobe", [7, 255, 255]),
    ("lamp", [224, 255, 8]),
    ("bathtub", [102, 8, 255]),
    ("railing", [255, 61, 6]),
    ("cushion", [255, 194, 7]),
    ("base", [255, 122, 8]),
    ("box", [0, 255, 20]),
    ("column", [255, 8, 41]),
    ("signboard", [255, 5, 153]),
    ("chest of drawers", [6, 51, 255]),
    ("counter", [235, 12, 255]),
    ("sand", [160, 150, 20]),
    ("sink", [0, 163, 255]),
    ("skyscraper", [140, 140, 140]),
    ("fireplace", [250, 10, 15]),
    ("refrigerator", [20, 255, 0]),
    ("grandstand", [31, 255, 0]),
    ("path", [255, 31, 0]),
    ("stairs", [255, 224, 0]),
    ("runway", [153, 255, 0]),
    ("case", [0, 0, 255]),
    ("pool table", [255, 71, 0]),
    ("pillow", [0, 235, 255]),
    ("screen door", [0, 173, 255]),
    ("stairway", [31, 0, 255]),
    ("river", [11, 200, 200]),
    ("bridge", [255, 82, 0]),
    ("bookcase", [0, 255, 245]),
    ("blind", [0, 61, 255]),
    ("coffee table", [0, 255, 112]),
    ("toilet", [0, 255, 133]),
    ("flower", [255, 0, 0]),
    ("book", [255, 163, 0]),
    ("hill", [255, 102, 0]),
    ("bench", [194, 255, 0]),
    ("countertop", [0, 143, 255]),
    ("stove", [51, 255, 0]),
    ("palm", [0, 82, 255]),
    ("kitchen island", [0, 255, 41]),
    ("computer", [0, 255, 173]),
    ("swivel chair", [10, 0, 255]),
    ("boat", [173, 255, 0]),
    ("bar", [0, 255, 153]),
    ("arcade machine", [255, 92, 0]),
    ("hovel", [255, 0, 255]),
    ("bus", [255, 0, 245]),
    ("towel", [255, 0, 102]),
    ("light", [255, 173, 0]),
    ("truck", [255, 0, 20]),
    ("tower", [255, 184, 184]),
    ("chandelier", [0, 31, 255]),
    ("awning", [0, 255, 61]),
    ("streetlight", [0, 71, 255]),
    ("booth", [255, 0, 204]),
    ("television receiver", [0, 255, 194]),
    ("airplane", [0, 255, 82]),
    ("dirt track", [0, 10, 255]),
    ("apparel", [0, 112, 255]),
    ("pole", [51, 0, 255]),
    ("land", [0, 194, 255]),
    ("bannister", [0, 122, 255]),
    ("escalator", [0, 255, 163]),
    ("ottoman", [255, 153, 0]),
    ("bottle", [0, 255, 10]),
    ("buffet", [255, 112, 0]),
    ("poster", [143, 255, 0]),
    ("stage", [82, 0, 255]),
    ("van", [163, 255, 0]),
    ("ship", [255, 235, 0]),
    ("fountain", [8, 184, 170]),
    ("conveyer belt", [133, 0, 255]),
    ("canopy", [0, 255, 92]),
    ("washer", [184, 0, 255]),
    ("plaything", [255, 0, 31]),
    ("swimming pool", [0, 184, 255]),
    ("stool", [0, 214, 255]),
    ("barrel", [255, 0, 112]),
    ("basket", [92, 255, 0]),
    ("waterfall", [0, 224, 255]),
    ("tent", [112, 224, 255]),
    ("bag", [70, 184, 160]),
    ("minibike", [163, 0, 255]),
    ("cradle", [153, 0, 255]),
    ("oven", [71, 255, 0]),
    ("ball", [255, 0, 163]),
    ("food", [255, 204, 0]),
    ("step", [255, 0, 143]),
    ("tank", [0, 255, 235]),
    ("trade name", [133, 255, 0]),
    ("microwave", [255, 0, 235]),
    ("pot", [245, 0, 255]),
    ("animal", [255, 0, 122]),
    ("bicycle", [255, 245, 0]),
    ("lake", [10, 190, 212]),
    ("dishwasher", [214, 255, 0]),
    ("screen", [0, 204, 255]),
    ("blanket", [20, 0, 255]),
    ("sculpture", [255, 255, 0]),
    ("hood", [0, 153, 255]),
    ("sconce", [0, 41, 255]),
    ("vase", [0, 255, 204]),
    ("traffic light", [41, 0, 255]),
    ("tray", [41, 255, 0]),
    ("ashcan", [173, 0, 255]),
    ("fan", [0, 245, 255]),
    ("pier", [71, 0, 255]),
    ("crt screen", [122, 0, 255]),
    ("plate", [0, 255, 184]),
    ("monitor", [0, 92, 255]),
    ("bulletin board", [184, 255, 0]),
    ("shower", [0, 133, 255]),
    ("radiator", [255, 214, 0]),
    ("glass", [25, 194, 194]),
    ("clock", [102, 255, 0]),
    ("flag", [92, 0, 255]),
];

/// The stored value → class id table: 0 → 255 (ignored), 1 … 150 → 0 … 149, and every
/// larger value → 150, which is not a class (so loading reports it with its stored value).
pub fn reduce_zero_label() -> [u8; 256] {
    let mut map = [150u8; 256];
    map[0] = 255;
    for (v, m) in map.iter_mut().enumerate().skip(1).take(150) {
        *m = (v - 1) as u8;
    }
    map
}

/// The 150-class description.
pub fn ade20k_info() -> DatasetInfo {
    DatasetInfo::of("ade20k", CLASSES)
}

/// The ADE20K root under `root`: `root` itself when it has `images/training` and
/// `annotations/training`, else `root/ADEChallengeData2016` when that has them.
pub fn find(root: &Path) -> Option<PathBuf> {
    let has = |r: &Path| {
        r.join("images").join("training").is_dir()
            && r.join("annotations").join("training").is_dir()
    };
    if has(root) {
        return Some(root.to_path_buf());
    }
    let inner = root.join("ADEChallengeData2016");
    has(&inner).then_some(inner)
}

/// Pairs `images/<dir>/*.jpg` with `annotations/<dir>/*.png` for `split` (`train` or
/// `training`: `training`; `val` or `validation`: `validation`) under the ADE20K root
/// `root`.
pub fn open(root: &Path, split: &str, scale: f32) -> Result<Paired> {
    let dir = match split {
        "train" | "training" => "training",
        "val" | "validation" => "validation",
        _ => {
            return Err(bad(
                root,
                format!("split \"{split}\" not found (the ADE20K layout has train and val)"),
            ))
        }
    };
    let items = pair_split(
        split,
        (
            &root.join("images").join(dir),
            &root.join("annotations").join(dir),
        ),
        "",
        images,
        pngs,
    )?;
    Paired::new(
        ade20k_info(),
        reduce_zero_label(),
        (root, split),
        scale,
        items,
    )
}
