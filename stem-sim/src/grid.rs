//! The simulation grid: points `[ny, nx]` and sampling `[dy, dx]` in Å over a periodic cell.
//!
//! Spatial frequencies follow numpy's `fftfreq` (cycles per Å, no 2π): `k_x[j] = fftfreq(nx, dx)[j]`.
//! Scattering angles use the small-angle form α = λ|k| (rad), as abTEM does.

use crate::error::{Error, Result};
use crate::potential::SlicedPotential;
use stem_core::Real;

/// A periodic 2-D grid of `gpts = [ny, nx]` points with sampling `[dy, dx]` in Å.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    gpts: [usize; 2],
    sampling_a: [f64; 2],
}

impl Grid {
    /// A grid of `gpts = [ny, nx]` points over a cell of `extent_a = [L_y, L_x]` Å.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a zero dimension or a non-finite or non-positive extent.
    ///
    /// ```
    /// let g = stem_sim::grid::Grid::new([256, 256], [15.62, 15.62]).unwrap();
    /// assert!((g.sampling_a()[1] - 0.061015625).abs() < 1e-12);
    /// ```
    pub fn new(gpts: [usize; 2], extent_a: [f64; 2]) -> Result<Self> {
        if gpts.contains(&0) {
            return Err(Error::invalid(
                "gpts",
                format!("grid points must be >= 1, got {gpts:?}"),
            ));
        }
        if extent_a.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return Err(Error::invalid(
                "extent_a",
                format!("extent must be finite and > 0 Å, got {extent_a:?}"),
            ));
        }
        Ok(Self {
            gpts,
            sampling_a: [extent_a[0] / gpts[0] as f64, extent_a[1] / gpts[1] as f64],
        })
    }

    /// The grid of a sliced potential.
    pub fn of_potential<T: Real>(potential: &SlicedPotential<T>) -> Self {
        Self {
            gpts: potential.gpts(),
            sampling_a: potential.sampling_a(),
        }
    }

    /// Grid points `[ny, nx]`.
    pub fn gpts(&self) -> [usize; 2] {
        self.gpts
    }

    /// Sampling `[dy, dx]` in Å per pixel.
    pub fn sampling_a(&self) -> [f64; 2] {
        self.sampling_a
    }

    /// Extent `[L_y, L_x]` in Å.
    pub fn extent_a(&self) -> [f64; 2] {
        [
            self.sampling_a[0] * self.gpts[0] as f64,
            self.sampling_a[1] * self.gpts[1] as f64,
        ]
    }

    /// Number of pixels `ny · nx`.
    pub fn len(&self) -> usize {
        self.gpts[0] * self.gpts[1]
    }

    /// Always false (a grid has at least one point); present for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Spatial frequencies along y in Å⁻¹ (numpy `fftfreq(ny, dy)` order).
    pub fn ky(&self) -> Vec<f64> {
        stem_core::fft::fftfreq(self.gpts[0], self.sampling_a[0])
    }

    /// Spatial frequencies along x in Å⁻¹ (numpy `fftfreq(nx, dx)` order).
    pub fn kx(&self) -> Vec<f64> {
        stem_core::fft::fftfreq(self.gpts[1], self.sampling_a[1])
    }

    /// Reciprocal pixel size `[1/L_y, 1/L_x]` in Å⁻¹.
    pub fn reciprocal_sampling(&self) -> [f64; 2] {
        let e = self.extent_a();
        [1.0 / e[0], 1.0 / e[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(Grid::new([0, 4], [1.0, 1.0]).is_err());
        assert!(Grid::new([4, 4], [0.0, 1.0]).is_err());
        assert!(Grid::new([4, 4], [1.0, f64::NAN]).is_err());
        let g = Grid::new([4, 8], [2.0, 4.0]).unwrap();
        assert_eq!(g.sampling_a(), [0.5, 0.5]);
        assert_eq!(g.kx().len(), 8);
        assert!((g.kx()[1] - 0.25).abs() < 1e-15);
        assert_eq!(g.len(), 32);
    }
}
