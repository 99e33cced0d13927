//! Optimisers (src/optim/): CPU reference against an independent f64 implementation of
//! PyTorch's formulas, GPU against CPU, parameter identity, the in-place version guard,
//! clipping, the schedule, the fill kernel, state round trips and a tiny model that learns.

mod common;

use std::collections::BTreeMap;

use common::{assert_close, gpu, uniform, Tol, ELEMENTWISE, REDUCTION};
use wgseg::nn::{init_rng, Conv2d, Kind, ParamStore};
use wgseg::optim::{clip_grad_norm, AdamW, Optimizer, Schedule, Sgd, CLIP_EPS};
use wgseg::{backward, Device, Error, Gradients, Tensor};

/// The CPU reference against the plain-f64 formulas: products and sums of a handful of
/// terms, so agreement is to rounding.
const F64: Tol = Tol {
    rtol: 1e-12,
    atol: 1e-12,
};

/// Parameters of the test problems: name, shape.
const PARAMS: [(&str, &[usize]); 2] = [("a", &[3, 5]), ("b", &[7])];
const STEPS: usize = 4;

fn init(name: &str, n: usize) -> Vec<f32> {
    uniform(n, 11 + name.len() as u64 * 7 + n as u64, -1.0, 1.0)
}

/// Curvature of the quadratic loss of step `k` (positive: a convex bowl).
fn curvature(name: &str, n: usize, k: usize) -> Vec<f32> {
    uniform(
        n,
        1000 + 17 * k as u64 + n as u64 + name.len() as u64,
        0.5,
        1.5,
    )
}

fn lr_of(k: usize) -> f64 {
    0.1 / (k as f64 + 1.0)
}

fn store_on(dev: &Device) -> ParamStore {
    let mut s = ParamStore::new(dev);
    for (name, shape) in PARAMS {
        let n = shape.iter().product();
        let t = Tensor::from_vec(init(name, n), shape, dev).expect("upload");
        s.insert(name, t, Kind::Param).expect("insert");
    }
    s
}

/// `Σ_params ½·sum(c ⊙ p²)`: the gradient of `p` is `c ⊙ p`.
fn quad_loss(store: &ParamStore, k: usize) -> Tensor {
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

fn quad_grads(store: &ParamStore, k: usize) -> Gradients {
    backward(&quad_loss(store, k)).expect("backward")
}

fn values(store: &ParamStore) -> BTreeMap<String, Vec<f64>> {
    store
        .params()
        .map(|(n, t)| (n.to_string(), t.to_vec_f64().expect("read")))
        .collect()
}

/// Runs `STEPS` steps of `opt` on the quadratic problem; returns the final parameters.
fn run(opt: &mut dyn Optimizer, dev: &Device) -> BTreeMap<String, Vec<f64>> {
    let mut store = store_on(dev);
    for k in 0..STEPS {
        let g = quad_grads(&store, k);
        opt.step(&mut store, &g, lr_of(k)).expect("step");
    }
    values(&store)
}

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

fn compare(
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
    let Some(dev) = gpu() else { return };
    for (m, wd, nesterov) in sgd_configs() {
        let mut cpu = Sgd::new(m, wd, nesterov);
        let mut gpu_opt = Sgd::new(m, wd, nesterov);
        let want = run(&mut cpu, &Device::Cpu);
        let got = run(&mut gpu_opt, &dev);
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
    let got = run(&mut gpu_opt, &dev);
    compare("gpu adamw", &got, &want, REDUCTION);
    compare_state("gpu adamw state", &gpu_opt, &cpu);
}

fn compare_state(what: &str, got: &dyn Optimizer, want: &dyn Optimizer) {
    let (g, w) = (got.state(), want.state());
    let names = |s: &[(String, Tensor)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&g), names(&w), "{what}");
    for ((n, a), (_, b)) in g.iter().zip(&w) {
        let (a, b) = (a.to_vec_f64().expect("read"), b.to_vec_f64().expect("read"));
        assert_close(&format!("{what}: {n}"), &a, &b, REDUCTION);
    }
}

fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    d.extend(gpu());
    d
}

/// A private GPU context: its submit and pool counters see only this test's work.
fn private_gpu() -> Option<(Device, std::sync::Arc<wgseg::gpu::GpuContext>)> {
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

#[test]
fn parameters_keep_their_identity_and_get_gradients() {
    for dev in devices() {
        let mut store = store_on(&dev);
        let ids: Vec<u64> = store.params().map(|(_, t)| t.id()).collect();
        let mut opt = AdamW::default();
        for k in 0..3 {
            let g = quad_grads(&store, k);
            for (name, p) in store.params() {
                assert!(
                    g.get(p).is_some(),
                    "{}: no gradient for {name} at step {k}",
                    dev.name()
                );
            }
            let before: Vec<u64> = store.params().map(|(_, t)| t.version()).collect();
            opt.step(&mut store, &g, 0.1).expect("step");
            let after: Vec<u64> = store.params().map(|(_, t)| t.version()).collect();
            assert!(
                before.iter().zip(&after).all(|(b, a)| a > b),
                "versions bumped"
            );
        }
        let now: Vec<u64> = store.params().map(|(_, t)| t.id()).collect();
        assert_eq!(ids, now, "{}: ids changed", dev.name());
    }
}

/// On a GPU a step allocates nothing but its 1-element gradient scale (state at the first
/// step only) and submits nothing (no readback): its dispatches are only recorded.
#[test]
fn gpu_step_allocates_nothing_and_reads_nothing_back() {
    let Some((dev, ctx)) = private_gpu() else {
        return;
    };
    let mut store = store_on(&dev);
    let mut opt = Sgd::default();
    for k in 0..3 {
        let g = quad_grads(&store, k);
        ctx.flush().expect("flush");
        let (pool, (d0, s0)) = (ctx.pool_stats(), ctx.submit_stats());
        opt.step(&mut store, &g, 0.1).expect("step");
        let (d1, s1) = ctx.submit_stats();
        assert_eq!(s1, s0, "step {k} submitted work");
        // One fill (the unit gradient scale) and one update per parameter.
        assert_eq!(d1 - d0, 1 + PARAMS.len() as u64, "dispatches of step {k}");
        // Allocations (new or recycled): the recorder's uniform arena (the step opens a
        // new batch, since we flushed), the unit scale, and the momentum buffers at the
        // first step only; the parameters are written where they are.
        let after = ctx.pool_stats();
        let allocs = (after.created + after.reused) - (pool.created + pool.reused);
        let want = if k == 0 { 2 + PARAMS.len() as u64 } else { 2 };
        assert_eq!(allocs, want, "allocations of step {k}");
    }
}

#[test]
fn backward_through_a_tape_saved_before_a_step_is_refused() {
    for dev in devices() {
        let mut store = store_on(&dev);
        let mut opt = Sgd::default();
        let loss = quad_loss(&store, 0);
        let g = backward(&loss).expect("first backward");
        opt.step(&mut store, &g, 0.1).expect("step");
        match backward(&loss) {
            Err(e @ Error::Modified { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("modified by an in-place update"), "{msg}");
                assert!(
                    msg.starts_with("unary:"),
                    "names the op that saved the parameter: {msg}"
                );
            }
            Err(e) => panic!("{}: wrong error {e}", dev.name()),
            Ok(_) => panic!("{}: a stale tape was backpropagated", dev.name()),
        }
        // A fresh forward after the step is fine.
        let g = quad_grads(&store, 1);
        assert_eq!(g.len(), PARAMS.len());
    }
}

/// Linear loss `sum(p ⊙ c)`: the gradients are `c` exactly.
fn linear_grads(store: &ParamStore, cs: &[(&str, Vec<f32>)]) -> Gradients {
    let mut total: Option<Tensor> = None;
    for (name, c) in cs {
        let p = store.get(name).expect("param");
        let c = Tensor::from_vec(c.clone(), p.shape().clone(), &p.device()).expect("upload");
        let l = p.mul(&c).and_then(|t| t.sum()).expect("loss");
        total = Some(match total {
            Some(t) => t.add(&l).expect("add"),
            None => l,
        });
    }
    backward(&total.expect("loss")).expect("backward")
}

#[test]
fn clipping_by_global_norm_matches_a_hand_computation() {
    for dev in devices() {
        let tol = if dev.is_gpu() { ELEMENTWISE } else { F64 };
        let mut store = ParamStore::new(&dev);
        store
            .insert(
                "a",
                Tensor::from_vec(vec![1.0, 2.0], [2], &dev).unwrap(),
                Kind::Param,
            )
            .unwrap();
        store
            .insert(
                "b",
                Tensor::from_vec(vec![3.0], [1], &dev).unwrap(),
                Kind::Param,
            )
            .unwrap();
        store
            .insert(
                "frozen",
                Tensor::from_vec(vec![5.0], [1], &dev).unwrap(),
                Kind::Param,
            )
            .unwrap();
        // Gradients a: (3, 4), b: (12); "frozen" has none. ‖g‖ = √(9 + 16 + 144) = 13.
        let cs = [("a", vec![3.0, 4.0]), ("b", vec![12.0])];
        for (max_norm, factor) in [(6.5, 6.5 / (13.0 + CLIP_EPS)), (100.0, 1.0)] {
            let g = linear_grads(&store, &cs);
            let clip = clip_grad_norm(&store, &g, max_norm).expect("clip");
            let norm = clip.norm().to_vec_f64().unwrap();
            assert_close("norm", &norm, &[13.0], tol);
            assert_close(
                "factor",
                &clip.factor().to_vec_f64().unwrap(),
                &[factor],
                tol,
            );
            let before = values(&store);
            // Plain SGD at lr 1: p ← p − factor·g.
            let mut opt = Sgd::new(0.0, 0.0, false);
            opt.step_clipped(&mut store, &g, 1.0, Some(&clip))
                .expect("step");
            let after = values(&store);
            let a: Vec<f64> = before["a"]
                .iter()
                .zip([3.0, 4.0])
                .map(|(p, g)| p - factor * g)
                .collect();
            assert_close("a", &after["a"], &a, tol);
            assert_close("b", &after["b"], &[before["b"][0] - factor * 12.0], tol);
            assert_close(
                "frozen",
                &after["frozen"],
                &[5.0],
                Tol {
                    rtol: 0.0,
                    atol: 0.0,
                },
            );
        }
    }
}

#[test]
fn poly_schedule_with_warmup_literals() {
    let s = Schedule::poly(0.01, 100).with_warmup(10, 0.1);
    s.validate().expect("valid");
    let cases = [
        // t = 0: 0.01 · (1 − 0)^0.9 · 0.1 = 0.001 (warm-up start).
        (0, 0.001),
        // t = 5 (mid warm-up): 0.01 · 0.95^0.9 · (0.1 + 0.9·5/10 = 0.55).
        (5, 0.005251869598918249),
        // t = 10 (warm-up over): 0.01 · 0.9^0.9.
        (10, 0.009095325760829623),
        // t = 50 (midpoint): 0.01 · 0.5^0.9.
        (50, 0.005358867312681466),
        // t = 99 (last step): 0.01 · 0.01^0.9 = 0.01 · 10^−1.8.
        (99, 0.00015848931924611134),
        // t = 100: past the end.
        (100, 0.0),
    ];
    for (t, want) in cases {
        let got = s.lr(t);
        assert!(
            (got - want).abs() <= 1e-15 * want.abs().max(1e-3),
            "lr({t}) = {got}, want {want}"
        );
    }
    // Without warm-up the first step runs at the base rate.
    assert_eq!(Schedule::poly(0.01, 100).lr(0), 0.01);
    assert!(Schedule::poly(0.01, 0).validate().is_err());
    assert!(Schedule::poly(0.01, 10)
        .with_warmup(20, 0.1)
        .validate()
        .is_err());
    assert!(Schedule::poly(0.01, 10)
        .with_warmup(2, 1.5)
        .validate()
        .is_err());
}

#[test]
fn fill_kernel_makes_constants_without_a_submit() {
    for (shape, value) in [(vec![5, 7], 0.0f32), (vec![3], 1.0), (vec![300], -2.5)] {
        let want = vec![f64::from(value); shape.iter().product()];
        let cpu = Tensor::full(shape.clone(), f64::from(value), &Device::Cpu).unwrap();
        assert_eq!(cpu.to_vec_f64().unwrap(), want);
    }
    let Some((dev, ctx)) = private_gpu() else {
        return;
    };
    ctx.flush().unwrap();
    let (d0, s0) = ctx.submit_stats();
    let z = Tensor::zeros([5, 7], &dev).unwrap();
    let o = Tensor::ones([3], &dev).unwrap();
    let f = Tensor::full([300], -2.5, &dev).unwrap();
    let (d1, s1) = ctx.submit_stats();
    assert_eq!(s1, s0, "zeros/ones/full submitted work (an upload flushes)");
    assert_eq!(d1 - d0, 3, "one fill dispatch each");
    assert_eq!(z.to_vec().unwrap(), vec![0.0; 35]);
    assert_eq!(o.to_vec().unwrap(), vec![1.0; 3]);
    assert_eq!(f.to_vec().unwrap(), vec![-2.5; 300]);
}

/// Two steps with `first`, its state loaded into `second` over a copy of the parameters,
/// then one more step each: identical results. `first` steps before `second` does, so
/// `second` must not share `first`'s (in-place updated) buffers.
fn round_trip(dev: &Device, first: &mut dyn Optimizer, second: &mut dyn Optimizer) {
    let mut s1 = store_on(dev);
    for k in 0..2 {
        let g = quad_grads(&s1, k);
        first.step(&mut s1, &g, lr_of(k)).expect("step");
    }
    let mut s2 = ParamStore::new(dev);
    for (name, t) in s1.params() {
        let copy = Tensor::from_f64(t.to_vec_f64().unwrap(), t.shape().clone(), dev).unwrap();
        s2.insert(name, copy, Kind::Param).unwrap();
    }
    second.load_state(first.state()).expect("load_state");
    let g1 = quad_grads(&s1, 2);
    first.step(&mut s1, &g1, lr_of(2)).expect("step");
    let g2 = quad_grads(&s2, 2);
    second.step(&mut s2, &g2, lr_of(2)).expect("step");
    let exact = Tol {
        rtol: 0.0,
        atol: 0.0,
    };
    compare(
        &format!("{} round trip on {}", first.name(), dev.name()),
        &values(&s2),
        &values(&s1),
        exact,
    );
}

#[test]
fn load_state_round_trip() {
    for dev in devices() {
        round_trip(&dev, &mut Sgd::default(), &mut Sgd::default());
        round_trip(
            &dev,
            &mut Sgd::new(0.9, 0.01, true),
            &mut Sgd::new(0.9, 0.01, true),
        );
        round_trip(&dev, &mut AdamW::default(), &mut AdamW::default());
    }
    // State names and the step count (a CPU tensor).
    let mut store = store_on(&Device::Cpu);
    let mut opt = AdamW::default();
    for k in 0..3 {
        let g = quad_grads(&store, k);
        opt.step(&mut store, &g, 0.1).unwrap();
    }
    let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "exp_avg.a",
            "exp_avg.b",
            "exp_avg_sq.a",
            "exp_avg_sq.b",
            "step.a",
            "step.b"
        ]
    );
    let step = opt
        .state()
        .into_iter()
        .find(|(n, _)| n == "step.a")
        .unwrap()
        .1;
    assert_eq!(step.to_vec_f64().unwrap(), vec![3.0]);
}

fn load_err(opt: &mut dyn Optimizer, state: Vec<(&str, Tensor)>) -> String {
    let state = state.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    match opt.load_state(state) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("{}: load_state accepted a bad state", opt.name()),
    }
}

#[test]
fn load_state_errors_name_the_entry() {
    let cpu = Device::Cpu;
    let t = |shape: &[usize], v: f32| Tensor::full(shape.to_vec(), f64::from(v), &cpu).unwrap();
    let msg = load_err(&mut Sgd::default(), vec![("velocity.a", t(&[3, 5], 0.0))]);
    assert!(msg.contains("velocity.a"), "{msg}");
    let msg = load_err(
        &mut AdamW::default(),
        vec![("exp_avg.a", t(&[3, 5], 0.0)), ("step.a", t(&[1], 2.0))],
    );
    assert!(msg.contains("exp_avg_sq.a is missing"), "{msg}");
    let msg = load_err(
        &mut AdamW::default(),
        vec![
            ("exp_avg.a", t(&[3, 5], 0.0)),
            ("exp_avg_sq.a", t(&[15], 0.0)),
            ("step.a", t(&[1], 2.0)),
        ],
    );
    assert!(msg.contains("exp_avg_sq.a has shape [15]"), "{msg}");
    let msg = load_err(
        &mut AdamW::default(),
        vec![
            ("exp_avg.a", t(&[3, 5], 0.0)),
            ("exp_avg_sq.a", t(&[3, 5], 0.0)),
            ("step.a", t(&[1], 1.5)),
        ],
    );
    assert!(msg.contains("step.a"), "{msg}");
    // Mis-shaped against the parameter: found at the next step, naming the entry.
    let mut opt = Sgd::default();
    opt.load_state(vec![("momentum_buffer.a".to_string(), t(&[2], 0.0))])
        .unwrap();
    let mut store = store_on(&cpu);
    let g = quad_grads(&store, 0);
    let msg = match opt.step(&mut store, &g, 0.1) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("a mis-shaped state was used"),
    };
    assert!(msg.contains("momentum_buffer.a has shape [2]"), "{msg}");
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
