//! Training and evaluation: metrics (and, next, the training loop and checkpoints).

pub mod metrics;
