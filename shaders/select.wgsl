// `where(cond, a, b)`: a where cond ≠ 0, else b; all three broadcast to the output shape.

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Strided;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn where_select(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < p.n) {
        let c = cond[strided_index(p, 0u, i)];
        out[i] = select(b[strided_index(p, 2u, i)], a[strided_index(p, 1u, i)], c != 0.0);
    }
}
