//! Shared helpers of the memory-bank tests (`tests/bank*.rs`): constructed batches and banks.
#![allow(dead_code)]

use wgseg::data::{BankConfig, Batch, LoaderState, MemoryBank};

pub type R = Result<(), Box<dyn std::error::Error>>;

/// Classes of the constructed batches: 0 and 1 are background, 2..=5 tail.
pub const C: usize = 6;

/// Distinct values for image `salt`: channel `k`, pixel `i` → `salt·10⁴ + k·10³ + i/4`.
pub fn values(h: usize, w: usize, salt: usize) -> Vec<f32> {
    (0..3 * h * w)
        .map(|j| (salt * 10_000 + (j / (h * w)) * 1000) as f32 + (j % (h * w)) as f32 * 0.25)
        .collect()
}

/// A batch of one or more `h×w` images with the given labels (concatenated).
pub fn batch(h: usize, w: usize, labels: Vec<u8>, salt: usize, k: usize) -> Batch {
    let b = labels.len() / (h * w);
    let images = (0..b).flat_map(|n| values(h, w, salt + n)).collect();
    Batch {
        images,
        labels,
        b,
        h,
        w,
        indices: (0..b).collect(),
        state: LoaderState {
            epoch: 0,
            batch_in_epoch: k,
        },
        bank: None,
    }
}

/// `h×w` label map of class 0 with `class` on the cells listed as `(y, x)`.
pub fn label_with(h: usize, w: usize, cells: &[(usize, usize, u8)]) -> Vec<u8> {
    let mut l = vec![0u8; h * w];
    for &(y, x, c) in cells {
        l[y * w + x] = c;
    }
    l
}

/// An L-shaped object of class 2 in an 8×10 image: rows 2..=4, cols 3..=6, not a rectangle.
pub fn l_shape() -> Vec<(usize, usize, u8)> {
    let mut v = vec![];
    for y in 2..=4 {
        v.push((y, 3, 2));
    }
    for x in 3..=6 {
        v.push((4, x, 2));
    }
    v.push((2, 4, 1)); // a background pixel inside the bounding box
    v
}

pub fn bank(tail: &[u8], slots: usize, rs: f32, resize: f32, seed: u64) -> MemoryBank {
    let cfg = BankConfig {
        tail: tail.to_vec(),
        size: slots,
        rs,
        resize,
        ..BankConfig::default()
    };
    MemoryBank::new(cfg, C, seed, None).unwrap_or_else(|e| panic!("{e}"))
}

/// A pseudo-random label map with blobs of a few classes (xorshift, deterministic).
pub fn blobs(h: usize, w: usize, mut s: u64, classes: &[u8]) -> Vec<u8> {
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut l = vec![0u8; h * w];
    for &c in classes {
        if next() % 3 == 0 {
            continue;
        }
        let (y0, x0) = ((next() % h as u64) as usize, (next() % w as u64) as usize);
        let (bh, bw) = (1 + (next() % 5) as usize, 1 + (next() % 7) as usize);
        for y in y0..(y0 + bh).min(h) {
            for x in x0..(x0 + bw).min(w) {
                if next() % 4 != 0 {
                    l[y * w + x] = c;
                }
            }
        }
    }
    l
}
