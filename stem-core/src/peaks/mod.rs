//! Atom-column finding: local maxima and sub-pixel refinement with an uncertainty per position.
//!
//! Positions are `[y, x]` in pixels, pixel `(i, j)` centred at coordinate `(i, j)`.
//!
//! * [`find_local_maxima`]: integer-pixel maxima of a `(2r + 1)²` neighbourhood (running-max
//!   filter, plateaus merged, minimum separation enforced), sorted by decreasing value.
//! * [`refine_centre_of_mass`]: iterated centre of mass in a circular mask, with the noise
//!   propagated through the COM formula.
//! * [`refine_gaussian`]: per-peak Levenberg–Marquardt fit of a round or elliptical rotated 2-D
//!   Gaussian on a constant background, covariance from `(JᵀWJ)⁻¹`, falling back to the centre
//!   of mass when the fit is unreliable.
//! * [`find_columns`]: maxima then the chosen [`Refinement`].
//!
//! The per-pixel noise that sets the uncertainties is a [`NoiseModel`]: Poisson counts, known
//! Gaussian noise, or estimated from a residual.
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::peaks::{find_columns, GaussianFitConfig, LocalMaximaConfig, Refinement};
//! use stem_core::ImageView;
//!
//! // Two Gaussian columns (σ = 2 px) at sub-pixel positions on a background of 10.
//! let truth = [[12.3, 10.6], [11.8, 29.25]];
//! let img = Array2::from_shape_fn((24, 40), |(i, j)| {
//!     10.0 + truth
//!         .iter()
//!         .map(|t| {
//!             let r2 = (i as f64 - t[0]).powi(2) + (j as f64 - t[1]).powi(2);
//!             100.0 * (-r2 / 8.0).exp()
//!         })
//!         .sum::<f64>() as f32
//! });
//! let found = find_columns(
//!     ImageView::from(&img),
//!     &LocalMaximaConfig::default(),
//!     Refinement::Gaussian(GaussianFitConfig::default()),
//! )
//! .unwrap();
//! assert_eq!(found.len(), 2);
//! for (peak, t) in found.iter().zip(truth.iter().rev()) {
//!     assert!(peak.converged);
//!     assert!((peak.position[0] - t[0]).abs() < 1e-3 && (peak.position[1] - t[1]).abs() < 1e-3);
//! }
//! ```

mod com;
mod gaussian;
mod linalg;
mod lm;
mod maxima;
mod noise_model;
mod window;

#[cfg(test)]
mod tests;

pub use com::{ComConfig, refine_centre_of_mass, refine_centre_of_mass_with_progress};
pub use gaussian::{GaussianFitConfig, refine_gaussian, refine_gaussian_with_progress};
pub use maxima::{LocalMaximaConfig, Peak, find_local_maxima};
pub use noise_model::NoiseModel;

use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::progress::{NoProgress, Progress};
use ndarray::ArrayView2;

/// How a refined position was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefineMethod {
    /// Not refined: the integer local-maximum pixel.
    LocalMaximum,
    /// Iterated centre of mass ([`refine_centre_of_mass`], or the fallback of
    /// [`refine_gaussian`]).
    CentreOfMass,
    /// 2-D Gaussian least-squares fit ([`refine_gaussian`]).
    Gaussian,
}

/// A sub-pixel peak position with its uncertainty and shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefinedPeak {
    /// Position `[y, x]` (px).
    pub position: [f64; 2],
    /// One-standard-deviation uncertainty of `position` `[σ_y, σ_x]` (px); infinite when the
    /// refinement failed.
    pub sigma_position: [f64; 2],
    /// Peak height above the background (image units).
    pub amplitude: f64,
    /// Gaussian σ (px) along the principal axes, major first; 0 when not estimated.
    pub width_px: [f64; 2],
    /// Angle (rad) of the major axis from +x towards +y, in `(−π/2, π/2]`; 0 when round or not
    /// estimated.
    pub rotation_rad: f64,
    /// Background level under the peak (image units); 0 when not estimated.
    pub background: f64,
    /// Whether the refinement succeeded (see each method for what failure means).
    pub converged: bool,
    /// The method that produced `position`.
    pub method: RefineMethod,
}

impl RefinedPeak {
    /// A failed refinement: the given position, infinite uncertainty, `converged = false`.
    pub(crate) fn failed(position: [f64; 2], method: RefineMethod) -> Self {
        RefinedPeak {
            position,
            sigma_position: [f64::INFINITY; 2],
            amplitude: 0.0,
            width_px: [0.0; 2],
            rotation_rad: 0.0,
            background: 0.0,
            converged: false,
            method,
        }
    }
}

/// The refinement step of [`find_columns`].
#[derive(Clone, Debug, PartialEq)]
pub enum Refinement {
    /// Keep the integer maxima; `sigma_position` is that of the pixel quantisation,
    /// `1/√12 ≈ 0.289` px, `amplitude` the pixel value.
    None,
    /// [`refine_centre_of_mass`] with these settings.
    CentreOfMass(ComConfig),
    /// [`refine_gaussian`] with these settings.
    Gaussian(GaussianFitConfig),
}

/// Finds atom columns: [`find_local_maxima`], then the chosen [`Refinement`] of each maximum.
/// Results are in the order of the maxima (decreasing intensity).
///
/// # Errors
/// Those of [`find_local_maxima`] and of the refinement.
pub fn find_columns(
    image: ImageView<'_, f32>,
    maxima: &LocalMaximaConfig,
    refine: Refinement,
) -> Result<Vec<RefinedPeak>> {
    find_columns_with_progress(image, maxima, refine, &NoProgress)
}

/// [`find_columns`] reporting the refinement's progress to `progress`; returns
/// [`Error::Cancelled`] when `progress` asks to stop.
pub fn find_columns_with_progress(
    image: ImageView<'_, f32>,
    maxima: &LocalMaximaConfig,
    refine: Refinement,
    progress: &dyn Progress,
) -> Result<Vec<RefinedPeak>> {
    let peaks = find_local_maxima(image, maxima)?;
    crate::progress::check_cancel(progress)?;
    let initial: Vec<[f64; 2]> = peaks
        .iter()
        .map(|p| [p.position[0] as f64, p.position[1] as f64])
        .collect();
    match refine {
        Refinement::None => Ok(peaks
            .iter()
            .zip(&initial)
            .map(|(p, &position)| RefinedPeak {
                position,
                sigma_position: [1.0 / 12f64.sqrt(); 2],
                amplitude: f64::from(p.value),
                converged: true,
                ..RefinedPeak::failed(position, RefineMethod::LocalMaximum)
            })
            .collect()),
        Refinement::CentreOfMass(c) => {
            refine_centre_of_mass_with_progress(image, &initial, &c, progress)
        }
        Refinement::Gaussian(c) => refine_gaussian_with_progress(image, &initial, &c, progress),
    }
}

/// Checks that the image is non-empty and finite; returns its `(min, max)`.
pub(crate) fn check_image(data: ArrayView2<'_, f32>) -> Result<(f32, f32)> {
    if data.is_empty() {
        return Err(Error::EmptyInput { what: "image" });
    }
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for (index, &v) in data.iter().enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFinite {
                what: "image",
                index,
            });
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Ok((lo, hi))
}

/// Checks that every initial position is finite (index `2k + axis` for peak `k`).
pub(crate) fn check_positions(initial: &[[f64; 2]]) -> Result<()> {
    match initial.as_flattened().iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: "initial positions",
            index,
        }),
        None => Ok(()),
    }
}

/// Checks a window radius: finite and > 0.
pub(crate) fn check_radius(radius_px: f64) -> Result<()> {
    if radius_px.is_finite() && radius_px > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            "radius_px",
            format!("must be finite and > 0, got {radius_px}"),
        ))
    }
}

/// Runs `refine` on every initial position in parallel under `parallelism`, with one scratch
/// pixel buffer per rayon task, reporting one progress unit per peak and stopping with
/// [`Error::Cancelled`] when `progress` asks to. Results are in input order.
pub(crate) fn for_each_peak(
    initial: &[[f64; 2]],
    parallelism: crate::parallel::Parallelism,
    progress: &dyn Progress,
    stage: &str,
    refine: impl Fn([f64; 2], &mut Vec<window::Pixel>) -> RefinedPeak + Sync,
) -> Result<Vec<RefinedPeak>> {
    use rayon::prelude::*;
    progress.start(stage, initial.len() as u64);
    parallelism.install(|| {
        initial
            .par_iter()
            .map_init(Vec::new, |buf, &p| {
                if progress.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let r = refine(p, buf);
                progress.advance(1);
                Ok(r)
            })
            .collect()
    })?
}
