// Fused softmax cross-entropy over logits viewed as [n, c, inner] (inner = H·W, or 1 for
// [N, C] logits) with u32 labels [n, inner]. A pixel v = (b, i) is valid when its label y
// is < c and ≠ ignore_index; an invalid pixel has weight 0 and gets gradient 0.
//
// The forward fills one statistics buffer S = [Σ w·ℓ, Σ w, 0, 0, m (P), log s (P),
// partials], kept for the backward: P = n·inner pixels, m_v = max_c x_{v,c}, s_v = Σ_c
// exp(x_{v,c} − m_v) ≥ 1 (log-sum-exp = m + log s, kept as two terms so that x − m is exact
// first). The head is padded to 4 floats so that m and log s start on a vec4 boundary.
// ce_forward:  invocation t = b·lanes + j handles the PER pixels i ∈ [j·PER, j·PER + PER) ∩
//              [0, inner) of image b: writes m_v and log s_v for each, and its partial sums
//              Σ w_y·(lse − x_y) and Σ w_y at S[p.partials + t] and S[p.partials + T + t]
//              (T = n·lanes). The host reduces the two partial rows with reduce_lanes into
//              S[0..2]. The online max/sum reads each logit once.
// ce_finish:   loss = Σ w·ℓ / Σ w, or 0 when Σ w = 0 (no valid pixel): never NaN.
// ce_backward: dx[v, c] = g · w_y · (exp((x_{v,c} − m_v) − log s_v) − δ_{c,y}) / Σ w, g and S
//              read from device buffers (no readback); 0 for invalid pixels or if Σ w = 0.
//              One invocation per pixel; one load, one exp and one store per logit.
// ce_forward4, ce_backward4: the same for inner % 4 == 0, on quads of 4 neighbouring pixels
//              (every logit, label and statistic moves as a vec4; see below).
//
// Cost model that set the layout (lavapipe/llvmpipe, `WGSEG_BENCH_PROFILE=1 cargo bench --
// softmax-CE`, shape (4,19,256,256)): llvmpipe runs 8 invocations per SIMD batch and turns
// every storage load or store into a scalar loop over the lanes and components, so time ≈
// number of 32-bit values moved; exp and other ALU work are cheap. Hence one pass over the
// logits per direction (forward: 1 load per logit; backward: 1 load + 1 store) and per-pixel
// statistics instead of recomputation. Measured steps (per-kernel times, relative): vec4
// accesses alone (same values moved, one per-lane loop per vec4) forward −8 %, backward
// −16 %; each forward invocation walking a contiguous run of pixels instead of pixels strided
// by the lane count −26 % (scalar ce_forward −22 %); several quads per backward invocation
// −32 %. The README's results give the kernels' timings.
//
// All entry points share one binding layout: inputs x, labels, weights, g, stats, then one
// output. An entry point that does not use an input gets a dummy buffer there (see
// src/ops/cross_entropy.rs); that keeps every entry at 6 storage bindings. The *4 entry
// points read x, labels, stats and write out through vec4-typed views of the same binding
// slots (an entry point uses one view per slot: naga and Vulkan allow such aliases across
// entry points). WEIGHTED: 1 reads per-class weights, 0 uses w = 1.

override WEIGHTED: u32 = 0u;
override WG: u32 = 256u;
// Pixels per ce_forward invocation (a multiple of 4; quads PER / 4 in ce_forward4).
override PER: u32 = 64u;
// Quads per ce_backward4 invocation.
override BQ: u32 = 8u;

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
// Vec4 views of slots 1, 2, 5 and 6, for the *4 entry points.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> stats4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

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
    let end = min(j * PER + PER, p.inner);
    for (var i = j * PER; i < end; i = i + 1u) {
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
        out[4u + pix + i] = m;
        out[4u + p.n * p.inner + pix + i] = log_s;
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
        m = stats[4u + v];
        log_s = stats[4u + p.n * p.inner + v];
    }
    for (var k = 0u; k < p.c; k = k + 1u) {
        let i = base + k * p.inner;
        out[i] = scale * exp_nonpos((x[i] - m) - log_s) - select(0.0, scale, k == y);
    }
}

// Vec4 variants, for inner % 4 == 0: quad q = pixels 4q .. 4q + 3 of one image (pixel
// index v = 4q + e over all images), so every logit, label and statistic access is a vec4.

// label_weight of four labels.
fn label_weight4(y: vec4<u32>) -> vec4<f32> {
    let valid = (y < vec4(p.c)) & (y != vec4(p.ignore_index));
    var w = vec4(1.0);
    if (WEIGHTED == 1u) {
        let k = min(y, vec4(p.c - 1u));
        w = vec4(weights[k.x], weights[k.y], weights[k.z], weights[k.w]);
    }
    return select(vec4(0.0), w, valid);
}

// ce_forward on quads: invocation t = b·lanes + j handles quads [j·PER/4, j·PER/4 + PER/4)
// of image b (the same pixels as ce_forward, so the partials layout is shared).
@compute @workgroup_size(WG)
fn ce_forward4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.lanes;
    if (t >= total) {
        return;
    }
    let b = t / p.lanes;
    let j = t % p.lanes;
    let quads = p.inner / 4u;
    let img = b * p.c * quads;
    let pix = b * quads;
    let all = p.n * quads;
    var swl = vec4(0.0);
    var sw = vec4(0.0);
    let q_end = min(j * (PER / 4u) + PER / 4u, quads);
    for (var q = j * (PER / 4u); q < q_end; q = q + 1u) {
        let y = labels4[pix + q];
        let w = label_weight4(y);
        let base = img + q;
        // Online maximum and sum as in ce_forward, branch-free: e = exp(−|v − m|) is the
        // new term when v ≤ m, else the factor that rescales the old sum. Class 0 starts it.
        var m = x4[base];
        var s = vec4(1.0);
        var xy = select(vec4(0.0), m, y == vec4(0u));
        for (var k = 1u; k < p.c; k = k + 1u) {
            let v = x4[base + k * quads];
            xy = select(xy, v, y == vec4(k));
            let e = exp(max(min(v, m) - max(v, m), vec4(-EXP_MAX_ARG)));
            s = select(s + e, s * e + 1.0, v > m);
            m = max(m, v);
        }
        let log_s = log(max(s, vec4(1.0)));
        out4[1u + pix + q] = m;
        out4[1u + all + pix + q] = log_s;
        swl = swl + select(vec4(0.0), w * ((m - xy) + log_s), w != vec4(0.0));
        sw = sw + w;
    }
    // The partials are scalars: written as components of the vec4 view.
    let ones = vec4(1.0);
    let i = p.partials + t;
    let k = i + total;
    out4[i / 4u][i % 4u] = dot(swl, ones);
    out4[k / 4u][k % 4u] = dot(sw, ones);
}

// ce_backward on quads: invocation t handles quads [t·BQ, t·BQ + BQ) (they may span two
// images), which shares the loads of g and Σ w.
@compute @workgroup_size(WG)
fn ce_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let quads = p.inner / 4u;
    let all = p.n * quads;
    let q0 = t * BQ;
    if (q0 >= all) {
        return;
    }
    let sw = stats4[0].y;
    let gs = safe_div(g[0], sw);
    let q_end = min(q0 + BQ, all);
    // Quad r of image b, stepped without a division per quad.
    var b = q0 / quads;
    var r = q0 % quads;
    for (var q = q0; q < q_end; q = q + 1u) {
        let base = b * p.c * quads + r;
        let y = labels4[q];
        // g · w_y / Σw as in ce_backward; an invalid pixel's statistics are not used.
        let scale = gs * label_weight4(y);
        let valid = scale != vec4(0.0);
        let m = select(vec4(F32_MAX), stats4[1u + q], valid);
        let log_s = select(vec4(0.0), stats4[1u + all + q], valid);
        for (var k = 0u; k < p.c; k = k + 1u) {
            let i = base + k * quads;
            let e = exp(max((x4[i] - m) - log_s, vec4(-EXP_MAX_ARG)));
            out4[i] = scale * e - select(vec4(0.0), scale, y == vec4(k));
        }
        r = r + 1u;
        if (r == quads) {
            r = 0u;
            b = b + 1u;
        }
    }
}
