//! Stochastic gradient descent with momentum and weight decay (PyTorch's `torch.optim.SGD`,
//! dampening 0).

use std::collections::BTreeMap;

use super::kernels::{launch_update, OptimParams, FLAG_FIRST, FLAG_NESTEROV};
use super::{grad_of, group_state, param_names, GradClip, Optimizer, Slot};
use crate::autograd::{no_grad, Gradients};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

const OP: &str = "sgd";
const BUF: &str = "momentum_buffer";

/// SGD. Per parameter `p` with gradient `g` (times the clip factor `s` when clipping),
/// at learning rate `lr`, PyTorch's update:
///
/// ```text
/// d   = s·g + weight_decay·p
/// buf = d                              (first step of p)
/// buf = momentum·buf + d               (later steps)
/// d   = d + momentum·buf  if nesterov,  else buf      (momentum > 0)
/// p   = p − lr·d
/// ```
///
/// With `momentum = 0` there is no buffer and `p = p − lr·d`. State:
/// `momentum_buffer.{param}` (shape of the parameter).
#[derive(Clone)]
pub struct Sgd {
    /// Momentum factor (0.9 by default; 0 disables the buffer).
    pub momentum: f64,
    /// L2 penalty added to the gradient (`weight_decay·p`), 0 by default.
    pub weight_decay: f64,
    /// Nesterov momentum (false by default).
    pub nesterov: bool,
    buffers: BTreeMap<String, Slot>,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd::new(0.9, 0.0, false)
    }
}

impl Sgd {
    pub fn new(momentum: f64, weight_decay: f64, nesterov: bool) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            nesterov,
            buffers: BTreeMap::new(),
        }
    }

    /// The CPU reference update of one parameter, in `f64`; returns the new parameter
    /// values and the new buffer.
    fn cpu_update(
        &self,
        p: &[f64],
        g: &[f64],
        s: f64,
        buf: Option<&[f64]>,
        lr: f64,
    ) -> (Vec<f64>, Option<Vec<f64>>) {
        let d: Vec<f64> = p
            .iter()
            .zip(g)
            .map(|(&p, &g)| s * g + self.weight_decay * p)
            .collect();
        if self.momentum == 0.0 {
            let np = p.iter().zip(&d).map(|(&p, &d)| p - lr * d).collect();
            return (np, None);
        }
        let nb: Vec<f64> = match buf {
            None => d.clone(),
            Some(b) => b
                .iter()
                .zip(&d)
                .map(|(&b, &d)| self.momentum * b + d)
                .collect(),
        };
        let np = p
            .iter()
            .zip(&d)
            .zip(&nb)
            .map(|((&p, &d), &b)| {
                let step = if self.nesterov {
                    d + self.momentum * b
                } else {
                    b
                };
                p - lr * step
            })
            .collect();
        (np, Some(nb))
    }

    fn check(&self) -> Result<()> {
        if !(self.momentum >= 0.0 && self.weight_decay >= 0.0) {
            return Err(Error::shape(
                OP,
                format!(
                    "momentum {} and weight_decay {} must be ≥ 0",
                    self.momentum, self.weight_decay
                ),
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::shape(OP, "Nesterov momentum needs momentum > 0"));
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        OP
    }

    fn step_clipped(
        &mut self,
        store: &mut ParamStore,
        grads: &Gradients,
        lr: f64,
        clip: Option<&GradClip>,
    ) -> Result<()> {
        self.check()?;
        let _guard = no_grad();
        let dev = store.device().clone();
        let scale = super::clip::scale_tensor(clip, &dev)?;
        for name in param_names(store) {
            let p = store.get(&name)?.clone();
            let Some(g) = grad_of(OP, grads, &name, &p)? else {
                continue;
            };
            let entry = format!("{BUF}.{name}");
            let first = !self.buffers.contains_key(&name);
            match &dev {
                Device::Cpu => {
                    let s = scale.cpu_data(OP)?[0];
                    let buf = match self.buffers.get_mut(&name) {
                        Some(slot) => {
                            Some(slot.prepare(OP, &entry, &p, &dev)?.cpu_data(OP)?.to_vec())
                        }
                        None => None,
                    };
                    let (np, nb) =
                        self.cpu_update(p.cpu_data(OP)?, g.cpu_data(OP)?, s, buf.as_deref(), lr);
                    if let Some(nb) = nb {
                        let t = Tensor::from_f64(nb, p.shape().clone(), &dev)?;
                        self.buffers.insert(name.clone(), Slot::owned(t));
                    }
                    store.update_param(&name, p.with_new_values(OP, np)?)?;
                }
                Device::Gpu(ctx) => {
                    let params = OptimParams {
                        lr: lr as f32,
                        momentum: self.momentum as f32,
                        weight_decay: self.weight_decay as f32,
                        flags: if first { FLAG_FIRST } else { 0 }
                            | if self.nesterov { FLAG_NESTEROV } else { 0 },
                        ..OptimParams::default()
                    };
                    if self.momentum == 0.0 {
                        launch_update("sgd_plain", params, g, &scale, &p, &[])?;
                        continue;
                    }
                    if first {
                        // Written before it is read (FLAG_FIRST): no fill needed.
                        let b = Tensor::from_storage(
                            crate::tensor::Storage::Gpu(ctx.alloc_storage(p.numel())?),
                            p.shape().clone(),
                            crate::tensor::DType::F32,
                        );
                        self.buffers.insert(name.clone(), Slot::owned(b));
                    }
                    let slot = self.buffers.get_mut(&name).ok_or_else(|| {
                        Error::shape(OP, format!("no momentum buffer for {name}"))
                    })?;
                    let b = slot.prepare(OP, &entry, &p, &dev)?;
                    launch_update("sgd", params, g, &scale, &p, &[b])?;
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(n, s)| (format!("{BUF}.{n}"), s.tensor.clone()))
            .collect()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let groups = group_state(OP, state, &[BUF])?;
        let mut buffers = BTreeMap::new();
        for (name, ts) in groups {
            if let Some(t) = ts.first() {
                buffers.insert(name, Slot::loaded(t)?);
            }
        }
        self.buffers = buffers;
        Ok(())
    }
}
