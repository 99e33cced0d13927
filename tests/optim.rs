//! Optimisers (src/optim/): CPU reference against an independent f64 implementation of
//! PyTorch's formulas, GPU against CPU, and a tiny model that learns. Parameter identity,
//! the in-place version guard and state round trips: `optim_state.rs`; clipping, the
//! schedule and the fill kernel: `optim_clip.rs`.

mod common;
#[path = "common/optim.rs"]
mod optim_common;

use std::collections::BTreeMap;

use common::{buffer_gpu, gpu, uniform, REDUCTION};
use optim_common::*;
use wgseg::nn::{init_rng, Conv2d, ParamStore};
use wgseg::optim::{AdamW, Optimizer, Sgd};
use wgseg::{backward, Device, Tensor};

/// PyTorch's SGD (dampening 0), written out in f64 independently of the crate.
fn ref_sgd(momentum: f64, wd: f64, nesterov: bool) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for (name, shape) in PARAMS {
        let n: usize = shape.iter().product();
        let mut p: Vec<f64> = init(name, n).into_iter().map(f64::from).collect();
        let mut buf: Option<Vec<f64>> = None;
        for k in 0..STEPS {
            let c = curvature(name, n, k);
            let mut d: Vec<f64> = (0..n).map(|i| f64::from(c[i]) * p[i] + wd * p[i]).collect();
            if momentum != 0.0 {
                let b: Vec<f64> = match &buf {
                    None => d.clone(),
                    Some(b) => (0..n).map(|i| momentum * b[i] + d[i]).collect(),
                };
                d = if nesterov {
                    (0..n).map(|i| d[i] + momentum * b[i]).collect()
                } else {
                    b.clone()
                };
                buf = Some(b);
            }
            for i in 0..n {
                p[i] -= lr_of(k) * d[i];
            }
        }
        out.insert(name.to_string(), p);
    }
    out
}

/// PyTorch's AdamW (amsgrad off), written out in f64 independently of the crate.
fn ref_adamw(b1: f64, b2: f64, eps: f64, wd: f64) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for (name, shape) in PARAMS {
        let n: usize = shape.iter().product();
        let mut p: Vec<f64> = init(name, n).into_iter().map(f64::from).collect();
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        for k in 0..STEPS {
            let (lr, t) = (lr_of(k), (k + 1) as i32);
            let c = curvature(name, n, k);
            for i in 0..n {
                let g = f64::from(c[i]) * p[i];
                p[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let m_hat = m[i] / (1.0 - b1.powi(t));
                let v_hat = v[i] / (1.0 - b2.powi(t));
                p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
        out.insert(name.to_string(), p);
    }
    out
}

fn sgd_configs() -> Vec<(f64, f64, bool)> {
    vec![
        (0.0, 0.0, false),
        (0.0, 0.05, false),
        (0.9, 0.0, false),
        (0.9, 0.05, false),
        (0.9, 0.05, true),
    ]
}

#[test]
fn sgd_cpu_matches_pytorch_formulas() {
    for (m, wd, nesterov) in sgd_configs() {
        let got = run(&mut Sgd::new(m, wd, nesterov), &Device::Cpu);
        compare(
            &format!("sgd m={m} wd={wd} nesterov={nesterov}"),
            &got,
            &ref_sgd(m, wd, nesterov),
            F64,
        );
    }
}

#[test]
fn adamw_cpu_matches_pytorch_formulas() {
    for (b1, b2, eps, wd) in [
        (0.9, 0.999, 1e-8, 0.01),
        (0.8, 0.99, 1e-3, 0.1),
        (0.9, 0.999, 1e-8, 0.0),
    ] {
        let got = run(&mut AdamW::new(b1, b2, eps, wd), &Device::Cpu);
        compare(
            &format!("adamw {b1} {b2} {eps} {wd}"),
            &got,
            &ref_adamw(b1, b2, eps, wd),
            F64,
        );
    }
}

/// GPU parity: several dependent f32 updates (and f32 gradients) against the f64 reference,
/// so the f32 reduction tolerance rather than the elementwise one.
#[test]
fn gpu_updates_match_cpu() {
    // The default context and the one with the GPU kernel variants (on CPU adapters the
    // default one reads the SGD operands from texel arrays).
    for dev in gpu().into_iter().chain(buffer_gpu()) {
        updates_match_cpu(&dev);
    }
}

fn updates_match_cpu(dev: &Device) {
    for (m, wd, nesterov) in sgd_configs() {
        let mut cpu = Sgd::new(m, wd, nesterov);
        let mut gpu_opt = Sgd::new(m, wd, nesterov);
        let want = run(&mut cpu, &Device::Cpu);
        let got = run(&mut gpu_opt, dev);
        compare(
            &format!("gpu sgd m={m} wd={wd} nesterov={nesterov}"),
            &got,
            &want,
            REDUCTION,
        );
        compare_state("gpu sgd state", &gpu_opt, &cpu);
    }
    let mut cpu = AdamW::default();
    let mut gpu_opt = AdamW::default();
    let want = run(&mut cpu, &Device::Cpu);
    let got = run(&mut gpu_opt, dev);
    compare("gpu adamw", &got, &want, REDUCTION);
    compare_state("gpu adamw state", &gpu_opt, &cpu);
}

/// Mean cross-entropy of a 2-layer conv net (conv 3×3 → ReLU → conv 1×1) on one 6×6 image.
fn tiny_net_losses(dev: &Device, opt: &mut dyn Optimizer, lr: f64, steps: usize) -> Vec<f32> {
    let mut store = ParamStore::new(dev);
    let mut rng = init_rng(7);
    let c1 = Conv2d::new(&mut store, &mut rng, "c1", (3, 8), 3, 1, 1, 1, true).unwrap();
    let c2 = Conv2d::new(&mut store, &mut rng, "c2", (8, 3), 1, 1, 1, 1, true).unwrap();
    let x = Tensor::from_vec(uniform(3 * 36, 5, -1.0, 1.0), [1, 3, 6, 6], dev).unwrap();
    let labels: Vec<u32> = (0..36).map(|i| ((i / 6 + i % 6) % 3) as u32).collect();
    let labels = Tensor::from_u32(labels, [1, 6, 6], dev).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let h = c1.forward(&store, &x).and_then(|h| h.relu()).unwrap();
        let logits = c2.forward(&store, &h).unwrap();
        let opts = wgseg::losses::CeOptions {
            weights: None,
            ignore_index: u32::MAX,
            ..Default::default()
        };
        let loss = wgseg::losses::ce(&logits, &labels, &opts).unwrap();
        let g = backward(&loss).unwrap();
        opt.step(&mut store, &g, lr).unwrap();
        // The one readback of a training step: the logged loss.
        losses.push(loss.item().unwrap());
    }
    losses
}

#[test]
fn a_tiny_conv_net_learns() {
    for dev in devices() {
        let sgd = tiny_net_losses(&dev, &mut Sgd::default(), 0.1, 6);
        let adamw = tiny_net_losses(&dev, &mut AdamW::default(), 0.02, 6);
        for (what, l) in [("sgd", sgd), ("adamw", adamw)] {
            assert!(
                l[5] < 0.8 * l[0],
                "{} {what}: loss {l:?} does not fall",
                dev.name()
            );
        }
    }
}
