// 2-D convolution (forward; grad-input as a forward pass, see src/ops/conv/direct.rs) and its
// weight gradient as register-blocked implicit GEMMs over a zero-padded copy of the input,
// without shared memory, barriers or bounds checks in the inner loops.
//
// conv_direct: y[n, co, oh, ow] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx]
//                  · xp[n, g·Cin_g + ci, oh·sh + ky·dh, ow·sw + kx·dw]
//   where xp is x padded by (ph, pw) zeros on each side (so every tap is in bounds).
//   One invocation: BC channels (of one group) × BP consecutive pixels of the flattened
//   N·Ho·Wo output; per tap BC + BP loads feed BC·BP FMAs. Tail channels and pixels re-read
//   the last valid one (clamped indices) and are not stored, so no load is ever masked.
// conv_direct_gw: partial[chunk, co, k] = Σ_{r in chunk} dy[n, co, oh, ow] · xp[n, g·Cin_g + ci,
//   oh·sh + ky·dh, ow·sw + kx·dw] with r = (n, oh, ow) and k = (ci, ky, kx); one invocation
//   owns BC channels × BT taps and walks the chunk's positions (BC + BT loads per BC·BT
//   FMAs); the host sums the chunks (no atomics).
// conv_pad: xp from x. conv_flip: w'[g·Cin_g + ci, co, ky, kx] = w[g·Cout_g + co, ci,
//   KH − 1 − ky, KW − 1 − kx] (the transposed, flipped kernel of the grad-input pass).
//
// Why this formulation (measured on lavapipe, see CONV_BC in src/ops/conv/direct.rs): the
// matmul-style 64 × 64 tile with shared-memory staging ran the 1×1 256→256 row no faster
// than the old 4 × 4 gather kernel, because lavapipe turns every workgroup-memory access and
// every masked load into a per-invocation scalar loop; plain loads at clamped addresses and
// FMAs into registers are what it runs fast.

// Output channels per invocation. Mirrors CONV_BC in src/ops/conv/direct.rs.
const BC: u32 = 16u;
// Output pixels (conv_direct) or taps (conv_direct_gw) per invocation. Mirrors CONV_BP.
const BP: u32 = 8u;

override WG: u32 = 64u;
override HAS_BIAS: u32 = 0u;

// Mirrors DirectUniform in src/ops/conv/direct.rs. hp, wp: padded input plane; kt =
// Cin_g·KH·KW; cblocks = channel blocks per group; pblocks = pixel (tap) blocks; total =
// invocations; rows = output rows per grad-weight chunk; nchunks = chunks per image.
struct Params {
    n: u32, cin: u32, hp: u32, wp: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    cin_g: u32, cout_g: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, dh: u32, dw: u32,
    kt: u32, cblocks: u32, pblocks: u32, total: u32,
    rows: u32, nchunks: u32, ph: u32, pw: u32,
    h: u32, w: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * WG + lid;
}

// conv_direct: a = xp, b = w, c = bias (read only when HAS_BIAS = 1).
@compute @workgroup_size(WG)
fn conv_direct(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    // Pixel blocks fastest: a workgroup shares its channels (uniform weight loads on GPUs)
    // and reads neighbouring pixels.
    let pb = t % p.pblocks;
    let r = t / p.pblocks;
    let c0 = (r % p.cblocks) * BC;
    let g = r / p.cblocks;
    let plane = p.ho * p.wo;
    let npix = p.n * plane;
    let pplane = p.hp * p.wp;
    var xo: array<u32, BP>;
    for (var j = 0u; j < BP; j = j + 1u) {
        let q = min(pb * BP + j, npix - 1u);
        let n = q / plane;
        let s = q % plane;
        xo[j] = (n * p.cin + g * p.cin_g) * pplane + (s / p.wo) * p.sh * p.wp + (s % p.wo) * p.sw;
    }
    // Packed weights: vec4 index of (tap k, channels c0..c0+3) is wbase + k·4·cblocks.
    var wi = (g * p.kt * p.cblocks + c0 / BC) * 4u;
    let wstep = p.cblocks * 4u;
    var m00 = mat4x4<f32>(); var m01 = mat4x4<f32>();
    var m10 = mat4x4<f32>(); var m11 = mat4x4<f32>();
    var m20 = mat4x4<f32>(); var m21 = mat4x4<f32>();
    var m30 = mat4x4<f32>(); var m31 = mat4x4<f32>();
    let row_step = p.dh * p.wp;
    for (var ci = 0u; ci < p.cin_g; ci = ci + 1u) {
        var off = ci * pplane;
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            var tap = off;
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                let xa = vec4<f32>(a[xo[0] + tap], a[xo[1] + tap], a[xo[2] + tap], a[xo[3] + tap]);
                let xb = vec4<f32>(a[xo[4] + tap], a[xo[5] + tap], a[xo[6] + tap], a[xo[7] + tap]);
                let w0 = w4[wi];
                let w1 = w4[wi + 1u];
                let w2 = w4[wi + 2u];
                let w3 = w4[wi + 3u];
                m00 += mat4x4<f32>(xa * w0.x, xa * w0.y, xa * w0.z, xa * w0.w);
                m01 += mat4x4<f32>(xb * w0.x, xb * w0.y, xb * w0.z, xb * w0.w);
                m10 += mat4x4<f32>(xa * w1.x, xa * w1.y, xa * w1.z, xa * w1.w);
                m11 += mat4x4<f32>(xb * w1.x, xb * w1.y, xb * w1.z, xb * w1.w);
                m20 += mat4x4<f32>(xa * w2.x, xa * w2.y, xa * w2.z, xa * w2.w);
                m21 += mat4x4<f32>(xb * w2.x, xb * w2.y, xb * w2.z, xb * w2.w);
                m30 += mat4x4<f32>(xa * w3.x, xa * w3.y, xa * w3.z, xa * w3.w);
                m31 += mat4x4<f32>(xb * w3.x, xb * w3.y, xb * w3.z, xb * w3.w);
                wi = wi + wstep;
                tap = tap + p.dw;
            }
            off = off + row_step;
        }
    }
    // acc[channel][pixel]: mCP[channel % 4][pixel % 4] of channel group C, pixel group P.
    var acc: array<array<f32, BP>, BC>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            acc[i][j] = m00[i][j]; acc[i][j + 4u] = m01[i][j];
            acc[i + 4u][j] = m10[i][j]; acc[i + 4u][j + 4u] = m11[i][j];
            acc[i + 8u][j] = m20[i][j]; acc[i + 8u][j + 4u] = m21[i][j];
            acc[i + 12u][j] = m30[i][j]; acc[i + 12u][j + 4u] = m31[i][j];
        }
    }
    for (var k = 0u; k < BC; k = k + 1u) {
        let co = c0 + k;
        if (co < p.cout_g) {
            var bias = 0.0;
            if (HAS_BIAS != 0u) {
                bias = c[g * p.cout_g + co];
            }
            for (var j = 0u; j < BP; j = j + 1u) {
                let q = pb * BP + j;
                if (q < npix) {
                    out[((q / plane) * p.cout + g * p.cout_g + co) * plane + q % plane] =
                        acc[k][j] + bias;
                }
            }
        }
    }
}

