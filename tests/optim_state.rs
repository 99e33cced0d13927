//! Optimisers (src/optim/): parameter identity, allocation and readback of a GPU step, the
//! in-place version guard, and state round trips with their errors.

mod common;
#[path = "common/optim.rs"]
mod optim_common;

use common::Tol;
use optim_common::*;
use wgseg::nn::{Kind, ParamStore};
use wgseg::optim::{AdamW, Optimizer, Sgd};
use wgseg::{backward, Device, Error, Tensor};

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
        // Allocations (new or recycled): the unit scale, and the momentum buffers at the
        // first step only (the recorder's uniform arena is one buffer for the context's
        // lifetime); the parameters are written where they are.
        let after = ctx.pool_stats();
        let allocs = (after.created + after.reused) - (pool.created + pool.reused);
        let want = if k == 0 { 1 + PARAMS.len() as u64 } else { 1 };
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
            "exp_avg.c",
            "exp_avg_sq.a",
            "exp_avg_sq.b",
            "exp_avg_sq.c",
            "step.a",
            "step.b",
            "step.c"
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
