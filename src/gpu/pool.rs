//! The buffer pool: the ONLY place that calls `create_buffer` (and `create_texture`).
//!
//! Buffers are recycled by size class and usage. A buffer returned by a dropped tensor is
//! reused as the output of later dispatches, which is safe because all work runs on one
//! queue in submission order; uploads into a recycled buffer first flush pending work
//! (see `recorder.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::context::GpuContext;
use crate::error::{Error, Result};

/// What a buffer is used for; each kind has its own free lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufKind {
    /// Tensor storage: read/written by kernels, copied to and from.
    Storage,
    /// Per-flush uniform arena of kernel parameters.
    Uniform,
    /// Host-visible staging for readbacks.
    Staging,
    /// Resolved timestamp queries (profiling).
    Query,
}

impl BufKind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            BufKind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            BufKind::Uniform => U::UNIFORM | U::COPY_DST,
            BufKind::Staging => U::MAP_READ | U::COPY_DST,
            BufKind::Query => U::QUERY_RESOLVE | U::COPY_SRC,
        }
    }
}

/// Pool statistics in bytes (size-class bytes, i.e. what the device really holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes held by live buffers (tensors, arenas, staging in use).
    pub live_bytes: u64,
    /// Bytes held in the free lists, ready for reuse.
    pub cached_bytes: u64,
    /// Highest `live_bytes` seen.
    pub peak_live_bytes: u64,
    /// Buffers created on the device.
    pub created: u64,
    /// Allocations served from the free lists.
    pub reused: u64,
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<(u64, BufKind), Vec<wgpu::Buffer>>,
    /// Texel arrays by row count.
    free_tex: HashMap<u32, Vec<(wgpu::Texture, wgpu::TextureView)>>,
    pub(crate) stats: PoolStats,
}

/// Width of every texel array (a power of two, so a linear texel index splits into a
/// coordinate with a shift and a mask; = 1 << TEX_SHIFT in shaders/prelude.wgsl). 4096 is
/// within WebGPU's default 8192 limit on every adapter.
pub const TEX_WIDTH: u32 = 4096;
/// Bytes per texel (rgba32float).
pub const TEXEL_BYTES: u64 = 16;

/// Row class of a texel array: powers of two up to 64 rows, then multiples of 16 rows, so
/// arrays are found again across training steps with at most 25 % waste.
fn tex_rows_class(rows: u32) -> u32 {
    let r = rows.max(1);
    if r <= 64 {
        r.next_power_of_two()
    } else {
        r.next_multiple_of(16)
    }
}

/// A pooled "texel array": a linear array of rgba32float texels stored row-major in a 2-D
/// texture [`TEX_WIDTH`] texels wide, read by kernels with `textureLoad` (see `texel` in
/// shaders/prelude.wgsl) and written by copies or storage-texture stores. Kernels read
/// operands that they re-read many times (matmul and conv operands) through textures because
/// texel fetches are several times cheaper per value than storage-buffer loads on lavapipe and
/// go through the texture caches on GPUs (see src/ops/gemm.rs). Returned to the pool on drop.
pub struct GpuTex {
    pub(crate) texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
    /// Texels in use.
    pub(crate) texels: u64,
    rows: u32,
    ctx: Arc<GpuContext>,
}

impl GpuTex {
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Texels in use.
    pub fn texels(&self) -> u64 {
        self.texels
    }

    fn bytes(&self) -> u64 {
        u64::from(self.rows) * u64::from(TEX_WIDTH) * TEXEL_BYTES
    }
}

impl Drop for GpuTex {
    fn drop(&mut self) {
        let bytes = self.bytes();
        if let Ok(mut pool) = self.ctx.pool.lock() {
            pool.stats.live_bytes -= bytes;
            pool.stats.cached_bytes += bytes;
            pool.free_tex
                .entry(self.rows)
                .or_default()
                .push((self.texture.clone(), self.view.clone()));
        }
    }
}

/// Size class of a request: 256 B minimum, then powers of two up to 1 MiB, then steps of a
/// quarter of the enclosing power of two (bounds waste to 25 % for large tensors while keeping
/// the number of classes small, so buffers are found again across training steps).
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    if p <= 1 << 20 {
        return p;
    }
    let step = p / 8;
    b.div_ceil(step) * step
}

/// A pooled device buffer. Returned to the pool when dropped.
pub struct GpuBuf {
    pub(crate) buffer: wgpu::Buffer,
    /// Bytes in use (what bindings and copies see); at most the size class.
    pub(crate) bytes: u64,
    class: u64,
    kind: BufKind,
    ctx: Arc<GpuContext>,
}

impl GpuBuf {
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Bytes in use.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Binding of the used range.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: 0,
            size: wgpu::BufferSize::new(self.bytes.max(4)),
        })
    }
}

impl Drop for GpuBuf {
    fn drop(&mut self) {
        self.ctx
            .give_back(self.buffer.clone(), self.class, self.kind);
    }
}

/// A pooled buffer for the context's own state (the recorder's uniform arena). Unlike
/// [`GpuBuf`] it holds no `Arc<GpuContext>`: the context owns it, so a handle inside it would
/// be a reference cycle that kept the context (and every pooled buffer) alive after the last
/// `Device` and `Tensor` were dropped. The arena lives as long as the context, so it is never
/// returned to the pool (the pool statistics count it as live).
pub(crate) struct OwnedBuf {
    pub(crate) buffer: wgpu::Buffer,
    class: u64,
}

impl GpuContext {
    /// Allocates (or recycles) a buffer of at least `bytes` bytes.
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64, kind: BufKind) -> Result<GpuBuf> {
        let bytes = bytes.max(4).next_multiple_of(4);
        let own = self.alloc_owned(bytes, kind)?;
        Ok(GpuBuf {
            buffer: own.buffer,
            bytes,
            class: own.class,
            kind,
            ctx: Arc::clone(self),
        })
    }

    /// Allocates (or recycles) a buffer of at least `bytes` bytes for the context's own state,
    /// without a handle to the context (see [`OwnedBuf`]).
    pub(crate) fn alloc_owned(&self, bytes: u64, kind: BufKind) -> Result<OwnedBuf> {
        let bytes = bytes.max(4).next_multiple_of(4);
        if kind == BufKind::Storage && bytes > self.max_binding_bytes() {
            return Err(Error::Limit {
                what: "storage buffer binding (one tensor)".into(),
                requested: bytes,
                max: self.max_binding_bytes(),
            });
        }
        let class = size_class(bytes).min(self.limits().max_buffer_size.max(bytes));
        if class > self.limits().max_buffer_size {
            return Err(Error::Limit {
                what: "buffer size".into(),
                requested: class,
                max: self.limits().max_buffer_size,
            });
        }
        let mut pool = self
            .pool
            .lock()
            .map_err(|_| Error::Gpu("buffer pool lock poisoned".into()))?;
        let recycled = pool.free.get_mut(&(class, kind)).and_then(Vec::pop);
        let buffer = match recycled {
            Some(b) => {
                pool.stats.cached_bytes -= class;
                pool.stats.reused += 1;
                b
            }
            None => {
                pool.stats.created += 1;
                let _driver = self.driver_lock()?;
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgseg"),
                    size: class,
                    usage: kind.usage(),
                    mapped_at_creation: false,
                })
            }
        };
        pool.stats.live_bytes += class;
        pool.stats.peak_live_bytes = pool.stats.peak_live_bytes.max(pool.stats.live_bytes);
        Ok(OwnedBuf { buffer, class })
    }

    /// Puts a live buffer of size class `class` on its free list.
    fn give_back(&self, buffer: wgpu::Buffer, class: u64, kind: BufKind) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.stats.live_bytes -= class;
            pool.stats.cached_bytes += class;
            pool.free.entry((class, kind)).or_default().push(buffer);
        }
    }

    /// Current pool statistics.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.lock().map(|p| p.stats).unwrap_or_default()
    }

    /// Rows a texel array may have on this device.
    pub fn max_texel_rows(&self) -> u32 {
        self.limits().max_texture_dimension_2d
    }

    /// Allocates (or recycles) a texel array of at least `texels` texels; its contents are
    /// undefined until written.
    pub(crate) fn alloc_texels(self: &Arc<Self>, texels: u64) -> Result<GpuTex> {
        let rows = texels.div_ceil(u64::from(TEX_WIDTH)).max(1);
        let max = u64::from(self.max_texel_rows());
        if rows > max || self.limits().max_texture_dimension_2d < TEX_WIDTH {
            return Err(Error::Limit {
                what: "texel array rows".into(),
                requested: rows,
                max,
            });
        }
        let rows = (tex_rows_class(rows as u32) as u64).min(max) as u32;
        let bytes = u64::from(rows) * u64::from(TEX_WIDTH) * TEXEL_BYTES;
        let mut pool = self
            .pool
            .lock()
            .map_err(|_| Error::Gpu("buffer pool lock poisoned".into()))?;
        let (texture, view) = match pool.free_tex.get_mut(&rows).and_then(Vec::pop) {
            Some(t) => {
                pool.stats.cached_bytes -= bytes;
                pool.stats.reused += 1;
                t
            }
            None => {
                pool.stats.created += 1;
                let _driver = self.driver_lock()?;
                let texture = self.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("wgseg texels"),
                    size: wgpu::Extent3d {
                        width: TEX_WIDTH,
                        height: rows,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING
                        | wgpu::TextureUsages::STORAGE_BINDING
                        | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                });
                let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
                (texture, view)
            }
        };
        pool.stats.live_bytes += bytes;
        pool.stats.peak_live_bytes = pool.stats.peak_live_bytes.max(pool.stats.live_bytes);
        Ok(GpuTex {
            texture,
            view,
            texels,
            rows,
            ctx: Arc::clone(self),
        })
    }

    /// Releases every cached (free) buffer back to the driver. The bind-group cache is
    /// emptied first: its bind groups hold their buffers and views, so a destroyed buffer's
    /// memory would otherwise live on in it (taken before the pool lock and released: the
    /// launch path takes the recorder, then the pool).
    pub fn trim_pool(&self) {
        if let Ok(mut rec) = self.recorder() {
            rec.binds.clear();
        }
        if let Ok(mut pool) = self.pool.lock() {
            // Destroying buffers enters the GL context.
            let _driver = self.driver_lock();
            pool.free.clear();
            pool.free_tex.clear();
            pool.stats.cached_bytes = 0;
        }
    }
}

impl GpuContext {
    /// A storage buffer for `n` 4-byte elements (f32 or u32).
    pub(crate) fn alloc_storage(self: &Arc<Self>, n: usize) -> Result<GpuBuf> {
        self.alloc(n as u64 * 4, BufKind::Storage)
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_requests_with_bounded_waste() {
        for b in [
            1u64,
            4,
            255,
            256,
            257,
            4096,
            1 << 20,
            (1 << 20) + 4,
            5_000_000,
            123_456_789,
        ] {
            let c = size_class(b);
            assert!(c >= b);
            assert!(c <= (b.max(256) * 2), "{b} -> {c}");
            if b > 1 << 21 {
                assert!(c as f64 <= b as f64 * 1.25 + 1.0, "{b} -> {c}");
            }
        }
    }
}
