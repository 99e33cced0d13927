//! AUCSeg's pixel-level AUC loss (docs/longtail.md): `L = L_ce + λ·L_auc`.
//!
//! Shapes: logits `x` `[N, C, H, W]` (`F32`), labels `y` `[N, H, W]` (`U32`). A pixel `v` is
//! valid when `y_v ≠ ignore_index` and `y_v < C` (a label `≥ C` is treated as ignored, as in
//! [`super::ce`]). Invalid pixels contribute nothing and get gradient 0.
//!
//! Scores are per-class sigmoids `s_{v,c} = σ(x_{v,c})` (not softmax). All valid pixels of
//! the batch are pooled; `n_c` is the **batch** count of class `c` and `K` the number of
//! classes with `n_c > 0`. One-vs-one, both sides of a pair scored by the class-`i` channel:
//!
//! ```text
//! L_auc = 1/(K(K−1)) · Σ_{i present} Σ_{j present, j≠i} 1/(n_i n_j) ·
//!         Σ_{p: y_p=i} Σ_{q: y_q=j} ℓ(s_{p,i} − s_{q,i})
//! ```
//!
//! with the surrogate `ℓ(d)` ([`Surrogate`], margin `m`): square `½(m − d)²` (default,
//! m = 1), squared hinge `max(0, m − d)²` (default m = 0.5: with sigmoid scores `d ∈ [−1, 1]`,
//! so for m ≥ 1 it never clips and is twice the square loss), logistic `ln(1 + e^{−d})` (no
//! margin). `K < 2` gives `L_auc = 0` and a zero gradient (never NaN); an absent class gets
//! no gradient in its channel.
//!
//! Gradient: `∂L/∂x_{v,i} = s_{v,i}(1 − s_{v,i}) · ∂L/∂s_{v,i}` with, per pair term,
//! `∂/∂s_{p,i} = ℓ'(d)/(K(K−1) n_i n_j)` and `∂/∂s_{q,i} = −ℓ'(d)/(K(K−1) n_i n_j)`.
//!
//! Two implementations ([`AucMethod`]), which agree on the square surrogate:
//!
//! - **Closed form** (default, square surrogate only; `closed.rs`): expanding the square, with
//!   `a_{v,i} = s_{v,i} − m·δ_{i,y_v}`, `SA_i = Σ_{y_v=i} a_{v,i}`, `QA_i = Σ_{y_v=i} a²_{v,i}`,
//!   `NB_i = Σ_{y_v≠i} s_{v,i}/n_{y_v}`, `R_i = Σ_{y_v≠i} s²_{v,i}/n_{y_v}`:
//!   `L_auc = Σ_{i present} (½[(K−1)/n_i·QA_i + R_i] − SA_i·NB_i/n_i) / (K(K−1))`, and
//!   `∂L/∂x_{v,i} = s(1−s)/(K(K−1)) · ((K−1)·a_{v,i} − NB_i)/n_i` if `y_v = i`, else
//!   `s(1−s)/(K(K−1)) · (s_{v,i} − SA_i/n_i)/n_{y_v}`. O(P·C) time; the extra device memory
//!   is a fixed number of per-class partial sums (independent of the pixel count), nothing
//!   is read back.
//! - **Tiled pairwise** (`pairwise.rs`): the double sum itself, O(Σ n_i n_j), for every
//!   surrogate. Each class is first subsampled to at most
//!   [`AucOptions::max_pixels_per_class`] pixels (uniformly without replacement, seeded by
//!   [`AucOptions::seed`], see [`pairwise_subsample`]); `n_i` is then the subsampled count.
//!   On a GPU this path reads the labels back to the host once per call to build the
//!   per-class pixel lists (the non-default path; the closed form reads nothing back).
//!
//! The CE part of [`aucseg`] is [`super::ce`] (the pixel-loss kernels, mean over valid
//! pixels). Every variant is recorded on the tape through the engine's door for fused ops
//! ([`crate::autograd::record_custom`]): [`AucClosedSaved`] and [`AucPairSaved`] are the
//! [`CustomOp`]s of the two `L_auc` paths, `AucSegOp` that of the fused closed-form `aucseg`.

pub(crate) mod closed;
pub(crate) mod pairwise;

pub use closed::{closed_form_scratch_floats, AucClosedSaved};
pub use pairwise::{pairwise_subsample, AucPairSaved};

use std::sync::Arc;

use super::ce::{ce, CeOptions};
use super::pixel::{pixel_loss_parts, ClassTerms, PixelConfig, PixelLossOp};
use crate::autograd::{record_custom, CustomOp};
use crate::error::{Error, Result};
use crate::ops::softmax::u32_elements;
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Tensor};

const OP: &str = "auc_loss";

/// The pairwise surrogate `ℓ(d)` of a score difference `d = s_p − s_q` (margin `m`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Surrogate {
    /// `½(m − d)²` (AUCSeg's loss; the only one with a closed form here).
    #[default]
    Square,
    /// `max(0, m − d)²`.
    SqHinge,
    /// `ln(1 + e^{−d})` (the margin is not used).
    Logistic,
}

impl Surrogate {
    /// The margin used when [`AucOptions::margin`] is `None`: 0.5 for the squared hinge
    /// (with m ≥ 1 it never clips), 1 otherwise.
    pub fn default_margin(self) -> f64 {
        match self {
            Surrogate::SqHinge => 0.5,
            Surrogate::Square | Surrogate::Logistic => 1.0,
        }
    }

    /// `(ℓ(d), ℓ'(d))` in f64 (the CPU reference).
    pub fn eval(self, d: f64, m: f64) -> (f64, f64) {
        match self {
            Surrogate::Square => (0.5 * (m - d) * (m - d), -(m - d)),
            Surrogate::SqHinge => {
                let h = (m - d).max(0.0);
                (h * h, -2.0 * h)
            }
            Surrogate::Logistic => {
                let l = (-d).max(0.0) + (-d.abs()).exp().ln_1p();
                (l, -1.0 / (1.0 + d.exp()))
            }
        }
    }

    /// The `SURR` override of shaders/auc_pairwise.wgsl.
    pub(crate) fn code(self) -> u32 {
        match self {
            Surrogate::Square => 0,
            Surrogate::SqHinge => 1,
            Surrogate::Logistic => 2,
        }
    }
}

/// Which implementation computes `L_auc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AucMethod {
    /// Per-class sums, O(P·C) (square surrogate only).
    #[default]
    ClosedForm,
    /// The tiled pairwise kernel, O(Σ n_i n_j) after the per-class cap.
    Pairwise,
}

/// Options of [`aucseg`] and [`auc_loss`]; `Default` is AUCSeg's setting (docs/longtail.md).
#[derive(Clone, Debug, PartialEq)]
pub struct AucOptions {
    /// Weight of the AUC term in [`aucseg`] (1; the paper uses 4 for 150 classes).
    pub lambda: f64,
    /// Margin `m`; `None` takes [`Surrogate::default_margin`] (1, or 0.5 for `SqHinge`).
    pub margin: Option<f64>,
    pub surrogate: Surrogate,
    pub method: AucMethod,
    /// Pairwise path: at most this many pixels per class (uniform subsample). 4096.
    pub max_pixels_per_class: usize,
    /// Seed of the pairwise subsample.
    pub seed: u64,
    pub ignore_index: u32,
}

impl Default for AucOptions {
    fn default() -> Self {
        AucOptions {
            lambda: 1.0,
            margin: None,
            surrogate: Surrogate::Square,
            method: AucMethod::ClosedForm,
            max_pixels_per_class: 4096,
            seed: 0,
            ignore_index: 255,
        }
    }
}

impl AucOptions {
    /// The margin in effect (the explicit one, else the surrogate's default).
    pub fn effective_margin(&self) -> f64 {
        self.margin
            .unwrap_or_else(|| self.surrogate.default_margin())
    }
}

/// `L = L_ce + λ·L_auc` (see the module docs): [`ce`] with `opts.ignore_index`
/// plus `opts.lambda` times [`auc_loss`]. Returns a scalar; `backward()` gives `∂L/∂x`.
///
/// With the closed form the two terms are one fused op: the AUC forward adds its value to
/// cross-entropy's loss on the device, and the backward adds the AUC gradient in place onto
/// cross-entropy's (one logits-sized gradient, no sum pass). The pairwise path adds the two
/// losses as tensors.
pub fn aucseg(logits: &Tensor, labels: &Tensor, opts: &AucOptions) -> Result<Tensor> {
    let ce_opts = CeOptions {
        weights: None,
        ignore_index: opts.ignore_index,
        ..Default::default()
    };
    if opts.method == AucMethod::Pairwise {
        let auc = auc_scaled(logits, labels, opts, opts.lambda)?;
        let ce = ce(logits, labels, &ce_opts)?;
        return ce.add(&auc);
    }
    let lay = check(logits, labels, opts, opts.lambda)?;
    closed_form_only(opts)?;
    // `ce` without the tape: the same configuration as `ce(logits, labels, &ce_opts)`.
    let (ce, ce_op) = pixel_loss_parts(
        logits,
        labels,
        PixelConfig::new("ce", opts.ignore_index),
        &ClassTerms::default(),
        None,
    )?;
    let (loss, auc) = closed::forward(
        logits,
        labels,
        lay,
        opts.ignore_index,
        opts.effective_margin(),
        opts.lambda,
        Some(ce),
    )?;
    let loss = Tensor::from_storage(loss, Shape(vec![]), DType::F32);
    record_custom(&loss, &[logits], Arc::new(AucSegOp { ce: ce_op, auc }))
}

/// The tape's record of the fused closed-form `aucseg` (input: the logits): its backward
/// adds the AUC gradient in place onto cross-entropy's.
#[derive(Debug)]
struct AucSegOp {
    ce: PixelLossOp,
    auc: AucClosedSaved,
}

impl CustomOp for AucSegOp {
    fn name(&self) -> &'static str {
        "aucseg"
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let ce = self.ce.grad(x, g)?;
        Ok(vec![Some(closed::backward_into(
            x,
            &self.auc,
            g,
            Some(ce),
        )?)])
    }
}

/// The closed form exists for the square surrogate only.
fn closed_form_only(opts: &AucOptions) -> Result<()> {
    if opts.surrogate != Surrogate::Square {
        return Err(Error::shape(
            OP,
            format!(
                "the closed form exists only for the square surrogate, not {:?}; \
                 use AucMethod::Pairwise",
                opts.surrogate
            ),
        ));
    }
    Ok(())
}

/// `L_auc` alone (not multiplied by `λ`), by `opts.method` (see the module docs).
///
/// Errors: logits not `F32` `[N, C, H, W]` with `N·H·W·C > 0`, labels not `U32` `[N, H, W]`,
/// different devices, a non-finite margin or λ, `max_pixels_per_class = 0` on the pairwise
/// path, or the closed form asked for a surrogate other than `Square`.
pub fn auc_loss(logits: &Tensor, labels: &Tensor, opts: &AucOptions) -> Result<Tensor> {
    auc_scaled(logits, labels, opts, 1.0)
}

/// `lambda · L_auc`, the scale folded into the op (its backward scales the gradient).
fn auc_scaled(logits: &Tensor, labels: &Tensor, opts: &AucOptions, lambda: f64) -> Result<Tensor> {
    let lay = check(logits, labels, opts, lambda)?;
    let margin = opts.effective_margin();
    match opts.method {
        AucMethod::ClosedForm => {
            closed_form_only(opts)?;
            let (loss, saved) =
                closed::forward(logits, labels, lay, opts.ignore_index, margin, lambda, None)?;
            let loss = Tensor::from_storage(loss, Shape(vec![]), DType::F32);
            record_custom(&loss, &[logits], Arc::new(saved))
        }
        AucMethod::Pairwise => pairwise::forward(
            logits,
            labels,
            lay,
            &pairwise::PairOptions {
                ignore_index: opts.ignore_index,
                margin,
                lambda,
                surrogate: opts.surrogate,
                cap: opts.max_pixels_per_class,
                seed: opts.seed,
            },
        ),
    }
}

/// Logits `[n, c, inner]` (`inner = H·W`): the pixel losses' layout.
pub(crate) use super::pixel::Layout;

/// σ(x) in f64.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn check(logits: &Tensor, labels: &Tensor, opts: &AucOptions, lambda: f64) -> Result<Layout> {
    logits.expect_dtype(OP, DType::F32)?;
    labels.expect_dtype(OP, DType::U32)?;
    let d = logits.dims();
    if d.len() != 4 {
        return Err(Error::shape(
            OP,
            format!("logits must be [N, C, H, W], got {}", logits.shape()),
        ));
    }
    let want = [d[0], d[2], d[3]];
    if labels.dims() != want {
        return Err(Error::shape(
            OP,
            format!(
                "labels must be [{}, {}, {}] for logits {}, got {}",
                d[0],
                d[2],
                d[3],
                logits.shape(),
                labels.shape()
            ),
        ));
    }
    if logits.numel() == 0 {
        return Err(Error::shape(
            OP,
            format!("empty logits {} (no classes or no pixels)", logits.shape()),
        ));
    }
    let margin = opts.effective_margin();
    if !margin.is_finite() || !lambda.is_finite() {
        return Err(Error::shape(
            OP,
            format!("margin ({margin}) and lambda ({lambda}) must be finite"),
        ));
    }
    if opts.method == AucMethod::Pairwise && opts.max_pixels_per_class == 0 {
        return Err(Error::shape(OP, "max_pixels_per_class must be at least 1"));
    }
    same_device(OP, &[logits, labels])?;
    u32_elements(OP, logits.numel())?;
    Ok(Layout::of(d))
}
