//! Softmax and log-softmax: GPU-vs-CPU parity, gradient checks and shape/dtype errors.
//! (Cross-entropy is a loss, `losses::ce`: tests/ce.rs.)

mod common;

use common::*;
use wgseg::{backward, Device, Tensor};

/// Gradient of `sum(f(inputs) ⊙ w)` with respect to input 0, computed on `dev`.
fn grad_of(
    dev: &Device,
    inputs: &[Input],
    f: &dyn Fn(&[Tensor]) -> wgseg::Result<Tensor>,
) -> Vec<f64> {
    let ts: Vec<Tensor> = inputs
        .iter()
        .map(|i| {
            let t = if i.labels {
                Tensor::from_u32(
                    i.data.iter().map(|&v| v as u32).collect(),
                    i.shape.clone(),
                    dev,
                )
            } else {
                Tensor::from_vec(i.data.clone(), i.shape.clone(), dev)
            }
            .expect("upload");
            if i.grad {
                t.as_param()
            } else {
                t
            }
        })
        .collect();
    let out = f(&ts).expect("forward");
    let w = Tensor::from_vec(uniform(out.numel(), 5, -1.0, 1.0), out.shape().clone(), dev)
        .expect("weights");
    let grads = backward(&out.mul(&w).and_then(|t| t.sum()).expect("loss")).expect("backward");
    grads
        .get(&ts[0])
        .expect("gradient")
        .to_vec_f64()
        .expect("read")
}

/// GPU gradients against CPU gradients only (for inputs where f64 finite differences at the
/// harness's step are not meaningful, e.g. exact ties between ±1e4 logits).
fn check_grads_gpu_vs_cpu(
    name: &str,
    inputs: &[Input],
    tol: Tol,
    f: &dyn Fn(&[Tensor]) -> wgseg::Result<Tensor>,
) {
    let cpu = grad_of(&Device::Cpu, inputs, f);
    assert!(
        cpu.iter().all(|v| v.is_finite()),
        "{name}: cpu gradient not finite"
    );
    let Some(dev) = gpu() else { return };
    let got = grad_of(&dev, inputs, f);
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{name}: gpu gradient not finite"
    );
    assert_close(&format!("{name}: gpu gradient"), &got, &cpu, tol);
}

// ---------------------------------------------------------------------------------------
// softmax / log_softmax

/// (shape, axis): axis 1 of NCHW (inner = H·W contiguous), the last axis, C = 1, C = 19,
/// columns one past a workgroup (257) and several workgroups (514).
const SOFTMAX_CASES: &[(&[usize], isize)] = &[
    (&[1], 0),
    (&[2, 3, 4, 5], 1),
    (&[3, 1, 2, 2], 1),
    (&[1, 19, 3, 5], 1),
    (&[7, 19], -1),
    (&[2, 4, 3], -1),
    (&[3, 5, 4], 0),
    (&[257, 3], -1),
    (&[2, 5, 257], 1),
];

#[test]
fn softmax_and_log_softmax_match_and_differentiate() {
    for (k, (shape, axis)) in SOFTMAX_CASES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = uniform(n, 400 + k as u64, -3.0, 3.0);
        let inp = [Input::param(shape.to_vec(), x)];
        check_op(
            &format!("softmax {shape:?} axis {axis}"),
            &inp,
            Check::new(REDUCTION, REDUCTION),
            |t| t[0].softmax(*axis),
        );
        check_op(
            &format!("log_softmax {shape:?} axis {axis}"),
            &inp,
            Check::new(REDUCTION, REDUCTION),
            |t| t[0].log_softmax(*axis),
        );
    }
}

#[test]
fn softmax_extreme_logits_stay_finite_and_match() {
    // Well-separated ±1e4 logits: saturated (one-hot) softmax, log-softmax of order −2e4.
    for (shape, axis) in [(&[2usize, 5, 3, 2][..], 1isize), (&[4, 7][..], -1)] {
        let n: usize = shape.iter().product();
        let x = distinct(n, 41, -1e4, 1e4);
        let inp = [Input::param(shape.to_vec(), x)];
        check_op(
            &format!("softmax extreme {shape:?}"),
            &inp,
            Check::new(REDUCTION, REDUCTION),
            |t| t[0].softmax(axis),
        );
        check_op(
            &format!("log_softmax extreme {shape:?}"),
            &inp,
            Check::new(REDUCTION, REDUCTION),
            |t| t[0].log_softmax(axis),
        );
    }
    // Exact ties at +1e4 and −1e4, mixed with moderate values (columns along axis 1).
    let x = vec![
        1e4, 0.5, -3.0, // column (0, 0) is x[0], x[3], x[6]: see shape [1, 3, 3]
        1e4, -1e4, 2.0, //
        -1e4, -1e4, 1.0,
    ];
    let inp = [Input::param([1, 3, 3], x)];
    let f_sm = |t: &[Tensor]| t[0].softmax(1);
    let f_lsm = |t: &[Tensor]| t[0].log_softmax(1);
    for (name, f) in [
        (
            "softmax ties",
            &f_sm as &dyn Fn(&[Tensor]) -> wgseg::Result<Tensor>,
        ),
        ("log_softmax ties", &f_lsm),
    ] {
        check_op(name, &inp, Check::forward_only(REDUCTION), f);
        check_grads_gpu_vs_cpu(name, &inp, REDUCTION, f);
        for dev in std::iter::once(Device::Cpu).chain(gpu()) {
            let t = Tensor::from_vec(inp[0].data.clone(), [1, 3, 3], &dev).expect("upload");
            let y = f(&[t]).expect("forward").to_vec().expect("read");
            assert!(y.iter().all(|v| v.is_finite()), "{name}: {y:?}");
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_and_log_softmax_is_its_log() {
    let x = uniform(2 * 19 * 6, 7, -5.0, 5.0);
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let t = Tensor::from_vec(x.clone(), [2, 19, 2, 3], &dev).expect("upload");
        let s = t.softmax(1).expect("softmax");
        let sums = s.sum_axis(1, false).expect("sum").to_vec().expect("read");
        assert!(sums.iter().all(|v| (v - 1.0).abs() < 1e-5), "{sums:?}");
        let l = t.log_softmax(1).expect("log_softmax").exp().expect("exp");
        assert_close(
            "exp(log_softmax) vs softmax",
            &l.to_vec_f64().expect("read"),
            &s.to_vec_f64().expect("read"),
            REDUCTION,
        );
    }
}

#[test]
fn softmax_rejects_bad_axes_and_dtypes() {
    for dev in std::iter::once(Device::Cpu).chain(gpu()) {
        let x = Tensor::zeros([2, 3, 2, 2], &dev).expect("x");
        let y = Tensor::from_u32(vec![0; 8], [2, 2, 2], &dev).expect("y");
        assert!(x.softmax(4).is_err());
        assert!(y.log_softmax(0).is_err());
    }
}

#[test]
fn folded_grids_match_the_cpu() {
    // With 4 workgroups per grid dimension injected: 1300 columns/pixels = 6 workgroups
    // (folded 2-D), 4400 = 18 workgroups (folded 3-D).
    for (k, n) in [1300usize, 4400].into_iter().enumerate() {
        let x = uniform(3 * n, 900 + k as u64, -3.0, 3.0);
        for log in [false, true] {
            check_folded(
                &format!("folded softmax log={log} columns={n}"),
                &[Input::param([1, 3, n], x.clone())],
                Check::new(REDUCTION, REDUCTION),
                |t| {
                    if log {
                        t[0].log_softmax(1)
                    } else {
                        t[0].softmax(1)
                    }
                },
            );
        }
    }
}
