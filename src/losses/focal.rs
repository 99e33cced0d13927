//! `focal`: the focal loss (Lin et al. 2017; SPEC §1).
//!
//! `ℓ_v = −(1 − p)^γ log p`, `L = (1/|V|) Σ_v ℓ_v`; gradient
//! `∂ℓ/∂x_c = [(1 − p)^γ − γ(1 − p)^{γ−1} p log p]·(p_c − δ_cy)`, with the modulating
//! factor differentiated (not detached). Finite at `p → 1` for every `γ ≥ 0` (the second
//! term is evaluated as `γ(1 − p)^γ p·(−log p)/(1 − p)`).

use super::pixel::{pixel_loss, ClassTerms, Modulation, PixelConfig};
use crate::error::Result;
use crate::tensor::Tensor;

/// Options of [`focal`].
#[derive(Clone, Debug)]
pub struct FocalOptions {
    /// Focusing parameter `γ ≥ 0` (default 2; 0 is cross-entropy).
    pub gamma: f64,
    /// Label of pixels that take no part (default 255).
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

/// Focal loss of logits `[N, C, H, W]` (or `[N, C]`) against `U32` labels; a scalar.
pub fn focal(logits: &Tensor, labels: &Tensor, opts: &FocalOptions) -> Result<Tensor> {
    let mut cfg = PixelConfig::new("focal", opts.ignore_index);
    cfg.modulation = Modulation::Focal { gamma: opts.gamma };
    pixel_loss(logits, labels, cfg, &ClassTerms::default(), None)
}
