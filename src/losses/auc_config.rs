//! AUCSeg's keys of the `[loss]` table (`auc_*`) and their flags: the configurable part of
//! [`AucOptions`], whose `Default` supplies every default.

use serde::{Deserialize, Serialize};

use super::aucseg::{AucMethod, AucOptions, Surrogate};
use super::flags::{flags, show_value_enum};
use super::spec::rule;
use crate::error::{Error, Result};

/// [`Surrogate`] by its config name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SurrogateName {
    /// ½(m − d)² (closed form or pairwise).
    Square,
    /// max(0, m − d)² (pairwise only).
    SqHinge,
    /// ln(1 + e^(−d)) (pairwise only).
    Logistic,
}

impl From<SurrogateName> for Surrogate {
    fn from(s: SurrogateName) -> Surrogate {
        match s {
            SurrogateName::Square => Surrogate::Square,
            SurrogateName::SqHinge => Surrogate::SqHinge,
            SurrogateName::Logistic => Surrogate::Logistic,
        }
    }
}

impl From<Surrogate> for SurrogateName {
    fn from(s: Surrogate) -> SurrogateName {
        match s {
            Surrogate::Square => SurrogateName::Square,
            Surrogate::SqHinge => SurrogateName::SqHinge,
            Surrogate::Logistic => SurrogateName::Logistic,
        }
    }
}

/// [`AucMethod`] by its config name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AucMethodName {
    /// Per-class sums, O(P·C) (square surrogate only).
    Closed,
    /// The tiled pairwise kernel, after a seeded per-class subsample of auc_cap pixels.
    Pairwise,
}

impl From<AucMethodName> for AucMethod {
    fn from(m: AucMethodName) -> AucMethod {
        match m {
            AucMethodName::Closed => AucMethod::ClosedForm,
            AucMethodName::Pairwise => AucMethod::Pairwise,
        }
    }
}

impl From<AucMethod> for AucMethodName {
    fn from(m: AucMethod) -> AucMethodName {
        match m {
            AucMethod::ClosedForm => AucMethodName::Closed,
            AucMethod::Pairwise => AucMethodName::Pairwise,
        }
    }
}

show_value_enum!(SurrogateName, AucMethodName);

/// The `auc_*` keys: [`AucOptions`] less the per-call fields (seed, ignore label).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AucParams {
    /// `λ` in `L_ce + λ·L_auc`.
    #[serde(rename = "auc_lambda")]
    pub lambda: f64,
    /// The surrogate margin; `None`: the surrogate's default.
    #[serde(rename = "auc_margin")]
    pub margin: Option<f64>,
    #[serde(rename = "auc_surrogate")]
    pub surrogate: SurrogateName,
    #[serde(rename = "auc_method")]
    pub method: AucMethodName,
    /// Pixels per class the pairwise kernel keeps (uniform seeded subsample).
    #[serde(rename = "auc_cap")]
    pub cap: usize,
}

impl Default for AucParams {
    fn default() -> Self {
        let o = AucOptions::default();
        AucParams {
            lambda: o.lambda,
            margin: o.margin,
            surrogate: o.surrogate.into(),
            method: o.method.into(),
            cap: o.max_pixels_per_class,
        }
    }
}

impl AucParams {
    /// The options of [`super::aucseg`] for one step: the margin resolved (the surrogate's
    /// default when none is set), `seed` for the pairwise subsample.
    pub fn options(&self, seed: u64, ignore_index: u32) -> AucOptions {
        let surrogate = Surrogate::from(self.surrogate);
        AucOptions {
            lambda: self.lambda,
            margin: Some(self.margin.unwrap_or(surrogate.default_margin())),
            surrogate,
            method: self.method.into(),
            max_pixels_per_class: self.cap,
            seed,
            ignore_index,
        }
    }

    /// Checks the values: `λ ≥ 0`, margin `> 0`, `cap ≥ 2`, and a surrogate other than
    /// `square` only with the pairwise method.
    pub fn check(&self) -> Result<()> {
        if self.method == AucMethodName::Closed && self.surrogate != SurrogateName::Square {
            return Err(Error::shape(
                "config",
                format!(
                    "loss.auc_surrogate = {:?} does not decompose into per-class sums: it \
                     needs loss.auc_method = \"pairwise\"",
                    self.surrogate.to_string()
                ),
            ));
        }
        let l = self.lambda;
        rule(l >= 0.0 && l.is_finite(), "auc_lambda", l, "must be ≥ 0")?;
        if let Some(m) = self.margin {
            rule(m > 0.0 && m.is_finite(), "auc_margin", m, "must be > 0")?;
        }
        rule(self.cap >= 2, "auc_cap", self.cap, "must be ≥ 2")
    }
}

/// The margin's default as `--help` shows it: per surrogate (logistic takes no margin).
fn margin_default() -> String {
    [Surrogate::Square, Surrogate::SqHinge]
        .iter()
        .map(|&s| format!("{} for {}", s.default_margin(), SurrogateName::from(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

flags! {
    /// `--auc-*`.
    pub struct AucFlags for AucParams {
        auc_lambda: f64 => "auc_lambda" at |o| o.lambda, "AUCSeg's λ in L_ce + λ·L_auc";
        auc_margin: f64 => "auc_margin" at |o| o.margin, "AUC surrogate margin",
            default = margin_default();
        #[arg(value_name = "NAME")]
        auc_surrogate: SurrogateName => "auc_surrogate" at |o| o.surrogate,
            "AUC surrogate (sq-hinge and logistic need --auc-method pairwise)";
        #[arg(value_name = "METHOD")]
        auc_method: AucMethodName => "auc_method" at |o| o.method,
            "AUC computation: per-class sums or tiled pairs";
        #[arg(value_name = "N")]
        auc_cap: usize => "auc_cap" at |o| o.cap,
            "Pixels per class the pairwise AUC kernel keeps (seeded subsample)";
    }
}
