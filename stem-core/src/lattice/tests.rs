use super::*;
use crate::image::Image;
use crate::noise::{Dose, add_poisson_noise};
use crate::synth::{LatticeImageConfig, UnitCell2D};

/// True lattice vectors (px, `[y, x]`) of a synth config, with the renderer's rotation rule.
fn truth(cfg: &LatticeImageConfig) -> [[f64; 2]; 2] {
    let (sin, cos) = cfg.rotation_deg.to_radians().sin_cos();
    let rot = |v: [f64; 2]| {
        [
            (v[0] * cos - v[1] * sin) / cfg.sampling_a,
            (v[0] * sin + v[1] * cos) / cfg.sampling_a,
        ]
    };
    [rot(cfg.cell.a1_a), rot(cfg.cell.a2_a)]
}

/// Expresses each true vector in the estimated basis (integer coefficients), and returns the
/// worst vector error (px) and worst direction error (degrees); asserts the two bases span
/// the same lattice (unimodular change of basis).
fn compare(lat: &Lattice, truth: [[f64; 2]; 2]) -> (f64, f64) {
    let g = lat.reciprocal();
    let mut coeffs = [[0i64; 2]; 2];
    let mut worst = (0.0f64, 0.0f64);
    for (k, b) in truth.iter().enumerate() {
        let c = [dot(*b, g[0]).round() as i64, dot(*b, g[1]).round() as i64];
        coeffs[k] = c;
        let e = lat.translate(c[0], c[1]);
        let err = norm([e[0] - b[0], e[1] - b[1]]);
        let ang = (cross(e, *b) / (norm(e) * norm(*b)))
            .asin()
            .to_degrees()
            .abs();
        worst = (worst.0.max(err), worst.1.max(ang));
    }
    let det = coeffs[0][0] * coeffs[1][1] - coeffs[0][1] * coeffs[1][0];
    assert_eq!(det.abs(), 1, "not the same lattice: {coeffs:?} for {lat:?}");
    worst
}

fn check(cfg: &LatticeImageConfig, noisy_dose: Option<f64>) -> Lattice {
    let img = cfg.render().unwrap().image;
    let img = match noisy_dose {
        Some(d) => add_poisson_noise(img.view(), Dose::CountsPerPixel(d), 7).unwrap(),
        None => img,
    };
    let lat = estimate_lattice(img.view(), &LatticeConfig::default()).unwrap();
    let (err_px, err_deg) = compare(&lat, truth(cfg));
    // Issue #5 accuracy target: ≤ 0.05 px per vector and ≤ 0.1° in direction.
    assert!(err_px <= 0.05, "vector error {err_px} px for {lat:?}");
    assert!(err_deg <= 0.1, "direction error {err_deg}° for {lat:?}");
    lat
}

fn cfg(cell: UnitCell2D, rotation_deg: f64) -> LatticeImageConfig {
    LatticeImageConfig {
        shape: [256, 256],
        rotation_deg,
        origin_a: [1.3, 2.1],
        ..LatticeImageConfig::new(cell)
    }
}

#[test]
fn srtio3_two_species_basis_is_not_the_half_diagonal() {
    let lat = check(&cfg(UnitCell2D::srtio3_001(), 0.0), None);
    // a = 3.905 Å / 0.15 Å/px = 26.03 px; the Sr→TiO half diagonal would be 18.4 px.
    assert!((lat.lengths_px()[0] - 26.033).abs() < 0.05, "{lat:?}");
}

#[test]
fn square_lattice() {
    check(&cfg(UnitCell2D::square(3.0, 40), 0.0), None);
}

#[test]
fn oblique_two_species_lattice() {
    let lat = check(&cfg(UnitCell2D::oblique_two_species(), 0.0), None);
    // 75° between the cell vectors (or 105° for the reduced basis).
    let a = lat.angle_deg();
    assert!((a - 75.0).abs() < 0.1 || (a - 105.0).abs() < 0.1, "{a}");
}

#[test]
fn rotated_lattices() {
    check(&cfg(UnitCell2D::srtio3_001(), 4.0), None);
    check(&cfg(UnitCell2D::oblique_two_species(), -23.0), None);
}

#[test]
fn noisy_lattices_at_5_counts_per_px() {
    check(&cfg(UnitCell2D::srtio3_001(), 7.0), Some(5.0));
    check(&cfg(UnitCell2D::oblique_two_species(), 31.0), Some(5.0));
}

#[test]
fn reciprocal_is_the_inverse() {
    let lat = Lattice {
        a1_px: [3.0, 10.0],
        a2_px: [12.0, -1.0],
        quality: 1.0,
        n_peaks: 1,
    };
    let g = lat.reciprocal();
    for (i, a) in [lat.a1_px, lat.a2_px].iter().enumerate() {
        for (j, gj) in g.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot(*a, *gj) - want).abs() < 1e-12);
        }
    }
}

#[test]
fn gauss_reduction_keeps_the_lattice() {
    let (a, b) = gauss_reduce([1.0, 20.0], [21.0, 41.0]);
    // [21, 41] - 2·[1, 20] = [19, 1].
    assert!(norm(a) <= norm(b));
    assert!(dot(a, b).abs() <= dot(a, a) / 2.0 + 1e-9);
    assert!((cross(a, b).abs() - cross([1.0, 20.0], [21.0, 41.0]).abs()).abs() < 1e-9);
}

fn failure(img: &Image<f32>) -> LatticeFailure {
    match estimate_lattice(img.view(), &LatticeConfig::default()) {
        Err(Error::LatticeNotFound { reason }) => reason,
        other => panic!("expected LatticeNotFound, got {other:?}"),
    }
}

#[test]
fn flat_image_is_reported() {
    let img = Image::new(Array2::from_elem((64, 64), 3.0f32));
    assert!(matches!(failure(&img), LatticeFailure::FlatImage { .. }));
}

#[test]
fn noise_only_is_reported() {
    let flat = Image::new(Array2::from_elem((128, 128), 1.0f32));
    let noisy = add_poisson_noise(flat.view(), Dose::CountsPerPixel(5.0), 3).unwrap();
    assert!(matches!(failure(&noisy), LatticeFailure::NoiseOnly { .. }));
}

#[test]
fn too_few_periods_are_reported() {
    // Period 26 px in a 64 px image: max period 0.25·64 = 16 px.
    let c = LatticeImageConfig {
        shape: [64, 64],
        ..LatticeImageConfig::new(UnitCell2D::srtio3_001())
    };
    let img = c.render().unwrap().image;
    assert!(matches!(
        failure(&img),
        LatticeFailure::TooFewPeriods { .. }
    ));
}

#[test]
fn invalid_inputs_are_rejected() {
    let mut a = Array2::from_elem((32, 32), 1.0f32);
    a[[3, 4]] = f32::NAN;
    assert!(matches!(
        estimate_lattice(ImageView::new(a.view()), &LatticeConfig::default()),
        Err(Error::NonFinite { index: 100, .. })
    ));
    let small = Array2::from_elem((4, 32), 1.0f32);
    assert!(matches!(
        estimate_lattice(ImageView::new(small.view()), &LatticeConfig::default()),
        Err(Error::InvalidParameter { .. })
    ));
    let ok = Array2::from_elem((32, 32), 1.0f32);
    for bad in [
        LatticeConfig {
            min_period_px: 1.0,
            ..Default::default()
        },
        LatticeConfig {
            max_period_fraction: 0.6,
            ..Default::default()
        },
        LatticeConfig {
            peak_threshold: 0.0,
            ..Default::default()
        },
        LatticeConfig {
            min_signal_to_noise: f64::NAN,
            ..Default::default()
        },
        LatticeConfig {
            min_quality: 2.0,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            estimate_lattice(ImageView::new(ok.view()), &bad),
            Err(Error::InvalidParameter { .. })
        ));
    }
    let empty = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        estimate_lattice(ImageView::new(empty.view()), &LatticeConfig::default()),
        Err(Error::EmptyInput { .. })
    ));
}
