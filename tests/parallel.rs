//! Data-parallel training in one process (`train_parallel`, `wgseg train --devices`): two
//! replicas against one process with the same global batch, sharded validation against a
//! single-process evaluation, identical replicas across two different drivers, resume with
//! another number of replicas, and a failing replica ending the run with its rank and step.

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use wgseg::data::{self, Dataset};
use wgseg::dist::{sync_batch_norm2d, Collective, Solo, ThreadGroup};
use wgseg::gpu::list_adapters;
use wgseg::model::{ModelConfig, Segmenter, SharedBuildModel};
use wgseg::nn::{init_rng, Conv2d, ConvBn, ParamStore};
use wgseg::ops::{batch_norm2d_with, Activation, BatchNormState, Epilogue};
use wgseg::train::checkpoint::{self, RunDir};
use wgseg::train::{evaluate, train_model, train_parallel, Event, Report, TrainOptions};
use wgseg::{backward, Device, Error, Result, Tensor};

/// `stem` (3×3 conv, with BN when `bn`) then ReLU and `head` (1×1 conv with bias); fails
/// its forward pass number `fail_at` (counting from 1) when given.
struct Toy {
    stem: Stem,
    head: Conv2d,
    classes: usize,
    forwards: Cell<u64>,
    fail_at: Option<u64>,
}

enum Stem {
    Plain(Conv2d),
    Bn(ConvBn),
}

impl Toy {
    fn new(classes: usize, store: &mut ParamStore, seed: u64, bn: bool) -> Result<Toy> {
        let r = &mut init_rng(seed);
        let stem = if bn {
            Stem::Bn(ConvBn::new(store, r, "stem", (3, 6), 3, 1, false)?)
        } else {
            Stem::Plain(Conv2d::new(store, r, "stem", (3, 6), 3, 1, 1, 1, true)?)
        };
        Ok(Toy {
            stem,
            head: Conv2d::new(store, r, "head", (6, classes), 1, 1, 1, 1, true)?,
            classes,
            forwards: Cell::new(0),
            fail_at: None,
        })
    }
}

impl Segmenter for Toy {
    fn arch(&self) -> &str {
        "toy"
    }
    fn metadata_json(&self) -> Result<String> {
        Ok(serde_json::json!({"arch": "toy"}).to_string())
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let n = self.forwards.get() + 1;
        self.forwards.set(n);
        if self.fail_at == Some(n) {
            return Err(Error::Gpu("the adapter was lost (a test's failure)".into()));
        }
        let y = match &self.stem {
            Stem::Plain(c) => c.forward(store, x)?.relu()?,
            Stem::Bn(c) => c.forward(store, x, training)?,
        };
        self.head.forward(store, &y)
    }
}

fn plain(
    _: &ModelConfig,
    c: usize,
    store: &mut ParamStore,
    seed: u64,
) -> Result<Box<dyn Segmenter>> {
    Ok(Box::new(Toy::new(c, store, seed, false)?))
}

fn with_bn(
    _: &ModelConfig,
    c: usize,
    store: &mut ParamStore,
    seed: u64,
) -> Result<Box<dyn Segmenter>> {
    Ok(Box::new(Toy::new(c, store, seed, true)?))
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wgseg-parallel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A run of `steps` steps of `batch` images per replica, 32² crops at scale 1 (no padding:
/// no unlabelled pixels), logging every step, checkpointing every 2.
fn options(data: &Path, out: &Path, batch: usize, steps: usize) -> TrainOptions {
    let mut config = toy_run_config();
    config.data.aug_scale = [1.0, 1.0];
    let t = &mut config.train;
    t.steps = steps;
    t.batch_size = batch;
    t.crop = 32;
    t.lr = 0.05;
    t.log_every = 1;
    t.checkpoint_every = 2;
    t.val_every = 0;
    t.workers = 1;
    t.seed = 5;
    TrainOptions {
        config,
        data: Some(data.to_path_buf()),
        out: out.to_path_buf(),
        device: Device::Cpu,
        resume: false,
        init_backbone: None,
        stop_at: None,
    }
}

/// The selected adapter and a second replica's device: another adapter with a different
/// backend when there is one (the heterogeneous case: Vulkan and GL), else a second
/// context on the same adapter.
fn two_devices(heterogeneous: bool) -> Option<(Device, Device)> {
    let first = gpu()?;
    let Device::Gpu(ctx) = &first else {
        return None;
    };
    let backend = format!("{:?}", ctx.adapter_info().backend);
    let other = list_adapters()
        .into_iter()
        .find(|a| heterogeneous && a.backend != backend)
        .map(|a| format!("gpu:{}", a.index));
    let second = match other {
        Some(spec) => Device::parse(&spec).unwrap(),
        None => Device::gpu().unwrap(),
    };
    Some((first, second))
}

/// Every tensor of a toy's checkpoint (with batch norm when `bn`), by name.
fn weights_of(run: &Path, bn: bool) -> Vec<(String, Vec<f64>)> {
    let file = checkpoint::find_checkpoint(&RunDir::new(run).last()).unwrap();
    let mut store = ParamStore::new(&Device::Cpu);
    Toy::new(10, &mut store, 0, bn).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    store
        .iter()
        .map(|(n, t, _)| (n.to_string(), t.to_vec_f64().unwrap()))
        .collect()
}

fn run(
    opts: TrainOptions,
    devices: &[Device],
    build: &SharedBuildModel<'_>,
) -> (Result<Report>, Vec<String>) {
    let mut notes = Vec::new();
    let report = train_parallel(opts, devices, build, &mut |e| {
        if let Event::Note(n) = e {
            notes.push(n)
        }
    });
    (report, notes)
}

/// A run's directory and report.
type Ran = (PathBuf, Report);

/// One process's run, the replicas' run and the replicas' notes.
type Pair = (Ran, Ran, Vec<String>);

/// One process of 4 images and 2 replicas of 2 (the selected adapter and the other
/// backend's where there is one: Vulkan with GL), 4 steps of `build`'s toy (`bn`: with
/// batch norm), `sync_bn` for the replicas; their runs, reports and the replicas' notes.
fn one_against_two(dir: &Path, bn: bool, sync_bn: bool) -> Option<Pair> {
    let (a, b) = two_devices(true)?;
    let build: &SharedBuildModel<'_> = if bn { &with_bn } else { &plain };
    let data = data_without_ignore(dir);
    let (one, two) = (
        dir.join("one"),
        dir.join(if sync_bn { "sync" } else { "two" }),
    );
    let single = TrainOptions {
        device: a.clone(),
        ..options(&data, &one, 4, 4)
    };
    let single = train_model(single, build, &mut |_| {}).unwrap();
    let mut opts = options(&data, &two, 2, 4);
    opts.config.train.sync_bn = sync_bn;
    let (double, notes) = run(opts, &[a, b], build);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("2 replicas, global batch 4")),
        "{notes:?}"
    );
    Some(((one, single), (two, double.unwrap()), notes))
}

#[test]
fn two_replicas_take_the_steps_of_one_process_with_the_global_batch() {
    // The same losses step by step (the same images: the loader's global batches) and the
    // same weights after 4 steps, to f32 summation order (the gradient of a batch of 4
    // against the mean of two batches of 2).
    let dir = scratch("equal");
    let Some(((one, single), (two, double), _)) = one_against_two(&dir, false, false) else {
        return;
    };
    assert_same_steps(
        (&one, &two),
        &weights_of(&one, false),
        &weights_of(&two, false),
        4,
    );
    let (s1, s2) = (single.scores.unwrap(), double.scores.unwrap());
    assert_eq!(s1.pixels, s2.pixels);
    assert!(
        (s1.miou - s2.miou).abs() < 0.02,
        "{} vs {}",
        s1.miou,
        s2.miou
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_sync_bn_two_replicas_with_batch_norm_take_the_steps_of_one_process() {
    // Batch norm over the global batch: the same losses and weights (running statistics
    // included) as one process of 4 images.
    let dir = scratch("syncbn");
    let Some(((one, _), (two, _), notes)) = one_against_two(&dir, true, true) else {
        return;
    };
    assert!(
        notes.iter().any(|n| n.contains("global batch (sync_bn)")),
        "{notes:?}"
    );
    let w1 = weights_of(&one, true);
    assert_eq!(w1.len(), 7);
    assert_same_steps((&one, &two), &w1, &weights_of(&two, true), 4);
    // Without sync_bn each replica normalises over its own 2 images: another model.
    let Some((_, (own, _), _)) = one_against_two(&dir.join("own"), true, false) else {
        return;
    };
    let differs = w1
        .iter()
        .zip(&weights_of(&own, true))
        .any(|((_, v1), (_, v3))| {
            v1.iter()
                .zip(v3)
                .any(|(p, q)| (p - q).abs() > 1e-3 * (1.0 + p.abs()))
        });
    assert!(
        differs,
        "per-replica batch norm gave the global batch's weights"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sharded_validation_equals_one_process_and_replicas_stay_identical() {
    // Two contexts on one adapter: the same kernels, so the sharded evaluation must count
    // exactly the pixels a single evaluation of the checkpoint counts.
    let Some((a, b)) = two_devices(false) else {
        return;
    };
    let dir = scratch("shard");
    let data = data_without_ignore(&dir);
    let out = dir.join("run");
    let (report, _) = run(options(&data, &out, 2, 4), &[a.clone(), b], &with_bn);
    let report = report.unwrap();
    let scores = report.scores.unwrap();

    let mut store = ParamStore::new(&a);
    let net = Toy::new(10, &mut store, 0, true).unwrap();
    let file = checkpoint::find_checkpoint(&RunDir::new(&out).last()).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    let val: Arc<dyn Dataset> = Arc::from(data::open(Some(&data), "val", 1.0, 0).unwrap());
    let alone = evaluate(
        &net,
        &mut store,
        val,
        Some(&report.groups),
        (1, None),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(scores.pixels, alone.pixels);
    assert_eq!(scores.iou, alone.iou);
    assert_eq!(scores.miou, alone.miou);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replicas_on_two_different_drivers_stay_identical_with_batch_norm() {
    // Checkpoints at steps 2 and 4 compare the replicas' weights (an error if they
    // differ); batch norm's running statistics are averaged into both first.
    let Some((a, b)) = two_devices(true) else {
        return;
    };
    let dir = scratch("identical");
    let data = data_without_ignore(&dir);
    let out = dir.join("run");
    let (report, _) = run(options(&data, &out, 2, 4), &[a, b], &with_bn);
    assert_eq!(report.unwrap().steps, 4);
    let losses = logged_losses(&out);
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|(_, l)| l.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_resumes_with_another_number_of_replicas() {
    let Some((a, b)) = two_devices(false) else {
        return;
    };
    let dir = scratch("resume");
    let data = data_without_ignore(&dir);
    // 2 replicas × 2 images, stopped after step 2; continued on one device (global batch
    // 2): the position (2 batches of 4 = 8 images into the epoch) becomes batch 4 of 2.
    let two_one = dir.join("two-one");
    let stop = |o: TrainOptions| TrainOptions {
        stop_at: Some(2),
        ..o
    };
    let (r, _) = run(
        stop(options(&data, &two_one, 2, 4)),
        &[a.clone(), b.clone()],
        &plain,
    );
    assert_eq!(r.unwrap().steps, 2);
    let resume = |o: TrainOptions| TrainOptions { resume: true, ..o };
    let (r, notes) = run(
        resume(options(&data, &two_one, 2, 4)),
        std::slice::from_ref(&a),
        &plain,
    );
    assert_eq!(r.unwrap().steps, 4);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("global batch of 4") && n.contains("epoch 0, batch 4")),
        "{notes:?}"
    );
    // 1 × 2 images stopped after step 2, continued on 2 replicas (global batch 4): 4
    // images into the epoch is batch 1 of 4.
    let one_two = dir.join("one-two");
    let (r, _) = run(
        stop(options(&data, &one_two, 2, 4)),
        std::slice::from_ref(&a),
        &plain,
    );
    assert_eq!(r.unwrap().steps, 2);
    let (r, notes) = run(resume(options(&data, &one_two, 2, 4)), &[a, b], &plain);
    assert_eq!(r.unwrap().steps, 4);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("global batch of 2") && n.contains("epoch 0, batch 1")),
        "{notes:?}"
    );
    let steps: Vec<u64> = logged_losses(&one_two).iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_replica_ends_the_run_with_its_rank_and_step() {
    let Some((a, b)) = two_devices(false) else {
        return;
    };
    let dir = scratch("fail");
    let data = data_without_ignore(&dir);
    let out = dir.join("run");
    // Replica 1's third forward pass (step 3) fails.
    let failing = {
        let b = b.clone();
        move |_: &ModelConfig,
              c: usize,
              store: &mut ParamStore,
              seed: u64|
              -> Result<Box<dyn Segmenter>> {
            let mut t = Toy::new(c, store, seed, false)?;
            if store.device().same(&b) {
                t.fail_at = Some(3);
            }
            Ok(Box::new(t))
        }
    };
    let (r, _) = run(options(&data, &out, 2, 4), &[a, b], &failing);
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("replica 1")
            && msg.contains("failed at step 3")
            && msg.contains("the adapter was lost"),
        "{msg}"
    );
    // The checkpoint of step 2 is intact and resumable.
    let last = RunDir::new(&out).last();
    let st = checkpoint::load_train_state(&last, &Device::Cpu).unwrap();
    assert_eq!(st.step, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Batch norm with a ReLU and a residual epilogue over `x` `[4, 3, 5, 6]` for the loss
/// `Σ y·w`: the output, the running statistics and the gradients of x, γ, β and the
/// residual. With `sync`, synchronised batch norm over its ranks; with `part = Some(r)`
/// only images 2r, 2r+1 (rank r's half of the batch).
fn bn_case(dev: &Device, sync: Option<Arc<dyn Collective>>, part: Option<usize>) -> Vec<Vec<f64>> {
    let (n, c, h, w) = (4, 3, 5, 6);
    let all = |seed, lo, hi| uniform(n * c * h * w, seed, lo, hi);
    let (mut xs, mut rs, mut ws) = (all(1, -2.0, 3.0), all(2, -1.0, 1.0), all(3, -1.0, 1.0));
    let mut b = n;
    if let Some(rank) = part {
        let half = c * h * w * 2;
        let take = |v: &mut Vec<f32>| *v = v[rank * half..(rank + 1) * half].to_vec();
        take(&mut xs);
        take(&mut rs);
        take(&mut ws);
        b = 2;
    }
    let t = |v: Vec<f32>| Tensor::from_vec(v, [b, c, h, w], dev).unwrap();
    let x = t(xs).as_param();
    let r = t(rs).as_param();
    let wt = t(ws);
    let gamma = Tensor::from_vec(vec![1.5, -0.5, 0.8], [c], dev)
        .unwrap()
        .as_param();
    let beta = Tensor::from_vec(vec![0.1, 0.2, -0.3], [c], dev)
        .unwrap()
        .as_param();
    let state = BatchNormState {
        running_mean: Tensor::from_vec(vec![0.5, 0.0, -0.5], [c], dev).unwrap(),
        running_var: Tensor::from_vec(vec![1.0, 2.0, 0.5], [c], dev).unwrap(),
    };
    let ep = Epilogue {
        act: Activation::Relu,
        residual: Some(&r),
    };
    let (y, st) = match &sync {
        Some(comm) => {
            let (y, s) = sync_batch_norm2d(&x, &gamma, &beta, &state, 0.1, 1e-5, ep, comm).unwrap();
            (y, Some(s))
        }
        None => batch_norm2d_with(&x, &gamma, &beta, &state, true, 0.1, 1e-5, ep).unwrap(),
    };
    let st = st.unwrap();
    let grads = backward(&y.mul(&wt).unwrap().sum().unwrap()).unwrap();
    let mut out = vec![y.to_vec_f64().unwrap()];
    out.push(st.running_mean.to_vec_f64().unwrap());
    out.push(st.running_var.to_vec_f64().unwrap());
    for p in [&x, &gamma, &beta, &r] {
        out.push(grads.get(p).unwrap().to_vec_f64().unwrap());
    }
    out
}

/// The rows of `whole` (`[4, …]` per-image tensors at 0, 3 and 6) for images 2r, 2r+1.
fn half(whole: &[Vec<f64>], rank: usize) -> Vec<Vec<f64>> {
    whole
        .iter()
        .enumerate()
        .map(|(k, v)| {
            if [0, 3, 6].contains(&k) {
                let q = v.len() / 2;
                v[rank * q..(rank + 1) * q].to_vec()
            } else {
                v.clone()
            }
        })
        .collect()
}

const BN_PARTS: [&str; 7] = [
    "y",
    "running_mean",
    "running_var",
    "dx",
    "dγ",
    "dβ",
    "dresidual",
];

#[test]
fn sync_batch_norm_over_two_ranks_is_batch_norm_of_the_whole_batch() {
    // On the CPU reference backend (f64): the two halves together are batch norm over the
    // four images, forward and backward (dγ and dβ are each rank's share: their sum is the
    // whole batch's), up to rounding.
    let dev = Device::Cpu;
    let whole = bn_case(&dev, None, None);
    let group: Vec<Arc<dyn Collective>> = ThreadGroup::new(2, std::time::Duration::from_secs(60))
        .into_iter()
        .map(|g| Arc::new(g) as Arc<dyn Collective>)
        .collect();
    let halves: Vec<Vec<Vec<f64>>> = std::thread::scope(|s| {
        let hs: Vec<_> = group
            .iter()
            .enumerate()
            .map(|(rank, g)| {
                let g = g.clone();
                s.spawn(move || bn_case(&Device::Cpu, Some(g), Some(rank)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let tol = Tol {
        rtol: 1e-9,
        atol: 1e-11,
    };
    for (rank, got) in halves.iter().enumerate() {
        let want = half(&whole, rank);
        for k in [0, 1, 2, 3, 6] {
            assert_close(
                &format!("rank {rank} {}", BN_PARTS[k]),
                &got[k],
                &want[k],
                tol,
            );
        }
    }
    for k in [4, 5] {
        let sum: Vec<f64> = halves[0][k]
            .iter()
            .zip(&halves[1][k])
            .map(|(a, b)| a + b)
            .collect();
        assert_close(BN_PARTS[k], &sum, &whole[k], tol);
    }
}

#[test]
fn sync_batch_norm_of_one_rank_is_batch_norm() {
    // Solo: the synchronised path (the all-reduce is the identity) against the engine's
    // fused batch norm, on the CPU backend and on the GPU.
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu());
    for dev in devices {
        let solo: Arc<dyn Collective> = Arc::new(Solo);
        let want = bn_case(&dev, None, None);
        let got = bn_case(&dev, Some(solo), None);
        let tol = if dev.is_gpu() {
            REDUCTION
        } else {
            Tol {
                rtol: 1e-9,
                atol: 1e-11,
            }
        };
        for k in 0..7 {
            assert_close(&format!("{dev:?} {}", BN_PARTS[k]), &got[k], &want[k], tol);
        }
    }
}

#[test]
fn each_replica_runs_its_own_memory_bank_and_rank_0_saves_its_state() {
    let Some((a, b)) = two_devices(false) else {
        return;
    };
    let dir = scratch("bank");
    let data = data_without_ignore(&dir);
    let out = dir.join("run");
    let mut opts = options(&data, &out, 2, 4);
    opts.config.tmb.enabled = true;
    opts.stop_at = Some(2);
    let (report, notes) = run(opts, &[a.clone(), b.clone()], &with_bn);
    assert_eq!(report.unwrap().steps, 2);
    assert!(notes.iter().any(|n| n.contains("memory bank")), "{notes:?}");
    let last = RunDir::new(&out).last();
    assert!(last.join(wgseg::train::trainer::BANK_FILE).is_file());
    // Resumable with the bank, on two replicas.
    let mut opts = options(&data, &out, 2, 4);
    opts.resume = true;
    let (report, _) = run(opts, &[a, b], &with_bn);
    assert_eq!(report.unwrap().steps, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
