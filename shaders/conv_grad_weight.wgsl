// Helpers of the register-blocked conv kernels (src/ops/conv/direct.rs): the weight
// gradient, input padding and weight packing. See conv_direct.wgsl for the formulas.
//
// conv_direct_gw: partial[chunk, co, k] = Σ_{r in chunk} dy[n, co, oh, ow] · xp[n, g·Cin_g + ci,
//   oh·sh + ky·dh, ow·sw + kx·dw] with r = (n, oh, ow), k = (ci, ky, kx) and a chunk a band
//   of `rows` output rows of one image; one invocation owns GW_BC channels × BP taps and walks
//   the chunk's positions (GW_BC + BP loads per GW_BC·BP FMAs); the host sums the chunks (no
//   atomics). Tail channels and taps re-read the last valid one and are not stored.

// Output channels per invocation of conv_direct. Mirrors CONV_BC (conv_pack pads to it).
const BC: u32 = 16u;
// Taps per grad-weight invocation. Mirrors CONV_GW_BT.
const BP: u32 = 8u;
// Output channels per grad-weight invocation. Mirrors CONV_GW_BC.
const GW_BC: u32 = 8u;

override WG: u32 = 64u;
// conv_pack: read the kernel flipped and transposed (the grad-input pass).
override FLIP: bool = false;

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
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * WG + lid;
}

// conv_direct_gw: a = xp, c = dy, out = partial. Invocations: (chunk, group, channel block,
// tap block) with tap blocks fastest; chunk = (n, band of `rows` output rows).
@compute @workgroup_size(WG)
fn conv_direct_gw(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    let tb = t % p.pblocks;
    let r0 = t / p.pblocks;
    let c0 = (r0 % p.cblocks) * GW_BC;
    let r1 = r0 / p.cblocks;
    let g = r1 % p.groups;
    let chunk = r1 / p.groups;
    let n = chunk / p.nchunks;
    let oh0 = (chunk % p.nchunks) * p.rows;
    let oh1 = min(oh0 + p.rows, p.ho);
    let pplane = p.hp * p.wp;
    let kk = p.kh * p.kw;
    var xo: array<u32, BP>;
    for (var j = 0u; j < BP; j = j + 1u) {
        let k = min(tb * BP + j, p.kt - 1u);
        let rem = k % kk;
        xo[j] = (n * p.cin + g * p.cin_g + k / kk) * pplane + (rem / p.kw) * p.dh * p.wp
            + (rem % p.kw) * p.dw;
    }
    let plane = p.ho * p.wo;
    var go: array<u32, GW_BC>;
    for (var k = 0u; k < GW_BC; k = k + 1u) {
        go[k] = (n * p.cout + g * p.cout_g + min(c0 + k, p.cout_g - 1u)) * plane;
    }
    var acc: array<array<f32, BP>, GW_BC>;
    for (var oh = oh0; oh < oh1; oh = oh + 1u) {
        var xr = oh * p.sh * p.wp;
        var gr = oh * p.wo;
        for (var ow = 0u; ow < p.wo; ow = ow + 1u) {
            var xv: array<f32, BP>;
            for (var j = 0u; j < BP; j = j + 1u) {
                xv[j] = a[xo[j] + xr];
            }
            for (var k = 0u; k < GW_BC; k = k + 1u) {
                let gv = c[go[k] + gr];
                for (var j = 0u; j < BP; j = j + 1u) {
                    acc[k][j] = fma(gv, xv[j], acc[k][j]);
                }
            }
            xr = xr + p.sw;
            gr = gr + 1u;
        }
    }
    for (var k = 0u; k < GW_BC; k = k + 1u) {
        let co = c0 + k;
        if (co < p.cout_g) {
            let row = (chunk * p.cout + g * p.cout_g + co) * p.kt;
            for (var j = 0u; j < BP; j = j + 1u) {
                let kj = tb * BP + j;
                if (kj < p.kt) {
                    out[row + kj] = acc[k][j];
                }
            }
        }
    }
}

// conv_pad: a = x [N, C, H, W] → out = xp [N, C, hp, wp] (x at offset (ph, pw), zeros
// around). total = N·C·hp·wp.
@compute @workgroup_size(WG)
fn conv_pad(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    let x = t % p.wp;
    let y = (t / p.wp) % p.hp;
    let nc = t / (p.wp * p.hp);
    var v = 0.0;
    if (y >= p.ph && y < p.ph + p.h && x >= p.pw && x < p.pw + p.w) {
        v = a[(nc * p.h + y - p.ph) * p.w + x - p.pw];
    }
    out[t] = v;
}

// conv_pack: a = w [Cout, Cin_g, KH, KW] → out = packed [groups, kt, cblocks·BC] (channel
// blocks zero-padded to BC); with FLIP, the kernel w'[g·Cout_g + co, ci, ky, kx] =
// a[g·Cin_g + ci, co, KH − 1 − ky, KW − 1 − kx] of the grad-input pass (Params describe w').
// total = groups·kt·cblocks·BC.
@compute @workgroup_size(WG)
fn conv_pack(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    let co = t % (p.cblocks * BC);
    let k = (t / (p.cblocks * BC)) % p.kt;
    let g = t / (p.cblocks * BC * p.kt);
    var v = 0.0;
    if (co < p.cout_g) {
        if (FLIP) {
            let kk = p.kh * p.kw;
            v = a[((g * p.cin_g + k / kk) * p.cout_g + co) * kk + kk - 1u - k % kk];
        } else {
            v = a[(g * p.cout_g + co) * p.kt + k];
        }
    }
    out[t] = v;
}
