//! Uniform layout shared by the strided kernels (broadcasting binary, where, copies):
//! an output shape and, per operand, strides and an offset, for up to [`MAX_RANK`] dims.

use crate::error::{Error, Result};
use crate::shape::Shape;

/// Highest rank the strided kernels index.
pub const MAX_RANK: usize = 8;

/// `#[repr(C)]` mirror of `struct Strided` in `shaders/prelude.wgsl`, the uniform of
/// `binary.wgsl`, `select.wgsl` and `copy.wgsl` (checked by src/gpu/layout_tests.rs).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StridedParams {
    pub n: u32,
    pub rank: u32,
    pub _pad: [u32; 2],
    /// Element offsets of operands 0..3 (inputs first, then the output for copies).
    pub offsets: [u32; 4],
    pub shape: [u32; MAX_RANK],
    /// Strides of operands 0..3, `MAX_RANK` each.
    pub strides: [[u32; MAX_RANK]; 4],
}

impl StridedParams {
    /// Parameters for iterating over `shape` with the given per-operand strides and offsets.
    ///
    /// Size-1 dims are dropped and adjacent dims that are contiguous for every operand are
    /// merged, so most copies and broadcasts index in one or two dims.
    pub fn new(
        op: &'static str,
        shape: &Shape,
        strides: &[Vec<usize>],
        offsets: &[usize],
    ) -> Result<Self> {
        let (shape, strides) = simplify(shape, strides);
        let shape = &shape;
        if shape.rank() > MAX_RANK {
            return Err(Error::shape(
                op,
                format!("rank {} exceeds {MAX_RANK}", shape.rank()),
            ));
        }
        let n = u32::try_from(shape.numel()).map_err(|_| Error::Limit {
            what: format!("{op}: elements"),
            requested: shape.numel() as u64,
            max: u64::from(u32::MAX),
        })?;
        let mut p = StridedParams {
            n,
            rank: shape.rank() as u32,
            _pad: [0; 2],
            offsets: [0; 4],
            shape: [1; MAX_RANK],
            strides: [[0; MAX_RANK]; 4],
        };
        for (i, &d) in shape.dims().iter().enumerate() {
            p.shape[i] = d as u32;
        }
        for (k, s) in strides.iter().enumerate() {
            for (i, &v) in s.iter().enumerate() {
                p.strides[k][i] = v as u32;
            }
        }
        for (k, &o) in offsets.iter().enumerate() {
            p.offsets[k] = o as u32;
        }
        Ok(p)
    }
}

/// Drops size-1 dims and merges dim `d` into `d + 1` where every operand has
/// `stride[d] == stride[d + 1] · shape[d + 1]`.
fn simplify(shape: &Shape, strides: &[Vec<usize>]) -> (Shape, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for (d, &n) in shape.dims().iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && strides
                .iter()
                .zip(&st)
                .all(|(s, m)| m.last() == Some(&(s[d] * n)));
        if mergeable {
            let last = dims.len() - 1;
            dims[last] *= n;
            for (s, m) in strides.iter().zip(st.iter_mut()) {
                m[last] = s[d];
            }
        } else {
            dims.push(n);
            for (s, m) in strides.iter().zip(st.iter_mut()) {
                m.push(s[d]);
            }
        }
    }
    (Shape(dims), st)
}

/// Element index of operand `k` for output position `i` (CPU mirror of the shader's `operand_index`).
pub fn operand_index(p: &StridedParams, k: usize, i: usize) -> usize {
    let mut rem = i;
    let mut idx = p.offsets[k] as usize;
    for d in (0..p.rank as usize).rev() {
        let dim = p.shape[d] as usize;
        idx += (rem % dim) * p.strides[k][d] as usize;
        rem /= dim;
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_dims_merge_and_unit_dims_vanish() -> Result<()> {
        let shape = Shape::new(&[2, 1, 3, 4]);
        let p = StridedParams::new("t", &shape, &[shape.strides(), vec![0, 0, 4, 1]], &[])?;
        // Operand 0 is contiguous throughout; operand 1 broadcasts over dim 0: [2, 12].
        assert_eq!(p.rank, 2);
        assert_eq!(&p.shape[..2], &[2, 12]);
        assert_eq!(&p.strides[0][..2], &[12, 1]);
        assert_eq!(&p.strides[1][..2], &[0, 1]);
        for i in 0..24 {
            assert_eq!(operand_index(&p, 0, i), i);
            assert_eq!(operand_index(&p, 1, i), i % 12);
        }
        Ok(())
    }
}
