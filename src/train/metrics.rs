//! Segmentation metrics (docs/training.md): the scores derived from a confusion matrix
//! accumulated on the device ([`Confusion`], the engine op `ops::confusion`).
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
use crate::error::Result;
/// The matrix itself is an engine op (`ops::confusion`); its scores are defined here.
pub use crate::ops::confusion::Confusion;

impl Confusion {
    /// The scores of the module docs; `groups` = (head, middle, tail) class ids.
    pub fn scores(&self, groups: Option<&Groups>) -> Result<Scores> {
        let (cm, bad) = self.counts()?;
        super::eval::scores_of(self.classes(), &cm, bad, groups)
    }
}

/// Every score of the module docs. `None` marks a class absent from ground truth and prediction.
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
