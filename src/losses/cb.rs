//! `class_balanced`: the class-balanced loss (Cui et al. 2019; docs/longtail.md), on cross-entropy
//! or, with `focal: Some(γ)`, on the focal loss (`cb-focal`).
//!
//! `ℓ_v = w_{y_v} · ℓ_base`, `L = (1/|V|) Σ_v ℓ_v` (the mean over valid pixels, not `Σ w`);
//! gradient `w_y ×` the base loss's gradient. Weights from the training-set class pixel
//! counts: `w_c = (1 − β)/(1 − β^{n_c})`, rescaled so that `Σ_c w_c = C`
//! ([`class_balanced_weights`]).

use serde::{Deserialize, Serialize};

use super::counts::{check_counts, observed_counts};
use super::flags::flags;
use super::pixel::{pixel_loss, ClassTerms, Modulation, PixelConfig};
use super::spec::rule;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const OP: &str = "class_balanced";

/// Options of [`class_balanced`]; also the `cb_beta` key of a run config's `[loss]` table
/// (cb and cb-focal, whose `γ` is the focal loss's `gamma`). `Default` holds the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CbOptions {
    /// `β ∈ [0, 1]` of the effective number `(1 − β^n)/(1 − β)` (a config needs
    /// `0 < β < 1`).
    #[serde(rename = "cb_beta")]
    pub beta: f64,
    /// `Some(γ)`: class-balanced focal loss with focusing parameter `γ`; `None`: on CE.
    #[serde(skip)]
    pub focal: Option<f64>,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
}

impl Default for CbOptions {
    fn default() -> Self {
        CbOptions {
            beta: 0.9999,
            focal: None,
            ignore_index: 255,
        }
    }
}

impl CbOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let b = self.beta;
        rule(b > 0.0 && b < 1.0, "cb_beta", b, "must be in (0, 1)")
    }
}

flags! {
    /// `--cb-beta`.
    pub struct CbFlags for CbOptions {
        cb_beta: f64 => "cb_beta" at |o| o.beta, "Class-balanced β (cb, cb-focal)";
    }
}

/// Class-balanced weights `w_c = (1 − β)/(1 − β^{n_c})` rescaled to `Σ_c w_c = C`, from
/// the training-set pixel counts (a zero count is treated as the rarest observed class).
/// `1 − β^n` is evaluated as `−expm1(n ln β)` (exact for `β` near 1 and large `n`); `β = 1`
/// is the limit `w ∝ 1/n`, `β = 0` gives `w = 1`. Errors: `β ∉ [0, 1]`, no non-zero count.
pub fn class_balanced_weights(counts: &[u64], beta: f64) -> Result<Vec<f64>> {
    if !(0.0..=1.0).contains(&beta) {
        return Err(Error::shape(OP, format!("β = {beta} is not in [0, 1]")));
    }
    let n = observed_counts(counts)?;
    let raw: Vec<f64> = n
        .iter()
        .map(|&n| {
            if beta == 1.0 {
                1.0 / n
            } else if beta == 0.0 {
                1.0
            } else {
                1.0 / -(n * beta.ln()).exp_m1()
            }
        })
        .collect();
    let sum: f64 = raw.iter().sum();
    Ok(raw.iter().map(|w| w * n.len() as f64 / sum).collect())
}

/// Class-balanced (focal) loss of logits `[N, C, H, W]` against `U32` labels, with the
/// training-set class pixel counts (`C` of them); a scalar.
pub fn class_balanced(
    logits: &Tensor,
    labels: &Tensor,
    counts: &[u64],
    opts: &CbOptions,
) -> Result<Tensor> {
    check_counts(OP, logits, counts)?;
    let w = class_balanced_weights(counts, opts.beta)?;
    let mut cfg = PixelConfig::new(OP, opts.ignore_index);
    if let Some(gamma) = opts.focal {
        cfg.modulation = Modulation::Focal { gamma };
    }
    let terms = ClassTerms {
        weights: Some(&w),
        ..Default::default()
    };
    pixel_loss(logits, labels, cfg, &terms, None)
}
