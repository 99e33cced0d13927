// Fused batch-norm kernels over x viewed as planes [N·C, hw] (plane p has channel p mod C),
// used by src/ops/norm.rs. A training forward is three dispatches (bn_stats, bn_finish,
// bn_apply), a backward three (bn_stats MODE 1, bn_finish_backward, bn_apply_backward), an
// evaluation forward two (bn_finish_eval, bn_apply). Each replaces a composition of about
// twenty small elementwise ops, reductions and copies.
//
// The epilogue of bn_apply is y = act(x·scale_c + shift_c [+ r]) (ACT, RESIDUAL): the
// activation and a residual add that would each be a full-size pass of their own run inside
// the normalisation pass, and their backward (the activation's mask, the residual's
// gradient) inside the backward pass.
//
// bn_stats, MODE 0: invocation t = plane·parts + j (parts = p.chunks = ⌈hw/RUN⌉) sums the
//   run of elements [j·RUN, (j + 1)·RUN) of its plane shifted by K_c = x[c·hw] (the
//   channel's first value in image 0, the same for every plane of the channel, so partial
//   sums add up): part[t] = Σ (x − K_c), part[P·parts + t] = Σ (x − K_c)², and
//   part[2·P·parts + c] = K_c (run 0 of image 0).
//   Shifting by a value of the channel keeps the one-pass variance
//   Σd²/n − (Σd/n)² free of the cancellation that unshifted sums suffer when |mean| ≫ std.
// bn_stats, MODE 1: with dy = g·act'(y), part[t] = Σ dy, part[P·parts + t] = Σ dy·(x − μ_c).
// bn_finish (one workgroup per channel, or one invocation with SERIAL): adds the partials
//   in a fixed order (invocation l adds runs l, l + 64, … of every image, then a tree over
//   the 64; deterministic, no atomics) and writes stats = [mean, rstd, scale, shift] (each [C]) and the updated
//   running statistics.
// bn_finish_eval: stats from the running statistics.
// bn_finish_backward: coef = [A, B, D] with ∂x = A·dy + B·x + D, and ∂γ, ∂β.
// bn_apply / bn_apply_backward: one invocation per run of CHUNK elements of a plane, so the
//   per-channel coefficients are loaded once per run (on lavapipe every storage load costs
//   a scalar loop over the SIMD lanes).
// bn_stats4, bn_apply4, bn_apply_backward4: the same for planes of a multiple of 4 values,
//   read and written as vec4 (a quarter of the loads; on lavapipe a vec4 load costs about
//   what a scalar one does). bn_stats4 sums runs of RUN4 vec4 (= RUN values, so the same
//   partials); the apply passes' `chunks` counts runs of CHUNK4 vec4.

override MODE: u32 = 0u;
// 0: identity, 1: ReLU.
override ACT: u32 = 0u;
override RESIDUAL: bool = false;
// The finish kernels: each channel's partials added by one invocation, for CPU adapters
// (lavapipe runs a workgroup with barriers as a sequence of fibers, which cost more there
// than the adds they share), or by a workgroup and a tree (GPUs).
override SERIAL: bool = false;

// Elements summed per bn_stats invocation (RUN4 vec4 in bn_stats4).
const RUN: u32 = 64u;
const RUN4: u32 = 16u;
const CHUNK: u32 = 16u;
const CHUNK4: u32 = 4u;

struct BnParams {
    planes: u32,
    c: u32,
    hw: u32,
    chunks: u32,
    inv_n: f32,
    eps: f32,
    momentum: f32,
    unbias: f32,
}

@group(0) @binding(0) var<uniform> p: BnParams;

// bn_stats
@group(0) @binding(1) var<storage, read> st_x: array<f32>;
@group(0) @binding(2) var<storage, read> st_g: array<f32>;
@group(0) @binding(3) var<storage, read> st_y: array<f32>;
@group(0) @binding(4) var<storage, read> st_stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> st_part: array<f32>;

// bn_finish, bn_finish_eval, bn_finish_backward
// (at most 6 storage bindings per entry point). fi_aux: β (bn_finish, bn_finish_eval) or
// the forward's stats (bn_finish_backward). fi_out1 / fi_out2: the running mean / variance,
// updated in place in copies the host made (bn_finish), read (bn_finish_eval), or ∂γ / ∂β
// (bn_finish_backward).
@group(0) @binding(1) var<storage, read> fi_part: array<f32>;
@group(0) @binding(2) var<storage, read> fi_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> fi_aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> fi_stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> fi_out1: array<f32>;
@group(0) @binding(6) var<storage, read_write> fi_out2: array<f32>;

// bn_apply
@group(0) @binding(1) var<storage, read> ap_x: array<f32>;
@group(0) @binding(2) var<storage, read> ap_stats: array<f32>;
@group(0) @binding(3) var<storage, read> ap_res: array<f32>;
@group(0) @binding(4) var<storage, read_write> ap_y: array<f32>;

// bn_apply_backward
@group(0) @binding(1) var<storage, read> ab_g: array<f32>;
@group(0) @binding(2) var<storage, read> ab_y: array<f32>;
@group(0) @binding(3) var<storage, read> ab_x: array<f32>;
@group(0) @binding(4) var<storage, read> ab_coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> ab_dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> ab_dres: array<f32>;

// The activation's derivative as a factor on the incoming gradient, from its output.
fn act_grad(g: f32, y: f32) -> f32 {
    if (ACT == 1u) {
        return select(0.0, g, y > 0.0);
    }
    return g;
}

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    }
    return v;
}

@compute @workgroup_size(64)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let run = t % p.chunks;
    let first = plane * p.hw + run * RUN;
    let end = plane * p.hw + min((run + 1u) * RUN, p.hw);
    var s = 0.0;
    var s2 = 0.0;
    if (MODE == 0u) {
        let k = st_x[c * p.hw];
        for (var i = first; i < end; i = i + 1u) {
            let d = st_x[i] - k;
            s = s + d;
            s2 = fma(d, d, s2);
        }
        if (plane < p.c && run == 0u) {
            st_part[2u * p.planes * p.chunks + c] = k;
        }
    } else {
        let mu = st_stats[c];
        for (var i = first; i < end; i = i + 1u) {
            let dy = act_grad(st_g[i], st_y[i]);
            s = s + dy;
            s2 = fma(dy, st_x[i] - mu, s2);
        }
    }
    st_part[t] = s;
    st_part[p.planes * p.chunks + t] = s2;
}

var<workgroup> tree: array<vec2<f32>, 64>;

// Σ over images and runs of the two partial sums of channel c, in a fixed order
// (deterministic, no atomics). SERIAL: invocation c adds them all itself. Otherwise the 64
// invocations of the channel's workgroup do: invocation l adds runs l, l + 64, … of every
// image, then a tree adds the 64, and every invocation gets the totals.
fn channel_totals(c: u32, l: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0, 0.0);
    let second = p.planes * p.chunks;
    if (SERIAL) {
        for (var plane = c; plane < p.planes; plane = plane + p.c) {
            for (var j = 0u; j < p.chunks; j = j + 1u) {
                let i = plane * p.chunks + j;
                s = s + vec2<f32>(fi_part[i], fi_part[second + i]);
            }
        }
        return s;
    }
    for (var plane = c; plane < p.planes; plane = plane + p.c) {
        for (var j = l; j < p.chunks; j = j + 64u) {
            let i = plane * p.chunks + j;
            s = s + vec2<f32>(fi_part[i], fi_part[second + i]);
        }
    }
    tree[l] = s;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half = half / 2u) {
        if (l < half) {
            tree[l] = tree[l] + tree[l + half];
        }
        workgroupBarrier();
    }
    return tree[0];
}

// The channel of a finish invocation: one per invocation (SERIAL), else one per workgroup.
fn finish_channel(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    if (SERIAL) {
        return wg_linear(wid, nwg) * 64u + lid;
    }
    return wg_linear(wid, nwg);
}

// Writes [mean, rstd, scale, shift] of channel c.
fn write_stats(c: u32, mean: f32, var_: f32) {
    let rstd = 1.0 / sqrt(var_ + p.eps);
    let scale = fi_gamma[c] * rstd;
    fi_stats[c] = mean;
    fi_stats[p.c + c] = rstd;
    fi_stats[2u * p.c + c] = scale;
    fi_stats[3u * p.c + c] = fi_aux[c] - mean * scale;
}

// Training statistics, and the running statistics in fi_out1 / fi_out2 updated in place
// (running ← (1 − momentum)·running + momentum·mean, and + unbias·var with the biased var).
@compute @workgroup_size(64)
fn bn_finish(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let c = finish_channel(wid, nwg, lid);
    // No return before the totals: the tree's barriers need uniform control flow.
    let tot = channel_totals(min(c, p.c - 1u), lid);
    if (c >= p.c || (!SERIAL && lid != 0u)) {
        return;
    }
    let m1 = tot.x * p.inv_n;
    let var_ = max(tot.y * p.inv_n - m1 * m1, 0.0);
    let mean = fi_part[2u * p.planes * p.chunks + c] + m1;
    write_stats(c, mean, var_);
    let keep = 1.0 - p.momentum;
    fi_out1[c] = keep * fi_out1[c] + p.momentum * mean;
    fi_out2[c] = keep * fi_out2[c] + p.unbias * var_;
}

@compute @workgroup_size(64)
fn bn_finish_eval(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let c = wg_linear(wid, nwg) * 64u + lid;
    if (c >= p.c) {
        return;
    }
    write_stats(c, fi_out1[c], fi_out2[c]);
}

// fi_part: the MODE 1 partials; fi_aux: the forward's stats (mean, rstd at C + c).
// fi_stats ← coef [A, B, D]; fi_out1 ← ∂γ = rstd·Σ dy·(x − μ); fi_out2 ← ∂β = Σ dy.
@compute @workgroup_size(64)
fn bn_finish_backward(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let c = finish_channel(wid, nwg, lid);
    let tot = channel_totals(min(c, p.c - 1u), lid);
    if (c >= p.c || (!SERIAL && lid != 0u)) {
        return;
    }
    let mean = fi_aux[c];
    let rstd = fi_aux[p.c + c];
    let a = fi_gamma[c] * rstd;
    let b = -a * rstd * rstd * tot.y * p.inv_n;
    fi_stats[c] = a;
    fi_stats[p.c + c] = b;
    fi_stats[2u * p.c + c] = -b * mean - a * tot.x * p.inv_n;
    fi_out1[c] = tot.y * rstd;
    fi_out2[c] = tot.x;
}

@compute @workgroup_size(64)
fn bn_apply(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let scale = ap_stats[2u * p.c + c];
    let shift = ap_stats[3u * p.c + c];
    let first = (t % p.chunks) * CHUNK;
    let end = min(first + CHUNK, p.hw);
    let base = plane * p.hw;
    for (var i = base + first; i < base + end; i = i + 1u) {
        var v = fma(ap_x[i], scale, shift);
        if (RESIDUAL) {
            v = v + ap_res[i];
        }
        ap_y[i] = act(v);
    }
}

// ∂x = A·dy + B·x + D with dy = g·act'(y); with RESIDUAL the residual's gradient dy too.
@compute @workgroup_size(64)
fn bn_apply_backward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let a = ab_coef[c];
    let b = ab_coef[p.c + c];
    let d = ab_coef[2u * p.c + c];
    let first = (t % p.chunks) * CHUNK;
    let end = min(first + CHUNK, p.hw);
    let base = plane * p.hw;
    for (var i = base + first; i < base + end; i = i + 1u) {
        let dy = act_grad(ab_g[i], ab_y[i]);
        ab_dx[i] = fma(a, dy, fma(b, ab_x[i], d));
        if (RESIDUAL) {
            ab_dres[i] = dy;
        }
    }
}

// The vec4 forms (hw % 4 = 0): the same bindings, viewed as vec4.
@group(0) @binding(1) var<storage, read> st4_x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> st4_g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> st4_y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> st4_stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> st4_part: array<f32>;

@group(0) @binding(1) var<storage, read> ap4_x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ap4_stats: array<f32>;
@group(0) @binding(3) var<storage, read> ap4_res: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> ap4_y: array<vec4<f32>>;

@group(0) @binding(1) var<storage, read> ab4_g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> ab4_y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> ab4_x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ab4_coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> ab4_dx: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> ab4_dres: array<vec4<f32>>;

fn act_grad4(g: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return select(vec4<f32>(0.0), g, y > vec4<f32>(0.0));
    }
    return g;
}

fn act4(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    }
    return v;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

@compute @workgroup_size(64)
fn bn_stats4(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let hw4 = p.hw / 4u;
    let run = t % p.chunks;
    let first = plane * hw4 + run * RUN4;
    let end = plane * hw4 + min((run + 1u) * RUN4, hw4);
    var s = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    if (MODE == 0u) {
        let k = st4_x[c * hw4].x;
        for (var i = first; i < end; i = i + 1u) {
            let d = st4_x[i] - vec4<f32>(k);
            s = s + d;
            s2 = fma(d, d, s2);
        }
        if (plane < p.c && run == 0u) {
            st4_part[2u * p.planes * p.chunks + c] = k;
        }
    } else {
        let mu = vec4<f32>(st4_stats[c]);
        for (var i = first; i < end; i = i + 1u) {
            let dy = act_grad4(st4_g[i], st4_y[i]);
            s = s + dy;
            s2 = fma(dy, st4_x[i] - mu, s2);
        }
    }
    st4_part[t] = hsum(s);
    st4_part[p.planes * p.chunks + t] = hsum(s2);
}

@compute @workgroup_size(64)
fn bn_apply4(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let scale = vec4<f32>(ap4_stats[2u * p.c + c]);
    let shift = vec4<f32>(ap4_stats[3u * p.c + c]);
    let hw4 = p.hw / 4u;
    let first = (t % p.chunks) * CHUNK4;
    let end = min(first + CHUNK4, hw4);
    let base = plane * hw4;
    for (var i = base + first; i < base + end; i = i + 1u) {
        var v = fma(ap4_x[i], scale, shift);
        if (RESIDUAL) {
            v = v + ap4_res[i];
        }
        ap4_y[i] = act4(v);
    }
}

@compute @workgroup_size(64)
fn bn_apply_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.planes * p.chunks) {
        return;
    }
    let plane = t / p.chunks;
    let c = plane % p.c;
    let a = vec4<f32>(ab4_coef[c]);
    let b = vec4<f32>(ab4_coef[p.c + c]);
    let d = vec4<f32>(ab4_coef[2u * p.c + c]);
    let hw4 = p.hw / 4u;
    let first = (t % p.chunks) * CHUNK4;
    let end = min(first + CHUNK4, hw4);
    let base = plane * hw4;
    for (var i = base + first; i < base + end; i = i + 1u) {
        let dy = act_grad4(ab4_g[i], ab4_y[i]);
        ab4_dx[i] = fma(a, dy, fma(b, ab4_x[i], d));
        if (RESIDUAL) {
            ab4_dres[i] = dy;
        }
    }
}
