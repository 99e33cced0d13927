//! The long-tail experiment: trains CE, focal, PAT, AUCSeg, AUCSeg + memory bank and PAT +
//! memory bank with the same models, budget and seeds, evaluates each on the validation
//! split and writes tables (overall / head / middle / tail mIoU, mean and spread over seeds;
//! losses × architectures when there are several models) and a plot of per-class IoU by
//! method for each model.
//!
//! ```text
//! cargo run --release --example longtail                          # the built-in data
//! cargo run --release --example longtail -- --data path/to/camvid  # CamVid: docs/training.md
//! cargo run --release --example longtail -- --data DIR --budget 4  # 4× the steps (real GPUs)
//! cargo run --release --example longtail -- --model tiny,unet-tiny,deeplabv3-tiny --methods ce,pat
//! ```
//!
//! Output in `--out` (default `runs/longtail-<data>-<steps>`): one run directory per model,
//! method and seed (`<model>/<method>-s<seed>`), `results.json`, `table.md` and
//! `iou_by_class[-<model>].png`. A finished run is not trained again (its `result.json` is
//! read), and a killed one resumes from its last checkpoint, so the command can be rerun
//! after an interruption.

mod font;
mod plot;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use serde::{Deserialize, Serialize};
use wgseg::data::{self, ClassStats};
use wgseg::train::checkpoint::RunDir;
use wgseg::train::metrics::Scores;
use wgseg::train::{train, Event, RunConfig, TrainOptions};
use wgseg::Device;

/// The methods of the table: (name, loss, memory bank).
const METHODS: &[(&str, &str, bool)] = &[
    ("ce", "ce", false),
    ("focal", "focal", false),
    ("pat", "pat", false),
    ("aucseg", "aucseg", false),
    ("aucseg+tmb", "aucseg", true),
    ("pat+tmb", "pat", true),
];

const COLORS: &[[u8; 3]] = &[
    [90, 90, 90],
    [230, 159, 0],
    [0, 114, 178],
    [0, 158, 115],
    [86, 180, 233],
    [204, 121, 167],
    [213, 94, 0],
    [240, 228, 66],
];

#[derive(Parser, Debug)]
#[command(about = "Train and compare the long-tail methods (see the file's docs)")]
struct Args {
    /// Dataset root (default: the built-in data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Base scale of the images [default: 0.5 with --data, 1 for the built-in data].
    #[arg(long)]
    scale: Option<f32>,
    /// Model configs in models/ (tiny, unet-tiny, deeplabv3-tiny, …) or TOML files,
    /// comma-separated: every method is trained on each.
    #[arg(long, alias = "config", value_delimiter = ',', default_value = "tiny")]
    model: Vec<String>,
    /// Steps per run before --budget [default: 300].
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Multiplies the steps (e.g. 4 or 10 on a real GPU).
    #[arg(long, default_value_t = 1.0)]
    budget: f64,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Square crop [default: 192 with --data, 96 for the built-in data].
    #[arg(long)]
    crop: Option<usize>,
    /// Seeds per method (0, 1, …).
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Comma-separated subset of the methods (ce, focal, pat, aucseg, aucseg+tmb, pat+tmb).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Output directory [default: runs/longtail-<data>-<steps>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: gpu, gpu:N, gpu:NAME or cpu.
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Data-loading threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Train nothing: write the tables and plots from the runs finished so far.
    #[arg(long)]
    report: bool,
}

/// What one finished run leaves in `result.json`.
#[derive(Serialize, Deserialize, Clone)]
struct RunResult {
    /// The model config (results written before the key existed: `tiny`).
    #[serde(default = "default_model")]
    model: String,
    method: String,
    seed: u64,
    steps: u64,
    seconds: f64,
    scores: Scores,
}

fn default_model() -> String {
    "tiny".into()
}

/// One training run of the experiment.
#[derive(Clone, Copy)]
struct Job<'a> {
    model: &'a str,
    method: &'a str,
    loss: &'a str,
    tmb: bool,
    seed: u64,
}

fn config_for(args: &Args, job: Job) -> wgseg::Result<RunConfig> {
    let file = if Path::new(job.model).is_file() {
        PathBuf::from(job.model)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(format!("{}.toml", job.model))
    };
    let mut c = RunConfig::load(&file)?;
    let builtin = args.data.is_none();
    c.data.scale = args.scale.unwrap_or(if builtin { 1.0 } else { 0.5 });
    let t = &mut c.train;
    t.steps = ((args.steps as f64 * args.budget).round() as usize).max(1);
    t.batch_size = args.batch_size;
    t.crop = args.crop.unwrap_or(if builtin { 96 } else { 192 });
    t.seed = job.seed;
    t.loss = job.loss.parse()?;
    t.val_every = 0;
    t.workers = args.workers;
    t.checkpoint_every = (t.steps / 4).max(50);
    c.tmb.enabled = job.tmb;
    c.check()?;
    Ok(c)
}

/// A model's name in paths and tables: the config's file stem.
fn model_name(model: &str) -> String {
    Path::new(model)
        .file_stem()
        .map_or(model.to_string(), |s| s.to_string_lossy().into_owned())
}

/// The run directory of a job.
fn run_dir(out: &Path, job: Job) -> PathBuf {
    out.join(model_name(job.model))
        .join(format!("{}-s{}", job.method, job.seed))
}

/// The result of a job finished before, if any (an error if it ran another step count).
fn finished(out: &Path, job: Job, steps: usize) -> anyhow::Result<Option<RunResult>> {
    let dir = run_dir(out, job);
    let Ok(text) = std::fs::read_to_string(dir.join("result.json")) else {
        return Ok(None);
    };
    let Ok(r) = serde_json::from_str::<RunResult>(&text) else {
        return Ok(None);
    };
    if r.steps != steps as u64 {
        anyhow::bail!(
            "{} holds a run of {} steps, not {steps}: use another --out",
            dir.display(),
            r.steps
        );
    }
    Ok(Some(r))
}

fn run_one(args: &Args, out: &Path, job: Job) -> anyhow::Result<RunResult> {
    let (method, seed) = (job.method, job.seed);
    let model = model_name(job.model);
    let dir = run_dir(out, job);
    let result_file = dir.join("result.json");
    let config = config_for(args, job)?;
    if let Some(r) = finished(out, job, config.train.steps)? {
        eprintln!(
            "{model} {method} seed {seed}: done before (mIoU {:.4})",
            r.scores.miou
        );
        return Ok(r);
    }
    // A killed run continues from its last checkpoint; one killed before its first
    // checkpoint starts again from nothing (its directory holds no model to keep).
    let resume = RunDir::new(&dir).last().exists();
    if !resume && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let device = Device::parse(&args.device)?;
    let started = Instant::now();
    let total = config.train.steps as u64;
    let mut next_report = 0u64;
    let mut on = |e: Event| match e {
        Event::Step {
            step,
            loss: Some(l),
            ..
        } if step >= next_report => {
            let el = started.elapsed().as_secs_f64();
            eprintln!(
                "  {model} {method} seed {seed}: step {step}/{total} loss {l:.4} ({el:.0} s)"
            );
            next_report = step + (total / 5).max(1);
        }
        Event::Note(n) => eprintln!("  {model} {method} seed {seed}: {n}"),
        _ => {}
    };
    eprintln!(
        "{model} {method} seed {seed}: training {total} steps → {}",
        dir.display()
    );
    let report = train(
        TrainOptions {
            config,
            data: args.data.clone(),
            out: dir.clone(),
            device,
            resume,
            init_backbone: None,
            stop_at: None,
        },
        &mut on,
    )?;
    let scores = report
        .scores
        .ok_or_else(|| anyhow::anyhow!("{model} {method} seed {seed}: no validation scores"))?;
    let r = RunResult {
        model: model.clone(),
        method: method.to_string(),
        seed,
        steps: report.steps,
        seconds: report.seconds,
        scores,
    };
    std::fs::write(&result_file, serde_json::to_string_pretty(&r)?)?;
    eprintln!(
        "{model} {method} seed {seed}: mIoU {:.4} tail {:.4} in {:.0} s",
        r.scores.miou,
        r.scores.tail_miou.unwrap_or(f64::NAN),
        r.seconds
    );
    Ok(r)
}

/// Mean, half the spread (max − min)/2 (NaN for a single value: no spread to speak of),
/// min and max of the finite values.
fn mean_spread(v: &[f64]) -> Option<(f64, f64, f64, f64)> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let spread = if v.len() > 1 {
        (hi - lo) / 2.0
    } else {
        f64::NAN
    };
    Some((mean, spread, lo, hi))
}

/// `mean ± spread`, or the mean alone for a single run.
fn cell(v: Option<(f64, f64, f64, f64)>) -> String {
    v.map_or("-".into(), |(m, s, _, _)| {
        if s.is_nan() {
            format!("{m:.3}")
        } else {
            format!("{m:.3} ± {s:.3}")
        }
    })
}

/// The job of `model` and `method` for the settings every run shares (steps, scale, crop).
fn probe(args: &Args, model: &str) -> anyhow::Result<RunConfig> {
    let job = Job {
        model,
        method: "ce",
        loss: "ce",
        tmb: false,
        seed: 0,
    };
    Ok(config_for(args, job)?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data_name = args
        .data
        .as_ref()
        .and_then(|p| p.file_name())
        .map_or("builtin".to_string(), |n| n.to_string_lossy().into_owned());
    let first = args
        .model
        .first()
        .ok_or_else(|| anyhow::anyhow!("--model: name at least one model config"))?;
    // Every config is read before the first run starts: a typo fails at once.
    for m in &args.model {
        probe(&args, m)?;
    }
    let cfg = probe(&args, first)?;
    let steps = cfg.train.steps;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("longtail-{data_name}-{steps}")));
    std::fs::create_dir_all(&out)?;
    let methods: Vec<(&str, &str, bool)> = match &args.methods {
        None => METHODS.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                METHODS
                    .iter()
                    .copied()
                    .find(|m| m.0 == n)
                    .ok_or_else(|| anyhow::anyhow!("--methods: unknown method {n:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let started = Instant::now();
    let mut results: Vec<RunResult> = Vec::new();
    for model in &args.model {
        for &(method, loss, tmb) in &methods {
            for seed in 0..args.seeds {
                let job = Job {
                    model,
                    method,
                    loss,
                    tmb,
                    seed,
                };
                if args.report {
                    results.extend(finished(&out, job, steps)?);
                } else {
                    results.push(run_one(&args, &out, job)?);
                }
            }
        }
    }

    // Class order (training-set frequency) and groups, from the cached statistics.
    let scale = cfg.data.scale;
    let ds = data::open(args.data.as_deref(), "train", scale, 0)?;
    let (stats, _) = ClassStats::compute_or_load_with(ds.as_ref(), |_, _| {})?;
    let info = ds.info().clone();
    let groups = stats.groups(&info);
    let mut order: Vec<usize> = (0..info.num_classes()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(stats.counts[c]));
    let group_of = |c: usize| {
        if groups.head.contains(&c) {
            "head"
        } else if groups.tail.contains(&c) {
            "tail"
        } else {
            "middle"
        }
    };
    let models: Vec<String> = args.model.iter().map(|m| model_name(m)).collect();
    let several = models.len() > 1;

    let mut md = String::new();
    if several {
        md += &format!(
            "Losses × architectures: validation mIoU / tail mIoU, mean ± half the spread over \
             the seeds run (up to {}; each model's table gives the count); {} steps of batch \
             {}, {}² crops, base scale {}, data: {data_name}.\n\n\
             | method |",
            args.seeds, cfg.train.steps, cfg.train.batch_size, cfg.train.crop, scale
        );
        for m in &models {
            md += &format!(" {m} mIoU | {m} tail |");
        }
        md += "\n|---|";
        md += &"---|---|".repeat(models.len());
        md += "\n";
        for &(method, _, _) in &methods {
            md += &format!("| {method} |");
            for m in &models {
                let runs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| &r.model == m && r.method == method)
                    .collect();
                let col = |f: &dyn Fn(&Scores) -> Option<f64>| {
                    mean_spread(&runs.iter().filter_map(|r| f(&r.scores)).collect::<Vec<_>>())
                };
                md += &format!(
                    " {} | {} |",
                    cell(col(&|s| Some(s.miou))),
                    cell(col(&|s| s.tail_miou))
                );
            }
            md += "\n";
        }
        md += "\n";
    }
    let mut summary = Vec::new();
    for m in &models {
        let mut series = Vec::new();
        md += &format!(
            "Validation mIoU, mean ± half the spread over the seeds; `{m}` model, {} steps of \
             batch {}, {}² crops, base scale {}, data: {data_name}.\n\n\
             | method | seeds | mIoU | head | middle | tail | time / run |\n\
             |---|---|---|---|---|---|---|\n",
            cfg.train.steps, cfg.train.batch_size, cfg.train.crop, scale
        );
        for (k, &(method, _, _)) in methods.iter().enumerate() {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| &r.model == m && r.method == method)
                .collect();
            let col = |f: &dyn Fn(&Scores) -> Option<f64>| {
                mean_spread(&runs.iter().filter_map(|r| f(&r.scores)).collect::<Vec<_>>())
            };
            let (miou, head, middle, tail) = (
                col(&|s| Some(s.miou)),
                col(&|s| s.head_miou),
                col(&|s| s.middle_miou),
                col(&|s| s.tail_miou),
            );
            let time = match runs.len() {
                0 => "-".to_string(),
                k => {
                    let secs = runs.iter().map(|r| r.seconds).sum::<f64>() / k as f64;
                    format!("{:.1} min", secs / 60.0)
                }
            };
            md += &format!(
                "| {method} | {} | {} | {} | {} | {} | {time} |\n",
                runs.len(),
                cell(miou),
                cell(head),
                cell(middle),
                cell(tail),
            );
            summary.push(serde_json::json!({
                "model": m, "method": method, "miou": miou.map(|v| [v.0, v.1]),
                "head": head.map(|v| [v.0, v.1]), "middle": middle.map(|v| [v.0, v.1]),
                "tail": tail.map(|v| [v.0, v.1]),
            }));
            series.push(plot::Series {
                name: method.to_string(),
                color: COLORS[k % COLORS.len()],
                iou: order
                    .iter()
                    .map(|&c| {
                        let v: Vec<f64> = runs
                            .iter()
                            .filter_map(|r| r.scores.iou.get(c).copied().flatten())
                            .collect();
                        mean_spread(&v).map(|(m, _, lo, hi)| (m, lo, hi))
                    })
                    .collect(),
            });
        }
        md += "\nPer-class IoU (mean over seeds), classes by training-set frequency:\n\n| method |";
        for &c in &order {
            md += &format!(" {} ({}) |", info.classes[c].name, group_of(c));
        }
        md += "\n|---|";
        md += &"---|".repeat(order.len());
        md += "\n";
        for s in &series {
            md += &format!("| {} |", s.name);
            for v in &s.iou {
                md += &v.map_or(" - |".into(), |(m, _, _)| format!(" {m:.3} |"));
            }
            md += "\n";
        }
        md += "\n";
        let classes: Vec<(String, String)> = order
            .iter()
            .map(|&c| (info.classes[c].name.clone(), group_of(c).to_string()))
            .collect();
        let png = if several {
            format!("iou_by_class-{m}.png")
        } else {
            "iou_by_class.png".to_string()
        };
        plot::plot(
            &out.join(png),
            &format!(
                "Per-class val IoU by method ({m}, {data_name}, {} steps)",
                cfg.train.steps
            ),
            &classes,
            &series,
        )?;
    }
    std::fs::write(out.join("table.md"), &md)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({"summary": summary, "runs": results}))?,
    )?;
    println!("{md}");
    println!(
        "wrote {}/table.md, results.json and the plots ({:.1} min)",
        out.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
