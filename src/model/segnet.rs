//! SegNet (Badrinarayanan et al. 2017; docs/model.md): a VGG-style encoder whose 2×2
//! max-pools keep their argmax, and a mirrored decoder that unpools with those indices
//! (`max_unpool2d`) before its convolutions.

use super::deeplab::image_size;
use super::{ModelConfig, SegNetConfig, Segmenter};
use crate::error::{Error, Result};
use crate::nn::{init_rng, Conv2d, ConvBn, ParamStore};
use crate::ops::{max_pool2d_with_indices, Pool2d};
use crate::tensor::Tensor;

/// SegNet: `encoder.{b}.{k}` (3×3 conv → BN → ReLU, `depths[b]` of them at `widths[b]`
/// channels, then a 2×2 max-pool with indices), `decoder.{b}.{k}` (unpool to block `b`'s
/// size, then `depths[b]` convs at `widths[b]`, the last one to `widths[b − 1]`, or to
/// `widths[0]` for block 0), and a 3×3 `classifier` with bias.
pub struct SegNet {
    encoder: Vec<Vec<ConvBn>>,
    decoder: Vec<Vec<ConvBn>>,
    classifier: Conv2d,
    num_classes: usize,
    config: SegNetConfig,
}

impl SegNet {
    /// Builds the layers and registers their tensors, initialised from `seed`
    /// (Kaiming-normal convs, BN γ = 1 and β = 0, classifier bias 0).
    pub fn new(
        config: &SegNetConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<SegNet> {
        config.validate()?;
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let (ws, ds) = (&config.widths, &config.depths);
        let mut encoder = Vec::with_capacity(ws.len());
        let mut cin = 3;
        for (b, (&w, &d)) in ws.iter().zip(ds).enumerate() {
            let mut convs = Vec::with_capacity(d);
            for k in 0..d {
                let name = format!("encoder.{b}.{k}");
                convs.push(ConvBn::new(store, r, &name, (cin, w), 3, 1, false)?);
                cin = w;
            }
            encoder.push(convs);
        }
        let mut decoder = Vec::with_capacity(ws.len());
        for (b, (&w, &d)) in ws.iter().zip(ds).enumerate() {
            let last = if b == 0 { ws[0] } else { ws[b - 1] };
            let mut convs = Vec::with_capacity(d);
            for k in 0..d {
                let cout = if k + 1 == d { last } else { w };
                let name = format!("decoder.{b}.{k}");
                convs.push(ConvBn::new(store, r, &name, (w, cout), 3, 1, false)?);
            }
            decoder.push(convs);
        }
        let classifier = Conv2d::new(
            store,
            r,
            "classifier",
            (ws[0], num_classes),
            3,
            1,
            1,
            1,
            true,
        )?;
        Ok(SegNet {
            encoder,
            decoder,
            classifier,
            num_classes,
            config: config.clone(),
        })
    }
}

impl Segmenter for SegNet {
    fn arch(&self) -> &str {
        super::SEGNET
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::SegNet(self.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = image_size("SegNet", x)?;
        let blocks = self.encoder.len();
        if h >> blocks == 0 || w >> blocks == 0 {
            return Err(Error::shape(
                "SegNet",
                format!(
                    "a {h}×{w} image is smaller than the {} pixels {blocks} pooling levels need",
                    1usize << blocks
                ),
            ));
        }
        let pool = Pool2d::new((2, 2), (2, 2), (0, 0));
        // (size before the pool, argmax) of every block.
        let mut saved = Vec::with_capacity(blocks);
        let mut y = x.clone();
        for convs in &self.encoder {
            for c in convs {
                y = c.forward(store, &y, training)?;
            }
            let size = (y.dims()[2], y.dims()[3]);
            let (pooled, idx) = max_pool2d_with_indices(&y, pool)?;
            saved.push((size, idx));
            y = pooled;
        }
        for (convs, (size, idx)) in self.decoder.iter().zip(&saved).rev() {
            y = y.max_unpool2d(idx, (2, 2), (2, 2), *size)?;
            for c in convs {
                y = c.forward(store, &y, training)?;
            }
        }
        self.classifier.forward(store, &y)
    }
}
