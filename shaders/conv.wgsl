// 2-D convolution (PyTorch semantics: zero padding, stride, dilation, groups), forward and
// grad-input, as gathers, for the shapes the register-blocked kernels of conv_direct.wgsl do
// not take (src/ops/conv.rs picks): few channels per group (depthwise) and grad-input with
// stride > 1. Each invocation computes a block of
// BC channels × BP consecutive pixels of one image of its output (16 accumulators), and per
// kernel tap loads BP activations and BC weights for 16 multiply-adds.
//
// conv2d:            y[n, co, oh, ow] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx]
//                        · x[n, g·Cin_g + ci, oh·sh − ph + ky·dh, ow·sw − pw + kx·dw]
//                    (g = co / Cout_g; taps outside the input read 0).
// conv2d_grad_input: dx[n, g·Cin_g + ci, ih, iw] = Σ_{co in group g, ky, kx} w[co, ci, ky, kx]
//                        · dy[n, co, oh, ow]  where  oh·sh = ih + ph − ky·dh  and
//                    ow·sw = iw + pw − kx·dw  (a gather: taps whose offset is not a multiple
//                    of the stride, or that land outside dy, contribute nothing; no atomics).
//
// Bindings: conv2d reads a = x, b = w, c = bias (when HAS_BIAS = 0 the host binds any buffer
// and it is never read); conv2d_grad_input reads a = dy, b = w, and c is unused (the host
// binds w again so both entries share one layout).
//
// Blocks are indexed (n, g, channel block, pixel block) with the pixel block fastest, so a
// workgroup's invocations share weights and read neighbouring pixels. Channel blocks never
// straddle a group; a block's tail channels (≥ Cout_g or ≥ Cin_g) and tail pixels (past the
// plane) are masked, so any shape is handled.

// Channels per invocation. Mirrors CONV_GATHER_BC in src/ops/conv.rs.
const BC: u32 = 4u;
// Pixels per invocation: the width of the vec4 accumulators. Mirrors CONV_GATHER_BP.
const BP: u32 = 4u;

override WG: u32 = 64u;
override HAS_BIAS: u32 = 0u;

// Mirrors ConvUniform in src/ops/conv.rs. cblocks/pblocks/blocks describe this entry's
// output blocking; kblocks, chunk and nchunks are unused padding.
struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    cin_g: u32, cout_g: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32,
    dh: u32, dw: u32, cblocks: u32, pblocks: u32,
    kblocks: u32, blocks: u32, chunk: u32, nchunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// BP consecutive pixels of a rows × cols plane, starting at linear index `first`.
struct Pix {
    r: vec4<i32>,
    c: vec4<i32>,
    ok: vec4<bool>,
}

fn pixels(first: u32, rows: u32, cols: u32) -> Pix {
    var q: Pix;
    for (var j = 0u; j < BP; j = j + 1u) {
        let i = first + j;
        q.ok[j] = i < rows * cols;
        q.r[j] = i32(i / cols);
        q.c[j] = i32(i % cols);
    }
    return q;
}

// Decomposed block index: image, group, first channel within the group, first pixel.
struct Block {
    n: u32,
    g: u32,
    c0: u32,
    first: u32,
}

fn block(t: u32) -> Block {
    let r0 = t / p.pblocks;
    let r1 = r0 / p.cblocks;
    return Block(r1 / p.groups, r1 % p.groups, (r0 % p.cblocks) * BC, (t % p.pblocks) * BP);
}

fn in_range(v: vec4<i32>, hi: u32) -> vec4<bool> {
    return (v >= vec4<i32>(0)) & (v < vec4<i32>(i32(hi)));
}

@compute @workgroup_size(WG)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.blocks) {
        return;
    }
    let bl = block(t);
    let nc = min(BC, p.cout_g - bl.c0);
    let co0 = bl.g * p.cout_g + bl.c0;
    let px = pixels(bl.first, p.ho, p.wo);
    let ih0 = px.r * i32(p.sh) - i32(p.ph);
    let iw0 = px.c * i32(p.sw) - i32(p.pw);
    let kk = p.kh * p.kw;
    // Distance between the weights of consecutive output channels.
    let wstride = p.cin_g * kk;
    let hw = p.h * p.w;
    var acc: array<vec4<f32>, BC>;
    for (var ci = 0u; ci < p.cin_g; ci = ci + 1u) {
        let xc = (bl.n * p.cin + bl.g * p.cin_g + ci) * hw;
        let wc = (co0 * p.cin_g + ci) * kk;
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            let ih = ih0 + vec4<i32>(i32(ky * p.dh));
            let row_ok = px.ok & in_range(ih, p.h);
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                let iw = iw0 + vec4<i32>(i32(kx * p.dw));
                let ok = row_ok & in_range(iw, p.w);
                var xv = vec4<f32>(0.0);
                for (var j = 0u; j < BP; j = j + 1u) {
                    if (ok[j]) {
                        xv[j] = a[xc + u32(ih[j]) * p.w + u32(iw[j])];
                    }
                }
                let wk = wc + ky * p.kw + kx;
                for (var k = 0u; k < BC; k = k + 1u) {
                    if (k < nc) {
                        acc[k] = acc[k] + b[wk + k * wstride] * xv;
                    }
                }
            }
        }
    }
    let plane = p.ho * p.wo;
    for (var k = 0u; k < nc; k = k + 1u) {
        let co = co0 + k;
        var bias = 0.0;
        if (HAS_BIAS != 0u) {
            bias = c[co];
        }
        let base = (bl.n * p.cout + co) * plane + bl.first;
        for (var j = 0u; j < BP; j = j + 1u) {
            if (px.ok[j]) {
                out[base + j] = acc[k][j] + bias;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn conv2d_grad_input(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.blocks) {
        return;
    }
    let bl = block(t);
    let nc = min(BC, p.cin_g - bl.c0);
    let px = pixels(bl.first, p.h, p.w);
    // oh·sh = th0 − ky·dh and ow·sw = tw0 − kx·dw.
    let th0 = px.r + vec4<i32>(i32(p.ph));
    let tw0 = px.c + vec4<i32>(i32(p.pw));
    let s_h = vec4<i32>(i32(p.sh));
    let s_w = vec4<i32>(i32(p.sw));
    let kk = p.kh * p.kw;
    let plane = p.ho * p.wo;
    var acc: array<vec4<f32>, BC>;
    for (var col = 0u; col < p.cout_g; col = col + 1u) {
        let co = bl.g * p.cout_g + col;
        let gc = (bl.n * p.cout + co) * plane;
        // Weights of (co, c0 + k, ·, ·) are kk apart.
        let wc = (co * p.cin_g + bl.c0) * kk;
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            let th = th0 - vec4<i32>(i32(ky * p.dh));
            let oh = th / s_h;
            let row_ok = px.ok & (th >= vec4<i32>(0)) & (oh * s_h == th) & (oh < vec4<i32>(i32(p.ho)));
            for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                let tw = tw0 - vec4<i32>(i32(kx * p.dw));
                let ow = tw / s_w;
                let ok = row_ok & (tw >= vec4<i32>(0)) & (ow * s_w == tw) & (ow < vec4<i32>(i32(p.wo)));
                if (!any(ok)) {
                    continue;
                }
                var gv = vec4<f32>(0.0);
                for (var j = 0u; j < BP; j = j + 1u) {
                    if (ok[j]) {
                        gv[j] = a[gc + u32(oh[j]) * p.wo + u32(ow[j])];
                    }
                }
                let wk = wc + ky * p.kw + kx;
                for (var k = 0u; k < BC; k = k + 1u) {
                    if (k < nc) {
                        acc[k] = acc[k] + b[wk + k * kk] * gv;
                    }
                }
            }
        }
    }
    let hw = p.h * p.w;
    for (var k = 0u; k < nc; k = k + 1u) {
        let base = (bl.n * p.cin + bl.g * p.cin_g + bl.c0 + k) * hw + bl.first;
        for (var j = 0u; j < BP; j = j + 1u) {
            if (px.ok[j]) {
                out[base + j] = acc[k][j];
            }
        }
    }
}
