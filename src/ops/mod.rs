//! Tensor operations: shape checks, output allocation, backend dispatch (CPU reference or
//! GPU kernel) and tape recording. Backward rules live next to their forward op.

pub mod binary;
pub mod copy;
pub mod cross_entropy;
pub mod reduce;
pub mod softmax;
pub mod unary;

pub use binary::BinaryOp;
pub use cross_entropy::cross_entropy;
pub use reduce::ReduceOp;
pub use softmax::{log_softmax, softmax};
pub use unary::UnaryOp;
