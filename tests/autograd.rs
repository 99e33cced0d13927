//! The tape: topological order, accumulation for reused tensors, no_grad, leaves, errors,
//! and the door for fused ops defined outside the engine (`record_custom`).

mod common;

use std::sync::Arc;

use common::*;
use wgseg::autograd::{record_custom, CustomOp};
use wgseg::{backward, backward_with, no_grad, Device, Tensor};

fn devices() -> Vec<Device> {
    std::iter::once(Device::Cpu).chain(gpu()).collect()
}

#[test]
fn reused_tensors_accumulate_gradients() {
    for dev in devices() {
        // f = sum(x·x + 3x) → ∂f/∂x = 2x + 3.
        let x = Tensor::from_vec(vec![1.0, -2.0, 0.5], [3], &dev)
            .unwrap()
            .as_param();
        let f = x
            .mul(&x)
            .unwrap()
            .add(&x.mul_scalar(3.0).unwrap())
            .unwrap()
            .sum()
            .unwrap();
        let g = backward(&f).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![5.0, -1.0, 4.0]);
        assert_eq!(
            f.item().unwrap(),
            1.0 + 4.0 + 0.25 + 3.0 * (1.0 - 2.0 + 0.5)
        );
    }
}

#[test]
fn diamond_graph_sums_both_paths() {
    for dev in devices() {
        // y = exp(x); f = sum(y·y + y) → ∂f/∂x = (2y + 1)·y.
        let x = Tensor::from_vec(vec![0.0, 1.0], [2], &dev)
            .unwrap()
            .as_param();
        let y = x.exp().unwrap();
        let f = y.mul(&y).unwrap().add(&y).unwrap().sum().unwrap();
        let g = backward(&f).unwrap().get(&x).unwrap().to_vec_f64().unwrap();
        let e = std::f64::consts::E;
        assert_close("diamond", &g, &[3.0, (2.0 * e + 1.0) * e], ELEMENTWISE);
    }
}

#[test]
fn several_parameters_and_constants() {
    for dev in devices() {
        let w = Tensor::from_vec(vec![2.0, 3.0], [2], &dev)
            .unwrap()
            .as_param();
        let b = Tensor::from_vec(vec![0.5], [1], &dev).unwrap().as_param();
        let c = Tensor::from_vec(vec![10.0, 20.0], [2], &dev).unwrap();
        let f = w.mul(&c).unwrap().add(&b).unwrap().sum().unwrap();
        let g = backward(&f).unwrap();
        assert_eq!(g.len(), 2, "constants get no gradient");
        assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![10.0, 20.0]);
        assert_eq!(g.get(&b).unwrap().to_vec().unwrap(), vec![2.0]);
        assert!(g.get(&c).is_none());
    }
}

#[test]
fn no_grad_records_nothing_and_restores() {
    let x = Tensor::from_vec(vec![1.0], [1], &Device::Cpu)
        .unwrap()
        .as_param();
    {
        let _g = no_grad();
        let y = x.exp().unwrap();
        assert!(!y.requires_grad());
        assert!(backward(&y).is_err());
        {
            let _inner = no_grad();
        }
        assert!(
            !x.exp().unwrap().requires_grad(),
            "nested guard must not re-enable"
        );
    }
    assert!(x.exp().unwrap().requires_grad());
}

#[test]
fn detach_stops_gradients() {
    let x = Tensor::from_vec(vec![2.0], [1], &Device::Cpu)
        .unwrap()
        .as_param();
    // f = x·detach(x) → ∂f/∂x = detach(x) = 2 (not 2x = 4).
    let f = x.mul(&x.detach()).unwrap().sum().unwrap();
    assert_eq!(
        backward(&f).unwrap().get(&x).unwrap().to_vec().unwrap(),
        vec![2.0]
    );
}

#[test]
fn long_chains_do_not_overflow_the_stack() {
    // 20 000 ops deep: a recursive topological sort would overflow the test thread's stack.
    let x = Tensor::from_vec(vec![1.0], [1], &Device::Cpu)
        .unwrap()
        .as_param();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.add_scalar(0.001).unwrap();
    }
    let g = backward(&y.sum().unwrap()).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![1.0]);
    // Dropping a 300 000-op history must not recurse either.
    for _ in 0..280_000 {
        y = y.add_scalar(0.001).unwrap();
    }
    drop(y);
}

#[test]
fn mixing_devices_is_an_error() {
    let Some(dev) = gpu() else { return };
    let a = Tensor::zeros([2], &Device::Cpu).unwrap();
    let b = Tensor::zeros([2], &dev).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
}

#[test]
fn backward_with_equals_the_sum_detour() {
    // out = softmax(x·w, -1) ⊙ x·w + x·w, non-scalar [2, 3, 5]; upstream gradient g of the
    // same shape: backward_with(out, g) must equal backward(sum(out ⊙ g)).
    let xv = uniform(24, 501, -1.0, 1.0);
    let wv = uniform(20, 502, -1.0, 1.0);
    let gv = uniform(30, 503, -2.0, 2.0);
    for dev in devices() {
        let tol = if matches!(dev, Device::Cpu) {
            F64_REFERENCE
        } else {
            ELEMENTWISE
        };
        let x = Tensor::from_vec(xv.clone(), [2, 3, 4], &dev)
            .unwrap()
            .as_param();
        let w = Tensor::from_vec(wv.clone(), [4, 5], &dev)
            .unwrap()
            .as_param();
        let h = x.matmul(&w).unwrap();
        let out = h.softmax(-1).unwrap().mul(&h).unwrap().add(&h).unwrap();
        // The upstream gradient's own history is ignored (it is a constant).
        let g = Tensor::from_vec(gv.clone(), [2, 3, 5], &dev)
            .unwrap()
            .as_param();
        let direct = backward_with(&out, &g).unwrap();
        let detour = backward(&out.mul(&g.detach()).unwrap().sum().unwrap()).unwrap();
        assert!(direct.get(&g).is_none(), "the seed gets no gradient");
        for (name, p) in [("x", &x), ("w", &w)] {
            let a = direct.get(p).unwrap().to_vec_f64().unwrap();
            let b = detour.get(p).unwrap().to_vec_f64().unwrap();
            assert_close(&format!("backward_with ∂{name} on {dev:?}"), &a, &b, tol);
        }
        // backward(out) is backward_with(out, ones).
        let ones = Tensor::ones([2, 3, 5], &dev).unwrap();
        let a = backward(&out)
            .unwrap()
            .get(&x)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        let b = backward_with(&out, &ones)
            .unwrap()
            .get(&x)
            .unwrap()
            .to_vec_f64()
            .unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn backward_with_rejects_mismatched_gradients() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2], &dev)
            .unwrap()
            .as_param();
        let y = x.exp().unwrap();
        let e = backward_with(&y, &Tensor::ones([4], &dev).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backward_with") && e.contains("[4]") && e.contains("[2, 2]"),
            "{e}"
        );
        let labels = Tensor::from_u32(vec![0, 1, 2, 3], [2, 2], &dev).unwrap();
        let e = backward_with(&y, &labels).unwrap_err().to_string();
        assert!(e.contains("backward_with") && e.contains("F32"), "{e}");
        let c = Tensor::ones([2, 2], &dev).unwrap();
        let e = backward_with(&c, &c).unwrap_err().to_string();
        assert!(e.contains("does not depend"), "{e}");
    }
    let Some(dev) = gpu() else { return };
    let x = Tensor::zeros([3], &dev).unwrap().as_param();
    let y = x.exp().unwrap();
    let e = backward_with(&y, &Tensor::ones([3], &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("backward_with") && e.contains("different devices"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// The door for fused ops: autograd::record_custom

/// `y = a·x + b` (elementwise; `a` and `b` tensors of `x`'s shape, `b` a constant) computed
/// by hand, its backward `(a·g, x·g, None)` written in the op.
struct Affine;

impl CustomOp for Affine {
    fn name(&self) -> &'static str {
        "affine"
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> wgseg::Result<Vec<Option<Tensor>>> {
        let (x, a) = (&inputs[0], &inputs[1]);
        Ok(vec![Some(a.mul(g)?), Some(x.mul(g)?), None])
    }
}

/// `affine(x, a, b)` through the door: the forward under `no_grad`, then recorded.
fn affine(x: &Tensor, a: &Tensor, b: &Tensor) -> wgseg::Result<Tensor> {
    let y = {
        let _g = no_grad();
        x.mul(a)?.add(b)?
    };
    assert!(!y.requires_grad(), "the forward itself is not on the tape");
    record_custom(&y, &[x, a, b], Arc::new(Affine))
}

#[test]
fn custom_ops_backpropagate_through_their_rule() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, -2.0, 0.5], [3], &dev)
            .unwrap()
            .as_param();
        let a = Tensor::from_vec(vec![3.0, 0.25, -1.0], [3], &dev)
            .unwrap()
            .as_param();
        let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], [3], &dev).unwrap();
        let y = affine(&x, &a, &b).unwrap();
        assert!(y.requires_grad());
        assert_eq!(y.to_vec().unwrap(), vec![13.0, 19.5, 29.5]);
        // f = Σ y·x: x is used by the custom op and again outside it, so its gradient
        // accumulates: ∂f/∂x = a·x + y, ∂f/∂a = x·x.
        let f = y.mul(&x).unwrap().sum().unwrap();
        let g = backward(&f).unwrap();
        assert_eq!(
            g.get(&x).unwrap().to_vec().unwrap(),
            vec![3.0 + 13.0, -0.5 + 19.5, -0.5 + 29.5]
        );
        assert_eq!(g.get(&a).unwrap().to_vec().unwrap(), vec![1.0, 4.0, 0.25]);
        assert!(g.get(&b).is_none(), "b is a constant");
    }
}

#[test]
fn custom_ops_record_only_with_gradients() {
    for dev in devices() {
        let x = Tensor::from_vec(vec![1.0, 2.0], [2], &dev).unwrap();
        let a = Tensor::ones([2], &dev).unwrap();
        let b = Tensor::zeros([2], &dev).unwrap();
        // No input requires a gradient: no node.
        let y = affine(&x, &a, &b).unwrap();
        assert!(!y.requires_grad());
        assert!(backward(&y).is_err());
        // Under no_grad: no node either.
        let xp = x.as_param();
        let y = {
            let _g = no_grad();
            affine(&xp, &a, &b).unwrap()
        };
        assert!(!y.requires_grad());
        // The recorded tensor shares the forward's storage (nothing is copied).
        assert_eq!(y.to_vec().unwrap(), vec![1.0, 2.0]);
    }
}

/// A rule that returns the wrong number of gradients.
struct Broken;

impl CustomOp for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }

    fn backward(&self, _: &[Tensor], _: &Tensor, g: &Tensor) -> wgseg::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone()), Some(g.clone())])
    }
}

#[test]
fn custom_op_errors_name_the_op() {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(vec![1.0, 2.0], [2], &dev)
        .unwrap()
        .as_param();
    // One gradient per input, or an error naming the op.
    let y = record_custom(&x.detach(), &[&x], Arc::new(Broken)).unwrap();
    let e = backward(&y).unwrap_err().to_string();
    assert!(
        e.contains("broken") && e.contains("2 gradients for 1 inputs"),
        "{e}"
    );
    // A gradient of the wrong shape is refused by the tape, naming the op.
    let z = Tensor::from_vec(vec![0.0; 3], [3], &dev).unwrap();
    let y = record_custom(&z, &[&x], Arc::new(Triple)).unwrap();
    let e = backward(&y).unwrap_err().to_string();
    assert!(e.contains("triple"), "{e}");
    // Inputs on another device than the output.
    if let Some(gpu) = gpu() {
        let on_gpu = Tensor::zeros([2], &gpu).unwrap();
        assert!(record_custom(&on_gpu, &[&x], Arc::new(Triple)).is_err());
    }
}

/// `y = 3·x` (its backward returns `3·g`, of `g`'s shape).
struct Triple;

impl CustomOp for Triple {
    fn name(&self) -> &'static str {
        "triple"
    }

    fn backward(&self, _: &[Tensor], _: &Tensor, g: &Tensor) -> wgseg::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.mul_scalar(3.0)?)])
    }
}
