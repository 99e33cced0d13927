// AUCSeg's pixel-level AUC loss, closed form (SPEC §3; src/losses/aucseg/closed.rs).
//
// Logits x viewed as [n, c, inner] (inner = H·W), u32 labels [n, inner]; P = n·inner pixels.
// A pixel is valid when its label y < c and y ≠ ignore_index. Scores s = σ(x) per class;
// a_{v,i} = s_{v,i} − m·δ_{i,y_v}; n_j = batch count of class j; K = #classes with n_j > 0.
//
// auc_count:    counts[y] += 1 for every valid pixel, with u32 atomics into a zeroed buffer.
//               Invocation t counts the RUN pixels [t·RUN, t·RUN + RUN) and adds once per
//               run of equal labels (segmentation labels come in long runs, so few atomics;
//               integer sums are exact and independent of the order).
// auc_sums:     invocation t = i·chunks + q (class channel i, pixel chunk q of chunk_len
//               pixels) writes four partial sums of its chunk into part[(k·c + i)·chunks + q]:
//               k = 0: SA = Σ_{y=i} a,  1: QA = Σ_{y=i} a²,
//               k = 2: NB = Σ_{y≠i} s/n_y,  3: R = Σ_{y≠i} s²/n_y.
//               The number of chunks is fixed (not a function of P), so the partials take
//               4·c·chunks floats at every image size. The host sums them over q
//               (reduce_lanes) into sums[k·c + i].
// auc_finish:   one invocation: K from the counts, then per present class i
//               term_i = ½[(K−1)/n_i·QA_i + R_i] − SA_i·NB_i/n_i,
//               loss = λ·Σ_i term_i / (K(K−1)) (0 when K < 2), and the backward table
//               tab[4i..4i+4] = (λ/(n_i K), λ·NB_i/(n_i K(K−1)), SA_i/n_i, λ/(K(K−1))), all
//               0 for an absent class or K < 2 (so those get gradient 0, never NaN).
// auc_backward: dx[v, i] = g·s(1−s)·(A_i·a − B_i)            if y_v = i,
//                        = g·s(1−s)·D_i·(s − C_i)/n_{y_v}    if y_v ≠ i (valid),
//                        = 0                                  for an invalid pixel,
//               (A, B, C, D) = tab[4i..4i+4]. Invocation t = i·runs + j handles channel i
//               on the RUN pixels [j·RUN, j·RUN + RUN): the table entry is loaded once.
//
// Nothing is read back: counts, sums, table and g stay on the device.
//
// Bindings (one variable per slot and use; an entry point touches one view per slot):
// auc_count    labels(2) → counts_rw(3)   (x is bound at 1 as an unused dummy)
// auc_sums     x(1) labels(2) counts(3) → part(4)
// auc_finish   x(1) labels(2) counts(3) sums(4) → loss(5) tab_out(6)  (x, labels unused)
// auc_backward x(1) labels(2) counts(3) tab(4) g(5) → dx(6)

override WG: u32 = 256u;
// Pixels per auc_count and auc_backward invocation.
override RUN: u32 = 64u;

struct Params {
    n: u32,
    c: u32,
    inner: u32,
    ignore_index: u32,
    chunks: u32,
    chunk_len: u32,
    margin: f32,
    lambda: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts_rw: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> sums: array<f32>;
@group(0) @binding(4) var<storage, read> tab: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> tab_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// σ(v) without overflow: e = exp(−|v|) ∈ (0, 1].
fn sigmoid(v: f32) -> f32 {
    let e = exp(-min(abs(v), EXP_MAX_ARG));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

fn is_valid(y: u32) -> bool {
    return y < p.c && y != p.ignore_index;
}

@compute @workgroup_size(WG)
fn auc_count(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.inner;
    let start = t * RUN;
    if (start >= total) {
        return;
    }
    let end = min(start + RUN, total);
    var cur = labels[start];
    var run = 0u;
    for (var v = start; v < end; v = v + 1u) {
        let y = labels[v];
        if (y != cur) {
            if (is_valid(cur)) {
                atomicAdd(&counts_rw[cur], run);
            }
            cur = y;
            run = 0u;
        }
        run = run + 1u;
    }
    if (is_valid(cur)) {
        atomicAdd(&counts_rw[cur], run);
    }
}

@compute @workgroup_size(WG)
fn auc_sums(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    if (t >= p.c * p.chunks) {
        return;
    }
    let i = t / p.chunks;
    let q = t % p.chunks;
    let total = p.n * p.inner;
    let start = min(q * p.chunk_len, total);
    let end = min(start + p.chunk_len, total);
    var sa = 0.0;
    var qa = 0.0;
    var nb = 0.0;
    var rr = 0.0;
    // Pixel v = b·inner + r, stepped without a division per pixel.
    var b = start / p.inner;
    var r = start % p.inner;
    for (var v = start; v < end; v = v + 1u) {
        let y = labels[v];
        if (is_valid(y)) {
            let s = sigmoid(x[(b * p.c + i) * p.inner + r]);
            if (y == i) {
                let a = s - p.margin;
                sa = sa + a;
                qa = qa + a * a;
            } else {
                // n_y ≥ 1: this pixel was counted.
                let w = 1.0 / f32(counts[y]);
                nb = nb + s * w;
                rr = rr + s * s * w;
            }
        }
        r = r + 1u;
        if (r == p.inner) {
            r = 0u;
            b = b + 1u;
        }
    }
    let stride = p.c * p.chunks;
    part[t] = sa;
    part[stride + t] = qa;
    part[2u * stride + t] = nb;
    part[3u * stride + t] = rr;
}

@compute @workgroup_size(1)
fn auc_finish() {
    var k = 0u;
    for (var i = 0u; i < p.c; i = i + 1u) {
        k = k + select(0u, 1u, counts[i] > 0u);
        for (var j = 0u; j < 4u; j = j + 1u) {
            tab_out[4u * i + j] = 0.0;
        }
    }
    var total = 0.0;
    if (k >= 2u) {
        let kf = f32(k);
        let kk = kf * (kf - 1.0);
        for (var i = 0u; i < p.c; i = i + 1u) {
            if (counts[i] > 0u) {
                let ni = f32(counts[i]);
                let sa = sums[i];
                let qa = sums[p.c + i];
                let nb = sums[2u * p.c + i];
                let rr = sums[3u * p.c + i];
                total = total + 0.5 * ((kf - 1.0) / ni * qa + rr) - sa * nb / ni;
                tab_out[4u * i] = p.lambda / (ni * kf);
                tab_out[4u * i + 1u] = p.lambda * nb / (ni * kk);
                tab_out[4u * i + 2u] = sa / ni;
                tab_out[4u * i + 3u] = p.lambda / kk;
            }
        }
        total = p.lambda * total / kk;
    }
    loss[0] = total;
}

@compute @workgroup_size(WG)
fn auc_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.inner;
    let runs = (total + RUN - 1u) / RUN;
    if (t >= p.c * runs) {
        return;
    }
    let i = t / runs;
    let start = (t % runs) * RUN;
    let end = min(start + RUN, total);
    let gv = g[0];
    let ca = gv * tab[4u * i];
    let cb = gv * tab[4u * i + 1u];
    let cc = tab[4u * i + 2u];
    let cd = gv * tab[4u * i + 3u];
    var b = start / p.inner;
    var r = start % p.inner;
    for (var v = start; v < end; v = v + 1u) {
        let y = labels[v];
        let at = (b * p.c + i) * p.inner + r;
        let s = sigmoid(x[at]);
        var d = 0.0;
        if (y == i && is_valid(y)) {
            d = ca * (s - p.margin) - cb;
        } else if (is_valid(y)) {
            d = cd * (s - cc) / f32(counts[y]);
        }
        dx[at] = s * (1.0 - s) * d;
        r = r + 1u;
        if (r == p.inner) {
            r = 0u;
            b = b + 1u;
        }
    }
}
