// Fused softmax cross-entropy over logits viewed as [n, c, inner] (inner = H·W, or 1 for
// [N, C] logits) with u32 labels [n, inner]. A pixel v = (b, i) is valid when its label y
// is < c and ≠ ignore_index; an invalid pixel has weight 0 and gets gradient 0.
//
// The forward fills one statistics buffer S = [Σ w·ℓ, Σ w, m (P), log s (P), partials],
// kept for the backward: P = n·inner pixels, m_v = max_c x_{v,c}, s_v = Σ_c exp(x_{v,c} −
// m_v) ≥ 1 (log-sum-exp = m + log s, kept as two terms so that x − m is exact first).
// ce_forward:  invocation t = b·lanes + j handles the pixels i = j, j + lanes, … < inner of
//              image b: writes m_v and log s_v for each, and its partial sums Σ w_y·(lse − x_y) and
//              Σ w_y at S[p.partials + t] and S[p.partials + T + t] (T = n·lanes). The host
//              reduces the two partial rows with reduce_lanes into S[0..2]. Neighbouring
//              invocations read neighbouring pixels (coalesced). The online max/sum reads
//              each logit once: on lavapipe (load ≈ 2, `cargo bench -- softmax-CE`) 38 ms
//              against 51–62 ms for a max pass then a sum pass (two loads per logit).
// ce_finish:   loss = Σ w·ℓ / Σ w, or 0 when Σ w = 0 (no valid pixel): never NaN.
// ce_backward: dx[v, c] = g · w_y · (exp((x_{v,c} − m_v) − log s_v) − δ_{c,y}) / Σ w, g and S
//              read from device buffers (no readback); 0 for invalid pixels or if Σ w = 0.
//              One invocation per pixel; one load, one exp and one store per logit.
//
// All entry points share one binding layout (a binding has one declaration per module):
// inputs x, labels, weights, g, stats, then one output. An entry point that does not use
// an input gets a dummy buffer there (see src/ops/cross_entropy.rs); that keeps every entry
// at 6 storage bindings. WEIGHTED: 1 reads per-class weights, 0 uses w = 1.

override WEIGHTED: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    n: u32,
    c: u32,
    inner: u32,
    ignore_index: u32,
    lanes: u32,
    partials: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Class weight of label y, 0 for an ignored or out-of-range label.
fn label_weight(y: u32) -> f32 {
    if (y >= p.c || y == p.ignore_index) {
        return 0.0;
    }
    if (WEIGHTED == 1u) {
        return weights[y];
    }
    return 1.0;
}

// exp() of a non-positive argument, clamped at −EXP_MAX_ARG (a normal f32, no reliance on
// how a GPU flushes denormals or handles −inf).
fn exp_nonpos(d: f32) -> f32 {
    return exp(max(d, -EXP_MAX_ARG));
}

@compute @workgroup_size(WG)
fn ce_forward(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.lanes;
    if (t >= total) {
        return;
    }
    let b = t / p.lanes;
    let j = t % p.lanes;
    let img = b * p.c * p.inner;
    let pix = b * p.inner;
    var swl = 0.0;
    var sw = 0.0;
    for (var i = j; i < p.inner; i = i + p.lanes) {
        let y = labels[pix + i];
        let w = label_weight(y);
        let base = img + i;
        // Online maximum and sum of exponentials, one load per logit: the sum is rescaled
        // when the maximum grows, so every exp() argument is ≤ 0.
        var m = -F32_MAX;
        var s = 0.0;
        var xy = 0.0;
        for (var k = 0u; k < p.c; k = k + 1u) {
            let v = x[base + k * p.inner];
            xy = select(xy, v, k == y);
            if (v > m) {
                s = s * exp_nonpos(m - v) + 1.0;
                m = v;
            } else {
                s = s + exp_nonpos(v - m);
            }
        }
        // s ≥ 1 (the maximum contributes exp(0)), so log() is safe.
        let log_s = log(max(s, 1.0));
        out[2u + pix + i] = m;
        out[2u + p.n * p.inner + pix + i] = log_s;
        // −log softmax_y = (m + log s) − x_y, computed as (m − x_y) + log s: the large
        // terms cancel exactly first. Invalid pixels (w = 0) add nothing.
        if (w != 0.0) {
            swl = swl + w * ((m - xy) + log_s);
            sw = sw + w;
        }
    }
    out[p.partials + t] = swl;
    out[p.partials + total + t] = sw;
}

// Division by Σw that is 0 (not NaN) when no pixel is valid.
fn safe_div(a: f32, b: f32) -> f32 {
    return select(0.0, a / select(1.0, b, b != 0.0), b != 0.0);
}

@compute @workgroup_size(1)
fn ce_finish() {
    out[0] = safe_div(stats[0], stats[1]);
}

@compute @workgroup_size(WG)
fn ce_backward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let v = wg_linear(wid, nwg) * WG + lid;
    if (v >= p.n * p.inner) {
        return;
    }
    let base = (v / p.inner) * p.c * p.inner + v % p.inner;
    let y = labels[v];
    // g · w_y / Σw; 0 for an invalid pixel (w_y = 0) or when Σw = 0. Its lse is then
    // never read (a label ≥ c may come with any logits).
    let scale = safe_div(g[0] * label_weight(y), stats[1]);
    var m = F32_MAX;
    var log_s = 0.0;
    if (scale != 0.0) {
        m = stats[2u + v];
        log_s = stats[2u + p.n * p.inner + v];
    }
    for (var k = 0u; k < p.c; k = k + 1u) {
        let i = base + k * p.inner;
        out[i] = scale * exp_nonpos((x[i] - m) - log_s) - select(0.0, scale, k == y);
    }
}
