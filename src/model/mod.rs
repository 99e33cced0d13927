//! The segmentation models and the interface the trainer, evaluation, inference and
//! checkpoints use (docs/model.md).
//!
//! A model is a [`Segmenter`]: a description of layers whose tensors live in a
//! [`ParamStore`] beside it, under PyTorch `state_dict` names (the names are the store's:
//! [`ParamStore::names`]). It maps normalised images `[N, 3, H, W]` to logits
//! `[N, classes, H, W]`, in training mode (batch statistics, running statistics updated in
//! the store) or evaluation mode, and describes itself as the `wgseg.model` checkpoint
//! metadata: a JSON object whose `"arch"` names the architecture.
//!
//! The architectures the crate ships are the variants of [`ModelConfig`] (the `[model]`
//! table of a run config; `arch` defaults to `deeplabv3plus`): [`ModelConfig::build`] makes
//! one, [`ModelConfig::from_checkpoint`] reads one back from a checkpoint. Code outside the
//! crate can bring its own [`Segmenter`] to the trainer through a [`BuildModel`] closure
//! (`train::trainer::train_model`).

mod config;
mod deeplab;
mod resnet;
mod segnet;
mod segnext;
mod unet;

pub use config::{
    arch_of, DeepLabConfig, DeepLabV3Config, ModelConfig, SegNeXtConfig, SegNetConfig, UNetConfig,
    UNetPlusPlusConfig, Upsampling, ARCHS, ATTENTION_UNET, DEEPLABV3, DEEPLABV3PLUS, SEGNET,
    SEGNEXT, UNET, UNET_PLUS_PLUS,
};
pub use deeplab::{default_rates, DeepLabV3, DeepLabV3Plus};
pub use resnet::{stage_plan, Block, ResNet, ResNetSpec};
pub use segnet::SegNet;
pub use segnext::{nmf_bases, SegNeXt, NMF_STEPS};
pub use unet::{AttentionUNet, UNet, UNetPlusPlus};

use crate::error::Result;
use crate::nn::ParamStore;
use crate::tensor::Tensor;

/// A segmentation network whose tensors live in a [`ParamStore`] (see the module docs).
pub trait Segmenter {
    /// The architecture's name: the `"arch"` of [`metadata_json`](Segmenter::metadata_json).
    fn arch(&self) -> &str;

    /// The `wgseg.model` checkpoint metadata: the JSON text of an object with `"arch"` and
    /// everything needed to rebuild the network (besides the class count and the tensors).
    fn metadata_json(&self) -> Result<String>;

    /// Output channels (classes) of the logits.
    fn num_classes(&self) -> usize;

    /// Logits `[N, classes, H, W]` for normalised images `[N, 3, H, W]`. In training mode
    /// batch-norm uses batch statistics and updates the running statistics in `store`.
    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor>;
}

/// Builds a model: its layers for `num_classes` classes, its tensors registered in the
/// store and initialised from `seed`. The `[model]` table of the run's config is passed in
/// (the saved one on `--resume`); a model from outside the crate may ignore it.
pub type BuildModel<'a> =
    dyn Fn(&ModelConfig, usize, &mut ParamStore, u64) -> Result<Box<dyn Segmenter>> + 'a;

/// A [`BuildModel`] that threads can share: data-parallel training builds one replica per
/// device, each on its own thread ([`crate::train::train_parallel`]).
pub type SharedBuildModel<'a> =
    dyn Fn(&ModelConfig, usize, &mut ParamStore, u64) -> Result<Box<dyn Segmenter>> + Sync + 'a;

/// The [`BuildModel`] of the crate's architectures: [`ModelConfig::build`].
pub fn build_from_config(
    config: &ModelConfig,
    num_classes: usize,
    store: &mut ParamStore,
    seed: u64,
) -> Result<Box<dyn Segmenter>> {
    config.build(num_classes, store, seed)
}
