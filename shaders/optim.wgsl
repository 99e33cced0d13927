// Optimiser updates, in place (src/optim/). Every update kernel reads the gradient scale
// s = scale[0] (the clip factor min(1, max_norm / (norm + 1e-6)), or 1 without clipping)
// and uses g = s · grad. Formulas (PyTorch's, dampening 0):
//
//   sgd:       d = g + wd·p; buf = d (first step) or momentum·buf + d;
//              d = d + momentum·buf (Nesterov) or buf; p = p − lr·d
//   sgd_plain: d = g + wd·p; p = p − lr·d                     (momentum 0: no buffer)
//   adamw:     p = p·decay; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
//              p = p − step_size · m / (√v · rsqrt_bc2 + eps)
//              with decay = 1 − lr·wd, step_size = lr / (1 − β1^t), rsqrt_bc2 = 1/√(1 − β2^t)
//              computed on the host in f64.
//   clip_factor: norm = √grad[0]; factor = min(1, max_norm / (norm + eps)).

override WG: u32 = 256u;

// Mirrors OptimParams in src/optim/kernels.rs: one parameter block for every entry point,
// each reading its own fields. flags: bit 0 first step, bit 1 Nesterov.
struct Params {
    n: u32,
    flags: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    step_size: f32,
    rsqrt_bc2: f32,
    max_norm: f32,
}

@group(0) @binding(0) var<uniform> q: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> state0: array<f32>;
@group(0) @binding(5) var<storage, read_write> state1: array<f32>;

// clip_factor's bindings: the sum of squares in `grad`, the norm and the factor out.
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> factor_out: array<f32>;

// The vec4 entries' bindings (parameters of a multiple of 4 values, n counting vec4s): one
// 16-byte load or store per 4 values, where lavapipe runs each storage access as a scalar
// loop over its SIMD lanes.
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state04: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> state14: array<vec4<f32>>;

// The updates on 4 values at a time (the scalar entries use lane x); g is the scaled gradient.
// sgd returns the new parameter and buffer.
fn sgd_update(p: vec4<f32>, g: vec4<f32>, buf0: vec4<f32>) -> mat2x4<f32> {
    let d = g + q.weight_decay * p;
    // The first step ignores the (uninitialised) buffer: select, not arithmetic.
    let buf = select(q.momentum * buf0 + d, d, (q.flags & 1u) != 0u);
    let step = select(buf, d + q.momentum * buf, (q.flags & 2u) != 0u);
    return mat2x4<f32>(p - q.lr * step, buf);
}

fn sgd_plain_update(p: vec4<f32>, g: vec4<f32>) -> vec4<f32> {
    return p - q.lr * (g + q.weight_decay * p);
}

// The new parameter, m and v.
fn adamw_update(p: vec4<f32>, g: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>) -> mat3x4<f32> {
    let m = q.beta1 * m0 + (1.0 - q.beta1) * g;
    let v = q.beta2 * v0 + (1.0 - q.beta2) * g * g;
    let denom = sqrt(max(v, vec4<f32>(0.0))) * q.rsqrt_bc2 + q.eps;
    return mat3x4<f32>(p * q.decay - q.step_size * m / denom, m, v);
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        let r = sgd_update(vec4<f32>(param[i]), vec4<f32>(scale[0] * grad[i]),
                           vec4<f32>(state0[i]));
        state0[i] = r[1].x;
        param[i] = r[0].x;
    }
}

@compute @workgroup_size(WG)
fn sgd4(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        let r = sgd_update(param4[i], scale[0] * grad4[i], state04[i]);
        state04[i] = r[1];
        param4[i] = r[0];
    }
}

@compute @workgroup_size(WG)
fn sgd_plain(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        param[i] = sgd_plain_update(vec4<f32>(param[i]), vec4<f32>(scale[0] * grad[i])).x;
    }
}

@compute @workgroup_size(WG)
fn sgd_plain4(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        param4[i] = sgd_plain_update(param4[i], scale[0] * grad4[i]);
    }
}

@compute @workgroup_size(WG)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        let r = adamw_update(vec4<f32>(param[i]), vec4<f32>(scale[0] * grad[i]),
                             vec4<f32>(state0[i]), vec4<f32>(state1[i]));
        state0[i] = r[1].x;
        state1[i] = r[2].x;
        param[i] = r[0].x;
    }
}

@compute @workgroup_size(WG)
fn adamw4(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < q.n) {
        let r = adamw_update(param4[i], scale[0] * grad4[i], state04[i], state14[i]);
        state04[i] = r[1];
        state14[i] = r[2];
        param4[i] = r[0];
    }
}

@compute @workgroup_size(1)
fn clip_factor() {
    let norm = sqrt(max(grad[0], 0.0));
    norm_out[0] = norm;
    factor_out[0] = min(1.0, q.max_norm / (norm + q.eps));
}
