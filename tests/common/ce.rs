//! Shared helpers of the cross-entropy tests (`tests/ce.rs`, `tests/ce_smoothing.rs`).
#![allow(dead_code)]

use crate::common::*;
use wgseg::losses::{ce, CeOptions};
use wgseg::Tensor;

pub const IGNORE: u32 = 255;

/// `ce` with class weights given as a tensor (a test input) and `ignore_index`.
pub fn ce_w(
    x: &Tensor,
    y: &Tensor,
    w: Option<&Tensor>,
    ignore_index: u32,
) -> wgseg::Result<Tensor> {
    let weights = w.map(Tensor::to_vec_f64).transpose()?;
    ce(
        x,
        y,
        &CeOptions {
            weights,
            ignore_index,
            ..Default::default()
        },
    )
}

/// `ce` with label smoothing `eps` and class weights given as a tensor.
pub fn ce_ls(x: &Tensor, y: &Tensor, w: Option<&Tensor>, eps: f64) -> wgseg::Result<Tensor> {
    let weights = w.map(Tensor::to_vec_f64).transpose()?;
    ce(
        x,
        y,
        &CeOptions {
            weights,
            ignore_index: IGNORE,
            label_smoothing: eps,
        },
    )
}

/// Seeded labels in `0..c`, with every `ignore_every`-th pixel set to `IGNORE` (0: none).
pub fn labels(n: usize, c: usize, seed: u64, ignore_every: usize) -> Vec<u32> {
    uniform(n, seed, 0.0, c as f32)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if ignore_every > 0 && i % ignore_every == ignore_every - 1 {
                IGNORE
            } else {
                (v as u32).min(c as u32 - 1)
            }
        })
        .collect()
}

/// Labels shape for logits `[N, C]` or `[N, C, H, W]`.
pub fn label_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.remove(1);
    s
}
