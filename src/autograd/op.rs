//! The closed set of differentiable ops and their backward rules, in one exhaustive `match`
//! (no `_ =>` arm: an op without a backward rule does not compile).

use crate::error::Result;
use crate::ops::binary::{binary_backward, where_backward, BinaryOp};
use crate::ops::copy::{concat_backward, pad_axis, permute_backward};
use crate::ops::matmul::matmul_backward;
use crate::ops::reduce::{reduce_backward, ReduceOp};
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
            Op::Matmul { .. } => "matmul",
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
            Op::Matmul { trans_a, trans_b } => {
                matmul_backward(*trans_a, *trans_b, x, &inputs[1], g)?.to_vec()
            }
        })
    }
}
