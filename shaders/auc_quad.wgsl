// AUCSeg's closed form on quads of 4 neighbouring pixels, for H·W % 4 == 0 (a quad never
// spans two images): auc_sums4 and auc_backward4 compute what auc_sums and auc_backward of
// shaders/auc.wgsl compute (formulas and the partials' and table's layouts there), with
// every logit, label and gradient access a vec4. Quad u = pixels 4u .. 4u + 3 over the
// whole batch; chunk_len counts quads here.
//
// Cost (lavapipe, (4, 19, 256, 256), per-kernel profile): the vec4 accesses took
// auc_backward from 27–46 ms to 9–21 ms and auc_sums from 17–23 ms to 8–12 ms (the machine
// was shared, hence the ranges); src/losses/aucseg/closed.rs has the end-to-end figures.
//
// Bindings: auc_sums4 x4(1) labels4(2) counts(3) → part(4);
//           auc_backward4 x4(1) labels4(2) counts(3) tab(4) g(5) → dx4(6).

override WG: u32 = 256u;
// Pixels per auc_backward4 invocation (RUN / 4 quads).
override RUN: u32 = 64u;
// 1: auc_backward4 adds to dx instead of writing it (aucseg's fused backward, auc.wgsl).
override ACC: u32 = 0u;

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
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> labels4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> tab: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx4: array<vec4<f32>>;

fn sigmoid4(v: vec4<f32>) -> vec4<f32> {
    let e = exp(-min(abs(v), vec4(EXP_MAX_ARG)));
    let r = vec4(1.0) / (vec4(1.0) + e);
    return select(e * r, r, v >= vec4(0.0));
}

// Validity and 1/n_y (0 for an invalid pixel) of four labels.
fn inv_counts(y: vec4<u32>) -> vec4<f32> {
    let valid = (y < vec4(p.c)) & (y != vec4(p.ignore_index));
    let yc = min(y, vec4(p.c - 1u));
    let n = vec4(f32(counts[yc.x]), f32(counts[yc.y]), f32(counts[yc.z]), f32(counts[yc.w]));
    return select(vec4(0.0), vec4(1.0) / max(n, vec4(1.0)), valid);
}

// Channels of group k: 4k .. 4k + 3 (the last group of c % 4 ≠ 0 has fewer).
fn group_channels(k: u32) -> vec4<u32> {
    return vec4(4u * k) + vec4(0u, 1u, 2u, 3u);
}

// Row i of the backward table, (A, B, C, D) of class i (0 past the last class).
fn table_row(i: u32) -> vec4<f32> {
    let k = 4u * min(i, p.c - 1u);
    return select(vec4(0.0), vec4(tab[k], tab[k + 1u], tab[k + 2u], tab[k + 3u]), i < p.c);
}

// (Σ a·[y = ch], Σ a²·[y = ch], Σ s/n_y·[y ≠ ch], Σ s²/n_y·[y ≠ ch]) of one quad in
// channel ch (inv = 1/n_y, 0 for an invalid pixel).
fn sums_quad(at: u32, ch: u32, y: vec4<u32>, valid: vec4<bool>, inv: vec4<f32>) -> vec4<f32> {
    let s = sigmoid4(x4[at]);
    let pos = (y == vec4(ch)) & valid;
    let a = select(vec4(0.0), s - p.margin, pos);
    let w = select(inv, vec4(0.0), pos);
    let ones = vec4(1.0);
    return vec4(dot(a, ones), dot(a * a, ones), dot(s * w, ones), dot(s * s * w, ones));
}

// auc_sums on quads: chunk q is the chunk_len quads [q·chunk_len, q·chunk_len + chunk_len).
@compute @workgroup_size(WG)
fn auc_sums4(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let groups = (p.c + 3u) / 4u;
    if (t >= groups * p.chunks) {
        return;
    }
    let ch = group_channels(t / p.chunks);
    let q = t % p.chunks;
    let quads = p.inner / 4u;
    let total = p.n * quads;
    let start = min(q * p.chunk_len, total);
    let end = min(start + p.chunk_len, total);
    // acc_k = (SA, QA, NB, R) of channel ch[k].
    var acc0 = vec4(0.0);
    var acc1 = vec4(0.0);
    var acc2 = vec4(0.0);
    var acc3 = vec4(0.0);
    var b = start / quads;
    var r = start % quads;
    for (var u = start; u < end; u = u + 1u) {
        let y = labels4[u];
        let valid = (y < vec4(p.c)) & (y != vec4(p.ignore_index));
        let inv = inv_counts(y);
        let at = (b * p.c + min(ch, vec4(p.c - 1u))) * quads + vec4(r);
        acc0 = acc0 + sums_quad(at.x, ch.x, y, valid, inv);
        if (ch.y < p.c) {
            acc1 = acc1 + sums_quad(at.y, ch.y, y, valid, inv);
        }
        if (ch.z < p.c) {
            acc2 = acc2 + sums_quad(at.z, ch.z, y, valid, inv);
        }
        if (ch.w < p.c) {
            acc3 = acc3 + sums_quad(at.w, ch.w, y, valid, inv);
        }
        r = r + 1u;
        if (r == quads) {
            r = 0u;
            b = b + 1u;
        }
    }
    let stride = p.c * p.chunks;
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var k = 0u; k < 4u; k = k + 1u) {
        let i = ch[k];
        if (i < p.c) {
            let o = i * p.chunks + q;
            for (var m = 0u; m < 4u; m = m + 1u) {
                part[m * stride + o] = accs[k][m];
            }
        }
    }
}

// One channel of auc_backward4: quad at logit-quad index `at`, labels y, validity, 1/n_y;
// t = the channel's table row (A, B, C, D) with A, B, D multiplied by g.
fn backward_quad(at: u32, ch: u32, y: vec4<u32>, valid: vec4<bool>, inv: vec4<f32>,
                 t: vec4<f32>) {
    let s = sigmoid4(x4[at]);
    let pos = (y == vec4(ch)) & valid;
    let d = select(t.w * (s - t.z) * inv, t.x * (s - p.margin) - t.y, pos);
    let v = s * (vec4(1.0) - s) * d;
    if (ACC == 1u) {
        dx4[at] = dx4[at] + v;
    } else {
        dx4[at] = v;
    }
}

// auc_backward on quads: invocation t = k·runs + j handles channels 4k .. 4k + 3 on the
// RUN / 4 quads [j·RUN/4, j·RUN/4 + RUN/4) (they may span images).
@compute @workgroup_size(WG)
fn auc_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let quads = p.inner / 4u;
    let total = p.n * quads;
    let per = RUN / 4u;
    let runs = (total + per - 1u) / per;
    let groups = (p.c + 3u) / 4u;
    if (t >= groups * runs) {
        return;
    }
    let ch = group_channels(t / runs);
    let q0 = (t % runs) * per;
    let q_end = min(q0 + per, total);
    let scale = vec4(g[0], g[0], 1.0, g[0]);
    let t0 = scale * table_row(ch.x);
    let t1 = scale * table_row(ch.y);
    let t2 = scale * table_row(ch.z);
    let t3 = scale * table_row(ch.w);
    var b = q0 / quads;
    var r = q0 % quads;
    for (var q = q0; q < q_end; q = q + 1u) {
        let y = labels4[q];
        let valid = (y < vec4(p.c)) & (y != vec4(p.ignore_index));
        let inv = inv_counts(y);
        let at = (b * p.c + ch) * quads + vec4(r);
        backward_quad(at.x, ch.x, y, valid, inv, t0);
        if (ch.y < p.c) {
            backward_quad(at.y, ch.y, y, valid, inv, t1);
        }
        if (ch.z < p.c) {
            backward_quad(at.z, ch.z, y, valid, inv, t2);
        }
        if (ch.w < p.c) {
            backward_quad(at.w, ch.w, y, valid, inv, t3);
        }
        r = r + 1u;
        if (r == quads) {
            r = 0u;
            b = b + 1u;
        }
    }
}
