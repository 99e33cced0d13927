//! Immutable tensors with an autograd tape.
//!
//! A tensor is a shape, a dtype, shared storage (CPU `f64` or a pooled GPU buffer) and,
//! when it was produced by an op with gradient tracking on, the [`Node`] that made it.
//!
//! # In-place updates and versions
//!
//! Tensors are immutable except for one writer: the optimiser step (`crate::optim`), which
//! updates a parameter and its state where they live. Every storage carries a version
//! counter, shared by all the tensors that share the storage (reshapes, `detach`,
//! `as_param`) and bumped by every in-place write. A tape [`Node`] records the versions of
//! its inputs when it is created, and `backward` refuses (with [`Error::Modified`]) a node
//! whose saved input changed since, like PyTorch's "modified by an inplace operation".
//!
//! - **GPU**: the update kernel writes into the parameter's own buffer
//!   ([`Tensor::gpu_buf_for_write`] bumps the version); the tensor handle, its id and its
//!   buffer stay the same, nothing is allocated or read back.
//! - **CPU**: the `f64` storage sits behind an `Arc` without interior mutability, so the
//!   update builds the new values and [`Tensor::with_new_values`] makes a handle with the
//!   SAME id (gradients are keyed by it) and new storage, which the store keeps. Old handles
//!   keep the old values, which is sound (nobody sees a value change under them); the old
//!   storage's version is bumped all the same, so a tape saved before the step fails in
//!   `backward` on both backends alike (a program tested on the CPU behaves the same on a
//!   GPU).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::autograd::{grad_enabled, Node, Op};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::GpuBuf;
use crate::shape::Shape;

/// Element type. Labels and indices are `U32` (WGSL has no 8-bit storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

/// Backing memory. The CPU reference backend stores every dtype as `f64` (exact for `u32`)
/// so that its arithmetic and gradient checks run in double precision.
pub enum Storage {
    Cpu(Vec<f64>),
    Gpu(GpuBuf),
}

/// Storage with its version counter (see the module docs), shared by every tensor that
/// shares the storage.
pub(crate) struct Shared {
    data: Storage,
    version: AtomicU64,
}

impl Shared {
    fn new(data: Storage, version: u64) -> Arc<Shared> {
        Arc::new(Shared {
            data,
            version: AtomicU64::new(version),
        })
    }
}

pub(crate) struct Inner {
    id: u64,
    shape: Shape,
    dtype: DType,
    storage: Arc<Shared>,
    node: Option<Node>,
    requires_grad: bool,
}

impl Drop for Inner {
    /// Dismantles the history iteratively: dropping the last handle of a long chain of ops
    /// would otherwise recurse once per op and overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<Tensor> = self.node.take().map(|n| n.inputs).unwrap_or_default();
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.0) {
                if let Some(n) = inner.node.take() {
                    stack.extend(n.inputs);
                }
            }
        }
    }
}

/// An immutable n-dimensional array. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn check_len(op: &'static str, len: usize, shape: &Shape) -> Result<()> {
    if len != shape.numel() {
        return Err(Error::shape(
            op,
            format!(
                "{len} values do not fill shape {shape} ({} elements)",
                shape.numel()
            ),
        ));
    }
    Ok(())
}

impl Tensor {
    fn build(
        storage: Arc<Shared>,
        shape: Shape,
        dtype: DType,
        node: Option<Node>,
        rg: bool,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            dtype,
            storage,
            node,
            requires_grad: rg,
        }))
    }

    /// A tensor with no history.
    pub(crate) fn from_storage(storage: Storage, shape: Shape, dtype: DType) -> Tensor {
        Tensor::build(Shared::new(storage, 0), shape, dtype, None, false)
    }

    /// The output of `op` applied to `inputs`. It joins the tape when gradients are enabled,
    /// it is `F32` and one of the inputs requires a gradient.
    pub(crate) fn from_op(
        storage: Storage,
        shape: Shape,
        dtype: DType,
        op: Op,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        let rg = dtype == DType::F32 && grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let node = rg.then(|| Node::new(op, inputs));
        Tensor::build(Shared::new(storage, 0), shape, dtype, node, rg)
    }

    /// Same storage, shape and dtype, with the history `op` over `inputs` instead of this
    /// tensor's (recorded under the same conditions as [`Tensor::from_op`]); the door of
    /// [`crate::autograd::record_custom`].
    pub(crate) fn with_custom_node(
        &self,
        op: Arc<dyn crate::autograd::CustomOp>,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        let rg = self.0.dtype == DType::F32
            && grad_enabled()
            && inputs.iter().any(|t| t.requires_grad());
        let node = rg.then(|| Node::new(Op::Custom(op), inputs));
        Tensor::build(
            Arc::clone(&self.0.storage),
            self.0.shape.clone(),
            self.0.dtype,
            node,
            rg,
        )
    }

    /// Same storage, new shape and history (used by free reshapes).
    pub(crate) fn share(&self, shape: Shape, op: Op) -> Tensor {
        let rg = grad_enabled() && self.requires_grad();
        let node = rg.then(|| Node::new(op, vec![self.clone()]));
        Tensor::build(Arc::clone(&self.0.storage), shape, self.0.dtype, node, rg)
    }

    /// Uploads `f32` values with the given shape.
    pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_len("from_vec", data.len(), &shape)?;
        let storage = match dev {
            Device::Cpu => Storage::Cpu(data.iter().map(|&v| f64::from(v)).collect()),
            Device::Gpu(c) => Storage::Gpu(c.upload(bytemuck::cast_slice(&data))?),
        };
        Ok(Tensor::from_storage(storage, shape, DType::F32))
    }

    /// Uploads `f64` values (kept exactly on the CPU, rounded to `f32` on a GPU).
    pub fn from_f64(data: Vec<f64>, shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_len("from_f64", data.len(), &shape)?;
        match dev {
            Device::Cpu => Ok(Tensor::from_storage(Storage::Cpu(data), shape, DType::F32)),
            Device::Gpu(_) => {
                Tensor::from_vec(data.iter().map(|&v| v as f32).collect(), shape, dev)
            }
        }
    }

    /// Uploads `u32` values (labels, indices).
    pub fn from_u32(data: Vec<u32>, shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_len("from_u32", data.len(), &shape)?;
        let storage = match dev {
            Device::Cpu => Storage::Cpu(data.iter().map(|&v| f64::from(v)).collect()),
            Device::Gpu(c) => Storage::Gpu(c.upload(bytemuck::cast_slice(&data))?),
        };
        Ok(Tensor::from_storage(storage, shape, DType::U32))
    }

    /// Uploads `u8` values (label maps as stored in PNGs and `|u1` `.npy` files) as a `U32`
    /// tensor, the dtype of labels (WGSL has no 8-bit storage): `y[i] = data[i] as u32`.
    /// No gradient.
    pub fn from_u8(data: Vec<u8>, shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_len("from_u8", data.len(), &shape)?;
        let wide: Vec<u32> = data.into_iter().map(u32::from).collect();
        let storage = match dev {
            Device::Cpu => Storage::Cpu(wide.iter().map(|&v| f64::from(v)).collect()),
            Device::Gpu(c) => Storage::Gpu(c.upload(bytemuck::cast_slice(&wide))?),
        };
        Ok(Tensor::from_storage(storage, shape, DType::U32))
    }

    /// A tensor filled with `value`: exactly `value` on the CPU; on a GPU `value` rounded to
    /// `f32`, written by a fill kernel (no upload, so no flush of the recorded work).
    pub fn full(shape: impl Into<Shape>, value: f64, dev: &Device) -> Result<Tensor> {
        crate::ops::fill::full(shape.into(), value, dev)
    }

    /// A tensor of zeros (see [`Tensor::full`]).
    pub fn zeros(shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, dev)
    }

    /// A tensor of ones (see [`Tensor::full`]).
    pub fn ones(shape: impl Into<Shape>, dev: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dev)
    }

    /// The same values as a trainable leaf: `backward()` returns its gradient.
    pub fn as_param(&self) -> Tensor {
        Tensor::build(
            Arc::clone(&self.0.storage),
            self.0.shape.clone(),
            self.0.dtype,
            None,
            self.0.dtype == DType::F32,
        )
    }

    /// The same values without history.
    pub fn detach(&self) -> Tensor {
        Tensor::build(
            Arc::clone(&self.0.storage),
            self.0.shape.clone(),
            self.0.dtype,
            None,
            false,
        )
    }

    /// Unique id (gradients are keyed by it). A parameter keeps its id across optimiser
    /// steps on both backends.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// How many in-place writes the storage has seen (shared by every tensor sharing the
    /// storage; see the module docs). A tape node compares it with the value it saved.
    pub fn version(&self) -> u64 {
        self.0.storage.version.load(Ordering::Relaxed)
    }

    /// Whether `self` and `other` share their storage (views of the same values).
    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// The GPU buffer of a tensor that a kernel is about to update in place: bumps the
    /// version of the storage, so that tapes that saved this tensor refuse to backpropagate.
    /// Only the optimiser step writes in place.
    pub(crate) fn gpu_buf_for_write(&self, op: &'static str) -> Result<&GpuBuf> {
        let b = self.gpu_buf(op)?;
        self.0.storage.version.fetch_add(1, Ordering::Relaxed);
        Ok(b)
    }

    /// The CPU backend's in-place update: a leaf with the SAME id, shape, dtype and
    /// `requires_grad` holding `values` (same length), at the next version. The old
    /// storage's version is bumped too, so that tapes that saved the old handle fail in
    /// `backward` exactly as they do on a GPU, where the buffer really changes.
    pub(crate) fn with_new_values(&self, op: &'static str, values: Vec<f64>) -> Result<Tensor> {
        self.cpu_data(op)?;
        check_len(op, values.len(), self.shape())?;
        let version = self.0.storage.version.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Tensor(Arc::new(Inner {
            id: self.0.id,
            shape: self.0.shape.clone(),
            dtype: self.0.dtype,
            storage: Shared::new(Storage::Cpu(values), version),
            node: None,
            requires_grad: self.0.requires_grad,
        })))
    }

    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }

    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }

    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    pub(crate) fn node(&self) -> Option<&Node> {
        self.0.node.as_ref()
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage.data
    }

    /// The device holding the storage.
    pub fn device(&self) -> Device {
        match &self.0.storage.data {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(b) => Device::Gpu(Arc::clone(b.context())),
        }
    }

    /// Reads the values back as `f32` (`u32` tensors are converted).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match (&self.0.storage.data, self.0.dtype) {
            (Storage::Cpu(v), _) => Ok(v.iter().map(|&x| x as f32).collect()),
            (Storage::Gpu(_), DType::F32) => Ok(bytemuck::cast_slice(&self.raw_bytes()?).to_vec()),
            (Storage::Gpu(_), DType::U32) => {
                Ok(self.to_vec_u32()?.into_iter().map(|v| v as f32).collect())
            }
        }
    }

    /// Reads several `f32` tensors back at once: one readback per device for all the GPU
    /// tensors of that device (one submission and one mapping, instead of one each).
    pub fn read_all(ts: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = vec![None; ts.len()];
        let mut gpu: Vec<(usize, &GpuBuf)> = Vec::new();
        for (k, t) in ts.iter().enumerate() {
            match (&t.0.storage.data, t.0.dtype) {
                (Storage::Gpu(b), DType::F32) => gpu.push((k, b)),
                _ => out[k] = Some(t.to_vec()?),
            }
        }
        // Group the GPU tensors by context (a run has one; the test suite mixes them).
        while let Some(&(_, first)) = gpu.first() {
            let (same, rest): (Vec<_>, Vec<_>) = gpu
                .into_iter()
                .partition(|(_, b)| Arc::ptr_eq(b.context(), first.context()));
            gpu = rest;
            let bufs: Vec<&GpuBuf> = same.iter().map(|(_, b)| *b).collect();
            let bytes = first.context().read_many(&bufs)?;
            for ((k, _), raw) in same.iter().zip(bytes) {
                let n = ts[*k].numel();
                let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
                v.truncate(n);
                out[*k] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Reads the values back as `f64` (exact on the CPU backend).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match &self.0.storage.data {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Gpu(_) => match self.0.dtype {
                DType::F32 => Ok(self.to_vec()?.into_iter().map(f64::from).collect()),
                DType::U32 => Ok(self.to_vec_u32()?.into_iter().map(f64::from).collect()),
            },
        }
    }

    /// Reads a `U32` tensor back.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        if self.0.dtype != DType::U32 {
            return Err(Error::shape("to_vec_u32", "the tensor is f32, not u32"));
        }
        match &self.0.storage.data {
            Storage::Cpu(v) => Ok(v.iter().map(|&x| x as u32).collect()),
            Storage::Gpu(_) => Ok(bytemuck::cast_slice(&self.raw_bytes()?).to_vec()),
        }
    }

    fn raw_bytes(&self) -> Result<Vec<u8>> {
        match &self.0.storage.data {
            Storage::Gpu(b) => {
                let mut v = b.context().read(b)?;
                v.truncate(self.numel() * 4);
                Ok(v)
            }
            Storage::Cpu(_) => Err(Error::Gpu("raw_bytes of a CPU tensor".into())),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("shape {} has more than one element", self.shape()),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    /// Copies the values to another device (no history).
    pub fn to_device(&self, dev: &Device) -> Result<Tensor> {
        if self.device().same(dev) {
            return Ok(self.detach());
        }
        match self.0.dtype {
            DType::F32 => match dev {
                Device::Cpu => Tensor::from_f64(self.to_vec_f64()?, self.shape().clone(), dev),
                Device::Gpu(_) => Tensor::from_vec(self.to_vec()?, self.shape().clone(), dev),
            },
            DType::U32 => Tensor::from_u32(self.to_vec_u32()?, self.shape().clone(), dev),
        }
    }

    /// Same values, new shape (free: the storage is shared).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot reshape {} into {shape}", self.shape()),
            ));
        }
        Ok(self.share(shape, Op::Reshape))
    }

    /// The GPU buffer, or an error naming `op` if the tensor is on the CPU.
    pub(crate) fn gpu_buf(&self, op: &'static str) -> Result<&GpuBuf> {
        match &self.0.storage.data {
            Storage::Gpu(b) => Ok(b),
            Storage::Cpu(_) => Err(Error::Device {
                op,
                a: "cpu".into(),
                b: "gpu".into(),
            }),
        }
    }

    /// The CPU values, or an error naming `op` if the tensor is on a GPU.
    pub(crate) fn cpu_data(&self, op: &'static str) -> Result<&[f64]> {
        match &self.0.storage.data {
            Storage::Cpu(v) => Ok(v),
            Storage::Gpu(_) => Err(Error::Device {
                op,
                a: "gpu".into(),
                b: "cpu".into(),
            }),
        }
    }

    /// Checks that the tensor has dtype `d`.
    pub(crate) fn expect_dtype(&self, op: &'static str, d: DType) -> Result<()> {
        if self.dtype() != d {
            return Err(Error::shape(
                op,
                format!(
                    "expected a {d:?} tensor, got {:?} with shape {}",
                    self.dtype(),
                    self.shape()
                ),
            ));
        }
        Ok(())
    }
}

/// Checks that all tensors live on the same device and returns it.
pub(crate) fn same_device(op: &'static str, ts: &[&Tensor]) -> Result<Device> {
    let d = ts[0].device();
    for t in &ts[1..] {
        let e = t.device();
        if !d.same(&e) {
            return Err(Error::Device {
                op,
                a: d.name(),
                b: e.name(),
            });
        }
    }
    Ok(d)
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(id={}, shape={}, {:?}, {:?})",
            self.id(),
            self.shape(),
            self.dtype(),
            self.device()
        )
    }
}
