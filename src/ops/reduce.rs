//! Reductions along one axis (sum, mean, max, min, argmax) and over everything.
//!
//! The tensor is viewed as `[outer, r, inner]` around the axis. On the GPU, a short axis
//! (`r ≤ SERIAL_MAX_R`) is reduced by one thread per output; a long one by a tree: one
//! workgroup per (output, chunk of `TREE_CHUNK`), repeated on the partials until one chunk
//! is left (two passes up to 1 M elements per output).

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

/// Longest axis reduced by one thread per output. Past it a workgroup per output wins even
/// when there are few outputs; below it the tree's 256 threads would mostly idle.
pub const SERIAL_MAX_R: usize = 64;
/// Elements of the axis per workgroup in the tree (256 threads × 4 loads each).
pub const TREE_CHUNK: usize = 1024;

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
struct ReduceParams {
    outputs: u32,
    r: u32,
    inner: u32,
    chunk: u32,
    nchunks: u32,
    scale: f32,
    _pad: [u32; 2],
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

fn params(outputs: usize, r: usize, inner: usize, nchunks: usize, scale: f32) -> ReduceParams {
    ReduceParams {
        outputs: outputs as u32,
        r: r as u32,
        inner: inner as u32,
        chunk: TREE_CHUNK as u32,
        nchunks: nchunks as u32,
        scale,
        _pad: [0; 2],
    }
}

fn gpu_reduce(
    x: &GpuBuf,
    (outer, r, inner): (usize, usize, usize),
    op: ReduceOp,
) -> Result<GpuBuf> {
    let ctx = x.context();
    let outputs = outer * inner;
    let scale = if op == ReduceOp::Mean {
        1.0 / r as f32
    } else {
        1.0
    };
    if r <= SERIAL_MAX_R {
        let out = ctx.alloc_storage(outputs)?;
        let k = Kernel::new(Shader::Reduce, "reduce_serial")
            .with("OP", op.code())
            .with("WG", ELEMENTWISE_WG);
        ctx.launch(
            &k,
            &params(outputs, r, inner, 1, scale),
            &[x],
            &[&out],
            groups_for(outputs, ELEMENTWISE_WG),
        )?;
        return Ok(out);
    }
    let k = Kernel::new(Shader::Reduce, "reduce_tree").with("OP", op.code());
    let (mut cur_r, mut cur_inner) = (r, inner);
    let mut cur: Option<GpuBuf> = None;
    loop {
        let nchunks = cur_r.div_ceil(TREE_CHUNK);
        let out = ctx.alloc_storage(outputs * nchunks)?;
        let s = if nchunks == 1 { scale } else { 1.0 };
        let src = cur.as_ref().unwrap_or(x);
        ctx.launch(
            &k,
            &params(outputs, cur_r, cur_inner, nchunks, s),
            &[src],
            &[&out],
            (outputs * nchunks) as u64,
        )?;
        if nchunks == 1 {
            return Ok(out);
        }
        cur = Some(out);
        cur_r = nchunks;
        cur_inner = 1;
    }
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
            if r <= SERIAL_MAX_R {
                let (vals, idx) = (ctx.alloc_storage(outputs)?, ctx.alloc_storage(outputs)?);
                let k = Kernel::new(Shader::Argmax, "argmax_serial").with("WG", ELEMENTWISE_WG);
                ctx.launch(
                    &k,
                    &params(outputs, r, inner, 1, 1.0),
                    &[b, b],
                    &[&vals, &idx],
                    groups_for(outputs, ELEMENTWISE_WG),
                )?;
                Storage::Gpu(idx)
            } else {
                let (mut cur_r, mut cur_inner) = (r, inner);
                let mut cur: Option<(GpuBuf, GpuBuf)> = None;
                loop {
                    let nchunks = cur_r.div_ceil(TREE_CHUNK);
                    let vals = ctx.alloc_storage(outputs * nchunks)?;
                    let idx = ctx.alloc_storage(outputs * nchunks)?;
                    let k = Kernel::new(Shader::Argmax, "argmax_tree")
                        .with("FIRST", u32::from(cur.is_none()));
                    let (sv, si) = cur.as_ref().map(|(v, i)| (v, i)).unwrap_or((b, b));
                    let pr = params(outputs, cur_r, cur_inner, nchunks, 1.0);
                    ctx.launch(
                        &k,
                        &pr,
                        &[sv, si],
                        &[&vals, &idx],
                        (outputs * nchunks) as u64,
                    )?;
                    if nchunks == 1 {
                        break Storage::Gpu(idx);
                    }
                    cur = Some((vals, idx));
                    cur_r = nchunks;
                    cur_inner = 1;
                }
            }
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
            .mul_scalar(1.0 / x.dims()[axis] as f32)?
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
    /// Sums over several axes (kept as size 1 if `keepdim`).
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut t = self.clone();
        for &a in sorted.iter().rev() {
            t = t.sum_axis(a as isize, keepdim)?;
        }
        Ok(t)
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
        self.sum_axes(&axes, true)?.reshape(shape.clone())
    }
}
