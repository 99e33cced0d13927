//! The pipeline cache: the ONLY place that builds shader modules, layouts and pipelines.
//!
//! Keyed by shader + entry point + override constants + binding counts, so the number of
//! pipelines is bounded by kernels × overrides, never by shapes. Compilation is expensive
//! (tens of ms on lavapipe), so it is counted and timed.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Instant;

use super::context::GpuContext;
use super::launch::Kernel;
use super::shaders::Shader;
use crate::error::{Error, Result};

type Key = (Shader, &'static str, Vec<(&'static str, u64)>, usize, usize);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<Shader, wgpu::ShaderModule>,
    layouts: HashMap<(usize, usize), (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: HashMap<Key, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    /// Pipelines compiled so far and the seconds spent compiling them.
    pub(crate) compiled: usize,
    pub(crate) compile_seconds: f64,
}

fn layout_entries(n_in: usize, n_out: usize) -> Vec<wgpu::BindGroupLayoutEntry> {
    let entry = |binding: u32, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut v = vec![entry(0, wgpu::BufferBindingType::Uniform)];
    for i in 0..n_in {
        v.push(entry(
            1 + i as u32,
            wgpu::BufferBindingType::Storage { read_only: true },
        ));
    }
    for i in 0..n_out {
        v.push(entry(
            1 + (n_in + i) as u32,
            wgpu::BufferBindingType::Storage { read_only: false },
        ));
    }
    v
}

impl GpuContext {
    /// Looks up or compiles the pipeline for `k` with `n_in` read-only and `n_out` writable
    /// storage bindings (binding 0 is always the uniform parameters).
    pub(crate) fn pipeline(
        &self,
        k: &Kernel,
        n_in: usize,
        n_out: usize,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let key: Key = (
            k.shader,
            k.entry,
            k.overrides.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
            n_in,
            n_out,
        );
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache lock poisoned".into()))?;
        if let Some(p) = cache.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let started = Instant::now();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        if let Entry::Vacant(e) = cache.modules.entry(k.shader) {
            let src = k.shader.source();
            let m = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.shader.file()),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                });
            e.insert(m);
        }
        if let Entry::Vacant(e) = cache.layouts.entry((n_in, n_out)) {
            let bgl = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &layout_entries(n_in, n_out),
                });
            let pl = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
            e.insert((bgl, pl));
        }
        let (bgl, pl) = &cache.layouts[&(n_in, n_out)];
        let (bgl, pl) = (bgl.clone(), pl.clone());
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pl),
                module: &cache.modules[&k.shader],
                entry_point: Some(k.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &k.overrides,
                    ..Default::default()
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            // Forget the module too: a broken module must not be reused silently.
            cache.modules.remove(&k.shader);
            return Err(Error::Gpu(format!(
                "compiling {}::{} {:?}: {e}",
                k.shader.file(),
                k.entry,
                k.overrides
            )));
        }
        cache.compiled += 1;
        cache.compile_seconds += started.elapsed().as_secs_f64();
        cache.pipelines.insert(key, (pipeline.clone(), bgl.clone()));
        Ok((pipeline, bgl))
    }

    /// Pipelines compiled so far and the total seconds spent compiling.
    pub fn pipeline_stats(&self) -> (usize, f64) {
        self.pipelines
            .lock()
            .map(|c| (c.compiled, c.compile_seconds))
            .unwrap_or((0, 0.0))
    }
}
