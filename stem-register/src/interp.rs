//! Interpolation kernels shared by warping and the scan-line model.

/// Keys' cubic convolution kernel (a = −0.5): weights for the samples at offsets −1, 0, 1, 2
/// from `floor(x)` given the fraction `f = x − floor(x)`, and the weights of the derivative
/// d/dx. R. Keys, IEEE Trans. ASSP 29(6) 1153 (1981).
#[inline]
pub(crate) fn keys(f: f64) -> ([f64; 4], [f64; 4]) {
    const A: f64 = -0.5;
    // w(t) for t = f − i, i = −1..2; distances |t| = 1 + f, f, 1 − f, 2 − f
    let near = |t: f64| (A + 2.0) * t * t * t - (A + 3.0) * t * t + 1.0;
    let far = |t: f64| A * t * t * t - 5.0 * A * t * t + 8.0 * A * t - 4.0 * A;
    let dnear = |t: f64| 3.0 * (A + 2.0) * t * t - 2.0 * (A + 3.0) * t;
    let dfar = |t: f64| 3.0 * A * t * t - 10.0 * A * t + 8.0 * A;
    let w = [far(1.0 + f), near(f), near(1.0 - f), far(2.0 - f)];
    // d/df w(f − i): sign(f − i)·w'(|f − i|)
    let d = [dfar(1.0 + f), dnear(f), -dnear(1.0 - f), -dfar(2.0 - f)];
    (w, d)
}

/// Clamps an index to `0..n` (edge replication).
#[inline]
pub(crate) fn clamp_index(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_weights_partition_unity_and_reproduce_linear() {
        for k in 0..=20 {
            let f = k as f64 / 20.0;
            let (w, d) = keys(f);
            // exact for constants and linear functions (Keys' kernel is third-order accurate)
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let lin: f64 = w
                .iter()
                .enumerate()
                .map(|(i, wi)| wi * (i as f64 - 1.0))
                .sum();
            assert!((lin - f).abs() < 1e-12);
            assert!(d.iter().sum::<f64>().abs() < 1e-12);
            let dl: f64 = d
                .iter()
                .enumerate()
                .map(|(i, di)| di * (i as f64 - 1.0))
                .sum();
            assert!((dl - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn keys_derivative_matches_finite_difference() {
        let h = 1e-6;
        for k in 1..20 {
            let f = k as f64 / 20.0;
            let (wp, _) = keys(f + h);
            let (wm, _) = keys(f - h);
            let (_, d) = keys(f);
            for i in 0..4 {
                // central difference error O(h²) ≈ 1e-12, rounding ≈ 1e-10
                assert!(((wp[i] - wm[i]) / (2.0 * h) - d[i]).abs() < 1e-7);
            }
        }
    }
}
