//! Layers over the engine: a parameter store with PyTorch state-dict names, and the modules
//! the shipped architectures are built from (`Conv2d`, `BatchNorm2d`, `ConvBn`, `BasicBlock`,
//! `Bottleneck`, `ConvTranspose2d`, `LayerNorm2d`, `GroupNorm`).
//!
//! A layer is a *description* — its hyper-parameters and the names of its tensors — and the
//! tensors live in one [`ParamStore`], keyed by the names PyTorch gives them
//! (`backbone.layer1.0.conv1.weight`, `aspp.pool.bn.running_var`, …). Trainable parameters
//! are autograd leaves whose identity is stable across steps (gradients are keyed by it);
//! buffers (batch-norm running statistics) are replaced by the forward pass in training
//! mode. The store is what checkpoints save and load and what optimisers update.

mod layers;
mod store;

pub use layers::{
    BasicBlock, BatchNorm2d, Bottleneck, Conv2d, ConvBn, ConvTranspose2d, GroupNorm, LayerNorm2d,
    RELU,
};
pub use store::{Kind, ParamStore};

use rand::{Rng, SeedableRng};

/// The seeded generator of initial weights (and of nothing else).
pub type InitRng = rand::rngs::StdRng;

/// A generator of initial weights for `seed`.
pub fn init_rng(seed: u64) -> InitRng {
    InitRng::seed_from_u64(seed)
}

/// `n` draws from `N(0, std²)` (Box–Muller on the seeded generator).
pub fn normal(rng: &mut InitRng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] keeps ln(u1) finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Kaiming-normal weights of a conv `[cout, cin/groups, kh, kw]` in fan-out mode with the
/// ReLU gain (PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`):
/// `std = √(2 / (cout·kh·kw))`.
pub fn kaiming_normal_fan_out(rng: &mut InitRng, shape: [usize; 4]) -> Vec<f32> {
    let fan_out = shape[0] * shape[2] * shape[3];
    normal(
        rng,
        shape.iter().product(),
        (2.0 / fan_out.max(1) as f64).sqrt(),
    )
}
