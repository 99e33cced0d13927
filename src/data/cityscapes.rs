//! The Cityscapes layout:
//!
//! ```text
//! <root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
//! <root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png
//! ```
//!
//! Label ids are mapped to the 19 standard train ids with the table of `cityscapesScripts`
//! (`labels.py`); every other id (void classes, licence plate, …) becomes 255. Class names
//! and colours are the standard ones. Samples are sorted by `<city>/<stem>` and named by
//! `<stem>` (e.g. `aachen_000000_000019`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::paired::{pair_split, Paired};
use super::{io_err, DatasetInfo};
use crate::error::Result;

const IMAGE_SUFFIX: &str = "_leftImg8bit.png";
const LABEL_SUFFIX: &str = "_gtFine_labelIds.png";

/// `(labelId, name, colour)` of the 19 train ids, in train-id order.
const TRAIN_CLASSES: [(u8, &str, [u8; 3]); 19] = [
    (7, "road", [128, 64, 128]),
    (8, "sidewalk", [244, 35, 232]),
    (11, "building", [70, 70, 70]),
    (12, "wall", [102, 102, 156]),
    (13, "fence", [190, 153, 153]),
    (17, "pole", [153, 153, 153]),
    (19, "traffic light", [250, 170, 30]),
    (20, "traffic sign", [220, 220, 0]),
    (21, "vegetation", [107, 142, 35]),
    (22, "terrain", [152, 251, 152]),
    (23, "sky", [70, 130, 180]),
    (24, "person", [220, 20, 60]),
    (25, "rider", [255, 0, 0]),
    (26, "car", [0, 0, 142]),
    (27, "truck", [0, 0, 70]),
    (28, "bus", [0, 60, 100]),
    (31, "train", [0, 80, 100]),
    (32, "motorcycle", [0, 0, 230]),
    (33, "bicycle", [119, 11, 32]),
];

/// The labelId → trainId table (255 for ids that are not evaluated).
pub fn label_to_train_id() -> [u8; 256] {
    let mut map = [255u8; 256];
    for (train, (label, _, _)) in TRAIN_CLASSES.iter().enumerate() {
        map[*label as usize] = train as u8;
    }
    map
}

/// The standard 19-class description.
pub fn cityscapes_info() -> DatasetInfo {
    DatasetInfo::of(
        "cityscapes",
        TRAIN_CLASSES.iter().map(|(_, name, color)| (*name, *color)),
    )
}

/// Lists `<dir>/<city>/*<suffix>` as `"<city>/<stem>" → path`.
fn list(dir: &Path, suffix: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut cities: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = e.map_err(io_err(dir))?.path();
        if p.is_dir() {
            cities.push(p);
        }
    }
    for city in cities {
        let cname = city
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        for e in std::fs::read_dir(&city).map_err(io_err(&city))? {
            let p = e.map_err(io_err(&city))?.path();
            let Some(stem) = p
                .file_name()
                .and_then(|s| s.to_str())
                .and_then(|n| n.strip_suffix(suffix))
            else {
                continue;
            };
            out.insert(format!("{cname}/{stem}"), p.clone());
        }
    }
    Ok(out)
}

/// Opens `leftImg8bit/<split>` and `gtFine/<split>` under `root` and pairs the files.
pub fn open(root: &Path, split: &str, scale: f32) -> Result<Paired> {
    let mut items = pair_split(
        split,
        (
            &root.join("leftImg8bit").join(split),
            &root.join("gtFine").join(split),
        ),
        &format!(" (no <city>/*{IMAGE_SUFFIX})"),
        |d| list(d, IMAGE_SUFFIX),
        |d| list(d, LABEL_SUFFIX),
    )?;
    for it in items.iter_mut() {
        if let Some((_, stem)) = it.stem.split_once('/') {
            it.stem = stem.to_string();
        }
    }
    Paired::new(
        cityscapes_info(),
        label_to_train_id(),
        (root, split),
        scale,
        items,
    )
}
