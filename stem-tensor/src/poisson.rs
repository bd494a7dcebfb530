//! Poisson-aware scaling (Keenan & Kotula, Surf. Interface Anal. 36, 203, 2004) and Poisson
//! surrogate noise for rank selection.
//!
//! Counts data `Y` are laid out as `n_nav × n_sig` (navigation positions × signal channels,
//! e.g. scan positions × flattened detector pixels). With `g_i = Σ_j Y_ij` (counts per
//! navigation position) and `h_j = Σ_i Y_ij` (counts per channel), the weights are
//! `W_ij = √g_i · √h_j` (zeros replaced by 1). A low-rank model is fitted to `Y / W` and the
//! result multiplied back by `W`. This is what hyperspy's
//! `decomposition(normalize_poissonian_noise=True)` does; it turns the rank-1 mean model's
//! heteroscedastic Poisson variance `g_i h_j / N` into a constant `1/N`.
//!
//! The **Poisson surrogate** is `Z = Poisson(M₀) − M₀` with the rank-1 mean model
//! `M₀ = g ⊗ h / N` (`N` = total counts): pure noise with the data's heteroscedastic variance,
//! used as the null of the projected parallel analysis ([`crate::ranks`]). Each navigation
//! position `i` draws from its own ChaCha8 stream (`seed`, stream `i`), so the surrogate is the
//! same whether it is generated in memory or chunk by chunk, on any number of threads.

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;

/// Keenan–Kotula weights `W_ij = √g_i · √h_j` (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PoissonScaling {
    /// `√g_i` per navigation position (1 where `g_i = 0`).
    pub nav_weights: Vec<f64>,
    /// `√h_j` per signal channel (1 where `h_j = 0`).
    pub sig_weights: Vec<f64>,
    /// Counts per navigation position `g_i`.
    pub nav_counts: Vec<f64>,
    /// Counts per signal channel `h_j`.
    pub sig_counts: Vec<f64>,
}

fn root(v: f64) -> f64 {
    if v > 0.0 { v.sqrt() } else { 1.0 }
}

impl PoissonScaling {
    /// Weights from the row sums `g` (per navigation position) and column sums `h` (per channel)
    /// of the counts; these can be accumulated chunk by chunk.
    ///
    /// # Errors
    /// [`Error::NonFinite`] / [`Error::Negative`] for invalid sums.
    pub fn from_sums(nav_counts: Vec<f64>, sig_counts: Vec<f64>) -> Result<Self> {
        for (what, v) in [("nav_counts", &nav_counts), ("sig_counts", &sig_counts)] {
            if let Some((index, _)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(Error::NonFinite { what, index });
            }
            if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| **x < 0.0) {
                return Err(Error::Negative { index, value });
            }
        }
        Ok(PoissonScaling {
            nav_weights: nav_counts.iter().map(|&v| root(v)).collect(),
            sig_weights: sig_counts.iter().map(|&v| root(v)).collect(),
            nav_counts,
            sig_counts,
        })
    }

    /// Weights of a row-major `n_nav × n_sig` counts matrix.
    ///
    /// ```
    /// use stem_tensor::poisson::PoissonScaling;
    /// let y = [1.0, 3.0, 0.0, 4.0]; // 2 positions × 2 channels
    /// let w = PoissonScaling::from_counts(&y, 2)?;
    /// assert_eq!(w.nav_counts, vec![4.0, 4.0]);
    /// assert_eq!(w.sig_counts, vec![1.0, 7.0]);
    /// assert!((w.weight(0, 1) - (4.0f64 * 7.0).sqrt()).abs() < 1e-12);
    /// # Ok::<(), stem_tensor::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `n_sig` is 0 or does not divide the length;
    /// [`Error::NonFinite`], [`Error::Negative`] for invalid counts.
    pub fn from_counts(data: &[f64], n_sig: usize) -> Result<Self> {
        if n_sig == 0 || data.len() % n_sig != 0 {
            return Err(Error::invalid(
                "n_sig",
                format!("{n_sig} does not divide the data length {}", data.len()),
            ));
        }
        if let Some((index, _)) = data.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFinite {
                what: "counts",
                index,
            });
        }
        if let Some((index, &value)) = data.iter().enumerate().find(|(_, x)| **x < 0.0) {
            return Err(Error::Negative { index, value });
        }
        let nav: Vec<f64> = data.par_chunks(n_sig).map(|r| r.iter().sum()).collect();
        let sig = data
            .par_chunks(64 * n_sig)
            .map(|blk| {
                let mut s = vec![0.0f64; n_sig];
                for row in blk.chunks_exact(n_sig) {
                    for (a, b) in s.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                s
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0.0f64; n_sig], |mut acc, s| {
                for (a, b) in acc.iter_mut().zip(&s) {
                    *a += b;
                }
                acc
            });
        Self::from_sums(nav, sig)
    }

    /// `W_ij`.
    pub fn weight(&self, nav: usize, sig: usize) -> f64 {
        self.nav_weights[nav] * self.sig_weights[sig]
    }

    /// Total counts `N`.
    pub fn total(&self) -> f64 {
        self.nav_counts.iter().sum()
    }

    /// Divides the rows `first_nav, first_nav + 1, …` of a row-major block by `W`.
    pub fn scale_rows(&self, first_nav: usize, rows: &mut [f64]) {
        let n = self.sig_weights.len();
        rows.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let g = self.nav_weights[first_nav + i];
            for (v, h) in row.iter_mut().zip(&self.sig_weights) {
                *v /= g * h;
            }
        });
    }

    /// Multiplies the rows `first_nav, …` of a row-major block by `W` (undoes
    /// [`scale_rows`](Self::scale_rows)).
    pub fn unscale_rows(&self, first_nav: usize, rows: &mut [f64]) {
        let n = self.sig_weights.len();
        rows.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let g = self.nav_weights[first_nav + i];
            for (v, h) in row.iter_mut().zip(&self.sig_weights) {
                *v *= g * h;
            }
        });
    }

    /// The Poisson surrogate noise rows `first_nav .. first_nav + rows.len()/n_sig` (see the
    /// module docs), divided by `W` when `scaled`.
    pub fn surrogate_rows(&self, first_nav: usize, rows: &mut [f64], seed: u64, scaled: bool) {
        let n = self.sig_weights.len();
        let total = self.total();
        rows.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let nav = first_nav + i;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(nav as u64);
            let g = self.nav_counts[nav];
            for (j, v) in row.iter_mut().enumerate() {
                let mean = if total > 0.0 {
                    g * self.sig_counts[j] / total
                } else {
                    0.0
                };
                let draw = match Poisson::new(mean) {
                    Ok(d) => d.sample(&mut rng),
                    Err(_) => 0.0,
                };
                let z = draw - mean;
                *v = if scaled {
                    z / (self.nav_weights[nav] * self.sig_weights[j])
                } else {
                    z
                };
            }
        });
    }
}

/// Poisson surrogate noise `Poisson(m) − m` around an arbitrary mean `m` (negative means are
/// clamped to 0), frame `i` (row of `n_sig` values) drawing from ChaCha8 stream `i` of `seed`.
pub fn surrogate_from_mean(mean: &[f64], n_sig: usize, out: &mut [f64], seed: u64) {
    surrogate_from_mean_at(0, mean, n_sig, out, seed);
}

/// [`surrogate_from_mean`] for the frames `first_frame, first_frame + 1, …` of a larger cube:
/// frame `first_frame + i` draws from ChaCha8 stream `first_frame + i` of `seed`, so a cube
/// generated chunk by chunk equals the cube generated at once.
pub fn surrogate_from_mean_at(
    first_frame: usize,
    mean: &[f64],
    n_sig: usize,
    out: &mut [f64],
    seed: u64,
) {
    if n_sig == 0 {
        return;
    }
    out.par_chunks_mut(n_sig)
        .zip(mean.par_chunks(n_sig))
        .enumerate()
        .for_each(|(i, (o, m))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream((first_frame + i) as u64);
            for (z, &mu) in o.iter_mut().zip(m) {
                let mu = mu.max(0.0);
                let draw = match Poisson::new(mu) {
                    Ok(d) => d.sample(&mut rng),
                    Err(_) => 0.0,
                };
                *z = draw - mu;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(matches!(
            PoissonScaling::from_counts(&[1.0, 2.0, 3.0], 2),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            PoissonScaling::from_counts(&[1.0, -2.0], 2),
            Err(Error::Negative { index: 1, .. })
        ));
        assert!(matches!(
            PoissonScaling::from_counts(&[1.0, f64::NAN], 2),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn scale_unscale_roundtrip_and_zero_guard() {
        let y = vec![0.0, 0.0, 2.0, 8.0];
        let w = PoissonScaling::from_counts(&y, 2).unwrap();
        assert_eq!(w.nav_weights[0], 1.0); // empty row → weight 1
        let mut z = y.clone();
        w.scale_rows(0, &mut z);
        assert!((z[3] - 8.0 / (10.0f64.sqrt() * 8.0f64.sqrt())).abs() < 1e-12);
        w.unscale_rows(0, &mut z);
        for (a, b) in z.iter().zip(&y) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// The surrogate has mean ≈ 0 and variance ≈ M₀ (Poisson), and after scaling a variance
    /// ≈ 1/N everywhere; it is reproducible from the seed and independent of chunking.
    #[test]
    fn surrogate_statistics_and_reproducibility() {
        let (n_nav, n_sig) = (400, 50);
        let y: Vec<f64> = (0..n_nav * n_sig)
            .map(|k| 1.0 + ((k % n_sig) as f64) * 0.2 + ((k / n_sig) % 3) as f64)
            .collect();
        let w = PoissonScaling::from_counts(&y, n_sig).unwrap();
        let mut z = vec![0.0; y.len()];
        w.surrogate_rows(0, &mut z, 7, false);
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let m0_mean = y.iter().sum::<f64>() / y.len() as f64;
        let var = z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64;
        // 20 000 draws: standard error of the mean ≈ sqrt(6/20000) ≈ 0.017.
        assert!(mean.abs() < 0.06, "{mean}");
        // Variance ≈ mean of M₀ = mean of Y; relative standard error ≈ 1.5 %.
        assert!((var / m0_mean - 1.0).abs() < 0.06, "{var} vs {m0_mean}");
        let mut z2 = vec![0.0; y.len()];
        let half = n_nav / 2 * n_sig;
        w.surrogate_rows(0, &mut z2[..half], 7, false);
        w.surrogate_rows(n_nav / 2, &mut z2[half..], 7, false);
        assert_eq!(z, z2);
        let mut zs = vec![0.0; y.len()];
        w.surrogate_rows(0, &mut zs, 7, true);
        let vs = zs.iter().map(|v| v * v).sum::<f64>() / zs.len() as f64;
        assert!((vs * w.total() - 1.0).abs() < 0.06, "{}", vs * w.total());
    }
}
