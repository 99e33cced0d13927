//! Run configuration: a TOML file (`models/*.toml`) with a `[model]` table (the
//! architecture, required) and optional `[train]` and `[data]` tables whose every key has a
//! default. An unknown or mistyped key anywhere is an error naming the key and the file.
//! The `[loss]` table is [`LossConfig`] (the losses' options structs, [`crate::losses::spec`])
//! and the `[tmb]` table [`BankConfig`]; the keys are listed in docs/training.md.
//! The resolved configuration (after command-line overrides) is saved as `config.toml` in
//! the run directory, and `--resume` reads it back.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::data::BankConfig;
use crate::error::{Error, Result};
pub use crate::losses::{Loss, LossConfig};
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
    /// The losses' parameters (`train.loss` picks the loss; docs/longtail.md).
    #[serde(default)]
    pub loss: LossConfig,
    /// The tail-class memory bank (docs/longtail.md).
    #[serde(default)]
    pub tmb: BankConfig,
}

/// Optimisation and schedule (docs/training.md). Defaults: SGD, lr 0.01, momentum 0.9, weight decay
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
    /// The loss (its parameters are in the `[loss]` table).
    pub loss: Loss,
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// Log (progress bar and metrics.jsonl) every this many steps.
    pub log_every: usize,
    /// Validate and save the best checkpoint every this many steps (0: only at the end).
    pub val_every: usize,
    /// Save the `last` checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Data parallel (`--devices`): gradients are summed over the replicas in buckets of
    /// this many MiB (one readback and one all-reduce each).
    pub bucket_mb: f64,
    /// Data parallel: batch norm normalises over the global batch (every replica's
    /// images) instead of each replica's own (`--sync-bn`).
    pub sync_bn: bool,
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
            loss: Loss::Ce,
            seed: 0,
            workers: 2,
            log_every: 10,
            val_every: 250,
            checkpoint_every: 50,
            bucket_mb: 25.0,
            sync_bn: false,
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
        self.loss.check()?;
        self.tmb.check_values()?;
        if !(t.bucket_mb > 0.0 && t.bucket_mb.is_finite()) {
            return bad(format!("train.bucket_mb = {} must be > 0", t.bucket_mb));
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
