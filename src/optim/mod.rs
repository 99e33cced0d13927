//! Optimisers as fused in-place update kernels, gradient clipping by global norm, and the
//! poly learning-rate schedule (docs/training.md).
//!
//! An [`Optimizer`] updates the parameters of a [`ParamStore`] from the [`Gradients`] of a
//! `backward`, with PyTorch's formulas ([`Sgd`], [`AdamW`]; each documents its own):
//!
//! - **GPU**: one dispatch per parameter (`shaders/optim.wgsl`) writes the parameter's own
//!   buffer and its state buffers in place. Nothing is read back and nothing is allocated
//!   per step (a parameter's state is allocated at its first step; the gradient scale of
//!   an unclipped step is a 1-element fill). The parameter keeps its handle, id and buffer.
//! - **CPU** (the reference): the same formulas in `f64`; the store gets a handle with the
//!   SAME id over the new values (see `crate::tensor`'s module docs on versions).
//!
//! Either way, the storage version of every updated tensor is bumped, so a tape recorded
//! before a step refuses to backpropagate after it ([`crate::Error::Modified`]).
//! Parameters without a gradient are skipped (their state and step count untouched), as in
//! PyTorch.
//!
//! Clipping: [`clip_grad_norm`] computes the global norm and the clip factor
//! `min(1, max_norm / (norm + 1e-6))` on the device; [`Optimizer::step_clipped`] makes the
//! update kernels multiply every gradient by that factor, read from its 1-element buffer.

mod adamw;
mod clip;
pub(crate) mod kernels;
mod schedule;
mod sgd;

use std::collections::BTreeMap;

pub use adamw::AdamW;
pub use clip::{clip_grad_norm, GradClip, CLIP_EPS};
pub use schedule::Schedule;
pub use sgd::Sgd;

use crate::autograd::Gradients;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::{DType, Storage, Tensor};

/// An optimiser over the parameters of a [`ParamStore`].
pub trait Optimizer {
    /// A short name (`"sgd"`, `"adamw"`).
    fn name(&self) -> &'static str;

    /// One update of every parameter of `store` that has a gradient in `grads`, at learning
    /// rate `lr`, each gradient scaled by `clip`'s factor when given.
    fn step_clipped(
        &mut self,
        store: &mut ParamStore,
        grads: &Gradients,
        lr: f64,
        clip: Option<&GradClip>,
    ) -> Result<()>;

    /// One update without clipping (see [`Optimizer::step_clipped`]).
    fn step(&mut self, store: &mut ParamStore, grads: &Gradients, lr: f64) -> Result<()> {
        self.step_clipped(store, grads, lr, None)
    }

    /// The named state tensors, for checkpoints (`momentum_buffer.{param}`,
    /// `exp_avg.{param}`, …), sorted by name. On a GPU the handles share the optimiser's
    /// buffers, which the next step overwrites (their `version()` then changes): save them
    /// before stepping again. Step counts are 1-element CPU tensors (as PyTorch keeps them).
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Replaces the state by `state` (as returned by [`Optimizer::state`]). Errors name an
    /// entry that is unknown, missing from a parameter's group, or mis-shaped; shapes against
    /// the parameters are checked at the next step. The tensors are copied (on their device;
    /// moved to the parameters' device at the next step), so later steps never change the
    /// caller's handles.
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()>;
}

/// A state tensor of the optimiser: its storage is the optimiser's own (allocated by it, or
/// copied by `load_state`), so writing it in place changes nobody else's tensor.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) tensor: Tensor,
}

impl Slot {
    /// State the optimiser allocated itself.
    pub(crate) fn owned(tensor: Tensor) -> Slot {
        Slot { tensor }
    }

    /// State handed in by `load_state`: copied now (a recorded buffer copy on a GPU), so
    /// that neither the caller's later use nor ours sees the other's writes.
    pub(crate) fn loaded(tensor: &Tensor) -> Result<Slot> {
        Ok(Slot {
            tensor: owned_copy(tensor, &tensor.device())?,
        })
    }

    /// Checks the shape against the parameter's, moves the tensor to `dev` if it lives
    /// elsewhere (a fresh copy), and returns it.
    pub(crate) fn prepare(
        &mut self,
        op: &'static str,
        entry: &str,
        param: &Tensor,
        dev: &Device,
    ) -> Result<&Tensor> {
        if self.tensor.shape() != param.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "optimizer state {entry} has shape {}, the parameter {}",
                    self.tensor.shape(),
                    param.shape()
                ),
            ));
        }
        if !self.tensor.device().same(dev) {
            self.tensor = self.tensor.to_device(dev)?;
        }
        Ok(&self.tensor)
    }
}

/// A copy of `t` on `dev` with storage of its own (no history). On the CPU sharing is a
/// copy already (CPU storage is never written in place).
fn owned_copy(t: &Tensor, dev: &Device) -> Result<Tensor> {
    if !t.device().same(dev) {
        return t.to_device(dev);
    }
    match (t.storage(), dev) {
        (Storage::Gpu(b), Device::Gpu(ctx)) => {
            let out = ctx.alloc_storage(t.numel())?;
            ctx.copy_buffer(b, &out)?;
            Ok(Tensor::from_storage(
                Storage::Gpu(out),
                t.shape().clone(),
                t.dtype(),
            ))
        }
        _ => Ok(t.detach()),
    }
}

/// The gradient of `param` (called `name`) if it has one, checked against the parameter.
pub(crate) fn grad_of<'a>(
    op: &'static str,
    grads: &'a Gradients,
    name: &str,
    param: &Tensor,
) -> Result<Option<&'a Tensor>> {
    let Some(g) = grads.get(param) else {
        return Ok(None);
    };
    if g.shape() != param.shape() || g.dtype() != DType::F32 {
        return Err(Error::shape(
            op,
            format!(
                "the gradient of {name} has shape {} ({:?}), the parameter {}",
                g.shape(),
                g.dtype(),
                param.shape()
            ),
        ));
    }
    if !g.device().same(&param.device()) {
        return Err(Error::Device {
            op,
            a: param.device().name(),
            b: g.device().name(),
        });
    }
    if g.shares_storage(param) {
        return Err(Error::shape(
            op,
            format!("the gradient of {name} shares the parameter's storage"),
        ));
    }
    Ok(Some(g))
}

/// The names of the parameters of `store`, in registration order.
pub(crate) fn param_names(store: &ParamStore) -> Vec<String> {
    store.params().map(|(n, _)| n.to_string()).collect()
}

/// Groups `state` entries `{kind}.{param}` by parameter name, for the `kinds` an optimiser
/// keeps; an entry of another kind is an error naming it, and so is a parameter missing one
/// of the kinds or an entry that is not `F32`.
pub(crate) fn group_state(
    op: &'static str,
    state: Vec<(String, Tensor)>,
    kinds: &[&str],
) -> Result<BTreeMap<String, Vec<Tensor>>> {
    let mut parts: BTreeMap<String, Vec<Option<Tensor>>> = BTreeMap::new();
    for (name, t) in state {
        let found = kinds.iter().enumerate().find_map(|(k, kind)| {
            name.strip_prefix(kind)
                .and_then(|r| r.strip_prefix('.'))
                .filter(|p| !p.is_empty())
                .map(|p| (k, p.to_string()))
        });
        let Some((k, param)) = found else {
            return Err(Error::shape(
                op,
                format!(
                    "unknown optimizer state entry {name} (expected {})",
                    kinds
                        .iter()
                        .map(|k| format!("{k}.<param>"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if t.dtype() != DType::F32 {
            return Err(Error::shape(
                op,
                format!("optimizer state {name} is {:?}, not F32", t.dtype()),
            ));
        }
        let slots = parts
            .entry(param)
            .or_insert_with(|| vec![None; kinds.len()]);
        if slots[k].replace(t).is_some() {
            return Err(Error::shape(
                op,
                format!("optimizer state {name} is given twice"),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (param, slots) in parts {
        let mut ts = Vec::with_capacity(kinds.len());
        for (k, s) in slots.into_iter().enumerate() {
            match s {
                Some(t) => ts.push(t),
                None => {
                    return Err(Error::shape(
                        op,
                        format!("optimizer state {}.{param} is missing", kinds[k]),
                    ))
                }
            }
        }
        out.insert(param, ts);
    }
    Ok(out)
}
