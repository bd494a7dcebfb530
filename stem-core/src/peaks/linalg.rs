//! Tiny dense symmetric solves for the least-squares fits (at most 7 parameters).
//!
//! Fixed-size Cholesky factorisation, solve and inverse on `[[f64; P]; P]` arrays: no allocation,
//! no external dependency for matrices this small.

// Index loops mirror the textbook formulas (L[i][k] L[j][k] ...) more clearly than iterators.
#![allow(clippy::needless_range_loop)]

/// Cholesky factor `L` (lower triangular, `A = L Lᵀ`) of a symmetric matrix, or `None` when the
/// matrix is not (numerically) positive definite or holds non-finite values.
pub(crate) fn cholesky<const P: usize>(a: &[[f64; P]; P]) -> Option<[[f64; P]; P]> {
    let mut l = [[0.0; P]; P];
    for i in 0..P {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                if !(s.is_finite() && s > 0.0) {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L Lᵀ x = b` given the Cholesky factor `L`.
pub(crate) fn cholesky_solve<const P: usize>(l: &[[f64; P]; P], b: &[f64; P]) -> [f64; P] {
    let mut y = [0.0; P];
    for i in 0..P {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i][k] * y[k];
        }
        y[i] = s / l[i][i];
    }
    let mut x = [0.0; P];
    for i in (0..P).rev() {
        let mut s = y[i];
        for k in i + 1..P {
            s -= l[k][i] * x[k];
        }
        x[i] = s / l[i][i];
    }
    x
}

/// Inverse of a symmetric positive semi-definite matrix, robust to parameters that the data do
/// not constrain at all.
///
/// The matrix is first scaled to unit diagonal (Jacobi scaling, which makes the Cholesky test
/// independent of the parameters' units). Parameters whose diagonal is zero (a column of the
/// Jacobian that is identically zero, e.g. the rotation of a round peak) are left out and get an
/// infinite variance. Returns `None` when the remaining matrix is not positive definite.
pub(crate) fn inverse_spd<const P: usize>(a: &[[f64; P]; P]) -> Option<[[f64; P]; P]> {
    let mut scale = [0.0; P];
    let mut active = [false; P];
    for i in 0..P {
        let d = a[i][i];
        if !d.is_finite() || d < 0.0 {
            return None;
        }
        if d > 0.0 {
            active[i] = true;
            scale[i] = 1.0 / d.sqrt();
        }
    }
    let mut m = [[0.0; P]; P];
    for i in 0..P {
        for j in 0..P {
            m[i][j] = if active[i] && active[j] {
                a[i][j] * scale[i] * scale[j]
            } else if i == j {
                1.0
            } else {
                0.0
            };
        }
    }
    let l = cholesky(&m)?;
    let mut inv = [[0.0; P]; P];
    for j in 0..P {
        let mut e = [0.0; P];
        e[j] = 1.0;
        let col = cholesky_solve(&l, &e);
        for i in 0..P {
            inv[i][j] = col[i];
        }
    }
    for i in 0..P {
        for j in 0..P {
            inv[i][j] = if active[i] && active[j] {
                inv[i][j] * scale[i] * scale[j]
            } else if i == j {
                f64::INFINITY
            } else {
                0.0
            };
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd() -> [[f64; 4]; 4] {
        // B Bᵀ + I for a fixed B: symmetric positive definite, with mixed scales.
        let b = [
            [1.0, 2.0, 0.5, -1.0],
            [0.0, 3.0, 1.0, 2.0],
            [4.0, -1.0, 2.0, 0.0],
            [1.0, 1.0, 1.0, 100.0],
        ];
        let mut a = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                a[i][j] = (0..4).map(|k| b[i][k] * b[j][k]).sum::<f64>();
            }
            a[i][i] += 1.0;
        }
        a
    }

    #[test]
    fn solve_matches_matrix_product() {
        let a = spd();
        let x_true = [1.0, -2.0, 0.25, 3.0];
        let mut b = [0.0; 4];
        for i in 0..4 {
            b[i] = (0..4).map(|k| a[i][k] * x_true[k]).sum();
        }
        let l = cholesky(&a).unwrap();
        let x = cholesky_solve(&l, &b);
        for i in 0..4 {
            assert!((x[i] - x_true[i]).abs() < 1e-10, "{x:?}");
        }
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let a = spd();
        let inv = inverse_spd(&a).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let p: f64 = (0..4).map(|k| a[i][k] * inv[k][j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((p - want).abs() < 1e-10, "({i},{j}) = {p}");
            }
        }
    }

    #[test]
    fn unconstrained_parameter_gets_infinite_variance() {
        let mut a = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]];
        let inv = inverse_spd(&a).unwrap();
        assert!(inv[2][2].is_infinite());
        // The constrained block is the inverse of [[2, .5], [.5, 1]]: det 1.75.
        assert!((inv[0][0] - 1.0 / 1.75).abs() < 1e-12);
        assert!((inv[1][1] - 2.0 / 1.75).abs() < 1e-12);
        a[0][1] = 5.0;
        a[1][0] = 5.0;
        assert!(inverse_spd(&a).is_none(), "indefinite must be rejected");
    }

    #[test]
    fn non_positive_definite_is_rejected() {
        assert!(cholesky(&[[1.0, 2.0], [2.0, 1.0]]).is_none());
        assert!(cholesky(&[[f64::NAN, 0.0], [0.0, 1.0]]).is_none());
    }
}
