// 2-D convolution and its two gradients as implicit GEMMs C[m, j] = Σ_k A[m, k] · B[k, j]
// (nothing is materialised: A and B elements are gathered from the tensors while staging),
// one per group g. MODE picks the operands (see src/ops/conv.rs for the formulas):
//
//   MODE 0, conv2d:  m = output channel co, j = output pixel (n, oh, ow) over the whole
//     batch, k = tap (ci, ky, kx); A = w[co, k], B = x[n, ci, oh·sh − ph + ky·dh,
//     ow·sw − pw + kx·dw] (0 outside); out = y[n, co, oh, ow] = C + bias.
//   MODE 1, grad-input: m = input channel ci, j = input pixel (n, ih, iw), k = (co, ky, kx);
//     A = w[co, ci, ky, kx], B = dy[n, co, oh, ow] where oh·sh = ih + ph − ky·dh (0 when that
//     is not a multiple of the stride or lies outside dy): a correlation of dy with the
//     flipped, transposed kernel; out = dx.
//   MODE 2, grad-weight: m = co, j = tap (ci, ky, kx), k = position r = (n, oh, ow) within
//     this workgroup's chunk of N·Ho·Wo; A = dy[n, co, oh, ow], B = x[n, ci, ih, iw];
//     out = partial[chunk, co, j], summed over chunks by the host (no atomics).
//
// Tiling is that of shaders/matmul.wgsl: one workgroup of 8 × 8 invocations per 64 × 64
// tile of C, each invocation an 8 × 8 register block; K advances in slabs of 16 staged in
// workgroup memory as vec4s. Every gather is bounds-checked (tails of M, N and K, padding),
// so any shape and over-dispatch is handled; the K loop bound is uniform, no early return.

override MODE: u32 = 0u;
override HAS_BIAS: u32 = 0u;

const TILE: u32 = 64u;
const BK: u32 = 16u;
const SLOTS: u32 = 16u;
const LANES: u32 = 8u;
const WG: u32 = 64u;

// Mirrors ConvGemmUniform in src/ops/conv/gemm.rs. gm, gn, gk: the GEMM sizes per group
// (gk is the chunk length in MODE 2); kt = Cin_g·KH·KW.
struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    cin_g: u32, cout_g: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32,
    dh: u32, dw: u32, gm: u32, gn: u32,
    gk: u32, tiles_m: u32, tiles_n: u32, nchunks: u32,
    ktot: u32, rtot: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

// What an invocation needs to gather its four B columns j0..j0+3 (fixed for the whole K
// loop): a base offset, two coordinates and validity per column.
struct Cols {
    base: vec4<u32>,
    y: vec4<i32>,
    x: vec4<i32>,
    ok: vec4<bool>,
}

fn cols(g: u32, j0: u32) -> Cols {
    var q: Cols;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let j = j0 + i;
        q.ok[i] = j < p.gn;
        if (MODE == 0u) {
            let plane = p.ho * p.wo;
            let n = j / plane;
            let pix = j % plane;
            q.base[i] = (n * p.cin + g * p.cin_g) * p.h * p.w;
            q.y[i] = i32((pix / p.wo) * p.sh) - i32(p.ph);
            q.x[i] = i32((pix % p.wo) * p.sw) - i32(p.pw);
        } else if (MODE == 1u) {
            let plane = p.h * p.w;
            let n = j / plane;
            let pix = j % plane;
            q.base[i] = (n * p.cout + g * p.cout_g) * p.ho * p.wo;
            q.y[i] = i32(pix / p.w + p.ph);
            q.x[i] = i32(pix % p.w + p.pw);
        } else {
            let kk = p.kh * p.kw;
            let r = j % kk;
            q.base[i] = (g * p.cin_g + j / kk) * p.h * p.w;
            q.y[i] = i32((r / p.kw) * p.dh) - i32(p.ph);
            q.x[i] = i32((r % p.kw) * p.dw) - i32(p.pw);
        }
    }
    return q;
}

// B[k, j0..j0+3] for reduction index k (< kend, the end of this workgroup's range).
fn load_b(q: Cols, k: u32, kend: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k >= kend) {
        return v;
    }
    var off = 0u;
    var y = q.y;
    var x = q.x;
    var ok = q.ok;
    if (MODE == 0u) {
        let kk = p.kh * p.kw;
        let r = k % kk;
        off = (k / kk) * p.h * p.w;
        y = y + vec4<i32>(i32((r / p.kw) * p.dh));
        x = x + vec4<i32>(i32((r % p.kw) * p.dw));
    } else if (MODE == 1u) {
        let kk = p.kh * p.kw;
        let r = k % kk;
        off = (k / kk) * p.ho * p.wo;
        let ty = y - vec4<i32>(i32((r / p.kw) * p.dh));
        let tx = x - vec4<i32>(i32((r % p.kw) * p.dw));
        y = ty / vec4<i32>(i32(p.sh));
        x = tx / vec4<i32>(i32(p.sw));
        ok = ok & (ty >= vec4<i32>(0)) & (tx >= vec4<i32>(0))
            & (y * vec4<i32>(i32(p.sh)) == ty) & (x * vec4<i32>(i32(p.sw)) == tx);
    } else {
        let plane = p.ho * p.wo;
        let n = k / plane;
        let pix = k % plane;
        off = n * p.cin * p.h * p.w;
        y = y + vec4<i32>(i32((pix / p.wo) * p.sh));
        x = x + vec4<i32>(i32((pix % p.wo) * p.sw));
    }
    // Source plane size: dy's in MODE 1, x's otherwise.
    var sh = p.h;
    var sw = p.w;
    if (MODE == 1u) {
        sh = p.ho;
        sw = p.wo;
    }
    ok = ok & (y >= vec4<i32>(0)) & (y < vec4<i32>(i32(sh)))
        & (x >= vec4<i32>(0)) & (x < vec4<i32>(i32(sw)));
    for (var i = 0u; i < 4u; i = i + 1u) {
        if (ok[i]) {
            v[i] = b[q.base[i] + off + u32(y[i]) * sw + u32(x[i])];
        }
    }
    return v;
}

// A[m0..m0+3, k] of group g (k < kend).
fn load_a(g: u32, m0: u32, k: u32, kend: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k >= kend) {
        return v;
    }
    let kk = p.kh * p.kw;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + i;
        if (m < p.gm) {
            if (MODE == 0u) {
                v[i] = a[(g * p.cout_g + m) * p.ktot + k];
            } else if (MODE == 1u) {
                v[i] = a[((g * p.cout_g + k / kk) * p.cin_g + m) * kk + k % kk];
            } else {
                let plane = p.ho * p.wo;
                v[i] = a[((k / plane) * p.cout + g * p.cout_g + m) * plane + k % plane];
            }
        }
    }
    return v;
}

// Stores C[m, j0..j0+7] (row m of this invocation's block).
fn store_row(ok: bool, g: u32, chunk: u32, m: u32, j0: u32, v0: vec4<f32>, v1: vec4<f32>) {
    if (!ok || m >= p.gm) {
        return;
    }
    var bias = 0.0;
    if (MODE == 0u && HAS_BIAS != 0u) {
        bias = c[g * p.cout_g + m];
    }
    for (var i = 0u; i < 8u; i = i + 1u) {
        let j = j0 + i;
        if (j >= p.gn) {
            break;
        }
        var v = v0[i % 4u];
        if (i >= 4u) {
            v = v1[i % 4u];
        }
        if (MODE == 0u) {
            let plane = p.ho * p.wo;
            out[((j / plane) * p.cout + g * p.cout_g + m) * plane + j % plane] = v + bias;
        } else if (MODE == 1u) {
            let plane = p.h * p.w;
            out[((j / plane) * p.cin + g * p.cin_g + m) * plane + j % plane] = v;
        } else {
            out[(chunk * p.cout + g * p.cout_g + m) * p.ktot + j] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let wg = wg_linear(wid, nwg);
    // Workgroup order: group, chunk, tile row, tile column (fastest): consecutive workgroups
    // share A's rows.
    let per_chunk = p.tiles_m * p.tiles_n;
    let per_g = per_chunk * p.nchunks;
    let ok = wg < p.groups * per_g;
    let g = select(0u, wg / per_g, ok);
    let t = wg % per_g;
    let chunk = t / per_chunk;
    let row0 = ((t % per_chunk) / p.tiles_n) * TILE;
    let col0 = (t % p.tiles_n) * TILE;
    // Reduction range of this workgroup: one chunk of positions in MODE 2, all taps else.
    let kbeg = chunk * p.gk;
    var kend = min(kbeg + p.gk, p.rtot);
    if (!ok) {
        kend = 0u;
    }

    // Staging roles (as in matmul.wgsl): A slot (a_kk = lid % 16, rows 4·(lid / 16 + 4r)),
    // B slot (b_kk = lid / 16 + 4r, columns 4·(lid % 16)).
    let q = cols(g, col0 + (lid % SLOTS) * 4u);
    let tx = lid % LANES;
    let ty = lid / LANES;
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);

    for (var k0 = kbeg; k0 < kbeg + p.gk; k0 = k0 + BK) {
        for (var r = 0u; r < SLOTS * SLOTS / WG; r = r + 1u) {
            let s = lid + r * WG;
            let a_kk = s % SLOTS;
            let a_m4 = s / SLOTS;
            As[a_kk * SLOTS + a_m4] = load_a(g, row0 + a_m4 * 4u, k0 + a_kk, kend);
            let b_kk = s / SLOTS;
            Bs[b_kk * SLOTS + s % SLOTS] = load_b(q, k0 + b_kk, kend);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a0 = As[kk * SLOTS + ty * 2u];
            let a1 = As[kk * SLOTS + ty * 2u + 1u];
            let b0 = Bs[kk * SLOTS + tx * 2u];
            let b1 = Bs[kk * SLOTS + tx * 2u + 1u];
            c00 = fma(vec4<f32>(a0.x), b0, c00); c01 = fma(vec4<f32>(a0.x), b1, c01);
            c10 = fma(vec4<f32>(a0.y), b0, c10); c11 = fma(vec4<f32>(a0.y), b1, c11);
            c20 = fma(vec4<f32>(a0.z), b0, c20); c21 = fma(vec4<f32>(a0.z), b1, c21);
            c30 = fma(vec4<f32>(a0.w), b0, c30); c31 = fma(vec4<f32>(a0.w), b1, c31);
            c40 = fma(vec4<f32>(a1.x), b0, c40); c41 = fma(vec4<f32>(a1.x), b1, c41);
            c50 = fma(vec4<f32>(a1.y), b0, c50); c51 = fma(vec4<f32>(a1.y), b1, c51);
            c60 = fma(vec4<f32>(a1.z), b0, c60); c61 = fma(vec4<f32>(a1.z), b1, c61);
            c70 = fma(vec4<f32>(a1.w), b0, c70); c71 = fma(vec4<f32>(a1.w), b1, c71);
        }
        workgroupBarrier();
    }

    let m = row0 + ty * 8u;
    let j = col0 + tx * 8u;
    store_row(ok, g, chunk, m, j, c00, c01);
    store_row(ok, g, chunk, m + 1u, j, c10, c11);
    store_row(ok, g, chunk, m + 2u, j, c20, c21);
    store_row(ok, g, chunk, m + 3u, j, c30, c31);
    store_row(ok, g, chunk, m + 4u, j, c40, c41);
    store_row(ok, g, chunk, m + 5u, j, c50, c51);
    store_row(ok, g, chunk, m + 6u, j, c60, c61);
    store_row(ok, g, chunk, m + 7u, j, c70, c71);
}
