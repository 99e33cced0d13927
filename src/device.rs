//! Where tensors live: the CPU reference backend or a GPU context.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuOptions};

/// A compute device. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub enum Device {
    /// The reference backend: plain loops over `f64` storage. Obviously correct, slow.
    Cpu,
    /// A wgpu adapter (Vulkan, Metal, DX12 or GL; lavapipe on machines without a GPU).
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// The GPU chosen by `WGSEG_ADAPTER`, else the first hardware adapter, else a CPU one.
    pub fn gpu() -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new(&GpuOptions::default())?))
    }

    /// Parses a `--device` value: `cpu` (reference backend), `gpu` (default adapter),
    /// `gpu:N` (adapter index from `wgseg info`) or `gpu:NAME` (substring of the name).
    pub fn parse(spec: &str) -> Result<Device> {
        let s = spec.trim();
        match s {
            "cpu" => Ok(Device::Cpu),
            "gpu" | "auto" | "" => Device::gpu(),
            _ => match s.strip_prefix("gpu:") {
                Some(which) => Ok(Device::Gpu(GpuContext::new(&GpuOptions {
                    adapter: Some(which.to_string()),
                    ..Default::default()
                })?)),
                None => Err(Error::NoAdapter(format!(
                    "unknown device {spec:?}: use cpu, gpu, gpu:N or gpu:NAME"
                ))),
            },
        }
    }

    /// Parses a `--devices` value: `all` (every adapter `wgseg info` lists), or a
    /// comma-separated list of [`Device::parse`] values (`gpu:0,gpu:1`). A device may be
    /// listed twice (two contexts on one adapter: two replicas sharing it).
    pub fn parse_list(spec: &str) -> Result<Vec<Device>> {
        let specs: Vec<String> = match spec.trim() {
            "all" => (0..crate::gpu::list_adapters().len())
                .map(|i| format!("gpu:{i}"))
                .collect(),
            s => s.split(',').map(|p| p.trim().to_string()).collect(),
        };
        if specs.is_empty() || specs.iter().any(String::is_empty) {
            return Err(Error::NoAdapter(format!(
                "--devices {spec:?}: give all, or devices separated by commas (gpu:0,gpu:1)"
            )));
        }
        specs.iter().map(|s| Device::parse(s)).collect()
    }

    /// A short human-readable name.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu (reference backend)".into(),
            Device::Gpu(c) => c.adapter_name(),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// Whether two handles denote the same device.
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Waits for all queued work (no-op on the CPU).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(c) => c.synchronize(),
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}
