//! Constant tensors: `y[i] = value` (`Tensor::full`, `zeros`, `ones`).
//!
//! On a GPU a fill kernel writes the new buffer, so creating a constant neither uploads nor
//! flushes the recorded work (an upload must flush first: `write_buffer` would otherwise
//! overtake recorded commands still using a recycled buffer). No history, no gradient.

use crate::device::Device;
use crate::error::Result;
use crate::gpu::{groups_for, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{DType, Storage, Tensor};

/// Mirrors `Params` of shaders/fill.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FillParams {
    pub(crate) n: u32,
    pub(crate) value: f32,
    pub(crate) _p0: u32,
    pub(crate) _p1: u32,
}

/// An `F32` tensor of `shape` filled with `value` on `dev` (`f64` on the CPU, rounded to
/// `f32` on a GPU).
pub fn full(shape: Shape, value: f64, dev: &Device) -> Result<Tensor> {
    let n = shape.numel();
    let storage = match dev {
        Device::Cpu => Storage::Cpu(vec![value; n]),
        Device::Gpu(ctx) => {
            let out = ctx.alloc_storage(n)?;
            ctx.launch(
                &Kernel::new(Shader::Fill, "fill").with("WG", ELEMENTWISE_WG),
                &FillParams {
                    n: n as u32,
                    value: value as f32,
                    _p0: 0,
                    _p1: 0,
                },
                &[],
                &[&out],
                groups_for(n, ELEMENTWISE_WG),
            )?;
            Storage::Gpu(out)
        }
    };
    Ok(Tensor::from_storage(storage, shape, DType::F32))
}
