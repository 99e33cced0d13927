// Softmax and log-softmax along one axis of a tensor viewed as [outer, c, inner].
//
// One invocation per (outer, inner) column loops over the c entries of its column. With
// NCHW logits and axis 1, inner = H·W is the contiguous dimension, so the invocations of a
// workgroup (consecutive inner indices) read and write consecutive addresses at every step
// of the loop (coalesced).
//
// Two passes over the column: an online max / sum-of-exponentials (the running sum is
// rescaled whenever the max grows, so every exp() argument is ≤ 0 and nothing overflows),
// then the write pass:
//   softmax:     y = exp(x − m) / s
//   log_softmax: y = (x − m) − log(s)          (s ≥ 1, so log() is safe)
// LOG: 0 softmax, 1 log_softmax.

override LOG: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    columns: u32,
    c: u32,
    inner: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let col = wg_linear(wid, nwg) * WG + lid;
    if (col >= p.columns) {
        return;
    }
    let base = (col / p.inner) * p.c * p.inner + col % p.inner;
    var m = -F32_MAX;
    var s = 0.0;
    for (var k = 0u; k < p.c; k = k + 1u) {
        let v = x[base + k * p.inner];
        if (v > m) {
            s = s * exp_nonpos(m - v) + 1.0;
            m = v;
        } else {
            s = s + exp_nonpos(v - m);
        }
    }
    let log_s = log(max(s, 1.0));
    let inv_s = 1.0 / max(s, 1.0);
    for (var k = 0u; k < p.c; k = k + 1u) {
        let i = base + k * p.inner;
        let d = x[i] - m;
        if (LOG == 1u) {
            y[i] = d - log_s;
        } else {
            y[i] = exp_nonpos(d) * inv_s;
        }
    }
}
