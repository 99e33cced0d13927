//! Data parallelism for the trainer: the host side of a replica (docs/parallel.md).
//!
//! Every rank of a data-parallel run holds a **replica** (the model on its own device) and
//! a **master copy** of the parameters on the host (the CPU backend, rounded to `f32`
//! after every update). A step on every rank:
//!
//! 1. forward and backward on the replica, over its shard of the global batch;
//! 2. the gradients read back in **buckets** (parameters in reverse registration order,
//!    which is roughly the order the backward produces them, cut every
//!    `train.bucket_mb` MiB; one readback per bucket) and summed over the ranks with one
//!    all-reduce per bucket, then divided by the number of ranks;
//! 3. clipping and the optimiser step on the master copy, the same code on the same bits
//!    on every rank (so the copies stay bit-identical, whatever the replicas' drivers);
//! 4. the new parameters uploaded to the replica.
//!
//! Batch-norm running statistics are each replica's own between synchronisations; before
//! a validation and a checkpoint they are averaged over the replicas (into the replicas
//! and the master copy). At every checkpoint the ranks compare a checksum of the weights
//! their replicas hold (read back from the devices), and a difference stops the run with
//! an error naming the step.

use std::sync::Arc;
use std::time::Instant;

use crate::autograd::Gradients;
use crate::device::Device;
use crate::dist::{broadcast_f64, Collective};
use crate::error::{Error, Result};
use crate::nn::{Kind, ParamStore};
use crate::tensor::Tensor;

/// Gradient traffic of a run so far (this rank's side).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReduceStats {
    /// Steps whose gradients were reduced.
    pub steps: u64,
    /// Gradient bytes this rank passed to all-reduces.
    pub bytes: u64,
    /// Seconds spent reading gradients back (including waiting for the backward).
    pub read_s: f64,
    /// Seconds spent in the gradient all-reduces.
    pub reduce_s: f64,
    /// Buckets per step.
    pub buckets: usize,
}

/// The host side of one replica. See the module docs.
pub(super) struct DataParallel {
    pub(super) comm: Arc<dyn Collective>,
    /// The master copy (CPU backend): the optimiser's store and the checkpoints' source.
    pub(super) master: ParamStore,
    bucket_bytes: usize,
    pub(super) stats: ReduceStats,
}

impl DataParallel {
    /// The master copy of `replica`'s tensors, made equal on every rank (rank 0's values),
    /// and `replica` set to it.
    pub(super) fn new(
        comm: Arc<dyn Collective>,
        replica: &mut ParamStore,
        bucket_mb: f64,
    ) -> Result<DataParallel> {
        let mut master = ParamStore::new(&Device::Cpu);
        for (name, t, kind) in replica.iter() {
            let mut v = t.to_vec_f64()?;
            broadcast_f64(&*comm, &mut v, 0)?;
            master.insert(
                name,
                Tensor::from_f64(v, t.shape().clone(), &Device::Cpu)?,
                kind,
            )?;
        }
        let mut dp = DataParallel {
            comm,
            master,
            bucket_bytes: (bucket_mb * 1024.0 * 1024.0).max(4.0) as usize,
            stats: ReduceStats::default(),
        };
        dp.publish(replica, true)?;
        Ok(dp)
    }

    pub(super) fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub(super) fn world(&self) -> usize {
        self.comm.world()
    }

    /// Rounds the master's parameters to `f32` (after an update) and uploads them (and,
    /// with `buffers`, the master's buffers) to `replica`: one conversion per tensor.
    pub(super) fn publish(&mut self, replica: &mut ParamStore, buffers: bool) -> Result<()> {
        let dev = replica.device().clone();
        let names: Vec<(String, Kind)> = self
            .master
            .iter()
            .map(|(n, _, k)| (n.to_string(), k))
            .collect();
        for (name, kind) in names {
            if kind == Kind::Buffer && !buffers {
                continue;
            }
            let t = self.master.get(&name)?;
            let v = t.to_vec()?;
            let shape = t.shape().clone();
            if kind == Kind::Param {
                let wide: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
                let rounded = t.with_new_values("DataParallel::publish", wide)?;
                self.master.update_param(&name, rounded)?;
            }
            replica.set(&name, Tensor::from_vec(v, shape, &dev)?)?;
        }
        Ok(())
    }

    /// The gradients of `replica`'s parameters in `grads`, averaged over the ranks, as
    /// gradients of the master's parameters. A parameter without a gradient on any rank
    /// gets none (the optimiser skips it, as on one process); one with a gradient on some
    /// ranks counts zeros for the others.
    pub(super) fn reduce(&mut self, replica: &ParamStore, grads: &Gradients) -> Result<Gradients> {
        let params: Vec<(&str, &Tensor)> = replica.params().collect();
        let mut have: Vec<f64> = params
            .iter()
            .map(|(_, t)| f64::from(u8::from(grads.get(t).is_some())))
            .collect();
        self.comm.all_reduce_f64(&mut have)?;
        let order: Vec<usize> = (0..params.len()).rev().filter(|&k| have[k] > 0.0).collect();
        let mut buckets: Vec<Vec<usize>> = Vec::new();
        let mut filled = usize::MAX;
        for k in order {
            let bytes = params[k].1.numel() * 4;
            match buckets.last_mut() {
                Some(b) if filled < self.bucket_bytes => {
                    b.push(k);
                    filled += bytes;
                }
                _ => {
                    buckets.push(vec![k]);
                    filled = bytes;
                }
            }
        }
        let scale = 1.0 / self.world() as f32;
        let mut out = Gradients::default();
        for bucket in &buckets {
            let t0 = Instant::now();
            let present: Vec<&Tensor> = bucket
                .iter()
                .filter_map(|&k| grads.get(params[k].1))
                .collect();
            let mut read = Tensor::read_all(&present)?.into_iter();
            let mut flat: Vec<f32> = Vec::new();
            for &k in bucket {
                match grads.get(params[k].1) {
                    Some(_) => flat.extend(read.next().unwrap_or_default()),
                    None => flat.resize(flat.len() + params[k].1.numel(), 0.0),
                }
            }
            let t1 = Instant::now();
            self.comm.all_reduce_f32(&mut flat)?;
            self.stats.read_s += (t1 - t0).as_secs_f64();
            self.stats.reduce_s += t1.elapsed().as_secs_f64();
            self.stats.bytes += flat.len() as u64 * 4;
            let mut at = 0;
            for &k in bucket {
                let (name, p) = params[k];
                let n = p.numel();
                let g: Vec<f64> = flat[at..at + n]
                    .iter()
                    .map(|&x| f64::from(x * scale))
                    .collect();
                at += n;
                let mp = self.master.get(name)?;
                out.insert(mp, Tensor::from_f64(g, p.shape().clone(), &Device::Cpu)?);
            }
        }
        self.stats.steps += 1;
        self.stats.buckets = buckets.len();
        Ok(out)
    }

    /// Averages the replicas' buffers (batch-norm running statistics) over the ranks into
    /// `replica` and the master copy.
    pub(super) fn sync_buffers(&mut self, replica: &mut ParamStore) -> Result<()> {
        let world = self.world() as f64;
        let names: Vec<String> = replica
            .iter()
            .filter(|(_, _, k)| *k == Kind::Buffer)
            .map(|(n, _, _)| n.to_string())
            .collect();
        let tensors: Vec<&Tensor> = names
            .iter()
            .map(|n| replica.get(n))
            .collect::<Result<_>>()?;
        let values = Tensor::read_all(&tensors)?;
        let shapes: Vec<_> = tensors.iter().map(|t| t.shape().clone()).collect();
        let mut flat: Vec<f64> = values.iter().flatten().map(|&x| f64::from(x)).collect();
        self.comm.all_reduce_f64(&mut flat)?;
        let dev = replica.device().clone();
        let mut at = 0;
        for ((name, shape), v) in names.iter().zip(shapes).zip(&values) {
            let mean: Vec<f32> = flat[at..at + v.len()]
                .iter()
                .map(|&x| (x / world) as f32)
                .collect();
            at += v.len();
            let wide: Vec<f64> = mean.iter().map(|&x| f64::from(x)).collect();
            self.master
                .set(name, Tensor::from_f64(wide, shape.clone(), &Device::Cpu)?)?;
            replica.set(name, Tensor::from_vec(mean, shape, &dev)?)?;
        }
        Ok(())
    }

    /// The mean of `v` over the ranks.
    pub(super) fn mean(&self, v: f64) -> Result<f64> {
        let mut x = [v];
        self.comm.all_reduce_f64(&mut x)?;
        Ok(x[0] / self.world() as f64)
    }

    /// Checks that every rank's replica holds the same bits, read back from its device
    /// (FNV-1a over the `f32` bits of every tensor of `replica`), naming `step` and the
    /// ranks that differ if not.
    pub(super) fn check_identical(&self, replica: &ParamStore, step: u64) -> Result<()> {
        let tensors: Vec<&Tensor> = replica.iter().map(|(_, t, _)| t).collect();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in Tensor::read_all(&tensors)? {
            for x in v {
                for b in x.to_bits().to_le_bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        let all = self.comm.all_gather_u64(h)?;
        let differ: Vec<usize> = (0..all.len()).filter(|&k| all[k] != all[0]).collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Collective(format!(
            "after step {step} the weights of replicas {differ:?} differ from replica 0's \
             (checksums {all:x?}); the replicas computed different updates, so the run \
             stopped. The last good checkpoint is the previous one"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::ThreadGroup;

    #[test]
    fn the_checksum_catches_a_replica_whose_weights_differ() {
        let group = ThreadGroup::new(2, std::time::Duration::from_secs(60));
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .into_iter()
                .map(|g| {
                    s.spawn(move || -> Result<()> {
                        let rank = g.rank();
                        let mut replica = ParamStore::new(&Device::Cpu);
                        // Different initial values: the master copy takes rank 0's.
                        let w = vec![1.0 + rank as f32, 2.0];
                        replica.insert(
                            "w",
                            Tensor::from_vec(w, [2], &Device::Cpu)?,
                            Kind::Param,
                        )?;
                        let dp = DataParallel::new(Arc::new(g), &mut replica, 25.0)?;
                        assert_eq!(replica.get("w")?.to_vec()?, vec![1.0, 2.0]);
                        dp.check_identical(&replica, 6)?;
                        if rank == 1 {
                            let off = Tensor::from_vec(vec![1.0, 2.0 + 1e-6], [2], &Device::Cpu)?;
                            replica.set("w", off)?;
                        }
                        dp.check_identical(&replica, 7)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Collective("panicked".into())))
                })
                .collect()
        });
        for r in results {
            let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("after step 7") && msg.contains("[1]"), "{msg}");
        }
    }
}
