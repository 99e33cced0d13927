//! Training augmentation and input normalisation.
//!
//! [`Augment::apply`] runs, in this order: random scale (factor uniform in `scale`, new
//! size `max(1, round(h·f))`, bilinear image / nearest label), pad to at least the crop
//! size at the bottom and right (image with the ImageNet mean colour, label with the ignore
//! index), random crop, photometric jitter (brightness, contrast, saturation factors each
//! uniform in `[1 − j, 1 + j]`), horizontal flip with probability ½. Every random choice
//! comes from one generator seeded by `(seed, epoch, index)`, so the result of a sample
//! does not depend on which thread loads it or when.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::image_io::resize_sample;
use super::{scaled_dim, seed_of, Sample};
use crate::error::{Error, Result};

/// ImageNet channel means of RGB in `[0, 1]` (docs/model.md, "Input").
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The mean colour in bytes, used to pad images: `round(255·MEAN)`.
pub const MEAN_RGB: [u8; 3] = [124, 116, 104];

/// Augmentation parameters; [`Augment::eval`] (also the `Default`) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Random scale range `(lo, hi)`, `0 < lo ≤ hi`; `(1, 1)` = off.
    pub scale: (f32, f32),
    /// Crop size `(height, width)`; `(0, 0)` = whole image (no crop, no pad).
    pub crop: (usize, usize),
    /// Random horizontal flip (probability ½).
    pub flip: bool,
    /// Photometric jitter strength `j ∈ [0, 1)`; 0 = off.
    pub jitter: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self::eval()
    }
}

impl Augment {
    /// No augmentation: the whole image as loaded.
    pub fn eval() -> Augment {
        Augment {
            scale: (1.0, 1.0),
            crop: (0, 0),
            flip: false,
            jitter: 0.0,
        }
    }

    /// A usual training setting: scale 0.75–1.25, crop `(h, w)`, flip, jitter 0.2.
    pub fn train(crop: (usize, usize)) -> Augment {
        Augment {
            scale: (0.75, 1.25),
            crop,
            flip: true,
            jitter: 0.2,
        }
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<()> {
        let (lo, hi) = self.scale;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(Error::shape(
                "augment",
                format!("scale range must satisfy 0 < lo ≤ hi, got ({lo}, {hi})"),
            ));
        }
        if (self.crop.0 == 0) != (self.crop.1 == 0) {
            return Err(Error::shape(
                "augment",
                format!("crop {:?}: give both sides, or (0, 0) for none", self.crop),
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(Error::shape(
                "augment",
                format!("jitter must be in [0, 1), got {}", self.jitter),
            ));
        }
        Ok(())
    }

    /// Whether this is the identity.
    pub fn is_identity(&self) -> bool {
        self.scale == (1.0, 1.0) && self.crop == (0, 0) && !self.flip && self.jitter == 0.0
    }

    /// Augments sample `index` for `epoch` (see the module doc for the order of the steps).
    /// `ignore` is the dataset's ignore index, used to pad labels.
    pub fn apply(&self, s: Sample, ignore: u8, seed: u64, epoch: u64, index: usize) -> Sample {
        if self.is_identity() {
            return s;
        }
        let mut rng = StdRng::seed_from_u64(seed_of(&[seed, epoch, index as u64]));
        let mut s = s;
        let (lo, hi) = self.scale;
        if (lo, hi) != (1.0, 1.0) {
            let f = lo + (hi - lo) * rng.random::<f32>();
            s = resize_sample(&s, scaled_dim(s.height, f), scaled_dim(s.width, f));
        }
        let (ch, cw) = self.crop;
        if ch > 0 && cw > 0 {
            s = pad(s, ch, cw, ignore);
            let y0 = rng.random_range(0..=s.height - ch);
            let x0 = rng.random_range(0..=s.width - cw);
            s = crop(&s, y0, x0, ch, cw);
        }
        if self.jitter > 0.0 {
            let j = self.jitter;
            let mut f = || 1.0 - j + 2.0 * j * rng.random::<f32>();
            let (b, c, sat) = (f(), f(), f());
            jitter(&mut s.image, b, c, sat);
        }
        if self.flip && rng.random_bool(0.5) {
            s = hflip(s);
        }
        s
    }
}

/// Pads at the bottom and right to at least `h×w` (mean colour / `ignore`).
fn pad(s: Sample, h: usize, w: usize, ignore: u8) -> Sample {
    if s.height >= h && s.width >= w {
        return s;
    }
    let (nh, nw) = (s.height.max(h), s.width.max(w));
    let mut image: Vec<u8> = MEAN_RGB.iter().copied().cycle().take(nh * nw * 3).collect();
    let mut label = vec![ignore; nh * nw];
    for y in 0..s.height {
        image[y * nw * 3..(y * nw + s.width) * 3]
            .copy_from_slice(&s.image[y * s.width * 3..(y + 1) * s.width * 3]);
        label[y * nw..y * nw + s.width].copy_from_slice(&s.label[y * s.width..(y + 1) * s.width]);
    }
    Sample {
        image,
        label,
        height: nh,
        width: nw,
    }
}

/// The `h×w` window at `(y0, x0)` (must lie inside the sample).
fn crop(s: &Sample, y0: usize, x0: usize, h: usize, w: usize) -> Sample {
    let mut image = Vec::with_capacity(h * w * 3);
    let mut label = Vec::with_capacity(h * w);
    for y in y0..y0 + h {
        let row = y * s.width + x0;
        image.extend_from_slice(&s.image[row * 3..(row + w) * 3]);
        label.extend_from_slice(&s.label[row..row + w]);
    }
    Sample {
        image,
        label,
        height: h,
        width: w,
    }
}

/// Mirrors left ↔ right.
pub fn hflip(mut s: Sample) -> Sample {
    let w = s.width;
    for y in 0..s.height {
        s.label[y * w..(y + 1) * w].reverse();
        let row = &mut s.image[y * w * 3..(y + 1) * w * 3];
        row.reverse();
        // Reversing the bytes also reversed each pixel's channel order; restore RGB.
        for px in row.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
    s
}

/// Brightness `x·b`, then contrast `(x − m)·c + m` (m = the image's mean grey), then
/// saturation `g + (x − g)·sat` (g = the pixel's grey `0.299 r + 0.587 g + 0.114 b`),
/// clamped to `[0, 255]` and rounded.
fn jitter(img: &mut [u8], b: f32, c: f32, sat: f32) {
    let grey = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut px: Vec<f32> = img.iter().map(|&v| v as f32 * b).collect();
    let n = (px.len() / 3).max(1) as f32;
    let m = px.chunks_exact(3).map(grey).sum::<f32>() / n;
    for p in px.chunks_exact_mut(3) {
        for v in p.iter_mut() {
            *v = (*v - m) * c + m;
        }
        let g = grey(p);
        for v in p.iter_mut() {
            *v = g + (*v - g) * sat;
        }
    }
    for (o, v) in img.iter_mut().zip(px) {
        *o = v.round().clamp(0.0, 255.0) as u8;
    }
}

/// `(x/255 − mean_c)/std_c` in `[3, H, W]` (CHW) order, and the label unchanged.
pub fn normalize(sample: Sample) -> (Vec<f32>, Vec<u8>) {
    let hw = sample.height * sample.width;
    let mut out = vec![0f32; 3 * hw];
    for (i, px) in sample.image.chunks_exact(3).enumerate().take(hw) {
        for c in 0..3 {
            out[c * hw + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    (out, sample.label)
}
