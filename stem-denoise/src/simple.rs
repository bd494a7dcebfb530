//! Baseline denoisers: Gaussian blur and median filter (on counts).

use crate::{Denoiser, Error, Result, check_counts, like, reflect};
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use stem_core::progress::check_cancel;
use stem_core::{Image, ImageView, Parallelism, Progress};

/// Gaussian blur of the counts with a fixed σ (px); [`stem_core::filters::gaussian_blur`]
/// (reflect borders, truncated at 4σ).
///
/// ```
/// use stem_denoise::{Denoiser, GaussianDenoiser};
/// let a = ndarray::Array2::from_shape_fn((16, 16), |(i, j)| ((i + j) % 2) as f32);
/// let out = GaussianDenoiser::new(1.0).unwrap().denoise((&a).into(), &stem_core::NoProgress).unwrap();
/// assert!((out.data()[[8, 8]] - 0.5).abs() < 0.05);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianDenoiser {
    sigma_px: f64,
}

impl GaussianDenoiser {
    /// A Gaussian filter of standard deviation `sigma_px` (px, finite, > 0).
    pub fn new(sigma_px: f64) -> Result<Self> {
        if !(sigma_px.is_finite() && sigma_px > 0.0) {
            return Err(Error::invalid(
                "sigma_px",
                format!("must be finite and > 0, got {sigma_px}"),
            ));
        }
        Ok(GaussianDenoiser { sigma_px })
    }
}

impl Denoiser for GaussianDenoiser {
    fn name(&self) -> &'static str {
        "gaussian"
    }
    fn denoise(&self, counts: ImageView<'_, f32>, progress: &dyn Progress) -> Result<Image<f32>> {
        check_counts(counts, 1)?;
        check_cancel(progress)?;
        let out = stem_core::filters::gaussian_blur(counts.data(), self.sigma_px, 4.0)?;
        like(out, counts)
    }
}

/// Median of the `(2r + 1)²` square around each pixel (reflect borders).
///
/// ```
/// use stem_denoise::{Denoiser, MedianDenoiser};
/// let mut a = ndarray::Array2::from_elem((9, 9), 2.0f32);
/// a[[4, 4]] = 100.0; // an outlier
/// let out = MedianDenoiser::new(1).unwrap().denoise((&a).into(), &stem_core::NoProgress).unwrap();
/// assert_eq!(out.data()[[4, 4]], 2.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MedianDenoiser {
    radius_px: usize,
    parallelism: Parallelism,
}

impl MedianDenoiser {
    /// A median filter of half-width `radius_px` (≥ 1, ≤ 32).
    pub fn new(radius_px: usize) -> Result<Self> {
        if !(1..=32).contains(&radius_px) {
            return Err(Error::invalid(
                "radius_px",
                format!("must lie in 1..=32, got {radius_px}"),
            ));
        }
        Ok(MedianDenoiser {
            radius_px,
            parallelism: Parallelism::Auto,
        })
    }

    /// Sets the thread count (results do not depend on it).
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }
}

impl Denoiser for MedianDenoiser {
    fn name(&self) -> &'static str {
        "median"
    }
    fn denoise(&self, counts: ImageView<'_, f32>, progress: &dyn Progress) -> Result<Image<f32>> {
        let r = self.radius_px as i64;
        check_counts(counts, 1)?;
        let data = counts.data();
        let [ny, nx] = counts.shape();
        progress.start("median", ny as u64);
        let mut out = Array2::<f32>::zeros((ny, nx));
        self.parallelism.install(|| {
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each_init(
                    || Vec::with_capacity(((2 * r + 1) * (2 * r + 1)) as usize),
                    |buf, (y, mut row)| {
                        if progress.is_cancelled() {
                            return;
                        }
                        for x in 0..nx {
                            buf.clear();
                            for dy in -r..=r {
                                let yy = reflect(y as i64 + dy, ny);
                                for dx in -r..=r {
                                    buf.push(data[[yy, reflect(x as i64 + dx, nx)]]);
                                }
                            }
                            let mid = buf.len() / 2;
                            let (_, m, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
                            row[x] = *m;
                        }
                        progress.advance(1);
                    },
                )
        })?;
        check_cancel(progress)?;
        like(out, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stem_core::{CancelFlag, NoProgress};

    #[test]
    fn median_matches_sorting_oracle() {
        let a = Array2::from_shape_fn((7, 9), |(i, j)| ((i * 31 + j * 17) % 11) as f32);
        let out = MedianDenoiser::new(1)
            .unwrap()
            .denoise((&a).into(), &NoProgress)
            .unwrap();
        for y in 0..7 {
            for x in 0..9 {
                let mut v = Vec::new();
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        v.push(a[[reflect(y as i64 + dy, 7), reflect(x as i64 + dx, 9)]]);
                    }
                }
                v.sort_by(f32::total_cmp);
                assert_eq!(out.data()[[y, x]], v[4]);
            }
        }
    }

    #[test]
    fn invalid_parameters_and_inputs() {
        assert!(GaussianDenoiser::new(0.0).is_err());
        assert!(GaussianDenoiser::new(f64::NAN).is_err());
        assert!(MedianDenoiser::new(0).is_err());
        let mut a = Array2::from_elem((4, 4), 1.0f32);
        a[[1, 2]] = -1.0;
        let g = GaussianDenoiser::new(1.0).unwrap();
        assert!(matches!(
            g.denoise((&a).into(), &NoProgress),
            Err(Error::NegativeCount { y: 1, x: 2, .. })
        ));
        a[[1, 2]] = f32::INFINITY;
        assert!(matches!(
            MedianDenoiser::new(1)
                .unwrap()
                .denoise((&a).into(), &NoProgress),
            Err(Error::NonFinite { y: 1, x: 2, .. })
        ));
    }

    #[test]
    fn median_cancels() {
        let a = Array2::from_elem((64, 64), 1.0f32);
        let flag = CancelFlag::cancel_after(3);
        let r = MedianDenoiser::new(1).unwrap().denoise((&a).into(), &flag);
        assert!(matches!(r, Err(Error::Core(stem_core::Error::Cancelled))));
    }
}
