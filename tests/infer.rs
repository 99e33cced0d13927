//! `wgseg infer` runs the network at the checkpoint's training scale and writes outputs at
//! the input's size: the same ids as evaluation's path (the image loaded at that scale by
//! the dataset, the logits resized back to the label's size).

#[path = "common/cli.rs"]
mod cli_common;
mod common;

use std::path::Path;

use cli_common::{text, wgseg_in, MICRO};
use wgseg::data;
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint;
use wgseg::train::infer::{window_logits, Window};
use wgseg::{Device, Tensor};

/// Logits `[1, C, h, w]` of the checkpoint's network for a normalised image given at
/// `sh×sw`, resized to `h×w` when that differs.
fn logits_at(ckpt: &Path, dev: &Device, image: data::Sample, (h, w): (usize, usize)) -> Vec<f32> {
    let file = checkpoint::find_checkpoint(ckpt).unwrap();
    let meta = checkpoint::read_metadata(&file).unwrap();
    let mut store = ParamStore::new(dev);
    let net = meta.build(&mut store).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    let _g = wgseg::no_grad();
    let (sh, sw) = (image.height, image.width);
    let (x, _) = data::normalize(image);
    let x = Tensor::from_vec(x, [1, 3, sh, sw], dev).unwrap();
    let mut logits = net.forward(&mut store, &x, false).unwrap();
    if (sh, sw) != (h, w) {
        logits = wgseg::ops::interpolate_bilinear(&logits, (h, w), false).unwrap();
    }
    logits.to_vec().unwrap()
}

/// Checks that `ids` (`h·w`) is the argmax over classes of `logits` (`[C, h, w]`), allowing
/// a different id only where the two classes' logits tie within 1e-5 (two processes may
/// round differently on some adapters).
fn assert_argmax(what: &str, ids: &[u8], logits: &[f32], classes: usize) {
    let hw = ids.len();
    assert_eq!(logits.len(), classes * hw, "{what}");
    let mut differ = 0;
    for (p, &id) in ids.iter().enumerate() {
        let at = |c: usize| logits[c * hw + p];
        let best = (0..classes).fold(0, |b, c| if at(c) > at(b) { c } else { b });
        if best != id as usize {
            differ += 1;
            let gap = at(best) - at(id as usize);
            assert!(
                gap <= 1e-5 * (1.0 + at(best).abs()),
                "{what}: pixel {p} has id {id}, the argmax is {best} (logit gap {gap})"
            );
        }
    }
    assert!(
        differ * 100 <= hw,
        "{what}: {differ} of {hw} pixels at a tie"
    );
}

#[test]
fn infer_uses_the_training_scale_and_writes_outputs_at_the_input_size() {
    let (device, dev) = match common::gpu() {
        Some(d) => ("gpu", d),
        None => ("cpu", Device::Cpu),
    };
    let dir = std::env::temp_dir().join(format!("wgseg-infer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("micro.toml"), MICRO).unwrap();
    let o = wgseg_in(
        &dir,
        &[
            "train",
            "--config",
            "micro.toml",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--crop",
            "32",
            "--scale",
            "0.5",
            "--val-every",
            "0",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = dir.join("runs/micro-builtin-1");

    // A full-size validation image of the built-in data (the run's seed is 0).
    let full = data::open(None, "val", 1.0, 0).unwrap().load(2).unwrap();
    let (h, w) = (full.height, full.width);
    data::save_png_rgb(&dir.join("full.png"), w, h, &full.image).unwrap();

    let o = wgseg_in(
        &dir,
        &[
            "infer",
            "full.png",
            "--ids",
            "--out",
            "pred",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("at scale 0.5 (the checkpoint's training scale)"),
        "{}",
        text(&o)
    );
    for f in ["full_mask.png", "full_overlay.png", "full_ids.png"] {
        let (_, fh, fw) = data::load_image(&dir.join("pred").join(f)).unwrap();
        assert_eq!((fh, fw), (h, w), "{f}");
    }
    let (ids, ih, iw) = data::image_io::load_label(&dir.join("pred/full_ids.png")).unwrap();
    assert_eq!((ih, iw), (h, w));

    // Evaluation's path: the same image loaded by the dataset at scale 0.5, its logits
    // resized to the full size.
    let half = data::open(None, "val", 0.5, 0).unwrap().load(2).unwrap();
    assert_eq!((half.height, half.width), (h / 2, w / 2));
    let classes = 10;
    let want = logits_at(&run, &dev, half, (h, w));
    assert_argmax("infer at the training scale", &ids, &want, classes);

    // `--scale 1`: the network on the image as it is.
    let o = wgseg_in(
        &dir,
        &[
            "infer",
            "full.png",
            "--ids",
            "--out",
            "pred1",
            "--scale",
            "1",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("at scale 1 (--scale)"), "{}", text(&o));
    let (ids1, _, _) = data::image_io::load_label(&dir.join("pred1/full_ids.png")).unwrap();
    let want1 = logits_at(&run, &dev, full, (h, w));
    assert_argmax("infer at scale 1", &ids1, &want1, classes);
    // The two scales give different masks (here about 60% of the pixels differ): the checks
    // above tell the two paths apart.
    let differ = ids.iter().zip(&ids1).filter(|(a, b)| a != b).count();
    assert!(
        differ * 10 > ids.len(),
        "{differ} of {} pixels differ",
        ids.len()
    );

    // Sliding windows: a window that covers the image gives the whole-image ids; smaller
    // overlapping windows give the argmax of the windows' averaged logits.
    let windowed = |out: &str, window: &str| {
        let o = wgseg_in(
            &dir,
            &[
                "infer",
                "full.png",
                "--ids",
                "--out",
                out,
                "--scale",
                "1",
                "--window",
                window,
                "--overlap",
                "0.5",
                "--checkpoint",
                "runs/micro-builtin-1",
                "--device",
                device,
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let (ids, wh, ww) =
            data::image_io::load_label(&dir.join(out).join("full_ids.png")).unwrap();
        assert_eq!((wh, ww), (h, w), "--window {window}");
        ids
    };
    assert_eq!(
        windowed("predw1", "1000"),
        ids1,
        "one window over the whole image"
    );
    let ids_w = windowed("predw2", "32x48");
    let file = checkpoint::find_checkpoint(&run).unwrap();
    let meta = checkpoint::read_metadata(&file).unwrap();
    let mut store = ParamStore::new(&dev);
    let net = meta.build(&mut store).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    let want_w = {
        let _g = wgseg::no_grad();
        let (x, _) = data::normalize(data::open(None, "val", 1.0, 0).unwrap().load(2).unwrap());
        let x = Tensor::from_vec(x, [1, 3, h, w], &dev).unwrap();
        let win = Window::parse("32x48", 0.5).unwrap();
        window_logits(&x, win, |c| net.forward(&mut store, c, false))
            .unwrap()
            .to_vec()
            .unwrap()
    };
    assert_argmax("infer with 32×48 windows", &ids_w, &want_w, classes);
    let o = wgseg_in(
        &dir,
        &[
            "infer",
            "full.png",
            "--window",
            "0",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--device",
            device,
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--window 0"), "{}", text(&o));

    // A bad scale is a clear error.
    let o = wgseg_in(
        &dir,
        &[
            "infer",
            "full.png",
            "--scale",
            "0",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--device",
            device,
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--scale 0"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
