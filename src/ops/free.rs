//! Free-function forms of the ops that are otherwise only `Tensor` methods, so that every
//! op is reachable as `wgseg::ops::NAME(x, …)` (PyTorch's `torch.NAME`). Each wrapper calls
//! the method of the same name; formulas, shapes and gradients are those of the method.

use crate::error::Result;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// One-input elementwise wrappers: `pub fn name(x) = x.name()`.
macro_rules! unary_fns {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $($(#[$doc])* pub fn $name(x: &Tensor) -> Result<Tensor> {
            x.$name()
        })*
    };
}

/// Two-input broadcasting wrappers: `pub fn name(a, b) = a.name(b)`.
macro_rules! binary_fns {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $($(#[$doc])* pub fn $name(a: &Tensor, b: &Tensor) -> Result<Tensor> {
            a.$name(b)
        })*
    };
}

/// Per-axis reduction wrappers: `pub fn name(x, axis, keepdim) = x.name(axis, keepdim)`.
macro_rules! axis_fns {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $($(#[$doc])* pub fn $name(x: &Tensor, axis: isize, keepdim: bool) -> Result<Tensor> {
            x.$name(axis, keepdim)
        })*
    };
}

unary_fns! {
    /// `−x`; gradient `−g`.
    neg;
    /// `exp(min(x, 88.72))`; gradient `g·y`.
    exp;
    /// `ln(max(x, 1.18e-38))`; gradient `g/x`.
    log;
    /// `√max(x, 0)`; gradient `g/(2y)`.
    sqrt;
    /// `max(x, 0)`; gradient `g` where `x > 0`, else 0.
    relu;
    /// `1/(1 + e^−x)`; gradient `g·y(1 − y)`.
    sigmoid;
    /// `tanh x`; gradient `g(1 − y²)`.
    tanh;
    /// `|x|`; gradient `g·sign(x)`.
    abs;
    /// `x²`; gradient `2x·g`.
    square;
    /// `1/x`; gradient `−g·y²`.
    recip;
    /// Sum of all elements, shape `[]`; gradient `g` broadcast to `x`'s shape.
    sum;
    /// Mean of all elements, shape `[]`; gradient `g/n` broadcast (`1/n` in `f64`).
    mean;
    /// Largest element, shape `[]`; gradient `g` split evenly among the tied maxima.
    max;
    /// Smallest element, shape `[]`; gradient `g` split evenly among the tied minima.
    min;
}

binary_fns! {
    /// `a + b` (NumPy broadcasting); gradients `g`, `g`, summed back to each input's shape.
    add;
    /// `a − b`; gradients `g`, `−g`.
    sub;
    /// `a · b`; gradients `g·b`, `g·a`.
    mul;
    /// `a / b`; gradients `g/b`, `−g·a/b²`.
    div;
    /// `max(a, b)`; the gradient goes to the larger input (to `a` on ties).
    maximum;
    /// `min(a, b)`; the gradient goes to the smaller input (to `a` on ties).
    minimum;
    /// `1.0` where `a = b`, else `0.0` (no gradient).
    eq;
    /// `1.0` where `a ≠ b`, else `0.0` (no gradient).
    ne;
    /// `1.0` where `a < b`, else `0.0` (no gradient).
    lt;
    /// `1.0` where `a ≤ b`, else `0.0` (no gradient).
    le;
    /// `1.0` where `a > b`, else `0.0` (no gradient).
    gt;
    /// `1.0` where `a ≥ b`, else `0.0` (no gradient).
    ge;
}

axis_fns! {
    /// `Σ` along `axis` (negative from the end); gradient `g` broadcast along `axis`.
    sum_axis;
    /// Mean along `axis`; gradient `g/len` broadcast along `axis` (`1/len` in `f64`).
    mean_axis;
    /// Maximum along `axis`; gradient split evenly among the tied maxima.
    max_axis;
    /// Minimum along `axis`; gradient split evenly among the tied minima.
    min_axis;
}

/// `min(max(x, lo), hi)`; gradient `g` where `lo ≤ x ≤ hi`, else 0.
pub fn clamp(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    x.clamp(lo, hi)
}

/// `x + a`; gradient `g`.
pub fn add_scalar(x: &Tensor, a: f64) -> Result<Tensor> {
    x.add_scalar(a)
}

/// `x · a`; gradient `a·g`.
pub fn mul_scalar(x: &Tensor, a: f64) -> Result<Tensor> {
    x.mul_scalar(a)
}

/// `max(x, 1.18e-38)^p`; gradient `p·x^(p−1)·g`.
pub fn powf(x: &Tensor, p: f64) -> Result<Tensor> {
    x.powf(p)
}

/// `Σ` over several `axes` (negative from the end, no duplicates); see
/// [`Tensor::sum_axes`].
pub fn sum_axes(x: &Tensor, axes: &[isize], keepdim: bool) -> Result<Tensor> {
    x.sum_axes(axes, keepdim)
}

/// Mean over several `axes` (negative from the end, no duplicates); see
/// [`Tensor::mean_axes`].
pub fn mean_axes(x: &Tensor, axes: &[isize], keepdim: bool) -> Result<Tensor> {
    x.mean_axes(axes, keepdim)
}

/// Sums a broadcast result back to `shape` (the adjoint of `broadcast_to`).
pub fn sum_to(x: &Tensor, shape: &Shape) -> Result<Tensor> {
    x.sum_to(shape)
}

/// Same values, new shape (free: the storage is shared); gradient `g` reshaped back.
pub fn reshape(x: &Tensor, shape: impl Into<Shape>) -> Result<Tensor> {
    x.reshape(shape)
}
