//! The tiled pairwise AUC loss, for any [`Surrogate`] (formulas in the parent module's docs
//! and in shaders/auc_pairwise.wgsl).
//!
//! Host side: the labels are read (on a GPU: **read back**, one readback per call; this is
//! the non-default path, the closed form reads nothing back), every class is subsampled to
//! at most `cap` pixels ([`pairwise_subsample`]) and a plan is uploaded: the present
//! classes, the class segments of the sorted pixel list, tiles of ≤ [`PAIR_WG`] entries of
//! one class, the pixel list. Device side: `auc_pair_forward` computes the loss partials
//! and `∂L/∂x` of every (sampled pixel, present class) in one pass (gathers, no atomics) and
//! keeps the latter compact (2 floats per (tile slot, class)); the backward zeroes `∂L/∂x`
//! and scatters `g·` the saved values (`auc_pair_scatter`).
//!
//! Cost: `2·Σ_{i≠j} n_i n_j` surrogate evaluations, `n_i ≤ cap`; memory
//! `O(K·(Σ_c ⌈n_c/PAIR_WG⌉)·PAIR_WG)` floats besides `∂L/∂x`.

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use crate::autograd::{record_custom, CustomOp};
use crate::error::Result;
use crate::gpu::{GpuBuf, Kernel, Shader};
use crate::ops::reduce::gpu_sum_into;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

use super::{sigmoid, Layout, Surrogate};

const OP: &str = "auc_loss";

/// Tile and workgroup size of shaders/auc_pairwise.wgsl (its constant `PWG`): tiles hold
/// entries of one class, so a small tile wastes fewer lanes on small (tail) classes.
pub(crate) const PAIR_WG: usize = 64;

/// Mirrors `PairParams` of shaders/auc_pairwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PairParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) tiles: u32,
    pub(crate) present: u32,
    pub(crate) entries: u32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
    pub(crate) margin: f32,
    pub(crate) scale: f32,
    pub(crate) _p2: u32,
    pub(crate) _p3: u32,
}

/// The pairwise path's options, resolved by the caller.
pub(crate) struct PairOptions {
    pub(crate) ignore_index: u32,
    pub(crate) margin: f64,
    pub(crate) lambda: f64,
    pub(crate) surrogate: Surrogate,
    pub(crate) cap: usize,
    pub(crate) seed: u64,
}

/// What the pairwise backward needs: the [`CustomOp`] recorded on the tape. CPU: `grad` is the dense
/// `∂(λ·L_auc)/∂x`; GPU: the compact per-slot gradients with the `plan` and its `params`
/// (no plan when `K < 2`: the gradient is zero).
#[derive(Clone, Debug)]
pub struct AucPairSaved {
    pub(crate) grad: Tensor,
    pub(crate) plan: Option<(Tensor, PairGeom)>,
}

/// The sizes of a GPU plan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairGeom {
    present: usize,
    tiles: usize,
    entries: usize,
    margin: f32,
    scale: f32,
}

/// Per-class pixel lists of the pairwise path: for every class `c < classes`, the indices
/// `v` (into the flattened `[N, H, W]` labels) of its valid pixels, in increasing order;
/// a class with more than `cap` pixels keeps `cap` of them, drawn uniformly without
/// replacement (a partial Fisher–Yates shuffle driven by one `StdRng` seeded with `seed`,
/// classes in increasing order). The same labels, cap and seed give the same lists.
pub fn pairwise_subsample(
    labels: &[u32],
    classes: usize,
    ignore_index: u32,
    cap: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut lists = vec![Vec::new(); classes];
    for (v, &y) in labels.iter().enumerate() {
        if y != ignore_index && (y as usize) < classes {
            lists[y as usize].push(v);
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for l in &mut lists {
        if l.len() > cap {
            for k in 0..cap {
                let j = rng.random_range(k..l.len());
                l.swap(k, j);
            }
            l.truncate(cap);
            l.sort_unstable();
        }
    }
    lists
}

/// `λ/(K(K−1))` and the present classes of the lists.
fn present(lists: &[Vec<usize>], lambda: f64) -> (Vec<usize>, f64) {
    let pres: Vec<usize> = (0..lists.len()).filter(|&c| !lists[c].is_empty()).collect();
    let k = pres.len() as f64;
    let scale = if pres.len() >= 2 {
        lambda / (k * (k - 1.0))
    } else {
        0.0
    };
    (pres, scale)
}

/// The literal double loop (f64): `(λ·L_auc, dense ∂/∂x)`.
fn cpu_forward(x: &[f64], lists: &[Vec<usize>], lay: Layout, o: &PairOptions) -> (f64, Vec<f64>) {
    let (pres, scale) = present(lists, o.lambda);
    let mut ds = vec![0.0; x.len()];
    let mut loss = 0.0;
    if pres.len() < 2 {
        return (0.0, ds);
    }
    for &i in &pres {
        for &j in &pres {
            if j == i {
                continue;
            }
            let w = scale / (lists[i].len() * lists[j].len()) as f64;
            for &p in &lists[i] {
                let sp = sigmoid(x[lay.at(p, i)]);
                for &q in &lists[j] {
                    let sq = sigmoid(x[lay.at(q, i)]);
                    let (l, dl) = o.surrogate.eval(sp - sq, o.margin);
                    loss += w * l;
                    ds[lay.at(p, i)] += w * dl;
                    ds[lay.at(q, i)] -= w * dl;
                }
            }
        }
    }
    let grad = ds
        .iter()
        .zip(x)
        .map(|(d, &xv)| {
            let s = sigmoid(xv);
            d * s * (1.0 - s)
        })
        .collect();
    (loss, grad)
}

/// The plan (layout in shaders/auc_pairwise.wgsl) and its sizes.
fn build_plan(lists: &[Vec<usize>], pres: &[usize]) -> Result<(Vec<u32>, usize, usize)> {
    let c = lists.len();
    let mut off = Vec::with_capacity(c + 1);
    let mut idx = Vec::new();
    let mut tcls = Vec::new();
    let mut tstart = Vec::new();
    for (k, l) in lists.iter().enumerate() {
        let base = idx.len();
        off.push(base);
        for t in (0..l.len()).step_by(PAIR_WG) {
            tcls.push(k);
            tstart.push(base + t);
        }
        idx.extend_from_slice(l);
    }
    off.push(idx.len());
    let (tiles, entries) = (tcls.len(), idx.len());
    let plan: Vec<usize> = pres
        .iter()
        .chain(&off)
        .chain(&tcls)
        .chain(&tstart)
        .chain(&idx)
        .copied()
        .collect();
    let plan = plan
        .into_iter()
        .map(|v| crate::ops::softmax::u32_elements(OP, v))
        .collect::<Result<Vec<u32>>>()?;
    Ok((plan, tiles, entries))
}

fn pair_params(lay: Layout, geom: &PairGeom) -> PairParams {
    PairParams {
        n: lay.n as u32,
        c: lay.c as u32,
        inner: lay.inner as u32,
        tiles: geom.tiles as u32,
        present: geom.present as u32,
        entries: geom.entries as u32,
        _p0: 0,
        _p1: 0,
        margin: geom.margin,
        scale: geom.scale,
        _p2: 0,
        _p3: 0,
    }
}

fn kernel(entry: &'static str, surrogate: Surrogate) -> Kernel {
    Kernel::new(Shader::AucPairwise, entry).with("SURR", surrogate.code())
}

/// Slots (tile-wide gradient entries) of a plan: one per (present class, tile, lane).
fn slots(geom: &PairGeom) -> usize {
    geom.present * geom.tiles * PAIR_WG
}

/// GPU forward: `(loss, saved)`.
fn gpu_forward(
    x: &GpuBuf,
    dev_labels: &Tensor,
    lay: Layout,
    o: &PairOptions,
) -> Result<(GpuBuf, AucPairSaved)> {
    let ctx = x.context();
    let y = dev_labels.to_vec_u32()?;
    let lists = pairwise_subsample(&y, lay.c, o.ignore_index, o.cap, o.seed);
    let (pres, scale) = present(&lists, o.lambda);
    let loss = ctx.alloc_storage(1)?;
    if pres.len() < 2 {
        ctx.clear(&loss)?;
        let none = Tensor::from_storage(
            Storage::Gpu(ctx.alloc_storage(1)?),
            Shape(vec![1]),
            DType::F32,
        );
        return Ok((
            loss,
            AucPairSaved {
                grad: none,
                plan: None,
            },
        ));
    }
    let (plan, tiles, entries) = build_plan(&lists, &pres)?;
    let geom = PairGeom {
        present: pres.len(),
        tiles,
        entries,
        margin: o.margin as f32,
        scale: scale as f32,
    };
    let len = plan.len();
    let plan = Tensor::from_u32(plan, Shape(vec![len]), &dev_labels.device())?;
    let n_slots = slots(&geom);
    crate::ops::softmax::u32_elements(OP, 2 * n_slots)?;
    let out = ctx.alloc_storage(2 * n_slots)?;
    ctx.launch(
        &kernel("auc_pair_forward", o.surrogate),
        &pair_params(lay, &geom),
        &[x, plan.gpu_buf(OP)?],
        &[&out],
        (geom.present * geom.tiles) as u64,
    )?;
    gpu_sum_into(&out, n_slots, (1, n_slots, 1), &loss)?;
    let grad = Tensor::from_storage(Storage::Gpu(out), Shape(vec![2 * n_slots]), DType::F32);
    Ok((
        loss,
        AucPairSaved {
            grad,
            plan: Some((plan, geom)),
        },
    ))
}

/// `λ·L_auc` by the pairwise path (shapes checked by the caller).
pub(crate) fn forward(
    logits: &Tensor,
    labels: &Tensor,
    lay: Layout,
    o: &PairOptions,
) -> Result<Tensor> {
    let (storage, saved) = match logits.storage() {
        Storage::Cpu(x) => {
            let y: Vec<u32> = labels.cpu_data(OP)?.iter().map(|&v| v as u32).collect();
            let lists = pairwise_subsample(&y, lay.c, o.ignore_index, o.cap, o.seed);
            let (loss, grad) = cpu_forward(x, &lists, lay, o);
            let grad = Tensor::from_storage(Storage::Cpu(grad), logits.shape().clone(), DType::F32);
            (Storage::Cpu(vec![loss]), AucPairSaved { grad, plan: None })
        }
        Storage::Gpu(x) => {
            let (loss, saved) = gpu_forward(x, labels, lay, o)?;
            (Storage::Gpu(loss), saved)
        }
    };
    let loss = Tensor::from_storage(storage, Shape(vec![]), DType::F32);
    record_custom(&loss, &[logits], Arc::new(saved))
}

impl CustomOp for AucPairSaved {
    fn name(&self) -> &'static str {
        "auc_loss (pairwise)"
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(backward(&inputs[0], self, g)?)])
    }
}

/// Backward of the pairwise path: `g · ∂(λ·L_auc)/∂x`.
pub(crate) fn backward(logits: &Tensor, saved: &AucPairSaved, g: &Tensor) -> Result<Tensor> {
    let lay = Layout::of(logits.dims());
    let storage = match logits.storage() {
        Storage::Cpu(_) => {
            let g = g.cpu_data(OP)?[0];
            Storage::Cpu(saved.grad.cpu_data(OP)?.iter().map(|v| g * v).collect())
        }
        Storage::Gpu(x) => {
            let ctx = x.context();
            let dx = ctx.alloc_storage(logits.numel())?;
            ctx.clear(&dx)?;
            if let Some((plan, geom)) = &saved.plan {
                ctx.launch(
                    &kernel("auc_pair_scatter", Surrogate::Square),
                    &pair_params(lay, geom),
                    &[
                        x,
                        plan.gpu_buf(OP)?,
                        saved.grad.gpu_buf(OP)?,
                        g.gpu_buf(OP)?,
                    ],
                    &[&dx],
                    (geom.present * geom.tiles) as u64,
                )?;
            }
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        logits.shape().clone(),
        DType::F32,
    ))
}
