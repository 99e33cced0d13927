//! The UNet family (docs/model.md): UNet, Attention UNet (additive attention gates on the
//! skips) and UNet++ (nested dense skips, optional deep supervision). Every level is a
//! double convolution (3×3 conv → BN → ReLU, twice); levels are 2×2 max-pools apart; the
//! decoder upsamples bilinearly to the skip's size or by a 2×2 transposed convolution.

use super::deeplab::image_size;
use super::{ModelConfig, Segmenter, UNetConfig, UNetPlusPlusConfig, Upsampling};
use crate::error::{Error, Result};
use crate::nn::{init_rng, BatchNorm2d, Conv2d, ConvBn, ConvTranspose2d, InitRng, ParamStore};
use crate::ops::copy::{concat, pad_axis};
use crate::ops::{Activation, Epilogue};
use crate::tensor::Tensor;

/// `{prefix}.0` and `{prefix}.1`: 3×3 conv → BN → ReLU, twice.
struct DoubleConv([ConvBn; 2]);

impl DoubleConv {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
    ) -> Result<DoubleConv> {
        Ok(DoubleConv([
            ConvBn::new(store, r, &format!("{prefix}.0"), (cin, cout), 3, 1, false)?,
            ConvBn::new(store, r, &format!("{prefix}.1"), (cout, cout), 3, 1, false)?,
        ]))
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let y = self.0[0].forward(store, x, training)?;
        self.0[1].forward(store, &y, training)
    }
}

/// Brings a coarser map up to a finer one's size: a bilinear resize to it, or a 2×2
/// stride-2 transposed convolution (`{prefix}`) zero-padded at the bottom and right up to an
/// odd size.
enum Up {
    Bilinear,
    Transposed(ConvTranspose2d),
}

impl Up {
    /// The upsampler and the channels it puts out for a `(coarse, fine)` width pair.
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        prefix: &str,
        how: Upsampling,
        (coarse, fine): (usize, usize),
    ) -> Result<(Up, usize)> {
        Ok(match how {
            Upsampling::Bilinear => (Up::Bilinear, coarse),
            Upsampling::Transposed => (
                Up::Transposed(ConvTranspose2d::new(store, r, prefix, (coarse, fine), 2)?),
                fine,
            ),
        })
    }

    fn forward(&self, store: &ParamStore, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        match self {
            Up::Bilinear => x.interpolate_bilinear((h, w), false),
            Up::Transposed(t) => {
                let mut y = t.forward(store, x)?;
                if y.dims()[2] != h {
                    y = pad_axis(&y, 2, 0, h)?;
                }
                if y.dims()[3] != w {
                    y = pad_axis(&y, 3, 0, w)?;
                }
                Ok(y)
            }
        }
    }
}

/// The encoder: level 0 a double conv on the image, level `i ≥ 1` a 2×2 max-pool then a
/// double conv; `name(i)` is level `i`'s prefix.
struct Encoder(Vec<DoubleConv>);

impl Encoder {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        widths: &[usize],
        name: impl Fn(usize) -> String,
    ) -> Result<Encoder> {
        let mut levels = Vec::with_capacity(widths.len());
        let mut cin = 3;
        for (i, &w) in widths.iter().enumerate() {
            levels.push(DoubleConv::new(store, r, &name(i), (cin, w))?);
            cin = w;
        }
        Ok(Encoder(levels))
    }

    /// Every level's output, top to bottom.
    fn forward(
        &self,
        arch: &'static str,
        store: &mut ParamStore,
        x: &Tensor,
        training: bool,
    ) -> Result<Vec<Tensor>> {
        let (h, w) = image_size(arch, x)?;
        let deepest = self.0.len() - 1;
        if h >> deepest == 0 || w >> deepest == 0 {
            return Err(Error::shape(
                arch,
                format!(
                    "a {h}×{w} image is smaller than the {} pixels {} pooling levels need",
                    1usize << deepest,
                    deepest
                ),
            ));
        }
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.0.len());
        for level in &self.0 {
            let input = match outs.last() {
                None => x.clone(),
                Some(prev) => prev.max_pool2d((2, 2), (2, 2), (0, 0))?,
            };
            outs.push(level.forward(store, &input, training)?);
        }
        Ok(outs)
    }
}

/// `(H, W)` of a map.
fn hw(x: &Tensor) -> (usize, usize) {
    (x.dims()[2], x.dims()[3])
}

/// A 1×1 classifier with bias.
fn classifier(
    store: &mut ParamStore,
    r: &mut InitRng,
    name: &str,
    (cin, n): (usize, usize),
) -> Result<Conv2d> {
    Conv2d::new(store, r, name, (cin, n), 1, 1, 1, 1, true)
}

/// conv (1×1, no bias) → BN, with the activation and residual of the caller's choosing.
struct ConvNorm(Conv2d, BatchNorm2d);

impl ConvNorm {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
    ) -> Result<ConvNorm> {
        let conv = Conv2d::new(
            store,
            r,
            &format!("{prefix}.conv"),
            (cin, cout),
            1,
            1,
            1,
            1,
            false,
        )?;
        Ok(ConvNorm(
            conv,
            BatchNorm2d::new(store, &format!("{prefix}.bn"), cout)?,
        ))
    }

    fn forward(
        &self,
        store: &mut ParamStore,
        x: &Tensor,
        training: bool,
        ep: Epilogue,
    ) -> Result<Tensor> {
        let y = self.0.forward(store, x)?;
        self.1.forward_with(store, &y, training, ep)
    }
}

/// The additive attention gate of Attention UNet (Oktay et al. 2018): `wx`, `wg` map the
/// skip `x` and the upsampled gating signal `g` to `F_int` channels, `psi` to one, and the
/// skip is scaled by `α = σ(BN(psi(ReLU(BN(wx x) + BN(wg g)))))`.
struct Gate {
    wx: ConvNorm,
    wg: ConvNorm,
    psi: ConvNorm,
}

impl Gate {
    fn forward(
        &self,
        store: &mut ParamStore,
        x: &Tensor,
        g: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        let g1 = self.wg.forward(store, g, training, Epilogue::default())?;
        let ep = Epilogue {
            act: Activation::Relu,
            residual: Some(&g1),
        };
        let a = self.wx.forward(store, x, training, ep)?;
        let alpha = self
            .psi
            .forward(store, &a, training, Epilogue::default())?
            .sigmoid()?;
        x.mul(&alpha)
    }
}

/// One decoder level of a (attention) UNet: `up`, the optional `gate`, `conv`.
struct Level {
    up: Up,
    gate: Option<Gate>,
    conv: DoubleConv,
}

/// UNet and Attention UNet: the encoder `encoder.{i}`, decoder levels `decoder.{j}` (skip
/// level `j`, from the bottom up) and a 1×1 `classifier` on level 0.
struct UNetCore {
    encoder: Encoder,
    /// `levels[j]` joins the skip of level `j` with the level below.
    levels: Vec<Level>,
    classifier: Conv2d,
    num_classes: usize,
    config: UNetConfig,
    arch: &'static str,
}

impl UNetCore {
    fn new(
        config: &UNetConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
        attention: bool,
    ) -> Result<UNetCore> {
        config.validate()?;
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let ws = &config.widths;
        let encoder = Encoder::new(store, r, ws, |i| format!("encoder.{i}"))?;
        let mut levels = Vec::with_capacity(ws.len() - 1);
        for j in 0..ws.len() - 1 {
            let p = format!("decoder.{j}");
            let (up, up_c) = Up::new(
                store,
                r,
                &format!("{p}.up"),
                config.upsampling,
                (ws[j + 1], ws[j]),
            )?;
            let gate = if attention {
                let f = (ws[j] / 2).max(1);
                Some(Gate {
                    wx: ConvNorm::new(store, r, &format!("{p}.gate.wx"), (ws[j], f))?,
                    wg: ConvNorm::new(store, r, &format!("{p}.gate.wg"), (up_c, f))?,
                    psi: ConvNorm::new(store, r, &format!("{p}.gate.psi"), (f, 1))?,
                })
            } else {
                None
            };
            let conv = DoubleConv::new(store, r, &format!("{p}.conv"), (ws[j] + up_c, ws[j]))?;
            levels.push(Level { up, gate, conv });
        }
        let classifier = classifier(store, r, "classifier", (ws[0], num_classes))?;
        Ok(UNetCore {
            encoder,
            levels,
            classifier,
            num_classes,
            config: config.clone(),
            arch: if attention { "Attention UNet" } else { "UNet" },
        })
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let skips = self.encoder.forward(self.arch, store, x, training)?;
        let mut y = skips[skips.len() - 1].clone();
        for (j, level) in self.levels.iter().enumerate().rev() {
            let skip = &skips[j];
            let up = level.up.forward(store, &y, hw(skip))?;
            let skip = match &level.gate {
                Some(g) => g.forward(store, skip, &up, training)?,
                None => skip.clone(),
            };
            y = level
                .conv
                .forward(store, &concat(&[skip, up], 1)?, training)?;
        }
        self.classifier.forward(store, &y)
    }
}

/// UNet (Ronneberger et al. 2015, with batch norm and same-size padding): logits at the
/// input's size for any input of at least `2^(levels − 1)` pixels a side.
pub struct UNet(UNetCore);

impl UNet {
    /// Builds the layers and registers their tensors, initialised from `seed`
    /// (Kaiming-normal convs, BN γ = 1 and β = 0, biases 0).
    pub fn new(
        config: &UNetConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<UNet> {
        Ok(UNet(UNetCore::new(
            config,
            num_classes,
            store,
            seed,
            false,
        )?))
    }
}

impl Segmenter for UNet {
    fn arch(&self) -> &str {
        super::UNET
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::UNet(self.0.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.0.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        self.0.forward(store, x, training)
    }
}

/// Attention UNet (Oktay et al. 2018): UNet with an additive attention gate
/// (`decoder.{j}.gate`, `F_int` = half the skip's width) on every skip, gated by the
/// upsampled coarser map.
pub struct AttentionUNet(UNetCore);

impl AttentionUNet {
    /// Builds the layers and registers their tensors, as [`UNet::new`] does.
    pub fn new(
        config: &UNetConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<AttentionUNet> {
        Ok(AttentionUNet(UNetCore::new(
            config,
            num_classes,
            store,
            seed,
            true,
        )?))
    }
}

impl Segmenter for AttentionUNet {
    fn arch(&self) -> &str {
        super::ATTENTION_UNET
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::AttentionUNet(self.0.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.0.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        self.0.forward(store, x, training)
    }
}

/// UNet++ (Zhou et al. 2018): nodes `X[i][j]` (level `i`, column `j`), `conv{i}_{j}`, where
/// `X[i][0]` is the encoder and `X[i][j] = conv(X[i][0], …, X[i][j−1], up(X[i+1][j−1]))`;
/// transposed upsampling adds `up{i}_{j}`. The logits are `classifier(X[0][D])`, or with
/// deep supervision the mean of `classifiers.{k}(X[0][k+1])` over `k < D`.
pub struct UNetPlusPlus {
    encoder: Encoder,
    /// `nodes[i][j − 1]`: the upsampler and conv of `X[i][j]`, `j ≥ 1`.
    nodes: Vec<Vec<(Up, DoubleConv)>>,
    heads: Vec<Conv2d>,
    num_classes: usize,
    config: UNetPlusPlusConfig,
}

impl UNetPlusPlus {
    /// Builds the layers and registers their tensors, as [`UNet::new`] does.
    pub fn new(
        config: &UNetPlusPlusConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<UNetPlusPlus> {
        config.validate()?;
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let ws = &config.widths;
        let depth = ws.len() - 1;
        let encoder = Encoder::new(store, r, ws, |i| format!("conv{i}_0"))?;
        let mut nodes: Vec<Vec<(Up, DoubleConv)>> = (0..depth).map(|_| Vec::new()).collect();
        // Column by column, as the forward pass computes them (PyTorch's module order is
        // the order of the attributes; the checkpoint names don't depend on it).
        for j in 1..=depth {
            for (i, row) in nodes.iter_mut().enumerate().take(depth + 1 - j) {
                let (up, up_c) = Up::new(
                    store,
                    r,
                    &format!("up{i}_{j}"),
                    config.upsampling,
                    (ws[i + 1], ws[i]),
                )?;
                let conv =
                    DoubleConv::new(store, r, &format!("conv{i}_{j}"), (j * ws[i] + up_c, ws[i]))?;
                row.push((up, conv));
            }
        }
        let heads = if config.deep_supervision {
            (0..depth)
                .map(|k| classifier(store, r, &format!("classifiers.{k}"), (ws[0], num_classes)))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![classifier(store, r, "classifier", (ws[0], num_classes))?]
        };
        Ok(UNetPlusPlus {
            encoder,
            nodes,
            heads,
            num_classes,
            config: config.clone(),
        })
    }
}

impl Segmenter for UNetPlusPlus {
    fn arch(&self) -> &str {
        super::UNET_PLUS_PLUS
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::UNetPlusPlus(self.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        // grid[i]: X[i][0], X[i][1], … as they are computed.
        let mut grid: Vec<Vec<Tensor>> = self
            .encoder
            .forward("UNet++", store, x, training)?
            .into_iter()
            .map(|t| vec![t])
            .collect();
        let depth = grid.len() - 1;
        for j in 1..=depth {
            for i in 0..=depth - j {
                let (up, conv) = &self.nodes[i][j - 1];
                let size = hw(&grid[i][0]);
                let below = up.forward(store, &grid[i + 1][j - 1], size)?;
                let mut parts = grid[i].clone();
                parts.push(below);
                let y = conv.forward(store, &concat(&parts, 1)?, training)?;
                grid[i].push(y);
            }
        }
        if let [head] = self.heads.as_slice() {
            return head.forward(store, &grid[0][depth]);
        }
        let mut sum: Option<Tensor> = None;
        for (k, head) in self.heads.iter().enumerate() {
            let y = head.forward(store, &grid[0][k + 1])?;
            sum = Some(match sum {
                None => y,
                Some(s) => s.add(&y)?,
            });
        }
        let sum = sum.ok_or_else(|| Error::shape("UNet++", "no classifier"))?;
        sum.mul_scalar(1.0 / self.heads.len() as f64)
    }
}
