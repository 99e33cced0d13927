//! Model configurations: the `[model]` table of the TOML files in `models/`, and the
//! `wgseg.model` checkpoint metadata (docs/model.md).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::deeplab::{default_rates, DeepLabV3, DeepLabV3Plus};
use super::resnet::{Block, ResNetSpec};
use super::segnet::SegNet;
use super::segnext::SegNeXt;
use super::unet::{AttentionUNet, UNet, UNetPlusPlus};
use super::Segmenter;
use crate::error::{Error, Result};
use crate::nn::ParamStore;

/// The `arch` of DeepLabV3+ (the default when a table or a checkpoint names none).
pub const DEEPLABV3PLUS: &str = "deeplabv3plus";
/// The `arch` of DeepLabV3.
pub const DEEPLABV3: &str = "deeplabv3";
/// The `arch` of UNet.
pub const UNET: &str = "unet";
/// The `arch` of Attention UNet.
pub const ATTENTION_UNET: &str = "attention_unet";
/// The `arch` of UNet++ (nested UNet).
pub const UNET_PLUS_PLUS: &str = "unetplusplus";
/// The `arch` of SegNet.
pub const SEGNET: &str = "segnet";
/// The `arch` of SegNeXt.
pub const SEGNEXT: &str = "segnext";
/// The architectures [`ModelConfig`] knows, by `arch` name.
pub const ARCHS: &[&str] = &[
    DEEPLABV3PLUS,
    DEEPLABV3,
    UNET,
    ATTENTION_UNET,
    UNET_PLUS_PLUS,
    SEGNET,
    SEGNEXT,
];

/// The architecture of a DeepLabV3+ (docs/model.md). Every key is required in a config
/// file; an unknown or mistyped key is an error naming the key and the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLabConfig {
    /// Channels of the stem (`backbone.conv1`, 7×7 stride 2).
    pub stem: usize,
    /// Channels of layer1..layer4.
    pub widths: [usize; 4],
    /// Blocks in layer1..layer4.
    pub depths: [usize; 4],
    /// `"basic"` (the default; not written when basic) or `"bottleneck"` residual blocks.
    #[serde(default, skip_serializing_if = "Block::is_basic")]
    pub block: Block,
    /// ASPP width (every branch and the projection).
    pub aspp: usize,
    /// Low-level decoder channels (48 in the paper).
    pub low: usize,
    /// Decoder width (`decoder.fuse.*`).
    pub decoder: usize,
    /// 8, 16 (default) or 32.
    pub output_stride: usize,
    /// ASPP dilation rates; omitted: (6, 12, 18) at output stride 16, (12, 24, 36) at 8,
    /// (3, 6, 9) at 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspp_rates: Option<Vec<usize>>,
    /// Depthwise-separable atrous ASPP branches.
    #[serde(default)]
    pub separable_aspp: bool,
}

/// Checks the keys DeepLabV3 and DeepLabV3+ share; `more` are further widths.
fn validate_deeplab(
    spec: &ResNetSpec,
    aspp: usize,
    rates: &Option<Vec<usize>>,
    more: &[usize],
) -> Result<()> {
    let bad = |msg: String| Err(Error::shape("model config", msg));
    if ![8, 16, 32].contains(&spec.output_stride) {
        return bad(format!(
            "output_stride = {} (use 8, 16 or 32)",
            spec.output_stride
        ));
    }
    if spec.stem == 0 || aspp == 0 || more.contains(&0) || spec.widths.contains(&0) {
        return bad("every width must be positive".into());
    }
    if spec.depths.contains(&0) {
        return bad(format!(
            "depths = {:?}: every stage needs a block",
            spec.depths
        ));
    }
    if let Some(r) = rates {
        if r.is_empty() || r.contains(&0) {
            return bad(format!("aspp_rates = {r:?} must be positive"));
        }
    }
    Ok(())
}

/// What DeepLabV3 and DeepLabV3+ checkpoints share (docs/model.md): `output_stride`
/// (required), `aspp_rates` (default by output stride), `separable_aspp` (default false)
/// from the `wgseg.model` object, the backbone from the shapes; the rates must match the
/// file's atrous branches.
fn deeplab_from_checkpoint(
    obj: &serde_json::Map<String, Value>,
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
    names: &[&str],
) -> Result<(ResNetSpec, Vec<usize>, bool)> {
    let bad = |msg: String| Error::shape("wgseg.model", msg);
    let output_stride = obj
        .get("output_stride")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no integer output_stride".into()))? as usize;
    let aspp_rates = match obj.get("aspp_rates") {
        None | Some(Value::Null) => default_rates(output_stride)?,
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("aspp_rates is not a list of integers: {e}")))?,
    };
    let separable_aspp = match obj.get("separable_aspp") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad(format!("separable_aspp = {v} is not a boolean")))?,
    };
    let spec = ResNetSpec::from_checkpoint("backbone.", shape, output_stride)?;
    let branches = (1..)
        .find(|k| {
            let p = format!("aspp.convs.{k}.");
            !names.iter().any(|n| n.starts_with(&p))
        })
        .unwrap_or(1)
        - 1;
    if branches != aspp_rates.len() {
        return Err(bad(format!(
            "{} ASPP rates {aspp_rates:?}, but the file has {branches} atrous branches",
            aspp_rates.len()
        )));
    }
    Ok((spec, aspp_rates, separable_aspp))
}

/// The given ASPP rates, or the output stride's defaults.
fn rates_or_default(rates: &Option<Vec<usize>>, output_stride: usize) -> Result<Vec<usize>> {
    match rates {
        Some(r) => Ok(r.clone()),
        None => default_rates(output_stride),
    }
}

/// First dimension of a checkpoint tensor.
fn dim0(shape: &dyn Fn(&str) -> Option<Vec<usize>>, name: &str) -> Result<usize> {
    let s =
        shape(name).ok_or_else(|| Error::shape("wgseg.model", format!("missing tensor {name}")))?;
    s.first()
        .copied()
        .ok_or_else(|| Error::shape("wgseg.model", format!("{name} is a scalar")))
}

/// Keys the writer recorded must agree with what the shapes imply.
fn agree<T: Serialize>(obj: &serde_json::Map<String, Value>, config: &T) -> Result<()> {
    let bad = |msg: String| Error::shape("wgseg.model", msg);
    let implied = serde_json::to_value(config).map_err(|e| bad(e.to_string()))?;
    for (key, want) in implied.as_object().into_iter().flatten() {
        if let Some(got) = obj.get(key) {
            if got != want {
                return Err(bad(format!(
                    "{key} = {got}, but the tensor shapes imply {want}"
                )));
            }
        }
    }
    Ok(())
}

impl DeepLabConfig {
    /// The backbone's hyper-parameters.
    pub fn backbone(&self) -> ResNetSpec {
        ResNetSpec {
            stem: self.stem,
            widths: self.widths,
            depths: self.depths,
            block: self.block,
            output_stride: self.output_stride,
        }
    }

    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        validate_deeplab(
            &self.backbone(),
            self.aspp,
            &self.aspp_rates,
            &[self.low, self.decoder],
        )
    }

    /// This config with the ASPP rates resolved (the defaults of the output stride filled
    /// in).
    pub fn resolved(&self) -> Result<DeepLabConfig> {
        let mut c = self.clone();
        c.aspp_rates = Some(rates_or_default(&c.aspp_rates, c.output_stride)?);
        Ok(c)
    }

    /// The architecture and class count of a DeepLabV3+ checkpoint from its `wgseg.model`
    /// object and its tensor shapes (`shape(name)`; `names`: every tensor of the file), as a
    /// PyTorch loader reads it (docs/model.md): only `output_stride` is required,
    /// `aspp_rates` defaults by output stride and `separable_aspp` to false; widths, depths,
    /// the block type and the class count come from the shapes. A recorded key that the
    /// shapes contradict is an error.
    pub fn from_checkpoint(
        obj: &serde_json::Map<String, Value>,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        names: &[&str],
    ) -> Result<(DeepLabConfig, usize)> {
        let (spec, aspp_rates, separable_aspp) = deeplab_from_checkpoint(obj, shape, names)?;
        let config = DeepLabConfig {
            stem: spec.stem,
            widths: spec.widths,
            depths: spec.depths,
            block: spec.block,
            aspp: dim0(shape, "aspp.project.conv.weight")?,
            low: dim0(shape, "decoder.low.conv.weight")?,
            decoder: dim0(shape, "decoder.fuse.0.conv.weight")?,
            output_stride: spec.output_stride,
            aspp_rates: Some(aspp_rates),
            separable_aspp,
        };
        config
            .validate()
            .map_err(|e| Error::shape("wgseg.model", format!("invalid architecture: {e}")))?;
        agree(obj, &config)?;
        Ok((config, dim0(shape, "decoder.classifier.weight")?))
    }
}

/// The architecture of a DeepLabV3 (docs/model.md): DeepLabV3+'s backbone and ASPP, a 3×3
/// head and the classifier, no decoder. Every key but `block`, `aspp_rates` and
/// `separable_aspp` is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLabV3Config {
    /// Channels of the stem (`backbone.conv1`, 7×7 stride 2).
    pub stem: usize,
    /// Widths of layer1..layer4.
    pub widths: [usize; 4],
    /// Blocks in layer1..layer4.
    pub depths: [usize; 4],
    /// `"basic"` (the default) or `"bottleneck"` residual blocks.
    #[serde(default)]
    pub block: Block,
    /// ASPP width (every branch, the projection and the head).
    pub aspp: usize,
    /// 8, 16 or 32.
    pub output_stride: usize,
    /// ASPP dilation rates; omitted: by output stride, as for DeepLabV3+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspp_rates: Option<Vec<usize>>,
    /// Depthwise-separable atrous ASPP branches.
    #[serde(default)]
    pub separable_aspp: bool,
}

impl DeepLabV3Config {
    /// The backbone's hyper-parameters.
    pub fn backbone(&self) -> ResNetSpec {
        ResNetSpec {
            stem: self.stem,
            widths: self.widths,
            depths: self.depths,
            block: self.block,
            output_stride: self.output_stride,
        }
    }

    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        validate_deeplab(&self.backbone(), self.aspp, &self.aspp_rates, &[])
    }

    /// This config with the ASPP rates resolved.
    pub fn resolved(&self) -> Result<DeepLabV3Config> {
        let mut c = self.clone();
        c.aspp_rates = Some(rates_or_default(&c.aspp_rates, c.output_stride)?);
        Ok(c)
    }

    /// The architecture and class count of a DeepLabV3 checkpoint, read as
    /// [`DeepLabConfig::from_checkpoint`] reads a DeepLabV3+ one.
    pub fn from_checkpoint(
        obj: &serde_json::Map<String, Value>,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        names: &[&str],
    ) -> Result<(DeepLabV3Config, usize)> {
        let (spec, aspp_rates, separable_aspp) = deeplab_from_checkpoint(obj, shape, names)?;
        let config = DeepLabV3Config {
            stem: spec.stem,
            widths: spec.widths,
            depths: spec.depths,
            block: spec.block,
            aspp: dim0(shape, "aspp.project.conv.weight")?,
            output_stride: spec.output_stride,
            aspp_rates: Some(aspp_rates),
            separable_aspp,
        };
        config
            .validate()
            .map_err(|e| Error::shape("wgseg.model", format!("invalid architecture: {e}")))?;
        agree(obj, &config)?;
        Ok((config, dim0(shape, "classifier.weight")?))
    }
}

/// How a UNet decoder level brings the coarser map up to its skip's size: `"bilinear"`
/// (resize to the skip's exact size, the default) or `"transposed"` (a 2×2 stride-2
/// transposed convolution to the skip's width, then zero padding up to an odd skip size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsampling {
    #[default]
    Bilinear,
    Transposed,
}

/// The architecture of a UNet or an Attention UNet (docs/model.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Channels of each level, top to bottom (at least 2; the paper's: 64, 128, 256, 512,
    /// 1024). Level `i` works at stride `2^i`.
    pub widths: Vec<usize>,
    /// How the decoder upsamples (default bilinear).
    #[serde(default)]
    pub upsampling: Upsampling,
}

/// The architecture of a UNet++ (docs/model.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetPlusPlusConfig {
    /// Channels of each level, top to bottom (at least 2; the paper's: 32, 64, 128, 256,
    /// 512).
    pub widths: Vec<usize>,
    /// How the nested nodes upsample (default bilinear).
    #[serde(default)]
    pub upsampling: Upsampling,
    /// A classifier on every top-level node, the logits their mean (default false: one
    /// classifier on the last node).
    #[serde(default)]
    pub deep_supervision: bool,
}

/// The architecture of a SegNet (docs/model.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegNetConfig {
    /// Channels of each encoder block (the paper's VGG-16: 64, 128, 256, 512, 512).
    pub widths: Vec<usize>,
    /// 3×3 convolutions in each block (the paper's: 2, 2, 3, 3, 3).
    pub depths: Vec<usize>,
}

impl SegNetConfig {
    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        let (w, d) = (&self.widths, &self.depths);
        if w.is_empty() || w.len() != d.len() || w.contains(&0) || d.contains(&0) {
            return Err(Error::shape(
                "model config",
                format!("widths = {w:?}, depths = {d:?}: one positive width and depth per block"),
            ));
        }
        Ok(())
    }
}

/// The architecture of a SegNeXt: its MSCAN encoder and light Hamburger decoder
/// (docs/model.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegNeXtConfig {
    /// Channels of the four stages (SegNeXt-T: 32, 64, 160, 256).
    pub widths: [usize; 4],
    /// Blocks per stage (SegNeXt-T: 3, 3, 5, 2).
    pub depths: [usize; 4],
    /// MLP expansion per stage (SegNeXt-T: 8, 8, 4, 4).
    pub mlp_ratios: [usize; 4],
    /// Decoder width (SegNeXt-T: 256).
    pub decoder: usize,
    /// Group-norm groups of the decoder (32); divides `decoder`.
    pub groups: usize,
    /// The rank `R` of the Hamburger's matrix factorisation (16 in the paper); omitted, the
    /// decoder has no Hamburger.
    #[serde(default)]
    pub ham_rank: Option<usize>,
}

impl SegNeXtConfig {
    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("model config", msg));
        if self.widths.contains(&0) || self.depths.contains(&0) || self.mlp_ratios.contains(&0) {
            return bad(format!(
                "widths = {:?}, depths = {:?}, mlp_ratios = {:?}: every entry must be positive",
                self.widths, self.depths, self.mlp_ratios
            ));
        }
        if self.widths[0] % 2 != 0 {
            return bad(format!(
                "widths[0] = {} must be even (the stem's first conv has half of it)",
                self.widths[0]
            ));
        }
        if self.ham_rank == Some(0) {
            return bad("ham_rank = 0: the factorisation needs a positive rank".into());
        }
        if self.groups == 0 || self.decoder == 0 || self.decoder % self.groups != 0 {
            return bad(format!(
                "decoder = {} must be a positive multiple of groups = {}",
                self.decoder, self.groups
            ));
        }
        Ok(())
    }
}

/// Checks a UNet family's widths.
fn validate_widths(widths: &[usize]) -> Result<()> {
    if widths.len() < 2 || widths.contains(&0) {
        return Err(Error::shape(
            "model config",
            format!("widths = {widths:?}: at least two levels, every width positive"),
        ));
    }
    Ok(())
}

impl UNetConfig {
    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        validate_widths(&self.widths)
    }
}

impl UNetPlusPlusConfig {
    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        validate_widths(&self.widths)
    }
}

/// The config of an architecture whose `wgseg.model` object records every key.
fn from_metadata<T: DeserializeOwned>(obj: &serde_json::Map<String, Value>) -> Result<T> {
    let mut obj = obj.clone();
    obj.remove("arch");
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| Error::shape("wgseg.model", e.to_string()))
}

/// The architecture of a model the crate ships, by name: the `[model]` table of a run
/// config and the `wgseg.model` checkpoint metadata. Serialised as the architecture's own
/// keys plus `arch = "NAME"`; a table or checkpoint without `arch` is a DeepLabV3+ (files
/// written before the key existed).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// `arch = "deeplabv3plus"`.
    DeepLabV3Plus(DeepLabConfig),
    /// `arch = "deeplabv3"`.
    DeepLabV3(DeepLabV3Config),
    /// `arch = "unet"`.
    UNet(UNetConfig),
    /// `arch = "attention_unet"`.
    AttentionUNet(UNetConfig),
    /// `arch = "unetplusplus"`.
    UNetPlusPlus(UNetPlusPlusConfig),
    /// `arch = "segnet"`.
    SegNet(SegNetConfig),
    /// `arch = "segnext"`.
    SegNeXt(SegNeXtConfig),
}

impl From<DeepLabConfig> for ModelConfig {
    fn from(c: DeepLabConfig) -> Self {
        ModelConfig::DeepLabV3Plus(c)
    }
}

/// `$body` with `$c` bound to the config of whichever variant `$m` is.
macro_rules! each {
    ($m:expr, $c:ident => $body:expr) => {
        match $m {
            ModelConfig::DeepLabV3Plus($c) => $body,
            ModelConfig::DeepLabV3($c) => $body,
            ModelConfig::UNet($c) | ModelConfig::AttentionUNet($c) => $body,
            ModelConfig::UNetPlusPlus($c) => $body,
            ModelConfig::SegNet($c) => $body,
            ModelConfig::SegNeXt($c) => $body,
        }
    };
}

impl ModelConfig {
    /// The `arch` name.
    pub fn arch(&self) -> &'static str {
        match self {
            ModelConfig::DeepLabV3Plus(_) => DEEPLABV3PLUS,
            ModelConfig::DeepLabV3(_) => DEEPLABV3,
            ModelConfig::UNet(_) => UNET,
            ModelConfig::AttentionUNet(_) => ATTENTION_UNET,
            ModelConfig::UNetPlusPlus(_) => UNET_PLUS_PLUS,
            ModelConfig::SegNet(_) => SEGNET,
            ModelConfig::SegNeXt(_) => SEGNEXT,
        }
    }

    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        each!(self, c => c.validate())
    }

    /// Builds the network for `num_classes` classes, its tensors registered in `store` and
    /// initialised from `seed`.
    pub fn build(
        &self,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<Box<dyn Segmenter>> {
        let n = num_classes;
        Ok(match self {
            ModelConfig::DeepLabV3Plus(c) => Box::new(DeepLabV3Plus::new(c, n, store, seed)?),
            ModelConfig::DeepLabV3(c) => Box::new(DeepLabV3::new(c, n, store, seed)?),
            ModelConfig::UNet(c) => Box::new(UNet::new(c, n, store, seed)?),
            ModelConfig::AttentionUNet(c) => Box::new(AttentionUNet::new(c, n, store, seed)?),
            ModelConfig::UNetPlusPlus(c) => Box::new(UNetPlusPlus::new(c, n, store, seed)?),
            ModelConfig::SegNet(c) => Box::new(SegNet::new(c, n, store, seed)?),
            ModelConfig::SegNeXt(c) => Box::new(SegNeXt::new(c, n, store, seed)?),
        })
    }

    /// This config with every default resolved (DeepLab: the ASPP rates).
    pub fn resolved(&self) -> Result<ModelConfig> {
        Ok(match self {
            ModelConfig::DeepLabV3Plus(c) => ModelConfig::DeepLabV3Plus(c.resolved()?),
            ModelConfig::DeepLabV3(c) => ModelConfig::DeepLabV3(c.resolved()?),
            other => other.clone(),
        })
    }

    /// The `wgseg.model` checkpoint metadata: this config, resolved, as JSON text of an
    /// object with `arch` first, then the architecture's keys in declaration order.
    pub fn metadata_json(&self) -> Result<String> {
        serde_json::to_string(&self.resolved()?)
            .map_err(|e| Error::shape("model config", e.to_string()))
    }

    /// The architecture and class count of a checkpoint from its `wgseg.model` object and
    /// its tensor shapes; `None` when `arch` names an architecture this crate does not
    /// ship. No `arch`: DeepLabV3+. DeepLab checkpoints are read from the shapes as a
    /// PyTorch loader reads them ([`DeepLabConfig::from_checkpoint`]); the UNet family
    /// SegNet and SegNeXt record every key.
    pub fn from_checkpoint(
        obj: &serde_json::Map<String, Value>,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        names: &[&str],
    ) -> Result<Option<(ModelConfig, usize)>> {
        let classes = || dim0(shape, "classifier.weight");
        let found = match arch_of(obj)? {
            DEEPLABV3PLUS => {
                let (c, n) = DeepLabConfig::from_checkpoint(obj, shape, names)?;
                (ModelConfig::DeepLabV3Plus(c), n)
            }
            DEEPLABV3 => {
                let (c, n) = DeepLabV3Config::from_checkpoint(obj, shape, names)?;
                (ModelConfig::DeepLabV3(c), n)
            }
            UNET => (ModelConfig::UNet(from_metadata(obj)?), classes()?),
            ATTENTION_UNET => (ModelConfig::AttentionUNet(from_metadata(obj)?), classes()?),
            UNET_PLUS_PLUS => {
                let c: UNetPlusPlusConfig = from_metadata(obj)?;
                let n = if c.deep_supervision {
                    dim0(shape, "classifiers.0.weight")?
                } else {
                    classes()?
                };
                (ModelConfig::UNetPlusPlus(c), n)
            }
            SEGNET => (ModelConfig::SegNet(from_metadata(obj)?), classes()?),
            SEGNEXT => (
                ModelConfig::SegNeXt(from_metadata(obj)?),
                dim0(shape, "decode_head.conv_seg.weight")?,
            ),
            _ => return Ok(None),
        };
        found
            .0
            .validate()
            .map_err(|e| Error::shape("wgseg.model", format!("invalid architecture: {e}")))?;
        Ok(Some(found))
    }
}

/// The `arch` of a `wgseg.model` object or `[model]` table (DeepLabV3+ when absent).
pub fn arch_of(obj: &serde_json::Map<String, Value>) -> Result<&str> {
    match obj.get("arch") {
        None => Ok(DEEPLABV3PLUS),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(Error::shape(
            "wgseg.model",
            format!("arch = {v} is not a string"),
        )),
    }
}

/// `arch` first, then the architecture's own keys in their declaration order.
#[derive(Serialize)]
struct Tagged<'a, T> {
    arch: &'a str,
    #[serde(flatten)]
    config: &'a T,
}

impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let arch = self.arch();
        each!(self, config => Tagged { arch, config }.serialize(s))
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut obj = serde_json::Map::<String, Value>::deserialize(d)?;
        let arch = arch_of(&obj).map_err(D::Error::custom)?.to_string();
        obj.remove("arch");
        let obj = Value::Object(obj);
        let r = match arch.as_str() {
            DEEPLABV3PLUS => serde_json::from_value(obj).map(ModelConfig::DeepLabV3Plus),
            DEEPLABV3 => serde_json::from_value(obj).map(ModelConfig::DeepLabV3),
            UNET => serde_json::from_value(obj).map(ModelConfig::UNet),
            ATTENTION_UNET => serde_json::from_value(obj).map(ModelConfig::AttentionUNet),
            UNET_PLUS_PLUS => serde_json::from_value(obj).map(ModelConfig::UNetPlusPlus),
            SEGNET => serde_json::from_value(obj).map(ModelConfig::SegNet),
            SEGNEXT => serde_json::from_value(obj).map(ModelConfig::SegNeXt),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown arch \"{other}\" (known: {})",
                    ARCHS.join(", ")
                )))
            }
        };
        r.map_err(D::Error::custom)
    }
}
