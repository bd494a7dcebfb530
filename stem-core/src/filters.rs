//! Basic linear filters on images.
//!
//! [`gaussian_blur`] is a separable Gaussian filter with mirror ("reflect", `d c b a | a b c d`)
//! boundaries, the mode scipy.ndimage calls `reflect`; the kernel is truncated at
//! `truncate · σ` and normalised to sum 1. It is used to pre-smooth noisy images before peak
//! finding and registration.
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::filters::gaussian_blur;
//!
//! let mut a = Array2::<f32>::zeros((9, 9));
//! a[[4, 4]] = 1.0;
//! let b = gaussian_blur(a.view(), 1.0, 4.0).unwrap();
//! assert!((b.sum() - 1.0).abs() < 1e-6); // mass is conserved away from the borders
//! assert!(b[[4, 4]] > b[[4, 5]] && b[[4, 5]] > b[[4, 6]]);
//! ```

use crate::error::{Error, Result};
use crate::real::Real;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Largest kernel radius [`gaussian_kernel`] builds (px); larger requests are an error rather
/// than a multi-gigabyte allocation.
pub const MAX_KERNEL_RADIUS: usize = 1 << 20;

/// Normalised 1-D Gaussian kernel of standard deviation `sigma` (samples), radius
/// `round(truncate·σ)` (at least 0), as scipy.ndimage builds it.
pub fn gaussian_kernel(sigma: f64, truncate: f64) -> Result<Vec<f64>> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::invalid(
            "sigma",
            format!("must be finite and >= 0, got {sigma}"),
        ));
    }
    if !(truncate.is_finite() && truncate > 0.0) {
        return Err(Error::invalid(
            "truncate",
            format!("must be finite and > 0, got {truncate}"),
        ));
    }
    if sigma == 0.0 {
        return Ok(vec![1.0]);
    }
    let radius = (truncate * sigma + 0.5).floor();
    if radius > MAX_KERNEL_RADIUS as f64 {
        return Err(Error::invalid(
            "sigma",
            format!(
                "kernel radius truncate·sigma = {} px exceeds {MAX_KERNEL_RADIUS} px",
                truncate * sigma
            ),
        ));
    }
    let radius = radius as i64;
    let k: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    Ok(k.into_iter().map(|v| v / s).collect())
}

/// Mirror index with scipy.ndimage's `reflect` rule (`d c b a | a b c d | d c b a`, edge
/// sample repeated, period `2n`), valid for any offset; `n` must be at least 1.
#[inline]
pub(crate) fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let m = i.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

fn convolve_rows(src: ArrayView2<'_, f64>, kernel: &[f64], out: &mut Array2<f64>) {
    let r = (kernel.len() / 2) as isize;
    let nx = src.ncols();
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(src.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut o, s)| {
            for j in 0..nx {
                let mut acc = 0.0;
                for (t, &w) in kernel.iter().enumerate() {
                    acc += w * s[reflect(j as isize + t as isize - r, nx)];
                }
                o[j] = acc;
            }
        });
}

/// Separable Gaussian blur of an image (`[y, x]`), σ in pixels, computed in f64.
///
/// Errors: empty image, non-finite pixels, invalid σ / truncate.
pub fn gaussian_blur<T: Real>(
    image: ArrayView2<'_, T>,
    sigma_px: f64,
    truncate: f64,
) -> Result<Array2<T>> {
    if image.is_empty() {
        return Err(Error::EmptyInput { what: "image" });
    }
    if let Some(index) = image.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "image",
            index,
        });
    }
    let kernel = gaussian_kernel(sigma_px, truncate)?;
    let src = image.mapv(|v| v.to_f64_lossless());
    let mut tmp = Array2::<f64>::zeros(src.dim());
    convolve_rows(src.view(), &kernel, &mut tmp);
    let t = tmp.t().to_owned();
    let mut out_t = Array2::<f64>::zeros(t.dim());
    convolve_rows(t.view(), &kernel, &mut out_t);
    Ok(out_t.t().mapv(T::from_f64_lossy))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 2-D convolution with the outer-product kernel, as the oracle.
    fn direct(a: &Array2<f64>, sigma: f64) -> Array2<f64> {
        let k = gaussian_kernel(sigma, 4.0).unwrap();
        let r = (k.len() / 2) as isize;
        let (ny, nx) = a.dim();
        Array2::from_shape_fn((ny, nx), |(i, j)| {
            let mut acc = 0.0;
            for (u, wu) in k.iter().enumerate() {
                for (v, wv) in k.iter().enumerate() {
                    let y = reflect(i as isize + u as isize - r, ny);
                    let x = reflect(j as isize + v as isize - r, nx);
                    acc += wu * wv * a[[y, x]];
                }
            }
            acc
        })
    }

    #[test]
    fn matches_direct_convolution() {
        let a = Array2::from_shape_fn((13, 7), |(i, j)| ((i * 31 + j * 17) % 11) as f64);
        let fast = gaussian_blur(a.view(), 1.7, 4.0).unwrap();
        let slow = direct(&a, 1.7);
        let err = (&fast - &slow)
            .mapv(f64::abs)
            .fold(0.0f64, |m, &v| m.max(v));
        assert!(err < 1e-12, "max error {err}");
    }

    #[test]
    fn reflect_rule_matches_scipy() {
        // scipy 'reflect' on n = 3: index -1 -> 0, -2 -> 1, 3 -> 2, 4 -> 1, 6 -> 0 (period 6).
        let got: Vec<usize> = [-1, -2, 3, 4, 6, -4]
            .iter()
            .map(|&i| reflect(i, 3))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 1, 0, 2]);
    }

    #[test]
    fn constant_image_is_unchanged_and_sigma_zero_is_identity() {
        let a = Array2::<f32>::from_elem((5, 6), 3.0);
        let b = gaussian_blur(a.view(), 2.5, 4.0).unwrap();
        assert!(b.iter().all(|&v| (v - 3.0).abs() < 1e-6));
        let c = Array2::from_shape_fn((4, 4), |(i, j)| (i * 4 + j) as f32);
        assert_eq!(gaussian_blur(c.view(), 0.0, 4.0).unwrap(), c);
    }

    #[test]
    fn bad_input_is_an_error() {
        let a = Array2::<f32>::zeros((0, 3));
        assert!(matches!(
            gaussian_blur(a.view(), 1.0, 4.0),
            Err(Error::EmptyInput { .. })
        ));
        let mut b = Array2::<f32>::zeros((3, 3));
        b[[1, 2]] = f32::NAN;
        assert!(matches!(
            gaussian_blur(b.view(), 1.0, 4.0),
            Err(Error::NonFinite { index: 5, .. })
        ));
        let c = Array2::<f32>::zeros((3, 3));
        assert!(gaussian_blur(c.view(), -1.0, 4.0).is_err());
        assert!(gaussian_blur(c.view(), 1.0, 0.0).is_err());
        assert!(matches!(
            gaussian_blur(c.view(), 1e12, 4.0),
            Err(Error::InvalidParameter { name: "sigma", .. })
        ));
    }
}
