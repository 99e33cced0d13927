//! conv2d on the texture GEMM (`shaders/gemm_tex.wgsl`, see `src/ops/gemm.rs`) for
//! ungrouped layers: forward and grad-input (any stride: one GEMM per output phase) as
//! implicit-im2col GEMMs over a channel-packed copy of the input (`pack_atlas`), grad-weight
//! as a GEMM over the output pixels with K split into bands of rows whose partial sums the
//! caller adds.
//!
//! GEMM shapes: forward `[Cout] × [N·Ho·Wo]` over K = taps × Cin; grad-input `[Cin] ×
//! [N·H·W]` over taps × Cout (reading dy at `y + ph − ky·dh`, the transposed kernel packed
//! by `pack_weights`); grad-weight `[Cout] × [taps × Cin]` over N·Ho·Wo. "taps" are those
//! that read at least one input pixel (`reaching_taps`, `trim_phase`): a dilated kernel
//! on a map smaller than its reach skips the taps that read only padding.

use super::Geom;
use crate::error::Result;
use crate::gpu::{Arg, GpuBuf, GpuContext, GpuTex, Kernel, Shader};
use crate::ops::gemm::{self, GemmParams, Layout, PackParams};

/// Workgroups the grad-weight split aims for on a GPU: rows of the output are cut into bands
/// until the GEMM has this many workgroups (a GPU's cores busy). Every band writes a partial
/// `∂w` that a reduction pass adds up, so more bands cost memory traffic.
pub const GW_TARGET_WORKGROUPS: usize = 64;
/// The same on CPU adapters (lavapipe), whose few worker threads are kept busy by far fewer
/// workgroups: 16 keeps two threads within 1/16 of each other while writing and adding 4×
/// fewer partial sums.
pub const GW_TARGET_WORKGROUPS_CPU: usize = 16;
/// K steps (4 output pixels each) a grad-weight band gets at least: a band's partial sums
/// are written and added again, which is not worth it for a few K steps (a dilated layer
/// on a small map, with the taps that read only padding left out).
pub const GW_MIN_K_STEPS: usize = 32;
/// Multiply-adds a grad-weight band does at least per partial sum it writes (each is
/// written, cleared where taps are left out, and added again): a product that is small for
/// its kernel (an ASPP branch on the 6 × 6 map, one tap of nine reaching the input: about
/// 43 per partial) stays in one band, while layers with every tap reaching (hundreds per
/// partial in `tiny` and `small`) keep theirs, which they need to keep the worker threads
/// busy (256 also merged `tiny`'s 6 × 6 layers into one band of 5 workgroups each: the
/// step ran 15 % slower). 2026-12-07: `small`'s three ASPP branches went from 3 bands each
/// to 1 (the profile's `reduce_lanes` 11 → 2 ms; the whole step within noise, 24 paired
/// steps: 0.99× small, 1.01× tiny).
pub const GW_MACS_PER_PARTIAL: usize = 64;
/// Largest explicit im2col matrix (texels) that grad-weight builds for a layer whose output
/// rows are not a multiple of 4 pixels wide (`grad_weight_im2col`): 32 MiB.
pub const GW_IM2COL_MAX_TEXELS: usize = 1 << 21;
/// Smallest grad-weight product (multiply-adds, Cout × taps·Cin × output pixels) that takes
/// the im2col path: it costs two more passes (dy's rows and the im2col matrix) to save the
/// padding of K, which pays on `small`'s 6 × 6 layers of 128 and 256 channels (42M and
/// 170M multiply-adds: grad-weight 82 → 53 ms per step, the packs 9 ms) but not on `tiny`'s
/// of 64 (11M: no gain in the product, 3 ms of packs); the profiles of 2026-12-07.
pub const GW_IM2COL_MIN_MACS: usize = 1 << 25;

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
/// Planes of a multiple of 4 values are read as vec4, 4 pixels per invocation.
pub(super) fn atlas(x: &GpuBuf, n: usize, c: usize, hw: usize) -> Result<GpuTex> {
    let c4 = c.div_ceil(4);
    let (entry, per) = if hw % 4 == 0 {
        ("pack_atlas4", 4)
    } else {
        ("pack_atlas", 1)
    };
    let p = PackParams {
        total: u(n * c4 * hw / per)?,
        dim0: u(c4)?,
        dim1: u(hw)?,
        limit: u(c)?,
        ..PackParams::default()
    };
    gemm::pack_texels(x, entry, &p, n * c4 * hw)
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
        kys: 1,
        kxs: 1,
        kw_full: u(geo.kw)?,
        taps_full: u(geo.kh * geo.kw)?,
        out_h: u(ho)?,
        out_w: u(wo)?,
        out_sy: 1,
        out_sx: 1,
        ..GemmParams::default()
    })
}

/// The taps of one kernel dimension (size `k`, dilation `d`, padding `pad`, stride `s`)
/// that reach grad-input pixels of phase `phase` (pixels `phase + s·j`): the first tap,
/// the tap step, the count, and the dy offset and step — dy index `j + off + t·step` for
/// the `t`-th of them. `None` when no tap reaches the phase.
fn phase_taps(
    phase: usize,
    pad: usize,
    d: usize,
    s: usize,
    k: usize,
) -> Option<(usize, usize, usize, i64, i64)> {
    let (phase, pad, d, s) = (phase as i64, pad as i64, d as i64, s as i64);
    // (phase + pad − k0·d) must be a multiple of s; taps repeat every s / gcd(d, s).
    let k0 = (0..s.min(k as i64)).find(|k0| (phase + pad - k0 * d).rem_euclid(s) == 0)?;
    let g = gcd(d, s);
    let step = s / g;
    let count = (k as i64 - k0 + step - 1) / step;
    Some((
        k0 as usize,
        step as usize,
        count as usize,
        (phase + pad - k0 * d) / s,
        -(d / g),
    ))
}

/// A phase's taps ([`phase_taps`]) without those that read dy only outside its `len` pixels
/// for all the phase's `out` pixels (dy index `j + off + t·step`, `j` in `[0, out)`): they
/// add exact zeros (the outer taps of a dilated kernel on a small map). Unchanged when
/// none reaches dy.
fn trim_phase(
    (k0, step, count, off, dstep): (usize, usize, usize, i64, i64),
    out: usize,
    len: usize,
) -> (usize, usize, usize, i64, i64) {
    let reaches = |t: usize| {
        let a = off + t as i64 * dstep;
        a < (len as i64) && a + out as i64 > 0
    };
    match (
        (0..count).find(|&t| reaches(t)),
        (0..count).rev().find(|&t| reaches(t)),
    ) {
        (Some(first), Some(last)) => (
            k0 + first * step,
            step,
            last + 1 - first,
            off + first as i64 * dstep,
            dstep,
        ),
        _ => (k0, step, count, off, dstep),
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The taps of one kernel dimension (size `k`, dilation `d`, padding `pad`, stride `s`,
/// `out` output and `len` input pixels) that read at least one pixel inside the input: the
/// first and the count, a range that holds every such tap (taps of a dilated kernel that
/// only ever read padding, as the outer taps of an ASPP branch on a small feature map, add
/// exact zeros and are skipped). `None` when no tap reads the input.
pub(super) fn reaching_taps(
    k: usize,
    d: usize,
    pad: usize,
    s: usize,
    out: usize,
    len: usize,
) -> Option<(usize, usize)> {
    let reaches = |t: usize| {
        // Input positions a + j·s, j in [0, out): is one of them in [0, len)?
        let a = (t * d) as i64 - pad as i64;
        let j = if a >= 0 {
            0
        } else {
            (a.unsigned_abs()).div_ceil(s as u64) as i64
        };
        j < out as i64 && a + j * (s as i64) < (len as i64)
    };
    let first = (0..k).find(|&t| reaches(t))?;
    let last = (0..k).rev().find(|&t| reaches(t))?;
    Some((first, last + 1 - first))
}

/// The forward window (also grad-weight's): x's atlas read at `(y·sh + ky·dh − ph,
/// x·sw + kx·dw − pw)` for output pixel `(y, x)`, over the taps that reach the input
/// ([`reaching_taps`]; all of them if none does).
fn forward_window(geo: &Geom) -> Result<GemmParams> {
    let rows = reaching_taps(geo.kh, geo.dh, geo.ph, geo.sh, geo.ho, geo.h);
    let cols = reaching_taps(geo.kw, geo.dw, geo.pw, geo.sw, geo.wo, geo.w);
    let ((ky0, nky), (kx0, nkx)) = match (rows, cols) {
        (Some(r), Some(c)) => (r, c),
        _ => ((0, geo.kh), (0, geo.kw)),
    };
    let mut p = window(
        geo,
        geo.cin.div_ceil(4),
        geo.h,
        geo.w,
        geo.ho,
        geo.wo,
        (geo.sh as i64, geo.sw as i64),
        (geo.dh as i64, geo.dw as i64),
        (
            (ky0 * geo.dh) as i64 - geo.ph as i64,
            (kx0 * geo.dw) as i64 - geo.pw as i64,
        ),
    )?;
    p.taps = u(nky * nkx)?;
    p.kw = u(nkx)?;
    (p.ky0, p.kx0) = (u(ky0)?, u(kx0)?);
    Ok(p)
}

/// The weights in both GEMM layouts, one pass: the forward's (rows co, channels ci) and
/// grad-input's (rows ci, channels co).
fn weights_both(geo: &Geom, w: &GpuBuf) -> Result<(GpuTex, GpuTex)> {
    let taps = geo.kh * geo.kw;
    let (c4i, c4o) = (geo.cin.div_ceil(4), geo.cout.div_ceil(4));
    let p = PackParams {
        total: u(c4o * c4i * taps)?,
        dim0: u(taps)?,
        dim1: u(c4i)?,
        dim2: u(c4o)?,
        stride0: u(geo.cout)?,
        limit: u(geo.cin)?,
        ..PackParams::default()
    };
    gemm::pack2(
        w,
        "pack_weights2",
        &p,
        (geo.cout * taps * c4i, geo.cin * taps * c4o),
    )
}

/// `dy` in both layouts its gradients read, one pass: grad-input's atlas and grad-weight's
/// pixel rows.
pub(super) fn dy_both(geo: &Geom, dy: &GpuBuf) -> Result<(GpuTex, GpuTex)> {
    let c4 = geo.cout.div_ceil(4);
    let wq = geo.wo.div_ceil(4);
    let p = PackParams {
        total: u(geo.n * c4 * geo.ho * wq)?,
        dim0: u(c4)?,
        dim1: u(geo.ho)?,
        dim2: u(wq)?,
        stride0: u(geo.n)?,
        stride1: u(geo.wo)?,
        limit: u(geo.cout)?,
        ..PackParams::default()
    };
    // Rows of a multiple of 4 values are read as vec4.
    let entry = if geo.wo % 4 == 0 {
        "pack_dy4"
    } else {
        "pack_dy"
    };
    gemm::pack2(
        dy,
        entry,
        &p,
        (geo.n * c4 * geo.ho * geo.wo, geo.cout * geo.n * geo.ho * wq),
    )
}

/// What the forward keeps for the backward: x's atlas and, when `transposed` was asked for,
/// the weights in grad-input's layout (packed in the same pass as the forward's).
pub(crate) struct Packed {
    pub(crate) atlas: GpuTex,
    pub(crate) wt: Option<GpuTex>,
}

/// `y = conv2d(x, w) + bias`, and what grad-input and grad-weight read again: x's atlas and,
/// with `transposed`, the weights in grad-input's layout.
pub(super) fn forward(
    geo: &Geom,
    x: &GpuBuf,
    w: &GpuBuf,
    bias: Option<&GpuBuf>,
    transposed: bool,
) -> Result<(GpuBuf, Packed)> {
    let ctx = x.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cin.div_ceil(4);
    let (wt, wt_t) = if transposed {
        let (a, b) = weights_both(geo, w)?;
        (a, Some(b))
    } else {
        (
            weights(w, geo.cout, geo.cin, taps, geo.cin * taps, taps)?,
            None,
        )
    };
    let xt = atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
    let mut p = forward_window(geo)?;
    let cols = geo.n * geo.ho * geo.wo;
    p.m = u(geo.cout)?;
    p.n = u(cols)?;
    p.kq = p.taps * u(c4)?;
    p.k = 4 * p.kq;
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
    Ok((
        out,
        Packed {
            atlas: xt,
            wt: wt_t,
        },
    ))
}

/// `∂x[ci, y, x] = Σ_{co, ky, kx} w[co, ci, ky, kx] · dy[co, (y + ph − ky·dh)/sh,
/// (x + pw − kx·dw)/sw]` over the taps where both divisions are exact and inside dy. At
/// stride 1 that is one GEMM; at stride s it is one GEMM per output phase (y mod sh,
/// x mod sw), each over its own pixels and only the taps that reach them (a gather over all
/// taps with masks would do s² times the work; the README's results give the 3×3 stride-2
/// layer's timings before and after, `cargo bench -- "stride 2"`).
pub(super) fn grad_input(geo: &Geom, dy: &GpuBuf, w: &GpuBuf) -> Result<GpuBuf> {
    let taps = geo.kh * geo.kw;
    // Rows ci, channels co of w [co, ci, tap].
    let wt = weights(w, geo.cin, geo.cout, taps, taps, geo.cin * taps)?;
    let dt = atlas(dy, geo.n, geo.cout, geo.ho * geo.wo)?;
    grad_input_packed(geo, &dt, &wt)
}

/// [`grad_input`] from dy's atlas `dt` and the weights in grad-input's layout `wt`.
fn grad_input_packed(geo: &Geom, dt: &GpuTex, wt: &GpuTex) -> Result<GpuBuf> {
    let ctx = dt.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cout.div_ceil(4);
    let out = ctx.alloc_storage(geo.n * geo.cin * geo.h * geo.w)?;
    if geo.sh > 1 || geo.sw > 1 {
        // Pixels of phases that no tap reaches stay zero.
        ctx.clear(&out)?;
    }
    for py in 0..geo.sh.min(geo.h) {
        for px in 0..geo.sw.min(geo.w) {
            let (Some(ty), Some(tx)) = (
                phase_taps(py, geo.ph, geo.dh, geo.sh, geo.kh),
                phase_taps(px, geo.pw, geo.dw, geo.sw, geo.kw),
            ) else {
                continue;
            };
            let (rows, cols) = ((geo.h - py).div_ceil(geo.sh), (geo.w - px).div_ceil(geo.sw));
            let (ty, tx) = (trim_phase(ty, rows, geo.ho), trim_phase(tx, cols, geo.wo));
            let mut p = window(
                geo,
                c4,
                geo.ho,
                geo.wo,
                rows,
                cols,
                (1, 1),
                (ty.4, tx.4),
                (ty.3, tx.3),
            )?;
            p.taps = u(ty.2 * tx.2)?;
            p.kw = u(tx.2)?;
            (p.ky0, p.kys, p.kx0, p.kxs) = (u(ty.0)?, u(ty.1)?, u(tx.0)?, u(tx.1)?);
            (p.out_h, p.out_w) = (u(geo.h)?, u(geo.w)?);
            (p.out_y0, p.out_sy, p.out_x0, p.out_sx) = (u(py)?, u(geo.sh)?, u(px)?, u(geo.sw)?);
            let n = geo.n * rows * cols;
            p.m = u(geo.cin)?;
            p.n = u(n)?;
            p.kq = p.taps * u(c4)?;
            p.k = 4 * p.kq;
            p.a_row = u(taps * c4)?;
            (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cin, n)?;
            gemm::launch(
                ctx,
                &p,
                (wt, Layout::KPacked),
                (dt, Layout::ConvAtlas),
                None,
                1,
                &out,
            )?;
        }
    }
    Ok(out)
}

/// Partial `∂w` sums `[splits, Cout·Cin·KH·KW]` and `splits` (bands of output rows). `atlas`:
/// x's atlas as the forward built it, when the caller kept it (else it is packed again).
pub(super) fn grad_weight(
    geo: &Geom,
    dy: &GpuBuf,
    x: &GpuBuf,
    atlas: Option<&GpuTex>,
) -> Result<(GpuBuf, usize)> {
    if im2col_applies(geo) {
        let packed;
        let xt = match atlas {
            Some(t) => t,
            None => {
                packed = self::atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
                &packed
            }
        };
        return grad_weight_im2col(geo, dy, xt);
    }
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
    let packed;
    let xt = match atlas {
        Some(t) => t,
        None => {
            packed = self::atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
            &packed
        }
    };
    grad_weight_packed(geo, &dt, xt)
}

/// Partial `∂w` sums and their count (see [`grad_weight`]).
pub(super) type Partials = (GpuBuf, usize);

/// Both gradients of a layer whose forward kept `packed`: dy is packed once into both layouts
/// (one pass instead of two) when both are asked for. Returns `∂x` and the partial `∂w`
/// sums with their count, each where asked for.
pub(super) fn backward(
    geo: &Geom,
    dy: &GpuBuf,
    (x, w): (&GpuBuf, &GpuBuf),
    packed: &Packed,
    (want_dx, want_dw): (bool, bool),
) -> Result<(Option<GpuBuf>, Option<Partials>)> {
    // The weights in grad-input's layout: as the forward kept them, else packed now.
    let wt_packed;
    let wt = match (&packed.wt, want_dx) {
        (_, false) => None,
        (Some(t), true) => Some(t),
        (None, true) => {
            let taps = geo.kh * geo.kw;
            wt_packed = weights(w, geo.cin, geo.cout, taps, taps, geo.cin * taps)?;
            Some(&wt_packed)
        }
    };
    match wt {
        Some(wt) if want_dw && im2col_applies(geo) => {
            let d_atlas = atlas(dy, geo.n, geo.cout, geo.ho * geo.wo)?;
            let dx = grad_input_packed(geo, &d_atlas, wt)?;
            Ok((Some(dx), Some(grad_weight_im2col(geo, dy, &packed.atlas)?)))
        }
        Some(wt) if want_dw => {
            let (d_atlas, d_pixels) = dy_both(geo, dy)?;
            let dx = grad_input_packed(geo, &d_atlas, wt)?;
            let dw = grad_weight_packed(geo, &d_pixels, &packed.atlas)?;
            Ok((Some(dx), Some(dw)))
        }
        Some(wt) => {
            let d_atlas = atlas(dy, geo.n, geo.cout, geo.ho * geo.wo)?;
            Ok((Some(grad_input_packed(geo, &d_atlas, wt)?), None))
        }
        None => {
            let dw = want_dw
                .then(|| grad_weight(geo, dy, x, Some(&packed.atlas)))
                .transpose()?;
            Ok((None, dw))
        }
    }
}

/// Bands that a grad-weight product of `p.tiles_m × p.tiles_n` tiles, `p.m × p.n` over
/// `units` units of `steps` K steps each, is cut into: enough workgroups for the adapter
/// ([`GW_TARGET_WORKGROUPS`], [`GW_TARGET_WORKGROUPS_CPU`]), at least
/// [`GW_MIN_K_STEPS`] K steps per band, and at least [`GW_MACS_PER_PARTIAL`] multiply-adds
/// per partial sum a band writes (each is written, cleared where taps are left out, and
/// added again).
fn bands(ctx: &GpuContext, geo: &Geom, p: &GemmParams, units: usize, steps: usize) -> usize {
    let tiles = p.tiles_m as usize * p.tiles_n as usize;
    let target = if ctx.cpu_variants() {
        GW_TARGET_WORKGROUPS_CPU
    } else {
        GW_TARGET_WORKGROUPS
    };
    let macs = p.m as usize * p.n as usize * 4 * units * steps;
    let partial = geo.cout * geo.cin * geo.kh * geo.kw;
    target
        .div_ceil(tiles)
        .clamp(1, units)
        .min((units * steps / GW_MIN_K_STEPS).max(1))
        .min((macs / (GW_MACS_PER_PARTIAL * partial)).max(1))
}

/// Whether grad-weight takes [`grad_weight_im2col`]: output rows that are not a multiple of
/// 4 pixels wide (the implicit window pads every row of K to whole texels: a quarter of the
/// work is padding on a 6 × 6 map), a product of at least [`GW_IM2COL_MIN_MACS`] and an
/// im2col matrix within [`GW_IM2COL_MAX_TEXELS`].
fn im2col_applies(geo: &Geom) -> bool {
    let pixels = geo.n * geo.ho * geo.wo;
    let reach = |k, d, p, s, out, len| reaching_taps(k, d, p, s, out, len).map_or(k, |r| r.1);
    let taps = reach(geo.kh, geo.dh, geo.ph, geo.sh, geo.ho, geo.h)
        * reach(geo.kw, geo.dw, geo.pw, geo.sw, geo.wo, geo.w);
    let hw4 = (geo.ho * geo.wo).div_ceil(4) * 4;
    geo.wo % 4 != 0
        && geo.cout * taps * geo.cin * pixels >= GW_IM2COL_MIN_MACS
        && geo.n * hw4 * taps * geo.cin.div_ceil(4) <= GW_IM2COL_MAX_TEXELS
}

/// Partial `∂w` sums as one GEMM over an explicit im2col matrix: `∂w[co, (tap, ci)] =
/// Σ_k dy[co, k] · B[k, (tap, ci)]` with K the output pixels, each image's padded to a
/// multiple of 4 (`hw4`), so that K has no per-row padding. A is dy k-packed
/// (`pack_rows`), B is built from x's atlas over the taps that reach the input
/// (`pack_im2col`), and the product is the texture GEMM's B_MODE 1 with OUT_MODE 2, split
/// over K into bands as [`grad_weight_packed`] splits rows.
fn grad_weight_im2col(geo: &Geom, dy: &GpuBuf, xt: &GpuTex) -> Result<Partials> {
    let ctx = xt.context();
    let mut p = forward_window(geo)?;
    let (c4, taps) = (geo.cin.div_ceil(4), p.taps as usize);
    let hw = geo.ho * geo.wo;
    let hw4 = hw.div_ceil(4) * 4;
    let kq = geo.n * hw4 / 4;
    // A: row co holds dy[img, co, pixel] at k = img·hw4 + pixel.
    let a = gemm::pack(
        dy,
        "pack_rows",
        &PackParams {
            total: u(geo.cout * kq)?,
            dim0: u(geo.n)?,
            dim1: u(hw4 / 4)?,
            stride0: u(hw)?,
            stride1: u(geo.cout * hw)?,
            stride2: 1,
            limit: u(hw)?,
            ..PackParams::default()
        },
    )?;
    let b = ctx.alloc_texels((4 * kq * taps * c4) as u64)?;
    ctx.launch_args(
        &Kernel::new(Shader::Pack, "pack_im2col"),
        &PackParams {
            total: u(4 * kq * taps)?,
            dim0: u(c4)?,
            dim1: p.taps,
            dim2: p.kw,
            stride0: u(hw)?,
            stride1: u(hw4)?,
            stride2: u(geo.wo)?,
            h: p.h,
            w: p.w,
            sy: p.sy,
            sx: p.sx,
            ty: p.ty,
            tx: p.tx,
            oy: p.oy,
            ox: p.ox,
            ..PackParams::default()
        },
        &[Arg::Texels(xt), Arg::TexelsOut(&b)],
        (4 * kq * taps).div_ceil(64) as u64,
    )?;
    let cols = taps * 4 * c4;
    p.m = u(geo.cout)?;
    p.n = u(cols)?;
    p.cin = u(geo.cin)?;
    p.k = u(4 * kq)?;
    p.kq = u(kq)?;
    p.a_row = u(kq)?;
    p.b_k = u(taps * c4)?;
    (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cout, cols)?;
    let splits = bands(ctx, geo, &p, kq, 1);
    let per = kq.div_ceil(splits);
    let splits = kq.div_ceil(per);
    p.splits = u(splits)?;
    p.rows_per_split = u(per)?;
    let out = ctx.alloc_storage(splits * geo.cout * geo.cin * geo.kh * geo.kw)?;
    if taps < geo.kh * geo.kw {
        ctx.clear(&out)?;
    }
    gemm::launch(
        ctx,
        &p,
        (&a, Layout::KPacked),
        (&b, Layout::Packed4),
        None,
        2,
        &out,
    )?;
    Ok((out, splits))
}

/// [`grad_weight`] from dy's pixel rows `dt` and x's atlas `xt`.
pub(super) fn grad_weight_packed(geo: &Geom, dt: &GpuTex, xt: &GpuTex) -> Result<(GpuBuf, usize)> {
    let ctx = dt.context();
    let taps = geo.kh * geo.kw;
    let c4 = geo.cin.div_ceil(4);
    let wq = geo.wo.div_ceil(4);
    let rows = geo.n * geo.ho;
    let mut p = forward_window(geo)?;
    // Columns: the taps that reach the input; the partials of the others stay zero.
    let cols = p.taps as usize * 4 * c4;
    p.m = u(geo.cout)?;
    p.n = u(cols)?;
    p.cin = u(geo.cin)?;
    p.a_row = u(rows * wq)?;
    p.kq = u(rows * wq)?;
    p.k = u(4 * rows * wq)?;
    p.rows = u(rows)?;
    (p.tiles_m, p.tiles_n) = gemm::tiles(OP, geo.cout, cols)?;
    let splits = bands(ctx, geo, &p, rows, wq);
    let per = rows.div_ceil(splits);
    let splits = rows.div_ceil(per);
    p.splits = u(splits)?;
    p.rows_per_split = u(per)?;
    let out = ctx.alloc_storage(splits * geo.cout * geo.cin * taps)?;
    if (p.taps as usize) < taps {
        ctx.clear(&out)?;
    }
    gemm::launch(
        ctx,
        &p,
        (dt, Layout::KPacked),
        (xt, Layout::ConvGradWeight),
        None,
        2,
        &out,
    )?;
    Ok((out, splits))
}

#[cfg(test)]
mod tests {
    use super::{phase_taps, reaching_taps, trim_phase};

    #[test]
    fn taps_that_read_only_padding_are_left_out() {
        // 3 taps, dilation 6, padding 6, stride 1 over 6 pixels: offsets −6, 0, +6 from each
        // output pixel; only the centre tap reads inside.
        assert_eq!(reaching_taps(3, 6, 6, 1, 6, 6), Some((1, 1)));
        // Dilation 2 on the same map: all three taps reach.
        assert_eq!(reaching_taps(3, 2, 2, 1, 6, 6), Some((0, 3)));
        // Dilation 4 over 5 pixels: tap 0 reads −4..0 (pixel 0), tap 2 reads 4..8 (pixel 4).
        assert_eq!(reaching_taps(3, 4, 4, 1, 5, 5), Some((0, 3)));
        // Stride 2, dilation 4, padding 4, 6 pixels → 3 outputs at 0, 2, 4: tap 0 reads
        // −4, −2, 0 (reaches), tap 2 reads 4, 6, 8 (reaches 4).
        assert_eq!(reaching_taps(3, 4, 4, 2, 3, 6), Some((0, 3)));
        // 7 taps of dilation 3 with padding 9 on 2 pixels: taps t read 3t − 9 + {0, 1};
        // only t = 3 (0, 1) reaches.
        assert_eq!(reaching_taps(7, 3, 9, 1, 2, 2), Some((3, 1)));
        // Padding beyond every tap's reach: none.
        assert_eq!(reaching_taps(1, 1, 5, 1, 2, 2), None);
    }

    #[test]
    fn grad_input_phases_drop_taps_outside_dy() {
        // Stride 1, dilation 6, padding 6, 6 pixels: taps 0, 1, 2 read dy at j + 1, j, j − 1
        // times 6, i.e. offsets +6, 0, −6 (dy index j + off + t·step).
        let t = (0, 1, 3, 6, -6);
        assert_eq!(phase_taps(0, 6, 6, 1, 3), Some(t));
        assert_eq!(trim_phase(t, 6, 6), (1, 1, 1, 0, -6));
        // All taps reach with dilation 1: unchanged.
        let t = (0, 1, 3, 1, -1);
        assert_eq!(phase_taps(0, 1, 1, 1, 3), Some(t));
        assert_eq!(trim_phase(t, 6, 6), t);
    }
}
