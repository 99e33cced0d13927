//! Uniform layout shared by the strided kernels (broadcasting binary, where, copies):
//! an output shape and, per operand, strides and an offset, for up to [`MAX_RANK`] dims.

use crate::error::{Error, Result};
use crate::shape::Shape;

/// Highest rank the strided kernels index.
pub const MAX_RANK: usize = 8;

/// `#[repr(C)]` mirror of `struct Strided` in `shaders/binary.wgsl` and `shaders/copy.wgsl`.
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
    pub fn new(
        op: &'static str,
        shape: &Shape,
        strides: &[Vec<usize>],
        offsets: &[usize],
    ) -> Result<Self> {
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
