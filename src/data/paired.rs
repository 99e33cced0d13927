//! A split of image/label file pairs whose stored label values go through a 256-entry table
//! to class ids: the layouts other than the folder one (Cityscapes, ADE20K, COCO-Stuff,
//! NYUv2, Oxford-IIIT Pet) list and pair their files (`pair_split`), then hand them to
//! [`Paired`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::folder::{fingerprint, list, pair, Item};
use super::image_io::load_pair;
use super::{bad, CacheKey, Dataset, DatasetInfo, Sample};
use crate::error::Result;

/// Files by stem, as a layout lists a folder.
pub(crate) type Files = BTreeMap<String, PathBuf>;

/// The image files of a folder: `.png`, `.jpg` and `.jpeg`, by stem.
pub(crate) fn images(dir: &Path) -> Result<Files> {
    list(dir, &["png", "jpg", "jpeg"])
}

/// The `.png` files of a folder, by stem.
pub(crate) fn pngs(dir: &Path) -> Result<Files> {
    list(dir, &["png"])
}

/// Pairs the images that `images` lists from `image_dir` with the labels that `labels`
/// lists from `label_dir`, by stem, for `split`: both folders must exist (else an error
/// naming the missing one, followed by `hint`), every image needs its label and every label
/// its image, and the split may not be empty.
pub(crate) fn pair_split(
    split: &str,
    (image_dir, label_dir): (&Path, &Path),
    hint: &str,
    images: impl FnOnce(&Path) -> Result<Files>,
    labels: impl FnOnce(&Path) -> Result<Files>,
) -> Result<Vec<Item>> {
    for d in [image_dir, label_dir] {
        if !d.is_dir() {
            return Err(bad(d, format!("split \"{split}\" not found{hint}")));
        }
    }
    let items = pair(images(image_dir)?, labels(label_dir)?, label_dir, image_dir)?;
    if items.is_empty() {
        return Err(bad(image_dir, format!("split \"{split}\" is empty{hint}")));
    }
    Ok(items)
}

/// A split of image/label pairs with a label-value table (see the module docs).
#[derive(Debug)]
pub struct Paired {
    info: DatasetInfo,
    map: [u8; 256],
    root: PathBuf,
    split: String,
    scale: f32,
    items: Vec<Item>,
    fingerprint: u64,
}

impl Paired {
    /// The split `split` of the dataset at `root`: `items` (named by their stems), label
    /// values mapped by `map`, samples resized by `scale` at load time.
    pub(crate) fn new(
        info: DatasetInfo,
        map: [u8; 256],
        (root, split): (&Path, &str),
        scale: f32,
        items: Vec<Item>,
    ) -> Result<Paired> {
        let fingerprint = fingerprint(&info, scale, &items)?;
        Ok(Paired {
            info,
            map,
            root: root.to_path_buf(),
            split: split.into(),
            scale,
            items,
            fingerprint,
        })
    }
}

impl Dataset for Paired {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn name(&self, i: usize) -> String {
        self.items
            .get(i)
            .map(|it| it.stem.clone())
            .unwrap_or_default()
    }
    fn load(&self, i: usize) -> Result<Sample> {
        let it = self.items.get(i).ok_or_else(|| {
            bad(
                &self.root,
                format!("sample {i} out of range ({} samples)", self.items.len()),
            )
        })?;
        load_pair(
            &it.image,
            &it.label,
            &self.info,
            Some(&self.map),
            self.scale,
        )
    }
    fn cache_key(&self) -> Option<CacheKey> {
        Some(CacheKey {
            root: self.root.clone(),
            split: self.split.clone(),
            scale: self.scale,
            fingerprint: self.fingerprint,
        })
    }
}
