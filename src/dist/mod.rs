//! Collective communication between the replicas of a data-parallel run.
//!
//! A [`Collective`] joins `world` ranks; every rank calls the same collectives in the same
//! order (the trainer's step is the same program on every rank), and each call returns
//! when every rank has made it. [`Solo`] is the group of one; [`ThreadGroup`] joins the
//! threads of one process (one replica per adapter: `wgseg train --devices`);
//! `mpi::MpiGroup` (with `--features mpi`) the processes of an MPI job.
//!
//! Every rank gets bit-identical sums, so the replicas' host-side optimiser steps stay
//! bit-identical too: [`ThreadGroup`] sums in `f64` over the ranks' contributions in rank
//! order, by every rank the same way; `MpiGroup` reduces to rank 0 and broadcasts.
//!
//! [`sync_batch_norm2d`] is batch norm over the global batch (`--sync-bn`).
//!
//! A rank that fails calls [`Collective::abort`]: in a [`ThreadGroup`] every rank waiting
//! in (or later entering) a collective returns an error with the failed rank's reason
//! instead of waiting forever, and a rank that stops answering without aborting (a hung
//! driver) ends the others' wait after [`timeout`], with an error naming the ranks that did
//! not arrive; `MpiGroup` prints the reason and ends the job (`MPI_Abort`).

#[cfg(feature = "mpi")]
pub mod mpi;
mod sync_bn;

pub use sync_bn::sync_batch_norm2d;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a rank waits in a collective for the others before giving up (overridable with
/// `WGSEG_COLLECTIVE_TIMEOUT` in seconds): long enough for the slowest step of a paper-sized
/// model on lavapipe, short enough that a hung job ends.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The ranks of a data-parallel run, as seen from one of them. See the module docs.
pub trait Collective: Send + Sync {
    /// This rank, `0..world`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world(&self) -> usize;
    /// Replaces `data` by its elementwise sum over the ranks (every rank passes the same
    /// length), the same bits on every rank.
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()>;
    /// [`all_reduce_f64`](Collective::all_reduce_f64) for `f32` data: summed in `f64` in rank
    /// order, rounded once.
    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<()>;
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>>;
    /// Marks this rank as failed: the other ranks' collectives fail from now on with `why`,
    /// which names the rank and what happened ("replica 1 (…) failed at step 7: …").
    fn abort(&self, why: &str);
    /// Bytes this rank has passed to sum-reductions so far (for the benchmark and logs).
    fn reduced_bytes(&self) -> u64;
}

/// The group of one rank: every collective is the identity.
#[derive(Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn all_reduce_f64(&self, _data: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f32(&self, _data: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        Ok(vec![value])
    }
    fn abort(&self, _why: &str) {}
    fn reduced_bytes(&self) -> u64 {
        0
    }
}

/// Replaces `data` on rank `root` everywhere: a sum to which the other ranks contribute
/// zeros (exact: `x + 0 = x`).
pub fn broadcast_f64(comm: &dyn Collective, data: &mut [f64], root: usize) -> Result<()> {
    if comm.rank() != root {
        data.fill(0.0);
    }
    comm.all_reduce_f64(data)
}

/// The collective timeout: `WGSEG_COLLECTIVE_TIMEOUT` seconds, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Duration {
    std::env::var("WGSEG_COLLECTIVE_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64)
}

/// One rank's contribution to a round.
enum Part {
    F64(Vec<f64>),
    Gather(u64),
}

/// The state the threads of a [`ThreadGroup`] share.
struct Round {
    /// Round number: bumped when the last rank of a round arrives.
    generation: u64,
    /// The contributions of the round being gathered (`None`: not arrived yet).
    parts: Vec<Option<Part>>,
    /// The finished round's contributions, for the ranks still to read them.
    done: Arc<Vec<Part>>,
    /// `(rank, why)` of the first rank that aborted.
    failed: Option<(usize, String)>,
}

struct Shared {
    round: Mutex<Round>,
    cv: Condvar,
    world: usize,
    timeout: Duration,
}

/// The threads of one process as ranks: [`ThreadGroup::new`] makes the `world` handles,
/// one per thread. See the module docs.
pub struct ThreadGroup {
    shared: Arc<Shared>,
    rank: usize,
    reduced: std::sync::atomic::AtomicU64,
}

impl ThreadGroup {
    /// The `world` ranks of a new group, in rank order, waiting at most `timeout` for
    /// each other.
    pub fn new(world: usize, timeout: Duration) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                generation: 0,
                parts: (0..world).map(|_| None).collect(),
                done: Arc::new(Vec::new()),
                failed: None,
            }),
            cv: Condvar::new(),
            world,
            timeout,
        });
        (0..world)
            .map(|rank| ThreadGroup {
                shared: shared.clone(),
                rank,
                reduced: Default::default(),
            })
            .collect()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Round>> {
        self.shared
            .round
            .lock()
            .map_err(|_| Error::Collective("a replica thread panicked".into()))
    }

    fn failed(f: &(usize, String)) -> Error {
        Error::Collective(f.1.clone())
    }

    /// Deposits `part`, waits for every rank's, and returns all of them in rank order.
    fn exchange(&self, part: Part) -> Result<Arc<Vec<Part>>> {
        let mut r = self.lock()?;
        if let Some(f) = &r.failed {
            return Err(Self::failed(f));
        }
        r.parts[self.rank] = Some(part);
        if r.parts.iter().all(Option::is_some) {
            let parts: Vec<Part> = r.parts.iter_mut().filter_map(Option::take).collect();
            r.done = Arc::new(parts);
            r.generation += 1;
            self.shared.cv.notify_all();
            return Ok(r.done.clone());
        }
        let generation = r.generation;
        let deadline = Instant::now() + self.shared.timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<usize> = (0..self.shared.world)
                    .filter(|&k| r.parts[k].is_none())
                    .collect();
                let why = format!(
                    "replicas {missing:?} did not reach a collective within {:.0} s \
                     (WGSEG_COLLECTIVE_TIMEOUT); replica {} gave up",
                    self.shared.timeout.as_secs_f64(),
                    self.rank
                );
                r.failed
                    .get_or_insert((missing.first().copied().unwrap_or(0), why.clone()));
                self.shared.cv.notify_all();
                return Err(Error::Collective(why));
            }
            let (guard, _) = self
                .shared
                .cv
                .wait_timeout(r, deadline - now)
                .map_err(|_| Error::Collective("a replica thread panicked".into()))?;
            r = guard;
            if r.generation != generation {
                return Ok(r.done.clone());
            }
            if let Some(f) = &r.failed {
                return Err(Self::failed(f));
            }
        }
    }

    fn sum(&self, data: &[f64]) -> Result<Vec<f64>> {
        let n = data.len();
        let parts = self.exchange(Part::F64(data.to_vec()))?;
        let mut out = vec![0.0f64; n];
        for (k, p) in parts.iter().enumerate() {
            match p {
                Part::F64(v) if v.len() == n => {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o += x;
                    }
                }
                _ => {
                    return Err(Error::Collective(format!(
                        "replica {k} passed a different collective than replica {} (a \
                         program error: every rank must make the same calls)",
                        self.rank
                    )))
                }
            }
        }
        Ok(out)
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()> {
        let out = self.sum(data)?;
        data.copy_from_slice(&out);
        self.count(data.len() * 8);
        Ok(())
    }

    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<()> {
        let wide: Vec<f64> = data.iter().map(|&x| f64::from(x)).collect();
        let out = self.sum(&wide)?;
        for (d, s) in data.iter_mut().zip(out) {
            *d = s as f32;
        }
        self.count(data.len() * 4);
        Ok(())
    }

    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let parts = self.exchange(Part::Gather(value))?;
        parts
            .iter()
            .map(|p| match p {
                Part::Gather(v) => Ok(*v),
                Part::F64(_) => Err(Error::Collective(
                    "the replicas made different collective calls (a program error)".into(),
                )),
            })
            .collect()
    }

    fn abort(&self, why: &str) {
        if let Ok(mut r) = self.shared.round.lock() {
            r.failed.get_or_insert((self.rank, why.to_string()));
        }
        self.shared.cv.notify_all();
    }

    fn reduced_bytes(&self) -> u64 {
        self.reduced.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl ThreadGroup {
    fn count(&self, bytes: usize) {
        self.reduced
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Send>(world: usize, f: impl Fn(&ThreadGroup) -> T + Sync) -> Vec<T> {
        let group = ThreadGroup::new(world, Duration::from_secs(60));
        std::thread::scope(|s| {
            let handles: Vec<_> = group.iter().map(|g| s.spawn(|| f(g))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| unreachable!("rank panicked")))
                .collect()
        })
    }

    #[test]
    fn sums_are_identical_on_every_rank_and_in_rank_order() {
        // Rank k contributes [k + 0.1, 1e8 (rank 0) or 1, …]; the f64 sum in rank order.
        let out = run(3, |g| {
            let k = g.rank() as f32;
            let mut v = vec![k + 0.1, if g.rank() == 0 { 1e8 } else { 1.0 }, -k];
            g.all_reduce_f32(&mut v).map(|_| v)
        });
        let want = [
            (0.1f32 as f64 + 1.1f32 as f64 + 2.1f32 as f64) as f32,
            (1e8 + 1.0 + 1.0) as f32,
            -3.0,
        ];
        for got in out {
            let got = got.unwrap_or_default();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn many_rounds_gather_and_broadcast() {
        let out = run(4, |g| -> Result<(Vec<u64>, Vec<f64>)> {
            let mut last = Vec::new();
            for round in 0..50u64 {
                last = g.all_gather_u64(round * 10 + g.rank() as u64)?;
            }
            let mut b = vec![g.rank() as f64 + 5.0; 3];
            broadcast_f64(g, &mut b, 2)?;
            Ok((last, b))
        });
        for r in out {
            let (gathered, b) = r.unwrap_or_default();
            assert_eq!(gathered, vec![490, 491, 492, 493]);
            assert_eq!(b, vec![7.0; 3]);
        }
    }

    #[test]
    fn an_aborted_rank_fails_the_others_with_its_reason() {
        let out = run(3, |g| {
            if g.rank() == 1 {
                g.abort("replica 1 failed at step 7: the adapter was lost");
                return Ok(());
            }
            let mut v = vec![1.0f64];
            g.all_reduce_f64(&mut v)
        });
        for (k, r) in out.iter().enumerate() {
            match (k, r) {
                (1, r) => assert!(r.is_ok()),
                (_, Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("replica 1") && msg.contains("step 7"), "{msg}");
                }
                (_, Ok(())) => unreachable!("rank {k} passed a collective rank 1 never joined"),
            }
        }
    }

    #[test]
    fn a_missing_rank_times_out_naming_it() {
        let group = ThreadGroup::new(2, Duration::from_millis(200));
        let mut v = vec![1.0f64];
        let err = group[0].all_reduce_f64(&mut v);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("[1]") && msg.contains("did not reach"),
            "{msg}"
        );
        // The other rank now sees the failure instead of waiting.
        let msg = group[1]
            .all_reduce_f64(&mut v)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("[1]") && msg.contains("replica 0 gave up"),
            "{msg}"
        );
    }
}
