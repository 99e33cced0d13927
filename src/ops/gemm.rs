//! The texture GEMM (`shaders/gemm_tex.wgsl`) and the packing of its operands
//! (`shaders/pack.wgsl`): the fast path of matmul (here) and of conv2d (`conv/tex.rs`).
//!
//! Operands are texel arrays ([`GpuTex`]): a contiguous tensor whose packed axis has a
//! multiple of 4 elements becomes one by a buffer → texture copy (no kernel); anything else
//! goes through a pack kernel that also zero-pads K to a multiple of 4.
//!
//! Used where [`GpuContext::texture_gemm`] holds: the kernel shares values across clusters of
//! 8 subgroup lanes (`subgroupShuffle`), so adapters with other subgroup sizes (4-lane
//! subgroups of 128-bit lavapipe) or none (the GL backend) take the storage-buffer kernels.
//!
//! Why textures: a storage load on lavapipe is a scalar loop over the SIMD lanes, a texel
//! fetch a few vector instructions (4 floats per lane), so the same register-blocked kernel
//! runs several times faster from texel arrays; the measurements are in the README ("How the
//! bars were reached", texture GEMM). On GPUs texel fetches go through the texture cache.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Arg, GpuBuf, GpuContext, GpuTex, Kernel, Shader};

/// The preferred workgroup tile (rows × columns, ROWS = 32 and ROW_CLUSTERS = 2; see
/// `tile_shape` for the others), whose rows the WIDE tiles keep; = ROWS · ROW_CLUSTERS ×
/// (8 / ROW_CLUSTERS)·cw in gemm_tex.wgsl.
pub const GEMM_TILE: (usize, usize) = (64, 128);

/// The workgroup tile for a product of `m` rows and `n` columns: `(ROWS, ROW_CLUSTERS)` of
/// gemm_tex.wgsl and the tile's rows and columns (without WIDE). A workgroup's 8 clusters of
/// 32 rows × 32 columns (16 × 32 with ROWS = 16, A k-packed only) stack 1, 2, 4 or 8 high:
/// 32 × 256, 64 × 128, 128 × 64 or 256 × 32, whichever pads the product least (ties to the
/// squarer tile). So a layer of few channels does not compute 64-row tiles that are mostly
/// padding, nor a product of few columns (the pixels of a small map, the tiles of a
/// Winograd product) 128-column ones.
pub(crate) fn tile_shape(m: usize, n: usize, a_kpacked: bool) -> (u32, u32, usize, usize) {
    let mut shapes = vec![(32, 2), (32, 4), (32, 1), (32, 8)];
    if a_kpacked {
        shapes.push((16, 1));
    }
    let area = |&(rows, rc): &(u32, u32)| {
        let (tm, tn) = ((rows * rc) as usize, (8 / rc) as usize * 32);
        m.div_ceil(tm) * tm * n.div_ceil(tn) * tn
    };
    // The first of equal areas wins: the list is in order of preference.
    let best = shapes
        .iter()
        .copied()
        .reduce(|a, b| if area(&b) < area(&a) { b } else { a })
        .unwrap_or((32, 2));
    let (rows, rc) = best;
    (rows, rc, (rows * rc) as usize, (8 / rc) as usize * 32)
}
/// Columns per workgroup of the WIDE variant (8 columns per lane).
pub const GEMM_WIDE_N: usize = 256;

/// `#[repr(C)]` mirror of `struct GemmParams` in `shaders/gemm_tex.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub kq: u32,
    pub batch: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub splits: u32,
    pub k: u32,
    pub a_row: u32,
    pub a_k: u32,
    pub a_batch: u32,
    pub taps: u32,
    pub b_col: u32,
    pub b_k: u32,
    pub b_batch: u32,
    pub kw: u32,
    pub c4: u32,
    pub h: u32,
    pub w: u32,
    pub cin: u32,
    pub ho: u32,
    pub wo: u32,
    pub rows_per_split: u32,
    pub rows: u32,
    pub sy: i32,
    pub sx: i32,
    pub ty: i32,
    pub tx: i32,
    pub oy: i32,
    pub ox: i32,
    /// OUT_MODE 2: taps of the whole kernel (the partials' tap axis; `taps` may be a
    /// sub-grid of it, see `ky0` …).
    pub taps_full: u32,
    pub _p1: u32,
    pub ky0: u32,
    pub kys: u32,
    pub kx0: u32,
    pub kxs: u32,
    pub kw_full: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub out_y0: u32,
    pub out_sy: u32,
    pub out_x0: u32,
    pub out_sx: u32,
    pub _p2: u32,
}

/// `#[repr(C)]` mirror of `struct PackParams` in `shaders/pack.wgsl` (field meanings per
/// entry point are documented there).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PackParams {
    pub total: u32,
    pub dim0: u32,
    pub dim1: u32,
    pub dim2: u32,
    pub stride0: u32,
    pub stride1: u32,
    pub stride2: u32,
    pub limit: u32,
    /// pack_im2col only: the input plane and the window (as `GemmParams`' fields).
    pub h: u32,
    pub w: u32,
    pub sy: i32,
    pub sx: i32,
    pub ty: i32,
    pub tx: i32,
    pub oy: i32,
    pub ox: i32,
}

/// How the GEMM reads an operand (the A_MODE / B_MODE override values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Texels hold 4 consecutive K values of one row (A) or column (B).
    KPacked,
    /// Texels hold 4 consecutive rows (A) or columns (B) at one K.
    Packed4,
    /// Conv implicit im2col over a channel-packed atlas (B only).
    ConvAtlas,
    /// Conv grad-weight: the atlas at a tap's offset, K over output pixels (B only).
    ConvGradWeight,
}

impl Layout {
    fn code(self) -> u32 {
        match self {
            Layout::KPacked => 0,
            Layout::Packed4 => 1,
            Layout::ConvAtlas => 2,
            Layout::ConvGradWeight => 3,
        }
    }
}

/// `v` as a u32 kernel index, or a limit error naming `op`.
pub(crate) fn u32_of(op: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit {
        what: format!("{op}: sizes and strides"),
        requested: v as u64,
        max: u64::from(u32::MAX),
    })
}

/// Whether `texels` fit in one texel array on this device.
pub(crate) fn fits(ctx: &GpuContext, texels: usize) -> bool {
    (texels as u64).div_ceil(u64::from(crate::gpu::TEX_WIDTH)) <= u64::from(ctx.max_texel_rows())
        && u32::try_from(texels).is_ok()
}

/// The first `texels` texels of a buffer as a texel array (a copy, no kernel).
pub(crate) fn copy_texels(buf: &GpuBuf, texels: usize) -> Result<GpuTex> {
    let ctx = buf.context();
    let t = ctx.alloc_texels(texels as u64)?;
    ctx.copy_to_texels(buf, &t)?;
    Ok(t)
}

/// Runs pack.wgsl's `entry` over `p.total` texels of a fresh texel array.
pub(crate) fn pack(src: &GpuBuf, entry: &'static str, p: &PackParams) -> Result<GpuTex> {
    pack_texels(src, entry, p, p.total as usize)
}

/// Runs pack.wgsl's `entry` over `p.total` invocations into a fresh array of `texels`
/// texels (the vec4 entries write 4 texels per invocation).
pub(crate) fn pack_texels(
    src: &GpuBuf,
    entry: &'static str,
    p: &PackParams,
    texels: usize,
) -> Result<GpuTex> {
    let ctx = src.context();
    let t = ctx.alloc_texels(texels as u64)?;
    ctx.launch_args(
        &Kernel::new(Shader::Pack, entry),
        p,
        &[Arg::In(src), Arg::TexelsOut(&t)],
        u64::from(p.total).div_ceil(64),
    )?;
    Ok(t)
}

/// Runs pack.wgsl's two-layout `entry` (`pack_dy`, `pack_dy4`, `pack_weights2`) over
/// `p.total` invocations into fresh texel arrays of `texels.0` and `texels.1` texels.
pub(crate) fn pack2(
    src: &GpuBuf,
    entry: &'static str,
    p: &PackParams,
    texels: (usize, usize),
) -> Result<(GpuTex, GpuTex)> {
    let ctx = src.context();
    let a = ctx.alloc_texels(texels.0 as u64)?;
    let b = ctx.alloc_texels(texels.1 as u64)?;
    ctx.launch_args(
        &Kernel::new(Shader::Pack, entry),
        p,
        &[Arg::In(src), Arg::TexelsOut(&a), Arg::TexelsOut(&b)],
        u64::from(p.total).div_ceil(64),
    )?;
    Ok((a, b))
}

/// Records one GEMM of `p.batch × p.tiles_m × p.tiles_n × p.splits` workgroups into `out`.
pub(crate) fn launch(
    ctx: &Arc<GpuContext>,
    p: &GemmParams,
    a: (&GpuTex, Layout),
    b: (&GpuTex, Layout),
    bias: Option<&GpuBuf>,
    out_mode: u32,
    out: &GpuBuf,
) -> Result<()> {
    let placeholder = ctx.alloc_texels(1)?;
    launch_into(ctx, p, a, b, bias, out_mode, (out, &placeholder))
}

/// [`launch`] with B k-packed into a texel array of OUT_MODE 3 (see gemm_tex.wgsl): texel
/// `(b·m + row)·out_w + (col/32)·8 + col%8` holds columns col + 8j (j = 0..3) of a row,
/// `out_w = 8·ceil(n/32)` (set here). The array needs `batch·m·out_w` texels.
pub(crate) fn launch_to_texels(
    ctx: &Arc<GpuContext>,
    p: &GemmParams,
    a: (&GpuTex, Layout),
    b: &GpuTex,
    out: &GpuTex,
) -> Result<()> {
    let mut p = *p;
    p.out_w = u32_of("gemm", texels_per_row(p.n as usize))?;
    let dummy = ctx.alloc_storage(1)?;
    launch_into(ctx, &p, a, (b, Layout::KPacked), None, 3, (&dummy, out))
}

/// Texels per output row of OUT_MODE 3 for `n` columns.
pub(crate) fn texels_per_row(n: usize) -> usize {
    8 * n.div_ceil(32)
}

fn launch_into(
    ctx: &Arc<GpuContext>,
    p: &GemmParams,
    (a, a_mode): (&GpuTex, Layout),
    (b, b_mode): (&GpuTex, Layout),
    bias: Option<&GpuBuf>,
    out_mode: u32,
    (out, out_tex): (&GpuBuf, &GpuTex),
) -> Result<()> {
    let four_packed = a_mode == Layout::Packed4 || b_mode == Layout::Packed4;
    let info = ctx.adapter_info();
    // WIDE (8 columns per lane) on CPU adapters, where accumulators spill to cache anyway,
    // for products with at least one wide tile of columns.
    let wide = b_mode == Layout::Packed4 && ctx.cpu_variants() && p.n as usize >= GEMM_WIDE_N;
    let mut p = *p;
    let (rows, row_clusters, tile_m, tile_n) = if wide {
        (32, 2, GEMM_TILE.0, GEMM_WIDE_N)
    } else {
        tile_shape(p.m as usize, p.n as usize, a_mode == Layout::KPacked)
    };
    p.tiles_m = u32_of("gemm", (p.m as usize).div_ceil(tile_m))?;
    p.tiles_n = u32_of("gemm", (p.n as usize).div_ceil(tile_n))?;
    let p = &p;
    let entry = match (b_mode, out_mode) {
        (Layout::ConvGradWeight, _) | (_, 2) => "conv_grad_weight",
        (Layout::KPacked | Layout::Packed4, _) => "matmul",
        (Layout::ConvAtlas, _) => "conv",
    };
    // 2·M·N·K per batch entry (grad-weight: K over all bands).
    let flops = 2 * u64::from(p.m) * u64::from(p.n) * u64::from(p.k) * u64::from(p.batch.max(1));
    let k = Kernel::new(Shader::GemmTex, entry)
        .with_flops(flops)
        .with("A_MODE", a_mode.code())
        .with("B_MODE", b_mode.code())
        .with("OUT_MODE", out_mode)
        .with("HAS_BIAS", u32::from(bias.is_some()))
        .with("K_TAIL", u32::from(four_packed && p.k % 4 != 0))
        .with("WIDE", u32::from(wide))
        .with("ROWS", rows)
        .with("ROW_CLUSTERS", row_clusters)
        .with(
            "SUBGROUP_IS_CLUSTER",
            u32::from(info.subgroup_min_size == 8 && info.subgroup_max_size == 8),
        );
    let groups = u64::from(p.batch)
        * u64::from(p.tiles_m)
        * u64::from(p.tiles_n)
        * u64::from(p.splits.max(1));
    // Without a bias, a one-element dummy fills the bias binding (the output cannot: a
    // buffer may not be bound read-only and writable in one dispatch).
    let mut slot = None;
    let bias = or_dummy(ctx, bias, &mut slot)?;
    ctx.launch_args(
        &k,
        p,
        &[
            Arg::Texels(a),
            Arg::Texels(b),
            Arg::In(bias),
            Arg::Out(out),
            Arg::TexelsOut(out_tex),
        ],
        groups,
    )
}

/// `buf`, or a one-element dummy kept in `slot` for a binding a kernel declares but does not
/// read in this launch (an absent bias).
pub(crate) fn or_dummy<'a>(
    ctx: &Arc<GpuContext>,
    buf: Option<&'a GpuBuf>,
    slot: &'a mut Option<GpuBuf>,
) -> Result<&'a GpuBuf> {
    match buf {
        Some(b) => Ok(b),
        None => Ok(slot.insert(ctx.alloc_storage(1)?)),
    }
}

/// Tiles of the output for `m` rows and `n` columns with A k-packed ([`launch`] sets the
/// final count from the tile it picks).
pub(crate) fn tiles(op: &str, m: usize, n: usize) -> Result<(u32, u32)> {
    let (_, _, tm, tn) = tile_shape(m, n, true);
    Ok((u32_of(op, m.div_ceil(tm))?, u32_of(op, n.div_ceil(tn))?))
}
