//! Device-level behaviour: errors instead of panics, the buffer pool, batched submission.

mod common;

use std::sync::Arc;

use common::*;
use wgseg::gpu::{Kernel, Shader};
use wgseg::{backward, Device, Error, Tensor};

#[test]
fn oversize_tensors_are_limit_errors() {
    let Some(dev) = gpu() else { return };
    let Device::Gpu(ctx) = &dev else {
        unreachable!()
    };
    let n = (ctx.max_binding_bytes() / 4 + 1) as usize;
    match Tensor::zeros([n], &dev) {
        Err(Error::Limit { requested, max, .. }) => assert!(requested > max),
        Err(e) => panic!("expected Error::Limit, got {e}"),
        Ok(_) => panic!("expected Error::Limit for {n} f32 elements"),
    }
}

#[test]
fn wgpu_validation_errors_come_back_as_errors() {
    let Some(dev) = gpu() else { return };
    let Device::Gpu(ctx) = &dev else {
        unreachable!()
    };
    let x = Tensor::zeros([4], &dev).unwrap();
    // An entry point that does not exist: pipeline creation fails validation.
    let k = Kernel::new(Shader::Unary, "no_such_entry");
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct P([u32; 4]);
    let r = ctx.launch(&k, &P([4, 0, 0, 0]), &[], &[], 1);
    match r {
        Err(Error::Gpu(msg)) => assert!(msg.contains("no_such_entry"), "{msg}"),
        other => panic!("expected Error::Gpu, got {other:?}"),
    }
    // The device stays usable afterwards.
    assert_eq!(x.add_scalar(1.0).unwrap().to_vec().unwrap(), vec![1.0; 4]);
}

#[test]
fn missing_features_and_small_limits_are_errors_before_any_pipeline() {
    use wgseg::gpu::{ArgKind, GpuContext, GpuOptions};
    let Some(_) = gpu() else { return };
    // Subgroups left off: a subgroup kernel is refused by name, whatever the adapter has.
    let ctx = GpuContext::new(&GpuOptions {
        no_subgroups: true,
        ..Default::default()
    })
    .unwrap();
    let kinds = [ArgKind::In, ArgKind::In, ArgKind::Out];
    match ctx.check_supported(&Kernel::new(Shader::MatmulSg, "matmul_sg"), &kinds) {
        Err(Error::Unsupported { kernel, feature }) => {
            assert_eq!(kernel, "matmul_sg.wgsl::matmul_sg");
            assert!(feature.contains("subgroup"), "{feature}");
        }
        other => panic!("expected Error::Unsupported, got {other:?}"),
    }
    let l = ctx.limits().clone();
    // One storage buffer more than the stage allows (16 on GL, 32 on lavapipe).
    let many = vec![ArgKind::In; l.max_storage_buffers_per_shader_stage as usize + 1];
    match ctx.check_supported(&Kernel::new(Shader::Unary, "unary"), &many) {
        Err(Error::Limit {
            what,
            requested,
            max,
        }) => {
            assert!(
                what.contains("storage buffers") && what.contains("unary"),
                "{what}"
            );
            assert_eq!(
                (requested, max),
                (max + 1, u64::from(l.max_storage_buffers_per_shader_stage))
            );
        }
        other => panic!("expected Error::Limit, got {other:?}"),
    }
    // A workgroup larger than the device allows.
    let wg = l.max_compute_invocations_per_workgroup + 1;
    let k = Kernel::new(Shader::Unary, "unary").with("WG", wg);
    match ctx.check_supported(&k, &kinds[..2]) {
        Err(Error::Limit { what, .. }) => assert!(what.contains("invocations"), "{what}"),
        other => panic!("expected Error::Limit, got {other:?}"),
    }
    // What every kernel of the engine asks for fits.
    assert!(ctx
        .check_supported(
            &Kernel::new(Shader::Unary, "unary").with("WG", 256u32),
            &kinds[..2]
        )
        .is_ok());
}

#[test]
fn repeated_steps_plateau_in_memory() {
    let Some(_) = gpu() else { return };
    // A private context so that other tests' allocations do not disturb the counts.
    let Device::Gpu(ctx) = Device::gpu().unwrap() else {
        unreachable!()
    };
    let dev = Device::Gpu(ctx.clone());
    let w = Tensor::from_vec(uniform(64 * 32, 1, -1.0, 1.0), [64, 32], &dev)
        .unwrap()
        .as_param();
    let step = || {
        let x = Tensor::from_vec(uniform(64 * 32, 2, -1.0, 1.0), [64, 32], &dev).unwrap();
        let loss = x
            .mul(&w)
            .unwrap()
            .tanh()
            .unwrap()
            .sum_axis(1, false)
            .unwrap()
            .square()
            .unwrap()
            .mean()
            .unwrap();
        let g = backward(&loss).unwrap();
        g.get(&w).unwrap().sum().unwrap().item().unwrap()
    };
    step();
    step();
    let after_two = ctx.pool_stats();
    for _ in 0..5 {
        step();
    }
    let after_seven = ctx.pool_stats();
    assert_eq!(
        after_seven.created, after_two.created,
        "steps 3..7 must reuse pooled buffers: {after_seven:?}"
    );
    assert_eq!(
        after_seven.live_bytes, after_two.live_bytes,
        "{after_seven:?}"
    );
    assert_eq!(
        after_seven.peak_live_bytes, after_two.peak_live_bytes,
        "{after_seven:?}"
    );
    assert!(after_seven.reused > after_two.reused);
}

#[test]
fn dispatches_are_batched_into_few_submits() {
    let Some(_) = gpu() else { return };
    let Device::Gpu(ctx) = Device::gpu().unwrap() else {
        unreachable!()
    };
    let dev = Device::Gpu(ctx.clone());
    let mut x = Tensor::zeros([16], &dev).unwrap();
    let (d0, s0) = ctx.submit_stats();
    for _ in 0..100 {
        x = x.add_scalar(1.0).unwrap();
    }
    assert_eq!(x.to_vec().unwrap(), vec![100.0; 16]);
    let (d1, s1) = ctx.submit_stats();
    assert_eq!(d1 - d0, 100);
    // 100 dispatches at 32 per flush, plus the readback's flush.
    assert!(
        s1 - s0 <= 100 / wgseg::gpu::recorder::FLUSH_EVERY as u64 + 1,
        "{} submits",
        s1 - s0
    );
}

#[test]
fn profiling_attributes_time_to_kernels() {
    let Some(_) = gpu() else { return };
    let Device::Gpu(ctx) = Device::gpu().unwrap() else {
        unreachable!()
    };
    let dev = Device::Gpu(ctx.clone());
    let x = Tensor::from_vec(uniform(5000, 1, 0.5, 1.0), [5000], &dev).unwrap();
    ctx.synchronize().unwrap();
    let started = std::time::Instant::now();
    ctx.set_profiling(true);
    let y = x.log().unwrap().exp().unwrap().sum().unwrap();
    assert!((y.item().unwrap() - x.sum().unwrap().item().unwrap()).abs() < 1e-2);
    let report = ctx.profile_report();
    let wall = started.elapsed().as_secs_f64();
    // GPU timestamps (lavapipe has them) or wall clock: either way each kernel's time lies
    // within the wall time of the whole profiled block (catches a wrong timestamp period).
    let total: f64 = report.iter().map(|r| r.2).sum();
    assert!(
        total > 0.0 && total <= wall,
        "{total} s profiled in {wall} s"
    );
    if ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        assert_eq!(ctx.profile_clock(), "GPU timestamps");
    }
    ctx.set_profiling(false);
    let calls = |name: &str| {
        report
            .iter()
            .filter(|r| r.0 == name)
            .map(|r| r.1)
            .sum::<u64>()
    };
    assert_eq!(calls("unary.wgsl::unary"), 2, "{report:?}");
    assert_eq!(
        calls("reduce.wgsl::reduce_lanes"),
        4,
        "two sums of two passes each: {report:?}"
    );
    assert!(report.iter().all(|r| r.2 > 0.0));
    assert!(
        ctx.profile_report().is_empty(),
        "profiling off clears the report"
    );
}

/// Dropping the last `Device` and `Tensor` handles frees the context (and with it the pool's
/// buffers), also while dispatches are recorded but unsubmitted, when the recorder holds a
/// uniform arena: nothing the context owns may hold an `Arc<GpuContext>` (a reference cycle
/// would keep it alive for ever and its recorded work would never run).
#[test]
fn dropping_the_last_handles_frees_the_context() {
    let Some(_) = gpu() else { return };
    let Device::Gpu(ctx) = Device::gpu().unwrap() else {
        unreachable!()
    };
    let weak = Arc::downgrade(&ctx);
    let dev = Device::Gpu(ctx);
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [4], &dev).unwrap();
    let y = x.add_scalar(1.0).unwrap().mul(&x).unwrap();
    let Device::Gpu(c) = &dev else { unreachable!() };
    let (dispatches, submits) = c.submit_stats();
    assert_eq!((dispatches, submits), (2, 0), "two dispatches, unsubmitted");
    // A tensor keeps its device alive on its own, and still reads back.
    drop(dev);
    assert!(weak.upgrade().is_some());
    let z = y.exp().unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![2.0, 6.0, 12.0, 20.0]);
    drop((x, y));
    let _pending = z.add_scalar(1.0).unwrap();
    drop(z);
    // `_pending` is the last handle, with its dispatch (and a uniform arena) unsubmitted.
    drop(_pending);
    assert!(
        weak.upgrade().is_none(),
        "the context outlived its last Device and Tensor"
    );
}
