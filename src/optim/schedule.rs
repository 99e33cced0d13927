//! The poly learning-rate schedule with optional linear warm-up (docs/training.md).

use crate::error::{Error, Result};

/// `lr(t)` for the 0-based step index `t` (the number of updates done before this one):
///
/// ```text
/// lr(t) = base_lr · (1 − min(t, T)/T)^power · w(t)
/// w(t)  = warmup_factor + (1 − warmup_factor) · t/W   for t < W,   1 from t = W on
/// ```
///
/// with `T = total_steps`, `W = warmup_steps`. This is PyTorch's `PolynomialLR(total_iters=T,
/// power)` chained (multiplied) with `LinearLR(start_factor=warmup_factor, total_iters=W)`,
/// evaluated in closed form (and mmseg's `poly` policy with a linear warm-up): the first
/// step runs at `warmup_factor·base_lr`, the poly decay runs from step 0 (the warm-up scales
/// it rather than delaying it), and the last step `T − 1` runs at `base_lr·(1/T)^power`;
/// `lr(t) = 0` for `t ≥ T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub base_lr: f64,
    /// `T`: the number of optimiser steps of the run (> 0).
    pub total_steps: u64,
    /// The poly exponent (0.9).
    pub power: f64,
    /// `W`: steps of linear warm-up (0: none).
    pub warmup_steps: u64,
    /// Factor of `base_lr` at step 0 of the warm-up, in `[0, 1]`.
    pub warmup_factor: f64,
}

impl Schedule {
    /// Poly decay with power 0.9 and no warm-up.
    pub fn poly(base_lr: f64, total_steps: u64) -> Schedule {
        Schedule {
            base_lr,
            total_steps,
            power: 0.9,
            warmup_steps: 0,
            warmup_factor: 1.0,
        }
    }

    /// The same schedule with a linear warm-up over `steps` steps from `factor·base_lr`.
    pub fn with_warmup(mut self, steps: u64, factor: f64) -> Schedule {
        self.warmup_steps = steps;
        self.warmup_factor = factor;
        self
    }

    /// Checks the values a config file can get wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("schedule", msg));
        if self.total_steps == 0 {
            return bad("total_steps must be > 0".into());
        }
        if !(self.base_lr >= 0.0 && self.base_lr.is_finite()) {
            return bad(format!("base_lr = {} must be ≥ 0", self.base_lr));
        }
        if !(self.power >= 0.0 && self.power.is_finite()) {
            return bad(format!("power = {} must be ≥ 0", self.power));
        }
        if !(0.0..=1.0).contains(&self.warmup_factor) {
            return bad(format!(
                "warmup_factor = {} must lie in [0, 1]",
                self.warmup_factor
            ));
        }
        if self.warmup_steps > self.total_steps {
            return bad(format!(
                "warmup_steps = {} exceeds total_steps = {}",
                self.warmup_steps, self.total_steps
            ));
        }
        Ok(())
    }

    /// The learning rate of step `t` (see the type's docs).
    pub fn lr(&self, t: u64) -> f64 {
        let total = self.total_steps.max(1);
        let decay = (1.0 - t.min(total) as f64 / total as f64).powf(self.power);
        let warm = if t < self.warmup_steps {
            self.warmup_factor + (1.0 - self.warmup_factor) * t as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        self.base_lr * decay * warm
    }
}
