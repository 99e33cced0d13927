//! `pat`: pixel-wise adaptive training (docs/longtail.md; the PAT paper's Eq. 4–5).
//!
//! `L = −(1/B) Σ_i Σ_{v ∈ image i, valid} β(p_v)·log p_v / S_{i,y_v}`, `S_il` = valid pixels
//! of class `l` in image `i` (counted on the device), `B` = images in the batch: every class
//! present in an image contributes its mean pixel loss once. `β = exp((1 − p − ε)/T)`
//! (`Falling`, default) or `exp((p − 1)/T)` (`Rising`, the curve of the paper's Table 1).
//! Gradient `∂ℓ/∂x_c = (β + β'(p)·p·log p)·(p_c − δ_cy)/(B·S_{i,y})` with `β' = ∓β/T`, or
//! `β·(p_c − δ_cy)/(B·S)` with `detach`.

use serde::{Deserialize, Serialize};

use super::flags::{flags, show_value_enum};
use super::pixel::{pixel_loss, ClassTerms, Modulation, Normalization, PixelConfig};
use super::spec::rule;
use crate::error::Result;
use crate::tensor::Tensor;

/// The weight curve `β(p)` of [`pat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PatCurve {
    /// `β = exp((1 − p − ε)/T)`: more weight on low-confidence pixels (Eq. 5).
    #[default]
    Falling,
    /// `β = exp((p − 1)/T)` (the paper's Table 1).
    Rising,
}

show_value_enum!(PatCurve);

/// Options of [`pat`]; also the `pat_*` keys of a run config's `[loss]` table. `Default`
/// holds the defaults (`T` the paper's best).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatOptions {
    #[serde(rename = "pat_curve")]
    pub curve: PatCurve,
    /// Temperature `T > 0`.
    #[serde(rename = "pat_t")]
    pub t: f64,
    /// `ε` of the falling curve.
    #[serde(rename = "pat_eps")]
    pub eps: f64,
    /// Treat `β` as a constant in the gradient.
    #[serde(rename = "pat_detach")]
    pub detach: bool,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
}

impl Default for PatOptions {
    fn default() -> Self {
        PatOptions {
            curve: PatCurve::default(),
            t: 20.0,
            eps: 0.0,
            detach: false,
            ignore_index: 255,
        }
    }
}

impl PatOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let (t, e) = (self.t, self.eps);
        rule(t > 0.0 && t.is_finite(), "pat_t", t, "must be > 0")?;
        rule(e.is_finite(), "pat_eps", e, "must be finite")
    }
}

flags! {
    /// `--pat-*`.
    pub struct PatFlags for PatOptions {
        #[arg(value_name = "CURVE")]
        pat_curve: PatCurve => "pat_curve" at |o| o.curve, "PAT weight curve";
        pat_t: f64 => "pat_t" at |o| o.t, "PAT temperature T";
        pat_eps: f64 => "pat_eps" at |o| o.eps, "PAT ε of the falling curve";
        #[arg(num_args = 0, default_missing_value = "true")]
        pat_detach: bool => "pat_detach" at |o| o.detach,
            "Treat PAT's weight as a constant in the gradient";
    }
}

/// PAT loss of logits `[N, C, H, W]` (or `[N, C]`, each row an image of one pixel) against
/// `U32` labels; a scalar.
pub fn pat(logits: &Tensor, labels: &Tensor, opts: &PatOptions) -> Result<Tensor> {
    let mut cfg = PixelConfig::new("pat", opts.ignore_index);
    cfg.modulation = match opts.curve {
        PatCurve::Falling => Modulation::Falling {
            t: opts.t,
            eps: opts.eps,
        },
        PatCurve::Rising => Modulation::Rising { t: opts.t },
    };
    cfg.detach = opts.detach;
    cfg.norm = Normalization::PerImageClass;
    pixel_loss(logits, labels, cfg, &ClassTerms::default(), None)
}
