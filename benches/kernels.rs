//! Shader-level micro-benchmarks: `cargo bench` (optionally `cargo bench -- FILTER`).
//!
//! Each row: median wall time over timed runs after warm-up (each run ends with a device
//! synchronisation), and the throughput it implies (GFLOP/s for compute-bound kernels, GB/s
//! of compulsory traffic for memory-bound ones), on the adapter printed in the header.
//! With `WGSEG_BENCH_PROFILE=1` each row also prints one profiled run's per-kernel times.

mod common;

use std::time::Instant;

use wgseg::gpu::GpuContext;
use wgseg::losses::{ce, CeOptions};
use wgseg::ops::{batch_norm2d, BatchNormState, Conv2dParams, BN_EPS, BN_MOMENTUM};
use wgseg::{backward, Device, Result, Tensor};

/// What a row's throughput is measured in.
enum Work {
    /// Floating-point operations per run.
    Flops(f64),
    /// Bytes that must cross memory per run (inputs read once + outputs written once).
    Bytes(f64),
    /// Count of items per run (e.g. dispatches).
    Items(f64, &'static str),
}

/// Rows whose warm-up run takes longer than this many seconds get 3 timed runs instead of 5,
/// which keeps a full `cargo bench` on lavapipe within minutes.
const SLOW_ROW_S: f64 = 2.0;

struct Bench {
    dev: Device,
    filter: Option<String>,
    warmup: usize,
    runs: usize,
}

impl Bench {
    fn tensor(&self, dims: &[usize], seed: u32) -> Result<Tensor> {
        let n = dims.iter().product();
        Tensor::from_vec(common::seeded(n, seed), dims.to_vec(), &self.dev)
    }

    /// Times `f` and prints a row. `f` records work; the timer includes a synchronisation.
    fn run(
        &self,
        name: &str,
        work: Work,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<Option<f64>> {
        if self.filter.as_deref().is_some_and(|p| !name.contains(p)) {
            return Ok(None);
        }
        let mut first = f64::MAX;
        for _ in 0..self.warmup {
            let t = Instant::now();
            f()?;
            self.dev.synchronize()?;
            first = first.min(t.elapsed().as_secs_f64());
            // Rows slower than SLOW_ROW_S take one warm-up run: compilation is long done.
            if first > SLOW_ROW_S {
                break;
            }
        }
        let runs = if first > SLOW_ROW_S { 3 } else { self.runs };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            f()?;
            self.dev.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        if std::env::var("WGSEG_BENCH_PROFILE").is_ok() {
            if let Device::Gpu(ctx) = &self.dev {
                ctx.set_profiling(true);
                f()?;
                self.dev.synchronize()?;
                for (k, c, s) in ctx.profile_report() {
                    println!("    {k:<40} {c:>4} {:>9.3} ms", s * 1e3);
                }
                ctx.set_profiling(false);
            }
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        let rate = match work {
            Work::Flops(fl) => format!("{:9.2} GFLOP/s", fl / med / 1e9),
            Work::Bytes(b) => format!("{:9.2} GB/s", b / med / 1e9),
            Work::Items(n, unit) => format!("{:9.0} {unit}/s", n / med),
        };
        println!("{name:<52} {:>10.3} ms  {rate}  (n={runs})", med * 1e3);
        Ok(Some(med))
    }
}

/// Dispatches per run of the `dispatch:` host-cost rows, and timed runs per row.
const HOST_DISPATCHES: usize = 2000;
const DISPATCH_RUNS: usize = 9;

/// CPU nanoseconds the calling thread has run (Linux: `/proc/thread-self/schedstat`), so that
/// the host cost can be read apart from time the thread spent descheduled on a busy machine
/// (the GPU driver's own threads, e.g. lavapipe's, are not counted). `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The host (CPU) cost of one dispatch of a trivial kernel: `HOST_DISPATCHES` launches timed
/// from the first `launch` to the return of the final `flush()` (record + encode + submit;
/// the bound on submissions in flight may still wait for the GPU inside), the same with
/// `synchronize()`'s wait included, and the context's own account of the time spent inside
/// launch/flush with every GPU wait taken out (`GpuContext::host_stats`). Each launch's
/// output is freed before the next one, so the pool hands the same buffers back, as in a
/// training step. Medians of `DISPATCH_RUNS` runs after 2 warm-up runs.
fn dispatch_rows(b: &Bench, ctx: &std::sync::Arc<GpuContext>) -> Result<()> {
    let n = HOST_DISPATCHES;
    type Case<'a> = (String, Box<dyn Fn() -> Result<()> + 'a>);
    let tiny = b.tensor(&[64], 13)?;
    let cases: Vec<Case> = vec![
        (
            format!("dispatch: {n} fills, 64 f32"),
            Box::new(|| {
                for i in 0..n {
                    drop(Tensor::full([64], i as f64, &b.dev)?);
                }
                Ok(())
            }),
        ),
        (
            format!("dispatch: {n} chained x+1, 64 f32"),
            Box::new(|| {
                let mut t = tiny.clone();
                for _ in 0..n {
                    t = t.add_scalar(1.0)?;
                }
                Ok(())
            }),
        ),
    ];
    for (name, f) in cases {
        if b.filter.as_deref().is_some_and(|p| !name.contains(p)) {
            continue;
        }
        let (mut host, mut total, mut inside, mut cpu) = (vec![], vec![], vec![], vec![]);
        let mut last = None;
        for run in 0..(2 + DISPATCH_RUNS) {
            ctx.synchronize()?;
            let s0 = ctx.host_stats();
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            f()?;
            ctx.flush()?;
            let h = t.elapsed().as_secs_f64();
            let c1 = thread_cpu_ns();
            ctx.synchronize()?;
            let all = t.elapsed().as_secs_f64();
            let st = ctx.host_stats().since(&s0);
            if run >= 2 {
                host.push(h);
                total.push(all);
                inside.push(st.host_us_per_dispatch());
                if let (Some(c0), Some(c1)) = (c0, c1) {
                    cpu.push((c1 - c0) as f64 * 1e-9);
                }
                last = Some(st);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let per = 1e6 / n as f64;
        let st = last.unwrap_or_default();
        println!(
            "{:<52} {:>10.2} µs  host µs per dispatch (record + encode + submit)  (n={DISPATCH_RUNS}, best {:.2}; this thread's CPU time {:.2} µs; inside launch/flush, GPU waits out: {:.2} µs; per run {} submits, {} bind groups created, {} reused)",
            format!("{name}, host"),
            med(&mut host) * per,
            host[0] * per,
            med(&mut cpu) * per,
            med(&mut inside),
            st.submits,
            st.bind_groups_created,
            st.bind_groups_reused,
        );
        println!(
            "{:<52} {:>10.2} µs  µs per dispatch, synchronize()'s wait included  (n={DISPATCH_RUNS}, best {:.2})",
            format!("{name}, host + GPU wait"),
            med(&mut total) * per,
            total[0] * per,
        );
    }
    Ok(())
}

/// FLOPs of one conv2d forward: 2·N·Cout·Ho·Wo·(Cin/groups)·KH·KW.
fn conv_flops(w: &[usize], out: &[usize]) -> f64 {
    2.0 * (out.iter().product::<usize>() * w[1] * w[2] * w[3]) as f64
}

fn conv_rows(b: &Bench) -> Result<()> {
    // (name, x, w, params): the DeepLabV3+ hot spots.
    let cases: Vec<(&str, [usize; 4], [usize; 4], Conv2dParams)> = vec![
        (
            "conv2d 3x3 64->64, 128x128, N=4",
            [4, 64, 128, 128],
            [64, 64, 3, 3],
            Conv2dParams::new(1, 1, 1, 1),
        ),
        (
            "conv2d 3x3 256->256, 32x32, N=4, dil 6",
            [4, 256, 32, 32],
            [256, 256, 3, 3],
            Conv2dParams::new(1, 6, 6, 1),
        ),
        (
            "conv2d 3x3 256->256, 32x32, N=4, dil 12",
            [4, 256, 32, 32],
            [256, 256, 3, 3],
            Conv2dParams::new(1, 12, 12, 1),
        ),
        (
            "conv2d 3x3 256->256, 32x32, N=4, dil 18",
            [4, 256, 32, 32],
            [256, 256, 3, 3],
            Conv2dParams::new(1, 18, 18, 1),
        ),
        (
            "conv2d 1x1 256->256, 32x32, N=4",
            [4, 256, 32, 32],
            [256, 256, 1, 1],
            Conv2dParams::new(1, 0, 1, 1),
        ),
        (
            "conv2d 3x3 stride 2 64->128, 128x128, N=4",
            [4, 64, 128, 128],
            [128, 64, 3, 3],
            Conv2dParams::new(2, 1, 1, 1),
        ),
        (
            "conv2d depthwise 3x3 256, 32x32, N=4",
            [4, 256, 32, 32],
            [256, 1, 3, 3],
            Conv2dParams::new(1, 1, 1, 256),
        ),
    ];
    for (i, (name, xs, ws, p)) in cases.into_iter().enumerate() {
        let x = b.tensor(&xs, 20 + i as u32)?.as_param();
        let w = b.tensor(&ws, 40 + i as u32)?.mul_scalar(0.05)?.as_param();
        let bias = b.tensor(&[ws[0]], 60 + i as u32)?.as_param();
        // Output size by PyTorch's formula (no forward pass needed for filtered-out rows).
        let o = |n: usize, k: usize, s: usize, pad: usize, d: usize| {
            (n + 2 * pad - d * (k - 1) - 1) / s + 1
        };
        let out_dims = [
            xs[0],
            ws[0],
            o(xs[2], ws[2], p.stride.0, p.padding.0, p.dilation.0),
            o(xs[3], ws[3], p.stride.1, p.padding.1, p.dilation.1),
        ];
        let fl = conv_flops(&ws, &out_dims);
        b.run(&format!("{name} forward"), Work::Flops(fl), || {
            x.conv2d(&w, Some(&bias), p).map(drop)
        })?;
        if i == 0 || p.stride.0 > 1 {
            // dx, dw and db: about three forward passes of work.
            b.run(
                &format!("{name} forward + backward"),
                Work::Flops(3.0 * fl),
                || {
                    let l = x.conv2d(&w, Some(&bias), p)?.sum()?;
                    backward(&l).map(drop)
                },
            )?;
        }
    }
    Ok(())
}

/// Where a forward + backward of a small segmentation block spends its time, per kernel
/// (GPU timestamps per dispatch where the adapter has them, else synchronised wall clock;
/// see `GpuContext::set_profiling`).
fn profile_step(b: &Bench, ctx: &std::sync::Arc<GpuContext>) -> Result<()> {
    use wgseg::ops::{batch_norm2d, BatchNormState};
    let x = b.tensor(&[2, 32, 64, 64], 70)?;
    let w1 = b.tensor(&[32, 32, 3, 3], 71)?.mul_scalar(0.05)?.as_param();
    let w2 = b.tensor(&[19, 32, 1, 1], 72)?.mul_scalar(0.1)?.as_param();
    let gamma = Tensor::ones([32], &b.dev)?.as_param();
    let beta = Tensor::zeros([32], &b.dev)?.as_param();
    let bn = BatchNormState::new(32, &b.dev)?;
    let labels: Vec<u32> = common::seeded(2 * 128 * 128, 73)
        .iter()
        .map(|v| ((v + 1.0) * 9.5) as u32 % 19)
        .collect();
    let labels = Tensor::from_u32(labels, [2, 128, 128], &b.dev)?;
    let step = || -> Result<()> {
        let h = x.conv2d(&w1, None, Conv2dParams::new(1, 2, 2, 1))?;
        let (h, _) = batch_norm2d(&h, &gamma, &beta, &bn, true, 0.1, 1e-5)?;
        let h = h.relu()?.max_pool2d((3, 3), (1, 1), (1, 1))?;
        let logits = h.conv2d(&w2, None, Conv2dParams::default())?;
        let up = logits.interpolate_bilinear((128, 128), false)?;
        let loss = ce(&up, &labels, &CeOptions::default())?;
        backward(&loss).map(drop)
    };
    step()?;
    b.dev.synchronize()?;
    ctx.set_profiling(true);
    step()?;
    let report = ctx.profile_report();
    ctx.set_profiling(false);
    let total: f64 = report.iter().map(|r| r.2).sum();
    println!(
        "\nprofile ({}): conv3x3(dil 2) → BN → ReLU → max-pool → conv1x1 → resize ×2 → CE, (2,32,64,64), fwd+bwd",
        ctx.profile_clock()
    );
    println!(
        "{:<44} {:>6} {:>10} {:>7}",
        "kernel", "calls", "ms", "share"
    );
    for (k, calls, secs) in &report {
        println!(
            "{k:<44} {calls:>6} {:>10.2} {:>6.1}%",
            secs * 1e3,
            100.0 * secs / total
        );
    }
    println!(
        "{:<44} {:>6} {:>10.2}",
        "total",
        report.iter().map(|r| r.1).sum::<u64>(),
        total * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let dev = Device::gpu()?;
    let Device::Gpu(ctx) = &dev else {
        unreachable!("Device::gpu returns a GPU")
    };
    let ctx: std::sync::Arc<GpuContext> = ctx.clone();
    common::print_adapter(&ctx);
    println!(
        "median of n timed runs (n = 5 after 2 warm-up runs; n = 3 after 1 for rows over {SLOW_ROW_S} s), each ending in a device synchronisation\n"
    );
    let b = Bench {
        dev: dev.clone(),
        filter,
        warmup: 2,
        runs: 5,
    };

    // Dispatch overhead: 500 tiny dispatches batched vs one submit each. Measured first,
    // before large tensors exist, and once more with 1 GiB live (see that row).
    let tiny = b.tensor(&[64], 6)?;
    let run_batched = || {
        let mut t = tiny.clone();
        for _ in 0..500 {
            t = t.add_scalar(1.0)?;
        }
        Ok(())
    };
    let run_single = || {
        let mut t = tiny.clone();
        for _ in 0..500 {
            t = t.add_scalar(1.0)?;
            ctx.flush()?;
        }
        Ok(())
    };
    let batched = b.run(
        "500 tiny dispatches, batched submits",
        Work::Items(500.0, "dispatch"),
        run_batched,
    )?;
    let single = b.run(
        "500 tiny dispatches, one submit each",
        Work::Items(500.0, "dispatch"),
        run_single,
    )?;
    if batched.is_some() && single.is_some() {
        // The two rows run minutes apart in wall-clock terms of a busy machine; the ratio is
        // taken from back-to-back pairs instead, so both sides see the same conditions.
        let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
            let t = Instant::now();
            f()?;
            dev.synchronize()?;
            Ok(t.elapsed().as_secs_f64())
        };
        let mut ratios = Vec::new();
        for _ in 0..9 {
            let a = time(&run_batched)?;
            let s = time(&run_single)?;
            ratios.push(s / a);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "{:<52} {:>10.2}x  (median of 9 back-to-back pairs; range {:.2}-{:.2}x)",
            "batched speed-up over one submit per dispatch", ratios[4], ratios[0], ratios[8]
        );
    }
    // The same batched row with 1 GiB of live device buffers, as in a training step (the
    // first warm-up run includes the deferred 1 GiB upload).
    if b.filter
        .as_deref()
        .is_none_or(|f| "500 tiny dispatches".contains(f))
    {
        let ballast: Vec<Tensor> = (0..64)
            .map(|i| b.tensor(&[1 << 22], 100 + i))
            .collect::<Result<_>>()?;
        b.run(
            "500 tiny dispatches, batched, 1 GiB live",
            Work::Items(500.0, "dispatch"),
            || {
                let mut t = tiny.clone();
                for _ in 0..500 {
                    t = t.add_scalar(1.0)?;
                }
                Ok(())
            },
        )?;
        drop(ballast);
        ctx.trim_pool();
    }

    // Host cost per dispatch (rows named `dispatch: ...`).
    dispatch_rows(&b, &ctx)?;

    // The adapter's ceiling, to read every other row as a fraction of it.
    let big = b.tensor(&[1 << 24], 9)?;
    b.run(
        "ceiling: contiguous copy, 16M f32",
        Work::Bytes(8.0 * big.numel() as f64),
        || big.permute(&[0]).map(drop),
    )?;
    drop(big);

    // Matrix product at the size docs/benchmarks.md quotes as the adapter's matmul ceiling.
    let ma = b.tensor(&[1024, 1024], 7)?.as_param();
    let mb = b.tensor(&[1024, 1024], 8)?.as_param();
    let mm_flops = 2.0 * 1024f64.powi(3);
    b.run("matmul 1024^3", Work::Flops(mm_flops), || {
        ma.matmul(&mb).map(drop)
    })?;
    // dA = g·Bᵀ and dB = Aᵀ·g: three products in all.
    b.run(
        "matmul 1024^3 forward + backward",
        Work::Flops(3.0 * mm_flops),
        || backward(&ma.matmul(&mb)?.sum()?).map(drop),
    )?;
    drop((ma, mb));

    // Convolutions at DeepLabV3+ shapes.
    conv_rows(&b)?;

    // Fused softmax cross-entropy (`losses::ce`, the pixel-loss kernels) at segmentation
    // shapes.
    let logits = b.tensor(&[4, 19, 256, 256], 10)?.as_param();
    let labels: Vec<u32> = common::seeded(4 * 256 * 256, 11)
        .iter()
        .map(|v| ((v + 1.0) * 9.5) as u32 % 19)
        .collect();
    let labels = Tensor::from_u32(labels, [4, 256, 256], &b.dev)?;
    let ce_bytes = 4.0 * logits.numel() as f64 * 3.0;
    b.run(
        "softmax-CE (4,19,256,256) forward",
        Work::Bytes(ce_bytes / 3.0),
        || ce(&logits, &labels, &CeOptions::default()).map(drop),
    )?;
    b.run(
        "softmax-CE (4,19,256,256) forward + backward",
        Work::Bytes(ce_bytes),
        || {
            let l = ce(&logits, &labels, &CeOptions::default())?;
            backward(&l).map(drop)
        },
    )?;
    drop((logits, labels));

    // Batch norm in training (batch statistics, running-stat update) at a DeepLabV3+ shape:
    // the fused per-channel sums over N·H·W and the fused backward (batch_norm.wgsl).
    let bx = b.tensor(&[4, 64, 128, 128], 12)?.as_param();
    let gamma = Tensor::ones([64], &b.dev)?.as_param();
    let beta = Tensor::zeros([64], &b.dev)?.as_param();
    let bn_state = BatchNormState::new(64, &b.dev)?;
    b.run(
        "batch_norm2d train (4,64,128,128) forward + backward",
        // x read by the statistics and by the normalisation, y written; the backward about
        // twice that.
        Work::Bytes(4.0 * bx.numel() as f64 * 9.0),
        || {
            let (y, _) = batch_norm2d(&bx, &gamma, &beta, &bn_state, true, BN_MOMENTUM, BN_EPS)?;
            backward(&y.sum()?).map(drop)
        },
    )?;
    drop((bx, gamma, beta, bn_state));

    // Elementwise and layout (memory-bound).
    let n = 1 << 22;
    let x = b.tensor(&[n], 1)?;
    let y = b.tensor(&[n], 2)?;
    b.run("unary exp, 4M f32", Work::Bytes(8.0 * n as f64), || {
        x.exp().map(drop)
    })?;
    b.run(
        "binary add, 4M f32 (same shape)",
        Work::Bytes(12.0 * n as f64),
        || x.add(&y).map(drop),
    )?;
    let row = b.tensor(&[1, 2048], 3)?;
    let m = x.reshape([2048, 2048])?;
    b.run(
        "binary add, 2048x2048 + 1x2048 (broadcast)",
        Work::Bytes(8.0 * n as f64),
        || m.add(&row).map(drop),
    )?;
    b.run(
        "permute 2048x2048 -> transpose",
        Work::Bytes(8.0 * n as f64),
        || m.permute(&[1, 0]).map(drop),
    )?;

    // Reductions.
    b.run(
        "sum, 4M f32 (three lane passes)",
        Work::Bytes(4.0 * n as f64),
        || x.sum().map(drop),
    )?;
    let nchw = x.reshape([4, 16, 256, 256])?;
    b.run(
        "sum over H*W of (4,16,256,256)",
        Work::Bytes(4.0 * n as f64),
        || nchw.reshape([64, 65536])?.sum_axis(1, false).map(drop),
    )?;
    let logits = b.tensor(&[4, 19, 256, 256], 4)?;
    b.run(
        "argmax over C of (4,19,256,256) (serial)",
        Work::Bytes(4.0 * logits.numel() as f64),
        || logits.argmax_axis(1, false).map(drop),
    )?;

    // Forward + backward of a small composed graph.
    let w = b.tensor(&[2048, 2048], 5)?.as_param();
    b.run(
        "fwd+bwd sum(tanh(x*w)^2), 4M",
        Work::Bytes(40.0 * n as f64),
        || {
            let l = m.mul(&w)?.tanh()?.square()?.sum()?;
            backward(&l).map(drop)
        },
    )?;

    if b.filter.as_deref().is_none_or(|f| "profile".contains(f)) {
        profile_step(&b, &ctx)?;
    }
    let (compiled, secs) = ctx.pipeline_stats();
    println!(
        "\npipelines compiled: {compiled} in {secs:.2} s; pool: {:?}",
        ctx.pool_stats()
    );
    Ok(())
}
