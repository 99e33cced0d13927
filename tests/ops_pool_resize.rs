//! Parity (GPU vs CPU), finite-difference and literal (PyTorch-value) tests of max/avg/global
//! pooling and bilinear resize.

mod common;

use common::*;
use wgseg::ops::pool::max_pool2d_with_indices;
use wgseg::{Device, Tensor};

type Case = ([usize; 4], (usize, usize), (usize, usize), (usize, usize));

/// (input shape, kernel, stride, padding): a 1×1 input (with and without padding), odd sizes,
/// the DeepLabV3+ stem (k3 s2 p1), k2 s2, overlapping windows (k3 s1), rectangular windows,
/// a window covering the whole input (1×1 output), and N·C = 262 planes (more than one
/// 256-thread workgroup of planes, 1048 outputs, 2358 inputs).
const POOL_CASES: &[Case] = &[
    ([1, 1, 1, 1], (1, 1), (1, 1), (0, 0)),
    ([1, 1, 1, 1], (3, 3), (2, 2), (1, 1)),
    ([2, 3, 7, 5], (3, 3), (2, 2), (1, 1)),
    ([1, 2, 8, 6], (2, 2), (2, 2), (0, 0)),
    ([1, 2, 7, 5], (2, 2), (2, 2), (1, 1)),
    ([2, 2, 7, 5], (3, 3), (1, 1), (1, 1)),
    ([1, 3, 7, 5], (3, 3), (1, 1), (0, 0)),
    ([1, 2, 5, 7], (3, 2), (2, 1), (1, 1)),
    ([1, 2, 4, 5], (4, 5), (4, 5), (0, 0)),
    ([2, 131, 3, 3], (2, 2), (1, 1), (0, 0)),
    ([1, 1, 33, 31], (3, 3), (2, 2), (1, 1)),
];

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

#[test]
fn max_pool2d_matches_and_differentiates() {
    for (k, &(shape, kernel, stride, pad)) in POOL_CASES.iter().enumerate() {
        // Well-separated values: finite differences never cross a tie.
        let x = distinct(numel(&shape), 400 + k as u64, -3.0, 3.0);
        let name = format!("max_pool2d {shape:?} k{kernel:?} s{stride:?} p{pad:?}");
        check_op(
            &name,
            &[Input::param(shape, x.clone())],
            Check::new(EXACT, ELEMENTWISE),
            |t| t[0].max_pool2d(kernel, stride, pad),
        );
        check_op(
            &format!("{name} indices"),
            &[Input::constant(shape, x)],
            Check::forward_only(EXACT),
            |t| Ok(max_pool2d_with_indices(&t[0], kernel, stride, pad)?.1),
        );
    }
}

#[test]
fn avg_pool2d_matches_and_differentiates() {
    for (k, &(shape, kernel, stride, pad)) in POOL_CASES.iter().enumerate() {
        let x = uniform(numel(&shape), 500 + k as u64, -3.0, 3.0);
        check_op(
            &format!("avg_pool2d {shape:?} k{kernel:?} s{stride:?} p{pad:?}"),
            &[Input::param(shape, x)],
            Check::new(REDUCTION, REDUCTION),
            |t| t[0].avg_pool2d(kernel, stride, pad),
        );
    }
}

#[test]
fn global_avg_pool2d_matches_and_differentiates() {
    for (k, shape) in [[1, 1, 1, 1], [2, 3, 5, 7], [2, 131, 2, 2], [1, 2, 33, 31]]
        .into_iter()
        .enumerate()
    {
        let x = uniform(numel(&shape), 600 + k as u64, -3.0, 3.0);
        check_op(
            &format!("global_avg_pool2d {shape:?}"),
            &[Input::param(shape, x)],
            Check::new(REDUCTION, REDUCTION),
            |t| {
                let y = t[0].global_avg_pool2d()?;
                assert_eq!(y.dims(), &[shape[0], shape[1], 1, 1]);
                Ok(y)
            },
        );
    }
}

/// Every device under test: the CPU reference, and the GPU when there is one.
fn devices() -> Vec<Device> {
    std::iter::once(Device::Cpu).chain(gpu()).collect()
}

#[test]
fn max_pool2d_pads_with_minus_infinity_and_picks_first_of_ties() {
    for dev in devices() {
        // All negative: zero padding would win every window; −∞ padding never does.
        let x: Vec<f32> = (0..16).map(|v| -(v as f32) - 1.0).collect();
        let t = Tensor::from_vec(x, [1, 1, 4, 4], &dev).unwrap();
        let (y, i) = max_pool2d_with_indices(&t, (3, 3), (2, 2), (1, 1)).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![-1.0, -2.0, -5.0, -6.0], "{dev:?}");
        assert_eq!(i.to_vec_u32().unwrap(), vec![0, 1, 4, 5], "{dev:?}");
        // k2 s2 on 0..15: maxima at the bottom-right of each window.
        let t = Tensor::from_vec((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4], &dev).unwrap();
        let (y, i) = max_pool2d_with_indices(&t, (2, 2), (2, 2), (0, 0)).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0], "{dev:?}");
        assert_eq!(i.to_vec_u32().unwrap(), vec![5, 7, 13, 15], "{dev:?}");
        // Ties: the first maximum in row-major order, per plane.
        let t = Tensor::from_vec(
            vec![1.0, 3.0, 3.0, 0.0, 2.0, 0.0, 2.0, 2.0],
            [1, 2, 2, 2],
            &dev,
        )
        .unwrap();
        let (y, i) = max_pool2d_with_indices(&t, (2, 2), (2, 2), (0, 0)).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![3.0, 2.0], "{dev:?}");
        assert_eq!(i.to_vec_u32().unwrap(), vec![1, 0], "{dev:?}");
        // The gradient goes to the saved index only.
        let p = t.as_param();
        let loss = p.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap().sum().unwrap();
        let g = wgseg::backward(&loss).unwrap();
        assert_eq!(
            g.get(&p).unwrap().to_vec().unwrap(),
            vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            "{dev:?}"
        );
    }
}

#[test]
fn avg_pool2d_counts_padding_like_pytorch() {
    for dev in devices() {
        // count_include_pad = true: a 3×3 window over a 2×2 plane of ones padded by 1 holds
        // four ones and five zeros, divided by 9.
        let t = Tensor::ones([1, 1, 2, 2], &dev).unwrap();
        let y = t.avg_pool2d((3, 3), (1, 1), (1, 1)).unwrap();
        assert_close(
            &format!("avg_pool2d padded ones {dev:?}"),
            &y.to_vec_f64().unwrap(),
            &[4.0 / 9.0; 4],
            ELEMENTWISE,
        );
    }
}

/// (input shape, output size): 1×1 in and out, upsampling ×4 (the decoder) and ×2,
/// downsampling, non-integer ratios (5→7, 7→3), a 1×1 output, mixed up/down, and N·C = 262.
const RESIZE_CASES: &[([usize; 4], (usize, usize))] = &[
    ([1, 1, 1, 1], (1, 1)),
    ([1, 1, 1, 1], (3, 4)),
    ([2, 3, 4, 5], (16, 20)),
    ([1, 2, 5, 7], (10, 14)),
    ([1, 2, 8, 6], (4, 3)),
    ([1, 2, 7, 5], (3, 2)),
    ([1, 1, 5, 5], (7, 7)),
    ([1, 1, 7, 7], (3, 3)),
    ([1, 2, 6, 4], (1, 1)),
    ([1, 1, 5, 7], (7, 3)),
    ([1, 1, 2, 9], (1, 20)),
    ([2, 131, 2, 3], (3, 5)),
];

#[test]
fn interpolate_bilinear_matches_and_differentiates() {
    for align_corners in [false, true] {
        for (k, &(shape, size)) in RESIZE_CASES.iter().enumerate() {
            let x = uniform(numel(&shape), 700 + k as u64, -3.0, 3.0);
            check_op(
                &format!("interpolate_bilinear {shape:?} -> {size:?} align {align_corners}"),
                &[Input::param(shape, x)],
                Check::new(ELEMENTWISE, REDUCTION),
                |t| t[0].interpolate_bilinear(size, align_corners),
            );
        }
    }
}

/// (input, input shape, output size, align_corners, expected output).
type Literal = (Vec<f32>, [usize; 4], (usize, usize), bool, Vec<f64>);

#[test]
fn interpolate_bilinear_literal_pytorch_values() {
    // torch.nn.functional.interpolate(x, size, mode='bilinear', align_corners=…) outputs.
    let x22 = vec![1.0, 2.0, 3.0, 4.0];
    let t13 = 1.0 / 3.0;
    let cases: Vec<Literal> = vec![
        (
            x22.clone(),
            [1, 1, 2, 2],
            (4, 4),
            false,
            vec![
                1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75,
                4.0,
            ],
        ),
        (
            x22.clone(),
            [1, 1, 2, 2],
            (4, 4),
            true,
            vec![
                1.0,
                1.0 + t13,
                2.0 - t13,
                2.0,
                2.0 - t13,
                2.0,
                2.0 + t13,
                3.0 - t13,
                2.0 + t13,
                3.0 - t13,
                3.0,
                3.0 + t13,
                3.0,
                3.0 + t13,
                4.0 - t13,
                4.0,
            ],
        ),
        // 5 → 3: src = (d + 0.5)·5/3 − 0.5 = 1/3, 2, 11/3.
        (
            vec![0.0, 1.0, 2.0, 3.0, 4.0],
            [1, 1, 1, 5],
            (1, 3),
            false,
            vec![t13, 2.0, 4.0 - t13],
        ),
        (
            vec![0.0, 1.0, 2.0, 3.0, 4.0],
            [1, 1, 1, 5],
            (1, 3),
            true,
            vec![0.0, 2.0, 4.0],
        ),
        // One output: the centre (half-pixel) or the first input (align_corners).
        (
            vec![0.0, 1.0, 2.0, 3.0, 4.0],
            [1, 1, 1, 5],
            (1, 1),
            false,
            vec![2.0],
        ),
        (
            vec![0.0, 1.0, 2.0, 3.0, 4.0],
            [1, 1, 1, 5],
            (1, 1),
            true,
            vec![0.0],
        ),
    ];
    for dev in devices() {
        for (x, shape, size, ac, want) in &cases {
            let t = Tensor::from_vec(x.clone(), *shape, &dev).unwrap();
            let y = t.interpolate_bilinear(*size, *ac).unwrap();
            assert_eq!(y.dims(), &[shape[0], shape[1], size.0, size.1]);
            assert_close(
                &format!("{shape:?} -> {size:?} align {ac} on {dev:?}"),
                &y.to_vec_f64().unwrap(),
                want,
                ELEMENTWISE,
            );
        }
    }
}

#[test]
fn pool_and_resize_shape_errors_are_errors_not_panics() {
    let dev = Device::Cpu;
    let x = Tensor::zeros([1, 2, 5, 5], &dev).unwrap();
    let r3 = Tensor::zeros([2, 5, 5], &dev).unwrap();
    let e = r3
        .max_pool2d((2, 2), (2, 2), (0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_pool2d") && e.contains("[2, 5, 5]"), "{e}");
    // Padding more than half the kernel (PyTorch rejects it too).
    let e = x
        .max_pool2d((3, 3), (1, 1), (2, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("padding"), "{e}");
    assert!(x.avg_pool2d((2, 2), (1, 1), (0, 2)).is_err());
    // Zero kernel or stride.
    assert!(x.max_pool2d((0, 2), (1, 1), (0, 0)).is_err());
    assert!(x.avg_pool2d((2, 2), (1, 0), (0, 0)).is_err());
    // Kernel larger than the padded input.
    let e = x
        .avg_pool2d((6, 2), (1, 1), (0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 2, 5, 5]"), "{e}");
    assert!(x.max_pool2d((8, 8), (1, 1), (1, 1)).is_err());
    // u32 inputs.
    let l = Tensor::from_u32(vec![0; 4], [1, 1, 2, 2], &dev).unwrap();
    assert!(l.max_pool2d((2, 2), (2, 2), (0, 0)).is_err());
    assert!(l.interpolate_bilinear((4, 4), false).is_err());
    // Global pooling and resize need [N, C, H, W] and non-empty sizes.
    assert!(r3.global_avg_pool2d().is_err());
    let e = r3
        .interpolate_bilinear((4, 4), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("interpolate_bilinear") && e.contains("[2, 5, 5]"),
        "{e}"
    );
    assert!(x.interpolate_bilinear((0, 4), true).is_err());
    assert!(x.interpolate_bilinear((4, 0), false).is_err());
}
