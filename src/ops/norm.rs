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
//! Training is one fused op ([`Op::BatchNorm`]) built on two kernels of
//! `shaders/batch_norm.wgsl` (per-channel sums, and a per-channel affine map of one or two
//! inputs): the forward is Σx, Σ(x − μ)² (two-pass variance) and `y = x·s + t`; the backward
//! is `Σ dy`, `Σ dy·(x − μ)` and one affine pass, with `x̂ = (x − μ)·r`, `r = (σ² + eps)^−½`,
//! `n = N·H·W`:
//!
//! ```text
//! ∂β = Σ dy    ∂γ = r·Σ dy·(x − μ)    ∂x = γr·(dy − Σdy/n − x̂·Σ(dy·x̂)/n)
//! ```
//!
//! (the composition of mean/sub/square/pow/mul/add it replaces made about ten full-size
//! passes in each direction). Evaluation is composed from primitives (two broadcasts).

use crate::autograd::{no_grad, Op};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Shader};
use crate::tensor::{same_device, DType, Storage, Tensor};

/// Invocations per plane of `bn_sums` (`LANES` in batch_norm.wgsl).
pub const BN_LANES: usize = 64;
/// Elements per invocation of `bn_affine` (`CHUNK` in batch_norm.wgsl).
pub const BN_CHUNK: usize = 16;

/// `#[repr(C)]` mirror of `struct BnParams` in `shaders/batch_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnParams {
    pub(crate) planes: u32,
    pub(crate) c: u32,
    pub(crate) hw: u32,
    pub(crate) chunks: u32,
    pub(crate) _p: [u32; 4],
}

fn bn_params(x: &Tensor) -> Result<(BnParams, usize, usize, usize)> {
    let d = x.dims();
    let (n, c, hw) = (d[0], d[1], d[2] * d[3]);
    let u = |v: usize| crate::ops::gemm::u32_of("batch_norm2d", v);
    Ok((
        BnParams {
            planes: u(n * c)?,
            c: u(c)?,
            hw: u(hw)?,
            chunks: u(hw.div_ceil(BN_CHUNK))?,
            _p: [0; 4],
        },
        n,
        c,
        hw,
    ))
}

/// Per-channel sums over N, H, W of `x [N, C, H, W]` (no history): mode 0 `[Σx]`, mode 1
/// `[Σ(x − μ)²]`, mode 2 `[Σ dy, Σ dy·(x − μ)]`, each `[C]`.
fn channel_sums(
    mode: u32,
    x: &Tensor,
    mu: Option<&Tensor>,
    dy: Option<&Tensor>,
) -> Result<Vec<Tensor>> {
    const OP: &str = "batch_norm2d";
    let (bp, n, c, hw) = bn_params(x)?;
    let outs = if mode == 2 { 2 } else { 1 };
    match x.storage() {
        Storage::Cpu(xv) => {
            let m = mu.map(|m| m.cpu_data(OP)).transpose()?;
            let g = dy.map(|g| g.cpu_data(OP)).transpose()?;
            let mut s = vec![vec![0.0f64; c]; outs];
            for img in 0..n {
                for ch in 0..c {
                    let base = (img * c + ch) * hw;
                    let mu = m.map_or(0.0, |m| m[ch]);
                    for i in base..base + hw {
                        match (mode, g) {
                            (0, _) => s[0][ch] += xv[i],
                            (1, _) => s[0][ch] += (xv[i] - mu) * (xv[i] - mu),
                            (_, Some(g)) => {
                                s[0][ch] += g[i];
                                s[1][ch] += g[i] * (xv[i] - mu);
                            }
                            _ => {
                                return Err(Error::shape(
                                    OP,
                                    String::from("channel sums without dy"),
                                ))
                            }
                        }
                    }
                }
            }
            Ok(s.into_iter()
                .map(|v| {
                    Tensor::from_storage(Storage::Cpu(v), crate::shape::Shape(vec![c]), DType::F32)
                })
                .collect())
        }
        Storage::Gpu(xb) => {
            let ctx = xb.context();
            let part = ctx.alloc_storage(outs * n * c * BN_LANES)?;
            let mu_b = mu.map(|m| m.gpu_buf(OP)).transpose()?.unwrap_or(xb);
            let dy_b = dy.map(|g| g.gpu_buf(OP)).transpose()?.unwrap_or(xb);
            ctx.launch(
                &Kernel::new(Shader::BatchNorm, "bn_sums").with("MODE", mode),
                &bp,
                &[xb, dy_b, mu_b],
                &[&part],
                (n * c * BN_LANES).div_ceil(64) as u64,
            )?;
            let part = Tensor::from_storage(
                Storage::Gpu(part),
                crate::shape::Shape(vec![outs, n, c, BN_LANES]),
                DType::F32,
            );
            let sums = part.sum_axis(3, false)?.sum_axis(1, false)?;
            (0..outs)
                .map(|k| sums.narrow(0, k, 1)?.reshape([c]))
                .collect()
        }
    }
}

/// `a_c·u + b_c·v + d_c` over `[N, C, H, W]` (`u` and `a` optional; no history).
fn channel_affine(
    v: &Tensor,
    ua: Option<(&Tensor, &Tensor)>,
    b: &Tensor,
    d: &Tensor,
) -> Result<Storage> {
    const OP: &str = "batch_norm2d";
    let (bp, n, c, hw) = bn_params(v)?;
    match v.storage() {
        Storage::Cpu(vv) => {
            let (bv, dv) = (b.cpu_data(OP)?, d.cpu_data(OP)?);
            let ua = ua
                .map(|(u, a)| Ok::<_, Error>((u.cpu_data(OP)?, a.cpu_data(OP)?)))
                .transpose()?;
            let mut out = vec![0.0; vv.len()];
            for img in 0..n {
                for ch in 0..c {
                    let base = (img * c + ch) * hw;
                    for i in base..base + hw {
                        out[i] = bv[ch] * vv[i] + dv[ch] + ua.map_or(0.0, |(u, a)| a[ch] * u[i]);
                    }
                }
            }
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(vb) => {
            let ctx = vb.context();
            // Without u the kernel never reads a (TWO_INPUTS = false): b fills its slot, so
            // no zeros are uploaded (an upload flushes the recorder).
            let a = ua.map_or_else(|| b.clone(), |(_, a)| a.clone());
            let coef = crate::ops::copy::concat(&[a, b.clone(), d.clone()], 0)?;
            let ub = ua.map(|(u, _)| u.gpu_buf(OP)).transpose()?.unwrap_or(vb);
            let out = ctx.alloc_storage(v.numel())?;
            ctx.launch(
                &Kernel::new(Shader::BatchNorm, "bn_affine")
                    .with("TWO_INPUTS", u32::from(ua.is_some())),
                &bp,
                &[vb, ub, coef.gpu_buf(OP)?],
                &[&out],
                (n * c * hw.div_ceil(BN_CHUNK)).div_ceil(64) as u64,
            )?;
            Ok(Storage::Gpu(out))
        }
    }
}

/// Backward of the training forward ([`Op::BatchNorm`]): `[∂x, ∂γ, ∂β]` (see the module
/// docs), each only where its input requires a gradient.
pub(crate) fn batch_norm_backward(
    inputs: &[Tensor],
    mean: &Tensor,
    rstd: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let _g = no_grad();
    let (x, gamma, beta) = (&inputs[0], &inputs[1], &inputs[2]);
    let d = x.dims();
    let count = (d[0] * d[2] * d[3]) as f64;
    let s = channel_sums(2, x, Some(mean), Some(g))?;
    let (sdy, sdyx) = (&s[0], &s[1]);
    let dx = if x.requires_grad() {
        let scale = gamma.mul(rstd)?;
        let b = scale
            .mul(rstd)?
            .mul(rstd)?
            .mul(sdyx)?
            .mul_scalar(-1.0 / count)?;
        let dd = b
            .mul(mean)?
            .add(&scale.mul(sdy)?.mul_scalar(1.0 / count)?)?
            .neg()?;
        let st = channel_affine(x, Some((g, &scale)), &b, &dd)?;
        Some(Tensor::from_storage(st, x.shape().clone(), DType::F32))
    } else {
        None
    };
    let dgamma = gamma.requires_grad().then(|| sdyx.mul(rstd)).transpose()?;
    let dbeta = beta.requires_grad().then(|| sdy.clone());
    Ok(vec![dx, dgamma, dbeta])
}

/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;
/// PyTorch's default `eps` added to the variance.
pub const BN_EPS: f64 = 1e-5;

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

fn check(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    momentum: f64,
    eps: f64,
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
///
/// `momentum` and `eps` are `f64`, and so are the derived scalars (`1/n`, `1 − momentum`,
/// the unbiasing factor `momentum·n/(n − 1)`): the CPU reference computes in `f64` end to
/// end; a GPU rounds them to `f32` in its uniform params.
pub fn batch_norm2d(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    training: bool,
    momentum: f64,
    eps: f64,
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
    let (st, mean, rstd, var) = {
        let _g = no_grad();
        let inv = 1.0 / n as f64;
        let mean = channel_sums(0, x, None, None)?.remove(0).mul_scalar(inv)?;
        let var = channel_sums(1, x, Some(&mean), None)?
            .remove(0)
            .mul_scalar(inv)?;
        let rstd = var.add_scalar(eps)?.powf(-0.5)?;
        let scale = gamma.mul(&rstd)?;
        let shift = beta.sub(&mean.mul(&scale)?)?;
        (channel_affine(x, None, &scale, &shift)?, mean, rstd, var)
    };
    // Recorded outside `no_grad`, so that the output joins the tape.
    let y = Tensor::from_op(
        st,
        x.shape().clone(),
        DType::F32,
        Op::BatchNorm {
            mean: mean.clone(),
            rstd,
        },
        vec![x.clone(), gamma.clone(), beta.clone()],
    );
    let updated = {
        let _g = no_grad();
        let keep = 1.0 - momentum;
        let unbias = momentum * n as f64 / (n - 1) as f64;
        BatchNormState {
            running_mean: state
                .running_mean
                .mul_scalar(keep)?
                .add(&mean.mul_scalar(momentum)?)?,
            running_var: state
                .running_var
                .mul_scalar(keep)?
                .add(&var.mul_scalar(unbias)?)?,
        }
    };
    Ok((y, Some(updated)))
}
