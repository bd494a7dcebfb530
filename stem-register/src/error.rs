//! The error type of `stem-register`.

/// Everything in `stem-register` that a caller's data or configuration can cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from `stem-core` (FFT planning, I/O, peaks, cancellation inside core loops, ...).
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// Two arrays disagree in shape.
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
    /// An image is too small for the requested operation.
    #[error("image of shape {shape:?} is too small: {reason}")]
    TooSmall {
        /// The image shape `[ny, nx]`.
        shape: [usize; 2],
        /// Why it is too small.
        reason: String,
    },
    /// A series has fewer frames than required.
    #[error("series has {found} frames, at least {min} required")]
    TooFewFrames {
        /// Frames required.
        min: usize,
        /// Frames given.
        found: usize,
    },
    /// An input holds NaN or infinity.
    #[error("non-finite value in {what} at flat index {index}")]
    NonFinite {
        /// What contained it.
        what: &'static str,
        /// Flat row-major index of the first offending element.
        index: usize,
    },
    /// Too few atom columns were found for a lattice fit.
    #[error("lattice fit needs at least {min} columns, found {found}")]
    TooFewColumns {
        /// Columns required.
        min: usize,
        /// Columns found.
        found: usize,
    },
    /// The operation was cancelled through a `Progress` observer; inputs are untouched.
    #[error("cancelled")]
    Cancelled,
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

/// Converts a stem-core error, keeping a cancellation as [`Error::Cancelled`].
pub(crate) fn from_core(e: stem_core::Error) -> Error {
    match e {
        stem_core::Error::Cancelled => Error::Cancelled,
        other => Error::Core(other),
    }
}

/// Returns [`Error::Cancelled`] when `progress` asks to stop.
pub(crate) fn check_cancel(progress: &dyn stem_core::Progress) -> Result<()> {
    if progress.is_cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// Checks that every value is finite.
pub(crate) fn check_finite<'a>(
    what: &'static str,
    values: impl IntoIterator<Item = &'a f32>,
) -> Result<()> {
    match values.into_iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}
