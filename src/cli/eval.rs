//! `wgseg eval` and `wgseg infer`: a checkpoint applied to a dataset split or to images.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use wgseg::data::{self, ClassInfo, ClassStats, Dataset, DatasetInfo};
use wgseg::model::Segmenter;
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint::{self, Metadata};
use wgseg::train::infer::{ids_of, segment_logits, window_logits, Window};
use wgseg::train::trainer::{PALETTE_META, SCALE_META};
use wgseg::train::{evaluate, RunConfig};
use wgseg::Device;

use super::report::print_scores;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model.safetensors file, a checkpoint directory or a run directory (its best, else
    /// last checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset root (default: the built-in data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split to evaluate: val, test or train.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Base scale of the images (default: the scale the checkpoint was trained at).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Print the scores as JSON.
    #[arg(long)]
    pub json: bool,
    /// Sliding-window inference: windows of H or HxW pixels of the network's input (after
    /// the scale), their logits averaged where they overlap; for images larger than what
    /// fits on the device or than the training crop. Default: the whole image at once.
    #[arg(long, value_name = "H[xW]")]
    pub window: Option<String>,
    /// Overlap of consecutive windows, as a fraction of a window (with --window).
    #[arg(long, default_value_t = 1.0 / 3.0, value_name = "F")]
    pub overlap: f32,
    /// Device: gpu, gpu:N, gpu:NAME or cpu.
    #[arg(long, default_value = "gpu")]
    pub device: String,
}

/// A model loaded from a checkpoint.
pub struct Loaded {
    pub net: Box<dyn Segmenter>,
    pub store: ParamStore,
    pub meta: Metadata,
    pub file: PathBuf,
}

pub fn load_model(spec: &Path, dev: &Device) -> Result<Loaded> {
    let file = checkpoint::find_checkpoint(spec)?;
    let meta = checkpoint::read_metadata(&file)?;
    let mut store = ParamStore::new(dev);
    let net = meta
        .build(&mut store)
        .with_context(|| format!("building the model of {}", file.display()))?;
    checkpoint::load_weights(&file, &mut store)?;
    Ok(Loaded {
        net,
        store,
        meta,
        file,
    })
}

/// Whether the dataset at `root` has a training split (folder layout: `train/`; Cityscapes:
/// `leftImg8bit/train/`; ADE20K: `images/training/`; COCO-Stuff: `images/train2017/`;
/// NYUv2: `train/`; Oxford-IIIT Pet: always, cut from its images).
fn has_train_split(root: &Path) -> bool {
    root.join("train").is_dir()
        || root.join("leftImg8bit").join("train").is_dir()
        || wgseg::data::ade20k::find(root).is_some()
        || wgseg::data::coco_stuff::is_coco_stuff(root)
        || wgseg::data::pet::is_pet(root)
}

/// The run directory a checkpoint file belongs to (`RUN/checkpoints/{best,last}/model…`).
fn run_of(file: &Path) -> Option<PathBuf> {
    let run = file.parent()?.parent()?.parent()?;
    run.join("config.toml").is_file().then(|| run.to_path_buf())
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let dev = Device::parse(&a.device).with_context(|| format!("--device {}", a.device))?;
    let mut m = load_model(&a.checkpoint, &dev)?;
    let scale = a.scale.or(trained_scale(&m.meta)).unwrap_or(1.0);
    let seed = run_of(&m.file)
        .and_then(|r| RunConfig::load(&r.join("config.toml")).ok())
        .map_or(0, |c| c.train.seed);
    let root = a.data.as_deref();
    let ds: Arc<dyn Dataset> = Arc::from(data::open(root, &a.split, scale, seed)?);
    if ds.info().num_classes() != m.meta.num_classes {
        bail!(
            "{} has {} classes, the data {}",
            m.file.display(),
            m.meta.num_classes,
            ds.info().num_classes()
        );
    }
    data::validate(ds.as_ref(), |_, _| {})?;
    let stats = match (root, m.meta.class_pixels()) {
        (Some(r), Some(counts)) if !has_train_split(r) => {
            eprintln!(
                "wgseg eval: {} has no train split; the head / middle / tail groups come from \
                 the training class pixel counts recorded in {}",
                r.display(),
                m.file.display()
            );
            ClassStats { counts }
        }
        _ => {
            let train = data::open(root, "train", scale, seed).with_context(|| {
                format!(
                    "the head / middle / tail groups need the training split's class pixel \
                     counts{}",
                    if m.meta.class_pixels().is_none() {
                        format!(
                            ", and {} does not record them (written before {})",
                            m.file.display(),
                            checkpoint::META_CLASS_PIXELS
                        )
                    } else {
                        String::new()
                    }
                )
            })?;
            ClassStats::compute_or_load_with(train.as_ref(), |_, _| {})?.0
        }
    };
    let groups = stats.groups(ds.info());
    let classes: Vec<String> = ds.info().classes.iter().map(|c| c.name.clone()).collect();
    let window = window_arg(a.window.as_deref(), a.overlap)?;
    let scores = evaluate(
        &*m.net,
        &mut m.store,
        ds,
        Some(&groups),
        (2, window),
        |_, _| {},
    )?;
    if a.json {
        let mut v = serde_json::to_value(&scores)?;
        v["classes"] = serde_json::json!(classes);
        v["groups"] = serde_json::to_value(&groups)?;
        v["split"] = serde_json::json!(a.split);
        v["scale"] = serde_json::json!(scale);
        v["checkpoint"] = serde_json::json!(m.file);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} on the {} split ({}):",
            m.file.display(),
            a.split,
            root.map_or("built-in data".to_string(), |r| r.display().to_string())
        );
        print_scores(&scores, &groups, &classes, scale);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Images (PNG or JPEG) or directories of images, of any size. Each whole image is
    /// resized by the checkpoint's training scale, segmented, and its logits resized back:
    /// the outputs have the input's size.
    #[arg(required = true, value_name = "IMAGE|DIR")]
    pub inputs: Vec<PathBuf>,
    /// A model.safetensors file, a checkpoint directory or a run directory (default: the
    /// newest run under runs/).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Output directory for <stem>_mask.png, <stem>_overlay.png (and <stem>_ids.png,
    /// <stem>_logits.npy).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Also write <stem>_ids.png: 8-bit class ids.
    #[arg(long)]
    pub ids: bool,
    /// Also write <stem>_logits.npy: the logits [1, classes, H, W] at the output size (f32),
    /// e.g. to compare with PyTorch.
    #[arg(long)]
    pub logits: bool,
    /// Scale at which the network sees the images (default: the scale the checkpoint was
    /// trained at, `wgseg.scale`; 1 runs it on the images as they are).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Sliding-window inference: windows of H or HxW pixels of the network's input (after
    /// the scale), their logits averaged where they overlap; for images larger than what
    /// fits on the device or than the training crop. Default: the whole image at once.
    #[arg(long, value_name = "H[xW]")]
    pub window: Option<String>,
    /// Overlap of consecutive windows, as a fraction of a window (with --window).
    #[arg(long, default_value_t = 1.0 / 3.0, value_name = "F")]
    pub overlap: f32,
    /// Device: gpu, gpu:N, gpu:NAME or cpu.
    #[arg(long, default_value = "gpu")]
    pub device: String,
}

/// The scale recorded in a checkpoint's metadata, if any.
fn trained_scale(meta: &Metadata) -> Option<f32> {
    meta.entries.get(SCALE_META).and_then(|s| s.parse().ok())
}

fn images_in(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["png", "jpg", "jpeg"].contains(&e.to_lowercase().as_str())
                    })
                })
                .collect();
            v.sort();
            if v.is_empty() {
                bail!("{}: no .png/.jpg/.jpeg images", p.display());
            }
            out.extend(v);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{}: no such image or directory", p.display());
        }
    }
    Ok(out)
}

/// Class names and colours from the checkpoint (a fixed palette when it has none).
fn palette(meta: &Metadata) -> DatasetInfo {
    let colors: Vec<[u8; 3]> = meta
        .entries
        .get(PALETTE_META)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let classes = meta
        .class_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| ClassInfo {
            name,
            color: colors.get(i).copied().unwrap_or_else(|| {
                // Well-spread hues for checkpoints without a palette.
                let h = (i as u32).wrapping_mul(2_654_435_761);
                [(h >> 24) as u8, (h >> 16) as u8, (h >> 8) as u8]
            }),
        })
        .collect();
    DatasetInfo {
        name: "checkpoint".into(),
        classes,
        ignore_index: 255,
        tail: None,
        head: None,
    }
}

/// `--window` and `--overlap` as a [`Window`], if a window was asked for.
fn window_arg(spec: Option<&str>, overlap: f32) -> Result<Option<Window>> {
    spec.map(|s| {
        Window::parse(s, overlap).with_context(|| format!("--window {s} --overlap {overlap}"))
    })
    .transpose()
}

pub fn infer(a: InferArgs) -> Result<()> {
    let dev = Device::parse(&a.device).with_context(|| format!("--device {}", a.device))?;
    let spec = match &a.checkpoint {
        Some(c) => c.clone(),
        None => checkpoint::newest_run(Path::new("runs"))
            .context("no --checkpoint given and no run with a checkpoint under runs/")?,
    };
    let mut m = load_model(&spec, &dev)?;
    let info = palette(&m.meta);
    let files = images_in(&a.inputs)?;
    let (scale, why) = match (a.scale, trained_scale(&m.meta)) {
        (Some(s), _) => (s, "--scale"),
        (None, Some(s)) => (s, "the checkpoint's training scale"),
        (None, None) => (1.0, "the checkpoint records no training scale"),
    };
    if !(scale > 0.0 && scale.is_finite()) {
        bail!("--scale {scale}: the scale must be positive");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    eprintln!(
        "wgseg infer: {} image(s) with {} on {}, at scale {scale} ({why}); outputs at the \
         input's size",
        files.len(),
        m.file.display(),
        dev.name()
    );
    let window = window_arg(a.window.as_deref(), a.overlap)?;
    let _g = wgseg::no_grad();
    for f in files {
        let (image, h, w) = data::load_image(&f)?;
        let (net, store) = (&m.net, &mut m.store);
        let logits = segment_logits(&image, h, w, scale, &dev, |x| match window {
            Some(win) => window_logits(x, win, |c| net.forward(store, c, false)),
            None => net.forward(store, x, false),
        })
        .with_context(|| format!("segmenting {}", f.display()))?;
        let ids = ids_of(&logits)?;
        let stem = f
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        if a.logits {
            wgseg::npy::save(&logits, &a.out.join(format!("{stem}_logits.npy")))?;
        }
        let mask = data::colorize(&ids, &info);
        let mask_path = a.out.join(format!("{stem}_mask.png"));
        data::save_png_rgb(&mask_path, w, h, &mask)?;
        data::save_png_rgb(
            &a.out.join(format!("{stem}_overlay.png")),
            w,
            h,
            &data::overlay(&image, &mask, 0.5),
        )?;
        if a.ids {
            data::save_png_gray(&a.out.join(format!("{stem}_ids.png")), w, h, &ids)?;
        }
        println!("{} -> {}", f.display(), mask_path.display());
    }
    Ok(())
}
