//! Lattice estimation from images of crystals: two basis vectors `[dy, dx]` in px from the
//! autocorrelation.
//!
//! The method follows the recommendation of the reference notes (Mevenkamp et al.'s ELMA uses
//! FFT peaks and sine fits, which are fragile for two-species bases; the autocorrelation is
//! robust):
//!
//! 1. `A(t) = Σ_x g(x)·g(x + t) / Σ_x w(x)·w(x + t)` with `g = w·(I − mean)`: the *linear*
//!    (zero-padded, FFT-based) autocovariance of the image tapered by a separable Hann window
//!    `w`, normalised by the window's own autocorrelation so that every true lattice translate
//!    has the same expected height (the taper removes the bias that columns entering and
//!    leaving a hard-edged overlap region would cause). White (Poisson) noise only adds to `A(0)`, which is replaced by the mean
//!    of its 4 neighbours, an estimate of the signal variance `s²`.
//! 2. Local maxima of `A` (5×5 neighbourhood) with `min_period_px ≤ |t| ≤ max_period_fraction ·
//!    min(ny, nx)` are candidates; those at least `peak_threshold · max` high are kept. A
//!    two-species basis gives the "heavy onto light" translate a lower peak (≈ 0.6 of a true
//!    translate for a 1 : 0.45 basis), which the threshold (default 0.8) rejects.
//! 3. `t₁` = the shortest kept vector, `t₂` = the shortest one with `|cos∠(t₁, t₂)| < 0.9`;
//!    Lagrange–Gauss reduction makes the basis reduced (`|a₁| ≤ |a₂|`,
//!    `|a₁·a₂| ≤ |a₁|²/2`).
//! 4. Refinement: every translate `n₁a₁ + n₂a₂` inside the search radius is located in `A`
//!    (integer maximum within ±2 px of the prediction, then 3-point parabola fits along y and
//!    along x), and `(a₁, a₂)` are the least-squares solution of `t_k = n₁ₖ a₁ + n₂ₖ a₂` over
//!    all of them (twice). Far translates pin the vectors down to a small fraction of a pixel:
//!    the error of one peak is divided by its order `|n|`.
//!
//! Real-space vectors come out directly (no reciprocal-direction shortcut), so oblique lattices
//! are handled; [`Lattice::reciprocal`] gives `g₁, g₂` with `aᵢ·gⱼ = δᵢⱼ` (cycles/px).
//!
//! ```
//! use stem_core::lattice::{estimate_lattice, LatticeConfig};
//! use stem_core::synth::{LatticeImageConfig, UnitCell2D};
//!
//! // Square lattice, a = 3 Å at 0.15 Å/px = 20 px.
//! let cfg = LatticeImageConfig { shape: [128, 128], ..LatticeImageConfig::new(UnitCell2D::square(3.0, 40)) };
//! let img = cfg.render().unwrap();
//! let lat = estimate_lattice(img.image.view(), &LatticeConfig::default()).unwrap();
//! assert!((lat.lengths_px()[0] - 20.0).abs() < 0.05);
//! assert!((lat.angle_deg() - 90.0).abs() < 0.1);
//! ```

use crate::error::{Error, Result};
use crate::fft::Fft2;
use crate::image::ImageView;
use ndarray::Array2;
use num_complex::Complex;
use std::fmt;

/// Settings of [`estimate_lattice`].
#[derive(Clone, Debug, PartialEq)]
pub struct LatticeConfig {
    /// Shortest lattice vector length considered (px). Default 4.
    pub min_period_px: f64,
    /// Longest lattice vector considered, as a fraction of `min(ny, nx)`; at least
    /// `1/max_period_fraction` periods must fit into the image. In `(0, 0.5]`. Default 0.25.
    pub max_period_fraction: f64,
    /// Relative height (of the highest candidate) an autocorrelation peak needs to count as a
    /// lattice translate, in `(0, 1]`. Default 0.8 (rejects "heavy onto light" translates).
    pub peak_threshold: f64,
    /// Minimum ratio of the signal variance `s²` (the autocovariance next to the origin) to
    /// the statistical fluctuation of the autocovariance of white noise, `Var(f)/√N`; below
    /// it the image counts as noise only. Default 10.
    pub min_signal_to_noise: f64,
    /// Minimum mean normalised autocorrelation `A(t)/s²` at the fitted translates; below it
    /// the peaks do not form a lattice. Default 0.3.
    pub min_quality: f64,
}

impl Default for LatticeConfig {
    fn default() -> Self {
        LatticeConfig {
            min_period_px: 4.0,
            max_period_fraction: 0.25,
            peak_threshold: 0.8,
            min_signal_to_noise: 10.0,
            min_quality: 0.3,
        }
    }
}

impl LatticeConfig {
    fn validate(&self) -> Result<()> {
        if !(self.min_period_px.is_finite() && self.min_period_px >= 2.0) {
            return Err(Error::invalid(
                "min_period_px",
                format!("must be finite and >= 2, got {}", self.min_period_px),
            ));
        }
        if !(self.max_period_fraction > 0.0 && self.max_period_fraction <= 0.5) {
            return Err(Error::invalid(
                "max_period_fraction",
                format!("must lie in (0, 0.5], got {}", self.max_period_fraction),
            ));
        }
        if !(self.peak_threshold > 0.0 && self.peak_threshold <= 1.0) {
            return Err(Error::invalid(
                "peak_threshold",
                format!("must lie in (0, 1], got {}", self.peak_threshold),
            ));
        }
        if !(self.min_signal_to_noise.is_finite() && self.min_signal_to_noise >= 0.0) {
            return Err(Error::invalid(
                "min_signal_to_noise",
                format!("must be finite and >= 0, got {}", self.min_signal_to_noise),
            ));
        }
        if !(self.min_quality.is_finite() && self.min_quality <= 1.0) {
            return Err(Error::invalid(
                "min_quality",
                format!("must be finite and <= 1, got {}", self.min_quality),
            ));
        }
        Ok(())
    }
}

/// Why no lattice was found (carried by [`Error::LatticeNotFound`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LatticeFailure {
    /// The image has (numerically) zero variance.
    FlatImage {
        /// The image variance (image units squared).
        variance: f64,
    },
    /// The autocorrelation next to the origin is not above the white-noise fluctuation: no
    /// structure beyond pixel noise.
    NoiseOnly {
        /// Estimated signal variance `s²` (image units squared).
        signal_variance: f64,
        /// The threshold it had to exceed.
        threshold: f64,
    },
    /// Fewer than two non-collinear autocorrelation peaks inside the search radius: the lattice
    /// is too coarse for the image (or there is none).
    TooFewPeriods {
        /// Number of candidate peaks found.
        peaks: usize,
        /// Search radius (px) = `max_period_fraction · min(ny, nx)`.
        max_period_px: f64,
    },
    /// The fitted translates do not correlate strongly enough.
    WeakLattice {
        /// Mean normalised autocorrelation at the fitted translates.
        quality: f64,
        /// The required minimum.
        min_quality: f64,
    },
}

impl fmt::Display for LatticeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatticeFailure::FlatImage { variance } => {
                write!(f, "flat image (variance {variance:.3e})")
            }
            LatticeFailure::NoiseOnly {
                signal_variance,
                threshold,
            } => write!(
                f,
                "noise only: signal variance {signal_variance:.3e} <= threshold {threshold:.3e}"
            ),
            LatticeFailure::TooFewPeriods {
                peaks,
                max_period_px,
            } => write!(
                f,
                "too few periods: {peaks} autocorrelation peak(s) within {max_period_px:.1} px, \
                 two non-collinear ones needed"
            ),
            LatticeFailure::WeakLattice {
                quality,
                min_quality,
            } => write!(
                f,
                "weak lattice: correlation {quality:.3} at the translates < {min_quality:.3}"
            ),
        }
    }
}

/// A 2-D lattice: two reduced basis vectors in px, `[dy, dx]` (axis order `[y, x]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Lattice {
    /// First basis vector `[dy, dx]` (px), the shorter one.
    pub a1_px: [f64; 2],
    /// Second basis vector `[dy, dx]` (px).
    pub a2_px: [f64; 2],
    /// Mean normalised autocorrelation `A(t)/s²` at the fitted translates (≈ 1 for a perfect
    /// lattice, lower with distortion or noise-limited estimates).
    pub quality: f64,
    /// Number of autocorrelation peaks used in the least-squares fit.
    pub n_peaks: usize,
}

impl Lattice {
    /// Lengths `[|a₁|, |a₂|]` (px).
    pub fn lengths_px(&self) -> [f64; 2] {
        [norm(self.a1_px), norm(self.a2_px)]
    }

    /// Angle between `a₁` and `a₂` in degrees, in `[0, 180]`.
    pub fn angle_deg(&self) -> f64 {
        let c = dot(self.a1_px, self.a2_px) / (norm(self.a1_px) * norm(self.a2_px));
        c.clamp(-1.0, 1.0).acos().to_degrees()
    }

    /// Direction of `a₁` in degrees: `atan2(dy, dx)` (from +x towards +y, y pointing down).
    pub fn rotation_deg(&self) -> f64 {
        self.a1_px[0].atan2(self.a1_px[1]).to_degrees()
    }

    /// Unit-cell area `|a₁ × a₂|` (px²).
    pub fn cell_area_px2(&self) -> f64 {
        cross(self.a1_px, self.a2_px).abs()
    }

    /// Reciprocal vectors `[g₁, g₂]`, each `[gy, gx]` in cycles/px, with `aᵢ·gⱼ = δᵢⱼ`
    /// (the matrix inverse of the basis; valid for oblique lattices).
    pub fn reciprocal(&self) -> [[f64; 2]; 2] {
        let [a, b] = [self.a1_px, self.a2_px];
        let det = cross(a, b);
        // g1 ⟂ a2, g1·a1 = 1; g2 ⟂ a1, g2·a2 = 1.
        [[b[1] / det, -b[0] / det], [-a[1] / det, a[0] / det]]
    }

    /// The translate `n₁a₁ + n₂a₂` (`[dy, dx]`, px).
    pub fn translate(&self, n1: i64, n2: i64) -> [f64; 2] {
        let (n1, n2) = (n1 as f64, n2 as f64);
        [
            n1 * self.a1_px[0] + n2 * self.a2_px[0],
            n1 * self.a1_px[1] + n2 * self.a2_px[1],
        ]
    }
}

fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}
fn cross(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[1] - a[1] * b[0]
}
fn norm(a: [f64; 2]) -> f64 {
    dot(a, a).sqrt()
}

/// Lagrange–Gauss reduction of a 2-D basis: returns `(a, b)` spanning the same lattice with
/// `|a| ≤ |b|` and `|a·b| ≤ |a|²/2`.
pub fn gauss_reduce(mut a: [f64; 2], mut b: [f64; 2]) -> ([f64; 2], [f64; 2]) {
    if dot(a, a) > dot(b, b) {
        std::mem::swap(&mut a, &mut b);
    }
    for _ in 0..64 {
        let m = (dot(a, b) / dot(a, a)).round();
        b = [b[0] - m * a[0], b[1] - m * a[1]];
        if dot(b, b) >= dot(a, a) {
            break;
        }
        std::mem::swap(&mut a, &mut b);
    }
    (a, b)
}

/// The centred, overlap-normalised autocovariance of an image, `|t_y|, |t_x| ≤ radius`.
struct Acf {
    data: Array2<f64>,
    radius: usize,
}

impl Acf {
    fn at(&self, ty: i64, tx: i64) -> Option<f64> {
        let r = self.radius as i64;
        if ty.abs() > r || tx.abs() > r {
            return None;
        }
        Some(self.data[[(ty + r) as usize, (tx + r) as usize]])
    }
}

/// Hann window `sin²(π(i + 1)/(n + 1))`, `i = 0..n` (never zero inside the image).
fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            (std::f64::consts::PI * (i + 1) as f64 / (n + 1) as f64)
                .sin()
                .powi(2)
        })
        .collect()
}

/// 1-D autocorrelation `Σ_i w(i)·w(i + t)` for `t = 0..=radius`.
fn window_acf(w: &[f64], radius: usize) -> Vec<f64> {
    (0..=radius)
        .map(|t| w.iter().zip(w.iter().skip(t)).map(|(a, b)| a * b).sum())
        .collect()
}

/// Window-normalised linear autocovariance via a zero-padded FFT: the image is weighted with a
/// separable Hann window `w` (after subtracting its weighted mean), and `Σ w f · w f` at lag `t`
/// is divided by `Σ w·w` at lag `t`. The smooth window keeps columns from entering and leaving
/// the overlap region abruptly, which would bias the peak positions.
fn autocovariance(image: ImageView<'_, f32>, radius: usize) -> Result<(Acf, f64)> {
    let data = image.data();
    let [ny, nx] = image.shape();
    let (wy, wx) = (hann(ny), hann(nx));
    let mut wsum = 0.0;
    let mut fsum = 0.0;
    for ((i, j), &v) in data.indexed_iter() {
        let w = wy[i] * wx[j];
        wsum += w;
        fsum += w * f64::from(v);
    }
    let mean = fsum / wsum;
    let shape = [2 * ny, 2 * nx];
    let fft = Fft2::<f64>::new(shape)?.with_parallel(ny * nx >= 128 * 128);
    let mut buf = Array2::<Complex<f64>>::zeros((shape[0], shape[1]));
    for ((i, j), &v) in data.indexed_iter() {
        buf[[i, j]] = Complex::new((f64::from(v) - mean) * wy[i] * wx[j], 0.0);
    }
    fft.forward(&mut buf)?;
    buf.mapv_inplace(|c| Complex::new(c.norm_sqr(), 0.0));
    fft.inverse(&mut buf)?;
    let (ay, ax) = (window_acf(&wy, radius), window_acf(&wx, radius));
    let r = radius as i64;
    let mut acf = Array2::<f64>::zeros((2 * radius + 1, 2 * radius + 1));
    for ty in -r..=r {
        for tx in -r..=r {
            let iy = ty.rem_euclid(shape[0] as i64) as usize;
            let ix = tx.rem_euclid(shape[1] as i64) as usize;
            let norm = ay[ty.unsigned_abs() as usize] * ax[tx.unsigned_abs() as usize];
            acf[[(ty + r) as usize, (tx + r) as usize]] = buf[[iy, ix]].re / norm;
        }
    }
    let variance = acf[[radius, radius]];
    Ok((Acf { data: acf, radius }, variance))
}

/// Sub-pixel position of a peak at integer `(ty, tx)` by 3-point parabola fits along y and x
/// (offsets clipped to ±0.5 px).
fn parabolic_refine(acf: &Acf, ty: i64, tx: i64) -> [f64; 2] {
    let fit = |a: Option<f64>, b: f64, c: Option<f64>| -> f64 {
        match (a, c) {
            (Some(a), Some(c)) => {
                let den = a - 2.0 * b + c;
                if den < 0.0 {
                    (0.5 * (a - c) / den).clamp(-0.5, 0.5)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    };
    let b = acf.at(ty, tx).unwrap_or(0.0);
    let dy = fit(acf.at(ty - 1, tx), b, acf.at(ty + 1, tx));
    let dx = fit(acf.at(ty, tx - 1), b, acf.at(ty, tx + 1));
    [ty as f64 + dy, tx as f64 + dx]
}

/// Estimates the lattice of a crystal image (axis order `[y, x]`, any non-negative or signed
/// intensities) from its autocorrelation; see the [module docs](self) for the method.
///
/// Cost: two FFTs of a `2ny × 2nx` array (about 0.1 s for 512²) plus a small search.
///
/// # Errors
/// [`Error::EmptyInput`], [`Error::NonFinite`] for bad pixels, [`Error::InvalidParameter`] for
/// an invalid config or an image smaller than 8 px in a dimension, and
/// [`Error::LatticeNotFound`] with a [`LatticeFailure`] reason (flat image, noise only, too few
/// periods, weak lattice).
pub fn estimate_lattice(image: ImageView<'_, f32>, config: &LatticeConfig) -> Result<Lattice> {
    config.validate()?;
    let data = image.data();
    if data.is_empty() {
        return Err(Error::EmptyInput { what: "image" });
    }
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "image",
            index,
        });
    }
    let [ny, nx] = image.shape();
    if ny.min(nx) < 8 {
        return Err(Error::invalid(
            "image",
            format!("lattice estimation needs at least 8×8 px, got {ny}×{nx}"),
        ));
    }
    let max_period = config.max_period_fraction * ny.min(nx) as f64;
    // Fit region reaches a bit beyond the search radius; the ACF array has 3 px extra margin.
    let fit_radius = (1.5 * max_period).min(0.45 * ny.min(nx) as f64);
    let radius = (fit_radius.ceil() as usize + 3).min(ny.min(nx) - 1);
    let (mut acf, variance) = autocovariance(image, radius)?;
    let scale = 1.0 + data.iter().map(|&v| f64::from(v).abs()).fold(0.0, f64::max);
    if variance.is_nan() || variance <= 1e-12 * scale * scale {
        return Err(Error::LatticeNotFound {
            reason: LatticeFailure::FlatImage { variance },
        });
    }
    let r = radius as i64;
    let s2 = 0.25
        * [(-1, 0), (1, 0), (0, -1), (0, 1)]
            .iter()
            .map(|&(a, b)| acf.at(a, b).unwrap_or(0.0))
            .sum::<f64>();
    let threshold = config.min_signal_to_noise * variance / ((ny * nx) as f64).sqrt();
    if s2 <= threshold {
        return Err(Error::LatticeNotFound {
            reason: LatticeFailure::NoiseOnly {
                signal_variance: s2,
                threshold,
            },
        });
    }
    acf.data[[radius, radius]] = s2;

    // Candidate peaks in the half plane ty > 0 or (ty == 0, tx > 0).
    let mut cands: Vec<(f64, [i64; 2])> = Vec::new();
    for ty in 0..=r {
        for tx in -r..=r {
            if ty == 0 && tx <= 0 {
                continue;
            }
            let len = ((ty * ty + tx * tx) as f64).sqrt();
            if len < config.min_period_px || len > max_period {
                continue;
            }
            let Some(v) = acf.at(ty, tx) else { continue };
            let mut is_max = true;
            'nb: for dy in -2..=2_i64 {
                for dx in -2..=2_i64 {
                    if (dy, dx) == (0, 0) {
                        continue;
                    }
                    if let Some(w) = acf.at(ty + dy, tx + dx)
                        && (w > v || (w == v && (dy, dx) < (0, 0)))
                    {
                        is_max = false;
                        break 'nb;
                    }
                }
            }
            if is_max {
                cands.push((v, [ty, tx]));
            }
        }
    }
    let too_few = |peaks: usize| Error::LatticeNotFound {
        reason: LatticeFailure::TooFewPeriods {
            peaks,
            max_period_px: max_period,
        },
    };
    let vmax = cands.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
    if cands.len() < 2 || vmax <= 0.0 {
        return Err(too_few(cands.len()));
    }
    let mut kept: Vec<[f64; 2]> = cands
        .iter()
        .filter(|c| c.0 >= config.peak_threshold * vmax)
        .map(|c| parabolic_refine(&acf, c.1[0], c.1[1]))
        .collect();
    kept.sort_by(|a, b| norm(*a).total_cmp(&norm(*b)));
    let t1 = kept[0];
    let Some(&t2) = kept[1..]
        .iter()
        .find(|t| (dot(t1, **t) / (norm(t1) * norm(**t))).abs() < 0.9)
    else {
        return Err(too_few(kept.len()));
    };
    let (mut a1, mut a2) = gauss_reduce(t1, t2);

    // Least-squares refinement over all translates inside the fit radius.
    let mut quality = 0.0;
    let mut n_peaks = 0;
    for _ in 0..3 {
        let (na, nb) = (
            (fit_radius / norm(a1)).ceil() as i64 + 1,
            (fit_radius / norm(a2)).ceil() as i64 + 1,
        );
        let mut m = [[0.0; 2]; 2];
        let mut bmat = [[0.0; 2]; 2];
        let mut qsum = 0.0;
        let mut count = 0usize;
        for n1 in -na..=na {
            for n2 in -nb..=nb {
                let p = [
                    n1 as f64 * a1[0] + n2 as f64 * a2[0],
                    n1 as f64 * a1[1] + n2 as f64 * a2[1],
                ];
                // Half plane only (the ACF is symmetric), inside the fit radius.
                if !(p[0] > 0.5 || (p[0].abs() <= 0.5 && p[1] > 0.5)) || norm(p) > fit_radius {
                    continue;
                }
                let (cy, cx) = (p[0].round() as i64, p[1].round() as i64);
                let mut best = (f64::NEG_INFINITY, 0, 0);
                for dy in -2..=2_i64 {
                    for dx in -2..=2_i64 {
                        if let Some(v) = acf.at(cy + dy, cx + dx)
                            && v > best.0
                        {
                            best = (v, cy + dy, cx + dx);
                        }
                    }
                }
                if !best.0.is_finite() || best.1.abs() >= r || best.2.abs() >= r {
                    continue;
                }
                let t = parabolic_refine(&acf, best.1, best.2);
                let n = [n1 as f64, n2 as f64];
                for i in 0..2 {
                    for j in 0..2 {
                        m[i][j] += n[i] * n[j];
                        bmat[i][j] += n[i] * t[j];
                    }
                }
                qsum += best.0 / s2;
                count += 1;
            }
        }
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if count < 2 || det.abs() < 1e-9 {
            break;
        }
        let inv = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        for j in 0..2 {
            a1[j] = inv[0][0] * bmat[0][j] + inv[0][1] * bmat[1][j];
            a2[j] = inv[1][0] * bmat[0][j] + inv[1][1] * bmat[1][j];
        }
        quality = qsum / count as f64;
        n_peaks = count;
    }
    if n_peaks == 0 {
        return Err(too_few(kept.len()));
    }
    if quality < config.min_quality {
        return Err(Error::LatticeNotFound {
            reason: LatticeFailure::WeakLattice {
                quality,
                min_quality: config.min_quality,
            },
        });
    }
    let (a1, a2) = gauss_reduce(a1, a2);
    Ok(Lattice {
        a1_px: a1,
        a2_px: a2,
        quality,
        n_peaks,
    })
}

#[cfg(test)]
mod tests;
