//! The architectures beside DeepLabV3+ (docs/model.md): DeepLabV3 (basic and bottleneck
//! ResNets), UNet, Attention UNet and UNet++ (both upsamplings, deep supervision), SegNet.
//! For each:
//! logits at the input size at odd sizes, PyTorch tensor names, GPU vs CPU logits and
//! gradients, checkpoint round trips, and every shipped config building.

mod common;

use std::path::Path;

use common::*;
use wgseg::model::{
    Block, DeepLabConfig, DeepLabV3Config, ModelConfig, SegNeXtConfig, SegNetConfig, UNetConfig,
    UNetPlusPlusConfig, Upsampling, ARCHS,
};
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint::{load_weights, read_metadata, save_weights};
use wgseg::{backward, Device, Tensor};

fn deeplabv3(block: Block, output_stride: usize) -> ModelConfig {
    ModelConfig::DeepLabV3(DeepLabV3Config {
        stem: 4,
        widths: [4, 4, 8, 8],
        depths: [1, 2, 1, 1],
        block,
        aspp: 8,
        output_stride,
        aspp_rates: None,
        separable_aspp: false,
    })
}

fn unet(widths: &[usize], upsampling: Upsampling) -> UNetConfig {
    UNetConfig {
        widths: widths.to_vec(),
        upsampling,
    }
}

fn unetpp(upsampling: Upsampling, deep_supervision: bool) -> ModelConfig {
    ModelConfig::UNetPlusPlus(UNetPlusPlusConfig {
        widths: vec![4, 6, 8],
        upsampling,
        deep_supervision,
    })
}

/// Small configs of every new architecture and option, so that CPU-reference runs stay fast.
fn micro_configs() -> Vec<ModelConfig> {
    let mut v = vec![
        deeplabv3(Block::Basic, 16),
        deeplabv3(Block::Bottleneck, 8),
        ModelConfig::DeepLabV3Plus(DeepLabConfig {
            stem: 4,
            widths: [2, 2, 4, 4],
            depths: [2, 1, 1, 1],
            block: Block::Bottleneck,
            aspp: 8,
            low: 4,
            decoder: 8,
            output_stride: 16,
            aspp_rates: None,
            separable_aspp: false,
        }),
    ];
    for up in [Upsampling::Bilinear, Upsampling::Transposed] {
        v.push(ModelConfig::UNet(unet(&[4, 6, 8], up)));
        v.push(ModelConfig::AttentionUNet(unet(&[4, 6, 8], up)));
        v.push(unetpp(up, false));
    }
    v.push(unetpp(Upsampling::Bilinear, true));
    v.push(segnet());
    v.push(segnext(Some(3)));
    v.push(segnext(None));
    v
}

fn segnext(ham_rank: Option<usize>) -> ModelConfig {
    ModelConfig::SegNeXt(SegNeXtConfig {
        widths: [4, 8, 8, 8],
        depths: [1, 1, 2, 1],
        mlp_ratios: [2, 2, 2, 2],
        decoder: 8,
        groups: 2,
        ham_rank,
    })
}

fn segnet() -> ModelConfig {
    ModelConfig::SegNet(SegNetConfig {
        widths: vec![4, 6, 8],
        depths: vec![1, 2, 1],
    })
}

/// The gradient of `loss` for every parameter of `store`, by name.
fn param_grads(store: &ParamStore, loss: &Tensor) -> Vec<(String, Vec<f64>)> {
    let g = backward(loss).unwrap();
    store
        .params()
        .map(|(name, t)| (name.to_string(), g.get(t).unwrap().to_vec_f64().unwrap()))
        .collect()
}

fn image(n: usize, h: usize, w: usize, seed: u64, dev: &Device) -> Tensor {
    Tensor::from_vec(uniform(n * 3 * h * w, seed, -2.0, 2.0), [n, 3, h, w], dev).unwrap()
}

fn shipped(name: &str) -> ModelConfig {
    #[derive(serde::Deserialize)]
    struct File {
        model: ModelConfig,
    }
    let path = format!("{}/models/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str::<File>(&text).unwrap().model
}

#[test]
fn every_architecture_gives_logits_at_the_input_size() {
    let dev = Device::Cpu;
    for cfg in micro_configs() {
        let mut store = ParamStore::new(&dev);
        let net = cfg.build(5, &mut store, 1).unwrap();
        assert_eq!(net.arch(), cfg.arch());
        for (h, w) in [(32, 32), (33, 45), (17, 23)] {
            let y = net
                .forward(&mut store, &image(2, h, w, 2, &dev), true)
                .unwrap();
            assert_eq!(y.dims(), [2, 5, h, w], "{cfg:?}");
            let y = net
                .forward(&mut store, &image(1, h, w, 3, &dev), false)
                .unwrap();
            assert_eq!(y.dims(), [1, 5, h, w], "{cfg:?} eval");
        }
    }
    // Too small for the pooling levels: a clear error, not a kernel failure.
    let mut store = ParamStore::new(&dev);
    let net = ModelConfig::UNet(unet(&[4, 4, 4, 4], Upsampling::Bilinear))
        .build(3, &mut store, 1)
        .unwrap();
    let e = net
        .forward(&mut store, &image(1, 7, 20, 1, &dev), false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("7×20") && e.contains("8 pixels"), "{e}");
}

/// The tensor names a PyTorch module with the same attributes has (the Python package in
/// `python/` builds these modules).
#[test]
fn tensors_carry_pytorch_names() {
    let names = |cfg: &ModelConfig| {
        let mut store = ParamStore::new(&Device::Cpu);
        cfg.build(5, &mut store, 1).unwrap();
        store.names().iter().map(String::from).collect::<Vec<_>>()
    };
    let has = |names: &[String], want: &[&str]| {
        for w in want {
            assert!(names.iter().any(|n| n == w), "no {w} in {names:?}");
        }
    };
    let v3 = names(&deeplabv3(Block::Bottleneck, 16));
    has(
        &v3,
        &[
            "backbone.conv1.weight",
            "backbone.layer1.0.conv3.weight",
            "backbone.layer1.0.bn3.running_var",
            "backbone.layer1.0.downsample.0.weight",
            "backbone.layer2.1.conv2.weight",
            "aspp.convs.3.bn.bias",
            "aspp.project.conv.weight",
            "head.conv.weight",
            "head.bn.running_mean",
            "classifier.weight",
            "classifier.bias",
        ],
    );
    assert!(!v3.iter().any(|n| n.starts_with("decoder.")), "{v3:?}");
    let u = names(&ModelConfig::AttentionUNet(unet(
        &[4, 6, 8],
        Upsampling::Transposed,
    )));
    has(
        &u,
        &[
            "encoder.0.0.conv.weight",
            "encoder.2.1.bn.running_var",
            "decoder.1.up.weight",
            "decoder.1.up.bias",
            "decoder.0.gate.wx.conv.weight",
            "decoder.0.gate.wg.bn.weight",
            "decoder.0.gate.psi.conv.weight",
            "decoder.0.conv.1.conv.weight",
            "classifier.bias",
        ],
    );
    assert_eq!(u.len(), 3 * 2 * 5 + 2 * (2 + 3 * 5 + 2 * 5) + 2);
    let pp = names(&unetpp(Upsampling::Transposed, true));
    has(
        &pp,
        &[
            "conv0_0.0.conv.weight",
            "conv2_0.1.bn.bias",
            "conv0_2.1.conv.weight",
            "up0_2.weight",
            "up1_1.bias",
            "classifiers.0.weight",
            "classifiers.1.bias",
        ],
    );
    assert!(!pp.iter().any(|n| n.starts_with("conv1_2")), "{pp:?}");
    let sn = names(&segnet());
    has(
        &sn,
        &[
            "encoder.0.0.conv.weight",
            "encoder.1.1.bn.running_mean",
            "decoder.2.0.conv.weight",
            "decoder.0.0.bn.bias",
            "classifier.weight",
            "classifier.bias",
        ],
    );
    assert_eq!(sn.len(), 2 * 4 * 5 + 2);
    let sx = names(&segnext(Some(3)));
    has(
        &sx,
        &[
            "backbone.patch_embed1.proj.0.weight",
            "backbone.patch_embed1.proj.1.running_var",
            "backbone.patch_embed1.proj.3.bias",
            "backbone.patch_embed1.proj.4.weight",
            "backbone.patch_embed2.proj.weight",
            "backbone.patch_embed4.norm.running_mean",
            "backbone.block1.0.norm1.weight",
            "backbone.block1.0.attn.proj_1.weight",
            "backbone.block3.1.attn.spatial_gating_unit.conv0.weight",
            "backbone.block3.1.attn.spatial_gating_unit.conv2_1.weight",
            "backbone.block3.1.attn.spatial_gating_unit.conv3.bias",
            "backbone.block2.0.attn.proj_2.bias",
            "backbone.block2.0.mlp.fc1.weight",
            "backbone.block2.0.mlp.dwconv.dwconv.weight",
            "backbone.block2.0.mlp.fc2.bias",
            "backbone.block4.0.layer_scale_1",
            "backbone.block4.0.layer_scale_2",
            "backbone.norm4.weight",
            "decode_head.squeeze.conv.weight",
            "decode_head.squeeze.gn.bias",
            "decode_head.align.gn.weight",
            "decode_head.conv_seg.weight",
            "decode_head.conv_seg.bias",
            "decode_head.hamburger.ham_in.conv.weight",
            "decode_head.hamburger.ham_in.conv.bias",
            "decode_head.hamburger.ham_out.conv.weight",
            "decode_head.hamburger.ham_out.gn.weight",
            "decode_head.hamburger.ham_out.gn.bias",
        ],
    );
    let light = names(&segnext(None));
    assert_eq!(light.len() + 5, sx.len());
    assert!(!light.iter().any(|n| n.contains("hamburger")));
}

/// Shapes of weights that follow from the widths: the UNet family's concatenations and
/// the bottleneck's expansion.
#[test]
fn weight_shapes_follow_the_widths() {
    let shape = |cfg: &ModelConfig, name: &str| {
        let mut store = ParamStore::new(&Device::Cpu);
        cfg.build(5, &mut store, 1).unwrap();
        store.get(name).unwrap().dims().to_vec()
    };
    let bil = ModelConfig::UNet(unet(&[4, 6, 8], Upsampling::Bilinear));
    let tr = ModelConfig::UNet(unet(&[4, 6, 8], Upsampling::Transposed));
    // Skip (4) + the level below, resized (6) or transposed to the skip's width (4).
    assert_eq!(shape(&bil, "decoder.0.conv.0.conv.weight"), [4, 10, 3, 3]);
    assert_eq!(shape(&tr, "decoder.0.conv.0.conv.weight"), [4, 8, 3, 3]);
    assert_eq!(shape(&tr, "decoder.1.up.weight"), [8, 6, 2, 2]);
    // X[0][2] concatenates X[0][0], X[0][1] and the upsampled X[1][1].
    assert_eq!(
        shape(
            &unetpp(Upsampling::Bilinear, false),
            "conv0_2.0.conv.weight"
        ),
        [4, 4 + 4 + 6, 3, 3]
    );
    // SegNet's decoder block b ends at block b − 1's width; the classifier is 3×3.
    assert_eq!(shape(&segnet(), "decoder.1.0.conv.weight"), [6, 6, 3, 3]);
    assert_eq!(shape(&segnet(), "decoder.1.1.conv.weight"), [4, 6, 3, 3]);
    assert_eq!(shape(&segnet(), "classifier.weight"), [5, 4, 3, 3]);
    // SegNeXt's strip convolutions are depthwise 1×k and k×1; the decoder reads stages 2-4.
    let sgu = "backbone.block2.0.attn.spatial_gating_unit";
    assert_eq!(
        shape(&segnext(None), &format!("{sgu}.conv1_1.weight")),
        [8, 1, 1, 11]
    );
    assert_eq!(
        shape(&segnext(None), &format!("{sgu}.conv2_2.weight")),
        [8, 1, 21, 1]
    );
    assert_eq!(
        shape(&segnext(None), "backbone.patch_embed1.proj.0.weight"),
        [2, 3, 3, 3]
    );
    assert_eq!(
        shape(&segnext(None), "decode_head.squeeze.conv.weight"),
        [8, 24, 1, 1]
    );
    let v3 = deeplabv3(Block::Bottleneck, 16);
    assert_eq!(shape(&v3, "backbone.layer4.0.conv3.weight"), [32, 8, 1, 1]);
    assert_eq!(shape(&v3, "aspp.convs.0.conv.weight"), [8, 32, 1, 1]);
}

/// SegNeXt's NMF starts from fixed bases: `frac((i + 1)·φ)` over the row-major index,
/// columns of unit L2 norm (the values python/wgseg_torch computes, printed by it for 4×3).
#[test]
fn nmf_bases_follow_their_formula() {
    let b = wgseg::model::nmf_bases(4, 3);
    let want = [
        [0.7166, 0.1870, 0.6511],
        [0.5474, 0.0714, 0.5399],
        [0.3783, 0.7482, 0.4287],
        [0.2091, 0.6326, 0.3175],
    ];
    for (k, row) in want.iter().enumerate() {
        for (c, w) in row.iter().enumerate() {
            assert!((f64::from(b[k * 3 + c]) - w).abs() < 1e-4, "[{k}][{c}]");
        }
    }
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let b = wgseg::model::nmf_bases(16, 5);
    for c in 0..5 {
        let col: Vec<f64> = (0..16).map(|k| f64::from(b[k * 5 + c])).collect();
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "column {c}: norm {norm}");
        let u: Vec<f64> = (0..16)
            .map(|k| ((k * 5 + c + 1) as f64 * phi).fract())
            .collect();
        let un = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        for k in 0..16 {
            assert!((col[k] - u[k] / un).abs() < 1e-7, "[{k}][{c}]");
        }
    }
}

/// A 2×2 stride-2 transposed convolution against its definition, written out per pixel.
#[test]
fn transposed_convolution_matches_its_definition() {
    use wgseg::nn::ConvTranspose2d;
    let dev = Device::Cpu;
    let mut store = ParamStore::new(&dev);
    let mut rng = wgseg::nn::init_rng(4);
    let up = ConvTranspose2d::new(&mut store, &mut rng, "up", (3, 2), 2).unwrap();
    let bias = vec![0.5f32, -0.25];
    store
        .set(
            "up.bias",
            Tensor::from_vec(bias.clone(), [2], &dev).unwrap(),
        )
        .unwrap();
    let (n, h, w) = (2, 3, 5);
    let x = uniform(n * 3 * h * w, 9, -1.0, 1.0);
    let y = up
        .forward(
            &store,
            &Tensor::from_vec(x.clone(), [n, 3, h, w], &dev).unwrap(),
        )
        .unwrap();
    assert_eq!(y.dims(), [n, 2, 2 * h, 2 * w]);
    let y = y.to_vec_f64().unwrap();
    let wt = store.get("up.weight").unwrap().to_vec_f64().unwrap();
    for b in 0..n {
        for o in 0..2 {
            for yy in 0..2 * h {
                for xx in 0..2 * w {
                    let (i, a, j, c) = (yy / 2, yy % 2, xx / 2, xx % 2);
                    let mut want = f64::from(bias[o]);
                    for ci in 0..3 {
                        let xv = f64::from(x[((b * 3 + ci) * h + i) * w + j]);
                        want += wt[((ci * 2 + o) * 2 + a) * 2 + c] * xv;
                    }
                    let got = y[((b * 2 + o) * 2 * h + yy) * 2 * w + xx];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "({b},{o},{yy},{xx}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// Logits, gradients of every parameter and one running statistic on the GPU against the
/// CPU reference, for every micro config in training mode (batch 4, an odd size).
#[test]
fn gpu_and_cpu_agree_on_logits_and_gradients() {
    let Some(gpu) = gpu() else { return };
    let (n, h, w) = (4, 21, 26);
    let x = uniform(n * 3 * h * w, 5, -2.0, 2.0);
    let labels: Vec<u32> = (0..n * h * w).map(|i| (i % 7) as u32 % 5).collect();
    for cfg in micro_configs() {
        let run = |dev: &Device| {
            let mut store = ParamStore::new(dev);
            let net = cfg.build(5, &mut store, 3).unwrap();
            let xt = Tensor::from_vec(x.clone(), [n, 3, h, w], dev).unwrap();
            let y = Tensor::from_u32(labels.clone(), [n, h, w], dev).unwrap();
            let logits = net.forward(&mut store, &xt, true).unwrap();
            let loss = logits.cross_entropy(&y, None, 255).unwrap();
            let grads = param_grads(&store, &loss);
            let bn = store
                .names()
                .iter()
                .rfind(|n| n.ends_with("running_mean"))
                .unwrap()
                .to_string();
            let rm = store.get(&bn).unwrap().to_vec_f64().unwrap();
            (logits.to_vec_f64().unwrap(), grads, rm)
        };
        let (cl, cg, crm) = run(&Device::Cpu);
        let (gl, gg, grm) = run(&gpu);
        let tol = Tol {
            rtol: 1e-3,
            atol: 1e-4,
        };
        let what = cfg.arch();
        assert_close(&format!("{what} logits"), &gl, &cl, tol);
        assert_close(&format!("{what} running mean"), &grm, &crm, tol);
        assert_eq!(gg.len(), cg.len());
        for ((name, g), (_, c)) in gg.iter().zip(&cg) {
            assert_close(&format!("{what}: gradient of {name}"), g, c, tol);
        }
    }
}

/// The shipped tiny config of every new architecture (the ones that train on lavapipe), on
/// the GPU against the CPU reference (batch 4 of 32×32): logits in training mode, and every
/// gradient through an evaluation-mode forward.
///
/// Why evaluation mode for the gradients: in training mode batch norm's backward subtracts
/// the per-channel means of the upstream gradient, so a norm's bias gradient is a sum whose
/// terms nearly cancel. In unet-tiny, the f32 GPU gradients then differed from the f64
/// reference by 4–10·10⁻³ norm-wise (attention-unet-tiny's `psi.bn.bias`: 1.5·10⁻²) with the
/// texture GEMM on and off alike, every tensor behind the first such norm — rounding of a
/// cancelling sum, not a kernel error, which this check would then not see. Training-mode
/// gradients are checked elementwise on the micro configs above and on `tiny`
/// (`tests/model.rs`). Gradients are compared norm-wise per tensor: through the ReLU kinks
/// of many layers single elements move more than their tensor (evaluation mode on
/// lavapipe: at most 7.4·10⁻⁴ norm-wise, unetpp-tiny's `conv0_0.0.conv.weight`, whose
/// element 53 differed by 5·10⁻³ of itself); a wrong kernel is off by order 1.
#[test]
fn tiny_configs_agree_on_gpu_and_cpu() {
    let Some(gpu) = gpu() else { return };
    let (n, h, w) = (4, 32, 32);
    let x = uniform(n * 3 * h * w, 15, -2.0, 2.0);
    let labels: Vec<u32> = (0..n * h * w).map(|i| (i % 11) as u32 % 5).collect();
    for name in [
        "deeplabv3-tiny",
        "unet-tiny",
        "attention-unet-tiny",
        "unetpp-tiny",
        "segnet-tiny",
        "segnext-tiny",
    ] {
        let cfg = shipped(name);
        let run = |dev: &Device| {
            let mut store = ParamStore::new(dev);
            let net = cfg.build(5, &mut store, 3).unwrap();
            let xt = Tensor::from_vec(x.clone(), [n, 3, h, w], dev).unwrap();
            let y = Tensor::from_u32(labels.clone(), [n, h, w], dev).unwrap();
            let train = net.forward(&mut store, &xt, true).unwrap();
            let logits = net.forward(&mut store, &xt, false).unwrap();
            let loss = logits.cross_entropy(&y, None, 255).unwrap();
            let grads = param_grads(&store, &loss);
            (train.to_vec_f64().unwrap(), grads)
        };
        let (cl, cg) = run(&Device::Cpu);
        let (gl, gg) = run(&gpu);
        let tol = Tol {
            rtol: 1e-3,
            atol: 1e-4,
        };
        assert_close(&format!("{name} logits"), &gl, &cl, tol);
        assert_eq!(gg.len(), cg.len());
        for ((p, g), (_, c)) in gg.iter().zip(&cg) {
            let diff = g
                .iter()
                .zip(c)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm = c.iter().map(|b| b * b).sum::<f64>().sqrt();
            assert!(
                diff <= 3e-3 * norm + 1e-6,
                "{name}: gradient of {p}: ‖gpu − cpu‖ = {diff:.3e}, ‖cpu‖ = {norm:.3e}"
            );
        }
    }
}

/// Save, read the architecture back from the file alone, rebuild, load: the same logits.
#[test]
fn checkpoints_round_trip_every_architecture() {
    let dir = std::env::temp_dir().join(format!("wgseg-arch-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = Device::Cpu;
    let x = image(1, 19, 24, 8, &dev);
    for (i, cfg) in micro_configs().into_iter().enumerate() {
        let mut store = ParamStore::new(&dev);
        let net = cfg.build(4, &mut store, 10 + i as u64).unwrap();
        // A training step moves the running statistics away from their initial values.
        net.forward(&mut store, &image(2, 19, 24, 7, &dev), true)
            .unwrap();
        let want = net
            .forward(&mut store, &x, false)
            .unwrap()
            .to_vec()
            .unwrap();
        let path = dir.join(format!("{i}.safetensors"));
        save_weights(&path, &store, net.as_ref(), &[]).unwrap();
        let meta = read_metadata(&path).unwrap();
        assert_eq!(meta.arch, cfg.arch());
        assert_eq!(meta.model.as_ref(), Some(&cfg.resolved().unwrap()), "{i}");
        assert_eq!(meta.num_classes, 4);
        let mut s2 = ParamStore::new(&dev);
        let net2 = meta.model.unwrap().build(4, &mut s2, 99).unwrap();
        load_weights(&path, &mut s2).unwrap();
        let got = net2.forward(&mut s2, &x, false).unwrap().to_vec().unwrap();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // The CPU backend keeps f64 values; the file holds f32.
        assert!(diff < 1e-5, "{cfg:?}: logits differ by up to {diff}");
        // The architecture is in the file: another one's store does not load it.
        let other = if cfg.arch() == "unet" {
            ModelConfig::AttentionUNet(unet(&[4, 6, 8], Upsampling::Bilinear))
        } else {
            ModelConfig::UNet(unet(&[4, 6, 8], Upsampling::Bilinear))
        };
        let mut s3 = ParamStore::new(&dev);
        other.build(4, &mut s3, 1).unwrap();
        let e = load_weights(&path, &mut s3).unwrap_err().to_string();
        assert!(e.contains(&format!("{i}.safetensors")), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `[model]` table names each architecture; unknown and mistyped keys are errors naming
/// the key.
#[test]
fn model_tables_name_their_architecture() {
    use wgseg::train::RunConfig;
    let path = Path::new("models/mine.toml");
    assert_eq!(
        ARCHS,
        [
            "deeplabv3plus",
            "deeplabv3",
            "unet",
            "attention_unet",
            "unetplusplus",
            "segnet",
            "segnext",
        ]
    );
    let c = RunConfig::parse("[model]\narch = \"unet\"\nwidths = [8, 16]\n", path).unwrap();
    assert_eq!(
        c.model,
        ModelConfig::UNet(unet(&[8, 16], Upsampling::Bilinear))
    );
    let text = c.to_toml().unwrap();
    assert!(
        text.contains("arch = \"unet\"") && text.contains("upsampling = \"bilinear\""),
        "{text}"
    );
    assert_eq!(RunConfig::parse(&text, path).unwrap(), c);
    for (table, key) in [
        ("arch = \"unet\"\nwidths = [8, 16]\nlow = 4", "low"),
        ("arch = \"unet\"\nwidths = [8, 16]\nupsampling = \"nearest\"", "nearest"),
        ("arch = \"unetplusplus\"\nwidths = [8, 16]\ndeep_supervison = true", "deep_supervison"),
        ("arch = \"deeplabv3\"\nstem = 4\nwidths = [4, 4, 4, 4]\ndepths = [1, 1, 1, 1]\naspp = 8\noutput_stride = 16\ndecoder = 8", "decoder"),
        ("arch = \"deeplabv3\"\nstem = 4\nwidths = [4, 4, 4, 4]\ndepths = [1, 1, 1, 1]\nblock = \"wide\"\naspp = 8\noutput_stride = 16", "wide"),
    ] {
        let e = RunConfig::parse(&format!("[model]\n{table}\n"), path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("models/mine.toml") && e.contains(key), "{table}: {e}");
    }
    // An optional key left out (SegNeXt without the Hamburger) survives the saved config.
    let c = RunConfig::parse(
        "[model]\narch = \"segnext\"\nwidths = [4, 8, 8, 8]\ndepths = [1, 1, 1, 1]\n\
         mlp_ratios = [2, 2, 2, 2]\ndecoder = 8\ngroups = 2\n",
        path,
    )
    .unwrap();
    let text = c.to_toml().unwrap();
    assert!(!text.contains("ham_rank"), "{text}");
    assert_eq!(RunConfig::parse(&text, path).unwrap(), c);
    let e = RunConfig::parse("[model]\narch = \"unet\"\nwidths = [8]\n", path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least two levels"), "{e}");
}

/// Every shipped config builds with its parameter count; the tiny ones of the new
/// architectures also run forward on the GPU.
#[test]
fn shipped_configs_build() {
    // Parameters for 11 classes (docs/model.md's table; python/wgseg_torch's modules count
    // the same).
    for (name, arch, params) in [
        ("tiny", "deeplabv3plus", 671_483),
        ("small", "deeplabv3plus", 4_186_379),
        ("r18", "deeplabv3plus", 16_605_611),
        ("r50", "deeplabv3plus", 40_349_611),
        ("deeplabv3-tiny", "deeplabv3", 605_979),
        ("deeplabv3-r50", "deeplabv3", 39_636_299),
        ("unet-tiny", "unet", 488_171),
        ("unet", "unet", 31_038_283),
        ("attention-unet-tiny", "attention_unet", 496_521),
        ("attention-unet", "attention_unet", 31_388_851),
        ("unetpp-tiny", "unetplusplus", 559_851),
        ("unetpp", "unetplusplus", 9_161_100),
        ("segnet-tiny", "segnet", 295_947),
        ("segnet", "segnet", 29_478_411),
        ("segnext-tiny", "segnext", 461_419),
        ("segnext-t", "segnext", 4_227_691),
    ] {
        let cfg = shipped(name);
        assert_eq!(cfg.arch(), arch, "{name}");
        let mut store = ParamStore::new(&Device::Cpu);
        cfg.build(11, &mut store, 1).unwrap();
        let n: usize = store.params().map(|(_, t)| t.numel()).sum();
        assert_eq!(n, params, "{name}");
        if name == "segnext-t" {
            // MSCAN-T without its ImageNet classifier (the paper's 4.2 M counts its 256·1000 +
            // 1000 weights); the PyTorch module of python/wgseg_torch counts the same.
            let n: usize = store
                .params()
                .filter(|(n, _)| n.starts_with("backbone."))
                .map(|(_, t)| t.numel())
                .sum();
            assert_eq!(n, 3_903_584, "{name}");
        }
        if name.ends_with("r50") {
            // torchvision's resnet50: 23.5 M backbone parameters.
            let n: usize = store
                .params()
                .filter(|(n, _)| n.starts_with("backbone."))
                .map(|(_, t)| t.numel())
                .sum();
            assert_eq!(n, 23_508_032, "{name}");
        }
    }
    let Some(gpu) = gpu() else { return };
    for name in [
        "deeplabv3-tiny",
        "unet-tiny",
        "attention-unet-tiny",
        "unetpp-tiny",
        "segnet-tiny",
        "segnext-tiny",
    ] {
        let mut store = ParamStore::new(&gpu);
        let net = shipped(name).build(11, &mut store, 1).unwrap();
        let y = net
            .forward(&mut store, &image(1, 37, 51, 4, &gpu), false)
            .unwrap();
        assert_eq!(y.dims(), [1, 11, 37, 51], "{name}");
        let v = y.to_vec_f64().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}: non-finite logits");
    }
}
