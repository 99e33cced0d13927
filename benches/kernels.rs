//! Shader-level micro-benchmarks: `cargo bench` (optionally `cargo bench -- FILTER`).
//!
//! Each row: median wall time over timed runs after warm-up (each run ends with a device
//! synchronisation), and the throughput it implies (GFLOP/s for compute-bound kernels, GB/s
//! of compulsory traffic for memory-bound ones), on the adapter printed in the header.

use std::time::Instant;

use wgseg::gpu::GpuContext;
use wgseg::{backward, Device, Result, Tensor};

/// What a row's throughput is measured in.
enum Work {
    /// Floating-point operations per run.
    #[allow(dead_code)]
    Flops(f64),
    /// Bytes that must cross memory per run (inputs read once + outputs written once).
    Bytes(f64),
    /// Count of items per run (e.g. dispatches).
    Items(f64, &'static str),
}

struct Bench {
    dev: Device,
    filter: Option<String>,
    warmup: usize,
    runs: usize,
}

fn seeded(n: usize, seed: u32) -> Vec<f32> {
    // A cheap deterministic generator: benchmark inputs need no statistical quality.
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

impl Bench {
    fn tensor(&self, dims: &[usize], seed: u32) -> Result<Tensor> {
        let n = dims.iter().product();
        Tensor::from_vec(seeded(n, seed), dims.to_vec(), &self.dev)
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
        for _ in 0..self.warmup {
            f()?;
            self.dev.synchronize()?;
        }
        let mut times = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let t = Instant::now();
            f()?;
            self.dev.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        let rate = match work {
            Work::Flops(fl) => format!("{:9.2} GFLOP/s", fl / med / 1e9),
            Work::Bytes(b) => format!("{:9.2} GB/s", b / med / 1e9),
            Work::Items(n, unit) => format!("{:9.0} {unit}/s", n / med),
        };
        println!("{name:<52} {:>10.3} ms  {rate}", med * 1e3);
        Ok(Some(med))
    }
}

fn main() -> Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let dev = Device::gpu()?;
    let Device::Gpu(ctx) = &dev else {
        unreachable!("Device::gpu returns a GPU")
    };
    let ctx: std::sync::Arc<GpuContext> = ctx.clone();
    println!("adapter: {}", ctx.adapter_name());
    println!(
        "driver:  {} {}",
        ctx.adapter_info().driver,
        ctx.adapter_info().driver_info
    );
    println!(
        "median of 5 timed runs after 2 warm-up runs, each ending in a device synchronisation\n"
    );
    let b = Bench {
        dev: dev.clone(),
        filter,
        warmup: 2,
        runs: 5,
    };

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
        "sum, 4M f32 (tree, two passes)",
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

    // Dispatch overhead: 500 tiny dispatches batched vs one submit each.
    let tiny = b.tensor(&[64], 6)?;
    let batched = b.run(
        "500 tiny dispatches, batched submits",
        Work::Items(500.0, "dispatch"),
        || {
            let mut t = tiny.clone();
            for _ in 0..500 {
                t = t.add_scalar(1.0)?;
            }
            Ok(())
        },
    )?;
    let single = b.run(
        "500 tiny dispatches, one submit each",
        Work::Items(500.0, "dispatch"),
        || {
            let mut t = tiny.clone();
            for _ in 0..500 {
                t = t.add_scalar(1.0)?;
                ctx.flush()?;
            }
            Ok(())
        },
    )?;
    if let (Some(a), Some(s)) = (batched, single) {
        println!(
            "{:<52} {:>10.2}x",
            "batched speed-up over one submit per dispatch",
            s / a
        );
    }
    let (compiled, secs) = ctx.pipeline_stats();
    println!(
        "\npipelines compiled: {compiled} in {secs:.2} s; pool: {:?}",
        ctx.pool_stats()
    );
    Ok(())
}
