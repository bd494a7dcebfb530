//! Crystal builders: the smallest orthogonal cell of a crystal for a zone axis, beam along z.
//!
//! Cubic crystals are built from their conventional cubic cell and re-oriented:
//!
//! | zone | cell vectors x, y, z (conventional units), primitive cubic (perovskites) | face-centred cubic (Si, GaAs, NiO) |
//! |---|---|---|
//! | \[001\] | \[100\], \[010\], \[001\] | ½\[110\], ½\[1̄10\], \[001\] |
//! | \[110\] | \[1̄10\], \[001\], \[110\] | ½\[1̄10\], \[001\], ½\[110\] |
//! | \[111\] | \[11̄0\], \[112̄\], \[111\] | ½\[11̄0\], ½\[112̄\], \[111\] |
//!
//! so the cells hold 1, 2, 6 (primitive cubic) or ½, ½, 3/2 conventional cells (fcc) and are
//! right-handed with z along the zone axis. Note that the fcc \[001\] cell is rotated by 45° about
//! z (x ∥ \[110\]): it is half the conventional cube. The layered crystals (graphene, MoS2, WS2)
//! are single layers in the rectangular a × √3·a cell, beam normal to the layer; no other zone
//! gives an orthogonal cell of a single layer, so they take no zone argument and
//! [`by_name`] refuses \[110\] and \[111\] for them with [`Error::NonOrthogonalCell`].
//!
//! Lattice constants (room temperature):
//! * SrTiO3: a = 3.905 Å (cubic Pm3̄m; the value of the abTEM reference set);
//! * Si: a = 5.431 020 Å (CODATA 2018 lattice parameter of silicon);
//! * GaAs: a = 5.653 25 Å (zinc blende; O. Madelung, *Semiconductors: Data Handbook*, 2004);
//! * NiO: a = 4.177 Å (rock salt; R. W. G. Wyckoff, *Crystal Structures* vol. 1, 1963; the small
//!   rhombohedral distortion below the Néel temperature is ignored);
//! * graphene: a = 2.4612 Å, layer spacing 3.3540 Å (graphite: P. Trucano and R. Chen,
//!   Nature 258 (1975) 136);
//! * MoS2: a = 3.1604 Å, c = 12.295 Å, z(S) = 0.621 (2H; K. D. Bronsema, J. L. de Boer and
//!   F. Jellinek, Z. Anorg. Allg. Chem. 540 (1986) 15);
//! * WS2: a = 3.1532 Å, c = 12.323 Å, z(S) = 0.6225 (2H; W. J. Schutte, J. L. de Boer and
//!   F. Jellinek, J. Solid State Chem. 70 (1987) 207);
//! * BiFeO3-type: ideal cubic perovskite Bi/Fe/O with the pseudocubic a = 3.965 Å of
//!   rhombohedral BiFeO3 (F. Kubel and H. Schmid, Acta Cryst. B 46 (1990) 698); the R3c
//!   octahedral tilts and polar displacements are not modelled;
//! * LSMO-type: ideal cubic perovskite La/Mn/O with the bulk pseudocubic a = 3.873 Å commonly
//!   quoted for La0.7Sr0.3MnO3; every A site is La (the 30 % Sr disorder is not modelled:
//!   substitute atoms with [`Structure::new`] if needed).
//!
//! ```
//! use stem_sim::structure::{builders, ZoneAxis};
//!
//! let si = builders::si(ZoneAxis::Z110)?;
//! // ½[1̄10] × [001] × ½[110]: a/√2 × a × a/√2 holding 4 Si atoms (half a cube of 8).
//! let a = 5.43102;
//! let [x, y, z] = si.cell_a();
//! assert!((x - a / 2f64.sqrt()).abs() < 1e-4 && (y - a).abs() < 1e-4 && (z - x).abs() < 1e-12);
//! assert_eq!(si.atoms().len(), 4);
//! assert!(builders::by_name("MoS2", ZoneAxis::Z110).is_err());
//! # Ok::<(), stem_sim::Error>(())
//! ```

use std::str::FromStr;

use super::{Atom, Structure};
use crate::error::{Error, Result};

/// A zone axis of a cubic crystal (the direction of the beam, which becomes z).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ZoneAxis {
    /// \[001\].
    #[default]
    Z001,
    /// \[110\].
    Z110,
    /// \[111\].
    Z111,
}

impl std::fmt::Display for ZoneAxis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ZoneAxis::Z001 => "[001]",
            ZoneAxis::Z110 => "[110]",
            ZoneAxis::Z111 => "[111]",
        })
    }
}

impl FromStr for ZoneAxis {
    type Err = Error;
    /// Parses `001`, `[001]`, `110`, `[110]`, `111` or `[111]`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().trim_start_matches('[').trim_end_matches(']') {
            "001" => Ok(ZoneAxis::Z001),
            "110" => Ok(ZoneAxis::Z110),
            "111" => Ok(ZoneAxis::Z111),
            _ => Err(Error::invalid(
                "zone",
                format!("unknown zone axis {s:?} (use 001, 110 or 111)"),
            )),
        }
    }
}

const Z_O: u8 = 8;

/// SrTiO3 lattice constant in Å.
pub const SRTIO3_A: f64 = 3.905;
/// Si lattice constant in Å.
pub const SI_A: f64 = 5.431_020;
/// GaAs lattice constant in Å.
pub const GAAS_A: f64 = 5.653_25;
/// NiO lattice constant in Å.
pub const NIO_A: f64 = 4.177;
/// Graphene lattice constant in Å.
pub const GRAPHENE_A: f64 = 2.4612;
/// Graphite interlayer spacing in Å (the z-length of the graphene cell).
pub const GRAPHITE_LAYER_SPACING_A: f64 = 3.3540;
/// BiFeO3 pseudocubic lattice constant in Å.
pub const BIFEO3_A: f64 = 3.965;
/// La0.7Sr0.3MnO3 pseudocubic lattice constant in Å.
pub const LSMO_A: f64 = 3.873;

/// Conventional cubic cell: lattice constant and basis `(Z, fractional position)`.
struct Cubic {
    a: f64,
    basis: Vec<(u8, [f64; 3])>,
    fcc: bool,
}

const FCC_POINTS: [[f64; 3]; 4] = [
    [0.0, 0.0, 0.0],
    [0.0, 0.5, 0.5],
    [0.5, 0.0, 0.5],
    [0.5, 0.5, 0.0],
];

impl Cubic {
    fn perovskite(a: f64, a_site: u8, b_site: u8) -> Self {
        Self {
            a,
            basis: vec![
                (a_site, [0.0, 0.0, 0.0]),
                (b_site, [0.5, 0.5, 0.5]),
                (Z_O, [0.5, 0.5, 0.0]),
                (Z_O, [0.5, 0.0, 0.5]),
                (Z_O, [0.0, 0.5, 0.5]),
            ],
            fcc: false,
        }
    }

    /// An fcc lattice with a motif `(Z, offset)` at every lattice point.
    fn fcc(a: f64, motif: &[(u8, [f64; 3])]) -> Self {
        let mut basis = Vec::new();
        for p in FCC_POINTS {
            for &(z, o) in motif {
                basis.push((z, [p[0] + o[0], p[1] + o[1], p[2] + o[2]]));
            }
        }
        Self {
            a,
            basis,
            fcc: true,
        }
    }

    fn cell_vectors(&self, zone: ZoneAxis) -> [[f64; 3]; 3] {
        match (zone, self.fcc) {
            (ZoneAxis::Z001, false) => [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            (ZoneAxis::Z001, true) => [[0.5, 0.5, 0.0], [-0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
            (ZoneAxis::Z110, false) => [[-1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]],
            (ZoneAxis::Z110, true) => [[-0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]],
            (ZoneAxis::Z111, false) => [[1.0, -1.0, 0.0], [1.0, 1.0, -2.0], [1.0, 1.0, 1.0]],
            (ZoneAxis::Z111, true) => [[0.5, -0.5, 0.0], [0.5, 0.5, -1.0], [1.0, 1.0, 1.0]],
        }
    }

    /// All atoms of the crystal inside the orthogonal cell spanned by `v` (conventional units).
    fn orient(&self, zone: ZoneAxis) -> Result<Structure> {
        let v = self.cell_vectors(zone);
        let norm = |u: [f64; 3]| (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]).sqrt();
        let dot = |u: [f64; 3], w: [f64; 3]| u[0] * w[0] + u[1] * w[1] + u[2] * w[2];
        let lengths = [norm(v[0]), norm(v[1]), norm(v[2])];
        let cross = [
            v[1][1] * v[2][2] - v[1][2] * v[2][1],
            v[1][2] * v[2][0] - v[1][0] * v[2][2],
            v[1][0] * v[2][1] - v[1][1] * v[2][0],
        ];
        let det = dot(v[0], cross);
        let expected = (det.abs() * self.basis.len() as f64).round() as usize;
        // Integer translations covering the cell's bounding box.
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        for d in 0..3 {
            let vals = (0..8).map(|c: usize| {
                (0..3)
                    .filter(|i| c >> i & 1 == 1)
                    .map(|i| v[i][d])
                    .sum::<f64>()
            });
            let (mn, mx) = vals.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
            lo[d] = mn.floor() as i64 - 1;
            hi[d] = mx.ceil() as i64 + 1;
        }
        let mut atoms = Vec::with_capacity(expected);
        for nx in lo[0]..=hi[0] {
            for ny in lo[1]..=hi[1] {
                for nz in lo[2]..=hi[2] {
                    for &(z, b) in &self.basis {
                        let p = [nx as f64 + b[0], ny as f64 + b[1], nz as f64 + b[2]];
                        let mut frac = [0.0; 3];
                        for i in 0..3 {
                            frac[i] = dot(p, v[i]) / (lengths[i] * lengths[i]);
                        }
                        if frac.iter().all(|&f| (-1e-9..1.0 - 1e-9).contains(&f)) {
                            atoms.push(Atom::new(
                                z,
                                [
                                    frac[0].max(0.0) * lengths[0] * self.a,
                                    frac[1].max(0.0) * lengths[1] * self.a,
                                    frac[2].max(0.0) * lengths[2] * self.a,
                                ],
                            ));
                        }
                    }
                }
            }
        }
        if atoms.len() != expected {
            return Err(Error::NonOrthogonalCell {
                reason: format!(
                    "internal: the {zone} cell holds {} atoms instead of {expected}",
                    atoms.len()
                ),
            });
        }
        Structure::new(
            [
                lengths[0] * self.a,
                lengths[1] * self.a,
                lengths[2] * self.a,
            ],
            atoms,
        )
    }
}

/// SrTiO3 (cubic perovskite, a = 3.905 Å). For \[001\] the atoms are, in order, Sr (0,0,0),
/// Ti (½,½,½), O (½,½,0), O (½,0,½), O (0,½,½) (fractions of a): shifted by a/4 along z and
/// repeated 4×4×1 this is exactly the structure of the abTEM reference arrays.
///
/// # Errors
/// None in practice (the signature is shared with the other builders).
pub fn srtio3(zone: ZoneAxis) -> Result<Structure> {
    Cubic::perovskite(SRTIO3_A, 38, 22).orient(zone)
}

/// Silicon (diamond structure, a = 5.431 020 Å).
///
/// # Errors
/// None in practice.
pub fn si(zone: ZoneAxis) -> Result<Structure> {
    Cubic::fcc(SI_A, &[(14, [0.0; 3]), (14, [0.25; 3])]).orient(zone)
}

/// GaAs (zinc blende, a = 5.653 25 Å): Ga on the fcc sites, As at +(¼,¼,¼).
///
/// # Errors
/// None in practice.
pub fn gaas(zone: ZoneAxis) -> Result<Structure> {
    Cubic::fcc(GAAS_A, &[(31, [0.0; 3]), (33, [0.25; 3])]).orient(zone)
}

/// NiO (rock salt, a = 4.177 Å): Ni on the fcc sites, O at +(½,0,0).
///
/// # Errors
/// None in practice.
pub fn nio(zone: ZoneAxis) -> Result<Structure> {
    Cubic::fcc(NIO_A, &[(28, [0.0; 3]), (Z_O, [0.5, 0.0, 0.0])]).orient(zone)
}

/// A BiFeO3-type perovskite: ideal cubic Bi/Fe/O3 with a = 3.965 Å (see the module docs).
///
/// # Errors
/// None in practice.
pub fn bifeo3_type(zone: ZoneAxis) -> Result<Structure> {
    Cubic::perovskite(BIFEO3_A, 83, 26).orient(zone)
}

/// An LSMO-type perovskite: ideal cubic La/Mn/O3 with a = 3.873 Å (see the module docs).
///
/// # Errors
/// None in practice.
pub fn lsmo_type(zone: ZoneAxis) -> Result<Structure> {
    Cubic::perovskite(LSMO_A, 57, 25).orient(zone)
}

/// A hexagonal layer in the rectangular cell a × √3·a × c: `sites` are `(Z, fractional x,
/// fractional y, z in Å)`.
fn hexagonal_layer(a: f64, c: f64, sites: &[(u8, f64, f64, f64)]) -> Result<Structure> {
    let b = a * 3f64.sqrt();
    Structure::new(
        [a, b, c],
        sites
            .iter()
            .map(|&(z, fx, fy, h)| Atom::new(z, [fx * a, fy * b, h]))
            .collect(),
    )
}

/// Graphene: one layer (a = 2.4612 Å) in the rectangular a × √3·a cell (4 C atoms), cell
/// z-length one graphite layer spacing (3.354 Å) with the layer at mid-height; repeating along z
/// gives AA-stacked layers.
///
/// # Errors
/// None in practice.
pub fn graphene() -> Result<Structure> {
    let h = 0.5 * GRAPHITE_LAYER_SPACING_A;
    hexagonal_layer(
        GRAPHENE_A,
        GRAPHITE_LAYER_SPACING_A,
        &[
            (6, 0.0, 0.0, h),
            (6, 0.5, 1.0 / 6.0, h),
            (6, 0.5, 0.5, h),
            (6, 0.0, 2.0 / 3.0, h),
        ],
    )
}

/// A trigonal-prismatic MX2 monolayer: M on the lattice sites, X pairs above and below the
/// hollow sites at ±h, in a cell of z-length c/2 (one layer of the 2H crystal).
fn mx2(a: f64, c: f64, z_x: f64, m: u8, x: u8) -> Result<Structure> {
    let h = (0.75 - z_x) * c;
    let mid = 0.25 * c;
    let mut sites = Vec::new();
    for (fx, fy) in [(0.0, 0.0), (0.5, 0.5)] {
        sites.push((m, fx, fy, mid));
    }
    for (fx, fy) in [(0.5, 1.0 / 6.0), (0.0, 2.0 / 3.0)] {
        sites.push((x, fx, fy, mid - h));
        sites.push((x, fx, fy, mid + h));
    }
    hexagonal_layer(a, 0.5 * c, &sites)
}

/// MoS2 monolayer (2H parameters a = 3.1604 Å, c = 12.295 Å, z(S) = 0.621: S planes ±1.586 Å
/// from the Mo plane) in the rectangular a × √3·a cell (2 Mo, 4 S), cell z-length c/2.
///
/// # Errors
/// None in practice.
pub fn mos2() -> Result<Structure> {
    mx2(3.1604, 12.295, 0.621, 42, 16)
}

/// WS2 monolayer (2H parameters a = 3.1532 Å, c = 12.323 Å, z(S) = 0.6225) in the rectangular
/// a × √3·a cell (2 W, 4 S), cell z-length c/2.
///
/// # Errors
/// None in practice.
pub fn ws2() -> Result<Structure> {
    mx2(3.1532, 12.323, 0.6225, 74, 16)
}

/// Names accepted by [`by_name`].
pub const NAMES: [&str; 9] = [
    "srtio3", "si", "gaas", "graphene", "mos2", "ws2", "nio", "bifeo3", "lsmo",
];

/// A builder by name (case-insensitive): `srtio3`, `si`, `gaas`, `graphene`, `mos2`, `ws2`,
/// `nio`, `bifeo3`, `lsmo`.
///
/// # Errors
/// [`Error::InvalidParameter`] for an unknown name (listing the known ones);
/// [`Error::NonOrthogonalCell`] for a layered crystal with a zone other than \[001\].
pub fn by_name(name: &str, zone: ZoneAxis) -> Result<Structure> {
    let layered = |f: fn() -> Result<Structure>, what: &str| {
        if zone == ZoneAxis::Z001 {
            f()
        } else {
            Err(Error::NonOrthogonalCell {
                reason: format!(
                    "{what} is built as a single layer with the beam normal to it ([001]); \
                     a {zone} view of one layer has no orthogonal periodic cell"
                ),
            })
        }
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "srtio3" => srtio3(zone),
        "si" => si(zone),
        "gaas" => gaas(zone),
        "graphene" => layered(graphene, "graphene"),
        "mos2" => layered(mos2, "MoS2"),
        "ws2" => layered(ws2, "WS2"),
        "nio" => nio(zone),
        "bifeo3" => bifeo3_type(zone),
        "lsmo" => lsmo_type(zone),
        _ => Err(Error::invalid(
            "name",
            format!("unknown structure {name:?}; known: {}", NAMES.join(", ")),
        )),
    }
}
