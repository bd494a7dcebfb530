use super::*;
use crate::potential::reference;

const PARAMS: [Parametrization; 2] = [Parametrization::Lobato, Parametrization::Kirkland];

#[test]
fn symbols_round_trip_and_reject_unknowns() {
    for z in 1..=MAX_Z {
        let s = symbol(z).unwrap();
        assert_eq!(atomic_number(s).unwrap(), z);
        assert_eq!(atomic_number(&s.to_uppercase()).unwrap(), z);
    }
    assert_eq!(symbol(1).unwrap(), "H");
    assert_eq!(symbol(38).unwrap(), "Sr");
    assert_eq!(symbol(103).unwrap(), "Lr");
    assert_eq!(atomic_number(" o ").unwrap(), 8);
    for z in [0u8, 104, 255] {
        assert!(matches!(symbol(z), Err(Error::UnknownElement { .. })));
        assert!(matches!(
            ElementPotential::new(z, Parametrization::Lobato),
            Err(Error::UnknownElement { .. })
        ));
    }
    for s in ["", "Xx", "Srr", "D"] {
        assert!(matches!(
            atomic_number(s),
            Err(Error::UnknownElement { .. })
        ));
    }
}

#[test]
fn inverse_kappa_matches_reference_note() {
    // multislice.md §2.1: 1/κ = 47.877647 V·Å² (7 significant digits quoted).
    assert!((INV_KAPPA_V_A2 - 47.877_647).abs() < 5e-6);
}

#[test]
fn bessel_functions_match_tabulated_values() {
    // Values from Abramowitz & Stegun Table 9.8 / high-precision evaluation (mpmath):
    // K0(1), K1(1), K0(2), K1(2), K0(0.1), K1(0.1), K0(5), K1(5).
    let cases = [
        (0.0, 1.0, 0.421_024_438_240_708_3),
        (1.0, 1.0, 0.601_907_230_197_234_6),
        (0.0, 2.0, 0.113_893_872_749_533_4),
        (1.0, 2.0, 0.139_865_881_816_522_4),
        (0.0, 0.1, 2.427_069_024_702_017),
        (1.0, 0.1, 9.853_844_780_870_606),
        (0.0, 5.0, 0.003_691_098_334_042_594),
        (1.0, 5.0, 0.004_044_613_445_452_164),
    ];
    for (nu, x, want) in cases {
        let got = bessel_k(nu, x);
        // 1e-13: the trapezoidal rule is exact to rounding; the reference values have 16 digits.
        assert!(
            ((got - want) / want).abs() < 1e-13,
            "K{nu}({x}) = {got}, want {want}"
        );
    }
    assert_eq!(bessel_k0(0.0), f64::INFINITY);
    assert_eq!(bessel_k1(800.0), 0.0);
}

#[test]
fn forward_scattering_factors_match_reference_note() {
    // multislice.md §2.2: f_e(0) in Å, quoted to 4 decimals (hence the 6e-5 tolerance).
    let cases = [
        (Parametrization::Lobato, 38, 13.1099),
        (Parametrization::Lobato, 22, 8.7797),
        (Parametrization::Lobato, 8, 2.0291),
        (Parametrization::Kirkland, 38, 13.0552),
        (Parametrization::Kirkland, 22, 8.7400),
        (Parametrization::Kirkland, 8, 1.9897),
    ];
    for (p, z, want) in cases {
        let got = ElementPotential::new(z, p)
            .unwrap()
            .scattering_factor_a(0.0);
        assert!((got - want).abs() < 6e-5, "{p:?} Z={z}: {got} vs {want}");
    }
    // Lobato: f_e(0) = 2 Σ aᵢ exactly.
    for z in 1..=MAX_Z {
        let e = ElementPotential::new(z, Parametrization::Lobato).unwrap();
        let AtomicParameters::Lobato { a, .. } = e.parameters() else {
            unreachable!()
        };
        let want = 2.0 * a.iter().sum::<f64>();
        assert!((e.scattering_factor_a(0.0) - want).abs() <= 1e-12 * want.abs().max(1.0));
    }
}

#[test]
fn every_element_has_a_physical_scattering_factor() {
    // Positive, finite, decreasing f_e over 0..6 Å⁻¹ and a finite positive potential, for every
    // element in both tables: catches a mistyped exponent or a shifted column.
    for p in PARAMS {
        for z in 1..=MAX_Z {
            let e = ElementPotential::new(z, p).unwrap();
            let mut prev = f64::INFINITY;
            for i in 0..=60 {
                let f = e.scattering_factor_a(0.1 * f64::from(i));
                assert!(f.is_finite() && f > 0.0, "{p:?} Z={z} f({i})={f}");
                assert!(
                    f <= prev * (1.0 + 1e-9),
                    "{p:?} Z={z} not decreasing at {i}"
                );
                prev = f;
            }
            for r in [0.05, 0.3, 1.0] {
                let v = e.projected_potential_va(r);
                assert!(v.is_finite() && v > 0.0, "{p:?} Z={z} Vz({r})={v}");
            }
        }
        // Heavier atoms scatter more forward (f_e(0) grows roughly with Z^(1/3)).
        let f = |z| {
            ElementPotential::new(z, p)
                .unwrap()
                .scattering_factor_a(0.0)
        };
        // (Not Au > Sr: the diffuse 5s shell of Sr gives it the larger f_e(0).)
        assert!(f(6) < f(14) && f(14) < f(38) && f(14) < f(79));
    }
}

#[test]
fn projected_potential_is_the_z_integral_of_the_potential() {
    // Oracle: V_z(r) = ∫ V(√(r²+z²)) dz by the substitution z = r sinh u (smooth integrand) and a
    // fine trapezoidal rule; 1e-9 relative is far above its error.
    for p in PARAMS {
        for z in [8u8, 22, 38, 79] {
            let e = ElementPotential::new(z, p).unwrap();
            for r in [0.02, 0.1, 0.4, 1.3] {
                let h = 1e-3;
                let mut sum = 0.0;
                for i in 1..20_000 {
                    let u = h * f64::from(i);
                    sum += e.potential_v(r * u.cosh()) * r * u.cosh();
                }
                let integral = 2.0 * h * (sum + 0.5 * e.potential_v(r) * r);
                let vz = e.projected_potential_va(r);
                assert!(
                    ((integral - vz) / vz).abs() < 1e-9,
                    "{p:?} Z={z} r={r}: {integral} vs {vz}"
                );
            }
        }
    }
}

#[test]
fn projected_scattering_factor_is_the_hankel_transform_of_vz() {
    // Oracle: F(k) = 2π ∫ V_z(r) J0(2πkr) r dr at k = 0 (the integral of V_z over the plane),
    // with r = e^s on a fine grid; checks the real- and reciprocal-space formulas agree.
    for p in PARAMS {
        for z in [8u8, 38] {
            let e = ElementPotential::new(z, p).unwrap();
            let h = 2e-3;
            let mut sum = 0.0;
            let mut s = -14.0f64;
            while s < 3.5 {
                let r = s.exp();
                sum += e.projected_potential_va(r) * r * r;
                s += h;
            }
            let integral = 2.0 * PI * sum * h;
            let want = e.projected_scattering_factor_va3(0.0);
            // 1e-6: truncation of the radial integral at e^3.5 = 33 Å and e^-14 Å.
            assert!(
                ((integral - want) / want).abs() < 1e-6,
                "{p:?} Z={z}: {integral} vs {want}"
            );
        }
    }
}

#[test]
fn radial_profiles_match_abtem() {
    // shared/reference/abtem/d_radial_profiles.npz: abTEM 1.0.11's analytic functions on
    // r = linspace(0.01, 3, 300) Å and k = linspace(0, 4, 401) Å⁻¹.
    let file = "d_radial_profiles.npz";
    let r = reference::npz_f64(file, "r_A");
    let k = reference::npz_f64(file, "k_invA");
    assert_eq!((r.len(), k.len()), (300, 401));
    for (p, pname) in [
        (Parametrization::Lobato, "lobato"),
        (Parametrization::Kirkland, "kirkland"),
    ] {
        for (z, el) in [(38u8, "Sr"), (22, "Ti"), (8, "O")] {
            let e = ElementPotential::new(z, p).unwrap();
            // abTEM evaluates these functions in float32: Lobato's alternating
            // coefficients amplify its rounding (6e-8) by Σ|aᵢ|/|Σaᵢ| (≈ 50 for Ti, 130 for
            // O), so the tolerance of F and V_z is 4·6e-8 times that factor, at least 1e-6.
            let float32_tol = match e.parameters() {
                AtomicParameters::Lobato { a, .. } => {
                    let amp = a.iter().map(|v| v.abs()).sum::<f64>() / a.iter().sum::<f64>().abs();
                    (4.0 * 6e-8 * amp).max(1e-6)
                }
                AtomicParameters::Kirkland { .. } => 1e-6,
            };
            let check = |key: &str, xs: &[f64], f: &dyn Fn(f64) -> f64, tol: f64| {
                let want = reference::npz_f64(file, &format!("{pname}_{el}_{key}"));
                let got: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
                let err = reference::rel_l2(&got, &want);
                let max_rel = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| ((g - w) / w).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err < tol && max_rel < 10.0 * tol,
                    "{pname} {el} {key}: rel L2 {err:e}, max rel {max_rel:e}"
                );
            };
            // 1e-6 (multislice.md §9 test 2) where abTEM's float32 rounding allows it.
            check(
                "scattering_factor_A",
                &k,
                &|x| e.scattering_factor_a(x),
                float32_tol,
            );
            check(
                "projected_scattering_factor_VA3",
                &k,
                &|x| e.projected_scattering_factor_va3(x),
                float32_tol,
            );
            check("potential_V", &r, &|x| e.potential_v(x), float32_tol);
            check(
                "projected_potential_VA",
                &r,
                &|x| e.projected_potential_va(x),
                float32_tol,
            );
        }
    }
}
