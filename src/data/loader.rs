//! The batch loader: seeded shuffling, background decoding, in-order delivery, resumable.
//!
//! Training ([`Loader::new`]) is an endless stream of epochs. Epoch `e` visits the indices
//! in the order of a shuffle seeded by `(seed, e)` and cuts it into `⌊N/B⌋` batches (the
//! last incomplete batch is dropped: batch norm needs ≥ 2 samples). Sample `i` of epoch `e`
//! is augmented with the generator seeded by `(seed, e, i)`. So the stream is a pure
//! function of `(dataset, B, aug, seed)`, whatever the number of workers, and
//! [`Loader::state`] (the position of the next batch) is all a checkpoint needs to resume
//! it exactly ([`LoaderState`] is the `start` of the new loader).
//!
//! Evaluation ([`Loader::sequential`]) is one pass in index order with no augmentation,
//! keeping the last partial batch.
//!
//! With `workers = w > 0`, global batch `k` is built by thread `k mod w` and handed over
//! through that thread's bounded channel (2 batches), and the consumer reads the channels
//! round-robin, so batches arrive in order while up to `≈ 3w` are prepared ahead
//! ([`Loader::queued`] counts the ready ones). `workers = 0` loads on the calling thread.
//! Dropping the loader stops and joins its threads.
//!
//! With a [`MemoryBank`] ([`Loader::with_bank`]), which is sequential state, the bank is
//! applied in batch order: with `workers > 0` on one more thread, the stage, which reads
//! the workers' channels round-robin, applies the bank and hands the batch to the consumer
//! through its own bounded channel (2 batches; [`Loader::queued`] then counts the batches
//! the stage has finished); with `workers = 0` on the calling thread. Each batch carries
//! the bank's state after it ([`Batch::bank`]), so the stream of a loader with a bank is a
//! pure function of `(dataset, B, aug, seed, start, bank config, bank state at start)`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::bank::{BankState, MemoryBank};
use super::{bad, normalize, seed_of, Augment, Dataset, DatasetInfo, Sample};
use crate::error::{Error, Result};

/// Batches each worker's channel holds (the bounded queue is `CHANNEL × workers`): two
/// keep a worker busy while the consumer takes the previous one.
const CHANNEL: usize = 2;

/// Salt separating the shuffle generator from the augmentation generators.
const SHUFFLE_SALT: u64 = 0x0053_4855_4646_4c45;

/// Where the next batch comes from: epoch and batch number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub batch_in_epoch: usize,
}

/// The part of every global batch one replica of a data-parallel run trains on: of a
/// global batch of `B` samples, rank `r` of `world` takes samples `r·B/world ..
/// (r+1)·B/world`. The stream of global batches, their positions ([`LoaderState`]) and the
/// augmentation of every sample are those of the whole stream, so the replicas together
/// see exactly what one process with batch `B` sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };
}

/// The samples `indices` of a dataset, as a dataset (a replica's share of an evaluation).
pub struct Subset {
    ds: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// Rank `shard.rank`'s share of `ds` for a sharded pass: the samples `i` with
    /// `i mod world = rank`.
    pub fn strided(ds: Arc<dyn Dataset>, shard: Shard) -> Subset {
        let indices = (shard.rank..ds.len()).step_by(shard.world.max(1)).collect();
        Subset { ds, indices }
    }
}

impl Dataset for Subset {
    fn info(&self) -> &DatasetInfo {
        self.ds.info()
    }
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn name(&self, i: usize) -> String {
        match self.indices.get(i) {
            Some(&j) => self.ds.name(j),
            None => format!("#{i}"),
        }
    }
    fn load(&self, i: usize) -> Result<Sample> {
        match self.indices.get(i) {
            Some(&j) => self.ds.load(j),
            None => Err(Error::shape(
                "Subset::load",
                format!("sample {i} of a subset of {}", self.indices.len()),
            )),
        }
    }
}

/// A batch ready for the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[b, 3, h, w]`, normalised (see [`normalize`]).
    pub images: Vec<f32>,
    /// `[b, h, w]` class ids, ignore index for unlabelled pixels.
    pub labels: Vec<u8>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    /// Dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
    /// The position this batch came from.
    pub state: LoaderState,
    /// With a memory bank: its state right after this batch was applied (save it with the
    /// checkpoint taken after training on this batch, together with the loader's state, to
    /// resume the same stream). `None` without a bank.
    pub bank: Option<BankState>,
}

/// What the stream is: an endless shuffled training stream or one sequential pass.
#[derive(Clone)]
struct Plan {
    ds: Arc<dyn Dataset>,
    batch: usize,
    aug: Augment,
    seed: u64,
    sequential: bool,
    start: LoaderState,
    /// Batches per epoch.
    per_epoch: usize,
    /// The part of each batch this loader delivers.
    shard: Shard,
}

impl Plan {
    fn position(&self, k: u64) -> LoaderState {
        let abs = self.start.epoch * self.per_epoch as u64 + self.start.batch_in_epoch as u64 + k;
        LoaderState {
            epoch: abs / self.per_epoch as u64,
            batch_in_epoch: (abs % self.per_epoch as u64) as usize,
        }
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.ds.len()).collect();
        if !self.sequential {
            let mut rng = StdRng::seed_from_u64(seed_of(&[self.seed, epoch, SHUFFLE_SALT]));
            idx.shuffle(&mut rng);
        }
        idx
    }

    /// Builds global batch `k`; `cache` keeps the last epoch's order.
    fn build(&self, k: u64, cache: &mut Option<(u64, Vec<usize>)>) -> Result<Batch> {
        let pos = self.position(k);
        if cache.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
            *cache = Some((pos.epoch, self.order(pos.epoch)));
        }
        let order = cache.as_ref().map(|(_, o)| o.as_slice()).unwrap_or(&[]);
        let lo = pos.batch_in_epoch * self.batch;
        let global = &order[lo..(lo + self.batch).min(order.len())];
        let Shard { rank, world } = self.shard;
        let n = global.len();
        let indices: Vec<usize> = global[rank * n / world..(rank + 1) * n / world].to_vec();
        let ignore = self.ds.info().ignore_index;
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let (mut h, mut w) = (0, 0);
        for (n, &i) in indices.iter().enumerate() {
            let s = self.ds.load(i)?;
            let s = self.aug.apply(s, ignore, self.seed, pos.epoch, i);
            if n == 0 {
                (h, w) = (s.height, s.width);
            } else if (s.height, s.width) != (h, w) {
                return Err(bad(
                    std::path::Path::new(&self.ds.name(i)),
                    format!(
                        "sample is {}×{} but the batch is {h}×{w}: samples of one batch must \
                         have the same size (use a crop, or batch size 1)",
                        s.height, s.width
                    ),
                ));
            }
            let (x, y) = normalize(s);
            images.extend_from_slice(&x);
            labels.extend_from_slice(&y);
        }
        Ok(Batch {
            images,
            labels,
            b: indices.len(),
            h,
            w,
            indices,
            state: pos,
            bank: None,
        })
    }
}

struct Worker {
    rx: Receiver<Result<Batch>>,
    handle: JoinHandle<()>,
}

/// Where the consumer takes its batches from.
enum Source {
    /// `workers = 0`: built (and banked) on the calling thread.
    Inline {
        cache: Option<(u64, Vec<usize>)>,
        bank: Option<Box<MemoryBank>>,
    },
    /// The workers' channels, read round-robin.
    Workers(Vec<Worker>),
    /// The stage thread's channel (workers → stage applying the bank → consumer); the stage
    /// owns the workers and joins them when it ends.
    Staged {
        rx: Receiver<Result<Batch>>,
        stage: JoinHandle<()>,
    },
}

/// Starts `n` workers building global batches `id, id + n, …`; each counts its batches in
/// `queued` when given.
fn spawn_workers(
    plan: &Plan,
    total: Option<u64>,
    n: usize,
    queued: Option<&Arc<AtomicUsize>>,
    stop: &Arc<AtomicBool>,
) -> Vec<Worker> {
    (0..n)
        .map(|id| {
            let (tx, rx) = sync_channel::<Result<Batch>>(CHANNEL);
            let (plan, queued, stop) = (plan.clone(), queued.cloned(), stop.clone());
            let handle = std::thread::spawn(move || {
                let mut cache = None;
                let mut k = id as u64;
                while !stop.load(Ordering::Relaxed) && total.is_none_or(|t| k < t) {
                    let b = plan.build(k, &mut cache);
                    if let Some(q) = &queued {
                        q.fetch_add(1, Ordering::SeqCst);
                    }
                    if tx.send(b).is_err() {
                        break;
                    }
                    k += n as u64;
                }
            });
            Worker { rx, handle }
        })
        .collect()
}

/// Stops and joins workers: dropping the receivers makes a worker blocked in `send` return.
fn join_workers(workers: Vec<Worker>) {
    let (rxs, handles): (Vec<_>, Vec<_>) = workers.into_iter().map(|w| (w.rx, w.handle)).unzip();
    drop(rxs);
    for h in handles {
        let _ = h.join();
    }
}

/// An iterator of [`Batch`]es (`Result<Batch>`: a sample that fails to load ends up here).
pub struct Loader {
    plan: Plan,
    /// Global batches delivered so far.
    next: u64,
    /// `Some(n)` for a finite (sequential) stream of `n` batches.
    total: Option<u64>,
    source: Source,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Loader {
    /// The endless training stream, starting at `start` (`LoaderState::default()` for a
    /// new run). Errors: `batch` = 0, fewer samples than `batch`, a bad `aug`, a `start`
    /// past the end of an epoch.
    pub fn new(
        ds: Arc<dyn Dataset>,
        batch: usize,
        aug: Augment,
        seed: u64,
        workers: usize,
        start: LoaderState,
    ) -> Result<Loader> {
        Self::with_bank(ds, batch, aug, seed, workers, start, None)
    }

    /// [`new`](Self::new) with an optional tail-class memory bank applied to every batch in
    /// order (see the module doc). To resume, pass the [`LoaderState`] and the
    /// [`Batch::bank`] of the last batch trained on (the bank built with
    /// `MemoryBank::new(cfg, classes, seed, Some(state))`).
    pub fn with_bank(
        ds: Arc<dyn Dataset>,
        batch: usize,
        aug: Augment,
        seed: u64,
        workers: usize,
        start: LoaderState,
        bank: Option<MemoryBank>,
    ) -> Result<Loader> {
        Self::sharded(ds, batch, aug, seed, workers, start, bank, Shard::WHOLE)
    }

    /// [`with_bank`](Self::with_bank) delivering only `shard` of each global batch of
    /// `batch` samples (`batch` must be a multiple of `shard.world`).
    #[allow(clippy::too_many_arguments)]
    pub fn sharded(
        ds: Arc<dyn Dataset>,
        batch: usize,
        aug: Augment,
        seed: u64,
        workers: usize,
        start: LoaderState,
        bank: Option<MemoryBank>,
        shard: Shard,
    ) -> Result<Loader> {
        if shard.world == 0 || shard.rank >= shard.world || batch % shard.world != 0 {
            return Err(Error::shape(
                "loader",
                format!(
                    "shard {} of {} of a batch of {batch}: the batch must split evenly over \
                     the replicas",
                    shard.rank, shard.world
                ),
            ));
        }
        aug.check()?;
        let n = ds.len();
        if batch == 0 || n < batch {
            return Err(Error::shape(
                "loader",
                format!("batch size {batch} needs 1 ≤ batch ≤ dataset size {n}"),
            ));
        }
        let per_epoch = n / batch;
        if start.batch_in_epoch >= per_epoch {
            return Err(Error::shape(
                "loader",
                format!(
                    "resume position batch {} of epoch {} is past the {per_epoch} batches of \
                     an epoch (dataset or batch size changed?)",
                    start.batch_in_epoch, start.epoch
                ),
            ));
        }
        let plan = Plan {
            ds,
            batch,
            aug,
            seed,
            sequential: false,
            start,
            per_epoch,
            shard,
        };
        Ok(Self::spawn(plan, None, workers, bank))
    }

    /// One pass over the dataset in index order, no augmentation, the last batch possibly
    /// smaller (for evaluation). Samples of one batch must have the same size.
    pub fn sequential(ds: Arc<dyn Dataset>, batch: usize, workers: usize) -> Result<Loader> {
        if batch == 0 {
            return Err(Error::shape("loader", "batch size must be at least 1"));
        }
        let per_epoch = ds.len().div_ceil(batch).max(1);
        let total = ds.len().div_ceil(batch) as u64;
        let plan = Plan {
            ds,
            batch,
            aug: Augment::eval(),
            seed: 0,
            sequential: true,
            start: LoaderState::default(),
            per_epoch,
            shard: Shard::WHOLE,
        };
        Ok(Self::spawn(plan, Some(total), workers, None))
    }

    fn spawn(plan: Plan, total: Option<u64>, workers: usize, bank: Option<MemoryBank>) -> Loader {
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let source = match (workers, bank) {
            (0, bank) => Source::Inline {
                cache: None,
                bank: bank.map(Box::new),
            },
            (n, None) => Source::Workers(spawn_workers(&plan, total, n, Some(&queued), &stop)),
            (n, Some(mut bank)) => {
                let ws = spawn_workers(&plan, total, n, None, &stop);
                let (tx, rx) = sync_channel::<Result<Batch>>(CHANNEL);
                let (queued, stop) = (queued.clone(), stop.clone());
                let stage = std::thread::spawn(move || {
                    let mut k = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(b) = ws[k % ws.len()].rx.recv() else {
                            break;
                        };
                        let b = b.map(|mut b| {
                            bank.apply(&mut b);
                            b
                        });
                        queued.fetch_add(1, Ordering::SeqCst);
                        if tx.send(b).is_err() {
                            break;
                        }
                        k += 1;
                    }
                    join_workers(ws);
                });
                Source::Staged { rx, stage }
            }
        };
        Loader {
            plan,
            next: 0,
            total,
            source,
            queued,
            stop,
        }
    }

    /// The position of the next batch: save it with a checkpoint and pass it as `start`
    /// to resume the same data order.
    pub fn state(&self) -> LoaderState {
        self.plan.position(self.next)
    }

    /// Batches decoded and waiting for the consumer (0 with `workers = 0`; with a bank, the
    /// batches the stage thread has finished). A trainer that sees this stay above 0 knows
    /// the device never waits for data.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.plan.per_epoch
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.total.is_some_and(|t| self.next >= t) {
            return None;
        }
        let k = self.next;
        let rx = match &mut self.source {
            Source::Inline { cache, bank } => {
                let mut out = self.plan.build(k, cache);
                if let (Ok(b), Some(bank)) = (&mut out, bank) {
                    bank.apply(b);
                }
                self.next += 1;
                return Some(out);
            }
            Source::Workers(ws) => &ws[(k % ws.len() as u64) as usize].rx,
            Source::Staged { rx, .. } => rx,
        };
        let out = match rx.recv() {
            Ok(b) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                b
            }
            Err(_) => Err(Error::Data {
                path: "<loader>".into(),
                msg: "a loader thread stopped unexpectedly".into(),
            }),
        };
        self.next += 1;
        Some(out)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let source = std::mem::replace(
            &mut self.source,
            Source::Inline {
                cache: None,
                bank: None,
            },
        );
        match source {
            Source::Inline { .. } => {}
            Source::Workers(ws) => join_workers(ws),
            Source::Staged { rx, stage } => {
                // The stage returns from `send` (or sees `stop`), then stops its workers.
                drop(rx);
                let _ = stage.join();
            }
        }
    }
}
