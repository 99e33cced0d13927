//! The trainer: config errors, the tiny model overfitting two images (CPU reference and GPU),
//! a killed-and-resumed run matching an uninterrupted one step for step, a non-finite loss
//! stopping the run with its last good checkpoint kept.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use wgseg::data;
use wgseg::losses::{AucMethodName, Loss};
use wgseg::model::{DeepLabConfig, DeepLabV3Plus, ModelConfig};
use wgseg::nn::ParamStore;
use wgseg::optim::{Optimizer, Sgd};
use wgseg::train::{train, RunConfig, TrainOptions};
use wgseg::{backward, Device, Tensor};

fn micro() -> DeepLabConfig {
    DeepLabConfig {
        stem: 4,
        widths: [4, 8, 8, 12],
        depths: [1, 1, 1, 1],
        aspp: 8,
        low: 4,
        decoder: 8,
        output_stride: 16,
        aspp_rates: None,
        separable_aspp: false,
        block: Default::default(),
    }
}

/// A fresh, empty directory under the system temp dir, unique per test and process.
fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wgseg-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn config_typos_and_bad_values_name_the_key_and_file() {
    let path = Path::new("models/mine.toml");
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny.toml")).unwrap();
    let e = RunConfig::parse(&format!("{base}\n[train]\nstep = 3\n"), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("models/mine.toml") && e.contains("step"), "{e}");
    let e = RunConfig::parse(&base.replace("widths", "width"), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("models/mine.toml") && e.contains("width"), "{e}");
    let e = RunConfig::parse(&format!("{base}\n[train]\nbatch_size = 1\n"), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch_size") && e.contains("at least 2"), "{e}");
    let e = RunConfig::parse(&format!("{base}\n[train]\noptimizer = \"adam\"\n"), path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("optimizer"), "{e}");
    // Every shipped config parses.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            RunConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 16, "{n} configs in models/");
}

/// Two 48 × 64 crops of the built-in data, normalised, with their labels.
fn two_images(dev: &Device) -> (Tensor, Tensor) {
    let ds = data::open(None, "train", 1.0, 0).unwrap();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let s = ds.load(i).unwrap();
        let (x, y) = data::normalize(s.clone());
        let (h, w) = (s.height, s.width);
        for c in 0..3 {
            for r in 0..48 {
                xs.extend_from_slice(&x[c * h * w + r * w..c * h * w + r * w + 64]);
            }
        }
        for r in 0..48 {
            ys.extend_from_slice(&y[r * w..r * w + 64]);
        }
    }
    (
        Tensor::from_vec(xs, [2, 3, 48, 64], dev).unwrap(),
        Tensor::from_u8(ys, [2, 48, 64], dev).unwrap(),
    )
}

/// The shipped `tiny` config.
fn tiny() -> DeepLabConfig {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny.toml");
    let ModelConfig::DeepLabV3Plus(c) = RunConfig::load(Path::new(p)).unwrap().model else {
        panic!("{p}: not a DeepLabV3+")
    };
    c
}

fn overfit(dev: &Device) -> (f32, f32) {
    let mut store = ParamStore::new(dev);
    let net = DeepLabV3Plus::new(&tiny(), 10, &mut store, 1).unwrap();
    let (x, y) = two_images(dev);
    let mut opt = Sgd::new(0.9, 0.0, false);
    let mut losses = Vec::new();
    for _ in 0..40 {
        let loss = net
            .forward(&mut store, &x, true)
            .unwrap()
            .cross_entropy(&y, None, 255)
            .unwrap();
        let g = backward(&loss).unwrap();
        opt.step(&mut store, &g, 0.05).unwrap();
        losses.push(loss.item().unwrap());
    }
    (losses[0], *losses.last().unwrap())
}

#[test]
fn the_tiny_model_overfits_two_images_on_cpu_and_gpu() {
    let mut devs = vec![Device::Cpu];
    devs.extend(gpu());
    for dev in devs {
        let (first, last) = overfit(&dev);
        assert!(
            last < 0.5 * first,
            "{dev:?}: loss {first} → {last} did not fall by half"
        );
    }
}

fn options(out: &Path, dev: &Device, stop_at: Option<u64>, resume: bool) -> TrainOptions {
    let mut config = RunConfig {
        model: micro().into(),
        train: Default::default(),
        data: Default::default(),
        loss: Default::default(),
        tmb: Default::default(),
    };
    let t = &mut config.train;
    t.steps = 6;
    t.batch_size = 2;
    t.crop = 32;
    t.log_every = 1;
    t.checkpoint_every = 100;
    t.val_every = 0;
    t.workers = 1;
    t.seed = 5;
    TrainOptions {
        config,
        data: None,
        out: out.to_path_buf(),
        device: dev.clone(),
        resume,
        init_backbone: None,
        stop_at,
    }
}

/// Trains 6 steps whole, and 3 + 3 with a stop and a resume in between (both with
/// `configure` applied), and checks that both runs logged the same losses, scored the same
/// and saved the same weights.
fn resume_matches_uninterrupted(name: &str, configure: impl Fn(&mut TrainOptions)) {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch(name);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let opts = |out: &Path, stop: Option<u64>, resume: bool| {
        let mut o = options(out, &dev, stop, resume);
        configure(&mut o);
        o
    };
    let whole = train(opts(&a, None, false), &mut |_| {}).unwrap();
    assert_eq!(whole.steps, 6);
    let first = train(opts(&b, Some(3), false), &mut |_| {}).unwrap();
    assert_eq!(first.steps, 3);
    assert!(first.scores.is_none());
    // The same directory again without --resume is refused, not overwritten.
    let e = train(opts(&b, None, false), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let rest = train(opts(&b, None, true), &mut |_| {}).unwrap();
    assert_eq!(rest.steps, 6);
    let (la, lb) = (logged_losses(&a), logged_losses(&b));
    assert_eq!(la.len(), 6);
    assert_eq!(
        la, lb,
        "{name}: losses of the uninterrupted and the resumed run"
    );
    let (sa, sb) = (whole.scores.unwrap(), rest.scores.unwrap());
    assert_eq!(sa.iou, sb.iou);
    // Both final checkpoints hold the same weights.
    let read = |run: &Path| std::fs::read(run.join("checkpoints/last/model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one_step_for_step() {
    resume_matches_uninterrupted("resume", |_| {});
}

/// With the memory bank on, the bank's state travels in the checkpoint (`bank.bin`): the
/// resumed run pastes exactly what the uninterrupted one pasted.
#[test]
fn a_resumed_run_with_the_memory_bank_matches_an_uninterrupted_one() {
    resume_matches_uninterrupted("resume-tmb", |o| {
        o.config.tmb.enabled = true;
    });
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("nan");
    let mut opts = options(&dir.join("run"), &dev, None, false);
    opts.config.train.checkpoint_every = 1;
    opts.config.train.lr = 1e30;
    opts.config.train.momentum = 0.0;
    let e = train(opts, &mut |_| {}).unwrap_err().to_string();
    assert!(
        (e.contains("the loss became") || e.contains("the weights became"))
            && e.contains("last good checkpoint"),
        "{e}"
    );
    // Whatever checkpoint exists holds only finite weights.
    let model = dir.join("run/checkpoints/last/model.safetensors");
    if !model.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
        return; // stopped at step 1: nothing was saved, nothing bad either
    }
    let mut store = ParamStore::new(&Device::Cpu);
    DeepLabV3Plus::new(&micro(), 10, &mut store, 0).unwrap();
    wgseg::train::checkpoint::load_weights(&model, &mut store).unwrap();
    for (name, t, _) in store.iter() {
        assert!(
            t.to_vec_f64().unwrap().iter().all(|v| v.is_finite()),
            "{name} is not finite"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Per-step randomness (BLV's noise, the pairwise AUC kernel's subsample) is seeded by the
/// step, so a resumed run draws what the uninterrupted one drew.
#[test]
fn resumed_runs_with_seeded_losses_match_uninterrupted_ones() {
    resume_matches_uninterrupted("resume-blv", |o| o.config.train.loss = Loss::Blv);
    resume_matches_uninterrupted("resume-auc-pairwise-tmb", |o| {
        o.config.train.loss = Loss::Aucseg;
        o.config.loss.auc.method = AucMethodName::Pairwise;
        o.config.loss.auc.cap = 64;
        o.config.tmb.enabled = true;
    });
}

/// Every loss of `train.loss` trains: two steps, finite logged losses, and different losses
/// give different values on the same first batch.
#[test]
fn every_loss_trains() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("every-loss");
    let mut first = Vec::new();
    for &loss in Loss::ALL {
        let name = loss.name();
        let mut o = options(&dir.join(name), &dev, None, false);
        o.config.train.steps = 2;
        o.config.train.loss = loss;
        train(o, &mut |_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        let l = logged_losses(&dir.join(name));
        assert_eq!(l.len(), 2, "{name}");
        assert!(l.iter().all(|(_, v)| v.is_finite()), "{name}: {l:?}");
        first.push((name, l[0].1));
    }
    // The same batch and initial weights: each loss is its own formula.
    for (i, (a, la)) in first.iter().enumerate() {
        for (b, lb) in &first[i + 1..] {
            assert_ne!(la, lb, "{a} and {b} gave the same first loss");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--resume` on a run killed before its first checkpoint says so, and how to start again.
#[test]
fn resuming_a_run_without_a_checkpoint_says_how_to_start_again() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("no-checkpoint");
    let run = dir.join("run");
    // What a run killed before its first checkpoint leaves: the directory and its config.
    let opts = options(&run, &dev, None, false);
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), opts.config.to_toml().unwrap()).unwrap();
    let e = train(options(&run, &dev, None, true), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&run.display().to_string())
            && e.contains("stopped before its first checkpoint")
            && e.contains("checkpoint_every = 100")
            && e.contains("without --resume")
            && !e.contains("no such checkpoint"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `checkpoints/best/` is written by the same writer as `last/`: the same files (the bank's
/// state too), and a run resumes from it as from `last/`.
#[test]
fn best_and_last_checkpoints_hold_the_same_files() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("best-files");
    let run = dir.join("run");
    let mut o = options(&run, &dev, None, false);
    o.config.train.val_every = 2;
    o.config.train.steps = 4;
    o.config.tmb.enabled = true;
    train(o, &mut |_| {}).unwrap();
    let list = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(run.join("checkpoints").join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        list("best"),
        [
            "bank.bin",
            "model.safetensors",
            "optimizer.safetensors",
            "state.json"
        ]
    );
    assert_eq!(list("best"), list("last"));
    // The best checkpoint's step is the best step it records.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoints/best/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], state["state"]["best_step"]);
    // A run resumes from best/ (put in last/'s place) as from last/.
    let last = run.join("checkpoints/last");
    std::fs::remove_dir_all(&last).unwrap();
    copy_dir(&run.join("checkpoints/best"), &last);
    let mut o = options(&run, &dev, None, true);
    o.config.train.workers = 1;
    let r = train(o, &mut |_| {}).unwrap();
    assert_eq!(r.steps, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
