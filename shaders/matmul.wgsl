// Batched matrix product out[b] = op(A[b]) · op(B[b]), out contiguous [batch, M, N].
//
// A's element (m, k) of batch b lives at a[a_off(b) + m * a_rs + k * a_cs], B's (k, n) at
// b[b_off(b) + k * b_rs + n * b_cs]: transposed operands are just other strides, so the
// backward passes need no transpose copies. Batch offsets come from the broadcast batch
// shape and per-operand batch strides (0 on broadcast dims), mirroring MatmulParams in
// src/ops/matmul.rs.
//
// Tiling: one workgroup of 8 × 8 invocations per 64 × 64 output tile; each invocation
// accumulates an 8 × 8 register block (rows ty*8.., cols tx*8..) in sixteen vec4s. K advances
// in steps of 16, staging a 16 × 64 slab of A and of B in workgroup memory as vec4s along M
// (resp. N), so the inner loop does four vec4 loads per 64 FMAs. TRANS_A / TRANS_B only pick
// which global load mapping is coalesced (consecutive invocations walk the operand's
// contiguous axis); the addresses themselves always come from the strides. One dispatch
// covers the whole batch: the linear workgroup index decodes to (batch, tile row, tile col).
// Every load and store is bounds-checked, so any M, N, K (and over-dispatch) is handled; no
// early return precedes a barrier (the K loop bound is uniform).

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Output tile edge (= MATMUL_TILE in src/ops/matmul.rs) and K step. Slabs are 16 × 64:
// 256 vec4 each, 8 KiB of workgroup memory for both.
const TILE: u32 = 64u;
const BK: u32 = 16u;
// vec4 slots along a slab's 64-wide edge (and along its 16-deep K edge).
const SLOTS: u32 = 16u;
// 8 × 8 invocations of 8 × 8 outputs. On lavapipe (Mesa 22.3) every workgroup-memory load
// costs a per-invocation loop per component while FMAs are nearly free, so what counts is
// FMAs per loaded component: 4 here (16 components per 64 FMAs) against 2 for 16 × 16
// invocations of 4 × 4 (measured 512³: 356 ms vs 660 ms of CPU time) and 0.5 for plain
// 16 × 16 shared-memory tiles. On GPUs 64 threads × 64 accumulators is the classic SGEMM
// register block.
const LANES: u32 = 8u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// As[kk * SLOTS + i] holds A rows 4i..4i+3 at K offset kk of the current slab; Bs likewise
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

@compute @workgroup_size(WG)
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
    let bases = matmul_batch_bases(p, bi);
    let a_base = bases.x;
    let b_base = bases.y;

    let tx = lid % LANES;
    let ty = lid / LANES;
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        // Stage the slabs: 256 vec4 slots each, four per invocation, the operand's
        // contiguous axis on consecutive invocations.
        for (var r = 0u; r < SLOTS * SLOTS / WG; r = r + 1u) {
            let s = lid + r * WG;
            var a_kk = s % SLOTS;
            var a_m4 = s / SLOTS;
            if (TRANS_A) {
                a_kk = s / SLOTS;
                a_m4 = s % SLOTS;
            }
            let am = row0 + a_m4 * 4u;
            let ak = k0 + a_kk;
            As[a_kk * SLOTS + a_m4] = vec4<f32>(
                load_a(ok, a_base, am, ak),
                load_a(ok, a_base, am + 1u, ak),
                load_a(ok, a_base, am + 2u, ak),
                load_a(ok, a_base, am + 3u, ak));
            var b_kk = s / SLOTS;
            var b_n4 = s % SLOTS;
            if (TRANS_B) {
                b_kk = s % SLOTS;
                b_n4 = s / SLOTS;
            }
            let bn = col0 + b_n4 * 4u;
            let bk = k0 + b_kk;
            Bs[b_kk * SLOTS + b_n4] = vec4<f32>(
                load_b(ok, b_base, bk, bn),
                load_b(ok, b_base, bk, bn + 1u),
                load_b(ok, b_base, bk, bn + 2u),
                load_b(ok, b_base, bk, bn + 3u));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a0 = As[kk * SLOTS + ty * 2u];
            let a1 = As[kk * SLOTS + ty * 2u + 1u];
            let b0 = Bs[kk * SLOTS + tx * 2u];
            let b1 = Bs[kk * SLOTS + tx * 2u + 1u];
            c00 = fma(vec4<f32>(a0.x), b0, c00); c01 = fma(vec4<f32>(a0.x), b1, c01);
            c10 = fma(vec4<f32>(a0.y), b0, c10); c11 = fma(vec4<f32>(a0.y), b1, c11);
            c20 = fma(vec4<f32>(a0.z), b0, c20); c21 = fma(vec4<f32>(a0.z), b1, c21);
            c30 = fma(vec4<f32>(a0.w), b0, c30); c31 = fma(vec4<f32>(a0.w), b1, c31);
            c40 = fma(vec4<f32>(a1.x), b0, c40); c41 = fma(vec4<f32>(a1.x), b1, c41);
            c50 = fma(vec4<f32>(a1.y), b0, c50); c51 = fma(vec4<f32>(a1.y), b1, c51);
            c60 = fma(vec4<f32>(a1.z), b0, c60); c61 = fma(vec4<f32>(a1.z), b1, c61);
            c70 = fma(vec4<f32>(a1.w), b0, c70); c71 = fma(vec4<f32>(a1.w), b1, c71);
        }
        workgroupBarrier();
    }

    let obase = bi * p.m * p.n;
    let r = row0 + ty * 8u;
    let c = col0 + tx * 8u;
    store_row(ok, obase, r, c, c00); store_row(ok, obase, r, c + 4u, c01);
    store_row(ok, obase, r + 1u, c, c10); store_row(ok, obase, r + 1u, c + 4u, c11);
    store_row(ok, obase, r + 2u, c, c20); store_row(ok, obase, r + 2u, c + 4u, c21);
    store_row(ok, obase, r + 3u, c, c30); store_row(ok, obase, r + 3u, c + 4u, c31);
    store_row(ok, obase, r + 4u, c, c40); store_row(ok, obase, r + 4u, c + 4u, c41);
    store_row(ok, obase, r + 5u, c, c50); store_row(ok, obase, r + 5u, c + 4u, c51);
    store_row(ok, obase, r + 6u, c, c60); store_row(ok, obase, r + 6u, c + 4u, c61);
    store_row(ok, obase, r + 7u, c, c70); store_row(ok, obase, r + 7u, c + 4u, c71);
}
