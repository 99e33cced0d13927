//! The pipeline cache: the ONLY place that builds shader modules, layouts and pipelines.
//!
//! Keyed by shader + entry point + override constants + binding counts, so the number of
//! pipelines is bounded by kernels × overrides, never by shapes. Compilation is expensive
//! (about a tenth of a second per pipeline on lavapipe; docs/benchmarks.md gives the count
//! and time of a full `cargo bench` run), so it is counted and timed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use super::context::GpuContext;
use super::launch::{ArgKind, ByHash, FxHasher, Kernel};
use super::shaders::Shader;
use crate::error::{Error, Result};

type Key = (Shader, &'static str, Vec<(&'static str, u64)>, Vec<ArgKind>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<Shader, wgpu::ShaderModule>,
    layouts: HashMap<Vec<ArgKind>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    /// By the [`FxHasher`] hash of the key, so that a launch finds its pipeline without
    /// building a key (no allocation, no SipHash of the strings).
    pipelines: ByHash<Vec<(Key, (wgpu::ComputePipeline, wgpu::BindGroupLayout))>>,
    /// Pipelines compiled so far and the seconds spent compiling them.
    pub(crate) compiled: usize,
    pub(crate) compile_seconds: f64,
}

fn layout_entries(kinds: &[ArgKind]) -> Vec<wgpu::BindGroupLayoutEntry> {
    let entry = |binding: u32, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    };
    let buffer = |ty| wgpu::BindingType::Buffer {
        ty,
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    // The parameters: a window of the recorder's uniform arena at a dynamic offset, so that
    // one bind group serves every dispatch with the same buffers (see `BindCache`).
    let params = wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Uniform,
        has_dynamic_offset: true,
        min_binding_size: None,
    };
    let mut v = vec![entry(0, params)];
    for (i, k) in kinds.iter().enumerate() {
        let ty = match k {
            ArgKind::In => buffer(wgpu::BufferBindingType::Storage { read_only: true }),
            ArgKind::Out => buffer(wgpu::BufferBindingType::Storage { read_only: false }),
            ArgKind::Texels => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            ArgKind::TexelsOut => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: wgpu::TextureFormat::Rgba32Float,
                view_dimension: wgpu::TextureViewDimension::D2,
            },
        };
        v.push(entry(1 + i as u32, ty));
    }
    v
}

impl GpuContext {
    /// Looks up or compiles the pipeline for `k` with bindings of the given kinds from
    /// binding 1 on (binding 0 is always the uniform parameters).
    pub(crate) fn pipeline(
        &self,
        k: &Kernel,
        kinds: &[ArgKind],
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let mut h = FxHasher::default();
        k.shader.hash(&mut h);
        k.entry.hash(&mut h);
        for (n, v) in &k.overrides {
            n.hash(&mut h);
            h.write_u64(v.to_bits());
        }
        kinds.hash(&mut h);
        let hash = h.finish();
        let is_key = |key: &Key| {
            key.0 == k.shader
                && key.1 == k.entry
                && key.2.len() == k.overrides.len()
                && key
                    .2
                    .iter()
                    .zip(&k.overrides)
                    .all(|((n, bits), (m, v))| n == m && *bits == v.to_bits())
                && key.3 == kinds
        };
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache lock poisoned".into()))?;
        if let Some((_, p)) = cache
            .pipelines
            .get(&hash)
            .and_then(|bucket| bucket.iter().find(|(key, _)| is_key(key)))
        {
            return Ok(p.clone());
        }
        self.check_supported(k, kinds)?;
        let started = Instant::now();
        let driver = self.driver_lock()?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let device = &self.device;
        cache.modules.entry(k.shader).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.shader.file()),
                source: wgpu::ShaderSource::Wgsl(k.shader.source().into()),
            })
        });
        cache.layouts.entry(kinds.to_vec()).or_insert_with(|| {
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &layout_entries(kinds),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        });
        let (bgl, pl) = &cache.layouts[kinds];
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
        let error = pollster::block_on(scope.pop());
        drop(driver);
        if let Some(e) = error {
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
        let key: Key = (
            k.shader,
            k.entry,
            k.overrides.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
            kinds.to_vec(),
        );
        cache
            .pipelines
            .entry(hash)
            .or_default()
            .push((key, (pipeline.clone(), bgl.clone())));
        Ok((pipeline, bgl))
    }

    /// Checks `k` with bindings `kinds` against the device's features and limits before
    /// anything is built, so that a missing feature or a too-small limit comes back as an
    /// error naming the kernel, never as a wgpu validation panic or a driver crash (GL
    /// devices grant 16 storage buffers per stage and no subgroups; WebGPU's minimum is 8).
    pub fn check_supported(&self, k: &Kernel, kinds: &[ArgKind]) -> Result<()> {
        let name = || format!("{}::{}", k.shader.file(), k.entry);
        if k.shader.needs_subgroups() && !self.features().contains(wgpu::Features::SUBGROUP) {
            return Err(Error::Unsupported {
                kernel: name(),
                feature: "subgroup operations",
            });
        }
        let l = self.limits();
        let count = |f: fn(&ArgKind) -> bool| kinds.iter().filter(|k| f(k)).count() as u64;
        let checks = [
            (
                "storage buffers per shader stage",
                count(|k| matches!(k, ArgKind::In | ArgKind::Out)),
                l.max_storage_buffers_per_shader_stage,
            ),
            (
                "sampled textures per shader stage",
                count(|k| matches!(k, ArgKind::Texels)),
                l.max_sampled_textures_per_shader_stage,
            ),
            (
                "storage textures per shader stage",
                count(|k| matches!(k, ArgKind::TexelsOut)),
                l.max_storage_textures_per_shader_stage,
            ),
            (
                "invocations per workgroup",
                k.overrides
                    .iter()
                    .find(|(n, _)| *n == "WG")
                    .map_or(0, |(_, v)| *v as u64),
                l.max_compute_invocations_per_workgroup
                    .min(l.max_compute_workgroup_size_x),
            ),
        ];
        for (what, requested, max) in checks {
            if requested > u64::from(max) {
                return Err(Error::Limit {
                    what: format!("{what} of {}", name()),
                    requested,
                    max: u64::from(max),
                });
            }
        }
        Ok(())
    }

    /// Pipelines compiled so far and the total seconds spent compiling.
    pub fn pipeline_stats(&self) -> (usize, f64) {
        self.pipelines
            .lock()
            .map(|c| (c.compiled, c.compile_seconds))
            .unwrap_or((0, 0.0))
    }
}
