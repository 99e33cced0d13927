//! batch_norm2d: gradient checks and GPU parity in training and evaluation, the running
//! statistics against hand-computed values, and shape errors.

mod common;

use common::*;
use wgseg::ops::{
    batch_norm2d, batch_norm2d_with, Activation, BatchNormState, Epilogue, BN_EPS, BN_MOMENTUM,
};
use wgseg::{Device, Shape, Tensor};

/// x, gamma, beta (differentiable) and running mean/var (constants) for shape `s`.
fn bn_inputs(s: [usize; 4], seed: u64) -> Vec<Input> {
    let c = s[1];
    let n: usize = s.iter().product();
    vec![
        Input::param(s, uniform(n, seed, -2.0, 3.0)),
        Input::param([c], uniform(c, seed + 1, 0.5, 1.5)),
        Input::param([c], uniform(c, seed + 2, -0.5, 0.5)),
        Input::constant([c], uniform(c, seed + 3, -0.3, 0.3)),
        Input::constant([c], uniform(c, seed + 4, 0.5, 2.0)),
    ]
}

fn state(t: &[wgseg::Tensor]) -> BatchNormState {
    BatchNormState {
        running_mean: t[3].clone(),
        running_var: t[4].clone(),
    }
}

// Shapes: N = 1, spatial 1 × 1 with N > 1, odd primes, H·W past the serial-reduction
// threshold (64, tree kernel), N past it too.
const SHAPES: &[[usize; 4]] = &[
    [1, 3, 2, 3],
    [5, 4, 1, 1],
    [2, 3, 5, 7],
    // H·W past the 64 lanes of a plane sum and not a multiple of the 16-element runs.
    [2, 3, 17, 19],
    [3, 2, 9, 11],
    [67, 2, 1, 2],
    // Planes of a multiple of 4 values (the vec4 kernels): one partial sum per plane, and more
    // (320 values: 5 partial sums of 64 values, 20 runs of 4 vec4 per plane).
    [2, 3, 4, 6],
    [2, 2, 20, 16],
    // More partial sums per plane (⌈4224 / 64⌉ = 66) than invocations of the finish kernel.
    [1, 2, 64, 66],
];

#[test]
fn batch_norm_training_matches_and_differentiates() {
    for (i, &s) in SHAPES.iter().enumerate() {
        check_op(
            &format!("batch_norm2d train {s:?}"),
            &bn_inputs(s, 10 * i as u64),
            Check::new(REDUCTION, REDUCTION),
            |t| Ok(batch_norm2d(&t[0], &t[1], &t[2], &state(t), true, BN_MOMENTUM, BN_EPS)?.0),
        );
    }
}

#[test]
fn batch_norm_eval_matches_and_differentiates() {
    for (i, &s) in SHAPES.iter().enumerate() {
        check_op(
            &format!("batch_norm2d eval {s:?}"),
            &bn_inputs(s, 100 + 10 * i as u64),
            Check::new(ELEMENTWISE, REDUCTION),
            |t| Ok(batch_norm2d(&t[0], &t[1], &t[2], &state(t), false, BN_MOMENTUM, BN_EPS)?.0),
        );
    }
}

/// bn_inputs plus a differentiable residual of x's shape (input 5).
fn bn_res_inputs(s: [usize; 4], seed: u64) -> Vec<Input> {
    let n: usize = s.iter().product();
    let mut v = bn_inputs(s, seed);
    v.push(Input::param(s, uniform(n, seed + 5, -1.0, 1.0)));
    v
}

/// The epilogues, by index: ReLU alone, a residual alone (input 5), both.
const EPILOGUES: [&str; 3] = ["relu", "residual", "residual + relu"];

fn epilogue(t: &[wgseg::Tensor], e: usize) -> Epilogue<'_> {
    Epilogue {
        act: if e == 1 {
            Activation::Identity
        } else {
            Activation::Relu
        },
        residual: (e > 0).then(|| &t[5]),
    }
}

#[test]
fn batch_norm_epilogue_matches_and_differentiates() {
    for (i, &s) in SHAPES.iter().enumerate() {
        for (k, training) in [(0usize, true), (1, false)] {
            for (e, name) in EPILOGUES.iter().enumerate() {
                check_op(
                    &format!("batch_norm2d {} train {training} {s:?}", name),
                    &if e == 0 {
                        bn_inputs(s, 1000 + 100 * i as u64 + 10 * k as u64)
                    } else {
                        bn_res_inputs(s, 1000 + 100 * i as u64 + 10 * k as u64)
                    },
                    Check::new(REDUCTION, REDUCTION),
                    |t| {
                        let ep = epilogue(t, e);
                        Ok(batch_norm2d_with(
                            &t[0],
                            &t[1],
                            &t[2],
                            &state(t),
                            training,
                            BN_MOMENTUM,
                            BN_EPS,
                            ep,
                        )?
                        .0)
                    },
                );
            }
        }
    }
}

/// The epilogue equals its composition (bn, then + r, then ReLU), and evaluation without
/// gradients (the fused two-dispatch path) equals the CPU reference.
#[test]
fn batch_norm_epilogue_equals_composition() {
    let s = [3, 4, 5, 7];
    let mut devs = vec![Device::Cpu];
    devs.extend(gpu());
    for dev in devs {
        let t: Vec<Tensor> = bn_res_inputs(s, 77)
            .iter()
            .map(|i| Tensor::from_vec(i.data.clone(), i.shape.clone(), &dev).unwrap())
            .collect();
        for training in [true, false] {
            for (e, name) in EPILOGUES.iter().enumerate() {
                let ep = epilogue(&t, e);
                let (fused, _) = batch_norm2d_with(
                    &t[0],
                    &t[1],
                    &t[2],
                    &state(&t),
                    training,
                    BN_MOMENTUM,
                    BN_EPS,
                    ep,
                )
                .unwrap();
                let (plain, _) = batch_norm2d(
                    &t[0],
                    &t[1],
                    &t[2],
                    &state(&t),
                    training,
                    BN_MOMENTUM,
                    BN_EPS,
                )
                .unwrap();
                let mut want = plain;
                if let Some(r) = ep.residual {
                    want = want.add(r).unwrap();
                }
                if ep.act == Activation::Relu {
                    want = want.relu().unwrap();
                }
                let (got, want) = (fused.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
                assert!(got.contains(&0.0) == (ep.act == Activation::Relu));
                assert_close(
                    &format!("{name} train {training} on {dev:?}"),
                    &got,
                    &want,
                    ELEMENTWISE,
                );
            }
        }
    }
}

#[test]
fn batch_norm_residual_of_another_shape_is_an_error() {
    let dev = Device::Cpu;
    let x = Tensor::zeros([2, 3, 4, 4], &dev).unwrap();
    let r = Tensor::zeros([2, 3, 4, 5], &dev).unwrap();
    let (g, b) = (
        Tensor::ones([3], &dev).unwrap(),
        Tensor::zeros([3], &dev).unwrap(),
    );
    let st = BatchNormState::new(3, &dev).unwrap();
    let ep = Epilogue {
        act: Activation::Identity,
        residual: Some(&r),
    };
    let err = batch_norm2d_with(&x, &g, &b, &st, true, BN_MOMENTUM, BN_EPS, ep)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("residual") && err.contains("[2, 3, 4, 5]"),
        "{err}"
    );
}

#[test]
fn batch_norm_running_stats_update_by_hand() {
    // x [N=2, C=2, H=1, W=2]: channel 0 holds {1, 2, 5, 8}, channel 1 holds {0, 0, 4, -4}.
    //   channel 0: mean 4, biased var (9 + 4 + 1 + 16)/4 = 7.5, unbiased 30/3 = 10.
    //   channel 1: mean 0, biased var (0 + 0 + 16 + 16)/4 = 8, unbiased 32/3.
    // running_mean = [0.5, -1], running_var = [2, 3], momentum 0.1:
    //   mean ← 0.9·[0.5, −1] + 0.1·[4, 0]     = [0.85, −0.9]
    //   var  ← 0.9·[2, 3]    + 0.1·[10, 32/3] = [2.8, 2.7 + 16/15 = 3.7666…]
    // Normalised output (gamma 1, beta 0, eps 0), channel 0: (x − 4)/sqrt(7.5).
    let mut devs = vec![Device::Cpu];
    devs.extend(gpu());
    for dev in devs {
        let x =
            Tensor::from_vec(vec![1., 2., 0., 0., 5., 8., 4., -4.], [2, 2, 1, 2], &dev).unwrap();
        let st = BatchNormState {
            running_mean: Tensor::from_vec(vec![0.5, -1.0], [2], &dev).unwrap(),
            running_var: Tensor::from_vec(vec![2.0, 3.0], [2], &dev).unwrap(),
        };
        let gamma = Tensor::ones([2], &dev).unwrap();
        let beta = Tensor::zeros([2], &dev).unwrap();
        let (y, upd) = batch_norm2d(&x, &gamma, &beta, &st, true, 0.1, 0.0).unwrap();
        let upd = upd.unwrap();
        let tol = REDUCTION;
        assert_close(
            "running_mean",
            &upd.running_mean.to_vec_f64().unwrap(),
            &[0.85, -0.9],
            tol,
        );
        assert_close(
            "running_var",
            &upd.running_var.to_vec_f64().unwrap(),
            &[2.8, 2.7 + 16.0 / 15.0],
            tol,
        );
        assert!(!upd.running_mean.requires_grad() && !upd.running_var.requires_grad());
        let r0 = 7.5f64.sqrt();
        let r1 = 8f64.sqrt();
        assert_close(
            "normalised",
            &y.to_vec_f64().unwrap(),
            &[
                -3.0 / r0,
                -2.0 / r0,
                0.0,
                0.0,
                1.0 / r0,
                4.0 / r0,
                4.0 / r1,
                -4.0 / r1,
            ],
            tol,
        );
        // Evaluation uses the running statistics: (x − 0.5)/sqrt(2 + 1e-5), (x + 1)/sqrt(3).
        let (ye, none) = batch_norm2d(&x, &gamma, &beta, &st, false, 0.1, BN_EPS).unwrap();
        assert!(none.is_none());
        let s0 = (2.0 + BN_EPS).sqrt();
        let s1 = (3.0 + BN_EPS).sqrt();
        assert_close(
            "eval",
            &ye.to_vec_f64().unwrap(),
            &[
                0.5 / s0,
                1.5 / s0,
                1.0 / s1,
                1.0 / s1,
                4.5 / s0,
                7.5 / s0,
                5.0 / s1,
                -3.0 / s1,
            ],
            tol,
        );
    }
}

#[test]
fn batch_norm_fresh_state_and_defaults() {
    let st = BatchNormState::new(3, &Device::Cpu).unwrap();
    assert_eq!(st.running_mean.to_vec().unwrap(), [0.0; 3]);
    assert_eq!(st.running_var.to_vec().unwrap(), [1.0; 3]);
    assert_eq!((BN_MOMENTUM, BN_EPS), (0.1, 1e-5));
}

#[test]
fn batch_norm_shape_errors_are_errors_not_panics() {
    let dev = Device::Cpu;
    let t = |s: &[usize]| Tensor::ones(Shape::new(s), &dev).unwrap();
    let st = BatchNormState::new(3, &dev).unwrap();
    let bn = |x: &Tensor, g: &Tensor, b: &Tensor, s: &BatchNormState, train: bool| {
        batch_norm2d(x, g, b, s, train, BN_MOMENTUM, BN_EPS)
    };
    let (g, b) = (t(&[3]), t(&[3]));
    // x not 4-D.
    assert!(bn(&t(&[2, 3, 4]), &g, &b, &st, true).is_err());
    // Channel mismatch in x, gamma, beta, running stats.
    assert!(bn(&t(&[2, 4, 2, 2]), &g, &b, &st, true).is_err());
    assert!(bn(&t(&[2, 3, 2, 2]), &t(&[4]), &b, &st, false).is_err());
    assert!(bn(&t(&[2, 3, 2, 2]), &g, &t(&[3, 1]), &st, true).is_err());
    let bad = BatchNormState {
        running_mean: t(&[3]),
        running_var: t(&[2]),
    };
    assert!(bn(&t(&[2, 3, 2, 2]), &g, &b, &bad, false).is_err());
    // One value per channel cannot give a batch variance in training (fine in eval).
    assert!(bn(&t(&[1, 3, 1, 1]), &g, &b, &st, true).is_err());
    assert!(bn(&t(&[1, 3, 1, 1]), &g, &b, &st, false).is_ok());
    // Bad hyper-parameters.
    let x = t(&[2, 3, 2, 2]);
    assert!(batch_norm2d(&x, &g, &b, &st, true, 1.5, BN_EPS).is_err());
    assert!(batch_norm2d(&x, &g, &b, &st, true, BN_MOMENTUM, -1.0).is_err());
    let msg = bn(&t(&[2, 4, 2, 2]), &g, &b, &st, true)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("batch_norm2d:") && msg.contains("gamma"),
        "{msg}"
    );
}

/// layer_norm2d and group_norm (composed from reductions and elementwise ops): GPU parity
/// and finite-difference gradients of x, γ and β at odd shapes.
#[test]
fn layer_and_group_norm_match_and_differentiate() {
    use wgseg::ops::{group_norm, layer_norm2d};
    for (k, s) in [[2, 6, 5, 3], [1, 4, 7, 9], [3, 8, 1, 1]]
        .into_iter()
        .enumerate()
    {
        let c = s[1];
        let n: usize = s.iter().product();
        let inputs = [
            Input::param(s, uniform(n, 40 + k as u64, -2.0, 3.0)),
            Input::param([c], uniform(c, 50 + k as u64, 0.5, 1.5)),
            Input::param([c], uniform(c, 60 + k as u64, -0.5, 0.5)),
        ];
        check_op(
            &format!("layer_norm2d {s:?}"),
            &inputs,
            Check::new(REDUCTION, REDUCTION),
            |t| layer_norm2d(&t[0], &t[1], &t[2], 1e-6),
        );
        for groups in [1, 2, c] {
            check_op(
                &format!("group_norm {s:?} groups {groups}"),
                &inputs,
                Check::new(REDUCTION, REDUCTION),
                |t| group_norm(&t[0], groups, &t[1], &t[2], 1e-5),
            );
        }
    }
}

/// Both norms against values written out from their formulas, and their shape errors.
#[test]
fn layer_and_group_norm_literal_values() {
    use wgseg::ops::{group_norm, layer_norm2d};
    let dev = Device::Cpu;
    // x [1, 4, 1, 2]: pixel 0 has channels 1, 2, 3, 4; pixel 1 has 2, 2, 2, 6.
    let x = Tensor::from_vec(
        vec![1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 4.0, 6.0],
        [1, 4, 1, 2],
        &dev,
    )
    .unwrap();
    let g = Tensor::from_vec(vec![1.0, 2.0, 1.0, 0.5], [4], &dev).unwrap();
    let b = Tensor::from_vec(vec![0.0, 0.0, 1.0, 0.0], [4], &dev).unwrap();
    // Layer norm, pixel 0: mean 2.5, variance 1.25; pixel 1: mean 3, variance 3.
    let y = layer_norm2d(&x, &g, &b, 0.0).unwrap().to_vec_f64().unwrap();
    let (s0, s1) = (1.25f64.sqrt(), 3f64.sqrt());
    let want = [
        -1.5 / s0,
        -1.0 / s1,
        2.0 * -0.5 / s0,
        -2.0 / s1,
        0.5 / s0 + 1.0,
        -1.0 / s1 + 1.0,
        0.5 * 1.5 / s0,
        0.5 * 3.0 / s1,
    ];
    for (i, (a, w)) in y.iter().zip(want).enumerate() {
        assert!((a - w).abs() < 1e-6, "layer_norm2d[{i}] = {a}, want {w}");
    }
    // Group norm, 2 groups: channels 0-1 hold 1, 2, 2, 2 (mean 1.75, variance 0.1875);
    // channels 2-3 hold 3, 2, 4, 6 (mean 3.75, variance 2.1875).
    let y = group_norm(&x, 2, &g, &b, 0.0)
        .unwrap()
        .to_vec_f64()
        .unwrap();
    let (s0, s1) = (0.1875f64.sqrt(), 2.1875f64.sqrt());
    let want = [
        -0.75 / s0,
        0.25 / s0,
        2.0 * 0.25 / s0,
        2.0 * 0.25 / s0,
        -0.75 / s1 + 1.0,
        -1.75 / s1 + 1.0,
        0.5 * 0.25 / s1,
        0.5 * 2.25 / s1,
    ];
    for (i, (a, w)) in y.iter().zip(want).enumerate() {
        assert!((a - w).abs() < 1e-6, "group_norm[{i}] = {a}, want {w}");
    }
    let e = group_norm(&x, 3, &g, &b, 1e-5).unwrap_err().to_string();
    assert!(e.contains("4 channels") && e.contains("3 groups"), "{e}");
    let e = layer_norm2d(&x, &b.reshape([1, 4]).unwrap(), &b, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[4]"), "{e}");
    let e = layer_norm2d(&x.reshape([4, 2]).unwrap(), &g, &b, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[N, C, H, W]"), "{e}");
}
