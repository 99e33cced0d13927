//! GPU launches of the fused pixel loss (`shaders/pixel_loss.wgsl`; formulas and layout in
//! `pixel.rs` and the shader's header).
//!
//! Forward: (PAT only) clear the `[N, C]` count table and count it (`pix_count`), one
//! `pix_forward` (or `pix_forward4`) pass over the logits, the lane reduction of its
//! partials, `pix_finish`. Backward: `pix_gscale` (a copy of the per-class table with
//! `G = g / D` in its head), one `pix_backward` (or `pix_backward4`) pass. Nothing is read
//! back; the statistics buffer stays on the device as the tape's saved state.

use super::pixel::{
    Layout, Modulation, NoiseSource, Normalization, PixelConfig, PIXELS_PER_LANE,
    QUADS_PER_INVOCATION,
};
use crate::error::Result;
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::reduce::gpu_sum_into;
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PixParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) ignore_index: u32,
    pub(crate) lanes: u32,
    pub(crate) partials: u32,
    pub(crate) key: u32,
    pub(crate) den_const: f32,
    pub(crate) scale: f32,
    pub(crate) gamma: f32,
    pub(crate) inv_t: f32,
    pub(crate) eps: f32,
    /// Label smoothing: `1 − ε` and `ε/C` (read only by the `SMOOTH` kernels).
    pub(crate) ls_keep: f32,
    pub(crate) ls_each: f32,
    pub(crate) _pad: [u32; 2],
}

fn params(lay: Layout, cfg: &PixelConfig) -> PixParams {
    let (gamma, t, eps) = match cfg.modulation {
        Modulation::None => (0.0, 1.0, 0.0),
        Modulation::Focal { gamma } => (gamma, 1.0, 0.0),
        Modulation::Falling { t, eps } => (0.0, t, eps),
        Modulation::Rising { t } => (0.0, t, 0.0),
    };
    PixParams {
        n: lay.n as u32,
        c: lay.c as u32,
        inner: lay.inner as u32,
        ignore_index: cfg.ignore_index,
        lanes: lay.lanes() as u32,
        partials: lay.partials() as u32,
        key: match cfg.noise {
            NoiseSource::Seeded { key } => key,
            _ => 0,
        },
        den_const: match cfg.norm {
            Normalization::PerImageClass => lay.n as f32,
            _ => 0.0,
        },
        scale: cfg.scale as f32,
        gamma: gamma as f32,
        inv_t: (1.0 / t) as f32,
        eps: eps as f32,
        ls_keep: (1.0 - cfg.smoothing) as f32,
        ls_each: (cfg.smoothing / lay.c as f64) as f32,
        _pad: [0; 2],
    }
}

/// The kernel `entry` specialised for `cfg`.
fn kernel(entry: &'static str, cfg: &PixelConfig) -> Kernel {
    let modulation = match cfg.modulation {
        Modulation::None => 0u32,
        Modulation::Focal { .. } => 1,
        Modulation::Falling { .. } => 2,
        Modulation::Rising { .. } => 3,
    };
    let norm = match cfg.norm {
        Normalization::Mean => 0u32,
        Normalization::SumWeights => 1,
        Normalization::PerImageClass => 2,
    };
    let noise = match cfg.noise {
        NoiseSource::None => 0u32,
        NoiseSource::Seeded { .. } => 1,
        NoiseSource::Tensor => 2,
    };
    let cls = u32::from(cfg.bias)
        | u32::from(cfg.margin) << 1
        | u32::from(cfg.masked) << 2
        | u32::from(cfg.scale != 1.0) << 3;
    Kernel::new(Shader::PixelLoss, entry)
        .with("WG", ELEMENTWISE_WG)
        .with("PER", PIXELS_PER_LANE as u32)
        .with("BQ", QUADS_PER_INVOCATION as u32)
        .with("MOD", modulation)
        .with("DETACH", u32::from(cfg.detach))
        .with("NORM", norm)
        .with("WEIGHTED", u32::from(cfg.weighted))
        .with("CLS", cls)
        .with("NOISE", noise)
        .with("SMOOTH", u32::from(cfg.smoothing != 0.0))
}

/// The device buffers of a launch.
pub(crate) struct Bufs<'a> {
    pub(crate) x: &'a GpuBuf,
    pub(crate) y: &'a GpuBuf,
    pub(crate) table: &'a GpuBuf,
    pub(crate) noise: Option<&'a GpuBuf>,
    /// PAT's `[N, C]` count table (backward).
    pub(crate) counts: Option<&'a GpuBuf>,
}

/// Forward on the device: `(loss, stats, counts)` (the count table for PAT).
pub(crate) fn forward(
    x: &GpuBuf,
    y: &GpuBuf,
    table: &GpuBuf,
    noise: Option<&GpuBuf>,
    lay: Layout,
    cfg: &PixelConfig,
) -> Result<(GpuBuf, Tensor, Option<Tensor>)> {
    let ctx = x.context();
    let pr = params(lay, cfg);
    let t = lay.n * lay.lanes();
    // Unused slots are bound to the logits (or the stats) as dummies.
    let counts = if cfg.norm == Normalization::PerImageClass {
        let counts = ctx.alloc_storage(lay.n * lay.c)?;
        ctx.clear(&counts)?;
        let entry = if lay.vec4() {
            "pix_count4"
        } else {
            "pix_count"
        };
        ctx.launch(
            &kernel(entry, cfg),
            &pr,
            &[x, y, table, x, x],
            &[&counts],
            groups_for(t, ELEMENTWISE_WG),
        )?;
        Some(counts)
    } else {
        None
    };
    let stats = ctx.alloc_storage(lay.stats_len())?;
    let entry = if lay.vec4() {
        "pix_forward4"
    } else {
        "pix_forward"
    };
    ctx.launch(
        &kernel(entry, cfg),
        &pr,
        &[
            x,
            y,
            table,
            noise.unwrap_or(x),
            counts.as_ref().unwrap_or(y),
        ],
        &[&stats],
        groups_for(t, ELEMENTWISE_WG),
    )?;
    gpu_sum_into(&stats, lay.partials(), (2, t, 1), &stats)?;
    let loss = ctx.alloc_storage(1)?;
    ctx.launch(
        &kernel("pix_finish", cfg),
        &pr,
        &[&stats, &stats, &stats, &stats, &stats],
        &[&loss],
        1,
    )?;
    let stats = Tensor::from_storage(
        Storage::Gpu(stats),
        Shape(vec![lay.stats_len()]),
        DType::F32,
    );
    let counts = counts
        .map(|c| Tensor::from_storage(Storage::Gpu(c), Shape(vec![lay.n, lay.c]), DType::U32));
    Ok((loss, stats, counts))
}

/// Backward on the device: `∂L/∂x · g`.
pub(crate) fn backward(
    b: &Bufs,
    stats: &GpuBuf,
    g: &GpuBuf,
    lay: Layout,
    cfg: &PixelConfig,
) -> Result<GpuBuf> {
    let ctx = b.x.context();
    let pr = params(lay, cfg);
    // The table with G = g / D in its head and, for PAT, the n·c values 1/S after it.
    let len = lay.table_len() + b.counts.map_or(0, |_| lay.n * lay.c);
    let scaled = ctx.alloc_storage(len)?;
    ctx.launch(
        &kernel("pix_gscale", cfg),
        &pr,
        &[b.table, b.counts.unwrap_or(b.y), b.table, g, stats],
        &[&scaled],
        groups_for(len, ELEMENTWISE_WG),
    )?;
    let dx = ctx.alloc_storage(lay.n * lay.c * lay.inner)?;
    let (entry, threads) = if lay.vec4() {
        (
            "pix_backward4",
            (lay.pixels() / 4).div_ceil(QUADS_PER_INVOCATION),
        )
    } else {
        ("pix_backward", lay.pixels())
    };
    ctx.launch(
        &kernel(entry, cfg),
        &pr,
        &[b.x, b.y, &scaled, b.noise.unwrap_or(b.x), stats],
        &[&dx],
        groups_for(threads, ELEMENTWISE_WG),
    )?;
    Ok(dx)
}
