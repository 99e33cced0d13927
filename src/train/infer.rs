//! Segmenting one image at the scale a checkpoint was trained at.
//!
//! A model trained on images loaded at base scale `s` (`data.scale`, recorded in the
//! checkpoint as `wgseg.scale`) sees objects at `s` times their size in the original
//! pictures. [`segment`] gives it the same view of a full-size image: the image is resized
//! by `s` exactly as the data loader resizes it (bilinear, `align_corners = false`, rounded
//! to bytes; [`crate::data::image_io::scale_sample`]), normalised, run through the network, and the
//! **logits** (not the class ids) are resized bilinearly back to the image's size before the
//! argmax. The ids therefore have the input's size, and equal the argmax of the upsampled
//! logits that evaluation computes on the same image loaded at scale `s`.

use crate::data::image_io::scale_sample;
use crate::data::{normalize, Sample};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::interpolate_bilinear;
use crate::tensor::Tensor;

/// The logits `[1, C, h, w]` of one RGB image (`h×w`, HWC bytes) run through `forward` at
/// base scale `scale` and resized back to `h×w` (see the module docs).
pub fn segment_logits(
    image: &[u8],
    h: usize,
    w: usize,
    scale: f32,
    dev: &Device,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::shape(
            "segment",
            format!("scale {scale} must be positive"),
        ));
    }
    if image.len() != h * w * 3 {
        return Err(Error::shape(
            "segment",
            format!("{} bytes for a {h}×{w} RGB image", image.len()),
        ));
    }
    let sample = scale_sample(
        Sample {
            image: image.to_vec(),
            label: vec![255; h * w],
            height: h,
            width: w,
        },
        scale,
    );
    let (sh, sw) = (sample.height, sample.width);
    let (x, _) = normalize(sample);
    let x = Tensor::from_vec(x, [1, 3, sh, sw], dev)?;
    let logits = forward(&x)?;
    if logits.dims()[2..] == [h, w] {
        return Ok(logits);
    }
    interpolate_bilinear(&logits, (h, w), false)
}

/// The class id of every pixel of one RGB image: the argmax of [`segment_logits`]
/// (ids above 254 are clamped to 254, as an 8-bit id image needs).
pub fn segment(
    image: &[u8],
    h: usize,
    w: usize,
    scale: f32,
    dev: &Device,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Vec<u8>> {
    ids_of(&segment_logits(image, h, w, scale, dev, forward)?)
}

/// The class id of every pixel of logits `[1, C, H, W]`: their argmax over the classes,
/// clamped to 254 as an 8-bit id image needs.
pub fn ids_of(logits: &Tensor) -> Result<Vec<u8>> {
    Ok(logits
        .argmax_axis(1, false)?
        .to_vec_u32()?
        .into_iter()
        .map(|v| v.min(254) as u8)
        .collect())
}

/// A sliding window for inference and evaluation on images larger than what fits or than
/// the training crop: windows of `h × w` pixels (of the network's input, after the scale),
/// consecutive ones overlapping by the fraction `overlap` of a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub h: usize,
    pub w: usize,
    pub overlap: f32,
}

impl Window {
    /// Parses `H` or `HxW` (`--window`) with `overlap` (`--overlap`, in `[0, 1)`).
    pub fn parse(spec: &str, overlap: f32) -> Result<Window> {
        let err = |msg: String| Error::shape("window", msg);
        let side = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| err(format!("\"{spec}\" is not H or HxW with positive sides")))
        };
        let (h, w) = match spec.split_once(['x', 'X']) {
            Some((h, w)) => (side(h)?, side(w)?),
            None => (side(spec)?, side(spec)?),
        };
        if !(0.0..1.0).contains(&overlap) {
            return Err(err(format!("overlap {overlap} must be in [0, 1)")));
        }
        Ok(Window { h, w, overlap })
    }

    /// The first pixel of each window along an axis of `len` pixels for windows of `win`:
    /// one window of the whole axis when it fits, else steps of `win·(1 − overlap)`
    /// (at least 1) and a last window flush with the end.
    pub fn starts(len: usize, win: usize, overlap: f32) -> Vec<usize> {
        if len <= win {
            return vec![0];
        }
        let step = ((win as f32 * (1.0 - overlap)).round() as usize).max(1);
        let mut v: Vec<usize> = (0..len - win).step_by(step).collect();
        v.push(len - win);
        v
    }
}

/// The logits `[1, C, H, W]` of `x [1, 3, H, W]` computed window by window (see
/// [`Window`]): each window's logits go to the host and are added into an accumulator, each
/// pixel divided by the number of windows that cover it, so the device holds one window's
/// activations at a time. The result is a host (`Device::Cpu`) tensor: a large image's
/// logits may exceed what one device buffer can hold (a 2048 × 1024 image of 19 classes is
/// 152 MiB). Where one window covers the image this is `forward(x)` itself, on its device.
pub fn window_logits(
    x: &Tensor,
    win: Window,
    mut forward: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let &[1, _, h, w] = x.dims() else {
        return Err(Error::shape(
            "window",
            format!("expects one image [1, 3, H, W], got {}", x.shape()),
        ));
    };
    let (ys, xs) = (
        Window::starts(h, win.h, win.overlap),
        Window::starts(w, win.w, win.overlap),
    );
    if ys.len() == 1 && xs.len() == 1 {
        return forward(x);
    }
    let (wh, ww) = (win.h.min(h), win.w.min(w));
    let mut sum: Vec<f32> = Vec::new();
    let mut count = vec![0u32; h * w];
    let mut classes = 0;
    for &y0 in &ys {
        for &x0 in &xs {
            let crop = x.narrow(2, y0, wh)?.narrow(3, x0, ww)?;
            let logits = forward(&crop)?;
            let &[1, c, lh, lw] = logits.dims() else {
                return Err(Error::shape(
                    "window",
                    format!("the network returned {} for a window", logits.shape()),
                ));
            };
            if (lh, lw) != (wh, ww) || (classes != 0 && c != classes) {
                return Err(Error::shape(
                    "window",
                    format!(
                        "the network returned {} for a {wh}×{ww} window",
                        logits.shape()
                    ),
                ));
            }
            if classes == 0 {
                classes = c;
                sum = vec![0.0; c * h * w];
            }
            let v = logits.to_vec()?;
            for k in 0..c {
                for r in 0..wh {
                    let src = &v[(k * wh + r) * ww..][..ww];
                    let dst = &mut sum[(k * h + y0 + r) * w + x0..][..ww];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
            for r in 0..wh {
                count[(y0 + r) * w + x0..][..ww]
                    .iter_mut()
                    .for_each(|n| *n += 1);
            }
        }
    }
    for k in 0..classes {
        for (s, &n) in sum[k * h * w..][..h * w].iter_mut().zip(&count) {
            *s /= n as f32;
        }
    }
    Tensor::from_vec(sum, [1, classes, h, w], &Device::Cpu)
}
