//! Checkpoints: model weights as `safetensors` (docs/model.md, "Checkpoint contract"), training
//! state beside them, atomic writes, and the layout of a run directory.
//!
//! # Run directory
//!
//! ```text
//! runs/NAME/
//!   config.toml                 the resolved configuration of the run
//!   metrics.jsonl               one JSON object per line (training and evaluation metrics)
//!   checkpoints/
//!     last/                     the most recent checkpoint (what `--resume` continues from)
//!       model.safetensors       f32 weights under PyTorch names + `wgseg.*` metadata
//!       optimizer.safetensors   optimiser state tensors (momenta, moments, …), by name
//!       state.json              {"step": N, "version": "…", "state": {…}} (RNG state, …)
//!     best/                     the checkpoint with the best validation score, same files
//! ```
//!
//! [`RunDir`] names these paths. `model.safetensors` alone is a complete model: a PyTorch
//! loader (docs/model.md) and `wgseg infer` need nothing else. Optimiser state and
//! training metadata live in the files beside it, never in it.
//!
//! # Atomicity
//!
//! Every file is written by [`atomic_write`]: a temporary file in the same directory, `fsync`,
//! `rename` over the target, `fsync` of the directory. A crash leaves the old file or the
//! new one, plus possibly a stray `.NAME.tmp.*` file (never read; safe to delete).
//!
//! A checkpoint is three files that must agree, so [`save_checkpoint`] writes them into a
//! sibling directory `last.tmp/` (fsynced), then swaps directories with two renames:
//! `last/ → last.old/`, `last.tmp/ → last/`, then removes `last.old/`. POSIX `rename` cannot
//! replace a non-empty directory, so the swap is not one atomic step: a crash between the
//! two renames leaves no `last/` but a complete `last.old/` (and a complete `last.tmp/`).
//! Readers ([`find_checkpoint`]) fall back to `last.old/` when `last/` is missing, and the
//! next [`save_checkpoint`] restores it first, so at every instant a complete checkpoint —
//! the old or the new — is found. Limits: durability relies on the file system honouring
//! `fsync` on files and directories (local ext4/xfs/btrfs/APFS do; network file systems may
//! not); on non-Unix systems directories are not fsynced; two processes writing the same
//! checkpoint directory at once are not supported.

mod state;
mod weights;

pub use state::{
    load_train_state, save_checkpoint, save_checkpoint_with, save_train_state, TrainState,
};
pub use weights::{
    classes_entry, init_backbone, load_weights, read_metadata, save_weights, Metadata,
    META_CLASSES, META_CLASS_PIXELS, META_MODEL, META_VERSION,
};

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The weights file of a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimiser state file of a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The training state file of a checkpoint directory.
pub const STATE_FILE: &str = "state.json";

/// The paths of a run directory (see the module docs for the layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    /// `runs/NAME`.
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }
    /// `config.toml`: the resolved configuration of the run.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `metrics.jsonl`: one JSON object per line.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/last/`: the checkpoint `--resume` continues from.
    pub fn last(&self) -> PathBuf {
        self.checkpoints().join("last")
    }
    /// `checkpoints/best/`: the best checkpoint on the validation set.
    pub fn best(&self) -> PathBuf {
        self.checkpoints().join("best")
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn data_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

pub use crate::fsio::atomic_write;
pub(crate) use crate::fsio::{sibling, sync_dir};

/// The weights file of the checkpoint directory `dir`, falling back to `dir.old/` when a
/// crash interrupted [`save_checkpoint`] between its two renames.
fn checkpoint_in(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), sibling(dir, ".old")]
        .into_iter()
        .map(|d| d.join(MODEL_FILE))
        .find(|m| m.is_file())
}

/// Resolves what a user passes as `--checkpoint` to a weights file:
///
/// - a `.safetensors` file: itself;
/// - a checkpoint directory (holding `model.safetensors`): its weights;
/// - a run directory: `checkpoints/best/` if present, else `checkpoints/last/`.
///
/// The error says what was looked for.
pub fn find_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        if let Some(m) = checkpoint_in(path) {
            return Ok(m); // `last/` mid-swap: its complete predecessor `last.old/`
        }
        return Err(data_err(
            path,
            "no such checkpoint: expected a .safetensors file, a checkpoint directory or a run directory",
        ));
    }
    let run = RunDir::new(path);
    [path.to_path_buf(), run.best(), run.last()]
        .iter()
        .find_map(|d| checkpoint_in(d))
        .ok_or_else(|| {
            data_err(
                path,
                format!(
                    "no checkpoint here: looked for {MODEL_FILE}, checkpoints/best/{MODEL_FILE} \
                     and checkpoints/last/{MODEL_FILE}"
                ),
            )
        })
}

/// The run under `runs_dir` whose checkpoint was written last (modification time of its
/// weights file; ties go to the greater name), for `wgseg infer` without `--checkpoint`.
/// Sub-directories without a checkpoint are ignored.
pub fn newest_run(runs_dir: &Path) -> Result<PathBuf> {
    let hint = "train a model first (wgseg train) or pass --checkpoint";
    if !runs_dir.is_dir() {
        return Err(data_err(runs_dir, format!("no runs directory; {hint}")));
    }
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(runs_dir).map_err(io_err(runs_dir))? {
        let run = entry.map_err(io_err(runs_dir))?.path();
        if !run.is_dir() {
            continue;
        }
        let Ok(model) = find_checkpoint(&run) else {
            continue;
        };
        let time = fs::metadata(&model)
            .and_then(|m| m.modified())
            .map_err(io_err(&model))?;
        if best.as_ref().is_none_or(|(t, p)| (time, &run) > (*t, p)) {
            best = Some((time, run));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        data_err(
            runs_dir,
            format!("no run with a checkpoint (checkpoints/{{best,last}}/{MODEL_FILE}); {hint}"),
        )
    })
}
