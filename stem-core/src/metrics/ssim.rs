//! Structural similarity (SSIM) with a Gaussian window.

use super::{check_data_range, check_pair};
use crate::error::{Error, Result};
use crate::filters::{gaussian_kernel, reflect};
use crate::parallel::Parallelism;
use crate::real::Real;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Output rows per work unit. Fixed (not derived from the thread count) so that results never
/// depend on the number of threads.
const BLOCK_ROWS: usize = 32;

/// Parameters of [`ssim`] and [`ssim_map`] (Wang et al., "Image quality assessment: from error
/// visibility to structural similarity", IEEE TIP 13, 600–612, 2004).
///
/// Local means, variances and the covariance are Gaussian-weighted averages with standard
/// deviation `sigma` (px), a kernel truncated at radius `r = floor(truncate·sigma + 0.5)` px
/// (so `win_size = 2r + 1`, 11 for the defaults) and scipy.ndimage's `'reflect'` boundary
/// (`d c b a | a b c d | d c b a`). With `C1 = (k1·data_range)²` and `C2 = (k2·data_range)²`:
///
/// ```text
/// SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))
/// ```
///
/// with population (not sample) variances. This equals scikit-image (≥ 0.19)
/// `structural_similarity(reference, test, data_range=data_range, gaussian_weights=True,
/// sigma=sigma, use_sample_covariance=False, K1=k1, K2=k2)` for `truncate = 3.5`.
#[derive(Clone, Debug, PartialEq)]
pub struct SsimConfig {
    /// Dynamic range `R` of the pixel values (units of the pixel values), finite and > 0.
    /// No default: 1 for images in `[0, 1]`, 255 for 8-bit data, otherwise usually
    /// [`data_range_of`](super::data_range_of)`(reference)`.
    pub data_range: f64,
    /// Standard deviation of the Gaussian window in px, finite and > 0. Default 1.5.
    pub sigma: f64,
    /// Luminance stabilising constant, finite and > 0. Default 0.01.
    pub k1: f64,
    /// Contrast stabilising constant, finite and > 0. Default 0.03.
    pub k2: f64,
    /// Kernel truncation in units of `sigma`, finite and > 0. Default 3.5 (scikit-image's
    /// value for Gaussian weights).
    pub truncate: f64,
    /// Threads to use; the result does not depend on it. Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl SsimConfig {
    /// The standard configuration for a given data range: `sigma = 1.5`, `k1 = 0.01`,
    /// `k2 = 0.03`, `truncate = 3.5`, automatic parallelism.
    pub fn new(data_range: f64) -> Self {
        SsimConfig {
            data_range,
            sigma: 1.5,
            k1: 0.01,
            k2: 0.03,
            truncate: 3.5,
            parallelism: Parallelism::Auto,
        }
    }

    /// Side of the square window in px, `2·floor(truncate·sigma + 0.5) + 1` (11 by default).
    /// Both image dimensions must be at least this large.
    pub fn win_size(&self) -> Result<usize> {
        self.validate()?;
        let r = (self.truncate * self.sigma + 0.5).floor();
        if r > (u32::MAX / 4) as f64 {
            return Err(Error::invalid(
                "truncate",
                format!(
                    "kernel radius truncate·sigma = {} px is unreasonably large",
                    self.truncate * self.sigma
                ),
            ));
        }
        Ok(2 * r as usize + 1)
    }

    fn validate(&self) -> Result<()> {
        check_data_range(self.data_range)?;
        for (name, v) in [
            ("sigma", self.sigma),
            ("k1", self.k1),
            ("k2", self.k2),
            ("truncate", self.truncate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Mean SSIM of `test` against `reference`: the mean of [`ssim_map`] after cropping
/// `(win_size − 1)/2` px from every border (5 px by default), as scikit-image does.
///
/// 1 for identical images, symmetric in its two arguments, at most 1. Computed in `f64` with a
/// separable Gaussian filter, O(N·win_size) per image.
///
/// Errors: shapes differ, empty images, NaN/infinite pixels, an invalid [`SsimConfig`] field, or
/// an image smaller than `win_size` in either dimension ([`Error::InvalidParameter`]).
pub fn ssim<T: Real>(
    reference: ArrayView2<'_, T>,
    test: ArrayView2<'_, T>,
    config: &SsimConfig,
) -> Result<f64> {
    let plan = Plan::new(reference, test, config)?;
    let (ny, nx) = reference.dim();
    let r = plan.r;
    let n_blocks = ny.div_ceil(BLOCK_ROWS);
    let block_sums: Vec<f64> = config.parallelism.install(|| {
        (0..n_blocks)
            .into_par_iter()
            .map_init(
                || (Scratch::new(nx, r), vec![0.0; BLOCK_ROWS * nx]),
                |(scratch, out), b| {
                    let y0 = b * BLOCK_ROWS;
                    let rows = BLOCK_ROWS.min(ny - y0);
                    let out = &mut out[..rows * nx];
                    plan.fill_rows(y0, out, scratch);
                    out.chunks_exact(nx)
                        .enumerate()
                        .filter(|&(i, _)| y0 + i >= r && y0 + i < ny - r)
                        .map(|(_, row)| row[r..nx - r].iter().sum::<f64>())
                        .sum::<f64>()
                },
            )
            .collect()
    })?;
    let count = ((ny - 2 * r) * (nx - 2 * r)) as f64;
    Ok(block_sums.iter().sum::<f64>() / count)
}

/// The full SSIM map (shape of the inputs, no cropping; scikit-image's `full=True` output):
/// the local SSIM of [`SsimConfig`] at every pixel. Border values use reflected data.
///
/// Errors as [`ssim`].
pub fn ssim_map<T: Real>(
    reference: ArrayView2<'_, T>,
    test: ArrayView2<'_, T>,
    config: &SsimConfig,
) -> Result<Array2<f64>> {
    let plan = Plan::new(reference, test, config)?;
    let (ny, nx) = reference.dim();
    let mut map = vec![0.0; ny * nx];
    config.parallelism.install(|| {
        map.par_chunks_mut(BLOCK_ROWS * nx)
            .enumerate()
            .for_each_init(
                || Scratch::new(nx, plan.r),
                |scratch, (b, out)| plan.fill_rows(b * BLOCK_ROWS, out, scratch),
            );
    })?;
    Array2::from_shape_vec((ny, nx), map)
        .map_err(|e| Error::invalid("ssim_map", format!("internal shape error: {e}")))
}

/// Validated inputs, Gaussian weights and constants.
struct Plan<'a, T> {
    a: ArrayView2<'a, T>,
    b: ArrayView2<'a, T>,
    /// Normalised Gaussian taps, length `2r + 1`.
    w: Vec<f64>,
    r: usize,
    c1: f64,
    c2: f64,
}

/// Per-thread buffers: two padded input rows and the 5 horizontally filtered channels
/// (μx, μy, ⟨x²⟩, ⟨y²⟩, ⟨xy⟩) for a block of rows plus its halo.
struct Scratch {
    pa: Vec<f64>,
    pb: Vec<f64>,
    /// `[channel][halo row][x]`, channel stride `(BLOCK_ROWS + 2r)·nx`.
    h: Vec<f64>,
    /// Vertical accumulators `[channel][x]`.
    acc: Vec<f64>,
}

impl Scratch {
    fn new(nx: usize, r: usize) -> Self {
        Scratch {
            pa: vec![0.0; nx + 2 * r],
            pb: vec![0.0; nx + 2 * r],
            h: vec![0.0; 5 * (BLOCK_ROWS + 2 * r) * nx],
            acc: vec![0.0; 5 * nx],
        }
    }
}

impl<'a, T: Real> Plan<'a, T> {
    fn new(a: ArrayView2<'a, T>, b: ArrayView2<'a, T>, config: &SsimConfig) -> Result<Self> {
        check_pair(a, b)?;
        let win = config.win_size()?;
        let (ny, nx) = a.dim();
        if ny < win || nx < win {
            return Err(Error::invalid(
                "reference",
                format!(
                    "image shape [{ny}, {nx}] is smaller than the SSIM window {win}×{win} \
                     (win_size = 2·floor(truncate·sigma + 0.5) + 1)"
                ),
            ));
        }
        // Same radius rule as `win_size`: floor(truncate·sigma + 0.5).
        let w = gaussian_kernel(config.sigma, config.truncate)?;
        let r = (w.len() - 1) / 2;
        let c1 = (config.k1 * config.data_range).powi(2);
        let c2 = (config.k2 * config.data_range).powi(2);
        Ok(Plan { a, b, w, r, c1, c2 })
    }

    /// Writes SSIM map rows `y0 .. y0 + out.len()/nx` into `out` (row-major).
    fn fill_rows(&self, y0: usize, out: &mut [f64], s: &mut Scratch) {
        let (ny, nx) = self.a.dim();
        let r = self.r;
        let taps = self.w.len();
        let rows = out.len() / nx;
        let halo_rows = rows + 2 * r;
        let stride = (BLOCK_ROWS + 2 * r) * nx;

        // Horizontal pass over the source rows y0 − r .. y0 + rows + r (reflected).
        for q in 0..halo_rows {
            let sy = reflect(y0 as isize - r as isize + q as isize, ny);
            let (ra, rb) = (self.a.row(sy), self.b.row(sy));
            for k in 0..nx + 2 * r {
                let sx = reflect(k as isize - r as isize, nx);
                s.pa[k] = ra[sx].to_f64_lossless();
                s.pb[k] = rb[sx].to_f64_lossless();
            }
            let base = q * nx;
            for x in 0..nx {
                let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (t, &wt) in self.w.iter().enumerate() {
                    let (va, vb) = (s.pa[x + t], s.pb[x + t]);
                    sa += wt * va;
                    sb += wt * vb;
                    saa += wt * (va * va);
                    sbb += wt * (vb * vb);
                    sab += wt * (va * vb);
                }
                s.h[base + x] = sa;
                s.h[stride + base + x] = sb;
                s.h[2 * stride + base + x] = saa;
                s.h[3 * stride + base + x] = sbb;
                s.h[4 * stride + base + x] = sab;
            }
        }

        // Vertical pass and the SSIM formula, one output row at a time.
        for (li, out_row) in out.chunks_exact_mut(nx).enumerate() {
            s.acc.iter_mut().for_each(|v| *v = 0.0);
            for c in 0..5 {
                let acc = &mut s.acc[c * nx..(c + 1) * nx];
                for t in 0..taps {
                    let wt = self.w[t];
                    let start = c * stride + (li + t) * nx;
                    let src = &s.h[start..start + nx];
                    acc.iter_mut().zip(src).for_each(|(a, &v)| *a += wt * v);
                }
            }
            let (ux, rest) = s.acc.split_at(nx);
            let (uy, rest) = rest.split_at(nx);
            let (uxx, rest) = rest.split_at(nx);
            let (uyy, uxy) = rest.split_at(nx);
            for x in 0..nx {
                let (mx, my) = (ux[x], uy[x]);
                let vx = uxx[x] - mx * mx;
                let vy = uyy[x] - my * my;
                let vxy = uxy[x] - mx * my;
                let a1 = 2.0 * mx * my + self.c1;
                let a2 = 2.0 * vxy + self.c2;
                let b1 = mx * mx + my * my + self.c1;
                let b2 = vx + vy + self.c2;
                out_row[x] = (a1 * a2) / (b1 * b2);
            }
        }
    }
}
