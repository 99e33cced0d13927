//! Batched matrix products with NumPy/PyTorch `matmul` semantics.
//!
//! `matmul(a, b)`: `a [..., M, K] · b [..., K, N] → [..., M, N]`, the batch dims (all but the
//! last two) broadcast by NumPy rules; a 1-D `a` is a row vector `[1, K]` and a 1-D `b` a
//! column `[K, 1]`, the added dim being removed from the result (as in PyTorch).
//!
//! `matmul_t(a, b, trans_a, trans_b)`: `op(a) · op(b)` where `op` transposes the last two
//! dims when its flag is set. Transposition is only a change of strides in the kernel's
//! parameters (or of texel layout on the texture GEMM), never a transposing copy, so the
//! backward passes (`dA = g·Bᵀ`, `dB = Aᵀ·g`) are single products too.
//!
//! Gradient of `C = A·B`: `dA = g·Bᵀ`, `dB = Aᵀ·g`, each summed over the batch dims its
//! operand was broadcast along (`sum_to`).
//!
//! GPU: one GEMM dispatch for the whole batch, on the kernel
//! [`GpuContext::matmul_kernel`](crate::gpu::GpuContext::matmul_kernel) names (`wgseg info`
//! prints it):
//! - the texture GEMM (`shaders/gemm_tex.wgsl`, `src/ops/gemm.rs`), the default wherever
//!   [`GpuContext::texture_gemm`](crate::gpu::GpuContext::texture_gemm) holds (subgroup
//!   clusters of 8 lanes, wide enough 2-D textures): the operands become rgba32float texel
//!   arrays, by a buffer → texture copy where the contiguous axis has a multiple of 4
//!   elements, else by a pack kernel (`shaders/pack.wgsl`, one more dispatch per operand)
//!   that zero-pads K; transposes are folded into the texel layout. Batch dims that are
//!   neither dense nor broadcast, or operands too large for a texel array, fall through to
//!   the kernels below.
//! - `shaders/matmul_sg.wgsl` where the device has subgroup clusters of 8 lanes (64 × 128
//!   output tiles, 32 × 4 register blocks fed by subgroup shuffles, no workgroup memory);
//! - elsewhere `shaders/matmul.wgsl` (64 × 64 tiles, 8 × 8 register blocks, K staged in
//!   workgroup memory), e.g. 4-lane subgroups or the GL backend.
//!
//! CPU: plain loops accumulating in f64.

use crate::autograd::Op;
use crate::error::{Error, Result};
use crate::gpu::{GpuBuf, Kernel, Shader};
use crate::ops::gemm::{self, GemmParams, Layout, PackParams};
use crate::shape::Shape;
use crate::tensor::{same_device, DType, Storage, Tensor};

/// Output tile edge of one workgroup; must equal `TILE` in `shaders/matmul.wgsl`.
pub const MATMUL_TILE: usize = 64;
/// Output tile of one workgroup of the subgroup kernel, rows × columns; must equal `TILE_M`
/// and `TILE_N` in `shaders/matmul_sg.wgsl` (8 clusters of 8 lanes, 2 × 4, each lane 32 rows
/// × 4 columns).
///
/// Why 32 × 4 per lane: on lavapipe every loaded value costs a scalar loop over the SIMD
/// lanes, so the cost is the values loaded per FMA, (rows + 8·cols) / (8·rows·cols); for 128
/// accumulators 32 × 4 minimises it. CPU seconds for 512³ (a scratch wgpu harness running
/// each variant back to back, 2-core lavapipe, load average ≈ 6): 8 × 8 workgroup-memory
/// kernel 0.37 s; subgroup 8 × 1: 0.26 s, 16 × 2: 0.16 s, 16 × 4: 0.12 s, 32 × 4: 0.10 s,
/// 32 × 8: 0.07–0.10 s, 64 × 8: 0.07 s. Beyond 128 accumulators the gain is small on
/// lavapipe (spilled accumulators) and GPUs would spill registers, so 32 × 4 it is.
pub const MATMUL_SG_TILE: (usize, usize) = (64, 128);
/// Most batch dims the kernel decodes (two `vec4<u32>` in the params).
pub const MAX_BATCH_RANK: usize = 8;

/// `#[repr(C)]` mirror of `struct MatmulParams` in `shaders/prelude.wgsl` (both matmul kernels).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) batch: u32,
    pub(crate) tiles_m: u32,
    pub(crate) tiles_n: u32,
    pub(crate) batch_rank: u32,
    pub(crate) _p0: u32,
    pub(crate) a_rs: u32,
    pub(crate) a_cs: u32,
    pub(crate) b_rs: u32,
    pub(crate) b_cs: u32,
    pub(crate) bshape: [u32; MAX_BATCH_RANK],
    pub(crate) a_bs: [u32; MAX_BATCH_RANK],
    pub(crate) b_bs: [u32; MAX_BATCH_RANK],
}

/// Sizes and strides of one batched product: A's `(m, k)` of batch `b` is at
/// `a_off(b) + m·a_rs + k·a_cs`, B's `(k, n)` at `b_off(b) + k·b_rs + n·b_cs`.
struct Plan {
    batch: Shape,
    m: usize,
    n: usize,
    k: usize,
    a_rs: usize,
    a_cs: usize,
    b_rs: usize,
    b_cs: usize,
    /// Per batch dim, the element stride of each operand (0 where broadcast).
    a_bs: Vec<usize>,
    b_bs: Vec<usize>,
}

impl Plan {
    fn new(a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Plan> {
        let (ra, rb) = (a.rank(), b.rank());
        if ra < 2 || rb < 2 {
            return Err(Error::shape(
                "matmul",
                format!("operands need at least 2 dims, got {a} and {b}"),
            ));
        }
        let (a0, a1) = (a.dims()[ra - 2], a.dims()[ra - 1]);
        let (b0, b1) = (b.dims()[rb - 2], b.dims()[rb - 1]);
        // Stored [rows, cols]; transposed operands swap the roles of the two strides.
        let (m, ka, a_rs, a_cs) = if ta { (a1, a0, 1, a1) } else { (a0, a1, a1, 1) };
        let (kb, n, b_rs, b_cs) = if tb { (b1, b0, 1, b1) } else { (b0, b1, b1, 1) };
        if ka != kb {
            return Err(Error::shape(
                "matmul",
                format!(
                    "inner dims differ: {a}{} · {b}{} has K = {ka} vs {kb}",
                    if ta { "ᵀ" } else { "" },
                    if tb { "ᵀ" } else { "" }
                ),
            ));
        }
        let a_batch = Shape::new(&a.dims()[..ra - 2]);
        let b_batch = Shape::new(&b.dims()[..rb - 2]);
        let batch = Shape::broadcast("matmul", &a_batch, &b_batch).map_err(|_| {
            Error::shape(
                "matmul",
                format!("batch dims of {a} and {b} cannot be broadcast together"),
            )
        })?;
        if batch.rank() > MAX_BATCH_RANK {
            return Err(Error::shape(
                "matmul",
                format!("more than {MAX_BATCH_RANK} batch dims in {a} · {b}"),
            ));
        }
        let scaled = |s: &Shape, mat: usize| -> Vec<usize> {
            s.broadcast_strides(&batch)
                .into_iter()
                .map(|v| v * mat)
                .collect()
        };
        Ok(Plan {
            a_bs: scaled(&a_batch, a0 * a1),
            b_bs: scaled(&b_batch, b0 * b1),
            batch,
            m,
            n,
            k: ka,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
        })
    }

    fn out_shape(&self) -> Shape {
        let mut d = self.batch.dims().to_vec();
        d.extend([self.m, self.n]);
        Shape(d)
    }

    /// Offsets of A's and B's matrices for flat batch index `bi`.
    fn offsets(&self, bi: usize) -> (usize, usize) {
        let (mut rem, mut oa, mut ob) = (bi, 0, 0);
        for d in (0..self.batch.rank()).rev() {
            let dim = self.batch.dims()[d];
            oa += (rem % dim) * self.a_bs[d];
            ob += (rem % dim) * self.b_bs[d];
            rem /= dim;
        }
        (oa, ob)
    }

    fn cpu(&self, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.batch.numel() * self.m * self.n);
        for bi in 0..self.batch.numel() {
            let (oa, ob) = self.offsets(bi);
            for i in 0..self.m {
                for j in 0..self.n {
                    out.push(
                        (0..self.k)
                            .map(|l| {
                                a[oa + i * self.a_rs + l * self.a_cs]
                                    * b[ob + l * self.b_rs + j * self.b_cs]
                            })
                            .sum(),
                    );
                }
            }
        }
        out
    }

    /// Element stride between consecutive flat batch indices of an operand whose batch
    /// strides are `bs` over a `mat`-element matrix: `mat` when its batches are stored
    /// densely in order, 0 when it is broadcast over all of them, `None` otherwise.
    fn flat_batch_stride(&self, bs: &[usize], mat: usize) -> Option<usize> {
        let dims = self.batch.dims();
        if bs.iter().zip(dims).all(|(&s, &d)| s == 0 || d == 1) {
            return Some(0);
        }
        let mut dense = mat;
        for d in (0..dims.len()).rev() {
            if dims[d] != 1 && bs[d] != dense {
                return None;
            }
            dense *= dims[d];
        }
        Some(mat)
    }

    /// The texture GEMM (src/ops/gemm.rs) into `out`; `false` (nothing recorded) where it
    /// does not apply: batch dims that are neither dense nor broadcast, or operands too
    /// large for a texel array.
    fn texture(
        &self,
        a: &GpuBuf,
        b: &GpuBuf,
        trans_a: bool,
        trans_b: bool,
        out: &GpuBuf,
    ) -> Result<bool> {
        const OP: &str = "matmul";
        let ctx = a.context();
        let (m, n, k) = (self.m, self.n, self.k);
        let (Some(sa), Some(sb)) = (
            self.flat_batch_stride(&self.a_bs, m * k),
            self.flat_batch_stride(&self.b_bs, k * n),
        ) else {
            return Ok(false);
        };
        let nbatch = self.batch.numel();
        let kq = k.div_ceil(4);
        let (na, nb) = (
            if sa == 0 { 1 } else { nbatch },
            if sb == 0 { 1 } else { nbatch },
        );
        // Every layout below needs at most rows × ceil(K/4) texels per matrix.
        if !gemm::fits(ctx, na * m * kq) || !gemm::fits(ctx, nb * n * kq) {
            return Ok(false);
        }
        let u = |v: usize| gemm::u32_of(OP, v);
        let mut p = GemmParams {
            m: u(m)?,
            n: u(n)?,
            kq: u(kq)?,
            k: u(k)?,
            batch: u(nbatch)?,
            splits: 1,
            ..GemmParams::default()
        };
        (p.tiles_m, p.tiles_n) = gemm::tiles(OP, m, n)?;
        // A: copied where its contiguous axis has a multiple of 4 elements (K untransposed,
        // M transposed), else packed k-major with K zero-padded.
        let (ta, a_mode) = if !trans_a && k % 4 == 0 {
            p.a_row = u(k / 4)?;
            p.a_batch = u(sa / 4)?;
            (gemm::copy_texels(a, na * m * k / 4)?, Layout::KPacked)
        } else if trans_a && m % 4 == 0 {
            p.a_k = u(m / 4)?;
            p.a_batch = u(sa / 4)?;
            (gemm::copy_texels(a, na * m * k / 4)?, Layout::Packed4)
        } else {
            p.a_row = u(kq)?;
            p.a_batch = u(if sa == 0 { 0 } else { m * kq })?;
            let pp = PackParams {
                total: u(na * m * kq)?,
                dim0: u(m)?,
                dim1: u(kq)?,
                stride0: u(sa)?,
                stride1: u(self.a_rs)?,
                stride2: u(self.a_cs)?,
                limit: u(k)?,
                ..PackParams::default()
            };
            (gemm::pack(a, "pack_rows", &pp)?, Layout::KPacked)
        };
        // B: copied where N (untransposed) or K (transposed) is a multiple of 4, else packed
        // k-major per column.
        let (tb, b_mode) = if !trans_b && n % 4 == 0 {
            p.b_k = u(n / 4)?;
            p.b_batch = u(sb / 4)?;
            (gemm::copy_texels(b, nb * n * k / 4)?, Layout::Packed4)
        } else if trans_b && k % 4 == 0 {
            p.b_col = u(k / 4)?;
            p.b_batch = u(sb / 4)?;
            (gemm::copy_texels(b, nb * n * k / 4)?, Layout::KPacked)
        } else {
            p.b_col = u(kq)?;
            p.b_batch = u(if sb == 0 { 0 } else { n * kq })?;
            let pp = PackParams {
                total: u(nb * n * kq)?,
                dim0: u(n)?,
                dim1: u(kq)?,
                stride0: u(sb)?,
                stride1: u(self.b_cs)?,
                stride2: u(self.b_rs)?,
                limit: u(k)?,
                ..PackParams::default()
            };
            (gemm::pack(b, "pack_rows", &pp)?, Layout::KPacked)
        };
        gemm::launch(ctx, &p, (&ta, a_mode), (&tb, b_mode), None, 0, out)?;
        Ok(true)
    }

    fn params(&self, tile: (usize, usize)) -> Result<MatmulParams> {
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| Error::Limit {
                what: "matmul: sizes and strides".into(),
                requested: v as u64,
                max: u64::from(u32::MAX),
            })
        };
        let mut p = MatmulParams {
            m: u(self.m)?,
            n: u(self.n)?,
            k: u(self.k)?,
            batch: u(self.batch.numel())?,
            tiles_m: u(self.m.div_ceil(tile.0))?,
            tiles_n: u(self.n.div_ceil(tile.1))?,
            batch_rank: self.batch.rank() as u32,
            _p0: 0,
            a_rs: u(self.a_rs)?,
            a_cs: u(self.a_cs)?,
            b_rs: u(self.b_rs)?,
            b_cs: u(self.b_cs)?,
            bshape: [1; MAX_BATCH_RANK],
            a_bs: [0; MAX_BATCH_RANK],
            b_bs: [0; MAX_BATCH_RANK],
        };
        for d in 0..self.batch.rank() {
            p.bshape[d] = u(self.batch.dims()[d])?;
            p.a_bs[d] = u(self.a_bs[d])?;
            p.b_bs[d] = u(self.b_bs[d])?;
        }
        Ok(p)
    }
}

/// `op(a) · op(b)` with broadcast batch dims, where `op` transposes the last two dims of an
/// operand whose flag is set: `a [..., M, K]` (or `[..., K, M]` if `trans_a`), `b [..., K, N]`
/// (or `[..., N, K]` if `trans_b`) → `[..., M, N]`. Both operands need rank ≥ 2.
///
/// Gradient: see the module docs; every case is again one `matmul_t` launch.
pub fn matmul_t(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    a.expect_dtype("matmul", DType::F32)?;
    b.expect_dtype("matmul", DType::F32)?;
    same_device("matmul", &[a, b])?;
    let plan = Plan::new(a.shape(), b.shape(), trans_a, trans_b)?;
    let shape = plan.out_shape();
    let storage = match (a.storage(), b.storage()) {
        (Storage::Gpu(ba), Storage::Gpu(bb)) => {
            let ctx = ba.context();
            let out = ctx.alloc_storage(shape.numel())?;
            if ctx.texture_gemm() && plan.texture(ba, bb, trans_a, trans_b, &out)? {
                return Ok(Tensor::from_op(
                    Storage::Gpu(out),
                    shape,
                    DType::F32,
                    Op::Matmul { trans_a, trans_b },
                    vec![a.clone(), b.clone()],
                ));
            }
            // The subgroup kernel wherever subgroups allow it (see MATMUL_SG_TILE), else
            // the portable workgroup-memory kernel.
            let (shader, entry, tile) = if ctx.subgroup_clusters_of_8() {
                (Shader::MatmulSg, "matmul_sg", MATMUL_SG_TILE)
            } else {
                (Shader::Matmul, "matmul", (MATMUL_TILE, MATMUL_TILE))
            };
            let p = plan.params(tile)?;
            let groups = u64::from(p.batch) * u64::from(p.tiles_m) * u64::from(p.tiles_n);
            ctx.launch(
                &Kernel::new(shader, entry)
                    .with("TRANS_A", u32::from(trans_a))
                    .with("TRANS_B", u32::from(trans_b)),
                &p,
                &[ba, bb],
                &[&out],
                groups,
            )?;
            Storage::Gpu(out)
        }
        _ => Storage::Cpu(plan.cpu(a.cpu_data("matmul")?, b.cpu_data("matmul")?)),
    };
    Ok(Tensor::from_op(
        storage,
        shape,
        DType::F32,
        Op::Matmul { trans_a, trans_b },
        vec![a.clone(), b.clone()],
    ))
}

/// NumPy/PyTorch `matmul`: `a [..., M, K] · b [..., K, N] → [..., M, N]` with broadcast batch
/// dims; 1-D operands are promoted to a row (`a`) or a column (`b`) and the added dim is
/// dropped from the result.
///
/// A batched `a` against a 2-D `b` is folded into one `[B·M, K] · [K, N]` product (a free
/// reshape), so that `dB = Aᵀ·g` is a single product over `B·M` instead of a batched one
/// followed by a sum.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ra, rb) = (a.shape().rank(), b.shape().rank());
    if ra == 0 || rb == 0 {
        return Err(Error::shape(
            "matmul",
            format!(
                "scalars cannot be multiplied as matrices ({} · {})",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let a2 = if ra == 1 {
        a.reshape([1, a.dims()[0]])?
    } else {
        a.clone()
    };
    let b2 = if rb == 1 {
        b.reshape([b.dims()[0], 1])?
    } else {
        b.clone()
    };
    let k = a2.dims()[a2.shape().rank() - 1];
    // (Mismatched K falls through to the general path, whose error names the real shapes.)
    let folds = a2.shape().rank() > 2 && b2.shape().rank() == 2 && k > 0 && b2.dims()[0] == k;
    let out = if folds {
        let d = a2.dims();
        let o = matmul_t(&a2.reshape([a2.numel() / k, k])?, &b2, false, false)?;
        let mut od = d[..d.len() - 1].to_vec();
        od.push(b2.dims()[1]);
        o.reshape(od)?
    } else {
        matmul_t(&a2, &b2, false, false)?
    };
    // Drop the dims added for 1-D operands.
    let mut d = out.dims().to_vec();
    let r = d.len();
    if rb == 1 {
        d.remove(r - 1);
    }
    if ra == 1 {
        d.remove(r - 2);
    }
    if d.len() == r {
        Ok(out)
    } else {
        out.reshape(d)
    }
}

/// Backward of `matmul_t`: the gradients of the stored operands, each one `matmul_t` launch
/// (transposes folded into the flags) summed over its broadcast batch dims. An operand that
/// needs no gradient costs nothing.
pub(crate) fn matmul_backward(
    trans_a: bool,
    trans_b: bool,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
) -> Result<[Option<Tensor>; 2]> {
    let ga = if a.requires_grad() {
        let d = match (trans_a, trans_b) {
            // C = A·B: dA = g·Bᵀ.
            (false, false) => matmul_t(g, b, false, true)?,
            // C = A·Bᵀ (B stored [N, K]): dA = g·B.
            (false, true) => matmul_t(g, b, false, false)?,
            // C = Aᵀ·B (A stored [K, M]): dA = B·gᵀ.
            (true, false) => matmul_t(b, g, false, true)?,
            // C = Aᵀ·Bᵀ: dA = Bᵀ·gᵀ.
            (true, true) => matmul_t(b, g, true, true)?,
        };
        Some(d.sum_to(a.shape())?)
    } else {
        None
    };
    let gb = if b.requires_grad() {
        let d = match (trans_a, trans_b) {
            // C = A·B: dB = Aᵀ·g.
            (false, false) => matmul_t(a, g, true, false)?,
            // C = A·Bᵀ: dB = gᵀ·A.
            (false, true) => matmul_t(g, a, true, false)?,
            // C = Aᵀ·B: dB = A·g.
            (true, false) => matmul_t(a, g, false, false)?,
            // C = Aᵀ·Bᵀ: dB = gᵀ·Aᵀ.
            (true, true) => matmul_t(g, a, true, true)?,
        };
        Some(d.sum_to(b.shape())?)
    } else {
        None
    };
    Ok([ga, gb])
}

impl Tensor {
    /// See [`matmul`].
    pub fn matmul(&self, o: &Tensor) -> Result<Tensor> {
        matmul(self, o)
    }
    /// See [`matmul_t`].
    pub fn matmul_t(&self, o: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        matmul_t(self, o, trans_a, trans_b)
    }
}
