// Reductions along one axis of a tensor viewed as [outer, r, inner]. OP: 0 sum, 1 max,
// 2 min. The sum is scaled by p.scale (1/r for a mean; 1 on a partial pass).
//
// reduce_lanes: one pass splits the axis into `lanes` interleaved lanes and reduces each:
//   out[(o·lanes + j)·inner + i] = ⊕_{k ≡ j (mod lanes), k < r} x[(o·r + k)·inner + i],
// i.e. [outer, r, inner] → [outer, lanes, inner]. lanes = 1 is the final pass (one
// invocation per output); the host repeats the pass on the partials (r ← lanes) until it
// is. Invocation t = (o·lanes + j)·inner + i: neighbouring invocations read neighbouring
// addresses at every step of the loop (consecutive i when inner > 1, consecutive lanes j
// when inner = 1, the long contiguous axis), no shared memory, no barriers, and no
// integer division inside the loop. Every lane holds ≥ 1 element (the host keeps
// lanes ≤ r), so no identity value ever reaches the output.

override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    outputs: u32,
    r: u32,
    inner: u32,
    lanes: u32,
    scale: f32,
    // Index of the view's first element in x (0 but for views into a larger buffer).
    in_offset: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn combine(a: f32, b: f32) -> f32 {
    switch OP {
        case 1u: { return max(a, b); }
        case 2u: { return min(a, b); }
        default: { return a + b; }
    }
}

@compute @workgroup_size(WG)
fn reduce_lanes(@builtin(workgroup_id) wid: vec3<u32>,
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
    // Elements of lane j: k = j, j + lanes, … < r (≥ 1 since j < lanes ≤ r).
    let n = (p.r - j + p.lanes - 1u) / p.lanes;
    var idx = p.in_offset + (o * p.r + j) * p.inner + i;
    // Four independent accumulators: shorter dependency chains, and a loop whose body
    // does four loads per trip.
    var a0 = x[idx];
    var a1 = a0;
    var a2 = a0;
    var a3 = a0;
    if (OP == 0u) {
        a1 = 0.0;
        a2 = 0.0;
        a3 = 0.0;
    }
    idx = idx + step;
    var k = 1u;
    for (; k + 4u <= n; k = k + 4u) {
        a0 = combine(a0, x[idx]);
        a1 = combine(a1, x[idx + step]);
        a2 = combine(a2, x[idx + 2u * step]);
        a3 = combine(a3, x[idx + 3u * step]);
        idx = idx + 4u * step;
    }
    for (; k < n; k = k + 1u) {
        a0 = combine(a0, x[idx]);
        idx = idx + step;
    }
    var acc = combine(combine(a0, a1), combine(a2, a3));
    if (OP == 0u) {
        acc = acc * p.scale;
    }
    out[t] = acc;
}
