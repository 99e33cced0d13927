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
    let logits = segment_logits(image, h, w, scale, dev, forward)?;
    Ok(logits
        .argmax_axis(1, false)?
        .to_vec_u32()?
        .into_iter()
        .map(|v| v.min(254) as u8)
        .collect())
}
