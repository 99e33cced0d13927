//! Batched matmul: parity (GPU vs CPU), gradient checks on tile edges, broadcasting,
//! transposed variants, folded grids, literal values and shape errors.
//!
//! `check_op` runs on the default context, which takes the subgroup kernel where the adapter
//! has subgroups (lavapipe does); the tests marked "both kernels" also run on a context with
//! subgroups turned off, so the portable workgroup-memory kernel stays covered.

mod common;

use std::sync::Arc;

use common::*;
use wgseg::gpu::{GpuContext, GpuOptions};
use wgseg::ops::{matmul, matmul_t};
use wgseg::{backward, DType, Device, Tensor};

/// A context with subgroups turned off (the portable kernel), when there is a GPU at all.
fn portable_gpu() -> Option<Device> {
    gpu()?;
    let ctx = GpuContext::new(&GpuOptions {
        no_subgroups: true,
        ..Default::default()
    })
    .unwrap();
    Some(Device::Gpu(ctx))
}

/// `matmul_t` forward and both gradients of `sum(out ⊙ w)` on `dev` against the CPU.
fn parity_on(dev: &Device, name: &str, sa: &[usize], sb: &[usize], ta: bool, tb: bool) {
    let da = uniform(sa.iter().product(), 7, -1.0, 1.0);
    let db = uniform(sb.iter().product(), 8, -1.0, 1.0);
    let run = |d: &Device| {
        let a = Tensor::from_vec(da.clone(), sa.to_vec(), d)
            .unwrap()
            .as_param();
        let b = Tensor::from_vec(db.clone(), sb.to_vec(), d)
            .unwrap()
            .as_param();
        let out = matmul_t(&a, &b, ta, tb).unwrap();
        let w = uniform(out.numel(), 9, -1.0, 1.0);
        let w = Tensor::from_vec(w, out.shape().clone(), d).unwrap();
        let g = backward(&out.mul(&w).unwrap().sum().unwrap()).unwrap();
        [&out, g.get(&a).unwrap(), g.get(&b).unwrap()].map(|t| t.to_vec_f64().unwrap())
    };
    let got = run(dev);
    let want = run(&Device::Cpu);
    for (what, (g, w)) in ["forward", "grad a", "grad b"]
        .iter()
        .zip(got.iter().zip(&want))
    {
        let w: Vec<f64> = w.iter().map(|&v| f64::from(v as f32)).collect();
        assert_close(&format!("{name}: {what}"), g, &w, DOT);
    }
}

fn inputs(sa: &[usize], sb: &[usize], seed: u64) -> Vec<Input> {
    let na: usize = sa.iter().product();
    let nb: usize = sb.iter().product();
    vec![
        Input::param(sa.to_vec(), uniform(na, seed, -1.0, 1.0)),
        Input::param(sb.to_vec(), uniform(nb, seed + 1, -1.0, 1.0)),
    ]
}

#[test]
fn matmul_2d_tile_edges_match_and_differentiate() {
    // (M, K, N): one element, odd primes, K = 1, one past the 64-wide tile and the 16-deep
    // K step, several tiles with remainders in every dimension; for the subgroup kernel
    // (64 × 128 tiles, K steps of 8): one past its tile width and K step, exact tiles.
    let cases: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (7, 13, 5),
        (9, 1, 11),
        (3, 17, 4),
        (65, 65, 65),
        (1, 65, 130),
        (130, 33, 67),
        (64, 16, 64),
        (65, 9, 129),
        (64, 8, 128),
    ];
    for (i, &(m, k, n)) in cases.iter().enumerate() {
        check_op(
            &format!("matmul {m}x{k}x{n}"),
            &inputs(&[m, k], &[k, n], 10 + 2 * i as u64),
            Check::new(DOT, DOT),
            |t| t[0].matmul(&t[1]),
        );
    }
}

#[test]
fn matmul_batched_and_broadcast() {
    let cases: &[(&[usize], &[usize])] = &[
        // Equal batch dims.
        (&[3, 7, 5], &[3, 5, 4]),
        (&[2, 2, 66, 3], &[2, 2, 3, 5]),
        // Broadcast batch dims (size 1 and missing leading dims on either side).
        (&[2, 1, 6, 5], &[3, 5, 7]),
        (&[1, 4, 3], &[3, 2, 3, 5]),
        // 2-D against batched, both ways (the first folds into one 2-D product).
        (&[4, 6, 5], &[5, 3]),
        (&[2, 3, 70, 5], &[5, 3]),
        (&[6, 5], &[4, 5, 3]),
        // Vectors (PyTorch promotion).
        (&[5], &[5, 3]),
        (&[4, 5], &[5]),
        (&[5], &[5]),
        (&[2, 4, 5], &[5]),
        (&[5], &[3, 5, 2]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        check_op(
            &format!("matmul {sa:?} x {sb:?}"),
            &inputs(sa, sb, 40 + 2 * i as u64),
            Check::new(DOT, DOT),
            |t| matmul(&t[0], &t[1]),
        );
    }
}

#[test]
fn matmul_output_shapes_follow_numpy() {
    let dev = Device::Cpu;
    let t = |s: &[usize]| Tensor::zeros(s.to_vec(), &dev).unwrap();
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[2, 3], &[3, 4], &[2, 4]),
        (&[5], &[5, 3], &[3]),
        (&[4, 5], &[5], &[4]),
        (&[5], &[5], &[]),
        (&[2, 1, 6, 5], &[3, 5, 7], &[2, 3, 6, 7]),
        (&[6, 5], &[4, 5, 3], &[4, 6, 3]),
        (&[4, 6, 5], &[5, 3], &[4, 6, 3]),
        (&[2, 0, 5], &[5, 3], &[2, 0, 3]),
    ];
    for (sa, sb, so) in cases {
        assert_eq!(
            matmul(&t(sa), &t(sb)).unwrap().dims(),
            *so,
            "{sa:?} x {sb:?}"
        );
    }
}

#[test]
fn matmul_transposed_variants() {
    // Stored shapes for op(a) [.., M, K] and op(b) [.., K, N] with M = 67, K = 19, N = 66
    // (remainders everywhere), A batched and B broadcast from [1, ..].
    let (m, k, n) = (67, 19, 66);
    for ta in [false, true] {
        for tb in [false, true] {
            let sa = if ta { vec![2, k, m] } else { vec![2, m, k] };
            let sb = if tb { vec![1, n, k] } else { vec![1, k, n] };
            check_op(
                &format!("matmul_t ta={ta} tb={tb}"),
                &inputs(&sa, &sb, 90 + u64::from(ta) * 2 + u64::from(tb)),
                Check::new(DOT, DOT),
                |t| matmul_t(&t[0], &t[1], ta, tb),
            );
            // Small, fully checked Jacobian with a broadcast 2-D side.
            let sa = if ta { vec![3, 2] } else { vec![2, 3] };
            let sb = if tb { vec![3, 4, 3] } else { vec![3, 3, 4] };
            check_op(
                &format!("matmul_t small ta={ta} tb={tb}"),
                &inputs(&sa, &sb, 95 + u64::from(ta) * 2 + u64::from(tb)),
                Check::new(DOT, DOT),
                |t| matmul_t(&t[0], &t[1], ta, tb),
            );
        }
    }
}

#[test]
fn matmul_portable_kernel_transposed_variants() {
    // Both kernels: the default context's (check_op above) and the portable one here, on
    // remainders in every dimension of either kernel's tiles and a broadcast batch.
    let Some(dev) = portable_gpu() else { return };
    let (m, k, n) = (67, 19, 130);
    for ta in [false, true] {
        for tb in [false, true] {
            let sa = if ta { vec![2, k, m] } else { vec![2, m, k] };
            let sb = if tb { vec![1, n, k] } else { vec![1, k, n] };
            parity_on(&dev, &format!("portable ta={ta} tb={tb}"), &sa, &sb, ta, tb);
        }
    }
    parity_on(&dev, "portable 1x1x1", &[1, 1], &[1, 1], false, false);
}

#[test]
fn matmul_gradient_to_one_operand_only() {
    // A constant operand gets no gradient (and costs no backward product).
    for (ga, gb) in [(true, false), (false, true)] {
        let mut ins = inputs(&[3, 6, 5], &[5, 4], 130);
        ins[0].grad = ga;
        ins[1].grad = gb;
        check_op(
            &format!("matmul grad a={ga} b={gb}"),
            &ins,
            Check::new(DOT, DOT),
            |t| t[0].matmul(&t[1]),
        );
    }
}

#[test]
fn matmul_literal_values() {
    // [[1, 2, 3], [4, 5, 6]] · [[7, 8], [9, 10], [11, 12]] = [[58, 64], [139, 154]].
    let mut devs = vec![Device::Cpu];
    devs.extend(gpu());
    for dev in devs {
        let a = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], [2, 3], &dev).unwrap();
        let b = Tensor::from_vec(vec![7., 8., 9., 10., 11., 12.], [3, 2], &dev).unwrap();
        assert_eq!(
            a.matmul(&b).unwrap().to_vec().unwrap(),
            [58., 64., 139., 154.]
        );
        // aᵀ (3×2) · a (2×3) through the flags: row i, col j = Σ_r a[r,i]·a[r,j].
        let ata = a.matmul_t(&a, true, false).unwrap();
        assert_eq!(
            ata.to_vec().unwrap(),
            [17., 22., 27., 22., 29., 36., 27., 36., 45.]
        );
        // K = 0: an empty sum is zero.
        let e = Tensor::zeros([2, 0], &dev).unwrap();
        let f = Tensor::zeros([0, 3], &dev).unwrap();
        assert_eq!(e.matmul(&f).unwrap().to_vec().unwrap(), [0.0; 6]);
    }
}

#[test]
fn matmul_folded_grid_and_over_dispatch() {
    let Some(Device::Gpu(_)) = gpu() else { return };
    // Both kernels, seven workgroups per dimension: 5 batches × 2 × 2 subgroup tiles
    // (64 × 128) = 20 workgroups fold to 7 × 3, and 5 × 2 × 3 portable tiles (64 × 64) = 30
    // fold to 7 × 5, so the last workgroups run past the end and must write nothing.
    let (sa, sb) = ([5, 70, 9], [5, 9, 130]);
    let a = uniform(5 * 70 * 9, 1, -1.0, 1.0);
    let b = uniform(5 * 9 * 130, 2, -1.0, 1.0);
    let run = |d: &Device| {
        let ta = Tensor::from_vec(a.clone(), sa, d).unwrap();
        let tb = Tensor::from_vec(b.clone(), sb, d).unwrap();
        ta.matmul(&tb).unwrap().to_vec_f64().unwrap()
    };
    let want: Vec<f64> = run(&Device::Cpu)
        .iter()
        .map(|&v| f64::from(v as f32))
        .collect();
    for no_subgroups in [false, true] {
        let ctx: Arc<GpuContext> = GpuContext::new(&GpuOptions {
            max_workgroups_per_dim: Some(7),
            no_subgroups,
            ..Default::default()
        })
        .unwrap();
        let name = format!("folded matmul, no_subgroups={no_subgroups}");
        assert_close(&name, &run(&Device::Gpu(ctx)), &want, DOT);
    }
}

#[test]
fn matmul_shape_errors_are_errors_not_panics() {
    let dev = Device::Cpu;
    let t = |s: &[usize]| Tensor::zeros(s.to_vec(), &dev).unwrap();
    // Inner dims differ.
    assert!(matmul(&t(&[2, 3]), &t(&[4, 5])).is_err());
    assert!(matmul(&t(&[3]), &t(&[4])).is_err());
    assert!(matmul(&t(&[2, 3]), &t(&[2])).is_err());
    assert!(matmul(&t(&[4, 2, 3]), &t(&[4, 5])).is_err());
    assert!(matmul_t(&t(&[2, 3]), &t(&[3, 4]), true, false).is_err());
    // Batch dims that do not broadcast.
    assert!(matmul(&t(&[2, 2, 3]), &t(&[3, 3, 4])).is_err());
    // Scalars, and rank < 2 for the transposed form.
    assert!(matmul(&t(&[]), &t(&[3, 4])).is_err());
    assert!(matmul_t(&t(&[3]), &t(&[3, 4]), false, false).is_err());
    // Too many batch dims for the kernel.
    assert!(matmul(&t(&[1; 11]), &t(&[1; 11])).is_err());
    // Labels are not matrices.
    let l = Tensor::from_u32(vec![0; 6], [2, 3], &dev).unwrap();
    assert_eq!(l.dtype(), DType::U32);
    assert!(matmul(&l, &t(&[3, 4])).is_err());
    let msg = matmul(&t(&[2, 3]), &t(&[4, 5])).unwrap_err().to_string();
    assert!(
        msg.starts_with("matmul:") && msg.contains("[2, 3]"),
        "{msg}"
    );
}

#[test]
fn matmul_shaders_validate_with_naga() {
    for s in [wgseg::gpu::Shader::Matmul, wgseg::gpu::Shader::MatmulSg] {
        let module = naga::front::wgsl::parse_str(&s.source()).unwrap();
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap();
    }
}
