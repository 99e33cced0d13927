//! `ce`: softmax cross-entropy (docs/longtail.md), as a fused pixel loss: THE
//! cross-entropy of the project (the engine has none of its own), optionally with label
//! smoothing (PyTorch's `F.cross_entropy(…, weight=w, ignore_index=…, label_smoothing=ε)`,
//! `reduction='mean'`).
//!
//! Per valid pixel `v` (label `y = y_v ≠ ignore_index`, `y < C`) with `q = softmax(x_v)`
//! over the `C` classes and `p = q_y`, the target is `(1 − ε)·e_y + ε/C`:
//!
//! ```text
//! ℓ_v = (1 − ε)·w_y·(−log p) + (ε/C)·Σ_c w_c·(−log q_c)
//!     = (1 − ε)·w_y·(lse − x_y) + (ε/C)·Σ_c w_c·(lse − x_c),     lse = log Σ_c exp x_c
//! L   = Σ_v ℓ_v / D,     D = |V| (no weights, w = 1) or D = Σ_v w_{y_v} (class weights)
//! ∂L/∂x_c = (((1 − ε)·w_y + (ε/C)·Σ_k w_k)·q_c − (1 − ε)·w_y·δ_cy − (ε/C)·w_c) / D
//! ```
//!
//! Without weights that is `ℓ_v = lse − (1 − ε)·x_y − (ε/C)·Σ_c x_c` and the gradient
//! `(q_c − (1 − ε)·δ_cy − ε/C)/|V|`. With weights it is exactly PyTorch's: the weighted
//! negative log-likelihood `Σ_v w_y(−log p)/Σ_v w_y` times `1 − ε`, plus `ε/C` times the
//! class-weighted sum `Σ_v Σ_c w_c(−log q_c)` divided by the same `Σ_v w_{y_v}` (ATen's
//! `cross_entropy_loss_label_smoothing`). `ε = 0` (the default) is the plain cross-entropy
//! and runs exactly its kernels; `0 ≤ ε ≤ 1` as in PyTorch, anything else is an error. No
//! valid pixel (or `Σ w = 0`) gives `L = 0` and a zero gradient, never NaN (where PyTorch
//! gives NaN).

use serde::{Deserialize, Serialize};

use super::flags::flags;
use super::pixel::{pixel_loss, ClassTerms, Normalization, PixelConfig};
use super::spec::rule;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Options of [`ce`]; also the `label_smoothing` key of a run config's `[loss]` table.
/// `Default` holds the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CeOptions {
    /// Per-class weights `w_c ≥ 0` (`C` values); `None`: the plain mean.
    #[serde(skip)]
    pub weights: Option<Vec<f64>>,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
    /// Label smoothing `ε ∈ [0, 1]` (default 0: none).
    pub label_smoothing: f64,
}

impl Default for CeOptions {
    fn default() -> Self {
        CeOptions {
            weights: None,
            ignore_index: 255,
            label_smoothing: 0.0,
        }
    }
}

impl CeOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let e = self.label_smoothing;
        rule(
            (0.0..=1.0).contains(&e),
            "label_smoothing",
            e,
            "must be in [0, 1]",
        )
    }
}

flags! {
    /// `--label-smoothing`.
    pub struct CeFlags for CeOptions {
        label_smoothing: f64 => "label_smoothing" at |o| o.label_smoothing,
            "Cross-entropy label smoothing ε (ce)";
    }
}

/// Cross-entropy of logits `[N, C, H, W]` (or `[N, C]`) against `U32` labels `[N, H, W]`
/// (or `[N]`); a scalar (shape `[]`). See the module docs for the formula.
pub fn ce(logits: &Tensor, labels: &Tensor, opts: &CeOptions) -> Result<Tensor> {
    let eps = opts.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::shape(
            "ce",
            format!("label_smoothing {eps} is outside [0, 1]"),
        ));
    }
    let mut cfg = PixelConfig::new("ce", opts.ignore_index);
    if opts.weights.is_some() {
        cfg.norm = Normalization::SumWeights;
    }
    cfg.smoothing = eps;
    let terms = ClassTerms {
        weights: opts.weights.as_deref(),
        ..Default::default()
    };
    pixel_loss(logits, labels, cfg, &terms, None)
}

impl Tensor {
    /// [`ce`] of these logits with optional class weights (`[C]`, `F32`; read back to the
    /// host when on a GPU) and `ignore_index`, without label smoothing: a shorthand kept for
    /// existing callers, the same loss through the same kernels as `ce(self, labels,
    /// &CeOptions { .. })`.
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
                label_smoothing: 0.0,
            },
        )
    }
}
