//! Tensor operations: shape checks, output allocation, backend dispatch (CPU reference or
//! GPU kernel) and tape recording. Backward rules live next to their forward op.

pub mod binary;
pub mod conv;
pub mod copy;
pub mod cross_entropy;
pub mod fill;
pub mod gemm;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod softmax;
pub mod unary;

pub use binary::BinaryOp;
pub use conv::{conv2d, conv2d_grad_input, conv2d_grad_weight, Conv2dParams};
pub use cross_entropy::cross_entropy;
pub use matmul::{matmul, matmul_t};
pub use norm::{batch_norm2d, BatchNormState, BN_EPS, BN_MOMENTUM};
pub use pool::Pool2d;
pub use reduce::ReduceOp;
pub use softmax::{log_softmax, softmax};
pub use unary::UnaryOp;
