//! The model interface with a model from outside the crate: a two-layer toy network
//! defined here (conv-BN-ReLU, then a 1×1 classifier) trains through the same `train` code
//! path as DeepLabV3+, checkpoints, loads back and evaluates; only this file knows it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use wgseg::data::{self, Dataset};
use wgseg::model::{ModelConfig, Segmenter};
use wgseg::nn::{init_rng, Conv2d, ConvBn, ParamStore};
use wgseg::train::checkpoint::{self, RunDir};
use wgseg::train::infer::Window;
use wgseg::train::{evaluate, train_model, TrainOptions};
use wgseg::{Device, Result, Tensor};

/// `stem` (3×3 conv, BN, ReLU; 8 channels) and `head` (1×1 conv with bias).
struct Toy {
    stem: ConvBn,
    head: Conv2d,
    classes: usize,
}

const ARCH: &str = "toy";

impl Toy {
    fn new(classes: usize, store: &mut ParamStore, seed: u64) -> Result<Toy> {
        let r = &mut init_rng(seed);
        Ok(Toy {
            stem: ConvBn::new(store, r, "stem", (3, 8), 3, 1, false)?,
            head: Conv2d::new(store, r, "head", (8, classes), 1, 1, 1, 1, true)?,
            classes,
        })
    }
}

impl Segmenter for Toy {
    fn arch(&self) -> &str {
        ARCH
    }
    fn metadata_json(&self) -> Result<String> {
        Ok(serde_json::json!({"arch": ARCH, "width": 8}).to_string())
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let y = self.stem.forward(store, x, training)?;
        self.head.forward(store, &y)
    }
}

fn build_toy(
    _: &ModelConfig,
    classes: usize,
    store: &mut ParamStore,
    seed: u64,
) -> Result<Box<dyn Segmenter>> {
    Ok(Box::new(Toy::new(classes, store, seed)?))
}

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wgseg-segmenter-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn options(out: &Path, dev: &Device, stop_at: Option<u64>, resume: bool) -> TrainOptions {
    let mut config = toy_run_config();
    let t = &mut config.train;
    t.steps = 6;
    t.batch_size = 2;
    t.crop = 32;
    t.lr = 0.05;
    t.log_every = 1;
    t.checkpoint_every = 2;
    t.val_every = 3;
    t.workers = 1;
    t.seed = 3;
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

#[test]
fn a_model_from_outside_the_crate_trains_checkpoints_loads_and_evaluates() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("toy");
    let run = dir.join("run");
    let report = train_model(options(&run, &dev, None, false), &build_toy, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 6);
    let l = logged_losses(&run);
    assert_eq!(
        l.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(l.iter().all(|(_, v)| v.is_finite()), "{l:?}");
    // Six steps on random crops are too few for a falling curve; the weights moving (below)
    // and the losses differing step to step show that it trains.
    assert!(l.windows(2).all(|w| w[0].1 != w[1].1), "{l:?}");

    // The checkpoint names the architecture and holds the toy's tensors, trained.
    let rd = RunDir::new(&run);
    let file = rd.last().join(checkpoint::MODEL_FILE);
    let meta = checkpoint::read_metadata(&file).unwrap();
    assert_eq!(meta.arch, ARCH);
    assert_eq!(meta.model, None);
    assert_eq!(meta.num_classes, 10);
    let model: serde_json::Value = serde_json::from_str(&meta.model_json).unwrap();
    assert_eq!(model["width"], 8);
    assert_eq!(meta.class_pixels().map(|c| c.len()), Some(10));
    // The crate cannot build it, and says which architecture it is.
    let mut s = ParamStore::new(&dev);
    let e = meta.build(&mut s).err().unwrap().to_string();
    assert!(e.contains("\"toy\"") && e.contains("deeplabv3plus"), "{e}");

    let mut store = ParamStore::new(&dev);
    let net = Toy::new(meta.num_classes, &mut store, 99).unwrap();
    let init = store.get("head.weight").unwrap().to_vec().unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    assert_eq!(store.len(), 7, "{:?}", store.names());
    let mut fresh = ParamStore::new(&dev);
    Toy::new(10, &mut fresh, 3).unwrap();
    let trained = store.get("head.weight").unwrap().to_vec().unwrap();
    assert_ne!(trained, init);
    assert_ne!(trained, fresh.get("head.weight").unwrap().to_vec().unwrap());

    // Evaluated through the same code, it scores what the run's last validation scored.
    let val: Arc<dyn Dataset> = Arc::from(data::open(None, "val", 1.0, 3).unwrap());
    let scores = evaluate(
        &net,
        &mut store,
        val.clone(),
        Some(&report.groups),
        (1, None),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(scores.iou, report.scores.unwrap().iou);
    // With sliding windows (`wgseg eval --window`): one window over each image scores the
    // same; overlapping 32×48 windows score every pixel once.
    let mut window = |spec: &str| {
        let win = Window::parse(spec, 0.5).unwrap();
        let ds = val.clone();
        evaluate(
            &net,
            &mut store,
            ds,
            Some(&report.groups),
            (1, Some(win)),
            |_, _| {},
        )
        .unwrap()
    };
    assert_eq!(window("1000").iou, scores.iou);
    let small = window("32x48");
    assert_eq!(small.pixels, scores.pixels);
    assert!((0.0..=1.0).contains(&small.miou), "{}", small.miou);

    // best/ holds the same files as last/.
    for d in [rd.last(), rd.best()] {
        for f in [
            checkpoint::MODEL_FILE,
            checkpoint::OPTIMIZER_FILE,
            checkpoint::STATE_FILE,
        ] {
            assert!(d.join(f).is_file(), "{}/{f}", d.display());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_from_outside_the_crate_resumes_step_for_step() {
    let dev = gpu().unwrap_or(Device::Cpu);
    let dir = scratch("toy-resume");
    let (a, b) = (dir.join("a"), dir.join("b"));
    train_model(options(&a, &dev, None, false), &build_toy, &mut |_| {}).unwrap();
    let first = train_model(options(&b, &dev, Some(4), false), &build_toy, &mut |_| {}).unwrap();
    assert_eq!(first.steps, 4);
    let rest = train_model(options(&b, &dev, None, true), &build_toy, &mut |_| {}).unwrap();
    assert_eq!(rest.steps, 6);
    assert_eq!(logged_losses(&a), logged_losses(&b));
    let read = |r: &Path| std::fs::read(r.join("checkpoints/last/model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    std::fs::remove_dir_all(&dir).unwrap();
}
