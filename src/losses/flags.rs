//! Command-line overrides of a config table, generated from one list by `flags!`: per
//! flag its field (the flag is `--field-name`), its type, the config key it sets, the place
//! it writes in the table's struct, and its help. The help's `[default: …]` is rendered
//! from the table's `Default` at run time, so no default is written twice. Used by the
//! loss options (`src/losses/*.rs`, gathered by [`super::spec`]) and by the memory bank
//! ([`crate::data::BankConfig`]).
//!
//! ```text
//! flags! {
//!     /// doc of the generated struct
//!     pub struct FocalFlags for FocalOptions {
//!         gamma: f64 => "gamma" at |o| o.gamma, "Focal exponent γ (focal, cb-focal)";
//!     }
//! }
//! ```
//!
//! generates `pub struct FocalFlags` (a `clap::Args`, every field `Option<T>`: a flag not
//! given leaves the config alone) with `KEYS` (flag, config key), `any()` and `apply(&mut
//! FocalOptions)`. An entry may end with `, default = EXPR` (the help's default text when
//! the value itself does not say it) and be preceded by `#[arg(...)]` attributes (value
//! names, delimiters; a switch such as `--tmb` is `bool` with
//! `#[arg(num_args = 0, default_missing_value = "true")]`).

/// `help [default: text]`, or `help` alone when there is no default to show.
pub fn help_with_default(help: &str, default: Option<String>) -> String {
    match default {
        Some(d) => format!("{help} [default: {d}]"),
        None => help.to_string(),
    }
}

/// How a default value reads in `--help` (`None`: not shown, as for an off switch).
pub trait ShowDefault {
    fn show_default(&self) -> Option<String>;
}

macro_rules! show_by_display {
    ($($t:ty),*) => {$(
        impl ShowDefault for $t {
            fn show_default(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
show_by_display!(f64, f32, usize, u64, u32);

impl ShowDefault for bool {
    fn show_default(&self) -> Option<String> {
        self.then(|| "on".to_string())
    }
}

/// The name of a `clap::ValueEnum` value (what the flag and the config key accept).
pub fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Implements [`ShowDefault`] and `Display` for `clap::ValueEnum` types by their names.
macro_rules! show_value_enum {
    ($($t:ty),*) => {$(
        impl $crate::losses::flags::ShowDefault for $t {
            fn show_default(&self) -> Option<String> {
                Some($crate::losses::flags::value_name(self))
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::losses::flags::value_name(self))
            }
        }
    )*};
}
pub(crate) use show_value_enum;

macro_rules! flags {
    (
        $(#[$smeta:meta])*
        pub struct $Flags:ident for $Target:ty {
            $(
                $(#[$ameta:meta])*
                $field:ident : $ty:ty => $key:literal at |$p:ident| $place:expr, $help:literal
                $(, default = $dtext:expr)?;
            )*
        }
    ) => {
        #[derive(clap::Args, Clone, Debug, Default, PartialEq)]
        $(#[$smeta])*
        pub struct $Flags {
            $(
                $(#[$ameta])*
                #[arg(
                    long,
                    help = $crate::losses::flags::help_with_default(
                        $help,
                        $crate::losses::flags::flags!(@default $Target, $p, $place $(, $dtext)?),
                    )
                )]
                pub $field: Option<$ty>,
            )*
        }

        impl $Flags {
            /// `(flag, config key)` of every flag, in order.
            pub const KEYS: &'static [(&'static str, &'static str)] = &[
                $((stringify!($field), $key)),*
            ];

            /// Whether any flag was given.
            pub fn any(&self) -> bool {
                false $(|| self.$field.is_some())*
            }

            /// Writes the given flags into `target`.
            #[allow(clippy::clone_on_copy, clippy::useless_conversion)]
            pub fn apply(&self, target: &mut $Target) {
                $(
                    if let Some(v) = &self.$field {
                        let $p = &mut *target;
                        $place = v.clone().into();
                    }
                )*
            }
        }
    };
    (@default $Target:ty, $p:ident, $place:expr) => {{
        let d = <$Target as Default>::default();
        let $p = &d;
        $crate::losses::flags::ShowDefault::show_default(&$place)
    }};
    (@default $Target:ty, $p:ident, $place:expr, $dtext:expr) => {
        Some(String::from($dtext))
    };
}
pub(crate) use flags;
