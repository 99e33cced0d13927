//! `blv`: balanced logit variation (Wang et al. 2023; docs/longtail.md).
//!
//! `ℓ_v = −log softmax(x̃)_y`, `x̃_c = x_c + a_c·|r_c|`, `a_c = |σ|·f_c / max_k f_k`,
//! `f_c = ln Σn − ln n_c`, with standard-normal draws `r` per logit element (so `σ|r|` is
//! the magnitude of an `N(0, σ²)` draw, as in the official code's `variation.abs()`);
//! `L = (1/|V|) Σ_v ℓ_v`; gradient `softmax(x̃)_c − δ_cy` (the noise is a constant).
//! The noise is either the given tensor `noise` (`[N, C, H, W]` standard-normal draws) or,
//! without one, generated on the device from `seed` by the counter-based generator of
//! [`super::rng`] (the CPU reference draws the same numbers). Training only: pass a fresh
//! seed every step, e.g. [`super::rng::step_seed`]`(run_seed, step)`.

use serde::{Deserialize, Serialize};

use super::counts::{check_counts, observed_counts};
use super::flags::flags;
use super::pixel::{pixel_loss, ClassTerms, NoiseSource, PixelConfig};
use super::rng;
use super::spec::rule;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const OP: &str = "blv";

/// Options of [`blv`]; also the `blv_sigma` key of a run config's `[loss]` table (the
/// other fields are per call). `Default` holds the defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BlvOptions {
    /// Standard deviation `σ` of the variation (its sign is ignored).
    #[serde(rename = "blv_sigma")]
    pub sigma: f64,
    /// Seed of the generated noise (used when `noise` is `None`).
    #[serde(skip)]
    pub seed: u64,
    /// Explicit standard-normal draws, the logits' shape and device.
    #[serde(skip)]
    pub noise: Option<Tensor>,
    /// Label of pixels that take no part (default 255).
    #[serde(skip)]
    pub ignore_index: u32,
}

/// Equal values, and the same noise tensor (or none on both sides).
impl PartialEq for BlvOptions {
    fn eq(&self, o: &BlvOptions) -> bool {
        let same_noise = match (&self.noise, &o.noise) {
            (None, None) => true,
            (Some(a), Some(b)) => a.id() == b.id(),
            _ => false,
        };
        self.sigma == o.sigma
            && self.seed == o.seed
            && self.ignore_index == o.ignore_index
            && same_noise
    }
}

impl Default for BlvOptions {
    fn default() -> Self {
        BlvOptions {
            sigma: 0.5,
            seed: 0,
            noise: None,
            ignore_index: 255,
        }
    }
}

impl BlvOptions {
    /// Checks the configurable values.
    pub fn check(&self) -> Result<()> {
        let s = self.sigma;
        rule(s >= 0.0 && s.is_finite(), "blv_sigma", s, "must be ≥ 0")
    }
}

flags! {
    /// `--blv-sigma`.
    pub struct BlvFlags for BlvOptions {
        blv_sigma: f64 => "blv_sigma" at |o| o.sigma, "BLV noise standard deviation σ";
    }
}

/// Noise amplitudes `a_c = |σ|·f_c / max_k f_k`, `f_c = ln Σn − ln n_c` (a zero count is
/// treated as the rarest observed class; all `a = 0` when every `f` is 0). Errors: a
/// non-finite `σ`, no non-zero count.
pub fn blv_amplitudes(counts: &[u64], sigma: f64) -> Result<Vec<f64>> {
    if !sigma.is_finite() {
        return Err(Error::shape(OP, format!("σ = {sigma} is not finite")));
    }
    let n = observed_counts(counts)?;
    let total: f64 = counts.iter().map(|&n| n as f64).sum();
    let f: Vec<f64> = n.iter().map(|&n| total.ln() - n.ln()).collect();
    let max = f.iter().copied().fold(0.0, f64::max);
    Ok(f.iter()
        .map(|&f| {
            if max > 0.0 {
                sigma.abs() * f / max
            } else {
                0.0
            }
        })
        .collect())
}

/// BLV loss of logits `[N, C, H, W]` against `U32` labels, with the training-set class
/// pixel counts; a scalar.
pub fn blv(logits: &Tensor, labels: &Tensor, counts: &[u64], opts: &BlvOptions) -> Result<Tensor> {
    check_counts(OP, logits, counts)?;
    let a = blv_amplitudes(counts, opts.sigma)?;
    let mut cfg = PixelConfig::new(OP, opts.ignore_index);
    cfg.noise = match opts.noise {
        Some(_) => NoiseSource::Tensor,
        None => NoiseSource::Seeded {
            key: rng::stream_key(opts.seed),
        },
    };
    let terms = ClassTerms {
        amplitudes: Some(&a),
        ..Default::default()
    };
    pixel_loss(logits, labels, cfg, &terms, opts.noise.as_ref())
}
