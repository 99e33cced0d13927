//! The softmax-family long-tail losses (`wgseg::losses`, docs/longtail.md) against an
//! independent f64 evaluation of every formula (value and closed-form gradient), central
//! finite differences and GPU-vs-CPU parity through the harness, and zero-count classes.
//! Shared helpers: `tests/common/losses.rs`; literal values: `losses_values.rs`;
//! degenerate batches, helpers and errors: `losses_edge.rs`; the training-loss table
//! (`Loss`, `[loss]` keys, flags): `losses_config.rs`.

mod common;
#[path = "common/losses.rs"]
mod losses_common;

use common::*;
use losses_common::*;
use wgseg::Device;

#[test]
fn every_loss_matches_its_spec_formula() {
    for (s, dims) in SHAPES.iter().enumerate() {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 1000 + 10 * s as u64 + k as u64, 7, None);
            against_spec(&format!("{kind:?} {dims:?}"), kind, &inp, COUNTS5);
        }
    }
}

#[test]
fn every_loss_differentiates_and_matches_on_the_gpu() {
    // The harness: CPU backward against f64 central differences, GPU (two contexts)
    // against the CPU, forward and gradient.
    for (s, dims) in [&[2usize, 5, 3, 3][..], &[2, 5, 2, 2], &[6, 5]]
        .iter()
        .enumerate()
    {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 2000 + 10 * s as u64 + k as u64, 5, None);
            if matches!(kind, Kind::Pat { detach: true, .. }) {
                // A detached β is by design not the derivative of the forward: no finite
                // differences; its closed form is checked against `spec`, here GPU vs CPU.
                let cpu = value_and_grad(kind, &inp, COUNTS5, &Device::Cpu);
                if let Some(dev) = gpu() {
                    let got = value_and_grad(kind, &inp, COUNTS5, &dev);
                    assert_close("detached value", &[got.0], &[cpu.0], REDUCTION);
                    assert_close("detached gradient", &got.1, &cpu.1, REDUCTION);
                }
                continue;
            }
            check_op(
                &format!("{kind:?} {dims:?}"),
                &inp,
                Check::new(REDUCTION, REDUCTION),
                |t| run(kind, t, COUNTS5),
            );
        }
    }
}

#[test]
fn zero_count_classes() {
    // Class 3 never occurs in the training set: cb, ldam and blv treat it as the rarest
    // class (count 2), bms drops it from the softmax (its logits get gradient 0).
    let counts = [5000, 800, 120, 0, 2];
    for dims in [&[2usize, 5, 3, 5][..], &[2, 5, 4, 4]] {
        for (k, kind) in kinds(5).iter().enumerate() {
            let inp = inputs(dims, 3000 + k as u64, 6, Some(3));
            against_spec(
                &format!("zero count {kind:?} {dims:?}"),
                kind,
                &inp,
                &counts,
            );
        }
        let inp = inputs(dims, 3100, 6, Some(3));
        let (_, g) = value_and_grad(&Kind::Bms, &inp, &counts, &Device::Cpu);
        let inner: usize = dims[2..].iter().product();
        for b in 0..dims[0] {
            let start = (b * 5 + 3) * inner;
            assert!(g[start..start + inner].iter().all(|&v| v == 0.0), "{g:?}");
        }
    }
    // A labelled pixel of a dropped class: an error on the CPU (the GPU ignores it).
    let mut inp = inputs(&[1, 5, 2, 2], 3200, 0, Some(3));
    inp[1].data[2] = 3.0;
    let t = build(&inp, &Device::Cpu);
    let e = run(&Kind::Bms, &t, &counts).expect_err("dropped class");
    assert!(e.to_string().contains("pixel 2 is labelled 3"), "{e}");
    if let Some(dev) = gpu() {
        let gpu_value = run(&Kind::Bms, &build(&inp, &dev), &counts)
            .expect("gpu")
            .item()
            .expect("read");
        let mut ignored = inp.clone();
        ignored[1].data[2] = IGNORE as f32;
        let (want, _) = value_and_grad(&Kind::Bms, &ignored, &counts, &Device::Cpu);
        assert_close(
            "bms dropped class ignored on the gpu",
            &[f64::from(gpu_value)],
            &[want],
            FORMULA_LOSS,
        );
    }
}
