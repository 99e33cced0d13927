//! Gradient clipping by global norm (`torch.nn.utils.clip_grad_norm_`), on the device.

use super::kernels::launch_clip_factor;
use crate::autograd::{no_grad, Gradients};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// Added to the norm before dividing, as PyTorch does (`max_norm / (norm + 1e-6)`).
pub const CLIP_EPS: f64 = 1e-6;

/// The global gradient norm of a step and the factor the update kernels scale every
/// gradient by; both 1-element tensors on the device, never read back by the optimiser.
#[derive(Clone, Debug)]
pub struct GradClip {
    norm: Tensor,
    factor: Tensor,
}

impl GradClip {
    /// `‖g‖ = √(Σ_params Σ_i g_i²)` over the parameters that have a gradient (shape `[1]`).
    pub fn norm(&self) -> &Tensor {
        &self.norm
    }

    /// `min(1, max_norm / (‖g‖ + 1e-6))` (shape `[1]`).
    pub fn factor(&self) -> &Tensor {
        &self.factor
    }
}

/// The global norm of the gradients of `store`'s parameters and the clip factor
/// `min(1, max_norm / (norm + 1e-6))`, computed on the device without a readback: per
/// gradient a sum of squares (`square`, `sum`), accumulated with `add`, then one kernel for
/// the square root and the factor. Pass the result to [`super::Optimizer::step_clipped`]:
/// the update then uses `factor·g` (PyTorch's `clip_grad_norm_` followed by `step`). With no
/// gradient at all the norm is 0 and the factor 1.
pub fn clip_grad_norm(store: &ParamStore, grads: &Gradients, max_norm: f64) -> Result<GradClip> {
    if !(max_norm > 0.0) {
        return Err(Error::shape(
            "clip_grad_norm",
            format!("max_norm = {max_norm} must be > 0"),
        ));
    }
    let _guard = no_grad();
    let dev = store.device();
    let mut total: Option<Tensor> = None;
    for (name, p) in store.params() {
        let Some(g) = super::grad_of("clip_grad_norm", grads, name, p)? else {
            continue;
        };
        let s = g.square()?.sum()?.reshape([1])?;
        total = Some(match total {
            Some(t) => t.add(&s)?,
            None => s,
        });
    }
    let total = match total {
        Some(t) => t,
        None => Tensor::zeros([1], dev)?,
    };
    let (norm, factor) = match dev {
        Device::Cpu => {
            let norm = total.cpu_data("clip_grad_norm")?[0].max(0.0).sqrt();
            let factor = (max_norm / (norm + CLIP_EPS)).min(1.0);
            (
                Tensor::from_f64(vec![norm], [1], dev)?,
                Tensor::from_f64(vec![factor], [1], dev)?,
            )
        }
        Device::Gpu(_) => launch_clip_factor(&total, max_norm as f32, CLIP_EPS as f32)?,
    };
    Ok(GradClip { norm, factor })
}

/// The gradient scale of a step: the clip factor, or a 1-element 1 (a fill, no upload).
pub(crate) fn scale_tensor(clip: Option<&GradClip>, dev: &Device) -> Result<Tensor> {
    match clip {
        Some(c) => {
            if !c.factor.device().same(dev) {
                return Err(Error::Device {
                    op: "step_clipped",
                    a: dev.name(),
                    b: c.factor.device().name(),
                });
            }
            Ok(c.factor.clone())
        }
        None => Tensor::ones([1], dev),
    }
}
