use std::f64::consts::FRAC_1_SQRT_2;

use super::*;
use crate::potential::reference;
use crate::structure::builders::{self, ZoneAxis};

/// √3/4: the diamond / zinc-blende bond length in units of a.
const SQRT3_4: f64 = 0.433_012_701_892_219_3;

const ZONES: [ZoneAxis; 3] = [ZoneAxis::Z001, ZoneAxis::Z110, ZoneAxis::Z111];

/// Shortest distance between atoms of elements `za` and `zb` under periodic boundaries
/// (brute force over the neighbouring images).
fn min_distance(s: &Structure, za: u8, zb: u8) -> f64 {
    let c = s.cell_a();
    let mut best = f64::INFINITY;
    for (i, a) in s.atoms().iter().enumerate() {
        for (j, b) in s.atoms().iter().enumerate() {
            if a.z != za || b.z != zb {
                continue;
            }
            for ix in -1..=1 {
                for iy in -1..=1 {
                    for iz in -1..=1 {
                        if i == j && ix == 0 && iy == 0 && iz == 0 {
                            continue;
                        }
                        let d = [
                            b.position_a[0] + f64::from(ix) * c[0] - a.position_a[0],
                            b.position_a[1] + f64::from(iy) * c[1] - a.position_a[1],
                            b.position_a[2] + f64::from(iz) * c[2] - a.position_a[2],
                        ];
                        best = best.min((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt());
                    }
                }
            }
        }
    }
    best
}

fn count(s: &Structure, z: u8) -> usize {
    s.atoms().iter().filter(|a| a.z == z).count()
}

#[test]
fn srtio3_reproduces_the_abtem_reference_structure() {
    // structure_srtio3_4x4x1_*.npy: ASE's SrTiO3 shifted by a/4 in z, `atoms * (4, 4, 1)`.
    let s = builders::srtio3(ZoneAxis::Z001)
        .unwrap()
        .translate([0.0, 0.0, 3.905 / 4.0])
        .unwrap()
        .repeat([4, 4, 1])
        .unwrap();
    let pos = reference::npy_f64("structure_srtio3_4x4x1_positions.npy");
    let num = reference::npy_f64("structure_srtio3_4x4x1_numbers.npy");
    let cell = reference::npy_f64("structure_srtio3_4x4x1_cell.npy");
    assert_eq!(pos.shape(), &[80, 3]);
    assert_eq!(s.atoms().len(), 80);
    for d in 0..3 {
        assert!((s.cell_a()[d] - cell[[d, d]]).abs() < 1e-12);
    }
    for (i, a) in s.atoms().iter().enumerate() {
        assert_eq!(f64::from(a.z), num[[i]], "atom {i}");
        for d in 0..3 {
            // 1e-12 Å: both are sums of the same few f64 terms.
            assert!(
                (a.position_a[d] - pos[[i, d]]).abs() < 1e-12,
                "atom {i} axis {d}: {} vs {}",
                a.position_a[d],
                pos[[i, d]]
            );
        }
    }
}

#[test]
fn builders_have_the_right_stoichiometry_density_and_bond_lengths() {
    // For every crystal and zone: atoms per volume equal the conventional cell's, the
    // composition is right and the nearest-neighbour distances are the textbook ones.
    struct Case {
        name: &'static str,
        a: f64,
        atoms_per_cube: f64,
        composition: &'static [(u8, usize)],
        bonds: &'static [(u8, u8, f64)], // (Z1, Z2, distance / a)
    }
    let s3 = 3f64.sqrt();
    let s2 = 2f64.sqrt();
    let cases = [
        Case {
            name: "srtio3",
            a: builders::SRTIO3_A,
            atoms_per_cube: 5.0,
            composition: &[(38, 1), (22, 1), (8, 3)],
            bonds: &[(22, 8, 0.5), (38, 8, FRAC_1_SQRT_2), (38, 38, 1.0)],
        },
        Case {
            name: "bifeo3",
            a: builders::BIFEO3_A,
            atoms_per_cube: 5.0,
            composition: &[(83, 1), (26, 1), (8, 3)],
            bonds: &[(26, 8, 0.5), (83, 8, FRAC_1_SQRT_2)],
        },
        Case {
            name: "lsmo",
            a: builders::LSMO_A,
            atoms_per_cube: 5.0,
            composition: &[(57, 1), (25, 1), (8, 3)],
            bonds: &[(25, 8, 0.5), (57, 8, FRAC_1_SQRT_2)],
        },
        Case {
            name: "si",
            a: builders::SI_A,
            atoms_per_cube: 8.0,
            composition: &[(14, 1)],
            bonds: &[(14, 14, SQRT3_4)],
        },
        Case {
            name: "gaas",
            a: builders::GAAS_A,
            atoms_per_cube: 8.0,
            composition: &[(31, 1), (33, 1)],
            bonds: &[(31, 33, SQRT3_4), (31, 31, FRAC_1_SQRT_2)],
        },
        Case {
            name: "nio",
            a: builders::NIO_A,
            atoms_per_cube: 8.0,
            composition: &[(28, 1), (8, 1)],
            bonds: &[(28, 8, 0.5), (28, 28, FRAC_1_SQRT_2)],
        },
    ];
    for c in &cases {
        for zone in ZONES {
            let s = builders::by_name(c.name, zone).unwrap();
            let [x, y, z] = s.cell_a();
            let density = s.atoms().len() as f64 / (x * y * z);
            let want = c.atoms_per_cube / c.a.powi(3);
            assert!(
                (density / want - 1.0).abs() < 1e-12,
                "{} {zone}: density",
                c.name
            );
            let unit: usize = c.composition.iter().map(|(_, n)| n).sum();
            let formula_units = s.atoms().len() / unit;
            for &(el, n) in c.composition {
                assert_eq!(count(&s, el), n * formula_units, "{} {zone} Z={el}", c.name);
            }
            for &(za, zb, d) in c.bonds {
                let got = min_distance(&s, za, zb);
                assert!(
                    (got - d * c.a).abs() < 1e-9,
                    "{} {zone}: d({za},{zb}) = {got}, want {}",
                    c.name,
                    d * c.a
                );
            }
            // All atoms inside the cell.
            for a in s.atoms() {
                for d in 0..3 {
                    assert!(a.position_a[d] >= 0.0 && a.position_a[d] < s.cell_a()[d]);
                }
            }
        }
    }
    // Cell sizes: primitive cubic [110] a√2 × a × a√2, [111] a√2 × a√6 × a√3; fcc halves.
    let sto = builders::srtio3(ZoneAxis::Z111).unwrap().cell_a();
    let a = builders::SRTIO3_A;
    for (got, want) in sto.iter().zip([a * s2, a * 6f64.sqrt(), a * s3]) {
        assert!((got - want).abs() < 1e-12);
    }
    assert_eq!(builders::srtio3(ZoneAxis::Z111).unwrap().atoms().len(), 30);
    assert_eq!(builders::si(ZoneAxis::Z001).unwrap().atoms().len(), 4);
    assert_eq!(builders::si(ZoneAxis::Z111).unwrap().atoms().len(), 12);
}

#[test]
fn layered_builders() {
    let g = builders::graphene().unwrap();
    assert_eq!(g.atoms().len(), 4);
    // C–C bond a/√3 = 1.421 Å.
    assert!((min_distance(&g, 6, 6) - builders::GRAPHENE_A / 3f64.sqrt()).abs() < 1e-9);
    for (s, m, a, dms) in [
        (builders::mos2().unwrap(), 42u8, 3.1604, 2.41),
        (builders::ws2().unwrap(), 74, 3.1532, 2.41),
    ] {
        assert_eq!(count(&s, m), 2);
        assert_eq!(count(&s, 16), 4);
        assert!((min_distance(&s, m, m) - a).abs() < 1e-9);
        // Metal–S bond ≈ 2.41 Å (2H-MoS2 2.41 Å, WS2 2.40 Å).
        assert!((min_distance(&s, m, 16) - dms).abs() < 0.02);
    }
    for name in ["graphene", "MoS2", "ws2"] {
        assert!(builders::by_name(name, ZoneAxis::Z001).is_ok());
        for zone in [ZoneAxis::Z110, ZoneAxis::Z111] {
            assert!(matches!(
                builders::by_name(name, zone),
                Err(Error::NonOrthogonalCell { .. })
            ));
        }
    }
    assert!(matches!(
        builders::by_name("unobtainium", ZoneAxis::Z001),
        Err(Error::InvalidParameter { name: "name", .. })
    ));
    assert_eq!(
        builders::by_name("SrTiO3", ZoneAxis::Z001)
            .unwrap()
            .atoms()
            .len(),
        5
    );
}

#[test]
fn zone_axis_parses_and_displays() {
    for z in ZONES {
        assert_eq!(z.to_string().parse::<ZoneAxis>().unwrap(), z);
    }
    assert_eq!("110".parse::<ZoneAxis>().unwrap(), ZoneAxis::Z110);
    assert!("100".parse::<ZoneAxis>().is_err());
}

#[test]
fn new_validates_its_input() {
    let ok = Atom::new(8, [0.0; 3]);
    assert!(matches!(
        Structure::new([1.0, 0.0, 1.0], vec![ok]),
        Err(Error::InvalidParameter { name: "cell_a", .. })
    ));
    assert!(matches!(
        Structure::new([1.0, 1.0, 1.0], vec![]),
        Err(Error::EmptyStructure { .. })
    ));
    assert!(matches!(
        Structure::new([1.0; 3], vec![Atom::new(0, [0.0; 3])]),
        Err(Error::UnknownElement { .. })
    ));
    assert!(matches!(
        Structure::new([1.0; 3], vec![Atom::new(104, [0.0; 3])]),
        Err(Error::UnknownElement { .. })
    ));
    assert!(Structure::new([1.0; 3], vec![Atom::new(8, [f64::NAN, 0.0, 0.0])]).is_err());
    let mut bad = ok;
    bad.rms_displacement_a = -0.1;
    assert!(Structure::new([1.0; 3], vec![bad]).is_err());
}

#[test]
fn repeat_translate_and_rms() {
    let s = builders::srtio3(ZoneAxis::Z001).unwrap();
    assert!(matches!(
        s.repeat([0, 1, 1]),
        Err(Error::InvalidParameter { name: "reps", .. })
    ));
    assert!(s.repeat([1 << 20, 1 << 20, 1 << 20]).is_err());
    let r = s.repeat([2, 3, 4]).unwrap();
    assert_eq!(r.atoms().len(), 120);
    // ASE order: copy (ix, iy, iz) = (1, 2, 3) starts at 5·((1·3 + 2)·4 + 3) = 115.
    assert!((r.atoms()[115].position_a[0] - 3.905).abs() < 1e-12);
    assert!((r.atoms()[115].position_a[1] - 2.0 * 3.905).abs() < 1e-12);
    assert!((r.atoms()[115].position_a[2] - 3.0 * 3.905).abs() < 1e-12);
    // Translation wraps into the cell and is undone by the opposite shift.
    let t = s.translate([-0.5, 10.0, 0.25]).unwrap();
    for a in t.atoms() {
        for d in 0..3 {
            assert!(a.position_a[d] >= 0.0 && a.position_a[d] < 3.905);
        }
    }
    let back = t.translate([0.5, -10.0, -0.25]).unwrap();
    for (a, b) in back.atoms().iter().zip(s.atoms()) {
        for d in 0..3 {
            let diff = (a.position_a[d] - b.position_a[d]).rem_euclid(3.905);
            assert!(diff.min(3.905 - diff) < 1e-12);
        }
    }
    assert!(s.translate([f64::INFINITY, 0.0, 0.0]).is_err());
    // Per-element rms displacements.
    let p = s
        .with_rms_displacement(38, 0.08)
        .unwrap()
        .with_rms_displacement(8, 0.05)
        .unwrap();
    for a in p.atoms() {
        let want = match a.z {
            38 => 0.08,
            8 => 0.05,
            _ => 0.0,
        };
        assert_eq!(a.rms_displacement_a, want);
    }
    assert!(matches!(
        s.with_rms_displacement(14, 0.1),
        Err(Error::InvalidParameter { name: "z", .. })
    ));
    assert!(matches!(
        s.with_rms_displacement(0, 0.1),
        Err(Error::UnknownElement { .. })
    ));
    assert!(s.with_rms_displacement(38, -0.1).is_err());
    assert!(s.with_rms_displacement(38, f64::NAN).is_err());
    assert_eq!(s.elements(), vec![8, 22, 38]);
}

#[test]
fn xyz_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaas.xyz");
    let s = builders::gaas(ZoneAxis::Z111)
        .unwrap()
        .with_rms_displacement(31, 0.0731)
        .unwrap();
    s.write_xyz(&path).unwrap();
    let back = Structure::read_xyz(&path).unwrap();
    assert_eq!(back, s);
}

#[test]
fn xyz_reads_ase_style_files_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // ASE-style header with extra columns and properties, numbers as species.
    let p = write(
        "ase.xyz",
        "2\nLattice=\"4.0 0.0 0.0 0.0 5.0 0.0 0.0 0.0 6.0\" \
         Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"T T T\"\n\
         Sr 0.0 0.5 1.0 0.1 0.2 0.3\n8 1.0 1.5 2.0 0 0 0\n",
    );
    let s = Structure::read_xyz(&p).unwrap();
    assert_eq!(s.cell_a(), [4.0, 5.0, 6.0]);
    assert_eq!(s.atoms()[0].z, 38);
    assert_eq!(s.atoms()[1].z, 8);
    assert_eq!(s.atoms()[1].position_a, [1.0, 1.5, 2.0]);
    // Default Properties (species + pos).
    let p = write("plain.xyz", "1\nLattice=\"3 0 0 0 3 0 0 0 3\"\nO 1 1 1\n");
    assert_eq!(Structure::read_xyz(&p).unwrap().atoms().len(), 1);

    type Case = (&'static str, &'static str, fn(&Error) -> bool);
    let cases: [Case; 9] = [
        (
            "nonortho.xyz",
            "1\nLattice=\"3 0.5 0 0 3 0 0 0 3\"\nO 0 0 0\n",
            |e| matches!(e, Error::NonOrthogonalCell { .. }),
        ),
        (
            "nolattice.xyz",
            "1\nProperties=species:S:1:pos:R:3\nO 0 0 0\n",
            |e| matches!(e, Error::InvalidFile { reason, .. } if reason.contains("line 2")),
        ),
        (
            "unknown.xyz",
            "1\nLattice=\"3 0 0 0 3 0 0 0 3\"\nXx 0 0 0\n",
            |e| matches!(e, Error::UnknownElement { .. }),
        ),
        ("zero.xyz", "0\nLattice=\"3 0 0 0 3 0 0 0 3\"\n", |e| {
            matches!(e, Error::EmptyStructure { .. })
        }),
        (
            "count.xyz",
            "two\n\n",
            |e| matches!(e, Error::InvalidFile { reason, .. } if reason.contains("line 1")),
        ),
        (
            "short.xyz",
            "2\nLattice=\"3 0 0 0 3 0 0 0 3\"\nO 0 0 0\n",
            |e| matches!(e, Error::InvalidFile { reason, .. } if reason.contains("line 4")),
        ),
        (
            "number.xyz",
            "1\nLattice=\"3 0 0 0 3 0 0 0 3\"\nO 0 zero 0\n",
            |e| matches!(e, Error::InvalidFile { reason, .. } if reason.contains("line 3")),
        ),
        (
            "columns.xyz",
            "1\nLattice=\"3 0 0 0 3 0 0 0 3\"\nO 0 0\n",
            |e| matches!(e, Error::InvalidFile { reason, .. } if reason.contains("line 3")),
        ),
        (
            "lattice8.xyz",
            "1\nLattice=\"3 0 0 0 3 0 0 0\"\nO 0 0 0\n",
            |e| matches!(e, Error::InvalidFile { .. }),
        ),
    ];
    for (name, text, check) in cases {
        let e = Structure::read_xyz(write(name, text)).unwrap_err();
        assert!(check(&e), "{name}: {e}");
    }
    assert!(matches!(
        Structure::read_xyz(dir.path().join("missing.xyz")),
        Err(Error::Io { .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn structure() -> impl Strategy<Value = Structure> {
        (
            prop::collection::vec(
                (
                    1u8..=103,
                    -20.0f64..20.0,
                    -20.0f64..20.0,
                    -20.0f64..20.0,
                    0.0f64..0.2,
                ),
                1..20,
            ),
            0.5f64..30.0,
            0.5f64..30.0,
            0.5f64..30.0,
        )
            .prop_map(|(atoms, ax, ay, az)| {
                let atoms = atoms
                    .into_iter()
                    .map(|(z, x, y, h, rms)| Atom {
                        z,
                        position_a: [x, y, h],
                        rms_displacement_a: rms,
                    })
                    .collect();
                Structure::new([ax, ay, az], atoms).unwrap()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn xyz_round_trip_is_exact(s in structure()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.xyz");
            s.write_xyz(&path).unwrap();
            prop_assert_eq!(Structure::read_xyz(&path).unwrap(), s);
        }

        #[test]
        fn repeat_keeps_density_and_composition(
            s in structure(), rx in 1usize..4, ry in 1usize..4, rz in 1usize..4,
        ) {
            let r = s.repeat([rx, ry, rz]).unwrap();
            prop_assert_eq!(r.atoms().len(), s.atoms().len() * rx * ry * rz);
            prop_assert_eq!(r.elements(), s.elements());
            for p in [crate::potential::Parametrization::Lobato, crate::potential::Parametrization::Kirkland] {
                let a = crate::potential::mean_inner_potential_v(&s, p).unwrap();
                let b = crate::potential::mean_inner_potential_v(&r, p).unwrap();
                prop_assert!(((a - b) / a).abs() < 1e-12);
            }
        }

        #[test]
        fn translate_wraps_into_the_cell_and_is_invertible(
            s in structure(), dx in -50.0f64..50.0, dy in -50.0f64..50.0, dz in -50.0f64..50.0,
        ) {
            let t = s.translate([dx, dy, dz]).unwrap();
            let c = s.cell_a();
            for (a, b) in t.atoms().iter().zip(s.atoms()) {
                for d in 0..3 {
                    prop_assert!(a.position_a[d] >= 0.0 && a.position_a[d] < c[d]);
                    // Same position modulo the cell (1e-9 Å: rounding of the shifts).
                    let diff = (a.position_a[d] - b.position_a[d] - [dx, dy, dz][d]).rem_euclid(c[d]);
                    prop_assert!(diff.min(c[d] - diff) < 1e-9);
                }
            }
        }
    }
}
