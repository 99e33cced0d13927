//! Batched matmul: parity (GPU vs CPU), gradient checks on tile edges, broadcasting,
//! transposed variants, folded grids, literal values and shape errors.

mod common;

use std::sync::Arc;

use common::*;
use wgseg::gpu::{GpuContext, GpuOptions};
use wgseg::ops::{matmul, matmul_t};
use wgseg::{DType, Device, Tensor};

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
    // K step, several tiles with remainders in every dimension.
    let cases: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (7, 13, 5),
        (9, 1, 11),
        (3, 17, 4),
        (65, 65, 65),
        (1, 65, 130),
        (130, 33, 67),
        (64, 16, 64),
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
    // Seven workgroups per dimension: 5 batches × 2 × 2 tiles = 20 workgroups fold to a
    // 7 × 3 grid, so one workgroup runs past the end and must write nothing.
    let ctx: Arc<GpuContext> = GpuContext::new(&GpuOptions {
        max_workgroups_per_dim: Some(7),
        ..Default::default()
    })
    .unwrap();
    let dev = Device::Gpu(ctx);
    let (sa, sb) = ([5, 70, 9], [5, 9, 65]);
    let a = uniform(5 * 70 * 9, 1, -1.0, 1.0);
    let b = uniform(5 * 9 * 65, 2, -1.0, 1.0);
    let run = |d: &Device| {
        let ta = Tensor::from_vec(a.clone(), sa, d).unwrap();
        let tb = Tensor::from_vec(b.clone(), sb, d).unwrap();
        ta.matmul(&tb).unwrap().to_vec_f64().unwrap()
    };
    let want: Vec<f64> = run(&Device::Cpu)
        .iter()
        .map(|&v| f64::from(v as f32))
        .collect();
    assert_close("folded matmul", &run(&dev), &want, DOT);
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
fn matmul_shader_validates_with_naga() {
    let src = wgseg::gpu::Shader::Matmul.source();
    let module = naga::front::wgsl::parse_str(&src).unwrap();
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap();
}
