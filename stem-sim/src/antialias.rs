//! The circular 2/3-Nyquist antialias aperture with a cosine taper (abTEM's default).
//!
//! With `k_c = cutoff_fraction / (2·max(dx, dy))` and `τ = taper_fraction / max(dx, dy)` (Å⁻¹):
//!
//! * A(k) = 1 for |k| ≤ k_c − τ;
//! * A(k) = ½[1 + cos(π(|k| − k_c + τ)/τ)] for k_c − τ < |k| ≤ k_c;
//! * A(k) = 0 beyond k_c.
//!
//! It multiplies both the transmission functions and the propagator, so the product of two
//! band-limited functions never aliases. The largest angle that can be simulated is λ·k_c
//! (≈ λ/(3·dx)): 137.0 mrad at dx = 0.061 Å and 200 kV.

use crate::error::{Error, Result};
use crate::grid::Grid;

/// The antialias aperture's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Antialias {
    /// Cutoff as a fraction of the Nyquist frequency 1/(2·max(dx, dy)) (default 0.6666666, as
    /// abTEM). Must be in (0, 1].
    pub cutoff_fraction: f64,
    /// Taper width as a fraction of 1/max(dx, dy) (default 0.01). Must be in [0, cutoff_fraction/2).
    pub taper_fraction: f64,
}

impl Default for Antialias {
    fn default() -> Self {
        Self {
            cutoff_fraction: 0.6666666,
            taper_fraction: 0.01,
        }
    }
}

impl Antialias {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a cutoff outside (0, 1] or a taper outside [0, cutoff/2).
    pub fn validate(&self) -> Result<()> {
        if !(self.cutoff_fraction > 0.0 && self.cutoff_fraction <= 1.0) {
            return Err(Error::invalid(
                "cutoff_fraction",
                format!("must be in (0, 1], got {}", self.cutoff_fraction),
            ));
        }
        if !(self.taper_fraction >= 0.0 && self.taper_fraction < self.cutoff_fraction / 2.0) {
            return Err(Error::invalid(
                "taper_fraction",
                format!(
                    "must be in [0, cutoff_fraction/2 = {}), got {}",
                    self.cutoff_fraction / 2.0,
                    self.taper_fraction
                ),
            ));
        }
        Ok(())
    }

    /// Cutoff frequency k_c in Å⁻¹ on `grid`.
    pub fn cutoff_k(&self, grid: &Grid) -> f64 {
        let d = grid.sampling_a()[0].max(grid.sampling_a()[1]);
        self.cutoff_fraction / (2.0 * d)
    }

    /// Taper width τ in Å⁻¹ on `grid`.
    pub fn taper_k(&self, grid: &Grid) -> f64 {
        let d = grid.sampling_a()[0].max(grid.sampling_a()[1]);
        self.taper_fraction / d
    }

    /// The largest simulated scattering angle λ·k_c in mrad for wavelength `wavelength_a` (Å).
    ///
    /// ```
    /// use stem_sim::{antialias::Antialias, grid::Grid};
    /// let g = Grid::new([256, 256], [15.62, 15.62]).unwrap();
    /// let max = Antialias::default().max_angle_mrad(&g, 0.025079340);
    /// assert!((max - 137.0).abs() < 0.1);
    /// ```
    pub fn max_angle_mrad(&self, grid: &Grid, wavelength_a: f64) -> f64 {
        1e3 * wavelength_a * self.cutoff_k(grid)
    }

    /// Aperture value at spatial frequency `k` (Å⁻¹), in [0, 1].
    pub fn value(&self, k: f64, cutoff_k: f64, taper_k: f64) -> f64 {
        if taper_k > 0.0 {
            if k <= cutoff_k - taper_k {
                1.0
            } else if k <= cutoff_k {
                0.5 * (1.0 + (std::f64::consts::PI * (k - cutoff_k + taper_k) / taper_k).cos())
            } else {
                0.0
            }
        } else if k <= cutoff_k {
            1.0
        } else {
            0.0
        }
    }

    /// The aperture on the grid as a `[ky, kx]` array in unshifted FFT order.
    pub fn array(&self, grid: &Grid) -> ndarray::Array2<f64> {
        let (kc, tau) = (self.cutoff_k(grid), self.taper_k(grid));
        let (ky, kx) = (grid.ky(), grid.kx());
        ndarray::Array2::from_shape_fn((ky.len(), kx.len()), |(i, j)| {
            self.value((ky[i] * ky[i] + kx[j] * kx[j]).sqrt(), kc, tau)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        assert!(Antialias::default().validate().is_ok());
        let bad_cut = Antialias {
            cutoff_fraction: 1.5,
            ..Default::default()
        };
        assert!(bad_cut.validate().is_err());
        let bad_taper = Antialias {
            taper_fraction: 0.5,
            ..Default::default()
        };
        assert!(bad_taper.validate().is_err());
    }

    #[test]
    fn profile_is_one_inside_zero_outside_and_half_mid_taper() {
        let a = Antialias::default();
        let g = Grid::new([256, 256], [15.62, 15.62]).unwrap();
        let (kc, tau) = (a.cutoff_k(&g), a.taper_k(&g));
        assert_eq!(a.value(0.0, kc, tau), 1.0);
        assert_eq!(a.value(kc - tau, kc, tau), 1.0);
        assert!((a.value(kc - tau / 2.0, kc, tau) - 0.5).abs() < 1e-12);
        assert_eq!(a.value(kc * 1.001, kc, tau), 0.0);
        let arr = a.array(&g);
        assert_eq!(arr[[0, 0]], 1.0);
        assert_eq!(arr[[128, 128]], 0.0);
    }
}
