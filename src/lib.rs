//! wgseg: long-tailed semantic segmentation on any GPU.
//!
//! A from-scratch reverse-mode autodiff engine whose kernels are WGSL compute shaders run
//! through `wgpu` (Vulkan, Metal, DX12; Mesa's lavapipe where there is no GPU), checked
//! against a CPU reference backend that computes in `f64`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod autograd;
pub mod device;
pub mod error;
pub mod gpu;
pub mod model;
pub mod nn;
pub mod npy;
pub mod ops;
pub mod shape;
pub mod tensor;
pub mod train;

pub use autograd::{backward, no_grad, Gradients};
pub use device::Device;
pub use error::{Error, Result};
pub use shape::Shape;
pub use tensor::{DType, Tensor};
