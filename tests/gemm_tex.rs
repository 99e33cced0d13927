//! The texture GEMM (`shaders/gemm_tex.wgsl`, `src/ops/gemm.rs`, `src/ops/conv/tex.rs`):
//! every operand layout (buffer → texture copies and pack kernels, k-packed and 4-packed),
//! K tails, tile remainders, broadcast batches, and the three conv GEMMs (forward with
//! stride/dilation/padding/bias, grad-input per output phase at any stride, grad-weight
//! split into bands), each checked by `check_op` (CPU reference, finite differences, GPU
//! forward and gradients on the texture path and on the storage-buffer kernels). The first
//! test asserts that the GEMM the adapter reports (`GpuContext::matmul_kernel`) is the one
//! taken: the texture GEMM where the adapter has 8-lane subgroup clusters, and no texture
//! kernel at all where it has not (4-lane subgroups, the GL backend).

mod common;

use common::*;
use wgseg::gpu::{GpuContext, GpuOptions};
use wgseg::ops::{matmul_t, Conv2dParams};
use wgseg::{backward, Device, Tensor};

#[test]
fn the_gemm_the_adapter_reports_is_the_path_taken() {
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&GpuOptions::default()).unwrap();
    ctx.set_profiling(true);
    let dev = Device::Gpu(ctx.clone());
    let t = |s: &[usize], seed| {
        Tensor::from_vec(
            uniform(s.iter().product(), seed, -1.0, 1.0),
            s.to_vec(),
            &dev,
        )
        .unwrap()
        .as_param()
    };
    let (a, b) = (t(&[9, 12], 1), t(&[12, 20], 2));
    let y = matmul_t(&a, &b, false, false).unwrap();
    let (x, w) = (t(&[2, 5, 6, 7], 3), t(&[6, 5, 3, 3], 4));
    let z = x.conv2d(&w, None, Conv2dParams::new(1, 1, 1, 1)).unwrap();
    // Stride 2: grad-input as 4 phase GEMMs.
    let z2 = x.conv2d(&w, None, Conv2dParams::new(2, 1, 1, 1)).unwrap();
    let loss = y
        .sum()
        .unwrap()
        .add(&z.sum().unwrap())
        .unwrap()
        .add(&z2.sum().unwrap())
        .unwrap();
    let g = backward(&loss).unwrap();
    assert!(g.get(&w).is_some() && g.get(&x).is_some() && g.get(&a).is_some());
    ctx.synchronize().unwrap();
    let report = ctx.profile_report();
    let calls = |k: &str| {
        report
            .iter()
            .find(|(name, _, _)| name == k)
            .map_or(0, |r| r.1)
    };
    // The GEMM the context reports takes the matmul forward and its 2 backward products.
    assert_eq!(calls(ctx.matmul_kernel()), 3, "{report:?}");
    if !ctx.texture_gemm() {
        // An adapter without 8-lane subgroup clusters (4-lane subgroups, GL): no texture
        // kernel may run, and the conv layers take the storage-buffer kernels.
        assert!(ctx.texture_gemm_unavailable().is_some());
        assert!(
            report
                .iter()
                .all(|(k, _, _)| !k.starts_with("gemm_tex.wgsl") && !k.starts_with("pack.wgsl")),
            "{report:?}"
        );
        let family = |prefix: &str| {
            report
                .iter()
                .filter(|(k, _, _)| k.starts_with(prefix))
                .map(|r| r.1)
                .sum::<u64>()
        };
        // Two forwards and two grad-inputs (gathers or direct kernels), two grad-weights.
        assert!(
            family("conv.wgsl::") + family("conv_direct.wgsl::") >= 4,
            "{report:?}"
        );
        assert_eq!(
            calls("conv_grad_weight.wgsl::conv_direct_gw"),
            2,
            "{report:?}"
        );
        return;
    }
    // Per conv a forward, grad-input (4 phases at stride 2) and grad-weight.
    assert_eq!(calls("gemm_tex.wgsl::conv"), 2 + 1 + 4, "{report:?}");
    assert_eq!(calls("gemm_tex.wgsl::conv_grad_weight"), 2, "{report:?}");
    assert_eq!(calls("conv.wgsl::conv2d_grad_input"), 0, "{report:?}");
    // Every operand packed once per layer: the weights in both layouts in one pass, x's
    // atlas once (the forward's, kept for grad-weight), dy in both layouts in one pass.
    assert_eq!(calls("pack.wgsl::pack_weights2"), 2, "{report:?}");
    // (The vec4 forms where planes or rows hold a multiple of 4 values: the stride-2
    // layer's dy rows are 4 wide.)
    assert_eq!(
        calls("pack.wgsl::pack_atlas") + calls("pack.wgsl::pack_atlas4"),
        2,
        "{report:?}"
    );
    assert_eq!(calls("pack.wgsl::pack_dy"), 1, "{report:?}");
    assert_eq!(calls("pack.wgsl::pack_dy4"), 1, "{report:?}");
    assert_eq!(calls("pack.wgsl::pack_pixels"), 0, "{report:?}");
    assert_eq!(calls("pack.wgsl::pack_weights"), 0, "{report:?}");
    assert_eq!(calls("conv_direct.wgsl::conv_direct"), 0, "{report:?}");
    assert_eq!(calls("matmul_sg.wgsl::matmul_sg"), 0, "{report:?}");
}

/// `op(a) · op(b)` parity and gradients for stored shapes `sa`, `sb`.
fn product(name: &str, sa: &[usize], sb: &[usize], ta: bool, tb: bool) {
    let na: usize = sa.iter().product();
    let nb: usize = sb.iter().product();
    check_op(
        name,
        &[
            Input::param(sa.to_vec(), uniform(na, na as u64, -1.0, 1.0)),
            Input::param(sb.to_vec(), uniform(nb, nb as u64 + 1, -1.0, 1.0)),
        ],
        Check::new(DOT, DOT),
        |x| matmul_t(&x[0], &x[1], ta, tb),
    );
}

#[test]
fn matmul_every_operand_layout() {
    // (M, N, K): K % 4 = 0 with N % 4 = 0 (both operands copied), K % 4 ≠ 0 (packed,
    // zero-padded K), M or N % 4 ≠ 0, sizes past one workgroup tile, and N ≥ 256 with
    // N % 4 = 0 (8 columns per lane on CPU adapters, see GEMM_WIDE_N) with a K tail.
    for (m, n, k) in [
        (8, 12, 16),
        (5, 7, 3),
        (12, 8, 10),
        (66, 131, 9),
        (9, 4, 6),
        (70, 260, 6),
        // Narrow products take narrower tiles: at most 16 rows 16 × 256, at most 32 rows
        // 32 × 256; both past one column tile.
        (16, 300, 7),
        (17, 520, 8),
        (32, 257, 5),
        // Products of few columns take taller tiles: 128 × 64 and 256 × 32.
        (100, 60, 8),
        (250, 30, 12),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if ta { [k, m] } else { [m, k] };
            let sb = if tb { [n, k] } else { [k, n] };
            product(&format!("{m}x{n}x{k} ta={ta} tb={tb}"), &sa, &sb, ta, tb);
        }
    }
}

#[test]
fn matmul_batches_dense_and_broadcast() {
    product("dense batch", &[3, 5, 8], &[3, 8, 12], false, false);
    product("broadcast b", &[3, 6, 7], &[1, 7, 4], false, false);
    product(
        "broadcast a, transposed",
        &[1, 8, 6],
        &[2, 5, 8],
        true,
        true,
    );
    // Batch dims that are neither dense nor broadcast over the flat batch: storage kernels.
    product(
        "mixed broadcast",
        &[2, 1, 4, 5],
        &[1, 3, 5, 4],
        false,
        false,
    );
}

/// conv2d forward and all gradients (x, w, bias) against the CPU.
fn conv(name: &str, x: [usize; 4], w: [usize; 4], p: Conv2dParams, bias: bool) {
    let (nx, nw) = (x.iter().product::<usize>(), w.iter().product::<usize>());
    let mut inputs = vec![
        Input::param(x.to_vec(), uniform(nx, nx as u64, -1.0, 1.0)),
        Input::param(w.to_vec(), uniform(nw, nw as u64 + 3, -0.5, 0.5)),
    ];
    if bias {
        inputs.push(Input::param(vec![w[0]], uniform(w[0], 5, -1.0, 1.0)));
    }
    check_op(name, &inputs, Check::new(DOT, DOT), |t| {
        t[0].conv2d(&t[1], t.get(2), p)
    });
}

/// One gradient of a texture-GEMM conv alone (the other operand a constant): the backward's
/// one-gradient paths, with the forward's kept operands.
#[test]
fn conv_one_gradient_alone_on_the_texture_gemm() {
    let (x, w) = ([2, 6, 8, 12], [7, 6, 3, 3]);
    let (nx, nw) = (x.iter().product::<usize>(), w.iter().product::<usize>());
    let p = Conv2dParams::new(2, 1, 1, 1);
    for x_grad in [true, false] {
        let xd = uniform(nx, 31, -1.0, 1.0);
        let wd = uniform(nw, 32, -0.5, 0.5);
        let inputs = if x_grad {
            [
                Input::param(x.to_vec(), xd),
                Input::constant(w.to_vec(), wd),
            ]
        } else {
            [
                Input::constant(x.to_vec(), xd),
                Input::param(w.to_vec(), wd),
            ]
        };
        check_op(
            &format!("conv stride 2, gradient of x only: {x_grad}"),
            &inputs,
            Check::new(DOT, DOT),
            |t| t[0].conv2d(&t[1], None, p),
        );
    }
}

#[test]
fn conv_forward_and_gradients_on_the_texture_gemm() {
    let p = Conv2dParams::new;
    // Channels not multiples of 4 (zero-padded channel texels), odd planes, padding.
    conv(
        "3x3 pad 1, 5->6",
        [2, 5, 6, 7],
        [6, 5, 3, 3],
        p(1, 1, 1, 1),
        true,
    );
    // Strides: grad-input as one GEMM per output phase over the taps that reach it.
    conv(
        "3x3 stride 2",
        [1, 4, 9, 8],
        [3, 4, 3, 3],
        p(2, 1, 1, 1),
        false,
    );
    // Stride 2 with dilation 2: odd phases get no tap at all (their gradient is zero).
    conv(
        "3x3 stride 2 dilation 2",
        [1, 3, 9, 10],
        [4, 3, 3, 3],
        p(2, 2, 2, 1),
        true,
    );
    // Stride 3 with a 2×2 kernel (phase 2 is reached by no tap), and a stride of (2, 1).
    conv(
        "2x2 stride 3",
        [2, 5, 8, 7],
        [3, 5, 2, 2],
        p(3, 0, 1, 1),
        false,
    );
    conv(
        "3x1 stride (2, 1)",
        [1, 6, 7, 5],
        [5, 6, 3, 1],
        Conv2dParams::default().with_stride(2, 1).with_padding(1, 0),
        true,
    );
    // Dilation with padding larger than the kernel reach of some rows.
    conv(
        "3x3 dilation 2 pad 2",
        [2, 3, 7, 9],
        [5, 3, 3, 3],
        p(1, 2, 2, 1),
        true,
    );
    // Dilated kernels on maps smaller than their reach (ASPP at output stride 16): the taps
    // that read only padding are left out of all three GEMMs, and their weight gradient is
    // zero (the partial sums of those taps are cleared, not written).
    conv(
        "3x3 dilation 6 on 5x6",
        [2, 5, 5, 6],
        [6, 5, 3, 3],
        p(1, 6, 6, 1),
        true,
    );
    conv(
        "3x3 dilation (6, 2) on 5x7",
        [1, 4, 5, 7],
        [5, 4, 3, 3],
        Conv2dParams::default()
            .with_padding(6, 2)
            .with_dilation(6, 2),
        true,
    );
    conv(
        "3x3 stride 2 dilation 4 on 6x6",
        [1, 3, 6, 6],
        [4, 3, 3, 3],
        p(2, 4, 4, 1),
        false,
    );
    // No padding, non-square kernel, 1×1.
    conv(
        "2x3 valid",
        [1, 6, 5, 6],
        [4, 6, 2, 3],
        Conv2dParams::default(),
        true,
    );
    conv(
        "1x1",
        [2, 8, 3, 5],
        [9, 8, 1, 1],
        Conv2dParams::default(),
        true,
    );
    // Planes and rows of a multiple of 4 values (the vec4 packs of x and dy) with channel
    // counts that are not (6 in, 7 out: zero-padded channel texels).
    conv(
        "3x3 pad 1, vec4 packs",
        [2, 6, 8, 12],
        [7, 6, 3, 3],
        p(1, 1, 1, 1),
        true,
    );
    // 16 < Cout ≤ 32 (32-row tiles) and Cin in the same range for grad-input, more than one
    // 256-column tile of output pixels, stride 2 phases.
    conv(
        "3x3 24 out channels",
        [2, 20, 13, 13],
        [24, 20, 3, 3],
        p(1, 1, 1, 1),
        true,
    );
    conv(
        "3x3 stride 2, 12 -> 30",
        [2, 12, 17, 19],
        [30, 12, 3, 3],
        p(2, 1, 1, 1),
        false,
    );
    // More than one row tile (Cout > 64) and column tile (N·Ho·Wo > 128).
    conv(
        "3x3 70 out channels",
        [1, 3, 12, 12],
        [70, 3, 3, 3],
        p(1, 1, 1, 1),
        false,
    );
}

/// The texture GEMM's GPU variants on this adapter (`GpuOptions::gpu_variants`: 64-row
/// tiles without WIDE, 64 grad-weight bands) against the CPU reference: `check_op`'s second
/// context turns textures off, so this is where those variants run on a CPU adapter.
#[test]
fn conv_gemm_gpu_variants_match_the_cpu() {
    if gpu().is_none() {
        return;
    }
    let opts = GpuOptions {
        gpu_variants: true,
        ..Default::default()
    };
    let ctx = GpuContext::new(&opts).expect("GPU-variant context");
    if !ctx.texture_gemm() {
        return;
    }
    let dev = Device::Gpu(ctx);
    // Planes and rows of a multiple of 4 values (the vec4 packs), 40 output channels (more
    // than 32 rows), stride 1 and 2.
    for (x, w, p) in [
        ([2, 6, 8, 12], [40, 6, 3, 3], Conv2dParams::new(1, 1, 1, 1)),
        ([1, 36, 8, 8], [8, 36, 3, 3], Conv2dParams::new(2, 1, 1, 1)),
    ] {
        let (nx, nw) = (x.iter().product::<usize>(), w.iter().product::<usize>());
        let xd = uniform(nx, nx as u64, -1.0, 1.0);
        let wd = uniform(nw, nw as u64 + 7, -0.5, 0.5);
        let run = |d: &Device| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            let xt = Tensor::from_vec(xd.clone(), x, d).expect("x").as_param();
            let wt = Tensor::from_vec(wd.clone(), w, d).expect("w").as_param();
            let y = xt.conv2d(&wt, None, p).expect("conv2d");
            // A weighted sum, so that every output position has its own gradient.
            let r = Tensor::from_vec(uniform(y.numel(), 99, -1.0, 1.0), y.shape().clone(), d)
                .expect("r");
            let g = backward(&y.mul(&r).expect("mul").sum().expect("sum")).expect("backward");
            let vals = |t: &Tensor| t.to_vec_f64().expect("read");
            (
                vals(&y),
                vals(g.get(&xt).expect("dx")),
                vals(g.get(&wt).expect("dw")),
            )
        };
        let want = run(&Device::Cpu);
        let got = run(&dev);
        let name = format!("gpu variants conv {x:?} {w:?}");
        assert_close(&format!("{name} y"), &got.0, &want.0, DOT);
        assert_close(&format!("{name} dx"), &got.1, &want.1, DOT);
        assert_close(&format!("{name} dw"), &got.2, &want.2, DOT);
    }
}
