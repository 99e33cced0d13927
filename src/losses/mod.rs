//! Long-tail segmentation losses (SPEC §1–3), one file each, each a public function:
//! logits `[N, C, H, W]` (`F32`), labels `[N, H, W]` (`U32`, 255 = ignore by default), an
//! options struct whose `Default` is SPEC's defaults and, where the formula needs them, the
//! training-set class pixel counts → a scalar tensor whose `backward()` gives ∂L/∂logits.
//! Every loss is a fused GPU kernel (forward and backward) with a CPU reference (f64).

pub(crate) mod aucseg;

pub use aucseg::{
    auc_loss, aucseg, closed_form_scratch_floats, pairwise_subsample, AucClosedSaved, AucMethod,
    AucOptions, AucPairSaved, Surrogate,
};
