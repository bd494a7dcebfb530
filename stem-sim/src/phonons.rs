//! Frozen phonons: seeded random displacements of the atoms.

use crate::error::{Error, Result};
use crate::structure::Structure;

/// One frozen-phonon configuration: every atom displaced by a Gaussian of its
/// `rms_displacement_a` along x, y and z, drawn from a stream determined by `(seed, index)` only.
///
/// # Errors
/// Not yet implemented.
pub fn displaced(structure: &Structure, seed: u64, index: usize) -> Result<Structure> {
    let _ = (structure, seed, index);
    Err(Error::invalid("phonons", "not implemented yet"))
}
