//! Subcommands of the `wgseg` binary.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod info;

/// Long-tailed semantic segmentation on any GPU (Vulkan, Metal, DX12 or GL).
#[derive(Parser, Debug)]
#[command(name = "wgseg", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the adapters, the chosen one's backend, driver and granted limits.
    Info {
        /// Device to describe: gpu, gpu:N, gpu:NAME or cpu (default: $WGSEG_ADAPTER or the best GPU).
        #[arg(long, default_value = "gpu")]
        device: String,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { device } => info::run(&device),
    }
}
