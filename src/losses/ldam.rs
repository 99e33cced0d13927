//! `ldam`: the label-distribution-aware margin loss (Cao et al. 2019; docs/longtail.md).
//!
//! `ℓ_v = −log softmax(z)_y`, `z = s·(x − m_y e_y)` (the margin of the true class is
//! subtracted from its logit, then everything is scaled by `s`), `L = (1/|V|) Σ_v ℓ_v`;
//! gradient `∂ℓ/∂x_c = s·(softmax(z)_c − δ_cy)`. Margins `m_c ∝ n_c^{−1/4}` with
//! `max_c m_c = max_margin` ([`ldam_margins`]).

use serde::{Deserialize, Serialize};

use super::counts::{check_counts, observed_counts};
use super::flags::flags;
use super::pixel::{pixel_loss, ClassTerms, PixelConfig};
use super::spec::rule;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const OP: &str = "ldam";

/// Options of [`ldam`]; also the `ldam_s` and `ldam_max_margin` keys of a run config's
/// `[loss]` table. `Default` holds the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LdamOptions {
    /// Logit scale `s > 0`.
    #[serde(rename = "ldam_s")]
    pub s: f64,
    /// The largest margin, that of the rarest class.
    #[serde(rename = "ldam_max_margin")]
    pub max_margin: f64,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
}

impl Default for LdamOptions {
    fn default() -> Self {
        LdamOptions {
            s: 30.0,
            max_margin: 0.5,
            ignore_index: 255,
        }
    }
}

impl LdamOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let (s, m) = (self.s, self.max_margin);
        rule(s > 0.0 && s.is_finite(), "ldam_s", s, "must be > 0")?;
        rule(
            m > 0.0 && m.is_finite(),
            "ldam_max_margin",
            m,
            "must be > 0",
        )
    }
}

flags! {
    /// `--ldam-s`, `--ldam-margin`.
    pub struct LdamFlags for LdamOptions {
        ldam_s: f64 => "ldam_s" at |o| o.s, "LDAM logit scale s";
        ldam_margin: f64 => "ldam_max_margin" at |o| o.max_margin,
            "LDAM largest margin (the rarest class's)";
    }
}

/// Margins `m_c = max_margin · (n_min / n_c)^{1/4}` (∝ `n_c^{−1/4}`, largest for the rarest
/// class; a zero count is treated as the rarest observed class). Errors: a negative or
/// non-finite `max_margin`, no non-zero count.
pub fn ldam_margins(counts: &[u64], max_margin: f64) -> Result<Vec<f64>> {
    if !(max_margin.is_finite() && max_margin >= 0.0) {
        return Err(Error::shape(
            OP,
            format!("max_margin {max_margin} must be ≥ 0"),
        ));
    }
    let n = observed_counts(counts)?;
    let n_min = n.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(n.iter()
        .map(|&n| max_margin * (n_min / n).powf(0.25))
        .collect())
}

/// LDAM loss of logits `[N, C, H, W]` against `U32` labels, with the training-set class
/// pixel counts; a scalar.
pub fn ldam(
    logits: &Tensor,
    labels: &Tensor,
    counts: &[u64],
    opts: &LdamOptions,
) -> Result<Tensor> {
    check_counts(OP, logits, counts)?;
    let m = ldam_margins(counts, opts.max_margin)?;
    let mut cfg = PixelConfig::new(OP, opts.ignore_index);
    cfg.scale = opts.s;
    let terms = ClassTerms {
        margins: Some(&m),
        ..Default::default()
    };
    pixel_loss(logits, labels, cfg, &terms, None)
}
