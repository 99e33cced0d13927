//! Data parallelism over MPI (`cargo test --features mpi --test mpi`): `mpirun -n 2 wgseg
//! train` against one process with the same global batch (`--sync-bn`), identical replicas
//! without it, resume from 2 processes to 1, and a killed rank ending the job.
//!
//! Needs `mpirun` (Open MPI or MPICH) on the PATH; `.ci/run` installs Open MPI.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wgseg::model::ModelConfig;
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint::{self, RunDir};
use wgseg::Device;

const CONFIG: &str = "[model]
stem = 4
widths = [4, 4, 4, 4]
depths = [1, 1, 1, 1]
aspp = 4
low = 4
decoder = 4
output_stride = 16

[train]
steps = 4
crop = 32
lr = 0.05
log_every = 1
checkpoint_every = 2
val_every = 0
workers = 1
seed = 5

[data]
aug_scale = [1.0, 1.0]
";

fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wgseg-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The fixture data and the micro config's file.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let data = data_without_ignore(dir);
    let config = dir.join("micro.toml");
    std::fs::write(&config, CONFIG).unwrap();
    (data, config)
}

/// `mpirun -n N wgseg ARGS` (Open MPI: as root when root, more ranks than cores).
fn mpirun(n: usize, args: &[&str]) -> Command {
    mpirun_with(n, &[], args)
}

/// [`mpirun`] with launcher flags before the program.
fn mpirun_with(n: usize, flags: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    let version = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    if version.contains("Open MPI") || version.contains("OpenRTE") {
        c.args(["--oversubscribe", "--allow-run-as-root"]);
    }
    c.args(["-n", &n.to_string()]);
    c.args(flags);
    c.arg(env!("CARGO_BIN_EXE_wgseg"));
    c.args(args);
    c
}

/// Whether `mpirun` is Open MPI's.
fn open_mpi() -> bool {
    let version = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    version.contains("Open MPI") || version.contains("OpenRTE")
}

fn wgseg(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgseg"));
    c.args(args);
    c
}

fn ok(what: &str, out: Output) -> String {
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Every tensor of the micro config's last checkpoint in `run`.
fn weights(run: &Path) -> Vec<(String, Vec<f64>)> {
    let config = wgseg::train::RunConfig::parse(CONFIG, Path::new("micro.toml")).unwrap();
    let model: ModelConfig = config.model;
    let mut store = ParamStore::new(&Device::Cpu);
    model.build(10, &mut store, 0).unwrap();
    let file = checkpoint::find_checkpoint(&RunDir::new(run).last()).unwrap();
    checkpoint::load_weights(&file, &mut store).unwrap();
    store
        .iter()
        .map(|(n, t, _)| (n.to_string(), t.to_vec_f64().unwrap()))
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `train --config CONFIG --data DATA --out OUT` followed by `extra`.
fn train_args<'a>(
    config: &'a Path,
    data: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--config",
        path(config),
        "--data",
        path(data),
        "--out",
        path(out),
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn two_ranks_with_sync_bn_take_the_steps_of_one_process_with_the_global_batch() {
    if gpu().is_none() {
        return;
    }
    let dir = scratch("syncbn");
    let (data, config) = setup(&dir);
    let (one, two) = (dir.join("one"), dir.join("two"));
    let one_args = train_args(&config, &data, &one, &["--batch-size", "4"]);
    ok("one process", wgseg(&one_args).output().unwrap());
    let two_args = train_args(&config, &data, &two, &["--batch-size", "2", "--sync-bn"]);
    let text = ok("mpirun -n 2", mpirun(2, &two_args).output().unwrap());
    assert!(text.contains("2 replicas, global batch 4"), "{text}");
    // Rank 0 alone writes the log: 4 lines, as one process's.
    assert_same_steps((&one, &two), &weights(&one), &weights(&two), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_ranks_stay_identical_and_resume_on_one_process() {
    if gpu().is_none() {
        return;
    }
    let dir = scratch("resume");
    let (data, config) = setup(&dir);
    let run = dir.join("run");
    // Checkpoints at steps 2 and 4 compare the ranks' weights; the first run stops at 2.
    let args = train_args(
        &config,
        &data,
        &run,
        &["--batch-size", "2", "--stop-after", "2"],
    );
    ok(
        "mpirun -n 2 (stopped at 2)",
        mpirun(2, &args).output().unwrap(),
    );
    let text = ok(
        "resume on one process",
        wgseg(&["train", "--resume", path(&run)]).output().unwrap(),
    );
    assert!(
        text.contains("global batch of 4") && text.contains("epoch 0, batch 4"),
        "{text}"
    );
    let steps: Vec<u64> = logged_losses(&run).iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    // And back to two ranks for two more steps: replicas compared at 6.
    let more = dir.join("more");
    let args = train_args(
        &config,
        &data,
        &more,
        &["--batch-size", "2", "--steps", "6", "--stop-after", "2"],
    );
    ok("one process (stopped at 2)", wgseg(&args).output().unwrap());
    let text = ok(
        "resume on mpirun -n 2",
        mpirun(2, &["train", "--resume", path(&more)])
            .output()
            .unwrap(),
    );
    assert!(
        text.contains("global batch of 2") && text.contains("epoch 0, batch 1"),
        "{text}"
    );
    assert_eq!(logged_losses(&more).len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_rank_ends_the_job_and_the_last_checkpoint_stays_good() {
    if gpu().is_none() {
        return;
    }
    let dir = scratch("kill");
    let (data, config) = setup(&dir);
    let run = dir.join("run");
    let tag = format!("wgseg-mpi-kill-{}", std::process::id());
    let args = train_args(
        &config,
        &data,
        &run,
        &["--batch-size", "2", "--steps", "100000"],
    );
    // Open MPI passes the tag on with -x (MPICH passes the whole environment).
    let pass: &[&str] = if open_mpi() {
        &["-x", "WGSEG_TEST_TAG"]
    } else {
        &[]
    };
    let mut c = mpirun_with(2, pass, &args);
    c.env("WGSEG_TEST_TAG", &tag);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a checkpoint (step 2), then kill rank 1.
    let t0 = Instant::now();
    while checkpoint::load_train_state(&RunDir::new(&run).last(), &Device::Cpu).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let victim = rank_pid(&tag, 1).expect("rank 1's process");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(120),
            "the job outlived a killed rank by 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("rank 1") || text.contains("rank: 1"),
        "{text}"
    );
    let st = checkpoint::load_train_state(&RunDir::new(&run).last(), &Device::Cpu).unwrap();
    assert!(st.step >= 2 && st.step % 2 == 0, "{}", st.step);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The pid of the process of MPI rank `rank` started with `WGSEG_TEST_TAG=tag`.
fn rank_pid(tag: &str, rank: usize) -> Option<u32> {
    let want_tag = format!("WGSEG_TEST_TAG={tag}");
    let want_rank = format!("OMPI_COMM_WORLD_RANK={rank}");
    let want_pmi = format!("PMI_RANK={rank}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<String> = env
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let is_wgseg = std::fs::read_link(e.path().join("exe"))
            .map(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("wgseg"))
            })
            .unwrap_or(false);
        if is_wgseg
            && vars.contains(&want_tag)
            && (vars.contains(&want_rank) || vars.contains(&want_pmi))
        {
            return Some(pid);
        }
    }
    None
}
