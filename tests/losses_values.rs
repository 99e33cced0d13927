//! The softmax-family losses (docs/longtail.md) on literal values and gradients derived by
//! hand, the PAT paper's Table 1 and PAT's mask-size normalisation.

mod common;
#[path = "common/losses.rs"]
mod losses_common;

use common::*;
use losses_common::*;
use wgseg::losses::{self, CeOptions};
use wgseg::losses::{PatCurve, PatOptions};
use wgseg::{backward, Device, Tensor};

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
    // PAT (docs/longtail.md): ℓ = −β log p for one pixel whose true-class probability is exactly p:
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
