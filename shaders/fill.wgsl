// Fill: y[i] = value for every element (Tensor::full/zeros/ones on a GPU without an upload).
// Mirrors FillParams in src/ops/fill.rs.

override WG: u32 = 256u;

struct Params {
    n: u32,
    value: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < p.n) {
        y[i] = p.value;
    }
}
