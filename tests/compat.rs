//! Checkpoints written before the model interface keep loading: `tests/fixtures/old_run/`
//! is a run of the code before it (`wgseg train --config tests/fixtures/old_micro.toml
//! --out old_run` on the built-in data, lavapipe; `metrics.jsonl` and `checkpoints/last/`
//! kept), and `tests/fixtures/old_logits.npy` the logits that code gave for [`input`] in
//! evaluation mode on the GPU (the `write_old_logits` test of that version).

mod common;

use std::path::PathBuf;

use wgseg::model::{DeepLabConfig, ModelConfig, DEEPLABV3PLUS};
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint;
use wgseg::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixed input: `[1, 3, 24, 20]`, `sin(0.37·i)`.
fn input(dev: &Device) -> Tensor {
    let n = 3 * 24 * 20;
    let v: Vec<f32> = (0..n).map(|i| (0.37 * i as f32).sin()).collect();
    Tensor::from_vec(v, [1, 3, 24, 20], dev).unwrap()
}

#[test]
fn a_checkpoint_from_before_the_model_interface_loads_and_gives_the_same_logits() {
    let file = fixtures().join("old_run/checkpoints/last/model.safetensors");
    let meta = checkpoint::read_metadata(&file).unwrap();
    // No "arch" in its wgseg.model: a DeepLabV3+.
    assert!(!meta.model_json.contains("arch"), "{}", meta.model_json);
    assert_eq!(meta.arch, DEEPLABV3PLUS);
    let want = ModelConfig::from(DeepLabConfig {
        stem: 4,
        widths: [4, 8, 8, 8],
        depths: [1, 1, 1, 1],
        aspp: 8,
        low: 4,
        decoder: 8,
        output_stride: 16,
        aspp_rates: Some(vec![6, 12, 18]),
        separable_aspp: false,
        block: Default::default(),
    });
    assert_eq!(meta.model, Some(want));
    assert_eq!(meta.num_classes, 10);
    assert_eq!(meta.class_pixels(), None);
    // The logits the old code gave (on default lavapipe) against the new code's on the CPU
    // reference and on the adapter under test: equal up to f32 rounding, which differs
    // between adapters (other kernels, other summation orders), hence a tolerance.
    let old = wgseg::npy::load(&fixtures().join("old_logits.npy"), &Device::Cpu).unwrap();
    assert_eq!(old.dims(), [1, 10, 24, 20]);
    let old = old.to_vec_f64().unwrap();
    for dev in std::iter::once(Device::Cpu).chain(common::gpu()) {
        let mut store = ParamStore::new(&dev);
        let net = meta.build(&mut store).unwrap();
        checkpoint::load_weights(&file, &mut store).unwrap();
        let _g = wgseg::no_grad();
        let got = net
            .forward(&mut store, &input(&dev), false)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        common::assert_close(&format!("old logits on {dev:?}"), &got, &old, common::DOT);
    }
}

/// The old run's saved config (no `arch` key) still reads as a DeepLabV3+, and the old
/// run's checkpoint resumes with the new code.
#[test]
fn an_old_run_resumes() {
    let dev = common::gpu().unwrap_or(Device::Cpu);
    let run = std::env::temp_dir().join(format!("wgseg-compat-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let src = fixtures().join("old_run");
    std::fs::create_dir_all(run.join("checkpoints/last")).unwrap();
    for f in ["config.toml", "metrics.jsonl"] {
        std::fs::copy(src.join(f), run.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("checkpoints/last")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), run.join("checkpoints/last").join(e.file_name())).unwrap();
    }
    let mut config = wgseg::train::RunConfig::load(&run.join("config.toml")).unwrap();
    assert_eq!(config.model.arch(), DEEPLABV3PLUS);
    config.train.steps = 4;
    let opts = wgseg::train::TrainOptions {
        config,
        data: None,
        out: run.clone(),
        device: dev,
        resume: true,
        init_backbone: None,
        stop_at: None,
    };
    // The saved config wins on resume: 2 steps, already done.
    let r = wgseg::train::train(opts, &mut |_| {}).unwrap();
    assert_eq!(r.steps, 2);
    std::fs::remove_dir_all(&run).unwrap();
}
