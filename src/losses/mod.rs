//! Long-tail segmentation losses (docs/longtail.md), one file each, each a public function:
//! logits `[N, C, H, W]` (`F32`), labels `[N, H, W]` (`U32`, 255 = ignore by default), an
//! options struct whose `Default` holds the loss's defaults and, where the formula needs
//! them, the training-set class pixel counts → a scalar tensor whose `backward()` gives
//! ∂L/∂logits. Every loss is a fused GPU kernel (forward and backward) with a CPU
//! reference (f64).
//!
//! For training, [`spec`] gathers them into one typed table: the [`Loss`] enum
//! (`train.loss`, `--loss`), the `[loss]` table [`LossConfig`] (the options structs,
//! flattened) and its flags [`LossFlags`] (each loss file's [`flags`] list).
//!
//! The softmax family (`ce`, `focal`, `class_balanced`, `balanced_softmax`, `ldam`, `blv`,
//! `pat`) shares one fused kernel family, [`pixel`]: each loss sets its per-class terms
//! (weights, logit biases, margins, noise amplitudes; computed from the counts by the
//! public helpers below), its modulation `β(p)` and its normalisation. AUCSeg (`aucseg`,
//! `auc_loss`) has its own kernels: a closed form over per-class sums and a tiled pairwise one.

pub mod auc_config;
pub(crate) mod aucseg;
pub mod blv;
pub mod bms;
pub mod cb;
pub mod ce;
pub mod counts;
pub mod flags;
pub mod focal;
pub mod ldam;
pub mod pat;
pub mod pixel;
mod pixel_cpu;
pub(crate) mod pixel_gpu;
pub mod rng;
pub mod spec;

pub use auc_config::{AucMethodName, AucParams, SurrogateName};
pub use aucseg::{
    auc_loss, aucseg, closed_form_scratch_floats, pairwise_subsample, AucClosedSaved, AucMethod,
    AucOptions, AucPairSaved, Surrogate,
};
pub use blv::{blv, blv_amplitudes, BlvOptions};
pub use bms::{balanced_softmax, balanced_softmax_bias, BmsOptions};
pub use cb::{class_balanced, class_balanced_weights, CbOptions};
pub use ce::{ce, CeFlags, CeOptions};
pub use counts::observed_counts;
pub use focal::{focal, FocalOptions};
pub use ldam::{ldam, ldam_margins, LdamOptions};
pub use pat::{pat, PatCurve, PatOptions};
pub use spec::{Loss, LossConfig, LossFlags, StepInput};
