//! Elementwise unary ops, `y = f(x)` with up to two scalar parameters.
//!
//! Saturating semantics (WGSL does not guarantee IEEE inf/NaN): `exp` clamps its argument
//! at 88.72 (result ≤ f32::MAX), `log` clamps its argument below at the smallest normal f32
//! (result ≥ −87.34), `sqrt` and `pow` clamp their argument at 0 (resp. the smallest
//! normal). The CPU reference applies the same clamps.

use crate::autograd::Op;
use crate::error::Result;
use crate::gpu::{groups_for, Kernel, Shader};
use crate::tensor::{DType, Storage, Tensor};

/// Largest finite f32 (results saturate here).
pub const F32_MAX: f64 = f32::MAX as f64;
/// Smallest positive normal f32 (`log`, `pow` clamp their argument here).
pub const F32_MIN_POS: f64 = f32::MIN_POSITIVE as f64;
/// `exp` argument above which f32 overflows (matches `EXP_MAX_ARG` in the prelude).
pub const EXP_MAX_ARG: f64 = 88.72283;

/// The unary op table. `code()` is the `OP` override of `shaders/unary.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Relu,
    Sigmoid,
    Tanh,
    Abs,
    /// −1, 0 or 1 (no gradient).
    Sign,
    Square,
    Recip,
    /// `min(max(x, lo), hi)`.
    Clamp(f64, f64),
    /// `x + a`.
    AddScalar(f64),
    /// `x · a`.
    MulScalar(f64),
    /// `max(x, 1.18e-38)^p`.
    PowScalar(f64),
    /// 1 if `lo ≤ x ≤ hi`, else 0 (no gradient).
    InRange(f64, f64),
    /// 1 if `x ≠ 0`, else 0 (no gradient).
    NonZero,
    /// `x·Φ(x) = x/2 · (1 + erf(x/√2))` (PyTorch's exact `nn.GELU`). The GPU's erf is
    /// Abramowitz–Stegun 7.1.26 (absolute error ≤ 1.5·10⁻⁷); the CPU reference's is
    /// [`erf`] (f64, ≤ 10⁻¹³).
    Gelu,
    /// `GELU'(x) = Φ(x) + x·φ(x)`, the derivative [`Gelu`](UnaryOp::Gelu)'s backward
    /// multiplies by (no gradient of its own: no double backward).
    GeluGrad,
}

impl UnaryOp {
    /// Op code and scalar parameters as the shader reads them: the `f64` scalars are rounded
    /// to `f32` here, for the GPU's uniform params only (the CPU reference, [`UnaryOp::eval`],
    /// uses them unrounded).
    pub fn code(self) -> (u32, f32, f32) {
        let (code, a, b) = self.code_f64();
        (code, a as f32, b as f32)
    }

    fn code_f64(self) -> (u32, f64, f64) {
        use UnaryOp::*;
        match self {
            Neg => (0, 0.0, 0.0),
            Exp => (1, 0.0, 0.0),
            Log => (2, 0.0, 0.0),
            Sqrt => (3, 0.0, 0.0),
            Relu => (4, 0.0, 0.0),
            Sigmoid => (5, 0.0, 0.0),
            Tanh => (6, 0.0, 0.0),
            Abs => (7, 0.0, 0.0),
            Sign => (8, 0.0, 0.0),
            Square => (9, 0.0, 0.0),
            Recip => (10, 0.0, 0.0),
            Clamp(lo, hi) => (11, lo, hi),
            AddScalar(a) => (12, a, 0.0),
            MulScalar(a) => (13, a, 0.0),
            PowScalar(p) => (14, p, 0.0),
            InRange(lo, hi) => (15, lo, hi),
            NonZero => (16, 0.0, 0.0),
            Gelu => (17, 0.0, 0.0),
            GeluGrad => (18, 0.0, 0.0),
        }
    }

    /// The CPU reference, in f64.
    pub fn eval(self, x: f64) -> f64 {
        use UnaryOp::*;
        match self {
            Neg => -x,
            Exp => x.min(EXP_MAX_ARG).exp().min(F32_MAX),
            Log => x.max(F32_MIN_POS).ln(),
            Sqrt => x.max(0.0).sqrt(),
            Relu => x.max(0.0),
            Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Tanh => x.tanh(),
            Abs => x.abs(),
            Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Square => x * x,
            Recip => 1.0 / x,
            Clamp(lo, hi) => x.max(lo).min(hi),
            AddScalar(a) => x + a,
            MulScalar(a) => x * a,
            PowScalar(p) => x.max(F32_MIN_POS).powf(p).min(F32_MAX),
            InRange(lo, hi) => f64::from(u8::from(x >= lo && x <= hi)),
            NonZero => f64::from(u8::from(x != 0.0)),
            Gelu => 0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)),
            GeluGrad => {
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                0.5 * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2)) + x * pdf
            }
        }
    }
}

/// The error function in f64 (absolute error below 10⁻¹³): its Taylor series for
/// `|x| < 2`, else `1 − erfc(x)` with erfc from its continued fraction (60 terms, evaluated
/// from the tail).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 2.0 {
        // erf(a) = 2/√π Σ (−1)ⁿ a^(2n+1) / (n! (2n+1))
        let (mut term, mut sum) = (a, a);
        for n in 1..200 {
            term *= -a * a / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // erfc(a) = e^(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …))))
        let mut f = a;
        for k in (1..=60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    v.copysign(x)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct UnaryParams {
    pub(crate) n: u32,
    pub(crate) a: f32,
    pub(crate) b: f32,
    pub(crate) _pad: u32,
}

/// Threads per workgroup of the elementwise kernels: a multiple of every vendor's SIMD width
/// (32/64) and the usual sweet spot for memory-bound kernels.
pub const ELEMENTWISE_WG: u32 = 256;

/// Applies `op` elementwise.
pub fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    x.expect_dtype("unary", DType::F32)?;
    let n = x.numel();
    let storage = match x.storage() {
        Storage::Cpu(v) => Storage::Cpu(v.iter().map(|&e| op.eval(e)).collect()),
        Storage::Gpu(b) => {
            let ctx = b.context();
            let out = ctx.alloc_storage(n)?;
            let (code, a, bb) = op.code();
            ctx.launch(
                &Kernel::new(Shader::Unary, "unary")
                    .with("OP", code)
                    .with("WG", ELEMENTWISE_WG),
                &UnaryParams {
                    n: n as u32,
                    a,
                    b: bb,
                    _pad: 0,
                },
                &[b],
                &[&out],
                groups_for(n, ELEMENTWISE_WG),
            )?;
            Storage::Gpu(out)
        }
    };
    Ok(Tensor::from_op(
        storage,
        x.shape().clone(),
        DType::F32,
        Op::Unary(op),
        vec![x.clone()],
    ))
}

/// Backward rule: `∂x = g · f'(x)`, composed from forward ops (`y` is the saved output).
pub(crate) fn unary_backward(
    op: UnaryOp,
    x: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<Option<Tensor>> {
    use UnaryOp::*;
    let d = match op {
        Neg => g.neg()?,
        Exp => g.mul(y)?,
        Log => g.div(x)?,
        Sqrt => g.mul(&y.recip()?.mul_scalar(0.5)?)?,
        Relu => g.mul(&x.unary(InRange(F32_MIN_POS, F32_MAX))?)?,
        Sigmoid => g.mul(&y.mul(&y.neg()?.add_scalar(1.0)?)?)?,
        Tanh => g.mul(&y.square()?.neg()?.add_scalar(1.0)?)?,
        Abs => g.mul(&x.unary(Sign)?)?,
        Square => g.mul(&x.mul_scalar(2.0)?)?,
        Recip => g.mul(&y.square()?)?.neg()?,
        Clamp(lo, hi) => g.mul(&x.unary(InRange(lo, hi))?)?,
        AddScalar(_) => g.clone(),
        MulScalar(a) => g.mul_scalar(a)?,
        PowScalar(p) => g.mul(&x.unary(PowScalar(p - 1.0))?.mul_scalar(p)?)?,
        Gelu => g.mul(&x.unary(GeluGrad)?)?,
        Sign | InRange(..) | NonZero | GeluGrad => return Ok(None),
    };
    Ok(Some(d))
}

impl Tensor {
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        unary(self, op)
    }
    pub fn neg(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sqrt)
    }
    pub fn relu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Relu)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Sigmoid)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Tanh)
    }
    /// PyTorch's exact GELU, `x·Φ(x)`.
    pub fn gelu(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Gelu)
    }
    pub fn abs(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Abs)
    }
    pub fn square(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Square)
    }
    pub fn recip(&self) -> Result<Tensor> {
        unary(self, UnaryOp::Recip)
    }
    /// `min(max(x, lo), hi)`; gradient `g` where `lo ≤ x ≤ hi`, else 0. The bounds are
    /// `f64` (exact on the CPU reference, rounded to `f32` on a GPU).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        unary(self, UnaryOp::Clamp(lo, hi))
    }
    /// `x + a`; gradient `g`. `a` is `f64` (rounded to `f32` on a GPU).
    pub fn add_scalar(&self, a: f64) -> Result<Tensor> {
        unary(self, UnaryOp::AddScalar(a))
    }
    /// `x · a`; gradient `a·g`. `a` is `f64` (rounded to `f32` on a GPU).
    pub fn mul_scalar(&self, a: f64) -> Result<Tensor> {
        unary(self, UnaryOp::MulScalar(a))
    }
    /// `max(x, 1.18e-38)^p`; gradient `p·x^(p−1)·g`. `p` is `f64` (rounded to `f32` on a
    /// GPU).
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        unary(self, UnaryOp::PowScalar(p))
    }
}
