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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{bad, normalize, seed_of, Augment, Dataset};
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
        let indices: Vec<usize> = order[lo..(lo + self.batch).min(order.len())].to_vec();
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
        })
    }
}

struct Worker {
    rx: Receiver<Result<Batch>>,
    handle: JoinHandle<()>,
}

/// An iterator of [`Batch`]es (`Result<Batch>`: a sample that fails to load ends up here).
pub struct Loader {
    plan: Plan,
    /// Global batches delivered so far.
    next: u64,
    /// `Some(n)` for a finite (sequential) stream of `n` batches.
    total: Option<u64>,
    workers: Vec<Worker>,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    cache: Option<(u64, Vec<usize>)>,
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
        };
        Ok(Self::spawn(plan, None, workers))
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
        };
        Ok(Self::spawn(plan, Some(total), workers))
    }

    fn spawn(plan: Plan, total: Option<u64>, workers: usize) -> Loader {
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut ws = Vec::with_capacity(workers);
        for id in 0..workers {
            let (tx, rx) = sync_channel::<Result<Batch>>(CHANNEL);
            let (plan, queued, stop) = (plan.clone(), queued.clone(), stop.clone());
            let handle = std::thread::spawn(move || {
                let mut cache = None;
                let mut k = id as u64;
                while !stop.load(Ordering::Relaxed) && total.is_none_or(|t| k < t) {
                    let b = plan.build(k, &mut cache);
                    queued.fetch_add(1, Ordering::SeqCst);
                    if tx.send(b).is_err() {
                        break;
                    }
                    k += workers as u64;
                }
            });
            ws.push(Worker { rx, handle });
        }
        Loader {
            plan,
            next: 0,
            total,
            workers: ws,
            queued,
            stop,
            cache: None,
        }
    }

    /// The position of the next batch: save it with a checkpoint and pass it as `start`
    /// to resume the same data order.
    pub fn state(&self) -> LoaderState {
        self.plan.position(self.next)
    }

    /// Batches decoded and waiting for the consumer (0 with `workers = 0`). A trainer that
    /// sees this stay above 0 knows the device never waits for data.
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
        let out = if self.workers.is_empty() {
            self.plan.build(k, &mut self.cache)
        } else {
            let w = &self.workers[(k % self.workers.len() as u64) as usize];
            match w.rx.recv() {
                Ok(b) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    b
                }
                Err(_) => Err(Error::Data {
                    path: "<loader>".into(),
                    msg: "a loader thread stopped unexpectedly".into(),
                }),
            }
        };
        self.next += 1;
        Some(out)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (rxs, handles): (Vec<_>, Vec<_>) =
            self.workers.drain(..).map(|w| (w.rx, w.handle)).unzip();
        // Dropping the receivers makes a worker blocked in `send` return; then join.
        drop(rxs);
        for h in handles {
            let _ = h.join();
        }
    }
}
