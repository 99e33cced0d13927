// Winograd F(4×4, 3×3) transforms for ungrouped 3×3 convolutions of stride 1 and padding =
// dilation d (src/ops/conv/winograd.rs); the products between them run on the texture
// GEMM (gemm_tex.wgsl), 36 of them batched, one per position ξ = 6r + c of the 6 × 6
// transformed tile.
//
// A dilated layer is d² independent undilated ones: the phase (py, px) sub-grid of pixels
// (d·sy + py, d·sx + px), sh × sw = h/d × w/d, convolved with padding 1. Each sub-grid (the
// whole plane when d = 1) is cut into 4 × 4 tiles, tw = ceil(sw/4) per row; tile
// t = ((img·d² + phase)·th + ty)·tw + tx of T covers sub-grid outputs (4ty + a, 4tx + b) and
// reads the sub-grid window (4ty − 1 .. 4ty + 4, 4tx − 1 .. 4tx + 4), zero outside it.
// With the matrices of Lavin & Gray (interpolation points 0, ±1, ±2, ∞),
//
//   Bᵀ = [4  0 −5  0  1  0]    G = [ 1/4     0     0 ]    Aᵀ = [1  1  1  1  1  0]
//        [0 −4 −4  1  1  0]        [−1/6  −1/6  −1/6 ]         [0  1 −1  2 −2  0]
//        [0  4 −4 −1  1  0]        [−1/6   1/6  −1/6 ]         [0  1  1  4  4  0]
//        [0 −2 −1  2  1  0]        [1/24  1/12   1/6 ]         [0  1 −1  8 −8  1]
//        [0  2 −1 −2  1  0]        [1/24 −1/12   1/6 ]
//        [0  4  0 −5  0  1]        [  0     0     1  ]
//
// the forward is y_tile = Aᵀ [Σ_ci U(co, ci) ⊙ V(ci, tile)] A with U = G g Gᵀ (wino_weights)
// and V = Bᵀ d B (wino_input); the sum over ci is the GEMM. Grad-input is the same on dy
// with the flipped, transposed kernel (wino_weights' second output). Grad-weight:
// ∂U(co, ci) = Σ_tiles Z(co) ⊙ V(ci) with Z = A dy_tile Aᵀ (wino_dy), a GEMM over the
// tiles, then ∂g = Gᵀ ∂U G (wino_grad_weight).
//
// Texel-array layouts (t = texel index, see texel_xy; Tp = 4·ceil(T/4), the tiles padded
// with zero tiles to whole texels):
//   V (wino_input):   t = ξ·(Tp·c4) + tile·c4 + q holds channels 4q .. 4q+3 (zero past c):
//                     the GEMM's B, k-packed over channels (forward, grad-input), or an
//                     operand 4-packed over channels at K = tile (grad-weight).
//   U (wino_weights): t = ξ·(cout·c4i) + co·c4i + qi holds ci = 4qi .. 4qi+3: the forward's
//                     A; with TRANSPOSED also U' (grad-input's A: the flipped kernel, rows
//                     ci, channels co) into dst2: t = ξ·(cin·c4o) + ci·c4o + qo.
//   Z (wino_dy):      as V, of dy's channels (zero past T): grad-weight's other operand.
// The GEMM outputs are the texel array of its OUT_MODE 3 (wino_output's source: rows of
// [36][rows], texel g of a row holding tiles 32·(g/8) + g%8 + 8j) and a buffer
// [36][cout][cin] or [36][cin][cout] (wino_grad_weight's source).
// wino_input and wino_dy read the channel-packed atlas of pack.wgsl, not the NCHW tensor:
// texel fetches of 4 channels each instead of 4 scalar loads.

struct WinoParams {
    // Invocations of the entry point.
    total: u32,
    // Channels of the transformed tensor (wino_input, wino_dy) or rows of the product
    // (wino_output).
    c: u32,
    h: u32,
    w: u32,
    // Tiles per row, per image, in all (T), and ceil(T/4) (wino_output: texels per row of
    // the product).
    tw: u32,
    tiles_img: u32,
    tiles: u32,
    t4: u32,
    // ceil(c/4).
    c4: u32,
    // The kernel's output and input channels and their texel counts (wino_weights,
    // wino_grad_weight).
    cout: u32,
    cin: u32,
    c4o: u32,
    c4i: u32,
    // Dilation d and the size of each of its d² phase sub-grids (h/d × w/d).
    d: u32,
    sh: u32,
    sw: u32,
}

override HAS_BIAS: bool = false;
// wino_weights: also write U' (grad-input's weights) into dst2. wino_grad_weight: the
// product is ∂Uᵀ.
override TRANSPOSED: bool = false;

@group(0) @binding(0) var<uniform> p: WinoParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// wino_input, wino_dy: the transformed tensor's channel-packed atlas (pack_atlas in
// pack.wgsl: texel (img·c4 + q)·h·w + pixel holds channels 4q .. 4q+3 of the pixel).
// wino_output: the product (the GEMM's OUT_MODE 3 texels, see wino_output).
@group(0) @binding(1) var atlas: texture_2d<f32>;
// wino_input, wino_dy, wino_weights: texel-array outputs.
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;
@group(0) @binding(3) var dst2: texture_storage_2d<rgba32float, write>;
// wino_output: bias and the NCHW output; wino_grad_weight: the output.
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;

// Entries per side of the transformed tile (its positions are ξ = 6r + c).
const SIDE: u32 = 6u;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * 64u + lid;
}

// A tile: its image, the phase (py, px) of its sub-grid (pixels (d·sy + py, d·sx + px)) and
// its first output (y, x) in sub-grid units.
struct Tile {
    img: u32,
    py: u32,
    px: u32,
    y: i32,
    x: i32,
}

// Tile t: per image, the d² phases, each a grid of th × tw tiles (tw per row).
fn tile_of(t: u32) -> Tile {
    let per_phase = p.tiles_img / (p.d * p.d);
    let r = t % p.tiles_img;
    let phase = r / per_phase;
    let k = r % per_phase;
    return Tile(t / p.tiles_img, phase / p.d, phase % p.d, i32(4u * (k / p.tw)),
                i32(4u * (k % p.tw)));
}

// Invocation i of wino_input and wino_dy: tile t (fastest) of the tiles padded to
// Tp = 4·t4 and channel texel q; a tile past T is moved above its sub-grid, so that it
// reads (and its transform is) zeros.
struct PaddedTile {
    t: u32,
    q: u32,
    tile: Tile,
}

fn padded_tile(i: u32) -> PaddedTile {
    let tp = 4u * p.t4;
    let t = i % tp;
    var tile = tile_of(t);
    if (t >= p.tiles) {
        tile.y = -16;
    }
    return PaddedTile(t, i / tp, tile);
}

// Whether sub-grid pixel (sy, sx) lies inside the sub-grid, and its index in an h × w plane.
fn inside(sy: i32, sx: i32) -> bool {
    return sy >= 0 && sy < i32(p.sh) && sx >= 0 && sx < i32(p.sw);
}

fn pixel(tile: Tile, sy: u32, sx: u32) -> u32 {
    return (p.d * sy + tile.py) * p.w + p.d * sx + tile.px;
}

// src[i] if ok, else 0 (index 0 is read instead: no branch).
fn load_or_zero(i: u32, ok: bool) -> f32 {
    return select(0.0, src[select(0u, i, ok)], ok);
}

// Bᵀ applied to 6 entries of a row or column (per component).
fn bt6(d: array<vec4<f32>, 6>) -> array<vec4<f32>, 6> {
    return array<vec4<f32>, 6>(
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        2.0 * (d[3] - d[1]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5]);
}

// G applied to 3 entries of a kernel's row or column: the 6 transformed entries.
fn g6(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) -> array<vec4<f32>, 6> {
    let s = -(a + b + c) / 6.0;
    let d = -(a - b + c) / 6.0;
    let e = a / 24.0 + c / 6.0;
    return array<vec4<f32>, 6>(0.25 * a, s, d, e + b / 12.0, e - b / 12.0, c);
}

// Aᵀ applied to 6 entries: the 4 outputs.
fn at6(m: array<vec4<f32>, 6>) -> array<vec4<f32>, 4> {
    let s = m[1] + m[2];
    let d = m[1] - m[2];
    let s2 = m[3] + m[4];
    let d2 = m[3] - m[4];
    return array<vec4<f32>, 4>(m[0] + s + s2, d + 2.0 * d2, s + 4.0 * s2, d + 8.0 * d2 + m[5]);
}

// A applied to 4 entries (the transpose of Aᵀ): 6 entries.
fn a6(e: array<vec4<f32>, 4>) -> array<vec4<f32>, 6> {
    let s = e[0] + e[2];
    let d = e[1] + e[3];
    let s4 = e[0] + 4.0 * e[2];
    let d8 = 2.0 * e[1] + 8.0 * e[3];
    return array<vec4<f32>, 6>(e[0], s + d, s - d, s4 + d8, s4 - d8, e[3]);
}

// Gᵀ applied to 6 entries: the 3 kernel entries.
fn gt6(u: array<vec4<f32>, 6>) -> array<vec4<f32>, 3> {
    let s = u[1] + u[2];
    let d = u[2] - u[1];
    let s2 = u[3] + u[4];
    let d2 = u[3] - u[4];
    return array<vec4<f32>, 3>(0.25 * u[0] - s / 6.0 + s2 / 24.0, d / 6.0 + d2 / 12.0,
                               (s2 - s) / 6.0 + u[5]);
}

// Stores entry (r, c) of a transformed tile at ξ = 6r + c: texel ξ·stride + base of dst,
// or of dst2 with `second` (every entry point that stores binds both; wino_input's and
// wino_dy's dst2 is a 1-texel placeholder). Written out: dynamically indexed arrays are
// slow on CPU adapters.
fn store1(second: bool, xi: u32, v: vec4<f32>, stride: u32, base: u32) {
    let t = texel_xy(xi * stride + base);
    if (second) {
        textureStore(dst2, t, v);
    } else {
        textureStore(dst, t, v);
    }
}

fn store6(second: bool, r: u32, m: array<vec4<f32>, 6>, stride: u32, base: u32) {
    store1(second, SIDE * r, m[0], stride, base);
    store1(second, SIDE * r + 1u, m[1], stride, base);
    store1(second, SIDE * r + 2u, m[2], stride, base);
    store1(second, SIDE * r + 3u, m[3], stride, base);
    store1(second, SIDE * r + 4u, m[4], stride, base);
    store1(second, SIDE * r + 5u, m[5], stride, base);
}

// Channels 4q .. 4q+3 of sub-grid pixel (sy, sx) of the tile's phase from the atlas, zero
// outside the sub-grid.
fn atlas_at(tile: Tile, q: u32, sy: i32, sx: i32) -> vec4<f32> {
    let ok = inside(sy, sx);
    let t = (tile.img * p.c4 + q) * p.h * p.w + pixel(tile, u32(max(sy, 0)), u32(max(sx, 0)));
    return select(vec4<f32>(0.0), textureLoad(atlas, texel_xy(select(0u, t, ok)), 0), ok);
}

// Bᵀ over the 6 rows of window column sx (rows y0 .. y0+5).
fn input_column(tile: Tile, q: u32, y0: i32, sx: i32) -> array<vec4<f32>, 6> {
    return bt6(array<vec4<f32>, 6>(atlas_at(tile, q, y0, sx), atlas_at(tile, q, y0 + 1, sx),
                                   atlas_at(tile, q, y0 + 2, sx), atlas_at(tile, q, y0 + 3, sx),
                                   atlas_at(tile, q, y0 + 4, sx), atlas_at(tile, q, y0 + 5, sx)));
}

// V = Bᵀ d B of one tile of 4 channels (one per component), read from the atlas.
@compute @workgroup_size(64)
fn wino_input(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let at = padded_tile(i);
    let tile = at.tile;
    let q = at.q;
    let y0 = tile.y - 1;
    let x0 = tile.x - 1;
    // Columns of Bᵀ d, then Bᵀ along each of its rows.
    let c0 = input_column(tile, q, y0, x0);
    let c1 = input_column(tile, q, y0, x0 + 1);
    let c2 = input_column(tile, q, y0, x0 + 2);
    let c3 = input_column(tile, q, y0, x0 + 3);
    let c4 = input_column(tile, q, y0, x0 + 4);
    let c5 = input_column(tile, q, y0, x0 + 5);
    let stride = 4u * p.t4 * p.c4;
    let base = at.t * p.c4 + q;
    store6(false, 0u, bt6(array<vec4<f32>, 6>(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0])), stride, base);
    store6(false, 1u, bt6(array<vec4<f32>, 6>(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1])), stride, base);
    store6(false, 2u, bt6(array<vec4<f32>, 6>(c0[2], c1[2], c2[2], c3[2], c4[2], c5[2])), stride, base);
    store6(false, 3u, bt6(array<vec4<f32>, 6>(c0[3], c1[3], c2[3], c3[3], c4[3], c5[3])), stride, base);
    store6(false, 4u, bt6(array<vec4<f32>, 6>(c0[4], c1[4], c2[4], c3[4], c4[4], c5[4])), stride, base);
    store6(false, 5u, bt6(array<vec4<f32>, 6>(c0[5], c1[5], c2[5], c3[5], c4[5], c5[5])), stride, base);
}

// Tap k (8 − k with `flip`: the kernel rotated by 180°) of the 4 kernels at element offsets
// at[j] of src (j = one per component), zero where ok[j] is false.
fn tap4(at: vec4<u32>, ok: vec4<bool>, k: u32, flip: bool) -> vec4<f32> {
    let tap = select(k, 8u - k, flip);
    return vec4<f32>(load_or_zero(at.x + tap, ok.x), load_or_zero(at.y + tap, ok.y),
                     load_or_zero(at.z + tap, ok.z), load_or_zero(at.w + tap, ok.w));
}

// The taps of output channels co + j·so and input channels ci + j·si (j = 0..3, one per
// component) from src [cout, cin, 3, 3], zero past the channels; `flip` rotates them.
fn kernel4(co: u32, so: u32, ci: u32, si: u32, flip: bool) -> array<vec4<f32>, 9> {
    let j = vec4<u32>(0u, 1u, 2u, 3u);
    let o = vec4<u32>(co) + j * so;
    let n = vec4<u32>(ci) + j * si;
    let at = (o * p.cin + n) * 9u;
    let ok = o < vec4<u32>(p.cout) & n < vec4<u32>(p.cin);
    return array<vec4<f32>, 9>(tap4(at, ok, 0u, flip), tap4(at, ok, 1u, flip),
                               tap4(at, ok, 2u, flip), tap4(at, ok, 3u, flip),
                               tap4(at, ok, 4u, flip), tap4(at, ok, 5u, flip),
                               tap4(at, ok, 6u, flip), tap4(at, ok, 7u, flip),
                               tap4(at, ok, 8u, flip));
}

// G g Gᵀ of 4 kernels at once (one per component; g[k] is tap k, row-major), stored into
// dst or, with `second`, dst2.
fn transform_store(second: bool, g: array<vec4<f32>, 9>, stride: u32, base: u32) {
    // Columns of G g, then G along each of its rows.
    let c0 = g6(g[0], g[3], g[6]);
    let c1 = g6(g[1], g[4], g[7]);
    let c2 = g6(g[2], g[5], g[8]);
    store6(second, 0u, g6(c0[0], c1[0], c2[0]), stride, base);
    store6(second, 1u, g6(c0[1], c1[1], c2[1]), stride, base);
    store6(second, 2u, g6(c0[2], c1[2], c2[2]), stride, base);
    store6(second, 3u, g6(c0[3], c1[3], c2[3]), stride, base);
    store6(second, 4u, g6(c0[4], c1[4], c2[4]), stride, base);
    store6(second, 5u, g6(c0[5], c1[5], c2[5]), stride, base);
}

// U: one invocation per (co, qi) for t < cout·c4i, writing the 36 texels of ci = 4qi ..
// 4qi+3; with TRANSPOSED, U' after them: one invocation per (ci, qo), co = 4qo .. 4qo+3,
// of the flipped kernel.
@compute @workgroup_size(64)
fn wino_weights(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let forward = p.cout * p.c4i;
    if (i < forward) {
        let qi = i % p.c4i;
        let co = i / p.c4i;
        transform_store(false, kernel4(co, 0u, 4u * qi, 1u, false), p.cout * p.c4i,
                        co * p.c4i + qi);
    } else if (TRANSPOSED) {
        let j = i - forward;
        let qo = j % p.c4o;
        let ci = j / p.c4o;
        transform_store(true, kernel4(4u * qo, 1u, ci, 0u, true), p.cin * p.c4o,
                        ci * p.c4o + qo);
    }
}

// Texel t of the product.
fn product_at(t: u32) -> vec4<f32> {
    return textureLoad(atlas, texel_xy(t), 0);
}

// Aᵀ over the 6 rows of product column c: entries ξ = 6r + c, at texel row `at`.
fn output_column(c: u32, stride: u32, at: u32) -> array<vec4<f32>, 4> {
    return at6(array<vec4<f32>, 6>(product_at(c * stride + at),
                                   product_at((SIDE + c) * stride + at),
                                   product_at((2u * SIDE + c) * stride + at),
                                   product_at((3u * SIDE + c) * stride + at),
                                   product_at((4u * SIDE + c) * stride + at),
                                   product_at((5u * SIDE + c) * stride + at)));
}

// Stores output row a of the 4 tiles t0 + 8j (component j): y[b] is column b.
fn store_output_row(t0: u32, row: u32, a: u32, y: array<vec4<f32>, 4>) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        let t = t0 + 8u * j;
        let tile = tile_of(t);
        let sy = u32(tile.y) + a;
        if (t < p.tiles && sy < p.sh) {
            let sx = u32(tile.x);
            let base = (tile.img * p.c + row) * p.h * p.w + pixel(tile, sy, sx);
            out[base] = y[0][j];
            if (sx + 1u < p.sw) {
                out[base + p.d] = y[1][j];
            }
            if (sx + 2u < p.sw) {
                out[base + 2u * p.d] = y[2][j];
            }
            if (sx + 3u < p.sw) {
                out[base + 3u * p.d] = y[3][j];
            }
        }
    }
}

// Aᵀ over 6 entries, plus b.
fn at6b(m: array<vec4<f32>, 6>, b: vec4<f32>) -> array<vec4<f32>, 4> {
    let y = at6(m);
    return array<vec4<f32>, 4>(y[0] + b, y[1] + b, y[2] + b, y[3] + b);
}

// y = Aᵀ M A (+ bias) for the 4 tiles of one product texel (32·(g/8) + g%8 + 8j, one per
// component: the GEMM's OUT_MODE 3 layout) of one row (channel): the product's texel
// (ξ·c + row)·t4 + g, out NCHW [n, c, h, w]. One invocation per (row, texel g), t4 texels
// per row.
@compute @workgroup_size(64)
fn wino_output(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let g = i % p.t4;
    let row = i / p.t4;
    let stride = p.c * p.t4;
    // Aᵀ M column by column (6 × 4 entries), then Aᵀ along each of its 4 rows.
    let m0 = output_column(0u, stride, i);
    let m1 = output_column(1u, stride, i);
    let m2 = output_column(2u, stride, i);
    let m3 = output_column(3u, stride, i);
    let m4 = output_column(4u, stride, i);
    let m5 = output_column(5u, stride, i);
    var b = vec4<f32>(0.0);
    if (HAS_BIAS) {
        b = vec4<f32>(bias[row]);
    }
    let t0 = 32u * (g / 8u) + g % 8u;
    store_output_row(t0, row, 0u, at6b(array<vec4<f32>, 6>(m0[0], m1[0], m2[0], m3[0], m4[0], m5[0]), b));
    store_output_row(t0, row, 1u, at6b(array<vec4<f32>, 6>(m0[1], m1[1], m2[1], m3[1], m4[1], m5[1]), b));
    store_output_row(t0, row, 2u, at6b(array<vec4<f32>, 6>(m0[2], m1[2], m2[2], m3[2], m4[2], m5[2]), b));
    store_output_row(t0, row, 3u, at6b(array<vec4<f32>, 6>(m0[3], m1[3], m2[3], m3[3], m4[3], m5[3]), b));
}

// A over the 4 rows of dy column sx of a tile (rows y .. y+3).
fn dy_column(tile: Tile, q: u32, y: i32, sx: i32) -> array<vec4<f32>, 6> {
    return a6(array<vec4<f32>, 4>(atlas_at(tile, q, y, sx), atlas_at(tile, q, y + 1, sx),
                                  atlas_at(tile, q, y + 2, sx), atlas_at(tile, q, y + 3, sx)));
}

// Z = A e Aᵀ of one tile of 4 channels (one per component), read from dy's atlas: e is the
// tile's 4 × 4 block of dy (zero outside the plane, and for the tiles past T).
@compute @workgroup_size(64)
fn wino_dy(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let at = padded_tile(i);
    let tile = at.tile;
    let q = at.q;
    let c0 = dy_column(tile, q, tile.y, tile.x);
    let c1 = dy_column(tile, q, tile.y, tile.x + 1);
    let c2 = dy_column(tile, q, tile.y, tile.x + 2);
    let c3 = dy_column(tile, q, tile.y, tile.x + 3);
    let stride = 4u * p.t4 * p.c4;
    let base = at.t * p.c4 + q;
    store6(false, 0u, a6(array<vec4<f32>, 4>(c0[0], c1[0], c2[0], c3[0])), stride, base);
    store6(false, 1u, a6(array<vec4<f32>, 4>(c0[1], c1[1], c2[1], c3[1])), stride, base);
    store6(false, 2u, a6(array<vec4<f32>, 4>(c0[2], c1[2], c2[2], c3[2])), stride, base);
    store6(false, 3u, a6(array<vec4<f32>, 4>(c0[3], c1[3], c2[3], c3[3])), stride, base);
    store6(false, 4u, a6(array<vec4<f32>, 4>(c0[4], c1[4], c2[4], c3[4])), stride, base);
    store6(false, 5u, a6(array<vec4<f32>, 4>(c0[5], c1[5], c2[5], c3[5])), stride, base);
}

// Entry ξ of ∂U at (co, ci) in the product [36][cout][cin] ([36][cin][cout] with
// TRANSPOSED), broadcast to a vec4 (gt6 works on vec4; one component is used).
fn du_at(xi: u32, at: u32) -> vec4<f32> {
    return vec4<f32>(src[xi * p.cout * p.cin + at]);
}

// Gᵀ over the 6 rows of ∂U column c.
fn du_column(c: u32, at: u32) -> array<vec4<f32>, 3> {
    return gt6(array<vec4<f32>, 6>(du_at(c, at), du_at(SIDE + c, at), du_at(2u * SIDE + c, at),
                                   du_at(3u * SIDE + c, at), du_at(4u * SIDE + c, at),
                                   du_at(5u * SIDE + c, at)));
}

// Row r of ∂g for kernel i (the first component of each entry).
fn store_grad_row(i: u32, r: u32, g: array<vec4<f32>, 3>) {
    dw[9u * i + 3u * r] = g[0].x;
    dw[9u * i + 3u * r + 1u] = g[1].x;
    dw[9u * i + 3u * r + 2u] = g[2].x;
}

// ∂g = Gᵀ ∂U G for one (co, ci): src is the GEMM output, dw the kernel's gradient
// [cout, cin, 3, 3].
@compute @workgroup_size(64)
fn wino_grad_weight(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let ci = i % p.cin;
    let co = i / p.cin;
    let at = select(i, ci * p.cout + co, TRANSPOSED);
    let u0 = du_column(0u, at);
    let u1 = du_column(1u, at);
    let u2 = du_column(2u, at);
    let u3 = du_column(3u, at);
    let u4 = du_column(4u, at);
    let u5 = du_column(5u, at);
    store_grad_row(i, 0u, gt6(array<vec4<f32>, 6>(u0[0], u1[0], u2[0], u3[0], u4[0], u5[0])));
    store_grad_row(i, 1u, gt6(array<vec4<f32>, 6>(u0[1], u1[1], u2[1], u3[1], u4[1], u5[1])));
    store_grad_row(i, 2u, gt6(array<vec4<f32>, 6>(u0[2], u1[2], u2[2], u3[2], u4[2], u5[2])));
}
