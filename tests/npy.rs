//! `.npy` interop: round trips, NumPy-written files, clear errors on bad files.

mod common;

use wgseg::{npy, DType, Device, Tensor};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgseg-npy-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn round_trip_f32_and_u32() {
    for dev in std::iter::once(Device::Cpu).chain(common::gpu()) {
        let t = Tensor::from_vec(vec![1.5, -2.0, 3.25, 0.0, 1e-20, 7.0], [2, 3], &dev).unwrap();
        let p = tmp("f.npy");
        npy::save(&t, &p).unwrap();
        let r = npy::load(&p, &dev).unwrap();
        assert_eq!(r.dims(), &[2, 3]);
        assert_eq!(r.to_vec().unwrap(), t.to_vec().unwrap());
        let l = Tensor::from_u32(vec![0, 255, 7], [3], &dev).unwrap();
        let p = tmp("u.npy");
        npy::save(&l, &p).unwrap();
        let r = npy::load(&p, &dev).unwrap();
        assert_eq!(r.to_vec_u32().unwrap(), vec![0, 255, 7]);
        assert_eq!(r.dims(), &[3]);
    }
}

#[test]
fn header_is_numpy_compatible() {
    let t = Tensor::from_vec(vec![1.0; 4], [4], &Device::Cpu).unwrap();
    let p = tmp("h.npy");
    npy::save(&t, &p).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "data must start 64-byte aligned");
    let h = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(
        h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }"),
        "{h}"
    );
    assert!(h.ends_with('\n'));
}

#[test]
fn reads_a_file_written_by_numpy() {
    // np.save(f, np.array([[1, 2], [3, 4]], dtype='<f8')) — bytes written out by hand.
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    let mut h = header.to_string();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for v in [1.0f64, 2.0, 3.0, 4.0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let p = tmp("np.npy");
    std::fs::write(&p, b).unwrap();
    let t = npy::load(&p, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[2, 2]);
    assert_eq!(t.to_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn bad_files_name_the_file_and_the_problem() {
    let p = tmp("bad.npy");
    std::fs::write(&p, b"not numpy at all").unwrap();
    let e = npy::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("bad.npy") && e.contains("magic"), "{e}");
    let missing = tmp("missing.npy");
    let e = npy::load(&missing, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("missing.npy"), "{e}");
    // Truncated data.
    let t = Tensor::from_vec(vec![1.0; 8], [8], &Device::Cpu).unwrap();
    let p = tmp("trunc.npy");
    npy::save(&t, &p).unwrap();
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 4]).unwrap();
    let e = npy::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("trunc.npy") && e.contains("expected 32"), "{e}");
}

/// A version 1.0 `.npy` file with the given header dict and data, as NumPy writes it.
fn hand_written(name: &str, dict: &str, data: &[u8]) -> std::path::PathBuf {
    let mut h = dict.to_string();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    let p = tmp(name);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn f64_round_trip_keeps_the_cpu_reference_exact() {
    // 1/3 and 0.1 are not f32 values: `save` rounds them, `save_f64` keeps them.
    let v = vec![1.0 / 3.0, 0.1, -2.0 / 7.0, 1e-300, 6.02e23, 0.0];
    let t = Tensor::from_f64(v.clone(), [3, 2], &Device::Cpu).unwrap();
    let p = tmp("f8.npy");
    npy::save_f64(&t, &p).unwrap();
    let b = std::fs::read(&p).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let h = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(
        h.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }"),
        "{h}"
    );
    assert_eq!(b.len(), 10 + hlen + 6 * 8);
    let r = npy::load(&p, &Device::Cpu).unwrap();
    assert_eq!((r.dims(), r.dtype()), (&[3, 2][..], DType::F32));
    assert_eq!(r.to_vec_f64().unwrap(), v, "bit-exact through <f8");
    // The f32 format rounds.
    npy::save(&t, &p).unwrap();
    let r = npy::load(&p, &Device::Cpu).unwrap().to_vec_f64().unwrap();
    assert_eq!(r[0], f64::from((1.0f64 / 3.0) as f32));
    // Labels stay <u4 whatever the float format; GPU tensors are widened exactly.
    for dev in std::iter::once(Device::Cpu).chain(common::gpu()) {
        let l = Tensor::from_u32(vec![3, 0, 4_000_000_000], [3], &dev).unwrap();
        npy::save_with(&l, &p, npy::FloatFormat::F64).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert!(std::str::from_utf8(&b[10..70]).unwrap().contains("'<u4'"));
        let r = npy::load(&p, &dev).unwrap();
        assert_eq!(r.to_vec_u32().unwrap(), vec![3, 0, 4_000_000_000]);
        let f = Tensor::from_vec(vec![0.1, -3.5], [2], &dev).unwrap();
        npy::save_f64(&f, &p).unwrap();
        let r = npy::load(&p, &Device::Cpu).unwrap().to_vec_f64().unwrap();
        assert_eq!(r, vec![f64::from(0.1f32), -3.5]);
    }
}

#[test]
fn u8_label_maps_load_as_u32() {
    // np.save(f, np.array([[0, 1, 255], [7, 19, 254]], dtype=np.uint8)), written by hand.
    let p = hand_written(
        "u1.npy",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }",
        &[0, 1, 255, 7, 19, 254],
    );
    for dev in std::iter::once(Device::Cpu).chain(common::gpu()) {
        let t = npy::load(&p, &dev).unwrap();
        assert_eq!((t.dims(), t.dtype()), (&[2, 3][..], DType::U32));
        assert_eq!(t.to_vec_u32().unwrap(), vec![0, 1, 255, 7, 19, 254]);
        // from_u8 builds the same labels.
        let l = Tensor::from_u8(vec![0, 1, 255, 7, 19, 254], [2, 3], &dev).unwrap();
        assert_eq!(l.dtype(), DType::U32);
        assert!(!l.requires_grad());
        assert_eq!(l.to_vec_u32().unwrap(), t.to_vec_u32().unwrap());
        // A u8 round trip through save writes <u4 (labels are U32 on the device).
        let q = tmp("u1-back.npy");
        npy::save(&l, &q).unwrap();
        assert_eq!(
            npy::load(&q, &dev).unwrap().to_vec_u32().unwrap(),
            vec![0, 1, 255, 7, 19, 254]
        );
    }
    let e = Tensor::from_u8(vec![1, 2, 3], [2, 2], &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("from_u8") && e.contains("3 values"), "{e}");
}

#[test]
fn malformed_files_name_the_problem() {
    let cases: &[(&str, &str, &[u8], &str)] = &[
        (
            "dtype.npy",
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
            "unsupported dtype \">f4\"",
        ),
        (
            "nodescr.npy",
            "{'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
            "no descr",
        ),
        (
            "noshape.npy",
            "{'descr': '|u1', 'fortran_order': False, }",
            &[0; 4],
            "no shape",
        ),
        (
            "baddim.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, x), }",
            &[0; 2],
            "bad dimension",
        ),
        (
            "fortran.npy",
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }",
            &[0; 4],
            "Fortran",
        ),
        (
            "short.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 5],
            "5 data bytes",
        ),
        (
            "negative.npy",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }",
            &(-3i32).to_le_bytes(),
            "-3 does not fit u32",
        ),
        (
            "huge.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            &[0; 4],
            "too many elements",
        ),
    ];
    for (name, dict, data, want) in cases {
        let p = hand_written(name, dict, data);
        let e = npy::load(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    // Version 9, and a header longer than the file.
    let p = tmp("version.npy");
    std::fs::write(&p, b"\x93NUMPY\x09\x00\x10\x00{}").unwrap();
    let e = npy::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("version.npy") && e.contains("version 9"), "{e}");
    let p = tmp("header.npy");
    std::fs::write(&p, b"\x93NUMPY\x01\x00\xff\x00{'descr'").unwrap();
    let e = npy::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("header.npy") && e.contains("truncated"), "{e}");
}
