//! DeepLabV3+ (docs/model.md): a ResNet of basic blocks, ASPP with image pooling, and a decoder
//! with 48 low-level channels, its tensors named as its PyTorch counterpart names them.

use super::{DeepLabConfig, ModelConfig, Segmenter};
use crate::error::{Error, Result};
use crate::nn::{init_rng, BasicBlock, BatchNorm2d, Conv2d, ConvBn, ParamStore, RELU};
use crate::ops::copy::concat;
use crate::tensor::Tensor;

/// Stride and dilation of layer1..layer4 for an output stride (docs/model.md).
pub fn stage_plan(output_stride: usize) -> Result<[(usize, usize); 4]> {
    match output_stride {
        32 => Ok([(1, 1), (2, 1), (2, 1), (2, 1)]),
        16 => Ok([(1, 1), (2, 1), (2, 1), (1, 2)]),
        8 => Ok([(1, 1), (2, 1), (1, 2), (1, 4)]),
        o => Err(Error::shape(
            "DeepLabV3+",
            format!("output stride {o} is not one of 8, 16, 32"),
        )),
    }
}

/// ASPP dilation rates for an output stride: 32 → (3, 6, 9), 16 → (6, 12, 18),
/// 8 → (12, 24, 36).
pub fn default_rates(output_stride: usize) -> Result<Vec<usize>> {
    match output_stride {
        32 => Ok(vec![3, 6, 9]),
        16 => Ok(vec![6, 12, 18]),
        8 => Ok(vec![12, 24, 36]),
        o => Err(Error::shape(
            "DeepLabV3+",
            format!("output stride {o} is not one of 8, 16, 32"),
        )),
    }
}

/// The network's layers; its tensors live in the [`ParamStore`] beside it.
pub struct DeepLabV3Plus {
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    layers: Vec<Vec<BasicBlock>>,
    aspp_convs: Vec<ConvBn>,
    aspp_pool: ConvBn,
    aspp_project: ConvBn,
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
        let rates = config.aspp_rates.clone().unwrap_or_default();
        let plan = stage_plan(config.output_stride)?;
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let stem_conv = Conv2d::new(
            store,
            r,
            "backbone.conv1",
            (3, config.stem),
            7,
            2,
            1,
            1,
            false,
        )?;
        let stem_bn = BatchNorm2d::new(store, "backbone.bn1", config.stem)?;
        let mut layers = Vec::new();
        let mut cin = config.stem;
        for (i, ((&w, &d), &(s, dil))) in config
            .widths
            .iter()
            .zip(&config.depths)
            .zip(&plan)
            .enumerate()
        {
            let mut blocks = Vec::new();
            for j in 0..d {
                let prefix = format!("backbone.layer{}.{j}", i + 1);
                let (c_in, stride) = if j == 0 { (cin, s) } else { (w, 1) };
                blocks.push(BasicBlock::new(store, r, &prefix, (c_in, w), stride, dil)?);
            }
            layers.push(blocks);
            cin = w;
        }
        let (c4, a) = (config.widths[3], config.aspp);
        let mut aspp_convs = vec![ConvBn::new(store, r, "aspp.convs.0", (c4, a), 1, 1, false)?];
        for (i, &rate) in rates.iter().enumerate() {
            aspp_convs.push(ConvBn::new(
                store,
                r,
                &format!("aspp.convs.{}", i + 1),
                (c4, a),
                3,
                rate,
                config.separable_aspp,
            )?);
        }
        let aspp_pool = ConvBn::new(store, r, "aspp.pool", (c4, a), 1, 1, false)?;
        let branches = rates.len() + 2;
        let aspp_project = ConvBn::new(store, r, "aspp.project", (a * branches, a), 1, 1, false)?;
        let (c1, low_c, dec) = (config.widths[0], config.low, config.decoder);
        let low = ConvBn::new(store, r, "decoder.low", (c1, low_c), 1, 1, false)?;
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
            stem_conv,
            stem_bn,
            layers,
            aspp_convs,
            aspp_pool,
            aspp_project,
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
        let &[_, c, h, w] = x.dims() else {
            return Err(Error::shape(
                "DeepLabV3+",
                format!("expected images [N, 3, H, W], got {}", x.shape()),
            ));
        };
        if c != 3 {
            return Err(Error::shape(
                "DeepLabV3+",
                format!("expected 3 input channels, got {}", x.shape()),
            ));
        }
        let y = self.stem_conv.forward(store, x)?;
        let y = self.stem_bn.forward_with(store, &y, training, RELU)?;
        let mut y = y.max_pool2d((3, 3), (2, 2), (1, 1))?;
        let mut low = None;
        for (i, blocks) in self.layers.iter().enumerate() {
            for b in blocks {
                y = b.forward(store, &y, training)?;
            }
            if i == 0 {
                low = Some(y.clone());
            }
        }
        let low = low.ok_or_else(|| Error::shape("DeepLabV3+", "no layer1"))?;
        let aspp = self.aspp(store, &y, training)?;
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

    fn aspp(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = (x.dims()[2], x.dims()[3]);
        let mut ys = Vec::with_capacity(self.aspp_convs.len() + 1);
        for b in &self.aspp_convs {
            ys.push(b.forward(store, x, training)?);
        }
        let p = self
            .aspp_pool
            .forward(store, &x.global_avg_pool2d()?, training)?;
        ys.push(p.interpolate_bilinear((h, w), false)?);
        self.aspp_project.forward(store, &concat(&ys, 1)?, training)
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
