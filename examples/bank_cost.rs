//! What the tail-class memory bank (docs/longtail.md) costs per batch, beside what loading
//! the batch costs, on one thread:
//!
//! ```text
//! cargo run --release --example bank_cost -- [DATA_ROOT|builtin] [SCALE] [BATCH] [CROP] [BATCHES]
//! ```
//!
//! Defaults: the built-in data at scale 2 (192×256), batch 8, crop 192, 40 batches. The tail
//! classes are the dataset's tail group; the bank runs with the default settings (SM = 5,
//! Rs = 1, p_resize = 1) and with the ADE20K setting (Rs = 0.05, p_resize = 0.4).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wgseg::data::{
    self, Augment, BankConfig, Batch, ClassStats, Dataset, Loader, LoaderState, MemoryBank,
};

fn main() -> wgseg::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args.next().filter(|r| r != "builtin");
    let scale: f32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(2.0);
    let batch: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(8);
    let crop: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(192);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(40);
    let ds: Arc<dyn Dataset> = Arc::from(data::open(
        root.as_deref().map(Path::new),
        "train",
        scale,
        0,
    )?);
    let stats = ClassStats::compute_or_load(ds.as_ref())?;
    let tail: Vec<u8> = stats
        .groups(ds.info())
        .tail
        .iter()
        .map(|&c| c as u8)
        .collect();
    let c = ds.info().num_classes();
    let aug = Augment::train((crop, crop));

    let mut loader = Loader::new(ds.clone(), batch, aug, 0, 0, LoaderState::default())?;
    let mut batches: Vec<Batch> = Vec::with_capacity(n);
    let mut load = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let b = loader.next().transpose()?;
        load.push(t.elapsed().as_secs_f64());
        batches.extend(b);
    }
    let (b0, h, w) = (batches[0].b, batches[0].h, batches[0].w);
    println!(
        "{} ({} images), tail {tail:?}, batch {b0}×{h}×{w}, {n} batches",
        ds.info().name,
        ds.len()
    );
    println!(
        "load (decode + augment + normalise): {}",
        summary(&mut load)
    );
    for (name, rs, resize) in [
        ("SM 5, Rs 1, p 1", 1.0, 1.0),
        ("SM 5, Rs 0.05, p 0.4", 0.05, 0.4),
    ] {
        let cfg = BankConfig {
            tail: tail.clone(),
            rs,
            resize,
            ..BankConfig::default()
        };
        let mut bank = MemoryBank::new(cfg, c, 0, None)?;
        let mut cost = Vec::with_capacity(n);
        let mut pastes = 0;
        for b in &batches {
            let mut b = b.clone();
            let t = Instant::now();
            let log = bank.apply(&mut b);
            cost.push(t.elapsed().as_secs_f64());
            pastes += log.pasted.len();
        }
        // The first batches fill the bank; steady state is what matters.
        let steady = &mut cost[n / 4..].to_vec();
        println!(
            "bank ({name}): {} (steady, batches {}..{n}); {pastes} pastes; {} B held, bound {} B",
            summary(steady),
            n / 4,
            bank.bytes(),
            bank.capacity_bytes(h, w)
        );
    }
    Ok(())
}

/// `median X ms, mean Y ms` of seconds.
fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!("median {:.3} ms, mean {:.3} ms", med * 1e3, mean * 1e3)
}
