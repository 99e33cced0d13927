//! Every public op through the flat `wgseg::ops::NAME` path (and the prelude): a
//! compile-level inventory of the namespace plus a value check of each call on the CPU
//! reference (exact small cases worked out in the comments).

use wgseg::ops::{BinaryOp, ReduceOp, UnaryOp};
use wgseg::prelude::*;

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64(v.to_vec(), s.to_vec(), &Device::Cpu).unwrap()
}

fn vals(r: Result<Tensor>) -> Vec<f64> {
    r.unwrap().to_vec_f64().unwrap()
}

fn close(got: Vec<f64>, want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn elementwise_ops_through_the_flat_path() {
    let x = t(&[1.0, -2.0, 0.5, 4.0], &[2, 2]);
    let p = t(&[1.0, 4.0, 0.25, 9.0], &[2, 2]);
    close(vals(ops::neg(&x)), &[-1.0, 2.0, -0.5, -4.0]);
    close(
        vals(ops::exp(&x)),
        &[1f64.exp(), (-2f64).exp(), 0.5f64.exp(), 4f64.exp()],
    );
    close(
        vals(ops::log(&p)),
        &[0.0, 4f64.ln(), 0.25f64.ln(), 9f64.ln()],
    );
    close(vals(ops::sqrt(&p)), &[1.0, 2.0, 0.5, 3.0]);
    close(vals(ops::relu(&x)), &[1.0, 0.0, 0.5, 4.0]);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    close(
        vals(ops::sigmoid(&x)),
        &[sig(1.0), sig(-2.0), sig(0.5), sig(4.0)],
    );
    close(
        vals(ops::tanh(&x)),
        &[1f64.tanh(), (-2f64).tanh(), 0.5f64.tanh(), 4f64.tanh()],
    );
    close(vals(ops::abs(&x)), &[1.0, 2.0, 0.5, 4.0]);
    close(vals(ops::square(&x)), &[1.0, 4.0, 0.25, 16.0]);
    close(vals(ops::recip(&x)), &[1.0, -0.5, 2.0, 0.25]);
    close(vals(ops::clamp(&x, -1.0, 2.0)), &[1.0, -1.0, 0.5, 2.0]);
    close(vals(ops::add_scalar(&x, 0.5)), &[1.5, -1.5, 1.0, 4.5]);
    close(vals(ops::mul_scalar(&x, -2.0)), &[-2.0, 4.0, -1.0, -8.0]);
    close(vals(ops::powf(&p, 0.5)), &[1.0, 2.0, 0.5, 3.0]);
    close(
        vals(ops::unary(&x, UnaryOp::Square)),
        &[1.0, 4.0, 0.25, 16.0],
    );

    let y = t(&[2.0, -2.0], &[2]); // broadcast along the last axis
    close(vals(ops::add(&x, &y)), &[3.0, -4.0, 2.5, 2.0]);
    close(vals(ops::sub(&x, &y)), &[-1.0, 0.0, -1.5, 6.0]);
    close(vals(ops::mul(&x, &y)), &[2.0, 4.0, 1.0, -8.0]);
    close(vals(ops::div(&x, &y)), &[0.5, 1.0, 0.25, -2.0]);
    close(vals(ops::maximum(&x, &y)), &[2.0, -2.0, 2.0, 4.0]);
    close(vals(ops::minimum(&x, &y)), &[1.0, -2.0, 0.5, -2.0]);
    close(vals(ops::eq(&x, &y)), &[0.0, 1.0, 0.0, 0.0]);
    close(vals(ops::ne(&x, &y)), &[1.0, 0.0, 1.0, 1.0]);
    close(vals(ops::lt(&x, &y)), &[1.0, 0.0, 1.0, 0.0]);
    close(vals(ops::le(&x, &y)), &[1.0, 1.0, 1.0, 0.0]);
    close(vals(ops::gt(&x, &y)), &[0.0, 0.0, 0.0, 1.0]);
    close(vals(ops::ge(&x, &y)), &[0.0, 1.0, 0.0, 1.0]);
    close(
        vals(ops::binary(&x, &y, BinaryOp::Mul)),
        &[2.0, 4.0, 1.0, -8.0],
    );
    let cond = t(&[1.0, 0.0], &[2]);
    close(vals(ops::where_(&cond, &x, &y)), &[1.0, -2.0, 0.5, -2.0]);
}

#[test]
fn reductions_and_layout_through_the_flat_path() {
    // x = [[1, -2, 3], [4, 5, -6]]
    let x = t(&[1.0, -2.0, 3.0, 4.0, 5.0, -6.0], &[2, 3]);
    close(vals(ops::sum(&x)), &[5.0]);
    close(vals(ops::mean(&x)), &[5.0 / 6.0]);
    close(vals(ops::max(&x)), &[5.0]);
    close(vals(ops::min(&x)), &[-6.0]);
    close(vals(ops::sum_axis(&x, -1, false)), &[2.0, 3.0]);
    close(vals(ops::mean_axis(&x, 0, false)), &[2.5, 1.5, -1.5]);
    close(vals(ops::max_axis(&x, 1, false)), &[3.0, 5.0]);
    close(vals(ops::min_axis(&x, 1, true)), &[-2.0, -6.0]);
    close(vals(ops::sum_axes(&x, &[0, -1], false)), &[5.0]);
    close(vals(ops::mean_axes(&x, &[-2], false)), &[2.5, 1.5, -1.5]);
    close(
        vals(ops::sum_to(&x, &Shape::new(&[1, 3]))),
        &[5.0, 3.0, -3.0],
    );
    close(
        vals(ops::reduce(&x, ReduceOp::Max, 0, false)),
        &[4.0, 5.0, 3.0],
    );
    let am = ops::argmax(&x, 1, false).unwrap();
    assert_eq!(am.to_vec_u32().unwrap(), vec![2, 1]);

    let r = ops::reshape(&x, [3, 2]).unwrap();
    assert_eq!(r.dims(), &[3, 2]);
    close(
        vals(ops::permute(&x, &[1, 0])),
        &[1.0, 4.0, -2.0, 5.0, 3.0, -6.0],
    );
    let b = ops::broadcast_to(&t(&[7.0, 8.0], &[2, 1]), &Shape::new(&[2, 2])).unwrap();
    close(b.to_vec_f64().unwrap(), &[7.0, 7.0, 8.0, 8.0]);
    close(vals(ops::narrow(&x, 1, 1, 2)), &[-2.0, 3.0, 5.0, -6.0]);
    close(
        vals(ops::pad_axis(&t(&[1.0, 2.0], &[1, 2]), 1, 1, 4)),
        &[0.0, 1.0, 2.0, 0.0],
    );
    let c = ops::concat(&[x.clone(), t(&[9.0, 9.0, 9.0], &[1, 3])], 0).unwrap();
    assert_eq!(c.dims(), &[3, 3]);
    close(c.narrow(0, 2, 1).unwrap().to_vec_f64().unwrap(), &[9.0; 3]);
}

#[test]
fn image_and_loss_ops_through_the_flat_path() {
    // One 1-channel 2 × 2 image [[1, 2], [3, 4]].
    let img = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    close(
        vals(ops::max_pool2d(
            &img,
            ops::Pool2d::new((2, 2), (2, 2), (0, 0)),
        )),
        &[4.0],
    );
    let (m, idx) =
        ops::max_pool2d_with_indices(&img, ops::Pool2d::new((2, 2), (1, 1), (0, 0))).unwrap();
    close(m.to_vec_f64().unwrap(), &[4.0]);
    assert_eq!(idx.to_vec_u32().unwrap(), vec![3]);
    // Unpooling the 2×2 window puts its maximum back at flat index 3.
    let k2 = ops::Pool2d::new((2, 2), (2, 2), (0, 0));
    let (m, idx) = ops::max_pool2d_with_indices(&img, k2).unwrap();
    close(
        vals(ops::max_unpool2d(&m, &idx, k2, (2, 2))),
        &[0.0, 0.0, 0.0, 4.0],
    );
    close(
        vals(ops::avg_pool2d(
            &img,
            ops::Pool2d::new((2, 2), (2, 2), (0, 0)).count_include_pad(false),
        )),
        &[2.5],
    );
    close(vals(ops::global_avg_pool2d(&img)), &[2.5]);
    let geom = ops::Pool2d::new((2, 2), (2, 2), (0, 0)).ceil_mode(true);
    assert_eq!(geom.kernel, (2, 2));
    // align_corners: the 3 × 3 resize of a 2 × 2 image puts the means in between.
    let up = ops::interpolate_bilinear(&img, (3, 3), true).unwrap();
    close(
        up.to_vec_f64().unwrap(),
        &[1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
    );
    // A 1 × 1 convolution by 2 with bias 1; its gradients for dy = 1.
    let w = t(&[2.0], &[1, 1, 1, 1]);
    let bias = t(&[1.0], &[1]);
    let p = Conv2dParams::new(1, 0, 1, 1);
    close(
        vals(ops::conv2d(&img, &w, Some(&bias), p)),
        &[3.0, 5.0, 7.0, 9.0],
    );
    let dy = Tensor::ones([1, 1, 2, 2], &Device::Cpu).unwrap();
    close(
        vals(ops::conv2d_grad_input(&dy, &w, img.shape(), p)),
        &[2.0; 4],
    );
    close(
        vals(ops::conv2d_grad_weight(&dy, &img, w.shape(), p)),
        &[10.0],
    );
    // [[1, 2], [3, 4]] · [[1, 0], [0, 2]] and its transposed form.
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let d = t(&[1.0, 0.0, 0.0, 2.0], &[2, 2]);
    close(vals(ops::matmul(&a, &d)), &[1.0, 4.0, 3.0, 8.0]);
    close(
        vals(ops::matmul_t(&a, &d, true, false)),
        &[1.0, 6.0, 2.0, 8.0],
    );
    // softmax of [0, ln 3] is [1/4, 3/4].
    let s = t(&[0.0, 3f64.ln()], &[1, 2]);
    close(vals(ops::softmax(&s, -1)), &[0.25, 0.75]);
    close(vals(ops::log_softmax(&s, 1)), &[0.25f64.ln(), 0.75f64.ln()]);
    // Cross-entropy (a loss, `losses::ce`, not an engine op) of one pixel with logits
    // [0, ln 3] and label 1: −ln(3/4).
    let logits = t(&[0.0, 3f64.ln()], &[1, 2, 1, 1]);
    let labels = Tensor::from_u8(vec![1], [1, 1, 1], &Device::Cpu).unwrap();
    close(
        vals(wgseg::losses::ce(&logits, &labels, &Default::default())),
        &[-(0.75f64.ln())],
    );
    // Batch norm in evaluation with mean 0, var 1 − eps: the identity (γ = 1, β = 0).
    let st = BatchNormState {
        running_mean: Tensor::zeros([1], &Device::Cpu).unwrap(),
        running_var: Tensor::full([1], 1.0 - ops::BN_EPS, &Device::Cpu).unwrap(),
    };
    let one = Tensor::ones([1], &Device::Cpu).unwrap();
    let zero = Tensor::zeros([1], &Device::Cpu).unwrap();
    let (y, none) =
        ops::batch_norm2d(&img, &one, &zero, &st, false, ops::BN_MOMENTUM, ops::BN_EPS).unwrap();
    assert!(none.is_none());
    close(y.to_vec_f64().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn prelude_brings_autograd_and_types() {
    fn run() -> Result<Vec<f64>> {
        let x = Tensor::from_vec(vec![1.0, 2.0], [2], &Device::Cpu)?.as_param();
        let y = ops::square(&x)?;
        let g = backward_with(&y, &Tensor::full([2], 0.5, &Device::Cpu)?)?;
        assert_eq!(y.dtype(), DType::F32);
        {
            let _off = no_grad();
            assert!(!ops::exp(&x)?.requires_grad());
        }
        let loss = ops::sum(&y)?;
        assert_eq!(backward(&loss)?.len(), 1);
        g.get(&x)
            .ok_or_else(|| Error::shape("test", "no gradient"))?
            .to_vec_f64()
    }
    // ∂(Σ 0.5·x²)/∂x = x.
    assert_eq!(run().unwrap(), vec![1.0, 2.0]);
    // `Result` still takes an explicit error type.
    let r: Result<u8, String> = Err("x".into());
    assert!(r.is_err());
}
