// Bilinear resize of [N·C, H, W] planes, exactly PyTorch's F.interpolate(mode='bilinear'),
// and its backward pass as a gather (one thread per input pixel, no atomics).
//
// Per axis, output position d reads the source coordinate
//   ALIGN_CORNERS = 0: src = max((d + 0.5)·scale − 0.5, 0), scale = in/out
//   ALIGN_CORNERS = 1: src = d·scale, scale = (in − 1)/(out − 1) (0 when out = 1)
// and the taps i0 = ⌊src⌋, i1 = min(i0 + 1, in − 1) with weights 1 − λ and λ = src − i0.
// The backward kernel recomputes exactly these taps (same functions, same f32 arithmetic)
// for every output row/column that can touch its pixel, so the two passes agree bit-wise
// on which outputs read which inputs.
//
// One thread per output (forward) or input (backward) element; consecutive threads walk the
// innermost (W) axis, so loads and stores coalesce.
//   interpolate_bilinear:          a = x,  out = y
//   interpolate_bilinear_backward: a = dy, out = dx
// The backward of an upsampling is separable and runs in two passes (the host picks them
// when the output has at least twice the input's rows): the transpose along W, then along H.
// Each thread of a pass reads the few outputs of one axis that can touch it instead of the
// product of both axes' candidates (about a third of the loads and far fewer tap
// evaluations at 4× upsampling).
//   interpolate_bilinear4: the forward for rows of a multiple of 4 outputs when W is
//     upsampled (scale_w ≤ 1): one thread per 4 consecutive outputs of a row, whose taps lie
//     within 5 consecutive input columns (taps advance by at most one column per output),
//     so it loads those 5 columns of its 2 input rows (10 loads instead of 16) and stores
//     one vec4.
//   interpolate_bilinear_backward_w: a = dy [planes, oh, ow], out = t [planes, oh, iw]
//   interpolate_bilinear_backward_h: a = t [planes, oh, iw],  out = dx [planes, ih, iw]

override WG: u32 = 256u;
override ALIGN_CORNERS: u32 = 0u;

// Mirrors ResizeParams in src/ops/resize.rs.
struct Params {
    // Number of threads with work: outputs (forward) or inputs (backward).
    n: u32,
    ih: u32,
    iw: u32,
    oh: u32,
    ow: u32,
    scale_h: f32,
    scale_w: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// interpolate_bilinear4: the output as vec4 (4 consecutive outputs of a row).
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;
struct Taps {
    i0: u32,
    i1: u32,
    lam: f32,
}

// Source taps of output position d along an axis of `len` inputs.
fn taps(d: u32, scale: f32, len: u32) -> Taps {
    var src: f32;
    if (ALIGN_CORNERS == 1u) {
        src = f32(d) * scale;
    } else {
        src = max((f32(d) + 0.5) * scale - 0.5, 0.0);
    }
    let i0 = min(u32(src), len - 1u);
    return Taps(i0, min(i0 + 1u, len - 1u), src - f32(i0));
}

// Weight of input i in the interpolation of taps t (both taps may be i at the last input).
fn weight(t: Taps, i: u32) -> f32 {
    return select(0.0, 1.0 - t.lam, t.i0 == i) + select(0.0, t.lam, t.i1 == i);
}

// Output positions [lo, hi) along an axis of `olen` outputs whose taps may touch input i:
// those with src ∈ [i − 1, i + 1), widened by one on each side against f32 rounding (the
// caller re-checks each candidate with `weight`).
fn candidates(i: u32, scale: f32, olen: u32) -> vec2<u32> {
    if (scale <= 0.0) {
        // align_corners with a single output: it reads input 0.
        return vec2<u32>(0u, olen);
    }
    var off = 0.0;
    if (ALIGN_CORNERS == 0u) {
        off = 0.5 * scale - 0.5;
    }
    let lo = floor((f32(i) - 1.0 - off) / scale) - 1.0;
    let hi = floor((f32(i) + 1.0 - off) / scale) + 2.0;
    let top = f32(olen);
    return vec2<u32>(u32(clamp(lo, 0.0, top)), u32(clamp(hi, 0.0, top)));
}

@compute @workgroup_size(WG)
fn interpolate_bilinear(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let base = (i / (p.ow * p.oh)) * p.ih * p.iw;
    let ty = taps(oy, p.scale_h, p.ih);
    let tx = taps(ox, p.scale_w, p.iw);
    let r0 = base + ty.i0 * p.iw;
    let r1 = base + ty.i1 * p.iw;
    let top = (1.0 - tx.lam) * a[r0 + tx.i0] + tx.lam * a[r0 + tx.i1];
    let bottom = (1.0 - tx.lam) * a[r1 + tx.i0] + tx.lam * a[r1 + tx.i1];
    out[i] = (1.0 - ty.lam) * top + ty.lam * bottom;
}

// v[k] of the 5 values (v0.x, v0.y, v0.z, v0.w, v4) for k in 0..4.
fn pick5(v0: vec4<f32>, v4: f32, k: u32) -> f32 {
    return select(v0[min(k, 3u)], v4, k == 4u);
}

// The 5 input values of row r at columns b .. b+4 (clamped to the row).
fn row5(r: u32, b: u32) -> array<f32, 5> {
    let last = p.iw - 1u;
    return array<f32, 5>(a[r + min(b, last)], a[r + min(b + 1u, last)],
                         a[r + min(b + 2u, last)], a[r + min(b + 3u, last)],
                         a[r + min(b + 4u, last)]);
}

@compute @workgroup_size(WG)
fn interpolate_bilinear4(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    // p.n counts vec4 outputs here.
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let ow4 = p.ow / 4u;
    let ox0 = 4u * (i % ow4);
    let oy = (i / ow4) % p.oh;
    let base = (i / (ow4 * p.oh)) * p.ih * p.iw;
    let ty = taps(oy, p.scale_h, p.ih);
    let b = taps(ox0, p.scale_w, p.iw).i0;
    let top = row5(base + ty.i0 * p.iw, b);
    let bottom = row5(base + ty.i1 * p.iw, b);
    // Each row blended vertically first: one value per column.
    var col: array<f32, 5>;
    for (var k = 0u; k < 5u; k = k + 1u) {
        col[k] = (1.0 - ty.lam) * top[k] + ty.lam * bottom[k];
    }
    let c0 = vec4<f32>(col[0], col[1], col[2], col[3]);
    var r = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        let tx = taps(ox0 + j, p.scale_w, p.iw);
        r[j] = (1.0 - tx.lam) * pick5(c0, col[4], tx.i0 - b) + tx.lam * pick5(c0, col[4], tx.i1 - b);
    }
    out4[i] = r;
}

@compute @workgroup_size(WG)
fn interpolate_bilinear_backward(@builtin(workgroup_id) wid: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.iw;
    let y = (i / p.iw) % p.ih;
    let oplane = (i / (p.iw * p.ih)) * p.oh * p.ow;
    let ry = candidates(y, p.scale_h, p.oh);
    let rx = candidates(x, p.scale_w, p.ow);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        let wy = weight(taps(oy, p.scale_h, p.ih), y);
        if (wy != 0.0) {
            var row = 0.0;
            for (var ox = rx.x; ox < rx.y; ox = ox + 1u) {
                let wx = weight(taps(ox, p.scale_w, p.iw), x);
                row = row + wx * a[oplane + oy * p.ow + ox];
            }
            acc = acc + wy * row;
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(WG)
fn interpolate_bilinear_backward_w(@builtin(workgroup_id) wid: vec3<u32>,
                                   @builtin(num_workgroups) nwg: vec3<u32>,
                                   @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.iw;
    let row = (i / p.iw) * p.ow;
    let rx = candidates(x, p.scale_w, p.ow);
    var acc = 0.0;
    for (var ox = rx.x; ox < rx.y; ox = ox + 1u) {
        let wx = weight(taps(ox, p.scale_w, p.iw), x);
        if (wx != 0.0) {
            acc = acc + wx * a[row + ox];
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(WG)
fn interpolate_bilinear_backward_h(@builtin(workgroup_id) wid: vec3<u32>,
                                   @builtin(num_workgroups) nwg: vec3<u32>,
                                   @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.iw;
    let y = (i / p.iw) % p.ih;
    let base = (i / (p.iw * p.ih)) * p.oh * p.iw + x;
    let ry = candidates(y, p.scale_h, p.oh);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        let wy = weight(taps(oy, p.scale_h, p.ih), y);
        if (wy != 0.0) {
            acc = acc + wy * a[base + oy * p.iw];
        }
    }
    out[i] = acc;
}
