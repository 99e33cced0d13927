// Layout passes of the register-blocked conv kernels (src/ops/conv/direct.rs): one
// invocation per output element, each a plain gather.
//
// conv_pad: xp[n, c, y, x] = x[n, c, y − ph, x − pw], zero outside x (so the conv kernels'
//   taps are always in bounds).
// conv_pack: w packed as [groups, K, cblocks·BC], channel blocks zero-padded to BC, so that a
//   block's BC weights of one tap are BC/4 aligned vec4 loads; with FLIP, the flipped,
//   transposed kernel of the grad-input pass.
// conv_pack_dy: dy packed channels-last as [N, Ho·Wo, groups, cblocks·BC] (zero-padded), for
//   the same vec4 loads in the weight gradient.

// Channel block of the packed layouts. Mirrors CONV_BC in src/ops/conv/direct.rs.
const BC: u32 = 16u;

override WG: u32 = 64u;
override FLIP: bool = false;

@group(0) @binding(0) var<uniform> p: ConvDirectParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_linear(wid, nwg) * WG + lid;
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

// conv_pack_dy: a = dy [N, Cout, Ho, Wo]. total = N·Ho·Wo·groups·cblocks·BC.
@compute @workgroup_size(WG)
fn conv_pack_dy(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = invocation(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    let cbw = p.cblocks * BC;
    let co = t % cbw;
    let g = (t / cbw) % p.groups;
    let q = t / (cbw * p.groups);
    let plane = p.ho * p.wo;
    var v = 0.0;
    if (co < p.cout_g) {
        v = a[((q / plane) * p.cout + g * p.cout_g + co) * plane + q % plane];
    }
    out[t] = v;
}
