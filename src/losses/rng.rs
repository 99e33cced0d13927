//! The counter-based noise generator of the BLV loss, identical on the CPU and in WGSL
//! (`normal()` in `shaders/pixel_loss.wgsl`), so that both backends draw the same noise
//! without storing it.
//!
//! Generator: a `u64` seed becomes a 32-bit stream key `k = pcg(lo ⊕ pcg(hi))` (the seed's
//! low and high words). Element `e` of the stream (the flat index of a logit in `[N, C, H,
//! W]`) hashes to `h₁ = pcg(e ⊕ k)` and `h₂ = pcg(h₁ ⊕ 0x9E3779B9)`, where `pcg` is the PCG
//! hash of Jarzynski & Olano (2020, "Hash functions for GPU rendering"; a bijection of
//! `u32`, so distinct elements get distinct `h₁`). The top 24 bits give two uniforms,
//! `u₁ = (⌊h₁/2⁸⌋ + 1)/2²⁴ ∈ (0, 1]` and `u₂ = ⌊h₂/2⁸⌋/2²⁴ ∈ [0, 1)`, exact in `f32`, and
//! Box–Muller gives one standard-normal draw `r = −√(−2 ln u₁)·cos(2π(u₂ − ½))`
//! (`= √(−2 ln u₁)·cos(2πu₂)`; the cosine's argument stays in `[−π, π)`, where WGSL bounds
//! its error). The GPU evaluates `ln`, `√` and `cos` in `f32`, the CPU in `f64`: the draws
//! agree to `f32` rounding of those functions (`|r| ≤ √(48 ln 2) ≈ 5.77`).

/// The PCG hash: `state = v·747796405 + 2891336453`, `word = ((state >> ((state >> 28) +
/// 4)) ⊕ state)·277803737`, result `(word >> 22) ⊕ word` (wrapping `u32` arithmetic).
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The 32-bit stream key of a seed.
pub fn stream_key(seed: u64) -> u32 {
    pcg_hash(seed as u32 ^ pcg_hash((seed >> 32) as u32))
}

/// The two uniforms `(u₁, u₂)` of element `e` of stream `key` (see the module docs).
pub fn uniforms(key: u32, e: u32) -> (f64, f64) {
    let h1 = pcg_hash(e ^ key);
    let h2 = pcg_hash(h1 ^ 0x9E37_79B9);
    const TWO24: f64 = 16_777_216.0;
    (
        (f64::from(h1 >> 8) + 1.0) / TWO24,
        f64::from(h2 >> 8) / TWO24,
    )
}

/// The standard-normal draw of element `e` of stream `key` (Box–Muller, in `f64`).
pub fn normal(key: u32, e: u32) -> f64 {
    let (u1, u2) = uniforms(key, e);
    -(-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * (u2 - 0.5)).cos()
}

/// A per-step seed from a run seed and a step number (SplitMix64 of both), so that every
/// training step draws fresh noise and a resumed run draws the same noise again.
pub fn step_seed(run_seed: u64, step: u64) -> u64 {
    splitmix64(run_seed ^ splitmix64(step.wrapping_add(0x632B_E59B_D9B4_E019)))
}

/// SplitMix64's finaliser (Steele, Lea & Flood 2014).
fn splitmix64(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pcg_is_the_reference_hash() {
        // Values of the published C function (`uint pcg_hash(uint)`, Jarzynski & Olano
        // 2020) and of this module's Box–Muller draws, evaluated independently in Python
        // (arbitrary-precision integers masked to 32 bits; math.log / math.cos in f64).
        assert_eq!(pcg_hash(0), 129_708_002);
        assert_eq!(pcg_hash(1), 2_831_084_092);
        assert_eq!(pcg_hash(0xDEAD_BEEF), 1_730_779_506);
        assert_eq!(stream_key(42), 2_365_913_068);
        let k = stream_key(42);
        for (e, want) in [
            (0, 0.882_962_495_968_574_8),
            (1, -1.945_507_612_189_692),
            (7, 0.621_930_946_861_253),
        ] {
            assert!((normal(k, e) - want).abs() < 1e-14, "{e}: {}", normal(k, e));
        }
        // A bijection on a sample: no collisions among the first 2^16 inputs.
        let mut seen = std::collections::HashSet::new();
        assert!((0..1u32 << 16).all(|v| seen.insert(pcg_hash(v))));
    }

    #[test]
    fn draws_are_standard_normal() {
        let key = stream_key(12345);
        let n = 200_000u32;
        let r: Vec<f64> = (0..n).map(|e| normal(key, e)).collect();
        let mean = r.iter().sum::<f64>() / f64::from(n);
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f64::from(n);
        // Standard errors: mean 1/√n ≈ 0.0022, variance √(2/n) ≈ 0.0032.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "variance {var}");
        let within1 = r.iter().filter(|v| v.abs() < 1.0).count() as f64 / f64::from(n);
        assert!((within1 - 0.6827).abs() < 0.005, "P(|r| < 1) = {within1}");
        assert!(r.iter().all(|v| v.is_finite() && v.abs() <= 5.8));
    }

    #[test]
    fn seeds_give_different_streams() {
        assert_ne!(stream_key(1), stream_key(2));
        assert_ne!(stream_key(1), stream_key(1 << 32));
        assert_ne!(step_seed(7, 0), step_seed(7, 1));
        assert_eq!(step_seed(7, 3), step_seed(7, 3));
    }
}
