//! End-to-end training-step benchmark: `cargo bench --bench train_step` (optionally
//! `cargo bench -- FILTER`: rows whose name contains FILTER).
//!
//! One row per model config and loss (`models/tiny.toml` with `ce`, `pat` and `aucseg`;
//! `models/small.toml` with `ce`): one full DeepLabV3+ training step — forward in training
//! mode, the loss (`train::loss::TrainLoss`, docs/longtail.md's defaults), backward, SGD
//! update (momentum 0.9, weight decay 1e-4, lr 0.01) — on the default `[train]` batch (8
//! crops of 96², random input and labels over 11 classes). Each step ends by reading the loss
//! (`item()`), which synchronises the device. Per row: the median step time over timed steps
//! after warm-up, images/s, dispatches per step, the host microseconds per dispatch
//! (`GpuContext::host_stats`: recording, encoding and submitting, GPU waits taken out; not
//! printed on CPU adapters such as lavapipe, which run kernels inside the submit call — the
//! `dispatch:` rows of `cargo bench --bench kernels` measure the host cost there), the
//! bind groups created and reused per step, and the peak live bytes of the buffer/texture
//! pool on a fresh context (parameters, optimiser state and every activation of the step). Then a per-kernel
//! profile of one step and the share of device time in GEMM / convolution kernels
//! (`WGSEG_BENCH_TOP=N`: N kernels; `WGSEG_BENCH_DISPATCHES=N`: also the N slowest
//! dispatches, with workgroups, overrides and a GEMM's GFLOP/s, for per-layer rates). Last,
//! each long-tail loss's step time and peak memory as a ratio to the `ce` row of the same
//! config (the memory bank is data-side: it runs on the loader's thread, not in the step;
//! `examples/bank_cost.rs` measures it).
//! `benches/train_step.py` runs the same step in PyTorch on the CPU.

mod common;

use std::path::Path;
use std::time::Instant;

use wgseg::gpu::GpuContext;
use wgseg::model::ModelConfig;
use wgseg::nn::ParamStore;
use wgseg::optim::{Optimizer, Sgd};
use wgseg::train::loss::TrainLoss;
use wgseg::train::{LossConfig, RunConfig};
use wgseg::{backward, Device, Result, Tensor};

/// Classes of the random labels (CamVid's 11).
const CLASSES: usize = 11;
/// Warm-up steps (pipeline compilation, pool fill) and timed steps per row.
const WARMUP: usize = 2;
const RUNS: usize = 5;
/// Rows whose warm-up step takes longer than this get 3 timed steps instead of [`RUNS`].
const SLOW_STEP_S: f64 = 5.0;
/// Kernel-name prefixes counted as GEMM / convolution work in the profile.
const GEMM_PREFIXES: [&str; 4] = ["gemm_tex.wgsl", "pack.wgsl", "conv", "matmul"];
/// Profile rows printed per config (`WGSEG_BENCH_TOP=N` prints N).
const TOP: usize = 15;

/// The rows: (config, loss).
const ROWS: [(&str, &str); 4] = [
    ("tiny", "ce"),
    ("tiny", "pat"),
    ("tiny", "aucseg"),
    ("small", "ce"),
];

/// A row's config (`models/NAME.toml`, its loss set) and its printed name.
fn load(config: &str, loss: &str) -> Result<(RunConfig, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{config}.toml"));
    let mut cfg = RunConfig::load(&path)?;
    cfg.train.loss = loss.parse()?;
    let (b, side) = (cfg.train.batch_size, cfg.train.crop);
    let name =
        format!("train step {config}, batch {b}, {side}x{side}, {CLASSES} classes, loss {loss}");
    Ok((cfg, name))
}

/// Median step seconds and pool peak bytes of a row.
fn row(cfg: &RunConfig, name: &str) -> Result<(f64, u64)> {
    let (b, side) = (cfg.train.batch_size, cfg.train.crop);
    // A fresh context per row, so that the pool's peak is this row's alone.
    let dev = Device::gpu()?;
    let Device::Gpu(ctx) = &dev else {
        unreachable!("Device::gpu returns a GPU")
    };
    let ctx: std::sync::Arc<GpuContext> = ctx.clone();
    let mut store = ParamStore::new(&dev);
    let net = cfg.model.build(CLASSES, &mut store, 0)?;
    let n_params = store.param_count();
    let mut opt = Sgd::new(cfg.train.momentum, cfg.train.weight_decay, false);
    let lr = cfg.train.lr;
    let x = Tensor::from_vec(
        common::seeded(b * 3 * side * side, 1),
        [b, 3, side, side],
        &dev,
    )?;
    let labels: Vec<u8> = common::seeded(b * side * side, 2)
        .iter()
        .map(|v| (((v + 1.0) * 0.5 * CLASSES as f32) as usize).min(CLASSES - 1) as u8)
        .collect();
    let mut counts = vec![0u64; CLASSES];
    for &l in &labels {
        counts[usize::from(l)] += 1;
    }
    let labels = Tensor::from_u8(labels, [b, side, side], &dev)?;
    let loss_fn = TrainLoss::new(&cfg.train.loss, &LossConfig::default(), &counts, 255, 0)?;
    let mut k = 0u64;
    let mut step = || -> Result<f32> {
        let logits = net.forward(&mut store, &x, true)?;
        let loss = loss_fn.compute(&logits, &labels, k)?;
        k += 1;
        let grads = backward(&loss)?;
        opt.step(&mut store, &grads, lr)?;
        loss.item()
    };

    let mut first = f64::MAX;
    for _ in 0..WARMUP {
        let t = Instant::now();
        step()?;
        first = first.min(t.elapsed().as_secs_f64());
    }
    let runs = if first > SLOW_STEP_S { 3 } else { RUNS };
    let mut times = Vec::with_capacity(runs);
    let mut loss = 0.0;
    let h0 = ctx.host_stats();
    for _ in 0..runs {
        let t = Instant::now();
        loss = step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let host = ctx.host_stats().since(&h0);
    let dispatches = host.dispatches / runs as u64;
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let peak = ctx.pool_stats().peak_live_bytes;
    // On a CPU adapter (lavapipe) the driver runs the kernels inside the submit call, so the
    // host time per dispatch includes them: the `dispatch:` rows of the kernels bench
    // measure the host cost alone there.
    let host_us = if ctx.adapter_info().device_type == wgpu::DeviceType::Cpu {
        "n/a on a CPU adapter (kernels run inside submit; see `cargo bench -- dispatch:`)"
            .to_string()
    } else {
        format!("{:.1}", host.host_us_per_dispatch())
    };
    println!(
        "{name:<52} {:>10.1} ms  {:>7.2} images/s  {dispatches} dispatches/step  host µs/dispatch {host_us}  peak pool {:>7.1} MiB  (n={runs}, min {:.1} ms, max {:.1} ms, loss {loss:.3}, {} params, bind groups {} created / {} reused per step)",
        med * 1e3,
        b as f64 / med,
        peak as f64 / (1024.0 * 1024.0),
        times[0] * 1e3,
        times[runs - 1] * 1e3,
        n_params,
        host.bind_groups_created / runs as u64,
        host.bind_groups_reused / runs as u64,
    );

    ctx.set_profiling(true);
    step()?;
    let report = ctx.profile_report();
    let mut per_dispatch = ctx.profile_dispatches();
    ctx.set_profiling(false);
    let total: f64 = report.iter().map(|r| r.2).sum();
    let gemm: f64 = report
        .iter()
        .filter(|r| GEMM_PREFIXES.iter().any(|p| r.0.starts_with(p)))
        .map(|r| r.2)
        .sum();
    println!(
        "  profile of one step ({}): {} kernels, {} dispatches, {:.1} ms; GEMM/conv share {:.1}%",
        ctx.profile_clock(),
        report.len(),
        report.iter().map(|r| r.1).sum::<u64>(),
        total * 1e3,
        100.0 * gemm / total.max(f64::MIN_POSITIVE)
    );
    println!(
        "  {:<44} {:>6} {:>10} {:>7}",
        "kernel", "calls", "ms", "share"
    );
    let top = std::env::var("WGSEG_BENCH_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TOP);
    for (k, calls, secs) in report.iter().take(top) {
        println!(
            "  {k:<44} {calls:>6} {:>10.2} {:>6.1}%",
            secs * 1e3,
            100.0 * secs / total.max(f64::MIN_POSITIVE)
        );
    }
    // WGSEG_BENCH_DISPATCHES=N: the N slowest dispatches, with GFLOP/s where known.
    let slowest = std::env::var("WGSEG_BENCH_DISPATCHES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if slowest > 0 {
        let d = &mut per_dispatch;
        d.sort_by(|a, b| b.secs.total_cmp(&a.secs));
        println!(
            "  {:<44} {:>10} {:>10} {:>9}",
            "dispatch", "workgroups", "ms", "GFLOP/s"
        );
        for x in d.iter().take(slowest) {
            let rate = x
                .flops
                .map(|f| format!("{:.1}", f as f64 / x.secs.max(f64::MIN_POSITIVE) / 1e9))
                .unwrap_or_default();
            println!(
                "  {:<44} {:>10} {:>10.2} {:>9}  {}",
                x.kernel,
                x.workgroups,
                x.secs * 1e3,
                rate,
                x.overrides
            );
        }
    }
    println!();
    Ok((med, peak))
}

fn main() -> Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let rows = ROWS
        .iter()
        .map(|(c, l)| load(c, l))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|(_, name)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect::<Vec<_>>();
    // `cargo bench -- FILTER` runs every bench binary with the same filter: stay silent
    // when no row matches.
    if rows.is_empty() {
        return Ok(());
    }
    let dev = Device::gpu()?;
    if let Device::Gpu(ctx) = &dev {
        common::print_adapter(ctx);
    }
    drop(dev);
    println!(
        "one DeepLabV3+ training step (forward, loss, backward, SGD momentum 0.9 wd 1e-4); median of n timed steps (n = {RUNS} after {WARMUP} warm-up steps; n = 3 for steps over {SLOW_STEP_S} s), each ending in loss.item()\n"
    );
    let mut done = Vec::new();
    for (cfg, name) in &rows {
        let (secs, peak) = row(cfg, name)?;
        done.push((cfg, secs, peak));
    }
    for (cfg, secs, peak) in &done {
        let base = done
            .iter()
            .find(|(c, _, _)| c.model == cfg.model && c.train.loss == wgseg::losses::Loss::Ce);
        if let (Some((_, ce_secs, ce_peak)), false) =
            (base, cfg.train.loss == wgseg::losses::Loss::Ce)
        {
            println!(
                "{} step overhead over ce ({} config): time {:.2}x, peak pool {:+.1} MiB",
                cfg.train.loss,
                match &cfg.model {
                    ModelConfig::DeepLabV3Plus(m) => m.widths.map(|w| w.to_string()).join("/"),
                    other => other.arch().to_string(),
                },
                secs / ce_secs,
                (*peak as f64 - *ce_peak as f64) / (1024.0 * 1024.0)
            );
        }
    }
    Ok(())
}
