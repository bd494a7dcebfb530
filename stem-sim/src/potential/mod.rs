//! Projected potentials: atoms → slices of projected potential (V·Å) on a grid.

mod slices;

pub use slices::SlicedPotential;

use crate::error::{Error, Result};
use crate::structure::Structure;

/// Which electron-scattering parametrisation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Parametrization {
    /// Lobato & Van Dyck, Acta Cryst. A 70 (2014) 636 (the default, as in abTEM).
    #[default]
    Lobato,
    /// Kirkland, Advanced Computing in Electron Microscopy (2nd ed., 2010), Appendix C.
    Kirkland,
}

/// How the 3-D potential is projected into slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Projection {
    /// Each atom's full projected potential goes into the slice that holds its centre, built in
    /// Fourier space (abTEM's default "infinite").
    #[default]
    Infinite,
    /// The potential is integrated over each slice's z-range (abTEM's "finite").
    Finite,
}

/// How to build a potential.
#[derive(Clone, Debug, PartialEq)]
pub struct PotentialConfig {
    /// Grid points `[ny, nx]` over the cell's lateral extent.
    pub gpts: [usize; 2],
    /// Target slice thickness in Å (default 1.0). The cell's z-length is divided into
    /// `ceil(a_z / slice_thickness_a)` equal slices.
    pub slice_thickness_a: f64,
    /// Parametrisation (default Lobato).
    pub parametrization: Parametrization,
    /// Projection (default infinite).
    pub projection: Projection,
}

impl Default for PotentialConfig {
    fn default() -> Self {
        Self {
            gpts: [256, 256],
            slice_thickness_a: 1.0,
            parametrization: Parametrization::default(),
            projection: Projection::default(),
        }
    }
}

/// Build the sliced projected potential of `structure` (V·Å per slice, `[slice, y, x]`).
///
/// # Errors
/// Not yet implemented.
pub fn build_potential(
    structure: &Structure,
    config: &PotentialConfig,
) -> Result<SlicedPotential<f64>> {
    let _ = (structure, config);
    Err(Error::invalid("potential", "not implemented yet"))
}
