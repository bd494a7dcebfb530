//! The error type of `stem-denoise`.

/// Everything a caller's image or configuration can cause in `stem-denoise`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from `stem-core`: lattice not found (with the reason), thread pool, and
    /// `Cancelled` when the progress observer stopped the run (inputs untouched).
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// A pixel is negative; input must be in counts (≥ 0).
    #[error("negative count {value} at [{y}, {x}]; input must be counts >= 0")]
    NegativeCount {
        /// Row of the first offending pixel.
        y: usize,
        /// Column of the first offending pixel.
        x: usize,
        /// Its value.
        value: f32,
    },
    /// A pixel is NaN or infinite.
    #[error("non-finite pixel {value} at [{y}, {x}]")]
    NonFinite {
        /// Row of the first offending pixel.
        y: usize,
        /// Column of the first offending pixel.
        x: usize,
        /// Its value.
        value: f32,
    },
    /// The image is smaller than one block (or filter window) in a dimension.
    #[error("image {shape:?} is smaller than a block of {block_px} px")]
    ImageTooSmall {
        /// Image shape `[ny, nx]` (px).
        shape: [usize; 2],
        /// Block (window) side length (px).
        block_px: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Field name.
        name: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
}

impl Error {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
