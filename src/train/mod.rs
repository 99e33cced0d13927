//! Training: checkpoints now; the training loop and evaluation join this module later.

pub mod checkpoint;
