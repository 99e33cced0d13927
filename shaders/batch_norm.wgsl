// Fused batch-norm kernels over x viewed as planes [N·C, hw] (plane p has channel p mod C),
// used by src/ops/norm.rs in training (forward statistics, normalisation, backward).
//
// bn_sums: invocation t = p·LANES + l sums the elements l, l + LANES, … of plane p and writes
//   its partial sum(s) to out[t] (and out[P·LANES + t] for MODE 2); the host adds the
//   partials over the lanes and the batch with the reduce kernels. MODE 0: Σ x. MODE 1:
//   Σ (x − μ_c)² (two-pass variance, μ in coef[c]). MODE 2: Σ dy and Σ dy·(x − μ_c) (dy in u).
// bn_affine: out = a_c·u + b_c·v + d_c elementwise (a, b, d in coef[c], coef[C + c],
//   coef[2C + c]; u only when TWO_INPUTS). One invocation per run of CHUNK elements of a
//   plane, so the per-channel coefficients are loaded once per run (on lavapipe every
//   storage load costs a scalar loop over the SIMD lanes, so per-element coefficient loads
//   would triple the cost of the pass).
//
// Both replace compositions of broadcasting elementwise ops and reductions (about ten
// full-size passes each way); the README's results give the composed and the fused timings
// (`cargo bench -- batch`).

override MODE: u32 = 0u;
override TWO_INPUTS: bool = false;

const LANES: u32 = 64u;
const CHUNK: u32 = 16u;

struct BnParams {
    planes: u32,
    c: u32,
    hw: u32,
    chunks: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn bn_sums(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * LANES) {
        return;
    }
    let plane = t / LANES;
    let base = plane * p.hw;
    var mu = 0.0;
    if (MODE != 0u) {
        mu = coef[plane % p.c];
    }
    var s = 0.0;
    var s2 = 0.0;
    for (var i = t % LANES; i < p.hw; i = i + LANES) {
        let x = v[base + i];
        if (MODE == 0u) {
            s = s + x;
        } else if (MODE == 1u) {
            let d = x - mu;
            s = fma(d, d, s);
        } else {
            let g = u[base + i];
            s = s + g;
            s2 = fma(g, x - mu, s2);
        }
    }
    out[t] = s;
    if (MODE == 2u) {
        out[p.planes * LANES + t] = s2;
    }
}

@compute @workgroup_size(64)
fn bn_affine(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let b = coef[p.c + c];
    let d = coef[2u * p.c + c];
    var a = 0.0;
    if (TWO_INPUTS) {
        a = coef[c];
    }
    let first = (t % p.chunks) * CHUNK;
    let end = min(first + CHUNK, p.hw);
    let base = plane * p.hw;
    for (var i = first; i < end; i = i + 1u) {
        var y = fma(b, v[base + i], d);
        if (TWO_INPUTS) {
            y = fma(a, u[base + i], y);
        }
        out[base + i] = y;
    }
}
