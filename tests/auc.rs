//! AUCSeg's AUC loss (`wgseg::losses::{aucseg, auc_loss}`, docs/longtail.md): literal values from
//! the formula, central finite differences in f64 on the CPU and GPU/CPU parity for both
//! implementations and every surrogate, closed form = pairwise on the square surrogate,
//! the K < 2 and all-ignored cases, the pairwise cap, and the closed form's fixed memory.

mod common;

use common::*;
use wgseg::losses::{
    auc_loss, aucseg, ce, closed_form_scratch_floats, pairwise_subsample, AucMethod, AucOptions,
    CeOptions, Surrogate,
};
use wgseg::{backward, Device, Result, Tensor};

const IGNORE: u32 = 255;

fn opts(method: AucMethod, surrogate: Surrogate) -> AucOptions {
    AucOptions {
        method,
        surrogate,
        ..AucOptions::default()
    }
}

/// Every (method, surrogate) pair that exists.
fn all_variants() -> Vec<AucOptions> {
    vec![
        opts(AucMethod::ClosedForm, Surrogate::Square),
        opts(AucMethod::Pairwise, Surrogate::Square),
        opts(AucMethod::Pairwise, Surrogate::SqHinge),
        opts(AucMethod::Pairwise, Surrogate::Logistic),
    ]
}

/// Seeded labels over `classes` (the classes that may appear), every `ignore_every`-th pixel
/// ignored (0: none) and every `oob_every`-th an out-of-range label 200 (treated as ignored).
fn gen_labels(np: usize, classes: &[u32], seed: u64, ignore_every: usize) -> Vec<u32> {
    let u = uniform(np, seed, 0.0, classes.len() as f32);
    (0..np)
        .map(|i| {
            if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
                if i % 2 == 0 {
                    IGNORE
                } else {
                    200
                }
            } else {
                classes[(u[i] as usize).min(classes.len() - 1)]
            }
        })
        .collect()
}

/// Loss and gradient of `auc_loss` (or `aucseg` when `full`) on `dev`.
fn loss_and_grad(
    x: &[f32],
    shape: &[usize],
    y: &[u32],
    o: &AucOptions,
    dev: &Device,
    full: bool,
) -> (f64, Vec<f64>) {
    let xt = Tensor::from_vec(x.to_vec(), shape.to_vec(), dev)
        .expect("x")
        .as_param();
    let yt = Tensor::from_u32(y.to_vec(), vec![shape[0], shape[2], shape[3]], dev).expect("y");
    let loss = if full {
        aucseg(&xt, &yt, o)
    } else {
        auc_loss(&xt, &yt, o)
    }
    .expect("loss");
    assert_eq!(loss.dims(), &[] as &[usize]);
    let v = loss.to_vec_f64().expect("read")[0];
    let g = backward(&loss).expect("backward");
    let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
    (v, gx)
}

/// Relative error of `got` against `want`: max |got − want| / max |want|.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    if scale == 0.0 {
        err
    } else {
        err / scale
    }
}

fn devices() -> Vec<Device> {
    std::iter::once(Device::Cpu).chain(gpu()).collect()
}

// ---------------------------------------------------------------------------------------
// Literal values

/// A case derived by hand from the formulas of docs/longtail.md (square surrogate, m = 1, λ = 1).
///
/// Logits `[1, 3, 1, 4]`, labels `[0, 1, 1, 255]`: class 2 is absent and pixel 3 ignored,
/// so K = 2, n₀ = 1, n₁ = 2, K(K−1) = 2. With σ(ln 3) = 0.75, σ(0) = 0.5, σ(−ln 3) = 0.25:
/// channel 0 scores s₀ = (0.75, 0.5, 0.25, ·), channel 1 scores s₁ = (0.5, 0.75, 0.25, ·).
///
/// i = 0, j = 1 (weight 1/(n₀n₁) = ½): p = 0 against q = 1, 2: d = 0.25, 0.5 →
/// ½(0.75)² + ½(0.5)² = 0.28125 + 0.125 = 0.40625, ·½ = 0.203125.
/// i = 1, j = 0 (weight 1/(n₁n₀) = ½): p = 1, 2 against q = 0 (s = 0.5): d = 0.25, −0.25 →
/// ½(0.75)² + ½(1.25)² = 0.28125 + 0.78125 = 1.0625, ·½ = 0.53125.
/// L_auc = (0.203125 + 0.53125)/2 = 0.3671875.
/// (Closed form: SA₀ = −0.25, QA₀ = 0.0625, NB₀ = (0.5 + 0.25)/2 = 0.375, R₀ = 0.15625:
/// term₀ = ½(0.0625 + 0.15625) + 0.25·0.375 = 0.203125; SA₁ = −1, QA₁ = 0.625, NB₁ = 0.5,
/// R₁ = 0.25: term₁ = ½(0.3125 + 0.25) + 0.5/2 = 0.53125. The same.)
///
/// Gradients: every pair has weight w = 1/(K(K−1)n_in_j) = ¼ and ℓ'(d) = −(1 − d);
/// ∂s_p += w·ℓ', ∂s_q −= w·ℓ'.
/// Channel 0: (p0, q1) ℓ' = −0.75, (p0, q2) ℓ' = −0.5 → ∂s = (−0.3125, 0.1875, 0.125).
/// Channel 1: (p1, q0) ℓ' = −0.75, (p2, q0) ℓ' = −1.25 → ∂s = (0.5, −0.1875, −0.3125).
/// ∂x = ∂s·s(1 − s), s(1 − s) = 0.1875 at 0.75 and 0.25, 0.25 at 0.5:
/// channel 0: (−0.05859375, 0.046875, 0.0234375, 0); channel 1: (0.125, −0.03515625,
/// −0.05859375, 0); channel 2 (absent) and pixel 3 (ignored): 0.
#[test]
fn literal_two_present_classes() {
    let l3 = 3f64.ln() as f32;
    #[rustfmt::skip]
    let x = vec![
        l3, 0.0, -l3, 5.0,   // channel 0
        0.0, l3, -l3, -7.0,  // channel 1
        1.0, -2.0, 0.3, 4.0, // channel 2 (class absent)
    ];
    let y = vec![0u32, 1, 1, IGNORE];
    let want_loss = 0.3671875;
    #[rustfmt::skip]
    let want_grad = [
        -0.05859375, 0.046875, 0.0234375, 0.0,
        0.125, -0.03515625, -0.05859375, 0.0,
        0.0, 0.0, 0.0, 0.0,
    ];
    for dev in devices() {
        for method in [AucMethod::ClosedForm, AucMethod::Pairwise] {
            let o = opts(method, Surrogate::Square);
            let (l, g) = loss_and_grad(&x, &[1, 3, 1, 4], &y, &o, &dev, false);
            let what = format!("literal {method:?} on {dev:?}");
            assert_close(&what, &[l], &[want_loss], REDUCTION);
            assert_close(&what, &g, &want_grad, REDUCTION);
            // λ scales the AUC term of aucseg only: L = CE + λ·L_auc, by the gradient too.
            let o2 = AucOptions { lambda: 2.5, ..o };
            let (lf, gf) = loss_and_grad(&x, &[1, 3, 1, 4], &y, &o2, &dev, true);
            let xt = Tensor::from_vec(x.clone(), [1, 3, 1, 4], &dev)
                .expect("x")
                .as_param();
            let yt = Tensor::from_u32(y.clone(), [1, 1, 4], &dev).expect("y");
            let ce_opts = CeOptions {
                weights: None,
                ignore_index: IGNORE,
                ..Default::default()
            };
            let ce = ce(&xt, &yt, &ce_opts).expect("ce");
            let lce = ce.to_vec_f64().expect("read")[0];
            let gce = backward(&ce).expect("ce backward");
            let gce = gce.get(&xt).expect("grad").to_vec_f64().expect("read");
            let want: Vec<f64> = gce
                .iter()
                .zip(&want_grad)
                .map(|(c, a)| c + 2.5 * a)
                .collect();
            assert_close(&what, &[lf], &[lce + 2.5 * want_loss], REDUCTION);
            assert_close(&what, &gf, &want, REDUCTION);
        }
    }
}

/// With sigmoid scores d ∈ [−1, 1]: for m ≥ 1 the squared hinge never
/// clips and is exactly twice the square loss (values and gradients).
#[test]
fn sq_hinge_with_margin_one_is_twice_the_square() {
    let shape = [2usize, 4, 3, 3];
    let x = uniform(72, 11, -4.0, 4.0);
    let y = gen_labels(18, &[0, 1, 3], 12, 5);
    for dev in devices() {
        let sq = opts(AucMethod::Pairwise, Surrogate::Square);
        let hinge = AucOptions {
            margin: Some(1.0),
            ..opts(AucMethod::Pairwise, Surrogate::SqHinge)
        };
        let (ls, gs) = loss_and_grad(&x, &shape, &y, &sq, &dev, false);
        let (lh, gh) = loss_and_grad(&x, &shape, &y, &hinge, &dev, false);
        let gs2: Vec<f64> = gs.iter().map(|v| 2.0 * v).collect();
        assert_close("hinge = 2 square", &[lh], &[2.0 * ls], REDUCTION);
        assert_close("hinge = 2 square (grad)", &gh, &gs2, REDUCTION);
    }
}

// ---------------------------------------------------------------------------------------
// Finite differences and GPU parity

/// `check_op` (CPU f64 reference, central differences, GPU and texture-less GPU against the
/// CPU) for every variant on one case.
fn check_case(name: &str, shape: [usize; 4], classes: &[u32], seed: u64, ignore_every: usize) {
    let n: usize = shape.iter().product();
    let np = shape[0] * shape[2] * shape[3];
    let inputs = [
        Input::param(shape.to_vec(), uniform(n, seed, -3.0, 3.0)),
        Input::labels(
            vec![shape[0], shape[2], shape[3]],
            gen_labels(np, classes, seed + 1, ignore_every),
        ),
    ];
    for o in all_variants() {
        let o2 = o.clone();
        check_op(
            &format!("{name} {shape:?} {:?} {:?}", o.method, o.surrogate),
            &inputs,
            Check::new(REDUCTION, REDUCTION),
            move |t| auc_loss(&t[0], &t[1], &o2),
        );
    }
}

#[test]
fn every_variant_matches_finite_differences_and_the_gpu() {
    // 24 logits: a full Jacobian check.
    check_case("tiny", [1, 3, 2, 4], &[0, 1, 2], 100, 0);
    // An absent class (2), ignored and out-of-range labels, two images.
    check_case("absent + ignored", [2, 4, 3, 5], &[0, 1, 3], 110, 4);
    // C = 19 with 6 present classes; pixels per class above one 64-wide tile (pairwise) and
    // more pixels than the closed form's 256 chunks.
    check_case("many", [2, 19, 12, 15], &[0, 2, 5, 11, 17, 18], 120, 9);
}

/// The closed form where its chunks hold several pixels (more pixels than its 1024 chunks):
/// quads of the vec4 kernels (chunks and backward runs spanning images), and single pixels
/// (H·W odd, the scalar kernels).
#[test]
fn closed_form_on_many_pixels() {
    for (k, shape) in [[2usize, 5, 48, 48], [1, 3, 45, 47]]
        .into_iter()
        .enumerate()
    {
        let n: usize = shape.iter().product();
        let np = shape[0] * shape[2] * shape[3];
        let classes: Vec<u32> = (0..shape[1] as u32).collect();
        let inputs = [
            Input::param(shape.to_vec(), uniform(n, 140 + k as u64, -3.0, 3.0)),
            Input::labels(
                vec![shape[0], shape[2], shape[3]],
                gen_labels(np, &classes, 150 + k as u64, 10),
            ),
        ];
        let o = AucOptions::default();
        check_op(
            &format!("closed form {shape:?}"),
            &inputs,
            Check::new(REDUCTION, REDUCTION),
            move |t| auc_loss(&t[0], &t[1], &o),
        );
    }
}

/// `aucseg` (CE + λ·AUC) through the same checks.
#[test]
fn aucseg_matches_finite_differences_and_the_gpu() {
    let shape = [2usize, 3, 2, 5];
    let inputs = [
        Input::param(shape.to_vec(), uniform(60, 130, -3.0, 3.0)),
        Input::labels(vec![2, 2, 5], gen_labels(20, &[0, 1, 2], 131, 6)),
    ];
    let o = AucOptions {
        lambda: 4.0,
        ..AucOptions::default()
    };
    check_op(
        "aucseg",
        &inputs,
        Check::new(REDUCTION, REDUCTION),
        move |t| aucseg(&t[0], &t[1], &o),
    );
}

/// Both implementations on a device whose grid limit is 4 workgroups per dimension, so that
/// their larger dispatches (auc_sums4: 8 workgroups; auc_pair_forward: K·tiles = 9) run
/// through the folded 2-D path of `wg_linear`.
#[test]
fn both_methods_on_folded_grids() {
    let shape = [2usize, 5, 6, 8];
    let inputs = [
        Input::param(shape.to_vec(), uniform(480, 160, -3.0, 3.0)),
        Input::labels(vec![2, 6, 8], gen_labels(96, &[0, 1, 4], 161, 7)),
    ];
    for o in [
        opts(AucMethod::ClosedForm, Surrogate::Square),
        opts(AucMethod::Pairwise, Surrogate::Logistic),
    ] {
        let name = format!("folded {:?}", o.method);
        check_folded(&name, &inputs, Check::new(REDUCTION, REDUCTION), move |t| {
            auc_loss(&t[0], &t[1], &o)
        });
    }
}

// ---------------------------------------------------------------------------------------
// Closed form = pairwise

#[test]
fn closed_form_equals_pairwise_on_the_square_surrogate() {
    let cases: &[(&str, [usize; 4], &[u32], usize)] = &[
        ("all present", [2, 3, 4, 5], &[0, 1, 2], 0),
        (
            "absent classes, ignored pixels",
            [2, 6, 5, 7],
            &[1, 2, 4],
            3,
        ),
        ("many pixels", [2, 5, 16, 20], &[0, 1, 2, 3, 4], 7),
        ("one class", [1, 4, 3, 5], &[2], 4),
    ];
    for (k, (name, shape, classes, ig)) in cases.iter().enumerate() {
        let n: usize = shape.iter().product();
        let np = shape[0] * shape[2] * shape[3];
        let x = uniform(n, 200 + k as u64, -3.0, 3.0);
        let y = gen_labels(np, classes, 300 + k as u64, *ig);
        for dev in devices() {
            let cf = opts(AucMethod::ClosedForm, Surrogate::Square);
            let pw = AucOptions {
                max_pixels_per_class: np,
                ..opts(AucMethod::Pairwise, Surrogate::Square)
            };
            let (lc, gc) = loss_and_grad(&x, shape, &y, &cf, &dev, false);
            let (lp, gp) = loss_and_grad(&x, shape, &y, &pw, &dev, false);
            let what = format!("{name} on {dev:?}");
            if classes.len() < 2 {
                assert_eq!((lc, lp), (0.0, 0.0), "{what}: K = 1 gives 0");
                assert!(gc.iter().chain(&gp).all(|&v| v == 0.0), "{what}: zero grad");
                continue;
            }
            assert!(lc > 0.0, "{what}: loss {lc}");
            assert!(
                rel_err(&[lc], &[lp]) <= 1e-5,
                "{what}: loss {lc} vs {lp} (rel {:e})",
                rel_err(&[lc], &[lp])
            );
            let r = rel_err(&gc, &gp);
            assert!(r <= 1e-5, "{what}: gradient relative error {r:e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Degenerate batches

#[test]
fn fewer_than_two_classes_or_all_ignored_give_zero_without_nan() {
    let shape = [2usize, 3, 2, 3];
    let x = uniform(36, 400, -50.0, 50.0);
    let label_sets: [(&str, Vec<u32>); 3] = [
        ("one class", vec![1; 12]),
        ("all ignored", vec![IGNORE; 12]),
        (
            "one class + ignored",
            vec![2, IGNORE, 2, 2, 7, 2, 2, 2, IGNORE, 2, 2, 2],
        ),
    ];
    for dev in devices() {
        for (name, y) in &label_sets {
            for o in all_variants() {
                let what = format!("{name} {:?} {:?} on {dev:?}", o.method, o.surrogate);
                let (l, g) = loss_and_grad(&x, &shape, y, &o, &dev, false);
                assert_eq!(l, 0.0, "{what}");
                assert!(g.iter().all(|&v| v == 0.0), "{what}: gradient {g:?}");
                // aucseg: finite (all ignored: CE is 0 too).
                let (lf, gf) = loss_and_grad(&x, &shape, y, &o, &dev, true);
                assert!(lf.is_finite() && gf.iter().all(|v| v.is_finite()), "{what}");
            }
        }
    }
}

#[test]
fn closed_form_rejects_other_surrogates() {
    let x = Tensor::zeros([1, 2, 1, 2], &Device::Cpu).expect("x");
    let y = Tensor::from_u32(vec![0, 1], [1, 1, 2], &Device::Cpu).expect("y");
    for s in [Surrogate::SqHinge, Surrogate::Logistic] {
        let e = auc_loss(&x, &y, &opts(AucMethod::ClosedForm, s))
            .expect_err("closed form of a non-square surrogate")
            .to_string();
        assert!(e.contains("square") && e.contains("Pairwise"), "{e}");
    }
    // Shape errors name the op.
    let bad = Tensor::from_u32(vec![0, 1], [1, 2], &Device::Cpu).expect("y");
    let e = auc_loss(&x, &bad, &AucOptions::default()).expect_err("bad labels");
    assert!(e.to_string().contains("auc_loss"), "{e}");
}

// ---------------------------------------------------------------------------------------
// The pairwise cap

/// The literal double sum on given per-class lists (f64, independent of the library).
fn literal_pairwise(x: &[f32], shape: [usize; 4], lists: &[Vec<usize>], o: &AucOptions) -> f64 {
    let inner = shape[2] * shape[3];
    let c = shape[1];
    let s = |v: usize, i: usize| {
        let xv = f64::from(x[(v / inner * c + i) * inner + v % inner]);
        1.0 / (1.0 + (-xv).exp())
    };
    let pres: Vec<usize> = (0..c).filter(|&i| !lists[i].is_empty()).collect();
    let k = pres.len() as f64;
    let mut total = 0.0;
    for &i in &pres {
        for &j in &pres {
            if i == j {
                continue;
            }
            let mut sum = 0.0;
            for &p in &lists[i] {
                for &q in &lists[j] {
                    sum += o.surrogate.eval(s(p, i) - s(q, i), o.effective_margin()).0;
                }
            }
            total += sum / (lists[i].len() * lists[j].len()) as f64;
        }
    }
    total / (k * (k - 1.0))
}

#[test]
fn pairwise_cap_is_seeded_and_bounded() {
    let shape = [2usize, 4, 8, 9];
    let np = 144;
    let x = uniform(4 * np, 500, -3.0, 3.0);
    // Class 0 is frequent (cap binds), 1 and 3 rare, 2 absent.
    let y: Vec<u32> = gen_labels(np, &[0, 0, 0, 0, 0, 1, 3], 501, 11);
    let cap = 10;
    let counts: Vec<usize> = (0..4u32)
        .map(|c| y.iter().filter(|&&v| v == c).count())
        .collect();
    assert!(counts[0] > 2 * cap && counts[2] == 0, "{counts:?}");
    for seed in [7u64, 8] {
        let lists = pairwise_subsample(&y, 4, IGNORE, cap, seed);
        for (c, l) in lists.iter().enumerate() {
            assert_eq!(l.len(), counts[c].min(cap), "class {c}");
            assert!(l.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
            assert!(l.iter().all(|&v| y[v] == c as u32), "class {c} pixels only");
        }
        assert_eq!(lists, pairwise_subsample(&y, 4, IGNORE, cap, seed));
    }
    assert_ne!(
        pairwise_subsample(&y, 4, IGNORE, cap, 7)[0],
        pairwise_subsample(&y, 4, IGNORE, cap, 8)[0],
        "another seed draws another subsample"
    );
    for surrogate in [Surrogate::Square, Surrogate::SqHinge, Surrogate::Logistic] {
        let o = AucOptions {
            max_pixels_per_class: cap,
            seed: 7,
            ..opts(AucMethod::Pairwise, surrogate)
        };
        let lists = pairwise_subsample(&y, 4, IGNORE, cap, o.seed);
        let want = literal_pairwise(&x, shape, &lists, &o);
        let mut first: Option<(f64, Vec<f64>)> = None;
        for dev in devices() {
            let what = format!("cap {surrogate:?} on {dev:?}");
            let a = loss_and_grad(&x, &shape, &y, &o, &dev, false);
            let b = loss_and_grad(&x, &shape, &y, &o, &dev, false);
            assert_eq!(a, b, "{what}: same seed, same result");
            assert_close(&what, &[a.0], &[want], REDUCTION);
            // Only sampled pixels of present classes get a gradient.
            let inner = 72;
            for (idx, g) in a.1.iter().enumerate() {
                let (v, ch) = (idx / (4 * inner) * inner + idx % inner, idx / inner % 4);
                let sampled = lists.iter().any(|l| l.contains(&v));
                if *g != 0.0 {
                    assert!(sampled && ch != 2, "{what}: gradient at pixel {v} ch {ch}");
                }
            }
            let other = AucOptions {
                seed: 8,
                ..o.clone()
            };
            let (lo, _) = loss_and_grad(&x, &shape, &y, &other, &dev, false);
            assert_ne!(lo, a.0, "{what}: another seed, another subsample");
            match &first {
                None => first = Some(a),
                Some(f) => {
                    assert_close(&what, &[a.0], &[f.0], REDUCTION);
                    assert_close(&what, &a.1, &f.1, REDUCTION);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Memory

/// On a fresh context (so the pool's peak is this run's): the peak pool bytes the
/// closed-form forward adds over what is live before it, and the live bytes its backward
/// adds besides `∂L/∂x` (with the backward's peak checked not to exceed the larger of the
/// forward's peak and the live bytes after it, up to the uniform arena: the backward
/// allocates nothing transient but, with `full`, cross-entropy's per-class table of
/// `4 + 5·C` floats that its backward scales by `g`, independent of the pixels).
/// `full`: `aucseg` (CE + λ·AUC) instead of `auc_loss`.
fn closed_form_extra_bytes(shape: [usize; 4], full: bool) -> Result<(u64, u64)> {
    let ctx = wgseg::gpu::GpuContext::new(&wgseg::gpu::GpuOptions::default())?;
    let dev = Device::Gpu(ctx.clone());
    let n: usize = shape.iter().product();
    let np = shape[0] * shape[2] * shape[3];
    let x = Tensor::from_vec(uniform(n, 600, -3.0, 3.0), shape.to_vec(), &dev)?.as_param();
    let classes: Vec<u32> = (0..shape[1] as u32).collect();
    let y = Tensor::from_u32(
        gen_labels(np, &classes, 601, 13),
        vec![shape[0], shape[2], shape[3]],
        &dev,
    )?;
    ctx.synchronize()?;
    let before = ctx.pool_stats();
    assert_eq!(before.peak_live_bytes, before.live_bytes, "uploads only");
    let loss = if full {
        aucseg(&x, &y, &AucOptions::default())?
    } else {
        auc_loss(&x, &y, &AucOptions::default())?
    };
    ctx.synchronize()?;
    let fwd = ctx.pool_stats();
    let fwd_extra = fwd.peak_live_bytes - before.live_bytes;
    let g = backward(&loss)?;
    ctx.synchronize()?;
    let bwd = ctx.pool_stats();
    let dx = wgseg::gpu::pool::size_class(4 * n as u64);
    // Slack: 8 KiB of margin (the recorder's uniform arena is one buffer per context,
    // allocated at its first dispatch, before these measurements), the
    // backward's seed (one 256-byte buffer) and, for aucseg, cross-entropy's scaled class
    // table (`pix_gscale`: 4 + 5·C floats).
    let ce_table = if full {
        wgseg::gpu::pool::size_class(4 * (4 + 5 * shape[1] as u64))
    } else {
        0
    };
    let slack = 8 * 1024 + 256 + ce_table;
    assert!(
        bwd.peak_live_bytes <= fwd.peak_live_bytes.max(bwd.live_bytes + slack),
        "backward peak {} over forward peak {} and live {}",
        bwd.peak_live_bytes,
        fwd.peak_live_bytes,
        bwd.live_bytes
    );
    let bwd_extra = bwd.live_bytes - fwd.live_bytes - dx;
    drop(g);
    Ok((fwd_extra, bwd_extra))
}

#[test]
fn closed_form_extra_memory_does_not_grow_with_the_pixels() {
    if gpu().is_none() {
        return;
    }
    // 19 classes, 512 and 32 768 pixels.
    let small = closed_form_extra_bytes([2, 19, 16, 16], false).expect("small");
    let large = closed_form_extra_bytes([2, 19, 128, 128], false).expect("large");
    eprintln!("extra pool bytes (forward, backward): {small:?} and {large:?}");
    assert_eq!(small, large, "extra pool bytes (forward, backward)");
    // The forward's extra memory is its scratch plus the loss, in pool size classes (at
    // least 256 bytes, powers of two up to 1 MiB: at most twice the request), and 8 KiB
    // of margin.
    let floats = closed_form_scratch_floats(19) as u64;
    assert!(
        small.0 <= 2 * 4 * floats + 6 * 256 + 8 * 1024,
        "forward extra {} bytes for {floats} floats of scratch",
        small.0
    );
}

/// `aucseg` fuses CE and the closed form: its backward allocates one logits-sized gradient
/// (cross-entropy's, onto which the AUC gradient is added in place) and nothing transient —
/// not the two gradients and their sum that adding the two losses as tensors would. The
/// backward's live extra besides `∂L/∂x` is the same at both pixel counts (the forward's
/// extra grows with them: cross-entropy saves two floats per pixel).
#[test]
fn aucseg_backward_allocates_one_gradient() {
    if gpu().is_none() {
        return;
    }
    for shape in [[2, 19, 16, 16], [2, 19, 128, 128], [2, 19, 15, 17]] {
        let (_, bwd) = closed_form_extra_bytes(shape, true).expect("aucseg");
        let (_, auc_bwd) = closed_form_extra_bytes(shape, false).expect("auc_loss");
        assert_eq!(
            bwd, auc_bwd,
            "aucseg {shape:?}: backward extra besides the gradient"
        );
    }
}
