//! The sliced projected potential handed from the potential builders to the multislice.

use ndarray::Array3;
use stem_core::Real;

use crate::error::{Error, Result};

/// Slices of projected potential, the input of the multislice.
///
/// * `data`: `[slice, y, x]`, projected potential of each slice in V·Å (mean not subtracted).
/// * `slice_thickness_a`: thickness of each slice in Å (one per slice).
/// * `extent_a`: lateral extent of the periodic cell `[L_y, L_x]` in Å; the sampling is
///   `extent_a / gpts`.
/// * `repeats`: the slices are applied `repeats` times in order (a crystal periodic along the beam
///   is described by one cell's slices; the multislice precomputes one transmission function per
///   stored slice). The total thickness is `repeats · Σ slice_thickness_a`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlicedPotential<T: Real> {
    data: Array3<T>,
    slice_thickness_a: Vec<f64>,
    extent_a: [f64; 2],
    repeats: usize,
}

impl<T: Real> SlicedPotential<T> {
    /// Wrap slices of projected potential (V·Å, `[slice, y, x]`), applied once.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if there are no slices or an empty grid, if the number of
    /// thicknesses differs from the number of slices, or if a thickness or extent is not finite
    /// and > 0; [`stem_core::Error::NonFinite`] (as [`Error::Core`]) for a non-finite value.
    pub fn new(data: Array3<T>, slice_thickness_a: Vec<f64>, extent_a: [f64; 2]) -> Result<Self> {
        let (n, ny, nx) = data.dim();
        if n == 0 || ny == 0 || nx == 0 {
            return Err(Error::invalid(
                "data",
                format!(
                    "need at least one slice and a non-empty grid, got shape [{n}, {ny}, {nx}]"
                ),
            ));
        }
        if slice_thickness_a.len() != n {
            return Err(Error::invalid(
                "slice_thickness_a",
                format!("{} thicknesses for {n} slices", slice_thickness_a.len()),
            ));
        }
        if let Some((i, t)) = slice_thickness_a
            .iter()
            .enumerate()
            .find(|(_, t)| !(t.is_finite() && **t > 0.0))
        {
            return Err(Error::invalid(
                "slice_thickness_a",
                format!("slice {i} has thickness {t} Å; must be finite and > 0"),
            ));
        }
        if extent_a.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
            return Err(Error::invalid(
                "extent_a",
                format!("extent must be finite and > 0, got {extent_a:?}"),
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(stem_core::Error::NonFinite {
                what: "projected potential",
                index: i,
            }
            .into());
        }
        Ok(Self {
            data,
            slice_thickness_a,
            extent_a,
            repeats: 1,
        })
    }

    /// The same slices applied `repeats` times (a crystal `repeats` cells thick).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `repeats == 0`.
    pub fn with_repeats(mut self, repeats: usize) -> Result<Self> {
        if repeats == 0 {
            return Err(Error::invalid("repeats", "must be at least 1, got 0"));
        }
        self.repeats = repeats;
        Ok(self)
    }

    /// Projected potential `[slice, y, x]` in V·Å.
    pub fn data(&self) -> &Array3<T> {
        &self.data
    }

    /// Thickness of each stored slice in Å.
    pub fn slice_thickness_a(&self) -> &[f64] {
        &self.slice_thickness_a
    }

    /// Lateral extent `[L_y, L_x]` in Å.
    pub fn extent_a(&self) -> [f64; 2] {
        self.extent_a
    }

    /// Grid points `[ny, nx]`.
    pub fn gpts(&self) -> [usize; 2] {
        let (_, ny, nx) = self.data.dim();
        [ny, nx]
    }

    /// Sampling `[dy, dx]` in Å per pixel.
    pub fn sampling_a(&self) -> [f64; 2] {
        let [ny, nx] = self.gpts();
        [self.extent_a[0] / ny as f64, self.extent_a[1] / nx as f64]
    }

    /// Number of stored slices (one repeat).
    pub fn n_slices(&self) -> usize {
        self.data.dim().0
    }

    /// How many times the stored slices are applied.
    pub fn repeats(&self) -> usize {
        self.repeats
    }

    /// Total number of slices the wave passes: `repeats · n_slices`.
    pub fn n_slices_total(&self) -> usize {
        self.repeats * self.n_slices()
    }

    /// Total thickness in Å: `repeats · Σ slice_thickness_a`.
    pub fn thickness_a(&self) -> f64 {
        self.repeats as f64 * self.slice_thickness_a.iter().sum::<f64>()
    }

    /// The same potential in another precision (values rounded with `as`-semantics via f64).
    pub fn cast<U: Real>(&self) -> SlicedPotential<U> {
        SlicedPotential {
            data: self.data.mapv(|v| U::from_f64_lossy(v.to_f64_lossless())),
            slice_thickness_a: self.slice_thickness_a.clone(),
            extent_a: self.extent_a,
            repeats: self.repeats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_reports_geometry() {
        let p = SlicedPotential::new(Array3::<f32>::zeros((2, 4, 8)), vec![1.5, 2.0], [4.0, 4.0])
            .unwrap()
            .with_repeats(3)
            .unwrap();
        assert_eq!(p.gpts(), [4, 8]);
        assert_eq!(p.sampling_a(), [1.0, 0.5]);
        assert_eq!(p.n_slices_total(), 6);
        assert!((p.thickness_a() - 10.5).abs() < 1e-12);
        assert!(p.clone().with_repeats(0).is_err());
        assert!(
            SlicedPotential::new(Array3::<f32>::zeros((2, 4, 8)), vec![1.0], [4.0, 4.0]).is_err()
        );
        assert!(
            SlicedPotential::new(Array3::<f32>::zeros((1, 4, 8)), vec![0.0], [4.0, 4.0]).is_err()
        );
        assert!(SlicedPotential::new(Array3::<f32>::zeros((0, 4, 8)), vec![], [4.0, 4.0]).is_err());
        let mut d = Array3::<f64>::zeros((1, 2, 2));
        d[[0, 1, 1]] = f64::NAN;
        assert!(SlicedPotential::new(d, vec![1.0], [1.0, 1.0]).is_err());
        let q: SlicedPotential<f64> = p.cast();
        assert_eq!(q.repeats(), 3);
    }
}
