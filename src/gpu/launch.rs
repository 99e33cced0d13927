//! The ONLY dispatch site. An op's GPU wrapper describes a launch; this records it.

use std::sync::Arc;

use super::context::GpuContext;
use super::grid;
use super::pool::{GpuBuf, GpuTex};
use super::recorder::{HostTimer, Recorder};
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

/// One binding of a launch after the parameters, in binding order: read-only inputs first,
/// then outputs (every shader's convention: `@binding(0)` is the uniform `Params` block,
/// then its inputs, then its outputs).
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    /// A read-only storage buffer.
    In(&'a GpuBuf),
    /// A writable storage buffer.
    Out(&'a GpuBuf),
    /// A texel array read with `textureLoad` (`texture_2d<f32>`).
    Texels(&'a GpuTex),
    /// A texel array written with `textureStore` (`texture_storage_2d<rgba32float, write>`).
    TexelsOut(&'a GpuTex),
}

/// The binding kinds of a launch, part of the pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    In,
    Out,
    Texels,
    TexelsOut,
}

impl Arg<'_> {
    pub fn kind(&self) -> ArgKind {
        match self {
            Arg::In(_) => ArgKind::In,
            Arg::Out(_) => ArgKind::Out,
            Arg::Texels(_) => ArgKind::Texels,
            Arg::TexelsOut(_) => ArgKind::TexelsOut,
        }
    }

    fn context(&self) -> &Arc<GpuContext> {
        match self {
            Arg::In(b) | Arg::Out(b) => b.context(),
            Arg::Texels(t) | Arg::TexelsOut(t) => t.context(),
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Arg::In(b) | Arg::Out(b) => b.binding(),
            Arg::Texels(t) | Arg::TexelsOut(t) => wgpu::BindingResource::TextureView(&t.view),
        }
    }
}

thread_local! {
    static FOLDED_ON_THIS_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Dispatches launched so far by the calling thread (on any context) whose grid had to be
/// folded to 2-D or 3-D. Per thread, so that a test can tell whether *its own* work took the
/// folded path while other tests launch kernels in parallel.
pub fn folded_dispatches_on_this_thread() -> u64 {
    FOLDED_ON_THIS_THREAD.with(std::cell::Cell::get)
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
        let args: Vec<Arg> = inputs
            .iter()
            .map(|b| Arg::In(b))
            .chain(outputs.iter().map(|b| Arg::Out(b)))
            .collect();
        self.launch_args(k, params, &args, groups)
    }

    /// [`GpuContext::launch`] with any mix of buffer and texel-array bindings (`args` from
    /// binding 1 on).
    pub fn launch_args<P: bytemuck::Pod>(
        self: &Arc<Self>,
        k: &Kernel,
        params: &P,
        args: &[Arg],
        groups: u64,
    ) -> Result<()> {
        let timer = HostTimer::start();
        let done = self.launch_timed(k, params, args, groups);
        timer.finish(self);
        done
    }

    /// [`GpuContext::launch_args`] inside its host timer.
    fn launch_timed<P: bytemuck::Pod>(
        self: &Arc<Self>,
        k: &Kernel,
        params: &P,
        args: &[Arg],
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
            FOLDED_ON_THIS_THREAD.with(|c| c.set(c.get() + 1));
        }
        for b in args {
            if !Arc::ptr_eq(b.context(), self) {
                return Err(Error::Gpu(format!(
                    "{}: a buffer belongs to another device",
                    k.entry
                )));
            }
        }
        let kinds: Vec<ArgKind> = args.iter().map(Arg::kind).collect();
        let (pipeline, bgl) = self.pipeline(k, &kinds)?;
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
        for (i, b) in args.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.resource(),
            });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.entry),
            layout: &bgl,
            entries: &entries,
        });
        let queries = if profiling { rec.queries.clone() } else { None };
        let Some(queries) = queries else {
            self.record_dispatch(&mut rec, pipeline, bind, grid)?;
            if profiling {
                self.flush_locked(&mut rec)?;
                self.wait_locked(&mut rec)?;
                let secs = started.elapsed().as_secs_f64();
                add_profile(&mut rec, k, secs);
            }
            return Ok(());
        };
        // Profiling with timestamps: the dispatch alone in a timed pass.
        let secs = self.timed_dispatch(&mut rec, pipeline, bind, grid, queries)?;
        add_profile(&mut rec, k, secs);
        Ok(())
    }
}

/// Adds one call of `k` taking `secs` to the profile.
fn add_profile(rec: &mut Recorder, k: &Kernel, secs: f64) {
    if let Some(p) = rec.profile.as_mut() {
        let e = p
            .entry(format!("{}::{}", k.shader.file(), k.entry))
            .or_default();
        e.0 += 1;
        e.1 += secs;
    }
}
