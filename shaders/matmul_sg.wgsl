// Batched matrix product out[b] = op(A[b]) · op(B[b]) without workgroup memory: the
// subgroup variant of matmul.wgsl (same Params, bindings, strides and batch decoding), chosen
// by src/ops/matmul.rs where the texture GEMM (gemm_tex.wgsl) does not take the product, on
// adapters whose subgroups form clusters of 8 lanes (subgroup sizes 8 to 64).
//
// The 64 invocations of a workgroup form 8 clusters of 8 consecutive lanes. A cluster owns a
// ROWS × (8·COLS) block of the output: every lane of it accumulates the same ROWS rows, and
// lane l the columns l, l + 8, .., l + 8·(COLS − 1) of the block. K advances 8 at a time:
//   - lane l loads A(row r, k0 + l) for each of the ROWS rows (one value per row per lane),
//     then gets A(r, k0 + j) for j = 0..7 from lane j of its cluster with subgroupShuffle;
//   - lane l loads B(k0 + j, its columns) for j = 0..7 (neighbouring lanes, neighbouring
//     columns: coalesced on GPUs).
// So each element of the cluster's A and B panels is loaded exactly once per cluster, by one
// lane, and shared through registers, never through workgroup memory. Loads per FMA are
// (ROWS + 8·COLS) / (8·ROWS·COLS) per lane: 1/16 with 32 × 4.
//
// Why: on lavapipe (Mesa 22.3) every storage or workgroup load costs a scalar loop over the 8
// SIMD lanes (~8 ns per lane-value, whether the address is uniform or not, workgroup memory
// no cheaper), while shuffles and FMAs are cheap; the value count loaded is the cost. On GPUs
// this is the classic register-blocked shuffle GEMM (coalesced loads, no barriers).
//
// Clusters are defined by the subgroup builtins (subgroup id, lane within the subgroup), not
// by local_invocation_index, so the kernel does not depend on how a driver maps invocations
// to lanes; it needs subgroups of a multiple of 8 lanes dividing 64, which the Rust side
// checks. Out-of-range rows, columns and K read index 0 of
// the operand and contribute zero (select, no control flow); stores are bounds-checked. No
// barriers, so over-dispatched workgroups may simply store nothing.

// Declared so that both matmul kernels take the same overrides; unused here (addresses come
// from the strides, and on lavapipe a strided per-lane load costs about what a contiguous one
// does).
override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Rows and columns per lane (the code below is written out for 32 × 4: acc0..acc31, one
// vec4 of columns each: the same kernel written with loops over function-scope arrays ran
// 3.2x slower on lavapipe, 0.32 s vs 0.10 s of CPU for 512³, as the arrays were not
// promoted to registers) and the 2 × 4 arrangement of the 8 clusters: a 64 × 128 output tile
// per workgroup (= MATMUL_SG_TILE in src/ops/matmul.rs, which has the measurements).
const ROWS: u32 = 32u;
const COLS: u32 = 4u;
const CL_N: u32 = 4u;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 128u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// A(m, k) of batch base `base`, or 0 outside the matrix (index 0 is read instead: no branch).
fn load_a(ok: bool, base: u32, m: u32, k: u32) -> f32 {
    let inside = ok && m < p.m && k < p.k;
    return select(0.0, a[select(0u, base + m * p.a_rs + k * p.a_cs, inside)], inside);
}

// Rows m .. m + 3 of A at column k.
fn load_a4(ok: bool, base: u32, m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(load_a(ok, base, m, k), load_a(ok, base, m + 1u, k),
                     load_a(ok, base, m + 2u, k), load_a(ok, base, m + 3u, k));
}

fn load_b(ok: bool, base: u32, k: u32, n: u32) -> f32 {
    let inside = ok && k < p.k && n < p.n;
    return select(0.0, b[select(0u, base + k * p.b_rs + n * p.b_cs, inside)], inside);
}

// Row m of this lane's block: columns n, n + 8, n + 16, n + 24.
fn store_row(ok: bool, base: u32, m: u32, n: u32, v: vec4<f32>) {
    if (!ok || m >= p.m) {
        return;
    }
    for (var c = 0u; c < COLS; c = c + 1u) {
        if (n + 8u * c < p.n) {
            out[base + m * p.n + n + 8u * c] = v[c];
        }
    }
}

@compute @workgroup_size(64)
fn matmul_sg(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(subgroup_id) sg_id: u32,
             @builtin(subgroup_size) sg_size: u32,
             @builtin(subgroup_invocation_id) sl: u32) {
    let wg = wg_linear(wid, nwg);
    let per_batch = p.tiles_m * p.tiles_n;
    let ok = wg < p.batch * per_batch;
    let bi = select(0u, wg / per_batch, ok);
    let t = wg % per_batch;
    // 64 / 8 clusters of 8 lanes, numbered through the subgroups.
    let cluster = sg_id * (sg_size / 8u) + sl / 8u;
    let lane = sl % 8u;
    // First lane of this lane's cluster, as a subgroup lane index.
    let first = sl & ~7u;
    let row0 = (t / p.tiles_n) * TILE_M + (cluster / CL_N) * ROWS;
    let col0 = (t % p.tiles_n) * TILE_N + (cluster % CL_N) * (8u * COLS) + lane;

    // Batch offsets of A and B (broadcast dims have stride 0).
    let bases = matmul_batch_bases(p, bi);
    let a_base = bases.x;
    let b_base = bases.y;

    // acc_r holds row r of this lane's block: its COLS = 4 columns as one vec4.
    var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0); var acc5 = vec4<f32>(0.0); var acc6 = vec4<f32>(0.0); var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0); var acc9 = vec4<f32>(0.0); var acc10 = vec4<f32>(0.0); var acc11 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0); var acc13 = vec4<f32>(0.0); var acc14 = vec4<f32>(0.0); var acc15 = vec4<f32>(0.0);
    var acc16 = vec4<f32>(0.0); var acc17 = vec4<f32>(0.0); var acc18 = vec4<f32>(0.0); var acc19 = vec4<f32>(0.0);
    var acc20 = vec4<f32>(0.0); var acc21 = vec4<f32>(0.0); var acc22 = vec4<f32>(0.0); var acc23 = vec4<f32>(0.0);
    var acc24 = vec4<f32>(0.0); var acc25 = vec4<f32>(0.0); var acc26 = vec4<f32>(0.0); var acc27 = vec4<f32>(0.0);
    var acc28 = vec4<f32>(0.0); var acc29 = vec4<f32>(0.0); var acc30 = vec4<f32>(0.0); var acc31 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 8u) {
        // This lane's A values at K index k0 + lane: av_i holds rows 4i .. 4i + 3.
        let av0 = load_a4(ok, a_base, row0 + 0u, k0 + lane);
        let av1 = load_a4(ok, a_base, row0 + 4u, k0 + lane);
        let av2 = load_a4(ok, a_base, row0 + 8u, k0 + lane);
        let av3 = load_a4(ok, a_base, row0 + 12u, k0 + lane);
        let av4 = load_a4(ok, a_base, row0 + 16u, k0 + lane);
        let av5 = load_a4(ok, a_base, row0 + 20u, k0 + lane);
        let av6 = load_a4(ok, a_base, row0 + 24u, k0 + lane);
        let av7 = load_a4(ok, a_base, row0 + 28u, k0 + lane);
        for (var j = 0u; j < 8u; j = j + 1u) {
            let k = k0 + j;
            let bv = vec4<f32>(load_b(ok, b_base, k, col0), load_b(ok, b_base, k, col0 + 8u),
                               load_b(ok, b_base, k, col0 + 16u), load_b(ok, b_base, k, col0 + 24u));
            let s0 = subgroupShuffle(av0, first | j);
            let s1 = subgroupShuffle(av1, first | j);
            let s2 = subgroupShuffle(av2, first | j);
            let s3 = subgroupShuffle(av3, first | j);
            let s4 = subgroupShuffle(av4, first | j);
            let s5 = subgroupShuffle(av5, first | j);
            let s6 = subgroupShuffle(av6, first | j);
            let s7 = subgroupShuffle(av7, first | j);
            acc0 = fma(vec4<f32>(s0.x), bv, acc0);
            acc1 = fma(vec4<f32>(s0.y), bv, acc1);
            acc2 = fma(vec4<f32>(s0.z), bv, acc2);
            acc3 = fma(vec4<f32>(s0.w), bv, acc3);
            acc4 = fma(vec4<f32>(s1.x), bv, acc4);
            acc5 = fma(vec4<f32>(s1.y), bv, acc5);
            acc6 = fma(vec4<f32>(s1.z), bv, acc6);
            acc7 = fma(vec4<f32>(s1.w), bv, acc7);
            acc8 = fma(vec4<f32>(s2.x), bv, acc8);
            acc9 = fma(vec4<f32>(s2.y), bv, acc9);
            acc10 = fma(vec4<f32>(s2.z), bv, acc10);
            acc11 = fma(vec4<f32>(s2.w), bv, acc11);
            acc12 = fma(vec4<f32>(s3.x), bv, acc12);
            acc13 = fma(vec4<f32>(s3.y), bv, acc13);
            acc14 = fma(vec4<f32>(s3.z), bv, acc14);
            acc15 = fma(vec4<f32>(s3.w), bv, acc15);
            acc16 = fma(vec4<f32>(s4.x), bv, acc16);
            acc17 = fma(vec4<f32>(s4.y), bv, acc17);
            acc18 = fma(vec4<f32>(s4.z), bv, acc18);
            acc19 = fma(vec4<f32>(s4.w), bv, acc19);
            acc20 = fma(vec4<f32>(s5.x), bv, acc20);
            acc21 = fma(vec4<f32>(s5.y), bv, acc21);
            acc22 = fma(vec4<f32>(s5.z), bv, acc22);
            acc23 = fma(vec4<f32>(s5.w), bv, acc23);
            acc24 = fma(vec4<f32>(s6.x), bv, acc24);
            acc25 = fma(vec4<f32>(s6.y), bv, acc25);
            acc26 = fma(vec4<f32>(s6.z), bv, acc26);
            acc27 = fma(vec4<f32>(s6.w), bv, acc27);
            acc28 = fma(vec4<f32>(s7.x), bv, acc28);
            acc29 = fma(vec4<f32>(s7.y), bv, acc29);
            acc30 = fma(vec4<f32>(s7.z), bv, acc30);
            acc31 = fma(vec4<f32>(s7.w), bv, acc31);
        }
    }

    let obase = bi * p.m * p.n;
    store_row(ok, obase, row0 + 0u, col0, acc0);
    store_row(ok, obase, row0 + 1u, col0, acc1);
    store_row(ok, obase, row0 + 2u, col0, acc2);
    store_row(ok, obase, row0 + 3u, col0, acc3);
    store_row(ok, obase, row0 + 4u, col0, acc4);
    store_row(ok, obase, row0 + 5u, col0, acc5);
    store_row(ok, obase, row0 + 6u, col0, acc6);
    store_row(ok, obase, row0 + 7u, col0, acc7);
    store_row(ok, obase, row0 + 8u, col0, acc8);
    store_row(ok, obase, row0 + 9u, col0, acc9);
    store_row(ok, obase, row0 + 10u, col0, acc10);
    store_row(ok, obase, row0 + 11u, col0, acc11);
    store_row(ok, obase, row0 + 12u, col0, acc12);
    store_row(ok, obase, row0 + 13u, col0, acc13);
    store_row(ok, obase, row0 + 14u, col0, acc14);
    store_row(ok, obase, row0 + 15u, col0, acc15);
    store_row(ok, obase, row0 + 16u, col0, acc16);
    store_row(ok, obase, row0 + 17u, col0, acc17);
    store_row(ok, obase, row0 + 18u, col0, acc18);
    store_row(ok, obase, row0 + 19u, col0, acc19);
    store_row(ok, obase, row0 + 20u, col0, acc20);
    store_row(ok, obase, row0 + 21u, col0, acc21);
    store_row(ok, obase, row0 + 22u, col0, acc22);
    store_row(ok, obase, row0 + 23u, col0, acc23);
    store_row(ok, obase, row0 + 24u, col0, acc24);
    store_row(ok, obase, row0 + 25u, col0, acc25);
    store_row(ok, obase, row0 + 26u, col0, acc26);
    store_row(ok, obase, row0 + 27u, col0, acc27);
    store_row(ok, obase, row0 + 28u, col0, acc28);
    store_row(ok, obase, row0 + 29u, col0, acc29);
    store_row(ok, obase, row0 + 30u, col0, acc30);
    store_row(ok, obase, row0 + 31u, col0, acc31);
}
