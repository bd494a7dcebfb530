//! Image-quality metrics: MSE, RMSE, PSNR and SSIM.
//!
//! Every metric compares a `reference` image with a `test` image of the same shape (`[y, x]`),
//! computes in `f64` whatever the element type, and returns an [`Error`] for mismatched shapes,
//! empty images, NaN/infinite pixels or invalid parameters.
//!
//! * [`mse`]: `MSE = mean((reference − test)²)`.
//! * [`rmse`]: `√MSE`, in the units of the pixel values.
//! * [`psnr`]: `10·log10(R² / MSE)` in dB, with the data range `R` given explicitly.
//!   [`data_range_of`] (`max − min` of the reference) is the usual choice for images that are not
//!   in a fixed range such as `[0, 1]`.
//! * [`ssim`] / [`ssim_map`]: the structural similarity index of Wang et al. (2004) with an
//!   11-tap Gaussian window, matched to scikit-image's
//!   `structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`;
//!   see [`SsimConfig`].
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::metrics::{data_range_of, psnr, rmse, ssim, SsimConfig};
//!
//! let reference = Array2::from_shape_fn((32, 32), |(y, x)| ((y * x) % 7) as f32);
//! let test = reference.mapv(|v| v + 0.5);
//! assert!((rmse(reference.view(), test.view())? - 0.5).abs() < 1e-12);
//! let range = data_range_of(reference.view()); // 6.0
//! let db = psnr(reference.view(), test.view(), range)?;
//! assert!((db - 10.0 * (36.0f64 / 0.25).log10()).abs() < 1e-9);
//! let s = ssim(reference.view(), reference.view(), &SsimConfig::new(range))?;
//! assert!((s - 1.0).abs() < 1e-12);
//! # Ok::<(), stem_core::Error>(())
//! ```

mod ssim;
#[cfg(test)]
mod tests;

pub use ssim::{SsimConfig, ssim, ssim_map};

use crate::error::{Error, Result};
use crate::real::{Real, first_non_finite};
use ndarray::ArrayView2;

/// Checks that two images have the same, non-empty shape and only finite values.
pub(crate) fn check_pair<T: Real>(
    reference: ArrayView2<'_, T>,
    test: ArrayView2<'_, T>,
) -> Result<()> {
    if reference.dim() != test.dim() {
        return Err(Error::ShapeMismatch {
            expected: reference.shape().to_vec(),
            found: test.shape().to_vec(),
        });
    }
    if reference.is_empty() {
        return Err(Error::EmptyInput {
            what: "reference image",
        });
    }
    if let Some(index) = first_non_finite(reference.iter().copied()) {
        return Err(Error::NonFinite {
            what: "reference image",
            index,
        });
    }
    if let Some(index) = first_non_finite(test.iter().copied()) {
        return Err(Error::NonFinite {
            what: "test image",
            index,
        });
    }
    Ok(())
}

/// Checks that a data range is finite and > 0.
pub(crate) fn check_data_range(data_range: f64) -> Result<()> {
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(Error::invalid(
            "data_range",
            format!("must be finite and > 0, got {data_range}"),
        ));
    }
    Ok(())
}

/// Mean squared error `MSE = (1/N) Σ (reference − test)²`, computed in `f64`
/// (squared units of the pixel values).
///
/// Errors: shapes differ ([`Error::ShapeMismatch`]), empty images ([`Error::EmptyInput`]),
/// NaN/infinite pixels ([`Error::NonFinite`], with the row-major index).
pub fn mse<T: Real>(reference: ArrayView2<'_, T>, test: ArrayView2<'_, T>) -> Result<f64> {
    check_pair(reference, test)?;
    // Row sums first, then their sum: a two-level summation that keeps the rounding error small.
    let total: f64 = reference
        .rows()
        .into_iter()
        .zip(test.rows())
        .map(|(r, t)| {
            r.iter()
                .zip(t.iter())
                .map(|(&a, &b)| {
                    let d = a.to_f64_lossless() - b.to_f64_lossless();
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    Ok(total / reference.len() as f64)
}

/// Root mean squared error `√MSE` (units of the pixel values). Errors as [`mse`].
pub fn rmse<T: Real>(reference: ArrayView2<'_, T>, test: ArrayView2<'_, T>) -> Result<f64> {
    mse(reference, test).map(f64::sqrt)
}

/// Peak signal-to-noise ratio in dB: `PSNR = 10·log10(data_range² / MSE)`, as scikit-image's
/// `peak_signal_noise_ratio(reference, test, data_range=data_range)`.
///
/// `data_range` (units of the pixel values) must be given explicitly, finite and > 0: for
/// images in `[0, 1]` it is 1, for 8-bit data 255, and for data without a fixed range
/// [`data_range_of`]`(reference)` (`max − min`) is the usual choice.
///
/// Identical images (`MSE = 0`) give `f64::INFINITY`.
///
/// Errors: as [`mse`], plus [`Error::InvalidParameter`] for a bad `data_range`.
pub fn psnr<T: Real>(
    reference: ArrayView2<'_, T>,
    test: ArrayView2<'_, T>,
    data_range: f64,
) -> Result<f64> {
    check_data_range(data_range)?;
    let m = mse(reference, test)?;
    if m == 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(10.0 * (data_range * data_range / m).log10())
}

/// The data range `max − min` of an image (units of the pixel values), the usual `data_range`
/// for [`psnr`] and [`SsimConfig`] when the data have no fixed range.
///
/// Returns `NaN` for an empty image or one containing NaN/infinity, and `0` for a constant one;
/// [`psnr`] and [`ssim`] reject both values with [`Error::InvalidParameter`].
pub fn data_range_of<T: Real>(reference: ArrayView2<'_, T>) -> f64 {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &v in reference.iter() {
        let v = v.to_f64_lossless();
        if !v.is_finite() {
            return f64::NAN;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if reference.is_empty() {
        return f64::NAN;
    }
    hi - lo
}
