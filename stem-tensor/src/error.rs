//! The error type of `stem-tensor`.

/// Everything in `stem-tensor` that a caller's data or configuration can cause.
///
/// Variants carry the numbers involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from `stem-core` (shapes, I/O, cancellation, ...).
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// A mode index is not an axis of the tensor.
    #[error("mode {mode} out of range for a tensor of order {order}")]
    ModeOutOfRange {
        /// The requested mode.
        mode: usize,
        /// The tensor's number of axes.
        order: usize,
    },
    /// The number of ranks does not match the tensor order.
    #[error("{found} ranks given for a tensor of order {expected}")]
    RankCount {
        /// The tensor order.
        expected: usize,
        /// The number of ranks given.
        found: usize,
    },
    /// A Tucker rank is zero, exceeds its dimension, or exceeds the product of the other ranks.
    #[error(
        "invalid rank {rank} for mode {mode} (dimension {dim}, product of other ranks {others})"
    )]
    InvalidRank {
        /// The mode.
        mode: usize,
        /// The requested rank.
        rank: usize,
        /// The dimension of the mode.
        dim: usize,
        /// The product of the other modes' ranks (a Tucker rank cannot exceed it).
        others: usize,
    },
    /// Two arrays disagree in shape.
    #[error("shape mismatch: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
    /// The input contains NaN or infinity.
    #[error("non-finite value in {what} at flat index {index}")]
    NonFinite {
        /// What contained the value.
        what: &'static str,
        /// Flat (row-major) index of the first offending element.
        index: usize,
    },
    /// Poisson scaling needs counts ≥ 0.
    #[error("negative value {value} at flat index {index}; Poisson scaling needs counts >= 0")]
    Negative {
        /// Flat index of the first offending element.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A dense eigen- or singular-value decomposition failed (faer reported no convergence).
    #[error("{what} of a {rows}x{cols} matrix did not converge")]
    Decomposition {
        /// Which decomposition.
        what: &'static str,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// The MAD noise estimate is 0 (more than half of the entries equal the median), so no
    /// σ-based threshold can be formed; give the noise level explicitly.
    #[error(
        "MAD noise estimate is 0: over half of the {entries} entries equal the median {median}; set sigma"
    )]
    DegenerateNoise {
        /// The median of the entries.
        median: f64,
        /// Number of entries.
        entries: usize,
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
}
