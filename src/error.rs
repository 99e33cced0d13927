//! The one error type of the library. Every variant names the operation (or file) it came
//! from, so that a user reading the message knows what to fix.

use std::path::PathBuf;

/// Errors returned by every fallible function of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes (or dtypes, or arguments) that an operation cannot accept.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    /// A request beyond what the device grants (buffer size, workgroup count, …).
    #[error("{what}: requested {requested}, but the device allows at most {max}")]
    Limit {
        what: String,
        requested: u64,
        max: u64,
    },
    /// A kernel needs a feature the device does not have (subgroups, …).
    #[error("{kernel}: needs {feature}, which this device does not have")]
    Unsupported {
        kernel: String,
        feature: &'static str,
    },
    /// Tensors on different devices were combined.
    #[error("{op}: tensors live on different devices ({a} and {b})")]
    Device {
        op: &'static str,
        a: String,
        b: String,
    },
    /// No adapter matched, or the device could not be created.
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    /// A wgpu validation or out-of-memory error, surfaced at the next flush.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// `backward` met a tape node one of whose saved inputs was updated in place (by an
    /// optimiser step) after the node was recorded: its gradient would be computed from
    /// values that are no longer the ones the forward pass used.
    #[error(
        "{op}: input {input} (shape {shape}) was modified by an in-place update after the \
         forward pass saved it (version {saved} then, {now} now); run the forward pass \
         again after the optimiser step"
    )]
    Modified {
        op: &'static str,
        input: usize,
        shape: String,
        saved: u64,
        now: u64,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data-parallel run failed across its replicas: a replica stopped (its rank and
    /// reason), timed out, or the replicas disagree (e.g. weights that differ after a step).
    #[error("data parallel: {0}")]
    Collective(String),
    /// A file was read but its content is wrong (bad header, wrong size, bad label, …).
    #[error("{}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },
}

/// Result alias used throughout the library (the error defaults to [`Error`]; a second
/// parameter still works, so the alias can be imported over `std`'s `Result`).
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
}
