//! Loss benchmarks: `cargo bench --bench losses` (optionally `cargo bench -- FILTER`: rows
//! whose name contains FILTER).
//!
//! For each shape — (4, 19, 256, 256) and (2, 19, 512, 1024) — and each loss — fused CE,
//! PAT, the AUC loss in closed form, AUCSeg (CE + AUC, closed form) and the AUC loss on the
//! pairwise kernel (square surrogate, 512 pixels per class) — one forward + backward
//! (`backward` of the scalar, which yields ∂L/∂logits) ending in a device synchronisation.
//! The losses run interleaved, one of each per round, so that every ratio to CE compares
//! runs made under the same load; a row gives the median time, the median of the per-round
//! ratios to CE, and the extra device memory: the pool's peak during the forward and
//! backward minus what was live before (logits and labels) and minus the gradient itself
//! (one logits-sized buffer, which every loss returns, counted at the pool's size class of
//! that request: the pool rounds large buffers up to a quarter of a power of two), each loss
//! on a fresh context so that the peak is its own.

mod common;

use std::sync::Arc;
use std::time::Instant;

use wgseg::gpu::pool::size_class;
use wgseg::gpu::GpuContext;
use wgseg::losses::{self, AucMethod, AucOptions, CeOptions, PatOptions};
use wgseg::{backward, Device, Result, Tensor};

/// Timed rounds (after one warm-up round) and rounds for the slow shape.
const ROUNDS: usize = 7;
const ROUNDS_LARGE: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Loss {
    Ce,
    Pat,
    AucClosed,
    AucSeg,
    AucPairwise,
}

impl Loss {
    fn name(self) -> &'static str {
        match self {
            Loss::Ce => "ce (fused softmax CE)",
            Loss::Pat => "pat (falling, T = 20)",
            Loss::AucClosed => "auc closed form",
            Loss::AucSeg => "aucseg (CE + AUC closed form)",
            Loss::AucPairwise => "auc pairwise (square, cap 512)",
        }
    }
    fn eval(self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let auc = |method| AucOptions {
            method,
            max_pixels_per_class: 512,
            ..Default::default()
        };
        match self {
            Loss::Ce => losses::ce(x, y, &CeOptions::default()),
            Loss::Pat => losses::pat(x, y, &PatOptions::default()),
            Loss::AucClosed => losses::auc_loss(x, y, &auc(AucMethod::ClosedForm)),
            Loss::AucSeg => losses::aucseg(x, y, &auc(AucMethod::ClosedForm)),
            Loss::AucPairwise => losses::auc_loss(x, y, &auc(AucMethod::Pairwise)),
        }
    }
}

/// One loss on its own context with its own copy of the inputs.
struct Case {
    loss: Loss,
    ctx: Arc<GpuContext>,
    dev: Device,
    x: Tensor,
    y: Tensor,
    times: Vec<f64>,
    extra_bytes: u64,
}

impl Case {
    fn new(loss: Loss, dims: [usize; 4]) -> Result<Case> {
        let dev = Device::gpu()?;
        let Device::Gpu(ctx) = &dev else {
            unreachable!("Device::gpu returns a GPU")
        };
        let ctx = ctx.clone();
        let [n, c, h, w] = dims;
        let x = Tensor::from_vec(common::seeded(n * c * h * w, 1), dims, &dev)?.as_param();
        // Long-tailed labels: class k with probability ∝ 0.7^k, and 1 % ignored.
        let labels: Vec<u32> = common::seeded(n * h * w, 2)
            .iter()
            .map(|v| {
                let u = f64::from(v * 0.5 + 0.5);
                if u > 0.99 {
                    255
                } else {
                    let k = (1.0 - u / 0.99 * (1.0 - 0.7f64.powi(c as i32))).ln() / 0.7f64.ln();
                    (k as u32).min(c as u32 - 1)
                }
            })
            .collect();
        let y = Tensor::from_u32(labels, [n, h, w], &dev)?;
        dev.synchronize()?;
        Ok(Case {
            loss,
            ctx,
            dev,
            x,
            y,
            times: Vec::new(),
            extra_bytes: 0,
        })
    }

    /// One forward + backward; returns the seconds and keeps the peak's excess.
    fn run(&mut self) -> Result<f64> {
        let before = self.ctx.pool_stats().live_bytes;
        let t = Instant::now();
        let grad_bytes;
        {
            let l = self.loss.eval(&self.x, &self.y)?;
            let g = backward(&l)?;
            let dx = g.get(&self.x).ok_or_else(|| {
                wgseg::Error::shape("bench", "the loss gave no gradient for the logits")
            })?;
            grad_bytes = size_class(4 * dx.numel() as u64);
            self.dev.synchronize()?;
        }
        let secs = t.elapsed().as_secs_f64();
        let peak = self.ctx.pool_stats().peak_live_bytes;
        self.extra_bytes = self
            .extra_bytes
            .max(peak.saturating_sub(before + grad_bytes));
        Ok(secs)
    }
}

const ALL: [Loss; 5] = [
    Loss::Ce,
    Loss::Pat,
    Loss::AucClosed,
    Loss::AucSeg,
    Loss::AucPairwise,
];
const SHAPES: [([usize; 4], usize); 2] = [
    ([4, 19, 256, 256], ROUNDS),
    ([2, 19, 512, 1024], ROUNDS_LARGE),
];

fn label(l: Loss, dims: [usize; 4]) -> String {
    format!("{} {:?}", l.name(), dims)
}

fn matches(l: Loss, dims: [usize; 4], filter: Option<&str>) -> bool {
    filter.is_none_or(|f| label(l, dims).contains(f))
}

fn shape(dims: [usize; 4], rounds: usize, filter: Option<&str>) -> Result<()> {
    if !ALL.iter().any(|&l| matches(l, dims, filter)) {
        return Ok(());
    }
    // CE always runs: it is what the ratios are taken against.
    let chosen: Vec<Loss> = ALL
        .into_iter()
        .filter(|&l| l == Loss::Ce || matches(l, dims, filter))
        .collect();
    let mut cases = chosen
        .into_iter()
        .map(|l| Case::new(l, dims))
        .collect::<Result<Vec<_>>>()?;
    for round in 0..=rounds {
        for c in cases.iter_mut() {
            let s = c.run()?;
            if round > 0 {
                c.times.push(s);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ce_times = cases[0].times.clone();
    for c in cases.iter_mut() {
        let mut ratios: Vec<f64> = c.times.iter().zip(&ce_times).map(|(a, b)| a / b).collect();
        let r = median(&mut ratios);
        let t = median(&mut c.times);
        println!(
            "{:<60} {:>9.2} ms  {:>5.2}x CE  extra memory {:>9.1} KiB  (n={rounds})",
            label(c.loss, dims),
            t * 1e3,
            r,
            c.extra_bytes as f64 / 1024.0
        );
    }
    println!();
    Ok(())
}

fn main() -> Result<()> {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    // `cargo bench -- FILTER` runs every bench binary with the same filter: stay silent
    // when no row here matches.
    if !SHAPES
        .iter()
        .any(|&(d, _)| ALL.iter().any(|&l| matches(l, d, filter.as_deref())))
    {
        return Ok(());
    }
    let dev = Device::gpu()?;
    if let Device::Gpu(ctx) = &dev {
        common::print_adapter(ctx);
    }
    drop(dev);
    println!(
        "loss forward + backward (∂L/∂logits), each ending in a device synchronisation; median over interleaved rounds after a warm-up round; ratio = median of the per-round ratios to CE\n"
    );
    for (dims, rounds) in SHAPES {
        shape(dims, rounds, filter.as_deref())?;
    }
    Ok(())
}
