// Broadcasting binary ops and `where`. Operands are read through per-operand strides
// (0 on broadcast dims); FLAT = 1 is the fast path when every operand has the output's shape.

override OP: u32 = 0u;
override WG: u32 = 256u;
override FLAT: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Strided;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn apply(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return max(x, y); }
        case 5u: { return min(x, y); }
        case 6u: { return select(0.0, 1.0, x == y); }
        case 7u: { return select(0.0, 1.0, x != y); }
        case 8u: { return select(0.0, 1.0, x < y); }
        case 9u: { return select(0.0, 1.0, x <= y); }
        case 10u: { return select(0.0, 1.0, x > y); }
        case 11u: { return select(0.0, 1.0, x >= y); }
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    if (FLAT == 1u) {
        out[i] = apply(a[i], b[i]);
    } else {
        out[i] = apply(a[strided_index(p, 0u, i)], b[strided_index(p, 1u, i)]);
    }
}
