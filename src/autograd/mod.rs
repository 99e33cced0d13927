//! Reverse-mode automatic differentiation on a tape.
//!
//! Each op output that needs a gradient carries a [`Node`] (the op and its inputs).
//! [`backward`] (or [`backward_with`], from a non-scalar output and its upstream gradient)
//! sorts the graph topologically (iteratively, no recursion), walks it from the
//! loss to the leaves, runs each op's backward rule (written with forward tensor ops, under
//! [`no_grad`]) and accumulates the gradients of tensors used more than once.
//!
//! The engine's ops form a closed enum, [`Op`], whose backward rules are one exhaustive
//! `match` (docs/architecture.md). Fused ops defined outside the engine come in through one
//! door: the application computes the forward itself and records its output with
//! [`record_custom`] and a [`CustomOp`], whose `backward` returns the input gradients (in
//! the spirit of candle's `CustomOp`). The losses of `crate::losses` are recorded this way;
//! the engine knows nothing of them. A minimal example:
//!
//! ```
//! use std::sync::Arc;
//! use wgseg::autograd::{backward, no_grad, record_custom, CustomOp};
//! use wgseg::{Device, Result, Tensor};
//!
//! /// `y = x²`, its forward computed without the tape and its backward `2x·g`.
//! struct Square;
//!
//! impl CustomOp for Square {
//!     fn name(&self) -> &'static str {
//!         "square"
//!     }
//!     fn backward(&self, inputs: &[Tensor], _out: &Tensor, g: &Tensor)
//!         -> Result<Vec<Option<Tensor>>> {
//!         Ok(vec![Some(inputs[0].mul_scalar(2.0)?.mul(g)?)])
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let x = Tensor::from_vec(vec![1.0, -3.0], [2], &Device::Cpu)?.as_param();
//! let y = {
//!     let _g = no_grad();
//!     x.mul(&x)?
//! };
//! let y = record_custom(&y, &[&x], Arc::new(Square))?;
//! let grads = backward(&y)?;
//! assert_eq!(grads.get(&x).unwrap().to_vec()?, vec![2.0, -6.0]);
//! # Ok(())
//! # }
//! ```

mod custom;
mod op;
mod version;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use custom::{record_custom, CustomOp};
pub use op::Op;

use crate::error::{Error, Result};
use crate::tensor::{same_device, DType, Tensor};

/// The history of a tensor: the op that produced it, the op's inputs and their storage
/// versions when the op ran (checked by [`backward`], see `version.rs`).
pub struct Node {
    pub(crate) op: Op,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) versions: Vec<u64>,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether new op outputs are recorded on the tape (per thread).
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Restores the previous gradient mode when dropped.
pub struct NoGradGuard {
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Disables tape recording until the guard is dropped (evaluation, optimiser steps).
#[must_use = "gradients are disabled only while the guard lives"]
pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

/// Gradients of the leaves (parameters) reached from a loss, keyed by tensor id. Ordered, so
/// that dropping them returns their buffers to the pool in the same order every step (the
/// next step then gets the same buffers, and its bind groups are found in the cache).
#[derive(Default, Debug)]
pub struct Gradients {
    map: BTreeMap<u64, Tensor>,
}

impl Gradients {
    /// The gradient with respect to `t`, if `t` is a parameter the loss depends on.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }

    /// Sets the gradient of `t` to `g` (gradients computed elsewhere: a data-parallel
    /// run's averaged ones), replacing any.
    pub fn insert(&mut self, t: &Tensor, g: Tensor) {
        self.map.insert(t.id(), g);
    }

    /// Removes and returns the gradient of `t`.
    pub fn take(&mut self, t: &Tensor) -> Option<Tensor> {
        self.map.remove(&t.id())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Post-order of the tensors that require a gradient: every tensor after its inputs.
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(n) = t.node() {
            for i in &n.inputs {
                if i.requires_grad() && !seen.contains(&i.id()) {
                    stack.push((i.clone(), false));
                }
            }
        }
    }
    order
}

/// Gradients of `loss` with respect to every parameter it depends on: `∂(Σ loss)/∂p`. The
/// seed is all ones, so a non-scalar loss is summed; this is `backward_with(loss, ones)`.
pub fn backward(loss: &Tensor) -> Result<Gradients> {
    if !loss.requires_grad() {
        return Err(no_parameter("backward"));
    }
    let ones = Tensor::ones(loss.shape().clone(), &loss.device())?;
    run_backward(loss, ones)
}

/// Reverse mode from a non-scalar `output` with an upstream gradient `grad` of the same
/// shape (a vector-Jacobian product): returns `∂(Σ output ⊙ grad)/∂p = grad · ∂output/∂p`
/// for every parameter `p` that `output` depends on, without building the `sum(output ·
/// grad)` graph. `grad` is a constant (its own history is ignored).
///
/// Errors: `output` depends on no parameter; `grad` is not an `F32` tensor of `output`'s
/// shape on `output`'s device.
pub fn backward_with(output: &Tensor, grad: &Tensor) -> Result<Gradients> {
    const OP: &str = "backward_with";
    if !output.requires_grad() {
        return Err(no_parameter(OP));
    }
    if grad.shape() != output.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "the gradient has shape {}, but the output has shape {}",
                grad.shape(),
                output.shape()
            ),
        ));
    }
    grad.expect_dtype(OP, DType::F32)?;
    same_device(OP, &[output, grad])?;
    run_backward(output, grad.detach())
}

fn no_parameter(op: &'static str) -> Error {
    Error::shape(
        op,
        "the output does not depend on any parameter (no tensor requires a gradient)",
    )
}

/// The reverse sweep from `root` seeded with `seed` (same shape and device, checked).
fn run_backward(root: &Tensor, seed: Tensor) -> Result<Gradients> {
    let _guard = no_grad();
    let order = topo_order(root);
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(root.id(), seed);
    let mut out = Gradients::default();
    for t in order.iter().rev() {
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        let Some(node) = t.node() else {
            out.map.insert(t.id(), g);
            continue;
        };
        node.check_versions()?;
        let gs = node.op.backward(&node.inputs, t, &g)?;
        for (inp, gi) in node.inputs.iter().zip(gs) {
            let Some(gi) = gi else { continue };
            if !inp.requires_grad() {
                continue;
            }
            if gi.shape() != inp.shape() {
                return Err(Error::shape(
                    "backward",
                    format!(
                        "{} produced a gradient of shape {} for an input of shape {}",
                        node.op.name(),
                        gi.shape(),
                        inp.shape()
                    ),
                ));
            }
            let acc = match grads.remove(&inp.id()) {
                Some(prev) => prev.add(&gi)?,
                None => gi,
            };
            grads.insert(inp.id(), acc);
        }
    }
    Ok(out)
}
