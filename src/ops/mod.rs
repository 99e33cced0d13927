//! Tensor operations: shape checks, output allocation, backend dispatch (CPU reference or
//! GPU kernel) and tape recording. Backward rules live next to their forward op.
//!
//! Every public op is reachable here as a free function, `wgseg::ops::NAME(x, …)`, next to
//! its op-family module (`ops::pool`, `ops::reduce`, …) and, for most, a `Tensor` method of
//! the same name.

pub mod binary;
pub mod confusion;
pub mod conv;
pub mod copy;
pub mod fill;
mod free;
pub mod gemm;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod softmax;
pub mod unary;

pub use binary::{binary, where_, BinaryOp};
pub use confusion::Confusion;
pub use conv::{conv2d, conv2d_grad_input, conv2d_grad_weight, Conv2dParams};
pub use copy::{broadcast_to, concat, narrow, pad_axis, permute};
pub use free::{
    abs, add, add_scalar, clamp, div, eq, exp, ge, gt, le, log, lt, max, max_axis, maximum, mean,
    mean_axes, mean_axis, min, min_axis, minimum, mul, mul_scalar, ne, neg, powf, recip, relu,
    reshape, sigmoid, sqrt, square, sub, sum, sum_axes, sum_axis, sum_to, tanh,
};
pub use matmul::{matmul, matmul_t};
pub use norm::{
    batch_norm2d, batch_norm2d_with, group_norm, layer_norm2d, Activation, BatchNormState,
    Epilogue, BN_EPS, BN_MOMENTUM,
};
pub use pool::{
    avg_pool2d, global_avg_pool2d, max_pool2d, max_pool2d_with_indices, max_unpool2d, Pool2d,
};
pub use reduce::{argmax, reduce, ReduceOp};
pub use resize::interpolate_bilinear;
pub use softmax::{log_softmax, softmax};
pub use unary::{erf, unary, UnaryOp};
