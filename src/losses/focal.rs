//! `focal`: the focal loss (Lin et al. 2017; docs/longtail.md).
//!
//! `ℓ_v = −(1 − p)^γ log p`, `L = (1/|V|) Σ_v ℓ_v`; gradient
//! `∂ℓ/∂x_c = [(1 − p)^γ − γ(1 − p)^{γ−1} p log p]·(p_c − δ_cy)`, with the modulating
//! factor differentiated (not detached). Finite at `p → 1` for every `γ ≥ 0` (the second
//! term is evaluated as `γ(1 − p)^γ p·(−log p)/(1 − p)`).

use serde::{Deserialize, Serialize};

use super::flags::flags;
use super::pixel::{pixel_loss, ClassTerms, Modulation, PixelConfig};
use super::spec::rule;
use crate::error::Result;
use crate::tensor::Tensor;

/// Options of [`focal`]; also the `gamma` key of a run config's `[loss]` table (focal and
/// cb-focal). `Default` holds the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FocalOptions {
    /// Focusing parameter `γ ≥ 0` (0 is cross-entropy).
    pub gamma: f64,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
}

impl Default for FocalOptions {
    fn default() -> Self {
        FocalOptions {
            gamma: 2.0,
            ignore_index: 255,
        }
    }
}

impl FocalOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let g = self.gamma;
        rule(g >= 0.0 && g.is_finite(), "gamma", g, "must be ≥ 0")
    }
}

flags! {
    /// `--gamma`.
    pub struct FocalFlags for FocalOptions {
        gamma: f64 => "gamma" at |o| o.gamma, "Focal exponent γ (focal, cb-focal)";
    }
}

/// Focal loss of logits `[N, C, H, W]` (or `[N, C]`) against `U32` labels; a scalar.
pub fn focal(logits: &Tensor, labels: &Tensor, opts: &FocalOptions) -> Result<Tensor> {
    let mut cfg = PixelConfig::new("focal", opts.ignore_index);
    cfg.modulation = Modulation::Focal { gamma: opts.gamma };
    pixel_loss(logits, labels, cfg, &ClassTerms::default(), None)
}
