//! Evaluation of a model on a dataset split: logits, argmax and the confusion matrix stay on
//! the device; one readback of the `C × C` matrix at the end.

use std::sync::Arc;

use super::infer::{window_logits, Window};
use super::metrics::{Confusion, Groups, Scores};
use crate::data::{Dataset, Loader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::Segmenter;
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// Uploads a normalised batch `[b, 3, h, w]` and its labels `[b, h, w]`.
pub fn upload_batch(
    images: Vec<f32>,
    labels: Vec<u8>,
    (b, h, w): (usize, usize, usize),
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_vec(images, [b, 3, h, w], dev)?,
        Tensor::from_u8(labels, [b, h, w], dev)?,
    ))
}

/// Runs `net` in evaluation mode over every sample of `ds` (whole images, one at a time so
/// that images of any size mix, or window by window with `window`: [`window_logits`]) with
/// `workers` loader threads and scores the predictions (docs/training.md).
/// `progress(done, total)` is called after each image.
pub fn evaluate(
    net: &dyn Segmenter,
    store: &mut ParamStore,
    ds: Arc<dyn Dataset>,
    groups: Option<&Groups>,
    (workers, window): (usize, Option<Window>),
    progress: impl FnMut(usize, usize),
) -> Result<Scores> {
    let classes = ds.info().num_classes();
    let (cm, bad) = confusion_counts(net, store, ds, (workers, window), progress)?;
    scores_of(classes, &cm, bad, groups)
}

/// The scores of a confusion matrix `cm` (`classes²` counts, true class major) with `bad`
/// labelled pixels of a class id beyond the classes (an error).
pub fn scores_of(classes: usize, cm: &[u64], bad: u64, groups: Option<&Groups>) -> Result<Scores> {
    if bad > 0 {
        return Err(Error::shape(
            "confusion",
            format!("{bad} labelled pixels have a class id ≥ {classes}"),
        ));
    }
    Ok(Scores::from_matrix(classes, cm, groups))
}

/// The confusion matrix of [`evaluate`] (`classes²` counts, true class major) and the
/// number of labelled pixels whose class id is beyond the classes; one readback.
pub fn confusion_counts(
    net: &dyn Segmenter,
    store: &mut ParamStore,
    ds: Arc<dyn Dataset>,
    (workers, window): (usize, Option<Window>),
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<u64>, u64)> {
    let _g = crate::autograd::no_grad();
    let dev = store.device().clone();
    let info = ds.info().clone();
    let total = ds.len();
    let mut cm: Option<Confusion> = None;
    for (i, batch) in Loader::sequential(ds, 1, workers)?.enumerate() {
        let b = batch?;
        let (x, y) = upload_batch(b.images, b.labels, (b.b, b.h, b.w), &dev)?;
        let logits = match window {
            Some(win) => window_logits(&x, win, |c| net.forward(store, c, false))?,
            None => net.forward(store, &x, false)?,
        };
        // Windowed logits are on the host: their ids go to the device of the labels.
        let pred = logits.argmax_axis(1, false)?.to_device(&dev)?;
        let cm = match &mut cm {
            Some(c) => c,
            None => cm.insert(Confusion::new(
                info.num_classes(),
                u32::from(info.ignore_index),
                &pred,
            )?),
        };
        cm.add(&pred, &y)?;
        progress(i + 1, total);
    }
    match cm {
        Some(c) => c.counts(),
        None => Ok((vec![0; info.num_classes().pow(2)], 0)),
    }
}
