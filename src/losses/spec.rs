//! The training losses as one typed table: [`Loss`] (what `train.loss` and `--loss` name),
//! [`LossConfig`] (the `[loss]` table of a run config) and [`LossFlags`] (its command-line
//! overrides), all generated from the one list at the bottom of this file, one arm per loss.
//!
//! The parameters live in the options structs of the losses' own files (`focal.rs`, …):
//! each derives `Serialize`/`Deserialize` with `#[serde(default)]` and the config keys as
//! field names or renames, and its `Default` is the only copy of its defaults; next to it a
//! [`flags!`](super::flags) list declares its command-line flags. [`LossConfig`] flattens
//! these structs into the one `[loss]` table (keys prefixed by the loss they belong to;
//! `gamma` serves focal and cb-focal, `cb_beta` cb and cb-focal), and [`LossFlags`] gathers
//! their flags. A key no struct takes is an error naming the known keys.
//!
//! Adding a loss: its file (the loss, its options struct with serde keys and `Default`, its
//! `flags!` list, its `check`), its `mod`/`pub use` lines in `losses/mod.rs`, and one arm
//! in `loss_table!` below.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::auc_config::{AucFlags, AucParams};
use super::blv::{blv, BlvFlags, BlvOptions};
use super::bms::{balanced_softmax, BmsOptions};
use super::cb::{class_balanced, CbFlags, CbOptions};
use super::ce::{ce, CeFlags, CeOptions};
use super::focal::{focal, FocalFlags, FocalOptions};
use super::ldam::{ldam, LdamFlags, LdamOptions};
use super::pat::{pat, PatFlags, PatOptions};
use crate::error::{Error, Result};
use crate::losses::aucseg;
use crate::tensor::Tensor;

/// What one training step hands the loss.
#[derive(Clone, Copy, Debug)]
pub struct StepInput<'a> {
    /// `[N, C, H, W]`.
    pub logits: &'a Tensor,
    /// `[N, H, W]`, `U32`.
    pub labels: &'a Tensor,
    /// Training-set pixel counts per class (for cb, bms, ldam, blv).
    pub counts: &'a [u64],
    /// The dataset's ignore label.
    pub ignore_index: u32,
    /// This step's seed ([`super::rng::step_seed`]`(run seed, step)`): BLV's noise, the
    /// pairwise AUC kernel's subsample.
    pub seed: u64,
}

/// `Err` naming `loss.KEY = value` and the rule unless `ok`.
pub(crate) fn rule(ok: bool, key: &str, value: impl Display, need: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::shape(
            "config",
            format!("loss.{key} = {value}: {need}"),
        ))
    }
}

macro_rules! loss_table {
    ($(
        $(#[$doc:meta])*
        $V:ident = $name:literal $([$field:ident : $Opts:ty, $Flags:ty])?
            => |$p:pat_param, $s:ident| $body:expr;
    )*) => {
        /// A training loss: `train.loss` in a config, `--loss` on the command line.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
        )]
        pub enum Loss {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                #[value(name = $name)]
                $V,
            )*
        }

        impl Loss {
            /// Every loss, in the order of the table.
            pub const ALL: &'static [Loss] = &[$(Loss::$V),*];

            /// Its name in configs and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $(Loss::$V => $name,)*
                }
            }

            /// The loss of one training step with the parameters `params`; a scalar.
            pub fn compute(self, params: &LossConfig, step: &StepInput<'_>) -> Result<Tensor> {
                match self {
                    $(Loss::$V => {
                        let $p = params;
                        let $s = step;
                        $body
                    })*
                }
            }
        }

        /// The `[loss]` table: every loss's parameters (each loss reads its own keys).
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct LossConfig {
            $($(
                #[serde(flatten)]
                pub $field: $Opts,
            )?)*
            /// Keys no loss takes (an error in [`LossConfig::check`]).
            #[serde(flatten, skip_serializing)]
            unknown: BTreeMap<String, toml::Value>,
        }

        impl LossConfig {
            /// Checks the values (and that every key is known).
            pub fn check(&self) -> Result<()> {
                if let Some(key) = self.unknown.keys().next() {
                    return Err(Error::shape(
                        "config",
                        format!(
                            "unknown key loss.{key} (known: {})",
                            LossFlags::keys()
                                .iter()
                                .map(|(_, k)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                $($( self.$field.check()?; )?)*
                Ok(())
            }
        }

        /// Overrides of the `[loss]` table, one flag per key.
        #[derive(clap::Args, Clone, Debug, Default, PartialEq)]
        pub struct LossFlags {
            $($(
                #[command(flatten)]
                pub $field: $Flags,
            )?)*
        }

        impl LossFlags {
            /// Whether any flag was given.
            pub fn any(&self) -> bool {
                false $($( || self.$field.any() )?)*
            }

            /// Writes the given flags into the table.
            pub fn apply(&self, c: &mut LossConfig) {
                $($( self.$field.apply(&mut c.$field); )?)*
            }

            /// `(flag, config key)` of every flag (the flag is `--` and the field's name
            /// in kebab case).
            pub fn keys() -> Vec<(&'static str, &'static str)> {
                let mut k = Vec::new();
                $($( k.extend_from_slice(<$Flags>::KEYS); )?)*
                k
            }
        }
    };
}

super::flags::show_value_enum!(Loss);

impl FromStr for Loss {
    type Err = Error;

    /// A loss by name; the error lists the names.
    fn from_str(s: &str) -> Result<Loss> {
        Loss::ALL
            .iter()
            .copied()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Loss::ALL.iter().map(|l| l.name()).collect();
                Error::shape(
                    "loss",
                    format!("unknown loss {s:?} (use one of: {})", names.join(", ")),
                )
            })
    }
}

loss_table! {
    /// Softmax cross-entropy (label_smoothing).
    Ce = "ce" [ce: CeOptions, CeFlags] => |p, s| ce(
        s.logits,
        s.labels,
        &CeOptions { ignore_index: s.ignore_index, ..p.ce.clone() },
    );
    /// Focal loss (gamma).
    Focal = "focal" [focal: FocalOptions, FocalFlags] => |p, s| focal(
        s.logits,
        s.labels,
        &FocalOptions { ignore_index: s.ignore_index, ..p.focal.clone() },
    );
    /// Class-balanced cross-entropy (cb_beta).
    Cb = "cb" [cb: CbOptions, CbFlags] => |p, s| class_balanced(
        s.logits,
        s.labels,
        s.counts,
        &CbOptions { focal: None, ignore_index: s.ignore_index, ..p.cb.clone() },
    );
    /// Class-balanced focal loss (cb_beta, gamma).
    CbFocal = "cb-focal" => |p, s| class_balanced(
        s.logits,
        s.labels,
        s.counts,
        &CbOptions { focal: Some(p.focal.gamma), ignore_index: s.ignore_index, ..p.cb.clone() },
    );
    /// Balanced softmax.
    Bms = "bms" => |_, s| balanced_softmax(
        s.logits,
        s.labels,
        s.counts,
        &BmsOptions { ignore_index: s.ignore_index },
    );
    /// Label-distribution-aware margin loss (ldam_s, ldam_max_margin).
    Ldam = "ldam" [ldam: LdamOptions, LdamFlags] => |p, s| ldam(
        s.logits,
        s.labels,
        s.counts,
        &LdamOptions { ignore_index: s.ignore_index, ..p.ldam.clone() },
    );
    /// Balanced logit variation (blv_sigma; seeded per step).
    Blv = "blv" [blv: BlvOptions, BlvFlags] => |p, s| blv(
        s.logits,
        s.labels,
        s.counts,
        &BlvOptions { seed: s.seed, noise: None, ignore_index: s.ignore_index, ..p.blv.clone() },
    );
    /// Pixel-wise adaptive training (pat_curve, pat_t, pat_eps, pat_detach).
    Pat = "pat" [pat: PatOptions, PatFlags] => |p, s| pat(
        s.logits,
        s.labels,
        &PatOptions { ignore_index: s.ignore_index, ..p.pat.clone() },
    );
    /// AUCSeg: cross-entropy + λ·pixel-level AUC (auc_*; the pairwise subsample is seeded
    /// per step).
    Aucseg = "aucseg" [auc: AucParams, AucFlags] => |p, s| aucseg(
        s.logits,
        s.labels,
        &p.auc.options(s.seed, s.ignore_index),
    );
}
