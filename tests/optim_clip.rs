//! Optimisers (src/optim/): clipping by the global norm, the poly schedule with warm-up,
//! and the fill kernel.

mod common;
#[path = "common/optim.rs"]
mod optim_common;

use common::{assert_close, Tol, ELEMENTWISE};
use optim_common::*;
use wgseg::nn::{Kind, ParamStore};
use wgseg::optim::{clip_grad_norm, Optimizer, Schedule, Sgd, CLIP_EPS};
use wgseg::{backward, Device, Gradients, Tensor};

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
