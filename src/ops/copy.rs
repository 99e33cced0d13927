//! Layout ops as explicit copies: permute, broadcast_to, narrow (slice), concat, and the
//! zero-padding that is narrow's backward. All run one strided-copy kernel, except that
//! narrow, concat and padding along an axis whose inner part is long contiguous runs (a
//! channel concat of NCHW maps) are buffer-to-buffer copies of those runs, no kernel.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::strided::{operand_index, StridedParams};
use crate::gpu::{groups_for, GpuBuf, Kernel, Shader};
use crate::ops::unary::ELEMENTWISE_WG;
use crate::shape::Shape;
use crate::tensor::{same_device, Storage, Tensor};

/// Copies `src` (read through `p`'s operand 0) into `dst` (operand 1) over `p.shape`.
fn copy_into(src: &Storage, dst: &mut Storage, p: &StridedParams) -> Result<()> {
    match (src, dst) {
        (Storage::Cpu(s), Storage::Cpu(d)) => {
            for i in 0..p.n as usize {
                d[operand_index(p, 1, i)] = s[operand_index(p, 0, i)];
            }
            Ok(())
        }
        (Storage::Gpu(s), Storage::Gpu(d)) => launch_copy(s, d, p),
        _ => Err(Error::Device {
            op: "copy",
            a: "cpu".into(),
            b: "gpu".into(),
        }),
    }
}

fn launch_copy(s: &GpuBuf, d: &GpuBuf, p: &StridedParams) -> Result<()> {
    s.context().launch(
        &Kernel::new(Shader::Copy, "strided_copy")
            .with("WG", ELEMENTWISE_WG)
            .with("RANK", p.rank),
        p,
        &[s],
        &[d],
        groups_for(p.n as usize, ELEMENTWISE_WG),
    )
}

/// At most this many buffer copies replace one strided-copy kernel ...
const MAX_RUNS: usize = 64;
/// ... each of at least this many elements (shorter runs are cheaper in one kernel).
const MIN_RUN: usize = 256;

/// Copies `blocks` runs of `run` elements (run `b` from element `src_at.0 + b·src_at.1`
/// to `dst_at.0 + b·dst_at.1`) as buffer copies when both are GPU buffers and the runs are
/// few and long enough; `false` (nothing recorded) otherwise.
fn copy_runs(
    (src, src_at): (&Storage, (usize, usize)),
    (dst, dst_at): (&Storage, (usize, usize)),
    blocks: usize,
    run: usize,
) -> Result<bool> {
    match (src, dst) {
        (Storage::Gpu(s), Storage::Gpu(d)) if blocks <= MAX_RUNS && run >= MIN_RUN => {
            s.context()
                .copy_runs((s, src_at), (d, dst_at), blocks, run)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Elements before and after `axis` of `dims`: the run structure of a copy along it.
fn outer_inner(dims: &[usize], axis: usize) -> (usize, usize) {
    (
        dims[..axis].iter().product(),
        dims[axis + 1..].iter().product(),
    )
}

/// Fresh storage for `n` elements on the device of `like`; zeroed if `zero`.
fn alloc_like(like: &Tensor, n: usize, zero: bool) -> Result<Storage> {
    match like.storage() {
        Storage::Cpu(_) => Ok(Storage::Cpu(vec![0.0; n])),
        Storage::Gpu(b) => {
            let out = b.context().alloc_storage(n)?;
            if zero {
                b.context().clear(&out)?;
            }
            Ok(Storage::Gpu(out))
        }
    }
}

/// Reorders dimensions: output dim `i` is input dim `perm[i]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let r = x.shape().rank();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::shape(
            "permute",
            format!(
                "{perm:?} is not a permutation of the {r} dims of {}",
                x.shape()
            ),
        ));
    }
    let shape = Shape(perm.iter().map(|&p| x.dims()[p]).collect());
    let xs = x.shape().strides();
    let p = StridedParams::new(
        "permute",
        &shape,
        &[perm.iter().map(|&p| xs[p]).collect(), shape.strides()],
        &[0, 0],
    )?;
    let mut out = alloc_like(x, shape.numel(), false)?;
    copy_into(x.storage(), &mut out, &p)?;
    Ok(Tensor::from_op(
        out,
        shape,
        x.dtype(),
        Op::Permute(perm.to_vec()),
        vec![x.clone()],
    ))
}

/// Expands size-1 (and missing leading) dims to `shape`.
pub fn broadcast_to(x: &Tensor, shape: &Shape) -> Result<Tensor> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    if Shape::broadcast("broadcast_to", x.shape(), shape)? != *shape {
        return Err(Error::shape(
            "broadcast_to",
            format!("cannot broadcast {} to {shape}", x.shape()),
        ));
    }
    let p = StridedParams::new(
        "broadcast_to",
        shape,
        &[x.shape().broadcast_strides(shape), shape.strides()],
        &[0, 0],
    )?;
    let mut out = alloc_like(x, shape.numel(), false)?;
    copy_into(x.storage(), &mut out, &p)?;
    Ok(Tensor::from_op(
        out,
        shape.clone(),
        x.dtype(),
        Op::BroadcastTo,
        vec![x.clone()],
    ))
}

/// The sub-tensor `start..start+len` along `axis`.
pub fn narrow(x: &Tensor, axis: isize, start: usize, len: usize) -> Result<Tensor> {
    let ax = x.shape().axis("narrow", axis)?;
    if start + len > x.dims()[ax] {
        return Err(Error::shape(
            "narrow",
            format!(
                "range {start}..{} exceeds dim {ax} of {}",
                start + len,
                x.shape()
            ),
        ));
    }
    let mut d = x.dims().to_vec();
    d[ax] = len;
    let shape = Shape(d);
    let xs = x.shape().strides();
    let p = StridedParams::new(
        "narrow",
        &shape,
        &[xs.clone(), shape.strides()],
        &[start * xs[ax], 0],
    )?;
    let mut out = alloc_like(x, shape.numel(), false)?;
    let (outer, inner) = outer_inner(x.dims(), ax);
    let full = x.dims()[ax] * inner;
    if !copy_runs(
        (x.storage(), (start * inner, full)),
        (&out, (0, len * inner)),
        outer,
        len * inner,
    )? {
        copy_into(x.storage(), &mut out, &p)?;
    }
    Ok(Tensor::from_op(
        out,
        shape,
        x.dtype(),
        Op::Narrow { axis: ax, start },
        vec![x.clone()],
    ))
}

/// Places `x` at `start` along `axis` in a zero tensor whose `axis` has length `full`
/// (the backward of `narrow`).
pub fn pad_axis(x: &Tensor, axis: usize, start: usize, full: usize) -> Result<Tensor> {
    if axis >= x.shape().rank() || start + x.dims()[axis] > full {
        return Err(Error::shape(
            "pad_axis",
            format!(
                "cannot place {} at {start} of {full} along {axis}",
                x.shape()
            ),
        ));
    }
    let mut d = x.dims().to_vec();
    d[axis] = full;
    let shape = Shape(d);
    let os = shape.strides();
    let p = StridedParams::new(
        "pad_axis",
        x.shape(),
        &[x.shape().strides(), os.clone()],
        &[0, start * os[axis]],
    )?;
    let mut out = alloc_like(x, shape.numel(), true)?;
    let (outer, inner) = outer_inner(x.dims(), axis);
    let run = x.dims()[axis] * inner;
    if !copy_runs(
        (x.storage(), (0, run)),
        (&out, (start * inner, full * inner)),
        outer,
        run,
    )? {
        copy_into(x.storage(), &mut out, &p)?;
    }
    Ok(Tensor::from_op(
        out,
        shape,
        x.dtype(),
        Op::PadAxis { axis, start },
        vec![x.clone()],
    ))
}

/// Joins tensors along `axis`; all other dims must agree.
pub fn concat(xs: &[Tensor], axis: isize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::shape("concat", "no tensors to concatenate"))?;
    let ax = first.shape().axis("concat", axis)?;
    same_device("concat", &xs.iter().collect::<Vec<_>>())?;
    let mut d = first.dims().to_vec();
    d[ax] = 0;
    for t in xs {
        let ok = t.shape().rank() == d.len()
            && t.dtype() == first.dtype()
            && t.dims()
                .iter()
                .enumerate()
                .all(|(i, &v)| i == ax || v == d[i]);
        if !ok {
            return Err(Error::shape(
                "concat",
                format!(
                    "{} does not match {} outside axis {ax}",
                    t.shape(),
                    first.shape()
                ),
            ));
        }
        d[ax] += t.dims()[ax];
    }
    let shape = Shape(d);
    let os = shape.strides();
    let mut out = alloc_like(first, shape.numel(), false)?;
    let mut at = 0;
    let (outer, inner) = outer_inner(shape.dims(), ax);
    for t in xs {
        let run = t.dims()[ax] * inner;
        if !copy_runs(
            (t.storage(), (0, run)),
            (&out, (at * inner, shape.dims()[ax] * inner)),
            outer,
            run,
        )? {
            let p = StridedParams::new(
                "concat",
                t.shape(),
                &[t.shape().strides(), os.clone()],
                &[0, at * os[ax]],
            )?;
            copy_into(t.storage(), &mut out, &p)?;
        }
        at += t.dims()[ax];
    }
    let sizes = xs.iter().map(|t| t.dims()[ax]).collect();
    Ok(Tensor::from_op(
        out,
        shape,
        first.dtype(),
        Op::Concat { axis: ax, sizes },
        xs.to_vec(),
    ))
}

/// Backward of `permute`: the inverse permutation.
pub(crate) fn permute_backward(perm: &[usize], g: &Tensor) -> Result<Tensor> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    g.permute(&inv)
}

/// Backward of `concat`: the slices of `g`.
pub(crate) fn concat_backward(
    axis: usize,
    sizes: &[usize],
    g: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let mut at = 0;
    sizes
        .iter()
        .map(|&s| {
            let r = g.narrow(axis as isize, at, s).map(Some);
            at += s;
            r
        })
        .collect()
}

impl Tensor {
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        permute(self, perm)
    }
    pub fn broadcast_to(&self, shape: &Shape) -> Result<Tensor> {
        broadcast_to(self, shape)
    }
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        narrow(self, axis, start, len)
    }
}
