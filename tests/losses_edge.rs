//! The softmax-family losses (docs/longtail.md) on degenerate batches, their agreement with
//! other paths, the per-class helpers (literal values), errors, folded grids and the ignore
//! label.

mod common;
#[path = "common/losses.rs"]
mod losses_common;

use common::*;
use losses_common::*;
use wgseg::losses::{self, rng, BlvOptions, CeOptions, FocalOptions};
use wgseg::losses::{LdamOptions, PatCurve, PatOptions};
use wgseg::{backward, Device, Error, Result, Tensor};

// ---------------------------------------------------------------------------------------
// Degenerate batches

#[test]
fn all_ignored_batch_gives_zero_and_zero_gradient() {
    for dims in [&[2usize, 5, 3, 3][..], &[2, 5, 2, 4], &[3, 5]] {
        let mut inp = inputs(dims, 4000, 0, None);
        inp[1].data.iter_mut().for_each(|v| *v = IGNORE as f32);
        for kind in kinds(5) {
            for dev in std::iter::once(Device::Cpu).chain(gpu()) {
                let (v, g) = value_and_grad(&kind, &inp, COUNTS5, &dev);
                assert_eq!(v, 0.0, "{kind:?} {dims:?} {dev:?}");
                assert!(
                    g.iter().all(|&g| g == 0.0),
                    "{kind:?} {dims:?} {dev:?}: {g:?}"
                );
            }
        }
    }
}

#[test]
fn single_class_batches() {
    // Every pixel of class 2 (C = 5), and C = 1 (p = 1: loss 0, gradient 0, no NaN).
    for dims in [&[2usize, 5, 3, 3][..], &[2, 5, 2, 4]] {
        let mut inp = inputs(dims, 4100, 0, None);
        inp[1].data.iter_mut().for_each(|v| *v = 2.0);
        for kind in kinds(5) {
            against_spec(
                &format!("single class {kind:?} {dims:?}"),
                &kind,
                &inp,
                COUNTS5,
            );
        }
    }
    for dims in [&[2usize, 1, 3, 3][..], &[2, 1, 2, 4]] {
        let mut inp = inputs(dims, 4200, 4, None);
        inp[1]
            .data
            .iter_mut()
            .for_each(|v| *v = if *v == IGNORE as f32 { *v } else { 0.0 });
        let mut kinds1 = kinds(1);
        kinds1.retain(|k| !matches!(k, Kind::CeWeighted(_)));
        for kind in kinds1 {
            for dev in std::iter::once(Device::Cpu).chain(gpu()) {
                let (v, g) = value_and_grad(&kind, &inp, &[10], &dev);
                assert_eq!(v, 0.0, "{kind:?} C = 1 {dev:?}");
                assert!(g.iter().all(|&g| g == 0.0), "{kind:?} C = 1 {dev:?}: {g:?}");
            }
        }
    }
}

#[test]
fn confident_pixels_stay_finite() {
    // p → 1 (logit gaps of 40 and more) and the opposite (p → 0): focal with γ < 1 must not
    // produce (1 − p)^{γ−1} = ∞, PAT and LDAM (s = 30: z up to ~1500) stay finite.
    let dims = [1usize, 3, 2, 2];
    let mut x = vec![0.0f32; 12];
    let y = vec![0u32, 1, 2, 0];
    for i in 0..4 {
        x[y[i] as usize * 4 + i] = if i == 3 { -50.0 } else { 45.0 };
    }
    let inp = vec![
        Input::param(dims.to_vec(), x.clone()),
        Input::labels([1, 2, 2], y.clone()),
        Input::constant(dims.to_vec(), vec![0.3; 12]),
    ];
    for kind in kinds(3)
        .into_iter()
        .chain([Kind::Focal(0.3), Kind::Focal(0.0)])
    {
        let cpu = value_and_grad(&kind, &inp, &[100, 10, 1], &Device::Cpu);
        assert!(
            cpu.0.is_finite() && cpu.1.iter().all(|g| g.is_finite()),
            "{kind:?}: {cpu:?}"
        );
        if let Some(dev) = gpu() {
            let got = value_and_grad(&kind, &inp, &[100, 10, 1], &dev);
            assert!(
                got.0.is_finite() && got.1.iter().all(|g| g.is_finite()),
                "{kind:?}: {got:?}"
            );
            assert_close(
                &format!("{kind:?} confident value"),
                &[got.0],
                &[cpu.0],
                REDUCTION,
            );
            assert_close(
                &format!("{kind:?} confident gradient"),
                &got.1,
                &cpu.1,
                REDUCTION,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Agreement with other paths

#[test]
fn ce_without_options_equals_cross_entropy() {
    for (s, dims) in SHAPES.iter().enumerate() {
        let inp = inputs(dims, 5000 + s as u64, 6, None);
        for dev in std::iter::once(Device::Cpu).chain(gpu()) {
            let (v, g) = value_and_grad(&Kind::Ce, &inp, &[], &dev);
            let t = build(&inp, &dev);
            let loss = t[0]
                .cross_entropy(&t[1], None, IGNORE)
                .expect("cross_entropy");
            let want = loss.to_vec_f64().expect("read")[0];
            let want_g = backward(&loss)
                .expect("backward")
                .get(&t[0])
                .expect("grad")
                .to_vec_f64()
                .expect("read");
            let tol = if matches!(dev, Device::Cpu) {
                F64_REFERENCE
            } else {
                REDUCTION
            };
            assert_close(&format!("ce vs cross_entropy {dims:?}"), &[v], &[want], tol);
            assert_close(
                &format!("ce vs cross_entropy gradient {dims:?}"),
                &g,
                &want_g,
                tol,
            );
        }
    }
}

#[test]
fn blv_seeded_noise_is_the_documented_generator() {
    // The seeded loss equals the loss with the explicit noise tensor r_e = normal(key, e);
    // another seed gives another loss.
    let dims = [2usize, 5, 2, 4];
    let mut inp = inputs(&dims, 6000, 5, None);
    let key = rng::stream_key(99);
    inp[2].data = (0..inp[2].data.len() as u32)
        .map(|e| rng::normal(key, e) as f32)
        .collect();
    let seeded = Kind::Blv {
        sigma: 0.5,
        seed: 99,
    };
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let (a, ga) = value_and_grad(&seeded, &inp, COUNTS5, &dev);
        let (b, gb) = value_and_grad(&Kind::BlvNoise { sigma: 0.5 }, &inp, COUNTS5, &dev);
        // The tensor holds f32-rounded draws: 1e-7 relative on |r| ≤ 6.
        assert_close("seeded vs tensor noise", &[a], &[b], REDUCTION);
        assert_close("seeded vs tensor noise gradient", &ga, &gb, REDUCTION);
        let (c, _) = value_and_grad(
            &Kind::Blv {
                sigma: 0.5,
                seed: 100,
            },
            &inp,
            COUNTS5,
            &dev,
        );
        assert!((a - c).abs() > 1e-4, "seeds 99 and 100 give {a} and {c}");
    }
}

// ---------------------------------------------------------------------------------------
// Per-class helpers (literal values)

#[test]
fn per_class_helpers() {
    let close =
        |what: &str, got: Vec<f64>, want: &[f64]| assert_close(what, &got, want, F64_REFERENCE);
    // cb, β = 0.5, counts (1, 3, 0): the zero count becomes 1 (rarest). Raw
    // 0.5/(1 − 0.5) = 1, 0.5/(1 − 0.125) = 4/7, 1; Σ = 18/7; ×3/Σ: (7/6, 2/3, 7/6).
    close(
        "cb weights",
        losses::class_balanced_weights(&[1, 3, 0], 0.5).expect("cb"),
        &[7.0 / 6.0, 2.0 / 3.0, 7.0 / 6.0],
    );
    // β = 0: all 1; β = 1: ∝ 1/n → (1, 1/3, 1)·3/(7/3).
    close(
        "cb β = 0",
        losses::class_balanced_weights(&[1, 3, 9], 0.0).expect("cb"),
        &[1.0; 3],
    );
    close(
        "cb β = 1",
        losses::class_balanced_weights(&[1, 3, 0], 1.0).expect("cb"),
        &[9.0 / 7.0, 3.0 / 7.0, 9.0 / 7.0],
    );
    // Default β = 0.9999 with counts (10⁴, 10): 1 − β^n by hand: 1 − 0.9999^10000 =
    // 1 − e^{10000·ln 0.9999} = 0.632139…, 1 − 0.9999^10 = 9.99550…e-4; ratio of weights
    // 632.42…, so w ≈ (2/633.42, 2·632.42/633.42).
    let w = losses::class_balanced_weights(&[10_000, 10], 0.9999).expect("cb");
    let a = 1.0 - 0.9999f64.powi(10_000);
    let b = 1.0 - 0.9999f64.powi(10);
    close("cb default β", w, &[2.0 * b / (a + b), 2.0 * a / (a + b)]);
    // bms: ln n, −∞ for 0.
    let bias = losses::balanced_softmax_bias(&[1, 0, 20]).expect("bms");
    assert_eq!(bias[0], 0.0);
    assert_eq!(bias[1], f64::NEG_INFINITY);
    assert!((bias[2] - 20f64.ln()).abs() < 1e-15);
    // ldam: (16, 1, 81, 0) → 0.5·(1/n)^{1/4} = (0.25, 0.5, 1/6, 0.5).
    close(
        "ldam margins",
        losses::ldam_margins(&[16, 1, 81, 0], 0.5).expect("ldam"),
        &[0.25, 0.5, 0.5 / 3.0, 0.5],
    );
    // blv: counts (1, 3, 0), Σ = 4: f = (ln 4, ln 4/3, ln 4), a = σ·f/ln 4.
    let r = (4.0f64 / 3.0).ln() / 4f64.ln();
    close(
        "blv amplitudes",
        losses::blv_amplitudes(&[1, 3, 0], -0.5).expect("blv"),
        &[0.5, 0.5 * r, 0.5],
    );
    close(
        "blv one class",
        losses::blv_amplitudes(&[7, 0], 0.5).expect("blv"),
        &[0.0, 0.0],
    );
    // Zero counts → the rarest observed.
    close(
        "observed",
        losses::observed_counts(&[0, 5, 2]).expect("observed"),
        &[2.0, 5.0, 2.0],
    );
    assert!(losses::observed_counts(&[0, 0]).is_err());
    assert!(losses::balanced_softmax_bias(&[0, 0]).is_err());
    assert!(losses::class_balanced_weights(&[1, 2], 1.5).is_err());
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn errors_name_the_loss_and_the_shapes() {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(vec![0.0; 24], [1, 3, 2, 4], &dev).expect("x");
    let y = Tensor::from_u32(vec![0; 8], [1, 2, 4], &dev).expect("y");
    let bad_y = Tensor::from_u32(vec![0; 6], [1, 2, 3], &dev).expect("y");
    let f_y = Tensor::from_vec(vec![0.0; 8], [1, 2, 4], &dev).expect("y");
    let msg = |r: Result<Tensor>| match r {
        Err(e @ Error::Shape { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("no error"),
    };
    let m = msg(losses::pat(&x, &bad_y, &PatOptions::default()));
    assert!(
        m.starts_with("pat:") && m.contains("[1, 2, 4]") && m.contains("[1, 2, 3]"),
        "{m}"
    );
    let m = msg(losses::focal(&x, &f_y, &FocalOptions::default()));
    assert!(m.starts_with("focal:"), "{m}");
    let m = msg(losses::ldam(&x, &y, &[1, 2], &LdamOptions::default()));
    assert!(
        m.starts_with("ldam:") && m.contains("2 class counts"),
        "{m}"
    );
    let m = msg(losses::ce(
        &x,
        &y,
        &CeOptions {
            weights: Some(vec![1.0; 2]),
            ..Default::default()
        },
    ));
    assert!(
        m.starts_with("ce:") && m.contains("2 values for 3 classes"),
        "{m}"
    );
    let x3 = Tensor::from_vec(vec![0.0; 6], [1, 3, 2], &dev).expect("x");
    let m = msg(losses::ce(&x3, &y, &CeOptions::default()));
    assert!(m.contains("[N, C, H, W] or [N, C]"), "{m}");
    let noise = Tensor::from_vec(vec![0.0; 6], [1, 3, 2], &dev).expect("noise");
    let m = msg(losses::blv(
        &x,
        &y,
        &[1, 2, 3],
        &BlvOptions {
            noise: Some(noise),
            ..Default::default()
        },
    ));
    assert!(m.starts_with("blv:") && m.contains("noise"), "{m}");
    let m = msg(losses::pat(
        &x,
        &y,
        &PatOptions {
            t: 0.0,
            ..Default::default()
        },
    ));
    assert!(m.contains("T > 0"), "{m}");
    if let Some(g) = gpu() {
        let yg = Tensor::from_u32(vec![0; 8], [1, 2, 4], &g).expect("y");
        match losses::ce(&x, &yg, &CeOptions::default()) {
            Err(Error::Device { op, .. }) => assert_eq!(op, "ce"),
            other => panic!("expected a device error, got {other:?}"),
        }
    }
}

#[test]
fn folded_grids_and_multi_pass_reductions() {
    // The device whose grid limit is 4 workgroups per dimension (64 in all). Scalar
    // kernels: 129 images of 65 pixels, 258 forward lanes of which every second holds one
    // pixel (a two-pass reduction of the partials), 33 backward workgroups (3-D fold).
    // Vec4 kernels: 33 792 pixels per image, 1056 forward lanes (5 workgroups, 2-D fold, a
    // two-pass reduction), 9 backward workgroups.
    for dims in [[129usize, 3, 5, 13], [2, 3, 256, 132]] {
        for kind in [
            Kind::Pat {
                curve: PatCurve::Falling,
                t: 2.0,
                eps: 0.0,
                detach: false,
            },
            Kind::Focal(2.0),
            Kind::Blv {
                sigma: 0.5,
                seed: 3,
            },
        ] {
            let inp = inputs(&dims, 7000, 9, None);
            check_folded(
                &format!("folded {kind:?} {dims:?}"),
                &inp,
                Check::new(REDUCTION, REDUCTION),
                |t| run(&kind, t, &[100, 10, 1]),
            );
        }
    }
}

#[test]
fn ignore_index_option() {
    // ignore_index = 1: pixels labelled 1 are ignored, like 255 with the default.
    let dims = [2usize, 4, 3, 4];
    let inp = inputs(&dims, 7100, 0, None);
    let mut as_255 = inp.clone();
    as_255[1]
        .data
        .iter_mut()
        .filter(|v| **v == 1.0)
        .for_each(|v| *v = IGNORE as f32);
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let t = build(&inp, &dev);
        let got = losses::pat(
            &t[0],
            &t[1],
            &PatOptions {
                ignore_index: 1,
                ..Default::default()
            },
        )
        .expect("pat")
        .to_vec_f64()
        .expect("read")[0];
        let (want, _) = value_and_grad(
            &Kind::Pat {
                curve: PatCurve::Falling,
                t: 20.0,
                eps: 0.0,
                detach: false,
            },
            &as_255,
            &[],
            &dev,
        );
        assert_close("ignore_index = 1", &[got], &[want], REDUCTION);
    }
}
