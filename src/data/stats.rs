//! Training-set class statistics (`n_c` of docs/longtail.md, pixel counts per class at the loading
//! scale) and the head / middle / tail groups of docs/training.md.
//!
//! Counting decodes the whole split, so the result is cached as JSON:
//! `<root>/.wgseg-stats-<split>-<scale>.json` when the dataset root is writable, else
//! `$XDG_CACHE_HOME/wgseg/` (or `~/.cache/wgseg/`) under a name that includes a hash of the
//! root path. The file stores the dataset's fingerprint (class list, scale, and every file's
//! name, size and modification time): a cache whose fingerprint differs is ignored and
//! rewritten. Caching is best effort: if neither place is writable, the counts are simply
//! recomputed next time. The built-in data is not cached (counting it is fast).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::folder::Fnv;
use super::{CacheKey, Dataset, DatasetInfo};
use crate::error::Result;

/// Version of the cache file format; bump when the counting rule changes.
const CACHE_VERSION: u32 = 1;

/// Pixel counts per class over a (training) split; ignored pixels are not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    pub counts: Vec<u64>,
}

/// Class ids of the three groups, each sorted by class id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Groups {
    pub head: Vec<usize>,
    pub middle: Vec<usize>,
    pub tail: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    fingerprint: String,
    split: String,
    scale: f32,
    counts: Vec<u64>,
}

/// `$XDG_CACHE_HOME/wgseg` (when absolute) or `$HOME/.cache/wgseg`.
fn user_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            return Some(x.join("wgseg"));
        }
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wgseg"))
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl ClassStats {
    /// Counts the pixels of each class over every sample of `ds`; `progress(done, total)`
    /// is called after each sample.
    pub fn compute(ds: &dyn Dataset, mut progress: impl FnMut(usize, usize)) -> Result<Self> {
        let c = ds.info().num_classes();
        let mut counts = vec![0u64; c];
        let n = ds.len();
        for i in 0..n {
            let s = ds.load(i)?;
            let mut hist = [0u64; 256];
            for &v in &s.label {
                hist[v as usize] += 1;
            }
            for (k, count) in counts.iter_mut().enumerate() {
                *count += hist[k];
            }
            progress(i + 1, n);
        }
        Ok(ClassStats { counts })
    }

    /// The places a cache for `key` is looked up, in order: beside the data, then in the
    /// user cache directory.
    pub fn cache_paths(key: &CacheKey) -> Vec<PathBuf> {
        let file = format!("wgseg-stats-{}-{}.json", key.split, key.scale);
        let mut out = vec![key.root.join(format!(".{file}"))];
        if let Some(dir) = user_cache_dir() {
            let root = std::fs::canonicalize(&key.root).unwrap_or_else(|_| key.root.clone());
            let mut h = Fnv::new();
            h.bytes(root.as_os_str().as_encoded_bytes());
            out.push(dir.join(format!("{:016x}-{file}", h.0)));
        }
        out
    }

    /// Loads the cached counts of `ds` if a cache with the current fingerprint exists, else
    /// computes them and writes the cache (beside the data if writable, else in the user
    /// cache dir). Returns the counts and the cache file they were read from or written to.
    pub fn compute_or_load_with(
        ds: &dyn Dataset,
        progress: impl FnMut(usize, usize),
    ) -> Result<(ClassStats, Option<PathBuf>)> {
        let c = ds.info().num_classes();
        let Some(key) = ds.cache_key() else {
            return Ok((Self::compute(ds, progress)?, None));
        };
        let fp = format!("{:016x}", key.fingerprint);
        let paths = Self::cache_paths(&key);
        for p in &paths {
            let Ok(text) = std::fs::read_to_string(p) else {
                continue;
            };
            if let Ok(f) = serde_json::from_str::<CacheFile>(&text) {
                if f.version == CACHE_VERSION && f.fingerprint == fp && f.counts.len() == c {
                    return Ok((ClassStats { counts: f.counts }, Some(p.clone())));
                }
            }
        }
        let stats = Self::compute(ds, progress)?;
        let file = CacheFile {
            version: CACHE_VERSION,
            fingerprint: fp,
            split: key.split.clone(),
            scale: key.scale,
            counts: stats.counts.clone(),
        };
        let Ok(text) = serde_json::to_string_pretty(&file) else {
            return Ok((stats, None));
        };
        for p in paths {
            if write_atomic(&p, &text).is_ok() {
                return Ok((stats, Some(p)));
            }
        }
        Ok((stats, None))
    }

    /// [`compute_or_load_with`](Self::compute_or_load_with) without progress or path.
    pub fn compute_or_load(ds: &dyn Dataset) -> Result<ClassStats> {
        Ok(Self::compute_or_load_with(ds, |_, _| {})?.0)
    }

    /// Fraction of the counted pixels in each class (0 when nothing was counted).
    pub fn shares(&self) -> Vec<f64> {
        let total: u64 = self.counts.iter().sum();
        self.counts
            .iter()
            .map(|&n| {
                if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                }
            })
            .collect()
    }

    /// Head / middle / tail (docs/training.md): classes sorted by count (descending; ties by id),
    /// the first `⌊C/3⌋` are head, the last `⌊C/3⌋` tail, the remainder middle. A group the
    /// dataset config lists explicitly (`info.head` / `info.tail`) is used as given, the other
    /// one is taken from the classes not listed (`⌊C/3⌋` of them, from the matching end), and
    /// the middle is everything else. Each group is returned sorted by class id.
    pub fn groups(&self, info: &DatasetInfo) -> Groups {
        let c = info.num_classes();
        let k = c / 3;
        let count = |i: usize| self.counts.get(i).copied().unwrap_or(0);
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| count(b).cmp(&count(a)).then(a.cmp(&b)));
        let listed = |g: &Option<Vec<usize>>| {
            g.as_ref().map(|ids| {
                let mut v: Vec<usize> = ids.iter().copied().filter(|&i| i < c).collect();
                v.sort_unstable();
                v.dedup();
                v
            })
        };
        let (head_cfg, tail_cfg) = (listed(&info.head), listed(&info.tail));
        let taken = |i: &usize| {
            head_cfg.as_ref().is_some_and(|h| h.contains(i))
                || tail_cfg.as_ref().is_some_and(|t| t.contains(i))
        };
        let free: Vec<usize> = order.iter().copied().filter(|i| !taken(i)).collect();
        let mut head = head_cfg
            .clone()
            .unwrap_or_else(|| free.iter().copied().take(k).collect());
        let mut tail = tail_cfg.clone().unwrap_or_else(|| {
            let avail: Vec<usize> = free.iter().copied().filter(|i| !head.contains(i)).collect();
            avail[avail.len().saturating_sub(k)..].to_vec()
        });
        head.sort_unstable();
        tail.sort_unstable();
        let middle = (0..c)
            .filter(|i| !head.contains(i) && !tail.contains(i))
            .collect();
        Groups { head, middle, tail }
    }
}
