// Gradient of a 2-D convolution with respect to its weights (src/ops/conv/direct.rs), as a
// register-blocked implicit GEMM over the padded input xp and the channels-last packed dy
// (both from conv_pack.wgsl):
//
//   partial[chunk, co, k] = Σ_{(n, oh, ow) in chunk} dy[n, co, oh, ow]
//                               · xp[n, g·Cin_g + ci, oh·sh + ky·dh, ow·sw + kx·dw]
//
// with k = (ci, ky, kx) the flattened tap (w's row-major layout), g = co / Cout_g and a chunk
// a band of `rows` output rows of one image; the host sums the chunks (no atomics). One
// invocation owns BC channels × BT taps: per position BC/4 vec4 loads of dy and BT scalar
// loads of xp feed BC·BT FMAs, with no bounds checks (padding is in xp, tail channels are
// zeros in the packed dy, tail taps re-read the last one and are not stored).

// Channels per invocation (the packed dy's channel block). Mirrors CONV_BC.
const BC: u32 = 16u;
// Taps per invocation. Mirrors CONV_GW_BT in src/ops/conv/direct.rs.
const BT: u32 = 16u;

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: ConvDirectParams;
@group(0) @binding(1) var<storage, read> xp: array<f32>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Invocations: (chunk, group, channel block, tap block) with tap blocks fastest, so a
// workgroup shares its dy loads.
@compute @workgroup_size(WG)
fn conv_direct_gw(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.total) {
        return;
    }
    let tb = t % p.pblocks;
    let r0 = t / p.pblocks;
    let cb = r0 % p.cblocks;
    let r1 = r0 / p.cblocks;
    let g = r1 % p.groups;
    let chunk = r1 / p.groups;
    let n = chunk / p.nchunks;
    let oh0 = (chunk % p.nchunks) * p.rows;
    let oh1 = min(oh0 + p.rows, p.ho);
    let pplane = p.hp * p.wp;
    let kk = p.kh * p.kw;
    var xo: array<u32, BT>;
    for (var j = 0u; j < BT; j = j + 1u) {
        let k = min(tb * BT + j, p.kt - 1u);
        let rem = k % kk;
        xo[j] = (n * p.cin + g * p.cin_g + k / kk) * pplane + (rem / p.kw) * p.dh * p.wp
            + (rem % p.kw) * p.dw;
    }
    // vec4 index of (n, position, g, channel block); one position further is `gstep`.
    let gstep = p.groups * p.cblocks * 4u;
    let plane = p.ho * p.wo;
    var m00 = mat4x4<f32>(); var m01 = mat4x4<f32>(); var m02 = mat4x4<f32>(); var m03 = mat4x4<f32>();
    var m10 = mat4x4<f32>(); var m11 = mat4x4<f32>(); var m12 = mat4x4<f32>(); var m13 = mat4x4<f32>();
    var m20 = mat4x4<f32>(); var m21 = mat4x4<f32>(); var m22 = mat4x4<f32>(); var m23 = mat4x4<f32>();
    var m30 = mat4x4<f32>(); var m31 = mat4x4<f32>(); var m32 = mat4x4<f32>(); var m33 = mat4x4<f32>();
    for (var oh = oh0; oh < oh1; oh = oh + 1u) {
        var xr = oh * p.sh * p.wp;
        var gi = ((n * plane + oh * p.wo) * p.groups + g) * p.cblocks * 4u + cb * 4u;
        for (var ow = 0u; ow < p.wo; ow = ow + 1u) {
            let x0 = vec4<f32>(xp[xo[0] + xr], xp[xo[1] + xr], xp[xo[2] + xr], xp[xo[3] + xr]);
            let x1 = vec4<f32>(xp[xo[4] + xr], xp[xo[5] + xr], xp[xo[6] + xr], xp[xo[7] + xr]);
            let x2 = vec4<f32>(xp[xo[8] + xr], xp[xo[9] + xr], xp[xo[10] + xr], xp[xo[11] + xr]);
            let x3 = vec4<f32>(xp[xo[12] + xr], xp[xo[13] + xr], xp[xo[14] + xr], xp[xo[15] + xr]);
            let d0 = dy4[gi + 0u];
            let d1 = dy4[gi + 1u];
            let d2 = dy4[gi + 2u];
            let d3 = dy4[gi + 3u];
            m00 += mat4x4<f32>(x0 * d0.x, x0 * d0.y, x0 * d0.z, x0 * d0.w);
            m01 += mat4x4<f32>(x1 * d0.x, x1 * d0.y, x1 * d0.z, x1 * d0.w);
            m02 += mat4x4<f32>(x2 * d0.x, x2 * d0.y, x2 * d0.z, x2 * d0.w);
            m03 += mat4x4<f32>(x3 * d0.x, x3 * d0.y, x3 * d0.z, x3 * d0.w);
            m10 += mat4x4<f32>(x0 * d1.x, x0 * d1.y, x0 * d1.z, x0 * d1.w);
            m11 += mat4x4<f32>(x1 * d1.x, x1 * d1.y, x1 * d1.z, x1 * d1.w);
            m12 += mat4x4<f32>(x2 * d1.x, x2 * d1.y, x2 * d1.z, x2 * d1.w);
            m13 += mat4x4<f32>(x3 * d1.x, x3 * d1.y, x3 * d1.z, x3 * d1.w);
            m20 += mat4x4<f32>(x0 * d2.x, x0 * d2.y, x0 * d2.z, x0 * d2.w);
            m21 += mat4x4<f32>(x1 * d2.x, x1 * d2.y, x1 * d2.z, x1 * d2.w);
            m22 += mat4x4<f32>(x2 * d2.x, x2 * d2.y, x2 * d2.z, x2 * d2.w);
            m23 += mat4x4<f32>(x3 * d2.x, x3 * d2.y, x3 * d2.z, x3 * d2.w);
            m30 += mat4x4<f32>(x0 * d3.x, x0 * d3.y, x0 * d3.z, x0 * d3.w);
            m31 += mat4x4<f32>(x1 * d3.x, x1 * d3.y, x1 * d3.z, x1 * d3.w);
            m32 += mat4x4<f32>(x2 * d3.x, x2 * d3.y, x2 * d3.z, x2 * d3.w);
            m33 += mat4x4<f32>(x3 * d3.x, x3 * d3.y, x3 * d3.z, x3 * d3.w);
            xr = xr + p.sw;
            gi = gi + gstep;
        }
    }
    // acc[channel][tap] = mCT[channel % 4][tap % 4] of channel group C, tap group T.
    var acc: array<array<f32, BT>, BC>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            acc[i + 0u][j + 0u] = m00[i][j]; acc[i + 0u][j + 4u] = m01[i][j]; acc[i + 0u][j + 8u] = m02[i][j]; acc[i + 0u][j + 12u] = m03[i][j];
            acc[i + 4u][j + 0u] = m10[i][j]; acc[i + 4u][j + 4u] = m11[i][j]; acc[i + 4u][j + 8u] = m12[i][j]; acc[i + 4u][j + 12u] = m13[i][j];
            acc[i + 8u][j + 0u] = m20[i][j]; acc[i + 8u][j + 4u] = m21[i][j]; acc[i + 8u][j + 8u] = m22[i][j]; acc[i + 8u][j + 12u] = m23[i][j];
            acc[i + 12u][j + 0u] = m30[i][j]; acc[i + 12u][j + 4u] = m31[i][j]; acc[i + 12u][j + 8u] = m32[i][j]; acc[i + 12u][j + 12u] = m33[i][j];
        }
    }
    let c0 = cb * BC;
    for (var k = 0u; k < BC; k = k + 1u) {
        let co = c0 + k;
        if (co < p.cout_g) {
            let row = (chunk * p.cout + g * p.cout_g + co) * p.kt;
            for (var j = 0u; j < BT; j = j + 1u) {
                let kj = tb * BT + j;
                if (kj < p.kt) {
                    out[row + kj] = acc[k][j];
                }
            }
        }
    }
}
