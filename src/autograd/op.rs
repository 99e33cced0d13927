//! The closed set of the engine's differentiable ops and their backward rules, in one
//! exhaustive `match` (no `_ =>` arm: an op without a backward rule does not compile), plus
//! one open variant, [`Op::Custom`], for fused ops defined outside the engine (the losses of
//! `crate::losses`, or an application's; see `custom.rs`).

use std::sync::Arc;

use super::custom::{custom_backward, CustomOp};
use crate::error::Result;
use crate::ops::binary::{binary_backward, where_backward, BinaryOp};
use crate::ops::conv::{conv2d_backward, Conv2dParams, SavedPack};
use crate::ops::copy::{concat_backward, pad_axis, permute_backward};
use crate::ops::matmul::matmul_backward;
use crate::ops::norm::{batch_norm_backward, Activation};
use crate::ops::pool::{avg_pool2d_backward, max_pool2d_backward, max_unpool2d_backward, Pool2d};
use crate::ops::reduce::{reduce_backward, ReduceOp};
use crate::ops::resize::interpolate_bilinear_backward;
use crate::ops::softmax::{log_softmax_backward, softmax_backward};
use crate::ops::unary::{unary_backward, UnaryOp};
use crate::tensor::Tensor;

/// An op recorded on the tape, with what its backward rule needs besides inputs and output.
#[derive(Clone, Debug)]
pub enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Inputs: cond, a, b.
    Where,
    Reduce {
        op: ReduceOp,
        axis: usize,
        keepdim: bool,
    },
    Reshape,
    Permute(Vec<usize>),
    BroadcastTo,
    Narrow {
        axis: usize,
        start: usize,
    },
    PadAxis {
        axis: usize,
        start: usize,
    },
    Concat {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// `indices`: the saved argmax of every window (`U32`, flat within the input plane).
    /// `geom` carries `ceil_mode` (the output size; the backward reads it from there).
    MaxPool2d {
        geom: Pool2d,
        indices: Tensor,
    },
    /// The window with its `ceil_mode` and `count_include_pad` (the backward's divisor).
    AvgPool2d(Pool2d),
    /// `indices`: where each pooled value went (`U32`, flat within the output plane, the
    /// operand of the backward gather); `geom`: its non-overlapping windows. The output size
    /// is the gradient's.
    MaxUnpool2d {
        geom: Pool2d,
        indices: Tensor,
    },
    InterpolateBilinear {
        align_corners: bool,
    },
    /// Inputs: x, w and optionally bias. `saved`: the operands a texture-GEMM forward
    /// packed that the backward reads again (x's atlas, the transposed weights).
    Conv2d {
        params: Conv2dParams,
        saved: Option<SavedPack>,
    },
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    /// An op defined outside the engine and recorded with [`super::record_custom`]: its
    /// backward rule is the [`CustomOp`]'s.
    Custom(Arc<dyn CustomOp>),
    /// Training batch-norm with its fused epilogue; inputs x, γ, β and, with a residual,
    /// r. `stats` (`[4·C]`: mean, rstd, scale, shift) are the forward's batch statistics;
    /// `act` the activation applied last.
    BatchNorm {
        stats: Tensor,
        act: Activation,
    },
    /// `op(a) · op(b)`; the flags say which operand is read transposed. Inputs: a, b.
    Matmul {
        trans_a: bool,
        trans_b: bool,
    },
}

impl Op {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Where => "where",
            Op::Reduce { .. } => "reduce",
            Op::Reshape => "reshape",
            Op::Permute(_) => "permute",
            Op::BroadcastTo => "broadcast_to",
            Op::Narrow { .. } => "narrow",
            Op::PadAxis { .. } => "pad_axis",
            Op::Concat { .. } => "concat",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::MaxUnpool2d { .. } => "max_unpool2d",
            Op::InterpolateBilinear { .. } => "interpolate_bilinear",
            Op::Conv2d { .. } => "conv2d",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Custom(op) => op.name(),
            Op::Matmul { .. } => "matmul",
            Op::BatchNorm { .. } => "batch_norm2d",
        }
    }

    /// Gradients of the inputs given the output `out` and its gradient `g` (one entry per
    /// input; `None` where no gradient flows).
    pub(crate) fn backward(
        &self,
        inputs: &[Tensor],
        out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        Ok(match self {
            Op::Unary(op) => vec![unary_backward(*op, x, out, g)?],
            Op::Binary(op) => binary_backward(*op, x, &inputs[1], out, g)?.to_vec(),
            Op::Where => where_backward(x, &inputs[1], &inputs[2], g)?.to_vec(),
            Op::Reduce { op, axis, keepdim } => {
                vec![Some(reduce_backward(*op, *axis, *keepdim, x, out, g)?)]
            }
            Op::Reshape => vec![Some(g.reshape(x.shape().clone())?)],
            Op::Permute(perm) => vec![Some(permute_backward(perm, g)?)],
            Op::BroadcastTo => vec![Some(g.sum_to(x.shape())?)],
            Op::Narrow { axis, start } => vec![Some(pad_axis(g, *axis, *start, x.dims()[*axis])?)],
            Op::PadAxis { axis, start } => {
                vec![Some(g.narrow(*axis as isize, *start, x.dims()[*axis])?)]
            }
            Op::Concat { axis, sizes } => concat_backward(*axis, sizes, g)?,
            Op::MaxPool2d { geom, indices } => {
                vec![Some(max_pool2d_backward(geom, indices, x, g)?)]
            }
            Op::AvgPool2d(geom) => vec![Some(avg_pool2d_backward(geom, x, g)?)],
            Op::MaxUnpool2d { geom, indices } => {
                vec![Some(max_unpool2d_backward(geom, indices, x, g)?)]
            }
            Op::InterpolateBilinear { align_corners } => {
                vec![Some(interpolate_bilinear_backward(*align_corners, x, g)?)]
            }
            Op::Conv2d { params, saved } => conv2d_backward(params, saved.as_ref(), inputs, g)?,
            Op::Softmax { axis } => vec![Some(softmax_backward(*axis, out, g)?)],
            Op::LogSoftmax { axis } => vec![Some(log_softmax_backward(*axis, out, g)?)],
            Op::Custom(op) => custom_backward(op.as_ref(), inputs, out, g)?,
            Op::Matmul { trans_a, trans_b } => {
                matmul_backward(*trans_a, *trans_b, x, &inputs[1], g)?.to_vec()
            }
            Op::BatchNorm { stats, act } => batch_norm_backward(inputs, stats, *act, out, g)?,
        })
    }
}
