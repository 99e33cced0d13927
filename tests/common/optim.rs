//! Shared helpers of the optimiser tests (`tests/optim*.rs`): the quadratic test problem,
//! the devices under test, and state comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;

use crate::common::{assert_close, gpu, uniform, Tol, REDUCTION};
use wgseg::nn::{Kind, ParamStore};
use wgseg::optim::Optimizer;
use wgseg::{backward, Device, Gradients, Tensor};

/// The CPU reference against the plain-f64 formulas: products and sums of a handful of
/// terms, so agreement is to rounding.
pub const F64: Tol = Tol {
    rtol: 1e-12,
    atol: 1e-12,
};

/// Parameters of the test problems: name, shape.
/// "c" has a multiple of 4 values (the vec4 update entries), "a" and "b" do not.
pub const PARAMS: [(&str, &[usize]); 3] = [("a", &[3, 5]), ("b", &[7]), ("c", &[2, 6])];
pub const STEPS: usize = 4;

pub fn init(name: &str, n: usize) -> Vec<f32> {
    uniform(n, 11 + name.len() as u64 * 7 + n as u64, -1.0, 1.0)
}

/// Curvature of the quadratic loss of step `k` (positive: a convex bowl).
pub fn curvature(name: &str, n: usize, k: usize) -> Vec<f32> {
    uniform(
        n,
        1000 + 17 * k as u64 + n as u64 + name.len() as u64,
        0.5,
        1.5,
    )
}

pub fn lr_of(k: usize) -> f64 {
    0.1 / (k as f64 + 1.0)
}

pub fn store_on(dev: &Device) -> ParamStore {
    let mut s = ParamStore::new(dev);
    for (name, shape) in PARAMS {
        let n = shape.iter().product();
        let t = Tensor::from_vec(init(name, n), shape, dev).expect("upload");
        s.insert(name, t, Kind::Param).expect("insert");
    }
    s
}

/// `Σ_params ½·sum(c ⊙ p²)`: the gradient of `p` is `c ⊙ p`.
pub fn quad_loss(store: &ParamStore, k: usize) -> Tensor {
    let mut total: Option<Tensor> = None;
    for (name, p) in store.params() {
        let c = Tensor::from_vec(
            curvature(name, p.numel(), k),
            p.shape().clone(),
            &p.device(),
        )
        .expect("upload");
        let l = p
            .square()
            .and_then(|q| q.mul(&c))
            .and_then(|q| q.sum())
            .and_then(|q| q.mul_scalar(0.5))
            .expect("loss");
        total = Some(match total {
            Some(t) => t.add(&l).expect("add"),
            None => l,
        });
    }
    total.expect("params")
}

pub fn quad_grads(store: &ParamStore, k: usize) -> Gradients {
    backward(&quad_loss(store, k)).expect("backward")
}

pub fn values(store: &ParamStore) -> BTreeMap<String, Vec<f64>> {
    store
        .params()
        .map(|(n, t)| (n.to_string(), t.to_vec_f64().expect("read")))
        .collect()
}

/// Runs `STEPS` steps of `opt` on the quadratic problem; returns the final parameters.
pub fn run(opt: &mut dyn Optimizer, dev: &Device) -> BTreeMap<String, Vec<f64>> {
    let mut store = store_on(dev);
    for k in 0..STEPS {
        let g = quad_grads(&store, k);
        opt.step(&mut store, &g, lr_of(k)).expect("step");
    }
    values(&store)
}

pub fn compare_state(what: &str, got: &dyn Optimizer, want: &dyn Optimizer) {
    let (g, w) = (got.state(), want.state());
    let names = |s: &[(String, Tensor)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&g), names(&w), "{what}");
    for ((n, a), (_, b)) in g.iter().zip(&w) {
        let (a, b) = (a.to_vec_f64().expect("read"), b.to_vec_f64().expect("read"));
        assert_close(&format!("{what}: {n}"), &a, &b, REDUCTION);
    }
}

pub fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    d.extend(gpu());
    d
}

/// A private GPU context: its submit and pool counters see only this test's work.
pub fn private_gpu() -> Option<(Device, std::sync::Arc<wgseg::gpu::GpuContext>)> {
    gpu()?;
    let dev = Device::gpu().expect("a second context on the adapter under test");
    match &dev {
        Device::Gpu(ctx) => {
            let ctx = ctx.clone();
            Some((dev, ctx))
        }
        Device::Cpu => None,
    }
}

pub fn compare(
    what: &str,
    got: &BTreeMap<String, Vec<f64>>,
    want: &BTreeMap<String, Vec<f64>>,
    tol: Tol,
) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (name, w) in want {
        assert_close(&format!("{what}: {name}"), &got[name], w, tol);
    }
}
