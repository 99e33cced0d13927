//! `losses::ce`, the project's one cross-entropy (the pixel-loss kernels): GPU-vs-CPU parity
//! and gradient checks at the kernels' edge cases (lanes, quads, workgroups, folded grids),
//! a literal test derived by hand, agreement with the composed primitives, ignored and
//! out-of-range labels, and shape/dtype errors. Label smoothing is in tests/ce_smoothing.rs;
//! the formula checks of every softmax-family loss are in tests/losses.rs.

#[path = "common/ce.rs"]
mod ce_common;
mod common;

use ce_common::*;
use common::*;
use wgseg::{backward, Device, Error, Tensor};

// ---------------------------------------------------------------------------------------
// ce

/// One cross-entropy case: logits shape, labels (with ignores), optional class weights.
fn ce_case(name: &str, shape: &[usize], seed: u64, ignore_every: usize, weighted: bool) {
    let n: usize = shape.iter().product();
    let c = shape[1];
    let ls = label_shape(shape);
    let np: usize = ls.iter().product();
    let mut inputs = vec![
        Input::param(shape.to_vec(), uniform(n, seed, -3.0, 3.0)),
        Input::labels(ls, labels(np, c, seed + 1, ignore_every)),
    ];
    if weighted {
        inputs.push(Input::constant([c], uniform(c, seed + 2, 0.2, 2.0)));
    }
    check_op(
        &format!("{name} {shape:?} weighted={weighted}"),
        &inputs,
        Check::new(REDUCTION, REDUCTION),
        |t| ce_w(&t[0], &t[1], t.get(2), IGNORE),
    );
}

#[test]
fn ce_matches_and_differentiates() {
    let cases: &[(&str, &[usize], usize)] = &[
        ("nchw", &[2, 5, 3, 4], 0),
        ("nchw ignored", &[2, 5, 3, 4], 4),
        ("nc", &[7, 3], 0),
        ("nc ignored", &[7, 3], 3),
        ("one pixel", &[1, 4, 1, 1], 0),
        ("C = 1", &[3, 1, 2, 2], 0),
        ("C = 19", &[1, 19, 3, 5], 5),
        // Pixels one past a 256-wide workgroup, in both layouts.
        ("wg+1 nchw", &[1, 3, 1, 257], 7),
        ("wg+1 nc", &[257, 3], 7),
        // Several workgroups; lanes of unequal length (561 = 8·64 + 49 pixels per image).
        ("many nchw", &[2, 3, 33, 17], 9),
        // 16 320 pixels: 255 lanes of 64 per image, 510 partials, so a two-pass reduction.
        ("many lanes", &[2, 2, 96, 85], 0),
        // Pixels per image a multiple of 4 run the vec4 kernels (pix_forward4, pix_backward4;
        // the cases above with 12 and 8160 pixels do too). One quad per image:
        ("vec4 one quad", &[2, 3, 2, 2], 3),
        // 3 quads per image, 9 in all: one backward invocation (8 quads) spans three images
        // and the next one holds a single quad.
        ("vec4 quads span images", &[3, 4, 3, 4], 5),
        // 68 pixels: a full forward lane (64 pixels) and one holding a single quad.
        ("vec4 lane + 1 quad", &[2, 5, 4, 17], 6),
        // 2080 quads: one past a 256-wide workgroup of backward invocations (260 of them).
        ("vec4 wg+1", &[2, 3, 64, 65], 7),
    ];
    for (k, (name, shape, ig)) in cases.iter().enumerate() {
        for weighted in [false, true] {
            ce_case(name, shape, 500 + 10 * k as u64, *ig, weighted);
        }
    }
}

#[test]
fn ce_extreme_logits_stay_finite_and_match() {
    // 6 pixels per image (scalar kernels) and 4 (vec4 kernels).
    for (k, w) in [3usize, 2].into_iter().enumerate() {
        let shape = [2usize, 4, 2, w];
        let np = 4 * w;
        let x = distinct(4 * np, 61 + k as u64, -1e4, 1e4);
        let inputs = [
            Input::param(shape.to_vec(), x),
            Input::labels([2, 2, w], labels(np, 4, 62, 5)),
        ];
        check_op(
            &format!("ce extreme {shape:?}"),
            &inputs,
            Check::new(REDUCTION, REDUCTION),
            |t| ce_w(&t[0], &t[1], None, IGNORE),
        );
    }
}

#[test]
fn ce_all_ignored_is_zero_with_zero_gradient() {
    // 4 pixels per image (vec4 kernels), 2 (scalar kernels) and [N, C] logits.
    let cases: [(Vec<usize>, Vec<usize>); 3] = [
        (vec![2, 3, 2, 2], vec![2, 2, 2]),
        (vec![4, 3, 1, 2], vec![4, 1, 2]),
        (vec![8, 3], vec![8]),
    ];
    let x = uniform(24, 70, -3.0, 3.0);
    // Every label is either the ignore index or out of range (≥ C, treated as ignored).
    let y = vec![IGNORE, 3, IGNORE, 7, IGNORE, IGNORE, 100, IGNORE];
    for (shape, label_shape) in cases {
        let inputs = [
            Input::param(shape.clone(), x.clone()),
            Input::labels(label_shape.clone(), y.clone()),
            Input::constant([3], vec![1.0, 2.0, 3.0]),
        ];
        check_op(
            &format!("ce all ignored {shape:?}"),
            &inputs,
            Check::new(EXACT, EXACT),
            |t| ce_w(&t[0], &t[1], t.get(2), IGNORE),
        );
        for dev in std::iter::once(Device::Cpu).chain(gpu()) {
            for weighted in [false, true] {
                let xt = Tensor::from_vec(x.clone(), shape.clone(), &dev)
                    .expect("x")
                    .as_param();
                let yt = Tensor::from_u32(y.clone(), label_shape.clone(), &dev).expect("y");
                let w = Tensor::from_vec(vec![1.0, 2.0, 3.0], [3], &dev).expect("w");
                let loss = ce_w(&xt, &yt, weighted.then_some(&w), IGNORE).expect("ce");
                assert_eq!(loss.item().expect("item"), 0.0, "{dev:?} {shape:?}");
                let g = backward(&loss).expect("backward");
                let gx = g.get(&xt).expect("grad").to_vec().expect("read");
                assert!(gx.iter().all(|&v| v == 0.0), "{dev:?} {shape:?}: {gx:?}");
            }
        }
    }
}

#[test]
fn ce_out_of_range_labels_are_ignored() {
    // Labels ≥ C (not the ignore index) contribute nothing: same loss and gradient as with
    // those pixels set to the ignore index.
    let shape = [1usize, 4, 2, 5];
    let x = uniform(40, 80, -2.0, 2.0);
    let mut y = labels(10, 4, 81, 0);
    y[2] = 4;
    y[7] = 1000;
    let mut y_ign = y.clone();
    y_ign[2] = IGNORE;
    y_ign[7] = IGNORE;
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let run = |labels: &[u32]| {
            let xt = Tensor::from_vec(x.clone(), shape, &dev)
                .expect("x")
                .as_param();
            let yt = Tensor::from_u32(labels.to_vec(), [1, 2, 5], &dev).expect("y");
            let loss = ce_w(&xt, &yt, None, IGNORE).expect("ce");
            let g = backward(&loss).expect("backward");
            let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
            (loss.to_vec_f64().expect("read"), gx)
        };
        let (l1, g1) = run(&y);
        let (l2, g2) = run(&y_ign);
        assert_close("loss", &l1, &l2, EXACT);
        assert_close("gradient", &g1, &g2, EXACT);
    }
}

#[test]
fn ce_other_ignore_index() {
    // ignore_index = 0: class 0 pixels are skipped (as PyTorch does for any ignore_index).
    let inputs = [
        Input::param([6, 3], uniform(18, 90, -2.0, 2.0)),
        Input::labels([6], vec![0, 1, 2, 0, 2, 1]),
    ];
    check_op(
        "ce ignore_index 0",
        &inputs,
        Check::new(REDUCTION, REDUCTION),
        |t| ce_w(&t[0], &t[1], None, 0),
    );
}

/// A literal case derived by hand from the definition of the loss (module docs of
/// `src/losses/ce.rs`): `L = Σ_v w_{y_v}·ℓ_v / Σ_v w_{y_v}`, `ℓ_v = −log
/// softmax(x_v)_{y_v}`, ignored pixels left out.
///
/// Logits `[N, C] = [3, 3]`, labels `[1, 2, 255]`:
/// - pixel 0: x = (0, 0, 0) → p = (1/3, 1/3, 1/3), y = 1, ℓ₀ = −ln(1/3) = ln 3.
/// - pixel 1: x = (0, ln 3, 0) → Σexp = 1 + 3 + 1 = 5, p = (0.2, 0.6, 0.2), y = 2,
///   ℓ₁ = −ln 0.2 = ln 5.
/// - pixel 2: ignored (any logits), contributes nothing and gets gradient 0.
///
/// Unweighted: L = (ln 3 + ln 5)/2 = ln(15)/2 ≈ 1.3540251;
/// ∂L/∂x₀ = (p − e₁)/2 = (1/6, −1/3, 1/6), ∂L/∂x₁ = (p − e₂)/2 = (0.1, 0.3, −0.4).
///
/// Weighted, w = (1, 2, 0.5): w_{y0} = 2, w_{y1} = 0.5, Σw = 2.5;
/// L = (2 ln 3 + 0.5 ln 5)/2.5 ≈ (2.1972246 + 0.8047190)/2.5 ≈ 1.2007774;
/// ∂L/∂x₀ = (2/2.5)(p − e₁) = 0.8·(1/3, −2/3, 1/3) ≈ (0.2666667, −0.5333333, 0.2666667),
/// ∂L/∂x₁ = (0.5/2.5)(p − e₂) = 0.2·(0.2, 0.6, −0.8) = (0.04, 0.12, −0.16).
#[test]
fn ce_literal_two_pixels_three_classes() {
    let l3 = 3f64.ln();
    let l5 = 5f64.ln();
    let x = vec![0.0, 0.0, 0.0, 0.0, l3 as f32, 0.0, 7.0, -2.0, 0.5];
    let y = vec![1u32, 2, IGNORE];
    let cases = [
        (
            None,
            (l3 + l5) / 2.0,
            [
                1.0 / 6.0,
                -1.0 / 3.0,
                1.0 / 6.0,
                0.1,
                0.3,
                -0.4,
                0.0,
                0.0,
                0.0,
            ],
        ),
        (
            Some(vec![1.0f32, 2.0, 0.5]),
            (2.0 * l3 + 0.5 * l5) / 2.5,
            [
                0.8 / 3.0,
                -1.6 / 3.0,
                0.8 / 3.0,
                0.04,
                0.12,
                -0.16,
                0.0,
                0.0,
                0.0,
            ],
        ),
    ];
    // The written-out decimals of the doc comment, as a guard on the derivation.
    assert!((cases[0].1 - 1.3540251).abs() < 1e-7);
    assert!((cases[1].1 - 1.2007774).abs() < 1e-7);
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        for (w, want_loss, want_grad) in &cases {
            // [N, C] layout, and the same pixels as [1, C, 1, 3] (NCHW, W = pixel).
            for nchw in [false, true] {
                let (xs, shape, ys): (Vec<f32>, Vec<usize>, Vec<usize>) = if nchw {
                    let t: Vec<f32> = (0..9).map(|i| x[(i % 3) * 3 + i / 3]).collect();
                    (t, vec![1, 3, 1, 3], vec![1, 1, 3])
                } else {
                    (x.clone(), vec![3, 3], vec![3])
                };
                let xt = Tensor::from_vec(xs, shape, &dev).expect("x").as_param();
                let yt = Tensor::from_u32(y.clone(), ys, &dev).expect("y");
                let wt = w
                    .as_ref()
                    .map(|w| Tensor::from_vec(w.clone(), [3], &dev).expect("w"));
                let loss = ce_w(&xt, &yt, wt.as_ref(), IGNORE).expect("ce");
                assert_eq!(loss.dims(), &[] as &[usize]);
                assert_close(
                    "literal loss",
                    &loss.to_vec_f64().expect("read"),
                    &[*want_loss],
                    REDUCTION,
                );
                let g = backward(&loss).expect("backward");
                let mut gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
                if nchw {
                    gx = (0..9).map(|i| gx[(i % 3) * 3 + i / 3]).collect();
                }
                assert_close("literal gradient", &gx, want_grad, REDUCTION);
            }
        }
    }
}

/// `ce` against the composition `−Σ_v w_{y_v}·log_softmax(x)_{v,y_v} / Σ_v w_{y_v}`
/// (the pick at the labels as a product with a constant one-hot mask scaled by the weights).
#[test]
fn ce_matches_composed_log_softmax() {
    let shape = [2usize, 5, 3, 4];
    let (c, inner) = (5, 12);
    let x = uniform(120, 100, -3.0, 3.0);
    let y = labels(24, c, 101, 5);
    for w in [None, Some(vec![0.5f32, 1.0, 2.0, 0.25, 3.0])] {
        let mut mask = vec![0.0f32; 120];
        let mut sw = 0.0f64;
        for (v, &yv) in y.iter().enumerate() {
            if yv != IGNORE {
                let wv = w.as_ref().map_or(1.0, |w| w[yv as usize]);
                mask[(v / inner * c + yv as usize) * inner + v % inner] = wv;
                sw += f64::from(wv);
            }
        }
        for dev in std::iter::once(Device::Cpu).chain(gpu()) {
            let run = |fused: bool| {
                let xt = Tensor::from_vec(x.clone(), shape, &dev)
                    .expect("x")
                    .as_param();
                let loss = if fused {
                    let yt = Tensor::from_u32(y.clone(), [2, 3, 4], &dev).expect("y");
                    let wt = w
                        .as_ref()
                        .map(|w| Tensor::from_vec(w.clone(), [c], &dev).expect("w"));
                    ce_w(&xt, &yt, wt.as_ref(), IGNORE).expect("ce")
                } else {
                    let m = Tensor::from_vec(mask.clone(), shape, &dev).expect("mask");
                    xt.log_softmax(1)
                        .and_then(|l| l.mul(&m))
                        .and_then(|t| t.sum())
                        .and_then(|t| t.mul_scalar(-1.0 / sw))
                        .expect("composed")
                };
                let g = backward(&loss).expect("backward");
                let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
                (loss.to_vec_f64().expect("read"), gx)
            };
            let (lf, gf) = run(true);
            let (lc, gc) = run(false);
            // Both paths run in f64 on the CPU: they agree to rounding, far inside the
            // finite-difference tolerance; on the GPU they differ by f32 sum orders.
            let tol = if matches!(dev, Device::Cpu) {
                FINITE_DIFF
            } else {
                REDUCTION
            };
            assert_close(&format!("fused vs composed loss {dev:?}"), &lf, &lc, tol);
            assert_close(
                &format!("fused vs composed gradient {dev:?}"),
                &gf,
                &gc,
                tol,
            );
        }
    }
}

fn expect_shape_error(r: wgseg::Result<Tensor>, what: &str) {
    match r {
        Err(Error::Shape { op, msg }) => {
            assert_eq!(op, "ce", "{what}: {msg}");
        }
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[test]
fn ce_rejects_bad_shapes_and_dtypes() {
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let x = Tensor::zeros([2, 3, 2, 2], &dev).expect("x");
        let y = Tensor::from_u32(vec![0; 8], [2, 2, 2], &dev).expect("y");
        let y_f32 = Tensor::zeros([2, 2, 2], &dev).expect("yf");
        let y_bad = Tensor::from_u32(vec![0; 6], [2, 3, 1], &dev).expect("yb");
        let w_bad = Tensor::ones([4], &dev).expect("wb");
        expect_shape_error(ce_w(&x, &y_f32, None, IGNORE), "f32 labels");
        expect_shape_error(ce_w(&x, &y_bad, None, IGNORE), "label shape");
        expect_shape_error(ce_w(&x, &y, Some(&w_bad), IGNORE), "weight length");
        expect_shape_error(ce_w(&y, &y, None, IGNORE), "u32 logits");
        let x3 = Tensor::zeros([2, 3, 4], &dev).expect("x3");
        let y3 = Tensor::from_u32(vec![0; 8], [2, 4], &dev).expect("y3");
        expect_shape_error(ce_w(&x3, &y3, None, IGNORE), "rank 3 logits");
        let x0 = Tensor::zeros([0, 3], &dev).expect("x0");
        let y0 = Tensor::from_u32(vec![], [0], &dev).expect("y0");
        expect_shape_error(ce_w(&x0, &y0, None, IGNORE), "empty");
        // The message names the shapes.
        let msg = ce_w(&x, &y_bad, None, IGNORE)
            .expect_err("error")
            .to_string();
        assert!(
            msg.contains("[2, 3, 1]") && msg.contains("[2, 3, 2, 2]"),
            "{msg}"
        );
    }
    // Tensors on different devices.
    if let Some(dev) = gpu() {
        let x = Tensor::zeros([2, 3], &dev).expect("x");
        let y = Tensor::from_u32(vec![0, 1], [2], &Device::Cpu).expect("y");
        assert!(matches!(
            ce_w(&x, &y, None, IGNORE),
            Err(Error::Device { .. })
        ));
    }
}

#[test]
fn folded_grids_match_the_cpu() {
    // Cross-entropy: 1301 and 4401 pixels (scalar kernels; the backward folds to 2-D and 3-D),
    // 36 000 and 140 000 (vec4 kernels, 8 quads per backward invocation: 1125 invocations
    // fold to 2-D, 4375 to 3-D, and the forward's 2188 to 2-D). The loss is scaled by the
    // pixel count so that the gradients (∝ 1 / Σ w) stay well above the absolute tolerance.
    for (k, n) in [1301usize, 4401, 36_000, 140_000].into_iter().enumerate() {
        let x = uniform(3 * n, 900 + k as u64, -3.0, 3.0);
        for weighted in [false, true] {
            let mut inputs = vec![
                Input::param([1, 3, 1, n], x.clone()),
                Input::labels([1, 1, n], labels(n, 3, 910 + k as u64, 11)),
            ];
            if weighted {
                inputs.push(Input::constant([3], vec![0.5, 1.5, 2.0]));
            }
            check_folded(
                &format!("folded ce weighted={weighted} pixels={n}"),
                &inputs,
                Check::new(REDUCTION, REDUCTION),
                |t| ce_w(&t[0], &t[1], t.get(2), IGNORE)?.mul_scalar(n as f64),
            );
        }
    }
}
