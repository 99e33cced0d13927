//! The confusion matrix of predicted against true class ids (`shaders/confusion.wgsl`):
//! an accumulator that adds batches where they are computed. No gradient (integer counts).
//!
//! `cm[t][p]` counts the pixels of true class `t` predicted as `p` (`p ≥ classes` is
//! clamped to `classes − 1`); pixels labelled `ignore` are skipped, and labels
//! `≥ classes` other than `ignore` are counted apart (the "bad label" count), so that the
//! caller can report them instead of corrupting the matrix.
//!
//! CPU: the reference (plain loop, `u64` counts). GPU: one `u32` atomic add per counted
//! pixel into `classes² + 1` counters on the device; nothing is read back until
//! [`Confusion::counts`]. The scores derived from the matrix (IoU, accuracy, Dice) live in
//! `crate::train::metrics` (docs/training.md).

use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::tensor::{DType, Storage, Tensor};

const OP: &str = "confusion";

/// Workgroup size of `confusion` (one pixel per invocation).
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConfusionParams {
    pub(crate) n: u32,
    pub(crate) classes: u32,
    pub(crate) ignore: u32,
    pub(crate) _p0: u32,
}

enum Counts {
    Cpu(Vec<u64>),
    /// `classes² + 1` u32 counters on the device (the last: labels out of range).
    Gpu(GpuBuf),
}

/// A confusion matrix that accumulates batches of predictions where they are computed.
pub struct Confusion {
    classes: usize,
    ignore: u32,
    counts: Counts,
}

impl Confusion {
    /// An empty matrix for `classes` classes on the device of `like`.
    pub fn new(classes: usize, ignore: u32, like: &Tensor) -> Result<Confusion> {
        if classes == 0 {
            return Err(Error::shape(
                OP,
                "a confusion matrix needs at least 1 class",
            ));
        }
        let counts = match like.storage() {
            Storage::Cpu(_) => Counts::Cpu(vec![0; classes * classes + 1]),
            Storage::Gpu(b) => {
                let ctx = b.context();
                let buf = ctx.alloc_storage(classes * classes + 1)?;
                ctx.clear(&buf)?;
                Counts::Gpu(buf)
            }
        };
        Ok(Confusion {
            classes,
            ignore,
            counts,
        })
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Adds predictions `pred` (`U32` class ids, e.g. `logits.argmax_axis(1)`) against
    /// `labels` (`U32`, same shape, `ignore` skipped). No readback.
    pub fn add(&mut self, pred: &Tensor, labels: &Tensor) -> Result<()> {
        pred.expect_dtype(OP, DType::U32)?;
        labels.expect_dtype(OP, DType::U32)?;
        if pred.shape() != labels.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "predictions {} and labels {} differ in shape",
                    pred.shape(),
                    labels.shape()
                ),
            ));
        }
        let c = self.classes;
        match &mut self.counts {
            Counts::Cpu(cm) => {
                let (p, y) = (pred.cpu_data(OP)?, labels.cpu_data(OP)?);
                for (&p, &y) in p.iter().zip(y) {
                    let y = y as u32;
                    if y == self.ignore {
                        continue;
                    }
                    if y as usize >= c {
                        cm[c * c] += 1;
                        continue;
                    }
                    cm[y as usize * c + (p as usize).min(c - 1)] += 1;
                }
            }
            Counts::Gpu(cm) => {
                let (p, y) = (pred.gpu_buf(OP)?, labels.gpu_buf(OP)?);
                let n = pred.numel();
                let params = ConfusionParams {
                    n: u32::try_from(n)
                        .map_err(|_| Error::shape(OP, format!("{n} pixels exceed u32 indexing")))?,
                    classes: c as u32,
                    ignore: self.ignore,
                    _p0: 0,
                };
                let k = Kernel::new(Shader::Confusion, "confusion").with("WG", WG);
                cm.context()
                    .launch(&k, &params, &[p, y], &[cm], groups_for(n, WG))?;
            }
        }
        Ok(())
    }

    /// Reads the matrix back (`cm[t][p]`, row-major) and the count of labels out of range.
    pub fn counts(&self) -> Result<(Vec<u64>, u64)> {
        let c = self.classes;
        let all: Vec<u64> = match &self.counts {
            Counts::Cpu(v) => v.clone(),
            Counts::Gpu(b) => {
                let bytes = b.context().read(b)?;
                bytemuck::cast_slice::<u8, u32>(&bytes[..(c * c + 1) * 4])
                    .iter()
                    .map(|&v| u64::from(v))
                    .collect()
            }
        };
        Ok((all[..c * c].to_vec(), all[c * c]))
    }
}
