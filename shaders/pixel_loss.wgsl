// The fused softmax-family pixel losses (src/losses/pixel.rs; docs/longtail.md), the
// project's one cross-entropy kernel family (ce is MOD 0 with no class terms): logits x viewed
// as [n, c, inner] (inner = H·W, or 1 for [N, C] logits), u32 labels [n, inner]. Per valid
// pixel v (label y < c, ≠ ignore_index, and not an excluded class):
//   z_k = s·(x_k + b_k − m_k·δ_ky + a_k·|r_{v,k}|),  q = softmax(z),  p = q_y,
//   ℓ_v = β(p)·(−log p),  loss = Σ_v w_y·u_v·ℓ_v / (Σ_v d_v + den_const),
//   ∂loss/∂x_k = G·coef_v·(q_k − δ_ky),  coef_v = w_y·u_v·s·(β + β'(p)·p·log p),
// G = g / (Σ d + den_const). u_v = 1/S_{b,y} (PAT, S = valid pixels of class y in image b,
// den_const = n) or 1; d_v = 1 (mean), w_y (Σ w) or 0 (PAT). Excluded classes (CLS bit 4)
// take no part in the softmax and get gradient 0.
// Label smoothing ε (SMOOTH 1; ce only: MOD 0, no class terms but w, s = 1, u = 1):
//   ℓ_v = (1 − ε)·w_y·(−log p) + (ε/C)·Σ_k w_k·(−log q_k)
//       = (1 − ε)·w_y·(−log p) + (ε/C)·(W·log s + Σ_k w_k·(m − z_k)),   W = Σ_k w_k,
//   ∂loss/∂x_k = G·(((1 − ε)·w_y + (ε/C)·W)·q_k − (1 − ε)·w_y·δ_ky − (ε/C)·w_k)
// (w = 1, W = C without class weights). The forward accumulates Σ_k w_k·(m − z_k) beside
// the online maximum (shifted with it, every term ≥ 0); nothing more is saved.
//
// Table `cls` (f32): [G or 0, W, 0, 0, then rows of c: 0 w, 1 b, 2 m, 3 a, 4 active (1/0),
// then (backward, PAT) the n·c values 1/S]. r: standard-normal draws, generated (NOISE 1:
// normal(), below) or read from the noise tensor (NOISE 2).
// Stats (f32): [Σ w·u·ℓ, Σ d, 0, 0, m (P), σ (P), partials (2T)] for P = n·inner pixels and
// T = n·lanes forward invocations: m = max_k z_k and σ = log s, s = Σ_k exp(z_k − m)
// (log-sum-exp = m + log s, kept as two terms so that z − m is exact first); for focal
// (MOD 1) σ = s_rest = s − 1, the sum without the maximum's own term, kept apart so that
// 1 − p and −log p stay exact as p → 1 (where s rounds to 1 and (1 − p)^γ with γ < 1 still
// varies). Two floats per pixel either way.
//
// Entry points (one binding layout; unused slots get dummy buffers):
// pix_count(4):  u32 atomics: S_{b,y} += 1 per valid pixel, one atomicAdd per run of equal
//                labels within an invocation's stretch of PER pixels (labels come in runs).
// pix_forward:   invocation t = b·lanes + j handles the PER pixels i ∈ [j·PER, j·PER + PER)
//                ∩ [0, inner) of image b (a contiguous run), online max/sum (one load per
//                logit), writes m, σ and its partials of the loss at stats[partials + t]
//                and stats[partials + T + t]; the host sums the partials with
//                reduce_lanes into stats[0..2].
// pix_finish:    loss = stats[0] / (stats[1] + den_const), 0 when that is 0 (never NaN).
// pix_gscale:    the backward's table: cls with G in its head (and 1/S for PAT).
// pix_backward:  recomputes the pixel's coefficient from z_y (one gathered load) and the
//                saved m, σ, then dx = G·coef·(exp((z − m) − log s) − δ): one load,
//                one exp and one store per logit (plus the noise draw with NOISE 1).
// pix_forward4, pix_count4, pix_backward4: the same on quads of 4 pixels (inner % 4 == 0)
//                with vec4 accesses (every logit, label and statistic moves as a vec4);
//                pix_backward4 handles BQ quads per invocation (sharing the table loads).
//
// Cost model that set the layout (lavapipe/llvmpipe, per-kernel profile of
// GpuContext::set_profiling, `WGSEG_BENCH_PROFILE=1 cargo bench -- softmax-CE`, shape
// (4, 19, 256, 256)): llvmpipe runs 8 invocations per SIMD batch and turns every storage load
// or store into a scalar loop over the lanes and components, so time ≈ number of 32-bit values
// moved; exp and other ALU work are cheap. Hence one pass over the logits per direction
// (forward: 1 load per logit; backward: 1 load + 1 store) and per-pixel statistics instead of
// recomputation. Measured steps (cross-entropy, per-kernel times, relative): vec4 accesses
// alone (same values moved, one per-lane loop per vec4) forward −8 %, backward −16 %; each
// forward invocation walking a contiguous run of pixels instead of pixels strided by the lane
// count −26 %; several quads per backward invocation −32 %. A stored value costs several
// loaded ones, so the per-pixel coefficient is recomputed in the backward (a gathered load of
// x_y) rather than stored by the forward (a third stored float per pixel made pix_forward4
// ~1.3× slower). Measured so: PAT's kernels (count, forward, backward) took 1.13–1.16× those
// of the plain cross-entropy kernels they were derived from.

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
// Bits: 1 bias b, 2 margin m, 4 mask (excluded classes), 8 scale s ≠ 1.
override CLS: u32 = 0u;
// 0: no noise, 1: r = normal(element index), 2: r read from the noise tensor.
override NOISE: u32 = 0u;
// 1: label smoothing (p.ls_keep = 1 − ε, p.ls_each = ε/C); 0 compiles none of it.
override SMOOTH: u32 = 0u;

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
    ls_keep: f32,
    ls_each: f32,
    _pad: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> cls: array<f32>;
// Slot 4: the noise tensor (NOISE 2), else the logits again, so that the vec4 backward can
// gather x_y through this scalar view (a scalar gather; through x4 it costs a vec4 load per
// lane, ~+12 % on pix_backward4, and x and x4 may not both be used by one entry point).
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> counts: array<u32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> counts_rw: array<atomic<u32>>;
// Vec4 views for the *4 entry points.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> stats4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

fn cls_at(row: u32, k: u32) -> f32 {
    return cls[4u + row * p.c + k];
}

fn class_active(k: u32) -> bool {
    return (CLS & 4u) == 0u || cls_at(4u, k) != 0.0;
}

// w_k (1 without class weights).
fn class_weight(k: u32) -> f32 {
    if (WEIGHTED == 1u) {
        return cls_at(0u, k);
    }
    return 1.0;
}

// The first class that takes part in the softmax (the host keeps at least one).
fn first_active() -> u32 {
    var k = 0u;
    while (k + 1u < p.c && !class_active(k)) {
        k = k + 1u;
    }
    return k;
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

// z of class k from its logit xv (is_y: k is the pixel's label; r_abs = |r| of the element).
fn class_z(xv: f32, k: u32, is_y: bool, r_abs: f32) -> f32 {
    var z = xv;
    if ((CLS & 1u) != 0u) {
        z = z + cls_at(1u, k);
    }
    if ((CLS & 2u) != 0u && is_y) {
        z = z - cls_at(2u, k);
    }
    if (NOISE != 0u) {
        z = z + cls_at(3u, k) * r_abs;
    }
    if ((CLS & 8u) != 0u) {
        z = p.scale * z;
    }
    return z;
}

// z of logit element e (class k) of a pixel labelled y (scalar kernels).
fn logit_z(e: u32, k: u32, y: u32) -> f32 {
    var r = 0.0;
    if (NOISE == 1u) {
        r = abs(normal(e));
    } else if (NOISE == 2u) {
        r = abs(aux[e]);
    }
    return class_z(x[e], k, k == y, r);
}

// The same for the quad at vec4 index i4, class k (vec4 kernels).
fn logit_z4(i4: u32, k: u32, y: vec4<u32>) -> vec4<f32> {
    var z = x4[i4];
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
    } else if (NOISE == 2u) {
        let e = 4u * i4;
        z = z + cls_at(3u, k) * abs(vec4(aux[e], aux[e + 1u], aux[e + 2u], aux[e + 3u]));
    }
    if ((CLS & 8u) != 0u) {
        z = p.scale * z;
    }
    return z;
}

// z of its own label class k for component j of the quad whose class-0 vec4 index is base.
fn label_z4_at(base: u32, quads: u32, k: u32, j: u32) -> f32 {
    let e = 4u * (base + k * quads) + j;
    var xv = 0.0;
    var r = 0.0;
    if (NOISE == 2u) {
        xv = x4[e / 4u][j];
        r = abs(aux[e]);
    } else {
        xv = aux[e];
        if (NOISE == 1u) {
            r = abs(normal(e));
        }
    }
    return class_z(xv, k, true, r);
}

// Per-pixel terms of up to four pixels (the scalar kernels pass splats).
struct Terms {
    loss: vec4<f32>,
    den: vec4<f32>,
    coef: vec4<f32>,
    log_s: vec4<f32>,
    // 1 for a valid pixel, else 0.
    ok: vec4<f32>,
}

// (w·u·β·(−log p), d, w·u·s·(β + β'·p·log p), log s, valid) from z_y − m, the saved σ and u;
// zero for invalid pixels (except log s). Branch-free. With SMOOTH, `rest` = Σ_k w_k·(m − z_k)
// (forward; unused in the backward) adds the uniform target's loss and coef is w_y·(1 − ε).
fn pixel_terms(y: vec4<u32>, zy_m: vec4<f32>, sigma: vec4<f32>, u: vec4<f32>,
               rest: vec4<f32>) -> Terms {
    let k = min(y, vec4(p.c - 1u));
    var ok = (y < vec4(p.c)) & (y != vec4(p.ignore_index));
    if ((CLS & 4u) != 0u) {
        ok = ok & vec4(class_active(k.x), class_active(k.y), class_active(k.z), class_active(k.w));
    }
    var log_s = sigma;
    var nlp = max(log_s - zy_m, vec4(0.0));
    var omp = vec4(0.0);
    if (MOD == 1u) {
        let sr = max(sigma, vec4(0.0));
        let s = 1.0 + sr;
        log_s = log(s);
        // When y is the maximum, p = 1/(1 + s_rest): −log p = log1p(s_rest) (its 8-term
        // series below 0.1, relative error < 0.1⁸/9) and 1 − p = s_rest/(1 + s_rest), both
        // exact as p → 1. Otherwise p ≤ 1/2 and the plain forms are accurate.
        let series = sr * (1.0 - sr * (0.5 - sr * (1.0 / 3.0 - sr * (0.25 - sr * (0.2 - sr
            * (1.0 / 6.0 - sr * (1.0 / 7.0 - sr * 0.125)))))));
        let top = zy_m >= vec4(0.0);
        nlp = select(log_s - zy_m, select(log_s, series, sr < vec4(0.1)), top);
        omp = select(1.0 - exp(max(zy_m, vec4(-EXP_MAX_ARG))) / s, sr / s, top);
    } else if (MOD != 0u) {
        // PAT: β is smooth in p; 1 − p to f32 rounding (absolute) is all it needs.
        omp = 1.0 - exp(-nlp);
    }
    let pp = 1.0 - omp;
    var beta = vec4(1.0);
    var dcoef = vec4(1.0);
    if (MOD == 1u) {
        // (1 − p)^γ and β − β'·p·nlp = (1 − p)^γ·(1 + γ·p·nlp/(1 − p)), never (1 − p)^(γ−1).
        let lo = max(omp, vec4(F32_MIN_POS));
        beta = exp(max(p.gamma * log(lo), vec4(-EXP_MAX_ARG)));
        let rho = select(vec4(1.0), nlp / lo, omp > vec4(0.0));
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
    var w = vec4(1.0);
    if (WEIGHTED == 1u) {
        w = vec4(cls_at(0u, k.x), cls_at(0u, k.y), cls_at(0u, k.z), cls_at(0u, k.w));
    }
    var d = vec4(1.0);
    if (NORM == 1u) {
        d = w;
    } else if (NORM == 2u) {
        d = vec4(0.0);
    }
    let wu = w * u;
    let zero = vec4(0.0);
    var loss = wu * beta * nlp;
    var coef = wu * p.scale * dcoef;
    if (SMOOTH == 1u) {
        loss = p.ls_keep * loss + p.ls_each * (cls[1] * log_s + rest);
        coef = p.ls_keep * coef;
    }
    return Terms(select(zero, loss, ok), select(zero, d, ok), select(zero, coef, ok), log_s,
                 select(zero, vec4(1.0), ok));
}

// u = 1/S_{b,y} of the forward (from the count table), 1 unless PAT.
fn forward_u(b: u32, y: vec4<u32>) -> vec4<f32> {
    if (NORM != 2u) {
        return vec4(1.0);
    }
    let k = b * p.c + min(y, vec4(p.c - 1u));
    let n = vec4(counts[k.x], counts[k.y], counts[k.z], counts[k.w]);
    return 1.0 / vec4<f32>(max(n, vec4(1u)));
}

// The same in the backward, from the table's 1/S rows.
fn backward_u(b: u32, y: vec4<u32>) -> vec4<f32> {
    if (NORM != 2u) {
        return vec4(1.0);
    }
    let k = 4u + 5u * p.c + b * p.c + min(y, vec4(p.c - 1u));
    return vec4(cls[k.x], cls[k.y], cls[k.z], cls[k.w]);
}

// pix_count's run-length walk over raw labels: `run` pixels labelled `cur` so far. A run
// is added to the table when it ends, if its label is valid.
fn count_flush(b: u32, y: u32, run: u32) {
    if (run > 0u && y < p.c && y != p.ignore_index && class_active(min(y, p.c - 1u))) {
        atomicAdd(&counts_rw[b * p.c + y], run);
    }
}

fn count_step(b: u32, y: u32, cur: ptr<function, u32>, run: ptr<function, u32>) {
    if (y != *cur) {
        count_flush(b, *cur, *run);
        *cur = y;
        *run = 0u;
    }
    *run = *run + 1u;
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
    var cur = 0u;
    var run = 0u;
    let end = min(j * PER + PER, p.inner);
    for (var i = j * PER; i < end; i = i + 1u) {
        count_step(b, labels[b * p.inner + i], &cur, &run);
    }
    count_flush(b, cur, run);
}

@compute @workgroup_size(WG)
fn pix_count4(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.n * p.lanes) {
        return;
    }
    let b = t / p.lanes;
    let j = t % p.lanes;
    let quads = p.inner / 4u;
    var cur = 0u;
    var run = 0u;
    let q_end = min(j * (PER / 4u) + PER / 4u, quads);
    for (var q = j * (PER / 4u); q < q_end; q = q + 1u) {
        let y = labels4[b * quads + q];
        if (all(y == vec4(cur))) {
            // The common case: the quad continues the current run.
            run = run + 4u;
        } else {
            count_step(b, y.x, &cur, &run);
            count_step(b, y.y, &cur, &run);
            count_step(b, y.z, &cur, &run);
            count_step(b, y.w, &cur, &run);
        }
    }
    count_flush(b, cur, run);
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
        // Online maximum and sum without the maximum's term, one load per logit; every
        // exp() argument is ≤ 0. The first active class starts them.
        var m = logit_z(base + k0 * p.inner, k0, y);
        var sr = 0.0;
        var zy = m;
        // SMOOTH: rest = Σ_k w_k·(m − z_k) over the classes so far (w_seen = their Σ w_k),
        // shifted when the maximum moves.
        var rest = 0.0;
        var w_seen = 0.0;
        if (SMOOTH == 1u) {
            w_seen = class_weight(k0);
        }
        for (var k = k0 + 1u; k < p.c; k = k + 1u) {
            if (!class_active(k)) {
                continue;
            }
            let z = logit_z(base + k * p.inner, k, y);
            zy = select(zy, z, k == y);
            if (SMOOTH == 1u) {
                let wk = class_weight(k);
                rest = rest + w_seen * max(z - m, 0.0) + wk * max(m - z, 0.0);
                w_seen = w_seen + wk;
            }
            if (z > m) {
                sr = (sr + 1.0) * exp_nonpos(m - z);
                m = z;
            } else {
                sr = sr + exp_nonpos(z - m);
            }
        }
        out[4u + v] = m;
        // σ: log s, or s_rest for focal (the select folds: MOD is a constant).
        let sigma = select(log(1.0 + sr), sr, MOD == 1u);
        out[4u + all + v] = sigma;
        let tr = pixel_terms(vec4(y), vec4(zy - m), vec4(sigma), forward_u(b, vec4(y)),
                             vec4(rest));
        acc = acc + vec2(tr.loss.x, tr.den.x);
    }
    out[p.partials + t] = acc.x;
    out[p.partials + total + t] = acc.y;
}

@compute @workgroup_size(1)
fn pix_finish() {
    out[0] = safe_div(stats[0], stats[1] + p.den_const);
}

// Inputs: labels = the count table (PAT), cls, aux = g, stats.
@compute @workgroup_size(WG)
fn pix_gscale(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    let head = 4u + 5u * p.c;
    if (i < head) {
        out[i] = select(cls[i], safe_div(aux[0], stats[1] + p.den_const), i == 0u);
    } else if (NORM == 2u && i < head + p.n * p.c) {
        out[i] = 1.0 / f32(max(labels[i - head], 1u));
    }
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
    let b = v / p.inner;
    let base = b * p.c * p.inner + v % p.inner;
    let y = labels[v];
    let ky = min(y, p.c - 1u);
    let m = stats[4u + v];
    let zy = logit_z(base + ky * p.inner, ky, y);
    let tr = pixel_terms(vec4(y), vec4(zy - m), vec4(stats[4u + all + v]), backward_u(b, vec4(y)),
                         vec4(0.0));
    if (SMOOTH == 1u) {
        // G·(((1 − ε)·w_y + (ε/C)·W)·q_k − (1 − ε)·w_y·δ_ky − (ε/C)·w_k); all three
        // coefficients 0 for an invalid pixel.
        let keep = cls[0] * tr.coef.x;
        let each = cls[0] * tr.ok.x * p.ls_each;
        let sq = keep + each * cls[1];
        let on = tr.ok.x != 0.0;
        let mm = select(F32_MAX, m, on);
        let log_s = select(0.0, tr.log_s.x, on);
        for (var k = 0u; k < p.c; k = k + 1u) {
            let e = base + k * p.inner;
            var d = 0.0;
            if (class_active(k)) {
                let q = exp_nonpos((logit_z(e, k, y) - mm) - log_s);
                d = sq * q - select(0.0, keep, k == y) - each * class_weight(k);
            }
            out[e] = d;
        }
        return;
    }
    // G·coef; 0 for an invalid pixel, whose statistics are then not used.
    let scale = cls[0] * tr.coef.x;
    let mm = select(F32_MAX, m, scale != 0.0);
    let log_s = select(0.0, tr.log_s.x, scale != 0.0);
    for (var k = 0u; k < p.c; k = k + 1u) {
        let e = base + k * p.inner;
        var d = 0.0;
        if (class_active(k)) {
            let q = exp_nonpos((logit_z(e, k, y) - mm) - log_s);
            d = scale * q - select(0.0, scale, k == y);
        }
        out[e] = d;
    }
}

// Vec4 variants (inner % 4 == 0): quad q = pixels 4q .. 4q + 3 of one image (pixel index
// v = 4q + e over all images), so every logit, label and statistic access is a vec4.
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
    var acc_l = vec4(0.0);
    var acc_d = vec4(0.0);
    let q_end = min(j * (PER / 4u) + PER / 4u, quads);
    for (var q = j * (PER / 4u); q < q_end; q = q + 1u) {
        let y = labels4[b * quads + q];
        let base = b * p.c * quads + q;
        // Branch-free online maximum and rest-sum: e = exp(−|z − m|) is the new term when
        // z ≤ m, else the factor that rescales the old maximum's 1 and the rest.
        var m = logit_z4(base + k0 * quads, k0, y);
        var sr = vec4(0.0);
        var zy = m;
        // SMOOTH: rest = Σ_k w_k·(m − z_k), as in pix_forward.
        var rest = vec4(0.0);
        var w_seen = 0.0;
        if (SMOOTH == 1u) {
            w_seen = class_weight(k0);
        }
        for (var k = k0 + 1u; k < p.c; k = k + 1u) {
            if (!class_active(k)) {
                continue;
            }
            let z = logit_z4(base + k * quads, k, y);
            zy = select(zy, z, y == vec4(k));
            if (SMOOTH == 1u) {
                let wk = class_weight(k);
                rest = rest + w_seen * max(z - m, vec4(0.0)) + wk * max(m - z, vec4(0.0));
                w_seen = w_seen + wk;
            }
            let e = exp(max(min(z, m) - max(z, m), vec4(-EXP_MAX_ARG)));
            sr = select(sr + e, (sr + 1.0) * e, z > m);
            m = max(m, z);
        }
        let v = b * quads + q;
        out4[1u + v] = m;
        let sigma = select(log(1.0 + sr), sr, MOD == 1u);
        out4[1u + all + v] = sigma;
        let tr = pixel_terms(y, zy - m, sigma, forward_u(b, y), rest);
        acc_l = acc_l + tr.loss;
        acc_d = acc_d + tr.den;
    }
    let i = p.partials + t;
    let k = i + total;
    out4[i / 4u][i % 4u] = dot(acc_l, vec4(1.0));
    out4[k / 4u][k % 4u] = dot(acc_d, vec4(1.0));
}

// pix_backward on quads: invocation t handles quads [t·BQ, t·BQ + BQ) (they may span images).
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
        let ky = min(y, vec4(p.c - 1u));
        let m = stats4[1u + q];
        let zy = vec4(label_z4_at(base, quads, ky.x, 0u), label_z4_at(base, quads, ky.y, 1u),
                      label_z4_at(base, quads, ky.z, 2u), label_z4_at(base, quads, ky.w, 3u));
        let tr = pixel_terms(y, zy - m, stats4[1u + all + q], backward_u(b, y), vec4(0.0));
        if (SMOOTH == 1u) {
            // As in pix_backward.
            let keep = gs * tr.coef;
            let each = gs * tr.ok * p.ls_each;
            let sq = keep + each * cls[1];
            let on = tr.ok != vec4(0.0);
            let mm = select(vec4(F32_MAX), m, on);
            let log_s = select(vec4(0.0), tr.log_s, on);
            for (var k = 0u; k < p.c; k = k + 1u) {
                let i = base + k * quads;
                var d = vec4(0.0);
                if (class_active(k)) {
                    let e = exp(max((logit_z4(i, k, y) - mm) - log_s, vec4(-EXP_MAX_ARG)));
                    d = sq * e - select(vec4(0.0), keep, y == vec4(k)) - each * class_weight(k);
                }
                out4[i] = d;
            }
        } else {
            let scale = gs * tr.coef;
            let ok = scale != vec4(0.0);
            let mm = select(vec4(F32_MAX), m, ok);
            let log_s = select(vec4(0.0), tr.log_s, ok);
            for (var k = 0u; k < p.c; k = k + 1u) {
                let i = base + k * quads;
                var d = vec4(0.0);
                if (class_active(k)) {
                    let e = exp(max((logit_z4(i, k, y) - mm) - log_s, vec4(-EXP_MAX_ARG)));
                    d = scale * e - select(vec4(0.0), scale, y == vec4(k));
                }
                out4[i] = d;
            }
        }
        r = r + 1u;
        if (r == quads) {
            r = 0u;
            b = b + 1u;
        }
    }
}
