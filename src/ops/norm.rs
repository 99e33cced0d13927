//! Batch normalisation of `[N, C, H, W]` images (PyTorch `batch_norm` semantics), with an
//! optional fused epilogue: a residual add and an activation, `y = act(bn(x) + r)`.
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
//! Training is one fused op ([`Op::BatchNorm`]) on the kernels of `shaders/batch_norm.wgsl`:
//! the forward is three dispatches (per-lane shifted sums Σ(x − K_c), Σ(x − K_c)² with K_c a
//! value of the channel; a per-channel finish that adds them in a fixed order and writes
//! `[μ, r, γr, β − μγr]` and the running statistics; the normalisation pass with the
//! epilogue), the backward three (Σ dy and Σ dy·(x − μ) with `dy = g·act'(y)`; a per-channel
//! finish; one pass `∂x = A·dy + B·x + D`, also writing the residual's gradient `dy`), with
//! `x̂ = (x − μ)·r`, `r = (σ² + eps)^−½`, `n = N·H·W`:
//!
//! ```text
//! ∂β = Σ dy    ∂γ = r·Σ dy·(x − μ)    ∂x = γr·(dy − Σdy/n − x̂·Σ(dy·x̂)/n)
//! A = γr       B = −γr³·Σ dy·(x − μ)/n        D = −B·μ − A·Σ dy/n
//! ```
//!
//! The activation and the residual add run inside the normalisation pass and their
//! backward inside the backward pass: a `conv → BN → ReLU` layer or a residual block's
//! `BN → + identity → ReLU` costs no full-size pass beyond the normalisation itself.
//! Evaluation without gradients is two dispatches (statistics from the running ones, the
//! same epilogue pass); evaluation with gradients is composed from primitives and
//! differentiated by autograd. The CPU backend computes every path in `f64` (two-pass
//! variance), the reference the kernels are tested against.

use crate::autograd::{grad_enabled, Op};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::{GpuBuf, Kernel, Shader};
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

/// Elements per invocation of `bn_stats` (`RUN` in batch_norm.wgsl): a plane of `hw` values
/// gives `⌈hw / BN_RUN⌉` partial sums.
pub const BN_RUN: usize = 64;
/// Elements per invocation of `bn_apply` (`CHUNK` in batch_norm.wgsl; `CHUNK4` vec4 in the
/// vec4 forms).
pub const BN_CHUNK: usize = 16;

/// A finish kernel (`bn_finish`, `bn_finish_backward`) for this adapter and its workgroups:
/// one invocation per channel with [`GpuContext::cpu_variants`](crate::gpu::GpuContext::cpu_variants)
/// (`SERIAL`), else one workgroup per channel.
fn finish_kernel(ctx: &crate::gpu::GpuContext, entry: &'static str, c: usize) -> (Kernel, u64) {
    let serial = ctx.cpu_variants();
    let groups = if serial { c.div_ceil(64) } else { c };
    (
        Kernel::new(Shader::BatchNorm, entry).with("SERIAL", u32::from(serial)),
        groups as u64,
    )
}

/// `p` for `bn_stats` and the finish kernels: `chunks` = partial sums per plane.
fn stats_params(p: &BnParams) -> BnParams {
    BnParams {
        chunks: p.hw.div_ceil(BN_RUN as u32),
        ..*p
    }
}

/// A per-element kernel of batch_norm.wgsl (`bn_stats`, `bn_apply`, `bn_apply_backward`)
/// in its vec4 form where planes hold a multiple of 4 values; returns the kernel, `p` (for
/// the apply passes with `chunks` in that form's units) and the workgroups of an apply pass.
fn plane_kernel(entry: &'static str, p: &BnParams) -> (Kernel, BnParams, u64) {
    let mut p = *p;
    let name = match (entry, p.hw % 4 == 0) {
        ("bn_stats", true) => "bn_stats4",
        ("bn_apply", true) => "bn_apply4",
        ("bn_apply_backward", true) => "bn_apply_backward4",
        (e, _) => e,
    };
    if p.hw % 4 == 0 && entry != "bn_stats" {
        p.chunks = (p.hw / 4).div_ceil(BN_CHUNK as u32 / 4);
    }
    let groups = (u64::from(p.planes) * u64::from(p.chunks)).div_ceil(64);
    (Kernel::new(Shader::BatchNorm, name), p, groups)
}

/// An elementwise activation fused into a kernel's epilogue (`ACT` in the shaders that
/// take one). Its backward needs only the op's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    #[default]
    Identity,
    /// `max(v, 0)`; its derivative is 1 where the output is positive, else 0.
    Relu,
}

impl Activation {
    fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
        }
    }

    fn apply(self, v: f64) -> f64 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
        }
    }

    /// `g·act'(v)` given the activation's output `y`.
    fn grad(self, g: f64, y: f64) -> f64 {
        match self {
            Activation::Identity => g,
            Activation::Relu => {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            }
        }
    }
}

/// `#[repr(C)]` mirror of `struct BnParams` in `shaders/batch_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnParams {
    pub(crate) planes: u32,
    pub(crate) c: u32,
    pub(crate) hw: u32,
    pub(crate) chunks: u32,
    pub(crate) inv_n: f32,
    pub(crate) eps: f32,
    pub(crate) momentum: f32,
    pub(crate) unbias: f32,
}

/// The sizes of `x [N, C, H, W]`: `(n, c, hw)`.
fn sizes(x: &Tensor) -> (usize, usize, usize) {
    let d = x.dims();
    (d[0], d[1], d[2] * d[3])
}

fn bn_params(x: &Tensor, momentum: f64, eps: f64) -> Result<BnParams> {
    let (n, c, hw) = sizes(x);
    let u = |v: usize| crate::ops::gemm::u32_of("batch_norm2d", v);
    let count = (n * hw) as f64;
    Ok(BnParams {
        planes: u(n * c)?,
        c: u(c)?,
        hw: u(hw)?,
        chunks: u(hw.div_ceil(BN_CHUNK))?,
        inv_n: (1.0 / count) as f32,
        eps: eps as f32,
        momentum: momentum as f32,
        unbias: if count > 1.0 {
            (momentum * count / (count - 1.0)) as f32
        } else {
            0.0
        },
    })
}

fn gpu_tensor(b: GpuBuf, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(Storage::Gpu(b), shape.into(), DType::F32)
}

fn cpu_tensor(v: Vec<f64>, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(Storage::Cpu(v), shape.into(), DType::F32)
}

/// The epilogue of the normalisation pass: activation and optional residual.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub act: Activation,
    pub residual: Option<&'a Tensor>,
}

/// `act(x·scale_c + shift_c [+ r])` with `stats = [mean, rstd, scale, shift]` (`[4·C]`).
fn apply(x: &Tensor, stats: &Tensor, ep: &Epilogue) -> Result<Storage> {
    const OP: &str = "batch_norm2d";
    let (n, c, hw) = sizes(x);
    match x.storage() {
        Storage::Cpu(xv) => {
            let sv = stats.cpu_data(OP)?;
            let rv = ep.residual.map(|r| r.cpu_data(OP)).transpose()?;
            let mut out = vec![0.0; xv.len()];
            for img in 0..n {
                for ch in 0..c {
                    let (scale, shift) = (sv[2 * c + ch], sv[3 * c + ch]);
                    let base = (img * c + ch) * hw;
                    for i in base..base + hw {
                        let v = xv[i] * scale + shift + rv.map_or(0.0, |r| r[i]);
                        out[i] = ep.act.apply(v);
                    }
                }
            }
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(xb) => {
            let ctx = xb.context();
            let bp = bn_params(x, 0.0, 0.0)?;
            let sb = stats.gpu_buf(OP)?;
            let rb = ep.residual.map(|r| r.gpu_buf(OP)).transpose()?;
            let out = ctx.alloc_storage(x.numel())?;
            // Without a residual the kernel never reads its binding: x fills it.
            let (k, bp, groups) = plane_kernel("bn_apply", &bp);
            ctx.launch(
                &k.with("ACT", ep.act.code())
                    .with("RESIDUAL", u32::from(rb.is_some())),
                &bp,
                &[xb, sb, rb.unwrap_or(xb)],
                &[&out],
                groups,
            )?;
            Ok(Storage::Gpu(out))
        }
    }
}

/// Training statistics of `x`: `stats = [mean, rstd, scale, shift]` (`[4·C]`), and the
/// updated running mean and variance.
fn train_stats(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    momentum: f64,
    eps: f64,
) -> Result<(Tensor, BatchNormState)> {
    const OP: &str = "batch_norm2d";
    let (n, c, hw) = sizes(x);
    match x.storage() {
        Storage::Cpu(xv) => {
            let count = (n * hw) as f64;
            let (g, b) = (gamma.cpu_data(OP)?, beta.cpu_data(OP)?);
            let (rm, rv) = (
                state.running_mean.cpu_data(OP)?,
                state.running_var.cpu_data(OP)?,
            );
            let mut stats = vec![0.0; 4 * c];
            let (mut nm, mut nv) = (vec![0.0; c], vec![0.0; c]);
            for ch in 0..c {
                let plane = |img: usize| xv[(img * c + ch) * hw..(img * c + ch + 1) * hw].iter();
                let mean = (0..n).flat_map(plane).sum::<f64>() / count;
                let var = (0..n)
                    .flat_map(plane)
                    .map(|v| (v - mean) * (v - mean))
                    .sum::<f64>()
                    / count;
                let rstd = 1.0 / (var + eps).sqrt();
                let scale = g[ch] * rstd;
                stats[ch] = mean;
                stats[c + ch] = rstd;
                stats[2 * c + ch] = scale;
                stats[3 * c + ch] = b[ch] - mean * scale;
                nm[ch] = (1.0 - momentum) * rm[ch] + momentum * mean;
                nv[ch] = (1.0 - momentum) * rv[ch] + momentum * count / (count - 1.0) * var;
            }
            Ok((
                cpu_tensor(stats, [4 * c]),
                BatchNormState {
                    running_mean: cpu_tensor(nm, [c]),
                    running_var: cpu_tensor(nv, [c]),
                },
            ))
        }
        Storage::Gpu(xb) => {
            let ctx = xb.context();
            let bp = stats_params(&bn_params(x, momentum, eps)?);
            let parts = n * c * bp.chunks as usize;
            let part = ctx.alloc_storage(2 * parts + c)?;
            ctx.launch(
                &plane_kernel("bn_stats", &bp).0.with("MODE", 0u32),
                &bp,
                &[xb, xb, xb, xb],
                &[&part],
                parts.div_ceil(64) as u64,
            )?;
            let stats = ctx.alloc_storage(4 * c)?;
            // The new running statistics: copies of the old ones, updated in place.
            let (nm, nv) = (ctx.alloc_storage(c)?, ctx.alloc_storage(c)?);
            ctx.copy_buffer(state.running_mean.gpu_buf(OP)?, &nm)?;
            ctx.copy_buffer(state.running_var.gpu_buf(OP)?, &nv)?;
            let (k, groups) = finish_kernel(ctx, "bn_finish", c);
            ctx.launch(
                &k,
                &bp,
                &[&part, gamma.gpu_buf(OP)?, beta.gpu_buf(OP)?],
                &[&stats, &nm, &nv],
                groups,
            )?;
            Ok((
                gpu_tensor(stats, [4 * c]),
                BatchNormState {
                    running_mean: gpu_tensor(nm, [c]),
                    running_var: gpu_tensor(nv, [c]),
                },
            ))
        }
    }
}

/// Evaluation statistics `[running_mean, rstd, scale, shift]` from the running statistics.
fn eval_stats(gamma: &Tensor, beta: &Tensor, state: &BatchNormState, eps: f64) -> Result<Tensor> {
    const OP: &str = "batch_norm2d";
    let c = gamma.numel();
    match gamma.storage() {
        Storage::Cpu(g) => {
            let b = beta.cpu_data(OP)?;
            let (rm, rv) = (
                state.running_mean.cpu_data(OP)?,
                state.running_var.cpu_data(OP)?,
            );
            let mut stats = vec![0.0; 4 * c];
            for ch in 0..c {
                let rstd = 1.0 / (rv[ch] + eps).sqrt();
                stats[ch] = rm[ch];
                stats[c + ch] = rstd;
                stats[2 * c + ch] = g[ch] * rstd;
                stats[3 * c + ch] = b[ch] - rm[ch] * g[ch] * rstd;
            }
            Ok(cpu_tensor(stats, [4 * c]))
        }
        Storage::Gpu(gb) => {
            let ctx = gb.context();
            let bp = BnParams {
                c: crate::ops::gemm::u32_of(OP, c)?,
                eps: eps as f32,
                ..BnParams::default()
            };
            let stats = ctx.alloc_storage(4 * c)?;
            let (rm, rv) = (
                state.running_mean.gpu_buf(OP)?,
                state.running_var.gpu_buf(OP)?,
            );
            // bn_finish_eval reads the running statistics through the slots bn_finish updates
            // (it never writes them) and never reads the partials' slot (γ fills it).
            ctx.launch(
                &Kernel::new(Shader::BatchNorm, "bn_finish_eval"),
                &bp,
                &[gb, gb, beta.gpu_buf(OP)?],
                &[&stats, rm, rv],
                c.div_ceil(64) as u64,
            )?;
            Ok(gpu_tensor(stats, [4 * c]))
        }
    }
}

/// Backward of the training forward ([`Op::BatchNorm`]): `[∂x, ∂γ, ∂β]` and, with a
/// residual, its gradient — each only where that input requires a gradient (see the module
/// docs). `out` is the op's output (the activation's derivative reads it).
pub(crate) fn batch_norm_backward(
    inputs: &[Tensor],
    stats: &Tensor,
    act: Activation,
    out: &Tensor,
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    const OP: &str = "batch_norm2d";
    let (x, gamma, beta) = (&inputs[0], &inputs[1], &inputs[2]);
    let res = inputs.get(3);
    let (n, c, hw) = sizes(x);
    let count = (n * hw) as f64;
    let res_grad = res.is_some_and(Tensor::requires_grad);
    let (dx, dgamma, dbeta, dres) = match x.storage() {
        Storage::Cpu(xv) => {
            let (gv, yv, sv) = (g.cpu_data(OP)?, out.cpu_data(OP)?, stats.cpu_data(OP)?);
            let gam = gamma.cpu_data(OP)?;
            let dy: Vec<f64> = gv.iter().zip(yv).map(|(&g, &y)| act.grad(g, y)).collect();
            let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; xv.len()], vec![0.0; c], vec![0.0; c]);
            for ch in 0..c {
                let (mean, rstd) = (sv[ch], sv[c + ch]);
                let idx = |img: usize| (img * c + ch) * hw..(img * c + ch + 1) * hw;
                let (mut sdy, mut sdyx) = (0.0, 0.0);
                for i in (0..n).flat_map(idx) {
                    sdy += dy[i];
                    sdyx += dy[i] * (xv[i] - mean);
                }
                let a = gam[ch] * rstd;
                let b = -a * rstd * rstd * sdyx / count;
                let d = -b * mean - a * sdy / count;
                for i in (0..n).flat_map(idx) {
                    dx[i] = a * dy[i] + b * xv[i] + d;
                }
                dgamma[ch] = sdyx * rstd;
                dbeta[ch] = sdy;
            }
            let dres = res_grad.then(|| cpu_tensor(dy, x.shape().clone()));
            (
                cpu_tensor(dx, x.shape().clone()),
                cpu_tensor(dgamma, [c]),
                cpu_tensor(dbeta, [c]),
                dres,
            )
        }
        Storage::Gpu(xb) => {
            let ctx = xb.context();
            let bp = bn_params(x, 0.0, 0.0)?;
            let sp = stats_params(&bp);
            let (gb, yb, sb) = (g.gpu_buf(OP)?, out.gpu_buf(OP)?, stats.gpu_buf(OP)?);
            let parts = n * c * sp.chunks as usize;
            let part = ctx.alloc_storage(2 * parts)?;
            ctx.launch(
                &plane_kernel("bn_stats", &sp)
                    .0
                    .with("MODE", 1u32)
                    .with("ACT", act.code()),
                &sp,
                &[xb, gb, yb, sb],
                &[&part],
                parts.div_ceil(64) as u64,
            )?;
            let coef = ctx.alloc_storage(3 * c)?;
            let (dgamma, dbeta) = (ctx.alloc_storage(c)?, ctx.alloc_storage(c)?);
            let gam = gamma.gpu_buf(OP)?;
            let (k, groups) = finish_kernel(ctx, "bn_finish_backward", c);
            ctx.launch(
                &k,
                &sp,
                &[&part, gam, sb],
                &[&coef, &dgamma, &dbeta],
                groups,
            )?;
            let dx = ctx.alloc_storage(x.numel())?;
            // With an identity activation the residual's gradient is g itself.
            let write_res = res_grad && act != Activation::Identity;
            let dres = write_res
                .then(|| ctx.alloc_storage(x.numel()))
                .transpose()?;
            let dummy = if write_res {
                None
            } else {
                Some(ctx.alloc_storage(4)?) // one vec4: the vec4 kernel's minimum binding
            };
            let (k, bp, groups) = plane_kernel("bn_apply_backward", &bp);
            ctx.launch(
                &k.with("ACT", act.code())
                    .with("RESIDUAL", u32::from(write_res)),
                &bp,
                &[gb, yb, xb, &coef],
                &[&dx, dres.as_ref().or(dummy.as_ref()).unwrap_or(&dx)],
                groups,
            )?;
            let dres = match dres {
                Some(b) => Some(gpu_tensor(b, x.shape().clone())),
                None => res_grad.then(|| g.clone()),
            };
            (
                gpu_tensor(dx, x.shape().clone()),
                gpu_tensor(dgamma, [c]),
                gpu_tensor(dbeta, [c]),
                dres,
            )
        }
    };
    let mut grads = vec![
        x.requires_grad().then_some(dx),
        gamma.requires_grad().then_some(dgamma),
        beta.requires_grad().then_some(dbeta),
    ];
    if res.is_some() {
        grads.push(dres);
    }
    Ok(grads)
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
    residual: Option<&Tensor>,
) -> Result<usize> {
    let mut all = vec![x, gamma, beta, &state.running_mean, &state.running_var];
    all.extend(residual);
    for t in &all {
        t.expect_dtype("batch_norm2d", DType::F32)?;
    }
    same_device("batch_norm2d", &all)?;
    if let Some(r) = residual {
        if r.shape() != x.shape() {
            return Err(Error::shape(
                "batch_norm2d",
                format!(
                    "the residual has shape {}, expected x's shape {}",
                    r.shape(),
                    x.shape()
                ),
            ));
        }
    }
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
/// Gradient: with respect to `x`, `gamma` and `beta`. In training the output is one fused
/// [`Op::BatchNorm`] node whose backward (`batch_norm_backward`, formulas in the module
/// docs) differentiates through the batch statistics; in evaluation it is autograd of the
/// composed per-channel affine map (the running statistics are constants). Training needs
/// more than one value per channel (`N·H·W > 1`), as in PyTorch.
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
    batch_norm2d_with(
        x,
        gamma,
        beta,
        state,
        training,
        momentum,
        eps,
        Epilogue::default(),
    )
}

/// [`batch_norm2d`] with a fused epilogue: `y = act(bn(x) + residual)` (`residual` of x's
/// shape), computed in the normalisation pass; in training one [`Op::BatchNorm`] node whose
/// backward also gives the residual's gradient.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_with(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    state: &BatchNormState,
    training: bool,
    momentum: f64,
    eps: f64,
    ep: Epilogue,
) -> Result<(Tensor, Option<BatchNormState>)> {
    let c = check(x, gamma, beta, state, momentum, eps, ep.residual)?;
    let mut inputs = vec![x.clone(), gamma.clone(), beta.clone()];
    inputs.extend(ep.residual.cloned());
    if !training {
        let taped = grad_enabled() && inputs.iter().any(Tensor::requires_grad);
        if !taped {
            let stats = eval_stats(gamma, beta, state, eps)?;
            let st = apply(x, &stats, &ep)?;
            return Ok((
                Tensor::from_storage(st, x.shape().clone(), DType::F32),
                None,
            ));
        }
        // Differentiable evaluation: composed, so autograd gives every gradient.
        let cshape = [1, c, 1, 1];
        let rstd = state.running_var.add_scalar(eps)?.powf(-0.5)?;
        let scale = gamma.mul(&rstd)?;
        let shift = beta.sub(&state.running_mean.mul(&scale)?)?;
        let mut y = x
            .mul(&scale.reshape(cshape)?)?
            .add(&shift.reshape(cshape)?)?;
        if let Some(r) = ep.residual {
            y = y.add(r)?;
        }
        if ep.act == Activation::Relu {
            y = y.relu()?;
        }
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
    let (stats, updated) = train_stats(x, gamma, beta, state, momentum, eps)?;
    let st = apply(x, &stats, &ep)?;
    let y = Tensor::from_op(
        st,
        x.shape().clone(),
        DType::F32,
        Op::BatchNorm { stats, act: ep.act },
        inputs,
    );
    Ok((y, Some(updated)))
}

/// `(x − mean) / √(var + ε)` over `axis` (biased variance, as PyTorch's norms use).
fn standardise(x: &Tensor, axis: isize, eps: f64) -> Result<Tensor> {
    let d = x.sub(&x.mean_axis(axis, true)?)?;
    let var = d.square()?.mean_axis(axis, true)?;
    d.mul(&var.add_scalar(eps)?.sqrt()?.recip()?)
}

/// `y·γ + β` with `γ`, `β` `[C]` broadcast over `[N, C, H, W]`.
fn channel_affine(y: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let c = y.dims()[1];
    if gamma.dims() != [c] || beta.dims() != [c] {
        return Err(Error::shape(
            "norm",
            format!(
                "γ {} and β {} must be [{c}] for {}",
                gamma.shape(),
                beta.shape(),
                y.shape()
            ),
        ));
    }
    y.mul(&gamma.reshape([1, c, 1, 1])?)?
        .add(&beta.reshape([1, c, 1, 1])?)
}

/// The `[N, C, H, W]` dims of `x`, or an error naming `op`.
fn nchw(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    match x.dims() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::shape(
            op,
            format!("expected [N, C, H, W], got {}", x.shape()),
        )),
    }
}

/// Layer normalisation over the channels of every pixel of `x [N, C, H, W]` (PyTorch's
/// `nn.LayerNorm(C)` applied to the `[N, H, W, C]` permutation): `(x − μ) / √(σ² + ε) · γ +
/// β`, with `μ`, `σ²` (biased) over `C`. Composed from reductions and elementwise ops (no
/// kernel of its own), so its CPU reference and backward are theirs.
pub fn layer_norm2d(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    nchw("layer_norm2d", x)?;
    channel_affine(&standardise(x, 1, eps)?, gamma, beta)
}

/// Group normalisation (`torch.nn.GroupNorm(groups, C)`): the `C` channels of `x [N, C, H,
/// W]` in `groups` consecutive groups, each standardised over its channels and pixels, then
/// `· γ + β` per channel. Composed like [`layer_norm2d`].
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let [n, c, h, w] = nchw("group_norm", x)?;
    if groups == 0 || c % groups != 0 {
        return Err(Error::shape(
            "group_norm",
            format!("{c} channels do not split into {groups} groups"),
        ));
    }
    let y = standardise(&x.reshape([n, groups, (c / groups) * h * w])?, 2, eps)?;
    channel_affine(&y.reshape([n, c, h, w])?, gamma, beta)
}
