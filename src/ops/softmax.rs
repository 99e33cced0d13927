//! Softmax and log-softmax along one axis.
//!
//! The tensor is viewed as `[outer, C, inner]` around the axis; every `(outer, inner)` column
//! of `C` values is normalised independently, with the column maximum `m` subtracted first:
//!
//! - `softmax(x)_c = exp(x_c − m) / Σ_k exp(x_k − m)`
//! - `log_softmax(x)_c = (x_c − m) − log Σ_k exp(x_k − m)`
//!
//! On the GPU one invocation handles one column (an online max/sum pass, then a write
//! pass); for NCHW logits and axis 1, `inner = H·W` is contiguous, so neighbouring
//! invocations read neighbouring addresses. Backward rules are composed from forward ops
//! (`softmax_backward`, `log_softmax_backward`).
//!
//! Saturation: every `exp` argument is `x − m ≤ 0`, so nothing overflows; on the GPU it is
//! also clamped at −88.72, so a softmax entry more than 88.72 below the column maximum is
//! ≈ 3e-39 instead of 0 (far below any tolerance). `log_softmax` needs no `exp` of the
//! entry itself and stays finite and accurate for any finite input (tested at ±1e4).

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::tensor::{DType, Storage, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SoftmaxParams {
    pub(crate) columns: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) _pad: u32,
}

/// Element count as the `u32` the kernels index with, or an `Error::Limit` naming `op`.
pub(crate) fn u32_elements(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Limit {
        what: format!("{op}: elements"),
        requested: n as u64,
        max: u64::from(u32::MAX),
    })
}

/// The CPU reference (f64): normalises every column of `[outer, c, inner]`.
fn cpu_softmax(v: &[f64], (outer, c, inner): (usize, usize, usize), log: bool) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * c + k) * inner + i;
            let m = (0..c).map(|k| v[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..c).map(|k| (v[at(k)] - m).exp()).sum();
            for k in 0..c {
                let d = v[at(k)] - m;
                out[at(k)] = if log { d - s.ln() } else { d.exp() / s };
            }
        }
    }
    out
}

fn softmax_impl(x: &Tensor, axis: isize, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    x.expect_dtype(name, DType::F32)?;
    let ax = x.shape().axis(name, axis)?;
    let split = x.shape().split_at_axis(ax);
    if split.1 == 0 {
        return Err(Error::shape(
            name,
            format!(
                "cannot normalise the empty axis {ax} of shape {}",
                x.shape()
            ),
        ));
    }
    let storage = match x.storage() {
        Storage::Cpu(v) => Storage::Cpu(cpu_softmax(v, split, log)),
        Storage::Gpu(b) => {
            u32_elements(name, x.numel())?;
            let ctx = b.context();
            let (outer, c, inner) = split;
            let columns = outer * inner;
            let out = ctx.alloc_storage(x.numel())?;
            ctx.launch(
                &Kernel::new(Shader::Softmax, "softmax")
                    .with("LOG", u32::from(log))
                    .with("WG", ELEMENTWISE_WG),
                &SoftmaxParams {
                    columns: columns as u32,
                    c: c as u32,
                    inner: inner as u32,
                    _pad: 0,
                },
                &[b],
                &[&out],
                groups_for(columns, ELEMENTWISE_WG),
            )?;
            Storage::Gpu(out)
        }
    };
    let op = if log {
        Op::LogSoftmax { axis: ax }
    } else {
        Op::Softmax { axis: ax }
    };
    Ok(Tensor::from_op(
        storage,
        x.shape().clone(),
        DType::F32,
        op,
        vec![x.clone()],
    ))
}

/// `softmax(x)` along `axis` (negative counts from the end), with the maximum subtracted:
/// `y_c = exp(x_c − m) / Σ_k exp(x_k − m)`. Same shape as `x`.
///
/// Gradient: `∂x = y ⊙ (g − Σ_c g ⊙ y)`.
pub fn softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    softmax_impl(x, axis, false)
}

/// `log_softmax(x)` along `axis`: `y_c = (x_c − m) − log Σ_k exp(x_k − m)`. Same shape as
/// `x`; finite for any finite input (no `log(0)`).
///
/// Gradient: `∂x = g − exp(y) ⊙ Σ_c g`.
pub fn log_softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    softmax_impl(x, axis, true)
}

/// Backward of `softmax` (`y` is the saved output): `y ⊙ (g − Σ_c g ⊙ y)`.
pub(crate) fn softmax_backward(axis: usize, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let dot = g.mul(y)?.sum_axis(axis as isize, true)?;
    y.mul(&g.sub(&dot)?)
}

/// Backward of `log_softmax` (`y` is the saved output): `g − exp(y) ⊙ Σ_c g`.
pub(crate) fn log_softmax_backward(axis: usize, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let gs = g.sum_axis(axis as isize, true)?;
    g.sub(&y.exp()?.mul(&gs)?)
}

impl Tensor {
    /// See [`softmax`].
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        softmax(self, axis)
    }
    /// See [`log_softmax`].
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        log_softmax(self, axis)
    }
}
