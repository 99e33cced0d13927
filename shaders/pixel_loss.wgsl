// The fused softmax-family pixel losses (src/losses/pixel.rs; SPEC §1–2): logits x viewed
// as [n, c, inner] (inner = H·W, or 1 for [N, C] logits), u32 labels [n, inner]. Per valid
// pixel v (label y < c, ≠ ignore_index, and not an excluded class):
//   z_k = s·(x_k + b_k − m_k·δ_ky + a_k·|r_{v,k}|),  q = softmax(z),  p = q_y,
//   ℓ_v = β(p)·(−log p),  loss = Σ_v w_y·u_v·ℓ_v / (Σ_v d_v + den_const),
//   ∂loss/∂x_k = G·coef_v·(q_k − δ_ky),  coef_v = w_y·u_v·s·(β + β'(p)·p·log p),
// G = g / (Σ d + den_const). u_v = 1/S_{b,y} (PAT, S = valid pixels of class y in image b,
// den_const = n) or 1; d_v = 1 (mean), w_y (Σ w) or 0 (PAT). Excluded classes (MASKED) take
// no part in the softmax and get gradient 0.
//
// Table `cls` (f32): [G or 0, 0, 0, 0, then rows of c: 0 w, 1 b, 2 m, 3 a, 4 active (1/0)].
// Stats S (f32): [Σ w·u·ℓ, Σ d, 0, 0, m (P), log s (P), coef (P), partials (2T)] for
// P = n·inner pixels and T = n·lanes forward invocations (src/ops/cross_entropy.rs's layout
// plus the coef row). r: standard-normal draws, generated (NOISE 1: normal(), see below) or
// read from the noise tensor (NOISE 2).
//
// Entry points (all share one binding layout; unused slots get dummy buffers):
// pix_count:     u32 atomics: S_{b,y} += 1 per valid pixel, one atomicAdd per run of equal
//                labels within an invocation's stretch of PER pixels (labels come in runs).
// pix_forward:   as ce_forward: one invocation per stretch of PER pixels of one image,
//                online max/sum (one load per logit), writes m, log s, coef and partials;
//                the host sums the partials with reduce_lanes into S[0..2].
// pix_finish:    loss = S[0] / (S[1] + den_const), 0 when that is 0 (never NaN).
// pix_gscale:    out = cls with out[0] = G (read by pix_backward; keeps it at 6 bindings).
// pix_backward:  dx = G·coef·(exp((z − m) − log s) − δ): one load, one exp, one store per
//                logit (plus the noise draw when there is noise).
// pix_forward4, pix_backward4: the same on quads of 4 pixels (inner % 4 == 0) with vec4
//                accesses, as ce_forward4 / ce_backward4 (same cost model, same reasons).

override WG: u32 = 256u;
override PER: u32 = 64u;
override BQ: u32 = 8u;
// β(p): 0 none, 1 focal (1 − p)^γ, 2 PAT falling exp((1 − p − ε)/T), 3 rising exp((p − 1)/T).
override MOD: u32 = 0u;
// 1: the gradient treats β as a constant.
override DETACH: u32 = 0u;
// 0: mean over valid pixels, 1: Σ w_y, 2: PAT 1/(n·S_{b,y}).
override NORM: u32 = 0u;
override WEIGHTED: u32 = 0u;
// Bits: 1 bias b, 2 margin m, 4 mask (excluded classes).
override CLS: u32 = 0u;
// 0: no noise, 1: r = normal(element index), 2: r read from the noise tensor.
override NOISE: u32 = 0u;

struct Params {
    n: u32,
    c: u32,
    inner: u32,
    ignore_index: u32,
    lanes: u32,
    partials: u32,
    key: u32,
    den_const: f32,
    scale: f32,
    gamma: f32,
    inv_t: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> cls: array<f32>;
@group(0) @binding(4) var<storage, read> noise: array<f32>;
@group(0) @binding(5) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> counts_rw: array<atomic<u32>>;
// Vec4 views for the *4 entry points.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels4: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> noise4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> stats4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

fn cls_at(row: u32, k: u32) -> f32 {
    return cls[4u + row * p.c + k];
}

fn class_active(k: u32) -> bool {
    return (CLS & 4u) == 0u || cls_at(4u, k) != 0.0;
}

fn valid(y: u32) -> bool {
    return y < p.c && y != p.ignore_index && class_active(min(y, p.c - 1u));
}

// The first class that takes part in the softmax (the host keeps at least one).
fn first_active() -> u32 {
    var k = 0u;
    while (k + 1u < p.c && !class_active(k)) {
        k = k + 1u;
    }
    return k;
}

fn exp_nonpos(d: f32) -> f32 {
    return exp(max(d, -EXP_MAX_ARG));
}

// PCG hash (Jarzynski & Olano 2020, "Hash functions for GPU rendering"); src/losses/rng.rs
// is the same generator on the CPU.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Standard-normal draw for element e of the stream p.key (Box–Muller on two 24-bit
// uniforms, u1 ∈ (0, 1], u2 ∈ [0, 1); cos is taken on [−π, π) where WGSL bounds its error).
fn normal(e: u32) -> f32 {
    let h1 = pcg(e ^ p.key);
    let h2 = pcg(h1 ^ 0x9e3779b9u);
    let u1 = (f32(h1 >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = f32(h2 >> 8u) * (1.0 / 16777216.0);
    return -sqrt(-2.0 * log(u1)) * cos(6.2831855 * (u2 - 0.5));
}

// z of logit element e (class k) of a pixel labelled y.
fn logit_z(xv: f32, k: u32, y: u32, e: u32) -> f32 {
    var z = xv;
    if ((CLS & 1u) != 0u) {
        z = z + cls_at(1u, k);
    }
    if ((CLS & 2u) != 0u && k == y) {
        z = z - cls_at(2u, k);
    }
    if (NOISE == 1u) {
        z = z + cls_at(3u, k) * abs(normal(e));
    }
    if (NOISE == 2u) {
        z = z + cls_at(3u, k) * abs(noise[e]);
    }
    return p.scale * z;
}

// vec4 logit_z of the four pixels of a quad (vec4 element index i4).
fn logit_z4(xv: vec4<f32>, k: u32, y: vec4<u32>, i4: u32) -> vec4<f32> {
    var z = xv;
    if ((CLS & 1u) != 0u) {
        z = z + cls_at(1u, k);
    }
    if ((CLS & 2u) != 0u) {
        z = z - select(vec4(0.0), vec4(cls_at(2u, k)), y == vec4(k));
    }
    if (NOISE == 1u) {
        let e = 4u * i4;
        let r = vec4(normal(e), normal(e + 1u), normal(e + 2u), normal(e + 3u));
        z = z + cls_at(3u, k) * abs(r);
    }
    if (NOISE == 2u) {
        z = z + cls_at(3u, k) * abs(noise4[i4]);
    }
    return p.scale * z;
}

// (loss term w·u·β·(−log p), denominator term d, coef) of a pixel of image b labelled y,
// from z_y − m, log s and s_ny / s (s_ny: the sum without class y, so 1 − p is exact).
fn pixel_terms(b: u32, y: u32, zy_m: f32, log_s: f32, omp_raw: f32) -> vec3<f32> {
    if (!valid(y)) {
        return vec3(0.0);
    }
    let omp = clamp(omp_raw, 0.0, 1.0);
    let pp = 1.0 - omp;
    // −log p = −log(1 − omp): by its series when p is near 1, where log s rounds to 0
    // (relative error of the 5-term series < omp⁵ < 1e-10).
    var nlp = max(log_s - zy_m, 0.0);
    if (omp < 0.01) {
        nlp = omp * (1.0 + omp * (0.5 + omp * (1.0 / 3.0 + omp * (0.25 + omp * 0.2))));
    }
    var beta = 1.0;
    var dcoef = 1.0;
    if (MOD == 1u) {
        // (1 − p)^γ and β − β'·p·nlp = (1 − p)^γ·(1 + γ·p·nlp/(1 − p)), never (1 − p)^(γ−1).
        beta = exp(max(p.gamma * log(max(omp, F32_MIN_POS)), -EXP_MAX_ARG));
        let rho = select(1.0, nlp / omp, omp > 0.0);
        dcoef = beta * (1.0 + p.gamma * pp * rho);
    } else if (MOD == 2u) {
        beta = exp((omp - p.eps) * p.inv_t);
        dcoef = beta * (1.0 + pp * nlp * p.inv_t);
    } else if (MOD == 3u) {
        beta = exp(-omp * p.inv_t);
        dcoef = beta * (1.0 - pp * nlp * p.inv_t);
    }
    if (DETACH == 1u) {
        dcoef = beta;
    }
    var w = 1.0;
    if (WEIGHTED == 1u) {
        w = cls_at(0u, y);
    }
    var u = 1.0;
    var d = 1.0;
    if (NORM == 1u) {
        d = w;
    } else if (NORM == 2u) {
        u = 1.0 / f32(max(counts[b * p.c + y], 1u));
        d = 0.0;
    }
    return vec3(w * u * beta * nlp, d, w * u * p.scale * dcoef);
}

// Division that is 0 (not NaN) when the divisor is 0.
fn safe_div(a: f32, b: f32) -> f32 {
    return select(0.0, a / select(1.0, b, b != 0.0), b != 0.0);
}

@compute @workgroup_size(WG)
fn pix_count(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.n * p.lanes) {
        return;
    }
    let b = t / p.lanes;
    let j = t % p.lanes;
    let none = 0xffffffffu;
    var cur = none;
    var run = 0u;
    let end = min(j * PER + PER, p.inner);
    for (var i = j * PER; i < end; i = i + 1u) {
        let y = labels[b * p.inner + i];
        let key = select(none, y, valid(y));
        if (key != cur) {
            if (cur != none) {
                atomicAdd(&counts_rw[b * p.c + cur], run);
            }
            cur = key;
            run = 0u;
        }
        run = run + 1u;
    }
    if (cur != none) {
        atomicAdd(&counts_rw[b * p.c + cur], run);
    }
}

@compute @workgroup_size(WG)
fn pix_forward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.lanes;
    if (t >= total) {
        return;
    }
    let b = t / p.lanes;
    let j = t % p.lanes;
    let all = p.n * p.inner;
    let k0 = first_active();
    var acc = vec2(0.0);
    let end = min(j * PER + PER, p.inner);
    for (var i = j * PER; i < end; i = i + 1u) {
        let v = b * p.inner + i;
        let y = labels[v];
        let base = b * p.c * p.inner + i;
        // Online maximum and sums (all classes, and all but y), one load per logit; every
        // exp() argument is ≤ 0. The first active class starts them.
        let e0 = base + k0 * p.inner;
        var m = logit_z(x[e0], k0, y, e0);
        var s = 1.0;
        var sny = select(1.0, 0.0, k0 == y);
        var zy = m;
        for (var k = k0 + 1u; k < p.c; k = k + 1u) {
            if (!class_active(k)) {
                continue;
            }
            let e = base + k * p.inner;
            let z = logit_z(x[e], k, y, e);
            let other = select(1.0, 0.0, k == y);
            zy = select(zy, z, k == y);
            if (z > m) {
                let r = exp_nonpos(m - z);
                s = s * r + 1.0;
                sny = sny * r + other;
                m = z;
            } else {
                let r = exp_nonpos(z - m);
                s = s + r;
                sny = sny + other * r;
            }
        }
        let log_s = log(max(s, 1.0));
        out[4u + v] = m;
        out[4u + all + v] = log_s;
        let tr = pixel_terms(b, y, zy - m, log_s, sny / s);
        out[4u + 2u * all + v] = tr.z;
        acc = acc + tr.xy;
    }
    out[p.partials + t] = acc.x;
    out[p.partials + total + t] = acc.y;
}

@compute @workgroup_size(1)
fn pix_finish() {
    out[0] = safe_div(stats[0], stats[1] + p.den_const);
}

@compute @workgroup_size(WG)
fn pix_gscale(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= 4u + 5u * p.c) {
        return;
    }
    var v = cls[i];
    if (i == 0u) {
        v = safe_div(noise[0], stats[1] + p.den_const);
    }
    out[i] = v;
}

@compute @workgroup_size(WG)
fn pix_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let v = wg_linear(wid, nwg) * WG + lid;
    let all = p.n * p.inner;
    if (v >= all) {
        return;
    }
    let base = (v / p.inner) * p.c * p.inner + v % p.inner;
    let y = labels[v];
    // G·coef; 0 for an invalid pixel, whose statistics are then not used.
    let scale = cls[0] * stats[4u + 2u * all + v];
    var m = F32_MAX;
    var log_s = 0.0;
    if (scale != 0.0) {
        m = stats[4u + v];
        log_s = stats[4u + all + v];
    }
    for (var k = 0u; k < p.c; k = k + 1u) {
        let e = base + k * p.inner;
        var d = 0.0;
        if (class_active(k)) {
            let q = exp_nonpos((logit_z(x[e], k, y, e) - m) - log_s);
            d = scale * q - select(0.0, scale, k == y);
        }
        out[e] = d;
    }
}

// Vec4 variants (inner % 4 == 0): quad q = pixels 4q .. 4q + 3, as in cross_entropy.wgsl.
@compute @workgroup_size(WG)
fn pix_forward4(@builtin(workgroup_id) wid: vec3<u32>,
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
    let all = p.n * quads;
    let k0 = first_active();
    var acc = vec2(0.0);
    let q_end = min(j * (PER / 4u) + PER / 4u, quads);
    for (var q = j * (PER / 4u); q < q_end; q = q + 1u) {
        let y = labels4[b * quads + q];
        let base = b * p.c * quads + q;
        // Branch-free online maximum and sums: e = exp(−|z − m|) is the new term when
        // z ≤ m, else the factor that rescales the old sums.
        let i0 = base + k0 * quads;
        var m = logit_z4(x4[i0], k0, y, i0);
        var s = vec4(1.0);
        var sny = select(vec4(1.0), vec4(0.0), y == vec4(k0));
        var zy = m;
        for (var k = k0 + 1u; k < p.c; k = k + 1u) {
            if (!class_active(k)) {
                continue;
            }
            let i = base + k * quads;
            let z = logit_z4(x4[i], k, y, i);
            let is_y = y == vec4(k);
            let other = select(vec4(1.0), vec4(0.0), is_y);
            zy = select(zy, z, is_y);
            let e = exp(max(min(z, m) - max(z, m), vec4(-EXP_MAX_ARG)));
            let grow = z > m;
            s = select(s + e, s * e + 1.0, grow);
            sny = select(sny + other * e, sny * e + other, grow);
            m = max(m, z);
        }
        let log_s = log(max(s, vec4(1.0)));
        let v = b * quads + q;
        out4[1u + v] = m;
        out4[1u + all + v] = log_s;
        let omp = sny / s;
        let zm = zy - m;
        let t0 = pixel_terms(b, y.x, zm.x, log_s.x, omp.x);
        let t1 = pixel_terms(b, y.y, zm.y, log_s.y, omp.y);
        let t2 = pixel_terms(b, y.z, zm.z, log_s.z, omp.z);
        let t3 = pixel_terms(b, y.w, zm.w, log_s.w, omp.w);
        out4[1u + 2u * all + v] = vec4(t0.z, t1.z, t2.z, t3.z);
        acc = acc + t0.xy + t1.xy + t2.xy + t3.xy;
    }
    let i = p.partials + t;
    let k = i + total;
    out4[i / 4u][i % 4u] = acc.x;
    out4[k / 4u][k % 4u] = acc.y;
}

@compute @workgroup_size(WG)
fn pix_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let quads = p.inner / 4u;
    let all = p.n * quads;
    let q0 = t * BQ;
    if (q0 >= all) {
        return;
    }
    let gs = cls[0];
    let q_end = min(q0 + BQ, all);
    var b = q0 / quads;
    var r = q0 % quads;
    for (var q = q0; q < q_end; q = q + 1u) {
        let base = b * p.c * quads + r;
        let y = labels4[q];
        let scale = gs * stats4[1u + 2u * all + q];
        let ok = scale != vec4(0.0);
        let m = select(vec4(F32_MAX), stats4[1u + q], ok);
        let log_s = select(vec4(0.0), stats4[1u + all + q], ok);
        for (var k = 0u; k < p.c; k = k + 1u) {
            let i = base + k * quads;
            var d = vec4(0.0);
            if (class_active(k)) {
                let z = logit_z4(x4[i], k, y, i);
                let e = exp(max((z - m) - log_s, vec4(-EXP_MAX_ARG)));
                d = scale * e - select(vec4(0.0), scale, y == vec4(k));
            }
            out4[i] = d;
        }
        r = r + 1u;
        if (r == quads) {
            r = 0u;
            b = b + 1u;
        }
    }
}
