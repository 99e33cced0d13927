//! Training state beside the weights (`--resume`), and whole checkpoints swapped in by
//! directory renames.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::Dtype;
use serde_json::{json, Value};

use super::weights::{parse, read_file, save_weights, to_tensor, write_tensors};
use super::{
    atomic_write, data_err, io_err, sibling, sync_dir, META_VERSION, MODEL_FILE, OPTIMIZER_FILE,
    STATE_FILE,
};
use crate::device::Device;
use crate::error::Result;
use crate::model::Segmenter;
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// Metadata key of `optimizer.safetensors` holding the step, so that an optimiser file and
/// a `state.json` from different checkpoints are not mixed up.
const META_STEP: &str = "wgseg.step";

/// What `--resume` needs besides the weights.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: u64,
    /// Optimiser state tensors (f32 or u32) by name, in name order.
    pub optimizer: Vec<(String, Tensor)>,
    /// Anything else the trainer keeps (RNG state, best score, schedule position, …).
    pub state: Value,
}

/// Writes `dir/optimizer.safetensors` (the tensors, f32 or u32, by name) and
/// `dir/state.json` (`{"step": step, "version": …, "state": state}`), creating `dir`.
/// Each file is written atomically; the pair is consistent only through
/// [`save_checkpoint`] (the loader rejects a pair whose steps differ).
pub fn save_train_state(
    dir: &Path,
    step: u64,
    optimizer_state: &[(String, Tensor)],
    state: &Value,
) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let meta = HashMap::from([
        (META_STEP.to_string(), step.to_string()),
        (
            META_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    write_tensors(&dir.join(OPTIMIZER_FILE), optimizer_state, meta)?;
    let doc = json!({
        "step": step,
        "version": env!("CARGO_PKG_VERSION"),
        "state": state,
    });
    let path = dir.join(STATE_FILE);
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| data_err(&path, e.to_string()))?;
    atomic_write(&path, &text)
}

/// Reads what [`save_train_state`] wrote in `dir`; optimiser tensors go to `dev`.
pub fn load_train_state(dir: &Path, dev: &Device) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = read_file(&path)?;
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| data_err(&path, format!("not JSON: {e}")))?;
    let step = doc
        .get("step")
        .and_then(Value::as_u64)
        .ok_or_else(|| data_err(&path, "no integer \"step\""))?;
    let state = doc.get("state").cloned().unwrap_or(Value::Null);

    let path = dir.join(OPTIMIZER_FILE);
    let bytes = read_file(&path)?;
    let (st, meta) = parse(&path, &bytes)?;
    if let Some(s) = meta.get(META_STEP) {
        if s.parse::<u64>().ok() != Some(step) {
            return Err(data_err(
                &path,
                format!("written at step {s}, but {STATE_FILE} says step {step}: files of different checkpoints"),
            ));
        }
    }
    let mut names = st.names();
    names.sort_unstable();
    let mut optimizer = Vec::with_capacity(names.len());
    for name in names {
        let view = st
            .tensor(name)
            .map_err(|e| data_err(&path, format!("{name}: {e}")))?;
        if !matches!(view.dtype(), Dtype::F32 | Dtype::U32) {
            return Err(data_err(
                &path,
                format!("{name} is {}, expected F32 or U32", view.dtype()),
            ));
        }
        optimizer.push((name.to_string(), to_tensor(&view, dev)?));
    }
    Ok(TrainState {
        step,
        optimizer,
        state,
    })
}

/// Puts back `dir.old/` when a crash interrupted a previous swap between its two renames
/// (no `dir/`, a complete `dir.old/`).
fn recover(dir: &Path) -> Result<()> {
    let old = sibling(dir, ".old");
    if !dir.exists() && old.join(MODEL_FILE).is_file() {
        fs::rename(&old, dir).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes a whole checkpoint — `dir/model.safetensors` ([`save_weights`]),
/// `dir/optimizer.safetensors` and `dir/state.json` ([`save_train_state`]) — so that a crash
/// at any point leaves the old complete checkpoint or the new one: the files go to
/// `dir.tmp/` first, then `dir/` is swapped for it by renames (`dir → dir.old`,
/// `dir.tmp → dir`, remove `dir.old`; see the module docs for the limits). `dir` is usually
/// [`RunDir::last`](super::RunDir::last) or [`RunDir::best`](super::RunDir::best).
#[allow(clippy::too_many_arguments)]
pub fn save_checkpoint(
    dir: &Path,
    store: &ParamStore,
    net: &dyn Segmenter,
    extra_metadata: &[(&str, String)],
    step: u64,
    optimizer_state: &[(String, Tensor)],
    state: &Value,
) -> Result<()> {
    save_checkpoint_with(
        dir,
        store,
        net,
        extra_metadata,
        step,
        optimizer_state,
        state,
        &|_| Ok(()),
    )
}

/// [`save_checkpoint`] plus `extra(tmp_dir)`, which writes more files into the checkpoint
/// before it is swapped in (they are then as atomic as the rest: e.g. the memory bank).
#[allow(clippy::too_many_arguments)]
pub fn save_checkpoint_with(
    dir: &Path,
    store: &ParamStore,
    net: &dyn Segmenter,
    extra_metadata: &[(&str, String)],
    step: u64,
    optimizer_state: &[(String, Tensor)],
    state: &Value,
    extra: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| data_err(dir, "a checkpoint directory needs a parent"))?;
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    recover(dir)?;
    let (tmp, old) = (sibling(dir, ".tmp"), sibling(dir, ".old"));
    if tmp.exists() {
        // An interrupted earlier attempt: never complete, never read.
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    save_weights(&tmp.join(MODEL_FILE), store, net, extra_metadata)?;
    save_train_state(&tmp, step, optimizer_state, state)?;
    extra(&tmp)?;
    sync_dir(&tmp)?;
    if old.exists() {
        // Left by a crash after the second rename: `dir` is complete.
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    if dir.exists() {
        fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    fs::rename(&tmp, dir).map_err(io_err(dir))?;
    sync_dir(parent)?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}
