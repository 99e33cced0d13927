//! `losses::ce`, the project's one cross-entropy (the pixel-loss kernels): GPU-vs-CPU parity
//! and gradient checks at the kernels' edge cases (lanes, quads, workgroups, folded grids),
//! a literal test derived by hand, agreement with the composed primitives, ignored and
//! out-of-range labels, and shape/dtype errors; label smoothing (a literal case, an
//! independent f64 evaluation of PyTorch's formula, parity and finite differences, ε = 0 and
//! the range check). The formula checks of every softmax-family loss are in tests/losses.rs.

mod common;

use common::*;
use wgseg::losses::{ce, CeOptions};
use wgseg::{backward, Device, Error, Tensor};

const IGNORE: u32 = 255;

/// `ce` with class weights given as a tensor (a test input) and `ignore_index`.
fn ce_w(x: &Tensor, y: &Tensor, w: Option<&Tensor>, ignore_index: u32) -> wgseg::Result<Tensor> {
    let weights = w.map(Tensor::to_vec_f64).transpose()?;
    ce(
        x,
        y,
        &CeOptions {
            weights,
            ignore_index,
            ..Default::default()
        },
    )
}

/// `ce` with label smoothing `eps` and class weights given as a tensor.
fn ce_ls(x: &Tensor, y: &Tensor, w: Option<&Tensor>, eps: f64) -> wgseg::Result<Tensor> {
    let weights = w.map(Tensor::to_vec_f64).transpose()?;
    ce(
        x,
        y,
        &CeOptions {
            weights,
            ignore_index: IGNORE,
            label_smoothing: eps,
        },
    )
}

/// Seeded labels in `0..c`, with every `ignore_every`-th pixel set to `IGNORE` (0: none).
fn labels(n: usize, c: usize, seed: u64, ignore_every: usize) -> Vec<u32> {
    uniform(n, seed, 0.0, c as f32)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
                IGNORE
            } else {
                (v as u32).min(c as u32 - 1)
            }
        })
        .collect()
}

/// Labels shape for logits `[N, C]` or `[N, C, H, W]`.
fn label_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.remove(1);
    s
}

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

// ---------------------------------------------------------------------------------------
// Label smoothing

/// An independent plain-`f64` evaluation of PyTorch's `F.cross_entropy(x, y, weight=w,
/// ignore_index=255, label_smoothing=ε)` (`reduction='mean'`), structured as ATen computes it:
/// `(1 − ε)·nll + (ε/C)·smooth`, with `nll = Σ_v w_y·(−log q_{v,y}) / Σ_v w_y` and `smooth =
/// Σ_v Σ_c w_c·(−log q_{v,c}) / Σ_v w_y` (`w = 1`: both over the valid-pixel count), and its
/// gradient `∂/∂x_{v,c} = (((1 − ε)·w_y + (ε/C)·Σ_k w_k)·q_c − (1 − ε)·w_y·δ_cy −
/// (ε/C)·w_c) / Σ_v w_y`, written per term from the definition. Labels ≥ C or = 255 are
/// ignored; no valid pixel gives `(0, 0)`. Logits `[N, C, inner]` flattened.
fn smoothed_ref(
    x: &[f32],
    n: usize,
    c: usize,
    y: &[u32],
    w: Option<&[f32]>,
    eps: f64,
) -> (f64, Vec<f64>) {
    let inner = y.len() / n;
    let wc = |k: usize| w.map_or(1.0, |w| f64::from(w[k]));
    let at = |v: usize, k: usize| (v / inner * c + k) * inner + v % inner;
    let (mut nll, mut smooth, mut den) = (0.0, 0.0, 0.0);
    // Per valid pixel: (v, y, −log q).
    let mut pix = Vec::new();
    for (v, &yv) in y.iter().enumerate() {
        if yv == IGNORE || yv as usize >= c {
            continue;
        }
        let yv = yv as usize;
        let xs: Vec<f64> = (0..c).map(|k| f64::from(x[at(v, k)])).collect();
        let mx = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = mx + xs.iter().map(|&z| (z - mx).exp()).sum::<f64>().ln();
        let nlq: Vec<f64> = xs.iter().map(|&z| lse - z).collect();
        nll += wc(yv) * nlq[yv];
        smooth += (0..c).map(|k| wc(k) * nlq[k]).sum::<f64>();
        den += wc(yv);
        pix.push((v, yv, nlq));
    }
    let mut grad = vec![0.0; x.len()];
    if den == 0.0 {
        return (0.0, grad);
    }
    let each = eps / c as f64;
    let loss = (1.0 - eps) * nll / den + each * smooth / den;
    let wsum: f64 = (0..c).map(wc).sum();
    for (v, yv, nlq) in pix {
        for k in 0..c {
            let q = (-nlq[k]).exp();
            let mut g = ((1.0 - eps) * wc(yv) + each * wsum) * q - each * wc(k);
            if k == yv {
                g -= (1.0 - eps) * wc(yv);
            }
            grad[at(v, k)] = g / den;
        }
    }
    (loss, grad)
}

/// A literal case derived by hand from the module docs of `src/losses/ce.rs`: target
/// `(1 − ε)·e_y + ε/C`, `ℓ_v = (1 − ε)·w_y·(−log q_y) + (ε/C)·Σ_c w_c·(−log q_c)`, `L = Σ_v
/// ℓ_v / Σ_v w_{y_v}`; `ε = 0.3`, `C = 3`, so `1 − ε = 0.7` and `ε/C = 0.1`.
///
/// Logits `[N, C] = [3, 3]`, labels `[1, 2, 255]` (pixel 2 ignored: gradient 0):
/// - pixel 0: x = (0, 0, 0): q = (1/3, 1/3, 1/3), −log q_c = ln 3 for every c.
/// - pixel 1: x = (0, ln 3, 0): Σexp = 5, q = (0.2, 0.6, 0.2),
///   −log q = (ln 5, ln 5 − ln 3, ln 5), y = 2.
///
/// Unweighted (w = 1, D = 2):
/// ℓ₀ = 0.7·ln 3 + 0.1·3 ln 3 = ln 3; ℓ₁ = 0.7·ln 5 + 0.1·(3 ln 5 − ln 3) = ln 5 − 0.1 ln 3;
/// L = (ln 15 − 0.1 ln 3)/2 ≈ 1.2990945.
/// ∂L/∂x_v = (q − 0.7·e_y − 0.1)/2: pixel 0: (1/3 − 0.1, 1/3 − 0.8, 1/3 − 0.1)/2 =
/// (7/60, −14/60, 7/60); pixel 1: (0.1, 0.5, −0.6)/2 = (0.05, 0.25, −0.3).
///
/// Weighted, w = (1, 2, 0.5): Σ_c w_c = 3.5, w_{y0} = 2, w_{y1} = 0.5, D = 2.5.
/// ℓ₀ = 0.7·2·ln 3 + 0.1·3.5·ln 3 = 1.75 ln 3;
/// ℓ₁ = 0.7·0.5·ln 5 + 0.1·(1·ln 5 + 2·(ln 5 − ln 3) + 0.5·ln 5) = 0.7 ln 5 − 0.2 ln 3;
/// L = (1.55 ln 3 + 0.7 ln 5)/2.5 ≈ 1.1317822.
/// ∂ℓ_v/∂x_c = (0.7·w_y + 0.1·3.5)·q_c − 0.7·w_y·δ_cy − 0.1·w_c:
/// pixel 0: 1.75·q = 7/12 each; minus (0.1, 0.2 + 1.4, 0.05) → (29/60, −61/60, 32/60),
///   over 2.5: (29/150, −61/150, 32/150);
/// pixel 1: 0.7·q = (0.14, 0.42, 0.14); minus (0.1, 0.2, 0.05 + 0.35) → (0.04, 0.22, −0.26),
///   over 2.5: (0.016, 0.088, −0.104).
#[test]
fn ce_smoothed_literal_two_pixels_three_classes() {
    let l3 = 3f64.ln();
    let l5 = 5f64.ln();
    let x = vec![0.0, 0.0, 0.0, 0.0, l3 as f32, 0.0, 7.0, -2.0, 0.5];
    let y = vec![1u32, 2, IGNORE];
    let cases = [
        (
            None,
            ((l3 + l5) - 0.1 * l3) / 2.0,
            [
                7.0 / 60.0,
                -14.0 / 60.0,
                7.0 / 60.0,
                0.05,
                0.25,
                -0.3,
                0.0,
                0.0,
                0.0,
            ],
        ),
        (
            Some(vec![1.0f32, 2.0, 0.5]),
            (1.55 * l3 + 0.7 * l5) / 2.5,
            [
                29.0 / 150.0,
                -61.0 / 150.0,
                32.0 / 150.0,
                0.016,
                0.088,
                -0.104,
                0.0,
                0.0,
                0.0,
            ],
        ),
    ];
    // The written-out decimals of the doc comment, as a guard on the derivation.
    assert!((cases[0].1 - 1.2990945).abs() < 1e-7);
    assert!((cases[1].1 - 1.1317822).abs() < 1e-7);
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        for (w, want_loss, want_grad) in &cases {
            // [N, C] (scalar kernels), and the same pixels as [1, C, 1, 3] plus one ignored
            // pixel, [1, C, 1, 4] (vec4 kernels).
            for nchw in [false, true] {
                let (xs, shape, ys, yl): (Vec<f32>, Vec<usize>, Vec<usize>, Vec<u32>) = if nchw {
                    let t: Vec<f32> = (0..12)
                        .map(|i| {
                            if i % 4 == 3 {
                                1.0
                            } else {
                                x[(i % 4) * 3 + i / 4]
                            }
                        })
                        .collect();
                    let mut yl = y.clone();
                    yl.push(IGNORE);
                    (t, vec![1, 3, 1, 4], vec![1, 1, 4], yl)
                } else {
                    (x.clone(), vec![3, 3], vec![3], y.clone())
                };
                let xt = Tensor::from_vec(xs, shape, &dev).expect("x").as_param();
                let yt = Tensor::from_u32(yl, ys, &dev).expect("y");
                let wt = w
                    .as_ref()
                    .map(|w| Tensor::from_vec(w.clone(), [3], &dev).expect("w"));
                let loss = ce_ls(&xt, &yt, wt.as_ref(), 0.3).expect("ce");
                assert_eq!(loss.dims(), &[] as &[usize]);
                assert_close(
                    &format!("smoothed literal loss {dev:?} nchw={nchw}"),
                    &loss.to_vec_f64().expect("read"),
                    &[*want_loss],
                    REDUCTION,
                );
                let g = backward(&loss).expect("backward");
                let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
                let gx: Vec<f64> = if nchw {
                    assert_eq!(gx[3], 0.0);
                    assert_eq!(gx[7], 0.0);
                    assert_eq!(gx[11], 0.0);
                    (0..9).map(|i| gx[(i % 3) * 4 + i / 3]).collect()
                } else {
                    gx
                };
                assert_close(
                    &format!("smoothed literal gradient {dev:?} nchw={nchw}"),
                    &gx,
                    want_grad,
                    REDUCTION,
                );
            }
        }
    }
}

#[test]
fn ce_smoothed_matches_an_independent_f64_formula() {
    // (shape, ignore every k-th pixel, ε): scalar kernels ([N, C], 15 and 257 pixels per
    // image) and vec4 kernels (12 and 68 pixels per image), ε at 0.1, 0.37 and the ends.
    let cases: &[(&[usize], usize, f64)] = &[
        (&[7, 3], 3, 0.1),
        (&[1, 19, 3, 5], 4, 0.37),
        (&[2, 5, 3, 4], 5, 1.0),
        (&[2, 5, 4, 17], 6, 0.1),
        (&[1, 3, 1, 257], 7, 0.25),
    ];
    for (k, &(shape, ig, eps)) in cases.iter().enumerate() {
        let numel: usize = shape.iter().product();
        let (n, c) = (shape[0], shape[1]);
        let x = uniform(numel, 1200 + k as u64, -4.0, 4.0);
        let mut y = labels(numel / c, c, 1210 + k as u64, ig);
        // One label ≥ C (not the ignore index): ignored like it.
        y[1] = c as u32 + 2;
        let w = uniform(c, 1220 + k as u64, 0.2, 2.0);
        for weighted in [false, true] {
            let wv = weighted.then_some(w.as_slice());
            let (want_loss, want_grad) = smoothed_ref(&x, n, c, &y, wv, eps);
            for dev in std::iter::once(Device::Cpu).chain(gpu()) {
                let xt = Tensor::from_vec(x.clone(), shape, &dev)
                    .expect("x")
                    .as_param();
                let yt = Tensor::from_u32(y.clone(), label_shape(shape), &dev).expect("y");
                let wt = wv.map(|w| Tensor::from_vec(w.to_vec(), [c], &dev).expect("w"));
                let loss = ce_ls(&xt, &yt, wt.as_ref(), eps).expect("ce");
                let g = backward(&loss).expect("backward");
                let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
                // The CPU reference is f64 throughout; the GPU runs in f32.
                let tol = if matches!(dev, Device::Cpu) {
                    F64_REFERENCE
                } else {
                    REDUCTION
                };
                let what = format!("{shape:?} ε={eps} weighted={weighted} {dev:?}");
                assert_close(
                    &format!("smoothed loss {what}"),
                    &loss.to_vec_f64().expect("read"),
                    &[want_loss],
                    tol,
                );
                assert_close(&format!("smoothed gradient {what}"), &gx, &want_grad, tol);
            }
        }
    }
}

#[test]
fn ce_smoothed_parity_and_finite_differences() {
    let cases: &[(&str, &[usize], usize, f64)] = &[
        ("nc ignored", &[7, 3], 3, 0.2),
        ("C = 1", &[3, 1, 2, 2], 0, 0.5),
        ("C = 19", &[1, 19, 3, 5], 5, 0.1),
        ("wg+1 nchw", &[1, 3, 1, 257], 7, 0.3),
        ("vec4 quads span images", &[3, 4, 3, 4], 5, 0.6),
        ("vec4 lane + 1 quad", &[2, 5, 4, 17], 6, 1.0),
        ("vec4 wg+1", &[2, 3, 64, 65], 7, 0.1),
    ];
    for (k, &(name, shape, ig, eps)) in cases.iter().enumerate() {
        let numel: usize = shape.iter().product();
        let c = shape[1];
        let seed = 1300 + 10 * k as u64;
        for weighted in [false, true] {
            let mut inputs = vec![
                Input::param(shape.to_vec(), uniform(numel, seed, -3.0, 3.0)),
                Input::labels(label_shape(shape), labels(numel / c, c, seed + 1, ig)),
            ];
            if weighted {
                inputs.push(Input::constant([c], uniform(c, seed + 2, 0.2, 2.0)));
            }
            check_op(
                &format!("smoothed {name} {shape:?} ε={eps} weighted={weighted}"),
                &inputs,
                Check::new(REDUCTION, REDUCTION),
                |t| ce_ls(&t[0], &t[1], t.get(2), eps),
            );
        }
    }
    // Extreme logits: the smoothing sum Σ_k w_k·(m − z_k) grows to ~1e4 per class and stays
    // finite; GPU against CPU (scalar and vec4 kernels).
    for (k, w) in [3usize, 2].into_iter().enumerate() {
        let shape = [2usize, 4, 2, w];
        let np = 4 * w;
        let inputs = [
            Input::param(shape.to_vec(), distinct(4 * np, 1400 + k as u64, -1e4, 1e4)),
            Input::labels([2, 2, w], labels(np, 4, 1410, 5)),
        ];
        check_op(
            &format!("smoothed extreme {shape:?}"),
            &inputs,
            Check::new(REDUCTION, REDUCTION),
            |t| ce_ls(&t[0], &t[1], None, 0.2),
        );
    }
}

#[test]
fn ce_zero_smoothing_is_plain_ce() {
    // ε = 0 (and −0) runs the plain cross-entropy: bit-identical loss and gradient to the
    // default options and to the `Tensor::cross_entropy` shorthand, on every device. A tiny
    // ε (1e-30: 1 − ε rounds to 1, ε/C does not vanish) runs the smoothing kernels, whose
    // result must then agree with the plain ones to rounding.
    for (shape, ig) in [
        (vec![2usize, 5, 3, 4], 4),
        (vec![7, 3], 3),
        (vec![1, 3, 1, 5], 2),
    ] {
        let numel: usize = shape.iter().product();
        let c = shape[1];
        let x = uniform(numel, 1500, -3.0, 3.0);
        let y = labels(numel / c, c, 1501, ig);
        for dev in std::iter::once(Device::Cpu).chain(gpu()) {
            for weighted in [false, true] {
                let w = Tensor::from_vec(uniform(c, 1502, 0.2, 2.0), [c], &dev).expect("w");
                let w = weighted.then_some(&w);
                let run = |f: &dyn Fn(&Tensor, &Tensor) -> wgseg::Result<Tensor>| {
                    let xt = Tensor::from_vec(x.clone(), shape.clone(), &dev)
                        .expect("x")
                        .as_param();
                    let yt = Tensor::from_u32(y.clone(), label_shape(&shape), &dev).expect("y");
                    let loss = f(&xt, &yt).expect("ce");
                    let g = backward(&loss).expect("backward");
                    let gx = g.get(&xt).expect("grad").to_vec_f64().expect("read");
                    (loss.to_vec_f64().expect("read"), gx)
                };
                let plain = run(&|x, y| x.cross_entropy(y, w, IGNORE));
                let what = format!("{shape:?} weighted={weighted} {dev:?}");
                for eps in [0.0, -0.0] {
                    let zero = run(&|x, y| ce_ls(x, y, w, eps));
                    assert_close(&format!("ε={eps} loss {what}"), &zero.0, &plain.0, EXACT);
                    assert_close(&format!("ε={eps} grad {what}"), &zero.1, &plain.1, EXACT);
                }
                let tiny = run(&|x, y| ce_ls(x, y, w, 1e-30));
                assert_close(&format!("tiny ε loss {what}"), &tiny.0, &plain.0, REDUCTION);
                assert_close(&format!("tiny ε grad {what}"), &tiny.1, &plain.1, REDUCTION);
            }
        }
    }
}

#[test]
fn ce_smoothed_all_ignored_is_zero_with_zero_gradient() {
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        // Scalar ([N, C]) and vec4 kernels; every label ignored or out of range.
        for (shape, ls) in [
            (vec![4usize, 3], vec![4usize]),
            (vec![1, 3, 1, 4], vec![1, 1, 4]),
        ] {
            for weighted in [false, true] {
                let xt = Tensor::from_vec(uniform(12, 1600, -3.0, 3.0), shape.clone(), &dev)
                    .expect("x")
                    .as_param();
                let yt = Tensor::from_u32(vec![IGNORE, 3, IGNORE, 9], ls.clone(), &dev).expect("y");
                let w = Tensor::from_vec(vec![1.0, 2.0, 3.0], [3], &dev).expect("w");
                let loss = ce_ls(&xt, &yt, weighted.then_some(&w), 0.4).expect("ce");
                assert_eq!(loss.item().expect("item"), 0.0, "{dev:?} {shape:?}");
                let g = backward(&loss).expect("backward");
                let gx = g.get(&xt).expect("grad").to_vec().expect("read");
                assert!(gx.iter().all(|&v| v == 0.0), "{dev:?} {shape:?}: {gx:?}");
            }
        }
    }
}

#[test]
fn ce_smoothing_out_of_range_is_an_error() {
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let x = Tensor::zeros([2, 3], &dev).expect("x");
        let y = Tensor::from_u32(vec![0, 1], [2], &dev).expect("y");
        for eps in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            match ce_ls(&x, &y, None, eps) {
                Err(Error::Shape { op, msg }) => {
                    assert_eq!(op, "ce", "{msg}");
                    assert!(
                        msg.contains("label_smoothing") && msg.contains(&format!("{eps}")),
                        "{msg}"
                    );
                }
                Err(e) => panic!("ε={eps}: wrong error {e}"),
                Ok(_) => panic!("ε={eps}: accepted"),
            }
        }
        // Both ends of [0, 1] are accepted (PyTorch's range).
        for eps in [0.0, 1.0] {
            ce_ls(&x, &y, None, eps).expect("in range");
        }
    }
}
