//! conv2d by Winograd's minimal filtering F(4×4, 3×3) for ungrouped 3×3 layers of stride 1
//! whose padding equals their dilation (the "same" convolutions of residual blocks and
//! decoders; a dilated layer is its d² phase sub-grids, each an undilated one), on the
//! adapters of the texture GEMM: the transforms are `shaders/winograd.wgsl`, the products 36
//! batched texture GEMMs (one per position of the 6 × 6 transformed tile) with K = Cin
//! (forward), Cout (grad-input) or the tiles (grad-weight). Per 4 × 4 output tile they do
//! 36 multiply-adds per channel pair where the direct convolution does 144 (a quarter); the
//! transforms are memory-bound passes.
//!
//! Forward: `U = G g Gᵀ` (weights), `V = Bᵀ d B` (input tiles), `M[ξ] = U[ξ] · V[ξ]`,
//! `y = Aᵀ M A (+ bias)`. Grad-input: the same on dy with the flipped, transposed kernel
//! (transformed in the forward's weight pass). Grad-weight: `∂U[ξ] = Z[ξ] · V[ξ]ᵀ` with
//! `Z = A dy Aᵀ` per tile and V computed again from x's atlas, then `∂g = Gᵀ ∂U G`. The
//! matrices and layouts are in the shader's header; the CPU reference of conv2d (`cpu.rs`)
//! is the oracle, as for every conv kernel.

use std::sync::Arc;

use super::tex::{self, Packed, Partials};
use super::Geom;
use crate::error::Result;
use crate::gpu::{Arg, GpuBuf, GpuContext, GpuTex, Kernel, Shader};
use crate::ops::gemm::{self, GemmParams, Layout};

const OP: &str = "conv2d";

/// Positions of the transformed 6 × 6 tile: the batch of every product.
const XI: usize = 36;
/// Output tile side.
const TILE: usize = 4;

/// Fewest input and output channels for which the Winograd path is taken. Below it the
/// products' K (or M) is too small for the 36 batched GEMMs to beat one implicit-im2col
/// GEMM over 9 × the channels.
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Fewest input and output channels for which grad-weight takes the Winograd path too
/// (below it, the 36 products of Cout × Cin are too narrow for the GEMM's workgroup tiles
/// and grad-weight runs on the texture GEMM over x's atlas).
pub const WINOGRAD_GW_MIN_CHANNELS: usize = 64;

/// Largest share of the texture GEMM's multiply-adds (its reaching taps over every output
/// pixel) for which the Winograd path is taken: its products do 36 per tile and channel
/// pair, with their columns (tiles) padded to whole workgroup tiles, plus
/// [`WINOGRAD_WEIGHT_COLUMNS`] for the weights' transforms; the margin is for the
/// transforms' passes. With batch 8 and 128 output channels, a 24 × 24 map does 0.33 of
/// the work and a 12 × 12 map 0.67 (both taken: in two sets of 4 interleaved A/B runs,
/// `small`'s step took 734 and 852 ms (upper medians) with 0.7, 755 and 939 ms with 0.6,
/// which left the 12 × 12 layers out),
/// a 6 × 6 map 1.6 (its few tiles fill a fraction of a workgroup tile, and the weights'
/// transforms weigh more).
pub const WINOGRAD_MAX_WORK: f64 = 0.7;

/// The weights' transforms (U and U', 72 texel stores per channel pair), counted as this
/// many columns of the products.
pub const WINOGRAD_WEIGHT_COLUMNS: usize = 64;

fn u(v: usize) -> Result<u32> {
    gemm::u32_of(OP, v)
}

/// `#[repr(C)]` mirror of `struct WinoParams` in `shaders/winograd.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct WinoParams {
    pub total: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub tw: u32,
    pub tiles_img: u32,
    pub tiles: u32,
    pub t4: u32,
    pub c4: u32,
    pub cout: u32,
    pub cin: u32,
    pub c4o: u32,
    pub c4i: u32,
    pub d: u32,
    pub sh: u32,
    pub sw: u32,
}

/// The tile grid of a layer: tiles per row, per image (over the dilation's d² phase
/// sub-grids) and in all.
fn grid(geo: &Geom) -> (usize, usize, usize) {
    let d = geo.dh;
    let (th, tw) = ((geo.h / d).div_ceil(TILE), (geo.w / d).div_ceil(TILE));
    (tw, d * d * th * tw, geo.n * d * d * th * tw)
}

/// The tiles padded to whole texels of 4 (Tp).
fn padded_tiles(geo: &Geom) -> usize {
    grid(geo).2.div_ceil(4) * 4
}

/// Whether the Winograd path takes this layer: a 3×3, stride-1 ungrouped layer with padding
/// equal to its dilation d (the same in both directions) on a map that the d² phase
/// sub-grids tile exactly, with at least [`WINOGRAD_MIN_CHANNELS`] channels each way, on the
/// texture GEMM's adapters, whose transformed operands fit the device's limits, and where
/// the products do at most [`WINOGRAD_MAX_WORK`] of the texture GEMM's multiply-adds (over
/// the taps that reach the input: an ASPP branch on a map smaller than its dilation is
/// cheaper as the 1×1 product it is there).
pub(super) fn applies(ctx: &GpuContext, geo: &Geom) -> bool {
    let d = geo.dh;
    if !(geo.kh == 3
        && geo.kw == 3
        && (geo.sh, geo.sw) == (1, 1)
        && geo.dw == d
        && (geo.ph, geo.pw) == (d, d)
        && geo.h % d == 0
        && geo.w % d == 0
        && geo.groups == 1
        && geo.cin.min(geo.cout) >= WINOGRAD_MIN_CHANNELS
        && ctx.texture_gemm())
    {
        return false;
    }
    // Multiply-adds per channel pair: the texture GEMM's over its reaching taps and output
    // pixels, the products' over the tiles plus the weights' transforms, each with its
    // columns padded to whole workgroup tiles.
    let tp = padded_tiles(geo);
    let pad = |v: usize| {
        let (_, _, _, tile_n) = gemm::tile_shape(geo.cout, v, true);
        v.div_ceil(tile_n) * tile_n
    };
    let taps = |len| tex::reaching_taps(3, d, d, 1, len, len).map_or(3, |(_, n)| n);
    let direct = taps(geo.h) * taps(geo.w) * pad(geo.n * geo.h * geo.w);
    let wino = XI * (pad(tp) + WINOGRAD_WEIGHT_COLUMNS);
    if wino as f64 > WINOGRAD_MAX_WORK * direct as f64 {
        return false;
    }
    let c = geo.cin.max(geo.cout);
    let c4 = c.div_ceil(4);
    // The atlases (as the texture GEMM's), the V, Z and U texel arrays, the products' texel
    // arrays, and grad-weight's product [36][cout][cin] in bytes.
    tex::applies(ctx, geo)
        && gemm::fits(ctx, XI * tp * c4)
        && gemm::fits(ctx, XI * c * c4)
        && gemm::fits(ctx, XI * c * gemm::texels_per_row(tp))
        && (XI * geo.cout * geo.cin * 4) as u64 <= ctx.max_binding_bytes()
}

/// Sizes for the transforms of a tensor of `c` channels on the layer's grid.
fn params(geo: &Geom, c: usize) -> Result<WinoParams> {
    let (tw, tiles_img, tiles) = grid(geo);
    Ok(WinoParams {
        c: u(c)?,
        h: u(geo.h)?,
        w: u(geo.w)?,
        tw: u(tw)?,
        tiles_img: u(tiles_img)?,
        tiles: u(tiles)?,
        t4: u(tiles.div_ceil(4))?,
        c4: u(c.div_ceil(4))?,
        cout: u(geo.cout)?,
        cin: u(geo.cin)?,
        c4o: u(geo.cout.div_ceil(4))?,
        c4i: u(geo.cin.div_ceil(4))?,
        d: u(geo.dh)?,
        sh: u(geo.h / geo.dh)?,
        sw: u(geo.w / geo.dh)?,
        ..WinoParams::default()
    })
}

fn run(ctx: &Arc<GpuContext>, k: Kernel, p: &WinoParams, args: &[Arg]) -> Result<()> {
    ctx.launch_args(&k, p, args, u64::from(p.total).div_ceil(64))
}

/// U (the forward's A) and, with `transposed`, U' (grad-input's A), one pass.
fn weights(geo: &Geom, w: &GpuBuf, transposed: bool) -> Result<(GpuTex, Option<GpuTex>)> {
    let ctx = w.context();
    let mut p = params(geo, geo.cout)?;
    p.total = p.cout * p.c4i + if transposed { p.cin * p.c4o } else { 0 };
    let (c4i, c4o) = (p.c4i as usize, p.c4o as usize);
    let a = ctx.alloc_texels((XI * geo.cout * c4i) as u64)?;
    // Without `transposed` a 1-texel placeholder fills dst2 (never written).
    let b = ctx.alloc_texels(if transposed {
        (XI * geo.cin * c4o) as u64
    } else {
        1
    })?;
    let k = Kernel::new(Shader::Winograd, "wino_weights").with("TRANSPOSED", u32::from(transposed));
    run(
        ctx,
        k,
        &p,
        &[Arg::In(w), Arg::TexelsOut(&a), Arg::TexelsOut(&b)],
    )?;
    Ok((a, transposed.then_some(b)))
}

/// U' (grad-input's A; the same pass writes U, unused here), for a backward whose forward
/// did not keep it.
fn weights_transposed(geo: &Geom, w: &GpuBuf) -> Result<GpuTex> {
    let (_, t) = weights(geo, w, true)?;
    t.ok_or_else(|| crate::error::Error::Gpu("winograd: transposed weights missing".into()))
}

/// V of a tensor of `c` channels from its channel-packed atlas (x, or dy for grad-input).
fn input(geo: &Geom, atlas: &GpuTex, c: usize) -> Result<GpuTex> {
    transform(geo, "wino_input", atlas, c)
}

/// `entry` (wino_input or wino_dy) over the padded tiles of a tensor of `c` channels read
/// from its atlas: a texel array of 36 × Tp × ceil(c/4) texels.
fn transform(geo: &Geom, entry: &'static str, atlas: &GpuTex, c: usize) -> Result<GpuTex> {
    let ctx = atlas.context();
    let mut p = params(geo, c)?;
    p.total = 4 * p.t4 * p.c4;
    let v = ctx.alloc_texels(XI as u64 * u64::from(p.total))?;
    // dst2, written only by wino_weights, is bound to a 1-texel placeholder.
    let unused = ctx.alloc_texels(1)?;
    run(
        ctx,
        Kernel::new(Shader::Winograd, entry),
        &p,
        &[
            Arg::Texels(atlas),
            Arg::TexelsOut(&v),
            Arg::TexelsOut(&unused),
        ],
    )?;
    Ok(v)
}

/// `M[ξ] = A[ξ] · V[ξ]` for the 36 positions: `rows` output rows, K over `k` channels;
/// the result is a texel array of the GEMM's OUT_MODE 3 (`[36][rows]` rows of
/// `gemm::texels_per_row(Tp)` texels, each 4 tiles 8 apart).
fn product(geo: &Geom, a: &GpuTex, v: &GpuTex, rows: usize, k: usize) -> Result<GpuTex> {
    let ctx = a.context();
    let tp = padded_tiles(geo);
    let kq = k.div_ceil(4);
    let p = GemmParams {
        m: u(rows)?,
        n: u(tp)?,
        kq: u(kq)?,
        k: u(4 * kq)?,
        batch: u(XI)?,
        splits: 1,
        a_row: u(kq)?,
        a_batch: u(rows * kq)?,
        b_col: u(kq)?,
        b_batch: u(tp * kq)?,
        ..GemmParams::default()
    };
    let out = ctx.alloc_texels((XI * rows * gemm::texels_per_row(tp)) as u64)?;
    gemm::launch_to_texels(ctx, &p, (a, Layout::KPacked), v, &out)?;
    Ok(out)
}

/// `y = Aᵀ M A (+ bias)` from a product of `c` rows ([`product`]): NCHW `[n, c, h, w]`.
fn output(geo: &Geom, m: &GpuTex, c: usize, bias: Option<&GpuBuf>) -> Result<GpuBuf> {
    let ctx = m.context();
    let mut p = params(geo, c)?;
    // Texels per product row, one invocation each.
    p.t4 = u(gemm::texels_per_row(padded_tiles(geo)))?;
    p.total = p.c * p.t4;
    let y = ctx.alloc_storage(geo.n * c * geo.h * geo.w)?;
    let k =
        Kernel::new(Shader::Winograd, "wino_output").with("HAS_BIAS", u32::from(bias.is_some()));
    let mut slot = None;
    let bias = gemm::or_dummy(ctx, bias, &mut slot)?;
    run(ctx, k, &p, &[Arg::Texels(m), Arg::In(bias), Arg::Out(&y)])?;
    Ok(y)
}

/// `y = conv2d(x, w) + bias` and what the backward reads again: x's atlas and, with
/// `transposed`, the weights' transform in grad-input's layout.
pub(super) fn forward(
    geo: &Geom,
    x: &GpuBuf,
    w: &GpuBuf,
    bias: Option<&GpuBuf>,
    transposed: bool,
) -> Result<(GpuBuf, Packed)> {
    let (wt, wt_t) = weights(geo, w, transposed)?;
    let atlas = tex::atlas(x, geo.n, geo.cin, geo.h * geo.w)?;
    let v = input(geo, &atlas, geo.cin)?;
    let m = product(geo, &wt, &v, geo.cout, geo.cin)?;
    drop(v);
    let y = output(geo, &m, geo.cout, bias)?;
    Ok((y, Packed { atlas, wt: wt_t }))
}

/// `∂x` from dy's atlas and U' (grad-input's weights).
fn grad_input(geo: &Geom, dy_atlas: &GpuTex, wt: &GpuTex) -> Result<GpuBuf> {
    let v = input(geo, dy_atlas, geo.cout)?;
    let m = product(geo, wt, &v, geo.cin, geo.cout)?;
    drop(v);
    output(geo, &m, geo.cin, None)
}

/// Whether grad-weight takes the Winograd path too ([`WINOGRAD_GW_MIN_CHANNELS`]).
fn grad_weight_applies(geo: &Geom) -> bool {
    geo.cin.min(geo.cout) >= WINOGRAD_GW_MIN_CHANNELS
}

/// Output elements a product of `m × n` with A 4-packed computes, padded to whole
/// workgroup tiles.
fn padded(m: usize, n: usize) -> usize {
    let (_, _, tm, tn) = gemm::tile_shape(m, n, false);
    m.div_ceil(tm) * tm * n.div_ceil(tn) * tn
}

/// `∂w [cout, cin, 3, 3]` from dy's and x's atlases: `∂U[ξ](co, ci) = Σ_tiles Z[ξ](co, t) ·
/// V[ξ](ci, t)` (rows co and columns ci, or the transpose when that pads fewer rows and
/// columns to whole workgroup tiles), then `∂g = Gᵀ ∂U G`.
fn grad_weight(geo: &Geom, dy_atlas: &GpuTex, x_atlas: &GpuTex) -> Result<GpuBuf> {
    let ctx = dy_atlas.context();
    let tp = padded_tiles(geo);
    let z = transform(geo, "wino_dy", dy_atlas, geo.cout)?;
    let v = input(geo, x_atlas, geo.cin)?;
    let (c4i, c4o) = (geo.cin.div_ceil(4), geo.cout.div_ceil(4));
    // Both operands are 4-packed over channels at each K = tile: rows co from Z and
    // columns ci from V, or the transpose (rows ci, columns co) when that pads less.
    let transposed = padded(geo.cin, geo.cout) < padded(geo.cout, geo.cin);
    let ((a, a_c4), (b, b_c4), (m, n)) = if transposed {
        ((&v, c4i), (&z, c4o), (geo.cin, geo.cout))
    } else {
        ((&z, c4o), (&v, c4i), (geo.cout, geo.cin))
    };
    let g = GemmParams {
        m: u(m)?,
        n: u(n)?,
        kq: u(tp / 4)?,
        k: u(tp)?,
        batch: u(XI)?,
        splits: 1,
        a_k: u(a_c4)?,
        a_batch: u(tp * a_c4)?,
        b_k: u(b_c4)?,
        b_batch: u(tp * b_c4)?,
        ..GemmParams::default()
    };
    let du = ctx.alloc_storage(XI * geo.cout * geo.cin)?;
    gemm::launch(
        ctx,
        &g,
        (a, Layout::Packed4),
        (b, Layout::Packed4),
        None,
        0,
        &du,
    )?;
    drop((z, v));
    let mut p = params(geo, geo.cout)?;
    p.total = u(geo.cout * geo.cin)?;
    let dw = ctx.alloc_storage(geo.cout * geo.cin * 9)?;
    run(
        ctx,
        Kernel::new(Shader::Winograd, "wino_grad_weight").with("TRANSPOSED", u32::from(transposed)),
        &p,
        &[Arg::In(&du), Arg::Out(&dw)],
    )?;
    Ok(dw)
}

/// Both gradients of a layer whose forward ran here and kept `packed`: `∂x`, and `∂w` as
/// partial sums with their count (one, on the Winograd path), each where asked for.
/// Grad-weight of layers with fewer than [`WINOGRAD_GW_MIN_CHANNELS`] channels runs on the
/// texture GEMM over x's atlas (dy packed once for both gradients).
pub(super) fn backward(
    geo: &Geom,
    dy: &GpuBuf,
    (x, w): (&GpuBuf, &GpuBuf),
    packed: &Packed,
    (want_dx, want_dw): (bool, bool),
) -> Result<(Option<GpuBuf>, Option<Partials>)> {
    let wino_dw = want_dw && grad_weight_applies(geo);
    let tex_dw = want_dw && !wino_dw;
    // dy's atlas (grad-input, Winograd grad-weight) and its pixel rows (texture
    // grad-weight), one pass where both are needed.
    let (dy_atlas, dy_pixels) = match (want_dx || wino_dw, tex_dw) {
        (true, true) => {
            let (a, p) = tex::dy_both(geo, dy)?;
            (Some(a), Some(p))
        }
        (true, false) => (Some(tex::atlas(dy, geo.n, geo.cout, geo.h * geo.w)?), None),
        (false, _) => (None, None),
    };
    let dx = match (&dy_atlas, want_dx) {
        (Some(a), true) => {
            let computed;
            let wt = match &packed.wt {
                Some(t) => t,
                None => {
                    computed = weights_transposed(geo, w)?;
                    &computed
                }
            };
            Some(grad_input(geo, a, wt)?)
        }
        _ => None,
    };
    let dw = match (&dy_atlas, &dy_pixels) {
        _ if !want_dw => None,
        (Some(a), _) if wino_dw => Some((grad_weight(geo, a, &packed.atlas)?, 1)),
        (_, Some(pixels)) => Some(tex::grad_weight_packed(geo, pixels, &packed.atlas)?),
        _ => Some(tex::grad_weight(geo, dy, x, Some(&packed.atlas))?),
    };
    Ok((dx, dw))
}
