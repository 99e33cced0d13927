// Winograd F(2×2, 3×3) transforms for ungrouped 3×3 convolutions of stride 1, dilation 1
// and padding 1 (src/ops/conv/winograd.rs); the products between them run on the texture
// GEMM (gemm_tex.wgsl), 16 of them batched, one per position ξ = 4r + c of the 4 × 4
// transformed tile.
//
// The output plane (h × w, the input's size) is cut into 2 × 2 tiles, tw = ceil(w/2) per
// row; tile t = (img·th + ty)·tw + tx of T = n·th·tw covers outputs (2ty + a, 2tx + b) and
// reads the input window (2ty − 1 .. 2ty + 2, 2tx − 1 .. 2tx + 2), zero outside the plane.
// With the matrices of Lavin & Gray,
//
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]
//   Aᵀ = [1 1 1 0; 0 1 −1 −1],
//
// the forward is y_tile = Aᵀ [Σ_ci U(co, ci) ⊙ V(ci, tile)] A with U = G g Gᵀ (wino_weights)
// and V = Bᵀ d B (wino_input); the sum over ci is the GEMM. Grad-input is the same on dy
// with the flipped, transposed kernel, whose transform is U with rows and columns 0 ↔ 3
// swapped (G·flip = P·G with P that swap). Grad-weight: ∂U(co, ci) = Σ_tiles Z(co) ⊙
// V(ci) with Z = A dy_tile Aᵀ (wino_dy), a GEMM over the tiles, then ∂g = Gᵀ ∂U G
// (wino_grad_weight).
//
// Texel-array layouts (t = texel index, see texel_xy; Tp = 4·ceil(T/4), the tiles padded
// with zero tiles to whole texels):
//   V (wino_input):   t = ξ·(Tp·c4) + tile·c4 + q holds channels 4q .. 4q+3 (zero past c):
//                     the GEMM's B, k-packed over channels (forward, grad-input), or an
//                     operand 4-packed over channels at K = tile (grad-weight).
//   U (wino_weights): t = ξ·(cout·c4i) + co·c4i + qi holds ci = 4qi .. 4qi+3: the forward's
//                     A; with TRANSPOSED also U' (grad-input's A, rows ci, channels co)
//                     into dst2: t = ξ'·(cin·c4o) + ci·c4o + qo.
//   Z (wino_dy):      as V, of dy's channels (zero past T): grad-weight's other operand.
// The GEMM outputs are buffers [16][rows][Tp] (wino_output's source) and [16][cout][cin]
// or [16][cin][cout] (wino_grad_weight's source).
// wino_input and wino_dy read the channel-packed atlas of pack.wgsl, not the NCHW tensor:
// 16 (or 4) texel fetches of 4 channels each instead of 64 (or 16) scalar loads.

struct WinoParams {
    // Invocations of the entry point.
    total: u32,
    // Channels of the transformed tensor (wino_input, wino_dy) or rows of the product
    // (wino_output).
    c: u32,
    h: u32,
    w: u32,
    // Tiles per row, per image, in all (T), and ceil(T/4).
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
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override HAS_BIAS: bool = false;
// wino_weights: also write U' (grad-input's weights) into dst2. wino_grad_weight: the
// product is ∂Uᵀ.
override TRANSPOSED: bool = false;

@group(0) @binding(0) var<uniform> p: WinoParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// wino_input, wino_dy: the transformed tensor's channel-packed atlas (pack_atlas in
// pack.wgsl: texel (img·c4 + q)·h·w + pixel holds channels 4q .. 4q+3 of the pixel).
@group(0) @binding(1) var atlas: texture_2d<f32>;
// wino_input, wino_dy, wino_weights: texel-array outputs.
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;
@group(0) @binding(3) var dst2: texture_storage_2d<rgba32float, write>;
// wino_output: bias and the NCHW output; wino_grad_weight: the output.
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
// wino_output: the product as vec4 (4 tiles), or with SRC_TEXELS (CPU adapters, whose
// texel fetches are vector loads while a storage load is a loop over the SIMD lanes) from
// a texel-array copy bound after the output (otherwise a 1-texel placeholder).
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var src_texels: texture_2d<f32>;
override SRC_TEXELS: bool = false;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * 64u + lid;
}

// Image, tile row and tile column of tile t.
fn tile_of(t: u32) -> vec3<u32> {
    let r = t % p.tiles_img;
    return vec3<u32>(t / p.tiles_img, r / p.tw, r % p.tw);
}

// src[i] if ok, else 0 (index 0 is read instead: no branch).
fn load_or_zero(i: u32, ok: bool) -> f32 {
    return select(0.0, src[select(0u, i, ok)], ok);
}

// Bᵀ v for the 4 entries of one row or column (applied per component).
fn bt4(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(v0 - v2, v1 + v2, v2 - v1, v1 - v3);
}

// Channels 4q .. 4q+3 of pixel (yy, xx) of image img from the atlas, zero outside the
// plane.
fn atlas_at(img: u32, q: u32, yy: i32, xx: i32) -> vec4<f32> {
    let inside = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
    let t = ((img * p.c4 + q) * p.h + u32(max(yy, 0))) * p.w + u32(max(xx, 0));
    return select(vec4<f32>(0.0), textureLoad(atlas, texel_xy(select(0u, t, inside)), 0), inside);
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
    let tp = 4u * p.t4;
    let t = i % tp;
    let q = i / tp;
    let tile = tile_of(t);
    // Tiles past T (up to 4·t4) are zeros: their window lies above the plane.
    let y0 = select(-8, i32(2u * tile.y) - 1, t < p.tiles);
    let x0 = i32(2u * tile.z) - 1;
    // Rows of Bᵀ d: for each column b of the window, Bᵀ over its 4 rows.
    var r: array<vec4<f32>, 16>;
    for (var b = 0; b < 4; b = b + 1) {
        let m = bt4(atlas_at(tile.x, q, y0, x0 + b), atlas_at(tile.x, q, y0 + 1, x0 + b),
                    atlas_at(tile.x, q, y0 + 2, x0 + b), atlas_at(tile.x, q, y0 + 3, x0 + b));
        r[b] = m[0];
        r[4 + b] = m[1];
        r[8 + b] = m[2];
        r[12 + b] = m[3];
    }
    let stride = tp * p.c4;
    let base = t * p.c4 + q;
    for (var a = 0u; a < 4u; a = a + 1u) {
        let m = bt4(r[4u * a], r[4u * a + 1u], r[4u * a + 2u], r[4u * a + 3u]);
        for (var c = 0u; c < 4u; c = c + 1u) {
            textureStore(dst, texel_xy((4u * a + c) * stride + base), m[c]);
        }
    }
}

// G applied to one column (a, b, c) of a 3×3 kernel, per component: the column's 4
// transformed entries.
fn g_col(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a, 0.5 * (a + b + c), 0.5 * (a - b + c), c);
}

// Stores row r of a transform (m[c] = entry (r, c)) at ξ = 4r + c: texel ξ·stride + base.
fn store_row(out_tex: u32, r: u32, m: mat4x4<f32>, stride: u32, base: u32) {
    for (var c = 0u; c < 4u; c = c + 1u) {
        let t = texel_xy((4u * r + c) * stride + base);
        if (out_tex == 0u) {
            textureStore(dst, t, m[c]);
        } else {
            textureStore(dst2, t, m[c]);
        }
    }
}

// G g Gᵀ of 4 kernels at once (one per component; g[k] is tap k, row-major), stored into
// dst (`out_tex` 0) or, flipped (rows and columns 0 ↔ 3 swapped, see the header), into dst2.
fn transform_store(g: array<vec4<f32>, 9>, out_tex: u32, stride: u32, base: u32) {
    // Columns of G g, then G along each of its rows.
    let c0 = g_col(g[0], g[3], g[6]);
    let c1 = g_col(g[1], g[4], g[7]);
    let c2 = g_col(g[2], g[5], g[8]);
    let u0 = g_col(c0[0], c1[0], c2[0]);
    let u1 = g_col(c0[1], c1[1], c2[1]);
    let u2 = g_col(c0[2], c1[2], c2[2]);
    let u3 = g_col(c0[3], c1[3], c2[3]);
    if (out_tex == 0u) {
        store_row(0u, 0u, u0, stride, base);
        store_row(0u, 1u, u1, stride, base);
        store_row(0u, 2u, u2, stride, base);
        store_row(0u, 3u, u3, stride, base);
    } else {
        store_row(1u, 3u, mat4x4<f32>(u0[3], u0[1], u0[2], u0[0]), stride, base);
        store_row(1u, 1u, mat4x4<f32>(u1[3], u1[1], u1[2], u1[0]), stride, base);
        store_row(1u, 2u, mat4x4<f32>(u2[3], u2[1], u2[2], u2[0]), stride, base);
        store_row(1u, 0u, mat4x4<f32>(u3[3], u3[1], u3[2], u3[0]), stride, base);
    }
}

// Kernel tap k of output channels co + j·so and input channels ci + j·si (j = 0..3, one per
// component) from src [cout, cin, 3, 3], zero past the channels.
fn kernel4(co: u32, so: u32, ci: u32, si: u32) -> array<vec4<f32>, 9> {
    var g: array<vec4<f32>, 9>;
    for (var k = 0u; k < 9u; k = k + 1u) {
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j = j + 1u) {
            let o = co + j * so;
            let n = ci + j * si;
            v[j] = load_or_zero((o * p.cin + n) * 9u + k, o < p.cout && n < p.cin);
        }
        g[k] = v;
    }
    return g;
}

// U: one invocation per (co, qi) for t < cout·c4i, writing the 16 texels of ci = 4qi ..
// 4qi+3; with TRANSPOSED, U' after them: one invocation per (ci, qo), co = 4qo .. 4qo+3.
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
        transform_store(kernel4(co, 0u, 4u * qi, 1u), 0u, p.cout * p.c4i, co * p.c4i + qi);
    } else if (TRANSPOSED) {
        let j = i - forward;
        let qo = j % p.c4o;
        let ci = j / p.c4o;
        transform_store(kernel4(4u * qo, 1u, ci, 0u), 1u, p.cin * p.c4o, ci * p.c4o + qo);
    }
}

// Texel t of the product (4 consecutive tiles of one row at one ξ).
fn product_at(t: u32) -> vec4<f32> {
    if (SRC_TEXELS) {
        return textureLoad(src_texels, texel_xy(t), 0);
    }
    return src4[t];
}

// y = Aᵀ M A (+ bias) for 4 consecutive tiles (one per component) of one row (channel) of
// the product: src4 is the GEMM output [16][c][4·t4], out NCHW [n, c, h, w]. One
// invocation per (row, tile texel tq): t = row·t4 + tq.
@compute @workgroup_size(64)
fn wino_output(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let tq = i % p.t4;
    let row = i / p.t4;
    let stride = p.c * p.t4;
    // Aᵀ M: two rows of 4 entries, each a vec4 over the 4 tiles.
    var s0: array<vec4<f32>, 4>;
    var s1: array<vec4<f32>, 4>;
    for (var c = 0u; c < 4u; c = c + 1u) {
        let m0 = product_at(c * stride + i);
        let m1 = product_at((4u + c) * stride + i);
        let m2 = product_at((8u + c) * stride + i);
        let m3 = product_at((12u + c) * stride + i);
        s0[c] = m0 + m1 + m2;
        s1[c] = m1 - m2 - m3;
    }
    var b = 0.0;
    if (HAS_BIAS) {
        b = bias[row];
    }
    let y00 = s0[0] + s0[1] + s0[2] + b;
    let y01 = s0[1] - s0[2] - s0[3] + b;
    let y10 = s1[0] + s1[1] + s1[2] + b;
    let y11 = s1[1] - s1[2] - s1[3] + b;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let t = 4u * tq + j;
        if (t < p.tiles) {
            let tile = tile_of(t);
            let y = 2u * tile.y;
            let x = 2u * tile.z;
            let base = ((tile.x * p.c + row) * p.h + y) * p.w + x;
            out[base] = y00[j];
            if (x + 1u < p.w) {
                out[base + 1u] = y01[j];
            }
            if (y + 1u < p.h) {
                out[base + p.w] = y10[j];
                if (x + 1u < p.w) {
                    out[base + p.w + 1u] = y11[j];
                }
            }
        }
    }
}

// Z = A e Aᵀ of one tile of 4 channels (one per component), read from dy's atlas: e is
// the tile's 2 × 2 block of dy (zero outside the plane, and for the tiles past T).
@compute @workgroup_size(64)
fn wino_dy(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let tp = 4u * p.t4;
    let t = i % tp;
    let q = i / tp;
    let tile = tile_of(t);
    // Past T: rows above the plane, read as zeros.
    let y = select(-4, i32(2u * tile.y), t < p.tiles);
    let x = i32(2u * tile.z);
    let e00 = atlas_at(tile.x, q, y, x);
    let e01 = atlas_at(tile.x, q, y, x + 1);
    let e10 = atlas_at(tile.x, q, y + 1, x);
    let e11 = atlas_at(tile.x, q, y + 1, x + 1);
    // A e: rows e0, e0 + e1, e0 − e1, −e1 of the block's rows e0 = (e00, e01),
    // e1 = (e10, e11); then the same along the columns.
    let c0 = mat4x4<f32>(e00, e00 + e10, e00 - e10, -e10);
    let c1 = mat4x4<f32>(e01, e01 + e11, e01 - e11, -e11);
    let stride = tp * p.c4;
    let base = t * p.c4 + q;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let u = c0[r];
        let v = c1[r];
        textureStore(dst, texel_xy((4u * r) * stride + base), u);
        textureStore(dst, texel_xy((4u * r + 1u) * stride + base), u + v);
        textureStore(dst, texel_xy((4u * r + 2u) * stride + base), u - v);
        textureStore(dst, texel_xy((4u * r + 3u) * stride + base), -v);
    }
}

// ∂g = Gᵀ ∂U G for one (co, ci): src is the GEMM output [16][cout][cin] ([16][cin][cout]
// with TRANSPOSED), dw the kernel's gradient [cout, cin, 3, 3].
@compute @workgroup_size(64)
fn wino_grad_weight(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let stride = p.cout * p.cin;
    // With TRANSPOSED the product is [16][cin][cout].
    let ci = i % p.cin;
    let co = i / p.cin;
    let at = select(i, ci * p.cout + co, TRANSPOSED);
    // Gᵀ ∂U: 3 rows of 4, from the rows u0 .. u3 of ∂U.
    var t: array<vec4<f32>, 3>;
    var u: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r = r + 1u) {
        u[r] = vec4<f32>(src[(4u * r) * stride + at], src[(4u * r + 1u) * stride + at],
                         src[(4u * r + 2u) * stride + at], src[(4u * r + 3u) * stride + at]);
    }
    t[0] = u[0] + 0.5 * (u[1] + u[2]);
    t[1] = 0.5 * (u[1] - u[2]);
    t[2] = 0.5 * (u[1] + u[2]) + u[3];
    for (var r = 0u; r < 3u; r = r + 1u) {
        let v = t[r];
        dw[9u * i + 3u * r] = v.x + 0.5 * (v.y + v.z);
        dw[9u * i + 3u * r + 1u] = 0.5 * (v.y - v.z);
        dw[9u * i + 3u * r + 2u] = 0.5 * (v.y + v.z) + v.w;
    }
}
