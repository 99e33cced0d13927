//! The GPU context: adapter selection, the device with the adapter's own limits, and the
//! shared state behind the one-door modules (pipelines, pool, recorder).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::pipelines::PipelineCache;
use super::pool::Pool;
use super::recorder::Recorder;
use crate::error::{Error, Result};

/// How to build a context. `Default` picks the adapter from `WGSEG_ADAPTER` or the best one.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Adapter index (as `wgseg info` lists them) or a case-insensitive substring of its name
    /// or backend. `None`: `WGSEG_ADAPTER`, else the first hardware adapter, else a CPU one.
    pub adapter: Option<String>,
    /// Override the workgroups-per-dimension limit (tests use tiny values so that the
    /// grid-folding path runs on small tensors).
    pub max_workgroups_per_dim: Option<u32>,
    /// Leave subgroup operations off even where the adapter has them, so that kernels take
    /// their portable paths (tests use this to cover both on one adapter).
    pub no_subgroups: bool,
    /// Leave the texture GEMM (`shaders/gemm_tex.wgsl`) off, so that matmul and conv take
    /// their storage-buffer kernels (tests use this to cover both).
    pub no_textures: bool,
    /// Take the kernel variants chosen for GPUs even on a CPU adapter (lavapipe), where
    /// some kernels otherwise take CPU-friendly variants ([`GpuContext::cpu_variants`]);
    /// tests use this to cover both.
    pub gpu_variants: bool,
}

/// A description of an adapter, for `wgseg info` and logs.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

/// Everything wgpu-side that the engine shares; one per device. Every `Device`, `Tensor`,
/// `GpuBuf` and `GpuTex` holds an `Arc` of it, and nothing it owns does (its uniform arena is
/// an `OwnedBuf`, its recorded commands hold raw wgpu handles), so it is freed with its last
/// handle; work recorded but not yet submitted then runs first (`Drop` in recorder.rs).
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    max_wg_per_dim: AtomicU32,
    texture_gemm: bool,
    /// See [`GpuContext::cpu_variants`].
    cpu_variants: bool,
    pub(crate) pipelines: Mutex<PipelineCache>,
    pub(crate) pool: Mutex<Pool>,
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) errors: Arc<Mutex<Vec<String>>>,
    /// Host nanoseconds spent inside `launch`/`launch_args` and `flush` with the waits for
    /// the GPU taken out, and nanoseconds blocked waiting for the GPU anywhere (see
    /// [`GpuContext::host_stats`]).
    pub(crate) host_ns: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    /// On wgpu's GL backend: serialises every wgseg call that enters the GL context (see
    /// [`GpuContext::driver_lock`]). `None` on Vulkan, Metal and DX12.
    gl_serial: Option<Mutex<()>>,
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let i = a.get_info();
    AdapterSummary {
        index,
        name: i.name,
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: i.driver,
        driver_info: i.driver_info,
    }
}

/// Adapters that can run compute shaders, in preference order: hardware first, then
/// virtual, then CPU (lavapipe); the GL backend last (it lacks parts of compute).
fn usable_adapters(inst: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut v: Vec<wgpu::Adapter> =
        pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .collect();
    let rank = |a: &wgpu::Adapter| {
        let i = a.get_info();
        let t = match i.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        (i.backend == wgpu::Backend::Gl, t)
    };
    v.sort_by_key(rank);
    v
}

/// Lists the usable adapters in the order `--device gpu:N` / `WGSEG_ADAPTER=N` index them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    usable_adapters(&instance())
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

impl GpuContext {
    /// Creates a context on the chosen adapter, requesting the adapter's own limits.
    pub fn new(opts: &GpuOptions) -> Result<Arc<GpuContext>> {
        let inst = instance();
        let adapters = usable_adapters(&inst);
        if adapters.is_empty() {
            return Err(Error::NoAdapter(
                "no Vulkan, Metal, DX12 or GL adapter with compute shaders was found; install a GPU \
                 driver or Mesa's lavapipe (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)"
                    .into(),
            ));
        }
        let want = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGSEG_ADAPTER").ok())
            .filter(|s| !s.is_empty());
        let adapter = match want {
            None => adapters.into_iter().next(),
            Some(w) => {
                let names: Vec<String> = adapters
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{i}: {}", a.get_info().name))
                    .collect();
                let found = match w.parse::<usize>() {
                    Ok(i) => adapters.into_iter().nth(i),
                    Err(_) => {
                        let wl = w.to_lowercase();
                        adapters.into_iter().find(|a| {
                            let i = a.get_info();
                            i.name.to_lowercase().contains(&wl)
                                || format!("{:?}", i.backend).to_lowercase() == wl
                        })
                    }
                };
                if found.is_none() {
                    return Err(Error::NoAdapter(format!(
                        "no adapter matches {w:?}; available: {}",
                        names.join(", ")
                    )));
                }
                found
            }
        }
        .ok_or_else(|| Error::NoAdapter("no adapter".into()))?;

        let limits = adapter.limits();
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY;
        if !opts.no_subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgseg"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(format!("{}: {e}", adapter.get_info().name)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let max_wg = opts
            .max_workgroups_per_dim
            .unwrap_or(limits.max_compute_workgroups_per_dimension)
            .min(limits.max_compute_workgroups_per_dimension);
        let min_align = limits.min_uniform_buffer_offset_alignment;
        Ok(Arc::new(GpuContext {
            info: adapter.get_info(),
            device,
            queue,
            features,
            max_wg_per_dim: AtomicU32::new(max_wg),
            texture_gemm: !opts.no_textures,
            cpu_variants: adapter.get_info().device_type == wgpu::DeviceType::Cpu
                && !opts.gpu_variants,
            pipelines: Mutex::new(PipelineCache::default()),
            pool: Mutex::new(Pool::default()),
            recorder: Mutex::new(Recorder::new(min_align)),
            errors,
            host_ns: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            gl_serial: (adapter.get_info().backend == wgpu::Backend::Gl).then(|| Mutex::new(())),
            limits,
        }))
    }

    /// The adapter this context runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether kernels take their variants for CPU adapters: a CPU adapter (lavapipe, whose
    /// few worker threads run a workgroup's invocations as SIMD lanes and its barriers as
    /// fibers) unless [`GpuOptions::gpu_variants`]. The variants: the texture GEMM's WIDE
    /// tiles, fewer grad-weight bands and batch-norm's serial finish.
    pub fn cpu_variants(&self) -> bool {
        self.cpu_variants
    }

    /// A one-line adapter description: `name (backend, type)`.
    pub fn adapter_name(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The limits granted by the device (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether kernels may exchange registers within clusters of 8 subgroup lanes of a
    /// 64-invocation workgroup: the `SUBGROUP` feature is on and every subgroup size the
    /// adapter may use lies in 8..=64 (sizes are powers of two, so each is then a multiple
    /// of 8 that divides 64).
    pub fn subgroup_clusters_of_8(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size >= 8
            && self.info.subgroup_max_size <= 64
    }

    /// Whether matmul and conv use the texture GEMM (`shaders/gemm_tex.wgsl`): it needs
    /// clusters of 8 subgroup lanes and texel arrays of TEX_WIDTH texels per row.
    pub fn texture_gemm(&self) -> bool {
        self.texture_gemm
            && self.subgroup_clusters_of_8()
            && self.limits.max_texture_dimension_2d >= super::pool::TEX_WIDTH
    }

    /// Why the texture GEMM is off on this context (`None` when it is on), for `wgseg info`.
    pub fn texture_gemm_unavailable(&self) -> Option<String> {
        if !self.texture_gemm {
            Some("turned off (GpuOptions::no_textures)".into())
        } else if !self.features.contains(wgpu::Features::SUBGROUP) {
            Some("the device has no subgroup operations".into())
        } else if !self.subgroup_clusters_of_8() {
            Some(format!(
                "subgroups of {}..={} lanes (it needs clusters of 8 lanes)",
                self.info.subgroup_min_size, self.info.subgroup_max_size
            ))
        } else if self.limits.max_texture_dimension_2d < super::pool::TEX_WIDTH {
            Some(format!(
                "2-D textures of at most {} texels per row (it needs {})",
                self.limits.max_texture_dimension_2d,
                super::pool::TEX_WIDTH
            ))
        } else {
            None
        }
    }

    /// The GEMM kernel that `matmul` uses on this context (`file::entry`), and the one that
    /// ungrouped `conv2d` layers use when it is the texture GEMM.
    pub fn matmul_kernel(&self) -> &'static str {
        if self.texture_gemm() {
            "gemm_tex.wgsl::matmul"
        } else if self.subgroup_clusters_of_8() {
            "matmul_sg.wgsl::matmul_sg"
        } else {
            "matmul.wgsl::matmul"
        }
    }

    /// Optional features enabled on the device.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Workgroups per grid dimension used for folding (the device limit unless injected).
    pub fn max_workgroups_per_dim(&self) -> u32 {
        self.max_wg_per_dim.load(Ordering::Relaxed)
    }

    /// Largest tensor, in bytes, that one storage binding can hold.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Taken around every call that enters wgpu's GL context on the GL backend (buffer and
    /// texture creation, pipeline compilation, queue writes, submits, polls, unmaps).
    ///
    /// wgpu's GL backend guards its one GL context with a lock that panics after waiting 6 s
    /// ("Could not lock adapter context", wgpu-hal's `gles/egl.rs`). On a busy machine a
    /// submit or a wait on one thread holds it that long while another thread allocates a
    /// buffer or compiles a pipeline, and the test or training run dies in a wgpu panic.
    /// Serialising our own calls through this mutex, which waits without a time limit,
    /// means wgpu's lock is never contended. Always the innermost lock: nothing that takes
    /// another wgseg lock runs while it is held. A no-op on other backends.
    pub(crate) fn driver_lock(&self) -> Result<Option<std::sync::MutexGuard<'_, ()>>> {
        self.gl_serial
            .as_ref()
            .map(|m| {
                m.lock()
                    .map_err(|_| Error::Gpu("GL driver lock poisoned".into()))
            })
            .transpose()
    }

    /// Drains errors reported by wgpu's uncaptured-error handler.
    pub(crate) fn take_errors(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error sink lock poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(Error::Gpu(msg))
        }
    }
}
