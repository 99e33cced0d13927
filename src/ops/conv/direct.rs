//! The register-blocked conv kernels of `shaders/conv_direct.wgsl`: forward (and stride-1
//! grad-input, as the forward pass of `dy` with the flipped, transposed kernel) and
//! grad-weight, all reading a zero-padded copy of their input so that the inner loops are
//! nothing but loads and FMAs.

use super::{index_u32, Conv2dParams, Geom};
use crate::error::Result;
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::shape::Shape;

/// Output channels per invocation of the forward kernel (`BC` in `conv_direct.wgsl`), and
/// the channel block of the packed weights and packed dy (`conv_pack.wgsl`). On lavapipe
/// every loaded component costs ~30 cycles per invocation and FMAs are nearly free, so the
/// block is as large as loads allow: the channel weights of a tap are BC/4 vec4 loads of the
/// packed weights. Measured with a scratch A/B harness (process CPU time of the 1×1 256→256
/// 32×32 N=4 forward, old and new kernels in one process, load ≈ 6–8): 4 ch × 8 px with scalar weights 2010 ms,
/// same with named vec4 accumulators 1220 ms, 16 ch × 8 px with vec4 weights 650 ms (old
/// 4 × 4 gather kernel 3000 ms); dropping 7 of the 12 loads of the 4 × 8 block cut 1220 to
/// 590 ms, i.e. the loads are the cost. On GPUs a 16 × 16 block is the classic SGEMM
/// register tile.
pub const CONV_BC: usize = 16;
/// Output pixels per invocation of the forward kernel (`BP`): 16 against 8 measured 3210 vs
/// 4230–5060 ms CPU on the 3×3 64→64 128×128 N=4 forward (same session, load ≈ 8).
pub const CONV_BP: usize = 16;
/// Taps per grad-weight invocation (`BT` in `conv_grad_weight.wgsl`): 16 against 8 measured
/// 2910 vs 3890 ms CPU on the 3×3 64→64 128×128 N=4 weight gradient (load ≈ 7).
pub const CONV_GW_BT: usize = 16;
/// Invocations per workgroup: a multiple of the 32/64 SIMD widths; each invocation already
/// owns 256 outputs, so small layers still spread over several workgroups.
pub const CONV_WG: u32 = 64;
/// Grad-weight invocations the chunking of `N·Ho` rows aims for: enough to occupy a large
/// GPU when a layer has few weights; more chunks only add partial sums to add up.
pub const CONV_GW_TARGET: usize = 8192;

/// `#[repr(C)]` mirror of `struct ConvDirectParams` in `shaders/prelude.wgsl` (28 × u32).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DirectUniform {
    pub(crate) n: u32,
    pub(crate) cin: u32,
    pub(crate) hp: u32,
    pub(crate) wp: u32,
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
    pub(crate) dh: u32,
    pub(crate) dw: u32,
    pub(crate) kt: u32,
    pub(crate) cblocks: u32,
    pub(crate) pblocks: u32,
    pub(crate) total: u32,
    pub(crate) rows: u32,
    pub(crate) nchunks: u32,
    pub(crate) ph: u32,
    pub(crate) pw: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
}

impl DirectUniform {
    fn new(geo: &Geom) -> DirectUniform {
        let u = |v: usize| v as u32; // every size was checked against u32 in `Geom::new`
        DirectUniform {
            n: u(geo.n),
            cin: u(geo.cin),
            hp: u(geo.h + 2 * geo.ph),
            wp: u(geo.w + 2 * geo.pw),
            cout: u(geo.cout),
            ho: u(geo.ho),
            wo: u(geo.wo),
            groups: u(geo.groups),
            cin_g: u(geo.cin_g),
            cout_g: u(geo.cout_g),
            kh: u(geo.kh),
            kw: u(geo.kw),
            sh: u(geo.sh),
            sw: u(geo.sw),
            dh: u(geo.dh),
            dw: u(geo.dw),
            kt: u(geo.cin_g * geo.kh * geo.kw),
            ph: u(geo.ph),
            pw: u(geo.pw),
            h: u(geo.h),
            w: u(geo.w),
            ..DirectUniform::default()
        }
    }
}

/// Launches `k` over `u.total` invocations.
fn launch(k: Kernel, u: &DirectUniform, ins: &[&GpuBuf], out: &GpuBuf) -> Result<()> {
    let k = k.with("WG", CONV_WG);
    out.context()
        .launch(&k, u, ins, &[out], groups_for(u.total as usize, CONV_WG))
}

/// `x` zero-padded by `(ph, pw)` on each side (`None` without padding: use `x` itself).
fn padded(op: &'static str, geo: &Geom, x: &GpuBuf) -> Result<Option<GpuBuf>> {
    if geo.ph == 0 && geo.pw == 0 {
        return Ok(None);
    }
    let mut u = DirectUniform::new(geo);
    let numel = geo.n * geo.cin * u.hp as usize * u.wp as usize;
    u.total = index_u32(op, numel)?;
    let out = x.context().alloc_storage(numel)?;
    launch(Kernel::new(Shader::ConvPack, "conv_pad"), &u, &[x], &out)?;
    Ok(Some(out))
}

/// `w` packed as `[groups, K, cblocks·CONV_BC]` (channel blocks zero-padded), read as
/// `conv2d_direct`'s weights; `flip` packs the flipped, transposed kernel of the grad-input
/// pass instead (`geo` then describes that pass).
fn packed_weights(op: &'static str, geo: &Geom, w: &GpuBuf, flip: bool) -> Result<GpuBuf> {
    let mut u = DirectUniform::new(geo);
    let cb = geo.cout_g.div_ceil(CONV_BC);
    let numel = geo.groups * geo.cin_g * geo.kh * geo.kw * cb * CONV_BC;
    u.cblocks = index_u32(op, cb)?;
    u.total = index_u32(op, numel)?;
    let out = w.context().alloc_storage(numel)?;
    let k = Kernel::new(Shader::ConvPack, "conv_pack").with("FLIP", u32::from(flip));
    launch(k, &u, &[w], &out)?;
    Ok(out)
}

/// `y = conv2d(x, w) + bias` from packed weights.
fn forward_packed(
    op: &'static str,
    geo: &Geom,
    x: &GpuBuf,
    wp: &GpuBuf,
    bias: Option<&GpuBuf>,
) -> Result<GpuBuf> {
    let xp = padded(op, geo, x)?;
    let xp = xp.as_ref().unwrap_or(x);
    let mut u = DirectUniform::new(geo);
    let (cb, pb) = (
        geo.cout_g.div_ceil(CONV_BC),
        (geo.n * geo.ho * geo.wo).div_ceil(CONV_BP),
    );
    u.cblocks = index_u32(op, cb)?;
    u.pblocks = index_u32(op, pb)?;
    u.total = index_u32(op, geo.groups * cb * pb)?;
    let out = x.context().alloc_storage(geo.out_shape().numel())?;
    let k = Kernel::new(Shader::ConvDirect, "conv_direct")
        .with("WG", CONV_WG)
        .with("HAS_BIAS", u32::from(bias.is_some()));
    // Without a bias, `xp` fills the unused binding (HAS_BIAS = 0 never reads it).
    out.context().launch(
        &k,
        &u,
        &[xp, wp, bias.unwrap_or(xp)],
        &[&out],
        groups_for(u.total as usize, CONV_WG),
    )?;
    Ok(out)
}

/// `y = conv2d(x, w) + bias`.
pub(super) fn forward(geo: &Geom, x: &GpuBuf, w: &GpuBuf, bias: Option<&GpuBuf>) -> Result<GpuBuf> {
    let wp = packed_weights("conv2d", geo, w, false)?;
    forward_packed("conv2d", geo, x, &wp, bias)
}

/// Whether [`grad_input`] handles `geo`: stride 1 and padding at most the dilated kernel's
/// reach (so that the correlation with the flipped kernel needs padding ≥ 0).
pub(super) fn grad_input_applies(geo: &Geom) -> bool {
    geo.sh == 1 && geo.sw == 1 && geo.ph <= geo.dh * (geo.kh - 1) && geo.pw <= geo.dw * (geo.kw - 1)
}

/// `∂x` for stride 1: `∂x = conv2d(dy, w')` with `w'[g·Cin_g + ci, co, ky, kx] =
/// w[g·Cout_g + co, ci, KH − 1 − ky, KW − 1 − kx]`, the same dilation and groups, and padding
/// `d·(K − 1) − p`.
pub(super) fn grad_input(geo: &Geom, dy: &GpuBuf, w: &GpuBuf) -> Result<GpuBuf> {
    const OP: &str = "conv2d_grad_input";
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (
            geo.dh * (geo.kh - 1) - geo.ph,
            geo.dw * (geo.kw - 1) - geo.pw,
        ),
        dilation: (geo.dh, geo.dw),
        groups: geo.groups,
    };
    let g2 = Geom::new(
        OP,
        &Shape(vec![geo.n, geo.cout, geo.ho, geo.wo]),
        &Shape(vec![geo.cin, geo.cout_g, geo.kh, geo.kw]),
        &p,
    )?;
    let wf = packed_weights(OP, &g2, w, true)?;
    forward_packed(OP, &g2, dy, &wf, None)
}

/// Partial `∂w` sums `[nchunks, Cout·K]` and `nchunks`: each chunk is a band of output rows
/// of one image.
pub(super) fn grad_weight(geo: &Geom, dy: &GpuBuf, x: &GpuBuf) -> Result<(GpuBuf, usize)> {
    const OP: &str = "conv2d_grad_weight";
    let xp = padded(OP, geo, x)?;
    let xp = xp.as_ref().unwrap_or(x);
    let kt = geo.cin_g * geo.kh * geo.kw;
    let (cb, tb) = (geo.cout_g.div_ceil(CONV_BC), kt.div_ceil(CONV_GW_BT));
    let per_chunk = geo.groups * cb * tb;
    let want = CONV_GW_TARGET.div_ceil(per_chunk * geo.n).clamp(1, geo.ho);
    let rows = geo.ho.div_ceil(want);
    let per_image = geo.ho.div_ceil(rows);
    let nchunks = geo.n * per_image;
    let mut u = DirectUniform::new(geo);
    u.cblocks = index_u32(OP, cb)?;
    u.pblocks = index_u32(OP, tb)?;
    u.total = index_u32(OP, nchunks * per_chunk)?;
    u.rows = index_u32(OP, rows)?;
    u.nchunks = index_u32(OP, per_image)?;
    let n_partial = nchunks * geo.cout * kt;
    index_u32(OP, n_partial)?;
    let ctx = dy.context();
    // dy channels-last, channel blocks zero-padded: [N, Ho·Wo, groups, cblocks·CONV_BC].
    let n_dy = geo.n * geo.ho * geo.wo * geo.groups * cb * CONV_BC;
    let mut up = u;
    up.total = index_u32(OP, n_dy)?;
    let dyp = ctx.alloc_storage(n_dy)?;
    launch(
        Kernel::new(Shader::ConvPack, "conv_pack_dy"),
        &up,
        &[dy],
        &dyp,
    )?;
    let partial = ctx.alloc_storage(n_partial)?;
    let k = Kernel::new(Shader::ConvGradWeight, "conv_direct_gw");
    launch(k, &u, &[xp, &dyp], &partial)?;
    Ok((partial, nchunks))
}
