//! The implicit-GEMM conv kernels (`shaders/conv_gemm.wgsl`): forward, grad-input and
//! grad-weight as 64 × 64-tiled GEMMs with 8 × 8 register blocks per invocation, gathering
//! the im2col operand while staging it (nothing is materialised).

use super::{index_u32, Geom};
use crate::error::Result;
use crate::gpu::{GpuBuf, Kernel, Shader};

/// Output tile edge of one workgroup (`TILE` in `conv_gemm.wgsl`).
pub const CONV_GEMM_TILE: usize = 64;
/// Reduction slab of one staging step (`BK` in `conv_gemm.wgsl`); grad-weight chunks are
/// multiples of it.
pub const CONV_GEMM_BK: usize = 16;

/// `#[repr(C)]` mirror of `struct Params` in `shaders/conv_gemm.wgsl` (28 × u32 = 112 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvGemmUniform {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    groups: u32,
    cin_g: u32,
    cout_g: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    gm: u32,
    gn: u32,
    gk: u32,
    tiles_m: u32,
    tiles_n: u32,
    nchunks: u32,
    ktot: u32,
    rtot: u32,
    _p0: u32,
    _p1: u32,
}

/// Which product `conv_gemm` computes (its `MODE` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Forward = 0,
    GradInput = 1,
    GradWeight = 2,
}

/// GEMM sizes of one group: rows `gm`, columns `gn`, reduction length `rtot`, and the
/// reduction chunk `gk` (= `rtot` unless grad-weight splits it).
fn uniform(
    op: &'static str,
    geo: &Geom,
    gm: usize,
    gn: usize,
    rtot: usize,
    gk: usize,
) -> Result<ConvGemmUniform> {
    let base = geo.uniform();
    let (tm, tn) = (gm.div_ceil(CONV_GEMM_TILE), gn.div_ceil(CONV_GEMM_TILE));
    let nchunks = rtot.div_ceil(gk);
    index_u32(op, geo.groups * nchunks * tm * tn)?;
    index_u32(op, nchunks * geo.cout * geo.cin_g * geo.kh * geo.kw)?;
    index_u32(op, rtot + gk + CONV_GEMM_BK)?;
    Ok(ConvGemmUniform {
        n: base.n,
        cin: base.cin,
        h: base.h,
        w: base.w,
        cout: base.cout,
        ho: base.ho,
        wo: base.wo,
        groups: base.groups,
        cin_g: base.cin_g,
        cout_g: base.cout_g,
        kh: base.kh,
        kw: base.kw,
        sh: base.sh,
        sw: base.sw,
        ph: base.ph,
        pw: base.pw,
        dh: base.dh,
        dw: base.dw,
        gm: gm as u32,
        gn: gn as u32,
        gk: gk as u32,
        tiles_m: tm as u32,
        tiles_n: tn as u32,
        nchunks: nchunks as u32,
        ktot: (geo.cin_g * geo.kh * geo.kw) as u32,
        rtot: rtot as u32,
        ..ConvGemmUniform::default()
    })
}

fn launch(
    mode: Mode,
    u: &ConvGemmUniform,
    a: &GpuBuf,
    b: &GpuBuf,
    c: &GpuBuf,
    out: &GpuBuf,
    bias: bool,
) -> Result<()> {
    let k = Kernel::new(Shader::ConvGemm, "conv_gemm")
        .with("MODE", mode as u32)
        .with("HAS_BIAS", u32::from(bias));
    let groups = u64::from(u.groups) * u64::from(u.nchunks) * u64::from(u.tiles_m * u.tiles_n);
    a.context().launch(&k, u, &[a, b, c], &[out], groups)
}

/// `y = conv2d(x, w) + bias`: M = Cout/groups, N = N·Ho·Wo, K = Cin/groups·KH·KW.
pub(super) fn forward(geo: &Geom, x: &GpuBuf, w: &GpuBuf, bias: Option<&GpuBuf>) -> Result<GpuBuf> {
    let kt = geo.cin_g * geo.kh * geo.kw;
    let u = uniform("conv2d", geo, geo.cout_g, geo.n * geo.ho * geo.wo, kt, kt)?;
    let out = x.context().alloc_storage(geo.out_shape().numel())?;
    launch(Mode::Forward, &u, w, x, bias.unwrap_or(w), &out, bias.is_some())?;
    Ok(out)
}

/// `∂x`: M = Cin/groups, N = N·H·W, K = Cout/groups·KH·KW.
pub(super) fn grad_input(geo: &Geom, dy: &GpuBuf, w: &GpuBuf) -> Result<GpuBuf> {
    let kr = geo.cout_g * geo.kh * geo.kw;
    let u = uniform(
        "conv2d_grad_input",
        geo,
        geo.cin_g,
        geo.n * geo.h * geo.w,
        kr,
        kr,
    )?;
    let out = dy.context().alloc_storage(geo.n * geo.cin * geo.h * geo.w)?;
    launch(Mode::GradInput, &u, w, dy, w, &out, false)?;
    Ok(out)
}

/// Partial `∂w` sums `[nchunks, Cout·K]` and `nchunks`: M = Cout/groups, N = K taps, the
/// reduction over R = N·Ho·Wo positions split into `chunk`-long pieces.
pub(super) fn grad_weight(
    geo: &Geom,
    dy: &GpuBuf,
    x: &GpuBuf,
    chunk: usize,
) -> Result<(GpuBuf, usize)> {
    const OP: &str = "conv2d_grad_weight";
    let kt = geo.cin_g * geo.kh * geo.kw;
    let r = geo.n * geo.ho * geo.wo;
    let chunk = chunk.div_ceil(CONV_GEMM_BK) * CONV_GEMM_BK;
    let u = uniform(OP, geo, geo.cout_g, kt, r, chunk)?;
    let nchunks = u.nchunks as usize;
    let partial = dy.context().alloc_storage(nchunks * geo.cout * kt)?;
    launch(Mode::GradWeight, &u, dy, x, x, &partial, false)?;
    Ok((partial, nchunks))
}
