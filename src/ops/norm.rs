//! Batch normalisation of `[N, C, H, W]` images (PyTorch `batch_norm` semantics).
//!
//! Training: per channel `c`, over the `n = N·H·W` values,
//! `μ_c = mean(x)`, `σ²_c = mean((x − μ_c)²)` (biased), and
//! `y = (x − μ_c) / sqrt(σ²_c + eps) · γ_c + β_c`.
//! The running statistics are updated (as new tensors, without history) by
//! `running ← (1 − momentum)·running + momentum·batch_stat`, where the variance fed to
//! `running_var` is the unbiased one, `σ²_c · n / (n − 1)`.
//!
//! Evaluation: `y = (x − running_mean_c) / sqrt(running_var_c + eps) · γ_c + β_c`.
//!
//! Composed from primitives (reshape, mean, sub, square, pow, mul, add), so autograd gives the
//! gradients with respect to `x`, `γ` and `β` (in training including the paths through
//! `μ` and `σ²`). The per-channel reductions first reduce the long contiguous `H·W` axis of
//! `x` viewed as `[N, C, H·W]` (the tree kernel once `H·W` is long), then the `N` axis.

use crate::autograd::no_grad;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{same_device, DType, Tensor};

/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f32 = 0.1;
/// PyTorch's default `eps` added to the variance.
pub const BN_EPS: f32 = 1e-5;

/// The running statistics of a batch-norm layer, both `[C]`.
#[derive(Clone, Debug)]
pub struct BatchNormState {
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNormState {
    /// Fresh statistics for `channels` channels: mean 0, variance 1 (as PyTorch).
    pub fn new(channels: usize, dev: &Device) -> Result<Self> {
        Ok(BatchNormState {
            running_mean: Tensor::zeros([channels], dev)?,
            running_var: Tensor::ones([channels], dev)?,
        })
    }
}

/// Per-channel mean of `v [N, C, H, W]`, shaped `[1, C, 1, 1]`.
fn channel_mean(v: &Tensor) -> Result<Tensor> {
    let d = v.dims();
    let (n, c, hw) = (d[0], d[1], d[2] * d[3]);
    v.reshape([n, c, hw])?
        .mean_axis(2, false)?
        .mean_axis(0, false)?
        .reshape([1, c, 1, 1])
}

fn check(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    momentum: f32,
    eps: f32,
) -> Result<usize> {
    let all = [x, gamma, beta, &state.running_mean, &state.running_var];
    for t in all {
        t.expect_dtype("batch_norm2d", DType::F32)?;
    }
    same_device("batch_norm2d", &all)?;
    if x.shape().rank() != 4 {
        return Err(Error::shape(
            "batch_norm2d",
            format!("expected x of shape [N, C, H, W], got {}", x.shape()),
        ));
    }
    let c = x.dims()[1];
    for (name, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", &state.running_mean),
        ("running_var", &state.running_var),
    ] {
        if t.dims() != [c] {
            return Err(Error::shape(
                "batch_norm2d",
                format!(
                    "{name} has shape {}, expected [{c}] for x of shape {}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    if !(0.0..=1.0).contains(&momentum) || eps.is_nan() || eps < 0.0 {
        return Err(Error::shape(
            "batch_norm2d",
            format!("momentum {momentum} must lie in [0, 1] and eps {eps} be ≥ 0"),
        ));
    }
    Ok(c)
}

/// Batch normalisation of `x [N, C, H, W]` with affine `gamma`, `beta` `[C]` (see the module
/// docs for the formulas). In training it normalises with the batch statistics and also
/// returns the updated running statistics; in evaluation it uses `state` and returns `None`.
///
/// Gradient: with respect to `x`, `gamma` and `beta` (through autograd of the composition).
/// Training needs more than one value per channel (`N·H·W > 1`), as in PyTorch.
pub fn batch_norm2d(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Option<BatchNormState>)> {
    let c = check(x, gamma, beta, state, momentum, eps)?;
    let cshape = [1, c, 1, 1];
    if !training {
        let rstd = state.running_var.add_scalar(eps)?.powf(-0.5)?;
        let scale = gamma.mul(&rstd)?;
        let shift = beta.sub(&state.running_mean.mul(&scale)?)?;
        let y = x
            .mul(&scale.reshape(cshape)?)?
            .add(&shift.reshape(cshape)?)?;
        return Ok((y, None));
    }
    let d = x.dims();
    let n = d[0] * d[2] * d[3];
    if n <= 1 {
        return Err(Error::shape(
            "batch_norm2d",
            format!(
                "training needs more than one value per channel, got x of shape {}",
                x.shape()
            ),
        ));
    }
    let mean = channel_mean(x)?;
    let centred = x.sub(&mean)?;
    let var = channel_mean(&centred.square()?)?;
    let scale = gamma
        .reshape(cshape)?
        .mul(&var.add_scalar(eps)?.powf(-0.5)?)?;
    let y = centred.mul(&scale)?.add(&beta.reshape(cshape)?)?;
    let updated = {
        let _g = no_grad();
        let keep = 1.0 - momentum;
        let unbias = (f64::from(momentum) * n as f64 / (n - 1) as f64) as f32;
        BatchNormState {
            running_mean: state
                .running_mean
                .mul_scalar(keep)?
                .add(&mean.reshape([c])?.mul_scalar(momentum)?)?,
            running_var: state
                .running_var
                .mul_scalar(keep)?
                .add(&var.reshape([c])?.mul_scalar(unbias)?)?,
        }
    };
    Ok((y, Some(updated)))
}
