// Shared helpers, prepended (by plain concatenation, no templating) to every shader file by
// src/gpu/shaders.rs. Keep this file free of bindings and entry points.

// Linear workgroup index of a grid folded to 2-D or 3-D by src/gpu/grid.rs.
fn wg_linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + (wid.y + wid.z * nwg.y) * nwg.x;
}

// Largest finite f32, used to saturate instead of producing inf (WGSL does not guarantee
// IEEE inf/NaN semantics).
const F32_MAX: f32 = 3.4028234e38;
// Smallest positive normal f32: log() is clamped here instead of returning -inf.
const F32_MIN_POS: f32 = 1.1754944e-38;
// exp() argument above which the result would overflow f32.
const EXP_MAX_ARG: f32 = 88.72283;

// exp() of a non-positive argument, clamped at −EXP_MAX_ARG so the argument stays in the
// range where the result is a normal f32 (≥ 3e-39: far below any tolerance, and no reliance
// on how a GPU flushes denormals or handles −inf).
fn exp_nonpos(d: f32) -> f32 {
    return exp(max(d, -EXP_MAX_ARG));
}

// a / b, or 0 (not NaN) when b is 0: a mean over no valid pixel.
fn safe_div(a: f32, b: f32) -> f32 {
    return select(0.0, a / select(1.0, b, b != 0.0), b != 0.0);
}

// σ(v) without overflow: e = exp(−|v|) ∈ (0, 1].
fn sigmoid(v: f32) -> f32 {
    let e = exp(-min(abs(v), EXP_MAX_ARG));
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, v >= 0.0);
}

// Shape and per-operand strides/offsets of the strided kernels (binary, where, copy);
// mirrors StridedParams in src/gpu/strided.rs. Eight dims, four operands.
struct Strided {
    n: u32,
    rank: u32,
    _p0: u32,
    _p1: u32,
    offsets: vec4<u32>,
    shape: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 8>,
}

// Rank of the strided kernels' iteration space, fixed per pipeline so that the index loop
// below has a constant trip count and unrolls into constant-indexed uniform loads
// (a dynamic loop over the uniform arrays measured ~10x slower on lavapipe).
override RANK: u32 = 8u;

// Element index of operand k at linear output position i (row-major over s.shape).
fn strided_index(s: Strided, k: u32, i: u32) -> u32 {
    var rem = i;
    var idx = s.offsets[k];
    for (var j = 0u; j < RANK; j = j + 1u) {
        let d = RANK - 1u - j;
        let dim = s.shape[d / 4u][d % 4u];
        idx = idx + (rem % dim) * s.strides[k * 2u + d / 4u][d % 4u];
        rem = rem / dim;
    }
    return idx;
}

// Parameters of both matmul kernels (matmul.wgsl, matmul_sg.wgsl); mirrors MatmulParams in
// src/ops/matmul.rs. Row/column strides of A and B, then the batch shape and A's and B's
// strides over it (8 dims each; broadcast dims have stride 0).
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    tiles_m: u32,
    tiles_n: u32,
    batch_rank: u32,
    _p0: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    bshape: array<vec4<u32>, 2>,
    a_bs: array<vec4<u32>, 2>,
    b_bs: array<vec4<u32>, 2>,
}

// Parameters of the direct conv kernels (conv_direct.wgsl, conv_grad_weight.wgsl,
// conv_pack.wgsl); mirrors DirectUniform in src/ops/conv/direct.rs. hp, wp: padded input
// plane; kt = Cin_g·KH·KW; cblocks = channel blocks per group; pblocks = pixel (tap) blocks;
// total = invocations; rows = output rows per grad-weight chunk; nchunks = chunks per image.
struct ConvDirectParams {
    n: u32, cin: u32, hp: u32, wp: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    cin_g: u32, cout_g: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, dh: u32, dw: u32,
    kt: u32, cblocks: u32, pblocks: u32, total: u32,
    rows: u32, nchunks: u32, ph: u32, pw: u32,
    h: u32, w: u32, _p0: u32, _p1: u32,
}

// Element offsets of batch `bi` in A and in B (x, y) for both matmul kernels.
fn matmul_batch_bases(q: MatmulParams, bi: u32) -> vec2<u32> {
    var bases = vec2<u32>(0u, 0u);
    var rem = bi;
    var d = q.batch_rank;
    while (d > 0u) {
        d = d - 1u;
        let c = rem % q.bshape[d / 4u][d % 4u];
        rem = rem / q.bshape[d / 4u][d % 4u];
        bases = bases + c * vec2<u32>(q.a_bs[d / 4u][d % 4u], q.b_bs[d / 4u][d % 4u]);
    }
    return bases;
}

// Texel arrays (GpuTex in src/gpu/pool.rs): linear texel index t is stored at (t mod 2^12,
// t / 2^12) of an rgba32float texture 2^12 = TEX_WIDTH texels wide.
const TEX_SHIFT: u32 = 12u;

fn texel_xy(t: u32) -> vec2<u32> {
    return vec2<u32>(t & ((1u << TEX_SHIFT) - 1u), t >> TEX_SHIFT);
}
