// 2-D max and average pooling over [N·C, H, W] planes, PyTorch semantics (implicit padding:
// −inf for max, zeros for avg), and their backward passes as gathers (one thread per input
// pixel, no atomics); max unpooling (the inverse placement of max pooling's values, for
// non-overlapping windows without padding) and its backward, both gathers too. The host sizes the output (floor or ceil mode, src/ops/pool.rs); the
// kernels only clip windows, so ceil mode's last windows, which may hang past the right
// padding, need nothing else here.
//
// COUNT_PAD (avg entries): 1 = PyTorch's count_include_pad (divide by the window clipped to
// the padded extent [−pad, len + pad)), 0 = divide by the number of in-bounds elements.
//
// One thread per output (forward) or input (backward) element; consecutive threads walk the
// innermost (W) axis, so loads and stores coalesce.
//
// Bindings are shared by all entry points (one declaration per binding number); the host
// passes a dummy second input where an entry has no u32 input:
//   max_pool2d:          a = x, b = (unused), out = y,  out_i = argmax (flat index in H×W)
//   max_pool2d_backward: a = dy, b = argmax,  out = dx
//   avg_pool2d:          a = x, b = (unused), out = y
//   avg_pool2d_backward: a = dy, b = (unused), out = dx
//   max_unpool2d:          a = x (pooled), b = indices, out = y (unpooled)
//   max_unpool2d_backward: a = dy (unpooled), b = indices, out = dx (pooled)
// For the unpool entries h, w are the unpooled plane and oh, ow the pooled one (the pooling
// input and output, as for the other entries).

override WG: u32 = 256u;
override COUNT_PAD: u32 = 1u;

// Mirrors PoolParams in src/ops/pool.rs.
struct Params {
    // Number of threads with work: outputs (forward) or inputs (backward).
    n: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_i: array<u32>;

// Window of output `o` along one axis, clamped to the input: [start, end).
fn window(o: u32, k: u32, s: u32, pad: u32, len: u32) -> vec2<u32> {
    let start = i32(o * s) - i32(pad);
    let end = min(start + i32(k), i32(len));
    return vec2<u32>(u32(max(start, 0)), u32(end));
}

// Output positions along one axis whose windows contain input position i: [lo, hi).
// o·s − pad ≤ i < o·s − pad + k  ⇔  ceil((i + pad + 1 − k)/s) ≤ o ≤ floor((i + pad)/s).
fn covering(i: u32, k: u32, s: u32, pad: u32, olen: u32) -> vec2<u32> {
    let t = i + pad + 1u;
    var lo = 0u;
    if (t > k) {
        lo = (t - k + s - 1u) / s;
    }
    let hi = min((i + pad) / s + 1u, olen);
    return vec2<u32>(lo, hi);
}

// The average-pooling divisor of window (oy, ox): with COUNT_PAD, the window clipped to the
// padded extent (PyTorch's count_include_pad); otherwise its in-bounds element count (≥ 1:
// every window starts before the input's end and ends after its start).
fn divisor(oy: u32, ox: u32) -> f32 {
    if (COUNT_PAD == 1u) {
        let ys = i32(oy * p.sh) - i32(p.ph);
        let xs = i32(ox * p.sw) - i32(p.pw);
        let ye = min(ys + i32(p.kh), i32(p.h + p.ph));
        let xe = min(xs + i32(p.kw), i32(p.w + p.pw));
        return f32((ye - ys) * (xe - xs));
    }
    let wy = window(oy, p.kh, p.sh, p.ph, p.h);
    let wx = window(ox, p.kw, p.sw, p.pw, p.w);
    return f32((wy.y - wy.x) * (wx.y - wx.x));
}

@compute @workgroup_size(WG)
fn max_pool2d(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = (i / (p.ow * p.oh)) * p.h * p.w;
    let wy = window(oy, p.kh, p.sh, p.ph, p.h);
    let wx = window(ox, p.kw, p.sw, p.pw, p.w);
    // Every window holds at least one input (padding ≤ kernel/2, and in ceil mode the last
    // window starts inside the input or the left padding), so start from its first element; strict `>` keeps the first maximum in row-major order, like PyTorch.
    var best_i = wy.x * p.w + wx.x;
    var best = a[plane + best_i];
    for (var y = wy.x; y < wy.y; y = y + 1u) {
        for (var x = wx.x; x < wx.y; x = x + 1u) {
            let k = y * p.w + x;
            let v = a[plane + k];
            if (v > best) {
                best = v;
                best_i = k;
            }
        }
    }
    out[i] = best;
    out_i[i] = best_i;
}

@compute @workgroup_size(WG)
fn max_pool2d_backward(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.w;
    let y = (i / p.w) % p.h;
    let oplane = (i / (p.w * p.h)) * p.oh * p.ow;
    let me = y * p.w + x;
    let ry = covering(y, p.kh, p.sh, p.ph, p.oh);
    let rx = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        for (var ox = rx.x; ox < rx.y; ox = ox + 1u) {
            let o = oplane + oy * p.ow + ox;
            if (b[o] == me) {
                acc = acc + a[o];
            }
        }
    }
    out[i] = acc;
}

// max_pool2d_backward4's output: 4 consecutive pixels of a row (planes with W % 4 = 0).
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

// max_pool2d_backward for 4 pixels of a row per thread (p.n counts vec4s): the windows that
// cover any of the 4 are read once (on lavapipe every storage load is a scalar loop over the
// SIMD lanes) and each pixel adds the gradients whose argmax is itself, in the scalar
// entry's (oy, ox) order, so the sums are the same.
@compute @workgroup_size(WG)
fn max_pool2d_backward4(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let w4 = p.w / 4u;
    let x0 = 4u * (i % w4);
    let y = (i / w4) % p.h;
    let oplane = (i / (w4 * p.h)) * p.oh * p.ow;
    let me = vec4<u32>(y * p.w + x0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ry = covering(y, p.kh, p.sh, p.ph, p.oh);
    let rx0 = covering(x0, p.kw, p.sw, p.pw, p.ow);
    let rx3 = covering(x0 + 3u, p.kw, p.sw, p.pw, p.ow);
    var acc = vec4<f32>(0.0);
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        for (var ox = rx0.x; ox < rx3.y; ox = ox + 1u) {
            let o = oplane + oy * p.ow + ox;
            acc = acc + select(vec4<f32>(0.0), vec4<f32>(a[o]), vec4<u32>(b[o]) == me);
        }
    }
    out4[i] = acc;
}

@compute @workgroup_size(WG)
fn avg_pool2d(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = (i / (p.ow * p.oh)) * p.h * p.w;
    let wy = window(oy, p.kh, p.sh, p.ph, p.h);
    let wx = window(ox, p.kw, p.sw, p.pw, p.w);
    var acc = 0.0;
    for (var y = wy.x; y < wy.y; y = y + 1u) {
        for (var x = wx.x; x < wx.y; x = x + 1u) {
            acc = acc + a[plane + y * p.w + x];
        }
    }
    out[i] = acc / divisor(oy, ox);
}

@compute @workgroup_size(WG)
fn avg_pool2d_backward(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.w;
    let y = (i / p.w) % p.h;
    let oplane = (i / (p.w * p.h)) * p.oh * p.ow;
    let ry = covering(y, p.kh, p.sh, p.ph, p.oh);
    let rx = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        for (var ox = rx.x; ox < rx.y; ox = ox + 1u) {
            acc = acc + a[oplane + oy * p.ow + ox] / divisor(oy, ox);
        }
    }
    out[i] = acc;
}

// Max unpooling, one thread per OUTPUT (unpooled) element, for kernel = stride and no
// padding (the host checks both): pixel (y, x) lies in window (y / sh, x / sw) if that window
// exists (the last rows and columns of a floor-mode map lie in none); the pixel takes the
// window's value if the window's index names it, else 0. A gather: it zeroes and fills in one
// pass, without atomics or races. Only the pixel's own window is read, so an index outside
// its window (including ≥ h·w) is never followed: its value is dropped.
@compute @workgroup_size(WG)
fn max_unpool2d(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = i % p.w;
    let y = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let oy = y / p.sh;
    let ox = x / p.sw;
    var v = 0.0;
    if (oy < p.oh && ox < p.ow) {
        let o = plane * p.oh * p.ow + oy * p.ow + ox;
        if (b[o] == y * p.w + x) {
            v = a[o];
        }
    }
    out[i] = v;
}

// Backward of max unpooling, one thread per INPUT (pooled) element: dx[o] = dy[idx[o]] within
// the plane. An index outside its own window (which covers ≥ h·w too) gets 0, matching the
// forward, which dropped its value; no read goes out of bounds.
@compute @workgroup_size(WG)
fn max_unpool2d_backward(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);
    let k = b[i];
    var g = 0.0;
    if (k < p.h * p.w && (k / p.w) / p.sh == oy && (k % p.w) / p.sw == ox) {
        g = a[plane * p.h * p.w + k];
    }
    out[i] = g;
}
