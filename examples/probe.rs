use wgseg::model::{DeepLabV3Plus, ModelConfig};
use wgseg::nn::ParamStore;
use wgseg::{backward, Device, Tensor};
fn main() {
    let dev = Device::gpu().unwrap();
    let cfg: ModelConfig = ModelConfig {
        stem: 16,
        widths: [16, 32, 64, 128],
        depths: [1, 1, 1, 1],
        aspp: 64,
        low: 48,
        decoder: 64,
        output_stride: 16,
        aspp_rates: None,
        separable_aspp: false,
    };
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (b, h, w) = (args[0], args[1], args[2]);
    let mut store = ParamStore::new(&dev);
    let net = DeepLabV3Plus::new(&cfg, 11, &mut store, 1).unwrap();
    let x = Tensor::from_vec(vec![0.3; b * 3 * h * w], [b, 3, h, w], &dev).unwrap();
    let y = Tensor::from_u32(
        (0..b * h * w).map(|i| (i % 11) as u32).collect(),
        [b, h, w],
        &dev,
    )
    .unwrap();
    for it in 0..4 {
        let t = std::time::Instant::now();
        let logits = net.forward(&mut store, &x, true).unwrap();
        let loss = logits.cross_entropy(&y, None, 255).unwrap();
        let g = backward(&loss).unwrap();
        let l = loss.item().unwrap();
        drop(g);
        println!("step {it}: {:.3} s loss {l}", t.elapsed().as_secs_f64());
    }
    if let Device::Gpu(ctx) = &dev {
        ctx.set_profiling(true);
        let logits = net.forward(&mut store, &x, true).unwrap();
        let loss = logits.cross_entropy(&y, None, 255).unwrap();
        let _g = backward(&loss).unwrap();
        ctx.synchronize().unwrap();
        let rep = ctx.profile_report();
        let total: f64 = rep.iter().map(|r| r.2).sum();
        for (k, c, s) in rep.iter().take(15) {
            println!("{k:45} {c:5} {:.1} ms {:.1}%", s * 1e3, 100.0 * s / total);
        }
        println!("total {:.1} ms", total * 1e3);
    }
}
