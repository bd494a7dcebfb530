//! The error type of `stem-learn`.

/// Everything in `stem-learn` that a caller's data, configuration or files can cause.
///
/// Variants carry the numbers involved so that a message says what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two tensors (or a tensor and a declared shape) disagree.
    #[error("shape mismatch in {what}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// What was being checked.
        what: &'static str,
        /// The shape that was required (`0` where any size is allowed).
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A configuration value or argument is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter (field or argument name).
        name: &'static str,
        /// What is wrong with it, with the offending value.
        reason: String,
    },
    /// The observer asked the operation to stop.
    #[error("cancelled")]
    Cancelled,
    /// Training produced a non-finite loss (diverged), at this optimisation step.
    #[error("non-finite loss {loss} at step {step}")]
    NonFiniteLoss {
        /// The optimisation step (0-based).
        step: u64,
        /// The loss value.
        loss: f64,
    },
    /// A model bundle or checkpoint file is malformed (truncated, corrupted, wrong tensors).
    #[error("invalid bundle {path}: {reason}")]
    InvalidBundle {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong, with the numbers involved.
        reason: String,
    },
    /// A model is not in the store.
    #[error("model {name} version {version} not found in {root}")]
    ModelNotFound {
        /// Model name.
        name: String,
        /// Requested version.
        version: String,
        /// The store's root directory.
        root: String,
    },
    /// An error from the candle tensor library (should not happen for validated inputs).
    #[error("tensor library: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error from `stem-core` (peaks, points, images).
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// A file could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with the `stem-learn` [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
