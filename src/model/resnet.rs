//! The ResNet backbone of the DeepLab models (docs/model.md): torchvision's stem, layout and
//! tensor names, of basic blocks (ResNet-18/34) or bottleneck blocks (ResNet-50/101), with
//! the strides of the last stages traded for dilation by the output stride.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{BasicBlock, BatchNorm2d, Bottleneck, Conv2d, InitRng, ParamStore, RELU};
use crate::tensor::Tensor;

/// The residual block of a ResNet: `"basic"` (two 3×3 convs, ResNet-18/34) or
/// `"bottleneck"` (1×1, 3×3, 1×1 to 4× the width, ResNet-50/101).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Block {
    #[default]
    Basic,
    Bottleneck,
}

impl Block {
    /// Output channels of a stage per unit of its width (1 or 4).
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => Bottleneck::EXPANSION,
        }
    }

    /// For `skip_serializing_if`: basic blocks are the default and not written.
    pub fn is_basic(&self) -> bool {
        *self == Block::Basic
    }
}

/// Stride and dilation of layer1..layer4 for an output stride (docs/model.md).
pub fn stage_plan(output_stride: usize) -> Result<[(usize, usize); 4]> {
    match output_stride {
        32 => Ok([(1, 1), (2, 1), (2, 1), (2, 1)]),
        16 => Ok([(1, 1), (2, 1), (2, 1), (1, 2)]),
        8 => Ok([(1, 1), (2, 1), (1, 2), (1, 4)]),
        o => Err(Error::shape(
            "ResNet",
            format!("output stride {o} is not one of 8, 16, 32"),
        )),
    }
}

/// The hyper-parameters of a [`ResNet`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResNetSpec {
    /// Channels of the stem (`conv1`, 7×7 stride 2).
    pub stem: usize,
    /// Widths of layer1..layer4 (a bottleneck stage puts out 4× its width).
    pub widths: [usize; 4],
    /// Blocks in layer1..layer4.
    pub depths: [usize; 4],
    pub block: Block,
    /// 8, 16 or 32.
    pub output_stride: usize,
}

impl ResNetSpec {
    /// Output channels of layer `i` (0-based).
    pub fn channels(&self, i: usize) -> usize {
        self.widths[i] * self.block.expansion()
    }

    /// The backbone of a checkpoint from its tensor shapes (`{prefix}conv1.weight`,
    /// `{prefix}layer{i}.{j}.conv1.weight`; bottleneck blocks have a `conv3`).
    pub fn from_checkpoint(
        prefix: &str,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        output_stride: usize,
    ) -> Result<ResNetSpec> {
        let dim0 = |name: &str| -> Result<usize> {
            let s = shape(name)
                .ok_or_else(|| Error::shape("wgseg.model", format!("missing tensor {name}")))?;
            s.first()
                .copied()
                .ok_or_else(|| Error::shape("wgseg.model", format!("{name} is a scalar")))
        };
        let mut widths = [0; 4];
        let mut depths = [0; 4];
        for i in 0..4 {
            let layer = format!("{prefix}layer{}", i + 1);
            widths[i] = dim0(&format!("{layer}.0.conv1.weight"))?;
            let has = |j: usize| shape(&format!("{layer}.{j}.conv1.weight"));
            depths[i] = (0..).find(|&j| has(j).is_none()).unwrap_or(0);
        }
        let block = if shape(&format!("{prefix}layer1.0.conv3.weight")).is_some() {
            Block::Bottleneck
        } else {
            Block::Basic
        };
        Ok(ResNetSpec {
            stem: dim0(&format!("{prefix}conv1.weight"))?,
            widths,
            depths,
            block,
            output_stride,
        })
    }
}

enum Res {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

/// torchvision's ResNet up to layer4: `conv1` 7×7 stride 2 → `bn1` → ReLU → max-pool 3×3
/// stride 2 → `layer1..layer4`. Every 3×3 conv of a stage uses the stage's dilation.
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Vec<Res>>,
}

impl ResNet {
    /// Builds the backbone under `prefix` (e.g. `backbone`).
    pub fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        prefix: &str,
        spec: &ResNetSpec,
    ) -> Result<ResNet> {
        let plan = stage_plan(spec.output_stride)?;
        let conv1 = Conv2d::new(
            store,
            r,
            &format!("{prefix}.conv1"),
            (3, spec.stem),
            7,
            2,
            1,
            1,
            false,
        )?;
        let bn1 = BatchNorm2d::new(store, &format!("{prefix}.bn1"), spec.stem)?;
        let mut layers = Vec::new();
        let mut cin = spec.stem;
        for (i, ((&w, &d), &(s, dil))) in
            spec.widths.iter().zip(&spec.depths).zip(&plan).enumerate()
        {
            let mut blocks = Vec::new();
            for j in 0..d {
                let p = format!("{prefix}.layer{}.{j}", i + 1);
                let (c_in, stride) = if j == 0 {
                    (cin, s)
                } else {
                    (spec.channels(i), 1)
                };
                blocks.push(match spec.block {
                    Block::Basic => {
                        Res::Basic(BasicBlock::new(store, r, &p, (c_in, w), stride, dil)?)
                    }
                    Block::Bottleneck => {
                        Res::Bottleneck(Bottleneck::new(store, r, &p, (c_in, w), stride, dil)?)
                    }
                });
            }
            layers.push(blocks);
            cin = spec.channels(i);
        }
        Ok(ResNet { conv1, bn1, layers })
    }

    /// layer1's and layer4's outputs (strides 4 and the output stride).
    pub fn forward(
        &self,
        store: &mut ParamStore,
        x: &Tensor,
        training: bool,
    ) -> Result<(Tensor, Tensor)> {
        let y = self.conv1.forward(store, x)?;
        let y = self.bn1.forward_with(store, &y, training, RELU)?;
        let mut y = y.max_pool2d((3, 3), (2, 2), (1, 1))?;
        let mut low = None;
        for (i, blocks) in self.layers.iter().enumerate() {
            for b in blocks {
                y = match b {
                    Res::Basic(b) => b.forward(store, &y, training)?,
                    Res::Bottleneck(b) => b.forward(store, &y, training)?,
                };
            }
            if i == 0 {
                low = Some(y.clone());
            }
        }
        let low = low.ok_or_else(|| Error::shape("ResNet", "no layer1"))?;
        Ok((low, y))
    }
}
