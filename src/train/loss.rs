//! The training loss: `train.loss` ([`Loss`]) and the `[loss]` table ([`LossConfig`]), with
//! the training-set class counts, checked once; each step calls [`TrainLoss::compute`].
//! Per-step randomness (BLV's noise, the pairwise AUC kernel's subsample) is seeded by
//! `(run seed, step)` ([`step_seed`]), so a resumed run draws what the uninterrupted one
//! drew.

use crate::error::Result;
use crate::losses::rng::step_seed;
use crate::losses::{Loss, LossConfig, StepInput};
use crate::tensor::Tensor;

/// The loss of a run (see the module docs).
#[derive(Clone, Debug)]
pub struct TrainLoss {
    loss: Loss,
    params: LossConfig,
    counts: Vec<u64>,
    ignore_index: u32,
    seed: u64,
}

impl TrainLoss {
    /// `loss` with the parameters of `params` (checked here). `counts`: training-set pixel
    /// counts per class (for cb, bms, ldam, blv); `seed`: the run's seed.
    pub fn new(
        loss: &Loss,
        params: &LossConfig,
        counts: &[u64],
        ignore_index: u32,
        seed: u64,
    ) -> Result<TrainLoss> {
        params.check()?;
        Ok(TrainLoss {
            loss: *loss,
            params: params.clone(),
            counts: counts.to_vec(),
            ignore_index,
            seed,
        })
    }

    /// The loss of `logits` `[N, C, H, W]` against `labels` `[N, H, W]` at training step
    /// `step` (which seeds the step's randomness).
    pub fn compute(&self, logits: &Tensor, labels: &Tensor, step: u64) -> Result<Tensor> {
        let input = StepInput {
            logits,
            labels,
            counts: &self.counts,
            ignore_index: self.ignore_index,
            seed: step_seed(self.seed, step),
        };
        self.loss.compute(&self.params, &input)
    }
}
