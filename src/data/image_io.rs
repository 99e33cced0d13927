//! Image and label I/O, resizing, and the palette helpers of `wgseg infer`.
//!
//! Images are decoded with the `image` crate (PNG, JPEG; alpha dropped, 16-bit reduced to
//! 8). Labels are decoded with the `png` crate *without* palette expansion, so that a
//! paletted label yields its palette indices (the class ids), never colours; 1/2/4-bit
//! grey or paletted labels are unpacked to one byte per pixel.

use std::io::BufReader;
use std::path::Path;

use super::{bad, io_err, scaled_dim, DatasetInfo, Sample};
use crate::error::{Error, Result};

/// Decodes an image file (PNG or JPEG, any size, format sniffed from the content) to 8-bit
/// RGB, HWC. Returns `(pixels, height, width)`; errors name the file.
pub fn load_image(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let reader = image::ImageReader::open(path)
        .map_err(io_err(path))?
        .with_guessed_format()
        .map_err(io_err(path))?;
    let img = reader
        .decode()
        .map_err(|e| bad(path, format!("cannot decode image: {e}")))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(bad(path, "image has no pixels"));
    }
    Ok((rgb.into_raw(), h, w))
}

/// Decodes a label PNG to one class id per pixel: 8-bit (or 1/2/4-bit) grey values, or the
/// palette indices of a paletted PNG. RGB, grey+alpha and 16-bit labels are errors.
/// Returns `(ids, height, width)`.
pub fn load_label(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(path, format!("cannot decode label PNG: {e}")))?;
    let (color, depth) = reader.output_color_type();
    match color {
        png::ColorType::Grayscale | png::ColorType::Indexed => {}
        png::ColorType::Rgb | png::ColorType::Rgba => {
            return Err(bad(
                path,
                "label is an RGB image (colours), not class ids: save labels as single-channel \
                 8-bit PNGs of ids 0..C-1 (ignore = 255), or as paletted PNGs",
            ))
        }
        png::ColorType::GrayscaleAlpha => {
            return Err(bad(
                path,
                "label has an alpha channel: save labels as single-channel 8-bit PNGs of ids",
            ))
        }
    }
    let bits = match depth {
        png::BitDepth::One => 1,
        png::BitDepth::Two => 2,
        png::BitDepth::Four => 4,
        png::BitDepth::Eight => 8,
        png::BitDepth::Sixteen => {
            return Err(bad(
                path,
                "label is a 16-bit PNG: save labels as 8-bit single-channel PNGs of ids",
            ))
        }
    };
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad(path, "label PNG is too large"))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(path, format!("cannot decode label PNG: {e}")))?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    if w == 0 || h == 0 {
        return Err(bad(path, "label has no pixels"));
    }
    let mut ids = Vec::with_capacity(w * h);
    let per_byte = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    for y in 0..h {
        let row = &buf[y * line..(y + 1) * line];
        if bits == 8 {
            ids.extend_from_slice(&row[..w]);
        } else {
            for x in 0..w {
                let byte = row[x / per_byte];
                let shift = 8 - bits * (x % per_byte + 1);
                ids.push((byte >> shift) & mask);
            }
        }
    }
    Ok((ids, h, w))
}

fn save_png(path: &Path, w: usize, h: usize, data: &[u8], channels: usize) -> Result<()> {
    if data.len() != w * h * channels {
        return Err(bad(
            path,
            format!(
                "cannot save a {h}×{w} image with {channels} channel(s) from {} bytes",
                data.len()
            ),
        ));
    }
    let (wu, hu) = (
        u32::try_from(w).map_err(|_| bad(path, "image too wide"))?,
        u32::try_from(h).map_err(|_| bad(path, "image too tall"))?,
    );
    let color = if channels == 3 {
        image::ExtendedColorType::Rgb8
    } else {
        image::ExtendedColorType::L8
    };
    image::save_buffer_with_format(path, data, wu, hu, color, image::ImageFormat::Png).map_err(
        |e| match e {
            image::ImageError::IoError(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            other => bad(path, format!("cannot write PNG: {other}")),
        },
    )
}

/// Writes an 8-bit RGB (HWC) PNG.
pub fn save_png_rgb(path: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<()> {
    save_png(path, w, h, rgb, 3)
}

/// Writes an 8-bit single-channel PNG (e.g. predicted class ids).
pub fn save_png_gray(path: &Path, w: usize, h: usize, gray: &[u8]) -> Result<()> {
    save_png(path, w, h, gray, 1)
}

/// Class ids → RGB with the dataset's colours; the ignore index and any id ≥ C are black.
pub fn colorize(label: &[u8], info: &DatasetInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() * 3);
    for &id in label {
        let c = info
            .classes
            .get(id as usize)
            .map(|c| c.color)
            .unwrap_or([0, 0, 0]);
        out.extend_from_slice(&c);
    }
    out
}

/// Alpha blend of two RGB images of the same size: `round((1 − α)·image + α·mask)` per
/// channel, `α` clamped to `[0, 1]` (`wgseg infer` uses 0.5 with a [`colorize`]d mask).
/// Extra bytes of the longer input are ignored.
pub fn overlay(image: &[u8], mask: &[u8], alpha: f32) -> Vec<u8> {
    let a = alpha.clamp(0.0, 1.0);
    image
        .iter()
        .zip(mask)
        .map(|(&i, &m)| {
            ((1.0 - a) * i as f32 + a * m as f32)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Source coordinate, lower index and weight of destination index `d` for a bilinear
/// resize with `align_corners = false`: `s = (d + 0.5)·src/dst − 0.5`, clamped to the edge.
pub(crate) fn bilinear_tap(d: usize, src: usize, dst: usize) -> (usize, usize, f32) {
    let s = ((d as f64 + 0.5) * src as f64 / dst as f64 - 0.5).max(0.0);
    let i0 = (s.floor() as usize).min(src - 1);
    let i1 = (i0 + 1).min(src - 1);
    (i0, i1, (s - i0 as f64).clamp(0.0, 1.0) as f32)
}

/// Bilinear resize (`align_corners = false`) of an 8-bit HWC image with `c` channels from
/// `h×w` to `nh×nw`, rounding to the nearest byte. At an exact factor of 0.5 it averages
/// 2×2 blocks; stronger downscaling samples (no area filter).
pub fn resize_bilinear(src: &[u8], h: usize, w: usize, c: usize, nh: usize, nw: usize) -> Vec<u8> {
    if (h, w) == (nh, nw) {
        return src.to_vec();
    }
    let xs: Vec<_> = (0..nw).map(|x| bilinear_tap(x, w, nw)).collect();
    let mut out = vec![0u8; nh * nw * c];
    for y in 0..nh {
        let (y0, y1, fy) = bilinear_tap(y, h, nh);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for k in 0..c {
                let p = |yy: usize, xx: usize| src[(yy * w + xx) * c + k] as f32;
                let v = bilerp(p(y0, x0), p(y0, x1), p(y1, x0), p(y1, x1), fx, fy);
                out[(y * nw + x) * c + k] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Source index of destination index `d` for a nearest-neighbour resize:
/// `min(floor((d + 0.5)·src/dst), src − 1)`.
pub(crate) fn nearest_tap(d: usize, src: usize, dst: usize) -> usize {
    (((d as f64 + 0.5) * src as f64 / dst as f64).floor() as usize).min(src - 1)
}

/// One bilinear sample from the four taps: `(p00·(1 − fx) + p01·fx)·(1 − fy) + (p10·(1 − fx)
/// + p11·fx)·fy`, the arithmetic of [`resize_bilinear`] without the rounding.
#[inline]
pub(crate) fn bilerp(p00: f32, p01: f32, p10: f32, p11: f32, fx: f32, fy: f32) -> f32 {
    let top = p00 * (1.0 - fx) + p01 * fx;
    let bot = p10 * (1.0 - fx) + p11 * fx;
    top * (1.0 - fy) + bot * fy
}

/// Bilinear resize (`align_corners = false`, the taps of [`resize_bilinear`]) of `c` planes
/// of f32 (CHW order, e.g. a normalised image) from `h×w` to `nh×nw`; no rounding. The
/// identity when the size does not change.
pub fn resize_bilinear_f32(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    nh: usize,
    nw: usize,
) -> Vec<f32> {
    if (h, w) == (nh, nw) {
        return src.to_vec();
    }
    let xs: Vec<_> = (0..nw).map(|x| bilinear_tap(x, w, nw)).collect();
    let mut out = vec![0f32; c * nh * nw];
    for k in 0..c {
        let plane = &src[k * h * w..(k + 1) * h * w];
        for y in 0..nh {
            let (y0, y1, fy) = bilinear_tap(y, h, nh);
            for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
                let p = |yy: usize, xx: usize| plane[yy * w + xx];
                out[(k * nh + y) * nw + x] =
                    bilerp(p(y0, x0), p(y0, x1), p(y1, x0), p(y1, x1), fx, fy);
            }
        }
    }
    out
}

/// Nearest-neighbour resize of an `h×w` label map to `nh×nw`:
/// `src = min(floor((dst + 0.5)·src_size/dst_size), src_size − 1)`.
pub fn resize_nearest(src: &[u8], h: usize, w: usize, nh: usize, nw: usize) -> Vec<u8> {
    if (h, w) == (nh, nw) {
        return src.to_vec();
    }
    let xs: Vec<usize> = (0..nw).map(|x| nearest_tap(x, w, nw)).collect();
    let mut out = Vec::with_capacity(nh * nw);
    for y in 0..nh {
        let row = &src[nearest_tap(y, h, nh) * w..];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// Resizes a sample to `nh×nw` (bilinear image, nearest label).
pub fn resize_sample(s: &Sample, nh: usize, nw: usize) -> Sample {
    Sample {
        image: resize_bilinear(&s.image, s.height, s.width, 3, nh, nw),
        label: resize_nearest(&s.label, s.height, s.width, nh, nw),
        height: nh,
        width: nw,
    }
}

/// Applies the load-time base scale (`round(h·scale) × round(w·scale)`, at least 1).
pub fn scale_sample(s: Sample, scale: f32) -> Sample {
    if scale == 1.0 {
        return s;
    }
    let (nh, nw) = (scaled_dim(s.height, scale), scaled_dim(s.width, scale));
    resize_sample(&s, nh, nw)
}

/// Loads an image and its label, checks the sizes match and every id is `< classes` or the
/// ignore index (after `map`, if any, is applied to the raw label values), then scales.
pub fn load_pair(
    image: &Path,
    label: &Path,
    info: &DatasetInfo,
    map: Option<&[u8; 256]>,
    scale: f32,
) -> Result<Sample> {
    let (img, h, w) = load_image(image)?;
    let (mut ids, lh, lw) = load_label(label)?;
    if (lh, lw) != (h, w) {
        return Err(bad(
            label,
            format!(
                "label is {lh}×{lw} (H×W) but its image {} is {h}×{w}",
                image.display()
            ),
        ));
    }
    // The values as stored, for the error message when a mapped one is not a class.
    let raw = map.map(|_| ids.clone());
    if let Some(map) = map {
        for v in ids.iter_mut() {
            *v = map[*v as usize];
        }
    }
    let c = info.classes.len();
    if let Some(pos) = ids
        .iter()
        .position(|&v| v as usize >= c && v != info.ignore_index)
    {
        let v = ids[pos];
        let count = ids
            .iter()
            .filter(|&&u| u as usize >= c && u != info.ignore_index)
            .count();
        let stored = raw
            .as_ref()
            .map(|r| format!("label value {} (mapped to {v})", r[pos]))
            .unwrap_or_else(|| format!("class id {v}"));
        return Err(bad(
            label,
            format!(
                "{stored} at (y {}, x {}) is not a class (ids 0..{}) nor the ignore index {} \
                 ({count} such pixels)",
                pos / w,
                pos % w,
                c - 1,
                info.ignore_index
            ),
        ));
    }
    Ok(scale_sample(
        Sample {
            image: img,
            label: ids,
            height: h,
            width: w,
        },
        scale,
    ))
}
