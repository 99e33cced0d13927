//! Sliding-window inference (`wgseg infer --window`, `wgseg eval --window`): the window
//! positions, the blending of overlapping windows, and equality with whole-image inference.

mod common;

use common::{gpu, uniform};
use wgseg::train::infer::{window_logits, Window};
use wgseg::{Device, Tensor};

#[test]
fn window_starts_cover_the_axis_and_end_flush() {
    assert_eq!(
        Window::starts(100, 128, 0.5),
        [0],
        "one window when it fits"
    );
    assert_eq!(Window::starts(128, 128, 0.5), [0]);
    assert_eq!(
        Window::starts(10, 4, 0.0),
        [0, 4, 6],
        "the last window flush with the end"
    );
    assert_eq!(Window::starts(10, 4, 0.5), [0, 2, 4, 6]);
    for (len, win, overlap) in [(97, 16, 1.0 / 3.0), (1000, 512, 0.25), (33, 2, 0.9)] {
        let s = Window::starts(len, win, overlap);
        assert_eq!(s[0], 0);
        assert_eq!(*s.last().unwrap(), len - win);
        // Consecutive windows overlap or touch: every pixel is covered.
        assert!(
            s.windows(2).all(|p| p[1] > p[0] && p[1] <= p[0] + win),
            "{s:?}"
        );
    }
}

#[test]
fn window_specs_parse_and_bad_ones_are_errors() {
    let w = Window::parse("512", 0.25).unwrap();
    assert_eq!((w.h, w.w, w.overlap), (512, 512, 0.25));
    let w = Window::parse("256x512", 0.0).unwrap();
    assert_eq!((w.h, w.w), (256, 512));
    for (spec, overlap) in [
        ("0", 0.5),
        ("x", 0.5),
        ("12y4", 0.5),
        ("64", 1.0),
        ("64", -0.1),
    ] {
        assert!(Window::parse(spec, overlap).is_err(), "{spec} {overlap}");
    }
}

fn devices() -> Vec<Device> {
    std::iter::once(Device::Cpu).chain(gpu()).collect()
}

fn image(dev: &Device, h: usize, w: usize) -> Tensor {
    Tensor::from_vec(uniform(3 * h * w, 5, -1.0, 1.0), [1, 3, h, w], dev).unwrap()
}

#[test]
fn overlapping_windows_average_their_logits() {
    for dev in devices() {
        let (h, w) = (13, 17);
        let x = image(&dev, h, w);
        let win = Window {
            h: 6,
            w: 8,
            overlap: 0.4,
        };
        // Each window returns its call index k in every pixel of both channels: a pixel's
        // result is the mean of the indices of the windows that cover it.
        let mut k = 0.0f32;
        let got = window_logits(&x, win, |c| {
            let d = c.dims().to_vec();
            k += 1.0;
            Tensor::from_vec(vec![k; 2 * d[2] * d[3]], [1, 2, d[2], d[3]], &c.device())
        })
        .unwrap()
        .to_vec()
        .unwrap();
        let (ys, xs) = (Window::starts(h, 6, 0.4), Window::starts(w, 8, 0.4));
        let mut want = vec![(0.0f64, 0u32); h * w];
        let mut id = 0.0;
        for &y0 in &ys {
            for &x0 in &xs {
                id += 1.0;
                for y in y0..y0 + 6 {
                    for x in x0..x0 + 8 {
                        want[y * w + x].0 += id;
                        want[y * w + x].1 += 1;
                    }
                }
            }
        }
        for c in 0..2 {
            for p in 0..h * w {
                let m = want[p].0 / f64::from(want[p].1);
                assert!(
                    (f64::from(got[c * h * w + p]) - m).abs() < 1e-5,
                    "{}: channel {c} pixel {p}: {} vs {m}",
                    dev.name(),
                    got[c * h * w + p]
                );
            }
        }
    }
}

#[test]
fn a_pixelwise_network_gives_the_whole_image_result() {
    for dev in devices() {
        let x = image(&dev, 11, 14);
        // A per-pixel "network" (2 logits from each pixel's channels): windows of any
        // placement must reproduce the whole image's logits.
        let net = |t: &Tensor| {
            let a = t.narrow(1, 0, 1)?.mul(&t.narrow(1, 1, 1)?)?;
            let b = t.narrow(1, 2, 1)?.exp()?;
            wgseg::ops::concat(&[a, b], 1)
        };
        let whole = net(&x).unwrap().to_vec().unwrap();
        for (wh, ww, overlap) in [(4, 5, 0.5), (11, 3, 0.0), (7, 14, 0.25), (20, 20, 0.5)] {
            let win = Window {
                h: wh,
                w: ww,
                overlap,
            };
            let got = window_logits(&x, win, net).unwrap().to_vec().unwrap();
            for (i, (g, e)) in got.iter().zip(&whole).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-6 * (1.0 + e.abs()),
                    "{}: window {wh}×{ww}: value {i}: {g} vs {e}",
                    dev.name()
                );
            }
        }
    }
}

/// Peak device memory (pool bytes held by live buffers) of the `tiny` DeepLabV3+ on a
/// `h × w` image, whole or window by window, on a fresh private context.
fn peak_bytes(h: usize, w: usize, window: Option<Window>) -> Option<u64> {
    gpu()?;
    let ctx = wgseg::gpu::GpuContext::new(&wgseg::gpu::GpuOptions::default()).expect("context");
    let dev = Device::Gpu(ctx.clone());
    let cfg = wgseg::model::DeepLabConfig {
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
    let mut store = wgseg::nn::ParamStore::new(&dev);
    let net = wgseg::model::DeepLabV3Plus::new(&cfg, 11, &mut store, 1).unwrap();
    let x = image(&dev, h, w);
    let _g = wgseg::no_grad();
    let logits = match window {
        Some(win) => window_logits(&x, win, |c| net.forward(&mut store, c, false)),
        None => net.forward(&mut store, &x, false),
    }
    .unwrap();
    assert_eq!(logits.dims(), [1, 11, h, w]);
    Some(ctx.pool_stats().peak_live_bytes)
}

#[test]
fn windows_bound_the_device_memory() {
    // A 256 × 512 image whole against 64 × 64 windows: the windows' peak (the parameters,
    // the input and one window's activations; the logits are accumulated on the host) stays
    // under half the whole image's on every adapter (lavapipe: 7.5 against 33.7 MB with the
    // texture GEMM, 7.9 against 21.4 MB on the kernels of adapters without it).
    let win = Window {
        h: 64,
        w: 64,
        overlap: 1.0 / 3.0,
    };
    let (Some(whole), Some(windowed)) =
        (peak_bytes(256, 512, None), peak_bytes(256, 512, Some(win)))
    else {
        return;
    };
    eprintln!("peak with 64×64 windows {windowed} B, whole image {whole} B");
    assert!(
        windowed * 2 < whole,
        "peak with 64×64 windows {windowed} B, whole image {whole} B"
    );
}
