//! The built `wgseg` binary.

#[path = "common/cli.rs"]
mod cli_common;
mod common;

use std::process::Command;

use cli_common::{text, wgseg_in, MICRO};

fn wgseg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgseg"))
        .args(args)
        .output()
        .expect("run wgseg")
}

#[test]
fn info_prints_adapter_backend_and_limits() {
    if common::gpu().is_none() {
        return;
    }
    let out = wgseg(&["info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "selected:",
        "backend:",
        "driver:",
        "max_storage_buffer_binding_size",
        "smoke test: ok",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn info_on_the_cpu_reference_backend() {
    let out = wgseg(&["info", "--device", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cpu (reference backend)") && text.contains("smoke test: ok"),
        "{text}"
    );
}

#[test]
fn unknown_device_is_a_clear_error() {
    let out = wgseg(&["info", "--device", "gpu:no-such-adapter-xyz"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no adapter matches") && err.contains("no-such-adapter-xyz"),
        "{err}"
    );
    let out = wgseg(&["info", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device"));
}

#[test]
fn train_eval_and_infer_on_the_built_in_data() {
    let device = if common::gpu().is_some() {
        "gpu"
    } else {
        "cpu"
    };
    let dir = std::env::temp_dir().join(format!("wgseg-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("micro.toml"), MICRO).unwrap();
    // No run yet: infer says how to get one.
    let o = wgseg_in(&dir, &["infer", "x.png", "--device", device]);
    assert!(!o.status.success());
    assert!(text(&o).contains("wgseg train"), "{}", text(&o));

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
            "--val-every",
            "0",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for needle in ["step 3/3", "mIoU", "head", "tail", "best validation mIoU"] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let run = dir.join("runs/micro-builtin-1");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoints/last/model.safetensors",
        "checkpoints/last/optimizer.safetensors",
        "checkpoints/last/state.json",
        "checkpoints/best/model.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }

    let o = wgseg_in(
        &dir,
        &[
            "eval",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--json",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["miou"].as_f64().is_some() && v["iou"].as_array().unwrap().len() == 10,
        "{v}"
    );
    assert_eq!(v["split"], "val");

    // A dataset with no train split: the groups come from the checkpoint's recorded class
    // pixel counts (the same groups as above), and stderr says so.
    val_only(&dir.join("valonly"), 3);
    let o = wgseg_in(
        &dir,
        &[
            "eval",
            "--checkpoint",
            "runs/micro-builtin-1",
            "--data",
            "valonly",
            "--json",
            "--device",
            device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no train split"),
        "{}",
        text(&o)
    );
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(w["groups"], v["groups"]);
    assert!(w["miou"].as_f64().is_some(), "{w}");
    // A checkpoint written before the counts were recorded still evaluates where there is
    // a train split, and says what is missing where there is none.
    let old = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/old_run/checkpoints/last/model.safetensors"
    );
    let o = wgseg_in(&dir, &["eval", "--checkpoint", old, "--device", device]);
    assert!(o.status.success(), "{}", text(&o));
    let o = wgseg_in(
        &dir,
        &[
            "eval",
            "--checkpoint",
            old,
            "--data",
            "valonly",
            "--device",
            device,
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("does not record them") && text(&o).contains("train"),
        "{}",
        text(&o)
    );

    // Any image size goes through whole: an odd 37 × 45 PNG.
    let img: Vec<u8> = (0..37 * 45 * 3).map(|i| (i * 7 % 256) as u8).collect();
    wgseg::data::save_png_rgb(&dir.join("odd.png"), 45, 37, &img).unwrap();
    let o = wgseg_in(
        &dir,
        &[
            "infer", "odd.png", "--ids", "--out", "pred", "--device", device,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    for f in ["odd_mask.png", "odd_overlay.png", "odd_ids.png"] {
        let (_, h, w) = wgseg::data::load_image(&dir.join("pred").join(f)).unwrap();
        assert_eq!((h, w), (37, 45), "{f}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every architecture through the command line: `wgseg train --config FILE` (its `[model]`
/// table naming the architecture), `wgseg eval` and `wgseg infer --ids --logits` on an odd
/// size, each at micro size on the built-in data.
#[test]
fn every_architecture_trains_evaluates_and_infers() {
    let device = if common::gpu().is_some() {
        "gpu"
    } else {
        "cpu"
    };
    let dir = std::env::temp_dir().join(format!("wgseg-cli-archs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img: Vec<u8> = (0..35 * 41 * 3).map(|i| (i * 5 % 256) as u8).collect();
    wgseg::data::save_png_rgb(&dir.join("odd.png"), 41, 35, &img).unwrap();
    let train = "[train]\nworkers = 1\nlog_every = 1\n";
    for (name, model) in [
        (
            "deeplabv3",
            "arch = \"deeplabv3\"\nstem = 4\nwidths = [4, 4, 8, 8]\ndepths = [1, 1, 1, 1]\n\
             block = \"bottleneck\"\naspp = 8\noutput_stride = 16",
        ),
        (
            "unet",
            "arch = \"unet\"\nwidths = [4, 8, 8]\nupsampling = \"transposed\"",
        ),
        (
            "attention_unet",
            "arch = \"attention_unet\"\nwidths = [4, 8, 8]",
        ),
        (
            "unetplusplus",
            "arch = \"unetplusplus\"\nwidths = [4, 8, 8]\ndeep_supervision = true",
        ),
        (
            "segnet",
            "arch = \"segnet\"\nwidths = [4, 8, 8]\ndepths = [1, 2, 1]",
        ),
        (
            "segnext",
            "arch = \"segnext\"\nwidths = [4, 8, 8, 8]\ndepths = [1, 1, 1, 1]\n\
             mlp_ratios = [2, 2, 2, 2]\ndecoder = 8\ngroups = 2\nham_rank = 2",
        ),
    ] {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), format!("[model]\n{model}\n\n{train}")).unwrap();
        let o = wgseg_in(
            &dir,
            &[
                "train",
                "--config",
                &file,
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--crop",
                "32",
                "--val-every",
                "0",
                "--device",
                device,
            ],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(
            text(&o).contains("best validation mIoU"),
            "{name}: {}",
            text(&o)
        );
        let run = format!("runs/{name}-builtin-1");
        let o = wgseg_in(
            &dir,
            &["eval", "--checkpoint", &run, "--json", "--device", device],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["miou"].as_f64().is_some(), "{name}: {v}");
        let out = format!("pred-{name}");
        let o = wgseg_in(
            &dir,
            &[
                "infer",
                "odd.png",
                "--checkpoint",
                &run,
                "--ids",
                "--logits",
                "--out",
                &out,
                "--device",
                device,
            ],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        let (_, h, w) = wgseg::data::load_image(&dir.join(&out).join("odd_ids.png")).unwrap();
        assert_eq!((h, w), (35, 41), "{name}");
        let logits =
            wgseg::npy::load(&dir.join(&out).join("odd_logits.npy"), &wgseg::Device::Cpu).unwrap();
        assert_eq!(logits.dims(), [1, 10, 35, 41], "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first `n` images of the built-in val split as a folder dataset at `root` with only a
/// `val/` split.
fn val_only(root: &std::path::Path, n: usize) {
    let ds = wgseg::data::open(None, "val", 1.0, 0).unwrap();
    let info = ds.info();
    let mut toml = format!("name = \"valonly\"\nignore_index = {}\n", info.ignore_index);
    for c in &info.classes {
        toml += &format!(
            "[[classes]]\nname = \"{}\"\ncolor = [{}, {}, {}]\n",
            c.name, c.color[0], c.color[1], c.color[2]
        );
    }
    let (images, labels) = (root.join("val/images"), root.join("val/labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    std::fs::write(root.join("dataset.toml"), toml).unwrap();
    for i in 0..n {
        let s = ds.load(i).unwrap();
        let name = format!("img{i}.png");
        wgseg::data::save_png_rgb(&images.join(&name), s.width, s.height, &s.image).unwrap();
        wgseg::data::save_png_gray(&labels.join(&name), s.width, s.height, &s.label).unwrap();
    }
}

#[test]
fn bad_input_is_a_clear_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("wgseg-cli-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A config typo names the key and the file.
    std::fs::write(dir.join("typo.toml"), MICRO.replace("decoder", "decodr")).unwrap();
    let o = wgseg_in(&dir, &["train", "--config", "typo.toml", "--device", "cpu"]);
    assert!(!o.status.success());
    let e = text(&o);
    assert!(e.contains("typo.toml") && e.contains("decodr"), "{e}");
    // A missing checkpoint and a missing dataset are named.
    let o = wgseg_in(
        &dir,
        &[
            "eval",
            "--checkpoint",
            "nowhere/model.safetensors",
            "--device",
            "cpu",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("nowhere/model.safetensors"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.join("micro.toml"), MICRO).unwrap();
    let o = wgseg_in(
        &dir,
        &[
            "train",
            "--config",
            "micro.toml",
            "--data",
            "no_such_dir",
            "--device",
            "cpu",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no_such_dir"), "{}", text(&o));
    // An unknown shipped config name lists the shipped ones.
    let o = wgseg_in(&dir, &["train", "--config", "huge", "--device", "cpu"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("tiny, small, r18"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_on_two_devices_and_its_errors() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgseg-cli-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("micro.toml");
    std::fs::write(&cfg, MICRO).unwrap();
    let run = dir.join("run");
    let out = wgseg(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--devices",
        "gpu,gpu",
        "--sync-bn",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--out",
        run.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("2 replicas, global batch 4") && all.contains("sync_bn"),
        "{all}"
    );
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("sync_bn = true"), "{saved}");
    // A bad list names the flag.
    let out = wgseg(&["train", "--devices", "gpu,,gpu", "--steps", "1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--devices"), "{}", text(&out));
    // Started by an MPI launcher as one of 2 processes, without the mpi feature: refused
    // with how to build it, before anything is written.
    let lone = dir.join("lone");
    let out = Command::new(env!("CARGO_BIN_EXE_wgseg"))
        .args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            lone.to_str().unwrap(),
        ])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    if !cfg!(feature = "mpi") {
        assert!(!out.status.success());
        assert!(text(&out).contains("--features mpi"), "{}", text(&out));
        assert!(!lone.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
