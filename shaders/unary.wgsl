// Elementwise unary ops. OP selects the function (table in src/ops/unary.rs).

override OP: u32 = 0u;
override WG: u32 = 256u;

struct Params {
    n: u32,
    a: f32,
    b: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const FRAC_1_SQRT_2: f32 = 0.70710678118654752;
const FRAC_1_SQRT_2PI: f32 = 0.39894228040143268;

// erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7).
fn erf1(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - poly * exp(-a * a));
}

fn sigmoid1(v: f32) -> f32 {
    // Stable on both sides: exp of a non-positive argument only.
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

fn apply(v: f32) -> f32 {
    switch OP {
        case 0u: { return -v; }
        case 1u: { return min(exp(min(v, EXP_MAX_ARG)), F32_MAX); }
        case 2u: { return log(max(v, F32_MIN_POS)); }
        case 3u: { return sqrt(max(v, 0.0)); }
        case 4u: { return max(v, 0.0); }
        case 5u: { return sigmoid1(v); }
        // tanh(15) rounds to 1 in f32; clamping avoids inf/inf in naive implementations.
        case 6u: { return tanh(clamp(v, -15.0, 15.0)); }
        case 7u: { return abs(v); }
        case 8u: { return sign(v); }
        case 9u: { return v * v; }
        case 10u: { return 1.0 / v; }
        case 11u: { return min(max(v, p.a), p.b); }
        case 12u: { return v + p.a; }
        case 13u: { return v * p.a; }
        case 14u: { return min(pow(max(v, F32_MIN_POS), p.a), F32_MAX); }
        case 15u: { return select(0.0, 1.0, v >= p.a && v <= p.b); }
        case 16u: { return select(0.0, 1.0, v != 0.0); }
        case 17u: { return 0.5 * v * (1.0 + erf1(v * FRAC_1_SQRT_2)); }
        case 18u: {
            return 0.5 * (1.0 + erf1(v * FRAC_1_SQRT_2)) + v * exp(-0.5 * v * v) * FRAC_1_SQRT_2PI;
        }
        default: { return v; }
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < p.n) {
        y[i] = apply(x[i]);
    }
}
