//! Atomic structures: atoms with atomic number, position (Å) and rms displacement in an
//! orthogonal periodic cell.
//!
//! * [`Structure`]: validated atoms in a cell `[a_x, a_y, a_z]` (Å), with
//!   [`repeat`](Structure::repeat) (supercells, in ASE's `atoms * (nx, ny, nz)` order),
//!   [`translate`](Structure::translate), per-element rms displacements for frozen phonons
//!   ([`with_rms_displacement`](Structure::with_rms_displacement)) and extended-XYZ
//!   [`read_xyz`](Structure::read_xyz) / [`write_xyz`](Structure::write_xyz).
//! * [`builders`]: SrTiO3, Si, GaAs, graphene, MoS2, WS2, NiO, BiFeO3- and LSMO-type perovskites
//!   in the smallest orthogonal cell for a [`ZoneAxis`], beam along z.
//!
//! Positions are `[x, y, z]` in Å (physical order; z along the beam, pointing into the
//! specimen).
//!
//! ```
//! use stem_sim::structure::{builders, ZoneAxis};
//!
//! let sto = builders::srtio3(ZoneAxis::Z001)?;
//! assert_eq!(sto.atoms().len(), 5);
//! let big = sto.repeat([4, 4, 2])?;
//! assert_eq!(big.atoms().len(), 160);
//! assert!((big.cell_a()[0] - 15.62).abs() < 1e-12);
//! # Ok::<(), stem_sim::Error>(())
//! ```

pub mod builders;
mod xyz;

pub use builders::ZoneAxis;

use crate::elements::MAX_Z;
use crate::error::{Error, Result};

/// One atom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Atom {
    /// Atomic number Z (1..=103).
    pub z: u8,
    /// Position `[x, y, z]` in Å (z along the beam).
    pub position_a: [f64; 3],
    /// Isotropic rms displacement along each axis in Å (frozen phonons); 0 for a static lattice.
    /// Related to the Debye–Waller B factor by B = 8π²σ² (see [`crate::phonons`]).
    pub rms_displacement_a: f64,
}

impl Atom {
    /// A static atom (rms displacement 0) of element `z` at `position_a` (`[x, y, z]`, Å).
    pub fn new(z: u8, position_a: [f64; 3]) -> Self {
        Self {
            z,
            position_a,
            rms_displacement_a: 0.0,
        }
    }
}

/// Atoms in an orthogonal, periodic cell with side lengths `[a_x, a_y, a_z]` in Å.
#[derive(Clone, Debug, PartialEq)]
pub struct Structure {
    cell_a: [f64; 3],
    atoms: Vec<Atom>,
}

/// Largest number of atoms a structure may hold (2³²); [`Structure::repeat`] refuses more.
pub const MAX_ATOMS: usize = 1 << 32;

impl Structure {
    /// A structure in an orthogonal cell of side lengths `cell_a = [a_x, a_y, a_z]` (Å).
    /// Positions may lie outside the cell (they are wrapped where it matters).
    ///
    /// # Errors
    /// * [`Error::InvalidParameter`] for non-positive or non-finite cell lengths, a non-finite
    ///   position, or a negative or non-finite rms displacement (naming the atom index);
    /// * [`Error::EmptyStructure`] for an empty atom list;
    /// * [`Error::UnknownElement`] for an atom with Z outside 1..=103.
    pub fn new(cell_a: [f64; 3], atoms: Vec<Atom>) -> Result<Self> {
        if cell_a.iter().any(|&c| !(c.is_finite() && c > 0.0)) {
            return Err(Error::invalid(
                "cell_a",
                format!("cell lengths must be finite and > 0, got {cell_a:?}"),
            ));
        }
        if atoms.is_empty() {
            return Err(Error::EmptyStructure {
                what: "a structure needs at least one atom".into(),
            });
        }
        for (i, a) in atoms.iter().enumerate() {
            if !(1..=MAX_Z).contains(&a.z) {
                return Err(Error::UnknownElement {
                    what: format!("Z = {} at atom {i} (supported: 1..={MAX_Z})", a.z),
                });
            }
            if a.position_a.iter().any(|p| !p.is_finite()) {
                return Err(Error::invalid(
                    "atoms",
                    format!("atom {i} has a non-finite position {:?}", a.position_a),
                ));
            }
            if !(a.rms_displacement_a.is_finite() && a.rms_displacement_a >= 0.0) {
                return Err(Error::invalid(
                    "atoms",
                    format!(
                        "atom {i} has rms displacement {} Å; must be finite and >= 0",
                        a.rms_displacement_a
                    ),
                ));
            }
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

    /// The supercell of `[nx, ny, nz]` copies of the cell. Atom order follows ASE's
    /// `atoms * (nx, ny, nz)`: copy (ix, iy, iz) holds atoms `n·((ix·ny + iy)·nz + iz) ..` with
    /// x outermost and z innermost, each copy in the original order.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a factor is 0 or the result exceeds [`MAX_ATOMS`] atoms.
    pub fn repeat(&self, reps: [usize; 3]) -> Result<Structure> {
        if reps.contains(&0) {
            return Err(Error::invalid(
                "reps",
                format!("repeat factors must be >= 1, got {reps:?}"),
            ));
        }
        let n = reps
            .iter()
            .try_fold(self.atoms.len(), |acc, &r| acc.checked_mul(r))
            .filter(|&n| n <= MAX_ATOMS)
            .ok_or_else(|| {
                Error::invalid(
                    "reps",
                    format!(
                        "{reps:?} copies of {} atoms exceed {MAX_ATOMS} atoms",
                        self.atoms.len()
                    ),
                )
            })?;
        let mut atoms = Vec::with_capacity(n);
        let [ax, ay, az] = self.cell_a;
        for ix in 0..reps[0] {
            for iy in 0..reps[1] {
                for iz in 0..reps[2] {
                    let shift = [ix as f64 * ax, iy as f64 * ay, iz as f64 * az];
                    atoms.extend(self.atoms.iter().map(|a| Atom {
                        position_a: [
                            a.position_a[0] + shift[0],
                            a.position_a[1] + shift[1],
                            a.position_a[2] + shift[2],
                        ],
                        ..*a
                    }));
                }
            }
        }
        let cell = [
            ax * reps[0] as f64,
            ay * reps[1] as f64,
            az * reps[2] as f64,
        ];
        Structure::new(cell, atoms)
    }

    /// All atoms shifted by `shift_a` (`[x, y, z]`, Å) and wrapped back into the cell
    /// (`0 ≤ p < a` per axis).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-finite shift.
    pub fn translate(&self, shift_a: [f64; 3]) -> Result<Structure> {
        if shift_a.iter().any(|s| !s.is_finite()) {
            return Err(Error::invalid(
                "shift_a",
                format!("shift must be finite, got {shift_a:?}"),
            ));
        }
        let atoms = self
            .atoms
            .iter()
            .map(|a| {
                let mut p = a.position_a;
                for d in 0..3 {
                    p[d] = wrap(p[d] + shift_a[d], self.cell_a[d]);
                }
                Atom {
                    position_a: p,
                    ..*a
                }
            })
            .collect();
        Structure::new(self.cell_a, atoms)
    }

    /// The same structure with every atom of element `z` given the rms displacement `rms_a`
    /// (Å per Cartesian direction; B = 8π²·rms²).
    ///
    /// # Errors
    /// * [`Error::UnknownElement`] for Z outside 1..=103;
    /// * [`Error::InvalidParameter`] for a negative or non-finite `rms_a`, or when no atom of
    ///   element `z` is present (a likely typo).
    pub fn with_rms_displacement(&self, z: u8, rms_a: f64) -> Result<Structure> {
        crate::elements::symbol(z)?;
        if !(rms_a.is_finite() && rms_a >= 0.0) {
            return Err(Error::invalid(
                "rms_a",
                format!("rms displacement must be finite and >= 0, got {rms_a} Å"),
            ));
        }
        if !self.atoms.iter().any(|a| a.z == z) {
            return Err(Error::invalid(
                "z",
                format!("no atom with Z = {z} in the structure"),
            ));
        }
        let atoms = self
            .atoms
            .iter()
            .map(|a| {
                if a.z == z {
                    Atom {
                        rms_displacement_a: rms_a,
                        ..*a
                    }
                } else {
                    *a
                }
            })
            .collect();
        Ok(Structure {
            cell_a: self.cell_a,
            atoms,
        })
    }

    /// The distinct atomic numbers present, ascending.
    pub fn elements(&self) -> Vec<u8> {
        let mut zs: Vec<u8> = self.atoms.iter().map(|a| a.z).collect();
        zs.sort_unstable();
        zs.dedup();
        zs
    }

    /// Reads an extended-XYZ file: line 1 the atom count, line 2 `key=value` pairs with
    /// `Lattice="ax 0 0 0 ay 0 0 0 az"` (required; Å, cell vectors as rows) and optionally
    /// `Properties=species:S:1:pos:R:3[:rms_displacement_a:R:1]...` (default
    /// `species:S:1:pos:R:3`), then one line per atom. The species column holds symbols or
    /// atomic numbers (a `Z:I:1` column is accepted instead); other columns are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::InvalidFile`] (with the 1-based line)
    /// for a malformed count, header or atom line, or a missing `Lattice`;
    /// [`Error::NonOrthogonalCell`] for a lattice with off-diagonal components;
    /// [`Error::UnknownElement`] for an unknown symbol; [`Error::EmptyStructure`] for zero atoms.
    pub fn read_xyz(path: impl AsRef<std::path::Path>) -> Result<Structure> {
        xyz::read(path.as_ref())
    }

    /// Writes an extended-XYZ file readable by [`read_xyz`](Self::read_xyz) and by ASE:
    /// `Lattice`, `Properties=species:S:1:pos:R:3:rms_displacement_a:R:1` and `pbc="T T T"`,
    /// numbers in their shortest exact decimal form (reading back gives identical values).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_xyz(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        xyz::write(self, path.as_ref())
    }
}

/// `v` wrapped into `[0, l)`.
pub(crate) fn wrap(v: f64, l: f64) -> f64 {
    let w = v - l * (v / l).floor();
    if w >= l { 0.0 } else { w }
}

#[cfg(test)]
mod tests;
