//! The error type of `stem-core`.

use std::path::PathBuf;

/// Everything in `stem-core` that a caller's data, configuration or files can cause.
///
/// Variants carry the numbers involved so that a message can say what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two arrays (or an array and a declared shape) disagree.
    #[error("shape mismatch: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The shape that was required.
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
    /// An input that must not be empty is empty.
    #[error("empty input: {what}")]
    EmptyInput {
        /// What was empty.
        what: &'static str,
    },
    /// An input contains NaN or infinity where finite values are required.
    #[error("non-finite value in {what} at flat index {index}")]
    NonFinite {
        /// What contained the value.
        what: &'static str,
        /// Flat (row-major) index of the first offending element.
        index: usize,
    },
    /// An input contains a negative value where counts (≥ 0) are required.
    #[error("negative value {value} in {what} at flat index {index}; counts must be >= 0")]
    Negative {
        /// What contained the value.
        what: &'static str,
        /// Flat (row-major) index of the first offending element.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// An index or range lies outside the data.
    #[error("index out of range: {what} {index} not in 0..{len}")]
    OutOfRange {
        /// What was indexed.
        what: &'static str,
        /// The requested index (or end of the requested range).
        index: usize,
        /// The valid length.
        len: usize,
    },
    /// The operation was cancelled through a [`Progress`](crate::Progress) observer.
    /// Inputs are left untouched.
    #[error("cancelled")]
    Cancelled,
    /// An iterative method did not converge.
    #[error("{what} did not converge after {iterations} iterations")]
    NotConverged {
        /// The method.
        what: &'static str,
        /// Iterations performed.
        iterations: usize,
    },
    /// An operating-system I/O error, with the path when one is known.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file concerned (empty when not known).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not of the expected format, is truncated or is corrupted.
    #[error("invalid file {path:?}: {reason}")]
    InvalidFile {
        /// The file concerned (empty when not known).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file format feature that is valid but not supported.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// A thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
    /// No crystal lattice could be found in an image (see
    /// [`estimate_lattice`](crate::lattice::estimate_lattice)).
    #[error("no lattice found: {reason}")]
    LatticeNotFound {
        /// Why, with the numbers.
        reason: crate::lattice::LatticeFailure,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::InvalidFile`].
    pub fn invalid_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
