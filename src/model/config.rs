//! Model configurations: the `[model]` table of the TOML files in `models/`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The architecture of a DeepLabV3+ (SPEC §5). Every key is required in a config file; an
/// unknown or mistyped key is an error naming the key and the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
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

impl ModelConfig {
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

    /// The `wgseg.model` checkpoint metadata (SPEC §5): this config as JSON, with the
    /// resolved ASPP rates.
    pub fn metadata_json(&self) -> Result<String> {
        let mut c = self.clone();
        if c.aspp_rates.is_none() {
            c.aspp_rates = Some(super::deeplab::default_rates(c.output_stride)?);
        }
        serde_json::to_string(&c).map_err(|e| Error::shape("model config", e.to_string()))
    }
}
