//! Data-parallel throughput: `LP_NUM_THREADS=1 cargo bench --bench data_parallel`.
//!
//! Trains `models/tiny.toml` on the built-in data through the trainer
//! (`train::train_parallel`: loader, forward, loss, backward, gradient all-reduce, host
//! update, upload) with 1 replica and with 2 replicas, each replica its own context on the
//! same adapter, `WGSEG_BENCH_BATCH` (default 4) images per replica, 96² crops. With
//! `LP_NUM_THREADS=1` every lavapipe context runs its kernels on one thread, so each
//! replica owns one core. Per row: images/s over the timed steps (after warm-up steps),
//! the speed-up of 2 replicas over 1 (same run), the gradient bytes each replica passes to
//! the all-reduce per step, and the seconds per step spent reading gradients back and in
//! the all-reduce (in one process the latter includes waiting for the slower replica).
//! Last, the host-side update of a data-parallel step at `models/r18.toml`'s size (16.6 M
//! parameters): SGD on the CPU master copy, timed on its own.

#[allow(dead_code)]
mod common;

use std::time::Instant;

use wgseg::model::build_from_config;
use wgseg::nn::ParamStore;
use wgseg::optim::{Optimizer, Sgd};
use wgseg::train::{train_parallel, Event, RunConfig, TrainOptions};
use wgseg::{Device, Gradients, Tensor};

const WARMUP: u64 = 3;
const TIMED: u64 = 8;

struct Row {
    images_per_s: f64,
    mib_per_step: f64,
    reduce_s: f64,
    read_s: f64,
}

fn run(replicas: usize, batch: usize) -> Row {
    let text = include_str!("../models/tiny.toml");
    let mut config = RunConfig::parse(text, std::path::Path::new("models/tiny.toml"))
        .unwrap_or_else(|e| panic!("models/tiny.toml: {e}"));
    let t = &mut config.train;
    t.steps = (WARMUP + TIMED) as usize;
    t.batch_size = batch;
    t.workers = 1;
    t.log_every = 1;
    t.val_every = 0;
    t.checkpoint_every = 1_000_000;
    let out =
        std::env::temp_dir().join(format!("wgseg-bench-dp-{replicas}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let devices: Vec<Device> = (0..replicas)
        .map(|_| Device::gpu().unwrap_or_else(|e| panic!("no GPU adapter: {e}")))
        .collect();
    let mut times: Vec<(u64, Instant)> = Vec::new();
    let opts = TrainOptions {
        config,
        data: None,
        out: out.clone(),
        device: devices[0].clone(),
        resume: false,
        init_backbone: None,
        stop_at: None,
    };
    train_parallel(opts, &devices, &build_from_config, &mut |e| {
        if let Event::Step { step, .. } = e {
            times.push((step, Instant::now()));
        }
    })
    .unwrap_or_else(|e| panic!("training with {replicas} replica(s): {e}"));
    let start = times.iter().find(|(s, _)| *s == WARMUP).map(|(_, t)| *t);
    let end = times.last().map(|(_, t)| *t);
    let secs = match (start, end) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => panic!("missing step events"),
    };
    let images = (TIMED as usize * batch * replicas) as f64;
    // The last step line of the metrics has the run's gradient traffic (data parallel).
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap_or_default();
    let last: serde_json::Value = metrics
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("allreduce_mib_per_step").is_some())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    Row {
        images_per_s: images / secs,
        mib_per_step: last["allreduce_mib_per_step"].as_f64().unwrap_or(0.0),
        reduce_s: last["allreduce_s_per_step"].as_f64().unwrap_or(0.0),
        read_s: last["readback_s_per_step"].as_f64().unwrap_or(0.0),
    }
}

fn main() {
    let dev = Device::gpu().unwrap_or_else(|e| panic!("no GPU adapter: {e}"));
    if let Device::Gpu(ctx) = &dev {
        common::print_adapter(ctx);
    }
    let threads = std::env::var("LP_NUM_THREADS").unwrap_or_else(|_| "(unset)".into());
    let batch: usize = std::env::var("WGSEG_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(4);
    println!(
        "LP_NUM_THREADS={threads}; tiny, built-in data, {batch} images of 96² per replica, \
         {WARMUP} warm-up + {TIMED} timed steps"
    );
    let (update_s, params, tensors) = host_update_r18();
    println!(
        "host update (SGD on the CPU master copy), r18 at 19 classes, {params} parameters \
         in {tensors} tensors: {:.1} ms",
        update_s * 1e3
    );
    let one = run(1, batch);
    let two = run(2, batch);
    println!(
        "| replicas | global batch | images/s | speed-up | all-reduce MiB/step/replica | \
         gradient readback s/step | all-reduce s/step |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (r, row) in [(1, &one), (2, &two)] {
        println!(
            "| {r} | {} | {:.2} | {:.2}× | {:.2} | {:.4} | {:.4} |",
            batch * r,
            row.images_per_s,
            row.images_per_s / one.images_per_s,
            row.mib_per_step,
            row.read_s,
            row.reduce_s
        );
    }
}

/// Seconds of one SGD step (momentum, weight decay) over r18's parameters on the CPU
/// backend, the median of 3 after one warm-up step, the parameter count and the number of
/// parameter tensors.
fn host_update_r18() -> (f64, usize, usize) {
    let text = include_str!("../models/r18.toml");
    let config = RunConfig::parse(text, std::path::Path::new("models/r18.toml"))
        .unwrap_or_else(|e| panic!("models/r18.toml: {e}"));
    let mut store = ParamStore::new(&Device::Cpu);
    config
        .model
        .build(19, &mut store, 0)
        .unwrap_or_else(|e| panic!("r18: {e}"));
    let mut grads = Gradients::default();
    for (k, (_, p)) in store.params().enumerate() {
        let g = common::seeded(p.numel(), k as u32);
        let g =
            Tensor::from_vec(g, p.shape().clone(), &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        grads.insert(p, g);
    }
    let mut opt = Sgd::new(0.9, 1e-4, false);
    let mut times = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        opt.step(&mut store, &grads, 0.01)
            .unwrap_or_else(|e| panic!("sgd: {e}"));
        times.push(t.elapsed().as_secs_f64());
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    (times[1], store.param_count(), store.params().count())
}
