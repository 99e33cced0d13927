//! Shared test harness: the GPU under test, tolerances (all of them live here), seeded
//! inputs, and `check_op`, which runs one op three ways:
//!
//! 1. CPU reference forward + backward (f64),
//! 2. central finite differences of the CPU forward (f64) against the CPU gradient,
//! 3. GPU forward and gradients against the CPU ones.
//!
//! The scalar that is differentiated is `sum(out ⊙ w)` with random `w`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use wgseg::{backward, Device, Result, Shape, Tensor};

/// The GPU under test, shared by the tests of one binary. `None` (test skipped) when there is
/// no adapter — unless `WGSEG_REQUIRE_GPU=1`, which turns a missing adapter into a failure.
pub fn gpu() -> Option<Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    let dev = DEV
        .get_or_init(|| match Device::gpu() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("no GPU adapter: {e}");
                None
            }
        })
        .clone();
    if dev.is_none() && std::env::var("WGSEG_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("WGSEG_REQUIRE_GPU=1 but no GPU adapter was found (install mesa-vulkan-drivers)");
    }
    dev
}

/// `|got − want| ≤ rtol·|want| + atol·(1 + max|want|)` elementwise.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

/// f32 elementwise math: a few ulps.
pub const ELEMENTWISE: Tol = Tol {
    rtol: 2e-6,
    atol: 1e-6,
};
/// f32 sums of up to ~10⁵ terms (tree order differs from the f64 reference).
pub const REDUCTION: Tol = Tol {
    rtol: 1e-5,
    atol: 1e-5,
};
/// Dot products / convolutions with K up to a few thousand terms, in f32.
pub const DOT: Tol = Tol {
    rtol: 1e-4,
    atol: 1e-5,
};
/// Exact (copies, indices, comparisons).
pub const EXACT: Tol = Tol {
    rtol: 0.0,
    atol: 0.0,
};
/// Central differences in f64 against analytic gradients (h = 1e-6 relative).
pub const FINITE_DIFF: Tol = Tol {
    rtol: 1e-6,
    atol: 1e-7,
};

/// The CPU reference against an independent plain-`f64` computation: both are f64 end to
/// end, so they agree to rounding (f32 scalars on the way would show as ~1e-8 relative).
pub const F64_REFERENCE: Tol = Tol {
    rtol: 1e-12,
    atol: 1e-14,
};

pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = tol.rtol * w.abs() + tol.atol * scale;
        let err = (g - w).abs();
        if err.is_nan() || err > bound {
            panic!("{what}: element {i}: got {g}, want {w} (|err| {err:e} > bound {bound:e}; scale {scale})");
        }
    }
}

/// Seeded uniform values in `[lo, hi)`, exactly representable in f32.
pub fn uniform(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// Seeded values in `±[lo, hi)` (away from 0, for ops with a kink at 0).
pub fn away_from_zero(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let v = r.random_range(lo..hi);
            if r.random_bool(0.5) {
                v
            } else {
                -v
            }
        })
        .collect()
}

/// One input of a checked op.
#[derive(Clone)]
pub struct Input {
    pub shape: Shape,
    pub data: Vec<f32>,
    /// Differentiate with respect to it.
    pub grad: bool,
    /// A `u32` tensor (labels, indices): never differentiated.
    pub labels: bool,
}

impl Input {
    /// A differentiable f32 input.
    pub fn param(shape: impl Into<Shape>, data: Vec<f32>) -> Input {
        Input {
            shape: shape.into(),
            data,
            grad: true,
            labels: false,
        }
    }
    /// An f32 input that is held constant.
    pub fn constant(shape: impl Into<Shape>, data: Vec<f32>) -> Input {
        Input {
            shape: shape.into(),
            data,
            grad: false,
            labels: false,
        }
    }
    /// A u32 input.
    pub fn labels(shape: impl Into<Shape>, data: Vec<u32>) -> Input {
        Input {
            shape: shape.into(),
            data: data.into_iter().map(|v| v as f32).collect(),
            grad: false,
            labels: true,
        }
    }

    fn build(&self, dev: &Device, data64: Option<&[f64]>) -> Tensor {
        let t = if self.labels {
            Tensor::from_u32(
                self.data.iter().map(|&v| v as u32).collect(),
                self.shape.clone(),
                dev,
            )
        } else {
            match data64 {
                Some(d) => Tensor::from_f64(d.to_vec(), self.shape.clone(), dev),
                None => Tensor::from_vec(self.data.clone(), self.shape.clone(), dev),
            }
        }
        .expect("upload");
        if self.grad {
            t.as_param()
        } else {
            t
        }
    }
}

/// What `check_op` compares, and how tightly.
pub struct Check {
    /// GPU forward vs CPU forward.
    pub fwd: Tol,
    /// GPU gradients vs CPU gradients.
    pub bwd: Tol,
    /// Skip gradient checks (ops without gradient: argmax, comparisons).
    pub no_grad: bool,
}

impl Check {
    pub fn new(fwd: Tol, bwd: Tol) -> Check {
        Check {
            fwd,
            bwd,
            no_grad: false,
        }
    }
    pub fn forward_only(fwd: Tol) -> Check {
        Check {
            fwd,
            bwd: fwd,
            no_grad: true,
        }
    }
}

fn weights_for(out: &Tensor, dev: &Device) -> Tensor {
    let w = uniform(out.numel(), 0xC0FFEE, -1.0, 1.0);
    Tensor::from_vec(w, out.shape().clone(), dev).expect("weights")
}

/// `sum(f(inputs) ⊙ w)` as f64, evaluated on the CPU with given input values.
fn cpu_objective<F>(f: &F, inputs: &[Input], vals: &[Vec<f64>]) -> f64
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let ts: Vec<Tensor> = inputs
        .iter()
        .zip(vals)
        .map(|(i, v)| i.build(&Device::Cpu, Some(v)))
        .collect();
    let out = f(&ts).expect("cpu forward");
    let w = uniform(out.numel(), 0xC0FFEE, -1.0, 1.0);
    out.to_vec_f64()
        .expect("read")
        .iter()
        .zip(w)
        .map(|(o, w)| o * f64::from(w))
        .sum()
}

/// Runs the three checks of the module docs on `f`.
pub fn check_op<F>(name: &str, inputs: &[Input], check: Check, f: F)
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    // 1. CPU reference forward and backward.
    let cpu_in: Vec<Tensor> = inputs.iter().map(|i| i.build(&Device::Cpu, None)).collect();
    let cpu_out = f(&cpu_in).unwrap_or_else(|e| panic!("{name}: cpu forward: {e}"));
    let mut cpu_grads = Vec::new();
    if !check.no_grad {
        let loss = cpu_out
            .mul(&weights_for(&cpu_out, &Device::Cpu))
            .and_then(|t| t.sum())
            .expect("loss");
        let grads = backward(&loss).unwrap_or_else(|e| panic!("{name}: cpu backward: {e}"));
        for (i, t) in inputs.iter().zip(&cpu_in) {
            if i.grad {
                let g = grads
                    .get(t)
                    .unwrap_or_else(|| panic!("{name}: no gradient for an input"));
                cpu_grads.push(g.to_vec_f64().expect("read"));
            }
        }
        // 2. Finite differences on the CPU, in f64.
        let base: Vec<Vec<f64>> = inputs
            .iter()
            .map(|i| i.data.iter().map(|&v| f64::from(v)).collect())
            .collect();
        let mut gi = 0;
        for (k, inp) in inputs.iter().enumerate() {
            if !inp.grad {
                continue;
            }
            let analytic = &cpu_grads[gi];
            gi += 1;
            let n = inp.data.len();
            // Full Jacobian-vector checks for small inputs, three random directions otherwise.
            let directions: Vec<Vec<f64>> = if n <= 48 {
                (0..n)
                    .map(|j| (0..n).map(|m| f64::from(u8::from(m == j))).collect())
                    .collect()
            } else {
                (0..3)
                    .map(|s| {
                        uniform(n, 77 + s, -1.0, 1.0)
                            .into_iter()
                            .map(f64::from)
                            .collect()
                    })
                    .collect()
            };
            let mut fd = Vec::new();
            let mut an = Vec::new();
            for d in &directions {
                let scale = 1.0 + base[k].iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let h = 1e-6 * scale;
                let shifted = |sgn: f64| {
                    let mut v = base.clone();
                    v[k].iter_mut()
                        .zip(d)
                        .for_each(|(x, dx)| *x += sgn * h * dx);
                    cpu_objective(&f, inputs, &v)
                };
                fd.push((shifted(1.0) - shifted(-1.0)) / (2.0 * h));
                an.push(analytic.iter().zip(d).map(|(g, dx)| g * dx).sum());
            }
            assert_close(
                &format!("{name}: finite differences of input {k}"),
                &an,
                &fd,
                FINITE_DIFF,
            );
        }
    }
    // 3. GPU against the CPU, with the texture GEMM (the default where the adapter allows
    // it) and with it turned off (the storage-buffer matmul and conv kernels).
    if let Some(dev) = gpu() {
        compare_with_cpu(name, inputs, &check, &dev, &cpu_out, &cpu_grads, &f);
    }
    if let Some(dev) = buffer_gpu() {
        let name = format!("{name} (texture GEMM off)");
        compare_with_cpu(&name, inputs, &check, &dev, &cpu_out, &cpu_grads, &f);
    }
}

/// A second GPU context with the texture GEMM turned off and the kernel variants chosen for
/// GPUs, so that every `check_op` also covers the storage-buffer kernels that other adapters
/// (and oversized operands) use and, on lavapipe, the GPU variants (batch-norm's tree
/// finish).
pub fn buffer_gpu() -> Option<Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| {
        gpu()?;
        let opts = wgseg::gpu::GpuOptions {
            no_textures: true,
            gpu_variants: true,
            ..Default::default()
        };
        Some(Device::Gpu(
            wgseg::gpu::GpuContext::new(&opts).expect("buffer-kernel context"),
        ))
    })
    .clone()
}

/// Runs `f` on `dev` and compares the output and the gradients with the CPU reference
/// (`cpu_grads` in the order of the differentiable inputs).
fn compare_with_cpu<F>(
    name: &str,
    inputs: &[Input],
    check: &Check,
    dev: &Device,
    cpu_out: &Tensor,
    cpu_grads: &[Vec<f64>],
    f: &F,
) where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let gpu_in: Vec<Tensor> = inputs.iter().map(|i| i.build(dev, None)).collect();
    let gpu_out = f(&gpu_in).unwrap_or_else(|e| panic!("{name}: gpu forward: {e}"));
    assert_eq!(gpu_out.shape(), cpu_out.shape(), "{name}: output shape");
    assert_eq!(gpu_out.dtype(), cpu_out.dtype(), "{name}: output dtype");
    // The reference is computed from f32 inputs; round it to f32 like the GPU's output.
    let want: Vec<f64> = cpu_out
        .to_vec_f64()
        .expect("read")
        .iter()
        .map(|&v| f64::from(v as f32))
        .collect();
    assert_close(
        &format!("{name}: gpu forward"),
        &gpu_out.to_vec_f64().expect("read"),
        &want,
        check.fwd,
    );
    if check.no_grad {
        return;
    }
    let loss = gpu_out
        .mul(&weights_for(&gpu_out, dev))
        .and_then(|t| t.sum())
        .expect("loss");
    let grads = backward(&loss).unwrap_or_else(|e| panic!("{name}: gpu backward: {e}"));
    let mut gi = 0;
    for (k, (i, t)) in inputs.iter().zip(&gpu_in).enumerate() {
        if i.grad {
            let g = grads
                .get(t)
                .unwrap_or_else(|| panic!("{name}: no gpu gradient for input {k}"));
            assert_close(
                &format!("{name}: gpu gradient of input {k}"),
                &g.to_vec_f64().expect("read"),
                &cpu_grads[gi],
                check.bwd,
            );
            gi += 1;
        }
    }
}

/// A second GPU context whose grid limit is injected as 4 workgroups per dimension, so that
/// dispatches of 5..=16 workgroups run through the folded 2-D path and 17..=64 through 3-D.
pub fn folded_gpu() -> Option<Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| {
        gpu()?;
        let opts = wgseg::gpu::GpuOptions {
            max_workgroups_per_dim: Some(4),
            ..Default::default()
        };
        Some(Device::Gpu(
            wgseg::gpu::GpuContext::new(&opts).expect("folded context"),
        ))
    })
    .clone()
}

/// `f` on the folded-grid device against the CPU reference (forward and gradients).
pub fn check_folded<F>(name: &str, inputs: &[Input], check: Check, f: F)
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let Some(dev) = folded_gpu() else { return };
    let folded_before = wgseg::gpu::folded_dispatches_on_this_thread();
    let cpu_in: Vec<Tensor> = inputs.iter().map(|i| i.build(&Device::Cpu, None)).collect();
    let cpu_out = f(&cpu_in).unwrap_or_else(|e| panic!("{name}: cpu forward: {e}"));
    let mut cpu_grads = Vec::new();
    if !check.no_grad {
        let loss = cpu_out
            .mul(&weights_for(&cpu_out, &Device::Cpu))
            .and_then(|t| t.sum())
            .expect("loss");
        let grads = backward(&loss).expect("cpu backward");
        for (i, t) in inputs.iter().zip(&cpu_in) {
            if i.grad {
                cpu_grads.push(
                    grads
                        .get(t)
                        .expect("cpu gradient")
                        .to_vec_f64()
                        .expect("read"),
                );
            }
        }
    }
    compare_with_cpu(name, inputs, &check, &dev, &cpu_out, &cpu_grads, &f);
    assert!(
        wgseg::gpu::folded_dispatches_on_this_thread() > folded_before,
        "{name}: no dispatch needed a folded grid; use a larger shape"
    );
}

/// Element counts that hit kernel edges: 1, odd primes, one past a 256-wide workgroup, many
/// workgroups.
pub const EDGE_SIZES: &[usize] = &[1, 7, 31, 257, 1021, 4099];

/// A seeded shuffle of `n` evenly spaced values in `[lo, hi]`: no two values closer than
/// `(hi − lo)/n`, so max/min/argmax have no near-ties for finite differences to trip on.
pub fn distinct(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    use rand::seq::SliceRandom;
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let step = (hi - lo) / n.max(1) as f32;
    let mut v: Vec<f32> = (0..n).map(|i| lo + step * i as f32).collect();
    v.shuffle(&mut r);
    v
}

/// A GPU loss value against an independent `f64` evaluation of its documented formula:
/// 1e-5 relative. f32 logits are exact in both; what differs is f32
/// arithmetic in the per-pixel log-sum-exp (~1e-7 relative) and the f32 sum of at most a
/// few thousand per-pixel terms (≤ ~1e-6 relative), well inside it.
pub const FORMULA_LOSS: Tol = Tol {
    rtol: 1e-5,
    atol: 0.0,
};
/// A value quoted to two decimals in a paper's table (the paper's own rounding).
pub const TWO_DECIMALS: Tol = Tol {
    rtol: 0.0,
    atol: 0.005,
};

/// A temporary directory removed on drop; unique per test binary, test (`name`) and process.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "wgseg-{}-{}-{name}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).ok();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `loss` of every training line of a run directory's `metrics.jsonl`, by step.
pub fn logged_losses(run: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((v["step"].as_u64()?, v.get("loss")?.as_f64()?))
        })
        .collect()
}

/// The first 12 training and 5 validation images of the built-in data as a folder dataset
/// without unlabelled pixels (they become class 0), so that every replica's loss averages
/// over as many pixels as every other's: the mean of their losses is then the loss of the
/// global batch.
pub fn data_without_ignore(root: &std::path::Path) -> PathBuf {
    let data = root.join("data");
    for (split, n) in [("train", 12), ("val", 5)] {
        let ds = wgseg::data::open(None, split, 1.0, 0).unwrap();
        let info = ds.info();
        let mut toml = format!(
            "name = \"parallel\"\nignore_index = {}\n",
            info.ignore_index
        );
        for c in &info.classes {
            toml += &format!(
                "[[classes]]\nname = \"{}\"\ncolor = [{}, {}, {}]\n",
                c.name, c.color[0], c.color[1], c.color[2]
            );
        }
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("dataset.toml"), toml).unwrap();
        let (images, labels) = (
            data.join(split).join("images"),
            data.join(split).join("labels"),
        );
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&labels).unwrap();
        for i in 0..n {
            let s = ds.load(i).unwrap();
            let label: Vec<u8> = s
                .label
                .iter()
                .map(|&l| if l == info.ignore_index { 0 } else { l })
                .collect();
            let name = format!("img{i}.png");
            wgseg::data::save_png_rgb(&images.join(&name), s.width, s.height, &s.image).unwrap();
            wgseg::data::save_png_gray(&labels.join(&name), s.width, s.height, &label).unwrap();
        }
    }
    data
}

/// Two runs that took the same `steps` steps: the same logged losses step by step (to f32
/// summation order: 1e-5 relative) and the same tensors `w1`, `w2` (`(name, values)` of
/// their checkpoints; 1e-4 relative), as data-parallel runs against one process with the
/// same global batch must be.
pub fn assert_same_steps(
    (one, two): (&std::path::Path, &std::path::Path),
    w1: &[(String, Vec<f64>)],
    w2: &[(String, Vec<f64>)],
    steps: usize,
) {
    let (l1, l2) = (logged_losses(one), logged_losses(two));
    assert_eq!((l1.len(), l2.len()), (steps, steps));
    for ((s1, v1), (s2, v2)) in l1.iter().zip(&l2) {
        assert_eq!(s1, s2);
        assert!(
            (v1 - v2).abs() <= 1e-5 * v1.abs(),
            "step {s1}: loss {v1} vs {v2}"
        );
    }
    assert_eq!(w1.len(), w2.len());
    for ((n1, v1), (n2, v2)) in w1.iter().zip(w2) {
        assert_eq!(n1, n2);
        assert_close(
            n1,
            v2,
            v1,
            Tol {
                rtol: 1e-4,
                atol: 1e-6,
            },
        );
    }
}

/// A run config with default `[train]`, `[data]`, `[loss]` and `[tmb]` tables and a micro
/// DeepLabV3+ `[model]` table: the table a config requires, which the tests' toy model
/// builders ignore.
pub fn toy_run_config() -> wgseg::train::RunConfig {
    let model: wgseg::model::ModelConfig = wgseg::model::DeepLabConfig {
        stem: 4,
        widths: [4, 4, 4, 4],
        depths: [1, 1, 1, 1],
        aspp: 4,
        low: 4,
        decoder: 4,
        output_stride: 16,
        aspp_rates: None,
        separable_aspp: false,
        block: Default::default(),
    }
    .into();
    wgseg::train::RunConfig {
        model,
        train: Default::default(),
        data: Default::default(),
        loss: Default::default(),
        tmb: Default::default(),
    }
}
