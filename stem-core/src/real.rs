//! The [`Real`] element trait: `f32` or `f64`.

use num_traits::{Float, FromPrimitive, ToPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A real floating-point element type: implemented for `f32` (the default for pixel data) and
/// `f64` (physical parameters, high-precision paths).
///
/// Combines [`num_traits::Float`] with what FFTs ([`rustfft::FftNum`]), rayon and ndarray need.
pub trait Real:
    Float
    + FromPrimitive
    + ToPrimitive
    + rustfft::FftNum
    + ndarray::ScalarOperand
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64_lossy(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64_lossless(self) -> f64;
}

impl Real for f32 {
    #[inline]
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    #[inline]
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64_lossless(self) -> f64 {
        self
    }
}

/// Returns the flat index of the first non-finite element, if any.
pub fn first_non_finite<T: Real>(data: impl IntoIterator<Item = T>) -> Option<usize> {
    data.into_iter().position(|v| !v.is_finite())
}
