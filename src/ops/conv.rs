//! 2-D convolution with stride, zero padding, dilation and groups (PyTorch's `conv2d`), and
//! its gradients.
//!
//! Shapes: `x [N, Cin, H, W]`, `w [Cout, Cin/groups, KH, KW]`, optional `bias [Cout]`,
//! `y [N, Cout, Ho, Wo]` with `Ho = (H + 2·ph − dh·(KH − 1) − 1) / sh + 1` (floor; same for
//! `Wo`). With `g = co / (Cout/groups)` the group of output channel `co`,
//!
//! ```text
//! y[n, co, oh, ow] = bias[co] + Σ_{ci < Cin/groups, ky, kx} w[co, ci, ky, kx]
//!                      · x[n, g·Cin/groups + ci, oh·sh − ph + ky·dh, ow·sw − pw + kx·dw]
//! ```
//!
//! where taps outside the input read 0. Gradients: `∂x` sums, for each input element, the
//! outputs and taps that read it ([`conv2d_grad_input`]); `∂w[co, ci, ky, kx]` sums `dy · x`
//! over `N·Ho·Wo` positions ([`conv2d_grad_weight`], per-chunk partial sums added by the
//! reduce kernels); `∂bias = Σ_{n, oh, ow} dy`, composed from the reduce kernels. None needs
//! atomics.
//!
//! GPU kernels, picked per layer and per adapter:
//! - Winograd F(4×4, 3×3) (`src/ops/conv/winograd.rs` on `shaders/winograd.wgsl` and the
//!   texture GEMM): ungrouped 3×3 layers of stride 1 with padding equal to their dilation
//!   and at least [`WINOGRAD_MIN_CHANNELS`] channels each way, on the texture GEMM's
//!   adapters, where its cost model ([`WINOGRAD_MAX_WORK`]) says it does less work.
//!   Forward and grad-input are 36 batched products with K = the channels, a quarter of
//!   the direct convolution's multiply-adds; grad-weight too from
//!   [`WINOGRAD_GW_MIN_CHANNELS`] channels, else the texture GEMM's grad-weight over the
//!   same atlas.
//! - the texture GEMM (`src/ops/conv/tex.rs` on `shaders/gemm_tex.wgsl` and
//!   `shaders/pack.wgsl`, see `src/ops/gemm.rs`): the default for ungrouped layers
//!   (`groups = 1`) wherever [`GpuContext::texture_gemm`](crate::gpu::GpuContext::texture_gemm)
//!   holds (subgroup clusters of 8 lanes, wide enough 2-D textures) and the texel arrays fit
//!   the device's limits. The input is packed into a channel-packed atlas read through an
//!   implicit im2col window; forward, grad-input (any stride: one GEMM per output phase over
//!   the taps that reach it) and grad-weight (a GEMM over the output pixels in bands of rows,
//!   summed; over an explicit im2col matrix where output rows are not a multiple of 4
//!   pixels wide and the product is large, see `tex::im2col_applies`) are all the same GEMM
//!   kernel.
//! - elsewhere (grouped and depthwise layers, adapters without the texture GEMM, such as
//!   4-lane subgroups or the GL backend), picked by shape (see
//!   [`CONV_DIRECT_MIN_CHANNELS`]):
//!   - `direct` (`shaders/conv_direct.wgsl`, `conv_grad_weight.wgsl`, `conv_pack.wgsl`):
//!     register-blocked implicit GEMMs over a zero-padded copy of the input and packed
//!     weights (16 channels × 16 pixels per invocation); stride-1 grad-input is the same
//!     forward kernel run on `dy` with the flipped, transposed kernel; grad-weight is a
//!     16-channel × 16-tap block per invocation over a band of rows, summed over bands. Used
//!     for the forward and stride-1 grad-input of layers with ≥ 8 channels per group, and
//!     for every grad-weight.
//!   - gather kernels (`shaders/conv.wgsl`, 4 channels × 4 pixels with masked loads): the
//!     forward and grad-input of depthwise-like layers, and grad-input with stride > 1.
//!
//! The CPU reference (plain f64 loops, `src/ops/conv/cpu.rs`) is the oracle they are tested
//! against.

mod cpu;
pub(crate) mod direct;
mod tex;
pub(crate) mod winograd;

use std::sync::Arc;

use crate::autograd::{grad_enabled, Op};
use crate::error::{Error, Result};
use crate::gpu::{groups_for, GpuBuf, GpuTex, Kernel, Shader};
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

pub use direct::{CONV_BC, CONV_BP, CONV_GW_BT, CONV_GW_TARGET, CONV_WG};
pub use tex::{GW_IM2COL_MAX_TEXELS, GW_IM2COL_MIN_MACS};
pub use winograd::{
    WINOGRAD_GW_MIN_CHANNELS, WINOGRAD_MAX_WORK, WINOGRAD_MIN_CHANNELS, WINOGRAD_WEIGHT_COLUMNS,
};

/// Channels per invocation of the gather kernels of `conv.wgsl` (`BC`).
pub const CONV_GATHER_BC: usize = 4;
/// Pixels per invocation of the gather kernels (`BP`, the vec4 width).
pub const CONV_GATHER_BP: usize = 4;
/// Fewest output channels per group (input channels per group for grad-input) for which
/// the register-blocked kernels of `direct` beat the gather kernels of `conv.wgsl`. Each
/// direct invocation pays for a whole CONV_BC = 16-channel block, the gather kernels for
/// 4-channel blocks. Measured on lavapipe (scratch A/B harness, old and new kernels in one
/// process, load ≈ 3–8): depthwise (1 channel) forward 221 ms direct vs 105 ms gather,
/// grad-input 207 vs 153 ms, while 64- and 256-channel layers run 4–5× faster direct; by
/// the cost per 4-channel block the two meet near 8 channels.
pub const CONV_DIRECT_MIN_CHANNELS: usize = 8;

/// What a texture-GEMM or Winograd forward keeps on the tape for the backward (each operand
/// is packed once per layer and step).
#[derive(Clone)]
pub struct SavedPack(Arc<Saved>);

/// The forward's packed operands, per GPU path.
pub(crate) enum Saved {
    /// Texture GEMM: the channel-packed copy of the input (grad-weight reads the same
    /// texels) and, when x needs a gradient, the weights in grad-input's layout (packed in
    /// the forward's weight pass).
    Gemm(tex::Packed),
    /// Winograd: x's atlas (read again by grad-weight's transforms, or by its texture GEMM)
    /// and, when x needs a gradient, the weights' transform in grad-input's layout.
    Winograd(tex::Packed),
}

impl std::fmt::Debug for SavedPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, p) = match &*self.0 {
            Saved::Gemm(p) => ("texture GEMM", p),
            Saved::Winograd(p) => ("winograd", p),
        };
        write!(
            f,
            "SavedPack({path}, atlas {} texels, transposed weights {})",
            p.atlas.texels(),
            p.wt.is_some()
        )
    }
}

/// Stride, zero padding, dilation (each `(h, w)`) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, dilation 1, one group.
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride, padding and dilation, and `groups`.
    pub fn new(stride: usize, padding: usize, dilation: usize, groups: usize) -> Self {
        Conv2dParams {
            stride: (stride, stride),
            padding: (padding, padding),
            dilation: (dilation, dilation),
            groups,
        }
    }
    pub fn with_stride(self, h: usize, w: usize) -> Self {
        Conv2dParams {
            stride: (h, w),
            ..self
        }
    }
    pub fn with_padding(self, h: usize, w: usize) -> Self {
        Conv2dParams {
            padding: (h, w),
            ..self
        }
    }
    pub fn with_dilation(self, h: usize, w: usize) -> Self {
        Conv2dParams {
            dilation: (h, w),
            ..self
        }
    }
    pub fn with_groups(self, groups: usize) -> Self {
        Conv2dParams { groups, ..self }
    }
}

/// Every size of one convolution, validated.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    groups: usize,
    cin_g: usize,
    cout_g: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
}

/// `#[repr(C)]` mirror of `struct Params` in `shaders/conv.wgsl` (24 × u32 = 96 bytes;
/// checked by src/gpu/layout_tests.rs).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvUniform {
    pub(crate) n: u32,
    pub(crate) cin: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) cout: u32,
    pub(crate) ho: u32,
    pub(crate) wo: u32,
    pub(crate) groups: u32,
    pub(crate) cin_g: u32,
    pub(crate) cout_g: u32,
    pub(crate) kh: u32,
    pub(crate) kw: u32,
    pub(crate) sh: u32,
    pub(crate) sw: u32,
    pub(crate) ph: u32,
    pub(crate) pw: u32,
    pub(crate) dh: u32,
    pub(crate) dw: u32,
    pub(crate) cblocks: u32,
    pub(crate) pblocks: u32,
    pub(crate) kblocks: u32,
    pub(crate) blocks: u32,
    pub(crate) chunk: u32,
    pub(crate) nchunks: u32,
}

/// `n` as a `u32` kernel index, or a limit error naming `what`.
fn index_u32(what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Limit {
        what: what.to_string(),
        requested: n as u64,
        max: u64::from(u32::MAX),
    })
}

impl Geom {
    /// Validates the shapes of `x` and `w` against `p` (messages name `op`).
    fn new(op: &'static str, x: &Shape, w: &Shape, p: &Conv2dParams) -> Result<Geom> {
        let err = |msg: String| Error::shape(op, msg);
        let &[n, cin, h, wd] = x.dims() else {
            return Err(err(format!(
                "x must have rank 4 [N, Cin, H, W], got shape {x}"
            )));
        };
        let &[cout, wcin, kh, kw] = w.dims() else {
            return Err(err(format!(
                "w must have rank 4 [Cout, Cin/groups, KH, KW], got shape {w}"
            )));
        };
        if x.numel() == 0 || w.numel() == 0 {
            return Err(err(format!(
                "empty tensors are not supported (x {x}, w {w})"
            )));
        }
        let (groups, (sh, sw), (ph, pw), (dh, dw)) = (p.groups, p.stride, p.padding, p.dilation);
        if groups == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 {
            return Err(err(format!(
                "groups, stride and dilation must be at least 1, got {p:?}"
            )));
        }
        if cin % groups != 0 || cout % groups != 0 {
            return Err(err(format!(
                "Cin = {cin} and Cout = {cout} must both be divisible by groups = {groups} \
                 (x {x}, w {w})"
            )));
        }
        if wcin * groups != cin {
            return Err(err(format!(
                "w {w} expects {} input channels ({wcin} per group × {groups} groups), but x {x} \
                 has {cin}",
                wcin * groups
            )));
        }
        // Saturating: absurd user values must give this error, not an overflow.
        let (ekh, ekw) = (
            dh.saturating_mul(kh - 1).saturating_add(1),
            dw.saturating_mul(kw - 1).saturating_add(1),
        );
        let (hp, wp) = (
            h.saturating_add(ph.saturating_mul(2)),
            wd.saturating_add(pw.saturating_mul(2)),
        );
        if ekh > hp || ekw > wp {
            return Err(err(format!(
                "the dilated kernel ({ekh} × {ekw}) is larger than the padded input \
                 ({hp} × {wp}) (x {x}, w {w}, {p:?})"
            )));
        }
        let g = Geom {
            n,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            ho: (hp - ekh) / sh + 1,
            wo: (wp - ekw) / sw + 1,
            groups,
            cin_g: cin / groups,
            cout_g: cout / groups,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
        };
        // Kernel indices are u32 (and padded coordinates i32).
        index_u32(op, x.numel().max(w.numel()).max(g.out_shape().numel()))?;
        index_u32(op, hp.max(wp).saturating_mul(2))?;
        Ok(g)
    }

    fn out_shape(&self) -> Shape {
        Shape(vec![self.n, self.cout, self.ho, self.wo])
    }

    /// The sizes as the kernels read them (blocking fields zero).
    fn uniform(&self) -> ConvUniform {
        let u = |v: usize| v as u32; // every size was checked against u32 in `new`
        ConvUniform {
            n: u(self.n),
            cin: u(self.cin),
            h: u(self.h),
            w: u(self.w),
            cout: u(self.cout),
            ho: u(self.ho),
            wo: u(self.wo),
            groups: u(self.groups),
            cin_g: u(self.cin_g),
            cout_g: u(self.cout_g),
            kh: u(self.kh),
            kw: u(self.kw),
            sh: u(self.sh),
            sw: u(self.sw),
            ph: u(self.ph),
            pw: u(self.pw),
            dh: u(self.dh),
            dw: u(self.dw),
            ..ConvUniform::default()
        }
    }

    /// Uniform for the gather kernels: `channels` per group in blocks of `CONV_GATHER_BC`,
    /// a `plane` of pixels in blocks of `CONV_GATHER_BP`, for every image and group.
    fn blocked(&self, op: &'static str, channels: usize, plane: usize) -> Result<ConvUniform> {
        let (cb, pb) = (
            channels.div_ceil(CONV_GATHER_BC),
            plane.div_ceil(CONV_GATHER_BP),
        );
        Ok(ConvUniform {
            cblocks: index_u32(op, cb)?,
            pblocks: index_u32(op, pb)?,
            blocks: index_u32(op, self.n * self.groups * cb * pb)?,
            ..self.uniform()
        })
    }
}

/// Forward: Winograd where it applies (3×3 "same" layers, see `winograd::applies`), else
/// the texture GEMM where it applies (ungrouped layer, see `tex::applies`), else the
/// register-blocked direct kernel, or the gather kernel for layers with few output channels
/// per group (depthwise).
/// On the first two also returns what the backward reads again (with `transposed`, the
/// weights in grad-input's layout too).
fn gpu_forward(
    geo: &Geom,
    x: &GpuBuf,
    w: &GpuBuf,
    bias: Option<&GpuBuf>,
    transposed: bool,
) -> Result<(GpuBuf, Option<Saved>)> {
    if winograd::applies(x.context(), geo) {
        let (y, saved) = winograd::forward(geo, x, w, bias, transposed)?;
        return Ok((y, Some(Saved::Winograd(saved))));
    }
    if tex::applies(x.context(), geo) {
        let (y, packed) = tex::forward(geo, x, w, bias, transposed)?;
        return Ok((y, Some(Saved::Gemm(packed))));
    }
    if geo.cout_g >= CONV_DIRECT_MIN_CHANNELS {
        return Ok((direct::forward(geo, x, w, bias)?, None));
    }
    let ctx = x.context();
    let u = geo.blocked("conv2d", geo.cout_g, geo.ho * geo.wo)?;
    let out = ctx.alloc_storage(geo.out_shape().numel())?;
    let k = Kernel::new(Shader::Conv, "conv2d")
        .with("WG", CONV_WG)
        .with("HAS_BIAS", u32::from(bias.is_some()));
    // Without a bias, `w` fills the unused binding (HAS_BIAS = 0 never reads it).
    let b = bias.unwrap_or(w);
    ctx.launch(
        &k,
        &u,
        &[x, w, b],
        &[&out],
        groups_for(u.blocks as usize, CONV_WG),
    )?;
    Ok((out, None))
}

/// Grad-input: the texture GEMM where it applies (ungrouped layer, any stride), else the
/// direct forward kernel on `dy` with the flipped kernel where that applies (stride 1,
/// enough channels), else the gather kernel (any stride).
fn gpu_grad_input(geo: &Geom, dy: &GpuBuf, w: &GpuBuf) -> Result<GpuBuf> {
    if tex::applies(dy.context(), geo) {
        return tex::grad_input(geo, dy, w);
    }
    if geo.cin_g >= CONV_DIRECT_MIN_CHANNELS && direct::grad_input_applies(geo) {
        return direct::grad_input(geo, dy, w);
    }
    let ctx = dy.context();
    let u = geo.blocked("conv2d_grad_input", geo.cin_g, geo.h * geo.w)?;
    let out = ctx.alloc_storage(geo.n * geo.cin * geo.h * geo.w)?;
    let k = Kernel::new(Shader::Conv, "conv2d_grad_input").with("WG", CONV_WG);
    ctx.launch(
        &k,
        &u,
        &[dy, w, w],
        &[&out],
        groups_for(u.blocks as usize, CONV_WG),
    )?;
    Ok(out)
}

/// Launches the grad-weight kernel (the texture GEMM where it applies, else the direct
/// kernel); returns the partial sums `[nchunks, Cout·K]` and `nchunks`. `atlas`: x's atlas
/// kept from the forward, if any.
fn gpu_grad_weight(
    geo: &Geom,
    dy: &GpuBuf,
    x: &GpuBuf,
    atlas: Option<&GpuTex>,
) -> Result<(GpuBuf, usize)> {
    if tex::applies(dy.context(), geo) {
        return tex::grad_weight(geo, dy, x, atlas);
    }
    direct::grad_weight(geo, dy, x)
}

/// `y = conv2d(x, w) + bias` (see the module docs for the formula and shapes). Recorded on
/// the tape as [`Op::Conv2d`] with inputs `[x, w]` or `[x, w, bias]` (and, on the texture
/// GEMM, x's atlas for grad-weight).
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let mut ts = vec![x, w];
    ts.extend(bias);
    for t in &ts {
        t.expect_dtype(OP, DType::F32)?;
    }
    same_device(OP, &ts)?;
    let geo = Geom::new(OP, x.shape(), w.shape(), &p)?;
    if let Some(b) = bias {
        if b.dims() != [geo.cout] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias must have shape [{}] (Cout of w {}), got {}",
                    geo.cout,
                    w.shape(),
                    b.shape()
                ),
            ));
        }
    }
    let taped = grad_enabled() && ts.iter().any(|t| t.requires_grad());
    let (storage, packed) = match x.storage() {
        Storage::Cpu(xv) => {
            let bv = bias.map(|b| b.cpu_data(OP)).transpose()?;
            (
                Storage::Cpu(cpu::forward(&geo, xv, w.cpu_data(OP)?, bv)),
                None,
            )
        }
        Storage::Gpu(xb) => {
            let bb = bias.map(|b| b.gpu_buf(OP)).transpose()?;
            let transposed = taped && x.requires_grad();
            let (y, packed) = gpu_forward(&geo, xb, w.gpu_buf(OP)?, bb, transposed)?;
            (Storage::Gpu(y), packed)
        }
    };
    // Kept only for a tape that will ask for the gradients.
    let saved = packed.filter(|_| taped).map(|t| SavedPack(Arc::new(t)));
    let inputs = ts.into_iter().cloned().collect();
    Ok(Tensor::from_op(
        storage,
        geo.out_shape(),
        DType::F32,
        Op::Conv2d { params: p, saved },
        inputs,
    ))
}

/// Checks `dy` against the output shape of the convolution described by `geo`.
fn check_dy(op: &'static str, geo: &Geom, dy: &Tensor) -> Result<()> {
    dy.expect_dtype(op, DType::F32)?;
    if dy.shape() != &geo.out_shape() {
        return Err(Error::shape(
            op,
            format!(
                "dy has shape {}, but the convolution's output has shape {}",
                dy.shape(),
                geo.out_shape()
            ),
        ));
    }
    Ok(())
}

/// Gradient of `conv2d` with respect to its input, `∂x [N, Cin, H, W]`, from
/// `dy = ∂L/∂y [N, Cout, Ho, Wo]`, the weights and the input's shape (PyTorch's
/// `torch.nn.grad.conv2d_input`): `∂x[n, ci, ih, iw] = Σ w[co, ci, ky, kx] · dy[n, co, oh, ow]`
/// over the outputs and taps with `oh·sh − ph + ky·dh = ih` and `ow·sw − pw + kx·dw = iw`.
/// The result has no history (gradients of gradients are not supported).
pub fn conv2d_grad_input(
    dy: &Tensor,
    w: &Tensor,
    x_shape: &Shape,
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_grad_input";
    w.expect_dtype(OP, DType::F32)?;
    same_device(OP, &[dy, w])?;
    let geo = Geom::new(OP, x_shape, w.shape(), &p)?;
    check_dy(OP, &geo, dy)?;
    let storage = match dy.storage() {
        Storage::Cpu(g) => Storage::Cpu(cpu::grad_input(&geo, g, w.cpu_data(OP)?)),
        Storage::Gpu(g) => Storage::Gpu(gpu_grad_input(&geo, g, w.gpu_buf(OP)?)?),
    };
    Ok(Tensor::from_storage(storage, x_shape.clone(), DType::F32))
}

/// Gradient of `conv2d` with respect to its weights, `∂w [Cout, Cin/groups, KH, KW]`, from
/// `dy = ∂L/∂y`, the input and the weights' shape (PyTorch's `torch.nn.grad.conv2d_weight`):
/// `∂w[co, ci, ky, kx] = Σ_{n, oh, ow} dy[n, co, oh, ow] · x[n, g·Cin/groups + ci,
/// oh·sh − ph + ky·dh, ow·sw − pw + kx·dw]`. The result has no history.
pub fn conv2d_grad_weight(
    dy: &Tensor,
    x: &Tensor,
    w_shape: &Shape,
    p: Conv2dParams,
) -> Result<Tensor> {
    grad_weight(dy, x, w_shape, p, None)
}

/// [`conv2d_grad_weight`], reading x's atlas from the forward when it was kept.
fn grad_weight(
    dy: &Tensor,
    x: &Tensor,
    w_shape: &Shape,
    p: Conv2dParams,
    atlas: Option<&GpuTex>,
) -> Result<Tensor> {
    const OP: &str = "conv2d_grad_weight";
    x.expect_dtype(OP, DType::F32)?;
    same_device(OP, &[dy, x])?;
    let geo = Geom::new(OP, x.shape(), w_shape, &p)?;
    check_dy(OP, &geo, dy)?;
    match dy.storage() {
        Storage::Cpu(g) => Ok(Tensor::from_storage(
            Storage::Cpu(cpu::grad_weight(&geo, g, x.cpu_data(OP)?)),
            w_shape.clone(),
            DType::F32,
        )),
        Storage::Gpu(g) => {
            let (partial, nchunks) = gpu_grad_weight(&geo, g, x.gpu_buf(OP)?, atlas)?;
            sum_partials(partial, nchunks, w_shape)
        }
    }
}

/// `∂w` from its partial sums `[nchunks, Cout·K]`.
fn sum_partials(partial: GpuBuf, nchunks: usize, w_shape: &Shape) -> Result<Tensor> {
    let nw = w_shape.numel();
    let t = Tensor::from_storage(Storage::Gpu(partial), Shape(vec![nchunks, nw]), DType::F32);
    if nchunks == 1 {
        t.reshape(w_shape.clone())
    } else {
        t.sum_axis(0, false)?.reshape(w_shape.clone())
    }
}

/// Backward of [`conv2d`]: `[∂x, ∂w]` or `[∂x, ∂w, ∂bias]`, each computed only when that
/// input requires a gradient. `∂bias[co] = Σ_{n, oh, ow} g[n, co, oh, ow]`. With what a
/// texture-GEMM forward kept (`saved`), dy is packed once for both gradients.
pub(crate) fn conv2d_backward(
    p: &Conv2dParams,
    saved: Option<&SavedPack>,
    inputs: &[Tensor],
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    const OP: &str = "conv2d backward";
    let (x, w) = (&inputs[0], &inputs[1]);
    let mut grads = match (saved, g.storage()) {
        (Some(saved), Storage::Gpu(gb)) => {
            let geo = Geom::new(OP, x.shape(), w.shape(), p)?;
            check_dy(OP, &geo, g)?;
            let bufs = (x.gpu_buf(OP)?, w.gpu_buf(OP)?);
            let want = (x.requires_grad(), w.requires_grad());
            let (dx, dw) = match &*saved.0 {
                Saved::Gemm(packed) => tex::backward(&geo, gb, bufs, packed, want)?,
                Saved::Winograd(packed) => winograd::backward(&geo, gb, bufs, packed, want)?,
            };
            let dx =
                dx.map(|b| Tensor::from_storage(Storage::Gpu(b), x.shape().clone(), DType::F32));
            let dw = dw
                .map(|(partial, n)| sum_partials(partial, n, w.shape()))
                .transpose()?;
            vec![dx, dw]
        }
        _ => vec![
            x.requires_grad()
                .then(|| conv2d_grad_input(g, w, x.shape(), *p))
                .transpose()?,
            w.requires_grad()
                .then(|| grad_weight(g, x, w.shape(), *p, None))
                .transpose()?,
        ],
    };
    if let Some(b) = inputs.get(2) {
        let db = match (b.requires_grad(), g.dims()) {
            (true, &[n, c, h, wd]) => Some(
                g.reshape([n, c, h * wd])?
                    .sum_axis(2, false)?
                    .sum_axis(0, false)?,
            ),
            _ => None,
        };
        grads.push(db);
    }
    Ok(grads)
}

impl Tensor {
    /// `conv2d(self, w, bias, p)`: see [`conv2d`].
    pub fn conv2d(&self, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        conv2d(self, w, bias, p)
    }
}
