//! Training-set class pixel counts → the per-class vectors of the count-based losses.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The counts as `f64`, with every zero count replaced by the smallest non-zero one: a
/// class never seen in the training set is treated as the rarest observed class (docs/longtail.md,
/// for `class_balanced`, `ldam` and `blv`). Errors: no counts, or every count zero.
pub fn observed_counts(counts: &[u64]) -> Result<Vec<f64>> {
    let rarest = counts
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .min()
        .ok_or_else(|| Error::shape("class counts", format!("no class has a pixel: {counts:?}")))?;
    Ok(counts
        .iter()
        .map(|&n| if n == 0 { rarest as f64 } else { n as f64 })
        .collect())
}

/// Checks that there is one count per class of `logits` (`[N, C, …]`).
pub(crate) fn check_counts(op: &'static str, logits: &Tensor, counts: &[u64]) -> Result<()> {
    let c = logits.dims().get(1).copied().unwrap_or(0);
    if counts.len() != c {
        return Err(Error::shape(
            op,
            format!(
                "{} class counts for logits {} ({c} classes)",
                counts.len(),
                logits.shape()
            ),
        ));
    }
    Ok(())
}
