//! Device memory of sliding-window inference on a large image: the `tiny` DeepLabV3+ (19
//! classes, random weights) on a 2048 × 1024 image with 512 × 512 windows (overlap 1/3),
//! then on the whole image, each on a fresh GPU context; prints the pool's peak and the time.
//!
//! `cargo run --release --example window_memory`

use wgseg::gpu::{GpuContext, GpuOptions};
use wgseg::model::{DeepLabConfig, DeepLabV3Plus};
use wgseg::nn::ParamStore;
use wgseg::train::infer::{window_logits, Window};
use wgseg::{Device, Tensor};

fn main() -> wgseg::Result<()> {
    let (h, w) = (1024, 2048);
    let window = Window {
        h: 512,
        w: 512,
        overlap: 1.0 / 3.0,
    };
    for win in [Some(window), None] {
        let ctx = GpuContext::new(&GpuOptions::default())?;
        let dev = Device::Gpu(ctx.clone());
        let cfg = DeepLabConfig {
            stem: 16,
            widths: [16, 32, 64, 128],
            depths: [1, 1, 1, 1],
            aspp: 64,
            low: 48,
            decoder: 64,
            output_stride: 16,
            aspp_rates: None,
            separable_aspp: false,
            block: Default::default(),
        };
        let mut store = ParamStore::new(&dev);
        let net = DeepLabV3Plus::new(&cfg, 19, &mut store, 1)?;
        let x = Tensor::from_vec(vec![0.1; 3 * h * w], [1, 3, h, w], &dev)?;
        let _g = wgseg::no_grad();
        let t = std::time::Instant::now();
        let what = match win {
            Some(v) => format!("{}×{} windows, overlap {:.2}", v.h, v.w, v.overlap),
            None => "whole image".into(),
        };
        let logits = match win {
            Some(v) => window_logits(&x, v, |c| net.forward(&mut store, c, false)),
            None => net.forward(&mut store, &x, false),
        }
        .and_then(|l| l.to_vec());
        let peak = ctx.pool_stats().peak_live_bytes as f64 / 1048576.0;
        match logits {
            Ok(_) => println!(
                "{w}×{h}, {what}: pool peak {peak:.1} MiB, {:.1} s ({})",
                t.elapsed().as_secs_f64(),
                ctx.adapter_name()
            ),
            Err(e) => println!("{w}×{h}, {what}: failed after a pool peak of {peak:.1} MiB: {e}"),
        }
    }
    Ok(())
}
