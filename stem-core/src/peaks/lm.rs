//! Levenberg–Marquardt least squares for the Gaussian peak models (analytic Jacobians).
//!
//! Damping as in Nielsen (1999) / Madsen, Nielsen & Tingleff, "Methods for non-linear least
//! squares problems" (2004), with Marquardt's scaling of the damping term by `diag(JᵀWJ)`.

// Index loops over the (at most 7) parameters mirror the normal-equation formulas.
#![allow(clippy::needless_range_loop)]

use super::linalg::{cholesky, cholesky_solve};
use super::window::Pixel;

/// A peak model `f(p; dy, dx)` with `P` parameters; `dy`, `dx` are offsets from the window centre.
pub(crate) trait PeakModel<const P: usize>: Sync {
    /// Model value, and its gradient with respect to the parameters written into `grad`.
    fn eval(&self, p: &[f64; P], dy: f64, dx: f64, grad: &mut [f64; P]) -> f64;
}

/// Round Gaussian, `p = [y0, x0, A, σ, B]`: `A exp(−r² / 2σ²) + B`.
pub(crate) struct Round;

impl PeakModel<5> for Round {
    #[inline]
    fn eval(&self, p: &[f64; 5], dy: f64, dx: f64, grad: &mut [f64; 5]) -> f64 {
        let [y0, x0, a, s, b] = *p;
        let (ey, ex) = (dy - y0, dx - x0);
        let inv = 1.0 / (s * s);
        let r2 = ey * ey + ex * ex;
        let e = (-0.5 * r2 * inv).exp();
        let g = a * e;
        *grad = [g * ey * inv, g * ex * inv, e, g * r2 * inv / s, 1.0];
        g + b
    }
}

/// Elliptical rotated Gaussian, `p = [y0, x0, A, σ1, σ2, θ, B]`:
/// `A exp(−½ (u²/σ1² + v²/σ2²)) + B` with `u = cosθ·dx + sinθ·dy`, `v = −sinθ·dx + cosθ·dy`
/// (`θ` turns the σ1 axis from +x towards +y).
pub(crate) struct Elliptical;

impl PeakModel<7> for Elliptical {
    #[inline]
    fn eval(&self, p: &[f64; 7], dy: f64, dx: f64, grad: &mut [f64; 7]) -> f64 {
        let [y0, x0, a, s1, s2, th, b] = *p;
        let (sn, cs) = th.sin_cos();
        let (ey, ex) = (dy - y0, dx - x0);
        let u = cs * ex + sn * ey;
        let v = -sn * ex + cs * ey;
        let (i1, i2) = (1.0 / (s1 * s1), 1.0 / (s2 * s2));
        let e = (-0.5 * (u * u * i1 + v * v * i2)).exp();
        let g = a * e;
        *grad = [
            g * (u * sn * i1 + v * cs * i2),
            g * (u * cs * i1 - v * sn * i2),
            e,
            g * u * u * i1 / s1,
            g * v * v * i2 / s2,
            -g * u * v * (i1 - i2),
            1.0,
        ];
        g + b
    }
}

/// Stopping rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LmSettings {
    pub max_iterations: usize,
    /// Stop when `‖δ‖ ≤ xtol (‖p‖ + xtol)`.
    pub xtol: f64,
    /// Stop when `max_j |gⱼ| / sqrt(Hⱼⱼ · RSS) ≤ gtol` (cosine of the angle between the residual
    /// and each Jacobian column, MINPACK's scale-free gradient test).
    pub gtol: f64,
    /// Stop when an accepted step reduces RSS by a relative amount ≤ `ftol`, and predicted so.
    pub ftol: f64,
}

/// The result of a fit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LmOutcome<const P: usize> {
    pub params: [f64; P],
    /// `Σ wᵢ rᵢ²` at `params`.
    pub rss: f64,
    /// `JᵀWJ` at `params`.
    pub hessian: [[f64; P]; P],
    /// Whether a stopping rule (not the iteration limit) ended the fit.
    pub converged: bool,
}

/// RSS, `JᵀWJ` and `JᵀW r` at `p` (`r = f − v`).
fn accumulate<const P: usize, M: PeakModel<P>>(
    model: &M,
    p: &[f64; P],
    px: &[Pixel],
) -> (f64, [[f64; P]; P], [f64; P]) {
    let mut h = [[0.0; P]; P];
    let mut g = [0.0; P];
    let mut rss = 0.0;
    let mut grad = [0.0; P];
    for q in px {
        let f = model.eval(p, q.dy, q.dx, &mut grad);
        let w = q.w;
        let r = f - q.v;
        rss += w * r * r;
        for i in 0..P {
            let wgi = w * grad[i];
            g[i] += wgi * r;
            for j in i..P {
                h[i][j] += wgi * grad[j];
            }
        }
    }
    for i in 0..P {
        for j in 0..i {
            h[i][j] = h[j][i];
        }
    }
    (rss, h, g)
}

/// Minimises `Σ wᵢ (f(p; pixelᵢ) − vᵢ)²` (weights `Pixel::w`) from `p0`. Returns `None` when
/// the start is not finite.
pub(crate) fn levenberg_marquardt<const P: usize, M: PeakModel<P>>(
    model: &M,
    px: &[Pixel],
    p0: [f64; P],
    settings: &LmSettings,
) -> Option<LmOutcome<P>> {
    let mut p = p0;
    let (mut rss, mut h, mut g) = accumulate(model, &p, px);
    if !rss.is_finite() || p.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let max_diag = (0..P).map(|i| h[i][i]).fold(0.0, f64::max);
    if !(max_diag > 0.0 && max_diag.is_finite()) {
        return None;
    }
    let floor = max_diag * 1e-12;
    let mut mu = 1e-3;
    let mut nu = 2.0;
    let mut converged = false;
    for _ in 0..settings.max_iterations {
        // Gradient test.
        if rss == 0.0 {
            converged = true;
            break;
        }
        let gcos = (0..P)
            .filter(|&j| h[j][j] > 0.0)
            .map(|j| g[j].abs() / (h[j][j] * rss).sqrt())
            .fold(0.0, f64::max);
        if gcos <= settings.gtol {
            converged = true;
            break;
        }
        // Damped normal equations (H + μ D) δ = −g, D = diag(H) floored.
        let mut a = h;
        let mut d = [0.0; P];
        for j in 0..P {
            d[j] = h[j][j].max(floor);
            a[j][j] += mu * d[j];
        }
        let Some(l) = cholesky(&a) else {
            mu *= nu;
            nu *= 2.0;
            if !mu.is_finite() {
                break;
            }
            continue;
        };
        let neg_g = g.map(|v| -v);
        let delta = cholesky_solve(&l, &neg_g);
        let step = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
        let norm = p.iter().map(|v| v * v).sum::<f64>().sqrt();
        if step <= settings.xtol * (norm + settings.xtol) {
            converged = true;
            break;
        }
        let mut trial = p;
        for j in 0..P {
            trial[j] += delta[j];
        }
        let (rss_t, h_t, g_t) = accumulate(model, &trial, px);
        // Predicted reduction of RSS by the linear model: μ δᵀDδ − δᵀg.
        let pred: f64 = (0..P)
            .map(|j| delta[j] * (mu * d[j] * delta[j] - g[j]))
            .sum();
        let actual = rss - rss_t;
        let rho = actual / pred;
        if rss_t.is_finite() && pred > 0.0 && rho > 0.0 {
            let done = actual <= settings.ftol * rss && pred <= settings.ftol * rss;
            p = trial;
            rss = rss_t;
            h = h_t;
            g = g_t;
            mu *= (1.0 - (2.0 * rho - 1.0).powi(3)).max(1.0 / 3.0);
            nu = 2.0;
            if done {
                converged = true;
                break;
            }
        } else {
            mu *= nu;
            nu *= 2.0;
            if !mu.is_finite() || mu > 1e30 {
                break;
            }
        }
    }
    Some(LmOutcome {
        params: p,
        rss,
        hessian: h,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_gradient<const P: usize, M: PeakModel<P>>(model: &M, p: [f64; P]) {
        let mut grad = [0.0; P];
        let mut tmp = [0.0; P];
        for &(dy, dx) in &[(0.3, -1.2), (2.0, 1.5), (-1.7, 0.4), (0.0, 0.0)] {
            model.eval(&p, dy, dx, &mut grad);
            for j in 0..P {
                let hstep = 1e-6 * (1.0 + p[j].abs());
                let (mut pp, mut pm) = (p, p);
                pp[j] += hstep;
                pm[j] -= hstep;
                let fd = (model.eval(&pp, dy, dx, &mut tmp) - model.eval(&pm, dy, dx, &mut tmp))
                    / (2.0 * hstep);
                assert!(
                    (fd - grad[j]).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "param {j} at ({dy}, {dx}): analytic {} vs finite difference {fd}",
                    grad[j]
                );
            }
        }
    }

    #[test]
    fn analytic_jacobians_match_finite_differences() {
        check_gradient(&Round, [0.2, -0.4, 80.0, 1.8, 5.0]);
        check_gradient(&Elliptical, [0.2, -0.4, 80.0, 2.6, 1.7, 0.7, 5.0]);
        check_gradient(&Elliptical, [-0.1, 0.3, 50.0, 1.5, 2.2, -1.2, -3.0]);
    }

    #[test]
    fn recovers_exact_round_gaussian() {
        let truth = [0.37, -0.21, 120.0, 2.3, 7.0];
        let mut px = Vec::new();
        let mut grad = [0.0; 5];
        for i in -6i32..=6 {
            for j in -6i32..=6 {
                let (dy, dx) = (f64::from(i), f64::from(j));
                let v = Round.eval(&truth, dy, dx, &mut grad);
                px.push(Pixel { dy, dx, v, w: 1.0 });
            }
        }
        let settings = LmSettings {
            max_iterations: 100,
            xtol: 1e-12,
            gtol: 1e-12,
            ftol: 1e-15,
        };
        let out = levenberg_marquardt(&Round, &px, [0.0, 0.0, 90.0, 3.5, 0.0], &settings).unwrap();
        assert!(out.converged);
        for j in 0..5 {
            assert!((out.params[j] - truth[j]).abs() < 1e-8, "{:?}", out.params);
        }
    }
}
