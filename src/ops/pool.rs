//! 2-D pooling over `[N, C, H, W]`: `max_pool2d`, `avg_pool2d` and `global_avg_pool2d`,
//! with PyTorch semantics, including its `ceil_mode` and `count_include_pad` options.
//!
//! Output size per axis, with `span = in + 2·pad − k`:
//!
//! * floor mode (`ceil_mode = false`, the default): `out = ⌊span / s⌋ + 1`, and `span ≥ 0`
//!   (the kernel fits in the padded input);
//! * ceil mode: `out = ⌈span / s⌉ + 1` (`span` may be negative, as in PyTorch, as long as
//!   `out ≥ 1`), then PyTorch's rule that the last window must start inside the input or
//!   the left padding: if `(out − 1)·s ≥ in + pad` then `out −= 1`. The last window may then
//!   hang past the right padding; it is clipped.
//!
//! Padding must be at most half the kernel (PyTorch's rule); with the ceil-mode rule above,
//! every window then holds at least one input element.
//!
//! Window `o` along an axis starts at `o·s − pad` and ends at `min(o·s − pad + k, in + pad)`
//! (its padded extent `e`); the inputs it reads are that range clipped to `[0, in)` (`c`
//! elements).
//!
//! * `max_pool2d`: `y = max` over the window, padding acting as −∞. The forward pass also
//!   saves the argmax (flat index `iy·W + ix` within the input plane, first maximum in
//!   row-major window order among ties) in a `U32` tensor; the gradient flows only to it:
//!   `∂x[p] = Σ_{windows o with argmax(o) = p} g[o]`.
//! * `avg_pool2d`: `y = Σ_window x / d` with `d = e_h·e_w` when `count_include_pad` (the
//!   default; `kh·kw` in floor mode) and `d = c_h·c_w` (the in-bounds elements) otherwise;
//!   `∂x[p] = Σ_{o ∋ p} g[o] / d(o)`.
//!
//! Both backward passes are gathers on the GPU (one thread per input pixel loops over the
//! ≤ ⌈kh/sh⌉·⌈kw/sw⌉ windows that contain it; no atomics). The CPU reference scatters instead,
//! so the two formulations check each other. The backward kernels' outputs carry no history
//! (no double backward).
//!
//! `max_unpool2d(x, indices, geom, (H, W))` (PyTorch's `F.max_unpool2d`, for SegNet's
//! decoder) puts each pooled value back where `max_pool2d_with_indices` found it:
//! `x [N, C, OH, OW]` and its `indices` (`U32`, same shape, flat `iy·W + ix` within each
//! `H × W` plane) scatter into a zero `[N, C, H, W]`: `y[n, c, indices[n, c, q]] = x[n, c, q]`,
//! every other output 0; `∂x[q] = g[n, c, indices[q]]` (a gather; the indices get no
//! gradient). Only non-overlapping windows without padding are supported (`kernel = stride`,
//! `padding = 0`, floor mode), and `(H, W)` is given explicitly so that odd pre-pool sizes
//! round-trip; it must pool back to the input's size (`OH = ⌊H / sh⌋`, `OW = ⌊W / sw⌋`).
//! Every index must lie inside its own window, as the pooling's do. On the GPU the forward is
//! a gather (one thread per output pixel reads the index of the window it lies in, if any,
//! and takes the window's value when the index names it, else 0: zeroing and filling in one
//! pass, no atomics) and so is the backward (one thread per pooled element); the CPU
//! reference scatters, so the two formulations check each other. An index outside its window
//! (or `≥ H·W`) is an error on the CPU; the GPU cannot check without a read-back, and never
//! follows it: the kernels read only a pixel's own window, so the value is dropped and its
//! gradient is 0, and no access goes out of bounds.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

/// A 2-D pooling window: kernel size, stride and padding (−∞ for max, zeros for avg), each
/// as `(h, w)`, and PyTorch's options.
///
/// `Pool2d::new(k, s, p)` has PyTorch's defaults (`ceil_mode = false`,
/// `count_include_pad = true`); the builder methods change them:
/// `Pool2d::new((3, 3), (2, 2), (1, 1)).ceil_mode(true).count_include_pad(false)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Round the output size up instead of down (see the module docs).
    pub ceil_mode: bool,
    /// `avg_pool2d` only: divide by the window's padded extent (`true`) or by the number of
    /// in-bounds elements it covers (`false`). `max_pool2d` rejects `false`.
    pub count_include_pad: bool,
}

/// The sizes a pooling kernel works on: `nc` planes of `h × w` pooled to `oh × ow`.
#[derive(Clone, Copy, Debug)]
struct Dims {
    nc: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Pool2d {
    /// A window with PyTorch's default options (floor mode, padding counted by `avg_pool2d`).
    pub fn new(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Self {
        Pool2d {
            kernel,
            stride,
            padding,
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Sets PyTorch's `ceil_mode`.
    pub fn ceil_mode(self, on: bool) -> Self {
        Pool2d {
            ceil_mode: on,
            ..self
        }
    }

    /// Sets PyTorch's `count_include_pad` (`avg_pool2d` only).
    pub fn count_include_pad(self, on: bool) -> Self {
        Pool2d {
            count_include_pad: on,
            ..self
        }
    }

    /// Output length along one axis (see the module docs); `None` when no window fits.
    fn out_len(&self, len: usize, k: usize, s: usize, pad: usize) -> Option<usize> {
        let padded = len + 2 * pad;
        if padded >= k {
            let span = padded - k;
            if !self.ceil_mode {
                return Some(span / s + 1);
            }
            let out = span.div_ceil(s) + 1;
            // PyTorch: the last window must start inside the input or the left padding.
            Some(if (out - 1) * s >= len + pad {
                out - 1
            } else {
                out
            })
        } else if self.ceil_mode && k - padded < s {
            // ⌈span / s⌉ = 0 for −s < span < 0: one window, starting at −pad < len.
            Some(1)
        } else {
            None
        }
    }

    /// Checks `x` (rank 4, `F32`, non-empty planes) and the window against PyTorch's rules.
    fn dims(&self, op: &'static str, x: &Tensor) -> Result<Dims> {
        x.expect_dtype(op, DType::F32)?;
        let &[n, c, h, w] = x.dims() else {
            return Err(Error::shape(
                op,
                format!("expected an [N, C, H, W] input, got {}", x.shape()),
            ));
        };
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {:?} and stride {:?} must be positive",
                    self.kernel, self.stride
                ),
            ));
        }
        if 2 * ph > kh || 2 * pw > kw {
            return Err(Error::shape(
                op,
                format!(
                    "padding {:?} must be at most half of kernel {:?}",
                    self.padding, self.kernel
                ),
            ));
        }
        if h == 0 || w == 0 {
            return Err(Error::shape(op, format!("empty planes in {}", x.shape())));
        }
        let (Some(oh), Some(ow)) = (self.out_len(h, kh, sh, ph), self.out_len(w, kw, sw, pw))
        else {
            return Err(Error::shape(
                op,
                format!(
                    "input {} with padding {:?} is smaller than kernel {:?} (ceil_mode {})",
                    x.shape(),
                    self.padding,
                    self.kernel,
                    self.ceil_mode
                ),
            ));
        };
        let d = Dims {
            nc: n * c,
            h,
            w,
            oh,
            ow,
        };
        if x.numel() > u32::MAX as usize || d.nc * d.oh * d.ow > u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("{op} elements of {}", x.shape()),
                requested: x.numel() as u64,
                max: u64::from(u32::MAX),
            });
        }
        Ok(d)
    }

    /// Input range `[start, end)` of output `o` along one axis, clipped to `[0, len)`, and
    /// PyTorch's `count_include_pad` extent (the window clipped to `[−pad, len + pad)`).
    /// Every window starts before `len` and ends after `0` (see `dims`), so `start < end`.
    fn window(o: usize, k: usize, s: usize, pad: usize, len: usize) -> (usize, usize, usize) {
        let start = (o * s) as isize - pad as isize;
        let padded_end = (start + k as isize).min((len + pad) as isize);
        let end = (start + k as isize).min(len as isize);
        (
            start.max(0) as usize,
            end as usize,
            (padded_end - start) as usize,
        )
    }

    /// Checks `max_unpool2d`'s operands: `x` (`F32`, `[N, C, OH, OW]`, non-empty planes),
    /// `indices` (`U32`, the same shape and device), a window with `kernel = stride`, no
    /// padding and floor mode, and an output size `(H, W)` that pools back to `OH × OW`.
    /// The returned sizes are the pooling's: `h × w` unpooled, `oh × ow` pooled.
    fn unpool_dims(
        &self,
        op: &'static str,
        x: &Tensor,
        indices: &Tensor,
        (h, w): (usize, usize),
    ) -> Result<Dims> {
        x.expect_dtype(op, DType::F32)?;
        let &[n, c, oh, ow] = x.dims() else {
            return Err(Error::shape(
                op,
                format!("expected an [N, C, H, W] input, got {}", x.shape()),
            ));
        };
        if indices.dtype() != DType::U32 {
            return Err(Error::shape(
                op,
                format!(
                    "indices must be U32 (as max_pool2d_with_indices returns them), got {:?} \
                     with shape {}",
                    indices.dtype(),
                    indices.shape()
                ),
            ));
        }
        if indices.dims() != x.dims() {
            return Err(Error::shape(
                op,
                format!(
                    "indices {} must have the shape of x {}",
                    indices.shape(),
                    x.shape()
                ),
            ));
        }
        same_device(op, &[x, indices])?;
        if self.kernel.0 == 0 || self.kernel.1 == 0 || self.kernel != self.stride {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {:?} must equal stride {:?} and be positive (non-overlapping \
                     windows only)",
                    self.kernel, self.stride
                ),
            ));
        }
        if self.padding != (0, 0) {
            return Err(Error::shape(
                op,
                format!(
                    "padding {:?} is not supported (it must be (0, 0))",
                    self.padding
                ),
            ));
        }
        if self.ceil_mode || !self.count_include_pad {
            return Err(Error::shape(
                op,
                format!("ceil_mode and count_include_pad = false are not supported ({self:?})"),
            ));
        }
        let (sh, sw) = self.stride;
        if oh == 0 || ow == 0 || oh != h / sh || ow != w / sw {
            return Err(Error::shape(
                op,
                format!(
                    "output size {h}×{w} does not pool back to x {} with kernel = stride \
                     {:?}: ⌊{h}/{sh}⌋×⌊{w}/{sw}⌋ = {}×{}, need {oh}×{ow} (non-empty)",
                    x.shape(),
                    self.stride,
                    h / sh,
                    w / sw
                ),
            ));
        }
        let d = Dims {
            nc: n * c,
            h,
            w,
            oh,
            ow,
        };
        let n_out =
            d.nc.checked_mul(h)
                .and_then(|v| v.checked_mul(w))
                .unwrap_or(usize::MAX);
        if n_out > u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("{op} elements of [{n}, {c}, {h}, {w}]"),
                requested: n_out as u64,
                max: u64::from(u32::MAX),
            });
        }
        Ok(d)
    }
}

/// Whether flat index `k` lies inside pooled element `o`'s window (`o` counted within its
/// plane) for non-overlapping windows of stride `s`; false for `k ≥ h·w`.
fn in_own_window(k: usize, o: usize, d: Dims, s: (usize, usize)) -> bool {
    k < d.h * d.w && (k / d.w) / s.0 == o / d.ow && (k % d.w) / s.1 == o % d.ow
}

/// The error for an index outside its window (the CPU reference's check of the contract).
fn bad_index(op: &'static str, k: usize, q: usize, d: Dims, geom: &Pool2d) -> Error {
    let o = q % (d.oh * d.ow);
    Error::shape(
        op,
        format!(
            "index {k} at flat position {q} of the indices lies outside its window \
             ({}, {}) of kernel {:?} in a {}×{} plane",
            o / d.ow,
            o % d.ow,
            geom.kernel,
            d.h,
            d.w
        ),
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PoolParams {
    pub(crate) n: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) oh: u32,
    pub(crate) ow: u32,
    pub(crate) kh: u32,
    pub(crate) kw: u32,
    pub(crate) sh: u32,
    pub(crate) sw: u32,
    pub(crate) ph: u32,
    pub(crate) pw: u32,
    pub(crate) _pad: u32,
}

impl PoolParams {
    fn new(n: usize, d: Dims, g: &Pool2d) -> Self {
        PoolParams {
            n: n as u32,
            h: d.h as u32,
            w: d.w as u32,
            oh: d.oh as u32,
            ow: d.ow as u32,
            kh: g.kernel.0 as u32,
            kw: g.kernel.1 as u32,
            sh: g.stride.0 as u32,
            sw: g.stride.1 as u32,
            ph: g.padding.0 as u32,
            pw: g.padding.1 as u32,
            _pad: 0,
        }
    }
}

/// Launches one `pool.wgsl` entry over `n` threads (see the shader for the binding roles).
/// `COUNT_PAD` specialises the average-pooling divisor (unused by the max entries, which
/// always get `1` so they share one pipeline).
fn launch(
    entry: &'static str,
    geom: &Pool2d,
    p: &PoolParams,
    inputs: &[&GpuBuf],
    outputs: &[&GpuBuf],
) -> Result<()> {
    let ctx = inputs[0].context();
    ctx.launch(
        &Kernel::new(Shader::Pool, entry)
            .with("WG", ELEMENTWISE_WG)
            .with("COUNT_PAD", u32::from(geom.count_include_pad)),
        p,
        inputs,
        outputs,
        groups_for(p.n as usize, ELEMENTWISE_WG),
    )
}

fn out_shape(x: &Tensor, d: Dims) -> Shape {
    Shape(vec![x.dims()[0], x.dims()[1], d.oh, d.ow])
}

/// Calls `f(plane, oy, ox, (y0, y1), (x0, x1), divisor)` for every output window; the
/// divisor is the average-pooling one (padded extent or in-bounds count, per
/// `count_include_pad`).
fn for_each_window(
    d: Dims,
    g: &Pool2d,
    mut f: impl FnMut(usize, usize, usize, (usize, usize), (usize, usize), usize),
) {
    for plane in 0..d.nc {
        for oy in 0..d.oh {
            let (y0, y1, dy) = Pool2d::window(oy, g.kernel.0, g.stride.0, g.padding.0, d.h);
            for ox in 0..d.ow {
                let (x0, x1, dx) = Pool2d::window(ox, g.kernel.1, g.stride.1, g.padding.1, d.w);
                let div = if g.count_include_pad {
                    dy * dx
                } else {
                    (y1 - y0) * (x1 - x0)
                };
                f(plane, oy, ox, (y0, y1), (x0, x1), div);
            }
        }
    }
}

/// Max pooling and its argmax indices (`U32`, flat within each input `H × W` plane, like
/// PyTorch's `return_indices=True`). The output alone is differentiable.
pub fn max_pool2d_with_indices(x: &Tensor, geom: Pool2d) -> Result<(Tensor, Tensor)> {
    if !geom.count_include_pad {
        return Err(Error::shape(
            "max_pool2d",
            format!("count_include_pad = false applies to avg_pool2d only ({geom:?})"),
        ));
    }
    let d = geom.dims("max_pool2d", x)?;
    let n_out = d.nc * d.oh * d.ow;
    let (vals, idx) = match x.storage() {
        Storage::Cpu(v) => {
            let (mut vals, mut idx) = (Vec::with_capacity(n_out), Vec::with_capacity(n_out));
            for_each_window(d, &geom, |plane, _, _, (y0, y1), (x0, x1), _| {
                let base = plane * d.h * d.w;
                let mut best = y0 * d.w + x0;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let k = yy * d.w + xx;
                        if v[base + k] > v[base + best] {
                            best = k;
                        }
                    }
                }
                vals.push(v[base + best]);
                idx.push(best as f64);
            });
            (Storage::Cpu(vals), Storage::Cpu(idx))
        }
        Storage::Gpu(b) => {
            let ctx = b.context();
            let (vals, idx) = (ctx.alloc_storage(n_out)?, ctx.alloc_storage(n_out)?);
            let p = PoolParams::new(n_out, d, &geom);
            launch("max_pool2d", &geom, &p, &[b, b], &[&vals, &idx])?;
            (Storage::Gpu(vals), Storage::Gpu(idx))
        }
    };
    let shape = out_shape(x, d);
    let indices = Tensor::from_storage(idx, shape.clone(), DType::U32);
    let out = Tensor::from_op(
        vals,
        shape,
        DType::F32,
        Op::MaxPool2d {
            geom,
            indices: indices.clone(),
        },
        vec![x.clone()],
    );
    Ok((out, indices))
}

/// Max pooling, `[N, C, H, W] → [N, C, OH, OW]` (see the module docs for the semantics).
/// `geom.count_include_pad = false` is an error (it is an average-pooling option).
pub fn max_pool2d(x: &Tensor, geom: Pool2d) -> Result<Tensor> {
    Ok(max_pool2d_with_indices(x, geom)?.0)
}

/// Average pooling, `[N, C, H, W] → [N, C, OH, OW]`:
/// `y = Σ_window x / d` with `d` per `geom.count_include_pad` (see the module docs).
pub fn avg_pool2d(x: &Tensor, geom: Pool2d) -> Result<Tensor> {
    let d = geom.dims("avg_pool2d", x)?;
    let n_out = d.nc * d.oh * d.ow;
    let storage = match x.storage() {
        Storage::Cpu(v) => {
            let mut out = Vec::with_capacity(n_out);
            for_each_window(d, &geom, |plane, _, _, (y0, y1), (x0, x1), div| {
                let base = plane * d.h * d.w;
                let s: f64 = (y0..y1)
                    .flat_map(|yy| (x0..x1).map(move |xx| base + yy * d.w + xx))
                    .map(|i| v[i])
                    .sum();
                out.push(s / div as f64);
            });
            Storage::Cpu(out)
        }
        Storage::Gpu(b) => {
            let out = b.context().alloc_storage(n_out)?;
            launch(
                "avg_pool2d",
                &geom,
                &PoolParams::new(n_out, d, &geom),
                &[b, b],
                &[&out],
            )?;
            Storage::Gpu(out)
        }
    };
    Ok(Tensor::from_op(
        storage,
        out_shape(x, d),
        DType::F32,
        Op::AvgPool2d(geom),
        vec![x.clone()],
    ))
}

/// Mean over each `H × W` plane, `[N, C, H, W] → [N, C, 1, 1]` (PyTorch's
/// `adaptive_avg_pool2d(x, 1)`), composed from `reshape` and `mean_axis`; the gradient is
/// `g / (H·W)` broadcast over the plane.
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    let &[n, c, h, w] = x.dims() else {
        return Err(Error::shape(
            "global_avg_pool2d",
            format!("expected an [N, C, H, W] input, got {}", x.shape()),
        ));
    };
    if h * w == 0 {
        return Err(Error::shape(
            "global_avg_pool2d",
            format!("empty planes in {}", x.shape()),
        ));
    }
    x.reshape([n, c, h * w])?
        .mean_axis(2, true)?
        .reshape([n, c, 1, 1])
}

/// Backward of `max_pool2d`: `∂x[p] = Σ_{o: indices[o] = p} g[o]` within each plane.
pub(crate) fn max_pool2d_backward(
    geom: &Pool2d,
    indices: &Tensor,
    x: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let d = geom.dims("max_pool2d_backward", x)?;
    const OP: &str = "max_pool2d_backward";
    let storage = match g.storage() {
        Storage::Cpu(gv) => {
            let iv = indices.cpu_data(OP)?;
            let mut dx = vec![0.0; x.numel()];
            let (plane_in, plane_out) = (d.h * d.w, d.oh * d.ow);
            for (o, (&gv, &iv)) in gv.iter().zip(iv).enumerate() {
                dx[(o / plane_out) * plane_in + iv as usize] += gv;
            }
            Storage::Cpu(dx)
        }
        Storage::Gpu(gb) => {
            let ib = indices.gpu_buf(OP)?;
            let dx = gb.context().alloc_storage(x.numel())?;
            // Rows of a multiple of 4 pixels: 4 per thread, each window read once.
            if d.w % 4 == 0 {
                let p = PoolParams::new(x.numel() / 4, d, geom);
                launch("max_pool2d_backward4", geom, &p, &[gb, ib], &[&dx])?;
            } else {
                let p = PoolParams::new(x.numel(), d, geom);
                launch(OP, geom, &p, &[gb, ib], &[&dx])?;
            }
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(storage, x.shape().clone(), DType::F32))
}

/// Backward of `avg_pool2d`: `∂x[p] = Σ_{windows o ∋ p} g[o] / d(o)`.
pub(crate) fn avg_pool2d_backward(geom: &Pool2d, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let d = geom.dims("avg_pool2d_backward", x)?;
    let storage = match g.storage() {
        Storage::Cpu(gv) => {
            let mut dx = vec![0.0; x.numel()];
            let mut o = 0;
            for_each_window(d, geom, |plane, _, _, (y0, y1), (x0, x1), div| {
                let share = gv[o] / div as f64;
                o += 1;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        dx[plane * d.h * d.w + yy * d.w + xx] += share;
                    }
                }
            });
            Storage::Cpu(dx)
        }
        Storage::Gpu(gb) => {
            let dx = gb.context().alloc_storage(x.numel())?;
            let p = PoolParams::new(x.numel(), d, geom);
            launch("avg_pool2d_backward", geom, &p, &[gb, gb], &[&dx])?;
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(storage, x.shape().clone(), DType::F32))
}

/// Max unpooling (PyTorch's `F.max_unpool2d`), `[N, C, OH, OW] → [N, C, H, W]`: each value
/// of `x` goes to the flat position its `indices` (`U32`, what [`max_pool2d_with_indices`]
/// returns) name within its `H × W` plane, every other output is 0 (see the module docs).
/// `geom` must have `kernel = stride`, no padding and floor mode, and `out_hw = (H, W)` must
/// pool back to `OH × OW`. Every index must lie in its own window: the CPU reference returns
/// an error otherwise; the GPU drops such a value (and gives it a zero gradient) without
/// reading or writing out of bounds. Differentiable in `x`; the indices get no gradient.
pub fn max_unpool2d(
    x: &Tensor,
    indices: &Tensor,
    geom: Pool2d,
    out_hw: (usize, usize),
) -> Result<Tensor> {
    const OP: &str = "max_unpool2d";
    let d = geom.unpool_dims(OP, x, indices, out_hw)?;
    let n_out = d.nc * d.h * d.w;
    let storage = match x.storage() {
        Storage::Cpu(xv) => {
            // The scatter formulation (the GPU gathers): y[plane, idx[q]] = x[q].
            let iv = indices.cpu_data(OP)?;
            let (plane_in, plane_out) = (d.h * d.w, d.oh * d.ow);
            let mut y = vec![0.0; n_out];
            for (q, (&v, &k)) in xv.iter().zip(iv).enumerate() {
                let k = k as usize;
                if !in_own_window(k, q % plane_out, d, geom.stride) {
                    return Err(bad_index(OP, k, q, d, &geom));
                }
                y[(q / plane_out) * plane_in + k] = v;
            }
            Storage::Cpu(y)
        }
        Storage::Gpu(b) => {
            let ib = indices.gpu_buf(OP)?;
            let y = b.context().alloc_storage(n_out)?;
            let p = PoolParams::new(n_out, d, &geom);
            launch(OP, &geom, &p, &[b, ib], &[&y])?;
            Storage::Gpu(y)
        }
    };
    Ok(Tensor::from_op(
        storage,
        Shape(vec![x.dims()[0], x.dims()[1], d.h, d.w]),
        DType::F32,
        Op::MaxUnpool2d {
            geom,
            indices: indices.clone(),
        },
        vec![x.clone()],
    ))
}

/// Backward of `max_unpool2d`: `∂x[q] = g[plane, indices[q]]` (a gather on both devices;
/// an index outside its window: an error on the CPU, 0 on the GPU).
pub(crate) fn max_unpool2d_backward(
    geom: &Pool2d,
    indices: &Tensor,
    x: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "max_unpool2d_backward";
    let &[_, _, h, w] = g.dims() else {
        return Err(Error::shape(
            OP,
            format!("expected an [N, C, H, W] gradient, got {}", g.shape()),
        ));
    };
    let d = geom.unpool_dims(OP, x, indices, (h, w))?;
    let storage = match g.storage() {
        Storage::Cpu(gv) => {
            let iv = indices.cpu_data(OP)?;
            let (plane_in, plane_out) = (d.h * d.w, d.oh * d.ow);
            let mut dx = Vec::with_capacity(x.numel());
            for (q, &k) in iv.iter().enumerate() {
                let k = k as usize;
                if !in_own_window(k, q % plane_out, d, geom.stride) {
                    return Err(bad_index(OP, k, q, d, geom));
                }
                dx.push(gv[(q / plane_out) * plane_in + k]);
            }
            Storage::Cpu(dx)
        }
        Storage::Gpu(gb) => {
            let ib = indices.gpu_buf(OP)?;
            let dx = gb.context().alloc_storage(x.numel())?;
            let p = PoolParams::new(x.numel(), d, geom);
            launch(OP, geom, &p, &[gb, ib], &[&dx])?;
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(storage, x.shape().clone(), DType::F32))
}

impl Tensor {
    /// [`max_pool2d`] with PyTorch's default options (floor mode).
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        max_pool2d(self, Pool2d::new(kernel, stride, padding))
    }
    /// [`avg_pool2d`] with PyTorch's default options (floor mode, `count_include_pad`).
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        avg_pool2d(self, Pool2d::new(kernel, stride, padding))
    }
    /// [`max_pool2d`] with explicit options (`ceil_mode`).
    pub fn max_pool2d_with(&self, geom: Pool2d) -> Result<Tensor> {
        max_pool2d(self, geom)
    }
    /// [`avg_pool2d`] with explicit options (`ceil_mode`, `count_include_pad`).
    pub fn avg_pool2d_with(&self, geom: Pool2d) -> Result<Tensor> {
        avg_pool2d(self, geom)
    }
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        global_avg_pool2d(self)
    }
    /// [`max_unpool2d`] of these pooled values with their `indices`, windows of `kernel`
    /// (which must equal `stride`, no padding), to an `out_hw` output plane.
    pub fn max_unpool2d(
        &self,
        indices: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        out_hw: (usize, usize),
    ) -> Result<Tensor> {
        max_unpool2d(self, indices, Pool2d::new(kernel, stride, (0, 0)), out_hw)
    }
}
