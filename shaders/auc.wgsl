// AUCSeg's pixel-level AUC loss, closed form (docs/longtail.md; src/losses/aucseg/closed.rs).
//
// Logits x viewed as [n, c, inner] (inner = H·W), u32 labels [n, inner]; P = n·inner pixels.
// A pixel is valid when its label y < c and y ≠ ignore_index. Scores s = σ(x) per class;
// a_{v,i} = s_{v,i} − m·δ_{i,y_v}; n_j = batch count of class j; K = #classes with n_j > 0.
//
// auc_count:    counts[y] += 1 for every valid pixel, with u32 atomics into a zeroed buffer.
//               Invocation t counts the RUN pixels [t·RUN, t·RUN + RUN) and adds once per
//               run of equal labels (segmentation labels come in long runs, so few atomics;
//               integer sums are exact and independent of the order).
// auc_sums:     invocation t = k·chunks + q (class channels 4k .. 4k + 3, pixel chunk q of
//               chunk_len pixels) writes four partial sums per channel i of its chunk into
//               part[(m·c + i)·chunks + q]:
//               m = 0: SA = Σ_{y=i} a,  1: QA = Σ_{y=i} a²,
//               m = 2: NB = Σ_{y≠i} s/n_y,  3: R = Σ_{y≠i} s²/n_y.
//               The number of chunks is fixed (not a function of P), so the partials take
//               4·c·chunks floats at every image size. The host sums them over q
//               (reduce_lanes) into sums[m·c + i].
// auc_finish:   one invocation: K from the counts, then per present class i
//               term_i = ½[(K−1)/n_i·QA_i + R_i] − SA_i·NB_i/n_i,
//               loss = λ·Σ_i term_i / (K(K−1)) (0 when K < 2), and the backward table
//               tab[4i..4i+4] = (λ/(n_i K), λ·NB_i/(n_i K(K−1)), SA_i/n_i, λ/(K(K−1))), all
//               0 for an absent class or K < 2 (so those get gradient 0, never NaN).
// auc_backward: dx[v, i] = g·s(1−s)·(A_i·a − B_i)            if y_v = i,
//                        = g·s(1−s)·D_i·(s − C_i)/n_{y_v}    if y_v ≠ i (valid),
//                        = 0                                  for an invalid pixel,
//               (A, B, C, D) = tab[4i..4i+4]. Invocation t = k·runs + j handles channels
//               4k .. 4k + 3 on the RUN pixels [j·RUN, j·RUN + RUN).
//
// ACC = 1 (aucseg's fused CE + λ·AUC): auc_finish adds the loss to the value loss[0] holds
// (cross-entropy's) and auc_backward adds dx to what dx holds (cross-entropy's gradient)
// instead of writing them: no second logits-sized gradient and no sum pass.
//
// auc_sums and auc_backward take the pixels one at a time (any H·W); shaders/auc_quad.wgsl
// has the same two kernels on quads of 4 pixels (vec4 accesses), used when H·W % 4 == 0.
//
// Why groups of 4 channels per invocation: on lavapipe the time goes with the number of
// 32-bit values loaded and stored, and a channel group shares each pixel's label and 1/n_y
// loads among 4 logits (measurements in src/losses/aucseg/closed.rs).
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
// 1: auc_finish and auc_backward add to their output instead of writing it (see above).
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

// Channels of group k: 4k .. 4k + 3 (the last group of c % 4 ≠ 0 has fewer).
fn group_channels(k: u32) -> vec4<u32> {
    return vec4(4u * k) + vec4(0u, 1u, 2u, 3u);
}

// The scores of pixel (b, r) in channels ch (clamped to c − 1: the caller masks the rest).
fn scores4(b: u32, r: u32, ch: vec4<u32>) -> vec4<f32> {
    let base = b * p.c * p.inner + r;
    let k = min(ch, vec4(p.c - 1u)) * p.inner + vec4(base);
    return vec4(sigmoid(x[k.x]), sigmoid(x[k.y]), sigmoid(x[k.z]), sigmoid(x[k.w]));
}

@compute @workgroup_size(WG)
fn auc_sums(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let groups = (p.c + 3u) / 4u;
    if (t >= groups * p.chunks) {
        return;
    }
    let ch = group_channels(t / p.chunks);
    let q = t % p.chunks;
    let total = p.n * p.inner;
    let start = min(q * p.chunk_len, total);
    let end = min(start + p.chunk_len, total);
    var sa = vec4(0.0);
    var qa = vec4(0.0);
    var nb = vec4(0.0);
    var rr = vec4(0.0);
    // Pixel v = b·inner + r, stepped without a division per pixel.
    var b = start / p.inner;
    var r = start % p.inner;
    for (var v = start; v < end; v = v + 1u) {
        let y = labels[v];
        if (is_valid(y)) {
            let s = scores4(b, r, ch);
            let pos = ch == vec4(y);
            let a = s - p.margin;
            sa = sa + select(vec4(0.0), a, pos);
            qa = qa + select(vec4(0.0), a * a, pos);
            // n_y ≥ 1: this pixel was counted.
            let w = 1.0 / f32(counts[y]);
            nb = nb + select(s * w, vec4(0.0), pos);
            rr = rr + select(s * s * w, vec4(0.0), pos);
        }
        r = r + 1u;
        if (r == p.inner) {
            r = 0u;
            b = b + 1u;
        }
    }
    let stride = p.c * p.chunks;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let i = ch[k];
        if (i < p.c) {
            let o = i * p.chunks + q;
            part[o] = sa[k];
            part[stride + o] = qa[k];
            part[2u * stride + o] = nb[k];
            part[3u * stride + o] = rr[k];
        }
    }
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
    if (ACC == 1u) {
        loss[0] = loss[0] + total;
    } else {
        loss[0] = total;
    }
}

// dx[i] = v, or dx[i] += v with ACC = 1.
fn put(i: u32, v: f32) {
    if (ACC == 1u) {
        dx[i] = dx[i] + v;
    } else {
        dx[i] = v;
    }
}

// The backward table's column j for channels ch (0 past the last class).
fn table4(ch: vec4<u32>, j: u32) -> vec4<f32> {
    let k = 4u * min(ch, vec4(p.c - 1u)) + vec4(j);
    let t = vec4(tab[k.x], tab[k.y], tab[k.z], tab[k.w]);
    return select(vec4(0.0), t, ch < vec4(p.c));
}

@compute @workgroup_size(WG)
fn auc_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * WG + lid;
    let total = p.n * p.inner;
    let runs = (total + RUN - 1u) / RUN;
    let groups = (p.c + 3u) / 4u;
    if (t >= groups * runs) {
        return;
    }
    let ch = group_channels(t / runs);
    let start = (t % runs) * RUN;
    let end = min(start + RUN, total);
    let gv = g[0];
    let ca = gv * table4(ch, 0u);
    let cb = gv * table4(ch, 1u);
    let cc = table4(ch, 2u);
    let cd = gv * table4(ch, 3u);
    var b = start / p.inner;
    var r = start % p.inner;
    for (var v = start; v < end; v = v + 1u) {
        let y = labels[v];
        let valid = is_valid(y);
        let inv = select(0.0, 1.0 / f32(max(counts[min(y, p.c - 1u)], 1u)), valid);
        let s = scores4(b, r, ch);
        let pos = (ch == vec4(y)) & vec4(valid);
        let d = select(cd * (s - cc) * inv, ca * (s - p.margin) - cb, pos);
        let out = s * (vec4(1.0) - s) * d;
        // Unrolled: a runtime index into a vector compiles to a stack slot on llvmpipe.
        let at = b * p.c * p.inner + r + ch * p.inner;
        put(at.x, out.x);
        if (ch.y < p.c) {
            put(at.y, out.y);
        }
        if (ch.z < p.c) {
            put(at.z, out.z);
        }
        if (ch.w < p.c) {
            put(at.w, out.w);
        }
        r = r + 1u;
        if (r == p.inner) {
            r = 0u;
            b = b + 1u;
        }
    }
}
