// Reductions along one axis of a tensor viewed as [outer, r, inner]; `o` indexes the
// outer × inner outputs. OP: 0 sum, 1 max, 2 min. The sum is scaled by p.scale (1/r for a
// mean) on the final pass.
//
// reduce_serial: one thread per output loops over r (small r, e.g. channel axes).
// reduce_tree:   one workgroup per (output, chunk of r): strided loads then a shared-memory
//                tree; writes partial[o * nchunks + chunk]. The host repeats it on the
//                partials (inner = 1) until one chunk is left: a two-pass (or more) tree.

override OP: u32 = 0u;
override WG: u32 = 256u;
const TREE_WG: u32 = 256u;

struct Params {
    outputs: u32,
    r: u32,
    inner: u32,
    chunk: u32,
    nchunks: u32,
    scale: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<f32, TREE_WG>;

fn identity() -> f32 {
    switch OP {
        case 1u: { return -F32_MAX; }
        case 2u: { return F32_MAX; }
        default: { return 0.0; }
    }
}

fn combine(a: f32, b: f32) -> f32 {
    switch OP {
        case 1u: { return max(a, b); }
        case 2u: { return min(a, b); }
        default: { return a + b; }
    }
}

fn finish(v: f32) -> f32 {
    if (OP == 0u) {
        return v * p.scale;
    }
    return v;
}

@compute @workgroup_size(WG)
fn reduce_serial(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = wg_linear(wid, nwg) * WG + lid;
    if (o >= p.outputs) {
        return;
    }
    let base = (o / p.inner) * p.r * p.inner + o % p.inner;
    var acc = identity();
    for (var k = 0u; k < p.r; k = k + 1u) {
        acc = combine(acc, x[base + k * p.inner]);
    }
    out[o] = finish(acc);
}

@compute @workgroup_size(TREE_WG)
fn reduce_tree(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let wg = wg_linear(wid, nwg);
    let o = wg / p.nchunks;
    let c = wg % p.nchunks;
    var acc = identity();
    if (o < p.outputs) {
        let base = (o / p.inner) * p.r * p.inner + o % p.inner;
        let end = min((c + 1u) * p.chunk, p.r);
        for (var k = c * p.chunk + lid; k < end; k = k + TREE_WG) {
            acc = combine(acc, x[base + k * p.inner]);
        }
    }
    sh[lid] = acc;
    workgroupBarrier();
    for (var s = TREE_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            sh[lid] = combine(sh[lid], sh[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u && o < p.outputs) {
        if (p.nchunks == 1u) {
            out[o] = finish(sh[0]);
        } else {
            out[o * p.nchunks + c] = sh[0];
        }
    }
}
