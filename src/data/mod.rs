//! Host-side data pipeline of the trainer: datasets, image I/O, augmentation, the batch
//! loader, class statistics and the palette helpers of `wgseg infer`. No GPU code.
//!
//! # Sources ([`open`])
//!
//! - `None`: the built-in procedurally generated street scenes ([`builtin`]), the default of
//!   `wgseg train`: splits `train` (64 images) and `val` (16 images), 96×128 pixels at scale 1.
//! - A directory with `dataset.toml`: the **folder layout** ([`folder`]):
//!
//!   ```text
//!   <root>/dataset.toml            name, ignore_index (default 255), [[classes]] name + color,
//!                                  optional tail = [ids] / head = [ids]
//!   <root>/<split>/images/*.{png,jpg,jpeg}
//!   <root>/<split>/labels/*.png    8-bit single-channel class ids (or a paletted PNG whose
//!                                  palette indices are the ids), same file stem as the image
//!   ```
//! - A directory with `leftImg8bit/` and `gtFine/`: the **Cityscapes layout** ([`cityscapes`]),
//!   label ids mapped to the 19 train ids (everything else → 255).
//! - A directory with `images/training/` and `annotations/training/` (or one holding such an
//!   `ADEChallengeData2016/`): the **ADE20K layout** ([`ade20k`]), 150 classes, stored 0 →
//!   ignored and the classes shifted down by one (`reduce_zero_label`); splits `train` and
//!   `val`.
//! - A directory with `images/train2017/` and `annotations/train2017/`: the **COCO-Stuff
//!   164k layout** ([`coco_stuff`]), 171 classes, from `_labelTrainIds.png` maps or the raw
//!   182-id maps; splits `train` and `val`.
//! - A directory with `train/image/` and `train/label40/` or `train/label13/`: **NYUv2**
//!   exported as PNG pairs ([`nyuv2`]), 40 or 13 classes, stored 0 → ignored; splits
//!   `train` and `test` (`val` reads `test`).
//! - A directory with `images/` and `annotations/trimaps/`: the **Oxford-IIIT Pet layout**
//!   ([`pet`]), trimap values 1, 2, 3 → classes `pet`, `background`, `border`; splits
//!   `train`, `val`, `test` cut 0.8 / 0.1 / 0.1 by a fixed seeded shuffle.
//!
//! # Samples
//!
//! A [`Sample`] is an 8-bit RGB image in HWC order and its label map (`H×W` class ids, the
//! dataset's ignore index, 255 by default, for unlabelled pixels). The `scale` given to
//! [`open`] is applied once at load time: the new size is `max(1, round(h·scale)) ×
//! max(1, round(w·scale))`, the image resized bilinearly (`align_corners = false`; at
//! scale 0.5 this is exactly a 2×2 average) and the label with nearest neighbour
//! (`src = floor((dst + 0.5)·src_size/dst_size)`).
//!
//! # Errors
//!
//! Every problem with the data is an [`Error::Data`] (or [`Error::Io`]) naming the file:
//! an image without a label, a label without an image, an undecodable image, a label of
//! another size than its image, an id ≥ C other than the ignore index, an RGB label, a
//! missing or empty split, an unknown key in `dataset.toml`. [`validate`] decodes every
//! sample once so that bad data is found before training starts.
//!
//! # Training input
//!
//! [`Augment`] (random scale, crop, flip, photometric jitter, seeded per sample from
//! `(seed, epoch, index)`), [`normalize`] (ImageNet mean/std, `[3, H, W]` f32), and the
//! [`Loader`], which shuffles each epoch from `(seed, epoch)`, decodes on background threads
//! and delivers [`Batch`]es in order; its [`LoaderState`] resumes a run on the same data
//! order. [`MemoryBank`] (docs/longtail.md, [`bank`]) stores tail-class pixels and pastes them into
//! images that lack them, applied in batch order on a stage thread of the loader
//! ([`Loader::with_bank`]); each batch carries the bank's [`BankState`] for resuming.
//! [`ClassStats`] counts training-set pixels per class (cached beside the data) and
//! splits the classes into head / middle / tail [`Groups`] (docs/training.md).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub mod ade20k;
pub mod augment;
pub mod bank;
pub mod builtin;
pub mod cityscapes;
pub mod coco_stuff;
pub mod folder;
pub mod image_io;
pub mod loader;
pub mod nyuv2;
mod paint;
pub mod paired;
pub mod pet;
pub mod stats;

pub use augment::{normalize, Augment, MEAN, STD};
pub use bank::{BankConfig, BankFlags, BankLog, BankState, BankStats, MemoryBank};
pub use image_io::{colorize, load_image, overlay, save_png_gray, save_png_rgb};
pub use loader::{Batch, Loader, LoaderState, Shard, Subset};
pub use stats::{ClassStats, Groups};

/// One class of a dataset: its name and the colour used to draw it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassInfo {
    pub name: String,
    pub color: [u8; 3],
}

fn default_ignore() -> u8 {
    255
}

/// The description of a dataset, read from `<root>/dataset.toml` for the folder layout.
///
/// ```toml
/// name = "camvid"
/// ignore_index = 255        # optional, default 255
/// tail = [2, 6, 10]         # optional: explicit tail group (class ids)
/// head = [0, 1, 3]          # optional: explicit head group
/// [[classes]]
/// name = "sky"
/// color = [128, 128, 128]
/// ```
///
/// Unknown keys are errors (a misspelt `ignore_idx` would otherwise silently default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    pub name: String,
    pub classes: Vec<ClassInfo>,
    #[serde(default = "default_ignore")]
    pub ignore_index: u8,
    #[serde(default)]
    pub tail: Option<Vec<usize>>,
    #[serde(default)]
    pub head: Option<Vec<usize>>,
}

impl DatasetInfo {
    /// A dataset `name` with the given classes (names and colours, in id order), the
    /// ignore index 255 and no explicit head / tail groups.
    pub fn of<'a>(name: &str, classes: impl IntoIterator<Item = (&'a str, [u8; 3])>) -> Self {
        DatasetInfo {
            name: name.into(),
            classes: classes
                .into_iter()
                .map(|(name, color)| ClassInfo {
                    name: name.into(),
                    color,
                })
                .collect(),
            ignore_index: 255,
            tail: None,
            head: None,
        }
    }

    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Parses and checks a `dataset.toml` text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<DatasetInfo> {
        let info: DatasetInfo = toml::from_str(text).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        info.check(path)?;
        Ok(info)
    }

    /// Reads and checks `<root>/dataset.toml`.
    pub fn load(path: &Path) -> Result<DatasetInfo> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks the invariants: 1..=255 classes, ignore index not a class id, group ids in
    /// range and head/tail disjoint.
    pub fn check(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Error::Data {
            path: path.to_path_buf(),
            msg,
        };
        let c = self.classes.len();
        if c == 0 {
            return Err(bad(
                "no [[classes]]: a dataset needs at least one class".into()
            ));
        }
        if c > 255 {
            return Err(bad(format!("{c} classes; at most 255 fit in 8-bit labels")));
        }
        if (self.ignore_index as usize) < c {
            return Err(bad(format!(
                "ignore_index = {} is a class id (classes are 0..{}); use a value ≥ {c}, e.g. 255",
                self.ignore_index,
                c - 1
            )));
        }
        for (key, group) in [("head", &self.head), ("tail", &self.tail)] {
            if let Some(ids) = group {
                if let Some(&id) = ids.iter().find(|&&id| id >= c) {
                    return Err(bad(format!(
                        "{key} lists class {id}, but there are {c} classes"
                    )));
                }
            }
        }
        if let (Some(h), Some(t)) = (&self.head, &self.tail) {
            if let Some(id) = h.iter().find(|id| t.contains(id)) {
                return Err(bad(format!("class {id} is listed in both head and tail")));
            }
        }
        Ok(())
    }
}

/// One decoded sample: an RGB image (HWC, 8 bits) and its label map (`H×W` ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `height × width × 3` bytes, row-major, RGB.
    pub image: Vec<u8>,
    /// `height × width` class ids; the dataset's ignore index (255) marks unlabelled pixels.
    pub label: Vec<u8>,
    pub height: usize,
    pub width: usize,
}

/// What identifies a dataset's content for the class-statistics cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheKey {
    /// The dataset root: the cache file goes here when it is writable.
    pub root: PathBuf,
    pub split: String,
    pub scale: f32,
    /// Hash of the file list, sizes and modification times (and the class list).
    pub fingerprint: u64,
}

/// A source of samples. Implementations are cheap to share between loader threads.
pub trait Dataset: Send + Sync {
    /// Names, colours, ignore index and optional explicit groups.
    fn info(&self) -> &DatasetInfo;
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are no samples (never true for a dataset [`open`] returned).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sample's name (the image's file stem), for messages and output files.
    fn name(&self, i: usize) -> String;
    /// Decodes sample `i` (already scaled), checking sizes and ids.
    fn load(&self, i: usize) -> Result<Sample>;
    /// Identity of the content for caching statistics; `None` (the default) disables the
    /// cache (the built-in data is cheaper to recount than to hash).
    fn cache_key(&self) -> Option<CacheKey> {
        None
    }
}

/// Opens a dataset split. `root`: `None` for the built-in data, else a folder-layout root
/// (has `dataset.toml`), a Cityscapes root (has `leftImg8bit/` and `gtFine/`), an ADE20K root
/// (has `images/training/` and `annotations/training/`, or holds `ADEChallengeData2016/`),
/// a COCO-Stuff 164k root (has `images/train2017/` and `annotations/train2017/`), an NYUv2
/// PNG export (has `train/image/` and `train/label40/` or `train/label13/`) or an
/// Oxford-IIIT Pet root (has `images/` and `annotations/trimaps/`). `scale`
/// (> 0) resizes every sample once at load time; `seed` only affects the built-in data.
pub fn open(root: Option<&Path>, split: &str, scale: f32, seed: u64) -> Result<Box<dyn Dataset>> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Data {
            path: root
                .map(Path::to_path_buf)
                .unwrap_or_else(|| "built-in".into()),
            msg: format!("scale must be a positive number, got {scale}"),
        });
    }
    let Some(root) = root else {
        return Ok(Box::new(builtin::Builtin::new(split, scale, seed)?));
    };
    if !root.is_dir() {
        return Err(Error::Data {
            path: root.to_path_buf(),
            msg: "not a directory (expected a dataset root with dataset.toml, a Cityscapes \
                  root with leftImg8bit/ and gtFine/, an ADE20K root with images/training/ and \
                  annotations/training/, a COCO-Stuff root with images/train2017/ and \
                  annotations/train2017/, an NYUv2 export with train/image/ and \
                  train/label40/ or train/label13/, or an Oxford-IIIT Pet root with images/ \
                  and annotations/trimaps/)"
                .into(),
        });
    }
    if root.join("dataset.toml").is_file() {
        return Ok(Box::new(folder::Folder::open(root, split, scale)?));
    }
    if root.join("leftImg8bit").is_dir() && root.join("gtFine").is_dir() {
        return Ok(Box::new(cityscapes::open(root, split, scale)?));
    }
    if let Some(ade) = ade20k::find(root) {
        return Ok(Box::new(ade20k::open(&ade, split, scale)?));
    }
    if coco_stuff::is_coco_stuff(root) {
        return Ok(Box::new(coco_stuff::open(root, split, scale)?));
    }
    if nyuv2::is_nyuv2(root) {
        return Ok(Box::new(nyuv2::open(root, split, scale)?));
    }
    if pet::is_pet(root) {
        return Ok(Box::new(pet::open(root, split, scale)?));
    }
    Err(Error::Data {
        path: root.to_path_buf(),
        msg: "no dataset.toml (folder layout), no leftImg8bit/ + gtFine/ (Cityscapes layout), \
              no images/training/ + annotations/training/ (ADE20K layout, also inside \
              ADEChallengeData2016/), no images/train2017/ + annotations/train2017/ (COCO-Stuff \
              layout), no train/image/ + train/label40/ or train/label13/ (NYUv2 export) and \
              no images/ + annotations/trimaps/ (Oxford-IIIT Pet layout)"
            .into(),
    })
}

/// Most problems [`validate`] lists in its error before summarising the rest.
const MAX_LISTED: usize = 20;

/// Decodes every sample once and checks it (sizes, ids, decodability); `progress(done,
/// total)` is called after each sample. Returns `Ok` or one error: the first problem found,
/// with up to 19 further problems listed in its message and a count of the rest.
pub fn validate(ds: &dyn Dataset, mut progress: impl FnMut(usize, usize)) -> Result<()> {
    let n = ds.len();
    let mut first: Option<Error> = None;
    let mut more: Vec<String> = Vec::new();
    let mut extra = 0usize;
    for i in 0..n {
        if let Err(e) = ds.load(i) {
            if first.is_none() {
                first = Some(e);
            } else if more.len() + 1 < MAX_LISTED {
                more.push(e.to_string());
            } else {
                extra += 1;
            }
        }
        progress(i + 1, n);
    }
    match first {
        None => Ok(()),
        Some(e) if more.is_empty() => Err(e),
        Some(e) => {
            let mut list = more.join("\n  ");
            if extra > 0 {
                list.push_str(&format!("\n  … and {extra} more"));
            }
            Err(match e {
                Error::Data { path, msg } => Error::Data {
                    path,
                    msg: format!("{msg}\nfurther problems:\n  {list}"),
                },
                Error::Io { path, source } => Error::Data {
                    path,
                    msg: format!("{source}\nfurther problems:\n  {list}"),
                },
                other => other,
            })
        }
    }
}

/// `Error::Data` for `path`.
pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// `Error::Io` for `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `max(1, round(d·scale))`: the size of a dimension after scaling.
pub fn scaled_dim(d: usize, scale: f32) -> usize {
    ((d as f64 * scale as f64).round() as usize).max(1)
}

/// SplitMix64 finaliser: mixes seeds, indices and hashes into well-spread 64-bit values.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines several values into one seed (order matters).
pub(crate) fn seed_of(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5eed_u64, |acc, &p| mix(acc ^ mix(p)))
}
