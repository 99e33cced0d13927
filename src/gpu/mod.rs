//! The wgpu side of the engine. One door per wgpu verb: `pipelines` builds pipelines,
//! `launch` dispatches, `pool` creates buffers, `recorder` submits, writes and maps.

pub mod context;
pub mod grid;
pub mod launch;
#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod lifetime_tests;
pub mod pipelines;
pub mod pool;
pub mod recorder;
pub mod shaders;
pub mod strided;

pub use context::{list_adapters, AdapterSummary, GpuContext, GpuOptions};
pub use launch::{folded_dispatches_on_this_thread, Arg, ArgKind, DispatchProfile, Kernel};
pub use pool::{GpuBuf, GpuTex, PoolStats, TEX_WIDTH};
pub use recorder::HostStats;
pub use shaders::Shader;

/// Workgroup count for `n` items at `per_group` items per workgroup.
pub fn groups_for(n: usize, per_group: u32) -> u64 {
    (n as u64).div_ceil(u64::from(per_group))
}
