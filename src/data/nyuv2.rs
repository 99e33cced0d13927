//! NYU Depth V2 (the 1 449 labelled frames) exported as PNG pairs, with the 40-class labels
//! of Gupta et al. or the 13-class labels of Couprie et al.:
//!
//! ```text
//! <root>/<split>/image/<stem>.png      RGB
//! <root>/<split>/label40/<stem>.png    0 = unlabelled, 1 … 40 the classes
//! <root>/<split>/label13/<stem>.png    0 = unlabelled, 1 … 13 the classes
//! ```
//!
//! The splits are `train` and `test` (the dataset's 795 / 654); `val` reads `test`, since
//! NYUv2 has no validation split of its own and its benchmarks validate on the test images.
//! A split with `label40/` is read with the 40 classes, else one with `label13/` with the
//! 13. Stored 0 becomes the ignore index and the classes shift down by one; a value above
//! the class count is an error naming the file, the value and the pixel. docs/training.md
//! shows how to export the dataset's `.mat` files into this layout. Class names are the
//! papers'; they give no colours, so the classes take the PASCAL VOC colour map's.

use std::path::Path;

use super::paired::{images, pair_split, pngs, Paired};
use super::{bad, DatasetInfo};
use crate::error::Result;

/// The 40 classes of Gupta, Arbeláez and Malik (CVPR 2013), in id order.
const CLASSES_40: [&str; 40] = [
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor mat",
    "clothes",
    "ceiling",
    "books",
    "refrigerator",
    "television",
    "paper",
    "towel",
    "shower curtain",
    "box",
    "whiteboard",
    "person",
    "night stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
    "otherstructure",
    "otherfurniture",
    "otherprop",
];

/// The 13 classes of Couprie et al. (ICLR 2013), in id order.
const CLASSES_13: [&str; 13] = [
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
];

/// Colour `i` of the PASCAL VOC colour map (the bits of `i + 1` spread over the channels'
/// high bits; `i + 1` so that no class is black).
fn voc_color(i: usize) -> [u8; 3] {
    let (mut c, mut rgb) = (i + 1, [0u8; 3]);
    for shift in (0..8).rev() {
        for (ch, v) in rgb.iter_mut().enumerate() {
            *v |= (((c >> ch) & 1) as u8) << shift;
        }
        c >>= 3;
    }
    rgb
}

/// The description of the 40- or 13-class labels.
pub fn nyuv2_info(classes: usize) -> DatasetInfo {
    let names: &[&str] = if classes == 13 {
        &CLASSES_13
    } else {
        &CLASSES_40
    };
    DatasetInfo::of(
        &format!("nyuv2-{}", names.len()),
        names.iter().enumerate().map(|(i, n)| (*n, voc_color(i))),
    )
}

/// The stored value → class id table for `classes` classes: 0 → 255 (ignored), 1 … classes →
/// 0 … classes − 1, every larger value → `classes` (not a class: reported with its value).
fn reduce_zero_label(classes: usize) -> [u8; 256] {
    let mut map = [classes as u8; 256];
    map[0] = 255;
    for (v, m) in map.iter_mut().enumerate().skip(1).take(classes) {
        *m = (v - 1) as u8;
    }
    map
}

/// Whether `root` holds the NYUv2 PNG layout (`train/image/` and `train/label40/` or
/// `train/label13/`).
pub fn is_nyuv2(root: &Path) -> bool {
    let train = root.join("train");
    train.join("image").is_dir()
        && (train.join("label40").is_dir() || train.join("label13").is_dir())
}

/// Pairs `<split>/image/*.png` with `<split>/label40/*.png` (else `label13/`) under `root`
/// (`val` reads `test`).
pub fn open(root: &Path, split: &str, scale: f32) -> Result<Paired> {
    let dir = match split {
        "train" => "train",
        "test" | "val" => "test",
        _ => {
            return Err(bad(
                root,
                format!(
                "split \"{split}\" not found (the NYUv2 layout has train and test; val reads test)"
            ),
            ))
        }
    };
    let base = root.join(dir);
    let image_dir = base.join("image");
    let (label_dir, classes) = if base.join("label40").is_dir() {
        (base.join("label40"), 40)
    } else {
        (base.join("label13"), 13)
    };
    let hint = format!(" (it needs {dir}/image/ and {dir}/label40/ or {dir}/label13/)");
    let items = pair_split(split, (&image_dir, &label_dir), &hint, images, pngs)?;
    Paired::new(
        nyuv2_info(classes),
        reduce_zero_label(classes),
        (root, split),
        scale,
        items,
    )
}

#[cfg(test)]
mod tests {
    use super::voc_color;

    #[test]
    fn voc_colours() {
        // The PASCAL VOC colour map from index 1: aeroplane, bicycle, bird, boat, bottle.
        let c: Vec<[u8; 3]> = (0..5).map(voc_color).collect();
        assert_eq!(
            c,
            [
                [128, 0, 0],
                [0, 128, 0],
                [128, 128, 0],
                [0, 0, 128],
                [128, 0, 128]
            ]
        );
        assert_eq!(voc_color(14), [192, 128, 128], "person, index 15");
    }
}
