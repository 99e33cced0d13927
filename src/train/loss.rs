//! The training loss: `train.loss` and the `[loss]` table, with the training-set class
//! counts, resolved once into the options of one of [`crate::losses`]; each step calls
//! [`TrainLoss::compute`]. Per-step randomness (BLV's noise, the pairwise AUC kernel's
//! subsample) is seeded by `(run seed, step)` ([`step_seed`]), so a resumed run draws what
//! the uninterrupted one drew.

use super::config::LossConfig;
use crate::error::{Error, Result};
use crate::losses::rng::step_seed;
use crate::losses::{
    aucseg, balanced_softmax, blv, ce, class_balanced, focal, ldam, pat, AucMethod, AucOptions,
    BlvOptions, BmsOptions, CbOptions, CeOptions, FocalOptions, LdamOptions, PatCurve, PatOptions,
    Surrogate,
};
use crate::tensor::Tensor;

/// One loss with its resolved options.
#[derive(Clone, Debug)]
enum Kind {
    Ce(CeOptions),
    Focal(FocalOptions),
    Cb(CbOptions),
    Bms(BmsOptions),
    Ldam(LdamOptions),
    Blv(BlvOptions),
    Pat(PatOptions),
    Auc(AucOptions),
}

/// The loss of a run (see the module docs).
#[derive(Clone, Debug)]
pub struct TrainLoss {
    kind: Kind,
    counts: Vec<u64>,
    seed: u64,
}

impl TrainLoss {
    /// Resolves `name` (one of [`super::config::LOSSES`]) with the parameters of `cfg`.
    /// `counts`: training-set pixel counts per class (for cb, bms, ldam, blv).
    pub fn new(
        name: &str,
        cfg: &LossConfig,
        counts: &[u64],
        ignore_index: u32,
        seed: u64,
    ) -> Result<TrainLoss> {
        let kind = match name {
            "ce" => Kind::Ce(CeOptions {
                ignore_index,
                ..Default::default()
            }),
            "focal" => Kind::Focal(FocalOptions {
                gamma: cfg.gamma,
                ignore_index,
            }),
            "cb" | "cb-focal" => Kind::Cb(CbOptions {
                beta: cfg.cb_beta,
                focal: (name == "cb-focal").then_some(cfg.gamma),
                ignore_index,
            }),
            "bms" => Kind::Bms(BmsOptions { ignore_index }),
            "ldam" => Kind::Ldam(LdamOptions {
                s: cfg.ldam_s,
                max_margin: cfg.ldam_max_margin,
                ignore_index,
            }),
            "blv" => Kind::Blv(BlvOptions {
                sigma: cfg.blv_sigma,
                seed,
                noise: None,
                ignore_index,
            }),
            "pat" => Kind::Pat(PatOptions {
                curve: match cfg.pat_curve.as_str() {
                    "rising" => PatCurve::Rising,
                    _ => PatCurve::Falling,
                },
                t: cfg.pat_t,
                eps: cfg.pat_eps,
                detach: cfg.pat_detach,
                ignore_index,
            }),
            "aucseg" => Kind::Auc(AucOptions {
                lambda: cfg.auc_lambda,
                margin: Some(cfg.auc_margin()),
                surrogate: match cfg.auc_surrogate.as_str() {
                    "sq-hinge" => Surrogate::SqHinge,
                    "logistic" => Surrogate::Logistic,
                    _ => Surrogate::Square,
                },
                method: match cfg.auc_method.as_str() {
                    "pairwise" => AucMethod::Pairwise,
                    _ => AucMethod::ClosedForm,
                },
                max_pixels_per_class: cfg.auc_cap,
                seed,
                ignore_index,
            }),
            other => {
                return Err(Error::shape(
                    "train",
                    format!("unknown loss {other:?} (see train.loss)"),
                ))
            }
        };
        Ok(TrainLoss {
            kind,
            counts: counts.to_vec(),
            seed,
        })
    }

    /// The loss of `logits` `[N, C, H, W]` against `labels` `[N, H, W]` at training step
    /// `step` (which seeds the step's randomness).
    pub fn compute(&self, logits: &Tensor, labels: &Tensor, step: u64) -> Result<Tensor> {
        let n = &self.counts;
        match &self.kind {
            Kind::Ce(o) => ce(logits, labels, o),
            Kind::Focal(o) => focal(logits, labels, o),
            Kind::Cb(o) => class_balanced(logits, labels, n, o),
            Kind::Bms(o) => balanced_softmax(logits, labels, n, o),
            Kind::Ldam(o) => ldam(logits, labels, n, o),
            Kind::Blv(o) => {
                let o = BlvOptions {
                    seed: step_seed(self.seed, step),
                    ..o.clone()
                };
                blv(logits, labels, n, &o)
            }
            Kind::Pat(o) => pat(logits, labels, o),
            Kind::Auc(o) => {
                let o = AucOptions {
                    seed: step_seed(self.seed, step),
                    ..o.clone()
                };
                aucseg(logits, labels, &o)
            }
        }
    }
}
