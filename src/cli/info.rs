//! `wgseg info`: adapters, the chosen device and its granted limits, plus a smoke test.

use anyhow::{Context, Result};
use wgseg::gpu::list_adapters;
use wgseg::{Device, Tensor};

pub fn run(spec: &str) -> Result<()> {
    let adapters = list_adapters();
    println!("adapters ({}):", adapters.len());
    for a in &adapters {
        println!(
            "  gpu:{}  {}  [{} / {}]  driver: {} {}",
            a.index, a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    let dev = Device::parse(spec).with_context(|| format!("opening device {spec:?}"))?;
    println!("selected: {}", dev.name());
    if let Device::Gpu(ctx) = &dev {
        let i = ctx.adapter_info();
        let l = ctx.limits();
        println!("  backend:  {:?}", i.backend);
        println!("  driver:   {} {}", i.driver, i.driver_info);
        println!("  limits granted:");
        println!(
            "    max_buffer_size                    {}",
            l.max_buffer_size
        );
        println!(
            "    max_storage_buffer_binding_size    {}",
            l.max_storage_buffer_binding_size
        );
        println!(
            "    max_storage_buffers_per_shader_stage {}",
            l.max_storage_buffers_per_shader_stage
        );
        println!(
            "    max_compute_workgroups_per_dimension {}",
            l.max_compute_workgroups_per_dimension
        );
        println!(
            "    max_compute_invocations_per_workgroup {}",
            l.max_compute_invocations_per_workgroup
        );
        println!(
            "    max_compute_workgroup_storage_size {}",
            l.max_compute_workgroup_storage_size
        );
        println!(
            "    timestamp queries                  {}",
            ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY)
        );
        println!(
            "    subgroups                          {} (sizes {}..={})",
            ctx.features().contains(wgpu::Features::SUBGROUP),
            i.subgroup_min_size,
            i.subgroup_max_size
        );
        println!(
            "    max_texture_dimension_2d           {}",
            l.max_texture_dimension_2d
        );
        println!("  kernels chosen for this adapter:");
        match ctx.texture_gemm_unavailable() {
            None => println!("    matmul, conv2d (ungrouped)         texture GEMM (gemm_tex.wgsl)"),
            Some(why) => println!(
                "    matmul                             {} (texture GEMM off: {why})\n    \
                 conv2d                             storage-buffer direct and gather kernels",
                ctx.matmul_kernel()
            ),
        }
        println!("    grouped / depthwise conv2d         storage-buffer direct and gather kernels");
        if ctx.adapter_info().backend == wgpu::Backend::Gl {
            println!(
                "    GL backend: device calls serialised through one lock (wgpu's GL context lock \
                 panics after 6 s of contention)"
            );
        }
    }
    // Smoke test: one kernel round trip.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], [3], &dev)?;
    let y = x.mul_scalar(2.0)?.to_vec()?;
    anyhow::ensure!(
        y == vec![2.0, 4.0, 6.0],
        "smoke test failed: 2·[1,2,3] gave {y:?}"
    );
    println!("smoke test: ok (2·[1, 2, 3] = {y:?})");
    Ok(())
}
