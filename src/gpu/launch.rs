//! The ONLY dispatch site. An op's GPU wrapper describes a launch; this records it.

use std::sync::Arc;

use super::context::GpuContext;
use super::grid;
use super::pool::GpuBuf;
use super::shaders::Shader;
use crate::error::{Error, Result};

/// A kernel: shader file, entry point and `override` constants (all part of the pipeline key).
#[derive(Clone, Debug)]
pub struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub overrides: Vec<(&'static str, f64)>,
}

impl Kernel {
    pub fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel {
            shader,
            entry,
            overrides: Vec::new(),
        }
    }

    /// Sets an `override` constant.
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.overrides.push((name, value.into()));
        self
    }
}

impl GpuContext {
    /// Records one dispatch of `groups` workgroups (a linear count, folded to the device's
    /// grid limits) with `params` in binding 0, `inputs` read-only from binding 1 and
    /// `outputs` writable after them. A launch of zero workgroups records nothing.
    pub fn launch<P: bytemuck::Pod>(
        self: &Arc<Self>,
        k: &Kernel,
        params: &P,
        inputs: &[&GpuBuf],
        outputs: &[&GpuBuf],
        groups: u64,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let grid = grid::fold(groups, self.max_workgroups_per_dim()).map_err(|e| match e {
            Error::Limit { requested, max, .. } => Error::Limit {
                what: format!("workgroups of {}::{}", k.shader.file(), k.entry),
                requested,
                max,
            },
            e => e,
        })?;
        if grid[1] > 1 || grid[2] > 1 {
            self.folded_dispatches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for b in inputs.iter().chain(outputs) {
            if !Arc::ptr_eq(b.context(), self) {
                return Err(Error::Gpu(format!(
                    "{}: a buffer belongs to another device",
                    k.entry
                )));
            }
        }
        let (pipeline, bgl) = self.pipeline(k, inputs.len(), outputs.len())?;
        let mut rec = self.recorder()?;
        let profiling = rec.profile.is_some();
        if profiling {
            self.flush_locked(&mut rec)?;
            self.wait_locked(&mut rec)?;
        }
        let started = std::time::Instant::now();
        let (arena, offset) = self.push_params(&mut rec, bytemuck::bytes_of(params))?;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &arena,
                offset,
                size: wgpu::BufferSize::new(std::mem::size_of::<P>() as u64),
            }),
        }];
        for (i, b) in inputs.iter().chain(outputs).enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.binding(),
            });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.entry),
            layout: &bgl,
            entries: &entries,
        });
        self.record_dispatch(&mut rec, pipeline, bind, grid)?;
        if profiling {
            self.flush_locked(&mut rec)?;
            self.wait_locked(&mut rec)?;
            let secs = started.elapsed().as_secs_f64();
            if let Some(p) = rec.profile.as_mut() {
                let e = p
                    .entry(format!("{}::{}", k.shader.file(), k.entry))
                    .or_default();
                e.0 += 1;
                e.1 += secs;
            }
        }
        Ok(())
    }
}
