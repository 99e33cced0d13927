//! Shared helpers of the loss tests (`tests/losses_*.rs`): every loss as the tests drive
//! it, an independent f64 evaluation of every formula of docs/longtail.md (value and
//! closed-form gradient), random inputs, and the comparison against the library.
#![allow(dead_code)]

use crate::common::*;
use wgseg::losses::{self, rng, BlvOptions, BmsOptions, CbOptions, CeOptions, FocalOptions};
use wgseg::losses::{LdamOptions, PatCurve, PatOptions};
use wgseg::{backward, Device, Result, Tensor};

pub const IGNORE: u32 = 255;

/// One loss with its options, as the tests drive it.
#[derive(Clone, Debug)]
pub enum Kind {
    Ce,
    CeWeighted(Vec<f64>),
    Focal(f64),
    Cb {
        beta: f64,
        focal: Option<f64>,
    },
    Bms,
    Ldam {
        s: f64,
        max_margin: f64,
    },
    /// Noise generated from the seed.
    Blv {
        sigma: f64,
        seed: u64,
    },
    /// Noise from the extra input tensor.
    BlvNoise {
        sigma: f64,
    },
    Pat {
        curve: PatCurve,
        t: f64,
        eps: f64,
        detach: bool,
    },
}

/// Every loss, with its default options and a few non-default options.
pub fn kinds(c: usize) -> Vec<Kind> {
    vec![
        Kind::Ce,
        Kind::CeWeighted((0..c).map(|k| 0.5 + 0.3 * k as f64).collect()),
        Kind::Focal(2.0),
        Kind::Focal(0.5),
        Kind::Cb {
            beta: 0.9999,
            focal: None,
        },
        Kind::Cb {
            beta: 0.999,
            focal: Some(2.0),
        },
        Kind::Bms,
        Kind::Ldam {
            s: 30.0,
            max_margin: 0.5,
        },
        Kind::Blv {
            sigma: 0.5,
            seed: 17,
        },
        Kind::BlvNoise { sigma: 0.5 },
        Kind::Pat {
            curve: PatCurve::Falling,
            t: 20.0,
            eps: 0.0,
            detach: false,
        },
        Kind::Pat {
            curve: PatCurve::Falling,
            t: 0.5,
            eps: 0.1,
            detach: false,
        },
        Kind::Pat {
            curve: PatCurve::Rising,
            t: 2.0,
            eps: 0.0,
            detach: false,
        },
        Kind::Pat {
            curve: PatCurve::Falling,
            t: 1.0,
            eps: 0.0,
            detach: true,
        },
    ]
}

/// Runs the loss: `t[0]` logits, `t[1]` labels, `t[2]` the noise for `BlvNoise`.
pub fn run(kind: &Kind, t: &[Tensor], counts: &[u64]) -> Result<Tensor> {
    let (x, y) = (&t[0], &t[1]);
    match kind {
        Kind::Ce => losses::ce(x, y, &CeOptions::default()),
        Kind::CeWeighted(w) => losses::ce(
            x,
            y,
            &CeOptions {
                weights: Some(w.clone()),
                ..Default::default()
            },
        ),
        Kind::Focal(gamma) => losses::focal(
            x,
            y,
            &FocalOptions {
                gamma: *gamma,
                ..Default::default()
            },
        ),
        Kind::Cb { beta, focal } => losses::class_balanced(
            x,
            y,
            counts,
            &CbOptions {
                beta: *beta,
                focal: *focal,
                ..Default::default()
            },
        ),
        Kind::Bms => losses::balanced_softmax(x, y, counts, &BmsOptions::default()),
        Kind::Ldam { s, max_margin } => losses::ldam(
            x,
            y,
            counts,
            &LdamOptions {
                s: *s,
                max_margin: *max_margin,
                ..Default::default()
            },
        ),
        Kind::Blv { sigma, seed } => losses::blv(
            x,
            y,
            counts,
            &BlvOptions {
                sigma: *sigma,
                seed: *seed,
                ..Default::default()
            },
        ),
        Kind::BlvNoise { sigma } => losses::blv(
            x,
            y,
            counts,
            &BlvOptions {
                sigma: *sigma,
                noise: Some(t[2].clone()),
                ..Default::default()
            },
        ),
        Kind::Pat {
            curve,
            t: temp,
            eps,
            detach,
        } => losses::pat(
            x,
            y,
            &PatOptions {
                curve: *curve,
                t: *temp,
                eps: *eps,
                detach: *detach,
                ..Default::default()
            },
        ),
    }
}

// ---------------------------------------------------------------------------------------
// An independent f64 evaluation of the formulas of docs/longtail.md, written from them
// (plain loops, no shared code with the library beyond the documented noise generator).

/// `(L, ∂L/∂x)` of the documented formula; `dims` = `[N, C, H, W]` (or `[N, C]`).
pub fn spec(
    kind: &Kind,
    x: &[f64],
    y: &[u32],
    dims: &[usize],
    counts: &[u64],
    noise: Option<&[f64]>,
) -> (f64, Vec<f64>) {
    let (n, c) = (dims[0], dims[1]);
    let inner: usize = dims[2..].iter().product();
    let at = |v: usize, k: usize| (v / inner * c + k) * inner + v % inner;
    // Zero counts → the rarest observed class (docs/longtail.md), except for bms (dropped).
    let rarest = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(1) as f64;
    let nn: Vec<f64> = counts
        .iter()
        .map(|&k| if k == 0 { rarest } else { k as f64 })
        .collect();
    let valid = |v: usize| {
        let l = y[v];
        l != IGNORE && (l as usize) < c && !(matches!(kind, Kind::Bms) && counts[l as usize] == 0)
    };
    // Class weights: ce's given ones; cb's (1 − β)/(1 − β^n) rescaled to Σ = C.
    let w: Vec<f64> = match kind {
        Kind::CeWeighted(w) => w.clone(),
        Kind::Cb { beta, .. } => {
            let raw: Vec<f64> = nn
                .iter()
                .map(|&n| (1.0 - beta) / (1.0 - beta.powf(n)))
                .collect();
            let s: f64 = raw.iter().sum();
            raw.iter().map(|r| r * c as f64 / s).collect()
        }
        _ => vec![1.0; c],
    };
    // PAT: S_il.
    let mut s_il = vec![0.0; n * c];
    for v in 0..n * inner {
        if valid(v) {
            s_il[v / inner * c + y[v] as usize] += 1.0;
        }
    }
    let mut total = 0.0;
    let mut norm = 0.0;
    let mut grad = vec![0.0; x.len()];
    for v in 0..n * inner {
        if !valid(v) {
            continue;
        }
        let yv = y[v] as usize;
        // The transformed logits z (None: a dropped class).
        let z: Vec<Option<f64>> = (0..c)
            .map(|k| {
                let xk = x[at(v, k)];
                match kind {
                    Kind::Bms => (counts[k] > 0).then(|| xk + (counts[k] as f64).ln()),
                    Kind::Ldam { s, max_margin } => {
                        let m_of = |k: usize| nn[k].powf(-0.25);
                        let mmax = (0..c).map(m_of).fold(0.0, f64::max);
                        let m = max_margin * m_of(k) / mmax;
                        Some(s * (xk - if k == yv { m } else { 0.0 }))
                    }
                    Kind::Blv { sigma, .. } | Kind::BlvNoise { sigma } => {
                        let sum: f64 = counts.iter().map(|&k| k as f64).sum();
                        let f: Vec<f64> = nn.iter().map(|&nk| sum.ln() - nk.ln()).collect();
                        let fmax = f.iter().copied().fold(0.0, f64::max);
                        let e = at(v, k);
                        let r = match kind {
                            Kind::Blv { seed, .. } => rng::normal(rng::stream_key(*seed), e as u32),
                            _ => noise.expect("noise")[e],
                        };
                        Some(xk + (sigma * r).abs() * f[k] / fmax)
                    }
                    _ => Some(xk),
                }
            })
            .collect();
        let m = z
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().flatten().map(|z| (z - m).exp()).sum::<f64>().ln();
        let logp = z[yv].expect("label class") - lse;
        let p = logp.exp();
        // β, β' (focal and PAT).
        let (beta, dbeta) = match kind {
            Kind::Focal(g) | Kind::Cb { focal: Some(g), .. } => {
                ((1.0 - p).powf(*g), -g * (1.0 - p).powf(g - 1.0))
            }
            Kind::Pat {
                curve: PatCurve::Falling,
                t,
                eps,
                ..
            } => {
                let b = ((1.0 - p - eps) / t).exp();
                (b, -b / t)
            }
            Kind::Pat {
                curve: PatCurve::Rising,
                t,
                ..
            } => {
                let b = ((p - 1.0) / t).exp();
                (b, b / t)
            }
            _ => (1.0, 0.0),
        };
        let detach = matches!(kind, Kind::Pat { detach: true, .. });
        let factor = if detach {
            beta
        } else {
            beta + dbeta * p * logp
        };
        let chain = if let Kind::Ldam { s, .. } = kind {
            *s
        } else {
            1.0
        };
        let u = if let Kind::Pat { .. } = kind {
            1.0 / (n as f64 * s_il[v / inner * c + yv])
        } else {
            1.0
        };
        total += w[yv] * u * -beta * logp;
        norm += match kind {
            Kind::CeWeighted(_) => w[yv],
            Kind::Pat { .. } => 0.0,
            _ => 1.0,
        };
        for k in 0..c {
            if let Some(zk) = z[k] {
                let q = (zk - lse).exp();
                let delta = if k == yv { 1.0 } else { 0.0 };
                grad[at(v, k)] = w[yv] * u * chain * factor * (q - delta);
            }
        }
    }
    if matches!(kind, Kind::Pat { .. }) {
        norm = 1.0;
    }
    if norm == 0.0 {
        return (0.0, vec![0.0; x.len()]);
    }
    grad.iter_mut().for_each(|g| *g /= norm);
    (total / norm, grad)
}

// ---------------------------------------------------------------------------------------
// Inputs

/// Seeded labels in `0..c` with every `ignore_every`-th pixel `IGNORE` (0: none), and
/// `skip` (a class) never used.
pub fn labels(n: usize, c: usize, seed: u64, ignore_every: usize, skip: Option<u32>) -> Vec<u32> {
    uniform(n, seed, 0.0, c as f32)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let l = (v as u32).min(c as u32 - 1);
            if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
                IGNORE
            } else if Some(l) == skip {
                (l + 1) % c as u32
            } else {
                l
            }
        })
        .collect()
}

pub fn label_dims(dims: &[usize]) -> Vec<usize> {
    let mut d = dims.to_vec();
    d.remove(1);
    d
}

/// Logits, labels and noise of a random case.
pub fn inputs(dims: &[usize], seed: u64, ignore_every: usize, skip: Option<u32>) -> Vec<Input> {
    let len: usize = dims.iter().product();
    let ld = label_dims(dims);
    let np: usize = ld.iter().product();
    let noise: Vec<f32> = (0..len as u32)
        .map(|e| rng::normal(seed as u32, e) as f32)
        .collect();
    vec![
        Input::param(dims.to_vec(), uniform(len, seed, -3.0, 3.0)),
        Input::labels(ld, labels(np, dims[1], seed + 1, ignore_every, skip)),
        Input::constant(dims.to_vec(), noise),
    ]
}

pub fn build(inp: &[Input], dev: &Device) -> Vec<Tensor> {
    vec![
        Tensor::from_vec(inp[0].data.clone(), inp[0].shape.clone(), dev)
            .expect("logits")
            .as_param(),
        Tensor::from_u32(
            inp[1].data.iter().map(|&v| v as u32).collect(),
            inp[1].shape.clone(),
            dev,
        )
        .expect("labels"),
        Tensor::from_vec(inp[2].data.clone(), inp[2].shape.clone(), dev).expect("noise"),
    ]
}

/// `(L, ∂L/∂x)` computed by the library on `dev`.
pub fn value_and_grad(kind: &Kind, inp: &[Input], counts: &[u64], dev: &Device) -> (f64, Vec<f64>) {
    let t = build(inp, dev);
    let loss = run(kind, &t, counts).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    assert!(
        loss.dims().is_empty(),
        "{kind:?}: loss shape {}",
        loss.shape()
    );
    let value = loss.to_vec_f64().expect("read")[0];
    let g = backward(&loss).expect("backward");
    let grad = g.get(&t[0]).expect("gradient").to_vec_f64().expect("read");
    (value, grad)
}

/// The CPU reference and (where there is one) the GPU against `spec`.
pub fn against_spec(name: &str, kind: &Kind, inp: &[Input], counts: &[u64]) {
    let x: Vec<f64> = inp[0].data.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<u32> = inp[1].data.iter().map(|&v| v as u32).collect();
    let noise: Vec<f64> = inp[2].data.iter().map(|&v| f64::from(v)).collect();
    let (want, want_g) = spec(kind, &x, &y, inp[0].shape.dims(), counts, Some(&noise));
    assert!(want.is_finite(), "{name}: spec value {want}");
    let (got, got_g) = value_and_grad(kind, inp, counts, &Device::Cpu);
    assert_close(
        &format!("{name}: cpu value vs spec"),
        &[got],
        &[want],
        F64_REFERENCE,
    );
    assert_close(
        &format!("{name}: cpu gradient vs spec"),
        &got_g,
        &want_g,
        F64_REFERENCE,
    );
    if let Some(dev) = gpu() {
        let (got, got_g) = value_and_grad(kind, inp, counts, &dev);
        assert_close(
            &format!("{name}: gpu value vs spec"),
            &[got],
            &[want],
            FORMULA_LOSS,
        );
        assert_close(
            &format!("{name}: gpu gradient vs spec"),
            &got_g,
            &want_g,
            REDUCTION,
        );
    }
}

/// Shapes: odd pixels per image (scalar kernels), multiples of 4 (vec4 kernels), several
/// forward lanes per image (68 = 64 + 4 and 67 pixels), [N, C] logits.
pub const SHAPES: &[&[usize]] = &[
    &[2, 5, 3, 5],
    &[2, 5, 4, 4],
    &[2, 5, 2, 34],
    &[1, 5, 1, 67],
    &[7, 5],
];
pub const COUNTS5: &[u64] = &[5000, 800, 120, 9, 2];

/// One pixel (`[1, C, 1, 1]`) with the given logits and label: `(L, ∂L/∂x)` on every
/// device, each checked against `want` (`tol` on the GPU).
pub fn literal(
    name: &str,
    kind: &Kind,
    x: &[f32],
    y: u32,
    counts: &[u64],
    noise: &[f32],
    want: (f64, &[f64]),
) {
    let c = x.len();
    let inp = vec![
        Input::param([1, c, 1, 1], x.to_vec()),
        Input::labels([1, 1, 1], vec![y]),
        Input::constant([1, c, 1, 1], noise.to_vec()),
    ];
    let (v, g) = value_and_grad(kind, &inp, counts, &Device::Cpu);
    // f32 logits such as ln 3 are rounded: 1e-7 relative.
    let tol = Tol {
        rtol: 1e-6,
        atol: 1e-7,
    };
    assert_close(&format!("{name}: cpu value"), &[v], &[want.0], tol);
    assert_close(&format!("{name}: cpu gradient"), &g, want.1, tol);
    if let Some(dev) = gpu() {
        let (v, g) = value_and_grad(kind, &inp, counts, &dev);
        assert_close(&format!("{name}: gpu value"), &[v], &[want.0], REDUCTION);
        assert_close(&format!("{name}: gpu gradient"), &g, want.1, REDUCTION);
    }
}
