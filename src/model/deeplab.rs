//! DeepLabV3+ and DeepLabV3 (docs/model.md): a ResNet backbone, ASPP with image pooling,
//! and (V3+) a decoder with low-level features, their tensors named as their PyTorch
//! counterparts name them.

use super::resnet::{ResNet, ResNetSpec};
use super::{DeepLabConfig, DeepLabV3Config, ModelConfig, Segmenter};
use crate::error::{Error, Result};
use crate::nn::{init_rng, Conv2d, ConvBn, InitRng, ParamStore};
use crate::ops::copy::concat;
use crate::tensor::Tensor;

/// ASPP dilation rates for an output stride: 32 → (3, 6, 9), 16 → (6, 12, 18),
/// 8 → (12, 24, 36).
pub fn default_rates(output_stride: usize) -> Result<Vec<usize>> {
    match output_stride {
        32 => Ok(vec![3, 6, 9]),
        16 => Ok(vec![6, 12, 18]),
        8 => Ok(vec![12, 24, 36]),
        o => Err(Error::shape(
            "DeepLab",
            format!("output stride {o} is not one of 8, 16, 32"),
        )),
    }
}

/// Atrous spatial pyramid pooling: `convs.0` 1×1, `convs.1..` 3×3 at the rates, `pool`
/// (global average → 1×1 → resized back), concatenated, `project` 1×1; every branch
/// conv → BN → ReLU.
struct Aspp {
    convs: Vec<ConvBn>,
    pool: ConvBn,
    project: ConvBn,
}

impl Aspp {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        (cin, a): (usize, usize),
        rates: &[usize],
        separable: bool,
    ) -> Result<Aspp> {
        let mut convs = vec![ConvBn::new(
            store,
            r,
            "aspp.convs.0",
            (cin, a),
            1,
            1,
            false,
        )?];
        for (i, &rate) in rates.iter().enumerate() {
            let name = format!("aspp.convs.{}", i + 1);
            convs.push(ConvBn::new(store, r, &name, (cin, a), 3, rate, separable)?);
        }
        let pool = ConvBn::new(store, r, "aspp.pool", (cin, a), 1, 1, false)?;
        let project = ConvBn::new(
            store,
            r,
            "aspp.project",
            (a * (rates.len() + 2), a),
            1,
            1,
            false,
        )?;
        Ok(Aspp {
            convs,
            pool,
            project,
        })
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = (x.dims()[2], x.dims()[3]);
        let mut ys = Vec::with_capacity(self.convs.len() + 1);
        for b in &self.convs {
            ys.push(b.forward(store, x, training)?);
        }
        let p = self
            .pool
            .forward(store, &x.global_avg_pool2d()?, training)?;
        ys.push(p.interpolate_bilinear((h, w), false)?);
        self.project.forward(store, &concat(&ys, 1)?, training)
    }
}

/// The encoder both DeepLab models share: `backbone` (a ResNet) and `aspp` of width `a` on
/// its last stage.
fn encoder(
    store: &mut ParamStore,
    r: &mut InitRng,
    spec: &ResNetSpec,
    a: usize,
    rates: &[usize],
    separable: bool,
) -> Result<(ResNet, Aspp)> {
    let backbone = ResNet::new(store, r, "backbone", spec)?;
    let aspp = Aspp::new(store, r, (spec.channels(3), a), rates, separable)?;
    Ok((backbone, aspp))
}

/// The input's `(H, W)`, checked to be `[N, 3, H, W]`.
pub(super) fn image_size(arch: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match x.dims() {
        &[_, 3, h, w] => Ok((h, w)),
        _ => Err(Error::shape(
            arch,
            format!("expected images [N, 3, H, W], got {}", x.shape()),
        )),
    }
}

/// DeepLabV3+: backbone, ASPP, and a decoder that fuses the ASPP output with layer1's; its
/// tensors live in the [`ParamStore`] beside it.
pub struct DeepLabV3Plus {
    backbone: ResNet,
    aspp: Aspp,
    low: ConvBn,
    fuse: [ConvBn; 2],
    classifier: Conv2d,
    num_classes: usize,
    /// The resolved architecture (rates filled in).
    pub config: DeepLabConfig,
}

impl DeepLabV3Plus {
    /// Builds the layers and registers their tensors, initialised from `seed` (Kaiming-normal
    /// convs, BN γ = 1 and β = 0, classifier bias 0), in PyTorch's `state_dict` order.
    pub fn new(
        config: &DeepLabConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<DeepLabV3Plus> {
        config.validate()?;
        let config = config.resolved()?;
        let spec = config.backbone();
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let a = config.aspp;
        let rates = config.aspp_rates.as_deref().unwrap_or_default();
        let (backbone, aspp) = encoder(store, r, &spec, a, rates, config.separable_aspp)?;
        let (low_c, dec) = (config.low, config.decoder);
        let low = ConvBn::new(
            store,
            r,
            "decoder.low",
            (spec.channels(0), low_c),
            1,
            1,
            false,
        )?;
        let fuse = [
            ConvBn::new(store, r, "decoder.fuse.0", (a + low_c, dec), 3, 1, false)?,
            ConvBn::new(store, r, "decoder.fuse.1", (dec, dec), 3, 1, false)?,
        ];
        let classifier = Conv2d::new(
            store,
            r,
            "decoder.classifier",
            (dec, num_classes),
            1,
            1,
            1,
            1,
            true,
        )?;
        Ok(DeepLabV3Plus {
            backbone,
            aspp,
            low,
            fuse,
            classifier,
            num_classes,
            config,
        })
    }

    /// The architecture as the crate's [`ModelConfig`].
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig::DeepLabV3Plus(self.config.clone())
    }

    /// Logits `[N, classes, H, W]` at the input's size for normalised images `[N, 3, H, W]`
    /// (any size: odd sizes floor through the strides). In training mode batch-norm uses
    /// batch statistics and updates the running statistics in `store`.
    pub fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = image_size("DeepLabV3+", x)?;
        let (low, y) = self.backbone.forward(store, x, training)?;
        let aspp = self.aspp.forward(store, &y, training)?;
        let low = self.low.forward(store, &low, training)?;
        let (lh, lw) = (low.dims()[2], low.dims()[3]);
        let up = aspp.interpolate_bilinear((lh, lw), false)?;
        let mut z = concat(&[up, low], 1)?;
        for f in &self.fuse {
            z = f.forward(store, &z, training)?;
        }
        let logits = self.classifier.forward(store, &z)?;
        logits.interpolate_bilinear((h, w), false)
    }
}

impl Segmenter for DeepLabV3Plus {
    fn arch(&self) -> &str {
        super::DEEPLABV3PLUS
    }

    fn metadata_json(&self) -> Result<String> {
        self.model_config().metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        DeepLabV3Plus::forward(self, store, x, training)
    }
}

/// DeepLabV3: backbone, ASPP, `head` (3×3 conv → BN → ReLU at the ASPP width) and a 1×1
/// `classifier`, the logits resized to the input (torchvision's `DeepLabHead`, no
/// dropout).
pub struct DeepLabV3 {
    backbone: ResNet,
    aspp: Aspp,
    head: ConvBn,
    classifier: Conv2d,
    num_classes: usize,
    /// The resolved architecture (rates filled in).
    pub config: DeepLabV3Config,
}

impl DeepLabV3 {
    /// Builds the layers and registers their tensors, initialised from `seed` as
    /// [`DeepLabV3Plus::new`] does.
    pub fn new(
        config: &DeepLabV3Config,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<DeepLabV3> {
        config.validate()?;
        let config = config.resolved()?;
        let spec = config.backbone();
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let a = config.aspp;
        let rates = config.aspp_rates.as_deref().unwrap_or_default();
        let (backbone, aspp) = encoder(store, r, &spec, a, rates, config.separable_aspp)?;
        let head = ConvBn::new(store, r, "head", (a, a), 3, 1, false)?;
        let classifier = Conv2d::new(store, r, "classifier", (a, num_classes), 1, 1, 1, 1, true)?;
        Ok(DeepLabV3 {
            backbone,
            aspp,
            head,
            classifier,
            num_classes,
            config,
        })
    }
}

impl Segmenter for DeepLabV3 {
    fn arch(&self) -> &str {
        super::DEEPLABV3
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::DeepLabV3(self.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = image_size("DeepLabV3", x)?;
        let (_, y) = self.backbone.forward(store, x, training)?;
        let y = self.aspp.forward(store, &y, training)?;
        let y = self.head.forward(store, &y, training)?;
        let logits = self.classifier.forward(store, &y)?;
        logits.interpolate_bilinear((h, w), false)
    }
}
