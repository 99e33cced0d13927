//! Grid folding: exact limits, and every kernel family run through the folded 2-D path
//! (a context whose workgroups-per-dimension limit is injected as 4).

mod common;

use common::*;
use wgseg::gpu::grid::fold;

#[test]
fn fold_is_exact_at_the_limit() {
    assert_eq!(fold(65_535, 65_535).unwrap(), [65_535, 1, 1]);
    assert_eq!(fold(65_536, 65_535).unwrap(), [32_768, 2, 1]);
    assert_eq!(fold(1, 65_535).unwrap(), [1, 1, 1]);
    assert_eq!(fold(65_535 * 65_535, 65_535).unwrap(), [65_535, 65_535, 1]);
    assert_eq!(
        fold(65_535 * 65_535 + 1, 65_535).unwrap(),
        [65_535, 32_768, 2]
    );
    let e = fold(65_535u64.pow(3) + 1, 65_535).unwrap_err().to_string();
    assert!(e.contains("workgroups"), "{e}");
}

#[test]
fn folded_grids_compute_the_same_results() {
    // 4099 elements = 17 workgroups of 256 > 4²: folded into a 3 × 3 × 2 grid (3-D path).
    let n = 4099;
    let x = uniform(n, 1, 0.1, 2.0);
    check_folded(
        "unary folded",
        &[Input::param([n], x.clone())],
        Check::new(ELEMENTWISE, ELEMENTWISE),
        |t| t[0].log(),
    );
    check_folded(
        "binary folded",
        &[Input::param([n], x.clone()), Input::param([1], vec![0.5])],
        Check::new(ELEMENTWISE, REDUCTION),
        |t| t[0].mul(&t[1]),
    );
    check_folded(
        "copy folded",
        &[Input::param([4097, 1], distinct(4097, 2, -1.0, 1.0))],
        Check::new(EXACT, EXACT),
        |t| t[0].permute(&[1, 0]),
    );
    // Lane passes over an axis of 300 (> LANE_LEN = 256) with 600 inner columns: the first
    // pass writes 3 · 2 · 600 = 3600 partials (15 workgroups of 256: 2-D path), the final
    // pass 3 · 600 = 1800 outputs (8 workgroups: 2-D path). Forward only: the gradient is a
    // broadcast of 540 000 elements, past the 64 workgroups this context allows (the copy
    // kernel's folded path is checked above).
    check_folded(
        "sum tree folded",
        &[Input::constant(
            [3, 300, 600],
            uniform(540_000, 3, -1.0, 1.0),
        )],
        Check::forward_only(REDUCTION),
        |t| t[0].sum_axis(1, false),
    );
    check_folded(
        "argmax tree folded",
        &[Input::constant(
            [3, 300, 600],
            distinct(540_000, 4, -1.0, 1.0),
        )],
        Check::forward_only(EXACT),
        |t| t[0].argmax_axis(1, false),
    );
    check_folded(
        "max serial folded",
        &[Input::param([1000, 3], distinct(3000, 5, -1.0, 1.0))],
        Check::new(EXACT, ELEMENTWISE),
        |t| t[0].max_axis(1, false),
    );
}

#[test]
fn too_many_workgroups_is_an_error_not_a_panic() {
    let Some(dev) = folded_gpu() else { return };
    // 4³ = 64 workgroups of 256 hold 16 384 elements; 20 000 need 79.
    // An upload: `zeros` is itself a (fill) kernel and would already hit the limit.
    let big = wgseg::Tensor::from_vec(vec![0.0; 20_000], [20_000], &dev).unwrap();
    let msg = big.exp().map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("workgroups") && msg.contains("64"), "{msg}");
}

#[test]
fn folded_grids_for_the_image_kernels() {
    use wgseg::ops::{batch_norm2d, BatchNormState, Conv2dParams};
    // Shapes sized so that each kernel needs more than 4 workgroups (folded) but at most 4³.
    let x = uniform(2 * 3 * 24 * 24, 7, -1.0, 1.0);
    let w = uniform(8 * 3 * 3 * 3, 8, -0.5, 0.5);
    // Gather kernels (3 input channels) and direct register-blocked kernels (8 channels).
    check_folded(
        "conv2d gather folded",
        &[
            Input::param([1, 3, 12, 12], x[..432].to_vec()),
            Input::param([8, 3, 3, 3], w),
            Input::param([8], uniform(8, 9, -1.0, 1.0)),
        ],
        Check::new(DOT, DOT),
        |t| t[0].conv2d(&t[1], Some(&t[2]), Conv2dParams::new(1, 1, 1, 1)),
    );
    check_folded(
        "conv2d direct folded",
        &[
            Input::param([1, 8, 12, 12], x[..1152].to_vec()),
            Input::param([8, 8, 3, 3], uniform(576, 12, -0.5, 0.5)),
        ],
        Check::new(DOT, DOT),
        |t| t[0].conv2d(&t[1], None, Conv2dParams::new(1, 1, 1, 1)),
    );
    check_folded(
        "max_pool2d folded",
        &[Input::param([2, 3, 24, 24], distinct(3456, 10, -1.0, 1.0))],
        Check::new(EXACT, ELEMENTWISE),
        |t| t[0].max_pool2d((3, 3), (1, 1), (1, 1)),
    );
    // Unpooling 2×2 windows back to 48×24: 6912 outputs (27 workgroups: 3-D path) and, in
    // the backward, 1728 pooled elements (7 workgroups: 2-D path).
    let base = wgseg::Tensor::from_vec(
        distinct(6912, 13, -1.0, 1.0),
        [2, 3, 48, 24],
        &wgseg::Device::Cpu,
    )
    .unwrap();
    let k2 = wgseg::ops::Pool2d::new((2, 2), (2, 2), (0, 0));
    let (_, idx) = wgseg::ops::max_pool2d_with_indices(&base, k2).unwrap();
    check_folded(
        "max_unpool2d folded",
        &[
            Input::param([2, 3, 24, 12], uniform(1728, 14, -1.0, 1.0)),
            Input::labels([2, 3, 24, 12], idx.to_vec_u32().unwrap()),
        ],
        Check::new(EXACT, EXACT),
        |t| t[0].max_unpool2d(&t[1], (2, 2), (2, 2), (48, 24)),
    );
    check_folded(
        "avg_pool2d folded",
        &[Input::param([2, 3, 24, 24], x.clone())],
        Check::new(REDUCTION, REDUCTION),
        |t| t[0].avg_pool2d((3, 3), (1, 1), (1, 1)),
    );
    // Ceil mode, in-bounds divisor (the COUNT_PAD = 0 pipelines): W span 23, s 2 → 13 columns,
    // the last one hanging past the padding; 2·3·24·13 = 1872 outputs (8 workgroups).
    check_folded(
        "avg_pool2d ceil_mode count_include_pad=false folded",
        &[Input::param([2, 3, 24, 24], x.clone())],
        Check::new(REDUCTION, REDUCTION),
        |t| {
            let geom = wgseg::ops::Pool2d::new((3, 3), (1, 2), (1, 1))
                .ceil_mode(true)
                .count_include_pad(false);
            t[0].avg_pool2d_with(geom)
        },
    );
    check_folded(
        "interpolate_bilinear folded",
        &[Input::param([2, 3, 12, 12], uniform(864, 11, -1.0, 1.0))],
        Check::new(ELEMENTWISE, REDUCTION),
        |t| t[0].interpolate_bilinear((24, 24), false),
    );
    check_folded(
        "batch_norm2d folded",
        &[
            Input::param([2, 3, 24, 24], x),
            Input::param([3], vec![1.0, 0.5, 2.0]),
            Input::param([3], vec![0.0, 0.1, -0.2]),
        ],
        Check::new(REDUCTION, REDUCTION),
        |t| {
            let st = BatchNormState::new(3, &t[0].device())?;
            Ok(batch_norm2d(&t[0], &t[1], &t[2], &st, true, 0.1, 1e-5)?.0)
        },
    );
}
