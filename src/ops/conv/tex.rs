//! conv2d on the texture GEMM (`shaders/gemm_tex.wgsl`, see `src/ops/gemm.rs`) for
//! ungrouped layers: forward and stride-1 grad-input as implicit-im2col GEMMs over a
//! channel-packed copy of the input (`pack_atlas`), grad-weight as a GEMM over the output
//! pixels with K split into bands of rows whose partial sums the caller adds.
//!
//! GEMM shapes: forward `[Cout] × [N·Ho·Wo]` over K = taps × Cin; grad-input `[Cin] ×
//! [N·H·W]` over taps × Cout (reading dy at `y + ph − ky·dh`, the transposed kernel packed
//! by `pack_weights`); grad-weight `[Cout] × [taps × Cin]` over N·Ho·Wo.

use super::Geom;
use crate::error::Result;
use crate::gpu::{GpuBuf, GpuContext, GpuTex};
use crate::ops::gemm::{self, GemmParams, Layout, PackParams};

/// Workgroups the grad-weight split aims for: rows of the output are cut into bands until
/// the GEMM has this many workgroups (both lavapipe threads and a GPU's cores busy).
pub const GW_TARGET_WORKGROUPS: usize = 64;

const OP: &str = "conv2d";

fn u(v: usize) -> Result<u32> {
    gemm::u32_of(OP, v)
}

/// Whether the texture GEMM takes this layer (ungrouped, texel arrays within limits).
pub(super) fn applies(ctx: &GpuContext, geo: &Geom) -> bool {
    let taps = geo.kh * geo.kw;
    let (c4i, c4o) = (geo.cin.div_ceil(4), geo.cout.div_ceil(4));
    ctx.texture_gemm()
        && geo.groups == 1
        && gemm::fits(ctx, geo.n * c4i * geo.h * geo.w)
        && gemm::fits(ctx, geo.n * c4o * geo.ho * geo.wo)
        && gemm::fits(ctx, geo.cout * geo.n * geo.ho * geo.wo.div_ceil(4))
        && gemm::fits(ctx, geo.cout.max(geo.cin) * taps * c4i.max(c4o))
}

/// `x [n, c, hw]` channel-packed: texel `(img·c4 + q)·hw + pixel`.
fn atlas(x: &GpuBuf, n: usize, c: usize, hw: usize) -> Result<GpuTex> {
    let c4 = c.div_ceil(4);
    let p = PackParams {
        total: u(n * c4 * hw)?,
        dim0: u(c4)?,
        dim1: u(hw)?,
        limit: u(c)?,
        ..PackParams::default()
    };
    gemm::pack(x, "pack_atlas", &p)
}

/// Weights as GEMM rows: `rows` rows of `taps × ceil(chans/4)` texels, element
/// `(row, chan, tap)` at `row·sr + chan·sc + tap`.
fn weights(
    w: &GpuBuf,
    rows: usize,
    chans: usize,
    taps: usize,
    sr: usize,
    sc: usize,
) -> Result<GpuTex> {
    let c4 = chans.div_ceil(4);
    let p = PackParams {
        total: u(rows * taps * c4)?,
        dim0: u(taps)?,
        dim1: u(c4)?,
        stride0: u(sr)?,
        stride1: u(sc)?,
        stride2: 1,
        limit: u(chans)?,
        ..PackParams::default()
    };
    gemm::pack(w, "pack_weights", &p)
}

/// Parameters shared by the three GEMMs: the kernel window over an atlas of `h × w`
/// planes with `c4` channel texels, read at `(y·sy + ky·ty + oy, x·sx + kx·tx + ox)` for
/// output pixel `(y, x)` of an `ho × wo` grid.
#[allow(clippy::too_many_arguments)]
fn window(
    geo: &Geom,
    c4: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    s: (i64, i64),
    t: (i64, i64),
    o: (i64, i64),
) -> Result<GemmParams> {
    let i = |v: i64| {
        i32::try_from(v).map_err(|_| crate::error::Error::Limit {
            what: format!("{OP}: strides and offsets"),
            requested: v.unsigned_abs(),
            max: i32::MAX as u64,
        })
    };
    Ok(GemmParams {
        batch: 1,
        splits: 1,
        taps: u(geo.kh * geo.kw)?,
        kw: u(geo.kw)?,
        c4: u(c4)?,
        h: u(h)?,
        w: u(w)?,
        ho: u(ho)?,
        wo: u(wo)?,
        sy: i(s.0)?,
        sx: i(s.1)?,
        ty: i(t.0)?,
        tx: i(t.1)?,
        oy: i(o.0)?,
        ox: i(o.1)?,
        ..GemmParams::default()
    })
}

/// `y = conv2d(x, w) + bias`.
pub(super) fn forward(geo: &Geom, x: &GpuBuf, w: &GpuBuf, bias: Option<&GpuBuf>) -> Result<GpuBuf> {
    let ctx = x.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cin.div_ceil(4);
    let wt = weights(w, geo.cout, geo.cin, taps, geo.cin * taps, taps)?;
    let xt = atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
    let mut p = window(
        geo,
        c4,
        geo.h,
        geo.w,
        geo.ho,
        geo.wo,
        (geo.sh as i64, geo.sw as i64),
        (geo.dh as i64, geo.dw as i64),
        (-(geo.ph as i64), -(geo.pw as i64)),
    )?;
    let cols = geo.n * geo.ho * geo.wo;
    p.m = u(geo.cout)?;
    p.n = u(cols)?;
    p.kq = u(taps * c4)?;
    p.k = u(4 * taps * c4)?;
    p.a_row = u(taps * c4)?;
    (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cout, cols)?;
    let out = ctx.alloc_storage(geo.n * geo.cout * geo.ho * geo.wo)?;
    gemm::launch(
        ctx,
        &p,
        (&wt, Layout::KPacked),
        (&xt, Layout::ConvAtlas),
        bias,
        1,
        &out,
    )?;
    Ok(out)
}

/// Whether [`grad_input`] takes this layer: stride 1 (the gather of a strided layer's
/// gradient is not an affine window).
pub(super) fn grad_input_applies(ctx: &GpuContext, geo: &Geom) -> bool {
    applies(ctx, geo) && geo.sh == 1 && geo.sw == 1
}

/// `∂x` of a stride-1 layer: `∂x[ci, y, x] = Σ_{co, ky, kx} w[co, ci, ky, kx] ·
/// dy[co, y + ph − ky·dh, x + pw − kx·dw]` (zero outside dy).
pub(super) fn grad_input(geo: &Geom, dy: &GpuBuf, w: &GpuBuf) -> Result<GpuBuf> {
    let ctx = dy.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cout.div_ceil(4);
    // Rows ci, channels co of w [co, ci, tap].
    let wt = weights(w, geo.cin, geo.cout, taps, taps, geo.cin * taps)?;
    let dt = atlas(dy, geo.n, geo.cout, geo.ho * geo.wo)?;
    let mut p = window(
        geo,
        c4,
        geo.ho,
        geo.wo,
        geo.h,
        geo.w,
        (1, 1),
        (-(geo.dh as i64), -(geo.dw as i64)),
        (geo.ph as i64, geo.pw as i64),
    )?;
    let cols = geo.n * geo.h * geo.w;
    p.m = u(geo.cin)?;
    p.n = u(cols)?;
    p.kq = u(taps * c4)?;
    p.k = u(4 * taps * c4)?;
    p.a_row = u(taps * c4)?;
    (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cin, cols)?;
    let out = ctx.alloc_storage(geo.n * geo.cin * geo.h * geo.w)?;
    gemm::launch(
        ctx,
        &p,
        (&wt, Layout::KPacked),
        (&dt, Layout::ConvAtlas),
        None,
        1,
        &out,
    )?;
    Ok(out)
}

/// Partial `∂w` sums `[splits, Cout·Cin·KH·KW]` and `splits` (bands of output rows).
pub(super) fn grad_weight(geo: &Geom, dy: &GpuBuf, x: &GpuBuf) -> Result<(GpuBuf, usize)> {
    let ctx = dy.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cin.div_ceil(4);
    let wq = geo.wo.div_ceil(4);
    let rows = geo.n * geo.ho;
    // dy as rows of pixel-packed texels per output channel.
    let pp = PackParams {
        total: u(geo.cout * rows * wq)?,
        dim0: u(geo.cout)?,
        dim1: u(geo.ho)?,
        dim2: u(wq)?,
        stride0: u(geo.n)?,
        limit: u(geo.wo)?,
        ..PackParams::default()
    };
    let dt = gemm::pack(dy, "pack_pixels", &pp)?;
    let xt = atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
    let mut p = window(
        geo,
        c4,
        geo.h,
        geo.w,
        geo.ho,
        geo.wo,
        (geo.sh as i64, geo.sw as i64),
        (geo.dh as i64, geo.dw as i64),
        (-(geo.ph as i64), -(geo.pw as i64)),
    )?;
    let cols = taps * 4 * c4;
    p.m = u(geo.cout)?;
    p.n = u(cols)?;
    p.cin = u(geo.cin)?;
    p.a_row = u(rows * wq)?;
    p.kq = u(rows * wq)?;
    p.k = u(4 * rows * wq)?;
    p.rows = u(rows)?;
    (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cout, cols)?;
    let tiles = p.tiles_m as usize * p.tiles_n as usize;
    let splits = GW_TARGET_WORKGROUPS.div_ceil(tiles).clamp(1, rows);
    let per = rows.div_ceil(splits);
    let splits = rows.div_ceil(per);
    p.splits = u(splits)?;
    p.rows_per_split = u(per)?;
    let out = ctx.alloc_storage(splits * geo.cout * geo.cin * taps)?;
    gemm::launch(
        ctx,
        &p,
        (&dt, Layout::KPacked),
        (&xt, Layout::ConvGradWeight),
        None,
        2,
        &out,
    )?;
    Ok((out, splits))
}
