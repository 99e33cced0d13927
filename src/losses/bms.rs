//! `balanced_softmax`: the balanced softmax loss (Ren et al. 2020; docs/longtail.md).
//!
//! `ℓ_v = −log softmax(x + ln n)_y`, `L = (1/|V|) Σ_v ℓ_v`; gradient `q_c − δ_cy` with
//! `q = softmax(x + ln n)`. A class with `n_c = 0` is dropped (`ln 0 = −∞`: it takes no part
//! in the softmax and its logits get gradient 0). A pixel labelled with such a class is an
//! error when the labels are on the CPU; on a GPU it is ignored (checking would need a
//! readback; with counts taken from the training labels it cannot occur in training).

use super::counts::check_counts;
use super::pixel::{pixel_loss, ClassTerms, PixelConfig};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const OP: &str = "balanced_softmax";

/// Options of [`balanced_softmax`].
#[derive(Clone, Debug)]
pub struct BmsOptions {
    /// Label of pixels that take no part (default 255).
    pub ignore_index: u32,
}

impl Default for BmsOptions {
    fn default() -> Self {
        BmsOptions { ignore_index: 255 }
    }
}

/// The logit biases `b_c = ln n_c` (`−∞` for a zero count: the class is dropped). Errors:
/// every count zero.
pub fn balanced_softmax_bias(counts: &[u64]) -> Result<Vec<f64>> {
    if counts.iter().all(|&n| n == 0) {
        return Err(Error::shape(
            OP,
            format!("no class has a pixel: {counts:?}"),
        ));
    }
    Ok(counts
        .iter()
        .map(|&n| {
            if n == 0 {
                f64::NEG_INFINITY
            } else {
                (n as f64).ln()
            }
        })
        .collect())
}

/// Balanced softmax loss of logits `[N, C, H, W]` against `U32` labels, with the
/// training-set class pixel counts; a scalar.
pub fn balanced_softmax(
    logits: &Tensor,
    labels: &Tensor,
    counts: &[u64],
    opts: &BmsOptions,
) -> Result<Tensor> {
    check_counts(OP, logits, counts)?;
    let b = balanced_softmax_bias(counts)?;
    let terms = ClassTerms {
        bias: Some(&b),
        ..Default::default()
    };
    pixel_loss(
        logits,
        labels,
        PixelConfig::new(OP, opts.ignore_index),
        &terms,
        None,
    )
}
