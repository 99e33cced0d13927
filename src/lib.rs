//! wgseg: long-tailed semantic segmentation on any GPU.
//!
//! A from-scratch reverse-mode autodiff engine whose kernels are WGSL compute shaders run
//! through `wgpu` (Vulkan, Metal, DX12 or GL; Mesa's lavapipe where there is no GPU),
//! checked against a CPU reference backend that computes in `f64`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod autograd;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod fsio;
pub mod gpu;
pub mod losses;
pub mod model;
pub mod nn;
pub mod npy;
pub mod ops;
pub mod optim;
pub mod shape;
pub mod tensor;
pub mod train;

pub use autograd::{backward, backward_with, no_grad, Gradients};
pub use device::Device;
pub use error::{Error, Result};
pub use shape::Shape;
pub use tensor::{DType, Tensor};

/// The names most programs need, for `use wgseg::prelude::*;`: tensors, devices, autograd,
/// errors, the op parameter types, and the `ops` module itself, so that every op reads as
/// `ops::conv2d(..)`, `ops::max_pool2d(..)`, `ops::mean_axes(..)`. The ops are not
/// glob-imported: names such as `log`, `max`, `min`, `eq` or `sum` would shadow the user's
/// own. `Result` defaults its error to [`Error`] and still takes a second parameter, so it
/// does not break code that writes `Result<T, E>`.
pub mod prelude {
    pub use crate::autograd::{backward, backward_with, no_grad, Gradients};
    pub use crate::device::Device;
    pub use crate::error::{Error, Result};
    pub use crate::ops::{self, BatchNormState, Conv2dParams, Pool2d};
    pub use crate::shape::Shape;
    pub use crate::tensor::{DType, Tensor};
}
