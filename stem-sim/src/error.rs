//! The error type of `stem-sim`.

use std::path::PathBuf;

/// Everything that can go wrong in `stem-sim`. Variants carry the offending values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from stem-core (shapes, FFT, I/O helpers, cancellation, ...).
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// A configuration value is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is invalid, with the offending value.
        reason: String,
    },
    /// An element symbol or atomic number that the parametrisations do not cover (Z = 1..=103).
    #[error("unknown element: {what}")]
    UnknownElement {
        /// The symbol or number as given.
        what: String,
    },
    /// The simulation cell is not orthogonal (multislice needs an orthogonal, periodic cell).
    #[error("non-orthogonal cell: {reason}")]
    NonOrthogonalCell {
        /// What is non-orthogonal, with the numbers.
        reason: String,
    },
    /// A structure without atoms where atoms are needed.
    #[error("empty structure: {what}")]
    EmptyStructure {
        /// Which structure or operation.
        what: String,
    },
    /// A detector or output angle beyond the antialias cutoff of the grid.
    #[error(
        "{what} reaches {requested_mrad:.2} mrad, beyond the antialias cutoff; the largest allowed angle on this grid is {max_mrad:.2} mrad (use a finer sampling)"
    )]
    BeyondCutoff {
        /// The detector or output.
        what: String,
        /// The requested outer angle in mrad.
        requested_mrad: f64,
        /// The largest allowed angle in mrad.
        max_mrad: f64,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is malformed (line numbers are 1-based).
    #[error("invalid file {path}: {reason}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A geometric map could not be inverted at a position (the distortion folds).
    #[error(
        "{what} cannot be inverted at [{:.3}, {:.3}] px (residual {residual_px:.3e} px); reduce the distortion",
        position_px[0],
        position_px[1]
    )]
    NotInvertible {
        /// The map.
        what: &'static str,
        /// The input position `[y, x]` (px).
        position_px: [f64; 2],
        /// `|source(target(q)) − q|` reached (px).
        residual_px: f64,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}

/// `Result` with the `stem-sim` [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
