//! The checkpoint contract by hand (docs/model.md): exports a small randomly initialised
//! DeepLabV3+ checkpoint, a PNG image, wgseg's eval-mode logits (`.npy`) and predicted ids
//! (PNG), to be compared with a PyTorch implementation of the network (not part of wgseg;
//! `deeplabv3plus.py` below stands for it):
//!
//! ```text
//! cargo run --release --example export_logits -- OUT_DIR [--device cpu|gpu]
//! python3 deeplabv3plus.py OUT_DIR/os16/model.safetensors OUT_DIR/image.png \
//!     --logits OUT_DIR/os16/ref.npy --compare OUT_DIR/os16/ids.png
//! ```
//!
//! Two architectures are written: `os16/` (output stride 16, plain ASPP) and `os8/` (output
//! stride 8, depthwise-separable ASPP). Batch-norm affine parameters and the classifier bias
//! are randomised and three training-mode forwards move the running statistics off their
//! init, so that every tensor of the checkpoint matters.
//!
//! The PNG encoder below (stored deflate blocks) exists only because the crate has no image
//! dependency yet.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use wgseg::model::{DeepLabConfig, ModelConfig};
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint::{classes_entry, save_weights, MODEL_FILE};
use wgseg::{no_grad, Device, Result, Tensor};

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
const CLASSES: [&str; 5] = ["road", "building", "car", "person", "bike"];
/// Odd sizes exercise the floors through the strides and the final resize.
const H: usize = 45;
const W: usize = 61;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(args.first().map_or("target/contract", |s| s.as_str()));
    let dev = match args.iter().position(|a| a == "--device") {
        Some(i) => Device::parse(args.get(i + 1).map_or("cpu", |s| s.as_str()))?,
        None => Device::Cpu,
    };
    std::fs::create_dir_all(&out)?;
    let rgb = image(H, W, 7);
    let image_path = out.join("image.png");
    std::fs::write(&image_path, png(&rgb, W, H, 3))?;
    let x = normalise(&rgb, &dev)?;
    for (name, os, separable) in [("os16", 16, false), ("os8", 8, true)] {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)?;
        let cfg: ModelConfig = DeepLabConfig {
            stem: 8,
            widths: [8, 16, 24, 32],
            depths: [1, 2, 1, 1],
            aspp: 16,
            low: 8,
            decoder: 16,
            output_stride: os,
            aspp_rates: None,
            separable_aspp: separable,
            block: Default::default(),
        }
        .into();
        export(&dev, &cfg, &x, &dir)?;
        println!(
            "python3 deeplabv3plus.py {} {} --logits {} --compare {}",
            dir.join(MODEL_FILE).display(),
            image_path.display(),
            dir.join("ref.npy").display(),
            dir.join("ids.png").display()
        );
    }
    Ok(())
}

fn export(dev: &Device, cfg: &ModelConfig, x: &Tensor, dir: &Path) -> Result<()> {
    let mut store = ParamStore::new(dev);
    let net = cfg.build(CLASSES.len(), &mut store, 1)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let _g = no_grad();
    // γ, β and the classifier bias away from 1 / 0.
    let names: Vec<String> = store.names().to_vec();
    for n in names
        .iter()
        .filter(|n| n.ends_with(".bias") || is_bn_weight(n))
    {
        let t = store.get(n)?;
        let base = if n.ends_with(".weight") { 1.0 } else { 0.0 };
        let v = (0..t.numel())
            .map(|_| base + rng.random_range(-0.3f32..0.3))
            .collect();
        let shape = t.shape().clone();
        store.set(n, Tensor::from_vec(v, shape, dev)?)?;
    }
    for s in 0..3 {
        let batch: Vec<f32> = (0..2 * 3 * 32 * 40)
            .map(|_| rng.random_range(-2.0f32..2.0) + s as f32 * 0.1)
            .collect();
        net.forward(
            &mut store,
            &Tensor::from_vec(batch, [2, 3, 32, 40], dev)?,
            true,
        )?;
    }
    save_weights(
        &dir.join(MODEL_FILE),
        &store,
        &*net,
        &[classes_entry(&CLASSES)],
    )?;
    let logits = net.forward(&mut store, x, false)?;
    wgseg::npy::save(&logits, &dir.join("logits.npy"))?;
    let v = logits.to_vec()?;
    let plane = H * W;
    let ids: Vec<u8> = (0..plane)
        .map(|p| {
            let mut best = 0;
            for c in 1..CLASSES.len() {
                if v[c * plane + p] > v[best * plane + p] {
                    best = c;
                }
            }
            best as u8
        })
        .collect();
    std::fs::write(dir.join("ids.png"), png(&ids, W, H, 1)).map_err(|source| wgseg::Error::Io {
        path: dir.join("ids.png"),
        source,
    })
}

/// A BN weight is `….bn.weight`, `….bn1.weight`, `….downsample.1.weight`.
fn is_bn_weight(n: &str) -> bool {
    n.ends_with(".weight")
        && (n.contains(".bn") || n.starts_with("backbone.bn") || n.contains("downsample.1"))
}

/// A smooth colour field with noise and a few blocks: something for every class.
fn image(h: usize, w: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rgb = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            let block = ((x / 12) + (y / 9)) % 3;
            for c in 0..3 {
                let base = (x * 255 / w + y * 128 / h + c * 60 + block * 70) % 256;
                let noise: i32 = rng.random_range(-20..=20);
                rgb.push((base as i32 + noise).clamp(0, 255) as u8);
            }
        }
    }
    rgb
}

/// `[1, 3, H, W]` with the reference's preprocessing, in f32: `(v / 255 − mean) / std`.
fn normalise(rgb: &[u8], dev: &Device) -> Result<Tensor> {
    let mut x = vec![0f32; 3 * H * W];
    for p in 0..H * W {
        for c in 0..3 {
            let v = f32::from(rgb[p * 3 + c]) / 255.0;
            x[c * H * W + p] = (v - MEAN[c]) / STD[c];
        }
    }
    Tensor::from_vec(x, [1, 3, H, W], dev)
}

/// An 8-bit PNG (`channels` = 1: grey, 3: RGB) with stored (uncompressed) deflate blocks.
fn png(pixels: &[u8], w: usize, h: usize, channels: usize) -> Vec<u8> {
    let mut raw = Vec::with_capacity(h * (w * channels + 1));
    for row in pixels.chunks(w * channels) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend(len.to_le_bytes());
        z.extend((!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + u32::from(v)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend((w as u32).to_be_bytes());
    ihdr.extend((h as u32).to_be_bytes());
    ihdr.extend([8, if channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(&data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}
