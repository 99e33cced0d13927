//! The COCO-Stuff 164k layout (171 classes: 80 things and 91 stuff):
//!
//! ```text
//! <root>/images/train2017/<stem>.jpg     <root>/annotations/train2017/<stem>_labelTrainIds.png
//! <root>/images/val2017/<stem>.jpg       <root>/annotations/val2017/<stem>_labelTrainIds.png
//! ```
//!
//! The splits are `train` (`train2017`) and `val` (`val2017`). Annotations are read in
//! either form the dataset comes in:
//! - `<stem>_labelTrainIds.png` (the converted maps): the class ids 0 … 170 as stored, 255
//!   ignored;
//! - otherwise the `stuffthingmaps` `<stem>.png` of the download: COCO's 182 ids 0 … 181
//!   (the thing ids with the 11 that no annotation uses, then the stuff ids), mapped in
//!   order to 0 … 170 with those 11 (11, 25, 28, 29, 44, 65, 67, 68, 70, 82 and 90) and
//!   255 ignored.
//!
//! A split whose annotation folder holds any `_labelTrainIds.png` is read from those alone.
//! Any other stored value is an error naming the file, the value and the pixel. Class names
//! and colours are the usual ones of COCO-Stuff 164k benchmarks.

use std::path::Path;

use super::paired::{images, pair_split, pngs, Files, Paired};
use super::{bad, DatasetInfo};
use crate::error::Result;

/// The 171 classes in id order, with their colours.
const CLASSES: [(&str, [u8; 3]); 171] = [
    ("person", [0, 192, 64]),
    ("bicycle", [0, 192, 64]),
    ("car", [0, 64, 96]),
    ("motorcycle", [128, 192, 192]),
    ("airplane", [0, 64, 64]),
    ("bus", [0, 192, 224]),
    ("train", [0, 192, 192]),
    ("truck", [128, 192, 64]),
    ("boat", [0, 192, 96]),
    ("traffic light", [128, 192, 64]),
    ("fire hydrant", [128, 32, 192]),
    ("stop sign", [0, 0, 224]),
    ("parking meter", [0, 0, 64]),
    ("bench", [0, 160, 192]),
    ("bird", [128, 0, 96]),
    ("cat", [128, 0, 192]),
    ("dog", [0, 32, 192]),
    ("horse", [128, 128, 224]),
    ("sheep", [0, 0, 192]),
    ("cow", [128, 160, 192]),
    ("elephant", [128, 128, 0]),
    ("bear", [128, 0, 32]),
    ("zebra", [128, 32, 0]),
    ("giraffe", [128, 0, 128]),
    ("backpack", [64, 128, 32]),
    ("umbrella", [0, 160, 0]),
    ("handbag", [0, 0, 0]),
    ("tie", [192, 128, 160]),
    ("suitcase", [0, 32, 0]),
    ("frisbee", [0, 128, 128]),
    ("skis", [64, 128, 160]),
    ("snowboard", [128, 160, 0]),
    ("sports ball", [0, 128, 0]),
    ("kite", [192, 128, 32]),
    ("baseball bat", [128, 96, 128]),
    ("baseball glove", [0, 0, 128]),
    ("skateboard", [64, 0, 32]),
    ("surfboard", [0, 224, 128]),
    ("tennis racket", [128, 0, 0]),
    ("bottle", [192, 0, 160]),
    ("wine glass", [0, 96, 128]),
    ("cup", [128, 128, 128]),
    ("fork", [64, 0, 160]),
    ("knife", [128, 224, 128]),
    ("spoon", [128, 128, 64]),
    ("bowl", [192, 0, 32]),
    ("banana", [128, 96, 0]),
    ("apple", [128, 0, 192]),
    ("sandwich", [0, 128, 32]),
    ("orange", [64, 224, 0]),
    ("broccoli", [0, 0, 64]),
    ("carrot", [128, 128, 160]),
    ("hot dog", [64, 96, 0]),
    ("pizza", [0, 128, 192]),
    ("donut", [0, 128, 160]),
    ("cake", [192, 224, 0]),
    ("chair", [0, 128, 64]),
    ("couch", [128, 128, 32]),
    ("potted plant", [192, 32, 128]),
    ("bed", [0, 64, 192]),
    ("dining table", [0, 0, 32]),
    ("toilet", [64, 160, 128]),
    ("tv", [128, 64, 64]),
    ("laptop", [128, 0, 160]),
    ("mouse", [64, 32, 128]),
    ("remote", [128, 192, 192]),
    ("keyboard", [0, 0, 160]),
    ("cell phone", [192, 160, 128]),
    ("microwave", [128, 192, 0]),
    ("oven", [128, 0, 96]),
    ("toaster", [192, 32, 0]),
    ("sink", [128, 64, 128]),
    ("refrigerator", [64, 128, 96]),
    ("book", [64, 160, 0]),
    ("clock", [0, 64, 0]),
    ("vase", [192, 128, 224]),
    ("scissors", [64, 32, 0]),
    ("teddy bear", [0, 192, 128]),
    ("hair drier", [64, 128, 224]),
    ("toothbrush", [192, 160, 0]),
    ("banner", [0, 192, 0]),
    ("blanket", [192, 128, 96]),
    ("branch", [192, 96, 128]),
    ("bridge", [0, 64, 128]),
    ("building-other", [64, 0, 96]),
    ("bush", [64, 224, 128]),
    ("cabinet", [128, 64, 0]),
    ("cage", [192, 0, 224]),
    ("cardboard", [64, 96, 128]),
    ("carpet", [128, 192, 128]),
    ("ceiling-other", [64, 0, 224]),
    ("ceiling-tile", [192, 224, 128]),
    ("cloth", [128, 192, 64]),
    ("clothes", [192, 0, 96]),
    ("clouds", [192, 96, 0]),
    ("counter", [128, 64, 192]),
    ("cupboard", [0, 128, 96]),
    ("curtain", [0, 224, 0]),
    ("desk-stuff", [64, 64, 64]),
    ("dirt", [128, 128, 224]),
    ("door-stuff", [0, 96, 0]),
    ("fence", [64, 192, 192]),
    ("floor-marble", [0, 128, 224]),
    ("floor-other", [128, 224, 0]),
    ("floor-stone", [64, 192, 64]),
    ("floor-tile", [128, 128, 96]),
    ("floor-wood", [128, 32, 128]),
    ("flower", [64, 0, 192]),
    ("fog", [0, 64, 96]),
    ("food-other", [0, 160, 128]),
    ("fruit", [192, 0, 64]),
    ("furniture-other", [128, 64, 224]),
    ("grass", [0, 32, 128]),
    ("gravel", [192, 128, 192]),
    ("ground-other", [0, 64, 224]),
    ("hill", [128, 160, 128]),
    ("house", [192, 128, 0]),
    ("leaves", [128, 64, 32]),
    ("light", [128, 32, 64]),
    ("mat", [192, 0, 128]),
    ("metal", [64, 192, 32]),
    ("mirror-stuff", [0, 160, 64]),
    ("moss", [64, 0, 0]),
    ("mountain", [192, 192, 160]),
    ("mud", [0, 32, 64]),
    ("napkin", [64, 128, 128]),
    ("net", [64, 192, 160]),
    ("paper", [128, 160, 64]),
    ("pavement", [64, 128, 0]),
    ("pillow", [192, 192, 32]),
    ("plant-other", [128, 96, 192]),
    ("plastic", [64, 0, 128]),
    ("platform", [64, 64, 32]),
    ("playingfield", [0, 224, 192]),
    ("railing", [192, 0, 0]),
    ("railroad", [192, 64, 160]),
    ("river", [0, 96, 192]),
    ("road", [192, 128, 128]),
    ("rock", [64, 64, 160]),
    ("roof", [128, 224, 192]),
    ("rug", [192, 128, 64]),
    ("salad", [192, 64, 32]),
    ("sand", [128, 96, 64]),
    ("sea", [192, 0, 192]),
    ("shelf", [0, 192, 32]),
    ("sky-other", [64, 224, 64]),
    ("skyscraper", [64, 0, 64]),
    ("snow", [128, 192, 160]),
    ("solid-other", [64, 96, 64]),
    ("stairs", [64, 128, 192]),
    ("stone", [0, 192, 160]),
    ("straw", [192, 224, 64]),
    ("structural-other", [64, 128, 64]),
    ("table", [128, 192, 32]),
    ("tent", [192, 32, 192]),
    ("textile-other", [64, 64, 192]),
    ("towel", [0, 64, 32]),
    ("tree", [64, 160, 192]),
    ("vegetable", [192, 64, 64]),
    ("wall-brick", [128, 64, 160]),
    ("wall-concrete", [64, 32, 192]),
    ("wall-other", [192, 192, 192]),
    ("wall-panel", [0, 64, 160]),
    ("wall-stone", [192, 160, 192]),
    ("wall-tile", [192, 192, 0]),
    ("wall-wood", [128, 64, 96]),
    ("water-other", [192, 32, 64]),
    ("waterdrops", [192, 64, 128]),
    ("window-blind", [64, 192, 96]),
    ("window-other", [64, 160, 64]),
    ("wood", [64, 64, 0]),
];

/// The 11 of COCO's 182 ids (0-based) that no COCO-Stuff annotation uses.
const UNUSED: [usize; 11] = [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90];

/// Suffix of the converted annotation maps.
const TRAIN_IDS: &str = "_labelTrainIds";

/// The stored value → class id table of the `_labelTrainIds.png` maps: 0 … 170 as stored,
/// 255 ignored, every other value → 171 (not a class: reported with its stored value).
pub fn train_ids() -> [u8; 256] {
    let mut map = [171u8; 256];
    for (v, m) in map.iter_mut().enumerate().take(171) {
        *m = v as u8;
    }
    map[255] = 255;
    map
}

/// The stored value → class id table of the raw 182-id maps: the used ids of 0 … 181 in
/// order → 0 … 170, the 11 unused ones and 255 → 255, every other value → 171.
pub fn from_182() -> [u8; 256] {
    let mut map = [171u8; 256];
    let mut next = 0u8;
    for (v, m) in map.iter_mut().enumerate().take(182) {
        if UNUSED.contains(&v) {
            *m = 255;
        } else {
            *m = next;
            next += 1;
        }
    }
    map[255] = 255;
    map
}

/// The 171-class description.
pub fn coco_stuff_info() -> DatasetInfo {
    DatasetInfo::of("coco-stuff-164k", CLASSES)
}

/// Whether `root` holds the COCO-Stuff 164k layout (`images/train2017/` and
/// `annotations/train2017/`).
pub fn is_coco_stuff(root: &Path) -> bool {
    root.join("images").join("train2017").is_dir()
        && root.join("annotations").join("train2017").is_dir()
}

/// Pairs `images/<dir>2017/*.jpg` with the annotations of `split` (`train` or `train2017`,
/// `val` or `val2017`) under `root`.
pub fn open(root: &Path, split: &str, scale: f32) -> Result<Paired> {
    let dir = match split {
        "train" | "train2017" => "train2017",
        "val" | "val2017" => "val2017",
        _ => {
            return Err(bad(
                root,
                format!("split \"{split}\" not found (the COCO-Stuff layout has train and val)"),
            ))
        }
    };
    let mut map = from_182();
    let items = pair_split(
        split,
        (
            &root.join("images").join(dir),
            &root.join("annotations").join(dir),
        ),
        "",
        images,
        |d| {
            let (converted, raw): (Files, Files) = pngs(d)?
                .into_iter()
                .partition(|(stem, _)| stem.ends_with(TRAIN_IDS));
            if converted.is_empty() {
                return Ok(raw);
            }
            map = train_ids();
            Ok(converted
                .into_iter()
                .map(|(stem, p)| (stem.trim_end_matches(TRAIN_IDS).to_string(), p))
                .collect())
        },
    )?;
    Paired::new(coco_stuff_info(), map, (root, split), scale, items)
}

#[cfg(test)]
mod tests {
    use super::{from_182, train_ids};

    #[test]
    fn the_182_ids_map_onto_171_classes_in_order() {
        let m = from_182();
        // Things: 0 … 10 keep their ids, 11 (unused) is ignored, 12 → 11, …
        assert_eq!(&m[..14], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255, 11, 12]);
        // … 89 → 79, 90 (unused) ignored, then the stuff ids 91 … 181 → 80 … 170.
        assert_eq!((m[89], m[90], m[91], m[181]), (79, 255, 80, 170));
        assert_eq!((m[182], m[254], m[255]), (171, 171, 255));
        let classes: Vec<u8> = m.iter().copied().filter(|&v| v < 171).collect();
        assert_eq!(
            classes,
            (0..171).collect::<Vec<u8>>(),
            "each class once, in order"
        );
        let t = train_ids();
        assert_eq!((t[0], t[170], t[171], t[255]), (0, 170, 171, 255));
    }
}
