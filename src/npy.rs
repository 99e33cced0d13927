//! NumPy `.npy` interop (format version 1.0 written; 1.0, 2.0 and 3.0 read; C order only).
//!
//! Written: F32 tensors as `<f4` ([`save`]) or `<f8` ([`save_f64`], the CPU reference's full
//! precision), U32 tensors as `<u4`. Read ([`load`]): `<f4` and `<f8` become F32 (`<f8`
//! kept exactly on the CPU); `<u4`, `<i4`, `<i8` and `|u1` (uint8 label maps) become U32.

use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Precision of the floating-point data [`save_with`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatFormat {
    /// `<f4`: what a GPU tensor holds; a CPU tensor's `f64` values are rounded.
    F32,
    /// `<f8`: a CPU tensor's values exactly; a GPU tensor's `f32` values widened.
    F64,
}

/// Writes `t` to `path` as `<f4` (F32) or `<u4` (U32); see [`save_with`].
pub fn save(t: &Tensor, path: &Path) -> Result<()> {
    save_with(t, path, FloatFormat::F32)
}

/// Writes `t` to `path` as `<f8` (F32) or `<u4` (U32): the CPU reference's `f64` values at
/// full precision. See [`save_with`].
pub fn save_f64(t: &Tensor, path: &Path) -> Result<()> {
    save_with(t, path, FloatFormat::F64)
}

/// Writes `t` to `path` (format version 1.0, C order, shape `t.dims()`): F32 tensors as
/// `<f4` or `<f8` per `float`, U32 tensors as `<u4` whatever `float` says. The file is
/// written atomically (temporary file, then rename).
pub fn save_with(t: &Tensor, path: &Path, float: FloatFormat) -> Result<()> {
    let (descr, width) = match (t.dtype(), float) {
        (DType::F32, FloatFormat::F32) => ("<f4", 4),
        (DType::F32, FloatFormat::F64) => ("<f8", 8),
        (DType::U32, _) => ("<u4", 4),
    };
    let dims: Vec<String> = t.dims().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary; the header ends with a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let hlen = u16::try_from(header.len()).map_err(|_| {
        bad(
            path,
            format!("shape {shape} is too long for a version 1.0 header"),
        )
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + t.numel() * width);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&hlen.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    match descr {
        "<f4" => t
            .to_vec()?
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
        "<f8" => t
            .to_vec_f64()?
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
        _ => t
            .to_vec_u32()?
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
    }
    let tmp = path.with_extension("npy.tmp");
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

/// Reads a `.npy` file onto `dev`: `<f4` and `<f8` become F32 (`<f8` exact on the CPU,
/// rounded to `f32` on a GPU); `<u4`, `<i4`, `<i8` and `|u1` (uint8, e.g. label maps) become
/// U32 (the dtype of labels; negative or too large integers are an error). Malformed files
/// are an [`Error::Data`] naming the file and the problem (bad magic, unsupported version or
/// dtype, truncated header or data, Fortran order, bad shape).
pub fn load(path: &Path, dev: &Device) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(path, "not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad(path, "truncated header")),
        v => {
            return Err(bad(
                path,
                format!("unsupported .npy version {v} (1, 2 and 3 are read)"),
            ))
        }
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "truncated or non-UTF-8 header"))?;
    let descr = field(header, "descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad(path, "header has no descr"))?;
    if field(header, "fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_txt = field(header, "shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(path, "header has no shape"))?;
    let dims = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("bad dimension {s:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("shape {dims:?} has too many elements")))?;
    let data = &bytes[start + hlen..];
    let width = match descr {
        "<f4" | "<u4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|u1" => 1,
        d => {
            return Err(bad(
                path,
                format!(
                    "unsupported dtype {d:?} (read: <f4, <f8, <u4, <i4, <i8, |u1; little-endian)"
                ),
            ))
        }
    };
    if n.checked_mul(width) != Some(data.len()) {
        return Err(bad(
            path,
            format!(
                "{} data bytes for shape {dims:?} of {descr}; expected {}",
                data.len(),
                n.saturating_mul(width)
            ),
        ));
    }
    let chunk = |i: usize| &data[i * width..(i + 1) * width];
    let arr8 = |c: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        a
    };
    let arr4 = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    match descr {
        "<f4" => Tensor::from_vec(
            (0..n).map(|i| f32::from_le_bytes(arr4(chunk(i)))).collect(),
            dims,
            dev,
        ),
        "<f8" => Tensor::from_f64(
            (0..n).map(|i| f64::from_le_bytes(arr8(chunk(i)))).collect(),
            dims,
            dev,
        ),
        _ => {
            let vals: Vec<i64> = (0..n)
                .map(|i| match descr {
                    "<u4" => i64::from(u32::from_le_bytes(arr4(chunk(i)))),
                    "<i4" => i64::from(i32::from_le_bytes(arr4(chunk(i)))),
                    "|u1" => i64::from(chunk(i)[0]),
                    _ => i64::from_le_bytes(arr8(chunk(i))),
                })
                .collect();
            if let Some(v) = vals.iter().find(|&&v| v < 0 || v > i64::from(u32::MAX)) {
                return Err(bad(path, format!("integer {v} does not fit u32")));
            }
            Tensor::from_u32(vals.into_iter().map(|v| v as u32).collect(), dims, dev)
        }
    }
}
