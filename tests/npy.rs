//! `.npy` interop: round trips, NumPy-written files, clear errors on bad files.

mod common;

use wgseg::{npy, Device, Tensor};

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
