//! Bilinear resize of `[N, C, H, W]` images, exactly PyTorch's
//! `F.interpolate(x, size=(out_h, out_w), mode='bilinear', align_corners=…)`.
//!
//! Per axis (H and W independently), output position `d` reads the source coordinate
//!
//! * `align_corners = false`: `src = max((d + 0.5)·in/out − 0.5, 0)` (half-pixel centres),
//! * `align_corners = true`: `src = d·(in − 1)/(out − 1)` (`0` when `out = 1`),
//!
//! with taps `i0 = ⌊src⌋`, `i1 = min(i0 + 1, in − 1)` and `λ = src − i0`:
//! `y[d] = (1 − λ)·x[i0] + λ·x[i1]`, applied along H then W. The op is linear in `x`, so its
//! gradient is the transpose: every input pixel receives `g[dy, dx]·w_y·w_x` from each output
//! whose taps touch it. On the GPU this is a gather (one thread per input pixel loops over the
//! ≈ (2·out/in + 3)² outputs that can touch it and recomputes their taps; no atomics); the
//! CPU reference scatters, so the two formulations check each other. The backward output
//! carries no history (no double backward).

use std::sync::Arc;

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, GpuContext, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ResizeParams {
    pub(crate) n: u32,
    pub(crate) ih: u32,
    pub(crate) iw: u32,
    pub(crate) oh: u32,
    pub(crate) ow: u32,
    pub(crate) scale_h: f32,
    pub(crate) scale_w: f32,
    pub(crate) _pad: u32,
}

/// PyTorch's `area_pixel_compute_scale` for an explicit output size.
fn scale(len_in: usize, len_out: usize, align_corners: bool) -> f64 {
    if align_corners {
        if len_out > 1 {
            (len_in - 1) as f64 / (len_out - 1) as f64
        } else {
            0.0
        }
    } else {
        len_in as f64 / len_out as f64
    }
}

/// The taps `(i0, i1, λ)` of every output position along one axis.
fn axis_taps(len_in: usize, len_out: usize, align_corners: bool) -> Vec<(usize, usize, f64)> {
    let s = scale(len_in, len_out, align_corners);
    (0..len_out)
        .map(|d| {
            let src = if align_corners {
                d as f64 * s
            } else {
                ((d as f64 + 0.5) * s - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(len_in - 1);
            (i0, (i0 + 1).min(len_in - 1), src - i0 as f64)
        })
        .collect()
}

/// The `[N·C, H, W]` planes of `x` and the output size, checked.
fn dims(op: &'static str, x: &Tensor, size: (usize, usize)) -> Result<(usize, usize, usize)> {
    x.expect_dtype(op, DType::F32)?;
    let &[n, c, h, w] = x.dims() else {
        return Err(Error::shape(
            op,
            format!("expected an [N, C, H, W] input, got {}", x.shape()),
        ));
    };
    if h == 0 || w == 0 || size.0 == 0 || size.1 == 0 {
        return Err(Error::shape(
            op,
            format!("cannot resize {} to {size:?}: empty planes", x.shape()),
        ));
    }
    let big = x.numel().max(n * c * size.0 * size.1);
    if big > u32::MAX as usize {
        return Err(Error::Limit {
            what: format!("{op} elements of {} resized to {size:?}", x.shape()),
            requested: big as u64,
            max: u64::from(u32::MAX),
        });
    }
    Ok((n * c, h, w))
}

/// The sizes and scales of a resize (`n` zero: set per launch).
fn params((ih, iw, oh, ow): (usize, usize, usize, usize), align_corners: bool) -> ResizeParams {
    ResizeParams {
        n: 0,
        ih: ih as u32,
        iw: iw as u32,
        oh: oh as u32,
        ow: ow as u32,
        scale_h: scale(ih, oh, align_corners) as f32,
        scale_w: scale(iw, ow, align_corners) as f32,
        _pad: 0,
    }
}

/// Launches one `resize.wgsl` entry over `n` threads.
fn launch(
    entry: &'static str,
    n: usize,
    (ih, iw, oh, ow): (usize, usize, usize, usize),
    align_corners: bool,
    input: &GpuBuf,
) -> Result<GpuBuf> {
    let ctx = input.context();
    let out = ctx.alloc_storage(n)?;
    let p = ResizeParams {
        n: n as u32,
        ..params((ih, iw, oh, ow), align_corners)
    };
    let k = Kernel::new(Shader::Resize, entry)
        .with("WG", ELEMENTWISE_WG)
        .with("ALIGN_CORNERS", u32::from(align_corners));
    launch_reading(ctx, k, &p, input, &out, n)?;
    Ok(out)
}

/// Launches `k` over `threads` threads reading `input` into `out`.
fn launch_reading(
    ctx: &Arc<GpuContext>,
    k: Kernel,
    p: &ResizeParams,
    input: &GpuBuf,
    out: &GpuBuf,
    threads: usize,
) -> Result<()> {
    ctx.launch(&k, p, &[input], &[out], groups_for(threads, ELEMENTWISE_WG))
}

/// Bilinear resize to `(out_h, out_w)`, `[N, C, H, W] → [N, C, out_h, out_w]` (see the
/// module docs for the formula and the gradient).
pub fn interpolate_bilinear(
    x: &Tensor,
    size: (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    let (nc, h, w) = dims("interpolate_bilinear", x, size)?;
    let (oh, ow) = size;
    let storage = match x.storage() {
        Storage::Cpu(v) => {
            let ty = axis_taps(h, oh, align_corners);
            let tx = axis_taps(w, ow, align_corners);
            let mut out = Vec::with_capacity(nc * oh * ow);
            for plane in 0..nc {
                let at = |yy: usize, xx: usize| v[(plane * h + yy) * w + xx];
                for &(y0, y1, ly) in &ty {
                    for &(x0, x1, lx) in &tx {
                        let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                        let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                        out.push((1.0 - ly) * top + ly * bottom);
                    }
                }
            }
            Storage::Cpu(out)
        }
        Storage::Gpu(b) if ow % 4 == 0 && ow >= w => {
            // Upsampling along W, rows of whole vec4: 4 outputs per thread.
            let ctx = b.context();
            let out = ctx.alloc_storage(nc * oh * ow)?;
            let threads = nc * oh * ow / 4;
            let p = ResizeParams {
                n: threads as u32,
                ..params((h, w, oh, ow), align_corners)
            };
            let k = Kernel::new(Shader::Resize, "interpolate_bilinear4")
                .with("WG", ELEMENTWISE_WG)
                .with("ALIGN_CORNERS", u32::from(align_corners));
            launch_reading(ctx, k, &p, b, &out, threads)?;
            Storage::Gpu(out)
        }
        Storage::Gpu(b) => Storage::Gpu(launch(
            "interpolate_bilinear",
            nc * oh * ow,
            (h, w, oh, ow),
            align_corners,
            b,
        )?),
    };
    let (n, c) = (x.dims()[0], x.dims()[1]);
    Ok(Tensor::from_op(
        storage,
        Shape(vec![n, c, oh, ow]),
        DType::F32,
        Op::InterpolateBilinear { align_corners },
        vec![x.clone()],
    ))
}

/// Backward of `interpolate_bilinear`: the transpose of the interpolation applied to `g`.
pub(crate) fn interpolate_bilinear_backward(
    align_corners: bool,
    x: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let &[_, _, oh, ow] = g.dims() else {
        return Err(Error::shape(
            "interpolate_bilinear_backward",
            format!("expected an [N, C, H, W] gradient, got {}", g.shape()),
        ));
    };
    let (nc, h, w) = dims("interpolate_bilinear_backward", x, (oh, ow))?;
    let storage = match g.storage() {
        Storage::Cpu(gv) => {
            let ty = axis_taps(h, oh, align_corners);
            let tx = axis_taps(w, ow, align_corners);
            let mut dx = vec![0.0; nc * h * w];
            let mut o = 0;
            for plane in 0..nc {
                for &(y0, y1, ly) in &ty {
                    for &(x0, x1, lx) in &tx {
                        let gv = gv[o];
                        o += 1;
                        for (yy, wy) in [(y0, 1.0 - ly), (y1, ly)] {
                            for (xx, wx) in [(x0, 1.0 - lx), (x1, lx)] {
                                dx[(plane * h + yy) * w + xx] += gv * wy * wx;
                            }
                        }
                    }
                }
            }
            Storage::Cpu(dx)
        }
        Storage::Gpu(gb) if oh >= 2 * h => {
            // Upsampling: the separable transpose, along W then along H.
            let t = launch(
                "interpolate_bilinear_backward_w",
                nc * oh * w,
                (h, w, oh, ow),
                align_corners,
                gb,
            )?;
            Storage::Gpu(launch(
                "interpolate_bilinear_backward_h",
                nc * h * w,
                (h, w, oh, ow),
                align_corners,
                &t,
            )?)
        }
        Storage::Gpu(gb) => Storage::Gpu(launch(
            "interpolate_bilinear_backward",
            nc * h * w,
            (h, w, oh, ow),
            align_corners,
            gb,
        )?),
    };
    Ok(Tensor::from_storage(storage, x.shape().clone(), DType::F32))
}

impl Tensor {
    pub fn interpolate_bilinear(
        &self,
        size: (usize, usize),
        align_corners: bool,
    ) -> Result<Tensor> {
        interpolate_bilinear(self, size, align_corners)
    }
}
