//! `ce`: softmax cross-entropy (docs/longtail.md), as a fused pixel loss: THE
//! cross-entropy of the project (the engine has none of its own).
//!
//! `ℓ_v = −log p_v`, `p = softmax(x)_y`; `L = (1/|V|) Σ_v ℓ_v`, or with class weights
//! `L = Σ_v w_{y_v} ℓ_v / Σ_v w_{y_v}` (PyTorch's `F.cross_entropy(weight=…)`, with
//! `reduction='mean'` and `ignore_index`). Gradient: `∂L/∂x_c = w_y (p_c − δ_cy) / Σ w`
//! (`w = 1` without weights). No valid pixel (or `Σ w = 0`) gives `L = 0` and a zero
//! gradient, never NaN.

use super::pixel::{pixel_loss, ClassTerms, Normalization, PixelConfig};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// Options of [`ce`].
#[derive(Clone, Debug)]
pub struct CeOptions {
    /// Per-class weights `w_c ≥ 0` (`C` values); `None`: the plain mean.
    pub weights: Option<Vec<f64>>,
    /// Label of pixels that take no part (default 255).
    pub ignore_index: u32,
}

impl Default for CeOptions {
    fn default() -> Self {
        CeOptions {
            weights: None,
            ignore_index: 255,
        }
    }
}

/// Cross-entropy of logits `[N, C, H, W]` (or `[N, C]`) against `U32` labels `[N, H, W]`
/// (or `[N]`); a scalar (shape `[]`). See the module docs for the formula.
pub fn ce(logits: &Tensor, labels: &Tensor, opts: &CeOptions) -> Result<Tensor> {
    let mut cfg = PixelConfig::new("ce", opts.ignore_index);
    if opts.weights.is_some() {
        cfg.norm = Normalization::SumWeights;
    }
    let terms = ClassTerms {
        weights: opts.weights.as_deref(),
        ..Default::default()
    };
    pixel_loss(logits, labels, cfg, &terms, None)
}

impl Tensor {
    /// [`ce`] of these logits with optional class weights (`[C]`, `F32`; read back to the
    /// host when on a GPU) and `ignore_index`: a shorthand kept for existing callers, the
    /// same loss through the same kernels as `ce(self, labels, &CeOptions { .. })`.
    pub fn cross_entropy(
        &self,
        labels: &Tensor,
        weights: Option<&Tensor>,
        ignore_index: u32,
    ) -> Result<Tensor> {
        let weights = match weights {
            Some(w) => {
                w.expect_dtype("ce", DType::F32)?;
                Some(w.to_vec_f64()?)
            }
            None => None,
        };
        ce(
            self,
            labels,
            &CeOptions {
                weights,
                ignore_index,
            },
        )
    }
}
