//! The training loop: data checked before the first step, background loading (with the
//! tail-class memory bank on the loader's stage thread when `tmb.enabled`), forward / loss
//! (`train.loss`, see [`super::loss`]) / backward / in-place update on the device, periodic
//! validation, atomic checkpoints (with the bank's state), exact resume, and a stop on a
//! non-finite loss that keeps the last good checkpoint.
//!
//! The model is any [`Segmenter`]: [`train`] builds the one the config's `[model]` table
//! names, [`train_model`] takes a [`BuildModel`] closure. A run is a [`Run`]:
//! [`Run::setup`] (config, data, model, optimiser, resume), then [`Run::step`] until
//! [`Run::done`] (each step may [`validate`](Run::validate) and [`save`](Run::save)), then
//! [`Run::finish`].
//!
//! Per step the host uploads one batch and records kernels; the only readback is the loss,
//! at logging and checkpoint steps (which also bounds how far the host runs ahead). The
//! pairwise AUC kernel (`loss.auc_method = "pairwise"`) also reads the labels back to plan
//! its tiles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::checkpoint::{self, RunDir};
use super::config::RunConfig;
use super::eval::{evaluate, upload_batch};
use super::loss::TrainLoss;
use super::metrics::{Groups, Scores};
use crate::autograd::backward;
use crate::data::{
    self, Augment, BankConfig, BankState, ClassStats, Dataset, DatasetInfo, Loader, LoaderState,
    MemoryBank,
};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::{build_from_config, BuildModel, Segmenter};
use crate::nn::ParamStore;
use crate::optim::{clip_grad_norm, AdamW, Optimizer, Schedule, Sgd};

/// Checkpoint metadata: the dataset's class colours (a JSON list of `[r, g, b]`), for
/// `wgseg infer`'s masks.
pub const PALETTE_META: &str = "wgseg.palette";
/// Checkpoint metadata: the base scale the training data was loaded at.
pub const SCALE_META: &str = "wgseg.scale";
/// The memory bank's state in a checkpoint directory (runs with `tmb.enabled`).
pub const BANK_FILE: &str = "bank.bin";

/// What to train, where from and where to.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub config: RunConfig,
    /// Dataset root; `None`: the built-in data.
    pub data: Option<PathBuf>,
    /// The run directory (created).
    pub out: PathBuf,
    pub device: Device,
    /// Continue the run in `out` from its last checkpoint (its saved config wins, except
    /// `train.workers`).
    pub resume: bool,
    /// A torchvision ResNet state dict (safetensors) for the backbone.
    pub init_backbone: Option<PathBuf>,
    /// Stop after this step (with a checkpoint, without the final validation), as if the
    /// run had been killed there; `--resume` continues it. `None`: run to the end.
    pub stop_at: Option<u64>,
}

/// Progress reports for a front end (the CLI draws them as progress bars).
#[derive(Debug)]
pub enum Event<'a> {
    /// Checking the data before training: `done` of `total` samples of `split`.
    Checking {
        split: &'a str,
        done: usize,
        total: usize,
    },
    /// Counting class pixels of the training split.
    Counting { done: usize, total: usize },
    /// Training starts (or resumes) at `step` of `total`.
    Start {
        step: u64,
        total: u64,
        params: usize,
        train_images: usize,
        val_images: usize,
        groups: &'a Groups,
    },
    /// A step finished; `loss` is read back only at logging steps.
    Step {
        step: u64,
        total: u64,
        loss: Option<f32>,
        lr: f64,
        images_per_s: Option<f64>,
        /// Batches the loader had ready when this step asked for one.
        queued: usize,
    },
    /// Validation progress.
    Validating { done: usize, total: usize },
    /// Validation scores after `step`.
    Validated { step: u64, scores: &'a Scores },
    /// A free-form note (checkpoint saved, resumed, …).
    Note(String),
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    pub run: PathBuf,
    pub steps: u64,
    /// The last validation (`None` when stopped early before any).
    pub scores: Option<Scores>,
    pub groups: Groups,
    /// Class names, in id order.
    pub classes: Vec<String>,
    /// The base scale the data was loaded at.
    pub scale: f32,
    pub best_miou: f64,
    pub seconds: f64,
}

/// The training-time state saved in `state.json` beside the weights.
fn state_json(loader: LoaderState, best: f64, best_step: u64) -> Value {
    json!({"loader": loader, "best_miou": best, "best_step": best_step})
}

struct Resumed {
    step: u64,
    loader: LoaderState,
    bank: Option<BankState>,
    best: f64,
    best_step: u64,
}

fn data_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn append_line(path: &Path, v: &Value) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    writeln!(f, "{v}").map_err(io)
}

/// `√Σ w²` over every parameter and buffer, computed on the device (one scalar read back).
fn weights_norm(store: &ParamStore) -> Result<f32> {
    let _g = crate::autograd::no_grad();
    let mut acc: Option<crate::tensor::Tensor> = None;
    for (_, t, _) in store.iter() {
        let s = t.square()?.sum()?;
        acc = Some(match acc {
            Some(a) => a.add(&s)?,
            None => s,
        });
    }
    Ok(acc.map_or(Ok(0.0), |a| a.item())?.sqrt())
}

/// The loss (`train.loss` and the `[loss]` table) and the memory bank's configuration
/// (`[tmb]`; `None` when disabled) of a run.
fn loss_and_bank(
    config: &RunConfig,
    stats: &ClassStats,
    groups: &Groups,
    info: &DatasetInfo,
) -> Result<(TrainLoss, Option<BankConfig>)> {
    let t = &config.train;
    let loss_fn = TrainLoss::new(
        &t.loss,
        &config.loss,
        &stats.counts,
        u32::from(info.ignore_index),
        t.seed,
    )?;
    let bank = config.tmb.enabled.then(|| {
        let b = &config.tmb;
        let tail: Vec<u8> = if b.tail.is_empty() {
            groups.tail.iter().map(|&c| c as u8).collect()
        } else {
            b.tail.clone()
        };
        BankConfig { tail, ..b.clone() }
    });
    Ok((loss_fn, bank))
}

/// The checkpoint metadata of a run besides `wgseg.model` and `wgseg.version`: class names,
/// palette, base scale and the training split's class pixel counts.
fn checkpoint_meta(
    info: &DatasetInfo,
    scale: f32,
    stats: &ClassStats,
) -> Vec<(&'static str, String)> {
    let palette: Vec<[u8; 3]> = info.classes.iter().map(|c| c.color).collect();
    vec![
        checkpoint::classes_entry(
            &info
                .classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            PALETTE_META,
            serde_json::to_string(&palette).unwrap_or_default(),
        ),
        (SCALE_META, scale.to_string()),
        (
            checkpoint::META_CLASS_PIXELS,
            serde_json::to_string(&stats.counts).unwrap_or_default(),
        ),
    ]
}

/// Trains per `opts` the model the config's `[model]` table names, reporting through `on`.
/// See the module docs.
pub fn train(opts: TrainOptions, on: &mut dyn FnMut(Event)) -> Result<Report> {
    train_model(opts, &build_from_config, on)
}

/// Trains per `opts` the model `build` makes (called once, with the run's `[model]` table,
/// the class count, the store and `train.seed`), reporting through `on`.
pub fn train_model(
    opts: TrainOptions,
    build: &BuildModel<'_>,
    on: &mut dyn FnMut(Event),
) -> Result<Report> {
    let mut run = Run::setup(opts, build, on)?;
    while !run.done() {
        run.step(on)?;
    }
    run.finish(on)
}

/// A training run between [`Run::setup`] and [`Run::finish`].
pub struct Run {
    started: Instant,
    dir: RunDir,
    config: RunConfig,
    device: Device,
    stop_at: Option<u64>,
    val_ds: Arc<dyn Dataset>,
    info: DatasetInfo,
    scale: f32,
    groups: Groups,
    loss_fn: TrainLoss,
    store: ParamStore,
    net: Box<dyn Segmenter>,
    opt: Box<dyn Optimizer>,
    schedule: Schedule,
    meta: Vec<(&'static str, String)>,
    loader: Loader,
    step: u64,
    total: u64,
    stopped: bool,
    best: f64,
    best_step: u64,
    last_scores: Option<Scores>,
    /// Start of the current throughput window and the images trained in it.
    window: (Instant, usize),
}

impl Run {
    /// Resolves the config (the saved one on resume), opens and checks the data, counts
    /// class pixels, builds the loss, the model (`build`) and the optimiser, restores a
    /// resumed run's checkpoint (or creates the run directory), starts the loader and
    /// reports [`Event::Start`].
    pub fn setup(
        opts: TrainOptions,
        build: &BuildModel<'_>,
        on: &mut dyn FnMut(Event),
    ) -> Result<Run> {
        let started = Instant::now();
        let run = RunDir::new(&opts.out);
        let config = if opts.resume {
            // The saved config wins, except for the number of loader threads (a property of
            // the machine, not of the run: it changes no result).
            let mut c = RunConfig::load(&run.config())?;
            c.train.workers = opts.config.train.workers;
            if checkpoint::find_checkpoint(&run.last()).is_err() {
                return Err(data_err(
                    &run.root,
                    format!(
                        "the run stopped before its first checkpoint (one is written every \
                         train.checkpoint_every = {} steps), so there is nothing to resume. \
                         Start it again: delete this directory and run the same command \
                         without --resume (with --out {}), or give another --out",
                        c.train.checkpoint_every,
                        run.root.display()
                    ),
                ));
            }
            c
        } else {
            opts.config.clone()
        };
        config.check()?;
        let t = &config.train;
        let dev = &opts.device;

        // Data: open both splits and check every sample before the first step.
        let root = opts.data.as_deref();
        let scale = config.data.scale;
        let train_ds: Arc<dyn Dataset> = Arc::from(data::open(root, "train", scale, t.seed)?);
        let val_ds: Arc<dyn Dataset> = Arc::from(data::open(root, "val", scale, t.seed)?);
        if val_ds.info() != train_ds.info() {
            return Err(data_err(
                root.unwrap_or(Path::new("built-in")),
                "the train and val splits describe different classes",
            ));
        }
        for (split, ds) in [("train", &train_ds), ("val", &val_ds)] {
            data::validate(ds.as_ref(), |done, total| {
                on(Event::Checking { split, done, total })
            })?;
        }
        let (stats, _cache) =
            ClassStats::compute_or_load_with(train_ds.as_ref(), |done, total| {
                on(Event::Counting { done, total })
            })?;
        let info = train_ds.info().clone();
        let groups = stats.groups(&info);
        let (loss_fn, bank_config) = loss_and_bank(&config, &stats, &groups, &info)?;

        // Model and optimiser.
        let mut store = ParamStore::new(dev);
        let net = build(&config.model, info.num_classes(), &mut store, t.seed)?;
        let mut opt: Box<dyn Optimizer> = match t.optimizer.as_str() {
            "adamw" => Box::new(AdamW::new(0.9, 0.999, 1e-8, t.weight_decay)),
            _ => Box::new(Sgd::new(t.momentum, t.weight_decay, false)),
        };
        let mut schedule = Schedule::poly(t.lr, t.steps as u64)
            .with_warmup(t.warmup_steps as u64, t.warmup_factor);
        schedule.power = t.poly_power;
        schedule.validate()?;
        let meta = checkpoint_meta(&info, scale, &stats);

        let resumed = if opts.resume {
            Self::restore(&run, &config, &mut store, &mut *opt, on)?
        } else {
            Self::create(&run, &config, opts.init_backbone.as_deref(), &mut store, on)?
        };

        let aug = Augment {
            scale: (config.data.aug_scale[0], config.data.aug_scale[1]),
            crop: (t.crop, t.crop),
            flip: config.data.flip,
            jitter: config.data.jitter,
        };
        let bank = match bank_config {
            Some(cfg) => {
                let b = &config.tmb;
                let bank = MemoryBank::new(cfg, info.num_classes(), t.seed, resumed.bank)?;
                on(Event::Note(format!(
                    "memory bank: tail classes {:?}, {} entries each, Rs {}, p_resize {}; at \
                     most {:.1} MiB",
                    bank.config().tail,
                    b.size,
                    b.rs,
                    b.resize,
                    bank.capacity_bytes(t.crop, t.crop) as f64 / (1024.0 * 1024.0)
                )));
                Some(bank)
            }
            None => None,
        };
        let loader = Loader::with_bank(
            train_ds.clone(),
            t.batch_size,
            aug,
            t.seed,
            t.workers,
            resumed.loader,
            bank,
        )?;
        let total = t.steps as u64;
        on(Event::Start {
            step: resumed.step,
            total,
            params: store.param_count(),
            train_images: train_ds.len(),
            val_images: val_ds.len(),
            groups: &groups,
        });
        Ok(Run {
            started,
            dir: run,
            device: opts.device.clone(),
            stop_at: opts.stop_at,
            val_ds,
            info,
            scale,
            groups,
            loss_fn,
            store,
            net,
            opt,
            schedule,
            meta,
            loader,
            step: resumed.step,
            total,
            stopped: false,
            best: resumed.best,
            best_step: resumed.best_step,
            last_scores: None,
            window: (Instant::now(), 0),
            config,
        })
    }

    /// Loads the last checkpoint of the run into `store` and `opt`; the loader position,
    /// the bank and the best score from beside it.
    fn restore(
        run: &RunDir,
        config: &RunConfig,
        store: &mut ParamStore,
        opt: &mut dyn Optimizer,
        on: &mut dyn FnMut(Event),
    ) -> Result<Resumed> {
        let model = checkpoint::find_checkpoint(&run.last())?;
        let dir = model.parent().unwrap_or(Path::new(".")).to_path_buf();
        checkpoint::load_weights(&dir.join(checkpoint::MODEL_FILE), store)?;
        let st = checkpoint::load_train_state(&dir, store.device())?;
        opt.load_state(st.optimizer)?;
        let loader: LoaderState = serde_json::from_value(st.state["loader"].clone())
            .map_err(|e| data_err(&dir, format!("no loader position in state.json: {e}")))?;
        let bank = if config.tmb.enabled {
            Some(BankState::load(&dir.join(BANK_FILE))?)
        } else {
            None
        };
        on(Event::Note(format!(
            "resumed {} at step {}",
            run.root.display(),
            st.step
        )));
        Ok(Resumed {
            step: st.step,
            loader,
            bank,
            best: st.state["best_miou"].as_f64().unwrap_or(-1.0),
            best_step: st.state["best_step"].as_u64().unwrap_or(0),
        })
    }

    /// Creates the run directory with its `config.toml` (refusing one that holds a run)
    /// and initialises the backbone when asked.
    fn create(
        run: &RunDir,
        config: &RunConfig,
        init_backbone: Option<&Path>,
        store: &mut ParamStore,
        on: &mut dyn FnMut(Event),
    ) -> Result<Resumed> {
        if run.last().exists() {
            return Err(data_err(
                &run.root,
                "holds a run already: use --resume to continue it, or another --out",
            ));
        }
        std::fs::create_dir_all(&run.root).map_err(|source| Error::Io {
            path: run.root.clone(),
            source,
        })?;
        checkpoint::atomic_write(&run.config(), config.to_toml()?.as_bytes())?;
        if let Some(p) = init_backbone {
            let n = checkpoint::init_backbone(p, store)?;
            on(Event::Note(format!(
                "backbone: {n} tensors from {}",
                p.display()
            )));
        }
        Ok(Resumed {
            step: 0,
            loader: LoaderState::default(),
            bank: None,
            best: -1.0,
            best_step: 0,
        })
    }

    /// Whether the run is over: every step taken, or stopped at `stop_at`.
    pub fn done(&self) -> bool {
        self.stopped || self.step >= self.total
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One optimiser step; then, as the config says, the loss logged, a validation (and the
    /// best checkpoint) and the last checkpoint.
    pub fn step(&mut self, on: &mut dyn FnMut(Event)) -> Result<()> {
        let t = &self.config.train;
        let (log_every, checkpoint_every, val_every) = (
            t.log_every as u64,
            t.checkpoint_every as u64,
            t.val_every as u64,
        );
        let clip_norm = t.clip_norm;
        let queued = self.loader.queued();
        let batch = self
            .loader
            .next()
            .ok_or_else(|| data_err(Path::new("<loader>"), "the training stream ended"))??;
        let next_state = self.loader.state();
        let bank_state = batch.bank.clone();
        let images = batch.b;
        let (x, y) = upload_batch(
            batch.images,
            batch.labels,
            (batch.b, batch.h, batch.w),
            &self.device,
        )?;
        let step = self.step;
        let lr = self.schedule.lr(step);
        let loss = {
            let logits = self.net.forward(&mut self.store, &x, true)?;
            self.loss_fn.compute(&logits, &y, step)?
        };
        let grads = backward(&loss)?;
        let clip = if clip_norm > 0.0 {
            Some(clip_grad_norm(&self.store, &grads, clip_norm)?)
        } else {
            None
        };
        self.opt
            .step_clipped(&mut self.store, &grads, lr, clip.as_ref())?;
        let step = step + 1;
        self.step = step;
        self.window.1 += images;

        let total = self.total;
        let stopping = self.stop_at == Some(step);
        let log = step % log_every == 0 || step == total;
        let save = step % checkpoint_every == 0 || step == total || stopping;
        let validate = (val_every > 0 && step % val_every == 0) || step == total;
        let mut loss_value = None;
        let mut images_per_s = None;
        if log || save || validate {
            let v = loss.item()?;
            if !v.is_finite() {
                return Err(Error::shape(
                    "train",
                    format!(
                        "the loss became {v} at step {step}; stopped. The last good checkpoint \
                         is {} (lower the learning rate, or enable clip_norm, and --resume)",
                        self.dir.last().display()
                    ),
                ));
            }
            loss_value = Some(v);
            let secs = self.window.0.elapsed().as_secs_f64();
            images_per_s = Some(self.window.1 as f64 / secs.max(1e-9));
            append_line(
                &self.dir.metrics(),
                &json!({"step": step, "loss": v, "lr": lr,
                        "images_per_s": images_per_s, "queued": queued,
                        "elapsed_s": self.started.elapsed().as_secs_f64()}),
            )?;
            self.window = (Instant::now(), 0);
        }
        on(Event::Step {
            step,
            total,
            loss: loss_value,
            lr,
            images_per_s,
            queued,
        });
        drop(loss);
        if validate {
            let scores = self.validate(on)?;
            let mut line = serde_json::to_value(&scores).unwrap_or(Value::Null);
            line["step"] = json!(step);
            line["split"] = json!("val");
            append_line(&self.dir.metrics(), &line)?;
            if scores.miou > self.best {
                self.best = scores.miou;
                self.best_step = step;
                self.save(&self.dir.best(), next_state, bank_state.as_ref())?;
            }
            self.last_scores = Some(scores);
            self.window = (Instant::now(), 0);
        }
        if save {
            self.save(&self.dir.last(), next_state, bank_state.as_ref())?;
        }
        self.stopped = stopping;
        Ok(())
    }

    /// Scores the model on the validation split (reporting [`Event::Validating`] and
    /// [`Event::Validated`]).
    pub fn validate(&mut self, on: &mut dyn FnMut(Event)) -> Result<Scores> {
        let scores = evaluate(
            &*self.net,
            &mut self.store,
            self.val_ds.clone(),
            Some(&self.groups),
            (self.config.train.workers, None),
            |done, total| on(Event::Validating { done, total }),
        )?;
        on(Event::Validated {
            step: self.step,
            scores: &scores,
        });
        Ok(scores)
    }

    /// Writes a checkpoint of the current step into `dir` (`last/` or `best/`: the same
    /// files), with the loader position `loader` the next step starts from and the memory
    /// bank's state.
    ///
    /// An update can turn finite weights into inf/NaN after a finite loss: a checkpoint
    /// never holds them (it would be "the last good" one), so the weights' norm is checked
    /// first.
    pub fn save(&self, dir: &Path, loader: LoaderState, bank: Option<&BankState>) -> Result<()> {
        let step = self.step;
        let norm = weights_norm(&self.store)?;
        if !norm.is_finite() {
            return Err(Error::shape(
                "train",
                format!(
                    "the weights became non-finite (norm {norm}) at step {step}; stopped. The \
                     last good checkpoint is {} (lower the learning rate, or enable clip_norm, \
                     and --resume)",
                    self.dir.last().display()
                ),
            ));
        }
        let state = state_json(loader, self.best, self.best_step);
        checkpoint::save_checkpoint_with(
            dir,
            &self.store,
            &*self.net,
            &self.meta,
            step,
            &self.opt.state(),
            &state,
            &|tmp| bank.map_or(Ok(()), |b| b.save(&tmp.join(BANK_FILE))),
        )
    }

    /// The outcome: the last validation, or a final one when the run ended without one
    /// (none when stopped early).
    pub fn finish(mut self, on: &mut dyn FnMut(Event)) -> Result<Report> {
        let scores = match self.last_scores.take() {
            Some(s) => Some(s),
            None if self.step < self.total => None,
            None => Some(evaluate(
                &*self.net,
                &mut self.store,
                self.val_ds.clone(),
                Some(&self.groups),
                (self.config.train.workers, None),
                |done, total| on(Event::Validating { done, total }),
            )?),
        };
        Ok(Report {
            run: self.dir.root.clone(),
            steps: self.step,
            scores,
            groups: self.groups,
            classes: self.info.classes.iter().map(|c| c.name.clone()).collect(),
            scale: self.scale,
            best_miou: self.best,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}
