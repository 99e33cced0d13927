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
use super::eval::{confusion_counts, scores_of, upload_batch};
use super::loss::TrainLoss;
use super::metrics::{Groups, Scores};
use super::parallel::{DataParallel, ReduceStats};
use crate::autograd::backward;
use crate::data::{
    self, Augment, BankConfig, BankState, ClassStats, Dataset, DatasetInfo, Loader, LoaderState,
    MemoryBank, Shard, Subset,
};
use crate::device::Device;
use crate::dist::{broadcast_f64, Collective, ThreadGroup};
use crate::error::{Error, Result};
use crate::model::{build_from_config, BuildModel, Segmenter, SharedBuildModel};
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

/// The training-time state saved in `state.json` beside the weights (`global_batch`: the
/// batch the loader position counts in, `train.batch_size` × replicas).
fn state_json(loader: LoaderState, best: f64, best_step: u64, global_batch: usize) -> Value {
    json!({"loader": loader, "best_miou": best, "best_step": best_step,
           "global_batch": global_batch})
}

impl Resumed {
    /// The start of a new run.
    fn fresh() -> Resumed {
        Resumed {
            step: 0,
            loader: LoaderState::default(),
            global_batch: 0,
            bank: None,
            best: -1.0,
            best_step: 0,
        }
    }
}

struct Resumed {
    step: u64,
    loader: LoaderState,
    /// The global batch `loader` counts in.
    global_batch: usize,
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

/// Trains per `opts` with one replica per device of `devices` (`opts.device` is ignored),
/// each on its own thread, as ranks of a [`ThreadGroup`] (docs/parallel.md): every step
/// takes a global batch of `train.batch_size` × replicas images, each replica its share.
/// Rank 0 (this thread) reports through `on` and writes the run; the report is its.
/// One device: [`train_model`] on it.
pub fn train_parallel(
    opts: TrainOptions,
    devices: &[Device],
    build: &SharedBuildModel<'_>,
    on: &mut dyn FnMut(Event),
) -> Result<Report> {
    match devices {
        [] => Err(Error::Collective("no devices given".into())),
        [one] => train_model(
            TrainOptions {
                device: one.clone(),
                ..opts
            },
            build,
            on,
        ),
        _ => {
            let group = ThreadGroup::new(devices.len(), crate::dist::timeout());
            let mut comms = group.into_iter().map(Arc::new);
            let first = comms.next();
            std::thread::scope(|s| {
                let handles: Vec<_> = comms
                    .zip(&devices[1..])
                    .map(|(comm, dev)| {
                        let opts = TrainOptions {
                            device: dev.clone(),
                            ..opts.clone()
                        };
                        s.spawn(move || run_rank(opts, build, comm, &mut |_| {}))
                    })
                    .collect();
                let mine = match first {
                    Some(comm) => run_rank(
                        TrainOptions {
                            device: devices[0].clone(),
                            ..opts.clone()
                        },
                        build,
                        comm,
                        on,
                    ),
                    None => Err(RankError {
                        error: Error::Collective("no ranks".into()),
                        own: true,
                    }),
                };
                let others: Vec<RankResult> = handles
                    .into_iter()
                    .enumerate()
                    .map(|(k, h)| {
                        h.join().unwrap_or_else(|_| {
                            Err(RankError {
                                error: Error::Collective(format!("replica {} panicked", k + 1)),
                                own: true,
                            })
                        })
                    })
                    .collect();
                first_cause(mine, others)
            })
        }
    }
}

/// Trains per `opts` as rank `comm.rank()` of a data-parallel run over `comm`, each rank
/// in its own process (an MPI job: every process calls this with its own device). Rank 0
/// writes the run; every rank returns the same scores. A failing rank aborts the group
/// ([`Collective::abort`]).
pub fn train_rank(
    opts: TrainOptions,
    build: &BuildModel<'_>,
    comm: Arc<dyn Collective>,
    on: &mut dyn FnMut(Event),
) -> Result<Report> {
    run_rank(opts, build, comm, on).map_err(|e| e.error)
}

/// Rank 0's report, or the error that caused the run to stop: a rank's own failure rather
/// than the "replica k failed" the others saw because of it.
fn first_cause(mine: RankResult, others: Vec<RankResult>) -> Result<Report> {
    let mut errors: Vec<RankError> = Vec::new();
    let report = match mine {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    errors.extend(others.into_iter().filter_map(Result::err));
    let cause = errors.iter().position(|e| e.own).unwrap_or(0);
    match (report, errors.into_iter().nth(cause)) {
        (_, Some(e)) => Err(e.error),
        (Some(r), None) => Ok(r),
        (None, None) => Err(Error::Collective("no report".into())),
    }
}

/// A rank's failure; `own`: its own, not another rank's seen through a collective.
struct RankError {
    error: Error,
    own: bool,
}

type RankResult = std::result::Result<Report, RankError>;

/// Aborts the group when dropped armed: a rank that returns an error or panics.
struct AbortOnDrop<'a> {
    comm: &'a dyn Collective,
    why: Option<String>,
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(why) = &self.why {
            self.comm.abort(why);
        }
    }
}

/// One rank of a data-parallel run: the whole run, aborting the group on failure. A
/// failure during a step becomes an [`Error::Collective`] naming the rank, its device and
/// the step (the others report the same text); one during the setup keeps its error (a
/// bad dataset, a missing checkpoint), and the others report it with the rank.
fn run_rank(
    opts: TrainOptions,
    build: &BuildModel<'_>,
    comm: Arc<dyn Collective>,
    on: &mut dyn FnMut(Event),
) -> RankResult {
    let rank = comm.rank();
    let device = opts.device.name();
    let mut guard = AbortOnDrop {
        comm: &*comm,
        why: Some(format!("replica {rank} ({device}) panicked")),
    };
    // Where the rank is: `None` during the setup, else what it is doing.
    let mut phase: Option<String> = None;
    let mut seen_collective = false;
    let result = (|| {
        let mut run = Run::setup_replica(opts, build, Some(comm.clone()), on)?;
        while !run.done() {
            phase = Some(format!("at step {}", run.steps() + 1));
            run.step(on)?;
        }
        phase = Some("in the final validation".into());
        run.finish(on)
    })();
    let result = match result {
        Ok(r) => Ok(r),
        Err(e @ Error::Collective(_)) => {
            seen_collective = true;
            Err(e)
        }
        Err(e) => Err(match &phase {
            Some(at) => Error::Collective(format!("replica {rank} ({device}) failed {at}: {e}")),
            None => e,
        }),
    };
    guard.why = match &result {
        Ok(_) => None,
        Err(e @ Error::Collective(_)) => Some(
            e.to_string()
                .trim_start_matches("data parallel: ")
                .to_string(),
        ),
        Err(e) => Some(format!(
            "replica {rank} ({device}) failed during setup: {e}"
        )),
    };
    result.map_err(|error| RankError {
        own: !seen_collective,
        error,
    })
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
    /// The replica's host side in a data-parallel run.
    dp: Option<DataParallel>,
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
        Self::setup_replica(opts, build, None, on)
    }

    /// [`setup`](Self::setup) of one rank of a data-parallel run over `comm` (`None`: a
    /// single process). Rank 0 checks the data, counts the classes (the counts are
    /// broadcast) and creates the run directory; every rank restores a resumed run.
    pub fn setup_replica(
        opts: TrainOptions,
        build: &BuildModel<'_>,
        comm: Option<Arc<dyn Collective>>,
        on: &mut dyn FnMut(Event),
    ) -> Result<Run> {
        let started = Instant::now();
        let (rank, world) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.world()));
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
        let info = train_ds.info().clone();
        let stats = if rank == 0 {
            for (split, ds) in [("train", &train_ds), ("val", &val_ds)] {
                data::validate(ds.as_ref(), |done, total| {
                    on(Event::Checking { split, done, total })
                })?;
            }
            ClassStats::compute_or_load_with(train_ds.as_ref(), |done, total| {
                on(Event::Counting { done, total })
            })?
            .0
        } else {
            ClassStats {
                counts: vec![0; info.num_classes()],
            }
        };
        let stats = match &comm {
            // Counts are exact in f64 up to 2^53 pixels.
            Some(c) => {
                let mut v: Vec<f64> = stats.counts.iter().map(|&n| n as f64).collect();
                broadcast_f64(&**c, &mut v, 0)?;
                ClassStats {
                    counts: v.into_iter().map(|n| n as u64).collect(),
                }
            }
            None => stats,
        };
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

        let global_batch = t.batch_size * world;
        let mut resumed = if opts.resume {
            Self::restore(&run, &config, &mut store, &mut *opt, on)?
        } else if rank == 0 {
            Self::create(&run, &config, opts.init_backbone.as_deref(), &mut store, on)?
        } else {
            Resumed::fresh()
        };
        if opts.resume && resumed.global_batch != global_batch {
            // Resumed with another number of replicas: the same point of the epoch, in
            // batches of the new size (rounded down; past the last whole batch: the next
            // epoch).
            let per_epoch = train_ds.len() / global_batch.max(1);
            let seen = resumed.loader.batch_in_epoch * resumed.global_batch;
            resumed.loader.batch_in_epoch = seen / global_batch.max(1);
            if resumed.loader.batch_in_epoch >= per_epoch {
                resumed.loader = LoaderState {
                    epoch: resumed.loader.epoch + 1,
                    batch_in_epoch: 0,
                };
            }
            on(Event::Note(format!(
                "the run was saved with a global batch of {}, it continues with {global_batch} \
                 ({world} replica(s) × {}): epoch {}, batch {}",
                resumed.global_batch,
                t.batch_size,
                resumed.loader.epoch,
                resumed.loader.batch_in_epoch
            )));
        }
        let dp = match comm {
            Some(c) => {
                if t.sync_bn {
                    store.set_sync_bn(Some(c.clone()));
                }
                let dp = DataParallel::new(c, &mut store, t.bucket_mb)?;
                on(Event::Note(format!(
                    "data parallel: {world} replicas, global batch {global_batch} ({} per \
                     replica), gradients summed in buckets of {} MiB, batch norm over {}",
                    t.batch_size,
                    t.bucket_mb,
                    if t.sync_bn {
                        "the global batch (sync_bn)"
                    } else {
                        "each replica's batch"
                    }
                )));
                Some(dp)
            }
            None => {
                if t.sync_bn {
                    on(Event::Note(
                        "train.sync_bn has no effect with one replica (see --devices)".into(),
                    ));
                }
                None
            }
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
                // One bank per replica, each with its own generator (a resumed run starts
                // every replica from the saved bank of rank 0).
                let seed = t.seed.wrapping_add(rank as u64);
                let bank = MemoryBank::new(cfg, info.num_classes(), seed, resumed.bank)?;
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
        let loader = Loader::sharded(
            train_ds.clone(),
            global_batch,
            aug,
            t.seed,
            t.workers,
            resumed.loader,
            bank,
            Shard { rank, world },
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
            dp,
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
            global_batch: st.state["global_batch"]
                .as_u64()
                .map_or(config.train.batch_size, |g| g as usize),
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
        Ok(Resumed::fresh())
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
        match &mut self.dp {
            Some(dp) => {
                // Averaged over the replicas, applied to the master copy, uploaded.
                let grads = dp.reduce(&self.store, &grads)?;
                let clip = if clip_norm > 0.0 {
                    Some(clip_grad_norm(&dp.master, &grads, clip_norm)?)
                } else {
                    None
                };
                self.opt
                    .step_clipped(&mut dp.master, &grads, lr, clip.as_ref())?;
                dp.publish(&mut self.store, false)?;
            }
            None => {
                let clip = if clip_norm > 0.0 {
                    Some(clip_grad_norm(&self.store, &grads, clip_norm)?)
                } else {
                    None
                };
                self.opt
                    .step_clipped(&mut self.store, &grads, lr, clip.as_ref())?;
            }
        }
        drop(grads);
        let step = step + 1;
        self.step = step;
        self.window.1 += images * self.dp.as_ref().map_or(1, DataParallel::world);
        let writer = self.dp.as_ref().is_none_or(|dp| dp.rank() == 0);

        let total = self.total;
        let stopping = self.stop_at == Some(step);
        let log = step % log_every == 0 || step == total;
        let save = step % checkpoint_every == 0 || step == total || stopping;
        let validate = (val_every > 0 && step % val_every == 0) || step == total;
        let mut loss_value = None;
        let mut images_per_s = None;
        if log || save || validate {
            let v = loss.item()?;
            // The mean of the replicas' losses: the loss of the global batch.
            let v = match &self.dp {
                Some(dp) => dp.mean(f64::from(v))? as f32,
                None => v,
            };
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
            let mut line = json!({"step": step, "loss": v, "lr": lr,
                                  "images_per_s": images_per_s, "queued": queued,
                                  "elapsed_s": self.started.elapsed().as_secs_f64()});
            if let Some(dp) = &self.dp {
                line["replicas"] = json!(dp.world());
                line["allreduce_mib_per_step"] =
                    json!(dp.stats.bytes as f64 / dp.stats.steps.max(1) as f64 / 1048576.0);
                line["allreduce_s_per_step"] =
                    json!(dp.stats.reduce_s / dp.stats.steps.max(1) as f64);
                line["readback_s_per_step"] = json!(dp.stats.read_s / dp.stats.steps.max(1) as f64);
            }
            if writer {
                append_line(&self.dir.metrics(), &line)?;
            }
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
            if writer {
                append_line(&self.dir.metrics(), &line)?;
            }
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
        let scores = self.score(on)?;
        on(Event::Validated {
            step: self.step,
            scores: &scores,
        });
        Ok(scores)
    }

    /// The validation scores. Data parallel: the replicas' running statistics averaged
    /// first, each replica scores every `world`-th image, the confusion matrices summed.
    fn score(&mut self, on: &mut dyn FnMut(Event)) -> Result<Scores> {
        let workers = self.config.train.workers;
        let classes = self.info.num_classes();
        let progress = |done, total| on(Event::Validating { done, total });
        let (cm, bad) = match &mut self.dp {
            None => confusion_counts(
                &*self.net,
                &mut self.store,
                self.val_ds.clone(),
                (workers, None),
                progress,
            )?,
            Some(dp) => {
                dp.sync_buffers(&mut self.store)?;
                let shard = Shard {
                    rank: dp.rank(),
                    world: dp.world(),
                };
                let part: Arc<dyn Dataset> = Arc::new(Subset::strided(self.val_ds.clone(), shard));
                let (cm, bad) =
                    confusion_counts(&*self.net, &mut self.store, part, (workers, None), progress)?;
                // Exact: counts below 2^53.
                let mut all: Vec<f64> = cm.iter().chain([&bad]).map(|&n| n as f64).collect();
                dp.comm.all_reduce_f64(&mut all)?;
                let bad = all.pop().map_or(0, |b| b as u64);
                (all.into_iter().map(|n| n as u64).collect(), bad)
            }
        };
        scores_of(classes, &cm, bad, Some(&self.groups))
    }

    /// Gradient traffic so far (data-parallel runs; `None` on one process).
    pub fn reduce_stats(&self) -> Option<ReduceStats> {
        self.dp.as_ref().map(|dp| dp.stats)
    }

    /// Writes a checkpoint of the current step into `dir` (`last/` or `best/`: the same
    /// files), with the loader position `loader` the next step starts from and the memory
    /// bank's state.
    ///
    /// An update can turn finite weights into inf/NaN after a finite loss: a checkpoint
    /// never holds them (it would be "the last good" one), so the weights' norm is checked
    /// first.
    ///
    /// Data parallel: every rank takes part (the running statistics are averaged and the
    /// replicas' weights compared first), rank 0 writes.
    pub fn save(
        &mut self,
        dir: &Path,
        loader: LoaderState,
        bank: Option<&BankState>,
    ) -> Result<()> {
        let step = self.step;
        let (store, world) = match &mut self.dp {
            Some(dp) => {
                dp.sync_buffers(&mut self.store)?;
                dp.check_identical(&self.store, step)?;
                if dp.rank() != 0 {
                    return Ok(());
                }
                (&dp.master, dp.world())
            }
            None => (&self.store, 1),
        };
        let norm = weights_norm(store)?;
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
        let global_batch = self.config.train.batch_size * world;
        let state = state_json(loader, self.best, self.best_step, global_batch);
        checkpoint::save_checkpoint_with(
            dir,
            store,
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
            None => Some(self.score(on)?),
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
