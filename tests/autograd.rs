//! The tape: topological order, accumulation for reused tensors, no_grad, leaves, errors.

mod common;

use common::*;
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
