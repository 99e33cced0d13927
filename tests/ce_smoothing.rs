//! `losses::ce` with label smoothing (PyTorch's `label_smoothing`): a literal case, an
//! independent f64 evaluation of PyTorch's formula, parity and finite differences, ε = 0 and
//! the range check.

#[path = "common/ce.rs"]
mod ce_common;
mod common;

use ce_common::*;
use common::*;
use wgseg::{backward, Device, Error, Tensor};

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
