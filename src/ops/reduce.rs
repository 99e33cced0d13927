//! Reductions along one axis (sum, mean, max, min, argmax) and over everything.
//!
//! The tensor is viewed as `[outer, r, inner]` around the axis. On the GPU every pass is
//! one `reduce_lanes` dispatch that splits the axis into `lanes` interleaved lanes
//! (`[outer, r, inner] → [outer, lanes, inner]`, neighbouring invocations reading
//! neighbouring addresses whether the axis is the contiguous one or not); passes repeat on
//! the partials until an axis of at most `LANE_LEN` is reduced with `lanes = 1`. No shared
//! memory, no barriers: an axis of `r` elements takes `⌈log_LANE_LEN r⌉` dispatches.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

/// Elements each lane (invocation) reduces per pass; an axis this short is reduced in one
/// final pass. Long enough that the loop amortises an invocation's index arithmetic and
/// the passes stay few, short enough to leave thousands of invocations on long axes.
/// Measured with `cargo bench -- "sum, 4M"` and `-- "sum over"` (lavapipe, 2 cores, load
/// ≈ 3–4, one interleaved sweep): 64 → 85 / 75 ms, 256 → 30 / 18 ms, 1024 → 19 / 25 ms.
/// 256 is best on the H·W row (the batch-norm pattern) and keeps 4× more invocations than
/// 1024 for real GPUs. (The old shared-memory tree: 350 / 352 ms in the same session.)
pub const LANE_LEN: usize = 256;

/// Lanes of the next pass over an axis of `r` elements: 1 (final) once `r ≤ LANE_LEN`.
/// Always `≤ r`, so every lane holds at least one element.
pub(crate) fn lanes_for(r: usize) -> usize {
    if r <= LANE_LEN {
        1
    } else {
        r.div_ceil(LANE_LEN)
    }
}

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
}

impl ReduceOp {
    fn code(self) -> u32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceParams {
    pub(crate) outputs: u32,
    pub(crate) r: u32,
    pub(crate) inner: u32,
    pub(crate) lanes: u32,
    pub(crate) scale: f32,
    pub(crate) in_offset: u32,
    pub(crate) _pad: [u32; 2],
}

fn out_shape(shape: &Shape, axis: usize, keepdim: bool) -> Shape {
    let mut d = shape.dims().to_vec();
    if keepdim {
        d[axis] = 1;
    } else {
        d.remove(axis);
    }
    Shape(d)
}

fn cpu_reduce(v: &[f64], (outer, r, inner): (usize, usize, usize), op: ReduceOp) -> Vec<f64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let it = (0..r).map(|k| v[(o * r + k) * inner + i]);
            out.push(match op {
                ReduceOp::Sum => it.sum(),
                ReduceOp::Mean => it.sum::<f64>() / r as f64,
                ReduceOp::Max => it.fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Min => it.fold(f64::INFINITY, f64::min),
            });
        }
    }
    out
}

/// Parameters of one lane pass over `[outer, r, inner]` with `lanes` lanes.
fn params((outer, r, inner): (usize, usize, usize), lanes: usize, scale: f32) -> ReduceParams {
    ReduceParams {
        outputs: (outer * lanes * inner) as u32,
        r: r as u32,
        inner: inner as u32,
        lanes: lanes as u32,
        scale,
        in_offset: 0,
        _pad: [0; 2],
    }
}

/// Runs lane passes over `[outer, r, inner]` until one value per output is left; `pass`
/// records one pass given the current source (`None`: the original input), the view and
/// the lane count, and returns its output.
fn lane_passes<T>(
    (outer, r, inner): (usize, usize, usize),
    mut pass: impl FnMut(Option<&T>, (usize, usize, usize), usize) -> Result<T>,
) -> Result<T> {
    let mut view = (outer, r, inner);
    let mut cur: Option<T> = None;
    loop {
        let lanes = lanes_for(view.1);
        let out = pass(cur.as_ref(), view, lanes)?;
        if lanes == 1 {
            return Ok(out);
        }
        cur = Some(out);
        view.1 = lanes;
    }
}

/// Sums `src[src_offset..]` viewed as `[outer, r, inner]` and writes the `outer · inner`
/// sums to the start of `dst` (which `src` may be: the first pass always writes a fresh
/// buffer and the last one reads a fresh buffer; nothing else of `dst` is touched).
pub(crate) fn gpu_sum_into(
    src: &GpuBuf,
    src_offset: usize,
    (outer, r, inner): (usize, usize, usize),
    dst: &GpuBuf,
) -> Result<()> {
    let ctx = src.context();
    let k = Kernel::new(Shader::Reduce, "reduce_lanes")
        .with("OP", ReduceOp::Sum.code())
        .with("WG", ELEMENTWISE_WG);
    let mut view = (outer, r, inner);
    let mut cur: Option<GpuBuf> = None;
    loop {
        let lanes = lanes_for(view.1);
        // The final pass reads a fresh partials buffer (the first pass never writes `dst`).
        let last = lanes == 1 && cur.is_some();
        let n = view.0 * lanes * view.2;
        let fresh = if last {
            None
        } else {
            Some(ctx.alloc_storage(n)?)
        };
        let mut pr = params(view, lanes, 1.0);
        if cur.is_none() {
            pr.in_offset = src_offset as u32;
        }
        let out = fresh.as_ref().unwrap_or(dst);
        ctx.launch(
            &k,
            &pr,
            &[cur.as_ref().unwrap_or(src)],
            &[out],
            groups_for(n, ELEMENTWISE_WG),
        )?;
        if last {
            return Ok(());
        }
        cur = fresh;
        view.1 = lanes;
    }
}

fn gpu_reduce(x: &GpuBuf, split: (usize, usize, usize), op: ReduceOp) -> Result<GpuBuf> {
    let ctx = x.context();
    let scale = if op == ReduceOp::Mean {
        1.0 / split.1 as f32
    } else {
        1.0
    };
    let k = Kernel::new(Shader::Reduce, "reduce_lanes")
        .with("OP", op.code())
        .with("WG", ELEMENTWISE_WG);
    lane_passes(split, |src, view, lanes| {
        let n = view.0 * lanes * view.2;
        let out = ctx.alloc_storage(n)?;
        let s = if lanes == 1 { scale } else { 1.0 };
        ctx.launch(
            &k,
            &params(view, lanes, s),
            &[src.unwrap_or(x)],
            &[&out],
            groups_for(n, ELEMENTWISE_WG),
        )?;
        Ok(out)
    })
}

/// Reduces `x` along `axis` (negative counts from the end).
pub fn reduce(x: &Tensor, op: ReduceOp, axis: isize, keepdim: bool) -> Result<Tensor> {
    x.expect_dtype("reduce", DType::F32)?;
    let ax = x.shape().axis("reduce", axis)?;
    let split = x.shape().split_at_axis(ax);
    if split.1 == 0 {
        return Err(Error::shape(
            "reduce",
            format!("cannot reduce the empty axis {ax} of shape {}", x.shape()),
        ));
    }
    let storage = match x.storage() {
        Storage::Cpu(v) => Storage::Cpu(cpu_reduce(v, split, op)),
        Storage::Gpu(b) => Storage::Gpu(gpu_reduce(b, split, op)?),
    };
    let shape = out_shape(x.shape(), ax, keepdim);
    Ok(Tensor::from_op(
        storage,
        shape,
        DType::F32,
        Op::Reduce {
            op,
            axis: ax,
            keepdim,
        },
        vec![x.clone()],
    ))
}

/// Index of the largest value along `axis` (first among ties), as a `U32` tensor.
pub fn argmax(x: &Tensor, axis: isize, keepdim: bool) -> Result<Tensor> {
    x.expect_dtype("argmax", DType::F32)?;
    let ax = x.shape().axis("argmax", axis)?;
    let (outer, r, inner) = x.shape().split_at_axis(ax);
    if r == 0 {
        return Err(Error::shape(
            "argmax",
            format!("empty axis {ax} of shape {}", x.shape()),
        ));
    }
    let outputs = outer * inner;
    let storage = match x.storage() {
        Storage::Cpu(v) => {
            let mut out = Vec::with_capacity(outputs);
            for o in 0..outer {
                for i in 0..inner {
                    let mut best = 0;
                    for k in 1..r {
                        if v[(o * r + k) * inner + i] > v[(o * r + best) * inner + i] {
                            best = k;
                        }
                    }
                    out.push(best as f64);
                }
            }
            Storage::Cpu(out)
        }
        Storage::Gpu(b) => {
            let ctx = b.context();
            let (_, idx) = lane_passes((outer, r, inner), |src, view, lanes| {
                let n = view.0 * lanes * view.2;
                let (vals, idx) = (ctx.alloc_storage(n)?, ctx.alloc_storage(n)?);
                let k = Kernel::new(Shader::Argmax, "argmax_lanes")
                    .with("FIRST", u32::from(src.is_none()))
                    .with("WG", ELEMENTWISE_WG);
                let (sv, si) = src.map_or((b, b), |(v, i)| (v, i));
                ctx.launch(
                    &k,
                    &params(view, lanes, 1.0),
                    &[sv, si],
                    &[&vals, &idx],
                    groups_for(n, ELEMENTWISE_WG),
                )?;
                Ok((vals, idx))
            })?;
            Storage::Gpu(idx)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        out_shape(x.shape(), ax, keepdim),
        DType::U32,
    ))
}

/// Backward of `reduce`. Max/min split the gradient evenly among tied extremes.
pub(crate) fn reduce_backward(
    op: ReduceOp,
    axis: usize,
    keepdim: bool,
    x: &Tensor,
    out: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let keep = out_shape(x.shape(), axis, true);
    let g = if keepdim {
        g.clone()
    } else {
        g.reshape(keep.clone())?
    };
    match op {
        ReduceOp::Sum => g.broadcast_to(x.shape()),
        ReduceOp::Mean => g
            .mul_scalar(1.0 / x.dims()[axis] as f64)?
            .broadcast_to(x.shape()),
        ReduceOp::Max | ReduceOp::Min => {
            let o = if keepdim {
                out.clone()
            } else {
                out.reshape(keep)?
            };
            let mask = x.eq(&o)?;
            let count = mask.sum_axis(axis as isize, true)?;
            mask.mul(&g.div(&count)?)
        }
    }
}

/// Normalises `axes` (negative counts from the end) for `op`, sorted ascending; an axis out
/// of range or named twice is an error.
pub(crate) fn normalise_axes(
    op: &'static str,
    shape: &Shape,
    axes: &[isize],
) -> Result<Vec<usize>> {
    let mut sorted = axes
        .iter()
        .map(|&a| shape.axis(op, a))
        .collect::<Result<Vec<_>>>()?;
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::shape(
            op,
            format!("axis {} is named twice in {axes:?} (shape {shape})", w[0]),
        ));
    }
    Ok(sorted)
}

impl Tensor {
    pub fn sum_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Sum, axis, keepdim)
    }
    pub fn mean_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Mean, axis, keepdim)
    }
    pub fn max_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Max, axis, keepdim)
    }
    pub fn min_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Min, axis, keepdim)
    }
    pub fn argmax_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        argmax(self, axis, keepdim)
    }
    /// Sum of all elements (shape `[]`).
    pub fn sum(&self) -> Result<Tensor> {
        self.reshape([self.numel()])?.sum_axis(0, false)
    }
    /// Mean of all elements (shape `[]`).
    pub fn mean(&self) -> Result<Tensor> {
        self.reshape([self.numel()])?.mean_axis(0, false)
    }
    /// Largest element (shape `[]`).
    pub fn max(&self) -> Result<Tensor> {
        self.reshape([self.numel()])?.max_axis(0, false)
    }
    /// Smallest element (shape `[]`).
    pub fn min(&self) -> Result<Tensor> {
        self.reshape([self.numel()])?.min_axis(0, false)
    }
    /// Sums over several axes: `y = Σ_{i ∈ axes} x` (`keepdim` keeps each reduced axis as
    /// size 1, otherwise it is removed). Negative axes count from the end; an axis named
    /// twice (after normalisation) is an error; an empty list reduces nothing and returns
    /// `x` as it is (unlike PyTorch, where `dim=[]` means every axis).
    ///
    /// Runs of adjacent axes are merged into one axis first (a free reshape), so e.g. the H
    /// and W axes of NCHW are reduced as one long contiguous axis by one chain of lane
    /// passes. Gradient: `g` broadcast back over the reduced axes (autograd of the reshapes
    /// and the single-axis sums).
    pub fn sum_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let sorted = normalise_axes("sum_axes", self.shape(), axes)?;
        self.sum_sorted_axes(&sorted, keepdim)
    }

    /// Mean over several axes: `y = (1/m)·Σ_{i ∈ axes} x` with `m = ∏_{i ∈ axes} dᵢ`, the
    /// factor `1/m` in `f64` (exact on the CPU reference). Axes as in [`Tensor::sum_axes`]
    /// (negative from the end, duplicates rejected, an empty list returns `x`); an empty
    /// reduced axis is an error. Gradient: `g/m` broadcast back over the reduced axes.
    pub fn mean_axes(&self, axes: &[isize], keepdim: bool) -> Result<Tensor> {
        let sorted = normalise_axes("mean_axes", self.shape(), axes)?;
        let m: usize = sorted.iter().map(|&a| self.dims()[a]).product();
        if m == 0 {
            return Err(Error::shape(
                "mean_axes",
                format!(
                    "cannot average over the empty axes {axes:?} of shape {}",
                    self.shape()
                ),
            ));
        }
        if sorted.is_empty() {
            return Ok(self.clone());
        }
        self.sum_sorted_axes(&sorted, keepdim)?
            .mul_scalar(1.0 / m as f64)
    }

    /// [`Tensor::sum_axes`] for axes already normalised, sorted and free of duplicates.
    pub(crate) fn sum_sorted_axes(&self, sorted: &[usize], keepdim: bool) -> Result<Tensor> {
        let dims = self.dims().to_vec();
        if sorted.is_empty() {
            return Ok(self.clone());
        }
        // Merged dims, and the merged indices of the runs to reduce.
        let (mut merged, mut runs): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for (i, &d) in dims.iter().enumerate() {
            let reduced = sorted.binary_search(&i).is_ok();
            if reduced && i > 0 && sorted.binary_search(&(i - 1)).is_ok() {
                if let Some(last) = merged.last_mut() {
                    *last *= d;
                    continue;
                }
            }
            merged.push(d);
            if reduced {
                runs.push(merged.len() - 1);
            }
        }
        let mut t = self.reshape(merged)?;
        for &a in runs.iter().rev() {
            t = t.sum_axis(a as isize, true)?;
        }
        let out: Vec<usize> = dims
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| match sorted.binary_search(&i) {
                Ok(_) if keepdim => Some(1),
                Ok(_) => None,
                Err(_) => Some(d),
            })
            .collect();
        t.reshape(out)
    }
    /// Sums a broadcast result back to `shape` (the inverse of `broadcast_to` for gradients).
    pub fn sum_to(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let r = self.shape().rank();
        let off = r.checked_sub(shape.rank()).ok_or_else(|| {
            Error::shape(
                "sum_to",
                format!("cannot sum {} down to {shape}", self.shape()),
            )
        })?;
        let axes: Vec<usize> = (0..r)
            .filter(|&i| i < off || (shape.dims()[i - off] == 1 && self.dims()[i] != 1))
            .collect();
        self.sum_sorted_axes(&axes, true)?.reshape(shape.clone())
    }
}
