//! Atomic structures: atoms with atomic number, position (Å) and rms displacement in an
//! orthogonal periodic cell.

use crate::error::{Error, Result};

/// One atom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Atom {
    /// Atomic number Z (1..=103).
    pub z: u8,
    /// Position `[x, y, z]` in Å (z along the beam).
    pub position_a: [f64; 3],
    /// Isotropic rms displacement along each axis in Å (frozen phonons); 0 for a static lattice.
    pub rms_displacement_a: f64,
}

/// Atoms in an orthogonal, periodic cell with side lengths `[a_x, a_y, a_z]` in Å.
#[derive(Clone, Debug, PartialEq)]
pub struct Structure {
    cell_a: [f64; 3],
    atoms: Vec<Atom>,
}

impl Structure {
    /// A structure in an orthogonal cell of side lengths `cell_a = [a_x, a_y, a_z]` (Å).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for non-positive or non-finite cell lengths.
    pub fn new(cell_a: [f64; 3], atoms: Vec<Atom>) -> Result<Self> {
        if cell_a.iter().any(|&c| !(c.is_finite() && c > 0.0)) {
            return Err(Error::invalid(
                "cell_a",
                format!("cell lengths must be finite and > 0, got {cell_a:?}"),
            ));
        }
        Ok(Self { cell_a, atoms })
    }

    /// Cell side lengths `[a_x, a_y, a_z]` in Å.
    pub fn cell_a(&self) -> [f64; 3] {
        self.cell_a
    }

    /// The atoms.
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }
}
