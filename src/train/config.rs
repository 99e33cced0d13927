//! Run configuration: a TOML file (`models/*.toml`) with a `[model]` table (the
//! architecture, required) and optional `[train]` and `[data]` tables whose every key has a
//! default. An unknown or mistyped key anywhere is an error naming the key and the file.
//! The resolved configuration (after command-line overrides) is saved as `config.toml` in
//! the run directory, and `--resume` reads it back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// Everything a run needs besides the data path and the output directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub data: DataConfig,
    /// The loss's parameters (`train.loss` picks the loss).
    #[serde(default)]
    pub loss: LossConfig,
    /// The tail-class memory bank (SPEC §4).
    #[serde(default)]
    pub tmb: TmbConfig,
}

/// Optimisation and schedule (SPEC §7). Defaults: SGD, lr 0.01, momentum 0.9, weight decay
/// 1e-4, poly power 0.9, no warm-up, no clipping; 500 steps of 8 crops of 96² (sized so that
/// `wgseg train` with the tiny config on the built-in data finishes in minutes on a CPU
/// Vulkan driver; give more steps and larger crops on a real GPU).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Images per step (at least 2: batch norm and the image-pooling branch need it).
    pub batch_size: usize,
    /// Square training crop side, in pixels of the (base-scaled) images.
    pub crop: usize,
    /// `sgd` or `adamw`.
    pub optimizer: String,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Poly schedule power: `lr·(1 − t/T)^power`.
    pub poly_power: f64,
    /// Linear warm-up steps (0: none), starting from `warmup_factor·lr`.
    pub warmup_steps: usize,
    pub warmup_factor: f64,
    /// Clip gradients to this global L2 norm (0: off).
    pub clip_norm: f64,
    /// The loss: one of [`LOSSES`] (parameters in the `[loss]` table).
    pub loss: String,
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// Log (progress bar and metrics.jsonl) every this many steps.
    pub log_every: usize,
    /// Validate and save the best checkpoint every this many steps (0: only at the end).
    pub val_every: usize,
    /// Save the `last` checkpoint every this many steps.
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 500,
            batch_size: 8,
            crop: 96,
            optimizer: "sgd".into(),
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            poly_power: 0.9,
            warmup_steps: 0,
            warmup_factor: 0.1,
            clip_norm: 0.0,
            loss: "ce".into(),
            seed: 0,
            workers: 2,
            log_every: 10,
            val_every: 250,
            checkpoint_every: 50,
        }
    }
}

/// The losses `train.loss` can name (SPEC §1–3).
pub const LOSSES: &[&str] = &[
    "ce", "focal", "cb", "cb-focal", "bms", "ldam", "blv", "pat", "aucseg",
];

/// Parameters of the losses (SPEC §1–3); each loss reads its own keys, every default is
/// SPEC's. Keys are prefixed by the loss they belong to (`gamma` serves focal and cb-focal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Focal exponent γ (`focal`, `cb-focal`).
    pub gamma: f64,
    /// Class-balanced β (`cb`, `cb-focal`): `w_c ∝ (1 − β)/(1 − β^{n_c})`.
    pub cb_beta: f64,
    /// LDAM scale s and largest margin.
    pub ldam_s: f64,
    pub ldam_max_margin: f64,
    /// BLV noise standard deviation σ.
    pub blv_sigma: f64,
    /// PAT weight curve: `falling` (SPEC default, Eq. 5) or `rising` (the paper's Table 1).
    pub pat_curve: String,
    /// PAT temperature T and ε.
    pub pat_t: f64,
    pub pat_eps: f64,
    /// Treat PAT's weight β as a constant in the gradient.
    pub pat_detach: bool,
    /// AUCSeg: `L = L_ce + λ·L_auc`.
    pub auc_lambda: f64,
    /// AUC surrogate margin (default: 1, or 0.5 for `sq-hinge`).
    pub auc_margin: Option<f64>,
    /// AUC surrogate: `square` (default), `sq-hinge`, `logistic` (the last two need
    /// `auc_method = "pairwise"`).
    pub auc_surrogate: String,
    /// `closed` (closed form, O(P·C); default) or `pairwise` (tiled pairwise kernel).
    pub auc_method: String,
    /// Pixels per class the pairwise kernel keeps (uniform seeded subsample).
    pub auc_cap: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            gamma: 2.0,
            cb_beta: 0.9999,
            ldam_s: 30.0,
            ldam_max_margin: 0.5,
            blv_sigma: 0.5,
            pat_curve: "falling".into(),
            pat_t: 20.0,
            pat_eps: 0.0,
            pat_detach: false,
            auc_lambda: 1.0,
            auc_margin: None,
            auc_surrogate: "square".into(),
            auc_method: "closed".into(),
            auc_cap: 4096,
        }
    }
}

/// The tail-class memory bank (SPEC §4): a data-side method, combinable with every loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TmbConfig {
    pub enabled: bool,
    /// Entries per tail class (SM).
    pub size: usize,
    /// Fraction of the missing tail classes pasted into each image (Rs).
    pub rs: f32,
    /// Resize factor of a pasted entry (p_resize).
    pub resize: f32,
    /// Tail class ids; empty: the dataset config's tail group, else the statistics' one.
    pub tail: Vec<u8>,
}

impl Default for TmbConfig {
    fn default() -> Self {
        TmbConfig {
            enabled: false,
            size: 5,
            rs: 1.0,
            resize: 1.0,
            tail: Vec::new(),
        }
    }
}

/// Data loading and augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Base scale applied once when images are loaded (CamVid at 0.5: 180×240).
    pub scale: f32,
    /// Random scale range of the training augmentation.
    pub aug_scale: [f32; 2],
    pub flip: bool,
    /// Photometric jitter strength (0: off).
    pub jitter: f32,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            scale: 1.0,
            aug_scale: [0.75, 1.25],
            flip: true,
            jitter: 0.0,
        }
    }
}

impl RunConfig {
    /// Reads and checks a config file; errors name the file (and the key, for typos).
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        RunConfig::parse(&text, path)
    }

    /// Parses a config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RunConfig> {
        let c: RunConfig = toml::from_str(text).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        c.check().map_err(|e| Error::Data {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(c)
    }

    /// The TOML text of this config (saved in run directories).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::shape("config", e.to_string()))
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<()> {
        self.model.validate()?;
        let t = &self.train;
        let bad = |msg: String| Err(Error::shape("config", msg));
        if t.batch_size < 2 {
            return bad(format!(
                "train.batch_size = {}: batch norm needs at least 2 images per step",
                t.batch_size
            ));
        }
        if t.steps == 0 || t.crop == 0 || t.log_every == 0 || t.checkpoint_every == 0 {
            return bad(
                "train.steps, crop, log_every and checkpoint_every must be positive".into(),
            );
        }
        if !["sgd", "adamw"].contains(&t.optimizer.as_str()) {
            return bad(format!(
                "train.optimizer = {:?} (use \"sgd\" or \"adamw\")",
                t.optimizer
            ));
        }
        if !LOSSES.contains(&t.loss.as_str()) {
            return bad(format!(
                "train.loss = {:?} (available: {})",
                t.loss,
                LOSSES.join(", ")
            ));
        }
        self.loss.check()?;
        let b = &self.tmb;
        if b.size == 0 || !(b.rs > 0.0 && b.rs <= 1.0) || !(b.resize > 0.0 && b.resize.is_finite())
        {
            return bad(format!(
                "tmb.size = {}, tmb.rs = {}, tmb.resize = {}: need size ≥ 1, 0 < rs ≤ 1, \
                 resize > 0",
                b.size, b.rs, b.resize
            ));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) || t.weight_decay < 0.0 || t.clip_norm < 0.0 {
            return bad("train.lr must be positive; weight_decay and clip_norm ≥ 0".into());
        }
        let d = &self.data;
        if !(d.scale > 0.0 && d.aug_scale[0] > 0.0 && d.aug_scale[0] <= d.aug_scale[1]) {
            return bad(format!(
                "data.scale = {} and data.aug_scale = {:?} must be positive and ordered",
                d.scale, d.aug_scale
            ));
        }
        Ok(())
    }
}

impl LossConfig {
    /// Checks the values (names of curves, surrogates and methods; ranges).
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("config", msg));
        if !["falling", "rising"].contains(&self.pat_curve.as_str()) {
            return bad(format!(
                "loss.pat_curve = {:?} (use \"falling\" or \"rising\")",
                self.pat_curve
            ));
        }
        if !["square", "sq-hinge", "logistic"].contains(&self.auc_surrogate.as_str()) {
            return bad(format!(
                "loss.auc_surrogate = {:?} (use \"square\", \"sq-hinge\" or \"logistic\")",
                self.auc_surrogate
            ));
        }
        if !["closed", "pairwise"].contains(&self.auc_method.as_str()) {
            return bad(format!(
                "loss.auc_method = {:?} (use \"closed\" or \"pairwise\")",
                self.auc_method
            ));
        }
        if self.auc_method == "closed" && self.auc_surrogate != "square" {
            return bad(format!(
                "loss.auc_surrogate = {:?} does not decompose into per-class sums: it needs \
                 loss.auc_method = \"pairwise\"",
                self.auc_surrogate
            ));
        }
        let finite_pos = |v: f64| v > 0.0 && v.is_finite();
        let finite_nonneg = |v: f64| v >= 0.0 && v.is_finite();
        let rules = [
            (finite_nonneg(self.gamma), "gamma ≥ 0"),
            (self.cb_beta > 0.0 && self.cb_beta < 1.0, "0 < cb_beta < 1"),
            (finite_pos(self.ldam_s), "ldam_s > 0"),
            (finite_pos(self.ldam_max_margin), "ldam_max_margin > 0"),
            (finite_nonneg(self.blv_sigma), "blv_sigma ≥ 0"),
            (finite_pos(self.pat_t), "pat_t > 0"),
            (self.pat_eps.is_finite(), "pat_eps finite"),
            (finite_nonneg(self.auc_lambda), "auc_lambda ≥ 0"),
            (self.auc_margin.is_none_or(finite_pos), "auc_margin > 0"),
            (self.auc_cap >= 2, "auc_cap ≥ 2"),
        ];
        if let Some((_, rule)) = rules.iter().find(|(ok, _)| !ok) {
            return bad(format!("loss: {rule} is required ({self:?})"));
        }
        Ok(())
    }

    /// The AUC margin in effect: the configured one, else 0.5 for `sq-hinge` and 1 otherwise.
    pub fn auc_margin(&self) -> f64 {
        self.auc_margin
            .unwrap_or(if self.auc_surrogate == "sq-hinge" {
                0.5
            } else {
                1.0
            })
    }
}
