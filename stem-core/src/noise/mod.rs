//! Seeded detector noise (Poisson shot noise, Gaussian read noise) and the Anscombe
//! variance-stabilising transform with its inverses.
//!
//! * [`Dose`] turns a noiseless image into expected counts per pixel ([`expected_counts`]);
//!   [`poisson`] draws counts, [`add_poisson_noise`] does both and keeps the calibration.
//! * [`add_gaussian_noise`] adds zero-mean normal noise of a given σ.
//! * [`anscombe`] (Anscombe 1948) maps Poisson counts to values of roughly unit variance, so that
//!   Gaussian denoisers apply; [`ExactUnbiasedInverse`] maps denoised values back without the
//!   low-count bias of the algebraic inverse (Mäkitalo & Foi, IEEE TIP 20(1), 2011).
//!
//! Every draw is reproducible: pixel row `r` uses its own ChaCha8 stream
//! (`ChaCha8Rng::seed_from_u64(seed)` with `set_stream(r)`; Gaussian noise uses streams offset by
//! 2⁶³ so that Poisson and Gaussian noise drawn with the same seed are independent). Rows are
//! drawn in parallel on rayon's current pool and the result does not depend on the number of
//! threads.
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::noise::{add_poisson_noise, anscombe_array, Dose, ExactUnbiasedInverse};
//! use stem_core::Image;
//!
//! // A flat image at 4 counts per pixel on average.
//! let clean = Image::new(Array2::<f32>::from_elem((64, 64), 0.1)).with_sampling_a(0.2);
//! let noisy = add_poisson_noise(clean.view(), Dose::CountsPerPixel(4.0), 7)?;
//! assert_eq!(noisy.pixel_size(), [0.2, 0.2]);
//! assert!(noisy.data().iter().all(|&c| c >= 0.0 && c.fract() == 0.0));
//!
//! // Anscombe, average (a stand-in for a denoiser), exact unbiased inverse.
//! let a = anscombe_array(noisy.data().view())?;
//! let mean_d = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
//! let estimate = ExactUnbiasedInverse::new().invert(mean_d);
//! assert!((estimate - 4.0).abs() < 0.2);
//! # Ok::<(), stem_core::Error>(())
//! ```

mod anscombe;
mod exact_inverse;
#[cfg(test)]
mod tests;

pub use anscombe::{
    anscombe, anscombe_array, inverse_anscombe_algebraic, inverse_anscombe_asymptotic,
    inverse_anscombe_closed_form,
};
pub use exact_inverse::{ExactUnbiasedInverse, expected_anscombe};

use crate::error::{Error, Result};
use crate::image::{Image, ImageView};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, Zip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

/// Means above this many counts are drawn from the normal approximation
/// `round(λ + √λ·z)` instead of an exact Poisson sampler.
///
/// At `λ = 10¹⁵` the Poisson skewness is `λ^(−1/2) ≈ 3·10⁻⁸`, far below what any test can
/// detect, and counts beyond `2⁵³ ≈ 9·10¹⁵` are no longer exact integers in `f64` anyway
/// (nor, beyond `2²⁴`, in the `f32` output). rand_distr's sampler refuses `λ > 1.844·10¹⁹`.
pub const POISSON_NORMAL_APPROX_ABOVE: f64 = 1e15;

/// Stream offset of Gaussian noise (Poisson uses streams `0..ny`).
const GAUSSIAN_STREAM_OFFSET: u64 = 1 << 63;

/// The electron dose that sets the expected counts of a noiseless image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Dose {
    /// Mean counts per pixel over the image: expected counts = `image · c / mean(image)`.
    /// The image's shape (not its scale) matters; its mean must be > 0.
    CountsPerPixel(f64),
    /// Incident electrons per Å². The image holds the fraction of the incident beam detected
    /// per pixel (as a multislice ADF output, in `[0, 1]`), so expected counts =
    /// `image · d · dy · dx` with the pixel size `dy · dx` in Å² from the image calibration.
    /// An uncalibrated image (no axes, or units other than `"Å"`) is an error.
    ElectronsPerA2(f64),
}

/// Checks that `a` holds finite, non-negative values; reports the first offender in row-major
/// order.
fn check_counts(a: ArrayView2<'_, f32>, what: &'static str) -> Result<()> {
    for (index, &v) in a.iter().enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFinite { what, index });
        }
        if v < 0.0 {
            return Err(Error::Negative {
                what,
                index,
                value: f64::from(v),
            });
        }
    }
    Ok(())
}

fn check_dose(value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            "dose",
            format!("must be finite and > 0, got {value}"),
        ));
    }
    Ok(())
}

/// Expected counts per pixel of a noiseless image at the given dose (see [`Dose`] for the
/// formulas), axis order `[y, x]`.
///
/// Errors: empty image ([`Error::EmptyInput`]), NaN/∞ pixels ([`Error::NonFinite`]), negative
/// pixels ([`Error::Negative`]), a dose that is not finite and > 0, a zero image mean for
/// [`Dose::CountsPerPixel`], a missing or non-Å calibration (or a non-positive pixel size) for
/// [`Dose::ElectronsPerA2`] ([`Error::InvalidParameter`]).
pub fn expected_counts(image: ImageView<'_, f32>, dose: Dose) -> Result<Array2<f32>> {
    let data = image.data();
    if data.is_empty() {
        return Err(Error::EmptyInput { what: "image" });
    }
    check_counts(data, "image")?;
    let factor = match dose {
        Dose::CountsPerPixel(c) => {
            check_dose(c)?;
            let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / data.len() as f64;
            if mean <= 0.0 {
                return Err(Error::invalid(
                    "image",
                    format!("Dose::CountsPerPixel needs an image mean > 0, got {mean}"),
                ));
            }
            c / mean
        }
        Dose::ElectronsPerA2(d) => {
            check_dose(d)?;
            let axes = image.axes().ok_or_else(|| {
                Error::invalid(
                    "image",
                    "Dose::ElectronsPerA2 needs a calibrated image (axes in Å), got none",
                )
            })?;
            for a in axes {
                if a.units != "Å" || !(a.scale.is_finite() && a.scale > 0.0) {
                    return Err(Error::invalid(
                        "image",
                        format!(
                            "Dose::ElectronsPerA2 needs pixel sizes > 0 in Å, axis `{}` has \
                             scale {} {:?}",
                            a.name, a.scale, a.units
                        ),
                    ));
                }
            }
            d * axes[0].scale * axes[1].scale
        }
    };
    Ok(data.mapv(|v| (f64::from(v) * factor) as f32))
}

/// Runs `f(row_index, out_row, in_row)` over all rows in parallel.
fn par_rows(
    out: &mut Array2<f32>,
    input: ArrayView2<'_, f32>,
    f: impl Fn(usize, ArrayViewMut1<'_, f32>, ArrayView1<'_, f32>) + Sync + Send,
) {
    Zip::indexed(out.rows_mut())
        .and(input.rows())
        .par_for_each(f);
}

fn row_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// One Poisson draw with mean `lambda` (finite, ≥ 0 already checked).
fn draw_poisson(
    lambda: f64,
    cached: &mut Option<(f64, Poisson<f64>)>,
    rng: &mut ChaCha8Rng,
) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > POISSON_NORMAL_APPROX_ABOVE {
        let z: f64 = StandardNormal.sample(rng);
        return (lambda + lambda.sqrt() * z).round().max(0.0);
    }
    match cached {
        Some((l, d)) if *l == lambda => d.sample(rng),
        _ => match Poisson::new(lambda) {
            Ok(d) => {
                *cached = Some((lambda, d));
                d.sample(rng)
            }
            // Unreachable for 0 < λ <= 1e15; fall back to the normal approximation.
            Err(_) => {
                let z: f64 = StandardNormal.sample(rng);
                (lambda + lambda.sqrt() * z).round().max(0.0)
            }
        },
    }
}

/// Independent Poisson draws with per-pixel mean `mean` (counts), returned as `f32` counts.
///
/// A mean of 0 gives 0. Means above [`POISSON_NORMAL_APPROX_ABOVE`] use the normal
/// approximation. Row `r` draws from `ChaCha8Rng::seed_from_u64(seed)` on stream `r`, so equal
/// seeds give equal results on any number of threads (rows run in parallel on rayon's current
/// pool). Errors: [`Error::NonFinite`] / [`Error::Negative`] for the first bad mean.
pub fn poisson(mean: ArrayView2<'_, f32>, seed: u64) -> Result<Array2<f32>> {
    check_counts(mean, "poisson mean")?;
    let mut out = Array2::<f32>::zeros(mean.raw_dim());
    par_rows(&mut out, mean, |r, mut o, m| {
        let mut rng = row_rng(seed, r as u64);
        let mut cached = None;
        for (o, &m) in o.iter_mut().zip(m.iter()) {
            *o = draw_poisson(f64::from(m), &mut cached, &mut rng) as f32;
        }
    });
    Ok(out)
}

/// Poisson shot noise at the given dose: [`poisson`] of [`expected_counts`], keeping the
/// image's calibration. The result is in counts.
pub fn add_poisson_noise(image: ImageView<'_, f32>, dose: Dose, seed: u64) -> Result<Image<f32>> {
    let counts = poisson(expected_counts(image, dose)?.view(), seed)?;
    match image.axes() {
        Some(axes) => Image::with_axes(counts, axes.clone()),
        None => Ok(Image::new(counts)),
    }
}

/// Adds independent zero-mean normal noise of standard deviation `sigma` (in the image's
/// units) to every pixel.
///
/// Row `r` draws from `ChaCha8Rng::seed_from_u64(seed)` on stream `2⁶³ + r` (independent of
/// [`poisson`] with the same seed); the result does not depend on the thread count.
/// Errors: `sigma` not finite or negative ([`Error::InvalidParameter`]), NaN/∞ pixels
/// ([`Error::NonFinite`]).
pub fn add_gaussian_noise(
    image: ArrayView2<'_, f32>,
    sigma: f64,
    seed: u64,
) -> Result<Array2<f32>> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::invalid(
            "sigma",
            format!("must be finite and >= 0, got {sigma}"),
        ));
    }
    if let Some(index) = image.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "image",
            index,
        });
    }
    let mut out = Array2::<f32>::zeros(image.raw_dim());
    par_rows(&mut out, image, |r, mut o, i| {
        let mut rng = row_rng(seed, GAUSSIAN_STREAM_OFFSET + r as u64);
        for (o, &v) in o.iter_mut().zip(i.iter()) {
            let z: f64 = StandardNormal.sample(&mut rng);
            *o = (f64::from(v) + sigma * z) as f32;
        }
    });
    Ok(out)
}
