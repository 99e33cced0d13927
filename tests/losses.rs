//! The softmax-family long-tail losses (`wgseg::losses`, SPEC §1–2): literal values and
//! gradients derived by hand, an independent f64 evaluation of every SPEC formula (value
//! and closed-form gradient), central finite differences and GPU-vs-CPU parity through the
//! harness, the paper's Table 1, PAT's mask-size normalisation, degenerate batches, the
//! per-class helpers, and errors.

mod common;

use common::*;
use wgseg::losses::{self, rng, BlvOptions, BmsOptions, CbOptions, CeOptions, FocalOptions};
use wgseg::losses::{LdamOptions, PatCurve, PatOptions};
use wgseg::{backward, Device, Error, Result, Tensor};

const IGNORE: u32 = 255;

/// One loss with its options, as the tests drive it.
#[derive(Clone, Debug)]
enum Kind {
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

/// Every loss, with SPEC defaults and a few non-default options.
fn kinds(c: usize) -> Vec<Kind> {
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
fn run(kind: &Kind, t: &[Tensor], counts: &[u64]) -> Result<Tensor> {
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
// An independent f64 evaluation of SPEC §1–2, written from the formulas (plain loops, no
// shared code with the library beyond the documented noise generator).

/// `(L, ∂L/∂x)` of SPEC's formula; `dims` = `[N, C, H, W]` (or `[N, C]`).
fn spec(
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
    // Zero counts → the rarest observed class (SPEC §3), except for bms (dropped).
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
        // β, β' (SPEC §1 focal, §2 PAT).
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
fn labels(n: usize, c: usize, seed: u64, ignore_every: usize, skip: Option<u32>) -> Vec<u32> {
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

fn label_dims(dims: &[usize]) -> Vec<usize> {
    let mut d = dims.to_vec();
    d.remove(1);
    d
}

/// Logits, labels and noise of a random case.
fn inputs(dims: &[usize], seed: u64, ignore_every: usize, skip: Option<u32>) -> Vec<Input> {
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

fn build(inp: &[Input], dev: &Device) -> Vec<Tensor> {
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
fn value_and_grad(kind: &Kind, inp: &[Input], counts: &[u64], dev: &Device) -> (f64, Vec<f64>) {
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
fn against_spec(name: &str, kind: &Kind, inp: &[Input], counts: &[u64]) {
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
            SPEC_LOSS,
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
const SHAPES: &[&[usize]] = &[
    &[2, 5, 3, 5],
    &[2, 5, 4, 4],
    &[2, 5, 2, 34],
    &[1, 5, 1, 67],
    &[7, 5],
];
const COUNTS5: &[u64] = &[5000, 800, 120, 9, 2];

#[test]
fn every_loss_matches_its_spec_formula() {
    for (s, dims) in SHAPES.iter().enumerate() {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 1000 + 10 * s as u64 + k as u64, 7, None);
            against_spec(&format!("{kind:?} {dims:?}"), kind, &inp, COUNTS5);
        }
    }
}

#[test]
fn every_loss_differentiates_and_matches_on_the_gpu() {
    // The harness: CPU backward against f64 central differences, GPU (two contexts)
    // against the CPU, forward and gradient.
    for (s, dims) in [&[2usize, 5, 3, 3][..], &[2, 5, 2, 2], &[6, 5]]
        .iter()
        .enumerate()
    {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 2000 + 10 * s as u64 + k as u64, 5, None);
            if matches!(kind, Kind::Pat { detach: true, .. }) {
                // A detached β is by design not the derivative of the forward: no finite
                // differences; its closed form is checked against `spec`, here GPU vs CPU.
                let cpu = value_and_grad(kind, &inp, COUNTS5, &Device::Cpu);
                if let Some(dev) = gpu() {
                    let got = value_and_grad(kind, &inp, COUNTS5, &dev);
                    assert_close("detached value", &[got.0], &[cpu.0], REDUCTION);
                    assert_close("detached gradient", &got.1, &cpu.1, REDUCTION);
                }
                continue;
            }
            check_op(
                &format!("{kind:?} {dims:?}"),
                &inp,
                Check::new(REDUCTION, REDUCTION),
                |t| run(kind, t, COUNTS5),
            );
        }
    }
}

#[test]
fn zero_count_classes() {
    // Class 3 never occurs in the training set: cb, ldam and blv treat it as the rarest
    // class (count 2), bms drops it from the softmax (its logits get gradient 0).
    let counts = [5000, 800, 120, 0, 2];
    for dims in [&[2usize, 5, 3, 5][..], &[2, 5, 4, 4]] {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 3000 + k as u64, 6, Some(3));
            against_spec(
                &format!("zero count {kind:?} {dims:?}"),
                kind,
                &inp,
                &counts,
            );
        }
        let inp = inputs(dims, 3100, 6, Some(3));
        let (_, g) = value_and_grad(&Kind::Bms, &inp, &counts, &Device::Cpu);
        let inner: usize = dims[2..].iter().product();
        for b in 0..dims[0] {
            let start = (b * 5 + 3) * inner;
            assert!(g[start..start + inner].iter().all(|&v| v == 0.0), "{g:?}");
        }
    }
    // A labelled pixel of a dropped class: an error on the CPU (the GPU ignores it).
    let mut inp = inputs(&[1, 5, 2, 2], 3200, 0, Some(3));
    inp[1].data[2] = 3.0;
    let t = build(&inp, &Device::Cpu);
    let e = run(&Kind::Bms, &t, &counts).expect_err("dropped class");
    assert!(e.to_string().contains("pixel 2 is labelled 3"), "{e}");
    if let Some(dev) = gpu() {
        let gpu_value = run(&Kind::Bms, &build(&inp, &dev), &counts)
            .expect("gpu")
            .item()
            .expect("read");
        let mut ignored = inp.clone();
        ignored[1].data[2] = IGNORE as f32;
        let (want, _) = value_and_grad(&Kind::Bms, &ignored, &counts, &Device::Cpu);
        assert_close(
            "bms dropped class ignored on the gpu",
            &[f64::from(gpu_value)],
            &[want],
            SPEC_LOSS,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Literal values derived by hand

/// One pixel (`[1, C, 1, 1]`) with the given logits and label: `(L, ∂L/∂x)` on every
/// device, each checked against `want` (`tol` on the GPU).
fn literal(
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

#[test]
fn literal_values_and_gradients() {
    let ln3 = 3f64.ln() as f32;
    let l43 = (4.0f64 / 3.0).ln();
    // Logits (0, ln 3), label 1: softmax (1/4, 3/4), p = 3/4, −log p = ln(4/3).
    // ce: ℓ = ln(4/3), ∂ℓ/∂x = p − e_y = (1/4, −1/4).
    literal(
        "ce",
        &Kind::Ce,
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (l43, &[0.25, -0.25]),
    );
    // focal γ = 2: ℓ = (1/4)²·ln(4/3); factor (1−p)^γ − γ(1−p)^{γ−1}·p·log p
    // = 1/16 − 2·(1/4)·(3/4)·ln(3/4) = 1/16 + (3/8)·ln(4/3).
    let f = 1.0 / 16.0 + 0.375 * l43;
    literal(
        "focal",
        &Kind::Focal(2.0),
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (l43 / 16.0, &[f / 4.0, -f / 4.0]),
    );
    // cb, β = 0.5, counts (1, 3): raw weights 0.5/(1 − 0.5) = 1 and 0.5/(1 − 0.125) = 4/7,
    // Σ = 11/7, rescaled to Σ = 2: (14/11, 8/11). One pixel of class 1: ℓ = (8/11) ln(4/3).
    let w1 = 8.0 / 11.0;
    literal(
        "cb",
        &Kind::Cb {
            beta: 0.5,
            focal: None,
        },
        &[0.0, ln3],
        1,
        &[1, 3],
        &[0.0; 2],
        (w1 * l43, &[w1 / 4.0, -w1 / 4.0]),
    );
    // bms, counts (1, 0, 3): biases (0, dropped, ln 3); logits (0, 5, 0), label 2:
    // z = (0, ·, ln 3) → p = 3/4, ℓ = ln(4/3), gradient (1/4, 0, −1/4).
    literal(
        "bms",
        &Kind::Bms,
        &[0.0, 5.0, 0.0],
        2,
        &[1, 0, 3],
        &[0.0; 3],
        (l43, &[0.25, 0.0, -0.25]),
    );
    // ldam, s = 2, counts (16, 1): margins 0.5·(1/16)^{1/4} = 0.25 and 0.5. Label 1,
    // logits (0, 0.5 + ln(3)/2): z = 2·(0, ln(3)/2) = (0, ln 3) → ℓ = ln(4/3), gradient
    // s·(q − e_y) = (1/2, −1/2).
    literal(
        "ldam",
        &Kind::Ldam {
            s: 2.0,
            max_margin: 0.5,
        },
        &[0.0, 0.5 + ln3 / 2.0],
        1,
        &[16, 1],
        &[0.0; 2],
        (l43, &[0.5, -0.5]),
    );
    // blv, σ = 1, counts (1, 3): f = (ln 4 − ln 1, ln 4 − ln 3), a = f / ln 4 = (1, ·).
    // Noise (−ln 3, 0): x̃ = (0 + 1·|−ln 3|, 0) = (ln 3, 0); label 0 → p = 3/4,
    // ℓ = ln(4/3), gradient (−1/4, 1/4).
    literal(
        "blv",
        &Kind::BlvNoise { sigma: 1.0 },
        &[0.0, 0.0],
        0,
        &[1, 3],
        &[-ln3, 0.0],
        (l43, &[-0.25, 0.25]),
    );
    // pat falling, T = 1, ε = 0, one pixel (B = 1, S = 1), p = 3/4: β = e^{1/4},
    // ℓ = e^{1/4} ln(4/3); factor β + β'·p·log p = e^{1/4}·(1 + (3/4) ln(4/3)).
    let b = 0.25f64.exp();
    let f = b * (1.0 + 0.75 * l43);
    let pat = |curve, detach| Kind::Pat {
        curve,
        t: 1.0,
        eps: 0.0,
        detach,
    };
    literal(
        "pat falling",
        &pat(PatCurve::Falling, false),
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (b * l43, &[f / 4.0, -f / 4.0]),
    );
    // detached: factor β.
    literal(
        "pat detached",
        &pat(PatCurve::Falling, true),
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (b * l43, &[b / 4.0, -b / 4.0]),
    );
    // rising: β = e^{−1/4}, factor β·(1 − (3/4) ln(4/3)).
    let b = (-0.25f64).exp();
    let f = b * (1.0 - 0.75 * l43);
    literal(
        "pat rising",
        &pat(PatCurve::Rising, false),
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (b * l43, &[f / 4.0, -f / 4.0]),
    );
    // ε = 0.25 cancels the 1 − p = 1/4: β = 1, plain CE.
    literal(
        "pat eps",
        &Kind::Pat {
            curve: PatCurve::Falling,
            t: 1.0,
            eps: 0.25,
            detach: true,
        },
        &[0.0, ln3],
        1,
        &[1, 1],
        &[0.0; 2],
        (l43, &[0.25, -0.25]),
    );
}

#[test]
fn weighted_ce_divides_by_the_sum_of_weights() {
    // Pixels: (0, ln 3) labelled 1 (ℓ = ln(4/3)) and (0, 0) labelled 0 (ℓ = ln 2); weights
    // (1, 3): L = (3 ln(4/3) + 1·ln 2)/(3 + 1).
    let ln3 = 3f32.ln();
    let want = (3.0 * (4.0f64 / 3.0).ln() + 2f64.ln()) / 4.0;
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let x = Tensor::from_vec(vec![0.0, 0.0, ln3, 0.0], [1, 2, 1, 2], &dev).expect("x");
        let y = Tensor::from_u32(vec![1, 0], [1, 1, 2], &dev).expect("y");
        let opts = CeOptions {
            weights: Some(vec![1.0, 3.0]),
            ..Default::default()
        };
        let v = losses::ce(&x, &y, &opts).expect("ce").item().expect("read");
        assert_close("weighted ce", &[f64::from(v)], &[want], REDUCTION);
    }
}

#[test]
fn table_1_of_the_pat_paper() {
    // SPEC §2: ℓ = −β log p for one pixel whose true-class probability is exactly p:
    // logits (0, ln(p/(1 − p))) with label 1 give softmax_1 = p. One pixel, so PAT's
    // 1/(B·S) = 1 and focal's mean is the pixel's loss.
    let ps: [f64; 8] = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
    let rows: [(Kind, [f64; 8]); 4] = [
        (
            Kind::Pat {
                curve: PatCurve::Rising,
                t: 2.0,
                eps: 0.0,
                detach: false,
            },
            [1.08, 0.85, 0.68, 0.54, 0.42, 0.31, 0.20, 0.10],
        ),
        (
            Kind::Pat {
                curve: PatCurve::Rising,
                t: 5.0,
                eps: 0.0,
                detach: false,
            },
            [1.37, 1.05, 0.81, 0.63, 0.47, 0.34, 0.21, 0.10],
        ),
        (
            Kind::Focal(2.0),
            [1.03, 0.59, 0.33, 0.17, 0.08, 0.03, 0.01, 0.00],
        ),
        (
            Kind::Focal(5.0),
            [0.53, 0.20, 0.07, 0.02, 0.01, 0.00, 0.00, 0.00],
        ),
    ];
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        for (kind, want) in &rows {
            // All eight pixels in one batch of eight images ([8, 2] logits): PAT's
            // 1/(B·S) = 1/8 per pixel, so each image's loss is 8·L_i; evaluate one at a time.
            for (p, w) in ps.iter().zip(want) {
                let a = (p / (1.0 - p)).ln() as f32;
                let x = Tensor::from_vec(vec![0.0, a], [1, 2], &dev).expect("x");
                let y = Tensor::from_u32(vec![1], [1], &dev).expect("y");
                let v = run(kind, &[x, y], &[1, 1])
                    .expect("loss")
                    .item()
                    .expect("read");
                assert!(
                    (f64::from(v) - w).abs() <= TWO_DECIMALS.atol,
                    "{kind:?} p = {p} on {dev:?}: {v} vs {w}"
                );
            }
        }
    }
}

#[test]
fn pat_normalises_by_mask_size_per_image() {
    // Image 0: 16 pixels, class 0 on 1 pixel and class 1 on 15, every pixel with true-class
    // probability 0.6 (logit gap ln 1.5). Image 1: all 16 pixels class 1, same p. Each class
    // present in an image contributes its mean loss once: L = (1/2)·(ℓ + ℓ + ℓ) = 1.5·ℓ,
    // ℓ = −β(0.6)·ln 0.6. The class-0 pixel's gradient equals minus the sum of the 15
    // class-1 pixels' gradients of image 0 (equal pulls), each 1/15 of it.
    let gap = 1.5f32.ln();
    let mut x = vec![0.0f32; 2 * 2 * 16];
    let mut y = vec![1u32; 32];
    y[5] = 0;
    for v in 0..32 {
        let (b, i) = (v / 16, v % 16);
        x[(b * 2 + y[v] as usize) * 16 + i] = gap;
    }
    let opts = PatOptions {
        t: 1.0,
        ..Default::default()
    };
    let p = 0.6f64;
    let ell = ((1.0 - p) / 1.0).exp() * -(p.ln());
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        for dims in [[2usize, 2, 4, 4], [2, 2, 1, 16]] {
            let xt = Tensor::from_vec(x.clone(), dims, &dev)
                .expect("x")
                .as_param();
            let yt = Tensor::from_u32(y.clone(), [2, dims[2], dims[3]], &dev).expect("y");
            let loss = losses::pat(&xt, &yt, &opts).expect("pat");
            let v = f64::from(loss.item().expect("read"));
            assert_close(
                &format!("pat mask-size value {dims:?}"),
                &[v],
                &[1.5 * ell],
                REDUCTION,
            );
            let g = backward(&loss)
                .expect("backward")
                .get(&xt)
                .expect("grad")
                .to_vec_f64()
                .expect("read");
            // Image 0, class-0 channel: pixel 5 (label 0) against the others (label 1).
            let single = g[5];
            let many: f64 = (0..16).filter(|&i| i != 5).map(|i| g[i]).sum();
            assert!(single < 0.0, "the class-0 pixel is pulled up: {single}");
            assert_close("equal pulls", &[many], &[-single], REDUCTION);
            for i in (0..16).filter(|&i| i != 5) {
                assert_close(
                    "a class-1 pixel pulls 1/15",
                    &[g[i]],
                    &[-single / 15.0],
                    REDUCTION,
                );
            }
        }
    }
}

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
