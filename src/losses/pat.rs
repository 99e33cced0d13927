//! `pat`: pixel-wise adaptive training (SPEC §2, the PAT paper's Eq. 4–5).
//!
//! `L = −(1/B) Σ_i Σ_{v ∈ image i, valid} β(p_v)·log p_v / S_{i,y_v}`, `S_il` = valid pixels
//! of class `l` in image `i` (counted on the device), `B` = images in the batch: every class
//! present in an image contributes its mean pixel loss once. `β = exp((1 − p − ε)/T)`
//! (`Falling`, default) or `exp((p − 1)/T)` (`Rising`, the curve of the paper's Table 1).
//! Gradient `∂ℓ/∂x_c = (β + β'(p)·p·log p)·(p_c − δ_cy)/(B·S_{i,y})` with `β' = ∓β/T`, or
//! `β·(p_c − δ_cy)/(B·S)` with `detach`.

use super::pixel::{pixel_loss, ClassTerms, Modulation, Normalization, PixelConfig};
use crate::error::Result;
use crate::tensor::Tensor;

/// The weight curve `β(p)` of [`pat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PatCurve {
    /// `β = exp((1 − p − ε)/T)`: more weight on low-confidence pixels (Eq. 5).
    #[default]
    Falling,
    /// `β = exp((p − 1)/T)` (the paper's Table 1).
    Rising,
}

/// Options of [`pat`].
#[derive(Clone, Debug)]
pub struct PatOptions {
    pub curve: PatCurve,
    /// Temperature `T > 0` (default 20, the paper's best).
    pub t: f64,
    /// `ε` of the falling curve (default 0).
    pub eps: f64,
    /// Treat `β` as a constant in the gradient (default false).
    pub detach: bool,
    /// Label of pixels that take no part (default 255).
    pub ignore_index: u32,
}

impl Default for PatOptions {
    fn default() -> Self {
        PatOptions {
            curve: PatCurve::Falling,
            t: 20.0,
            eps: 0.0,
            detach: false,
            ignore_index: 255,
        }
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
