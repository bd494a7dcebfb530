//! Scan distortions of a raster-scanned image as a displacement field.

use super::Param;
use super::warp::Warp;
use crate::error::{Error, Result};
use ndarray::Array2;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Scan distortions of a raster scan (fast axis x, slow axis y), applied as a displacement
/// field: output pixel `p = [r, c]` shows the input at `p + D(p)` with (all in px)
///
/// * `D_x = j_x(r) + A·sin(2πr/λ + φ) + shear·(r − r_c)/n_y + F·exp(−c/τ) + drift_x·t`
/// * `D_y = j_y(r) + stretch·(r − r_c)/n_y + drift_y·t`
///
/// where `j_x`, `j_y` are white row jitter (one N(0, σ²) value per row, optionally smoothed
/// along y with a Gaussian of `jitter_smoothing_rows` rows, linearly interpolated between
/// rows), `r_c = (n_y − 1)/2`, `φ` uniform in `[0, 2π)`, `F·exp(−c/τ)` the fly-back
/// transient at the start of each row, and `t = (r·n_x + c)/(n_y·n_x) − ½` the acquisition time
/// as a fraction of the frame time, centred so that drift does not move the frame centre.
/// The sinusoid, shear and stretch follow the registration reference series
/// (`shared/reference/peer-benchmarks.md` §1.6). All fields default to 0 (no distortion),
/// except `sine_period_rows` = 100 and `flyback_decay_px` = 5.
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::degrade::{Param, ScanDistortion, Warp};
///
/// let d = ScanDistortion { shear_x_px: Param::Fixed(4.0), ..ScanDistortion::default() };
/// let field = d.realise([100, 100], &mut ChaCha8Rng::seed_from_u64(0))?;
/// // Shear: x displacement 4·(r − 49.5)/100 px, zero in y.
/// assert!((field.displacement([99.0, 10.0])[1] - 1.98).abs() < 1e-12);
/// // Labels move by the exact inverse.
/// let p = field.target([30.0, 40.0])?;
/// assert!((field.source(p)[1] - 40.0).abs() < 1e-10);
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanDistortion {
    /// σ of the white x jitter per row (px).
    pub jitter_x_px: Param,
    /// σ of the white y jitter per row (line-spacing noise, px).
    pub jitter_y_px: Param,
    /// Gaussian smoothing σ (rows) of the white jitter; 0 = none.
    pub jitter_smoothing_rows: f64,
    /// Amplitude A of the sinusoidal x jitter (px).
    pub sine_amplitude_px: Param,
    /// Period λ of the sinusoidal x jitter (rows, ≥ 1).
    pub sine_period_rows: Param,
    /// x shear: difference of the x displacement between the last and first row (px).
    pub shear_x_px: Param,
    /// y stretch: difference of the y displacement between the last and first row (px).
    pub stretch_y_px: Param,
    /// y drift over the frame time (px).
    pub drift_y_px: Param,
    /// x drift over the frame time (px).
    pub drift_x_px: Param,
    /// Fly-back amplitude F (px) at the first pixel of each row.
    pub flyback_amplitude_px: Param,
    /// Fly-back decay length τ (px, > 0).
    pub flyback_decay_px: Param,
}

impl Default for ScanDistortion {
    fn default() -> Self {
        ScanDistortion {
            jitter_x_px: Param::Fixed(0.0),
            jitter_y_px: Param::Fixed(0.0),
            jitter_smoothing_rows: 0.0,
            sine_amplitude_px: Param::Fixed(0.0),
            sine_period_rows: Param::Fixed(100.0),
            shear_x_px: Param::Fixed(0.0),
            stretch_y_px: Param::Fixed(0.0),
            drift_y_px: Param::Fixed(0.0),
            drift_x_px: Param::Fixed(0.0),
            flyback_amplitude_px: Param::Fixed(0.0),
            flyback_decay_px: Param::Fixed(5.0),
        }
    }
}

const BIG: f64 = 1e6;

impl ScanDistortion {
    /// Checks the ranges: σs ≥ 0, period ≥ 1 row, decay > 0, smoothing finite ≥ 0, everything
    /// finite and within ±10⁶ px.
    pub fn validate(&self) -> Result<()> {
        self.jitter_x_px.validate("scan.jitter_x_px", 0.0, BIG)?;
        self.jitter_y_px.validate("scan.jitter_y_px", 0.0, BIG)?;
        if !(self.jitter_smoothing_rows.is_finite() && self.jitter_smoothing_rows >= 0.0) {
            return Err(Error::invalid(
                "scan.jitter_smoothing_rows",
                format!(
                    "must be finite and >= 0, got {}",
                    self.jitter_smoothing_rows
                ),
            ));
        }
        self.sine_amplitude_px
            .validate("scan.sine_amplitude_px", -BIG, BIG)?;
        self.sine_period_rows
            .validate("scan.sine_period_rows", 1.0, BIG)?;
        self.shear_x_px.validate("scan.shear_x_px", -BIG, BIG)?;
        self.stretch_y_px.validate("scan.stretch_y_px", -BIG, BIG)?;
        self.drift_y_px.validate("scan.drift_y_px", -BIG, BIG)?;
        self.drift_x_px.validate("scan.drift_x_px", -BIG, BIG)?;
        self.flyback_amplitude_px
            .validate("scan.flyback_amplitude_px", -BIG, BIG)?;
        self.flyback_decay_px
            .validate("scan.flyback_decay_px", 1e-3, BIG)
    }

    /// Draws one realisation for an image of `shape` `[ny, nx]`. Draw order: the two jitter
    /// σs, `ny` x-jitter values, `ny` y-jitter values, then the remaining parameters in field
    /// order and the phase φ.
    pub fn realise(&self, shape: [usize; 2], rng: &mut impl Rng) -> Result<ScanField> {
        self.validate()?;
        let [ny, nx] = shape;
        if ny == 0 || nx == 0 {
            return Err(stem_core::Error::EmptyInput { what: "image" }.into());
        }
        let sx = self.jitter_x_px.sample(rng);
        let sy = self.jitter_y_px.sample(rng);
        let jx = white(ny, sx, rng);
        let jy = white(ny, sy, rng);
        let smooth = |v: Vec<f64>| -> Result<Vec<f64>> {
            if self.jitter_smoothing_rows == 0.0 {
                return Ok(v);
            }
            let a = Array2::from_shape_vec((v.len(), 1), v)
                .map_err(|e| Error::invalid("scan", e.to_string()))?;
            let b = stem_core::filters::gaussian_blur(a.view(), self.jitter_smoothing_rows, 4.0)?;
            Ok(b.iter().copied().collect())
        };
        Ok(ScanField {
            shape,
            jitter_sigma_px: [sy, sx],
            jx: smooth(jx)?,
            jy: smooth(jy)?,
            sine_amplitude_px: self.sine_amplitude_px.sample(rng),
            sine_period_rows: self.sine_period_rows.sample(rng),
            shear_x_px: self.shear_x_px.sample(rng),
            stretch_y_px: self.stretch_y_px.sample(rng),
            drift_px: [self.drift_y_px.sample(rng), self.drift_x_px.sample(rng)],
            flyback_amplitude_px: self.flyback_amplitude_px.sample(rng),
            flyback_decay_px: self.flyback_decay_px.sample(rng),
            sine_phase_rad: 2.0 * PI * rng.random::<f64>(),
        })
    }
}

/// `n` independent N(0, σ²) values.
fn white(n: usize, sigma: f64, rng: &mut impl Rng) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            sigma * z
        })
        .collect()
}

/// One drawn realisation of a [`ScanDistortion`] on a `[ny, nx]` frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanField {
    shape: [usize; 2],
    jitter_sigma_px: [f64; 2],
    jx: Vec<f64>,
    jy: Vec<f64>,
    sine_amplitude_px: f64,
    sine_period_rows: f64,
    sine_phase_rad: f64,
    shear_x_px: f64,
    stretch_y_px: f64,
    drift_px: [f64; 2],
    flyback_amplitude_px: f64,
    flyback_decay_px: f64,
}

fn interp_rows(v: &[f64], r: f64) -> f64 {
    let n = v.len();
    let r = r.clamp(0.0, n as f64 - 1.0);
    let i = (r.floor() as usize).min(n - 1);
    let j = (i + 1).min(n - 1);
    let t = r - i as f64;
    v[i] * (1.0 - t) + v[j] * t
}

impl ScanField {
    /// The displacement `D(p) = [D_y, D_x]` (px) at a real position `p = [r, c]`.
    pub fn displacement(&self, p: [f64; 2]) -> [f64; 2] {
        let [ny, nx] = self.shape.map(|n| n as f64);
        let [r, c] = p;
        let t = (r * nx + c) / (ny * nx) - 0.5;
        let rc = (ny - 1.0) / 2.0;
        let dx = interp_rows(&self.jx, r)
            + self.sine_amplitude_px
                * (2.0 * PI * r / self.sine_period_rows + self.sine_phase_rad).sin()
            + self.shear_x_px * (r - rc) / ny
            + self.flyback_amplitude_px * (-c.max(0.0) / self.flyback_decay_px).exp()
            + self.drift_px[1] * t;
        let dy =
            interp_rows(&self.jy, r) + self.stretch_y_px * (r - rc) / ny + self.drift_px[0] * t;
        [dy, dx]
    }

    /// The field sampled on the frame's pixel grid.
    pub fn to_field(&self) -> super::DisplacementField {
        let mut f = super::DisplacementField::zeros(self.shape);
        for ((r, c), v) in f.dy_px.indexed_iter_mut() {
            *v = self.displacement([r as f64, c as f64])[0];
        }
        for ((r, c), v) in f.dx_px.indexed_iter_mut() {
            *v = self.displacement([r as f64, c as f64])[1];
        }
        f
    }

    /// The drawn parameters by name (for metadata).
    pub fn drawn(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("jitter_y_px", self.jitter_sigma_px[0]),
            ("jitter_x_px", self.jitter_sigma_px[1]),
            ("sine_amplitude_px", self.sine_amplitude_px),
            ("sine_period_rows", self.sine_period_rows),
            ("sine_phase_rad", self.sine_phase_rad),
            ("shear_x_px", self.shear_x_px),
            ("stretch_y_px", self.stretch_y_px),
            ("drift_y_px", self.drift_px[0]),
            ("drift_x_px", self.drift_px[1]),
            ("flyback_amplitude_px", self.flyback_amplitude_px),
            ("flyback_decay_px", self.flyback_decay_px),
        ]
    }
}

/// Largest fixed-point iterations for [`ScanField::target`].
const MAX_ITER: usize = 500;

impl Warp for ScanField {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        let d = self.displacement(p);
        [p[0] + d[0], p[1] + d[1]]
    }

    /// Solves `p + D(p) = q` by the fixed-point iteration `p ← q − D(p)` (it contracts when the
    /// distortion folds nothing, i.e. its derivatives stay well below 1), to 10⁻¹⁰ px.
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        let mut p = q;
        for _ in 0..MAX_ITER {
            let d = self.displacement(p);
            let next = [q[0] - d[0], q[1] - d[1]];
            let step = (next[0] - p[0]).abs().max((next[1] - p[1]).abs());
            p = next;
            if step < 1e-12 {
                break;
            }
        }
        let s = self.source(p);
        let residual = (s[0] - q[0]).abs().max((s[1] - q[1]).abs());
        if residual.is_nan() || residual > 1e-10 {
            return Err(Error::NotInvertible {
                what: "scan distortion",
                position_px: q,
                residual_px: residual,
            });
        }
        Ok(p)
    }
}
