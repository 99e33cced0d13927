// argmax along one axis of [outer, r, inner] (first index among ties, like NumPy).
// argmax_serial: one thread per output. argmax_tree: partial (value, index) pairs per chunk,
// reduced again by argmax_tree with FIRST = 0 (reading the pairs) until one chunk is left.

override WG: u32 = 256u;
override FIRST: u32 = 1u;
const TREE_WG: u32 = 256u;

struct Params {
    outputs: u32,
    r: u32,
    inner: u32,
    chunk: u32,
    nchunks: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> xi: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_i: array<u32>;

var<workgroup> sv: array<f32, TREE_WG>;
var<workgroup> si: array<u32, TREE_WG>;

// Whether (v, i) beats (bv, bi): larger value, or equal value and smaller index.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn argmax_serial(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = wg_linear(wid, nwg) * WG + lid;
    if (o >= p.outputs) {
        return;
    }
    let base = (o / p.inner) * p.r * p.inner + o % p.inner;
    var bv = x[base];
    var bi = 0u;
    for (var k = 1u; k < p.r; k = k + 1u) {
        let v = x[base + k * p.inner];
        if (v > bv) {
            bv = v;
            bi = k;
        }
    }
    out[o] = bv;
    out_i[o] = bi;
}

@compute @workgroup_size(TREE_WG)
fn argmax_tree(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let wg = wg_linear(wid, nwg);
    let o = wg / p.nchunks;
    let c = wg % p.nchunks;
    var bv = -F32_MAX;
    var bi = 0xffffffffu;
    if (o < p.outputs) {
        let base = (o / p.inner) * p.r * p.inner + o % p.inner;
        let end = min((c + 1u) * p.chunk, p.r);
        for (var k = c * p.chunk + lid; k < end; k = k + TREE_WG) {
            let v = x[base + k * p.inner];
            var i = k;
            if (FIRST == 0u) {
                i = xi[base + k * p.inner];
            }
            if (better(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
    }
    sv[lid] = bv;
    si[lid] = bi;
    workgroupBarrier();
    for (var s = TREE_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s && better(sv[lid + s], si[lid + s], sv[lid], si[lid])) {
            sv[lid] = sv[lid + s];
            si[lid] = si[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && o < p.outputs) {
        out[o * p.nchunks + c] = sv[0];
        out_i[o * p.nchunks + c] = si[0];
    }
}
