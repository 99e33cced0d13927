// AUCSeg's pixel-level AUC loss, tiled pairwise kernel (docs/longtail.md; src/losses/aucseg/pairwise.rs).
//
// Logits x viewed as [n, c, inner]. The host built a plan (u32) from the labels:
//   pres[K]        the present classes (after subsampling every class still has ≥ 1 pixel),
//   off[c + 1]     class segments of the sorted pixel list: class j is idx[off[j] .. off[j+1]),
//   tcls[T]        class of tile t (a tile is ≤ PWG consecutive entries of one segment),
//   tstart[T]      first entry of tile t,
//   idx[M]         the (subsampled) pixel indices v ∈ [0, P), grouped by class,
// at offsets 0, K, K + c + 1, K + c + 1 + T, K + c + 1 + 2T. n_j = off[j+1] − off[j].
//
// auc_pair_forward: workgroup w = k·T + t scores channel i = pres[k] on tile t (class c):
// invocation l owns entry u = tstart[t] + l (if inside the segment), s_u = σ(x[u, i]).
//   c = i (u is a positive): walks the negatives q of every other class j, tile by tile
//     through workgroup memory, and accumulates Σ_j Σ_q ℓ(s_u − s_q)/n_j and Σ ℓ'(…)/n_j;
//     loss partial = scale/n_i · Σ ℓ/n_j, ∂L/∂x_{u,i} = s(1−s)·scale/n_i · Σ ℓ'/n_j.
//   c ≠ i (u is a negative of class c): walks the positives p of class i:
//     ∂L/∂x_{u,i} = −s(1−s)·scale/(n_i n_c) · Σ_p ℓ'(s_p − s_u), and no loss (each pair's
//     loss is counted once, on its positive).
// scale = λ/(K(K−1)). Each (entry, channel) gradient is written by exactly one invocation
// (a gather: no atomics). out[w·PWG + l] = gradient, out[W·PWG + w·PWG + l] = loss partial
// (W = K·T); the host sums the loss partials (reduce_lanes).
// auc_pair_scatter: dx was zeroed; invocation s = w·PWG + l writes dx[u, i] = g·out[s].
//
// Surrogates (SURR), d = s_p − s_q, m = margin:
//   0 square    ℓ = ½(m − d)²,       ℓ' = −(m − d)
//   1 sq_hinge  ℓ = max(0, m − d)²,  ℓ' = −2·max(0, m − d)
//   2 logistic  ℓ = ln(1 + e^{−d}),  ℓ' = −σ(−d)      (d ∈ [−1, 1]: no overflow)
//
// Every quantity that bounds a loop containing a barrier (w, i, c, the segment bounds) is
// the same for all invocations of a workgroup, so the barriers are in uniform control flow;
// an over-dispatched workgroup (w ≥ W) walks nothing and writes nothing.
//
// Bindings: forward x(1) plan(2) → out(3); scatter x(1, unused) plan(2) saved(3) g(4) → dx(5).

// Tile (and workgroup) size; = PAIR_WG in src/losses/aucseg/pairwise.rs. A constant, not an
// override: it sizes the workgroup array.
const PWG: u32 = 64u;
override SURR: u32 = 0u;

struct PairParams {
    n: u32,
    c: u32,
    inner: u32,
    tiles: u32,
    present: u32,
    entries: u32,
    _p0: u32,
    _p1: u32,
    margin: f32,
    scale: f32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: PairParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> plan: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> saved: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

var<workgroup> tile_s: array<f32, PWG>;

// Surrogate ℓ(d) and its derivative ℓ'(d).
fn surrogate(d: f32) -> vec2<f32> {
    let gap = p.margin - d;
    if (SURR == 1u) {
        let h = max(gap, 0.0);
        return vec2(h * h, -2.0 * h);
    }
    if (SURR == 2u) {
        // ln(1 + e^{−d}) = max(−d, 0) + ln(1 + e^{−|d|}); σ(−d) = 1 − σ(d).
        let e = exp(-min(abs(d), EXP_MAX_ARG));
        return vec2(max(-d, 0.0) + log(1.0 + e), -(1.0 - sigmoid(d)));
    }
    return vec2(0.5 * gap * gap, -gap);
}

// Offsets of the plan's sections.
fn off_base() -> u32 {
    return p.present;
}
fn tcls_base() -> u32 {
    return p.present + p.c + 1u;
}
fn idx_base() -> u32 {
    return p.present + p.c + 1u + 2u * p.tiles;
}

// Logit index of pixel v in channel i.
fn logit_at(v: u32, i: u32) -> u32 {
    return ((v / p.inner) * p.c + i) * p.inner + v % p.inner;
}

// Workgroup w's (i, c, entry u, segment end of c); w must be < K·T.
fn tile_of(w: u32, l: u32) -> vec4<u32> {
    let i = plan[w / p.tiles];
    let t = w % p.tiles;
    let c = plan[tcls_base() + t];
    let u = plan[tcls_base() + p.tiles + t] + l;
    return vec4(i, c, u, plan[off_base() + c + 1u]);
}

@compute @workgroup_size(PWG)
fn auc_pair_forward(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let w = wg_linear(wid, nwg);
    let works = p.present * p.tiles;
    let live = w < works;
    let tl = tile_of(min(w, works - 1u), lid);
    let i = tl.x;
    let c = tl.y;
    let u = tl.z;
    let mine = live && u < tl.w;
    var su = 0.0;
    if (mine) {
        su = sigmoid(x[logit_at(plan[idx_base() + u], i)]);
    }
    let n_i = f32(plan[off_base() + i + 1u] - plan[off_base() + i]);
    var lsum = 0.0;
    var gsum = 0.0;
    for (var j = 0u; j < p.c; j = j + 1u) {
        // Positive tile: every other class; negative tile: class i only.
        let walk = live && ((c == i) != (j == i));
        if (walk) {
            let b0 = plan[off_base() + j];
            let b1 = plan[off_base() + j + 1u];
            let wj = 1.0 / f32(max(b1 - b0, 1u));
            var jl = 0.0;
            var jg = 0.0;
            for (var t0 = b0; t0 < b1; t0 = t0 + PWG) {
                let r = t0 + lid;
                if (r < b1) {
                    tile_s[lid] = sigmoid(x[logit_at(plan[idx_base() + r], i)]);
                }
                workgroupBarrier();
                let cnt = min(PWG, b1 - t0);
                if (mine) {
                    for (var k = 0u; k < cnt; k = k + 1u) {
                        if (c == i) {
                            let f = surrogate(su - tile_s[k]);
                            jl = jl + f.x;
                            jg = jg + f.y;
                        } else {
                            jg = jg - surrogate(tile_s[k] - su).y;
                        }
                    }
                }
                workgroupBarrier();
            }
            lsum = lsum + jl * wj;
            gsum = gsum + jg * wj;
        }
    }
    if (live) {
        let slot = w * PWG + lid;
        var lv = 0.0;
        var gv = 0.0;
        if (mine) {
            // Positive: Σ_j (·)/n_j was accumulated; negative: (·)/n_i was (j = i).
            var norm = p.scale / n_i;
            if (c != i) {
                let n_c = f32(plan[off_base() + c + 1u] - plan[off_base() + c]);
                norm = p.scale / n_c;
            }
            lv = lsum * norm;
            gv = su * (1.0 - su) * gsum * norm;
        }
        out[slot] = gv;
        out[works * PWG + slot] = lv;
    }
}

@compute @workgroup_size(PWG)
fn auc_pair_scatter(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let w = wg_linear(wid, nwg);
    let works = p.present * p.tiles;
    if (w >= works) {
        return;
    }
    let tl = tile_of(w, lid);
    if (tl.z < tl.w) {
        dx[logit_at(plan[idx_base() + tl.z], tl.x)] = g[0] * saved[w * PWG + lid];
    }
}
