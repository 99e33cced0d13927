// 2-D convolution as a register-blocked implicit GEMM over a zero-padded copy of the input
// (src/ops/conv/direct.rs; also runs stride-1 grad-input, on dy with the flipped kernel):
//
//   y[n, co, oh, ow] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx]
//                          · xp[n, g·Cin_g + ci, oh·sh + ky·dh, ow·sw + kx·dw]
//
// where xp is x padded by (ph, pw) zeros on each side (conv_pad), so every tap is in bounds,
// and w comes packed by conv_pack as [groups, K, cblocks·BC] (channel blocks zero-padded).
// One invocation: BC = 16 channels (of one group) × BP = 16 consecutive pixels of the
// flattened N·Ho·Wo output, in sixteen mat4x4 accumulators; per tap, BP scalar loads of xp
// and BC/4 vec4 loads of w feed BC·BP FMAs. Tail pixels re-read the last valid one (clamped
// index) and are not stored; tail channels read zero weights and are not stored. No load is
// masked, there is no shared memory and no barrier.
//
// Why (measured on lavapipe, numbers in src/ops/conv/direct.rs): its cost is almost all
// loads, ~30 cycles per invocation and loaded component (a per-invocation scalar loop in
// Mesa 22.3, workgroup memory included), while FMAs are nearly free; so what counts is FMAs
// per loaded component (here 256 per 32), not shared-memory reuse. The matmul-style 64 × 64
// shared-memory tile ran the 1×1 row no faster than the old 4 × 4 gather kernel.

// Output channels per invocation. Mirrors CONV_BC in src/ops/conv/direct.rs.
const BC: u32 = 16u;
// Output pixels per invocation. Mirrors CONV_BP.
const BP: u32 = 16u;

override WG: u32 = 64u;
override HAS_BIAS: u32 = 0u;

@group(0) @binding(0) var<uniform> p: ConvDirectParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * WG + lid;
}

// a = xp, w4 = packed weights, c = bias (read only when HAS_BIAS = 1).
@compute @workgroup_size(WG)
fn conv_direct(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    // Pixel blocks fastest: a workgroup shares its channels (uniform weight loads on GPUs)
    // and reads neighbouring pixels. Channel blocks fastest measured slower on lavapipe (CPU
    // time, dil-6 256→256 forward 3180 vs 2870 ms, 64→64 128×128 forward 3340 vs ~1700 ms).
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
    var m00 = mat4x4<f32>(); var m01 = mat4x4<f32>(); var m02 = mat4x4<f32>(); var m03 = mat4x4<f32>();
    var m10 = mat4x4<f32>(); var m11 = mat4x4<f32>(); var m12 = mat4x4<f32>(); var m13 = mat4x4<f32>();
    var m20 = mat4x4<f32>(); var m21 = mat4x4<f32>(); var m22 = mat4x4<f32>(); var m23 = mat4x4<f32>();
    var m30 = mat4x4<f32>(); var m31 = mat4x4<f32>(); var m32 = mat4x4<f32>(); var m33 = mat4x4<f32>();
    let row_step = p.dh * p.wp;
    for (var ci = 0u; ci < p.cin_g; ci = ci + 1u) {
        var off = ci * pplane;
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            var tap = off;
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                let x0 = vec4<f32>(a[xo[0] + tap], a[xo[1] + tap], a[xo[2] + tap], a[xo[3] + tap]);
                let x1 = vec4<f32>(a[xo[4] + tap], a[xo[5] + tap], a[xo[6] + tap], a[xo[7] + tap]);
                let x2 = vec4<f32>(a[xo[8] + tap], a[xo[9] + tap], a[xo[10] + tap], a[xo[11] + tap]);
                let x3 = vec4<f32>(a[xo[12] + tap], a[xo[13] + tap], a[xo[14] + tap], a[xo[15] + tap]);
                let w0 = w4[wi + 0u];
                let w1 = w4[wi + 1u];
                let w2 = w4[wi + 2u];
                let w3 = w4[wi + 3u];
                m00 += mat4x4<f32>(x0 * w0.x, x0 * w0.y, x0 * w0.z, x0 * w0.w);
                m01 += mat4x4<f32>(x1 * w0.x, x1 * w0.y, x1 * w0.z, x1 * w0.w);
                m02 += mat4x4<f32>(x2 * w0.x, x2 * w0.y, x2 * w0.z, x2 * w0.w);
                m03 += mat4x4<f32>(x3 * w0.x, x3 * w0.y, x3 * w0.z, x3 * w0.w);
                m10 += mat4x4<f32>(x0 * w1.x, x0 * w1.y, x0 * w1.z, x0 * w1.w);
                m11 += mat4x4<f32>(x1 * w1.x, x1 * w1.y, x1 * w1.z, x1 * w1.w);
                m12 += mat4x4<f32>(x2 * w1.x, x2 * w1.y, x2 * w1.z, x2 * w1.w);
                m13 += mat4x4<f32>(x3 * w1.x, x3 * w1.y, x3 * w1.z, x3 * w1.w);
                m20 += mat4x4<f32>(x0 * w2.x, x0 * w2.y, x0 * w2.z, x0 * w2.w);
                m21 += mat4x4<f32>(x1 * w2.x, x1 * w2.y, x1 * w2.z, x1 * w2.w);
                m22 += mat4x4<f32>(x2 * w2.x, x2 * w2.y, x2 * w2.z, x2 * w2.w);
                m23 += mat4x4<f32>(x3 * w2.x, x3 * w2.y, x3 * w2.z, x3 * w2.w);
                m30 += mat4x4<f32>(x0 * w3.x, x0 * w3.y, x0 * w3.z, x0 * w3.w);
                m31 += mat4x4<f32>(x1 * w3.x, x1 * w3.y, x1 * w3.z, x1 * w3.w);
                m32 += mat4x4<f32>(x2 * w3.x, x2 * w3.y, x2 * w3.z, x2 * w3.w);
                m33 += mat4x4<f32>(x3 * w3.x, x3 * w3.y, x3 * w3.z, x3 * w3.w);
                wi = wi + wstep;
                tap = tap + p.dw;
            }
            off = off + row_step;
        }
    }
    // acc[channel][pixel] = mCQ[channel % 4][pixel % 4] of channel group C, pixel group Q.
    var acc: array<array<f32, BP>, BC>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            acc[i + 0u][j + 0u] = m00[i][j]; acc[i + 0u][j + 4u] = m01[i][j]; acc[i + 0u][j + 8u] = m02[i][j]; acc[i + 0u][j + 12u] = m03[i][j];
            acc[i + 4u][j + 0u] = m10[i][j]; acc[i + 4u][j + 4u] = m11[i][j]; acc[i + 4u][j + 8u] = m12[i][j]; acc[i + 4u][j + 12u] = m13[i][j];
            acc[i + 8u][j + 0u] = m20[i][j]; acc[i + 8u][j + 4u] = m21[i][j]; acc[i + 8u][j + 8u] = m22[i][j]; acc[i + 8u][j + 12u] = m23[i][j];
            acc[i + 12u][j + 0u] = m30[i][j]; acc[i + 12u][j + 4u] = m31[i][j]; acc[i + 12u][j + 8u] = m32[i][j]; acc[i + 12u][j + 12u] = m33[i][j];
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

