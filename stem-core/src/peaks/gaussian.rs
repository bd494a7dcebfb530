//! Per-peak 2-D Gaussian fits (round or elliptical and rotated) with covariance-based
//! uncertainties and a centre-of-mass fallback.

use super::com::{ComConfig, PixelVariance, com_one, principal_axes};
use super::linalg::inverse_spd;
use super::lm::{Elliptical, LmSettings, PeakModel, Round, levenberg_marquardt};
use super::noise_model::NoiseModel;
use super::window::{Pixel, gather};
use super::{RefineMethod, RefinedPeak, check_image, check_positions, check_radius, for_each_peak};
use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::parallel::Parallelism;
use crate::progress::{NoProgress, Progress};
use ndarray::ArrayView2;
use std::f64::consts::{FRAC_PI_2, PI};
use std::sync::OnceLock;

/// Settings of [`refine_gaussian`].
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianFitConfig {
    /// Radius (px) of the circular fit window around the initial position (fixed during the
    /// fit); about half the column spacing. Finite and > 0. Default 5.
    pub radius_px: f64,
    /// Fit an elliptical rotated Gaussian (7 parameters: y0, x0, A, σ1, σ2, θ, B); `false` fits
    /// a round one (5 parameters: y0, x0, A, σ, B). Default `true`.
    pub elliptical: bool,
    /// Levenberg–Marquardt iteration limit; a fit that reaches it falls back. ≥ 1. Default 100.
    pub max_iterations: usize,
    /// Relative step tolerance: stop when `‖δ‖ ≤ tol (‖p‖ + tol)`. Default 1e-10.
    pub step_tolerance: f64,
    /// Gradient tolerance: stop when every Jacobian column is within this cosine of orthogonal
    /// to the weighted residual (MINPACK's `gtol`). Default 1e-10.
    pub gradient_tolerance: f64,
    /// Largest accepted ratio σ1/σ2 of an elliptical fit; beyond it the fit falls back. Must be
    /// ≥ 1. Default 4.
    pub max_width_ratio: f64,
    /// Noise model: weights of the fit and scale of the covariance. Default
    /// [`NoiseModel::EstimateFromResidual`].
    pub noise: NoiseModel,
    /// Threads (over peaks). Results do not depend on it. Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for GaussianFitConfig {
    fn default() -> Self {
        GaussianFitConfig {
            radius_px: 5.0,
            elliptical: true,
            max_iterations: 100,
            step_tolerance: 1e-10,
            gradient_tolerance: 1e-10,
            max_width_ratio: 4.0,
            noise: NoiseModel::EstimateFromResidual,
            parallelism: Parallelism::Auto,
        }
    }
}

impl GaussianFitConfig {
    fn validate(&self) -> Result<()> {
        check_radius(self.radius_px)?;
        if self.max_iterations == 0 {
            return Err(Error::invalid("max_iterations", "must be >= 1, got 0"));
        }
        for (name, v) in [
            ("step_tolerance", self.step_tolerance),
            ("gradient_tolerance", self.gradient_tolerance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        if !(self.max_width_ratio.is_finite() && self.max_width_ratio >= 1.0) {
            return Err(Error::invalid(
                "max_width_ratio",
                format!("must be >= 1, got {}", self.max_width_ratio),
            ));
        }
        Ok(())
    }

    /// The centre-of-mass settings of the fallback.
    fn fallback(&self) -> ComConfig {
        ComConfig {
            radius_px: self.radius_px,
            noise: self.noise,
            parallelism: self.parallelism,
            ..ComConfig::default()
        }
    }
}

/// Smallest accepted Gaussian σ (px): below it the "peak" is a single hot pixel.
const MIN_WIDTH_PX: f64 = 0.1;
/// Reweighting passes of the Poisson fit after the first (observed-count-weighted) one.
const MAX_REWEIGHTS: usize = 5;
/// Floor (counts) of the model mean in the Poisson weights `1 / μ`.
const MIN_POISSON_MEAN: f64 = 0.1;

/// Refines peak positions by least-squares fits of a 2-D Gaussian on a constant background.
///
/// For each initial position `[y, x]` (px) the pixels within `radius_px` (clipped to the image)
/// are fitted with `A exp(−½ dᵀ R diag(σ1⁻², σ2⁻²) Rᵀ d) + B`, `d = [x − x0, y − y0]` rotated by
/// `θ` (or the round model, see [`GaussianFitConfig::elliptical`]) by Levenberg–Marquardt with
/// an analytic Jacobian. Start: `B` = window minimum, `A` = maximum − `B`, the widths and angle
/// from the background-subtracted second moments, the centre at the window's centre of mass.
///
/// Uncertainty (`sigma_position`, 1 σ, px), from the covariance at the solution:
/// * [`NoiseModel::EstimateFromResidual`]: unweighted fit, `cov = s² (JᵀJ)⁻¹`,
///   `s² = RSS / (n − p)`;
/// * [`NoiseModel::Gaussian`]: unweighted fit, `cov = σ² (JᵀJ)⁻¹`;
/// * [`NoiseModel::Poisson`]: weighted fit, first with `wᵢ = 1 / max(countsᵢ, 1)` (observed
///   counts as variances), then re-weighted with the model, `wᵢ = 1 / max(μᵢ, 0.1)`, until the
///   parameters settle (at most 5 passes). The fixed point is the Poisson maximum-likelihood
///   estimate, and `cov = (JᵀWJ)⁻¹` is its Fisher-information covariance. Observed-count
///   weights alone over-weight low pixels and understate the scatter by 5–10 % at 100 counts and
///   ~25 % at 30 counts peak height.
///
/// `width_px` = `[σ_major, σ_minor]` (both `σ` for a round fit), `rotation_rad` = angle of the
/// major axis from +x towards +y in `(−π/2, π/2]` (0 for a round fit).
///
/// Safety net: when the window has no more pixels than parameters, the start is degenerate
/// (flat window), the fit hits `max_iterations`, gives non-finite values, `A ≤ 0`, a width
/// below 0.1 px, a width ratio above `max_width_ratio`, a centre farther than `radius_px` from
/// the initial position, or no usable covariance, the result is the centre-of-mass refinement
/// (same radius and noise model, 3 iterations, background subtracted) with `converged = false`
/// and `method = CentreOfMass`.
///
/// Peaks are fitted in parallel; results are in input order and do not depend on the thread
/// count.
///
/// # Errors
/// [`Error::EmptyInput`] / [`Error::NonFinite`] for the image or the initial positions (index
/// `2k + axis` for peak `k`), [`Error::InvalidParameter`] for the config,
/// [`Error::Negative`] for negative pixels under [`NoiseModel::Poisson`].
pub fn refine_gaussian(
    image: ImageView<'_, f32>,
    initial: &[[f64; 2]],
    config: &GaussianFitConfig,
) -> Result<Vec<RefinedPeak>> {
    refine_gaussian_with_progress(image, initial, config, &NoProgress)
}

/// [`refine_gaussian`] reporting one unit per peak to `progress`; returns [`Error::Cancelled`]
/// when `progress` asks to stop.
pub fn refine_gaussian_with_progress(
    image: ImageView<'_, f32>,
    initial: &[[f64; 2]],
    config: &GaussianFitConfig,
    progress: &dyn Progress,
) -> Result<Vec<RefinedPeak>> {
    config.validate()?;
    let data = image.data();
    check_image(data)?;
    check_positions(initial)?;
    config.noise.validate(data)?;
    let ctx = FitContext {
        data,
        config,
        com: config.fallback(),
        variance: OnceLock::new(),
    };
    for_each_peak(
        initial,
        config.parallelism,
        progress,
        "Gaussian refinement",
        |p, buf| ctx.fit(p, buf),
    )
}

/// Shared state of one call.
struct FitContext<'a> {
    data: ArrayView2<'a, f32>,
    config: &'a GaussianFitConfig,
    com: ComConfig,
    /// Per-pixel variance for the fallback, resolved on first use (the residual estimate costs a
    /// pass over the image).
    variance: OnceLock<PixelVariance>,
}

/// A successful fit in the common (elliptical) parametrisation, offsets from the window centre.
struct Fit {
    y0: f64,
    x0: f64,
    amplitude: f64,
    widths: [f64; 2],
    rotation: f64,
    background: f64,
    var_position: [f64; 2],
}

impl FitContext<'_> {
    fn fit(&self, initial: [f64; 2], buf: &mut Vec<Pixel>) -> RefinedPeak {
        gather(self.data, initial, self.config.radius_px, buf);
        let fit = if self.config.elliptical {
            self.fit_model::<7, _>(&Elliptical, buf.as_mut_slice())
        } else {
            self.fit_model::<5, _>(&Round, buf.as_mut_slice())
        };
        match fit {
            Some(f) => RefinedPeak {
                position: [initial[0] + f.y0, initial[1] + f.x0],
                sigma_position: [f.var_position[0].sqrt(), f.var_position[1].sqrt()],
                amplitude: f.amplitude,
                width_px: f.widths,
                rotation_rad: f.rotation,
                background: f.background,
                converged: true,
                method: RefineMethod::Gaussian,
            },
            None => {
                let var = *self.variance.get_or_init(|| {
                    PixelVariance::resolve(self.config.noise, self.data)
                        .unwrap_or(PixelVariance::Constant(f64::INFINITY))
                });
                let mut r = com_one(self.data, initial, &self.com, var, buf);
                r.converged = false;
                r
            }
        }
    }

    fn fit_model<const P: usize, M: PeakModel<P>>(
        &self,
        model: &M,
        px: &mut [Pixel],
    ) -> Option<Fit> {
        let cfg = self.config;
        if px.len() <= P {
            return None;
        }
        let g = initial_guess(px, cfg.radius_px)?;
        let p0: [f64; P] = if P == 7 {
            let v = [
                g.y0,
                g.x0,
                g.amplitude,
                g.widths[0],
                g.widths[1],
                g.rotation,
                g.background,
            ];
            std::array::from_fn(|i| v[i])
        } else {
            let s = (0.5 * (g.widths[0].powi(2) + g.widths[1].powi(2))).sqrt();
            let v = [g.y0, g.x0, g.amplitude, s, g.background];
            std::array::from_fn(|i| v[i])
        };
        let settings = LmSettings {
            max_iterations: cfg.max_iterations,
            xtol: cfg.step_tolerance,
            gtol: cfg.gradient_tolerance,
            ftol: 1e-12,
        };
        let poisson = cfg.noise == NoiseModel::Poisson;
        if poisson {
            for q in px.iter_mut() {
                q.w = 1.0 / q.v.max(1.0);
            }
        }
        let mut out = levenberg_marquardt(model, px, p0, &settings)?;
        if poisson {
            // Iteratively reweighted: wᵢ = 1 / μᵢ from the previous solution. Its fixed point
            // solves the Poisson likelihood equations Σ (vᵢ/μᵢ − 1) ∂μᵢ/∂p = 0.
            let mut grad = [0.0; P];
            for _ in 0..MAX_REWEIGHTS {
                if !out.converged || out.params.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                for q in px.iter_mut() {
                    let mu = model.eval(&out.params, q.dy, q.dx, &mut grad);
                    q.w = 1.0 / mu.max(MIN_POISSON_MEAN);
                }
                let prev = out.params;
                out = levenberg_marquardt(model, px, prev, &settings)?;
                let settled =
                    (0..P).all(|j| (out.params[j] - prev[j]).abs() <= 1e-7 * (prev[j].abs() + 1.0));
                if settled {
                    break;
                }
            }
        }
        if !out.converged || out.params.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let fit = to_common(&out.params)?;
        let [w1, w2] = fit.widths;
        if fit.amplitude <= 0.0
            || w2 < MIN_WIDTH_PX
            || w1 > cfg.max_width_ratio * w2
            || fit.y0.hypot(fit.x0) > cfg.radius_px
        {
            return None;
        }
        let scale = match cfg.noise {
            NoiseModel::Poisson => 1.0,
            NoiseModel::Gaussian { sigma } => sigma * sigma,
            NoiseModel::EstimateFromResidual => out.rss / (px.len() - P) as f64,
        };
        let cov = inverse_spd(&out.hessian)?;
        let var_position = [cov[0][0] * scale, cov[1][1] * scale];
        if !var_position.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return None;
        }
        Some(Fit {
            var_position,
            ..fit
        })
    }
}

/// Converts fitted parameters (5 or 7) to the common form: widths major first, angle in
/// `(−π/2, π/2]`.
fn to_common<const P: usize>(p: &[f64; P]) -> Option<Fit> {
    let (widths, rotation, background) = match P {
        5 => ([p[3].abs(); 2], 0.0, p[4]),
        7 => {
            let (mut s1, mut s2, mut th) = (p[3].abs(), p[4].abs(), p[5]);
            if s1 < s2 {
                std::mem::swap(&mut s1, &mut s2);
                th += FRAC_PI_2;
            }
            th -= PI * (th / PI).round();
            if th <= -FRAC_PI_2 {
                th += PI;
            }
            ([s1, s2], th, p[6])
        }
        _ => return None,
    };
    Some(Fit {
        y0: p[0],
        x0: p[1],
        amplitude: p[2],
        widths,
        rotation,
        background,
        var_position: [0.0; 2],
    })
}

/// Start values from the window: `B` = minimum, `A` = maximum − `B`, centre of mass and second
/// moments of `v − B` (widths clamped to `[0.5, radius]` px). `None` for a flat window.
fn initial_guess(px: &[Pixel], radius: f64) -> Option<Fit> {
    let b = px.iter().map(|p| p.v).fold(f64::INFINITY, f64::min);
    let top = px.iter().map(|p| p.v).fold(f64::NEG_INFINITY, f64::max);
    let a = top - b;
    if !(a > 0.0 && a.is_finite()) {
        return None;
    }
    let (mut sw, mut sy, mut sx) = (0.0, 0.0, 0.0);
    for p in px {
        let w = p.v - b;
        sw += w;
        sy += w * p.dy;
        sx += w * p.dx;
    }
    let (mut y0, mut x0) = (sy / sw, sx / sw);
    if !(y0.is_finite() && x0.is_finite() && y0.hypot(x0) <= 0.5 * radius) {
        (y0, x0) = (0.0, 0.0);
    }
    let (mut cyy, mut cxx, mut cxy) = (0.0, 0.0, 0.0);
    for p in px {
        let w = p.v - b;
        let (ey, ex) = (p.dy - y0, p.dx - x0);
        cyy += w * ey * ey;
        cxx += w * ex * ex;
        cxy += w * ey * ex;
    }
    let (w, rotation) = principal_axes(cyy / sw, cxx / sw, cxy / sw);
    let clamp = |s: f64| s.clamp(0.5, radius.max(0.5));
    Some(Fit {
        y0,
        x0,
        amplitude: a,
        widths: [clamp(w[0]), clamp(w[1])],
        rotation,
        background: b,
        var_position: [0.0; 2],
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Blob, identical_lattice, poisson_noise, render, scatter};
    use super::*;
    use crate::CancelFlag;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    fn cfg(radius_px: f64, elliptical: bool, noise: NoiseModel) -> GaussianFitConfig {
        GaussianFitConfig {
            radius_px,
            elliptical,
            noise,
            ..GaussianFitConfig::default()
        }
    }

    /// Angle difference modulo π.
    fn angle_err(a: f64, b: f64) -> f64 {
        let d = (a - b).rem_euclid(PI);
        d.min(PI - d)
    }

    /// 36 noise-free columns at random sub-pixel positions, 24 px apart (a neighbour's tail in a
    /// 7 px window is < 1e-9 of its height), σ 2–3 px, random angles.
    fn random_columns(seed: u64, elliptical: bool) -> (Array2<f32>, Vec<Blob>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut blobs = Vec::new();
        for a in 0..6 {
            for b in 0..6 {
                let s1 = rng.random_range(2.4..3.0);
                let s2 = if elliptical {
                    rng.random_range(1.8..2.2)
                } else {
                    s1
                };
                blobs.push(Blob {
                    y: 12.0 + 24.0 * a as f64 + rng.random_range(-0.5..0.5),
                    x: 12.0 + 24.0 * b as f64 + rng.random_range(-0.5..0.5),
                    amplitude: rng.random_range(50.0..200.0),
                    sigma: [s1, s2],
                    theta: rng.random_range(-FRAC_PI_2..FRAC_PI_2),
                });
            }
        }
        (render([144, 144], &blobs, 10.0), blobs)
    }

    #[test]
    fn noise_free_elliptical_columns_are_recovered() {
        let (img, blobs) = random_columns(21, true);
        let init: Vec<[f64; 2]> = blobs.iter().map(|b| [b.y.round(), b.x.round()]).collect();
        let found = refine_gaussian(
            ImageView::from(&img),
            &init,
            &cfg(7.0, true, NoiseModel::EstimateFromResidual),
        )
        .unwrap();
        let (mut max_pos, mut max_width, mut max_angle) = (0.0f64, 0.0f64, 0.0f64);
        for (f, b) in found.iter().zip(&blobs) {
            assert!(f.converged && f.method == RefineMethod::Gaussian, "{f:?}");
            max_pos = max_pos.max((f.position[0] - b.y).hypot(f.position[1] - b.x));
            for a in 0..2 {
                max_width = max_width.max((f.width_px[a] / b.sigma[a] - 1.0).abs());
            }
            max_angle = max_angle.max(angle_err(f.rotation_rad, b.theta));
            assert!((f.amplitude / b.amplitude - 1.0).abs() < 1e-4);
            assert!((f.background - 10.0).abs() < 1e-3);
        }
        println!(
            "noise-free elliptical: max position error {max_pos:.2e} px, width {max_width:.2e}, angle {max_angle:.2e} rad"
        );
        // The image is f32 (relative rounding 6e-8), so the fit is exact to ~1e-6 px.
        assert!(max_pos < 1e-3, "position error {max_pos}");
        assert!(max_width < 1e-3, "relative width error {max_width}");
        assert!(max_angle < 1e-3, "angle error {max_angle}");
    }

    #[test]
    fn noise_free_round_columns_are_recovered() {
        let (img, blobs) = random_columns(22, false);
        let init: Vec<[f64; 2]> = blobs.iter().map(|b| [b.y.round(), b.x.round()]).collect();
        let found = refine_gaussian(
            ImageView::from(&img),
            &init,
            &cfg(7.0, false, NoiseModel::Gaussian { sigma: 1.0 }),
        )
        .unwrap();
        for (f, b) in found.iter().zip(&blobs) {
            assert!(f.converged && f.method == RefineMethod::Gaussian);
            assert!((f.position[0] - b.y).hypot(f.position[1] - b.x) < 1e-3);
            assert!((f.width_px[0] / b.sigma[0] - 1.0).abs() < 1e-3);
            assert_eq!(f.width_px[0], f.width_px[1]);
            assert_eq!(f.rotation_rad, 0.0);
        }
    }

    /// The "uncertainties consistent with observed scatter" requirement: 256 identical
    /// elliptical columns (σ 2.8 × 2.0 px, 100 counts high on 5 counts) with Poisson noise,
    /// 512 position errors, so the RMS error has ~3 % standard error; ±15 % is ~5 of them.
    #[test]
    fn poisson_scatter_matches_reported_sigma() {
        let template = Blob {
            y: 0.0,
            x: 0.0,
            amplitude: 100.0,
            sigma: [2.8, 2.0],
            theta: 0.5,
        };
        let (mean, truth) = identical_lattice(16, 16.0, [0.3, -0.2], template, 5.0);
        let img = poisson_noise(&mean, 2);
        let init: Vec<[f64; 2]> = truth.iter().map(|t| [t[0].round(), t[1].round()]).collect();
        for elliptical in [true, false] {
            let found = refine_gaussian(
                ImageView::from(&img),
                &init,
                &cfg(6.0, elliptical, NoiseModel::Poisson),
            )
            .unwrap();
            assert!(found.iter().all(|p| p.converged));
            let s = scatter(&found, &truth);
            let ratio = s.rms_error / s.rms_sigma;
            println!(
                "Gaussian (elliptical {elliptical}) Poisson: RMS error {:.4} px, RMS sigma {:.4} px, ratio {ratio:.3}, bias {:?}",
                s.rms_error, s.rms_sigma, s.bias
            );
            assert!(
                (0.85..=1.15).contains(&ratio),
                "{} vs {}",
                s.rms_error,
                s.rms_sigma
            );
            if elliptical {
                let mean_w: Vec<f64> = (0..2)
                    .map(|a| found.iter().map(|p| p.width_px[a]).sum::<f64>() / 256.0)
                    .collect();
                assert!(
                    (mean_w[0] - 2.8).abs() < 0.05 && (mean_w[1] - 2.0).abs() < 0.05,
                    "{mean_w:?}"
                );
            }
        }
    }

    /// Additive Gaussian noise σ = 4: residual-estimated and known-σ covariances both match.
    #[test]
    fn gaussian_noise_scatter_matches_reported_sigma() {
        let (mean, truth) = identical_lattice(
            16,
            16.0,
            [-0.35, 0.15],
            Blob::round(0.0, 0.0, 100.0, 2.0),
            20.0,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let normal = Normal::new(0.0, 4.0).unwrap();
        let img = mean.mapv(|v| v + normal.sample(&mut rng) as f32);
        let init: Vec<[f64; 2]> = truth.iter().map(|t| [t[0].round(), t[1].round()]).collect();
        for noise in [
            NoiseModel::Gaussian { sigma: 4.0 },
            NoiseModel::EstimateFromResidual,
        ] {
            let found =
                refine_gaussian(ImageView::from(&img), &init, &cfg(5.0, true, noise)).unwrap();
            assert!(found.iter().all(|p| p.converged));
            let s = scatter(&found, &truth);
            let ratio = s.rms_error / s.rms_sigma;
            println!(
                "Gaussian {noise:?}: RMS error {:.4} px, RMS sigma {:.4} px, ratio {ratio:.3}",
                s.rms_error, s.rms_sigma
            );
            assert!(
                (0.85..=1.15).contains(&ratio),
                "{noise:?}: {} vs {}",
                s.rms_error,
                s.rms_sigma
            );
        }
    }

    #[test]
    fn unreliable_fits_fall_back_to_centre_of_mass() {
        let c = cfg(6.0, true, NoiseModel::Gaussian { sigma: 1.0 });
        // Flat window: no start, and the centre of mass fails too.
        let flat = Array2::<f32>::from_elem((30, 30), 4.0);
        let r = refine_gaussian(ImageView::from(&flat), &[[15.0, 15.0]], &c).unwrap()[0];
        assert!(!r.converged && r.method == RefineMethod::CentreOfMass);
        assert_eq!(r.position, [15.0, 15.0]);
        assert!(r.sigma_position[0].is_infinite());
        // A streak 8 px × 1 px: width ratio 8 > 4.
        let streak = Blob {
            y: 15.2,
            x: 14.9,
            amplitude: 100.0,
            sigma: [8.0, 1.0],
            theta: 0.3,
        };
        let img = render([30, 30], &[streak], 5.0);
        let view = ImageView::from(&img);
        let r = refine_gaussian(view, &[[15.0, 15.0]], &c).unwrap()[0];
        assert!(
            !r.converged && r.method == RefineMethod::CentreOfMass,
            "{r:?}"
        );
        assert!(r.sigma_position.iter().all(|s| s.is_finite()));
        // Allowing the ratio, the same streak fits.
        let loose = GaussianFitConfig {
            max_width_ratio: 10.0,
            ..c.clone()
        };
        let r = refine_gaussian(view, &[[15.0, 15.0]], &loose).unwrap()[0];
        assert!(r.converged && r.method == RefineMethod::Gaussian, "{r:?}");
        // Fewer pixels than parameters (radius 1: 5 pixels for 7 parameters).
        let r = refine_gaussian(view, &[[15.0, 15.0]], &cfg(1.0, true, NoiseModel::Poisson))
            .unwrap()[0];
        assert!(!r.converged && r.method == RefineMethod::CentreOfMass);
        // Far outside the image: empty window.
        let r = refine_gaussian(view, &[[-40.0, 200.0]], &c).unwrap()[0];
        assert!(!r.converged && r.position == [-40.0, 200.0]);
    }

    #[test]
    fn column_in_the_corner_fits_on_the_clipped_window() {
        let img = render([30, 30], &[Blob::round(0.7, 1.2, 100.0, 2.0)], 5.0);
        let r = refine_gaussian(
            ImageView::from(&img),
            &[[1.0, 1.0]],
            &cfg(5.0, true, NoiseModel::EstimateFromResidual),
        )
        .unwrap()[0];
        assert!(r.converged && r.method == RefineMethod::Gaussian, "{r:?}");
        assert!(
            (r.position[0] - 0.7).hypot(r.position[1] - 1.2) < 1e-3,
            "{r:?}"
        );
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let mut img = Array2::<f32>::ones((12, 12));
        let view = ImageView::from(&img);
        let p = [[6.0, 6.0]];
        let d = GaussianFitConfig::default();
        for bad in [
            cfg(0.0, true, NoiseModel::Poisson),
            cfg(-3.0, true, NoiseModel::Poisson),
            GaussianFitConfig {
                max_iterations: 0,
                ..d.clone()
            },
            GaussianFitConfig {
                max_width_ratio: 0.5,
                ..d.clone()
            },
            GaussianFitConfig {
                step_tolerance: -1.0,
                ..d.clone()
            },
            GaussianFitConfig {
                gradient_tolerance: f64::NAN,
                ..d.clone()
            },
            cfg(
                4.0,
                true,
                NoiseModel::Gaussian {
                    sigma: f64::INFINITY,
                },
            ),
        ] {
            assert!(
                matches!(
                    refine_gaussian(view, &p, &bad),
                    Err(Error::InvalidParameter { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            refine_gaussian(view, &[[f64::INFINITY, 1.0]], &d),
            Err(Error::NonFinite { index: 0, .. })
        ));
        img[[0, 5]] = -1.0;
        assert!(matches!(
            refine_gaussian(
                ImageView::from(&img),
                &p,
                &cfg(4.0, true, NoiseModel::Poisson)
            ),
            Err(Error::Negative { index: 5, .. })
        ));
        img[[0, 5]] = f32::NAN;
        assert!(matches!(
            refine_gaussian(ImageView::from(&img), &p, &d),
            Err(Error::NonFinite { index: 5, .. })
        ));
    }

    #[test]
    fn progress_cancel_and_thread_independence() {
        let (mean, truth) =
            identical_lattice(8, 12.0, [0.2, 0.1], Blob::round(0.0, 0.0, 80.0, 2.0), 3.0);
        let img = poisson_noise(&mean, 10);
        let view = ImageView::from(&img);
        let seq = GaussianFitConfig {
            parallelism: Parallelism::Sequential,
            ..cfg(5.0, true, NoiseModel::Poisson)
        };
        let flag = CancelFlag::default();
        let a = refine_gaussian_with_progress(view, &truth, &seq, &flag).unwrap();
        assert_eq!((flag.done(), flag.total()), (64, 64));
        let par = GaussianFitConfig {
            parallelism: Parallelism::Threads(2),
            ..seq.clone()
        };
        assert_eq!(a, refine_gaussian(view, &truth, &par).unwrap());
        let cancel = CancelFlag::cancel_after(10);
        assert!(matches!(
            refine_gaussian_with_progress(view, &truth, &seq, &cancel),
            Err(Error::Cancelled)
        ));
        assert!(cancel.done() < 64);
    }
}
