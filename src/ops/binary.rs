//! Broadcasting binary ops (NumPy rules), comparisons and `where`.

use crate::autograd::Op;
use crate::error::Result;
use crate::gpu::strided::StridedParams;
use crate::gpu::{groups_for, strided, Kernel, Shader};
use crate::ops::unary::{UnaryOp, ELEMENTWISE_WG};
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

/// The binary op table. `code()` is the `OP` override of `shaders/binary.wgsl`.
/// Comparisons return 1.0 or 0.0 and have no gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The CPU reference.
    pub fn eval(self, x: f64, y: f64) -> f64 {
        use BinaryOp::*;
        let b = |c: bool| f64::from(u8::from(c));
        match self {
            Add => x + y,
            Sub => x - y,
            Mul => x * y,
            Div => x / y,
            Max => x.max(y),
            Min => x.min(y),
            Eq => b(x == y),
            Ne => b(x != y),
            Lt => b(x < y),
            Le => b(x <= y),
            Gt => b(x > y),
            Ge => b(x >= y),
        }
    }

    fn is_comparison(self) -> bool {
        self.code() >= BinaryOp::Eq.code()
    }
}

/// Runs a strided elementwise kernel over `out_shape` on the CPU: `f` gets the operand values.
fn cpu_strided(p: &StridedParams, inputs: &[&[f64]], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut vals = vec![0.0; inputs.len()];
    (0..p.n as usize)
        .map(|i| {
            for (k, inp) in inputs.iter().enumerate() {
                vals[k] = inp[strided::operand_index(p, k, i)];
            }
            f(&vals)
        })
        .collect()
}

/// `out = a ∘ b` with broadcasting.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    a.expect_dtype("binary", DType::F32)?;
    b.expect_dtype("binary", DType::F32)?;
    same_device("binary", &[a, b])?;
    let shape = Shape::broadcast("binary", a.shape(), b.shape())?;
    let p = StridedParams::new(
        "binary",
        &shape,
        &[
            a.shape().broadcast_strides(&shape),
            b.shape().broadcast_strides(&shape),
        ],
        &[],
    )?;
    let storage = match (a.storage(), b.storage()) {
        (Storage::Gpu(ba), Storage::Gpu(bb)) => {
            let ctx = ba.context();
            let out = ctx.alloc_storage(shape.numel())?;
            let flat = a.shape() == &shape && b.shape() == &shape;
            ctx.launch(
                &Kernel::new(Shader::Binary, "binary")
                    .with("OP", op.code())
                    .with("WG", ELEMENTWISE_WG)
                    .with("FLAT", u32::from(flat))
                    .with("RANK", p.rank),
                &p,
                &[ba, bb],
                &[&out],
                groups_for(shape.numel(), ELEMENTWISE_WG),
            )?;
            Storage::Gpu(out)
        }
        _ => Storage::Cpu(cpu_strided(
            &p,
            &[a.cpu_data("binary")?, b.cpu_data("binary")?],
            |v| op.eval(v[0], v[1]),
        )),
    };
    let inputs = if op.is_comparison() {
        vec![]
    } else {
        vec![a.clone(), b.clone()]
    };
    Ok(Tensor::from_op(
        storage,
        shape,
        DType::F32,
        Op::Binary(op),
        inputs,
    ))
}

/// `out = cond ≠ 0 ? a : b`, all three broadcast together. No gradient flows to `cond`.
pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    for t in [cond, a, b] {
        t.expect_dtype("where", DType::F32)?;
    }
    same_device("where", &[cond, a, b])?;
    let shape = Shape::broadcast(
        "where",
        &Shape::broadcast("where", cond.shape(), a.shape())?,
        b.shape(),
    )?;
    let strides: Vec<Vec<usize>> = [cond, a, b]
        .iter()
        .map(|t| t.shape().broadcast_strides(&shape))
        .collect();
    let p = StridedParams::new("where", &shape, &strides, &[])?;
    let storage = match (cond.storage(), a.storage(), b.storage()) {
        (Storage::Gpu(bc), Storage::Gpu(ba), Storage::Gpu(bb)) => {
            let ctx = bc.context();
            let out = ctx.alloc_storage(shape.numel())?;
            ctx.launch(
                &Kernel::new(Shader::Select, "where_select")
                    .with("WG", ELEMENTWISE_WG)
                    .with("RANK", p.rank),
                &p,
                &[bc, ba, bb],
                &[&out],
                groups_for(shape.numel(), ELEMENTWISE_WG),
            )?;
            Storage::Gpu(out)
        }
        _ => Storage::Cpu(cpu_strided(
            &p,
            &[
                cond.cpu_data("where")?,
                a.cpu_data("where")?,
                b.cpu_data("where")?,
            ],
            |v| if v[0] != 0.0 { v[1] } else { v[2] },
        )),
    };
    Ok(Tensor::from_op(
        storage,
        shape,
        DType::F32,
        Op::Where,
        vec![cond.clone(), a.clone(), b.clone()],
    ))
}

/// Backward of `binary`: gradients reduced back to each operand's shape.
pub(crate) fn binary_backward(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    g: &Tensor,
) -> Result<[Option<Tensor>; 2]> {
    use BinaryOp::*;
    let (ga, gb) = match op {
        Add => (g.clone(), g.clone()),
        Sub => (g.clone(), g.neg()?),
        Mul => (g.mul(b)?, g.mul(a)?),
        Div => (g.div(b)?, g.mul(out)?.div(b)?.neg()?),
        // Ties send the gradient to `a` (max) / `a` (min), like a select.
        Max => {
            let m = a.ge(b)?;
            let ga = g.mul(&m)?;
            (ga.clone(), g.sub(&ga)?)
        }
        Min => {
            let m = a.le(b)?;
            let ga = g.mul(&m)?;
            (ga.clone(), g.sub(&ga)?)
        }
        Eq | Ne | Lt | Le | Gt | Ge => return Ok([None, None]),
    };
    Ok([Some(ga.sum_to(a.shape())?), Some(gb.sum_to(b.shape())?)])
}

/// Backward of `where`: `g` goes to `a` where `cond ≠ 0`, to `b` elsewhere.
pub(crate) fn where_backward(
    cond: &Tensor,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
) -> Result<[Option<Tensor>; 3]> {
    let ga = g.mul(&cond.unary(UnaryOp::NonZero)?)?;
    let gb = g.sub(&ga)?;
    Ok([
        None,
        Some(ga.sum_to(a.shape())?),
        Some(gb.sum_to(b.shape())?),
    ])
}

impl Tensor {
    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Add)
    }
    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Sub)
    }
    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Mul)
    }
    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Div)
    }
    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Max)
    }
    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Min)
    }
    pub fn eq(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Eq)
    }
    pub fn ne(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Ne)
    }
    pub fn lt(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Lt)
    }
    pub fn le(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Le)
    }
    pub fn gt(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Gt)
    }
    pub fn ge(&self, o: &Tensor) -> Result<Tensor> {
        binary(self, o, BinaryOp::Ge)
    }
    /// `self ≠ 0 ? a : b`.
    pub fn where_(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        where_(self, a, b)
    }
}
