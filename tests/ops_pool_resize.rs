//! Parity (GPU vs CPU), finite-difference and literal (PyTorch-value) tests of max/avg/global
//! pooling, max unpooling and bilinear resize.

mod common;

use common::*;
use wgseg::ops::pool::{max_pool2d_with_indices, max_unpool2d};
use wgseg::ops::Pool2d;
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
    // Rows of a multiple of 4 pixels (max pooling's backward takes 4 per thread): the stem's
    // 3×3 stride-2 pool, windows wider than 4, and overlapping stride-1 windows.
    ([2, 3, 8, 12], (3, 3), (2, 2), (1, 1)),
    ([1, 2, 6, 8], (2, 5), (2, 3), (0, 2)),
    ([1, 2, 5, 8], (3, 3), (1, 1), (1, 1)),
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
            |t| Ok(max_pool2d_with_indices(&t[0], Pool2d::new(kernel, stride, pad))?.1),
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

/// Ceil-mode cases (input shape, kernel, stride, padding). Per axis, with
/// `span = in + 2·pad − k`: floor `⌊span/s⌋ + 1`; ceil `⌈span/s⌉ + 1`, minus one when
/// PyTorch's rule finds the last window starting at or past `in + pad`.
const CEIL_CASES: &[Case] = &[
    // span 0: one window either way.
    ([1, 1, 1, 1], (3, 3), (2, 2), (1, 1)),
    // H: span 5 → floor 3, ceil 4 (3·2 < 6 + 1): the last window [5, 8) reads row 5 only and
    // its padded extent is min(8, 7) − 5 = 2. W: span 4 → 3 either way.
    ([2, 3, 6, 5], (3, 3), (2, 2), (1, 1)),
    // H: span 4 → 3 either way. W: span 4, s 3 → floor 2, ceil 3, but 2·3 ≥ 6 + 0 (the third
    // window would start at 6 = W): 2.
    ([1, 2, 5, 6], (3, 2), (2, 3), (1, 0)),
    // H: span 7, s 3 → ceil 4, but 3·3 ≥ 7 + 1: 3 (= floor). W: span 7, s 2 → floor 4, ceil 5
    // (4·2 < 8 + 1): the last window [7, 10) reads column 7 only, padded extent 9 − 7 = 2.
    ([1, 2, 7, 8], (2, 3), (3, 2), (1, 1)),
    // No padding: span 3 → floor 2, ceil 3; the last window [4, 6) reads [4, 5), and its
    // padded extent is 1 too.
    ([1, 1, 5, 5], (2, 2), (2, 2), (0, 0)),
    // A kernel larger than the input: span −1 → ⌈−1/2⌉ + 1 = 1 (floor mode rejects it).
    ([1, 1, 2, 2], (3, 3), (2, 2), (0, 0)),
    // N·C = 262 planes: span 1 → floor 1, ceil 2 (1048 outputs).
    ([2, 131, 3, 3], (2, 2), (2, 2), (0, 0)),
    // Several workgroups: H span 31 → floor 16, ceil 17; W span 30 → 16 either way.
    ([1, 1, 32, 31], (3, 3), (2, 2), (1, 1)),
];

#[test]
fn avg_pool2d_options_match_and_differentiate() {
    // (floor, count_include_pad) is `avg_pool2d_matches_and_differentiates`.
    let combos = [
        (POOL_CASES, false, false),
        (CEIL_CASES, true, true),
        (CEIL_CASES, true, false),
    ];
    for (cases, ceil, count_pad) in combos {
        for (k, &(shape, kernel, stride, pad)) in cases.iter().enumerate() {
            let x = uniform(numel(&shape), 800 + k as u64, -3.0, 3.0);
            let geom = Pool2d::new(kernel, stride, pad)
                .ceil_mode(ceil)
                .count_include_pad(count_pad);
            check_op(
                &format!("avg_pool2d {shape:?} {geom:?}"),
                &[Input::param(shape, x)],
                Check::new(REDUCTION, REDUCTION),
                |t| t[0].avg_pool2d_with(geom),
            );
        }
    }
}

#[test]
fn max_pool2d_ceil_mode_matches_and_differentiates() {
    for (k, &(shape, kernel, stride, pad)) in CEIL_CASES.iter().enumerate() {
        let x = distinct(numel(&shape), 900 + k as u64, -3.0, 3.0);
        let geom = Pool2d::new(kernel, stride, pad).ceil_mode(true);
        let name = format!("max_pool2d {shape:?} {geom:?}");
        check_op(
            &name,
            &[Input::param(shape, x.clone())],
            Check::new(EXACT, ELEMENTWISE),
            |t| t[0].max_pool2d_with(geom),
        );
        check_op(
            &format!("{name} indices"),
            &[Input::constant(shape, x)],
            Check::forward_only(EXACT),
            |t| Ok(max_pool2d_with_indices(&t[0], geom)?.1),
        );
    }
}

/// The 1×1×4×5 input `x[r][c] = 5r + c + 1` (1..=20), pooled with k3 s2 p1 in every option
/// combination. Output size: H span 4 + 2 − 3 = 3 → floor 2, ceil 3 (2·2 < 4 + 1); W span 4
/// → 3 either way. Windows (start o·2 − 1, end o·2 + 2):
///   rows  oy 0: [−1, 2) → rows {0, 1},    padded extent 3
///         oy 1: [1, 4)  → rows {1, 2, 3}, extent 3
///         oy 2: [3, 6)  → row {3},        extent min(6, 4 + 1) − 3 = 2 (ceil mode only)
///   cols  ox 0: [−1, 2) → cols {0, 1},    extent 3
///         ox 1: [1, 4)  → cols {1, 2, 3}, extent 3
///         ox 2: [3, 6)  → cols {3, 4},    extent min(6, 5 + 1) − 3 = 3
/// Window sums Σ(5r + c + 1) = |C|·Σ5r + |R|·Σ(c + 1):
///   oy 0: 16, 33, 28;  oy 1: 69, 117, 87;  oy 2: 33, 54, 39.
/// count_include_pad divisors (extent products): 9 everywhere except row oy 2: 2·3 = 6.
/// In-bounds counts |R|·|C| with |R| = 2, 3, 1 and |C| = 2, 3, 2:
///   oy 0: 4, 6, 4;  oy 1: 6, 9, 6;  oy 2: 2, 3, 2.
fn x45() -> Vec<f32> {
    (1..=20).map(|v| v as f32).collect()
}

#[test]
fn avg_pool2d_options_literal_values() {
    let floor_incl = [
        16.0 / 9.0,
        33.0 / 9.0,
        28.0 / 9.0,
        69.0 / 9.0,
        13.0,
        87.0 / 9.0,
    ];
    // The window means: 16/4, 33/6, 28/4, 69/6, 117/9, 87/6.
    let floor_excl = [4.0, 5.5, 7.0, 11.5, 13.0, 14.5];
    // Ceil mode adds row oy 2: 33/6, 54/6, 39/6 and 33/2, 54/3, 39/2.
    let ceil_incl = [&floor_incl[..], &[5.5, 9.0, 6.5]].concat();
    let ceil_excl = [&floor_excl[..], &[16.5, 18.0, 19.5]].concat();
    let cases: [(bool, bool, [usize; 2], &[f64]); 4] = [
        (false, true, [2, 3], &floor_incl),
        (false, false, [2, 3], &floor_excl),
        (true, true, [3, 3], &ceil_incl),
        (true, false, [3, 3], &ceil_excl),
    ];
    for dev in devices() {
        let t = Tensor::from_vec(x45(), [1, 1, 4, 5], &dev).unwrap();
        for (ceil, count_pad, [oh, ow], want) in cases {
            let geom = Pool2d::new((3, 3), (2, 2), (1, 1))
                .ceil_mode(ceil)
                .count_include_pad(count_pad);
            let y = t.avg_pool2d_with(geom).unwrap();
            assert_eq!(y.dims(), &[1, 1, oh, ow], "{geom:?} {dev:?}");
            assert_close(
                &format!("{geom:?} on {dev:?}"),
                &y.to_vec_f64().unwrap(),
                want,
                ELEMENTWISE,
            );
        }
        // Gradient of sum(y) in ceil mode without padding counts: ∂x[r][c] = Σ_{o ∋ (r, c)}
        // 1/(|R_oy|·|C_ox|), which factors into a[r]·b[c] with a[r] = Σ_{oy ∋ r} 1/|R_oy|
        // = 1/2, 1/2 + 1/3, 1/3, 1/3 + 1 and b[c] = Σ_{ox ∋ c} 1/|C_ox|
        // = 1/2, 1/2 + 1/3, 1/3, 1/3 + 1/2, 1/2.
        let p = t.as_param();
        let geom = Pool2d::new((3, 3), (2, 2), (1, 1))
            .ceil_mode(true)
            .count_include_pad(false);
        let g = wgseg::backward(&p.avg_pool2d_with(geom).unwrap().sum().unwrap()).unwrap();
        let a = [0.5, 5.0 / 6.0, 1.0 / 3.0, 4.0 / 3.0];
        let b = [0.5, 5.0 / 6.0, 1.0 / 3.0, 5.0 / 6.0, 0.5];
        let want: Vec<f64> = a
            .iter()
            .flat_map(|a| b.iter().map(move |b| a * b))
            .collect();
        assert_close(
            &format!("avg_pool2d ceil, no pad count, gradient on {dev:?}"),
            &g.get(&p).unwrap().to_vec_f64().unwrap(),
            &want,
            ELEMENTWISE,
        );
        // Kernel 3 over a 2×2 input, ceil mode: one window, clipped to the input on both
        // counts (padded extent min(0 + 3, 2 + 0) − 0 = 2 per axis): (1+2+3+4)/4.
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2], &dev).unwrap();
        for count_pad in [true, false] {
            let geom = Pool2d::new((3, 3), (2, 2), (0, 0))
                .ceil_mode(true)
                .count_include_pad(count_pad);
            let y = t.avg_pool2d_with(geom).unwrap();
            assert_eq!(y.to_vec().unwrap(), vec![2.5], "{geom:?} {dev:?}");
        }
    }
}

#[test]
fn max_pool2d_ceil_mode_literal_values() {
    for dev in devices() {
        // x45 (see above), k3 s2 p1, ceil mode → 3×3. Values ascend along rows and columns,
        // so each window's maximum is its last in-bounds row and column: rows {1, 3, 3} and
        // columns {1, 3, 4} for oy, ox = 0, 1, 2, i.e. flat index 5·row + col.
        let t = Tensor::from_vec(x45(), [1, 1, 4, 5], &dev).unwrap();
        let geom = Pool2d::new((3, 3), (2, 2), (1, 1)).ceil_mode(true);
        let (y, i) = max_pool2d_with_indices(&t, geom).unwrap();
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        let idx = vec![6, 8, 9, 16, 18, 19, 16, 18, 19];
        assert_eq!(i.to_vec_u32().unwrap(), idx, "{dev:?}");
        let vals: Vec<f32> = idx.iter().map(|&k| k as f32 + 1.0).collect();
        assert_eq!(y.to_vec().unwrap(), vals, "{dev:?}");
        // The extra ceil-mode row (oy 2) picks the same inputs as row oy 1, so the gradient
        // of sum(y) is 1 at 6, 8, 9 and 2 at 16, 18, 19.
        let p = t.as_param();
        let g = wgseg::backward(&p.max_pool2d_with(geom).unwrap().sum().unwrap()).unwrap();
        let mut want = vec![0.0; 20];
        for k in idx {
            want[k as usize] += 1.0;
        }
        assert_eq!(g.get(&p).unwrap().to_vec().unwrap(), want, "{dev:?}");
        // All negative, so −∞ (not zero) padding matters: −(1..=20); the maximum is the first
        // in-bounds element of each window: rows {0, 1, 3}, columns {0, 1, 3}.
        let neg: Vec<f32> = x45().iter().map(|v| -v).collect();
        let t = Tensor::from_vec(neg, [1, 1, 4, 5], &dev).unwrap();
        let (y, i) = max_pool2d_with_indices(&t, geom).unwrap();
        let idx = vec![0, 1, 3, 5, 6, 8, 15, 16, 18];
        assert_eq!(i.to_vec_u32().unwrap(), idx, "{dev:?}");
        let vals: Vec<f32> = idx.iter().map(|&k| -(k as f32) - 1.0).collect();
        assert_eq!(y.to_vec().unwrap(), vals, "{dev:?}");
    }
}

#[test]
fn pool_output_shapes_follow_pytorch() {
    // ([H, W], kernel, stride, padding, floor [OH, OW] (None: rejected), ceil [OH, OW]).
    type Sizes = ([usize; 2], (usize, usize), (usize, usize), (usize, usize));
    let cases: [(Sizes, Option<[usize; 2]>, [usize; 2]); 8] = [
        // span 5 + 2 − 2 = 5: floor 3; ceil 4, but 3·2 ≥ 5 + 1 (the fourth window would
        // start at 5 = in, wholly in the right padding): 3.
        (([5, 5], (2, 2), (2, 2), (1, 1)), Some([3, 3]), [3, 3]),
        // span 6 + 2 − 2 = 6, s 4: floor 2; ceil 3, but 2·4 ≥ 6 + 1: 2.
        (([6, 6], (2, 2), (4, 4), (1, 1)), Some([2, 2]), [2, 2]),
        // span 3: floor 2, ceil 3 (2·2 < 5).
        (([5, 5], (2, 2), (2, 2), (0, 0)), Some([2, 2]), [3, 3]),
        // ResNet's stem pool on 112: span 111 → floor 56, ceil 57 (56·2 < 113).
        (
            ([112, 112], (3, 3), (2, 2), (1, 1)),
            Some([56, 56]),
            [57, 57],
        ),
        // Non-square: H span 4 → 3/3; W span 4, s 3 → floor 2, ceil 3 → rule (6 ≥ 6): 2.
        (([5, 6], (3, 2), (2, 3), (1, 0)), Some([3, 2]), [3, 2]),
        // H span 7, s 3 → floor 3, ceil 4 → rule (9 ≥ 8): 3; W span 7, s 2 → 4 / 5.
        (([7, 8], (2, 3), (3, 2), (1, 1)), Some([3, 4]), [3, 5]),
        // H span 5 → 3 / 4; W span 4 → 3 / 3.
        (([6, 5], (3, 3), (2, 2), (1, 1)), Some([3, 3]), [4, 3]),
        // Kernel 3 over 2: span −1 → floor rejects; ceil ⌈−1/2⌉ + 1 = 1.
        (([2, 2], (3, 3), (2, 2), (0, 0)), None, [1, 1]),
    ];
    for (([h, w], k, s, p), floor, ceil) in cases {
        let x = Tensor::zeros([1, 2, h, w], &Device::Cpu).unwrap();
        for (ceil_mode, want) in [(false, floor), (true, Some(ceil))] {
            let geom = Pool2d::new(k, s, p).ceil_mode(ceil_mode);
            for (op, y) in [
                ("max", x.max_pool2d_with(geom)),
                ("avg", x.avg_pool2d_with(geom)),
                ("avg excl", x.avg_pool2d_with(geom.count_include_pad(false))),
            ] {
                match want {
                    Some([oh, ow]) => {
                        let y = y.unwrap();
                        assert_eq!(y.dims(), &[1, 2, oh, ow], "{op} [{h}, {w}] {geom:?}");
                    }
                    None => assert!(y.is_err(), "{op} [{h}, {w}] {geom:?}"),
                }
            }
        }
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
        let (y, i) = max_pool2d_with_indices(&t, Pool2d::new((3, 3), (2, 2), (1, 1))).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![-1.0, -2.0, -5.0, -6.0], "{dev:?}");
        assert_eq!(i.to_vec_u32().unwrap(), vec![0, 1, 4, 5], "{dev:?}");
        // k2 s2 on 0..15: maxima at the bottom-right of each window.
        let t = Tensor::from_vec((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4], &dev).unwrap();
        let (y, i) = max_pool2d_with_indices(&t, Pool2d::new((2, 2), (2, 2), (0, 0))).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0], "{dev:?}");
        assert_eq!(i.to_vec_u32().unwrap(), vec![5, 7, 13, 15], "{dev:?}");
        // Ties: the first maximum in row-major order, per plane.
        let t = Tensor::from_vec(
            vec![1.0, 3.0, 3.0, 0.0, 2.0, 0.0, 2.0, 2.0],
            [1, 2, 2, 2],
            &dev,
        )
        .unwrap();
        let (y, i) = max_pool2d_with_indices(&t, Pool2d::new((2, 2), (2, 2), (0, 0))).unwrap();
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

/// (shape before pooling, kernel = stride) for max unpooling: odd H and W (7×9 pooled 2×2 to
/// 3×4: row 6 and column 8 lie in no window), an even map, 3×3 windows with a remainder on
/// both axes (10×8 → 3×2) and on one (9×7 → 3×2), rectangular windows (2×3), N·C = 262
/// planes, and 1023 outputs (several workgroups).
const UNPOOL_CASES: &[([usize; 4], (usize, usize))] = &[
    ([2, 3, 7, 9], (2, 2)),
    ([1, 2, 8, 8], (2, 2)),
    ([2, 2, 10, 8], (3, 3)),
    ([1, 2, 9, 7], (3, 3)),
    ([1, 3, 6, 9], (2, 3)),
    ([2, 131, 4, 5], (2, 2)),
    ([1, 1, 33, 31], (2, 2)),
];

/// Indices that `max_pool2d_with_indices` returns for a random `shape` input pooled with
/// `kernel = stride`, and the pooled shape.
fn pooled_indices(shape: [usize; 4], kernel: (usize, usize), seed: u64) -> ([usize; 4], Vec<u32>) {
    let x = Tensor::from_vec(
        distinct(numel(&shape), seed, -3.0, 3.0),
        shape,
        &Device::Cpu,
    )
    .unwrap();
    let (_, i) = max_pool2d_with_indices(&x, Pool2d::new(kernel, kernel, (0, 0))).unwrap();
    let &[n, c, oh, ow] = i.dims() else {
        panic!("pooled rank {:?}", i.dims())
    };
    ([n, c, oh, ow], i.to_vec_u32().unwrap())
}

#[test]
fn max_unpool2d_matches_and_differentiates() {
    for (k, &(shape, kernel)) in UNPOOL_CASES.iter().enumerate() {
        let (pooled, idx) = pooled_indices(shape, kernel, 1000 + k as u64);
        let x = uniform(numel(&pooled), 1100 + k as u64, -3.0, 3.0);
        let out_hw = (shape[2], shape[3]);
        check_op(
            &format!("max_unpool2d {pooled:?} k{kernel:?} -> {out_hw:?}"),
            &[Input::param(pooled, x), Input::labels(pooled, idx)],
            Check::new(EXACT, EXACT),
            |t| {
                let y = t[0].max_unpool2d(&t[1], kernel, kernel, out_hw)?;
                assert_eq!(y.dims(), &shape);
                Ok(y)
            },
        );
    }
}

#[test]
fn max_unpool2d_literal_values() {
    // Pooled 2×2 values and, per window, an index inside it. In a 4×4 plane, window (0, 0)
    // holds flat {0, 1, 4, 5}, (0, 1) {2, 3, 6, 7}, (1, 0) {8, 9, 12, 13}, (1, 1)
    // {10, 11, 14, 15}: 5 = (1, 1), 2 = (0, 2), 12 = (3, 0), 11 = (2, 3).
    let x = vec![1.5, -2.0, 3.0, 4.0];
    let idx4 = vec![5, 2, 12, 11];
    #[rustfmt::skip]
    let want4 = vec![
        0.0, 0.0, -2.0, 0.0,
        0.0, 1.5, 0.0, 0.0,
        0.0, 0.0, 0.0, 4.0,
        3.0, 0.0, 0.0, 0.0,
    ];
    // A 5×5 plane pools to 2×2 too (row 4 and column 4 lie in no window and stay 0):
    // windows (0, 0) {0, 1, 5, 6}, (0, 1) {2, 3, 7, 8}, (1, 0) {10, 11, 15, 16}, (1, 1)
    // {12, 13, 17, 18}: 6 = (1, 1), 3 = (0, 3), 10 = (2, 0), 18 = (3, 3).
    let idx5 = vec![6, 3, 10, 18];
    #[rustfmt::skip]
    let want5 = vec![
        0.0, 0.0, 0.0, -2.0, 0.0,
        0.0, 1.5, 0.0, 0.0, 0.0,
        3.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 4.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    for dev in devices() {
        for ((h, w), idx, want) in [((4, 4), &idx4, &want4), ((5, 5), &idx5, &want5)] {
            let t = Tensor::from_vec(x.clone(), [1, 1, 2, 2], &dev).unwrap();
            let i = Tensor::from_u32(idx.clone(), [1, 1, 2, 2], &dev).unwrap();
            let y = t.max_unpool2d(&i, (2, 2), (2, 2), (h, w)).unwrap();
            assert_eq!(y.dims(), &[1, 1, h, w], "{dev:?}");
            assert_eq!(&y.to_vec().unwrap(), want, "{h}×{w} on {dev:?}");
            // sum(y ⊙ r) with r[p] = p (the flat position): ∂x[q] = r[idx[q]] = idx[q].
            let p = t.as_param();
            let r: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
            let r = Tensor::from_vec(r, [1, 1, h, w], &dev).unwrap();
            let y = p.max_unpool2d(&i, (2, 2), (2, 2), (h, w)).unwrap();
            let g = wgseg::backward(&y.mul(&r).unwrap().sum().unwrap()).unwrap();
            let want_g: Vec<f32> = idx.iter().map(|&k| k as f32).collect();
            assert_eq!(g.get(&p).unwrap().to_vec().unwrap(), want_g, "{dev:?}");
        }
    }
}

#[test]
fn max_unpool2d_of_max_pool2d_keeps_the_window_maxima() {
    for (k, &(shape, kernel)) in UNPOOL_CASES.iter().enumerate() {
        let [n, c, h, w] = shape;
        let (kh, kw) = kernel;
        let xv = distinct(numel(&shape), 1200 + k as u64, -3.0, 3.0);
        // From the definition: each window's maximum at its position, 0 everywhere else
        // (including the rows and columns that lie in no window).
        let mut is_max = vec![false; xv.len()];
        for plane in 0..n * c {
            for oy in 0..h / kh {
                for ox in 0..w / kw {
                    let mut best = None::<usize>;
                    for y in oy * kh..(oy + 1) * kh {
                        for x in ox * kw..(ox + 1) * kw {
                            let at = plane * h * w + y * w + x;
                            if best.is_none_or(|b| xv[at] > xv[b]) {
                                best = Some(at);
                            }
                        }
                    }
                    is_max[best.unwrap()] = true;
                }
            }
        }
        let want: Vec<f32> = xv
            .iter()
            .zip(&is_max)
            .map(|(&v, &m)| if m { v } else { 0.0 })
            .collect();
        let want_g: Vec<f32> = is_max.iter().map(|&m| f32::from(u8::from(m))).collect();
        for dev in devices() {
            let x = Tensor::from_vec(xv.clone(), shape, &dev)
                .unwrap()
                .as_param();
            let geom = Pool2d::new(kernel, kernel, (0, 0));
            let (v, i) = max_pool2d_with_indices(&x, geom).unwrap();
            let u = max_unpool2d(&v, &i, geom, (h, w)).unwrap();
            assert_eq!(u.dims(), &shape);
            assert_eq!(
                u.to_vec().unwrap(),
                want,
                "{shape:?} k{kernel:?} on {dev:?}"
            );
            // Through both ops, the gradient of sum(u) is 1 at the maxima and 0 elsewhere.
            let g = wgseg::backward(&u.sum().unwrap()).unwrap();
            assert_eq!(
                g.get(&x).unwrap().to_vec().unwrap(),
                want_g,
                "{shape:?} k{kernel:?} gradient on {dev:?}"
            );
        }
    }
}

#[test]
fn max_unpool2d_errors_name_the_problem() {
    let dev = Device::Cpu;
    // Valid operands: a 7×9 map pooled 2×2 to 3×4.
    let (pooled, idx) = pooled_indices([1, 2, 7, 9], (2, 2), 1300);
    let x = Tensor::from_vec(uniform(24, 1301, -1.0, 1.0), pooled, &dev).unwrap();
    let i = Tensor::from_u32(idx.clone(), pooled, &dev).unwrap();
    let geom = Pool2d::new((2, 2), (2, 2), (0, 0));
    assert!(max_unpool2d(&x, &i, geom, (7, 9)).is_ok());
    // 8×9 and 6×9 pool to 4×4 and 3×4: 8 is not consistent, 6 is.
    assert!(max_unpool2d(&x, &i, geom, (6, 9)).is_ok());
    let err = |r: wgseg::Result<Tensor>| r.unwrap_err().to_string();
    // Overlapping windows (kernel ≠ stride).
    let e = err(x.max_unpool2d(&i, (3, 3), (2, 2), (7, 9)));
    assert!(
        e.contains("max_unpool2d") && e.contains("kernel") && e.contains("stride"),
        "{e}"
    );
    let e = err(x.max_unpool2d(&i, (0, 0), (0, 0), (7, 9)));
    assert!(e.contains("positive"), "{e}");
    // Padding and ceil mode.
    let e = err(max_unpool2d(
        &x,
        &i,
        Pool2d::new((2, 2), (2, 2), (1, 1)),
        (7, 9),
    ));
    assert!(e.contains("max_unpool2d") && e.contains("padding"), "{e}");
    let e = err(max_unpool2d(&x, &i, geom.ceil_mode(true), (7, 9)));
    assert!(e.contains("ceil_mode"), "{e}");
    // Indices of the wrong dtype or shape.
    let f = Tensor::zeros(pooled, &dev).unwrap();
    let e = err(x.max_unpool2d(&f, (2, 2), (2, 2), (7, 9)));
    assert!(
        e.contains("max_unpool2d") && e.contains("indices") && e.contains("U32"),
        "{e}"
    );
    let short = Tensor::from_u32(idx[..18].to_vec(), [1, 2, 3, 3], &dev).unwrap();
    let e = err(x.max_unpool2d(&short, (2, 2), (2, 2), (7, 9)));
    assert!(
        e.contains("indices") && e.contains("[1, 2, 3, 3]") && e.contains("[1, 2, 3, 4]"),
        "{e}"
    );
    // An output size that does not pool back to 3×4.
    for hw in [(8, 9), (5, 9), (7, 10), (7, 7)] {
        let e = err(x.max_unpool2d(&i, (2, 2), (2, 2), hw));
        assert!(
            e.contains("max_unpool2d")
                && e.contains(&format!("{}×{}", hw.0, hw.1))
                && e.contains("[1, 2, 3, 4]"),
            "{hw:?}: {e}"
        );
    }
    // x: rank and dtype.
    let r3 = Tensor::zeros([2, 3, 4], &dev).unwrap();
    let e = err(r3.max_unpool2d(&i, (2, 2), (2, 2), (7, 9)));
    assert!(e.contains("max_unpool2d") && e.contains("[2, 3, 4]"), "{e}");
    let e = err(i.max_unpool2d(&i, (2, 2), (2, 2), (7, 9)));
    assert!(e.contains("max_unpool2d") && e.contains("F32"), "{e}");
    // The CPU reference checks the contract: every index inside its own window (2 lies in
    // window (0, 1), not (0, 0); 63 = 7·9 is past the plane).
    for bad in [2, 63] {
        let mut v = idx.clone();
        v[0] = bad;
        let b = Tensor::from_u32(v, pooled, &dev).unwrap();
        let e = err(x.max_unpool2d(&b, (2, 2), (2, 2), (7, 9)));
        assert!(
            e.contains("max_unpool2d")
                && e.contains(&format!("index {bad}"))
                && e.contains("outside its window"),
            "{e}"
        );
    }
    let Some(gpu) = gpu() else { return };
    // Operands on different devices.
    let gi = i.to_device(&gpu).unwrap();
    let e = err(x.max_unpool2d(&gi, (2, 2), (2, 2), (7, 9)));
    assert!(e.contains("max_unpool2d") && e.contains("devices"), "{e}");
    // The GPU cannot check without a read-back; it never follows an index outside its window
    // (0 lies in window (0, 0), not (0, 1); 1000 is past the 4×4 plane): the value is
    // dropped and its gradient is 0, the valid ones are untouched.
    let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2], &gpu)
        .unwrap()
        .as_param();
    let b = Tensor::from_u32(vec![5, 0, 1000, 15], [1, 1, 2, 2], &gpu).unwrap();
    let y = t.max_unpool2d(&b, (2, 2), (2, 2), (4, 4)).unwrap();
    let mut want = vec![0.0; 16];
    want[5] = 1.0;
    want[15] = 4.0;
    assert_eq!(y.to_vec().unwrap(), want);
    let r: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let r = Tensor::from_vec(r, [1, 1, 4, 4], &gpu).unwrap();
    let g = wgseg::backward(&y.mul(&r).unwrap().sum().unwrap()).unwrap();
    assert_eq!(
        g.get(&t).unwrap().to_vec().unwrap(),
        vec![5.0, 0.0, 0.0, 15.0]
    );
}

/// (input shape, output size): 1×1 in and out, upsampling ×4 (the decoder) and ×2,
/// downsampling, non-integer ratios (5→7, 7→3), a 1×1 output, mixed up/down, and N·C = 262.
/// Outputs of at least twice the input's rows take the separable backward (along W, then
/// along H): ×4, ×2, ×3 from 1 row, a non-integer ×2.6, and H up while W goes down.
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
    ([1, 1, 5, 4], (13, 11)),
    ([1, 2, 3, 9], (8, 4)),
    // Rows of a multiple of 4 outputs upsampled along W (4 outputs per thread): ×2.4, and
    // W unchanged (taps one column apart).
    ([1, 2, 3, 5], (7, 12)),
    ([2, 1, 3, 8], (6, 8)),
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
    // Options: count_include_pad is an average-pooling option; ceil mode keeps the padding
    // rule, and a kernel past the padded input by a full stride leaves no window
    // (span 5 − 7 = −2, ⌈−2/2⌉ + 1 = 0; with stride 1, ⌈−1/1⌉ + 1 = 0).
    let e = x
        .max_pool2d_with(Pool2d::new((2, 2), (2, 2), (0, 0)).count_include_pad(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_pool2d") && e.contains("count_include_pad"),
        "{e}"
    );
    let ceil = |k, s, p| Pool2d::new(k, s, p).ceil_mode(true);
    let e = x
        .avg_pool2d_with(ceil((3, 3), (1, 1), (2, 2)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("padding"), "{e}");
    assert!(x.max_pool2d_with(ceil((7, 2), (2, 1), (0, 0))).is_err());
    assert!(x.avg_pool2d_with(ceil((2, 6), (1, 1), (0, 0))).is_err());
    assert!(x.max_pool2d_with(ceil((6, 2), (2, 1), (0, 0))).is_ok());
    assert!(x.avg_pool2d_with(ceil((0, 2), (1, 1), (0, 0))).is_err());
    // Empty planes.
    let empty = Tensor::zeros([1, 2, 0, 5], &dev).unwrap();
    assert!(empty.max_pool2d((2, 2), (1, 1), (1, 1)).is_err());
    assert!(empty.avg_pool2d((1, 1), (1, 1), (0, 0)).is_err());
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
