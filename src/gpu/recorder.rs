//! Batched recording and submission: the ONLY place that submits, writes or maps buffers.
//!
//! Dispatches are recorded as commands and replayed at flush time into one compute pass per
//! run of consecutive dispatches. Kernel parameters go into the uniform arena, one buffer
//! rewritten at every flush (bound at dynamic offsets; see `flush_locked` for why one is
//! enough).
//! Submission is bounded: at most [`MAX_IN_FLIGHT`] submissions are queued before the oldest
//! is waited for.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::context::GpuContext;
use super::launch::{BindCache, DispatchProfile};
use super::pool::{BufKind, GpuBuf, GpuTex, OwnedBuf, TEXEL_BYTES, TEX_WIDTH};
use crate::error::{Error, Result};

/// Dispatches per submit. Every submit costs the host a fixed amount (command-buffer
/// finish, queue hand-off, wgpu's bookkeeping of finished work), so larger batches lower the
/// host cost per dispatch: 128 measured about a third below 32 per dispatch on lavapipe (the
/// `dispatch:` rows of `cargo bench`; docs/benchmarks.md). The uniform arena holds one
/// parameter block per dispatch of a batch: 128 × 256 B = 32 KiB.
pub const FLUSH_EVERY: usize = 128;
/// Submissions allowed in flight before waiting for the oldest: 4 × 128 = 512 dispatches
/// queued at most, which bounds the driver's memory and the latency of the next wait (with
/// unbounded queuing, drivers grow memory or stall).
pub const MAX_IN_FLIGHT: usize = 4;
/// Largest parameter block of one dispatch.
pub const MAX_PARAMS_BYTES: usize = 256;

/// What profiling collects: per kernel (`file::entry`) calls and seconds, and every
/// dispatch in order.
#[derive(Clone, Default)]
pub(crate) struct Profile {
    pub(crate) kernels: std::collections::BTreeMap<String, (u64, f64)>,
    pub(crate) dispatches: Vec<DispatchProfile>,
}

pub(crate) enum Cmd {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind: wgpu::BindGroup,
        /// Dynamic offset of the dispatch's parameters in the uniform arena.
        offset: u32,
        grid: [u32; 3],
    },
    /// A dispatch alone in a compute pass that writes timestamps 0 and 1 of the query set
    /// at its start and end, resolved into `resolve` and copied to `staging` (profiling).
    TimedDispatch {
        pipeline: wgpu::ComputePipeline,
        bind: wgpu::BindGroup,
        offset: u32,
        grid: [u32; 3],
        queries: wgpu::QuerySet,
        resolve: wgpu::Buffer,
        staging: wgpu::Buffer,
    },
    /// `bytes` from `src` at byte `src_at` to `dst` at `dst_at`.
    Copy {
        src: wgpu::Buffer,
        src_at: u64,
        dst: wgpu::Buffer,
        dst_at: u64,
        bytes: u64,
    },
    Clear {
        buf: wgpu::Buffer,
        bytes: u64,
    },
    /// The first `texels` texels of a buffer into a texel array, in texel order.
    ToTexels {
        src: wgpu::Buffer,
        dst: wgpu::Texture,
        texels: u64,
    },
}

pub(crate) struct Recorder {
    pub(crate) cmds: Vec<Cmd>,
    dispatches: usize,
    /// The uniform arena, one buffer for the context's lifetime (allocated at the first
    /// launch): every flush writes its parameter blocks at the start of it (see
    /// [`GpuContext::flush_locked`] for why one buffer is enough). An [`OwnedBuf`], not a
    /// `GpuBuf`, because the context owns the recorder and a `GpuBuf` would hold the context
    /// (a reference cycle).
    arena: Option<OwnedBuf>,
    /// Bind groups by layout and bound resources (see [`BindCache`]).
    pub(crate) binds: BindCache,
    arena_bytes: Vec<u8>,
    align: usize,
    in_flight: VecDeque<wgpu::SubmissionIndex>,
    /// Dispatches recorded and submits issued since creation (for tests and benchmarks).
    pub(crate) total_dispatches: u64,
    pub(crate) total_submits: u64,
    /// When profiling: per kernel and per dispatch (see [`GpuContext::set_profiling`]).
    pub(crate) profile: Option<Profile>,
    /// The two-entry timestamp query set of profiling, where the device has timestamps.
    pub(crate) queries: Option<wgpu::QuerySet>,
}

impl Recorder {
    pub(crate) fn new(min_uniform_align: u32) -> Self {
        Recorder {
            cmds: Vec::new(),
            dispatches: 0,
            arena: None,
            binds: BindCache::default(),
            arena_bytes: Vec::with_capacity(FLUSH_EVERY * MAX_PARAMS_BYTES),
            align: (min_uniform_align as usize).max(MAX_PARAMS_BYTES),
            in_flight: VecDeque::new(),
            total_dispatches: 0,
            total_submits: 0,
            profile: None,
            queries: None,
        }
    }

    /// The uniform arena buffer (after a [`GpuContext::push_params`]).
    pub(crate) fn arena_buffer(&self) -> Result<wgpu::Buffer> {
        self.arena
            .as_ref()
            .map(|a| a.buffer.clone())
            .ok_or_else(|| Error::Gpu("uniform arena missing".into()))
    }
}

/// Cumulative host-side cost of a context's dispatches ([`GpuContext::host_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Nanoseconds the calling threads spent inside [`GpuContext::launch`] /
    /// [`GpuContext::launch_args`] and [`GpuContext::flush`] (looking pipelines up, bind
    /// groups, recording, encoding the compute passes and submitting), with the waits for the
    /// GPU inside them taken out. Includes pipeline compilation on a kernel's first launch.
    pub host_ns: u64,
    /// Nanoseconds blocked waiting for the GPU: the bound on submissions in flight,
    /// profiling, readbacks and [`GpuContext::synchronize`].
    pub wait_ns: u64,
    /// Dispatches recorded.
    pub dispatches: u64,
    /// Submits issued.
    pub submits: u64,
    /// Bind groups created, and dispatches that found theirs in the bind-group cache.
    pub bind_groups_created: u64,
    pub bind_groups_reused: u64,
}

impl HostStats {
    /// What happened between `earlier` and `self` (both from the same context).
    pub fn since(&self, earlier: &HostStats) -> HostStats {
        HostStats {
            host_ns: self.host_ns.saturating_sub(earlier.host_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            submits: self.submits.saturating_sub(earlier.submits),
            bind_groups_created: self
                .bind_groups_created
                .saturating_sub(earlier.bind_groups_created),
            bind_groups_reused: self
                .bind_groups_reused
                .saturating_sub(earlier.bind_groups_reused),
        }
    }

    /// Host microseconds per dispatch (record + encode + submit), 0 without dispatches.
    pub fn host_us_per_dispatch(&self) -> f64 {
        if self.dispatches == 0 {
            0.0
        } else {
            self.host_ns as f64 * 1e-3 / self.dispatches as f64
        }
    }
}

thread_local! {
    /// Nanoseconds the calling thread has spent in [`GpuContext::wait_gpu`] (on any context),
    /// so that a timed host section can take its own waits out.
    static WAITED_NS_ON_THIS_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A host-time measurement of one call into the recorder: started on entry, it adds the
/// elapsed time less the thread's GPU waits to the context's `host_ns` when finished.
pub(crate) struct HostTimer {
    started: Instant,
    waited_before: u64,
}

impl HostTimer {
    pub(crate) fn start() -> Self {
        HostTimer {
            started: Instant::now(),
            waited_before: WAITED_NS_ON_THIS_THREAD.with(std::cell::Cell::get),
        }
    }

    pub(crate) fn finish(self, ctx: &GpuContext) {
        let elapsed = self.started.elapsed().as_nanos() as u64;
        let waited = WAITED_NS_ON_THIS_THREAD.with(std::cell::Cell::get) - self.waited_before;
        ctx.host_ns
            .fetch_add(elapsed.saturating_sub(waited), Ordering::Relaxed);
    }
}

impl GpuContext {
    pub(crate) fn recorder(&self) -> Result<std::sync::MutexGuard<'_, Recorder>> {
        self.recorder
            .lock()
            .map_err(|_| Error::Gpu("recorder lock poisoned".into()))
    }

    /// Reserves space for `params` in the current flush's uniform arena; returns its offset
    /// (the dynamic offset of binding 0).
    pub(crate) fn push_params(&self, rec: &mut Recorder, params: &[u8]) -> Result<u32> {
        if params.len() > MAX_PARAMS_BYTES {
            return Err(Error::Gpu(format!(
                "kernel parameters of {} bytes exceed {MAX_PARAMS_BYTES}",
                params.len()
            )));
        }
        if rec.arena.is_none() {
            rec.arena = Some(self.alloc_owned((FLUSH_EVERY * rec.align) as u64, BufKind::Uniform)?);
        }
        let off = rec.arena_bytes.len();
        if off + rec.align > FLUSH_EVERY * rec.align {
            return Err(Error::Gpu(format!(
                "more than {FLUSH_EVERY} parameter blocks in one flush"
            )));
        }
        rec.arena_bytes.extend_from_slice(params);
        rec.arena_bytes.resize(off + rec.align, 0);
        Ok(off as u32)
    }

    /// Appends a dispatch; flushes when the batch is full.
    pub(crate) fn record_dispatch(
        &self,
        rec: &mut Recorder,
        pipeline: wgpu::ComputePipeline,
        bind: wgpu::BindGroup,
        offset: u32,
        grid: [u32; 3],
    ) -> Result<()> {
        rec.cmds.push(Cmd::Dispatch {
            pipeline,
            bind,
            offset,
            grid,
        });
        rec.dispatches += 1;
        rec.total_dispatches += 1;
        if rec.dispatches >= FLUSH_EVERY {
            self.flush_locked(rec)?;
        }
        Ok(())
    }

    /// Runs one dispatch alone in a compute pass with timestamps at its start and end,
    /// waits for it and returns its GPU time in seconds (profiling on devices with
    /// timestamp queries; everything recorded before it is submitted first).
    pub(crate) fn timed_dispatch(
        self: &Arc<Self>,
        rec: &mut Recorder,
        pipeline: wgpu::ComputePipeline,
        bind: wgpu::BindGroup,
        offset: u32,
        grid: [u32; 3],
        queries: wgpu::QuerySet,
    ) -> Result<f64> {
        let resolve = self.alloc(16, BufKind::Query)?;
        let staging = self.alloc(16, BufKind::Staging)?;
        rec.cmds.push(Cmd::TimedDispatch {
            pipeline,
            bind,
            offset,
            grid,
            queries,
            resolve: resolve.buffer.clone(),
            staging: staging.buffer.clone(),
        });
        rec.total_dispatches += 1;
        self.flush_locked(rec)?;
        self.wait_locked(rec)?;
        let bytes = self.map_read(&staging, 16)?;
        let t: [u64; 2] = bytemuck::pod_read_unaligned(&bytes);
        let ns = t[1].saturating_sub(t[0]) as f64 * f64::from(self.queue.get_timestamp_period());
        Ok(ns * 1e-9)
    }

    /// Records a zero-fill of the used range of `buf`.
    pub(crate) fn clear(self: &Arc<Self>, buf: &GpuBuf) -> Result<()> {
        let mut rec = self.recorder()?;
        rec.cmds.push(Cmd::Clear {
            buf: buf.buffer.clone(),
            bytes: buf.bytes,
        });
        Ok(())
    }

    /// Records a copy of the used bytes of `src` into `dst` (at least as large), in queue
    /// order with the dispatches around it.
    pub(crate) fn copy_buffer(self: &Arc<Self>, src: &GpuBuf, dst: &GpuBuf) -> Result<()> {
        if dst.bytes < src.bytes {
            return Err(Error::Gpu(format!(
                "copy of {} bytes into a buffer of {} bytes",
                src.bytes, dst.bytes
            )));
        }
        let mut rec = self.recorder()?;
        rec.cmds.push(Cmd::Copy {
            src: src.buffer.clone(),
            src_at: 0,
            dst: dst.buffer.clone(),
            dst_at: 0,
            bytes: src.bytes,
        });
        Ok(())
    }

    /// Records copies of `blocks` runs of `run` f32/u32 elements: run `b` from element
    /// `src_at.0 + b·src_at.1` of `src` to element `dst_at.0 + b·dst_at.1` of `dst` (a
    /// strided copy whose innermost part is contiguous, as concat and narrow along an outer
    /// axis: buffer copies, no kernel). Every run must lie inside its buffer's used bytes.
    pub(crate) fn copy_runs(
        self: &Arc<Self>,
        (src, src_at): (&GpuBuf, (usize, usize)),
        (dst, dst_at): (&GpuBuf, (usize, usize)),
        blocks: usize,
        run: usize,
    ) -> Result<()> {
        if blocks == 0 || run == 0 {
            return Ok(());
        }
        let last = |(at, step): (usize, usize)| ((at + (blocks - 1) * step + run) * 4) as u64;
        if last(src_at) > src.bytes || last(dst_at) > dst.bytes {
            return Err(Error::Gpu(format!(
                "copy of {blocks} runs of {run} elements past a buffer of {} or {} bytes",
                src.bytes, dst.bytes
            )));
        }
        let mut rec = self.recorder()?;
        for b in 0..blocks {
            rec.cmds.push(Cmd::Copy {
                src: src.buffer.clone(),
                src_at: ((src_at.0 + b * src_at.1) * 4) as u64,
                dst: dst.buffer.clone(),
                dst_at: ((dst_at.0 + b * dst_at.1) * 4) as u64,
                bytes: (run * 4) as u64,
            });
        }
        Ok(())
    }

    /// Records a copy of the first `texels` texels (4 f32 each) of `src` into `dst`: a
    /// buffer holding a contiguous tensor whose length is a multiple of 4 becomes a texel
    /// array without a kernel (the copy is a plain memcpy on lavapipe).
    pub(crate) fn copy_to_texels(self: &Arc<Self>, src: &GpuBuf, dst: &GpuTex) -> Result<()> {
        let texels = dst.texels;
        if texels * TEXEL_BYTES > src.bytes {
            return Err(Error::Gpu(format!(
                "copy of {texels} texels from a buffer of {} bytes",
                src.bytes
            )));
        }
        let mut rec = self.recorder()?;
        rec.cmds.push(Cmd::ToTexels {
            src: src.buffer.clone(),
            dst: dst.texture.clone(),
            texels,
        });
        Ok(())
    }

    /// Submits everything recorded so far.
    pub fn flush(self: &Arc<Self>) -> Result<()> {
        let timer = HostTimer::start();
        let done = self
            .recorder()
            .and_then(|mut rec| self.flush_locked(&mut rec));
        timer.finish(self);
        done
    }

    pub(crate) fn flush_locked(&self, rec: &mut Recorder) -> Result<()> {
        if rec.cmds.is_empty() {
            return self.take_errors();
        }
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        // Taken out while encoding and put back empty afterwards, keeping its capacity.
        let mut cmds = std::mem::take(&mut rec.cmds);
        let mut i = 0;
        while i < cmds.len() {
            if matches!(cmds[i], Cmd::Dispatch { .. }) {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                let mut current: Option<&wgpu::ComputePipeline> = None;
                while let Some(Cmd::Dispatch {
                    pipeline,
                    bind,
                    offset,
                    grid,
                }) = cmds.get(i)
                {
                    // Runs of one kernel set their pipeline once.
                    if current != Some(pipeline) {
                        pass.set_pipeline(pipeline);
                        current = Some(pipeline);
                    }
                    pass.set_bind_group(0, bind, &[*offset]);
                    pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
                    i += 1;
                }
            } else {
                match &cmds[i] {
                    Cmd::Copy {
                        src,
                        src_at,
                        dst,
                        dst_at,
                        bytes,
                    } => enc.copy_buffer_to_buffer(src, *src_at, dst, *dst_at, *bytes),
                    Cmd::Clear { buf, bytes } => enc.clear_buffer(buf, 0, Some(*bytes)),
                    Cmd::ToTexels { src, dst, texels } => {
                        copy_to_texels(&mut enc, src, dst, *texels)
                    }
                    Cmd::TimedDispatch {
                        pipeline,
                        bind,
                        offset,
                        grid,
                        queries,
                        resolve,
                        staging,
                    } => {
                        {
                            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: None,
                                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                    query_set: queries,
                                    beginning_of_pass_write_index: Some(0),
                                    end_of_pass_write_index: Some(1),
                                }),
                            });
                            pass.set_pipeline(pipeline);
                            pass.set_bind_group(0, bind, &[*offset]);
                            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
                        }
                        enc.resolve_query_set(queries, 0..2, resolve, 0);
                        enc.copy_buffer_to_buffer(resolve, 0, staging, 0, 16);
                    }
                    Cmd::Dispatch { .. } => {}
                }
                i += 1;
            }
        }
        // One arena buffer serves every flush. What makes that correct is the queue order of
        // WebGPU (and wgpu): `write_buffer` takes effect on the queue timeline after every
        // submission made before it and before every submission made after it (wgpu copies
        // the bytes to a staging buffer at once and encodes the copy into the arena ahead of
        // the next submit, behind a barrier on the arena). So this flush's parameters land
        // after the previous submissions have read theirs from the same bytes, and before
        // this submission reads them, however many submissions are still in flight; the
        // bind groups, which hold the arena at dynamic offsets, never change.
        let idx = {
            let _driver = self.driver_lock()?;
            if let (Some(arena), false) = (&rec.arena, rec.arena_bytes.is_empty()) {
                self.queue.write_buffer(&arena.buffer, 0, &rec.arena_bytes);
            }
            self.queue.submit([enc.finish()])
        };
        cmds.clear();
        rec.cmds = cmds;
        rec.arena_bytes.clear();
        rec.dispatches = 0;
        rec.total_submits += 1;
        rec.in_flight.push_back(idx);
        while rec.in_flight.len() > MAX_IN_FLIGHT {
            if let Some(old) = rec.in_flight.pop_front() {
                self.wait_gpu(Some(old))?;
            }
        }
        self.take_errors()
    }

    /// Uploads `data` into a fresh (or recycled) storage buffer. Pending work is flushed first,
    /// so the write cannot overtake a recorded command that still uses a recycled buffer.
    pub(crate) fn upload(self: &Arc<Self>, data: &[u8]) -> Result<GpuBuf> {
        let buf = self.alloc(data.len() as u64, BufKind::Storage)?;
        let mut rec = self.recorder()?;
        self.flush_locked(&mut rec)?;
        if !data.is_empty() {
            let _driver = self.driver_lock()?;
            self.queue.write_buffer(&buf.buffer, 0, data);
        }
        Ok(buf)
    }

    /// Reads the used bytes of `buf` back to the host.
    pub(crate) fn read(self: &Arc<Self>, buf: &GpuBuf) -> Result<Vec<u8>> {
        Ok(self.read_many(&[buf])?.pop().unwrap_or_default())
    }

    /// Reads the used bytes of every buffer of `bufs` back to the host with one staging
    /// buffer, one submission and one mapping (a bucket of gradients): the one readback path.
    pub(crate) fn read_many(self: &Arc<Self>, bufs: &[&GpuBuf]) -> Result<Vec<Vec<u8>>> {
        // Buffer sizes are multiples of 4 (the pool rounds them), as copies need.
        let total: u64 = bufs.iter().map(|b| b.bytes).sum();
        let staging = self.alloc(total, BufKind::Staging)?;
        {
            let mut rec = self.recorder()?;
            let mut at = 0;
            for buf in bufs {
                rec.cmds.push(Cmd::Copy {
                    src: buf.buffer.clone(),
                    src_at: 0,
                    dst: staging.buffer.clone(),
                    dst_at: at,
                    bytes: buf.bytes,
                });
                at += buf.bytes;
            }
            self.flush_locked(&mut rec)?;
            rec.in_flight.clear();
        }
        let all = self.map_read(&staging, total.max(4))?;
        self.take_errors()?;
        let mut out = Vec::with_capacity(bufs.len());
        let mut at = 0usize;
        for buf in bufs {
            let n = buf.bytes as usize;
            out.push(all.get(at..at + n).unwrap_or_default().to_vec());
            at += n;
        }
        Ok(out)
    }

    /// Maps the first `bytes` of a staging buffer whose copy has been submitted and returns
    /// them.
    pub(crate) fn map_read(&self, staging: &GpuBuf, bytes: u64) -> Result<Vec<u8>> {
        let slice = staging.buffer.slice(0..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _driver = self.driver_lock()?;
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        }
        self.wait_gpu(None)?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?;
            view.to_vec()
        };
        let _driver = self.driver_lock()?;
        staging.buffer.unmap();
        Ok(out)
    }

    /// Blocks until all submitted work has finished (benchmarks, profiling).
    pub fn synchronize(self: &Arc<Self>) -> Result<()> {
        self.flush()?;
        self.wait_gpu(None)?;
        if let Ok(mut rec) = self.recorder() {
            rec.in_flight.clear();
        }
        self.take_errors()
    }

    /// Waits for everything submitted (the recorder lock is held by the caller).
    pub(crate) fn wait_locked(&self, rec: &mut Recorder) -> Result<()> {
        self.wait_gpu(None)?;
        rec.in_flight.clear();
        Ok(())
    }

    /// Blocks until `submission` (or everything submitted, `None`) has finished and its
    /// callbacks (buffer maps) have run: the one place that waits on the device.
    fn wait_gpu(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let started = Instant::now();
        let done = self.driver_lock().and_then(|_driver| {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: submission,
                    timeout: None,
                })
                .map(drop)
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
        });
        let ns = started.elapsed().as_nanos() as u64;
        WAITED_NS_ON_THIS_THREAD.with(|w| w.set(w.get() + ns));
        self.wait_ns.fetch_add(ns, Ordering::Relaxed);
        done
    }

    /// Turns per-kernel profiling on (clearing earlier numbers) or off. While on, every
    /// dispatch is submitted alone and waited for, and its time is added to its kernel's
    /// total: the GPU's own timestamps around the dispatch where the device has timestamp
    /// queries ([`GpuContext::profile_clock`]), else the synchronised wall time (recording,
    /// submission and execution; pipeline compilation excluded). Profiling makes the run
    /// slower; the totals rank kernel families.
    pub fn set_profiling(&self, on: bool) {
        if let Ok(mut rec) = self.recorder() {
            rec.profile = on.then(Default::default);
            if on
                && rec.queries.is_none()
                && self.features().contains(wgpu::Features::TIMESTAMP_QUERY)
            {
                let Ok(_driver) = self.driver_lock() else {
                    return;
                };
                rec.queries = Some(self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("wgseg profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }));
            }
        }
    }

    /// What the profile measures: `"GPU timestamps"` or `"synchronised wall clock"`.
    pub fn profile_clock(&self) -> &'static str {
        if self.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            "GPU timestamps"
        } else {
            "synchronised wall clock"
        }
    }

    /// Per-kernel profile since [`GpuContext::set_profiling`]: `(kernel, calls, seconds)`,
    /// slowest first.
    pub fn profile_report(&self) -> Vec<(String, u64, f64)> {
        let mut v: Vec<(String, u64, f64)> = self
            .recorder()
            .ok()
            .and_then(|r| r.profile.as_ref().map(|p| p.kernels.clone()))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, (c, s))| (k, c, s))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// Every dispatch since [`GpuContext::set_profiling`], in order: kernel, overrides,
    /// workgroups, time and (GEMMs) floating-point operations, for per-layer rates.
    pub fn profile_dispatches(&self) -> Vec<DispatchProfile> {
        self.recorder()
            .ok()
            .and_then(|r| r.profile.as_ref().map(|p| p.dispatches.clone()))
            .unwrap_or_default()
    }

    /// Commands recorded and not yet submitted.
    #[cfg(test)]
    pub(crate) fn pending_commands(&self) -> usize {
        self.recorder().map(|r| r.cmds.len()).unwrap_or(0)
    }

    /// The host-side cost of this context's dispatches so far (cumulative; subtract two
    /// snapshots with [`HostStats::since`]). Per context, so parallel work on other contexts
    /// does not enter it.
    pub fn host_stats(&self) -> HostStats {
        let (dispatches, submits, created, reused) = self
            .recorder()
            .map(|r| {
                (
                    r.total_dispatches,
                    r.total_submits,
                    r.binds.misses,
                    r.binds.hits,
                )
            })
            .unwrap_or_default();
        HostStats {
            host_ns: self.host_ns.load(Ordering::Relaxed),
            wait_ns: self.wait_ns.load(Ordering::Relaxed),
            dispatches,
            submits,
            bind_groups_created: created,
            bind_groups_reused: reused,
        }
    }

    /// Dispatches recorded and submits issued so far.
    pub fn submit_stats(&self) -> (u64, u64) {
        self.recorder()
            .map(|r| (r.total_dispatches, r.total_submits))
            .unwrap_or((0, 0))
    }
}

/// The last handle is gone (every `Device`, `Tensor`, `GpuBuf` and `GpuTex` holds an
/// `Arc<GpuContext>`, and nothing the context owns holds one): work recorded but not yet
/// flushed is submitted and waited for rather than silently discarded, so that the effects
/// of every recorded command happen (and a failure in it is reported on stderr, the only
/// channel left to a destructor). Without pending work nothing is waited for.
impl Drop for GpuContext {
    fn drop(&mut self) {
        let Ok(mut rec) = self.recorder.lock() else {
            return; // poisoned: a panic mid-recording, the command list may be inconsistent
        };
        if rec.cmds.is_empty() {
            return;
        }
        let done = self
            .flush_locked(&mut rec)
            .and_then(|()| self.wait_locked(&mut rec))
            .and_then(|()| self.take_errors());
        if let Err(e) = done {
            eprintln!("wgseg: work pending when the GPU device was dropped failed: {e}");
        }
    }
}

/// Encodes a buffer → texel array copy: the full rows in one copy, the partial last row in a
/// second (a linear texel array has the buffer's byte order, rows of TEX_WIDTH texels).
fn copy_to_texels(
    enc: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    dst: &wgpu::Texture,
    texels: u64,
) {
    let width = u64::from(TEX_WIDTH);
    let row_bytes = width * TEXEL_BYTES;
    let (full, rem) = ((texels / width) as u32, (texels % width) as u32);
    let copy = |enc: &mut wgpu::CommandEncoder, row: u32, w: u32, h: u32| {
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: src,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: u64::from(row) * row_bytes,
                    bytes_per_row: Some(row_bytes as u32),
                    rows_per_image: Some(h),
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: dst,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: row, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
    };
    if full > 0 {
        copy(enc, 0, TEX_WIDTH, full);
    }
    if rem > 0 {
        copy(enc, full, rem, 1);
    }
}
