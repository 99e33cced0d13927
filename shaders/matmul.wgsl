// Batched matrix product out[b] = op(A[b]) · op(B[b]), out contiguous [batch, M, N].
//
// A's element (m, k) of batch b lives at a[a_off(b) + m * a_rs + k * a_cs], B's (k, n) at
// b[b_off(b) + k * b_rs + n * b_cs]: transposed operands are just other strides, so the
// backward passes need no transpose copies. Batch offsets come from the broadcast batch
// shape and per-operand batch strides (0 on broadcast dims), mirroring MatmulParams in
// src/ops/matmul.rs.
//
// Tiling: one workgroup of 16 × 16 invocations per 64 × 64 output tile; each invocation
// accumulates a 4 × 4 register block (rows ty*4.., cols tx*4..). K advances in steps of 16,
// staging a 16 × 64 slab of A and of B in workgroup memory as vec4s along M (resp. N), so the
// inner loop does two vec4 loads per 16 FMAs. TRANS_A / TRANS_B only pick which global load
// mapping is coalesced (consecutive invocations walk the operand's contiguous axis); the
// addresses themselves always come from the strides. One dispatch covers the whole batch:
// the linear workgroup index decodes to (batch, tile row, tile col). Every load and store is
// bounds-checked, so any M, N, K (and over-dispatch) is handled; no early return precedes a
// barrier (the K loop bound is uniform).

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// 64 × 64 tile, 16 × 16 invocations, 4 × 4 per invocation, K step 16. The register block is
// what makes lavapipe fast (≈ 5× over plain 16 × 16 shared-memory tiles); the sizes keep
// both slabs at 8 KiB of workgroup memory (2 × 16 × 16 vec4) and make each invocation load
// exactly one vec4 of each slab per K step.
const TILE: u32 = 64u;
const BK: u32 = 16u;
const LANES: u32 = 16u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    tiles_m: u32,
    tiles_n: u32,
    batch_rank: u32,
    _p0: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    // Batch shape, then A's and B's strides over it (8 dims each).
    bshape: array<vec4<u32>, 2>,
    a_bs: array<vec4<u32>, 2>,
    b_bs: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// As[kk * 16 + i] holds A rows 4i..4i+3 at K offset kk of the current slab; Bs likewise
// holds B columns 4j..4j+3.
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

fn load_a(ok: bool, base: u32, m: u32, k: u32) -> f32 {
    if (ok && m < p.m && k < p.k) {
        return a[base + m * p.a_rs + k * p.a_cs];
    }
    return 0.0;
}

fn load_b(ok: bool, base: u32, k: u32, n: u32) -> f32 {
    if (ok && k < p.k && n < p.n) {
        return b[base + k * p.b_rs + n * p.b_cs];
    }
    return 0.0;
}

fn store_row(ok: bool, base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (!ok || row >= p.m) {
        return;
    }
    let o = base + row * p.n;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < p.n) {
            out[o + col + j] = v[j];
        }
    }
}

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let wg = wg_linear(wid, nwg);
    let per_batch = p.tiles_m * p.tiles_n;
    let ok = wg < p.batch * per_batch;
    let bi = select(0u, wg / per_batch, ok);
    let t = wg % per_batch;
    let row0 = (t / p.tiles_n) * TILE;
    let col0 = (t % p.tiles_n) * TILE;

    // Batch offsets of A and B (broadcast dims have stride 0).
    var a_base = 0u;
    var b_base = 0u;
    var rem = bi;
    var d = p.batch_rank;
    while (d > 0u) {
        d = d - 1u;
        let c = rem % p.bshape[d / 4u][d % 4u];
        rem = rem / p.bshape[d / 4u][d % 4u];
        a_base = a_base + c * p.a_bs[d / 4u][d % 4u];
        b_base = b_base + c * p.b_bs[d / 4u][d % 4u];
    }

    // Slab load mapping: (kk, group of 4 rows/cols), contiguous axis on consecutive lids.
    var a_kk = lid % LANES;
    var a_m4 = lid / LANES;
    if (TRANS_A) {
        a_kk = lid / LANES;
        a_m4 = lid % LANES;
    }
    var b_kk = lid / LANES;
    var b_n4 = lid % LANES;
    if (TRANS_B) {
        b_kk = lid % LANES;
        b_n4 = lid / LANES;
    }
    let am = row0 + a_m4 * 4u;
    let bn = col0 + b_n4 * 4u;

    let tx = lid % LANES;
    let ty = lid / LANES;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        let ak = k0 + a_kk;
        As[a_kk * LANES + a_m4] = vec4<f32>(
            load_a(ok, a_base, am, ak),
            load_a(ok, a_base, am + 1u, ak),
            load_a(ok, a_base, am + 2u, ak),
            load_a(ok, a_base, am + 3u, ak));
        let bk = k0 + b_kk;
        Bs[b_kk * LANES + b_n4] = vec4<f32>(
            load_b(ok, b_base, bk, bn),
            load_b(ok, b_base, bk, bn + 1u),
            load_b(ok, b_base, bk, bn + 2u),
            load_b(ok, b_base, bk, bn + 3u));
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let av = As[kk * LANES + ty];
            let bv = Bs[kk * LANES + tx];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    let obase = bi * p.m * p.n;
    let r = row0 + ty * 4u;
    let c = col0 + tx * 4u;
    store_row(ok, obase, r, c, acc0);
    store_row(ok, obase, r + 1u, c, acc1);
    store_row(ok, obase, r + 2u, c, acc2);
    store_row(ok, obase, r + 3u, c, acc3);
}
