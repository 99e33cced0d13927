//! The tail-class memory bank (T-Memory Bank, SPEC §4): stores pixels of tail classes seen
//! in earlier training images and pastes them into images that lack them.
//!
//! # What an entry is
//!
//! An entry of class `c` comes from one augmented, normalised training image (a crop of
//! `H×W`, `Batch.images` f32 CHW): it behaves exactly as if the whole crop and the mask
//! `label == c` were stored. Only what a paste can read is kept: the bounding box of the
//! class's pixels grown by one pixel on each side (clamped to the crop; the margin holds the
//! neighbours that bilinear resizing reads), its three channels and its mask. So an entry
//! takes at most `13·H·W` bytes (f32 × 3 + one mask byte per pixel) and the bank at most
//! `SM × #tail × 13·H·W` ([`MemoryBank::capacity_bytes`]).
//!
//! # Per image, in batch order ([`MemoryBank::apply`])
//!
//! 1. **Store** every tail class present in the image (≥ 1 pixel), in the order of the tail
//!    list: appended while the class has fewer than `SM` entries, else over a uniformly random
//!    slot. Storing comes first, from the image as augmented, so a class pasted into an image
//!    (step 2 only pastes classes missing from it) is never stored from it, as SPEC requires;
//!    entries stored from image `i` can be pasted into image `i + 1` of the same batch.
//! 2. **Paste**: of the `m` tail classes missing from the image, `ceil(Rs·m)` are picked
//!    uniformly at random (without replacement; `Rs·m` is rounded up after subtracting 1e-6
//!    so that e.g. `Rs = 0.05, m = 20` picks 1, not 2 through rounding error). A picked class
//!    with no stored entry yet is **skipped** (nothing else is picked instead). For the
//!    others, in the picked order: a uniformly random entry; the whole crop resized by
//!    `p_resize` to `max(1, round(H·p)) × max(1, round(W·p))` (bilinear,
//!    `align_corners = false`, for the image — [`resize_bilinear_f32`] — nearest for the
//!    mask — [`resize_nearest`]; `p = 1` leaves it unchanged); the **patch** is the bounding
//!    box of the class's pixels in the resized mask. The patch is placed with its top-left
//!    corner at `(oy, ox)`, each uniform over the in-bounds positions `0 ..= H_img − h_patch`;
//!    along a side where the patch is larger than the image, over `H_img − h_patch ..= 0`
//!    instead (every position where the patch covers the image on that side), and the patch
//!    is clipped to the image. Then every class pixel of the patch is hard-copied: the three
//!    channel values and the label `c`; no blending. Later pastes overwrite earlier ones.
//!    A patch whose resized mask is empty (possible only when `p < 1` thins out a very thin
//!    object) writes nothing.
//!
//! # Randomness, determinism and resume
//!
//! All draws for a batch come from one generator seeded by `(seed, BANK_SALT, epoch,
//! batch_in_epoch)` of that batch's [`Batch::state`], used image by image in the order
//! above, so the result depends only on the bank's state before the batch and the batch.
//! [`MemoryBank::apply`] sets [`Batch::bank`] to the state right after the batch
//! ([`BankState`]: the entries behind `Arc`, cheap to clone); a bank created from that state
//! continues the stream exactly ([`Loader::with_bank`](super::Loader::with_bank)).
//! [`BankState::save`] / [`BankState::load`] keep it with a checkpoint.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::folder::Fnv;
use super::image_io::{bilerp, bilinear_tap, nearest_tap};
#[cfg(doc)]
use super::image_io::{resize_bilinear_f32, resize_nearest};
use super::{bad, io_err, scaled_dim, seed_of, Batch};
use crate::error::{Error, Result};

/// Salt separating the bank's generator from the loader's shuffle and augmentation.
pub const BANK_SALT: u64 = 0x544d_4241_4e4b; // "TMBANK"

/// Bytes an entry may take per pixel of its crop: three f32 channels and a mask byte.
const BYTES_PER_PIXEL: usize = 3 * 4 + 1;

/// The bank's settings (SPEC §4). `Default`: no tail classes, `SM = 5`, `Rs = 1`,
/// `p_resize = 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BankConfig {
    /// The tail class ids (the classes stored and pasted), in the order they are stored.
    pub tail: Vec<u8>,
    /// `SM`: entries kept per class (≥ 1).
    pub slots: usize,
    /// `Rs ∈ (0, 1]`: the share of the missing tail classes pasted into an image.
    pub rs: f32,
    /// `p_resize > 0`: the scale factor of a pasted entry.
    pub resize: f32,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            tail: Vec::new(),
            slots: 5,
            rs: 1.0,
            resize: 1.0,
        }
    }
}

impl BankConfig {
    /// The defaults (`SM = 5`, `Rs = 1`, `p_resize = 1`) for the given tail classes.
    pub fn new(tail: Vec<u8>) -> BankConfig {
        BankConfig {
            tail,
            ..BankConfig::default()
        }
    }

    /// Checks the settings against a dataset of `num_classes` classes: at least one tail
    /// class, every id `< num_classes`, no duplicates, `slots ≥ 1`, `0 < rs ≤ 1`,
    /// `resize > 0` (finite).
    pub fn check(&self, num_classes: usize) -> Result<()> {
        let err = |msg: String| Error::shape("memory bank", msg);
        if self.tail.is_empty() {
            return Err(err("no tail classes: the bank needs at least one".into()));
        }
        if let Some(&c) = self.tail.iter().find(|&&c| c as usize >= num_classes) {
            return Err(err(format!(
                "tail class {c} does not exist: the dataset has {num_classes} classes \
                 (ids 0..{})",
                num_classes.saturating_sub(1)
            )));
        }
        for (i, c) in self.tail.iter().enumerate() {
            if self.tail[..i].contains(c) {
                return Err(err(format!(
                    "tail class {c} is listed twice in {:?}",
                    self.tail
                )));
            }
        }
        if self.slots == 0 {
            return Err(err(
                "slots (SM, entries per class) must be at least 1".into()
            ));
        }
        if !(self.rs > 0.0 && self.rs <= 1.0) {
            return Err(err(format!(
                "rs (the share of missing tail classes pasted) must be in (0, 1], got {}",
                self.rs
            )));
        }
        if !(self.resize.is_finite() && self.resize > 0.0) {
            return Err(err(format!(
                "resize (p_resize, the scale of a pasted entry) must be a positive number, \
                 got {}",
                self.resize
            )));
        }
        Ok(())
    }
}

/// One stored entry: the class's pixels of one augmented crop with a one-pixel margin.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    class: u8,
    /// `(H, W)` of the crop it came from.
    crop: (usize, usize),
    /// Top-left corner of the stored region in the crop.
    origin: (usize, usize),
    /// `(h, w)` of the stored region.
    size: (usize, usize),
    /// Bounding box of the class pixels in crop coordinates: `y0, x0, y1, x1` inclusive.
    bbox: [usize; 4],
    /// `3 × h × w` normalised values (CHW).
    pixels: Vec<f32>,
    /// `h × w`: 1 where the pixel is of the class, else 0.
    mask: Vec<u8>,
}

impl Entry {
    /// The class id.
    pub fn class(&self) -> u8 {
        self.class
    }
    /// `(H, W)` of the crop the entry came from.
    pub fn crop(&self) -> (usize, usize) {
        self.crop
    }
    /// Top-left corner `(y, x)` of the stored region in that crop.
    pub fn origin(&self) -> (usize, usize) {
        self.origin
    }
    /// `(h, w)` of the stored region (the class's bounding box grown by one pixel, clamped).
    pub fn size(&self) -> (usize, usize) {
        self.size
    }
    /// The region's normalised values, `3 × h × w` (CHW).
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }
    /// The region's mask, `h × w`, 1 on the class's pixels.
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }
    /// Payload bytes (values and mask).
    pub fn bytes(&self) -> usize {
        self.pixels.len() * 4 + self.mask.len()
    }

    /// The stored region: the bounding box grown by one pixel, clamped to the crop.
    fn region(bbox: [usize; 4], crop: (usize, usize)) -> ((usize, usize), (usize, usize)) {
        let [y0, x0, y1, x1] = bbox;
        let (oy, ox) = (y0.saturating_sub(1), x0.saturating_sub(1));
        let (ey, ex) = ((y1 + 1).min(crop.0 - 1), (x1 + 1).min(crop.1 - 1));
        ((oy, ox), (ey - oy + 1, ex - ox + 1))
    }

    /// Copies the region of class `class` with bounding box `bbox` out of image `img`
    /// (`3 × H × W`) and label `lab` (`H × W`).
    fn capture(class: u8, bbox: [usize; 4], img: &[f32], lab: &[u8], h: usize, w: usize) -> Entry {
        let ((oy, ox), (rh, rw)) = Entry::region(bbox, (h, w));
        let mut pixels = Vec::with_capacity(3 * rh * rw);
        for k in 0..3 {
            for y in oy..oy + rh {
                let row = (k * h + y) * w;
                pixels.extend_from_slice(&img[row + ox..row + ox + rw]);
            }
        }
        let mut mask = Vec::with_capacity(rh * rw);
        for y in oy..oy + rh {
            mask.extend(
                lab[y * w + ox..y * w + ox + rw]
                    .iter()
                    .map(|&v| u8::from(v == class)),
            );
        }
        Entry {
            class,
            crop: (h, w),
            origin: (oy, ox),
            size: (rh, rw),
            bbox,
            pixels,
            mask,
        }
    }

    /// Value of channel `k` at crop coordinates `(y, x)` (inside the region).
    #[inline]
    fn px(&self, k: usize, y: usize, x: usize) -> f32 {
        let (rh, rw) = self.size;
        self.pixels[(k * rh + y - self.origin.0) * rw + x - self.origin.1]
    }

    /// Whether crop pixel `(y, x)` (inside the bounding box) is of the class.
    #[inline]
    fn is_class(&self, y: usize, x: usize) -> bool {
        self.mask[(y - self.origin.0) * self.size.1 + x - self.origin.1] != 0
    }

    /// The patch this entry pastes at scale `resize` (see the module doc): the bounding box
    /// of the class's pixels in the resized crop, computed from the stored region only but
    /// equal to resizing the whole crop.
    fn render(&self, resize: f32) -> Patch {
        let (ch, cw) = self.crop;
        let [by0, bx0, by1, bx1] = self.bbox;
        let (nh, nw) = (scaled_dim(ch, resize), scaled_dim(cw, resize));
        if (nh, nw) == (ch, cw) {
            let (h, w) = (by1 - by0 + 1, bx1 - bx0 + 1);
            let mut mask = Vec::with_capacity(h * w);
            let mut pixels = Vec::with_capacity(3 * h * w);
            for y in by0..=by1 {
                mask.extend((bx0..=bx1).map(|x| u8::from(self.is_class(y, x))));
            }
            for k in 0..3 {
                for y in by0..=by1 {
                    pixels.extend((bx0..=bx1).map(|x| self.px(k, y, x)));
                }
            }
            return Patch { h, w, mask, pixels };
        }
        // Destination rows / columns whose nearest source lies in the bounding box (a
        // contiguous range, the nearest map being monotone), with that source.
        let span = |n: usize, src: usize, lo: usize, hi: usize| -> Vec<(usize, usize)> {
            (0..n)
                .map(|d| (d, nearest_tap(d, src, n)))
                .filter(|&(_, s)| (lo..=hi).contains(&s))
                .collect()
        };
        let rows = span(nh, ch, by0, by1);
        let cols = span(nw, cw, bx0, bx1);
        // Tight bounding box (indices into rows / cols) of the resized class pixels.
        let (mut ty0, mut tx0, mut ty1, mut tx1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, &(_, sy)) in rows.iter().enumerate() {
            for (j, &(_, sx)) in cols.iter().enumerate() {
                if self.is_class(sy, sx) {
                    (ty0, tx0) = (ty0.min(i), tx0.min(j));
                    (ty1, tx1) = (ty1.max(i), tx1.max(j));
                }
            }
        }
        if ty0 == usize::MAX {
            return Patch {
                h: 0,
                w: 0,
                mask: Vec::new(),
                pixels: Vec::new(),
            };
        }
        let (h, w) = (ty1 - ty0 + 1, tx1 - tx0 + 1);
        let mut mask = vec![0u8; h * w];
        let mut pixels = vec![0f32; 3 * h * w];
        let xtaps: Vec<_> = cols[tx0..=tx1]
            .iter()
            .map(|&(dx, sx)| (sx, bilinear_tap(dx, cw, nw)))
            .collect();
        for (i, &(dy, sy)) in rows[ty0..=ty1].iter().enumerate() {
            // Both taps lie within one pixel of the nearest source, so inside the region.
            let (y0, y1, fy) = bilinear_tap(dy, ch, nh);
            for (j, &(sx, (x0, x1, fx))) in xtaps.iter().enumerate() {
                if !self.is_class(sy, sx) {
                    continue;
                }
                mask[i * w + j] = 1;
                for k in 0..3 {
                    pixels[(k * h + i) * w + j] = bilerp(
                        self.px(k, y0, x0),
                        self.px(k, y0, x1),
                        self.px(k, y1, x0),
                        self.px(k, y1, x1),
                        fx,
                        fy,
                    );
                }
            }
        }
        Patch { h, w, mask, pixels }
    }
}

/// A rendered entry: the bounding box of the class pixels after resizing.
struct Patch {
    h: usize,
    w: usize,
    mask: Vec<u8>,
    pixels: Vec<f32>,
}

/// Counters of one tail class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Counters {
    updates: u64,
    pastes: u64,
    skipped: u64,
    pixels: u64,
}

/// The bank's content: per tail class its entries (behind `Arc`, so a clone is cheap) and
/// counters. Carried by each [`Batch`] of a loader with a bank; saved with a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BankState {
    tail: Vec<u8>,
    entries: Vec<Vec<Arc<Entry>>>,
    counters: Vec<Counters>,
}

/// What the bank did so far, per tail class (in the order of [`BankStats::tail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankStats {
    pub tail: Vec<u8>,
    /// Entries held now (≤ `SM`).
    pub stored: Vec<usize>,
    /// Times the class was stored (images it was present in).
    pub updates: Vec<u64>,
    /// Times the class was pasted (patches that wrote at least one pixel).
    pub pastes: Vec<u64>,
    /// Times the class was picked for pasting while it had no entry yet.
    pub skipped: Vec<u64>,
    /// Pixels written by its pastes (before later pastes overwrote any).
    pub pasted_pixels: Vec<u64>,
    /// [`MemoryBank::bytes`].
    pub bytes: usize,
}

/// One stored entry of [`BankLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Image index in the batch.
    pub image: usize,
    pub class: u8,
    /// The slot written.
    pub slot: usize,
}

/// One paste of [`BankLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paste {
    /// Image index in the batch.
    pub image: usize,
    pub class: u8,
    /// The entry pasted (its slot, in the state before this image's pastes).
    pub slot: usize,
    /// Top-left corner `(y, x)` of the patch in the image (negative when the patch is
    /// larger than the image on that side).
    pub offset: (i64, i64),
    /// `(h, w)` of the patch: the bounding box of the class pixels of the resized entry.
    pub size: (usize, usize),
    /// Pixels written.
    pub pixels: usize,
}

/// What [`MemoryBank::apply`] did to one batch, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BankLog {
    pub stored: Vec<Stored>,
    pub pasted: Vec<Paste>,
    /// `(image, class)` picked for pasting but with no entry (skipped).
    pub skipped: Vec<(usize, u8)>,
}

/// The T-Memory Bank: settings, seed and state (see the module doc).
#[derive(Debug, Clone)]
pub struct MemoryBank {
    cfg: BankConfig,
    seed: u64,
    state: BankState,
    /// Tail index of each label value (`None`: not a tail class).
    lookup: [Option<usize>; 256],
}

impl MemoryBank {
    /// A bank for a dataset of `num_classes` classes, empty (`state = None`) or continuing
    /// `state` (which must hold the same tail classes, each with at most `slots` entries).
    /// `seed` is the run's seed.
    pub fn new(
        cfg: BankConfig,
        num_classes: usize,
        seed: u64,
        state: Option<BankState>,
    ) -> Result<MemoryBank> {
        cfg.check(num_classes)?;
        let n = cfg.tail.len();
        let state = match state {
            None => BankState {
                tail: cfg.tail.clone(),
                entries: vec![Vec::new(); n],
                counters: vec![Counters::default(); n],
            },
            Some(s) => {
                if s.tail != cfg.tail {
                    return Err(Error::shape(
                        "memory bank",
                        format!(
                            "the saved bank holds tail classes {:?} but the configuration's \
                             tail is {:?}",
                            s.tail, cfg.tail
                        ),
                    ));
                }
                if let Some((c, e)) = s
                    .tail
                    .iter()
                    .zip(&s.entries)
                    .find(|(_, e)| e.len() > cfg.slots)
                {
                    return Err(Error::shape(
                        "memory bank",
                        format!(
                            "the saved bank holds {} entries of class {c} but slots = {}",
                            e.len(),
                            cfg.slots
                        ),
                    ));
                }
                s
            }
        };
        let mut lookup = [None; 256];
        for (t, &c) in cfg.tail.iter().enumerate() {
            lookup[c as usize] = Some(t);
        }
        Ok(MemoryBank {
            cfg,
            seed,
            state,
            lookup,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BankConfig {
        &self.cfg
    }

    /// The current content (cheap: the entries are shared).
    pub fn state(&self) -> BankState {
        self.state.clone()
    }

    /// Payload bytes held now (values and masks of every entry).
    pub fn bytes(&self) -> usize {
        self.state.bytes()
    }

    /// The most [`bytes`](Self::bytes) can reach when every image is at most `h×w`:
    /// `SM × #tail × 13·h·w` (an entry is never larger than its crop).
    pub fn capacity_bytes(&self, h: usize, w: usize) -> usize {
        self.cfg.slots * self.cfg.tail.len() * BYTES_PER_PIXEL * h * w
    }

    /// Counters per tail class, for the training log.
    pub fn stats(&self) -> BankStats {
        let s = &self.state;
        BankStats {
            tail: s.tail.clone(),
            stored: s.entries.iter().map(Vec::len).collect(),
            updates: s.counters.iter().map(|c| c.updates).collect(),
            pastes: s.counters.iter().map(|c| c.pastes).collect(),
            skipped: s.counters.iter().map(|c| c.skipped).collect(),
            pasted_pixels: s.counters.iter().map(|c| c.pixels).collect(),
            bytes: s.bytes(),
        }
    }

    /// Stores and pastes, image by image in batch order (module doc), and sets
    /// `batch.bank` to the state afterwards. Returns what was done.
    pub fn apply(&mut self, batch: &mut Batch) -> BankLog {
        let mut rng = StdRng::seed_from_u64(seed_of(&[
            self.seed,
            BANK_SALT,
            batch.state.epoch,
            batch.state.batch_in_epoch as u64,
        ]));
        let mut log = BankLog::default();
        let (h, w) = (batch.h, batch.w);
        let hw = h * w;
        for n in 0..batch.b {
            let img = &mut batch.images[n * 3 * hw..(n + 1) * 3 * hw];
            let lab = &mut batch.labels[n * hw..(n + 1) * hw];
            self.apply_image(img, lab, h, w, n, &mut rng, &mut log);
        }
        batch.bank = Some(self.state());
        log
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_image(
        &mut self,
        img: &mut [f32],
        lab: &mut [u8],
        h: usize,
        w: usize,
        image: usize,
        rng: &mut StdRng,
        log: &mut BankLog,
    ) {
        let nt = self.cfg.tail.len();
        if h == 0 || w == 0 {
            return;
        }
        // Bounding boxes of the tail classes present: y0, x0, y1, x1.
        let mut boxes: Vec<Option<[usize; 4]>> = vec![None; nt];
        for y in 0..h {
            for (x, &v) in lab[y * w..(y + 1) * w].iter().enumerate() {
                if let Some(t) = self.lookup[v as usize] {
                    let b = boxes[t].get_or_insert([y, x, y, x]);
                    b[1] = b[1].min(x);
                    b[2] = y;
                    b[3] = b[3].max(x);
                }
            }
        }
        // (1) Store the present classes.
        let slots = self.cfg.slots;
        for (t, b) in boxes.iter().enumerate() {
            let Some(b) = *b else { continue };
            let class = self.cfg.tail[t];
            let entry = Arc::new(Entry::capture(class, b, img, lab, h, w));
            let list = &mut self.state.entries[t];
            let slot = if list.len() < slots {
                list.push(entry);
                list.len() - 1
            } else {
                let s = rng.random_range(0..slots);
                list[s] = entry;
                s
            };
            self.state.counters[t].updates += 1;
            log.stored.push(Stored { image, class, slot });
        }
        // (2) Paste ceil(Rs·m) of the m missing classes.
        let mut missing: Vec<usize> = (0..nt).filter(|&t| boxes[t].is_none()).collect();
        let m = missing.len();
        let k = ((self.cfg.rs as f64 * m as f64 - 1e-6).ceil().max(0.0) as usize).min(m);
        for i in 0..k {
            let j = rng.random_range(i..m);
            missing.swap(i, j);
        }
        for &t in &missing[..k] {
            let class = self.cfg.tail[t];
            let list = &self.state.entries[t];
            if list.is_empty() {
                self.state.counters[t].skipped += 1;
                log.skipped.push((image, class));
                continue;
            }
            let slot = rng.random_range(0..list.len());
            let patch = list[slot].render(self.cfg.resize);
            if patch.h == 0 {
                continue;
            }
            let place = |rng: &mut StdRng, room: usize, size: usize| -> i64 {
                let d = room as i64 - size as i64;
                rng.random_range(d.min(0)..=d.max(0))
            };
            let oy = place(rng, h, patch.h);
            let ox = place(rng, w, patch.w);
            let mut written = 0usize;
            for py in 0..patch.h {
                let y = oy + py as i64;
                if y < 0 || y >= h as i64 {
                    continue;
                }
                for px in 0..patch.w {
                    let x = ox + px as i64;
                    if x < 0 || x >= w as i64 || patch.mask[py * patch.w + px] == 0 {
                        continue;
                    }
                    let at = y as usize * w + x as usize;
                    lab[at] = class;
                    for c in 0..3 {
                        img[c * h * w + at] = patch.pixels[(c * patch.h + py) * patch.w + px];
                    }
                    written += 1;
                }
            }
            let counters = &mut self.state.counters[t];
            if written > 0 {
                counters.pastes += 1;
                counters.pixels += written as u64;
            }
            log.pasted.push(Paste {
                image,
                class,
                slot,
                offset: (oy, ox),
                size: (patch.h, patch.w),
                pixels: written,
            });
        }
    }
}

/// Magic bytes of a saved bank.
const MAGIC: &[u8; 8] = b"WGSEGBNK";
/// Version of the file format.
const VERSION: u32 = 1;

/// The JSON header of a saved bank.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    tail: Vec<u8>,
    counters: Vec<Counters>,
    entries: Vec<EntryHeader>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryHeader {
    class: u8,
    crop: (usize, usize),
    origin: (usize, usize),
    size: (usize, usize),
}

impl BankState {
    /// The tail classes, in the bank's order.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// The entries of class `class` (empty for a class not in the tail).
    pub fn entries(&self, class: u8) -> &[Arc<Entry>] {
        self.tail
            .iter()
            .position(|&c| c == class)
            .map(|t| self.entries[t].as_slice())
            .unwrap_or(&[])
    }

    /// Payload bytes (values and masks of every entry).
    pub fn bytes(&self) -> usize {
        self.entries.iter().flatten().map(|e| e.bytes()).sum()
    }

    /// Writes the state to `path` atomically (a temporary file in the same directory, then
    /// a rename). Format: `WGSEGBNK`, version (u32 LE), header length (u32 LE), a JSON
    /// header (tail classes, counters, each entry's class / crop / origin / size), then per
    /// entry its values (f32 LE) and mask bytes, then an FNV-1a 64 checksum (u64 LE) of
    /// everything before it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = Header {
            tail: self.tail.clone(),
            counters: self.counters.clone(),
            entries: self
                .entries
                .iter()
                .flatten()
                .map(|e| EntryHeader {
                    class: e.class,
                    crop: e.crop,
                    origin: e.origin,
                    size: e.size,
                })
                .collect(),
        };
        let head = serde_json::to_vec(&header).map_err(|e| bad(path, e.to_string()))?;
        let mut bytes = Vec::with_capacity(24 + head.len() + self.bytes());
        bytes.extend_from_slice(MAGIC);
        bytes.extend(VERSION.to_le_bytes());
        bytes.extend((head.len() as u32).to_le_bytes());
        bytes.extend(head);
        for e in self.entries.iter().flatten() {
            bytes.extend(e.pixels.iter().flat_map(|v| v.to_le_bytes()));
            bytes.extend_from_slice(&e.mask);
        }
        let mut h = Fnv::new();
        h.bytes(&bytes);
        bytes.extend(h.0.to_le_bytes());
        write_atomic(path, &bytes)
    }

    /// Reads a state written by [`save`](Self::save). Every problem (missing file, bad
    /// magic or version, checksum mismatch, inconsistent entries) is an error naming `path`.
    pub fn load(path: &Path) -> Result<BankState> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let err = |msg: String| bad(path, format!("not a valid memory-bank file: {msg}"));
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(err("no WGSEGBNK header".into()));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut h = Fnv::new();
        h.bytes(body);
        if h.0.to_le_bytes() != sum {
            return Err(err("checksum mismatch (truncated or corrupt)".into()));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(err(format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        let hl = u32_at(12) as usize;
        if body.len() < 16 + hl {
            return Err(err("header longer than the file".into()));
        }
        let header: Header =
            serde_json::from_slice(&body[16..16 + hl]).map_err(|e| err(e.to_string()))?;
        if header.counters.len() != header.tail.len() {
            return Err(err(format!(
                "{} counters for {} tail classes",
                header.counters.len(),
                header.tail.len()
            )));
        }
        let mut entries: Vec<Vec<Arc<Entry>>> = vec![Vec::new(); header.tail.len()];
        let mut at = 16 + hl;
        for (i, eh) in header.entries.iter().enumerate() {
            let e = read_entry(eh, body, &mut at).map_err(|m| err(format!("entry {i}: {m}")))?;
            let t = header
                .tail
                .iter()
                .position(|&c| c == e.class)
                .ok_or_else(|| {
                    err(format!(
                        "entry {i} is of class {}, not a tail class",
                        e.class
                    ))
                })?;
            entries[t].push(Arc::new(e));
        }
        if at != body.len() {
            return Err(err(format!(
                "{} bytes after the last entry",
                body.len() - at
            )));
        }
        Ok(BankState {
            tail: header.tail,
            entries,
            counters: header.counters,
        })
    }
}

/// Reads one entry's data at `*at` and checks it against its header.
fn read_entry(eh: &EntryHeader, body: &[u8], at: &mut usize) -> std::result::Result<Entry, String> {
    let (ch, cw) = eh.crop;
    let (rh, rw) = eh.size;
    let (oy, ox) = eh.origin;
    if ch == 0 || cw == 0 || rh == 0 || rw == 0 || oy + rh > ch || ox + rw > cw {
        return Err(format!(
            "region {:?} + {:?} does not fit its crop {:?}",
            eh.origin, eh.size, eh.crop
        ));
    }
    let n = rh * rw;
    let len = n * BYTES_PER_PIXEL;
    if body.len() < *at + len {
        return Err("data past the end of the file".into());
    }
    let data = &body[*at..*at + len];
    *at += len;
    let pixels: Vec<f32> = data[..12 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mask = data[12 * n..].to_vec();
    if mask.iter().any(|&m| m > 1) {
        return Err("mask values other than 0 and 1".into());
    }
    let mut bbox: Option<[usize; 4]> = None;
    for y in 0..rh {
        for x in 0..rw {
            if mask[y * rw + x] != 0 {
                let b = bbox.get_or_insert([oy + y, ox + x, oy + y, ox + x]);
                b[1] = b[1].min(ox + x);
                b[2] = oy + y;
                b[3] = b[3].max(ox + x);
            }
        }
    }
    let bbox = bbox.ok_or("an empty mask")?;
    if Entry::region(bbox, eh.crop) != (eh.origin, eh.size) {
        return Err("the region is not the mask's bounding box grown by one pixel".into());
    }
    Ok(Entry {
        class: eh.class,
        crop: eh.crop,
        origin: eh.origin,
        size: eh.size,
        bbox,
        pixels,
        mask,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, then
/// renamed over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| bad(path, "not a file path"))?
        .to_string_lossy();
    let dir = path.parent().unwrap_or(Path::new(""));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let write = || -> Result<()> {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_err(path))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
