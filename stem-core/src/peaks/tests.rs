//! Shared synthetic-data helpers for the peak tests, and tests of [`find_columns`].

use super::*;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

/// One synthetic column: an elliptical rotated Gaussian (same convention as the fit).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blob {
    pub y: f64,
    pub x: f64,
    pub amplitude: f64,
    /// σ along the major and minor axes (px).
    pub sigma: [f64; 2],
    /// Angle of the major axis from +x towards +y (rad).
    pub theta: f64,
}

impl Blob {
    pub(crate) fn round(y: f64, x: f64, amplitude: f64, sigma: f64) -> Self {
        Blob {
            y,
            x,
            amplitude,
            sigma: [sigma; 2],
            theta: 0.0,
        }
    }

    fn value(&self, i: f64, j: f64) -> f64 {
        let (ey, ex) = (i - self.y, j - self.x);
        let (sn, cs) = self.theta.sin_cos();
        let u = cs * ex + sn * ey;
        let v = -sn * ex + cs * ey;
        self.amplitude
            * (-0.5 * (u * u / self.sigma[0].powi(2) + v * v / self.sigma[1].powi(2))).exp()
    }
}

/// Point-sampled sum of Gaussians on a constant background (each blob evaluated within 10 σ,
/// where it is below 2e-22 of its height).
pub(crate) fn render(shape: [usize; 2], blobs: &[Blob], background: f64) -> Array2<f32> {
    let mut acc = Array2::<f64>::from_elem((shape[0], shape[1]), background);
    for b in blobs {
        let reach = 10.0 * b.sigma[0].max(b.sigma[1]);
        let i0 = (b.y - reach).floor().max(0.0) as usize;
        let i1 = ((b.y + reach).ceil().max(0.0) as usize).min(shape[0].saturating_sub(1));
        let j0 = (b.x - reach).floor().max(0.0) as usize;
        let j1 = ((b.x + reach).ceil().max(0.0) as usize).min(shape[1].saturating_sub(1));
        for i in i0..=i1 {
            for j in j0..=j1 {
                acc[[i, j]] += b.value(i as f64, j as f64);
            }
        }
    }
    acc.mapv(|v| v as f32)
}

/// Replaces every pixel by a Poisson draw with that mean (seeded).
pub(crate) fn poisson_noise(mean: &Array2<f32>, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    mean.mapv(|m| {
        if m > 0.0 {
            Poisson::new(f64::from(m)).unwrap().sample(&mut rng) as f32
        } else {
            0.0
        }
    })
}

/// `n × n` identical blobs on a square lattice of `spacing` px, all at the same sub-pixel
/// `offset`; returns the image and the true positions.
pub(crate) fn identical_lattice(
    n: usize,
    spacing: f64,
    offset: [f64; 2],
    template: Blob,
    background: f64,
) -> (Array2<f32>, Vec<[f64; 2]>) {
    let mut blobs = Vec::new();
    for a in 0..n {
        for b in 0..n {
            blobs.push(Blob {
                y: spacing * (a as f64 + 0.5) + offset[0],
                x: spacing * (b as f64 + 0.5) + offset[1],
                ..template
            });
        }
    }
    let size = (spacing * n as f64).ceil() as usize;
    let img = render([size, size], &blobs, background);
    (img, blobs.iter().map(|b| [b.y, b.x]).collect())
}

/// Statistics of fitted positions against the truth, pooled over y and x.
pub(crate) struct Scatter {
    /// RMS of (fitted − true) (px).
    pub rms_error: f64,
    /// Mean offset over both axes, as `[y, x]` (px).
    pub bias: [f64; 2],
    /// RMS of the reported sigma_position (px).
    pub rms_sigma: f64,
}

pub(crate) fn scatter(found: &[RefinedPeak], truth: &[[f64; 2]]) -> Scatter {
    assert_eq!(found.len(), truth.len());
    let n = found.len() as f64;
    let mut bias = [0.0; 2];
    for (f, t) in found.iter().zip(truth) {
        for a in 0..2 {
            bias[a] += (f.position[a] - t[a]) / n;
        }
    }
    let (mut se, mut ss) = (0.0, 0.0);
    for (f, t) in found.iter().zip(truth) {
        se += (f.position[0] - t[0]).powi(2) + (f.position[1] - t[1]).powi(2);
        ss += f.sigma_position[0].powi(2) + f.sigma_position[1].powi(2);
    }
    Scatter {
        rms_error: (se / (2.0 * n)).sqrt(),
        bias,
        rms_sigma: (ss / (2.0 * n)).sqrt(),
    }
}

fn lattice_25() -> (Array2<f32>, Vec<[f64; 2]>) {
    let mut blobs = Vec::new();
    for a in 0..5 {
        for b in 0..5 {
            // 16 px apart: a neighbour's tail inside a 5 px window is below 1e-8 of its height.
            let y = 10.0 + 16.0 * a as f64 + 0.1 * (b as f64 - 2.0);
            let x = 11.0 + 16.0 * b as f64 - 0.07 * (a as f64 - 2.0);
            blobs.push(Blob::round(y, x, 60.0 + 3.0 * (a * 5 + b) as f64, 2.0));
        }
    }
    let img = render([84, 86], &blobs, 5.0);
    (img, blobs.iter().map(|b| [b.y, b.x]).collect())
}

#[test]
fn find_columns_all_refinements_agree_with_truth() {
    let (img, truth) = lattice_25();
    let maxima = LocalMaximaConfig::default();
    let view = ImageView::from(&img);
    let nearest = |p: &RefinedPeak| {
        truth
            .iter()
            .map(|t| (p.position[0] - t[0]).hypot(p.position[1] - t[1]))
            .fold(f64::INFINITY, f64::min)
    };
    let none = find_columns(view, &maxima, Refinement::None).unwrap();
    assert_eq!(none.len(), 25);
    for p in &none {
        assert_eq!(p.method, RefineMethod::LocalMaximum);
        assert!(nearest(p) <= 0.5_f64.hypot(0.5));
        assert!((p.sigma_position[0] - 0.288_675).abs() < 1e-6);
    }
    // Brightest first.
    assert!(none.windows(2).all(|w| w[0].amplitude >= w[1].amplitude));
    let com = ComConfig {
        radius_px: 5.0,
        ..ComConfig::default()
    };
    let found = find_columns(view, &maxima, Refinement::CentreOfMass(com)).unwrap();
    assert_eq!(found.len(), 25);
    for p in &found {
        assert!(p.converged && p.method == RefineMethod::CentreOfMass);
        assert!(nearest(p) < 0.05, "COM error {}", nearest(p));
    }
    let gauss = GaussianFitConfig {
        radius_px: 5.0,
        ..GaussianFitConfig::default()
    };
    let found = find_columns(view, &maxima, Refinement::Gaussian(gauss)).unwrap();
    assert_eq!(found.len(), 25);
    for p in &found {
        assert!(p.converged && p.method == RefineMethod::Gaussian);
        assert!(nearest(p) < 1e-4, "Gaussian error {}", nearest(p));
    }
}

#[test]
fn find_columns_cancels() {
    let (img, _) = lattice_25();
    let flag = crate::CancelFlag::cancel_after(3);
    let r = find_columns_with_progress(
        ImageView::from(&img),
        &LocalMaximaConfig::default(),
        Refinement::Gaussian(GaussianFitConfig {
            parallelism: crate::Parallelism::Sequential,
            ..GaussianFitConfig::default()
        }),
        &flag,
    );
    assert!(matches!(r, Err(Error::Cancelled)));
}

mod robustness {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 32,
            // Deterministic: a fixed seed and no regression files.
            rng_seed: proptest::test_runner::RngSeed::Fixed(1032),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary (finite, non-negative) images, positions in and out of the image and any
        /// positive radius: both refinements return one result per position, in order, never
        /// panic, and a result is either converged with finite uncertainty or flagged.
        #[test]
        fn refinements_never_panic(
            ny in 1usize..24,
            nx in 1usize..24,
            radius in 0.2f64..9.0,
            elliptical in proptest::bool::ANY,
            seed in 0u64..10_000,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let img = Array2::from_shape_fn((ny, nx), |_| rng.random_range(0.0f32..50.0));
            let init: Vec<[f64; 2]> = (0..6)
                .map(|_| [rng.random_range(-5.0..ny as f64 + 5.0), rng.random_range(-5.0..nx as f64 + 5.0)])
                .collect();
            let view = ImageView::from(&img);
            for noise in [NoiseModel::Poisson, NoiseModel::EstimateFromResidual] {
                let com_cfg = ComConfig {
                    radius_px: radius,
                    noise,
                    ..ComConfig::default()
                };
                let com = refine_centre_of_mass(view, &init, &com_cfg);
                let com = if noise == NoiseModel::EstimateFromResidual && (ny < 3 || nx < 3) {
                    // The image-wide noise estimate needs 3 x 3 pixels: a typed error.
                    let typed = matches!(com, Err(Error::InvalidParameter { name: "noise", .. }));
                    prop_assert!(typed, "expected a typed error");
                    Vec::new()
                } else {
                    let com = com.unwrap();
                    prop_assert_eq!(com.len(), init.len());
                    com
                };
                let fit = refine_gaussian(view, &init, &GaussianFitConfig { radius_px: radius, elliptical, noise, ..GaussianFitConfig::default() }).unwrap();
                prop_assert_eq!(fit.len(), init.len());
                for r in com.iter().chain(&fit) {
                    prop_assert!(r.position.iter().all(|v| v.is_finite()));
                    prop_assert!(r.sigma_position.iter().all(|s| *s >= 0.0));
                    if r.method == RefineMethod::Gaussian {
                        prop_assert!(r.converged && r.sigma_position.iter().all(|s| s.is_finite()));
                    }
                }
            }
        }
    }
}
