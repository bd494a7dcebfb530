//! Projected potentials: atoms → slices of projected potential (V·Å) on a grid.
//!
//! [`build_potential`] turns a [`Structure`] into a [`SlicedPotential`] `[slice, y, x]`:
//!
//! * **Slicing.** The cell's z-length `a_z` is cut into `n = ceil(a_z / slice_thickness_a)`
//!   equal slices of thickness `a_z / n` (a quotient within 1e-9 of an integer counts as that
//!   integer, so `a/2` slices of a cell `a` give 2 slices). Positions are wrapped into the
//!   periodic cell first.
//! * **Infinite projection** ([`Projection::Infinite`], the default, as abTEM's
//!   `projection="infinite"`): each atom's whole projected potential goes into the slice holding
//!   its centre; slice k holds the atoms with `z_k − 1e-12 ≤ z < z_{k+1} − 1e-12` (an atom
//!   exactly on a boundary goes to the deeper slice). A slice is built in Fourier space
//!   (Van den Broek et al., Ultramicroscopy 158 (2015) 89): per element s, the atoms are
//!   deposited as unit deltas with bilinear (cloud-in-cell) weights at pixel positions
//!   `x/dx, y/dy` (periodic), Fourier transformed to D_s(k), multiplied by the projected
//!   scattering factor F_s(|k|) = f_e(|k|)/κ (V·Å³) and divided by
//!   `S(k) = dx·dy·sin(q)/q` with `q = √((k_x dx)² + (k_y dy)²)` (abTEM's correction, q in cycles
//!   per pixel), summed over elements and transformed back (real part). The result reproduces
//!   abTEM 1.0.11's float32 arrays to ≈ 1e-7 relative L2 (see the tests).
//! * **Finite projection** ([`Projection::Finite`]): each atom contributes
//!   `∫_{z_k}^{z_{k+1}} V(√(r² + (z − z_atom)²)) dz` to every slice its potential reaches (within
//!   the radius r_cut where |V| falls to 1e-4 V), from per-element tables of the cumulative
//!   z-integral (0.02 Å steps, 8-point Gauss–Legendre per step) on a geometric radial grid from
//!   min(dx, dy)/2 to r_cut, tapered by a cosine from 0.85·r_cut to r_cut, interpolated linearly
//!   onto the pixels (beyond 20·min(dx, dy)/2 through a resampling on a uniform grid in r²).
//!   It reproduces abTEM 1.0.11's finite arrays to ≈ 2e-4 relative L2. The cell is periodic along z as well: the tails of the atoms near the
//!   top face reach into the first slices and vice versa, as in a crystal repeated along the
//!   beam. Use it for loose comparisons only: it is sensitive to atoms sitting on slice
//!   boundaries (see `shared/reference/multislice.md` §2.4, §8).
//!
//! The builders run the slices in parallel on rayon's current pool (choose it with
//! [`stem_core::Parallelism::install`]); the result does not depend on the number of threads.
//!
//! ```
//! use stem_sim::potential::{build_potential, mean_inner_potential_v, Parametrization, PotentialConfig};
//! use stem_sim::structure::{builders, ZoneAxis};
//!
//! let cell = builders::srtio3(ZoneAxis::Z001)?;
//! let config = PotentialConfig { gpts: [64, 64], slice_thickness_a: 3.905 / 2.0, ..Default::default() };
//! let pot = build_potential(&cell, &config)?;
//! assert_eq!(pot.n_slices(), 2);
//! // The mean of the potential over the cell is the mean inner potential (22.494 V for SrTiO3).
//! let [dy, dx] = pot.sampling_a();
//! let v0 = pot.data().sum() * dx * dy / (3.905 * 3.905 * 3.905);
//! assert!((v0 - mean_inner_potential_v(&cell, Parametrization::Lobato)?).abs() < 1e-9 * v0);
//! assert!((v0 - 22.494).abs() < 1e-3);
//! # Ok::<(), stem_sim::Error>(())
//! ```

mod finite;
mod infinite;
#[cfg(test)]
pub(crate) mod reference;
mod slices;
#[cfg(test)]
mod tests;

pub use slices::SlicedPotential;

use stem_core::{NoProgress, Progress};

use crate::elements::{ElementPotential, INV_KAPPA_V_A2};
use crate::error::{Error, Result};
use crate::structure::{Structure, wrap};

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

/// Largest number of potential values (slices × ny × nx) one build may allocate: 2³² (32 GiB of
/// f64). Larger requests are refused with [`Error::InvalidParameter`] instead of aborting.
pub const MAX_POTENTIAL_VALUES: usize = 1 << 32;

/// Build the sliced projected potential of `structure` (V·Å per slice, `[slice, y, x]`); see the
/// module docs for the slicing and the projections.
///
/// # Errors
/// * [`Error::InvalidParameter`] for a zero grid dimension, a slice thickness that is not finite
///   and > 0, or more than [`MAX_POTENTIAL_VALUES`] values;
/// * [`Error::EmptyStructure`] for a structure without atoms;
/// * [`Error::UnknownElement`] for an atom outside Z = 1..=103.
pub fn build_potential(
    structure: &Structure,
    config: &PotentialConfig,
) -> Result<SlicedPotential<f64>> {
    build_potential_with_progress(structure, config, &NoProgress)
}

/// [`build_potential`] reporting one unit per slice to `progress` (stage `"potential"`) and
/// stopping early if it cancels.
///
/// # Errors
/// As [`build_potential`], plus `Error::Core(stem_core::Error::Cancelled)` when cancelled.
pub fn build_potential_with_progress(
    structure: &Structure,
    config: &PotentialConfig,
    progress: &dyn Progress,
) -> Result<SlicedPotential<f64>> {
    let plan = Plan::new(structure, config)?;
    progress.start("potential", plan.n_slices as u64);
    let data = match config.projection {
        Projection::Infinite => infinite::build(&plan, progress)?,
        Projection::Finite => finite::build(&plan, progress)?,
    };
    SlicedPotential::new(
        data,
        vec![plan.dz; plan.n_slices],
        [plan.extent[0], plan.extent[1]],
    )
}

/// The mean inner potential V₀ = (1/κ) Σ_atoms f_e(0) / Ω in V, with Ω the cell volume: the mean
/// of the 3-D potential over the cell (and the k = 0 component of every projected-potential
/// build divided by the thickness). SrTiO3 with Lobato: 22.494 V; with Kirkland: 22.323 V.
///
/// # Errors
/// [`Error::UnknownElement`] for an atom outside Z = 1..=103.
pub fn mean_inner_potential_v(
    structure: &Structure,
    parametrization: Parametrization,
) -> Result<f64> {
    let [ax, ay, az] = structure.cell_a();
    let mut sum = 0.0;
    let mut cache: Vec<(u8, f64)> = Vec::new();
    for atom in structure.atoms() {
        let f0 = match cache.iter().find(|(z, _)| *z == atom.z) {
            Some(&(_, f)) => f,
            None => {
                let f = ElementPotential::new(atom.z, parametrization)?.scattering_factor_a(0.0);
                cache.push((atom.z, f));
                f
            }
        };
        sum += f0;
    }
    Ok(INV_KAPPA_V_A2 * sum / (ax * ay * az))
}

/// Number of equal slices for a cell of z-length `length_a` and target thickness
/// `slice_thickness_a`: `ceil(length / thickness)`, where a quotient within 1e-9 (relative) of an
/// integer counts as that integer.
pub fn number_of_slices(length_a: f64, slice_thickness_a: f64) -> Result<usize> {
    if !(slice_thickness_a.is_finite() && slice_thickness_a > 0.0) {
        return Err(Error::invalid(
            "slice_thickness_a",
            format!("must be finite and > 0, got {slice_thickness_a} Å"),
        ));
    }
    if !(length_a.is_finite() && length_a > 0.0) {
        return Err(Error::invalid(
            "length_a",
            format!("must be finite and > 0, got {length_a} Å"),
        ));
    }
    let q = length_a / slice_thickness_a;
    let n = (q * (1.0 - 1e-9)).ceil().max(1.0);
    if n > MAX_POTENTIAL_VALUES as f64 {
        return Err(Error::invalid(
            "slice_thickness_a",
            format!("{slice_thickness_a} Å gives {n:e} slices of a {length_a} Å cell"),
        ));
    }
    Ok(n as usize)
}

/// Validated geometry and atoms grouped by element, shared by both projections.
pub(crate) struct Plan {
    /// `[ny, nx]`.
    pub(crate) gpts: [usize; 2],
    /// `[L_y, L_x, L_z]` in Å.
    pub(crate) extent: [f64; 3],
    /// `[dy, dx]` in Å.
    pub(crate) sampling: [f64; 2],
    pub(crate) n_slices: usize,
    /// Slice thickness in Å.
    pub(crate) dz: f64,
    /// Slice boundaries z_0 = 0, …, z_n = L_z (cumulative sums of dz).
    pub(crate) edges: Vec<f64>,
    /// One entry per element present (in order of first appearance).
    pub(crate) species: Vec<Species>,
}

/// The atoms of one element, positions wrapped into the cell: `[x, y, z]` in Å.
pub(crate) struct Species {
    pub(crate) element: ElementPotential,
    pub(crate) positions: Vec<[f64; 3]>,
}

impl Plan {
    fn new(structure: &Structure, config: &PotentialConfig) -> Result<Self> {
        let [ny, nx] = config.gpts;
        if ny == 0 || nx == 0 {
            return Err(Error::invalid(
                "gpts",
                format!("grid dimensions must be >= 1, got {:?}", config.gpts),
            ));
        }
        if structure.atoms().is_empty() {
            return Err(Error::EmptyStructure {
                what: "build_potential needs at least one atom".into(),
            });
        }
        let [ax, ay, az] = structure.cell_a();
        let n_slices = number_of_slices(az, config.slice_thickness_a)?;
        n_slices
            .checked_mul(ny)
            .and_then(|v| v.checked_mul(nx))
            .filter(|&v| v <= MAX_POTENTIAL_VALUES)
            .ok_or_else(|| {
                Error::invalid(
                    "gpts",
                    format!("{n_slices} slices of {ny}×{nx} exceed {MAX_POTENTIAL_VALUES} values"),
                )
            })?;
        let dz = az / n_slices as f64;
        let mut edges = Vec::with_capacity(n_slices + 1);
        let mut acc = 0.0;
        edges.push(0.0);
        for _ in 0..n_slices {
            acc += dz;
            edges.push(acc);
        }
        let mut species: Vec<Species> = Vec::new();
        for atom in structure.atoms() {
            let p = [
                wrap(atom.position_a[0], ax),
                wrap(atom.position_a[1], ay),
                wrap(atom.position_a[2], az),
            ];
            match species.iter_mut().find(|s| s.element.z() == atom.z) {
                Some(s) => s.positions.push(p),
                None => species.push(Species {
                    element: ElementPotential::new(atom.z, config.parametrization)?,
                    positions: vec![p],
                }),
            }
        }
        Ok(Self {
            gpts: [ny, nx],
            extent: [ay, ax, az],
            sampling: [ay / ny as f64, ax / nx as f64],
            n_slices,
            dz,
            edges,
            species,
        })
    }

    /// The slice holding an atom at height `z` (Å, inside the cell) in the infinite projection:
    /// the number of inner edges `z_k − 1e-12` (k = 1..n−1) at or below z.
    pub(crate) fn slice_of(&self, z: f64) -> usize {
        self.edges[1..self.n_slices].partition_point(|&e| e - 1e-12 <= z)
    }
}
