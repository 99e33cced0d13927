// Strided copy: out[offset1 + Σ c_d·stride1_d] = in[offset0 + Σ c_d·stride0_d] over a shape.
// Covers permute, broadcast, slice (narrow), concat and pad. Bits are copied as u32, so it
// serves f32 and u32 tensors alike (no float canonicalisation).

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Strided;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn strided_copy(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i < p.n) {
        dst[strided_index(p, 1u, i)] = src[strided_index(p, 0u, i)];
    }
}
