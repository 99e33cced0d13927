//! The built `wgseg` binary as the CLI tests run it (`tests/cli.rs`, `tests/infer.rs`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `wgseg` with `args`, run in `dir`.
pub fn wgseg_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgseg"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run wgseg")
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A micro DeepLabV3+ config for runs of a few steps.
pub const MICRO: &str = "[model]\nstem = 4\nwidths = [4, 8, 8, 12]\ndepths = [1, 1, 1, 1]\n\
                     aspp = 8\nlow = 4\ndecoder = 8\noutput_stride = 16\n\n\
                     [train]\nworkers = 1\nlog_every = 1\n";
