//! The parameter store: name → tensor, trainable or buffer, in registration order.

use std::collections::HashMap;
use std::sync::Arc;

use crate::device::Device;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Whether a stored tensor is trained (a parameter) or carried along (a buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Trained by the optimiser; an autograd leaf (`requires_grad`).
    Param,
    /// State that is saved but not trained (batch-norm running statistics).
    Buffer,
}

struct Entry {
    tensor: Tensor,
    kind: Kind,
}

/// Named tensors of a model on one device, in the order they were registered (PyTorch's
/// `state_dict` order for the modules of this crate).
pub struct ParamStore {
    device: Device,
    order: Vec<String>,
    map: HashMap<String, Entry>,
    /// The replicas batch norm synchronises its statistics with (`None`: its own batch).
    sync_bn: Option<Arc<dyn Collective>>,
}

impl ParamStore {
    /// An empty store on `device`.
    pub fn new(device: &Device) -> ParamStore {
        ParamStore {
            device: device.clone(),
            order: Vec::new(),
            map: HashMap::new(),
            sync_bn: None,
        }
    }

    /// Makes the batch-norm layers of the model over this store normalise over the
    /// global batch of `comm`'s ranks in training (`None`: over the local batch, the
    /// default). See [`crate::dist::sync_batch_norm2d`].
    pub fn set_sync_bn(&mut self, comm: Option<Arc<dyn Collective>>) {
        self.sync_bn = comm;
    }

    /// The ranks batch norm synchronises with, if any.
    pub fn sync_bn(&self) -> Option<&Arc<dyn Collective>> {
        self.sync_bn.as_ref()
    }

    /// The device every tensor of the store lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Registers a new tensor. Parameters become autograd leaves here, once: the stored
    /// handle keeps its identity until it is replaced, so gradients of every step are
    /// found under it.
    pub fn insert(&mut self, name: &str, tensor: Tensor, kind: Kind) -> Result<()> {
        if self.map.contains_key(name) {
            return Err(Error::shape(
                "ParamStore::insert",
                format!("{name} is registered twice"),
            ));
        }
        let tensor = tensor.to_device(&self.device)?;
        let tensor = match kind {
            Kind::Param => tensor.as_param(),
            Kind::Buffer => tensor.detach(),
        };
        self.order.push(name.to_string());
        self.map.insert(name.to_string(), Entry { tensor, kind });
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map
            .get(name)
            .map(|e| &e.tensor)
            .ok_or_else(|| Error::shape("ParamStore::get", format!("no tensor named {name}")))
    }

    /// Whether `name` is a parameter or a buffer.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.map.get(name).map(|e| e.kind)
    }

    /// Replaces the values of `name` with `value` (same shape; moved to the store's device).
    /// A parameter gets a new leaf identity; use `ParamStore::update_param` to keep it.
    pub fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        let value = value.to_device(&self.device)?;
        let e = self
            .map
            .get_mut(name)
            .ok_or_else(|| Error::shape("ParamStore::set", format!("no tensor named {name}")))?;
        if e.tensor.shape() != value.shape() {
            return Err(Error::shape(
                "ParamStore::set",
                format!(
                    "{name} has shape {}, the new value {}",
                    e.tensor.shape(),
                    value.shape()
                ),
            ));
        }
        e.tensor = match e.kind {
            Kind::Param => value.as_param(),
            Kind::Buffer => value.detach(),
        };
        Ok(())
    }

    /// Replaces the stored handle of a parameter by `value` as returned by an in-place
    /// optimiser update: on the CPU backend a handle with the SAME id over the new values
    /// (`Tensor::with_new_values`), so gradients keep being found under it. A value with
    /// another id or shape is refused.
    pub(crate) fn update_param(&mut self, name: &str, value: Tensor) -> Result<()> {
        let op = "ParamStore::update_param";
        let e = self
            .map
            .get_mut(name)
            .ok_or_else(|| Error::shape(op, format!("no tensor named {name}")))?;
        if e.tensor.id() != value.id() || e.tensor.shape() != value.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "{name}: the update must keep the identity and shape {} (got id {} for {}, shape {})",
                    e.tensor.shape(),
                    value.id(),
                    e.tensor.id(),
                    value.shape()
                ),
            ));
        }
        e.tensor = value;
        Ok(())
    }

    /// Every name, in registration order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// `(name, tensor, kind)` in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor, Kind)> {
        self.order
            .iter()
            .filter_map(|n| self.map.get(n).map(|e| (n.as_str(), &e.tensor, e.kind)))
    }

    /// The trainable parameters, in registration order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.iter()
            .filter(|(_, _, k)| *k == Kind::Param)
            .map(|(n, t, _)| (n, t))
    }

    /// Number of scalars in the trainable parameters.
    pub fn param_count(&self) -> usize {
        self.params().map(|(_, t)| t.numel()).sum()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
