//! The closed form of the square-surrogate AUC loss (formulas in the parent module's docs
//! and in shaders/auc.wgsl).
//!
//! GPU, per forward: `auc_count` (u32 atomic class counts), `auc_sums` (four per-class
//! partial sums over a fixed number of pixel chunks), a `reduce_lanes` sum over the chunks,
//! `auc_finish` (the loss and a per-class backward table). Per backward: `auc_backward`
//! (one pass over the logits). When H·W is a multiple of 4 the sums and the backward run
//! on quads of pixels (`auc_sums4`, `auc_backward4` in shaders/auc_quad.wgsl). In the fused
//! `aucseg` (the parent module's `AucSegOp`), `auc_finish` and the backward add onto
//! cross-entropy's (`ce`'s) loss and gradient instead of writing their own (override `ACC`). Nothing is
//! read back. Extra device memory per call: the counts (`C`), the partials
//! (`4·C·AUC_CHUNKS`), the reduction's intermediate (`16·C`), the sums and the table
//! (`4·C` each) — a function of `C` only ([`closed_form_scratch_floats`]).
//!
//! Cost on lavapipe at (4, 19, 256, 256), forward + backward + synchronize, 20 interleaved
//! runs on a 2-core machine shared with other builds (load ≈ 4.5), median (min): closed-form
//! AUC 27–34 ms (14–25 ms), cross-entropy 20–24 ms (10–17 ms). The per-kernel profile
//! (`GpuContext::set_profiling`): `auc_sums4` 8–12 ms, `auc_backward4` 9–21 ms,
//! `auc_count` ≈ 0.9 ms, the rest < 0.3 ms. Before the quad kernels (one pixel at a time,
//! 4 channels per invocation) `auc_sums` took 17–23 ms and `auc_backward` 27–46 ms; with
//! one channel per invocation and 256 chunks, 33 ms and 40 ms.

use crate::autograd::CustomOp;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::reduce::{gpu_sum_into, LANE_LEN};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

use super::{sigmoid, Layout};

const OP: &str = "auc_loss";

/// Pixel chunks of `auc_sums`: its partials take `4·C·AUC_CHUNKS` floats whatever the
/// image size (the fixed extra memory: 304 KiB at C = 19), and it runs
/// `⌈C/4⌉·AUC_CHUNKS` invocations (5120 at C = 19). At (4, 19, 256, 256) on lavapipe
/// (`auc_sums`, one channel per invocation, per-kernel profile) 256 chunks took 29–31 ms
/// and 1024 chunks 20–23 ms: more invocations spread better over the driver's threads.
pub(crate) const AUC_CHUNKS: usize = 1024;

/// Pixels per `auc_count` and `auc_backward` invocation (the `RUN` override; `RUN / 4` quads
/// in `auc_backward4`): long enough to amortise an invocation's index arithmetic and, in
/// `auc_count`, to merge runs of equal labels into one atomic add. Not tuned.
const RUN: usize = 64;

/// Mirrors `Params` of shaders/auc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AucParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) ignore_index: u32,
    pub(crate) chunks: u32,
    pub(crate) chunk_len: u32,
    pub(crate) margin: f32,
    pub(crate) lambda: f32,
}

/// What the closed form's backward needs (the [`CustomOp`] recorded on the tape): the labels, the class
/// counts `n_c` (`[C]`; `U32` on a GPU) and the per-class table `(A, B, C, D)` (`[4C]`,
/// see shaders/auc.wgsl), all on the logits' device.
#[derive(Clone, Debug)]
pub struct AucClosedSaved {
    pub(crate) labels: Tensor,
    pub(crate) ignore_index: u32,
    pub(crate) margin: f64,
    pub(crate) counts: Tensor,
    pub(crate) table: Tensor,
}

/// Floats of device scratch the GPU closed form allocates for `c` classes (besides its
/// outputs: the loss and, in the backward, `∂L/∂x`): counts, partials, the chunk
/// reduction's intermediate (`⌈AUC_CHUNKS/LANE_LEN⌉` lanes per sum), sums and table.
/// Independent of the pixel count. (The pool rounds each buffer up to its size class.)
pub fn closed_form_scratch_floats(c: usize) -> usize {
    c + 4 * c * AUC_CHUNKS + 4 * c * AUC_CHUNKS.div_ceil(LANE_LEN) + 4 * c + 4 * c
}

fn params(lay: Layout, ignore_index: u32, margin: f64, lambda: f64) -> AucParams {
    AucParams {
        n: lay.n as u32,
        c: lay.c as u32,
        inner: lay.inner as u32,
        ignore_index,
        chunks: AUC_CHUNKS as u32,
        // In quads for the vec4 kernels.
        chunk_len: if lay.inner % 4 == 0 {
            (lay.pixels() / 4).div_ceil(AUC_CHUNKS) as u32
        } else {
            lay.pixels().div_ceil(AUC_CHUNKS) as u32
        },
        margin: margin as f32,
        lambda: lambda as f32,
    }
}

/// `auc_sums4` and `auc_backward4` live in shaders/auc_quad.wgsl, the rest in auc.wgsl.
fn kernel(entry: &'static str) -> Kernel {
    let shader = if entry.ends_with('4') {
        Shader::AucQuad
    } else {
        Shader::Auc
    };
    Kernel::new(shader, entry)
        .with("WG", ELEMENTWISE_WG)
        .with("RUN", RUN as u32)
}

fn buf(t: &Tensor) -> Result<&GpuBuf> {
    t.gpu_buf(OP)
}

/// CPU reference (f64): `(λ·L_auc, counts, table)`.
fn cpu_forward(
    x: &[f64],
    y: &[f64],
    lay: Layout,
    ignore_index: u32,
    margin: f64,
    lambda: f64,
) -> (f64, Vec<f64>, Vec<f64>) {
    let c = lay.c;
    let cls = |v: usize| lay.class(y[v] as u32, ignore_index);
    let mut counts = vec![0.0; c];
    for v in 0..lay.pixels() {
        if let Some(k) = cls(v) {
            counts[k] += 1.0;
        }
    }
    // sums[k][i]: SA, QA, NB, R.
    let mut sums = vec![[0.0f64; 4]; c];
    for v in 0..lay.pixels() {
        let Some(yv) = cls(v) else { continue };
        for (i, si) in sums.iter_mut().enumerate() {
            let s = sigmoid(x[lay.at(v, i)]);
            if yv == i {
                let a = s - margin;
                si[0] += a;
                si[1] += a * a;
            } else {
                si[2] += s / counts[yv];
                si[3] += s * s / counts[yv];
            }
        }
    }
    let k = counts.iter().filter(|&&n| n > 0.0).count();
    let mut table = vec![0.0; 4 * c];
    let mut loss = 0.0;
    if k >= 2 {
        let kf = k as f64;
        let kk = kf * (kf - 1.0);
        for i in 0..c {
            let ni = counts[i];
            if ni == 0.0 {
                continue;
            }
            let [sa, qa, nb, rr] = sums[i];
            loss += 0.5 * ((kf - 1.0) / ni * qa + rr) - sa * nb / ni;
            table[4 * i] = lambda / (ni * kf);
            table[4 * i + 1] = lambda * nb / (ni * kk);
            table[4 * i + 2] = sa / ni;
            table[4 * i + 3] = lambda / kk;
        }
        loss *= lambda / kk;
    }
    (loss, counts, table)
}

/// GPU forward: `(loss, counts, table)`, all on the device. With `acc`, the loss is added
/// to the value `acc` holds and `acc` is returned as the loss.
fn gpu_forward(
    x: &GpuBuf,
    y: &GpuBuf,
    lay: Layout,
    pr: &AucParams,
    acc: Option<GpuBuf>,
) -> Result<(GpuBuf, GpuBuf, GpuBuf)> {
    let ctx = x.context();
    let c = lay.c;
    let counts = ctx.alloc_storage(c)?;
    ctx.clear(&counts)?;
    ctx.launch(
        &kernel("auc_count"),
        pr,
        &[x, y],
        &[&counts],
        groups_for(lay.pixels().div_ceil(RUN), ELEMENTWISE_WG),
    )?;
    let part = ctx.alloc_storage(4 * c * AUC_CHUNKS)?;
    let entry = if lay.inner % 4 == 0 {
        "auc_sums4"
    } else {
        "auc_sums"
    };
    ctx.launch(
        &kernel(entry),
        pr,
        &[x, y, &counts],
        &[&part],
        groups_for(c.div_ceil(4) * AUC_CHUNKS, ELEMENTWISE_WG),
    )?;
    let sums = ctx.alloc_storage(4 * c)?;
    gpu_sum_into(&part, 0, (4 * c, AUC_CHUNKS, 1), &sums)?;
    drop(part);
    let accumulate = acc.is_some();
    let loss = match acc {
        Some(b) => b,
        None => ctx.alloc_storage(1)?,
    };
    let table = ctx.alloc_storage(4 * c)?;
    ctx.launch(
        &kernel("auc_finish").with("ACC", u32::from(accumulate)),
        pr,
        &[x, y, &counts, &sums],
        &[&loss, &table],
        1,
    )?;
    Ok((loss, counts, table))
}

/// `λ·L_auc` by the closed form (shapes checked by the caller), without the tape: the
/// loss's storage (plus the value `acc` holds, in `acc`'s own storage, when given: the fused
/// `aucseg` adds it to cross-entropy's loss) and what the backward needs (the caller records
/// it, alone or inside `aucseg`'s op).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    logits: &Tensor,
    labels: &Tensor,
    lay: Layout,
    ignore_index: u32,
    margin: f64,
    lambda: f64,
    acc: Option<Storage>,
) -> Result<(Storage, AucClosedSaved)> {
    let c = lay.c;
    let (storage, counts, table) = match logits.storage() {
        Storage::Cpu(x) => {
            let (loss, counts, table) =
                cpu_forward(x, labels.cpu_data(OP)?, lay, ignore_index, margin, lambda);
            let base = match acc {
                Some(Storage::Cpu(v)) => v[0],
                Some(Storage::Gpu(_)) => {
                    return Err(Error::shape(
                        OP,
                        "the accumulator is on another device than the logits",
                    ))
                }
                None => 0.0,
            };
            (
                Storage::Cpu(vec![base + loss]),
                Tensor::from_storage(Storage::Cpu(counts), Shape(vec![c]), DType::F32),
                Tensor::from_storage(Storage::Cpu(table), Shape(vec![4 * c]), DType::F32),
            )
        }
        Storage::Gpu(x) => {
            let pr = params(lay, ignore_index, margin, lambda);
            let acc = match acc {
                Some(Storage::Gpu(b)) => Some(b),
                Some(Storage::Cpu(_)) => {
                    return Err(Error::shape(
                        OP,
                        "the accumulator is on another device than the logits",
                    ))
                }
                None => None,
            };
            let (loss, counts, table) = gpu_forward(x, buf(labels)?, lay, &pr, acc)?;
            (
                Storage::Gpu(loss),
                Tensor::from_storage(Storage::Gpu(counts), Shape(vec![c]), DType::U32),
                Tensor::from_storage(Storage::Gpu(table), Shape(vec![4 * c]), DType::F32),
            )
        }
    };
    let saved = AucClosedSaved {
        labels: labels.detach(),
        ignore_index,
        margin,
        counts,
        table,
    };
    Ok((storage, saved))
}

impl CustomOp for AucClosedSaved {
    fn name(&self) -> &'static str {
        "auc_loss (closed form)"
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

/// Backward of the closed form: `g · ∂(λ·L_auc)/∂x` (formula in shaders/auc.wgsl).
pub(crate) fn backward(logits: &Tensor, saved: &AucClosedSaved, g: &Tensor) -> Result<Tensor> {
    backward_into(logits, saved, g, None)
}

/// [`backward`], added in place to `acc` (a gradient of the logits' shape that nothing else
/// holds: the fused `aucseg` passes cross-entropy's) when given, which is then returned.
pub(crate) fn backward_into(
    logits: &Tensor,
    saved: &AucClosedSaved,
    g: &Tensor,
    acc: Option<Tensor>,
) -> Result<Tensor> {
    let lay = Layout::of(logits.dims());
    if let Some(a) = &acc {
        if a.dims() != logits.dims() {
            return Err(Error::shape(
                OP,
                format!("accumulator {} for logits {}", a.shape(), logits.shape()),
            ));
        }
    }
    let storage = match logits.storage() {
        Storage::Cpu(x) => {
            let y = saved.labels.cpu_data(OP)?;
            let counts = saved.counts.cpu_data(OP)?;
            let tab = saved.table.cpu_data(OP)?;
            let g = g.cpu_data(OP)?[0];
            let mut dx = match &acc {
                Some(a) => a.cpu_data(OP)?.to_vec(),
                None => vec![0.0; x.len()],
            };
            for (v, &yf) in y.iter().enumerate() {
                let Some(yv) = lay.class(yf as u32, saved.ignore_index) else {
                    continue;
                };
                for i in 0..lay.c {
                    let at = lay.at(v, i);
                    let s = sigmoid(x[at]);
                    let t = &tab[4 * i..4 * i + 4];
                    let ds = if yv == i {
                        t[0] * (s - saved.margin) - t[1]
                    } else {
                        t[3] * (s - t[2]) / counts[yv]
                    };
                    dx[at] += g * s * (1.0 - s) * ds;
                }
            }
            Storage::Cpu(dx)
        }
        Storage::Gpu(x) => {
            let ctx = x.context();
            if let Some(a) = acc {
                launch_backward(x, saved, g, lay, a.gpu_buf(OP)?, true)?;
                return Ok(a);
            }
            let dx = ctx.alloc_storage(logits.numel())?;
            launch_backward(x, saved, g, lay, &dx, false)?;
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        logits.shape().clone(),
        DType::F32,
    ))
}

/// `auc_backward(4)` writing (or, with `accumulate`, adding) the gradient into `dx`.
fn launch_backward(
    x: &GpuBuf,
    saved: &AucClosedSaved,
    g: &Tensor,
    lay: Layout,
    dx: &GpuBuf,
    accumulate: bool,
) -> Result<()> {
    // Quads of 4 pixels when no quad spans two images.
    let (entry, runs) = if lay.inner % 4 == 0 {
        ("auc_backward4", (lay.pixels() / 4).div_ceil(RUN / 4))
    } else {
        ("auc_backward", lay.pixels().div_ceil(RUN))
    };
    x.context().launch(
        &kernel(entry).with("ACC", u32::from(accumulate)),
        &params(lay, saved.ignore_index, saved.margin, 1.0),
        &[
            x,
            buf(&saved.labels)?,
            buf(&saved.counts)?,
            buf(&saved.table)?,
            buf(g)?,
        ],
        &[dx],
        groups_for(lay.c.div_ceil(4) * runs, ELEMENTWISE_WG),
    )
}
