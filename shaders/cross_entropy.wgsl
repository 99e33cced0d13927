// Fused softmax cross-entropy over logits viewed as [n, c, inner] (inner = H·W, or 1 for
// [N, C] logits) with u32 labels [n, inner]. A pixel v = (n, i) is valid when its label y
// is < c and ≠ ignore_index; an invalid pixel has weight 0 and gets gradient 0.
//
// ce_forward:  per pixel v (P pixels), stats[v] = w_y · (lse_v − x_{v,y}) and
//              stats[P + v] = w_y (both 0 when invalid). The host sums the two halves with
//              the reduction kernels into sums = [Σ w·ℓ, Σ w].
// ce_finish:   loss = Σ w·ℓ / Σ w, or 0 when Σ w = 0 (no valid pixel): never NaN.
// ce_backward: dx[v, c] = g · w_y · (softmax(x_v)_c − δ_{c,y}) / Σ w, with g and the sums
//              read from device buffers (no readback); 0 for invalid pixels or if Σ w = 0.
//
// One invocation per pixel loops over c; consecutive invocations touch consecutive
// addresses at every step when inner > 1 (the NCHW segmentation case).
//
// All entry points share one binding layout (a binding has one declaration per module):
// inputs x, labels, weights, g, sums, then one output. An entry point that does not use an
// input gets a dummy buffer there (see src/ops/cross_entropy.rs); that keeps every entry at
// 6 storage bindings. WEIGHTED: 1 reads per-class weights, 0 uses w = 1.

override WEIGHTED: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    pixels: u32,
    c: u32,
    inner: u32,
    ignore_index: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn pixel_base(v: u32) -> u32 {
    return (v / p.inner) * p.c * p.inner + v % p.inner;
}

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

// Online max and sum of exponentials over the column at `base`: (max, sum). Every exp()
// argument is ≤ 0 (the sum is rescaled when the max grows) and clamped at −EXP_MAX_ARG;
// the sum is ≥ 1 (the max term contributes exp(0)).
fn column_max_sum(base: u32) -> vec2<f32> {
    var m = -F32_MAX;
    var s = 0.0;
    for (var k = 0u; k < p.c; k = k + 1u) {
        let v = x[base + k * p.inner];
        if (v > m) {
            s = s * exp(max(m - v, -EXP_MAX_ARG)) + 1.0;
            m = v;
        } else {
            s = s + exp(max(v - m, -EXP_MAX_ARG));
        }
    }
    return vec2<f32>(m, max(s, 1.0));
}

@compute @workgroup_size(WG)
fn ce_forward(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let v = wg_linear(wid, nwg) * WG + lid;
    if (v >= p.pixels) {
        return;
    }
    let y = labels[v];
    let w = label_weight(y);
    var loss = 0.0;
    if (w != 0.0) {
        let base = pixel_base(v);
        let ms = column_max_sum(base);
        // −log softmax_y = (m + log s) − x_y, computed as (m − x_y) + log s: the large
        // terms cancel exactly first.
        loss = w * ((ms.x - x[base + y * p.inner]) + log(ms.y));
    }
    out[v] = loss;
    out[p.pixels + v] = w;
}

// Division by Σw that is 0 (not NaN) when no pixel is valid.
fn safe_div(a: f32, b: f32) -> f32 {
    return select(0.0, a / select(1.0, b, b != 0.0), b != 0.0);
}

@compute @workgroup_size(1)
fn ce_finish() {
    out[0] = safe_div(sums[0], sums[1]);
}

@compute @workgroup_size(WG)
fn ce_backward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let v = wg_linear(wid, nwg) * WG + lid;
    if (v >= p.pixels) {
        return;
    }
    let base = pixel_base(v);
    let y = labels[v];
    // g · w_y / Σw; 0 for an invalid pixel (w_y = 0) or when Σw = 0.
    let scale = safe_div(g[0] * label_weight(y), sums[1]);
    if (scale == 0.0) {
        for (var k = 0u; k < p.c; k = k + 1u) {
            out[base + k * p.inner] = 0.0;
        }
        return;
    }
    let ms = column_max_sum(base);
    let inv_s = 1.0 / ms.y;
    for (var k = 0u; k < p.c; k = k + 1u) {
        let i = base + k * p.inner;
        let prob = exp(max(x[i] - ms.x, -EXP_MAX_ARG)) * inv_s;
        out[i] = scale * (prob - select(0.0, 1.0, k == y));
    }
}
