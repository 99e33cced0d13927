//! Checkpoints written before the model interface keep loading (fixture generator, old API).

mod common;

use std::path::PathBuf;

use wgseg::model::DeepLabV3Plus;
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
#[ignore]
fn write_old_logits() {
    let Some(dev) = common::gpu() else { return };
    let file = fixtures().join("old_run/checkpoints/last/model.safetensors");
    let meta = checkpoint::read_metadata(&file).unwrap();
    let mut store = ParamStore::new(&dev);
    let net = DeepLabV3Plus::new(&meta.model, meta.num_classes, &mut store, 0).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    let _g = wgseg::no_grad();
    let logits = net.forward(&mut store, &input(&dev), false).unwrap();
    wgseg::npy::save(&logits, &fixtures().join("old_logits.npy")).unwrap();
}
