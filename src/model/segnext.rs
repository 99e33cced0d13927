//! SegNeXt (Guo et al. 2022; docs/model.md): the MSCAN encoder — convolutional attention
//! from multi-scale depthwise strip convolutions — and mmsegmentation's `LightHamHead` over
//! its last three stages: `squeeze` → the Hamburger (`ham_in` → non-negative matrix
//! factorisation → `ham_out`, a residual) → `align` → `conv_seg`, or without the
//! Hamburger when the config has no `ham_rank`. Tensor names follow mmsegmentation's.

use super::deeplab::image_size;
use super::{ModelConfig, SegNeXtConfig, Segmenter};
use crate::error::{Error, Result};
use crate::nn::{init_rng, BatchNorm2d, Conv2d, GroupNorm, InitRng, Kind, LayerNorm2d, ParamStore};
use crate::ops::copy::concat;
use crate::ops::Conv2dParams;
use crate::tensor::Tensor;

/// A depthwise `kh × kw` convolution with bias, padded to keep the size.
fn depthwise(
    store: &mut ParamStore,
    r: &mut InitRng,
    name: &str,
    c: usize,
    (kh, kw): (usize, usize),
) -> Result<Conv2d> {
    let params = Conv2dParams::new(1, 0, 1, c).with_padding(kh / 2, kw / 2);
    Conv2d::with_params(store, r, name, (c, c), (kh, kw), params, true)
}

/// A 1×1 convolution with bias.
fn pointwise(
    store: &mut ParamStore,
    r: &mut InitRng,
    name: &str,
    (cin, cout): (usize, usize),
) -> Result<Conv2d> {
    Conv2d::new(store, r, name, (cin, cout), 1, 1, 1, 1, true)
}

/// A 3×3 stride-2 convolution with bias.
fn down(
    store: &mut ParamStore,
    r: &mut InitRng,
    name: &str,
    (cin, cout): (usize, usize),
) -> Result<Conv2d> {
    Conv2d::new(store, r, name, (cin, cout), 3, 2, 1, 1, true)
}

/// MSCAN's attention module (`spatial_gating_unit`): `a = conv0(x)` (5×5 depthwise), plus
/// three strip branches on `a` (1×k then k×1 depthwise, k = 7, 11, 21), summed with `a`,
/// mixed by `conv3` (1×1), and multiplied with `x`.
struct AttentionModule {
    conv0: Conv2d,
    strips: [(Conv2d, Conv2d); 3],
    conv3: Conv2d,
}

impl AttentionModule {
    fn new(store: &mut ParamStore, r: &mut InitRng, p: &str, c: usize) -> Result<Self> {
        let conv0 = depthwise(store, r, &format!("{p}.conv0"), c, (5, 5))?;
        let mut strip = |i: usize, k: usize| -> Result<(Conv2d, Conv2d)> {
            Ok((
                depthwise(store, r, &format!("{p}.conv{i}_1"), c, (1, k))?,
                depthwise(store, r, &format!("{p}.conv{i}_2"), c, (k, 1))?,
            ))
        };
        let strips = [strip(0, 7)?, strip(1, 11)?, strip(2, 21)?];
        let conv3 = pointwise(store, r, &format!("{p}.conv3"), (c, c))?;
        Ok(AttentionModule {
            conv0,
            strips,
            conv3,
        })
    }

    fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let a = self.conv0.forward(store, x)?;
        let mut sum = a.clone();
        for (h, v) in &self.strips {
            sum = sum.add(&v.forward(store, &h.forward(store, &a)?)?)?;
        }
        self.conv3.forward(store, &sum)?.mul(x)
    }
}

/// One MSCAN block: `x + γ₁·(proj_2(sgu(GELU(proj_1(n)))) + n)` with `n = norm1(x)`, then
/// `x + γ₂·fc2(GELU(dwconv(fc1(norm2(x)))))`; `γ` are the per-channel `layer_scale_*`.
struct Block {
    prefix: String,
    norm1: BatchNorm2d,
    proj_1: Conv2d,
    sgu: AttentionModule,
    proj_2: Conv2d,
    norm2: BatchNorm2d,
    fc1: Conv2d,
    dwconv: Conv2d,
    fc2: Conv2d,
}

impl Block {
    /// `layer_scale_*`'s initial value.
    const LAYER_SCALE: f64 = 1e-2;

    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        p: &str,
        c: usize,
        mlp_ratio: usize,
    ) -> Result<Block> {
        let hidden = c * mlp_ratio;
        let norm1 = BatchNorm2d::new(store, &format!("{p}.norm1"), c)?;
        let proj_1 = pointwise(store, r, &format!("{p}.attn.proj_1"), (c, c))?;
        let sgu = AttentionModule::new(store, r, &format!("{p}.attn.spatial_gating_unit"), c)?;
        let proj_2 = pointwise(store, r, &format!("{p}.attn.proj_2"), (c, c))?;
        let norm2 = BatchNorm2d::new(store, &format!("{p}.norm2"), c)?;
        let fc1 = pointwise(store, r, &format!("{p}.mlp.fc1"), (c, hidden))?;
        let dwconv = depthwise(store, r, &format!("{p}.mlp.dwconv.dwconv"), hidden, (3, 3))?;
        let fc2 = pointwise(store, r, &format!("{p}.mlp.fc2"), (hidden, c))?;
        let dev = store.device().clone();
        for i in 1..=2 {
            let t = Tensor::full([c], Self::LAYER_SCALE, &dev)?;
            store.insert(&format!("{p}.layer_scale_{i}"), t, Kind::Param)?;
        }
        Ok(Block {
            prefix: p.to_string(),
            norm1,
            proj_1,
            sgu,
            proj_2,
            norm2,
            fc1,
            dwconv,
            fc2,
        })
    }

    fn scale(&self, store: &ParamStore, i: usize, y: &Tensor) -> Result<Tensor> {
        let c = y.dims()[1];
        let g = store.get(&format!("{}.layer_scale_{i}", self.prefix))?;
        y.mul(&g.reshape([1, c, 1, 1])?)
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let n = self.norm1.forward(store, x, training)?;
        let a = self.proj_1.forward(store, &n)?.gelu()?;
        let a = self.sgu.forward(store, &a)?;
        let a = self.proj_2.forward(store, &a)?.add(&n)?;
        let x = x.add(&self.scale(store, 1, &a)?)?;
        let m = self.norm2.forward(store, &x, training)?;
        let m = self.fc1.forward(store, &m)?;
        let m = self.dwconv.forward(store, &m)?.gelu()?;
        let m = self.fc2.forward(store, &m)?;
        x.add(&self.scale(store, 2, &m)?)
    }
}

/// A stage's downsampling: the stem (`patch_embed1.proj.{0,1,3,4}`: conv 3×3 s2 → BN →
/// GELU → conv 3×3 s2 → BN) or `patch_embed{i}.proj` (conv 3×3 s2) → `.norm` (BN).
enum Embed {
    Stem(Conv2d, BatchNorm2d, Conv2d, BatchNorm2d),
    Patch(Conv2d, BatchNorm2d),
}

impl Embed {
    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        match self {
            Embed::Stem(c0, b1, c3, b4) => {
                let y = c0.forward(store, x)?;
                let y = b1.forward(store, &y, training)?.gelu()?;
                let y = c3.forward(store, &y)?;
                b4.forward(store, &y, training)
            }
            Embed::Patch(c, b) => {
                let y = c.forward(store, x)?;
                b.forward(store, &y, training)
            }
        }
    }
}

/// 1×1 conv (no bias) → GroupNorm → ReLU (mmsegmentation's `ConvModule` with GN).
struct ConvGn {
    conv: Conv2d,
    gn: GroupNorm,
}

impl ConvGn {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        p: &str,
        (cin, cout): (usize, usize),
        groups: usize,
    ) -> Result<ConvGn> {
        let conv = Conv2d::new(
            store,
            r,
            &format!("{p}.conv"),
            (cin, cout),
            1,
            1,
            1,
            1,
            false,
        )?;
        let gn = GroupNorm::new(store, &format!("{p}.gn"), groups, cout)?;
        Ok(ConvGn { conv, gn })
    }

    fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let y = self.gn.forward(store, &self.conv.forward(store, x)?)?;
        y.relu()
    }
}

/// Multiplicative-update steps of the NMF before the differentiable one, in training and in
/// evaluation (mmsegmentation's `train_steps`, `eval_steps` for SegNeXt).
pub const NMF_STEPS: (usize, usize) = (6, 7);
/// The NMF updates' denominator offset.
const NMF_EPS: f64 = 1e-6;

/// The NMF's initial bases `[D, R]`, row-major: `u = frac((d·R + r + 1)·φ)` with `φ = (√5 −
/// 1)/2` (a low-discrepancy sequence in [0, 1)), each column scaled to unit L2 norm over
/// `d`, computed in f64 and rounded to f32. mmsegmentation draws them uniformly at random
/// at every forward pass; a fixed pattern makes evaluation deterministic and reproducible
/// in PyTorch (`python/wgseg_torch` computes the same values).
pub fn nmf_bases(d: usize, r: usize) -> Vec<f32> {
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let u: Vec<f64> = (0..d * r).map(|i| ((i + 1) as f64 * phi).fract()).collect();
    let mut out = vec![0f32; d * r];
    for c in 0..r {
        let norm = (0..d)
            .map(|k| u[k * r + c].powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for k in 0..d {
            out[k * r + c] = (u[k * r + c] / norm) as f32;
        }
    }
    out
}

/// One multiplicative update of the coefficients, `coef · (xᵀ·bases) / (coef·(basesᵀ·bases)
/// + ε)`, for `x [B, D, N]`, `bases [B, D, R]`, `coef [B, N, R]`.
fn update_coef(x: &Tensor, bases: &Tensor, coef: &Tensor) -> Result<Tensor> {
    let num = x.matmul_t(bases, true, false)?;
    let den = coef.matmul(&bases.matmul_t(bases, true, false)?)?;
    coef.mul(&num.div(&den.add_scalar(NMF_EPS)?)?)
}

/// Non-negative matrix factorisation of `x [B, C, H, W]` (non-negative) as mmsegmentation's
/// `NMF2D` computes it (one group, `D = C`, `N = H·W`): coefficients `softmax(xᵀ·bases)`
/// from `init` (`[1, C, R]`, [`nmf_bases`]), `steps` multiplicative updates of coefficients
/// and bases without gradients, one more update of the coefficients with gradients (through
/// `x`), and the reconstruction `bases · coefᵀ`.
fn nmf(x: &Tensor, init: &Tensor, steps: usize) -> Result<Tensor> {
    let (&[b, c, h, w], &[1, ci, _]) = (x.dims(), init.dims()) else {
        return Err(Error::shape(
            "NMF",
            format!(
                "expected [N, C, H, W] and bases [1, C, R], got {} and {}",
                x.shape(),
                init.shape()
            ),
        ));
    };
    if ci != c {
        return Err(Error::shape(
            "NMF",
            format!("bases {} for {} channels", init.shape(), c),
        ));
    }
    let x = x.reshape([b, c, h * w])?;
    let (bases, coef) = {
        let _g = crate::no_grad();
        let xd = x.detach();
        let mut coef = xd.matmul_t(init, true, false)?.softmax(-1)?;
        let mut bases = init.clone();
        for _ in 0..steps {
            coef = update_coef(&xd, &bases, &coef)?;
            let num = xd.matmul(&coef)?;
            let den = bases.matmul(&coef.matmul_t(&coef, true, false)?)?;
            bases = bases.mul(&num.div(&den.add_scalar(NMF_EPS)?)?)?;
        }
        (bases.detach(), coef.detach())
    };
    let coef = update_coef(&x, &bases, &coef)?;
    bases.matmul_t(&coef, false, true)?.reshape([b, c, h, w])
}

/// The Hamburger: `ReLU(x + ham_out(NMF(ReLU(ham_in(x)))))`; `ham_in` is a 1×1 convolution
/// with bias, `ham_out` a 1×1 convolution → group norm. The NMF's initial bases are a
/// constant made once on the store's device (not a checkpoint tensor), so that a forward
/// pass uploads nothing.
struct Hamburger {
    ham_in: Conv2d,
    ham_out: Conv2d,
    gn: GroupNorm,
    bases: Tensor,
}

impl Hamburger {
    fn new(
        store: &mut ParamStore,
        r: &mut InitRng,
        c: usize,
        groups: usize,
        rank: usize,
    ) -> Result<Hamburger> {
        let p = "decode_head.hamburger";
        let ham_in = pointwise(store, r, &format!("{p}.ham_in.conv"), (c, c))?;
        let out = format!("{p}.ham_out.conv");
        let ham_out = Conv2d::new(store, r, &out, (c, c), 1, 1, 1, 1, false)?;
        let gn = GroupNorm::new(store, &format!("{p}.ham_out.gn"), groups, c)?;
        let bases = Tensor::from_vec(nmf_bases(c, rank), [1, c, rank], store.device())?;
        Ok(Hamburger {
            ham_in,
            ham_out,
            gn,
            bases,
        })
    }

    fn forward(&self, store: &ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let steps = if training { NMF_STEPS.0 } else { NMF_STEPS.1 };
        let e = self.ham_in.forward(store, x)?.relu()?;
        let e = nmf(&e, &self.bases, steps)?;
        let e = self.gn.forward(store, &self.ham_out.forward(store, &e)?)?;
        x.add(&e)?.relu()
    }
}

/// SegNeXt (see the module docs): logits at the input's size for any input size.
pub struct SegNeXt {
    stages: Vec<(Embed, Vec<Block>, LayerNorm2d)>,
    squeeze: ConvGn,
    hamburger: Option<Hamburger>,
    align: ConvGn,
    conv_seg: Conv2d,
    num_classes: usize,
    config: SegNeXtConfig,
}

impl SegNeXt {
    /// Builds the layers and registers their tensors, initialised from `seed`
    /// (Kaiming-normal convs, zero biases, BN and norms γ = 1 and β = 0, layer scales 10⁻²).
    pub fn new(
        config: &SegNeXtConfig,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<SegNeXt> {
        config.validate()?;
        let mut rng = init_rng(seed);
        let r = &mut rng;
        let ws = config.widths;
        let mut stages = Vec::with_capacity(4);
        for i in 0..4 {
            let s = i + 1;
            let embed = if i == 0 {
                let half = ws[0] / 2;
                let p = "backbone.patch_embed1.proj";
                Embed::Stem(
                    down(store, r, &format!("{p}.0"), (3, half))?,
                    BatchNorm2d::new(store, &format!("{p}.1"), half)?,
                    down(store, r, &format!("{p}.3"), (half, ws[0]))?,
                    BatchNorm2d::new(store, &format!("{p}.4"), ws[0])?,
                )
            } else {
                let p = format!("backbone.patch_embed{s}");
                Embed::Patch(
                    down(store, r, &format!("{p}.proj"), (ws[i - 1], ws[i]))?,
                    BatchNorm2d::new(store, &format!("{p}.norm"), ws[i])?,
                )
            };
            let blocks = (0..config.depths[i])
                .map(|j| {
                    let p = format!("backbone.block{s}.{j}");
                    Block::new(store, r, &p, ws[i], config.mlp_ratios[i])
                })
                .collect::<Result<Vec<_>>>()?;
            let norm = LayerNorm2d::new(store, &format!("backbone.norm{s}"), ws[i])?;
            stages.push((embed, blocks, norm));
        }
        let (d, g) = (config.decoder, config.groups);
        let squeeze = ConvGn::new(
            store,
            r,
            "decode_head.squeeze",
            (ws[1] + ws[2] + ws[3], d),
            g,
        )?;
        let hamburger = match config.ham_rank {
            Some(rank) => Some(Hamburger::new(store, r, d, g, rank)?),
            None => None,
        };
        let align = ConvGn::new(store, r, "decode_head.align", (d, d), g)?;
        let conv_seg = pointwise(store, r, "decode_head.conv_seg", (d, num_classes))?;
        Ok(SegNeXt {
            stages,
            squeeze,
            hamburger,
            align,
            conv_seg,
            num_classes,
            config: config.clone(),
        })
    }
}

impl Segmenter for SegNeXt {
    fn arch(&self) -> &str {
        super::SEGNEXT
    }

    fn metadata_json(&self) -> Result<String> {
        ModelConfig::SegNeXt(self.config.clone()).metadata_json()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let (h, w) = image_size("SegNeXt", x)?;
        let mut y = x.clone();
        let mut outs = Vec::with_capacity(4);
        for (embed, blocks, norm) in &self.stages {
            y = embed.forward(store, &y, training)?;
            for b in blocks {
                y = b.forward(store, &y, training)?;
            }
            y = norm.forward(store, &y)?;
            outs.push(y.clone());
        }
        let size = (outs[1].dims()[2], outs[1].dims()[3]);
        let mut parts = Vec::with_capacity(3);
        for o in &outs[1..] {
            parts.push(o.interpolate_bilinear(size, false)?);
        }
        let mut z = self.squeeze.forward(store, &concat(&parts, 1)?)?;
        if let Some(h) = &self.hamburger {
            z = h.forward(store, &z, training)?;
        }
        let z = self.align.forward(store, &z)?;
        let logits = self.conv_seg.forward(store, &z)?;
        logits.interpolate_bilinear((h, w), false)
    }
}
