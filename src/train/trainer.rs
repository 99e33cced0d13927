//! The training loop: data checked before the first step, background loading (with the
//! tail-class memory bank on the loader's stage thread when `tmb.enabled`), forward / loss
//! (`train.loss`, see [`super::loss`]) / backward / in-place update on the device, periodic
//! validation, atomic checkpoints (with the bank's state), exact resume, and a stop on a
//! non-finite loss that keeps the last good checkpoint.
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
    self, Augment, BankConfig, BankState, ClassStats, Dataset, Loader, LoaderState, MemoryBank,
};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::DeepLabV3Plus;
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

/// Writes a checkpoint of the current step into `dir` (`run.last()` or `run.best()`).
///
/// An update can turn finite weights into inf/NaN after a finite loss: a checkpoint never
/// holds them (it would be "the last good" one), so the weights' norm is checked first.
#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    run: &RunDir,
    dir: &Path,
    store: &ParamStore,
    net: &DeepLabV3Plus,
    meta: &[(&str, String)],
    step: u64,
    opt: &dyn Optimizer,
    state: &Value,
    bank: Option<&BankState>,
) -> Result<()> {
    let norm = weights_norm(store)?;
    if !norm.is_finite() {
        return Err(Error::shape(
            "train",
            format!(
                "the weights became non-finite (norm {norm}) at step {step}; stopped. The last \
                 good checkpoint is {} (lower the learning rate, or enable clip_norm, and \
                 --resume)",
                run.last().display()
            ),
        ));
    }
    checkpoint::save_checkpoint_with(
        dir,
        store,
        &net.config,
        meta,
        step,
        &opt.state(),
        state,
        &|tmp| bank.map_or(Ok(()), |b| b.save(&tmp.join(BANK_FILE))),
    )
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

/// Trains per `opts`, reporting through `on`. See the module docs.
pub fn train(opts: TrainOptions, on: &mut dyn FnMut(Event)) -> Result<Report> {
    let started = Instant::now();
    let run = RunDir::new(&opts.out);
    let config = if opts.resume {
        // The saved config wins, except for the number of loader threads (a property of
        // the machine, not of the run: it changes no result).
        let mut c = RunConfig::load(&run.config())?;
        c.train.workers = opts.config.train.workers;
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
    let (stats, _cache) = ClassStats::compute_or_load_with(train_ds.as_ref(), |done, total| {
        on(Event::Counting { done, total })
    })?;
    let info = train_ds.info().clone();
    let groups = stats.groups(&info);
    let loss_fn = TrainLoss::new(
        &t.loss,
        &config.loss,
        &stats.counts,
        u32::from(info.ignore_index),
        t.seed,
    )?;

    // Model and optimiser.
    let mut store = ParamStore::new(dev);
    let net = DeepLabV3Plus::new(&config.model, info.num_classes(), &mut store, t.seed)?;
    let mut opt: Box<dyn Optimizer> = match t.optimizer.as_str() {
        "adamw" => Box::new(AdamW::new(0.9, 0.999, 1e-8, t.weight_decay)),
        _ => Box::new(Sgd::new(t.momentum, t.weight_decay, false)),
    };
    let mut schedule =
        Schedule::poly(t.lr, t.steps as u64).with_warmup(t.warmup_steps as u64, t.warmup_factor);
    schedule.power = t.poly_power;
    schedule.validate()?;
    let palette: Vec<[u8; 3]> = info.classes.iter().map(|c| c.color).collect();
    let classes_meta = [
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
    ];

    let resumed = if opts.resume {
        let model = checkpoint::find_checkpoint(&run.last())?;
        let dir = model.parent().unwrap_or(Path::new(".")).to_path_buf();
        checkpoint::load_weights(&dir.join(checkpoint::MODEL_FILE), &mut store)?;
        let st = checkpoint::load_train_state(&dir, dev)?;
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
        Resumed {
            step: st.step,
            loader,
            bank,
            best: st.state["best_miou"].as_f64().unwrap_or(-1.0),
            best_step: st.state["best_step"].as_u64().unwrap_or(0),
        }
    } else {
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
        if let Some(p) = &opts.init_backbone {
            let n = checkpoint::init_backbone(p, &mut store)?;
            on(Event::Note(format!(
                "backbone: {n} tensors from {}",
                p.display()
            )));
        }
        Resumed {
            step: 0,
            loader: LoaderState::default(),
            bank: None,
            best: -1.0,
            best_step: 0,
        }
    };

    let aug = Augment {
        scale: (config.data.aug_scale[0], config.data.aug_scale[1]),
        crop: (t.crop, t.crop),
        flip: config.data.flip,
        jitter: config.data.jitter,
    };
    let bank = if config.tmb.enabled {
        let b = &config.tmb;
        let tail: Vec<u8> = if b.tail.is_empty() {
            groups.tail.iter().map(|&c| c as u8).collect()
        } else {
            b.tail.clone()
        };
        let cfg = BankConfig { tail, ..b.clone() };
        let bank = MemoryBank::new(cfg, info.num_classes(), t.seed, resumed.bank)?;
        on(Event::Note(format!(
            "memory bank: tail classes {:?}, {} entries each, Rs {}, p_resize {}; at most \
             {:.1} MiB",
            bank.config().tail,
            b.size,
            b.rs,
            b.resize,
            bank.capacity_bytes(t.crop, t.crop) as f64 / (1024.0 * 1024.0)
        )));
        Some(bank)
    } else {
        None
    };
    let mut loader = Loader::with_bank(
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

    let (mut best, mut best_step) = (resumed.best, resumed.best_step);
    let mut last_scores: Option<Scores> = None;
    let mut window = (Instant::now(), 0usize);
    let mut step = resumed.step;
    while step < total {
        let queued = loader.queued();
        let batch = loader
            .next()
            .ok_or_else(|| data_err(Path::new("<loader>"), "the training stream ended"))??;
        let next_state = loader.state();
        let bank_state = batch.bank.clone();
        let images = batch.b;
        let (x, y) = upload_batch(batch.images, batch.labels, (batch.b, batch.h, batch.w), dev)?;
        let lr = schedule.lr(step);
        let loss = {
            let logits = net.forward(&mut store, &x, true)?;
            loss_fn.compute(&logits, &y, step)?
        };
        let grads = backward(&loss)?;
        let clip = if t.clip_norm > 0.0 {
            Some(clip_grad_norm(&store, &grads, t.clip_norm)?)
        } else {
            None
        };
        opt.step_clipped(&mut store, &grads, lr, clip.as_ref())?;
        step += 1;
        window.1 += images;

        let stopping = opts.stop_at == Some(step);
        let log = step % t.log_every as u64 == 0 || step == total;
        let save = step % t.checkpoint_every as u64 == 0 || step == total || stopping;
        let validate = (t.val_every > 0 && step % t.val_every as u64 == 0) || step == total;
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
                        run.last().display()
                    ),
                ));
            }
            loss_value = Some(v);
            let secs = window.0.elapsed().as_secs_f64();
            images_per_s = Some(window.1 as f64 / secs.max(1e-9));
            append_line(
                &run.metrics(),
                &json!({"step": step, "loss": v, "lr": lr,
                        "images_per_s": images_per_s, "queued": queued,
                        "elapsed_s": started.elapsed().as_secs_f64()}),
            )?;
            window = (Instant::now(), 0);
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
            let scores = evaluate(
                &net,
                &mut store,
                val_ds.clone(),
                Some(&groups),
                t.workers,
                |done, total| on(Event::Validating { done, total }),
            )?;
            on(Event::Validated {
                step,
                scores: &scores,
            });
            let mut line = serde_json::to_value(&scores).unwrap_or(Value::Null);
            line["step"] = json!(step);
            line["split"] = json!("val");
            append_line(&run.metrics(), &line)?;
            if scores.miou > best {
                best = scores.miou;
                best_step = step;
                let state = state_json(next_state, best, best_step);
                save_checkpoint(
                    &run,
                    &run.best(),
                    &store,
                    &net,
                    &classes_meta,
                    step,
                    &*opt,
                    &state,
                    bank_state.as_ref(),
                )?;
            }
            last_scores = Some(scores);
            window = (Instant::now(), 0);
        }
        if save {
            let state = state_json(next_state, best, best_step);
            save_checkpoint(
                &run,
                &run.last(),
                &store,
                &net,
                &classes_meta,
                step,
                &*opt,
                &state,
                bank_state.as_ref(),
            )?;
        }
        if stopping {
            break;
        }
    }
    let scores = match last_scores {
        Some(s) => Some(s),
        None if step < total => None,
        None => Some(evaluate(
            &net,
            &mut store,
            val_ds,
            Some(&groups),
            t.workers,
            |done, total| on(Event::Validating { done, total }),
        )?),
    };
    Ok(Report {
        run: run.root.clone(),
        steps: step,
        scores,
        groups,
        classes: info.classes.iter().map(|c| c.name.clone()).collect(),
        scale,
        best_miou: best,
        seconds: started.elapsed().as_secs_f64(),
    })
}
