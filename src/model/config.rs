//! Model configurations: the `[model]` table of the TOML files in `models/`, and the
//! `wgseg.model` checkpoint metadata (docs/model.md).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::deeplab::{default_rates, DeepLabV3Plus};
use super::Segmenter;
use crate::error::{Error, Result};
use crate::nn::ParamStore;

/// The `arch` of DeepLabV3+ (the default when a table or a checkpoint names none).
pub const DEEPLABV3PLUS: &str = "deeplabv3plus";
/// The architectures [`ModelConfig`] knows, by `arch` name.
pub const ARCHS: &[&str] = &[DEEPLABV3PLUS];

/// The architecture of a DeepLabV3+ (docs/model.md). Every key is required in a config
/// file; an unknown or mistyped key is an error naming the key and the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLabConfig {
    /// Channels of the stem (`backbone.conv1`, 7×7 stride 2).
    pub stem: usize,
    /// Channels of layer1..layer4.
    pub widths: [usize; 4],
    /// Basic blocks in layer1..layer4.
    pub depths: [usize; 4],
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

impl DeepLabConfig {
    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::shape("model config", msg));
        if ![8, 16, 32].contains(&self.output_stride) {
            return bad(format!(
                "output_stride = {} (use 8, 16 or 32)",
                self.output_stride
            ));
        }
        if self.stem == 0
            || self.aspp == 0
            || self.low == 0
            || self.decoder == 0
            || self.widths.contains(&0)
        {
            return bad("every width must be positive".into());
        }
        if self.depths.contains(&0) {
            return bad(format!(
                "depths = {:?}: every stage needs a block",
                self.depths
            ));
        }
        if let Some(r) = &self.aspp_rates {
            if r.is_empty() || r.contains(&0) {
                return bad(format!("aspp_rates = {r:?} must be positive"));
            }
        }
        Ok(())
    }

    /// This config with the ASPP rates resolved (the defaults of the output stride filled
    /// in).
    pub fn resolved(&self) -> Result<DeepLabConfig> {
        let mut c = self.clone();
        if c.aspp_rates.is_none() {
            c.aspp_rates = Some(default_rates(c.output_stride)?);
        }
        Ok(c)
    }

    /// The architecture and class count of a DeepLabV3+ checkpoint from its `wgseg.model`
    /// object and its tensor shapes (`shape(name)`; `names`: every tensor of the file), as a
    /// PyTorch loader reads it (docs/model.md): only `output_stride` is required,
    /// `aspp_rates` defaults by output stride and `separable_aspp` to false; widths, depths
    /// and the class count come from the shapes. A recorded key that the shapes contradict
    /// is an error.
    pub fn from_checkpoint(
        obj: &serde_json::Map<String, Value>,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        names: &[&str],
    ) -> Result<(DeepLabConfig, usize)> {
        let bad = |msg: String| Error::shape("wgseg.model", msg);
        let output_stride =
            obj.get("output_stride")
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
        let dim0 = |name: &str| -> Result<usize> {
            let s = shape(name).ok_or_else(|| bad(format!("missing tensor {name}")))?;
            s.first()
                .copied()
                .ok_or_else(|| bad(format!("{name} is a scalar")))
        };
        let mut widths = [0; 4];
        let mut depths = [0; 4];
        for i in 0..4 {
            widths[i] = dim0(&format!("backbone.layer{}.0.conv1.weight", i + 1))?;
            let has = |j: usize| shape(&format!("backbone.layer{}.{j}.conv1.weight", i + 1));
            depths[i] = (0..).find(|&j| has(j).is_none()).unwrap_or(0);
        }
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
        let config = DeepLabConfig {
            stem: dim0("backbone.conv1.weight")?,
            widths,
            depths,
            aspp: dim0("aspp.project.conv.weight")?,
            low: dim0("decoder.low.conv.weight")?,
            decoder: dim0("decoder.fuse.0.conv.weight")?,
            output_stride,
            aspp_rates: Some(aspp_rates),
            separable_aspp,
        };
        config
            .validate()
            .map_err(|e| bad(format!("invalid architecture: {e}")))?;
        // Keys the writer recorded must agree with what the shapes say.
        let implied = serde_json::to_value(&config).map_err(|e| bad(e.to_string()))?;
        for (key, want) in implied.as_object().into_iter().flatten() {
            if let Some(got) = obj.get(key) {
                if got != want {
                    return Err(bad(format!(
                        "{key} = {got}, but the tensor shapes imply {want}"
                    )));
                }
            }
        }
        Ok((config, dim0("decoder.classifier.weight")?))
    }
}

/// The architecture of a model the crate ships, by name: the `[model]` table of a run
/// config and the `wgseg.model` checkpoint metadata. Serialised as the architecture's own
/// keys plus `arch = "NAME"`; a table or checkpoint without `arch` is a DeepLabV3+ (files
/// written before the key existed).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// `arch = "deeplabv3plus"`.
    DeepLabV3Plus(DeepLabConfig),
}

impl From<DeepLabConfig> for ModelConfig {
    fn from(c: DeepLabConfig) -> Self {
        ModelConfig::DeepLabV3Plus(c)
    }
}

impl ModelConfig {
    /// The `arch` name.
    pub fn arch(&self) -> &'static str {
        match self {
            ModelConfig::DeepLabV3Plus(_) => DEEPLABV3PLUS,
        }
    }

    /// Checks the values a TOML file can get wrong.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::DeepLabV3Plus(c) => c.validate(),
        }
    }

    /// Builds the network for `num_classes` classes, its tensors registered in `store` and
    /// initialised from `seed`.
    pub fn build(
        &self,
        num_classes: usize,
        store: &mut ParamStore,
        seed: u64,
    ) -> Result<Box<dyn Segmenter>> {
        match self {
            ModelConfig::DeepLabV3Plus(c) => {
                Ok(Box::new(DeepLabV3Plus::new(c, num_classes, store, seed)?))
            }
        }
    }

    /// This config with every default resolved (DeepLabV3+: the ASPP rates).
    pub fn resolved(&self) -> Result<ModelConfig> {
        match self {
            ModelConfig::DeepLabV3Plus(c) => Ok(ModelConfig::DeepLabV3Plus(c.resolved()?)),
        }
    }

    /// The `wgseg.model` checkpoint metadata: this config, resolved, as JSON text of an
    /// object with `arch` first, then the architecture's keys in declaration order.
    pub fn metadata_json(&self) -> Result<String> {
        serde_json::to_string(&self.resolved()?)
            .map_err(|e| Error::shape("model config", e.to_string()))
    }

    /// The architecture and class count of a checkpoint from its `wgseg.model` object and
    /// its tensor shapes (see [`DeepLabConfig::from_checkpoint`]); `None` when `arch`
    /// names an architecture this crate does not ship. No `arch`: DeepLabV3+.
    pub fn from_checkpoint(
        obj: &serde_json::Map<String, Value>,
        shape: &dyn Fn(&str) -> Option<Vec<usize>>,
        names: &[&str],
    ) -> Result<Option<(ModelConfig, usize)>> {
        match arch_of(obj)? {
            DEEPLABV3PLUS => {
                let (c, n) = DeepLabConfig::from_checkpoint(obj, shape, names)?;
                Ok(Some((ModelConfig::DeepLabV3Plus(c), n)))
            }
            _ => Ok(None),
        }
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
        match self {
            ModelConfig::DeepLabV3Plus(config) => Tagged {
                arch: self.arch(),
                config,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut obj = serde_json::Map::<String, Value>::deserialize(d)?;
        let arch = arch_of(&obj).map_err(D::Error::custom)?.to_string();
        obj.remove("arch");
        match arch.as_str() {
            DEEPLABV3PLUS => serde_json::from_value(Value::Object(obj))
                .map(ModelConfig::DeepLabV3Plus)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "unknown arch \"{other}\" (known: {})",
                ARCHS.join(", ")
            ))),
        }
    }
}
