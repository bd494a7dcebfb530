use super::*;
use crate::{Axis, Parallelism};
use rand::{Rng, SeedableRng};

fn mean_var(a: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = a.clone().count() as f64;
    let m = a.clone().sum::<f64>() / n;
    let v = a.map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Asserts sample mean and variance of Poisson(λ) draws within 5 standard errors:
/// SE(mean) = sqrt(λ/n), SE(variance) = sqrt((μ4 − σ⁴)/n) = sqrt((λ + 2λ²)/n).
fn assert_poisson_moments(draws: impl Iterator<Item = f64> + Clone, lambda: f64) {
    let n = draws.clone().count() as f64;
    let (m, v) = mean_var(draws);
    let se_m = (lambda / n).sqrt();
    let se_v = ((lambda + 2.0 * lambda * lambda) / n).sqrt();
    assert!(
        (m - lambda).abs() < 5.0 * se_m,
        "λ = {lambda}: mean {m}, 5σ = {}",
        5.0 * se_m
    );
    assert!(
        (v - lambda).abs() < 5.0 * se_v,
        "λ = {lambda}: variance {v}, 5σ = {}",
        5.0 * se_v
    );
}

#[test]
fn poisson_moments_match_lambda() {
    for lambda in [0.5f32, 5.0, 500.0] {
        let mean = Array2::from_elem((256, 256), lambda);
        let draws = poisson(mean.view(), 11).unwrap();
        assert!(draws.iter().all(|&c| c >= 0.0 && c.fract() == 0.0));
        assert_poisson_moments(draws.iter().map(|&c| f64::from(c)), f64::from(lambda));
    }
}

#[test]
fn large_lambda_paths_have_poisson_moments() {
    // Exact sampler near the top of its range and the normal approximation above it, drawn in
    // f64 (the f32 output cannot resolve the spread at these means).
    for lambda in [1e12, 4e15] {
        let mut rng = row_rng(5, 0);
        let mut cached = None;
        let draws: Vec<f64> = (0..20_000)
            .map(|_| draw_poisson(lambda, &mut cached, &mut rng))
            .collect();
        assert!(draws.iter().all(|c| c.fract() == 0.0));
        assert_poisson_moments(draws.iter().copied(), lambda);
    }
}

#[test]
fn poisson_is_deterministic_and_thread_independent() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mean = Array2::from_shape_simple_fn((67, 45), || rng.random_range(0.0f32..30.0));
    let a = poisson(mean.view(), 42).unwrap();
    assert_eq!(a, poisson(mean.view(), 42).unwrap());
    assert_ne!(a, poisson(mean.view(), 43).unwrap());
    for threads in [1, 2, 3] {
        let b = Parallelism::Threads(threads)
            .install(|| poisson(mean.view(), 42))
            .unwrap()
            .unwrap();
        assert_eq!(a, b, "{threads} threads");
    }
    // Rows draw from different streams.
    let flat = Array2::from_elem((2, 200), 10.0f32);
    let d = poisson(flat.view(), 3).unwrap();
    assert_ne!(d.row(0), d.row(1));
}

#[test]
fn poisson_zero_mean_gives_zero_and_bad_means_are_errors() {
    let z = poisson(Array2::<f32>::zeros((3, 4)).view(), 0).unwrap();
    assert!(z.iter().all(|&v| v == 0.0));
    let mut m = Array2::<f32>::ones((3, 4));
    m[[1, 2]] = -0.5;
    assert!(matches!(
        poisson(m.view(), 0),
        Err(Error::Negative { index: 6, value, .. }) if value == -0.5
    ));
    m[[0, 1]] = f32::NAN;
    assert!(matches!(
        poisson(m.view(), 0),
        Err(Error::NonFinite { index: 1, .. })
    ));
    m[[0, 1]] = f32::INFINITY;
    assert!(matches!(poisson(m.view(), 0), Err(Error::NonFinite { .. })));
    assert_eq!(
        poisson(Array2::<f32>::zeros((0, 5)).view(), 0)
            .unwrap()
            .dim(),
        (0, 5)
    );
}

#[test]
fn counts_per_pixel_dose_sets_the_mean() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let img = Array2::from_shape_simple_fn((128, 128), || rng.random_range(0.0f32..1.0));
    let c = 7.5;
    let expected = expected_counts(ImageView::new(img.view()), Dose::CountsPerPixel(c)).unwrap();
    let m = expected.iter().map(|&v| f64::from(v)).sum::<f64>() / expected.len() as f64;
    assert!((m - c).abs() < 1e-5, "mean of expected counts {m}");
    // Proportional to the image.
    assert!((expected[[3, 4]] / img[[3, 4]] - expected[[9, 1]] / img[[9, 1]]).abs() < 1e-4);
    // Draws: the total is Poisson with mean n·c, so SE of the pixel mean is sqrt(c/n).
    let noisy = add_poisson_noise(ImageView::new(img.view()), Dose::CountsPerPixel(c), 9).unwrap();
    let n = noisy.data().len() as f64;
    let m = noisy.data().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    assert!((m - c).abs() < 5.0 * (c / n).sqrt(), "mean of draws {m}");
    assert!(
        noisy.axes()[0].units == "px",
        "uncalibrated input stays uncalibrated"
    );
}

#[test]
fn electrons_per_a2_dose_uses_the_pixel_area() {
    // Fraction 0.5 detected, 1e4 e/Å², pixels 0.1 Å x 0.3 Å: 0.5 * 1e4 * 0.03 = 150 counts.
    let axes = [
        Axis::new("y", 32, 0.1, 0.0, "Å"),
        Axis::new("x", 48, 0.3, 0.0, "Å"),
    ];
    let img = Image::with_axes(Array2::from_elem((32, 48), 0.5f32), axes).unwrap();
    let e = expected_counts(img.view(), Dose::ElectronsPerA2(1e4)).unwrap();
    assert!(e.iter().all(|&v| (v - 150.0).abs() < 1e-3), "{}", e[[0, 0]]);
    let noisy = add_poisson_noise(img.view(), Dose::ElectronsPerA2(1e4), 1).unwrap();
    assert_eq!(noisy.axes(), img.axes(), "calibration kept");
    let n = noisy.data().len() as f64;
    let m = noisy.data().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    assert!(
        (m - 150.0).abs() < 5.0 * (150.0 / n).sqrt(),
        "mean of draws {m}"
    );
}

#[test]
fn dose_validation_errors() {
    let flat = Array2::from_elem((4, 4), 1.0f32);
    let bare = ImageView::new(flat.view());
    // Uncalibrated image for ElectronsPerA2.
    assert!(matches!(
        expected_counts(bare, Dose::ElectronsPerA2(100.0)),
        Err(Error::InvalidParameter { name: "image", .. })
    ));
    let px = Image::new(flat.clone());
    assert!(expected_counts(px.view(), Dose::ElectronsPerA2(100.0)).is_err());
    let nm = [
        Axis::new("y", 4, 0.1, 0.0, "nm"),
        Axis::new("x", 4, 0.1, 0.0, "nm"),
    ];
    let nm_img = Image::with_axes(flat.clone(), nm).unwrap();
    assert!(expected_counts(nm_img.view(), Dose::ElectronsPerA2(100.0)).is_err());
    let zero_scale = [
        Axis::new("y", 4, 0.0, 0.0, "Å"),
        Axis::new("x", 4, 0.1, 0.0, "Å"),
    ];
    let z_img = Image::with_axes(flat.clone(), zero_scale).unwrap();
    assert!(expected_counts(z_img.view(), Dose::ElectronsPerA2(100.0)).is_err());
    // Bad dose values.
    for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            expected_counts(bare, Dose::CountsPerPixel(d)),
            Err(Error::InvalidParameter { name: "dose", .. })
        ));
    }
    // Zero-mean image, empty image, negative and NaN pixels.
    let zeros = Array2::<f32>::zeros((4, 4));
    assert!(matches!(
        expected_counts(ImageView::new(zeros.view()), Dose::CountsPerPixel(1.0)),
        Err(Error::InvalidParameter { name: "image", .. })
    ));
    let empty = Array2::<f32>::zeros((0, 4));
    assert!(matches!(
        expected_counts(ImageView::new(empty.view()), Dose::CountsPerPixel(1.0)),
        Err(Error::EmptyInput { .. })
    ));
    let mut bad = flat.clone();
    bad[[2, 0]] = -1.0;
    assert!(matches!(
        add_poisson_noise(ImageView::new(bad.view()), Dose::CountsPerPixel(1.0), 0),
        Err(Error::Negative { index: 8, .. })
    ));
    bad[[2, 0]] = f32::NAN;
    assert!(matches!(
        expected_counts(ImageView::new(bad.view()), Dose::CountsPerPixel(1.0)),
        Err(Error::NonFinite { index: 8, .. })
    ));
    fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
    assert_serde::<Dose>();
}

#[test]
fn gaussian_noise_statistics_and_determinism() {
    let img = Array2::from_elem((256, 256), 10.0f32);
    let sigma = 2.0;
    let a = add_gaussian_noise(img.view(), sigma, 4).unwrap();
    let n = a.len() as f64;
    let (m, v) = mean_var(a.iter().map(|&x| f64::from(x)));
    // SE(mean) = σ/sqrt(n); SE(variance) = σ² sqrt(2/n).
    assert!((m - 10.0).abs() < 5.0 * sigma / n.sqrt(), "mean {m}");
    assert!(
        (v - 4.0).abs() < 5.0 * 4.0 * (2.0 / n).sqrt(),
        "variance {v}"
    );
    assert_eq!(a, add_gaussian_noise(img.view(), sigma, 4).unwrap());
    assert_ne!(a, add_gaussian_noise(img.view(), sigma, 5).unwrap());
    let b = Parallelism::Threads(2)
        .install(|| add_gaussian_noise(img.view(), sigma, 4))
        .unwrap()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(add_gaussian_noise(img.view(), 0.0, 4).unwrap(), img);
}

#[test]
fn gaussian_and_poisson_with_the_same_seed_are_independent() {
    // A Poisson(100) draw starts from a normal deviate; with one pixel per row, a shared
    // stream would make it nearly a copy of the Gaussian noise
    // (r = 0.90 measured with coinciding streams). |r| must be within 5/sqrt(n).
    let lam = Array2::from_elem((16384, 1), 100.0f32);
    let p = poisson(lam.view(), 8).unwrap();
    let g = add_gaussian_noise(Array2::<f32>::zeros((16384, 1)).view(), 1.0, 8).unwrap();
    let n = p.len() as f64;
    let (mp, vp) = mean_var(p.iter().map(|&x| f64::from(x)));
    let (mg, vg) = mean_var(g.iter().map(|&x| f64::from(x)));
    let cov = p
        .iter()
        .zip(g.iter())
        .map(|(&a, &b)| (f64::from(a) - mp) * (f64::from(b) - mg))
        .sum::<f64>()
        / (n - 1.0);
    let r = cov / (vp * vg).sqrt();
    assert!(r.abs() < 5.0 / n.sqrt(), "correlation {r}");
}

#[test]
fn gaussian_validation_errors() {
    let img = Array2::<f32>::zeros((3, 3));
    for s in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            add_gaussian_noise(img.view(), s, 0),
            Err(Error::InvalidParameter { name: "sigma", .. })
        ));
    }
    let mut bad = img.clone();
    bad[[1, 1]] = f32::NAN;
    assert!(matches!(
        add_gaussian_noise(bad.view(), 1.0, 0),
        Err(Error::NonFinite { index: 4, .. })
    ));
}

#[test]
fn monte_carlo_exact_inverse_recovers_lambda() {
    // Poisson(3) draws -> Anscombe -> average D -> exact inverse ≈ 3. Tolerance: 5 standard
    // errors of the estimate, SE = sd(A)/sqrt(n) · dλ/dD, with dλ/dD from a finite difference
    // of the inverse. Measured: estimate 2.9992, tolerance 0.024; algebraic inverse 2.753.
    let lambda = 3.0;
    let mean = Array2::from_elem((256, 512), lambda as f32);
    let d = anscombe_array(poisson(mean.view(), 17).unwrap().view()).unwrap();
    let n = d.len() as f64;
    let (mean_d, var_d) = mean_var(d.iter().map(|&x| f64::from(x)));
    let inv = ExactUnbiasedInverse::new();
    let slope = (inv.invert(mean_d + 1e-4) - inv.invert(mean_d - 1e-4)) / 2e-4;
    let tol = 5.0 * (var_d / n).sqrt() * slope;
    let est = inv.invert(mean_d);
    assert!(
        (est - lambda).abs() < tol,
        "estimate {est}, tolerance {tol}"
    );
    // The algebraic inverse of the same average is off by far more than the tolerance.
    let alg = inverse_anscombe_algebraic(mean_d);
    assert!((alg - lambda).abs() > 5.0 * tol, "algebraic {alg}");
}
