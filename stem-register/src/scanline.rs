//! The scan-line distortion model: one shift per scan row, smooth along the slow scan axis.
//!
//! In a scanned image every row is recorded in one sweep, so drift, stage instability and
//! fly-back errors displace whole rows: frame row `r` shows the specimen at
//! `(r + D_y(r), c + D_x(r))`. This module fits `D(r)` of one frame against a reference image
//! by minimising
//!
//! `E[D] = Σ_r Σ_c (F(r, c) − R(r + D_y(r), c + D_x(r)))² + Σ_r λ_y h̄ (ΔD_y)² + λ_x h̄ (ΔD_x)²`,
//!
//! where `ΔD(r) = D(r + 1) − D(r)` (a discrete H¹ prior along the slow axis), `R` is sampled
//! with Keys' cubic kernel, and `h̄` is the mean per-row data curvature (half the trace of the
//! per-row Gauss–Newton matrix), so that λ is dimensionless: λ = 1 weighs a unit jump between
//! neighbouring rows as much as a unit shift of one row's data. Each Gauss–Newton step solves the
//! block-tridiagonal (2×2 blocks) normal equations exactly (block Thomas algorithm, O(rows)),
//! with steps clipped to `max_step_px` and halved when the energy rises. A coarse-to-fine
//! schedule blurs both images with Gaussians of decreasing σ to widen the capture range.
//!
//! Because the samples of one row share their sub-pixel fractions, interpolation weights are
//! computed once per row; a Gauss–Newton iteration costs a few multiply-adds per pixel.
//!
//! ```
//! use ndarray::Array2;
//! use stem_register::scanline::{fit_row_shifts, RowShifts, ScanLineConfig};
//! use stem_core::ImageView;
//!
//! let f = |y: f64, x: f64| ((y * 0.45).sin() * (x * 0.4).cos() * 10.0 + 20.0) as f32;
//! let reference = Array2::from_shape_fn((64, 64), |(i, j)| f(i as f64, j as f64));
//! // every row displaced in x by 0.6·sin(r/10) px
//! let truth: Vec<f64> = (0..64).map(|r| 0.6 * (r as f64 / 10.0).sin()).collect();
//! let frame = Array2::from_shape_fn((64, 64), |(i, j)| f(i as f64, j as f64 + truth[i]));
//! let fit = fit_row_shifts(
//!     ImageView::from(&reference),
//!     ImageView::from(&frame),
//!     &RowShifts::constant(64, [0.0, 0.0]),
//!     &ScanLineConfig::default(),
//! )
//! .unwrap();
//! for r in 4..60 {
//!     assert!((fit.dx[r] - truth[r]).abs() < 0.05);
//! }
//! ```

use crate::error::{Error, Result, check_finite};
use crate::interp::{clamp_index, keys};
use crate::warp::DisplacementField;
use ndarray::{Array2, ArrayView2};
use stem_core::ImageView;

/// Settings of [`fit_row_shifts`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScanLineConfig {
    /// Smoothness weight of the x shifts (fast-scan jitter) between neighbouring rows,
    /// dimensionless (see the module docs). Finite, ≥ 0. Default 0.5.
    pub lambda_x: f64,
    /// Smoothness weight of the y shifts (slow-scan drift), dimensionless. Finite, ≥ 0.
    /// Default 20.
    pub lambda_y: f64,
    /// Coarse-to-fine schedule: σ (px) of the Gaussian blur applied to both images per level,
    /// 0 = unblurred. Non-empty, each finite and ≥ 0. Default `[3, 1.5, 0]`.
    pub smoothing_sigmas_px: Vec<f64>,
    /// Gauss–Newton iterations per level. ≥ 1. Default 10.
    pub iterations: usize,
    /// Largest change of a row shift per iteration (px). Finite, > 0. Default 0.5.
    pub max_step_px: f64,
}

impl Default for ScanLineConfig {
    fn default() -> Self {
        ScanLineConfig {
            lambda_x: 0.5,
            lambda_y: 20.0,
            smoothing_sigmas_px: vec![3.0, 1.5, 0.0],
            iterations: 10,
            max_step_px: 0.5,
        }
    }
}

impl ScanLineConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        for (name, v) in [("lambda_x", self.lambda_x), ("lambda_y", self.lambda_y)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        if self.smoothing_sigmas_px.is_empty() {
            return Err(Error::invalid("smoothing_sigmas_px", "must not be empty"));
        }
        if let Some(v) = self
            .smoothing_sigmas_px
            .iter()
            .find(|v| !(v.is_finite() && **v >= 0.0))
        {
            return Err(Error::invalid(
                "smoothing_sigmas_px",
                format!("each must be finite and >= 0, got {v}"),
            ));
        }
        if self.iterations == 0 {
            return Err(Error::invalid("iterations", "must be >= 1, got 0"));
        }
        if !(self.max_step_px.is_finite() && self.max_step_px > 0.0) {
            return Err(Error::invalid(
                "max_step_px",
                format!("must be finite and > 0, got {}", self.max_step_px),
            ));
        }
        Ok(())
    }
}

/// Per-row shifts of one frame, indexed by the **frame** row `r`: frame row `r` shows the
/// reference at `(r + dy[r], c + dx[r])` (px), i.e. it must move by `[dy[r], dx[r]]` to land on
/// the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct RowShifts {
    /// y shift per frame row (px).
    pub dy: Vec<f64>,
    /// x shift per frame row (px).
    pub dx: Vec<f64>,
}

impl RowShifts {
    /// The same shift `[dy, dx]` (px) for all `rows`.
    pub fn constant(rows: usize, shift: [f64; 2]) -> Self {
        RowShifts {
            dy: vec![shift[0]; rows],
            dx: vec![shift[1]; rows],
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.dy.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.dy.is_empty()
    }

    /// The mean shift `[dy, dx]` over the rows (px): the effective rigid shift.
    pub fn mean(&self) -> [f64; 2] {
        let n = self.len().max(1) as f64;
        [
            self.dy.iter().sum::<f64>() / n,
            self.dx.iter().sum::<f64>() / n,
        ]
    }

    /// The shift of the frame content at (fractional) frame row `r`, linearly interpolated and
    /// clamped at the ends.
    pub fn at(&self, r: f64) -> [f64; 2] {
        let n = self.len();
        if n == 0 {
            return [0.0, 0.0];
        }
        if n == 1 {
            return [self.dy[0], self.dx[0]];
        }
        let r = r.clamp(0.0, (n - 1) as f64);
        let i = (r.floor() as usize).min(n - 2);
        let t = r - i as f64;
        [
            self.dy[i] * (1.0 - t) + self.dy[i + 1] * t,
            self.dx[i] * (1.0 - t) + self.dx[i + 1] * t,
        ]
    }

    /// The same distortion expressed on the reference rows `Y = 0..ny_ref`: `(dy(Y), dx(Y))`
    /// with `d(Y) = D(r')` where `r' + D_y(r') = Y` (8 fixed-point iterations, converging when
    /// `|dD_y/dr| < 1`). This is the row form of a [`DisplacementField`].
    pub fn to_reference_rows(&self, ny_ref: usize) -> (Vec<f64>, Vec<f64>) {
        let mut dy = vec![0.0; ny_ref];
        let mut dx = vec![0.0; ny_ref];
        for yy in 0..ny_ref {
            let y = yy as f64;
            let mut r = y - self.at(y)[0];
            for _ in 0..8 {
                r = y - self.at(r)[0];
            }
            let d = self.at(r);
            dy[yy] = d[0];
            dx[yy] = d[1];
        }
        (dy, dx)
    }

    /// The dense [`DisplacementField`] on a reference grid of shape `[ny, nx]`.
    pub fn to_field(&self, shape: [usize; 2]) -> DisplacementField {
        let (dy, dx) = self.to_reference_rows(shape[0]);
        DisplacementField {
            dy: Array2::from_shape_fn(shape, |(i, _)| dy[i] as f32),
            dx: Array2::from_shape_fn(shape, |(i, _)| dx[i] as f32),
        }
    }
}

/// Fits the row shifts of `frame` against `reference` (same shape), starting from `init`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for differing shapes or an `init` of the wrong length;
/// [`Error::TooSmall`] for fewer than 4 rows or columns; [`Error::InvalidParameter`] for an
/// invalid config; [`Error::NonFinite`] for NaN/∞ in the images or `init`.
pub fn fit_row_shifts(
    reference: ImageView<'_, f32>,
    frame: ImageView<'_, f32>,
    init: &RowShifts,
    config: &ScanLineConfig,
) -> Result<RowShifts> {
    config.validate()?;
    let shape = reference.shape();
    if frame.shape() != shape {
        return Err(Error::ShapeMismatch {
            expected: shape.to_vec(),
            found: frame.shape().to_vec(),
        });
    }
    if shape[0] < 4 || shape[1] < 4 {
        return Err(Error::TooSmall {
            shape,
            reason: "the scan-line model needs at least 4 rows and columns".into(),
        });
    }
    if init.dy.len() != shape[0] || init.dx.len() != shape[0] {
        return Err(Error::ShapeMismatch {
            expected: vec![shape[0]],
            found: vec![init.dy.len(), init.dx.len()],
        });
    }
    if let Some(index) = init.dy.iter().chain(&init.dx).position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "initial row shifts",
            index,
        });
    }
    check_finite("reference", reference.data().iter())?;
    check_finite("frame", frame.data().iter())?;
    let refs = blurred_references(reference, &config.smoothing_sigmas_px)?;
    fit_prepared(&refs, frame, init, config)
}

/// The reference blurred at every σ of the schedule (computed once, shared by all frames).
pub(crate) fn blurred_references(
    reference: ImageView<'_, f32>,
    sigmas: &[f64],
) -> Result<Vec<Array2<f32>>> {
    sigmas
        .iter()
        .map(|&sigma| {
            if sigma > 0.0 {
                Ok(stem_core::filters::gaussian_blur(
                    reference.data(),
                    sigma,
                    4.0,
                )?)
            } else {
                Ok(reference.data().to_owned())
            }
        })
        .collect()
}

/// [`fit_row_shifts`] with the blurred references precomputed (validated inputs).
pub(crate) fn fit_prepared(
    refs: &[Array2<f32>],
    frame: ImageView<'_, f32>,
    init: &RowShifts,
    config: &ScanLineConfig,
) -> Result<RowShifts> {
    let mut shifts = init.clone();
    for (r, &sigma) in refs.iter().zip(&config.smoothing_sigmas_px) {
        let f = if sigma > 0.0 {
            stem_core::filters::gaussian_blur(frame.data(), sigma, 4.0)?
        } else {
            frame.data().to_owned()
        };
        // pixels within 2σ of an edge see the blur's edge handling, not the data: left out
        let margin =
            ((2.0 * sigma).ceil() as usize).min(frame.shape()[0].min(frame.shape()[1]) / 4);
        fit_level(r.view(), f.view(), &mut shifts, config, margin);
    }
    Ok(shifts)
}

/// Per-row Gauss–Newton terms at the current shifts: `h = [hyy, hyx, hxx]`, `b = [by, bx]`,
/// and the sum of squared residuals.
#[allow(clippy::too_many_arguments)]
fn linearise(
    r: ArrayView2<'_, f32>,
    f: ArrayView2<'_, f32>,
    shifts: &RowShifts,
    margin: usize,
    h: &mut [[f64; 3]],
    b: &mut [[f64; 2]],
    t: &mut [f64],
    dt: &mut [f64],
) -> f64 {
    let (ny, nx) = r.dim();
    let mut sse = 0.0;
    for row in 0..ny {
        h[row] = [0.0; 3];
        b[row] = [0.0; 2];
        let y = row as f64 + shifts.dy[row];
        let (lo, hi) = (margin as f64, (ny - 1 - margin.min(ny - 1)) as f64);
        if row < margin || row + margin >= ny || !(y >= lo && y <= hi) {
            continue;
        }
        let y0 = y.floor();
        let (wy, dwy) = keys(y - y0);
        let y0 = y0 as isize;
        t.iter_mut().for_each(|v| *v = 0.0);
        dt.iter_mut().for_each(|v| *v = 0.0);
        for a in 0..4 {
            let src = r.row(clamp_index(y0 + a as isize - 1, ny));
            let (w, dw) = (wy[a], dwy[a]);
            for (c, &v) in src.iter().enumerate() {
                let v = f64::from(v);
                t[c] += w * v;
                dt[c] += dw * v;
            }
        }
        let xs = shifts.dx[row];
        let x0 = xs.floor();
        let (wx, dwx) = keys(xs - x0);
        let x0 = x0 as isize;
        // columns c with 0 ≤ c + xs ≤ nx − 1
        let m = margin as f64;
        let c_lo = (m - xs).ceil().max(m) as usize;
        let c_hi = ((nx - 1) as f64 - m - xs).floor().min((nx - 1) as f64 - m);
        if c_hi < c_lo as f64 {
            continue;
        }
        let frow = f.row(row);
        let (mut hyy, mut hyx, mut hxx, mut by, mut bx) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for c in c_lo..=(c_hi as usize) {
            let base = c as isize + x0 - 1;
            let (mut v, mut gx, mut gy) = (0.0, 0.0, 0.0);
            for j in 0..4 {
                let k = clamp_index(base + j as isize, nx);
                v += wx[j] * t[k];
                gx += dwx[j] * t[k];
                gy += wx[j] * dt[k];
            }
            let e = f64::from(frow[c]) - v;
            sse += e * e;
            hyy += gy * gy;
            hyx += gy * gx;
            hxx += gx * gx;
            by += e * gy;
            bx += e * gx;
        }
        h[row] = [hyy, hyx, hxx];
        b[row] = [by, bx];
    }
    sse
}

fn smooth_energy(s: &RowShifts, lam: [f64; 2]) -> f64 {
    let mut e = 0.0;
    for r in 1..s.len() {
        e += lam[0] * (s.dy[r] - s.dy[r - 1]).powi(2) + lam[1] * (s.dx[r] - s.dx[r - 1]).powi(2);
    }
    e
}

/// One level of Gauss–Newton iterations on prepared (blurred) images.
fn fit_level(
    r: ArrayView2<'_, f32>,
    f: ArrayView2<'_, f32>,
    shifts: &mut RowShifts,
    cfg: &ScanLineConfig,
    margin: usize,
) {
    let (ny, nx) = r.dim();
    let mut h = vec![[0.0; 3]; ny];
    let mut b = vec![[0.0; 2]; ny];
    let (mut t, mut dt) = (vec![0.0; nx], vec![0.0; nx]);
    let sse = linearise(r, f, shifts, margin, &mut h, &mut b, &mut t, &mut dt);
    let hbar = h.iter().map(|v| 0.5 * (v[0] + v[2])).sum::<f64>() / ny as f64;
    if hbar <= 0.0 || !hbar.is_finite() {
        return;
    }
    let lam = [cfg.lambda_y * hbar, cfg.lambda_x * hbar];
    let mu = 1e-6 * hbar;
    let mut energy = sse + smooth_energy(shifts, lam);
    for _ in 0..cfg.iterations {
        let step = solve_tridiagonal(&h, &b, shifts, lam, mu, cfg.max_step_px);
        let max_step = step
            .iter()
            .map(|s| s[0].abs().max(s[1].abs()))
            .fold(0.0, f64::max);
        // try the step, halving it while the energy rises (at most 4 times)
        let mut scale = 1.0;
        let mut accepted = false;
        let mut h_new = vec![[0.0; 3]; ny];
        let mut b_new = vec![[0.0; 2]; ny];
        for _ in 0..5 {
            let mut trial = shifts.clone();
            for (row, s) in step.iter().enumerate() {
                trial.dy[row] += scale * s[0];
                trial.dx[row] += scale * s[1];
            }
            let sse = linearise(
                r, f, &trial, margin, &mut h_new, &mut b_new, &mut t, &mut dt,
            );
            let e = sse + smooth_energy(&trial, lam);
            if e <= energy {
                *shifts = trial;
                energy = e;
                std::mem::swap(&mut h, &mut h_new);
                std::mem::swap(&mut b, &mut b_new);
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        if !accepted || max_step * scale < 1e-4 {
            break;
        }
    }
}

/// Solves `(H_r + Λ deg_r + μ) δ_r − Λ δ_{r−1} − Λ δ_{r+1} = b_r − Λ (deg_r D_r − D_{r−1} − D_{r+1})`
/// (the Gauss–Newton normal equations of the energy) with the block Thomas algorithm; steps
/// clipped to ±`max_step`.
fn solve_tridiagonal(
    h: &[[f64; 3]],
    b: &[[f64; 2]],
    s: &RowShifts,
    lam: [f64; 2],
    mu: f64,
    max_step: f64,
) -> Vec<[f64; 2]> {
    let n = h.len();
    // modified diagonal blocks A'_r (symmetric 2×2 stored [a, b, d]) and right-hand sides d'_r
    let mut ap = vec![[0.0; 3]; n];
    let mut dp = vec![[0.0; 2]; n];
    let inv = |m: [f64; 3]| -> [f64; 3] {
        let det = m[0] * m[2] - m[1] * m[1];
        let det = if det.abs() < 1e-300 { 1e-300 } else { det };
        [m[2] / det, -m[1] / det, m[0] / det]
    };
    let mul = |m: [f64; 3], v: [f64; 2]| [m[0] * v[0] + m[1] * v[1], m[1] * v[0] + m[2] * v[1]];
    for r in 0..n {
        let mut deg = 0.0;
        let mut rhs = b[r];
        if r > 0 {
            deg += 1.0;
            rhs[0] -= lam[0] * (s.dy[r] - s.dy[r - 1]);
            rhs[1] -= lam[1] * (s.dx[r] - s.dx[r - 1]);
        }
        if r + 1 < n {
            deg += 1.0;
            rhs[0] -= lam[0] * (s.dy[r] - s.dy[r + 1]);
            rhs[1] -= lam[1] * (s.dx[r] - s.dx[r + 1]);
        }
        let mut a = [
            h[r][0] + lam[0] * deg + mu,
            h[r][1],
            h[r][2] + lam[1] * deg + mu,
        ];
        if r > 0 {
            // M = L A'^{-1}_{r−1} with L = −Λ; A'_r = A_r − M U_{r−1} = A_r − Λ A'^{-1} Λ
            let ai = inv(ap[r - 1]);
            a[0] -= lam[0] * ai[0] * lam[0];
            a[1] -= lam[0] * ai[1] * lam[1];
            a[2] -= lam[1] * ai[2] * lam[1];
            // d'_r = d_r − M d'_{r−1} = d_r + Λ A'^{-1} d'_{r−1}
            let v = mul(ai, dp[r - 1]);
            rhs[0] += lam[0] * v[0];
            rhs[1] += lam[1] * v[1];
        }
        ap[r] = a;
        dp[r] = rhs;
    }
    let mut x = vec![[0.0; 2]; n];
    for r in (0..n).rev() {
        let mut rhs = dp[r];
        if r + 1 < n {
            // U_r x_{r+1} = −Λ x_{r+1}
            rhs[0] += lam[0] * x[r + 1][0];
            rhs[1] += lam[1] * x[r + 1][1];
        }
        x[r] = mul(inv(ap[r]), rhs);
    }
    for v in &mut x {
        v[0] = v[0].clamp(-max_step, max_step);
        v[1] = v[1].clamp(-max_step, max_step);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(y: f64, x: f64) -> f32 {
        ((y * 0.45).sin() * (x * 0.4).cos() * 10.0 + (0.3 * x + 0.2 * y).sin() * 5.0 + 20.0) as f32
    }

    #[test]
    fn tridiagonal_solver_matches_dense_solve() {
        // oracle: assemble the dense 2n×2n system and solve by Gaussian elimination
        let n = 7;
        let h: Vec<[f64; 3]> = (0..n)
            .map(|r| [2.0 + r as f64, 0.3, 1.5 + 0.1 * r as f64])
            .collect();
        let b: Vec<[f64; 2]> = (0..n)
            .map(|r| [0.1 * r as f64 - 0.2, 0.05 * (r * r) as f64])
            .collect();
        let s = RowShifts {
            dy: (0..n).map(|r| 0.01 * r as f64).collect(),
            dx: (0..n).map(|r| -0.02 * r as f64).collect(),
        };
        let lam = [0.7, 1.9];
        let x = solve_tridiagonal(&h, &b, &s, lam, 0.0, 1e9);
        let m = 2 * n;
        let mut a = vec![vec![0.0; m + 1]; m];
        for r in 0..n {
            a[2 * r][2 * r] += h[r][0];
            a[2 * r][2 * r + 1] += h[r][1];
            a[2 * r + 1][2 * r] += h[r][1];
            a[2 * r + 1][2 * r + 1] += h[r][2];
            a[2 * r][m] += b[r][0];
            a[2 * r + 1][m] += b[r][1];
            let d = [&s.dy, &s.dx];
            for nb in [r.wrapping_sub(1), r + 1] {
                if nb < n {
                    for c in 0..2 {
                        a[2 * r + c][2 * r + c] += lam[c];
                        a[2 * r + c][2 * nb + c] -= lam[c];
                        a[2 * r + c][m] -= lam[c] * (d[c][r] - d[c][nb]);
                    }
                }
            }
        }
        for i in 0..m {
            let p = a[i][i];
            for j in i..=m {
                a[i][j] /= p;
            }
            for k in 0..m {
                if k != i {
                    let f = a[k][i];
                    for j in i..=m {
                        a[k][j] -= f * a[i][j];
                    }
                }
            }
        }
        for r in 0..n {
            assert!((x[r][0] - a[2 * r][m]).abs() < 1e-10);
            assert!((x[r][1] - a[2 * r + 1][m]).abs() < 1e-10);
        }
    }

    #[test]
    fn recovers_smooth_row_shifts_in_both_axes() {
        let ny = 80;
        let ty: Vec<f64> = (0..ny).map(|r| 0.8 + 0.004 * r as f64).collect();
        let tx: Vec<f64> = (0..ny)
            .map(|r| -1.2 + 0.9 * (r as f64 / 13.0).sin())
            .collect();
        let reference = Array2::from_shape_fn((ny, 72), |(i, j)| pattern(i as f64, j as f64));
        let frame = Array2::from_shape_fn((ny, 72), |(i, j)| {
            pattern(i as f64 + ty[i], j as f64 + tx[i])
        });
        let fit = fit_row_shifts(
            ImageView::from(&reference),
            ImageView::from(&frame),
            &RowShifts::constant(ny, [0.0, 0.0]),
            &ScanLineConfig::default(),
        )
        .unwrap();
        for r in 5..ny - 5 {
            // noise-free: residual from the smoothness prior and cubic interpolation ≤ 0.03 px
            assert!(
                (fit.dy[r] - ty[r]).abs() < 0.03,
                "row {r}: {} vs {}",
                fit.dy[r],
                ty[r]
            );
            assert!(
                (fit.dx[r] - tx[r]).abs() < 0.03,
                "row {r}: {} vs {}",
                fit.dx[r],
                tx[r]
            );
        }
    }

    #[test]
    fn reference_rows_invert_the_frame_rows() {
        let s = RowShifts {
            dy: (0..50).map(|r| 2.0 + 0.01 * r as f64).collect(),
            dx: (0..50).map(|r| (r as f64 / 7.0).sin()).collect(),
        };
        let (dy, dx) = s.to_reference_rows(50);
        for yy in 5..45 {
            // frame row r' = Y − dy(Y) must map to Y
            let r = yy as f64 - dy[yy];
            let d = s.at(r);
            assert!((r + d[0] - yy as f64).abs() < 1e-9);
            assert!((dx[yy] - d[1]).abs() < 1e-12);
        }
        assert_eq!(s.to_field([50, 3]).shape(), [50, 3]);
    }

    #[test]
    fn validation_rules() {
        let a = Array2::<f32>::zeros((8, 8));
        let v = ImageView::from(&a);
        let init = RowShifts::constant(8, [0.0, 0.0]);
        let bad = |c: ScanLineConfig| fit_row_shifts(v, v, &init, &c).is_err();
        assert!(bad(ScanLineConfig {
            lambda_x: -1.0,
            ..Default::default()
        }));
        assert!(bad(ScanLineConfig {
            lambda_y: f64::NAN,
            ..Default::default()
        }));
        assert!(bad(ScanLineConfig {
            smoothing_sigmas_px: vec![],
            ..Default::default()
        }));
        assert!(bad(ScanLineConfig {
            smoothing_sigmas_px: vec![-1.0],
            ..Default::default()
        }));
        assert!(bad(ScanLineConfig {
            iterations: 0,
            ..Default::default()
        }));
        assert!(bad(ScanLineConfig {
            max_step_px: 0.0,
            ..Default::default()
        }));
        let c = ScanLineConfig::default();
        let b = Array2::<f32>::zeros((8, 9));
        assert!(matches!(
            fit_row_shifts(v, ImageView::from(&b), &init, &c),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            fit_row_shifts(v, v, &RowShifts::constant(7, [0.0, 0.0]), &c),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut nan = init.clone();
        nan.dx[2] = f64::NAN;
        assert!(matches!(
            fit_row_shifts(v, v, &nan, &c),
            Err(Error::NonFinite { .. })
        ));
        let small = Array2::<f32>::zeros((3, 8));
        let sv = ImageView::from(&small);
        assert!(matches!(
            fit_row_shifts(sv, sv, &RowShifts::constant(3, [0.0, 0.0]), &c),
            Err(Error::TooSmall { .. })
        ));
        // a constant image has no information: the fit returns the initial shifts, no panic
        let fit = fit_row_shifts(v, v, &init, &c).unwrap();
        assert_eq!(fit, init);
    }
}
