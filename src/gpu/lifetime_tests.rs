//! What happens to recorded work when the last handle to a context goes away (inside the
//! crate because it follows a tensor's raw wgpu buffer past the end of its context; the
//! public side, that the context is freed at all, is in tests/device.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::{GpuContext, GpuOptions};
use crate::{Device, Tensor};

/// A private context, or `None` (test skipped) without an adapter unless
/// `WGSEG_REQUIRE_GPU=1`.
pub(crate) fn private_context() -> Option<Arc<GpuContext>> {
    match GpuContext::new(&GpuOptions::default()) {
        Ok(c) => Some(c),
        Err(e) if std::env::var("WGSEG_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("WGSEG_REQUIRE_GPU=1 but no GPU adapter: {e}")
        }
        Err(_) => None,
    }
}

/// Copies the first `n` f32 of `buf` to the host with bare wgpu calls on `device`/`queue`
/// (clones that outlive the context).
fn read_raw(device: &wgpu::Device, queue: &wgpu::Queue, buf: &wgpu::Buffer, n: u64) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("lifetime test staging"),
        size: n * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, n * 4);
    queue.submit([enc.finish()]);
    let slice = staging.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let bytes = slice.get_mapped_range().unwrap().to_vec();
    bytemuck::cast_slice(&bytes).to_vec()
}

/// Dispatches recorded but not flushed when the last `Device` and `Tensor` are dropped are
/// run (by `Drop for GpuContext`), not discarded: their output buffer, followed through a
/// raw wgpu handle, holds the results afterwards.
#[test]
fn work_pending_at_the_last_drop_is_run() {
    let Some(ctx) = private_context() else { return };
    let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
    let weak = Arc::downgrade(&ctx);
    let dev = Device::Gpu(ctx);
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [4], &dev).unwrap();
    let y = x.add_scalar(1.0).unwrap().mul(&x).unwrap();
    let raw = y.gpu_buf("test").unwrap().buffer.clone();
    let Device::Gpu(c) = &dev else { unreachable!() };
    assert_eq!(c.pending_commands(), 2, "both dispatches still unsubmitted");
    drop((x, y, dev));
    assert!(
        weak.upgrade().is_none(),
        "the context outlived its last handle"
    );
    assert_eq!(
        read_raw(&device, &queue, &raw, 4),
        vec![2.0, 6.0, 12.0, 20.0]
    );
}
