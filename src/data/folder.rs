//! The folder layout (docs/training.md), wgseg's native format:
//!
//! ```text
//! <root>/dataset.toml
//! <root>/<split>/images/<stem>.{png,jpg,jpeg}
//! <root>/<split>/labels/<stem>.png
//! ```
//!
//! Images and labels are paired by file stem and sorted by stem (byte order). Files with
//! other extensions and hidden files (`.name`) are ignored. Opening checks the pairing
//! (an image without a label or a label without an image is an error naming it); loading
//! checks decodability, sizes and ids ([`super::validate`] loads everything once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::image_io::load_pair;
use super::{bad, io_err, CacheKey, Dataset, DatasetInfo, Sample};
use crate::error::Result;

const IMAGE_EXT: [&str; 3] = ["png", "jpg", "jpeg"];

/// An image/label pair.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub stem: String,
    pub image: PathBuf,
    pub label: PathBuf,
}

/// A split of a folder-layout dataset.
#[derive(Debug)]
pub struct Folder {
    info: DatasetInfo,
    root: PathBuf,
    split: String,
    scale: f32,
    items: Vec<Item>,
    fingerprint: u64,
}

/// Lists the non-hidden files of `dir` whose extension (lower-cased) is in `exts`, as
/// `stem → path`; two files with the same stem are an error.
pub(crate) fn list(dir: &Path, exts: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if stem.starts_with('.') || !exts.contains(&ext.to_ascii_lowercase().as_str()) {
            continue;
        }
        if !path.is_file() {
            continue;
        }
        if let Some(prev) = out.insert(stem.to_string(), path.clone()) {
            return Err(bad(
                &path,
                format!(
                    "two files with the stem \"{stem}\" (the other is {})",
                    prev.display()
                ),
            ));
        }
    }
    Ok(out)
}

/// Pairs images and labels by stem; unpaired files are errors naming them.
pub(crate) fn pair(
    images: BTreeMap<String, PathBuf>,
    mut labels: BTreeMap<String, PathBuf>,
    label_dir: &Path,
    image_dir: &Path,
) -> Result<Vec<Item>> {
    let mut items = Vec::with_capacity(images.len());
    for (stem, image) in images {
        let Some(label) = labels.remove(&stem) else {
            return Err(bad(
                &image,
                format!(
                    "image without a label (no label for \"{stem}\" in {})",
                    label_dir.display()
                ),
            ));
        };
        items.push(Item { stem, image, label });
    }
    if let Some((stem, label)) = labels.into_iter().next() {
        return Err(bad(
            &label,
            format!(
                "label without an image (no image for \"{stem}\" in {})",
                image_dir.display()
            ),
        ));
    }
    Ok(items)
}

/// FNV-1a 64: a hash that stays the same across Rust versions (for on-disk caches).
pub(crate) struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    /// Hashes a file's name, size and modification time.
    pub fn file(&mut self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.bytes(path.as_os_str().as_encoded_bytes());
        self.u64(meta.len());
        self.u64(mtime);
        Ok(())
    }
}

/// Fingerprint of a split: class list, scale, and every file's name, size and mtime.
pub(crate) fn fingerprint(info: &DatasetInfo, scale: f32, items: &[Item]) -> Result<u64> {
    let mut h = Fnv::new();
    h.bytes(format!("{info:?}").as_bytes());
    h.u64(scale.to_bits() as u64);
    for it in items {
        h.file(&it.image)?;
        h.file(&it.label)?;
    }
    Ok(h.0)
}

impl Folder {
    /// Opens `<root>/<split>`, reading `<root>/dataset.toml` and pairing the files.
    pub fn open(root: &Path, split: &str, scale: f32) -> Result<Folder> {
        let info = DatasetInfo::load(&root.join("dataset.toml"))?;
        let dir = root.join(split);
        if !dir.is_dir() {
            return Err(bad(
                &dir,
                format!("split \"{split}\" not found (expected {split}/images and {split}/labels)"),
            ));
        }
        let (image_dir, label_dir) = (dir.join("images"), dir.join("labels"));
        for d in [&image_dir, &label_dir] {
            if !d.is_dir() {
                return Err(bad(d, "missing directory"));
            }
        }
        let images = list(&image_dir, &IMAGE_EXT)?;
        let labels = list(&label_dir, &["png"])?;
        let items = pair(images, labels, &label_dir, &image_dir)?;
        if items.is_empty() {
            return Err(bad(
                &image_dir,
                format!("split \"{split}\" is empty (no .png/.jpg/.jpeg images)"),
            ));
        }
        let fingerprint = fingerprint(&info, scale, &items)?;
        Ok(Folder {
            info,
            root: root.to_path_buf(),
            split: split.to_string(),
            scale,
            items,
            fingerprint,
        })
    }

    /// The image and label paths of sample `i`.
    pub fn paths(&self, i: usize) -> Option<(&Path, &Path)> {
        self.items
            .get(i)
            .map(|it| (it.image.as_path(), it.label.as_path()))
    }
}

impl Dataset for Folder {
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
                &self.root.join(&self.split),
                format!("sample {i} out of range ({} samples)", self.items.len()),
            )
        })?;
        load_pair(&it.image, &it.label, &self.info, None, self.scale)
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
