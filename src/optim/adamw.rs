//! Adam with decoupled weight decay (PyTorch's `torch.optim.AdamW`, `amsgrad = False`).

use std::collections::BTreeMap;

use super::kernels::{launch_update, OptimParams};
use super::{grad_of, group_state, param_names, GradClip, Optimizer, Slot};
use crate::autograd::{no_grad, Gradients};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

const OP: &str = "adamw";
const KINDS: [&str; 3] = ["exp_avg", "exp_avg_sq", "step"];

/// The state of one parameter: first and second moments and its step count.
#[derive(Clone)]
struct State {
    exp_avg: Slot,
    exp_avg_sq: Slot,
    step: u64,
}

/// AdamW. Per parameter `p` with gradient `g` (times the clip factor `s` when clipping), at
/// its step `t` (1 at its first update) and learning rate `lr`, PyTorch's update:
///
/// ```text
/// p = p·(1 − lr·weight_decay)
/// m = β1·m + (1 − β1)·s·g                    (m, v start at 0)
/// v = β2·v + (1 − β2)·(s·g)²
/// p = p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
/// ```
///
/// i.e. `p − lr·m̂/(√v̂ + eps)` with `m̂ = m/(1 − β1^t)`, `v̂ = v/(1 − β2^t)`. The bias
/// corrections are computed on the host in `f64`. State: `exp_avg.{param}`,
/// `exp_avg_sq.{param}` (shape of the parameter) and `step.{param}` (a 1-element CPU tensor:
/// each parameter counts its own updates, so one skipped for want of a gradient keeps its
/// count, as in PyTorch).
#[derive(Clone)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    state: BTreeMap<String, State>,
}

impl Default for AdamW {
    /// β1 = 0.9, β2 = 0.999, eps = 1e-8, weight_decay = 0.01 (PyTorch's defaults).
    fn default() -> Self {
        AdamW::new(0.9, 0.999, 1e-8, 0.01)
    }
}

impl AdamW {
    pub fn new(beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> AdamW {
        AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
            state: BTreeMap::new(),
        }
    }

    fn check(&self) -> Result<()> {
        let ok = (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps >= 0.0
            && self.weight_decay >= 0.0;
        if !ok {
            return Err(Error::shape(
                OP,
                format!(
                    "betas ({}, {}) must lie in [0, 1), eps {} and weight_decay {} must be ≥ 0",
                    self.beta1, self.beta2, self.eps, self.weight_decay
                ),
            ));
        }
        Ok(())
    }

    /// `(1 − lr·wd, lr/(1 − β1^t), 1/√(1 − β2^t))` for step `t`.
    fn coefficients(&self, lr: f64, t: u64) -> (f64, f64, f64) {
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        (1.0 - lr * self.weight_decay, lr / bc1, 1.0 / bc2.sqrt())
    }
}

impl Optimizer for AdamW {
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
            if !self.state.contains_key(&name) {
                let zeros = || Tensor::zeros(p.shape().clone(), &dev);
                let st = State {
                    exp_avg: Slot::owned(zeros()?),
                    exp_avg_sq: Slot::owned(zeros()?),
                    step: 0,
                };
                self.state.insert(name.clone(), st);
            }
            let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
            let t = self.state.get(&name).map_or(1, |s| s.step + 1);
            let (decay, step_size, rsqrt_bc2) = self.coefficients(lr, t);
            let st = self
                .state
                .get_mut(&name)
                .ok_or_else(|| Error::shape(OP, format!("no state for {name}")))?;
            st.step = t;
            let m = st
                .exp_avg
                .prepare(OP, &format!("exp_avg.{name}"), &p, &dev)?
                .clone();
            let v = st
                .exp_avg_sq
                .prepare(OP, &format!("exp_avg_sq.{name}"), &p, &dev)?
                .clone();
            match &dev {
                Device::Cpu => {
                    let s = scale.cpu_data(OP)?[0];
                    let (pv, gv) = (p.cpu_data(OP)?, g.cpu_data(OP)?);
                    let (mv, vv) = (m.cpu_data(OP)?, v.cpu_data(OP)?);
                    let n = pv.len();
                    let (mut np, mut nm, mut nv) = (
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                        Vec::with_capacity(n),
                    );
                    for i in 0..n {
                        let gi = s * gv[i];
                        let mi = b1 * mv[i] + (1.0 - b1) * gi;
                        let vi = b2 * vv[i] + (1.0 - b2) * gi * gi;
                        let denom = vi.max(0.0).sqrt() * rsqrt_bc2 + eps;
                        np.push(pv[i] * decay - step_size * mi / denom);
                        nm.push(mi);
                        nv.push(vi);
                    }
                    st.exp_avg = Slot::owned(m.with_new_values(OP, nm)?);
                    st.exp_avg_sq = Slot::owned(v.with_new_values(OP, nv)?);
                    store.update_param(&name, p.with_new_values(OP, np)?)?;
                }
                Device::Gpu(_) => {
                    let params = OptimParams {
                        beta1: b1 as f32,
                        beta2: b2 as f32,
                        eps: eps as f32,
                        decay: decay as f32,
                        step_size: step_size as f32,
                        rsqrt_bc2: rsqrt_bc2 as f32,
                        ..OptimParams::default()
                    };
                    launch_update("adamw", params, g, &scale, &p, &[&m, &v])?;
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (n, s) in &self.state {
            out.push((format!("exp_avg.{n}"), s.exp_avg.tensor.clone()));
            out.push((format!("exp_avg_sq.{n}"), s.exp_avg_sq.tensor.clone()));
            // Exact in f64 for every count below 2^53.
            if let Ok(t) = Tensor::from_f64(vec![s.step as f64], [1], &Device::Cpu) {
                out.push((format!("step.{n}"), t));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let groups = group_state(OP, state, &KINDS)?;
        let mut new = BTreeMap::new();
        for (name, ts) in groups {
            let [m, v, step] = <[Tensor; 3]>::try_from(ts)
                .map_err(|_| Error::shape(OP, format!("state of {name} is incomplete")))?;
            if m.shape() != v.shape() {
                return Err(Error::shape(
                    OP,
                    format!(
                        "optimizer state exp_avg_sq.{name} has shape {}, exp_avg.{name} {}",
                        v.shape(),
                        m.shape()
                    ),
                ));
            }
            let count = if step.numel() == 1 {
                step.to_vec_f64()?[0]
            } else {
                f64::NAN
            };
            if !(count >= 0.0 && count.fract() == 0.0 && count < 9.0e15) {
                return Err(Error::shape(
                    OP,
                    format!(
                        "optimizer state step.{name} (shape {}) must hold one whole count ≥ 0",
                        step.shape()
                    ),
                ));
            }
            new.insert(
                name,
                State {
                    exp_avg: Slot::loaded(&m)?,
                    exp_avg_sq: Slot::loaded(&v)?,
                    step: count as u64,
                },
            );
        }
        self.state = new;
        Ok(())
    }
}
