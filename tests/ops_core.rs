//! Parity (GPU vs CPU) and gradient checks for the elementwise, broadcasting, reduction and
//! layout primitives, and the confusion matrix (no gradient).

mod common;

use common::*;
use wgseg::ops::UnaryOp;
use wgseg::Tensor;

#[test]
fn unary_ops_match_and_differentiate() {
    use UnaryOp::*;
    // (op, input generator): inputs kept away from kinks and outside the clamps' edges.
    type Gen = fn(usize, u64) -> Vec<f32>;
    let ops: Vec<(UnaryOp, Gen)> = vec![
        (Neg, |n, s| uniform(n, s, -3.0, 3.0)),
        (Exp, |n, s| uniform(n, s, -5.0, 5.0)),
        (Log, |n, s| uniform(n, s, 0.1, 10.0)),
        (Sqrt, |n, s| uniform(n, s, 0.1, 10.0)),
        (Relu, |n, s| away_from_zero(n, s, 0.01, 3.0)),
        (Sigmoid, |n, s| uniform(n, s, -6.0, 6.0)),
        (Tanh, |n, s| uniform(n, s, -3.0, 3.0)),
        (Abs, |n, s| away_from_zero(n, s, 0.01, 3.0)),
        (Square, |n, s| uniform(n, s, -3.0, 3.0)),
        (Recip, |n, s| away_from_zero(n, s, 0.5, 3.0)),
        (Clamp(-1.0, 0.5), |n, s| uniform(n, s, -3.0, 3.0)),
        (AddScalar(1.5), |n, s| uniform(n, s, -3.0, 3.0)),
        (MulScalar(-2.5), |n, s| uniform(n, s, -3.0, 3.0)),
        (PowScalar(1.7), |n, s| uniform(n, s, 0.1, 3.0)),
        (Gelu, |n, s| uniform(n, s, -4.0, 4.0)),
    ];
    for (k, (op, gen)) in ops.iter().enumerate() {
        for &n in EDGE_SIZES {
            let x = gen(n, 100 + k as u64);
            check_op(
                &format!("{op:?} n={n}"),
                &[Input::param([n], x)],
                Check::new(ELEMENTWISE, ELEMENTWISE),
                |t| t[0].unary(*op),
            );
        }
    }
    check_op(
        "GeluGrad",
        &[Input::constant([257], uniform(257, 8, -4.0, 4.0))],
        Check::forward_only(ELEMENTWISE),
        |t| t[0].unary(GeluGrad),
    );
    for op in [Sign, InRange(-0.5, 0.5), NonZero] {
        let mut x = uniform(257, 9, -1.0, 1.0);
        x[3] = 0.0;
        x[4] = 0.5;
        check_op(
            &format!("{op:?}"),
            &[Input::constant([257], x)],
            Check::forward_only(EXACT),
            |t| t[0].unary(op),
        );
    }
}

/// erf and GELU against values computed independently (Python's `math.erf`), on the
/// CPU reference and, to the GPU erf's 1.5·10⁻⁷, on the GPU; GELU's derivative against its
/// formula `Φ(x) + x·φ(x)`.
#[test]
fn erf_and_gelu_literal_values() {
    for (x, want) in [
        (0.0, 0.0),
        (0.3, 0.328_626_759_459_127_4),
        (1.0, 0.842_700_792_949_714_9),
        (1.999, 0.995_301_556_651_370_5),
        (2.5, 0.999_593_047_982_555),
        (4.0, 0.999_999_984_582_742_1),
        (-1.0, -0.842_700_792_949_714_9),
    ] {
        let got = wgseg::ops::erf(x);
        assert!((got - want).abs() < 1e-13, "erf({x}) = {got}, want {want}");
    }
    let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 6.0];
    // x·Φ(x) = x/2 · (1 + erf(x/√2)).
    let gelu = [
        -0.004_049_694_094_890_3,
        -0.158_655_253_931_457_07,
        -0.154_268_769_362_993_44,
        0.0,
        0.345_731_230_636_993_44,
        0.841_344_746_068_542_9,
        1.954_499_736_103_641_6,
        5.999_999_994_080_474,
    ];
    let mut devs = vec![(wgseg::Device::Cpu, 1e-12)];
    devs.extend(gpu().map(|g| (g, 2e-6)));
    for (dev, tol) in devs {
        let t = Tensor::from_vec(xs.to_vec(), [xs.len()], &dev).unwrap();
        let y = t.gelu().unwrap().to_vec_f64().unwrap();
        let d = t.unary(UnaryOp::GeluGrad).unwrap().to_vec_f64().unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let x = f64::from(x);
            assert!(
                (y[i] - gelu[i]).abs() < tol,
                "gelu({x}) = {}, want {}",
                y[i],
                gelu[i]
            );
            let phi = 0.5 * (1.0 + wgseg::ops::erf(x / 2f64.sqrt()));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = phi + x * pdf;
            assert!(
                (d[i] - want).abs() < tol,
                "gelu'({x}) = {}, want {want}",
                d[i]
            );
        }
    }
}

#[test]
fn unary_extreme_values_saturate_identically() {
    let x = vec![
        -1e30,
        -100.0,
        -88.0,
        -1e-30,
        0.0,
        1e-30,
        88.0,
        88.8,
        100.0,
        1e30,
        f32::MAX,
        f32::MIN,
    ];
    let n = x.len();
    for op in [
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Relu,
    ] {
        check_op(
            &format!("{op:?} extremes"),
            &[Input::constant([n], x.clone())],
            Check::forward_only(ELEMENTWISE),
            |t| t[0].unary(op),
        );
    }
}

#[test]
fn binary_ops_broadcast_match_and_differentiate() {
    use wgseg::ops::BinaryOp::*;
    let shapes: &[(&[usize], &[usize])] = &[
        (&[1], &[1]),
        (&[257], &[257]),
        (&[3, 1, 5], &[4, 1]),
        (&[2, 3, 4, 5], &[3, 1, 1]),
        (&[7], &[]),
        (&[1, 31], &[13, 1]),
    ];
    for (si, (sa, sb)) in shapes.iter().enumerate() {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        for op in [Add, Sub, Mul, Div, Max, Min] {
            let a = uniform(na, si as u64, -2.0, 2.0);
            // b away from 0 (div) and from a (max/min ties).
            let b: Vec<f32> = away_from_zero(nb, 50 + si as u64, 0.5, 2.0)
                .iter()
                .map(|v| v + 0.001)
                .collect();
            check_op(
                &format!("{op:?} {sa:?}x{sb:?}"),
                &[Input::param(sa.to_vec(), a), Input::param(sb.to_vec(), b)],
                Check::new(ELEMENTWISE, REDUCTION),
                |t| wgseg::ops::binary::binary(&t[0], &t[1], op),
            );
        }
        for op in [Eq, Ne, Lt, Le, Gt, Ge] {
            let a: Vec<f32> = uniform(na, si as u64, -2.0, 2.0)
                .iter()
                .map(|v| v.round())
                .collect();
            let b: Vec<f32> = uniform(nb, 9 + si as u64, -2.0, 2.0)
                .iter()
                .map(|v| v.round())
                .collect();
            check_op(
                &format!("{op:?} {sa:?}x{sb:?}"),
                &[
                    Input::constant(sa.to_vec(), a),
                    Input::constant(sb.to_vec(), b),
                ],
                Check::forward_only(EXACT),
                |t| wgseg::ops::binary::binary(&t[0], &t[1], op),
            );
        }
    }
}

#[test]
fn where_selects_and_routes_gradients() {
    let c: Vec<f32> = uniform(60, 1, -1.0, 1.0)
        .iter()
        .map(|v| if *v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    check_op(
        "where",
        &[
            Input::constant([3, 4, 5], c),
            Input::param([4, 5], uniform(20, 2, -1.0, 1.0)),
            Input::param([3, 1, 5], uniform(15, 3, -1.0, 1.0)),
        ],
        Check::new(EXACT, REDUCTION),
        |t| t[0].where_(&t[1], &t[2]),
    );
}

#[test]
fn reductions_match_and_differentiate() {
    // (shape, axis): short axes (one final lane pass), long axes (several lane passes, with
    // lanes of unequal length and a remainder after the 4-way unrolled loop).
    let cases: &[(&[usize], isize)] = &[
        (&[1], 0),
        (&[7], 0),
        (&[3, 5, 4], 1),
        (&[3, 5, 4], -1),
        (&[3, 5, 4], 0),
        (&[2, 300, 3], 1),
        (&[4099], 0),
        (&[2, 2500], 1),
    ];
    for (k, (shape, axis)) in cases.iter().enumerate() {
        let n: usize = shape.iter().product();
        // Well-separated values: no near-ties for max/min.
        let x = distinct(n, 300 + k as u64, -3.0, 3.0);
        for keepdim in [false, true] {
            let name = format!("{shape:?} axis {axis} keepdim {keepdim}");
            check_op(
                &format!("sum {name}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(REDUCTION, ELEMENTWISE),
                |t| t[0].sum_axis(*axis, keepdim),
            );
            check_op(
                &format!("mean {name}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(REDUCTION, ELEMENTWISE),
                |t| t[0].mean_axis(*axis, keepdim),
            );
            check_op(
                &format!("max {name}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(EXACT, ELEMENTWISE),
                |t| t[0].max_axis(*axis, keepdim),
            );
            check_op(
                &format!("min {name}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(EXACT, ELEMENTWISE),
                |t| t[0].min_axis(*axis, keepdim),
            );
            check_op(
                &format!("argmax {name}"),
                &[Input::constant(shape.to_vec(), x.clone())],
                Check::forward_only(EXACT),
                |t| t[0].argmax_axis(*axis, keepdim),
            );
        }
    }
}

#[test]
fn global_reductions_and_multipass_tree() {
    // 1.1 M elements: three lane passes (4297 lanes, then 17, then 1).
    let n = 1_100_000;
    let x = uniform(n, 5, 0.0, 1.0);
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let Some(dev) = gpu() else { return };
    let t = Tensor::from_vec(x.clone(), [n], &dev).unwrap();
    let got = f64::from(t.sum().unwrap().item().unwrap());
    assert_close("sum of 1.1M", &[got], &[want], REDUCTION);
    let mut y = x;
    y[777_777] = 5.0;
    let t = Tensor::from_vec(y, [n], &dev).unwrap();
    assert_eq!(
        t.argmax_axis(0, false).unwrap().to_vec_u32().unwrap(),
        vec![777_777]
    );
    assert_eq!(t.max().unwrap().item().unwrap(), 5.0);
}

#[test]
fn sum_axes_merges_adjacent_axes() {
    // Runs of adjacent axes are reduced as one merged axis (H·W of NCHW, the batch-norm
    // pattern), alone, at the front, at the back, and all of them; 300 > 256 = LANE_LEN
    // makes the merged [1, 2] run of the last case a two-pass reduction.
    let cases: &[(&[usize], &[isize])] = &[
        (&[2, 3, 4, 5], &[0, 2, 3]),
        (&[2, 3, 4, 5], &[0, 1]),
        (&[2, 3, 4, 5], &[1]),
        (&[2, 3, 4, 5], &[3, 0, 1, 2]),
        (&[3, 20, 15, 2], &[1, 2]),
    ];
    for (k, (shape, axes)) in cases.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = uniform(n, 330 + k as u64, -1.0, 1.0);
        for keepdim in [false, true] {
            check_op(
                &format!("sum_axes {shape:?} {axes:?} keepdim {keepdim}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(REDUCTION, ELEMENTWISE),
                |t| t[0].sum_axes(axes, keepdim),
            );
        }
    }
}

#[test]
fn sum_and_mean_over_several_axes() {
    // Negative axes, non-adjacent axes, unsorted lists, all axes; both keepdim modes.
    let cases: &[(&[usize], &[isize])] = &[
        (&[2, 3, 4, 5], &[-1, -2]),
        (&[2, 3, 4, 5], &[0, -2]),
        (&[2, 3, 4, 5], &[3, -4, 1]),
        (&[3, 7], &[-1, 0]),
        (&[5, 4, 3], &[1]),
    ];
    for (k, (shape, axes)) in cases.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = uniform(n, 360 + k as u64, -1.0, 1.0);
        for keepdim in [false, true] {
            check_op(
                &format!("sum_axes {shape:?} {axes:?} keepdim {keepdim}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(REDUCTION, ELEMENTWISE),
                |t| t[0].sum_axes(axes, keepdim),
            );
            check_op(
                &format!("mean_axes {shape:?} {axes:?} keepdim {keepdim}"),
                &[Input::param(shape.to_vec(), x.clone())],
                Check::new(REDUCTION, ELEMENTWISE),
                |t| t[0].mean_axes(axes, keepdim),
            );
        }
    }
}

#[test]
fn mean_axes_values_shapes_and_errors() {
    let dev = wgseg::Device::Cpu;
    // x[i, j, k] = i·12 + j·4 + k over [2, 3, 4]; the mean over axes 0 and 2 of element j is
    // (0 + 12)/2 + 4j + (0 + 1 + 2 + 3)/4 = 7.5 + 4j.
    let x = Tensor::from_f64((0..24).map(f64::from).collect(), [2, 3, 4], &dev).unwrap();
    let m = x.mean_axes(&[-1, 0], false).unwrap();
    assert_eq!(m.dims(), &[3]);
    assert_eq!(m.to_vec_f64().unwrap(), vec![7.5, 11.5, 15.5]);
    let mk = x.mean_axes(&[0, 2], true).unwrap();
    assert_eq!(mk.dims(), &[1, 3, 1]);
    let s = x.sum_axes(&[2, -3], false).unwrap();
    assert_eq!(s.to_vec_f64().unwrap(), vec![60.0, 92.0, 124.0]);
    // The empty list reduces nothing.
    assert_eq!(x.mean_axes(&[], false).unwrap().dims(), &[2, 3, 4]);
    // Duplicates (also through a negative alias) and out-of-range axes are errors.
    for bad in [&[1, 1][..], &[2, -1], &[3], &[-4]] {
        let e = x.mean_axes(bad, false).unwrap_err().to_string();
        assert!(e.contains("mean_axes"), "{e}");
        let e = x.sum_axes(bad, true).unwrap_err().to_string();
        assert!(e.contains("sum_axes"), "{e}");
    }
    let e = x.sum_axes(&[2, -1], false).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    let empty = Tensor::zeros([2, 0, 3], &dev).unwrap();
    assert!(empty.mean_axes(&[1, 2], false).is_err());
}

#[test]
fn argmax_ties_across_lanes_pick_the_first() {
    // 5000 elements: two lane passes; equal maxima in different lanes of the first pass.
    let mut x = vec![0.0f32; 5000];
    for i in [4000, 1234, 2345, 4999] {
        x[i] = 3.0;
    }
    for dev in std::iter::once(wgseg::Device::Cpu).chain(gpu()) {
        let t = Tensor::from_vec(x.clone(), [5000], &dev).unwrap();
        assert_eq!(
            t.argmax_axis(0, false).unwrap().to_vec_u32().unwrap(),
            vec![1234]
        );
    }
}

#[test]
fn argmax_picks_first_of_ties() {
    let x = vec![1.0, 3.0, 3.0, 0.0, 2.0, 2.0];
    for dev in std::iter::once(wgseg::Device::Cpu).chain(gpu()) {
        let t = Tensor::from_vec(x.clone(), [2, 3], &dev).unwrap();
        assert_eq!(
            t.argmax_axis(1, false).unwrap().to_vec_u32().unwrap(),
            vec![1, 1]
        );
    }
}

#[test]
fn layout_ops_match_and_differentiate() {
    let x = uniform(2 * 3 * 4 * 5, 11, -1.0, 1.0);
    let shape = [2, 3, 4, 5];
    check_op(
        "permute",
        &[Input::param(shape, x.clone())],
        Check::new(EXACT, EXACT),
        |t| t[0].permute(&[0, 2, 3, 1]),
    );
    check_op(
        "permute rev",
        &[Input::param(shape, x.clone())],
        Check::new(EXACT, EXACT),
        |t| t[0].permute(&[3, 2, 1, 0]),
    );
    check_op(
        "narrow",
        &[Input::param(shape, x.clone())],
        Check::new(EXACT, EXACT),
        |t| t[0].narrow(2, 1, 2),
    );
    check_op(
        "narrow last",
        &[Input::param(shape, x.clone())],
        Check::new(EXACT, EXACT),
        |t| t[0].narrow(-1, 4, 1),
    );
    check_op(
        "reshape",
        &[Input::param(shape, x.clone())],
        Check::new(EXACT, EXACT),
        |t| t[0].reshape([6, 20]),
    );
    check_op(
        "broadcast_to",
        &[Input::param([3, 1, 5], uniform(15, 12, -1.0, 1.0))],
        Check::new(EXACT, REDUCTION),
        |t| t[0].broadcast_to(&wgseg::Shape::new(&[2, 3, 4, 5])),
    );
    check_op(
        "concat",
        &[
            Input::param([2, 3, 4], uniform(24, 13, -1.0, 1.0)),
            Input::param([2, 1, 4], uniform(8, 14, -1.0, 1.0)),
            Input::param([2, 5, 4], uniform(40, 15, -1.0, 1.0)),
        ],
        Check::new(EXACT, EXACT),
        |t| wgseg::ops::copy::concat(t, 1),
    );
    // Long contiguous runs (a channel concat / narrow of NCHW maps): buffer copies of the
    // runs instead of the kernel, forward and backward (narrow's backward pads).
    check_op(
        "concat of long runs",
        &[
            Input::param([2, 3, 9, 10], uniform(540, 17, -1.0, 1.0)),
            Input::param([2, 5, 9, 10], uniform(900, 18, -1.0, 1.0)),
        ],
        Check::new(EXACT, EXACT),
        |t| wgseg::ops::copy::concat(t, 1),
    );
    check_op(
        "narrow of long runs",
        &[Input::param([3, 6, 8, 8], uniform(1152, 19, -1.0, 1.0))],
        Check::new(EXACT, EXACT),
        |t| t[0].narrow(1, 2, 4),
    );
    check_op(
        "pad_axis",
        &[Input::param([2, 3], uniform(6, 16, -1.0, 1.0))],
        Check::new(EXACT, EXACT),
        |t| wgseg::ops::copy::pad_axis(&t[0], 1, 2, 7),
    );
    // u32 tensors copy bit-exactly (labels are small integers, i.e. f32 denormals).
    for dev in std::iter::once(wgseg::Device::Cpu).chain(gpu()) {
        let l = Tensor::from_u32(vec![0, 1, 2, 255, 7, 9], [2, 3], &dev).unwrap();
        assert_eq!(
            l.permute(&[1, 0]).unwrap().to_vec_u32().unwrap(),
            vec![0, 255, 1, 7, 2, 9]
        );
    }
}

#[test]
fn shape_errors_are_errors_not_panics() {
    let dev = wgseg::Device::Cpu;
    let a = Tensor::zeros([2, 3], &dev).unwrap();
    let b = Tensor::zeros([4], &dev).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    assert!(a.sum_axis(2, false).is_err());
    assert!(a.permute(&[0, 0]).is_err());
    assert!(a.narrow(1, 2, 2).is_err());
    assert!(a.reshape([5]).is_err());
    assert!(Tensor::from_vec(vec![1.0; 5], [2, 3], &dev).is_err());
}

// ---------------------------------------------------------------------------------------
// confusion

/// The confusion matrix (`ops::Confusion`, no gradient): the GPU kernel equals the CPU
/// reference and a count written out here, over several batches of unequal sizes (one past
/// a 256-wide workgroup), with ignored pixels, predictions ≥ C (clamped to C − 1) and labels
/// ≥ C (counted apart).
#[test]
fn confusion_matches_the_reference_counts() {
    use wgseg::ops::Confusion;
    use wgseg::Device;
    const C: usize = 5;
    const IGNORE: u32 = 255;
    let batches: Vec<(Vec<u32>, Vec<u32>)> = [(257usize, 70u64), (31, 71), (600, 72)]
        .iter()
        .map(|&(n, seed)| {
            let p = uniform(n, seed, 0.0, 7.0)
                .iter()
                .map(|&v| v as u32)
                .collect();
            let y = uniform(n, seed + 10, 0.0, 7.0)
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 9 == 4 { IGNORE } else { v as u32 })
                .collect();
            (p, y)
        })
        .collect();
    let mut want = vec![0u64; C * C];
    let mut want_bad = 0u64;
    for (p, y) in &batches {
        for (&p, &y) in p.iter().zip(y) {
            if y == IGNORE {
                continue;
            }
            if y as usize >= C {
                want_bad += 1;
                continue;
            }
            want[y as usize * C + (p as usize).min(C - 1)] += 1;
        }
    }
    assert!(
        want_bad > 0 && want.iter().all(|&n| n > 0),
        "the case covers every cell"
    );
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let like = Tensor::zeros([1], &dev).expect("like");
        let mut cm = Confusion::new(C, IGNORE, &like).expect("new");
        for (p, y) in &batches {
            let n = p.len();
            let pt = Tensor::from_u32(p.clone(), [1, n], &dev).expect("pred");
            let yt = Tensor::from_u32(y.clone(), [1, n], &dev).expect("labels");
            cm.add(&pt, &yt).expect("add");
        }
        let (got, bad) = cm.counts().expect("counts");
        assert_eq!(got, want, "{dev:?}");
        assert_eq!(bad, want_bad, "{dev:?}");
        // Shapes and dtypes are checked.
        let a = Tensor::from_u32(vec![0; 4], [4], &dev).expect("a");
        let b = Tensor::from_u32(vec![0; 5], [5], &dev).expect("b");
        let f = Tensor::zeros([4], &dev).expect("f");
        assert!(cm.add(&a, &b).is_err());
        assert!(cm.add(&f, &a).is_err());
    }
    assert!(Confusion::new(0, IGNORE, &Tensor::zeros([1], &Device::Cpu).expect("t")).is_err());
}
