use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pattern(y: f64, x: f64) -> f64 {
    (y * 0.45).sin() * (x * 0.4).cos() * 10.0 + 20.0 + 3.0 * ((y + 2.0 * x) * 0.13).sin()
}

#[test]
fn validation_rules() {
    let ok = NonRigidConfig::default();
    assert!(ok.validate().is_ok());
    let cases: Vec<(NonRigidConfig, &str)> = vec![
        (
            NonRigidConfig {
                lambda: 0.0,
                ..ok.clone()
            },
            "lambda",
        ),
        (
            NonRigidConfig {
                lambda: f64::NAN,
                ..ok.clone()
            },
            "lambda",
        ),
        (
            NonRigidConfig {
                levels: 0,
                ..ok.clone()
            },
            "levels",
        ),
        (
            NonRigidConfig {
                min_level_px: 7,
                ..ok.clone()
            },
            "min_level_px",
        ),
        (
            NonRigidConfig {
                max_iterations: 0,
                ..ok.clone()
            },
            "max_iterations",
        ),
        (
            NonRigidConfig {
                stop_epsilon: -1.0,
                ..ok.clone()
            },
            "stop_epsilon",
        ),
        (
            NonRigidConfig {
                preconditioner_scale: 0.0,
                ..ok.clone()
            },
            "preconditioner_scale",
        ),
        (
            NonRigidConfig {
                max_step_px: -0.5,
                ..ok.clone()
            },
            "max_step_px",
        ),
        (
            NonRigidConfig {
                extra_pass_lambda_factor: f64::INFINITY,
                ..ok.clone()
            },
            "extra_pass_lambda_factor",
        ),
    ];
    for (c, name) in cases {
        match c.validate() {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let a = Array2::<f32>::from_shape_fn((16, 16), |(i, j)| (i * j) as f32);
    let b = Array2::<f32>::zeros((16, 17));
    assert!(matches!(
        register_pair(ImageView::from(&a), ImageView::from(&b), None, &ok),
        Err(Error::ShapeMismatch { .. })
    ));
    let small = Array2::<f32>::zeros((7, 16));
    assert!(matches!(
        register_pair(ImageView::from(&small), ImageView::from(&small), None, &ok),
        Err(Error::TooSmall { .. })
    ));
    let flat = Array2::<f32>::from_elem((16, 16), 3.0);
    assert!(matches!(
        register_pair(ImageView::from(&flat), ImageView::from(&a), None, &ok),
        Err(Error::InvalidParameter {
            name: "reference",
            ..
        })
    ));
    let mut nan = a.clone();
    nan[[3, 3]] = f32::NAN;
    assert!(matches!(
        register_pair(ImageView::from(&a), ImageView::from(&nan), None, &ok),
        Err(Error::NonFinite { .. })
    ));
    let wrong = DisplacementField::constant([16, 15], [0.0, 0.0]);
    assert!(matches!(
        register_pair(ImageView::from(&a), ImageView::from(&a), Some(&wrong), &ok),
        Err(Error::ShapeMismatch { .. })
    ));
    let fft = Fft2::<f32>::new([20, 20]).unwrap();
    assert!(H1Metric::new(&fft, [10, 11], 1.0).is_err());
    assert!(H1Metric::new(&fft, [10, 10], -1.0).is_err());
    assert!(matches!(
        remove_mean_field(&mut []),
        Err(Error::TooFewFrames { .. })
    ));
}

#[test]
fn level_shapes_any_size() {
    let c = NonRigidConfig {
        levels: 4,
        min_level_px: 16,
        ..Default::default()
    };
    assert_eq!(
        c.level_shapes([101, 67]),
        vec![[101, 67], [51, 34], [26, 17]]
    );
    assert_eq!(c.level_shapes([256, 256]).len(), 4);
    let one = NonRigidConfig {
        levels: 1,
        ..Default::default()
    };
    assert_eq!(one.level_shapes([40, 50]), vec![[40, 50]]);
}

#[test]
fn ncc_gradient_matches_finite_differences() {
    for reg in [Regularizer::Dirichlet, Regularizer::Bending] {
        gradient_check(reg);
    }
}

fn gradient_check(reg: Regularizer) {
    let (ny, nx) = (23, 19);
    let r = Array2::from_shape_fn((ny, nx), |(i, j)| pattern(i as f64, j as f64) as f32);
    let t = Array2::from_shape_fn((ny, nx), |(i, j)| {
        (pattern(i as f64 + 0.3, j as f64 - 0.2) * 1.3 + 2.0) as f32
    });
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let dy = Array2::from_shape_fn((ny, nx), |_| rng.random_range(-0.4..0.4));
    let dx = Array2::from_shape_fn((ny, nx), |_| rng.random_range(-0.4..0.4));
    let p = LevelProblem::new(r.view(), t.view(), &dy, &dx, 30.0, reg, ny).unwrap();
    let z = || Array2::<f64>::zeros((ny, nx));
    let mut s = Samples {
        t: z(),
        gy: z(),
        gx: z(),
    };
    let (mut gy, mut gx) = (z(), z());
    p.evaluate(&dy, &dx, &mut s, Some((&mut gy, &mut gx)));
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    let scale = gy
        .iter()
        .chain(gx.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for &(i, j) in &[(5, 5), (11, 9), (17, 3), (3, 15), (12, 12), (20, 10)] {
        for comp in 0..2 {
            let mut a = dy.clone();
            let mut b = dx.clone();
            let (mut a2, mut b2) = (dy.clone(), dx.clone());
            if comp == 0 {
                a[[i, j]] += h;
                a2[[i, j]] -= h;
            } else {
                b[[i, j]] += h;
                b2[[i, j]] -= h;
            }
            let (ep, _, _) = p.evaluate(&a, &b, &mut s, None);
            let (em, _, _) = p.evaluate(&a2, &b2, &mut s, None);
            let fd = (ep - em) / (2.0 * h);
            let an = if comp == 0 { gy[[i, j]] } else { gx[[i, j]] };
            worst = worst.max((fd - an).abs() / scale);
        }
    }
    // central differences: O(h²) truncation ≈ 1e-10 relative, rounding of E (≈1e-16/1e-5)
    // ≈ 1e-11 against gradients of ≈ 1e-3: 1e-5 relative to the largest component is tight
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn h1_metric_inverts_the_neumann_operator() {
    // oracle: apply (I − σΔ_N) with the explicit 5-point stencil to the solution
    for &(ny, nx, sigma) in &[(13usize, 10usize, 3.5f64), (8, 21, 40.0), (17, 17, 0.0)] {
        let mut rng = ChaCha8Rng::seed_from_u64(ny as u64);
        let gy = Array2::from_shape_fn((ny, nx), |_| rng.random_range(-1.0..1.0));
        let gx = Array2::from_shape_fn((ny, nx), |_| rng.random_range(-1.0..1.0));
        let fft = Fft2::<f32>::new([2 * ny, 2 * nx]).unwrap();
        let m = H1Metric::new(&fft, [ny, nx], sigma).unwrap();
        let (mut py, mut px) = (gy.clone(), gx.clone());
        m.solve(&mut py, &mut px).unwrap();
        for (p, g) in [(&py, &gy), (&px, &gx)] {
            let mut back = p.clone();
            add_neg_laplacian(p, &mut back, sigma);
            let err = (&back - g).iter().fold(0.0f64, |a, v| a.max(v.abs()));
            // f32 FFT: relative rounding ≈ 1e-6 times the operator norm (1 + 8σ ≤ 321)
            assert!(
                err < 1e-6 * (1.0 + 8.0 * sigma) * 10.0,
                "{ny}x{nx} σ {sigma}: {err}"
            );
        }
    }
}

#[test]
fn resampled_constant_field_scales_with_the_grid() {
    let dy = Array2::from_elem((10, 7), 0.5);
    let dx = Array2::from_elem((10, 7), -1.0);
    let [fy, fx] = resample_field(&dy, &dx, [19, 14]);
    assert!(fy.iter().all(|&v| (v - 0.95).abs() < 1e-12));
    assert!(fx.iter().all(|&v| (v + 2.0).abs() < 1e-12));
}

/// Smooth 2-D displacement of the test pattern: the moving image shows the pattern at
/// `p + u(p)`.
fn smooth_u(y: f64, x: f64) -> [f64; 2] {
    [
        0.7 * (x / 17.0).sin() + 0.3 * (y / 23.0).cos(),
        0.6 * (y / 19.0).cos() - 0.4 * ((x + y) / 29.0).sin(),
    ]
}

#[test]
fn recovers_a_smooth_2d_field_on_non_power_of_two_sizes() {
    for &(ny, nx) in &[(75usize, 53usize), (64, 97)] {
        let reference =
            Array2::from_shape_fn((ny, nx), |(i, j)| pattern(i as f64, j as f64) as f32);
        let moving = Array2::from_shape_fn((ny, nx), |(i, j)| {
            let u = smooth_u(i as f64, j as f64);
            pattern(i as f64 + u[0], j as f64 + u[1]) as f32
        });
        let cfg = NonRigidConfig {
            lambda: 1.0,
            levels: 2,
            min_level_px: 16,
            regularizer: Regularizer::Dirichlet,
            ..Default::default()
        };
        let reg = register_pair(
            ImageView::from(&reference),
            ImageView::from(&moving),
            None,
            &cfg,
        )
        .unwrap();
        // true field: d(p) = u(q) with q + u(q) = p... to the order needed: d solves
        // p − d(p) + u(p − d(p)) = p, i.e. d = u(p − d) (fixed point)
        let mut acc = 0.0;
        let mut cnt = 0.0;
        for i in 6..ny - 6 {
            for j in 6..nx - 6 {
                let (y, x) = (i as f64, j as f64);
                let mut d = smooth_u(y, x);
                for _ in 0..10 {
                    d = smooth_u(y - d[0], x - d[1]);
                }
                acc += (f64::from(reg.field.dy[[i, j]]) - d[0]).powi(2)
                    + (f64::from(reg.field.dx[[i, j]]) - d[1]).powi(2);
                cnt += 2.0;
            }
        }
        let rms = (acc / cnt).sqrt();
        // noise-free, smooth field of 0.5 px RMS: the regulariser bias at λ = 1 is small
        assert!(rms < 0.03, "{ny}x{nx}: rms {rms}, ncc {}", reg.ncc);
        assert!(reg.ncc > 0.999, "{}", reg.ncc);
    }
}

#[test]
fn bias_removal_makes_the_mean_field_constant() {
    let shape = [30, 40];
    let mut fields: Vec<DisplacementField> = (0..5)
        .map(|k| {
            let k = k as f64;
            DisplacementField {
                dy: Array2::from_shape_fn(shape, |(i, j)| {
                    (0.2 * k + 0.3 * (j as f64 / 7.0).sin() + 0.1 * k * (i as f64 / 9.0).cos())
                        as f32
                }),
                dx: Array2::from_shape_fn(shape, |(i, j)| {
                    (k - 2.0 + 0.4 * (i as f64 / 6.0).cos() * (j as f64 / 11.0).sin()) as f32
                }),
            }
        })
        .collect();
    let before = mean_field(&fields);
    remove_mean_field(&mut fields).unwrap();
    let after = mean_field(&fields);
    let spread = |m: &[Array2<f64>; 2]| {
        let mut worst: f64 = 0.0;
        for c in m {
            let inner = c.slice(ndarray::s![3..27, 3..37]);
            let mean = inner.mean().unwrap();
            worst = worst.max(inner.iter().fold(0.0, |a, v| a.max((v - mean).abs())));
        }
        worst
    };
    assert!(spread(&before) > 0.3);
    // second-order remainder of a 0.4-px common field after two rounds
    assert!(spread(&after) < 0.01, "{}", spread(&after));
    // the constant gauge (spatial mean of the mean field) is kept
    assert!((after[1].mean().unwrap() - before[1].mean().unwrap()).abs() < 0.02);
}

fn mean_field(fields: &[DisplacementField]) -> [Array2<f64>; 2] {
    let n = fields.len() as f64;
    let shape = fields[0].shape();
    let mut m = [Array2::zeros(shape), Array2::zeros(shape)];
    for f in fields {
        Zip::from(&mut m[0])
            .and(&f.dy)
            .for_each(|a, &v| *a += f64::from(v) / n);
        Zip::from(&mut m[1])
            .and(&f.dx)
            .for_each(|a, &v| *a += f64::from(v) / n);
    }
    m
}
