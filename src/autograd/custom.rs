//! The door for fused ops defined outside the engine: an application computes a forward
//! itself (its own kernels, or engine ops under [`no_grad`](super::no_grad)), then records
//! the output on the tape with [`record_custom`] and a [`CustomOp`] that knows the backward.
//! The engine's own ops stay in the closed [`Op`](super::Op) enum; this is its one open
//! variant, `Op::Custom`.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::{same_device, Tensor};

/// The backward rule of an application-defined op recorded with [`record_custom`].
///
/// `backward` runs during [`backward`](super::backward) under [`no_grad`](super::no_grad),
/// so whatever it computes with tensor ops is not recorded. It receives the inputs given
/// to [`record_custom`] (in that order), the recorded output and the gradient `g` of the
/// output (the output's shape) and returns one entry per input: the gradient of that input
/// (of the input's shape) or `None` where none flows (constants, labels). Whatever else it
/// needs (saved statistics, labels, options) lives in the implementing value.
pub trait CustomOp: Send + Sync {
    /// A short name for messages (shape errors, in-place modification errors).
    fn name(&self) -> &'static str;

    /// The gradients of the inputs given the output `out` and its gradient `g`.
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

impl fmt::Debug for dyn CustomOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomOp({})", self.name())
    }
}

/// Records `output`, computed by the caller from `inputs`, as the output of `op` on the
/// tape: returns a tensor that shares `output`'s storage (nothing is copied) and whose
/// history is one node `op` over `inputs`, so that [`backward`](super::backward) reaches
/// the inputs through [`CustomOp::backward`]. `output`'s own history, if any, is not part
/// of the new tensor's (compute the forward under [`no_grad`](super::no_grad) or from
/// detached inputs: the gradient flows through `op` alone).
///
/// As for the engine's ops, the node is recorded only when gradients are enabled, the
/// output is `F32` and some input requires a gradient; otherwise the result is `output`'s
/// values without history.
///
/// Errors: an input on another device than `output`.
///
/// ```
/// use std::sync::Arc;
/// use wgseg::autograd::{backward, no_grad, record_custom, CustomOp};
/// use wgseg::{Device, Result, Tensor};
///
/// /// `y = 3·x`, with its backward written by hand.
/// struct Triple;
///
/// impl CustomOp for Triple {
///     fn name(&self) -> &'static str {
///         "triple"
///     }
///     fn backward(&self, _: &[Tensor], _: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
///         Ok(vec![Some(g.mul_scalar(3.0)?)])
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let x = Tensor::from_vec(vec![1.0, 2.0], [2], &Device::Cpu)?.as_param();
/// let y = {
///     let _g = no_grad();
///     x.mul_scalar(3.0)?
/// };
/// let y = record_custom(&y, &[&x], Arc::new(Triple))?;
/// let grads = backward(&y.sum()?)?;
/// assert_eq!(grads.get(&x).unwrap().to_vec()?, vec![3.0, 3.0]);
/// # Ok(())
/// # }
/// ```
pub fn record_custom(output: &Tensor, inputs: &[&Tensor], op: Arc<dyn CustomOp>) -> Result<Tensor> {
    for t in inputs {
        same_device(op.name(), &[output, *t])?;
    }
    let inputs = inputs.iter().map(|&t| t.clone()).collect();
    Ok(output.with_custom_node(op, inputs))
}

/// [`CustomOp::backward`] with its result checked: one entry per input.
pub(super) fn custom_backward(
    op: &dyn CustomOp,
    inputs: &[Tensor],
    out: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let gs = op.backward(inputs, out, g)?;
    if gs.len() != inputs.len() {
        return Err(Error::shape(
            op.name(),
            format!(
                "the backward returned {} gradients for {} inputs",
                gs.len(),
                inputs.len()
            ),
        ));
    }
    Ok(gs)
}
