//! Training and evaluation: the run configuration, the training loop, evaluation and its
//! metrics, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod infer;
pub mod loss;
pub mod metrics;
mod parallel;
pub mod trainer;

pub use config::{BankConfig, DataConfig, Loss, LossConfig, RunConfig, TrainConfig};
pub use eval::evaluate;
pub use parallel::ReduceStats;
pub use trainer::{
    train, train_model, train_parallel, train_rank, Event, Report, Run, TrainOptions,
};
