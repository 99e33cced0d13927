//! Segmentation metrics (SPEC §6): a confusion matrix accumulated on the device, and the
//! scores derived from it.
//!
//! With `cm[t][p]` the pixels of true class `t` predicted as `p` (ignored pixels excluded),
//! `TP_c = cm[c][c]`, `FP_c = Σ_t cm[t][c] − TP_c`, `FN_c = Σ_p cm[c][p] − TP_c`:
//!
//! * IoU_c = TP / (TP + FP + FN); mIoU = mean over the classes present in the ground truth or
//!   the prediction (`TP + FP + FN > 0`);
//! * pixel accuracy = Σ TP / Σ cm; mean accuracy = mean over classes present in the ground
//!   truth of TP / (TP + FN);
//! * Dice_c = 2·TP / (2·TP + FP + FN); mean Dice over the same classes as mIoU;
//! * head / middle / tail mIoU: the mean IoU over the present classes of each group.

use serde::{Deserialize, Serialize};

pub use crate::data::Groups;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::tensor::{DType, Storage, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MetricsParams {
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

    /// Adds predictions `pred` (`U32` class ids, e.g. `logits.argmax_axis(1)`) against
    /// `labels` (`U32`, same shape, `ignore` skipped). No readback.
    pub fn add(&mut self, pred: &Tensor, labels: &Tensor) -> Result<()> {
        pred.expect_dtype("confusion", DType::U32)?;
        labels.expect_dtype("confusion", DType::U32)?;
        if pred.shape() != labels.shape() {
            return Err(Error::shape(
                "confusion",
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
                let (p, y) = (pred.cpu_data("confusion")?, labels.cpu_data("confusion")?);
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
                let (p, y) = (pred.gpu_buf("confusion")?, labels.gpu_buf("confusion")?);
                let n = pred.numel();
                let params = MetricsParams {
                    n: u32::try_from(n).map_err(|_| {
                        Error::shape("confusion", format!("{n} pixels exceed u32 indexing"))
                    })?,
                    classes: c as u32,
                    ignore: self.ignore,
                    _p0: 0,
                };
                let k = Kernel::new(Shader::Metrics, "confusion").with("WG", 256u32);
                cm.context()
                    .launch(&k, &params, &[p, y], &[cm], groups_for(n, 256))?;
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

    /// The scores of SPEC §6; `groups` = (head, middle, tail) class ids.
    pub fn scores(&self, groups: Option<&Groups>) -> Result<Scores> {
        let (cm, bad) = self.counts()?;
        if bad > 0 {
            return Err(Error::shape(
                "confusion",
                format!("{bad} labelled pixels have a class id ≥ {}", self.classes),
            ));
        }
        Ok(Scores::from_matrix(self.classes, &cm, groups))
    }
}

/// Every score of SPEC §6. `None` marks a class absent from ground truth and prediction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scores {
    pub iou: Vec<Option<f64>>,
    pub dice: Vec<Option<f64>>,
    pub accuracy: Vec<Option<f64>>,
    pub miou: f64,
    pub pixel_accuracy: f64,
    pub mean_accuracy: f64,
    pub mean_dice: f64,
    pub head_miou: Option<f64>,
    pub middle_miou: Option<f64>,
    pub tail_miou: Option<f64>,
    pub pixels: u64,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

impl Scores {
    /// Scores of a row-major `classes × classes` matrix `cm[true][pred]`.
    pub fn from_matrix(classes: usize, cm: &[u64], groups: Option<&Groups>) -> Scores {
        let c = classes;
        let tp: Vec<u64> = (0..c).map(|i| cm[i * c + i]).collect();
        let gt: Vec<u64> = (0..c)
            .map(|i| cm[i * c..(i + 1) * c].iter().sum())
            .collect();
        let pr: Vec<u64> = (0..c)
            .map(|j| (0..c).map(|i| cm[i * c + j]).sum())
            .collect();
        let total: u64 = gt.iter().sum();
        let mut iou = Vec::with_capacity(c);
        let mut dice = Vec::with_capacity(c);
        let mut acc = Vec::with_capacity(c);
        for i in 0..c {
            let (t, fp, fn_) = (tp[i] as f64, (pr[i] - tp[i]) as f64, (gt[i] - tp[i]) as f64);
            let present = t + fp + fn_ > 0.0;
            iou.push(present.then(|| t / (t + fp + fn_)));
            dice.push(present.then(|| 2.0 * t / (2.0 * t + fp + fn_)));
            acc.push((gt[i] > 0).then(|| t / gt[i] as f64));
        }
        let group = |ids: &[usize]| mean(ids.iter().filter_map(|&i| iou.get(i).copied().flatten()));
        Scores {
            miou: mean(iou.iter().flatten().copied()).unwrap_or(0.0),
            pixel_accuracy: if total > 0 {
                tp.iter().sum::<u64>() as f64 / total as f64
            } else {
                0.0
            },
            mean_accuracy: mean(acc.iter().flatten().copied()).unwrap_or(0.0),
            mean_dice: mean(dice.iter().flatten().copied()).unwrap_or(0.0),
            head_miou: groups.and_then(|g| group(&g.head)),
            middle_miou: groups.and_then(|g| group(&g.middle)),
            tail_miou: groups.and_then(|g| group(&g.tail)),
            pixels: total,
            iou,
            dice,
            accuracy: acc,
        }
    }
}
