//! The bank's settings: the `[tmb]` table of a run config and the `--tmb*` flags.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::losses::flags::flags;

/// The bank's settings (docs/longtail.md), the `[tmb]` table of a run config: the field
/// names are its keys. `Default` is the only copy of the defaults: off, no tail classes
/// (the trainer then takes the dataset's tail group), `SM = 5`, `Rs = 1`, `p_resize = 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BankConfig {
    /// Whether the trainer uses the bank (combinable with every loss).
    pub enabled: bool,
    /// `SM`: entries kept per class (≥ 1).
    pub size: usize,
    /// `Rs ∈ (0, 1]`: the share of the missing tail classes pasted into an image.
    pub rs: f32,
    /// `p_resize > 0`: the scale factor of a pasted entry.
    pub resize: f32,
    /// The tail class ids (the classes stored and pasted), in the order they are stored.
    /// Empty in a run config: the dataset config's tail group, else the statistics' one.
    pub tail: Vec<u8>,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            enabled: false,
            size: 5,
            rs: 1.0,
            resize: 1.0,
            tail: Vec::new(),
        }
    }
}

flags! {
    /// Overrides of the `[tmb]` table (the tail-class memory bank).
    #[command(next_help_heading = "Tail-class memory bank (overrides the config's [tmb] table)")]
    pub struct BankFlags for BankConfig {
        #[arg(num_args = 0, default_missing_value = "true")]
        tmb: bool => "enabled" at |c| c.enabled,
            "Enable the tail-class memory bank (combinable with every loss)";
        #[arg(value_name = "N")]
        tmb_size: usize => "size" at |c| c.size, "Entries per tail class (SM)";
        #[arg(value_name = "R")]
        tmb_rs: f32 => "rs" at |c| c.rs,
            "Fraction of an image's missing tail classes pasted into it (Rs)";
        #[arg(value_name = "F")]
        tmb_resize: f32 => "resize" at |c| c.resize, "Resize factor of pasted entries (p_resize)";
        #[arg(value_name = "IDS", value_delimiter = ',')]
        tmb_tail: Vec<u8> => "tail" at |c| c.tail, "Tail class ids, comma-separated",
            default = "the dataset's tail group";
    }
}

impl BankConfig {
    /// The defaults for the given tail classes.
    pub fn new(tail: Vec<u8>) -> BankConfig {
        BankConfig {
            tail,
            ..BankConfig::default()
        }
    }

    /// Checks the values that do not depend on the dataset: `size ≥ 1`, `0 < rs ≤ 1`,
    /// `resize > 0` (finite).
    pub fn check_values(&self) -> Result<()> {
        let err = |msg: String| Error::shape("memory bank", msg);
        if self.size == 0 {
            return Err(err(
                "tmb.size (SM, entries per class) must be at least 1".into()
            ));
        }
        if !(self.rs > 0.0 && self.rs <= 1.0) {
            return Err(err(format!(
                "tmb.rs (the share of missing tail classes pasted) must be in (0, 1], got {}",
                self.rs
            )));
        }
        if !(self.resize.is_finite() && self.resize > 0.0) {
            return Err(err(format!(
                "tmb.resize (p_resize, the scale of a pasted entry) must be a positive \
                 number, got {}",
                self.resize
            )));
        }
        Ok(())
    }

    /// Checks the settings against a dataset of `num_classes` classes: at least one tail
    /// class, every id `< num_classes`, no duplicates, and [`check_values`](Self::check_values).
    pub fn check(&self, num_classes: usize) -> Result<()> {
        let err = |msg: String| Error::shape("memory bank", msg);
        if self.tail.is_empty() {
            return Err(err("no tail classes: the bank needs at least one".into()));
        }
        if let Some(&c) = self.tail.iter().find(|&&c| c as usize >= num_classes) {
            return Err(err(format!(
                "tail class {c} does not exist: the dataset has {num_classes} classes \
                 (ids 0..{})",
                num_classes.saturating_sub(1)
            )));
        }
        for (i, c) in self.tail.iter().enumerate() {
            if self.tail[..i].contains(c) {
                return Err(err(format!(
                    "tail class {c} is listed twice in {:?}",
                    self.tail
                )));
            }
        }
        self.check_values()
    }
}
