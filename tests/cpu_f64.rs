//! The CPU backend is the f64 oracle end to end: scalar arguments (`mul_scalar`,
//! `add_scalar`, `powf`, `clamp`, batch-norm's momentum and eps, mean's `1/n`) are `f64`, so
//! CPU results agree with an independent plain-f64 computation written here to ~1e-15
//! relative. The inputs and scalars (1/3, 0.1, 1e-5, n = 7, 15, 21) are not exactly
//! representable in f32, so any f32 rounding on the way (~1e-8 relative) fails the checks.

mod common;

use common::*;
use wgseg::ops::{batch_norm2d, BatchNormState};
use wgseg::{backward, Device, Tensor};

const CPU: Device = Device::Cpu;

/// Seeded-free, non-f32-representable values: `(k + 1)/3 − k²/7·…` style, in f64.
fn vals(n: usize, salt: f64) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let k = k as f64;
            (k + salt) / 3.0 - (k * k) / (7.0 * n as f64) + (k * 0.7).sin() / 11.0
        })
        .collect()
}

fn param(data: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_f64(data, shape.to_vec(), &CPU)
        .unwrap()
        .as_param()
}

/// Gradient of `sum(f(x) ⊙ w)` with respect to `x`, and the output `f(x)`.
fn grad_of(x: &Tensor, w: &[f64], f: impl Fn(&Tensor) -> Tensor) -> (Vec<f64>, Vec<f64>) {
    let y = f(x);
    let wt = Tensor::from_f64(w.to_vec(), y.shape().clone(), &CPU).unwrap();
    let g = backward(&y.mul(&wt).unwrap().sum().unwrap()).unwrap();
    (
        y.to_vec_f64().unwrap(),
        g.get(x).unwrap().to_vec_f64().unwrap(),
    )
}

#[test]
fn mean_gradients_are_f64() {
    // Along an axis of 7 (1/7 is not an f32) and over all 21 elements.
    let (rows, r) = (3, 7);
    let xv = vals(rows * r, 0.25);
    let x = param(xv.clone(), &[rows, r]);
    let w = vals(rows, 1.5);
    let (y, g) = grad_of(&x, &w, |x| x.mean_axis(1, false).unwrap());
    let want_y: Vec<f64> = (0..rows)
        .map(|i| xv[i * r..(i + 1) * r].iter().sum::<f64>() / r as f64)
        .collect();
    let want_g: Vec<f64> = (0..rows * r).map(|k| w[k / r] / r as f64).collect();
    assert_close("mean_axis forward", &y, &want_y, F64_REFERENCE);
    assert_close("mean_axis gradient", &g, &want_g, F64_REFERENCE);

    let w = [1.0 / 3.0];
    let (y, g) = grad_of(&x, &w, |x| x.mean().unwrap());
    let n = (rows * r) as f64;
    assert_close(
        "mean forward",
        &y,
        &[xv.iter().sum::<f64>() / n],
        F64_REFERENCE,
    );
    assert_close(
        "mean gradient",
        &g,
        &vec![w[0] / n; rows * r],
        F64_REFERENCE,
    );
}

#[test]
fn scalar_ops_are_f64() {
    let n = 9;
    let xv: Vec<f64> = (0..n).map(|k| (k as f64 + 1.0) / 7.0).collect();
    let x = param(xv.clone(), &[n]);
    let w = vals(n, 0.5);
    let (a, p, lo, hi) = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0);
    type Case = (
        &'static str,
        Box<dyn Fn(&Tensor) -> Tensor>,
        Box<dyn Fn(f64) -> (f64, f64)>,
    );
    let cases: Vec<Case> = vec![
        (
            "mul_scalar",
            Box::new(move |x| x.mul_scalar(a).unwrap()),
            Box::new(move |x| (x * a, a)),
        ),
        (
            "add_scalar",
            Box::new(move |x| x.add_scalar(a).unwrap()),
            Box::new(move |x| (x + a, 1.0)),
        ),
        (
            "powf",
            Box::new(move |x| x.powf(p).unwrap()),
            Box::new(move |x| (x.powf(p), p * x.powf(p - 1.0))),
        ),
        (
            "clamp",
            Box::new(move |x| x.clamp(lo, hi).unwrap()),
            Box::new(move |x| {
                if x < lo {
                    (lo, 0.0)
                } else if x > hi {
                    (hi, 0.0)
                } else {
                    (x, 1.0)
                }
            }),
        ),
    ];
    for (name, f, reference) in &cases {
        let (y, g) = grad_of(&x, &w, f);
        let want: Vec<(f64, f64)> = xv.iter().map(|&v| reference(v)).collect();
        let want_y: Vec<f64> = want.iter().map(|p| p.0).collect();
        let want_g: Vec<f64> = want.iter().zip(&w).map(|(p, w)| p.1 * w).collect();
        assert_close(&format!("{name} forward"), &y, &want_y, F64_REFERENCE);
        assert_close(&format!("{name} gradient"), &g, &want_g, F64_REFERENCE);
    }
}

/// Plain-f64 batch norm of `x [N, C, H, W]`: per channel mean, biased variance, `x̂`, `y`,
/// and the gradients of `sum(y ⊙ w)` (`∂x = γr(w − mean(w) − x̂·mean(w·x̂))`,
/// `∂γ = Σ w·x̂`, `∂β = Σ w`).
struct BnRef {
    mean: Vec<f64>,
    var: Vec<f64>,
    y: Vec<f64>,
    dx: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

fn bn_reference(
    x: &[f64],
    s: [usize; 4],
    gamma: &[f64],
    beta: &[f64],
    w: &[f64],
    eps: f64,
) -> BnRef {
    let [n, c, h, wd] = s;
    let hw = h * wd;
    let cnt = (n * hw) as f64;
    let idx = |i: usize, ch: usize, k: usize| (i * c + ch) * hw + k;
    let mut r = BnRef {
        mean: vec![0.0; c],
        var: vec![0.0; c],
        y: vec![0.0; x.len()],
        dx: vec![0.0; x.len()],
        dgamma: vec![0.0; c],
        dbeta: vec![0.0; c],
    };
    for ch in 0..c {
        let all: Vec<usize> = (0..n)
            .flat_map(|i| (0..hw).map(move |k| idx(i, ch, k)))
            .collect();
        let mu = all.iter().map(|&j| x[j]).sum::<f64>() / cnt;
        let var = all.iter().map(|&j| (x[j] - mu) * (x[j] - mu)).sum::<f64>() / cnt;
        let rstd = 1.0 / (var + eps).sqrt();
        let xhat = |j: usize| (x[j] - mu) * rstd;
        let mw = all.iter().map(|&j| w[j]).sum::<f64>() / cnt;
        let mwx = all.iter().map(|&j| w[j] * xhat(j)).sum::<f64>() / cnt;
        for &j in &all {
            r.y[j] = xhat(j) * gamma[ch] + beta[ch];
            r.dx[j] = gamma[ch] * rstd * (w[j] - mw - xhat(j) * mwx);
        }
        r.mean[ch] = mu;
        r.var[ch] = var;
        r.dgamma[ch] = mwx * cnt;
        r.dbeta[ch] = mw * cnt;
    }
    r
}

#[test]
fn batch_norm_training_is_f64() {
    // n = N·H·W = 15 per channel (1/15 is not an f32); momentum 0.1 and eps 1e-5 are not
    // f32 either.
    let s = [3usize, 2, 1, 5];
    let (momentum, eps) = (0.1, 1e-5);
    let numel: usize = s.iter().product();
    let c = s[1];
    let xv = vals(numel, 0.125);
    let gv = vec![2.0 / 3.0, 1.1];
    let bv = vec![-1.0 / 7.0, 0.3];
    let (rm, rv) = (vec![0.2, -1.0 / 3.0], vec![0.9, 4.0 / 3.0]);
    let w = vals(numel, 2.0);
    let (x, gamma, beta) = (
        param(xv.clone(), &s),
        param(gv.clone(), &[c]),
        param(bv.clone(), &[c]),
    );
    let st = BatchNormState {
        running_mean: Tensor::from_f64(rm.clone(), [c], &CPU).unwrap(),
        running_var: Tensor::from_f64(rv.clone(), [c], &CPU).unwrap(),
    };
    let (y, upd) = batch_norm2d(&x, &gamma, &beta, &st, true, momentum, eps).unwrap();
    let upd = upd.unwrap();
    let wt = Tensor::from_f64(w.clone(), s.to_vec(), &CPU).unwrap();
    let g = backward(&y.mul(&wt).unwrap().sum().unwrap()).unwrap();
    let r = bn_reference(&xv, s, &gv, &bv, &w, eps);
    let got = |t: &Tensor| t.to_vec_f64().unwrap();
    assert_close("bn forward", &got(&y), &r.y, F64_REFERENCE);
    assert_close("bn ∂x", &got(g.get(&x).unwrap()), &r.dx, F64_REFERENCE);
    assert_close(
        "bn ∂γ",
        &got(g.get(&gamma).unwrap()),
        &r.dgamma,
        F64_REFERENCE,
    );
    assert_close(
        "bn ∂β",
        &got(g.get(&beta).unwrap()),
        &r.dbeta,
        F64_REFERENCE,
    );
    let cnt = (s[0] * s[2] * s[3]) as f64;
    let want_rm: Vec<f64> = (0..c)
        .map(|ch| (1.0 - momentum) * rm[ch] + momentum * r.mean[ch])
        .collect();
    let want_rv: Vec<f64> = (0..c)
        .map(|ch| (1.0 - momentum) * rv[ch] + momentum * r.var[ch] * cnt / (cnt - 1.0))
        .collect();
    assert_close(
        "running_mean",
        &got(&upd.running_mean),
        &want_rm,
        F64_REFERENCE,
    );
    assert_close(
        "running_var",
        &got(&upd.running_var),
        &want_rv,
        F64_REFERENCE,
    );

    // Evaluation uses the running statistics and eps, also in f64.
    let (ye, _) = batch_norm2d(&x, &gamma, &beta, &st, false, momentum, eps).unwrap();
    let hw = s[2] * s[3];
    let want_e: Vec<f64> = (0..numel)
        .map(|j| {
            let ch = j / hw % c;
            (xv[j] - rm[ch]) / (rv[ch] + eps).sqrt() * gv[ch] + bv[ch]
        })
        .collect();
    assert_close("bn eval forward", &got(&ye), &want_e, F64_REFERENCE);
}

#[test]
fn full_keeps_f64_on_the_cpu() {
    let t = Tensor::full([2], 1.0 / 3.0, &CPU).unwrap();
    assert_eq!(t.to_vec_f64().unwrap(), vec![1.0 / 3.0; 2]);
}
