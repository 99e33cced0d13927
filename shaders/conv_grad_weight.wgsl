// Gradient of a 2-D convolution with respect to its weights, as a gather + tree reduction
// (no atomics):
//
//   dw[co, k] = Σ_{n, oh, ow} dy[n, co, oh, ow] · x[n, g·Cin_g + ci, oh·sh − ph + ky·dh,
//                                                   ow·sw − pw + kx·dw]
//
// with k = (ci·KH + ky)·KW + kx the flattened tap (so dw[co, k] is w's row-major layout) and
// g = co / Cout_g. The reduction runs over R = N·Ho·Wo positions.
//
// One workgroup per (weight block, chunk of R): a block is BCO output channels (within one
// group) × BK consecutive taps, 16 accumulators per invocation; the invocations stride over
// the chunk's positions, then a shared-memory tree sums the workgroup. The workgroup writes
// partial[chunk, co·K + k]; the host sums the chunks with the reduce kernels when there is
// more than one. Tail channels and taps of a block are masked.

// Output channels per block. Mirrors CONV_GW_BCO in src/ops/conv.rs.
const BCO: u32 = 4u;
// Taps per block: the width of the vec4 accumulators. Mirrors CONV_GW_BK.
const BK: u32 = 4u;
// Invocations per workgroup (a power of two for the tree). Mirrors CONV_GW_WG.
const GW_WG: u32 = 64u;

// Mirrors ConvUniform in src/ops/conv.rs; here cblocks counts channel blocks per group,
// kblocks tap blocks, blocks = groups·cblocks·kblocks, chunk positions per workgroup.
struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    cin_g: u32, cout_g: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32,
    dh: u32, dw: u32, cblocks: u32, pblocks: u32,
    kblocks: u32, blocks: u32, chunk: u32, nchunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

var<workgroup> tree: array<vec4<f32>, GW_WG * BCO>;

@compute @workgroup_size(GW_WG)
fn conv2d_grad_weight(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let wg = wg_linear(wid, nwg);
    let blk = wg / p.nchunks;
    let chunk = wg % p.nchunks;
    let live = blk < p.blocks;
    let kb = blk % p.kblocks;
    let r0 = blk / p.kblocks;
    let g = r0 / p.cblocks;
    let c0 = (r0 % p.cblocks) * BCO;
    let co0 = g * p.cout_g + c0;
    let nco = min(BCO, p.cout_g - min(c0, p.cout_g));
    let kk = p.kh * p.kw;
    let ktot = p.cin_g * kk;
    let k0 = kb * BK;
    // Per tap of the block: input plane (channel) and offsets of the tap from oh·sh, ow·sw.
    var kok = vec4<bool>(false);
    var plane = vec4<u32>(0u);
    var oy = vec4<i32>(0);
    var ox = vec4<i32>(0);
    for (var j = 0u; j < BK; j = j + 1u) {
        let k = k0 + j;
        kok[j] = k < ktot;
        let ci = k / kk;
        let ky = (k % kk) / p.kw;
        let kx = k % p.kw;
        plane[j] = g * p.cin_g + ci;
        oy[j] = i32(ky * p.dh) - i32(p.ph);
        ox[j] = i32(kx * p.dw) - i32(p.pw);
    }
    let hw = p.h * p.w;
    let out_plane = p.ho * p.wo;
    let total = p.n * out_plane;
    let start = chunk * p.chunk;
    var end = min(start + p.chunk, total);
    if (!live) {
        end = 0u;
    }
    var acc: array<vec4<f32>, BCO>;
    for (var r = start + lid; r < end; r = r + GW_WG) {
        let n = r / out_plane;
        let pix = r % out_plane;
        let oh = pix / p.wo;
        let ow = pix % p.wo;
        let ih = vec4<i32>(i32(oh * p.sh)) + oy;
        let iw = vec4<i32>(i32(ow * p.sw)) + ox;
        let ok = kok & (ih >= vec4<i32>(0)) & (ih < vec4<i32>(i32(p.h)))
            & (iw >= vec4<i32>(0)) & (iw < vec4<i32>(i32(p.w)));
        var xv = vec4<f32>(0.0);
        for (var j = 0u; j < BK; j = j + 1u) {
            if (ok[j]) {
                xv[j] = x[(n * p.cin + plane[j]) * hw + u32(ih[j]) * p.w + u32(iw[j])];
            }
        }
        let gbase = (n * p.cout + co0) * out_plane + pix;
        for (var c = 0u; c < BCO; c = c + 1u) {
            if (c < nco) {
                acc[c] = acc[c] + dy[gbase + c * out_plane] * xv;
            }
        }
    }
    for (var c = 0u; c < BCO; c = c + 1u) {
        tree[lid * BCO + c] = acc[c];
    }
    workgroupBarrier();
    for (var s = GW_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            for (var c = 0u; c < BCO; c = c + 1u) {
                tree[lid * BCO + c] = tree[lid * BCO + c] + tree[(lid + s) * BCO + c];
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u && live) {
        let nw = p.cout * ktot;
        for (var c = 0u; c < nco; c = c + 1u) {
            let row = chunk * nw + (co0 + c) * ktot + k0;
            for (var j = 0u; j < BK; j = j + 1u) {
                if (kok[j]) {
                    partial[row + j] = tree[c][j];
                }
            }
        }
    }
}
