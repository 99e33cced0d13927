// argmax along one axis of [outer, r, inner] (first index among ties, like NumPy).
//
// argmax_lanes: the interleaved-lane pass of reduce.wgsl (see there for the layout) on
// (value, index) pairs: [outer, r, inner] → [outer, lanes, inner] partial maxima with their
// axis indices; lanes = 1 is the final pass. FIRST = 1 reads the values and uses the axis
// position as the index; FIRST = 0 reads the pairs of a previous pass. Within a lane the
// indices grow, so a strict `>` keeps the first of ties; across lanes ties compare indices.

override WG: u32 = 256u;
override FIRST: u32 = 1u;

struct Params {
    outputs: u32,
    r: u32,
    inner: u32,
    lanes: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> xi: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_i: array<u32>;

@compute @workgroup_size(WG)
fn argmax_lanes(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.outputs) {
        return;
    }
    let i = t % p.inner;
    let q = t / p.inner;
    let j = q % p.lanes;
    let o = q / p.lanes;
    let step = p.lanes * p.inner;
    var idx = (o * p.r + j) * p.inner + i;
    var bv = x[idx];
    var bi = j;
    if (FIRST == 0u) {
        bi = xi[idx];
    }
    for (var k = j + p.lanes; k < p.r; k = k + p.lanes) {
        idx = idx + step;
        let v = x[idx];
        if (FIRST == 1u) {
            if (v > bv) {
                bv = v;
                bi = k;
            }
        } else {
            let vi = xi[idx];
            if (v > bv || (v == bv && vi < bi)) {
                bv = v;
                bi = vi;
            }
        }
    }
    out[t] = bv;
    out_i[t] = bi;
}
