//! Helpers shared by the bench binaries (`mod common;` in each).

use wgseg::gpu::GpuContext;

/// `n` values in [−1, 1) from a cheap deterministic generator (xorshift): benchmark inputs
/// need no statistical quality, only the same bytes on every run.
pub fn seeded(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The header every bench prints first: which adapter and driver the numbers are from.
pub fn print_adapter(ctx: &GpuContext) {
    println!("adapter: {}", ctx.adapter_name());
    println!(
        "driver:  {} {}",
        ctx.adapter_info().driver,
        ctx.adapter_info().driver_info
    );
}
