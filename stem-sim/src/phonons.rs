//! Frozen phonons: seeded random displacements of the atoms.
//!
//! In the frozen-phonon model (Loane, Xu and Silcox, Acta Cryst. A 47 (1991) 267; Kirkland,
//! *Advanced Computing in Electron Microscopy*, 2nd ed., §7.5) each configuration displaces every
//! atom independently by a Gaussian of standard deviation σ (its `rms_displacement_a`) along x,
//! y **and** z; intensities computed for several configurations are averaged incoherently. σ is
//! the rms displacement per Cartesian direction, σ² = ⟨u_x²⟩, related to the Debye–Waller
//! B factor by B = 8π²σ² ([`b_factor_a2`], [`rms_from_b_factor_a`]).
//!
//! ```
//! use stem_sim::phonons::displaced;
//! use stem_sim::structure::{builders, ZoneAxis};
//!
//! let sto = builders::srtio3(ZoneAxis::Z001)?.repeat([4, 4, 4])?;
//! let sto = sto.with_rms_displacement(38, 0.08)?.with_rms_displacement(22, 0.06)?
//!     .with_rms_displacement(8, 0.07)?;
//! let c0 = displaced(&sto, 7, 0)?;
//! assert_eq!(c0, displaced(&sto, 7, 0)?); // same (seed, index): same configuration
//! assert_ne!(c0, displaced(&sto, 7, 1)?);
//! # Ok::<(), stem_sim::Error>(())
//! ```

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::structure::{Atom, Structure};

/// One frozen-phonon configuration: every atom displaced by a Gaussian of its
/// `rms_displacement_a` along x, y and z, drawn from a stream determined by `(seed, index)` only
/// (ChaCha8 seeded with `seed`, stream `index`; three standard normals per atom in atom order,
/// also for atoms with σ = 0). Positions are not wrapped (the potential builder wraps them), and
/// the configurations for different `index` are independent, so they can be generated in
/// parallel in any order.
///
/// # Errors
/// [`Error::InvalidParameter`] if a displaced position is not finite (impossible for a valid
/// structure; kept for the signature).
pub fn displaced(structure: &Structure, seed: u64, index: usize) -> Result<Structure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let atoms: Vec<Atom> = structure
        .atoms()
        .iter()
        .map(|a| {
            let mut p = a.position_a;
            for c in &mut p {
                let n: f64 = StandardNormal.sample(&mut rng);
                *c += a.rms_displacement_a * n;
            }
            Atom {
                position_a: p,
                ..*a
            }
        })
        .collect();
    if atoms
        .iter()
        .any(|a| a.position_a.iter().any(|p| !p.is_finite()))
    {
        return Err(Error::invalid(
            "structure",
            "a displaced position is not finite",
        ));
    }
    Structure::new(structure.cell_a(), atoms)
}

/// Debye–Waller B factor (Å²) of an rms displacement σ (Å per direction): B = 8π²σ².
pub fn b_factor_a2(rms_a: f64) -> f64 {
    8.0 * std::f64::consts::PI.powi(2) * rms_a * rms_a
}

/// rms displacement σ (Å per direction) of a Debye–Waller B factor (Å²): σ = √(B/(8π²)).
///
/// # Errors
/// [`Error::InvalidParameter`] for a negative or non-finite B.
pub fn rms_from_b_factor_a(b_a2: f64) -> Result<f64> {
    if !(b_a2.is_finite() && b_a2 >= 0.0) {
        return Err(Error::invalid(
            "b_a2",
            format!("B factor must be finite and >= 0, got {b_a2} Å²"),
        ));
    }
    Ok((b_a2 / (8.0 * std::f64::consts::PI.powi(2))).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::{ZoneAxis, builders};

    fn sto() -> Structure {
        builders::srtio3(ZoneAxis::Z001)
            .unwrap()
            .repeat([10, 10, 10])
            .unwrap()
            .with_rms_displacement(38, 0.1)
            .unwrap()
            .with_rms_displacement(8, 0.05)
            .unwrap()
    }

    #[test]
    fn displacement_statistics_match_the_rms_per_direction() {
        // 1000 Sr, 1000 Ti (σ = 0), 3000 O: sample σ per direction within 5 % (the standard
        // error of a σ estimate from n samples is σ/√(2n): 2.2 % for Sr, 1.3 % for O).
        let s = sto();
        let d = displaced(&s, 42, 3).unwrap();
        for (z, want) in [(38u8, 0.1), (8, 0.05)] {
            for axis in 0..3 {
                let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
                for (a, b) in s.atoms().iter().zip(d.atoms()) {
                    if a.z == z {
                        let u = b.position_a[axis] - a.position_a[axis];
                        sum += u;
                        sum2 += u * u;
                        n += 1.0;
                    }
                }
                let mean = sum / n;
                let sd = (sum2 / n - mean * mean).sqrt();
                assert!((sd / want - 1.0).abs() < 0.05, "Z={z} axis {axis}: {sd}");
                // Mean within 4 standard errors of 0.
                assert!(
                    mean.abs() < 4.0 * want / n.sqrt(),
                    "Z={z} axis {axis}: {mean}"
                );
            }
        }
        // Ti has σ = 0: unmoved.
        for (a, b) in s.atoms().iter().zip(d.atoms()) {
            if a.z == 22 {
                assert_eq!(a.position_a, b.position_a);
            }
        }
    }

    #[test]
    fn configurations_depend_only_on_seed_and_index() {
        let s = sto();
        assert_eq!(displaced(&s, 1, 5).unwrap(), displaced(&s, 1, 5).unwrap());
        assert_ne!(displaced(&s, 1, 5).unwrap(), displaced(&s, 2, 5).unwrap());
        assert_ne!(displaced(&s, 1, 5).unwrap(), displaced(&s, 1, 6).unwrap());
        // Generating in another order (or in parallel) gives the same configurations.
        let forward: Vec<_> = (0..4).map(|i| displaced(&s, 9, i).unwrap()).collect();
        let backward: Vec<_> = (0..4).rev().map(|i| displaced(&s, 9, i).unwrap()).collect();
        for i in 0..4 {
            assert_eq!(forward[i], backward[3 - i]);
        }
        // The cell and the species are kept.
        let d = &forward[0];
        assert_eq!(d.cell_a(), s.cell_a());
        assert!(s.atoms().iter().zip(d.atoms()).all(|(a, b)| a.z == b.z));
    }

    #[test]
    fn b_factor_conversion_round_trips() {
        // Sr in SrTiO3 at room temperature: B ≈ 0.5 Å² ↔ σ ≈ 0.0796 Å.
        let s = rms_from_b_factor_a(0.5).unwrap();
        assert!((s - 0.079_577).abs() < 1e-6);
        assert!((b_factor_a2(s) - 0.5).abs() < 1e-12);
        assert!(rms_from_b_factor_a(-1.0).is_err());
        assert!(rms_from_b_factor_a(f64::NAN).is_err());
    }
}
