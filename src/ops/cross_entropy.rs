//! Fused softmax cross-entropy (PyTorch's `F.cross_entropy` with `reduction='mean'`,
//! optional class weights and `ignore_index`).
//!
//! Shapes: logits `[N, C, H, W]` (labels `[N, H, W]`) or `[N, C]` (labels `[N]`); labels
//! are `U32`; weights, if given, are `[C]`. A pixel `v` is valid when its label `y_v ≠
//! ignore_index` and `y_v < C`; a label `≥ C` that is not `ignore_index` is treated as
//! ignored here (the data loader rejects such labels with an error naming the file).
//!
//! `L = Σ_{v valid} w_{y_v} · ℓ_v / Σ_{v valid} w_{y_v}`, `ℓ_v = −log softmax(x_v)_{y_v}`,
//! with `w = 1` without weights (the mean over valid pixels). No valid pixel (or `Σ w = 0`)
//! gives `L = 0` and a zero gradient, never NaN. Weights are expected to be non-negative
//! (as in PyTorch); the `Σ w = 0` rule is what makes the all-ignored case well defined.
//!
//! Gradient (logits only; labels and weights are constants):
//! `∂L/∂x_{v,c} = g · w_{y_v} · (p_{v,c} − δ_{c,y_v}) / Σ w`, `p = softmax_c(x)`, 0 for
//! ignored pixels.
//!
//! GPU: `ce_forward` (each invocation handles a run of `CE_PIXELS_PER_LANE` pixels of one
//! image) writes every pixel's log-sum-exp (as `m` and `log s`) and per-invocation partial
//! sums of `w·ℓ` and `w` into one statistics buffer, the lane reduction sums the partials, and
//! `ce_finish` divides on the device. `ce_backward` reads `g`, `Σ w` and the saved
//! log-sum-exp from device buffers: one load, one `exp` and one store per logit, and nothing
//! is read back. When the pixels per image are a multiple of 4 (`Layout::vec4`), the
//! `ce_forward4` / `ce_backward4` variants do the same on quads of 4 pixels with vec4
//! accesses (`ce_backward4`: `CE_QUADS_PER_INVOCATION` quads per invocation); their timings
//! on lavapipe are the README's softmax-CE rows (`cargo bench -- softmax-CE`). The saved
//! statistics (`sums` in `Op::CrossEntropy`) are `[Σ w·ℓ, Σ w, 0, 0, m (P), log s (P), …]`
//! for `P` pixels; only the first two are read on the CPU.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::reduce::gpu_sum_into;
use crate::ops::softmax::u32_elements;
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

const OP: &str = "cross_entropy";

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CeParams {
    pub(crate) n: u32,
    pub(crate) c: u32,
    pub(crate) inner: u32,
    pub(crate) ignore_index: u32,
    pub(crate) lanes: u32,
    pub(crate) partials: u32,
    pub(crate) _pad: [u32; 2],
}

/// Pixels each `ce_forward` invocation sums: a contiguous run, so that each invocation walks
/// its own stretch of every class row (with pixels strided by the lane count instead, the
/// vec4 forward kernel took about 1.35× as long in the per-kernel profile,
/// `WGSEG_BENCH_PROFILE=1 cargo bench -- softmax-CE`). Fewer partials to reduce as it grows,
/// while it must leave enough invocations to fill a GPU (4096 on the bench shape); a multiple
/// of 4 (the vec4 kernel takes it as quads). 32 to 128 pixels measured alike (differences
/// within the run-to-run noise); the partials' reduction is a few percent of the forward.
pub(crate) const CE_PIXELS_PER_LANE: usize = 64;

/// Quads (4 pixels) per `ce_backward4` invocation: sharing the loads of `g` and `Σ w` and
/// the loop over several quads cut the backward kernel's time by about 30 % against 1 quad
/// (4 to 16 quads alike, 2 quads in between), `WGSEG_BENCH_PROFILE=1 cargo bench --
/// softmax-CE`.
pub(crate) const CE_QUADS_PER_INVOCATION: usize = 8;

/// Floats before the per-pixel statistics: `Σ w·ℓ, Σ w` and padding, so that `m` and
/// `log s` start on a vec4 boundary.
pub(crate) const STATS_HEAD: usize = 4;

/// The layout of a per-pixel loss over logits `[n, c, …]`: `n` images, `c` classes, `inner`
/// pixels per image; pixel `v = b·inner + r` over the whole batch. Cross-entropy's, shared
/// by the losses of `crate::losses` (the softmax family and AUC).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) inner: usize,
}

impl Layout {
    /// Logits of dims `[n, c, d2, d3, …]` (`inner` = the product of the rest, 1 for `[n, c]`).
    pub(crate) fn of(d: &[usize]) -> Layout {
        Layout {
            n: d[0],
            c: d[1],
            inner: d[2..].iter().product(),
        }
    }
    pub(crate) fn pixels(self) -> usize {
        self.n * self.inner
    }
    /// Index of logit `(pixel v, class k)`.
    pub(crate) fn at(self, v: usize, k: usize) -> usize {
        (v / self.inner * self.c + k) * self.inner + v % self.inner
    }
    /// The class of label `y`, or `None` for an ignored or out-of-range label.
    pub(crate) fn class(self, y: u32, ignore_index: u32) -> Option<usize> {
        (y != ignore_index && (y as usize) < self.c).then_some(y as usize)
    }
    /// Lanes per image of `ce_forward` (and `pix_forward`).
    pub(crate) fn lanes(self) -> usize {
        self.inner.div_ceil(CE_PIXELS_PER_LANE)
    }
    /// Whether the vec4 kernels apply: every image's pixels come in aligned quads.
    pub(crate) fn vec4(self) -> bool {
        self.inner % 4 == 0
    }
    /// Offset of the partial sums in the statistics buffer.
    pub(crate) fn partials(self) -> usize {
        STATS_HEAD + 2 * self.pixels()
    }
    /// Length of the statistics buffer: sums (padded to `STATS_HEAD`), m, log s, two rows
    /// of partials, rounded up to whole vec4s for the vec4 kernels' view.
    pub(crate) fn stats_len(self) -> usize {
        (self.partials() + 2 * self.n * self.lanes()).next_multiple_of(4)
    }
    fn params(self, ignore_index: u32) -> CeParams {
        CeParams {
            n: self.n as u32,
            c: self.c as u32,
            inner: self.inner as u32,
            ignore_index,
            lanes: self.lanes() as u32,
            partials: self.partials() as u32,
            _pad: [0; 2],
        }
    }
}

/// Shape and dtype checks; returns the layout.
fn check(logits: &Tensor, labels: &Tensor, weights: Option<&Tensor>) -> Result<Layout> {
    logits.expect_dtype(OP, DType::F32)?;
    labels.expect_dtype(OP, DType::U32)?;
    let d = logits.dims();
    let want_labels = match d.len() {
        2 => Shape(vec![d[0]]),
        4 => Shape(vec![d[0], d[2], d[3]]),
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "logits must be [N, C] or [N, C, H, W], got {}",
                    logits.shape()
                ),
            ))
        }
    };
    if labels.shape() != &want_labels {
        return Err(Error::shape(
            OP,
            format!(
                "labels of shape {} do not match logits {} (expected labels {want_labels})",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    let lay = Layout::of(d);
    if logits.numel() == 0 {
        return Err(Error::shape(
            OP,
            format!("empty logits {} (no classes or no pixels)", logits.shape()),
        ));
    }
    if let Some(w) = weights {
        w.expect_dtype(OP, DType::F32)?;
        if w.dims() != [lay.c] {
            return Err(Error::shape(
                OP,
                format!(
                    "class weights must be [{}] for logits {}, got {}",
                    lay.c,
                    logits.shape(),
                    w.shape()
                ),
            ));
        }
        same_device(OP, &[logits, labels, w])?;
    } else {
        same_device(OP, &[logits, labels])?;
    }
    u32_elements(OP, logits.numel().max(lay.stats_len()))?;
    Ok(lay)
}

/// Weight of label `y` (CPU): 0 when ignored or out of range.
fn cpu_weight(y: f64, c: usize, ignore_index: u32, w: Option<&[f64]>) -> f64 {
    if y == f64::from(ignore_index) || y >= c as f64 {
        return 0.0;
    }
    w.map_or(1.0, |w| w[y as usize])
}

/// Max and `Σ exp(x − max)` of pixel `v` (CPU, f64).
fn cpu_max_sum(x: &[f64], lay: Layout, v: usize) -> (f64, f64) {
    let m = (0..lay.c)
        .map(|k| x[lay.at(v, k)])
        .fold(f64::NEG_INFINITY, f64::max);
    (m, (0..lay.c).map(|k| (x[lay.at(v, k)] - m).exp()).sum())
}

/// CPU reference forward: `(loss, [Σ w·ℓ, Σ w])`.
fn cpu_forward(
    x: &[f64],
    y: &[f64],
    w: Option<&[f64]>,
    lay: Layout,
    ignore_index: u32,
) -> (f64, [f64; 2]) {
    let (mut swl, mut sw) = (0.0, 0.0);
    for v in 0..lay.pixels() {
        let wv = cpu_weight(y[v], lay.c, ignore_index, w);
        if wv == 0.0 {
            continue;
        }
        let (m, s) = cpu_max_sum(x, lay, v);
        swl += wv * (m - x[lay.at(v, y[v] as usize)] + s.ln());
        sw += wv;
    }
    let loss = if sw != 0.0 { swl / sw } else { 0.0 };
    (loss, [swl, sw])
}

fn buf(t: &Tensor) -> Result<&GpuBuf> {
    t.gpu_buf(OP)
}

fn kernel(entry: &'static str, weighted: bool) -> Kernel {
    Kernel::new(Shader::CrossEntropy, entry)
        .with("WEIGHTED", u32::from(weighted))
        .with("WG", ELEMENTWISE_WG)
        .with("PER", CE_PIXELS_PER_LANE as u32)
        .with("BQ", CE_QUADS_PER_INVOCATION as u32)
}

/// GPU forward: `(loss, stats)`, both on the device.
fn gpu_forward(
    x: &GpuBuf,
    y: &GpuBuf,
    w: Option<&GpuBuf>,
    lay: Layout,
    ignore_index: u32,
) -> Result<(GpuBuf, Tensor)> {
    let ctx = x.context();
    let t = lay.n * lay.lanes();
    let stats = ctx.alloc_storage(lay.stats_len())?;
    // Unused inputs (g, stats; weights when unweighted) are bound to the logits as dummies.
    let entry = if lay.vec4() {
        "ce_forward4"
    } else {
        "ce_forward"
    };
    ctx.launch(
        &kernel(entry, w.is_some()),
        &lay.params(ignore_index),
        &[x, y, w.unwrap_or(x), x, x],
        &[&stats],
        groups_for(t, ELEMENTWISE_WG),
    )?;
    gpu_sum_into(&stats, lay.partials(), (2, t, 1), &stats)?;
    let loss = ctx.alloc_storage(1)?;
    ctx.launch(
        &kernel("ce_finish", false),
        &lay.params(ignore_index),
        &[&stats, &stats, &stats, &stats, &stats],
        &[&loss],
        1,
    )?;
    let stats = Tensor::from_storage(
        Storage::Gpu(stats),
        Shape(vec![lay.stats_len()]),
        DType::F32,
    );
    Ok((loss, stats))
}

/// Softmax cross-entropy of `logits` against `labels` (see the module docs for shapes,
/// formula and gradient). Returns a scalar (shape `[]`).
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    weights: Option<&Tensor>,
    ignore_index: u32,
) -> Result<Tensor> {
    let (storage, sums) = cross_entropy_parts(logits, labels, weights, ignore_index)?;
    Ok(Tensor::from_op(
        storage,
        Shape(vec![]),
        DType::F32,
        Op::CrossEntropy {
            labels: labels.detach(),
            weights: weights.map(Tensor::detach),
            ignore_index,
            sums,
        },
        vec![logits.clone()],
    ))
}

/// The forward of [`cross_entropy`] without the tape: the loss's storage (one value) and the
/// statistics its backward needs (`sums`). For losses that contain cross-entropy as a term
/// and fuse its backward with theirs (`losses::aucseg`).
pub(crate) fn cross_entropy_parts(
    logits: &Tensor,
    labels: &Tensor,
    weights: Option<&Tensor>,
    ignore_index: u32,
) -> Result<(Storage, Tensor)> {
    let lay = check(logits, labels, weights)?;
    Ok(match logits.storage() {
        Storage::Cpu(x) => {
            let w = weights.map(|w| w.cpu_data(OP)).transpose()?;
            let (loss, sums) = cpu_forward(x, labels.cpu_data(OP)?, w, lay, ignore_index);
            let sums =
                Tensor::from_storage(Storage::Cpu(sums.to_vec()), Shape(vec![2]), DType::F32);
            (Storage::Cpu(vec![loss]), sums)
        }
        Storage::Gpu(x) => {
            let w = weights.map(buf).transpose()?;
            let (loss, sums) = gpu_forward(x, buf(labels)?, w, lay, ignore_index)?;
            (Storage::Gpu(loss), sums)
        }
    })
}

/// Backward of `cross_entropy`: `g · w_y · (p_c − δ_{c,y}) / Σ w` per logit (0 for ignored
/// pixels and when `Σ w = 0`). `sums = [Σ w·ℓ, Σ w]` was saved by the forward.
pub(crate) fn cross_entropy_backward(
    logits: &Tensor,
    labels: &Tensor,
    weights: Option<&Tensor>,
    ignore_index: u32,
    sums: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let lay = check(logits, labels, weights)?;
    let storage = match logits.storage() {
        Storage::Cpu(x) => {
            let y = labels.cpu_data(OP)?;
            let w = weights.map(|w| w.cpu_data(OP)).transpose()?;
            let sw = sums.cpu_data(OP)?[1];
            let g = g.cpu_data(OP)?[0];
            let mut dx = vec![0.0; x.len()];
            for v in 0..lay.pixels() {
                let wv = cpu_weight(y[v], lay.c, ignore_index, w);
                if wv == 0.0 || sw == 0.0 {
                    continue;
                }
                let (m, s) = cpu_max_sum(x, lay, v);
                for k in 0..lay.c {
                    let p = (x[lay.at(v, k)] - m).exp() / s;
                    let delta = f64::from(u8::from(k as f64 == y[v]));
                    dx[lay.at(v, k)] = g * wv * (p - delta) / sw;
                }
            }
            Storage::Cpu(dx)
        }
        Storage::Gpu(x) => {
            let ctx = x.context();
            let dx = ctx.alloc_storage(logits.numel())?;
            let w = weights.map(buf).transpose()?;
            let (entry, threads) = if lay.vec4() {
                (
                    "ce_backward4",
                    (lay.pixels() / 4).div_ceil(CE_QUADS_PER_INVOCATION),
                )
            } else {
                ("ce_backward", lay.pixels())
            };
            ctx.launch(
                &kernel(entry, w.is_some()),
                &lay.params(ignore_index),
                &[x, buf(labels)?, w.unwrap_or(x), buf(g)?, buf(sums)?],
                &[&dx],
                groups_for(threads, ELEMENTWISE_WG),
            )?;
            Storage::Gpu(dx)
        }
    };
    Ok(Tensor::from_storage(
        storage,
        logits.shape().clone(),
        DType::F32,
    ))
}

impl Tensor {
    /// `cross_entropy(self, labels, weights, ignore_index)`; see [`cross_entropy`].
    pub fn cross_entropy(
        &self,
        labels: &Tensor,
        weights: Option<&Tensor>,
        ignore_index: u32,
    ) -> Result<Tensor> {
        cross_entropy(self, labels, weights, ignore_index)
    }
}
