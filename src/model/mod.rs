//! The segmentation model: DeepLabV3+ (SPEC §5) and its configuration.

mod config;
mod deeplab;

pub use config::ModelConfig;
pub use deeplab::{default_rates, stage_plan, DeepLabV3Plus};
