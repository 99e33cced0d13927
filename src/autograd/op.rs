//! The closed set of differentiable ops and their backward rules, in one exhaustive `match`
//! (no `_ =>` arm: an op without a backward rule does not compile).

use crate::error::Result;
use crate::losses::aucseg::{closed, pairwise};
use crate::losses::pixel::{pixel_loss_backward, PixelConfig, Saved};
use crate::losses::{AucClosedSaved, AucPairSaved};
use crate::ops::binary::{binary_backward, where_backward, BinaryOp};
use crate::ops::conv::{conv2d_backward, Conv2dParams};
use crate::ops::copy::{concat_backward, pad_axis, permute_backward};
use crate::ops::cross_entropy::cross_entropy_backward;
use crate::ops::matmul::matmul_backward;
use crate::ops::norm::batch_norm_backward;
use crate::ops::pool::{avg_pool2d_backward, max_pool2d_backward, Pool2d};
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
    InterpolateBilinear {
        align_corners: bool,
    },
    /// Inputs: x, w and optionally bias.
    Conv2d(Conv2dParams),
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    /// Input: logits. Labels and class weights are constants (no gradient); `sums` is the
    /// forward's `[Σ w·ℓ, Σ w]` on the logits' device (the backward divides by `Σ w`).
    CrossEntropy {
        labels: Tensor,
        weights: Option<Tensor>,
        ignore_index: u32,
        sums: Tensor,
    },
    /// AUCSeg's AUC loss, closed form (`losses::aucseg`). Input: logits; the labels, class
    /// counts and the per-class backward table are saved on the logits' device.
    AucClosedForm(AucClosedSaved),
    /// AUCSeg's `L_ce + λ·L_auc` with the closed form, fused (`losses::aucseg`): one node
    /// whose backward adds the AUC gradient in place onto cross-entropy's. Input: logits;
    /// `sums` are cross-entropy's forward statistics (labels and ignore index in `auc`).
    AucSeg {
        sums: Tensor,
        auc: AucClosedSaved,
    },
    /// AUCSeg's AUC loss, tiled pairwise kernel. Input: logits; the gradient was computed by
    /// the forward and is saved (compact on a GPU, with the pixel plan).
    AucPairwise(AucPairSaved),
    /// Input: logits. The fused softmax-family losses of `crate::losses` (see
    /// `losses::pixel`): labels, the per-class table and the noise are constants; `stats`
    /// is the forward's saved state (`[Σ w·u·ℓ, D]` on the CPU; on a GPU the statistics
    /// buffer with the per-pixel log-sum-exp), `counts` PAT's `[N, C]` table on a GPU.
    PixelLoss {
        labels: Tensor,
        cfg: PixelConfig,
        table: Tensor,
        noise: Option<Tensor>,
        counts: Option<Tensor>,
        stats: Tensor,
    },
    /// Training batch-norm; inputs x, γ, β. `mean` and `rstd` (`[C]`) are the batch
    /// statistics of the forward.
    BatchNorm {
        mean: Tensor,
        rstd: Tensor,
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
            Op::InterpolateBilinear { .. } => "interpolate_bilinear",
            Op::Conv2d(_) => "conv2d",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::PixelLoss { cfg, .. } => cfg.op,
            Op::Matmul { .. } => "matmul",
            Op::AucClosedForm(_) => "auc_loss (closed form)",
            Op::AucSeg { .. } => "aucseg",
            Op::AucPairwise(_) => "auc_loss (pairwise)",
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
            Op::InterpolateBilinear { align_corners } => {
                vec![Some(interpolate_bilinear_backward(*align_corners, x, g)?)]
            }
            Op::Conv2d(p) => conv2d_backward(p, inputs, g)?,
            Op::Softmax { axis } => vec![Some(softmax_backward(*axis, out, g)?)],
            Op::LogSoftmax { axis } => vec![Some(log_softmax_backward(*axis, out, g)?)],
            Op::CrossEntropy {
                labels,
                weights,
                ignore_index,
                sums,
            } => vec![Some(cross_entropy_backward(
                x,
                labels,
                weights.as_ref(),
                *ignore_index,
                sums,
                g,
            )?)],
            Op::PixelLoss {
                labels,
                cfg,
                table,
                noise,
                counts,
                stats,
            } => {
                let saved = Saved {
                    table,
                    noise: noise.as_ref(),
                    counts: counts.as_ref(),
                    stats,
                };
                vec![Some(pixel_loss_backward(x, labels, cfg, saved, g)?)]
            }
            Op::Matmul { trans_a, trans_b } => {
                matmul_backward(*trans_a, *trans_b, x, &inputs[1], g)?.to_vec()
            }
            Op::BatchNorm { mean, rstd } => batch_norm_backward(inputs, mean, rstd, g)?,
            Op::AucClosedForm(saved) => vec![Some(closed::backward(x, saved, g)?)],
            Op::AucSeg { sums, auc } => {
                let ce = cross_entropy_backward(x, &auc.labels, None, auc.ignore_index, sums, g)?;
                vec![Some(closed::backward_into(x, auc, g, Some(ce))?)]
            }
            Op::AucPairwise(saved) => vec![Some(pairwise::backward(x, saved, g)?)],
        })
    }
}
