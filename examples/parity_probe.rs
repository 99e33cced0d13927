//! GPU vs CPU parity of the `tiny` DeepLabV3+ per parameter tensor: one training-mode
//! forward + cross-entropy + backward on both devices, then `‖g_gpu − g_cpu‖ / ‖g_cpu‖` and
//! `max|g_gpu − g_cpu| / max|g_cpu|` for the worst 12 tensors (and the logits).
//!
//! `cargo run --example parity_probe -- N H W` (e.g. `4 32 32`, the size `tests/model.rs`
//! uses; `2 24 20` shows the ill-conditioned image-pooling batch norm at batch 2).
use rand::{Rng, SeedableRng};
use wgseg::losses::{ce, CeOptions};
use wgseg::model::{ModelConfig, Segmenter};
use wgseg::nn::ParamStore;
use wgseg::{backward, Device, Tensor};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: parity_probe N H W"))
        .collect();
    assert_eq!(args.len(), 3, "usage: parity_probe N H W");
    let (n, h, w) = (args[0], args[1], args[2]);
    let text = std::fs::read_to_string("models/tiny.toml").unwrap();
    #[derive(serde::Deserialize)]
    struct F {
        model: ModelConfig,
    }
    let cfg = toml::from_str::<F>(&text).unwrap().model;
    let mut r = rand::rngs::StdRng::seed_from_u64(5);
    let x: Vec<f32> = (0..n * 3 * h * w)
        .map(|_| r.random_range(-2.0..2.0))
        .collect();
    let labels: Vec<u32> = (0..n * h * w).map(|i| (i % 7) as u32 % 5).collect();
    let run = |dev: &Device| {
        let mut store = ParamStore::new(dev);
        let net: Box<dyn Segmenter> = cfg.build(5, &mut store, 3).unwrap();
        let xt = Tensor::from_vec(x.clone(), [n, 3, h, w], dev).unwrap();
        let y = Tensor::from_u32(labels.clone(), [n, h, w], dev).unwrap();
        let logits = net.forward(&mut store, &xt, true).unwrap();
        let loss = ce(&logits, &y, &CeOptions::default()).unwrap();
        let g = backward(&loss).unwrap();
        let grads: Vec<(String, Vec<f64>)> = store
            .params()
            .map(|(name, t)| (name.to_string(), g.get(t).unwrap().to_vec_f64().unwrap()))
            .collect();
        (logits.to_vec_f64().unwrap(), grads)
    };
    let (cl, cg) = run(&Device::Cpu);
    let (gl, gg) = run(&Device::gpu().unwrap());
    let nrm = |a: &[f64], b: &[f64]| {
        let d: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt();
        let m: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        let mx = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        let bmax = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
        (d / m, mx / bmax)
    };
    println!("logits {:?}", nrm(&gl, &cl));
    let mut rows: Vec<_> = gg
        .iter()
        .zip(&cg)
        .map(|((name, g), (_, c))| (nrm(g, c), name.clone()))
        .collect();
    rows.sort_by(|a, b| b.0 .0.partial_cmp(&a.0 .0).unwrap());
    for r in rows.iter().take(12) {
        println!("{:.2e} {:.2e} {}", r.0 .0, r.0 .1, r.1);
    }
}
