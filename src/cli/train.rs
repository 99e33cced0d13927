//! `wgseg train`: argument handling and progress display over `wgseg::train::train`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgseg::data::BankFlags;
use wgseg::losses::flags::{help_with_default, ShowDefault};
use wgseg::losses::{Loss, LossFlags};
use wgseg::model::build_from_config;
use wgseg::train::{train_parallel, Event, RunConfig, TrainConfig, TrainOptions};
use wgseg::Device;

use super::report::print_scores;

/// The configs shipped in `models/`, usable by name from any directory.
const BUILTIN_CONFIGS: &[(&str, &str)] = &[
    ("tiny", include_str!("../../models/tiny.toml")),
    ("small", include_str!("../../models/small.toml")),
    ("r18", include_str!("../../models/r18.toml")),
    ("r50", include_str!("../../models/r50.toml")),
    (
        "deeplabv3-tiny",
        include_str!("../../models/deeplabv3-tiny.toml"),
    ),
    (
        "deeplabv3-r50",
        include_str!("../../models/deeplabv3-r50.toml"),
    ),
    ("unet-tiny", include_str!("../../models/unet-tiny.toml")),
    ("unet", include_str!("../../models/unet.toml")),
    (
        "attention-unet-tiny",
        include_str!("../../models/attention-unet-tiny.toml"),
    ),
    (
        "attention-unet",
        include_str!("../../models/attention-unet.toml"),
    ),
    ("unetpp-tiny", include_str!("../../models/unetpp-tiny.toml")),
    ("unetpp", include_str!("../../models/unetpp.toml")),
    ("segnet-tiny", include_str!("../../models/segnet-tiny.toml")),
    ("segnet", include_str!("../../models/segnet.toml")),
    (
        "segnext-tiny",
        include_str!("../../models/segnext-tiny.toml"),
    ),
    ("segnext-t", include_str!("../../models/segnext-t.toml")),
];

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model and training config: a TOML file, or the name of a shipped one (tiny, small,
    /// r18, r50, deeplabv3-tiny, unet-tiny, attention-unet-tiny, unetpp-tiny, segnet-tiny,
    /// segnext-tiny, …;
    /// models/README.md lists them all).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Dataset root (folder layout with dataset.toml, Cityscapes, ADE20K, COCO-Stuff 164k,
    /// NYUv2 exported as PNGs or Oxford-IIIT Pet); default: the built-in procedural data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory (default: runs/<config>-<data>-<n>, the first free n).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its saved config is used).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// A torchvision ResNet state dict saved as safetensors, to initialise the backbone.
    #[arg(long, value_name = "FILE")]
    pub init_backbone: Option<PathBuf>,
    /// Device: gpu, gpu:N, gpu:NAME or cpu (default: $WGSEG_ADAPTER or the best GPU; under
    /// mpirun or srun, adapter N mod adapters for the process of local rank N).
    #[arg(long)]
    pub device: Option<String>,
    /// Data-parallel training on several devices, one replica each: all, or a list such as
    /// gpu:0,gpu:1. The global batch is train.batch_size × devices.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// With --devices: batch norm over the global batch, every replica's images together
    /// (sets train.sync_bn).
    #[arg(long)]
    pub sync_bn: bool,
    /// Override train.steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override train.batch_size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override train.crop (square crop side in pixels).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Override train.lr.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override train.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override train.workers (data-loading threads).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Override data.scale (base scale applied once when images are loaded).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Override train.val_every.
    #[arg(long)]
    pub val_every: Option<usize>,
    /// Stop after this step, with a checkpoint (continue later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<u64>,
    #[command(flatten)]
    pub loss: LossArgs,
    #[command(flatten)]
    pub tmb: BankFlags,
}

/// Overrides of `train.loss` and the `[loss]` table (the flags: [`LossFlags`], one per key;
/// each default shown is the one a config without the key gets).
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Loss (overrides the config's train.loss and [loss] table)")]
pub struct LossArgs {
    #[arg(
        long,
        value_name = "NAME",
        help = help_with_default("The loss", TrainConfig::default().loss.show_default())
    )]
    pub loss: Option<Loss>,
    #[command(flatten)]
    pub params: LossFlags,
}

impl LossArgs {
    /// Whether any flag was given.
    fn any(&self) -> bool {
        self.loss.is_some() || self.params.any()
    }

    /// Writes the given flags into the config.
    fn apply(&self, c: &mut RunConfig) {
        if let Some(l) = self.loss {
            c.train.loss = l;
        }
        self.params.apply(&mut c.loss);
    }
}

/// Reads `--config` (a file or a shipped name).
pub fn load_config(spec: &str) -> Result<RunConfig> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(RunConfig::load(path)?);
    }
    match BUILTIN_CONFIGS.iter().find(|(n, _)| *n == spec) {
        Some((name, text)) => Ok(RunConfig::parse(
            text,
            Path::new(&format!("models/{name}.toml")),
        )?),
        None => bail!(
            "--config {spec}: no such file, and not a shipped config ({})",
            BUILTIN_CONFIGS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn default_out(config: &str, data: Option<&Path>) -> PathBuf {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    };
    let cfg = if Path::new(config).is_file() {
        stem(Path::new(config))
    } else {
        config.to_string()
    };
    let data = data.map_or_else(|| "builtin".to_string(), stem);
    let mut n = 1;
    loop {
        let p = PathBuf::from("runs").join(format!("{cfg}-{data}-{n}"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let overrides = a.steps.is_some()
        || a.batch_size.is_some()
        || a.crop.is_some()
        || a.lr.is_some()
        || a.seed.is_some()
        || a.scale.is_some()
        || a.val_every.is_some()
        || a.sync_bn
        || a.loss.any()
        || a.tmb.any();
    let (config, out, resume) = match &a.resume {
        Some(dir) => {
            if overrides {
                bail!("--resume continues a run with its saved config; drop the overrides");
            }
            let c = RunConfig::load(&dir.join("config.toml"))
                .with_context(|| format!("{} is not a run directory", dir.display()))?;
            (c, dir.clone(), true)
        }
        None => {
            let mut c = load_config(&a.config)?;
            let t = &mut c.train;
            t.steps = a.steps.unwrap_or(t.steps);
            t.batch_size = a.batch_size.unwrap_or(t.batch_size);
            t.crop = a.crop.unwrap_or(t.crop);
            t.lr = a.lr.unwrap_or(t.lr);
            t.seed = a.seed.unwrap_or(t.seed);
            t.val_every = a.val_every.unwrap_or(t.val_every);
            t.sync_bn |= a.sync_bn;
            c.data.scale = a.scale.unwrap_or(c.data.scale);
            a.loss.apply(&mut c);
            a.tmb.apply(&mut c.tmb);
            c.check()
                .context("the config after command-line overrides")?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| default_out(&a.config, a.data.as_deref()));
            (c, out, false)
        }
    };
    let mut config = config;
    if let Some(w) = a.workers {
        config.train.workers = w;
    }
    let launcher = Launcher::detect()?;
    if launcher.world() > 1 && a.out.is_none() && a.resume.is_none() {
        // Each process would pick "the first free" default directory on its own.
        bail!("under mpirun or srun, give the run directory with --out (every process names the same one)");
    }
    let devices = match (&a.devices, &a.device) {
        (Some(list), _) => Device::parse_list(list).with_context(|| format!("--devices {list}"))?,
        (None, Some(d)) => vec![Device::parse(d).with_context(|| format!("--device {d}"))?],
        (None, None) => vec![launcher.default_device()?],
    };
    if launcher.world() > 1 && devices.len() > 1 {
        bail!("--devices is for one process; under mpirun or srun each process takes one --device");
    }
    let quiet = launcher.rank() > 0;
    let device = devices[0].clone();
    if !quiet {
        eprintln!(
            "wgseg train: {} on {}, {} {}, run directory {}",
            config.model.arch(),
            a.data
                .as_ref()
                .map_or("built-in data".to_string(), |d| d.display().to_string()),
            if devices.len() > 1 {
                "devices"
            } else {
                "device"
            },
            devices
                .iter()
                .map(Device::name)
                .collect::<Vec<_>>()
                .join(" + "),
            out.display()
        );
    }
    let opts = TrainOptions {
        config,
        data: a.data.clone(),
        out,
        device,
        resume,
        init_backbone: a.init_backbone.clone(),
        stop_at: a.stop_after,
    };
    let mut ui = Ui::new();
    let report = match launcher {
        Launcher::Alone => {
            train_parallel(opts, &devices, &build_from_config, &mut |e| ui.event(e))?
        }
        #[cfg(feature = "mpi")]
        Launcher::Mpi(comm) => {
            let comm: std::sync::Arc<dyn wgseg::dist::Collective> = std::sync::Arc::new(comm);
            if quiet {
                wgseg::train::train_rank(opts, &build_from_config, comm, &mut |_| {})?;
                return Ok(());
            }
            wgseg::train::train_rank(opts, &build_from_config, comm, &mut |e| ui.event(e))?
        }
    };
    ui.finish();
    println!(
        "\ntrained {} steps in {:.0} s; run directory {}",
        report.steps,
        report.seconds,
        report.run.display()
    );
    match &report.scores {
        Some(s) => {
            println!("validation after step {}:", report.steps);
            print_scores(s, &report.groups, &report.classes, report.scale);
        }
        None => println!("stopped at step {}; continue with --resume", report.steps),
    }
    println!(
        "best validation mIoU {:.4} (checkpoint {})",
        report.best_miou,
        report.run.join("checkpoints/best").display()
    );
    Ok(())
}

/// Progress bars on a terminal, plain log lines otherwise.
struct Ui {
    tty: bool,
    bar: Option<ProgressBar>,
    phase: String,
}

impl Ui {
    fn new() -> Ui {
        Ui {
            tty: std::io::stderr().is_terminal(),
            bar: None,
            phase: String::new(),
        }
    }

    /// The bar of `phase` (recreated when the phase changes).
    fn bar(&mut self, phase: &str, len: u64, template: &str) -> &ProgressBar {
        if self.phase != phase || self.bar.is_none() {
            if let Some(b) = self.bar.take() {
                b.finish_and_clear();
            }
            let target = if self.tty {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            };
            let b = ProgressBar::with_draw_target(Some(len), target);
            b.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(b);
            self.phase = phase.to_string();
        }
        self.bar.get_or_insert_with(ProgressBar::hidden)
    }

    fn event(&mut self, e: Event) {
        const COUNT: &str = "{msg:>24} [{bar:30}] {pos}/{len} {elapsed_precise}";
        match e {
            Event::Checking { split, done, total } => {
                let b = self.bar(&format!("check {split}"), total as u64, COUNT);
                b.set_message(format!("checking {split} data"));
                b.set_position(done as u64);
            }
            Event::Counting { done, total } => {
                let b = self.bar("count", total as u64, COUNT);
                b.set_message("counting class pixels");
                b.set_position(done as u64);
            }
            Event::Start {
                step,
                total,
                params,
                train_images,
                val_images,
                groups,
            } => {
                self.clear();
                eprintln!(
                    "{params} parameters; {train_images} training / {val_images} validation \
                     images; classes by training pixels: head {:?}, middle {:?}, tail {:?}",
                    groups.head, groups.middle, groups.tail
                );
                if step > 0 {
                    eprintln!("resuming at step {step} of {total}");
                }
            }
            Event::Step {
                step,
                total,
                loss,
                lr,
                images_per_s,
                queued,
            } => {
                let b = self.bar(
                    "train",
                    total,
                    "train [{bar:30}] {pos}/{len} {msg} ETA {eta_precise}",
                );
                b.set_position(step);
                if let (Some(l), Some(ips)) = (loss, images_per_s) {
                    let msg =
                        format!("loss {l:.4} lr {lr:.2e} {ips:.1} img/s loader queue {queued}");
                    b.set_message(msg.clone());
                    if !self.tty {
                        eprintln!("step {step}/{total} {msg}");
                    }
                }
            }
            Event::Validating { done, total } => {
                let b = self.bar("val", total as u64, COUNT);
                b.set_message("validating");
                b.set_position(done as u64);
            }
            Event::Validated { step, scores } => {
                self.clear();
                let g = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
                eprintln!(
                    "step {step}: val mIoU {:.4} (head {}, middle {}, tail {}), pixel acc {:.4}",
                    scores.miou,
                    g(scores.head_miou),
                    g(scores.middle_miou),
                    g(scores.tail_miou),
                    scores.pixel_accuracy
                );
            }
            Event::Note(s) => {
                if let Some(b) = &self.bar {
                    b.suspend(|| eprintln!("{s}"));
                } else {
                    eprintln!("{s}");
                }
            }
        }
    }

    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.phase.clear();
    }

    fn finish(&mut self) {
        self.clear();
    }
}

/// How this process was started: alone, or as a rank of an MPI job (`mpirun`, `srun`).
enum Launcher {
    Alone,
    #[cfg(feature = "mpi")]
    Mpi(wgseg::dist::mpi::MpiGroup),
}

impl Launcher {
    /// An MPI job of more than one process joins it (with `--features mpi`; without, an
    /// error says how to build it).
    fn detect() -> Result<Launcher> {
        #[cfg(feature = "mpi")]
        if wgseg::dist::mpi::launched() {
            let group = wgseg::dist::mpi::MpiGroup::init()?;
            use wgseg::dist::Collective;
            if group.world() > 1 {
                return Ok(Launcher::Mpi(group));
            }
        }
        #[cfg(not(feature = "mpi"))]
        for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
            if let Some(n) = std::env::var(var)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                if n > 1 {
                    bail!(
                        "started by an MPI launcher as one of {n} processes, but this wgseg was \
                         built without MPI support: build it with `cargo build --release \
                         --features mpi` (needs an MPI library and libclang)"
                    );
                }
            }
        }
        Ok(Launcher::Alone)
    }

    fn rank(&self) -> usize {
        match self {
            Launcher::Alone => 0,
            #[cfg(feature = "mpi")]
            Launcher::Mpi(g) => wgseg::dist::Collective::rank(g),
        }
    }

    fn world(&self) -> usize {
        match self {
            Launcher::Alone => 1,
            #[cfg(feature = "mpi")]
            Launcher::Mpi(g) => wgseg::dist::Collective::world(g),
        }
    }

    /// The device when none is given: the default GPU alone; under MPI the adapter of the
    /// process's local rank (modulo the adapters of the node).
    fn default_device(&self) -> Result<Device> {
        match self {
            Launcher::Alone => Ok(Device::gpu()?),
            #[cfg(feature = "mpi")]
            Launcher::Mpi(g) => {
                let n = wgseg::gpu::list_adapters().len().max(1);
                Ok(Device::parse(&format!("gpu:{}", g.local_rank() % n))?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every file in `models/` is usable by name.
    #[test]
    fn every_shipped_config_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        files.sort();
        let mut built_in: Vec<String> = super::BUILTIN_CONFIGS
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        built_in.sort();
        assert!(files.len() >= 16, "{files:?}");
        assert_eq!(files, built_in);
    }
}
