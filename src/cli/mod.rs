//! Subcommands of the `wgseg` binary: argument parsing and printing only.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod eval;
mod info;
mod report;
mod train;

/// Long-tailed semantic segmentation on any GPU (Vulkan, Metal, DX12 or GL).
#[derive(Parser, Debug)]
#[command(name = "wgseg", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a segmentation model (default: DeepLabV3+, the tiny config, the built-in data).
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint on a dataset split: per-class IoU, mIoU, accuracy, Dice and the
    /// head / middle / tail groups.
    Eval(eval::EvalArgs),
    /// Segment images: writes <stem>_mask.png and <stem>_overlay.png (and <stem>_ids.png).
    Infer(eval::InferArgs),
    /// Show the adapters, the chosen one's backend, driver and granted limits.
    Info {
        /// Device to describe: gpu, gpu:N, gpu:NAME or cpu (default: $WGSEG_ADAPTER or the best GPU).
        #[arg(long, default_value = "gpu")]
        device: String,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::eval(a),
        Command::Infer(a) => eval::infer(a),
        Command::Info { device } => info::run(&device),
    }
}
