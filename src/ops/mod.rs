//! Tensor operations: shape checks, output allocation, backend dispatch (CPU reference or
//! GPU kernel) and tape recording. Backward rules live next to their forward op.

pub mod binary;
pub mod copy;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod unary;

pub use binary::BinaryOp;
pub use matmul::{matmul, matmul_t};
pub use norm::{batch_norm2d, BatchNormState, BN_EPS, BN_MOMENTUM};
pub use reduce::ReduceOp;
pub use unary::UnaryOp;
