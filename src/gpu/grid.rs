//! Folding a linear workgroup count into a grid the device accepts.
//!
//! Devices cap each grid dimension (65 535 workgroups on most). Every wgseg kernel reads its
//! workgroup index as `wid.x + (wid.y + wid.z·nwg.y)·nwg.x` (the prelude's `wg_linear`), so a
//! long 1-D dispatch can be folded into a 2-D (or, past `max²`, 3-D) grid. Folding may
//! over-dispatch by less than one row; kernels bounds-check.

use crate::error::{Error, Result};

/// Folds `groups` workgroups into `[x, y, z]` with each `≤ max_per_dim` and `x·y·z ≥ groups`.
///
/// Exact (no over-dispatch) whenever `groups ≤ max_per_dim`. Past `max_per_dim³` workgroups
/// it returns [`Error::Limit`].
pub fn fold(groups: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = u64::from(max_per_dim.max(1));
    if groups <= max {
        return Ok([groups as u32, 1, 1]);
    }
    let z = groups.div_ceil(max * max);
    if z > max {
        return Err(Error::Limit {
            what: "workgroups in one dispatch".into(),
            requested: groups,
            max: max * max * max,
        });
    }
    // Spread evenly over the rows of each slice: over-dispatch stays below `y·z` workgroups.
    let per_slice = groups.div_ceil(z);
    let y = per_slice.div_ceil(max);
    let x = per_slice.div_ceil(y);
    Ok([x as u32, y as u32, z as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_covers_and_respects_limits() {
        for max in [1u32, 2, 3, 7, 256, 65_535] {
            for groups in [
                0u64, 1, 2, 3, 5, 255, 256, 257, 1000, 65_535, 65_536, 200_003,
            ] {
                match fold(groups, max) {
                    Ok([x, y, z]) => {
                        assert!(x <= max && y <= max && z <= max);
                        let total = u64::from(x) * u64::from(y) * u64::from(z);
                        assert!(total >= groups, "{groups} in {x}x{y}x{z}");
                        assert!(
                            total - groups < u64::from(y) * u64::from(z),
                            "{groups} in {x}x{y}x{z}"
                        );
                    }
                    Err(_) => assert!(groups > u64::from(max).pow(3)),
                }
            }
        }
    }
}
