//! The GPU side of the optimisers: the parameter block of `shaders/optim.wgsl` and one
//! launch per entry point. Each update is one dispatch that writes the parameter (and its
//! state) in place through [`Tensor::gpu_buf_for_write`], which bumps their versions.

use crate::error::Result;
use crate::gpu::{groups_for, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

/// Mirrors `Params` of shaders/optim.wgsl: one block for every entry point, each reading
/// its own fields (the rest are zero).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct OptimParams {
    pub(crate) n: u32,
    /// Bit 0: first step (SGD's buffer is set to the gradient); bit 1: Nesterov.
    pub(crate) flags: u32,
    pub(crate) lr: f32,
    pub(crate) momentum: f32,
    pub(crate) weight_decay: f32,
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) eps: f32,
    /// AdamW: `1 − lr·wd`.
    pub(crate) decay: f32,
    /// AdamW: `lr / (1 − β1^t)`.
    pub(crate) step_size: f32,
    /// AdamW: `1 / √(1 − β2^t)`.
    pub(crate) rsqrt_bc2: f32,
    /// clip_factor: the largest global norm kept.
    pub(crate) max_norm: f32,
}

pub(crate) const FLAG_FIRST: u32 = 1;
pub(crate) const FLAG_NESTEROV: u32 = 2;

/// Runs `entry` over `param` with `grad` and the 1-element gradient `scale` as inputs and
/// `param` then `states` written in place.
pub(crate) fn launch_update(
    entry: &'static str,
    mut params: OptimParams,
    grad: &Tensor,
    scale: &Tensor,
    param: &Tensor,
    states: &[&Tensor],
) -> Result<()> {
    let n = param.numel();
    // Parameters of a multiple of 4 values take the vec4 entry (`sgd4`, ...): a quarter of
    // the storage accesses, which lavapipe runs as a scalar loop per SIMD vector.
    let (kernel, n) = if n % 4 == 0 {
        (vec4_entry(entry), n / 4)
    } else {
        (entry, n)
    };
    params.n = n as u32;
    let g = grad.gpu_buf(entry)?;
    let s = scale.gpu_buf(entry)?;
    let ctx = g.context().clone();
    let mut outs = vec![param.gpu_buf_for_write(entry)?];
    for t in states {
        outs.push(t.gpu_buf_for_write(entry)?);
    }
    let k = Kernel::new(Shader::Optim, kernel).with("WG", ELEMENTWISE_WG);
    ctx.launch(&k, &params, &[g, s], &outs, groups_for(n, ELEMENTWISE_WG))
}

/// The vec4 form of an update entry point.
fn vec4_entry(entry: &'static str) -> &'static str {
    match entry {
        "sgd" => "sgd4",
        "sgd_plain" => "sgd_plain4",
        "adamw" => "adamw4",
        other => other,
    }
}

/// `norm = √sumsq`, `factor = min(1, max_norm / (norm + eps))` into fresh 1-element
/// tensors (one single-thread dispatch).
pub(crate) fn launch_clip_factor(
    sumsq: &Tensor,
    max_norm: f32,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let b = sumsq.gpu_buf("clip_grad_norm")?;
    let ctx = b.context().clone();
    let one = |t| Tensor::from_storage(Storage::Gpu(t), Shape::from([1]), DType::F32);
    let norm = one(ctx.alloc_storage(1)?);
    let factor = one(ctx.alloc_storage(1)?);
    ctx.launch(
        &Kernel::new(Shader::Optim, "clip_factor"),
        &OptimParams {
            max_norm,
            eps,
            ..OptimParams::default()
        },
        &[b],
        &[
            norm.gpu_buf_for_write("clip_grad_norm")?,
            factor.gpu_buf_for_write("clip_grad_norm")?,
        ],
        1,
    )?;
    Ok((norm, factor))
}
