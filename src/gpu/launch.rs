//! The ONLY dispatch site. An op's GPU wrapper describes a launch; this records it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use super::context::GpuContext;
use super::grid;
use super::pool::{GpuBuf, GpuTex};
use super::recorder::{HostTimer, Recorder, MAX_PARAMS_BYTES};
use super::shaders::Shader;
use crate::error::{Error, Result};

/// A kernel: shader file, entry point and `override` constants (all part of the pipeline
/// key), and for profiles only the floating-point operations of the launch, where known.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
    pub overrides: Vec<(&'static str, f64)>,
    pub flops: Option<u64>,
}

impl Kernel {
    pub fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel {
            shader,
            entry,
            overrides: Vec::new(),
            flops: None,
        }
    }

    /// Sets an `override` constant.
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.overrides.push((name, value.into()));
        self
    }

    /// The launch's floating-point operations (a GEMM's 2·M·N·K), shown by the per-dispatch
    /// profile ([`GpuContext::profile_dispatches`]); not part of the pipeline key.
    pub fn with_flops(mut self, flops: u64) -> Self {
        self.flops = Some(flops);
        self
    }
}

/// One dispatch of a profiled run ([`GpuContext::profile_dispatches`]).
#[derive(Clone, Debug)]
pub struct DispatchProfile {
    /// `file::entry`.
    pub kernel: String,
    /// The `override` constants, `NAME=value`.
    pub overrides: String,
    pub workgroups: u64,
    pub secs: f64,
    /// Floating-point operations, where the launch states them (GEMMs).
    pub flops: Option<u64>,
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

    /// Whether `bound` is what this argument binds.
    fn is(&self, bound: &Bound) -> bool {
        match (self, bound) {
            (Arg::In(b) | Arg::Out(b), Bound::Buffer(buf, size)) => {
                b.buffer == *buf && b.bytes.max(4) == *size
            }
            (Arg::Texels(t) | Arg::TexelsOut(t), Bound::View(v)) => t.view == *v,
            _ => false,
        }
    }

    /// What this argument binds, to keep in the bind-group cache.
    fn bound(&self) -> Bound {
        match self {
            Arg::In(b) | Arg::Out(b) => Bound::Buffer(b.buffer.clone(), b.bytes.max(4)),
            Arg::Texels(t) | Arg::TexelsOut(t) => Bound::View(t.view.clone()),
        }
    }

    fn hash_into(&self, h: &mut FxHasher) {
        match self {
            Arg::In(b) | Arg::Out(b) => {
                b.buffer.hash(h);
                h.write_u64(b.bytes.max(4));
            }
            Arg::Texels(t) | Arg::TexelsOut(t) => t.view.hash(h),
        }
    }
}

/// Launches with at most this many bindings after the parameters go through the launch path
/// without allocating.
const MAX_STACK_ARGS: usize = 16;

/// A small, fast, non-cryptographic hasher (FxHash's multiply-rotate) for the launch-path
/// caches, whose keys are handles and short static strings.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by a precomputed [`FxHasher`] hash.
pub(crate) type ByHash<V> = HashMap<u64, V, BuildHasherDefault<FxHasher>>;

/// One binding of a cached bind group after the parameters: a buffer with the size of its
/// binding (a recycled buffer is bound with its new tensor's size), or a texel array's view.
/// The handles are clones, so a cached identity can never be reused by another buffer.
#[derive(PartialEq, Eq)]
pub(crate) enum Bound {
    Buffer(wgpu::Buffer, u64),
    View(wgpu::TextureView),
}

/// Bind groups by (layout, bound buffers and views); the uniform parameters are bound at
/// a dynamic offset into the recorder's one arena buffer, so a bind group does not depend on
/// where a dispatch's parameters lie. Entries stay valid while their buffers are recycled by
/// the pool (a recycled buffer is the same `wgpu::Buffer`); the cache is emptied when the
/// pool destroys its free buffers ([`GpuContext::trim_pool`]) and whenever it reaches
/// [`BindCache::cap`] groups, which bounds its growth.
pub(crate) struct BindCache {
    groups: ByHash<Vec<(wgpu::BindGroupLayout, Vec<Bound>, wgpu::BindGroup)>>,
    len: usize,
    /// Groups held before the cache is emptied.
    pub(crate) cap: usize,
    /// Lookups answered from the cache, and bind groups created.
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

/// Default [`BindCache::cap`]. A dispatch creates at most one group; a training step of the
/// tiny model (~1340 dispatches) found 35–45 % of its groups in the cache and created
/// 700–900, because the pool hands buffers back in drop order, which varies from step to
/// step (docs/benchmarks.md). The cache is then emptied about every tenth step.
pub(crate) const BIND_CACHE_CAP: usize = 8192;

impl Default for BindCache {
    fn default() -> Self {
        BindCache {
            groups: ByHash::default(),
            len: 0,
            cap: BIND_CACHE_CAP,
            hits: 0,
            misses: 0,
        }
    }
}

impl BindCache {
    /// Drops every cached bind group (and with it the cache's handles on buffers and views).
    pub(crate) fn clear(&mut self) {
        self.groups.clear();
        self.len = 0;
    }

    /// Bind groups held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
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
        let all = inputs
            .iter()
            .map(|b| Arg::In(b))
            .chain(outputs.iter().map(|b| Arg::Out(b)));
        let n = inputs.len() + outputs.len();
        match inputs.first().or(outputs.first()) {
            // The arguments on the stack: no allocation per launch.
            Some(first) if n <= MAX_STACK_ARGS => {
                let mut buf = [Arg::In(first); MAX_STACK_ARGS];
                for (d, a) in buf.iter_mut().zip(all) {
                    *d = a;
                }
                self.launch_args(k, params, &buf[..n], groups)
            }
            _ => self.launch_args(k, params, &all.collect::<Vec<_>>(), groups),
        }
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
        // The binding kinds on the stack: no allocation per launch.
        let mut kind_buf = [ArgKind::In; MAX_STACK_ARGS];
        let kind_vec: Vec<ArgKind>;
        let kinds: &[ArgKind] = if args.len() <= MAX_STACK_ARGS {
            for (d, a) in kind_buf.iter_mut().zip(args) {
                *d = a.kind();
            }
            &kind_buf[..args.len()]
        } else {
            kind_vec = args.iter().map(Arg::kind).collect();
            &kind_vec
        };
        let (pipeline, bgl) = self.pipeline(k, kinds)?;
        let mut rec = self.recorder()?;
        let profiling = rec.profile.is_some();
        if profiling {
            self.flush_locked(&mut rec)?;
            self.wait_locked(&mut rec)?;
        }
        let started = std::time::Instant::now();
        let offset = self.push_params(&mut rec, bytemuck::bytes_of(params))?;
        let bind = self.bind_group(&mut rec, k, &bgl, args)?;
        let queries = if profiling { rec.queries.clone() } else { None };
        let Some(queries) = queries else {
            self.record_dispatch(&mut rec, pipeline, bind, offset, grid)?;
            if profiling {
                self.flush_locked(&mut rec)?;
                self.wait_locked(&mut rec)?;
                let secs = started.elapsed().as_secs_f64();
                add_profile(&mut rec, k, groups, secs);
            }
            return Ok(());
        };
        // Profiling with timestamps: the dispatch alone in a timed pass.
        let secs = self.timed_dispatch(&mut rec, pipeline, bind, offset, grid, queries)?;
        add_profile(&mut rec, k, groups, secs);
        Ok(())
    }
}

impl GpuContext {
    /// The bind group of `args` under `bgl`, from the cache or created (binding 0: the
    /// uniform arena at a dynamic offset, `MAX_PARAMS_BYTES` wide).
    fn bind_group(
        &self,
        rec: &mut Recorder,
        k: &Kernel,
        bgl: &wgpu::BindGroupLayout,
        args: &[Arg],
    ) -> Result<wgpu::BindGroup> {
        let mut h = FxHasher::default();
        bgl.hash(&mut h);
        for a in args {
            a.hash_into(&mut h);
        }
        let hash = h.finish();
        let found = rec.binds.groups.get(&hash).and_then(|bucket| {
            bucket.iter().find(|(l, bound, _)| {
                l == bgl
                    && bound.len() == args.len()
                    && args.iter().zip(bound).all(|(a, b)| a.is(b))
            })
        });
        if let Some((_, _, group)) = found {
            let group = group.clone();
            rec.binds.hits += 1;
            return Ok(group);
        }
        let arena = rec.arena_buffer()?;
        let mut entries = Vec::with_capacity(1 + args.len());
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &arena,
                offset: 0,
                size: wgpu::BufferSize::new(MAX_PARAMS_BYTES as u64),
            }),
        });
        for (i, b) in args.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.resource(),
            });
        }
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.entry),
            layout: bgl,
            entries: &entries,
        });
        let binds = &mut rec.binds;
        binds.misses += 1;
        if binds.len >= binds.cap {
            binds.clear();
        }
        binds.len += 1;
        binds.groups.entry(hash).or_default().push((
            bgl.clone(),
            args.iter().map(Arg::bound).collect(),
            group.clone(),
        ));
        Ok(group)
    }
}

/// Adds one call of `k` over `groups` workgroups taking `secs` to the profile.
fn add_profile(rec: &mut Recorder, k: &Kernel, groups: u64, secs: f64) {
    if let Some(p) = rec.profile.as_mut() {
        let name = format!("{}::{}", k.shader.file(), k.entry);
        let e = p.kernels.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += secs;
        let overrides = k
            .overrides
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        p.dispatches.push(DispatchProfile {
            kernel: name,
            overrides,
            workgroups: groups,
            secs,
            flops: k.flops,
        });
    }
}

#[cfg(test)]
mod tests {
    //! The bind-group cache on a private context (its counters are the context's own, so
    //! tests running in parallel on other contexts do not enter them).
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use super::super::lifetime_tests::private_context;
    use super::super::pool::GpuBuf;
    use super::super::{groups_for, GpuContext, Shader};
    use super::Kernel;
    use crate::ops::fill::FillParams;
    use crate::{Device, Tensor};

    const WG: u32 = 64;

    /// Records `y[..n] = value` over the whole used range of `buf`.
    fn fill(ctx: &Arc<GpuContext>, buf: &GpuBuf, value: f32) {
        let n = (buf.bytes() / 4) as usize;
        let params = FillParams {
            n: n as u32,
            value,
            _p0: 0,
            _p1: 0,
        };
        let k = Kernel::new(Shader::Fill, "fill").with("WG", WG);
        ctx.launch(&k, &params, &[], &[buf], groups_for(n, WG))
            .unwrap();
    }

    fn read(ctx: &Arc<GpuContext>, buf: &GpuBuf) -> Vec<f32> {
        bytemuck::cast_slice(&ctx.read(buf).unwrap()).to_vec()
    }

    /// The bind groups of the commands recorded and not yet submitted, with their offsets.
    fn recorded_binds(ctx: &GpuContext) -> Vec<(wgpu::BindGroup, u32)> {
        let rec = ctx.recorder().unwrap();
        rec.cmds
            .iter()
            .filter_map(|c| match c {
                super::super::recorder::Cmd::Dispatch { bind, offset, .. } => {
                    Some((bind.clone(), *offset))
                }
                _ => None,
            })
            .collect()
    }

    /// Two launches with the same buffers share one bind group; each still reads its own
    /// parameters (its own dynamic offset in the arena), within one flush.
    #[test]
    fn launches_with_the_same_buffers_share_one_bind_group() {
        let Some(ctx) = private_context() else { return };
        let a = ctx.alloc_storage(100).unwrap();
        let b = ctx.alloc_storage(100).unwrap();
        let s0 = ctx.host_stats();
        fill(&ctx, &a, 1.0);
        fill(&ctx, &a, 2.0);
        fill(&ctx, &b, 3.0);
        let s = ctx.host_stats().since(&s0);
        assert_eq!(
            (s.bind_groups_created, s.bind_groups_reused),
            (2, 1),
            "{s:?}"
        );
        let binds = recorded_binds(&ctx);
        assert_eq!(binds.len(), 3);
        assert!(binds[0].0 == binds[1].0, "same buffers, same bind group");
        assert!(binds[0].0 != binds[2].0, "other buffer, other bind group");
        assert!(binds[0].1 != binds[1].1 && binds[1].1 != binds[2].1);
        assert_eq!(read(&ctx, &a), vec![2.0; 100]);
        assert_eq!(read(&ctx, &b), vec![3.0; 100]);
        // A later flush reuses the arena's bytes: its bind group still reads the new ones.
        fill(&ctx, &a, 4.0);
        assert_eq!(read(&ctx, &a), vec![4.0; 100]);
        assert_eq!(ctx.host_stats().since(&s0).bind_groups_created, 2);
    }

    /// A buffer freed and handed out again for a tensor of another size is bound with the
    /// new size (a new bind group, not the old one), and the results are right.
    #[test]
    fn a_recycled_buffer_is_bound_for_its_new_tensor() {
        let Some(ctx) = private_context() else { return };
        let a = ctx.alloc_storage(50).unwrap();
        fill(&ctx, &a, 1.0);
        assert_eq!(read(&ctx, &a), vec![1.0; 50]);
        let raw = a.buffer.clone();
        drop(a);
        let c = ctx.alloc_storage(20).unwrap();
        assert!(c.buffer == raw, "the pool hands the same buffer back");
        let s0 = ctx.host_stats();
        fill(&ctx, &c, 5.0);
        assert_eq!(ctx.host_stats().since(&s0).bind_groups_created, 1);
        assert_eq!(read(&ctx, &c), vec![5.0; 20]);
        drop(c);
        // Tensors recycling buffers step after step give the CPU's numbers.
        let dev = Device::Gpu(ctx.clone());
        let start: Vec<f32> = (0..300).map(|i| i as f32 * 0.25 - 10.0).collect();
        let mut t = Tensor::from_vec(start.clone(), [300], &dev).unwrap();
        let mut want = start;
        let s1 = ctx.host_stats();
        for step in 0..40 {
            let s = step as f32;
            t = t.add_scalar(s.into()).unwrap().mul_scalar(0.5).unwrap();
            for w in &mut want {
                *w = (*w + s) * 0.5;
            }
        }
        assert_eq!(t.to_vec().unwrap(), want);
        let s = ctx.host_stats().since(&s1);
        assert!(s.bind_groups_reused > 0, "{s:?}");
        assert_eq!(s.bind_groups_created + s.bind_groups_reused, 80);
    }

    /// The cache never holds more than its cap, and `trim_pool` (which destroys the free
    /// buffers) empties it; launches after either are still right.
    #[test]
    fn the_cache_is_bounded_and_emptied_by_trim_pool() {
        let Some(ctx) = private_context() else { return };
        ctx.recorder().unwrap().binds.cap = 3;
        let bufs: Vec<GpuBuf> = (0..5).map(|_| ctx.alloc_storage(10).unwrap()).collect();
        for (i, b) in bufs.iter().enumerate() {
            fill(&ctx, b, i as f32);
            assert!(ctx.recorder().unwrap().binds.len() <= 3);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(read(&ctx, b), vec![i as f32; 10]);
        }
        drop(bufs);
        assert!(ctx.recorder().unwrap().binds.len() > 0);
        ctx.trim_pool();
        assert_eq!(ctx.recorder().unwrap().binds.len(), 0);
        let e = ctx.alloc_storage(10).unwrap();
        fill(&ctx, &e, 9.0);
        assert_eq!(read(&ctx, &e), vec![9.0; 10]);
    }
}
