//! `wgseg train`: argument handling and progress display over `wgseg::train::train`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgseg::train::{train, Event, RunConfig, TrainOptions};
use wgseg::Device;

use super::report::print_scores;

/// The configs shipped in `models/`, usable by name from any directory.
const BUILTIN_CONFIGS: &[(&str, &str)] = &[
    ("tiny", include_str!("../../models/tiny.toml")),
    ("small", include_str!("../../models/small.toml")),
    ("r18", include_str!("../../models/r18.toml")),
];

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model and training config: a TOML file, or the name of a shipped one (tiny, small, r18).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Dataset root (folder layout with dataset.toml, or Cityscapes); default: the built-in
    /// procedural data.
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
    /// Device: gpu, gpu:N, gpu:NAME or cpu (default: $WGSEG_ADAPTER or the best GPU).
    #[arg(long, default_value = "gpu")]
    pub device: String,
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
}

/// Overrides of `train.loss`, the `[loss]` table and the `[tmb]` table.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Loss and tail-class memory bank (defaults: SPEC's)")]
pub struct LossArgs {
    /// The loss: ce, focal, cb, cb-focal, bms, ldam, blv, pat, aucseg.
    #[arg(long, value_name = "NAME")]
    pub loss: Option<String>,
    /// Focal exponent γ (focal, cb-focal) [default: 2].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Class-balanced β (cb, cb-focal) [default: 0.9999].
    #[arg(long)]
    pub cb_beta: Option<f64>,
    /// LDAM scale s [default: 30].
    #[arg(long)]
    pub ldam_s: Option<f64>,
    /// LDAM largest margin [default: 0.5].
    #[arg(long)]
    pub ldam_margin: Option<f64>,
    /// BLV noise σ [default: 0.5].
    #[arg(long)]
    pub blv_sigma: Option<f64>,
    /// PAT weight curve: falling or rising [default: falling].
    #[arg(long, value_name = "CURVE")]
    pub pat_curve: Option<String>,
    /// PAT temperature T [default: 20].
    #[arg(long)]
    pub pat_t: Option<f64>,
    /// PAT ε [default: 0].
    #[arg(long)]
    pub pat_eps: Option<f64>,
    /// Treat PAT's weight as a constant in the gradient.
    #[arg(long)]
    pub pat_detach: bool,
    /// AUCSeg's λ in L_ce + λ·L_auc [default: 1].
    #[arg(long)]
    pub auc_lambda: Option<f64>,
    /// AUC surrogate margin [default: 1; 0.5 for sq-hinge].
    #[arg(long)]
    pub auc_margin: Option<f64>,
    /// AUC surrogate: square, sq-hinge, logistic [default: square].
    #[arg(long, value_name = "NAME")]
    pub auc_surrogate: Option<String>,
    /// AUC computation: closed (per-class sums) or pairwise (tiled pairs) [default: closed].
    #[arg(long, value_name = "METHOD")]
    pub auc_method: Option<String>,
    /// Pixels per class the pairwise AUC kernel keeps (seeded subsample) [default: 4096].
    #[arg(long, value_name = "N")]
    pub auc_cap: Option<usize>,
    /// Enable the tail-class memory bank (combinable with every loss).
    #[arg(long)]
    pub tmb: bool,
    /// Memory-bank entries per tail class (SM) [default: 5].
    #[arg(long, value_name = "N")]
    pub tmb_size: Option<usize>,
    /// Fraction of an image's missing tail classes pasted into it (Rs) [default: 1].
    #[arg(long, value_name = "R")]
    pub tmb_rs: Option<f32>,
    /// Resize factor of pasted entries (p_resize) [default: 1].
    #[arg(long, value_name = "F")]
    pub tmb_resize: Option<f32>,
    /// Tail class ids, comma-separated [default: the dataset's tail group].
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub tmb_tail: Option<Vec<u8>>,
}

impl LossArgs {
    /// Whether any flag was given.
    fn any(&self) -> bool {
        self.loss.is_some()
            || self.gamma.is_some()
            || self.cb_beta.is_some()
            || self.ldam_s.is_some()
            || self.ldam_margin.is_some()
            || self.blv_sigma.is_some()
            || self.pat_curve.is_some()
            || self.pat_t.is_some()
            || self.pat_eps.is_some()
            || self.pat_detach
            || self.auc_lambda.is_some()
            || self.auc_margin.is_some()
            || self.auc_surrogate.is_some()
            || self.auc_method.is_some()
            || self.auc_cap.is_some()
            || self.tmb
            || self.tmb_size.is_some()
            || self.tmb_rs.is_some()
            || self.tmb_resize.is_some()
            || self.tmb_tail.is_some()
    }

    /// Writes the given flags into the config.
    fn apply(&self, c: &mut RunConfig) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut c.train.loss, &self.loss);
        let l = &mut c.loss;
        set(&mut l.gamma, &self.gamma);
        set(&mut l.cb_beta, &self.cb_beta);
        set(&mut l.ldam_s, &self.ldam_s);
        set(&mut l.ldam_max_margin, &self.ldam_margin);
        set(&mut l.blv_sigma, &self.blv_sigma);
        set(&mut l.pat_curve, &self.pat_curve);
        set(&mut l.pat_t, &self.pat_t);
        set(&mut l.pat_eps, &self.pat_eps);
        l.pat_detach |= self.pat_detach;
        set(&mut l.auc_lambda, &self.auc_lambda);
        if self.auc_margin.is_some() {
            l.auc_margin = self.auc_margin;
        }
        set(&mut l.auc_surrogate, &self.auc_surrogate);
        set(&mut l.auc_method, &self.auc_method);
        set(&mut l.auc_cap, &self.auc_cap);
        let b = &mut c.tmb;
        b.enabled |= self.tmb;
        set(&mut b.size, &self.tmb_size);
        set(&mut b.rs, &self.tmb_rs);
        set(&mut b.resize, &self.tmb_resize);
        set(&mut b.tail, &self.tmb_tail);
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
        || a.loss.any();
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
            c.data.scale = a.scale.unwrap_or(c.data.scale);
            a.loss.apply(&mut c);
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
    let device = Device::parse(&a.device).with_context(|| format!("--device {}", a.device))?;
    eprintln!(
        "wgseg train: {} on {}, run directory {}",
        a.data
            .as_ref()
            .map_or("built-in data".to_string(), |d| d.display().to_string()),
        device.name(),
        out.display()
    );
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
    let report = train(opts, &mut |e| ui.event(e))?;
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
