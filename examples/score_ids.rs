//! Scores the `<stem>_ids.png` files that `wgseg infer --ids` wrote against a dataset split's
//! labels at their original size: per-class IoU and mIoU, the same metrics as `wgseg eval`.
//!
//! `cargo run --release --example score_ids -- DATA SPLIT PRED_DIR`
//!
//! e.g. after `wgseg infer path/to/camvid/val/images --ids --out pred` (with the folder
//! layout's `images/` directory of the split), `score_ids path/to/camvid val pred`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use wgseg::data::{self, image_io::load_label};
use wgseg::train::metrics::Scores;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, split, pred] = args.as_slice() else {
        bail!("usage: score_ids DATA SPLIT PRED_DIR");
    };
    let ds = data::open(Some(PathBuf::from(root).as_path()), split, 1.0, 0)?;
    let info = ds.info().clone();
    let c = info.num_classes();
    let ignore = info.ignore_index;
    let mut cm = vec![0u64; c * c];
    let mut pixels = 0u64;
    for i in 0..ds.len() {
        let s = ds.load(i)?;
        let file = PathBuf::from(pred).join(format!("{}_ids.png", ds.name(i)));
        let (ids, h, w) = load_label(&file).with_context(|| format!("{}", file.display()))?;
        if (h, w) != (s.height, s.width) {
            bail!(
                "{}: {h}×{w}, but the label of {} is {}×{}",
                file.display(),
                ds.name(i),
                s.height,
                s.width
            );
        }
        for (&t, &p) in s.label.iter().zip(&ids) {
            if t == ignore {
                continue;
            }
            cm[t as usize * c + (p as usize).min(c - 1)] += 1;
            pixels += 1;
        }
    }
    let s = Scores::from_matrix(c, &cm, None);
    for (k, class) in info.classes.iter().enumerate() {
        let iou = s.iou[k].map_or("-".to_string(), |v| format!("{v:.4}"));
        println!("{:<14} {iou}", class.name);
    }
    println!(
        "{} images, {pixels} labelled pixels at their original size: mIoU {:.4}, pixel accuracy {:.4}",
        ds.len(),
        s.miou,
        s.pixel_accuracy
    );
    Ok(())
}
