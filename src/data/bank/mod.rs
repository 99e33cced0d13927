//! The tail-class memory bank (T-Memory Bank, docs/longtail.md): stores pixels of tail
//! classes seen in earlier training images and pastes them into images that lack them.
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
//!    (step 2 only pastes classes missing from it) is never stored from it, as the method
//!    requires; entries stored from image `i` can be pasted into image `i + 1` of the same batch.
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

mod config;
mod entry;
mod paste;
mod state;

pub use config::{BankConfig, BankFlags};
pub use entry::Entry;
pub use state::BankState;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[cfg(doc)]
use super::image_io::{resize_bilinear_f32, resize_nearest};
use super::{seed_of, Batch};
use crate::error::{Error, Result};
use entry::BYTES_PER_PIXEL;
use state::Counters;

/// Salt separating the bank's generator from the loader's shuffle and augmentation.
pub const BANK_SALT: u64 = 0x544d_4241_4e4b; // "TMBANK"

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
    /// `state` (which must hold the same tail classes, each with at most `size` entries).
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
                    .find(|(_, e)| e.len() > cfg.size)
                {
                    return Err(Error::shape(
                        "memory bank",
                        format!(
                            "the saved bank holds {} entries of class {c} but tmb.size = {}",
                            e.len(),
                            cfg.size
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
        self.cfg.size * self.cfg.tail.len() * BYTES_PER_PIXEL * h * w
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
        let slots = self.cfg.size;
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
            let written = patch.write(class, (oy, ox), img, lab, h, w);
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
