//! Shared pieces of the multislice-driven generators: the crystal, the probe, atom edits
//! (vacancies, substitutions), projected columns and the simulation grid.

use crate::aberrations::Aberrations;
use crate::degrade::Param;
use crate::elements::{atomic_number, symbol};
use crate::error::{Error, Result};
use crate::probe::{ProbeConfig, nyquist_scan_step_a};
use crate::structure::{Atom, Structure, ZoneAxis, builders};
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which crystal, viewed along which zone, how large.
///
/// JSON: `{"structure": "srtio3", "zone": "001", "cells_yx": [2, 2], "thickness_cells": 10}`.
/// Structures are the `stem_sim::structure::builders` by name (`srtio3`, `si`, `gaas`,
/// `graphene`, `mos2`, `ws2`, `nio`, `bifeo3`, `lsmo`; layered ones only along `001`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrystalSpec {
    /// Builder name.
    pub structure: String,
    /// Zone axis `001`, `110` or `111` (default `001`).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Lateral repeats of the unit cell `[along y, along x]` (default `[2, 2]`). The simulated
    /// (periodic) field of view is `cells_yx × cell` Å.
    #[serde(default = "default_cells")]
    pub cells_yx: [usize; 2],
    /// Repeats along the beam (thickness = `thickness_cells × cell_z`; default 10).
    #[serde(default = "default_thickness")]
    pub thickness_cells: usize,
}

fn default_zone() -> String {
    "001".into()
}
fn default_cells() -> [usize; 2] {
    [2, 2]
}
fn default_thickness() -> usize {
    10
}

impl CrystalSpec {
    /// A spec for `structure` along \[001\] with the defaults.
    pub fn new(structure: &str) -> Self {
        CrystalSpec {
            structure: structure.into(),
            zone: default_zone(),
            cells_yx: default_cells(),
            thickness_cells: default_thickness(),
        }
    }

    /// The unit cell (one repeat), checking the name and zone.
    pub fn unit_cell(&self) -> Result<Structure> {
        let zone: ZoneAxis = self.zone.parse()?;
        builders::by_name(&self.structure, zone)
    }

    /// Checks the counts (each ≥ 1; at most 64 lateral and 10⁴ thickness repeats) and that the
    /// structure can be built.
    pub fn validate(&self) -> Result<()> {
        if self.cells_yx.iter().any(|&n| n == 0 || n > 64) {
            return Err(Error::invalid(
                "cells_yx",
                format!("lateral repeats must be 1 ..= 64, got {:?}", self.cells_yx),
            ));
        }
        if self.thickness_cells == 0 || self.thickness_cells > 10_000 {
            return Err(Error::invalid(
                "thickness_cells",
                format!("must be 1 ..= 10000, got {}", self.thickness_cells),
            ));
        }
        self.unit_cell().map(|_| ())
    }

    /// The supercell: `cells_yx` laterally, `thickness_cells` along z.
    pub fn supercell(&self) -> Result<Structure> {
        let [ny, nx] = self.cells_yx;
        self.unit_cell()?.repeat([nx, ny, self.thickness_cells])
    }

    /// Lateral extent `[y, x]` of the supercell in Å.
    pub fn extent_yx_a(&self) -> Result<[f64; 2]> {
        let [ax, ay, _] = self.unit_cell()?.cell_a();
        Ok([ay * self.cells_yx[0] as f64, ax * self.cells_yx[1] as f64])
    }

    /// Potential grid `[ny, nx]` for pixels of at most `sampling_a` Å: every unit cell gets
    /// the same whole number of pixels (the smallest FFT-friendly 2^a·3^b·5^c count), so the
    /// sampled potential repeats exactly from cell to cell and keeps the crystal's mirror
    /// symmetries (bilinear atom deposits at different sub-pixel offsets would break them at
    /// the 10⁻³ level).
    pub fn potential_gpts(&self, sampling_a: f64) -> Result<[usize; 2]> {
        let [ax, ay, _] = self.unit_cell()?.cell_a();
        if !(sampling_a.is_finite() && sampling_a > 0.0 && ax.max(ay) / sampling_a <= 4096.0) {
            return Err(Error::invalid(
                "potential_sampling_a",
                format!("must be > 0 with at most 4096 pixels per unit cell, got {sampling_a} Å"),
            ));
        }
        let per = |a: f64| fft_size((a / sampling_a).ceil() as usize);
        Ok([per(ay) * self.cells_yx[0], per(ax) * self.cells_yx[1]])
    }

    /// Thickness in Å.
    pub fn thickness_a(&self) -> Result<f64> {
        Ok(self.unit_cell()?.cell_a()[2] * self.thickness_cells as f64)
    }
}

/// The probe: energy, convergence semi-angle, defocus (drawn per sample) and Cs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSpec {
    /// Acceleration voltage in kV (default 200).
    pub energy_kv: f64,
    /// Convergence semi-angle in mrad (default 20, soft aperture as abTEM).
    pub convergence_mrad: f64,
    /// Defocus in Å (= −C10, abTEM's sign; default 0).
    pub defocus_a: Param,
    /// Spherical aberration C30 in Å (default 0).
    pub cs_a: f64,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            energy_kv: 200.0,
            convergence_mrad: 20.0,
            defocus_a: Param::Fixed(0.0),
            cs_a: 0.0,
        }
    }
}

impl ProbeSpec {
    /// Checks the ranges: 10 ≤ kV ≤ 1000, 1 ≤ mrad ≤ 100, |defocus| ≤ 10⁴ Å, |Cs| ≤ 10⁸ Å.
    pub fn validate(&self) -> Result<()> {
        if !(self.energy_kv.is_finite() && (10.0..=1000.0).contains(&self.energy_kv)) {
            return Err(Error::invalid(
                "energy_kv",
                format!("must be 10 ..= 1000 kV, got {}", self.energy_kv),
            ));
        }
        if !(self.convergence_mrad.is_finite() && (1.0..=100.0).contains(&self.convergence_mrad)) {
            return Err(Error::invalid(
                "convergence_mrad",
                format!("must be 1 ..= 100 mrad, got {}", self.convergence_mrad),
            ));
        }
        self.defocus_a.validate("defocus_a", -1e4, 1e4)?;
        if !(self.cs_a.is_finite() && self.cs_a.abs() <= 1e8) {
            return Err(Error::invalid(
                "cs_a",
                format!("must be finite with |Cs| <= 1e8 Å, got {}", self.cs_a),
            ));
        }
        Ok(())
    }

    /// The probe configuration for a drawn defocus (Å).
    pub fn config(&self, defocus_a: f64) -> ProbeConfig {
        ProbeConfig {
            energy_ev: self.energy_kv * 1e3,
            semiangle_cutoff_mrad: self.convergence_mrad,
            aberrations: Aberrations::default()
                .with_defocus_a(defocus_a)
                .with_cs_a(self.cs_a),
            ..ProbeConfig::default()
        }
    }

    /// The Nyquist scan step λ/(4α) in Å.
    pub fn nyquist_step_a(&self) -> Result<f64> {
        nyquist_scan_step_a(self.energy_kv * 1e3, self.convergence_mrad)
    }
}

/// Removes a fraction of the atoms of one element (one draw per atom).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vacancy {
    /// Element symbol (e.g. `"O"`).
    pub element: String,
    /// Probability per atom, 0 ..= 1.
    pub fraction: f64,
}

/// Replaces a fraction of the atoms of one element by another (one draw per atom, after the
/// vacancies). A column holding a substituted atom gets the class `class`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtomSubstitution {
    /// Host element symbol (e.g. `"Sr"`).
    pub element: String,
    /// Substituent element symbol (e.g. `"Ba"`).
    pub to: String,
    /// Probability per host atom, 0 ..= 1.
    pub fraction: f64,
    /// Class name of columns holding a substituent.
    pub class: String,
}

fn check_fraction(name: &'static str, f: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&f) {
        return Err(Error::invalid(
            name,
            format!("fraction must be 0 ..= 1, got {f}"),
        ));
    }
    Ok(())
}

/// Checks element symbols and fractions of the edits.
pub(crate) fn validate_edits(vac: &[Vacancy], subs: &[AtomSubstitution]) -> Result<()> {
    for v in vac {
        atomic_number(&v.element)?;
        check_fraction("vacancies.fraction", v.fraction)?;
    }
    for s in subs {
        atomic_number(&s.element)?;
        atomic_number(&s.to)?;
        check_fraction("substitutions.fraction", s.fraction)?;
        if s.class.is_empty() {
            return Err(Error::invalid("substitutions.class", "must not be empty"));
        }
    }
    Ok(())
}

/// A structure after edits: the atoms, and per atom the substitution index it received.
#[derive(Clone, Debug)]
pub(crate) struct Edited {
    pub structure: Structure,
    pub substituted: Vec<Option<usize>>,
    pub n_vacancies: usize,
    pub n_substitutions: usize,
}

/// Applies vacancies (one draw per atom of a listed element, in atom order), then
/// substitutions (one draw per host atom and substitution, at most one per atom).
pub(crate) fn apply_edits(
    s: &Structure,
    vac: &[Vacancy],
    subs: &[AtomSubstitution],
    rng: &mut ChaCha8Rng,
) -> Result<Edited> {
    let vz: Vec<(u8, f64)> = vac
        .iter()
        .map(|v| Ok((atomic_number(&v.element)?, v.fraction)))
        .collect::<Result<_>>()?;
    let sz: Vec<(u8, u8)> = subs
        .iter()
        .map(|v| Ok((atomic_number(&v.element)?, atomic_number(&v.to)?)))
        .collect::<Result<_>>()?;
    let mut atoms: Vec<Atom> = Vec::with_capacity(s.atoms().len());
    let mut substituted = Vec::with_capacity(s.atoms().len());
    let (mut n_vac, mut n_sub) = (0, 0);
    for a in s.atoms() {
        let mut removed = false;
        for &(z, f) in &vz {
            if a.z == z && rng.random::<f64>() < f {
                removed = true;
            }
        }
        if removed {
            n_vac += 1;
            continue;
        }
        let mut atom = *a;
        let mut which = None;
        for (k, &(z, to)) in sz.iter().enumerate() {
            if which.is_none() && a.z == z && rng.random::<f64>() < subs[k].fraction {
                atom.z = to;
                which = Some(k);
                n_sub += 1;
            }
        }
        atoms.push(atom);
        substituted.push(which);
    }
    if atoms.is_empty() {
        return Err(Error::EmptyStructure {
            what: "the vacancies removed every atom".into(),
        });
    }
    Ok(Edited {
        structure: Structure::new(s.cell_a(), atoms)?,
        substituted,
        n_vacancies: n_vac,
        n_substitutions: n_sub,
    })
}

/// An atom column of a projected structure.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectedColumn {
    /// Position `[y, x]` in Å (inside the cell, `0 ≤ p < extent`).
    pub position_yx_a: [f64; 2],
    /// Atomic numbers of its atoms (in atom order).
    pub z: Vec<u8>,
    /// Its class name: the distinct element symbols by decreasing Z (`"Sr"`, `"TiO"`), or the
    /// class of a substitution when it holds a substituted atom.
    pub class: String,
}

/// Lateral tolerance (Å) within which atoms belong to the same column.
pub const COLUMN_TOLERANCE_A: f64 = 0.05;

/// The name of a column of these atomic numbers: distinct symbols by decreasing Z.
pub fn column_name(z: &[u8]) -> String {
    let mut d: Vec<u8> = z.to_vec();
    d.sort_unstable_by(|a, b| b.cmp(a));
    d.dedup();
    d.iter().map(|&z| symbol(z).unwrap_or("?")).collect()
}

/// Groups the atoms of `s` into columns by projected `[x, y]` (periodic distance within
/// [`COLUMN_TOLERANCE_A`]); columns in order of first appearance.
pub fn project_columns(s: &Structure) -> Vec<ProjectedColumn> {
    group_columns(s, &vec![None; s.atoms().len()], &[])
}

pub(crate) fn group_columns(
    s: &Structure,
    substituted: &[Option<usize>],
    subs: &[AtomSubstitution],
) -> Vec<ProjectedColumn> {
    let [ax, ay, _] = s.cell_a();
    let pd = |d: f64, l: f64| {
        let d = d.rem_euclid(l);
        d.min(l - d)
    };
    let mut cols: Vec<([f64; 2], Vec<u8>, Option<usize>)> = Vec::new();
    // A coarse hash on the cell keeps grouping linear for big supercells.
    let cell = 4.0 * COLUMN_TOLERANCE_A;
    let (nbx, nby) = (
        ((ax / cell).ceil() as usize).max(1),
        ((ay / cell).ceil() as usize).max(1),
    );
    let mut buckets: std::collections::HashMap<(usize, usize), Vec<usize>> =
        std::collections::HashMap::new();
    for (a, sub) in s.atoms().iter().zip(substituted) {
        let (x, y) = (
            a.position_a[0].rem_euclid(ax),
            a.position_a[1].rem_euclid(ay),
        );
        let (bx, by) = (
            ((x / cell) as usize).min(nbx - 1),
            ((y / cell) as usize).min(nby - 1),
        );
        let mut found = None;
        'search: for dx in [nbx - 1, 0, 1] {
            for dy in [nby - 1, 0, 1] {
                if let Some(list) = buckets.get(&((bx + dx) % nbx, (by + dy) % nby)) {
                    for &c in list {
                        let p = cols[c].0;
                        if pd(p[1] - x, ax).hypot(pd(p[0] - y, ay)) < COLUMN_TOLERANCE_A {
                            found = Some(c);
                            break 'search;
                        }
                    }
                }
            }
        }
        match found {
            Some(c) => {
                cols[c].1.push(a.z);
                if cols[c].2.is_none() {
                    cols[c].2 = *sub;
                }
            }
            None => {
                buckets.entry((bx, by)).or_default().push(cols.len());
                cols.push(([y, x], vec![a.z], *sub));
            }
        }
    }
    cols.into_iter()
        .map(|(p, z, sub)| ProjectedColumn {
            position_yx_a: p,
            class: match sub {
                Some(k) => subs[k].class.clone(),
                None => column_name(&z),
            },
            z,
        })
        .collect()
}

/// Class names of a generator: the host columns of the unit cell by decreasing heaviest Z
/// (ties: first appearance), then the substitution classes in order (deduplicated).
pub(crate) fn class_names(unit: &Structure, subs: &[AtomSubstitution]) -> Vec<String> {
    let mut host: Vec<(u8, String)> = Vec::new();
    for c in project_columns(unit) {
        if !host.iter().any(|(_, n)| *n == c.class) {
            host.push((c.z.iter().copied().max().unwrap_or(0), c.class));
        }
    }
    host.sort_by_key(|h| std::cmp::Reverse(h.0));
    let mut names: Vec<String> = host.into_iter().map(|(_, n)| n).collect();
    for s in subs {
        if !names.contains(&s.class) {
            names.push(s.class.clone());
        }
    }
    names
}

/// The smallest n ≥ `min` whose prime factors are 2, 3 and 5 (fast FFT sizes).
pub(crate) fn fft_size(min: usize) -> usize {
    let mut n = min.max(2);
    loop {
        let mut m = n;
        for p in [2, 3, 5] {
            while m % p == 0 {
                m /= p;
            }
        }
        if m == 1 {
            return n;
        }
        n += 1;
    }
}

/// `class + 1` within `r_px` of each position (periodic: the image tiles the plane), later
/// positions winning overlaps.
pub(crate) fn periodic_disk_mask(
    shape: [usize; 2],
    positions_px: &[[f64; 2]],
    classes: &[u16],
    r_px: f64,
) -> Array2<u8> {
    let mut m = Array2::<u8>::zeros((shape[0], shape[1]));
    let (ny, nx) = (shape[0] as i64, shape[1] as i64);
    let r2 = r_px * r_px;
    for (p, &k) in positions_px.iter().zip(classes) {
        let [y, x] = *p;
        let (y0, y1) = ((y - r_px).ceil() as i64, (y + r_px).floor() as i64);
        let (x0, x1) = ((x - r_px).ceil() as i64, (x + r_px).floor() as i64);
        for i in y0..=y1 {
            for j in x0..=x1 {
                if (i as f64 - y).powi(2) + (j as f64 - x).powi(2) <= r2 {
                    m[[i.rem_euclid(ny) as usize, j.rem_euclid(nx) as usize]] =
                        (k + 1).min(255) as u8;
                }
            }
        }
    }
    m
}

/// Checks the slicing of a multislice generator: slice thickness 0.1 ..= 20 Å and a finite
/// potential sampling > 0 Å (errors name the field).
pub(crate) fn check_slicing(slice_thickness_a: f64, potential_sampling_a: f64) -> Result<()> {
    let dz = slice_thickness_a;
    if !(dz.is_finite() && (0.1..=20.0).contains(&dz)) {
        return Err(Error::invalid(
            "slice_thickness_a",
            format!("must be 0.1 ..= 20 Å, got {dz}"),
        ));
    }
    let s = potential_sampling_a;
    if !(s.is_finite() && s > 0.0) {
        return Err(Error::invalid(
            "potential_sampling_a",
            format!("must be finite and > 0 Å, got {s}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn srtio3_columns_and_names() {
        let s = CrystalSpec {
            cells_yx: [2, 3],
            thickness_cells: 4,
            ..CrystalSpec::new("srtio3")
        };
        let sc = s.supercell().unwrap();
        let cols = project_columns(&sc);
        // 4 columns per cell (Sr, TiO, 2 × O) × 6 cells; 4 atoms thick each
        // except TiO (8).
        assert_eq!(cols.len(), 24);
        let sr: Vec<_> = cols.iter().filter(|c| c.class == "Sr").collect();
        assert_eq!(sr.len(), 6);
        assert!(sr.iter().all(|c| c.z.len() == 4));
        assert!(
            cols.iter()
                .filter(|c| c.class == "TiO")
                .all(|c| c.z.len() == 8)
        );
        assert_eq!(
            class_names(&s.unit_cell().unwrap(), &[]),
            ["Sr", "TiO", "O"]
        );
    }

    #[test]
    fn gaas_110_dumbbells_are_separate_columns() {
        let s = CrystalSpec {
            zone: "110".into(),
            cells_yx: [1, 1],
            thickness_cells: 2,
            ..CrystalSpec::new("gaas")
        };
        let cols = project_columns(&s.supercell().unwrap());
        let names: Vec<&str> = cols.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "Ga").count(), 2);
        assert_eq!(names.iter().filter(|n| **n == "As").count(), 2);
    }

    #[test]
    fn edits_follow_the_fractions_and_the_seed() {
        let s = CrystalSpec {
            cells_yx: [4, 4],
            thickness_cells: 8,
            ..CrystalSpec::new("srtio3")
        }
        .supercell()
        .unwrap();
        let vac = [Vacancy {
            element: "O".into(),
            fraction: 0.25,
        }];
        let subs = [AtomSubstitution {
            element: "Sr".into(),
            to: "Ba".into(),
            fraction: 1.0,
            class: "Ba".into(),
        }];
        let e = apply_edits(&s, &vac, &subs, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        // 384 O atoms at p = 0.25: 96 expected, ±4σ = ±34.
        assert!(
            (e.n_vacancies as f64 - 96.0).abs() < 34.0,
            "{}",
            e.n_vacancies
        );
        assert_eq!(e.n_substitutions, 128);
        assert!(e.structure.atoms().iter().all(|a| a.z != 38));
        let cols = group_columns(&e.structure, &e.substituted, &subs);
        assert_eq!(cols.iter().filter(|c| c.class == "Ba").count(), 16);
        let again = apply_edits(&s, &vac, &subs, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!(again.structure, e.structure);
        let bad = [Vacancy {
            element: "Xx".into(),
            fraction: 0.1,
        }];
        assert!(validate_edits(&bad, &[]).is_err());
        let bad = [Vacancy {
            element: "O".into(),
            fraction: 1.5,
        }];
        assert!(validate_edits(&bad, &[]).is_err());
        let all = [Vacancy {
            element: "O".into(),
            fraction: 1.0,
        }];
        let o = crate::structure::Structure::new([3.0, 3.0, 3.0], vec![Atom::new(8, [0.0; 3])])
            .unwrap();
        assert!(apply_edits(&o, &all, &[], &mut ChaCha8Rng::seed_from_u64(0)).is_err());
    }

    #[test]
    fn spec_validation_and_fft_sizes() {
        assert!(CrystalSpec::new("unobtainium").validate().is_err());
        let mut s = CrystalSpec::new("srtio3");
        s.cells_yx = [0, 1];
        assert!(s.validate().is_err());
        s.cells_yx = [1, 1];
        s.thickness_cells = 0;
        assert!(s.validate().is_err());
        let p = ProbeSpec {
            convergence_mrad: 0.5,
            ..ProbeSpec::default()
        };
        assert!(p.validate().is_err());
        assert_eq!(fft_size(97), 100);
        assert_eq!(fft_size(128), 128);
        assert_eq!(fft_size(131), 135);
    }

    #[test]
    fn periodic_mask_wraps() {
        let m = periodic_disk_mask([8, 8], &[[0.0, 0.0]], &[2], 1.0);
        assert_eq!(m[[0, 0]], 3);
        assert_eq!(m[[7, 0]], 3);
        assert_eq!(m[[0, 7]], 3);
        assert_eq!(m[[4, 4]], 0);
    }
}
