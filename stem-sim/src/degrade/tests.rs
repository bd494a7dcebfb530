use super::*;
use proptest::prelude::*;
use stem_core::Parallelism;
use stem_core::peaks::refine_gaussian;
use stem_core::peaks::{GaussianFitConfig, LocalMaximaConfig, NoiseModel, find_local_maxima};
use stem_core::points::{MatchMetrics, evaluate};
use stem_core::synth::{LatticeImageConfig, UnitCell2D};

fn srtio3(shape: [usize; 2], rotation_deg: f64) -> Sample {
    let cfg = LatticeImageConfig {
        shape,
        rotation_deg,
        origin_a: [1.13, 0.71],
        ..LatticeImageConfig::new(UnitCell2D::srtio3_001())
    };
    Sample::from_lattice(&cfg.render().unwrap())
}

/// Positions of the HAADF-visible columns (Sr and Ti–O; pure O is 7 % of Sr and invisible).
fn visible(labels: &Labels) -> Vec<[f64; 2]> {
    let mut out = Vec::new();
    for name in ["Sr", "TiO"] {
        let k = labels.class_names.iter().position(|n| n == name).unwrap() as u16;
        out.extend(labels.positions_of_class(k));
    }
    out
}

/// Re-finds the columns with stem-core: maxima of a lightly smoothed copy, then a Gaussian fit
/// on the image itself, as `stem demo` does.
fn refind(image: &Image<f32>) -> Vec<[f64; 2]> {
    let smooth = stem_core::filters::gaussian_blur(image.data().view(), 1.5, 4.0).unwrap();
    let maxima = find_local_maxima(
        smooth.view().into(),
        &LocalMaximaConfig {
            min_distance_px: 6,
            threshold_rel: 0.25,
            exclude_border_px: 2,
            ..LocalMaximaConfig::default()
        },
    )
    .unwrap();
    let start: Vec<[f64; 2]> = maxima
        .iter()
        .map(|p| [p.position[0] as f64, p.position[1] as f64])
        .collect();
    let fit = GaussianFitConfig {
        radius_px: 5.0,
        noise: NoiseModel::Gaussian { sigma: 1.0 },
        ..GaussianFitConfig::default()
    };
    refine_gaussian(image.view(), &start, &fit)
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect()
}

fn score(found: &[[f64; 2]], truth: &[[f64; 2]], shape: [usize; 2]) -> MatchMetrics {
    // Radius 3 px: half the smallest visible-column spacing after the strongest shrink (~14 px
    // at zoom 0.95 / resample 1.25) is 7 px; 3 px still rejects neighbours and wrong transforms.
    // Border 8 px: columns cut by the edge (σ = 3 px) fit off-centre.
    evaluate(found, truth, 3.0, shape, 8.0).unwrap()
}

const RANDOM_CHAIN: &str = r#"[
  {"kind": "affine", "rotation_deg": [-20, 20], "zoom": [0.95, 1.15], "shear": [-0.08, 0.08],
   "shift_y_px": [-5, 5], "shift_x_px": [-5, 5]},
  {"kind": "scan", "jitter_x_px": [0, 0.3], "jitter_y_px": [0, 0.1], "jitter_smoothing_rows": 1.0,
   "sine_amplitude_px": [0, 1.0], "sine_period_rows": [60, 160], "shear_x_px": [-2, 2],
   "stretch_y_px": [-2, 2], "drift_y_px": [-3, 3], "drift_x_px": [-3, 3],
   "flyback_amplitude_px": [0, 1.5], "flyback_decay_px": [3, 8]},
  {"kind": "source_blur", "fwhm_a": [0, 0.6]},
  {"kind": "resample", "factor": [0.8, 1.25]},
  {"kind": "crop", "size_px": [128, 128], "random_offset": false},
  {"kind": "background", "gain": [0.8, 1.2], "gamma": [0.8, 1.2], "offset": [0, 0.5],
   "gradient_y": [-0.3, 0.3], "gradient_x": [-0.3, 0.3]},
  {"kind": "poisson", "dose": {"counts_per_px": {"log_uniform": [200, 1000]}}},
  {"kind": "read_noise", "sigma": [0, 2]}
]"#;

#[test]
fn labels_still_mark_the_columns_after_random_chains() {
    let chain: Chain = serde_json::from_str(RANDOM_CHAIN).unwrap();
    let base = srtio3([256, 256], 3.0);
    let mut worst_rms: f64 = 0.0;
    for seed in 0..6u64 {
        let mut s = base.clone();
        chain.apply(&mut s, seed).unwrap();
        assert_eq!(s.image.shape(), [128, 128]);
        let truth = visible(&s.labels);
        let found = refind(&s.image);
        let m = score(&found, &truth, s.image.shape());
        let rms = m.rms_distance_px.unwrap();
        worst_rms = worst_rms.max(rms);
        // ≥ 20 visible columns in 128² px at ≤ 26 px spacing; every one must be re-found and no
        // spurious maximum may appear (the fill outside the input never reaches the crop).
        assert!(m.n_truth >= 20, "seed {seed}: {m}");
        assert!(m.recall >= 0.99 && m.precision >= 0.99, "seed {seed}: {m}");
        // 0.25 px: shot noise at ≥ 200 counts/px gives ~0.05 px, un-smoothed row jitter of up
        // to 0.3 px per row moves a 6-row-tall column's fitted centre by ~0.1 px relative to
        // the exactly mapped centre; a wrong transform is off by pixels.
        assert!(rms < 0.25, "seed {seed}: {m}");
    }
    eprintln!("worst RMS over 6 random chains: {worst_rms:.4} px");
}

#[test]
fn wrong_label_transform_is_detected() {
    // Ground truth of the test's sensitivity: the same affine with the opposite sign of shear
    // or rotation must fail the score that the correct transform passes.
    let base = srtio3([192, 192], 0.0);
    for (shear, rot) in [(0.1, 0.0), (0.0, 6.0)] {
        let mut s = base.clone();
        let d = Degradation::Affine(Affine {
            shear: Param::Fixed(shear),
            rotation_deg: Param::Fixed(rot),
            ..Affine::default()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        d.apply(&mut s, &mut rng, "0.affine").unwrap();
        // Crop the centre so that no column is cut by the fill outside the rotated input.
        let crop = Degradation::Crop {
            size_px: [128, 128],
            random_offset: false,
        };
        crop.apply(&mut s, &mut rng, "1.crop").unwrap();
        let found = refind(&s.image);
        let good = score(&found, &visible(&s.labels), s.image.shape());
        // Noise-free: cubic interpolation of σ = 3 px Gaussians biases a fit by < 0.02 px.
        assert!(
            good.recall > 0.99 && good.rms_distance_px.unwrap() < 0.05,
            "{good}"
        );

        let wrong = AffineMap::new([192, 192], -rot, 1.0, -shear, [0.0, 0.0]).unwrap();
        let mut bad_truth: Vec<[f64; 2]> = visible(&base.labels)
            .iter()
            .map(|q| wrong.target(*q).unwrap())
            .collect();
        let bad_truth: Vec<[f64; 2]> = bad_truth
            .drain(..)
            .map(|p| [p[0] - 32.0, p[1] - 32.0])
            .filter(|p| p.iter().all(|v| (0.0..=127.0).contains(v)))
            .collect();
        let bad = score(&found, &bad_truth, s.image.shape());
        assert!(bad.recall < 0.5, "the wrong sign still matches: {bad}");
    }
}

#[test]
fn scan_labels_follow_the_distortion() {
    let mut s = srtio3([160, 160], 5.0);
    let chain: Chain = serde_json::from_str(
        r#"[{"kind": "scan", "sine_amplitude_px": 2.0, "sine_period_rows": 50,
              "shear_x_px": 4, "stretch_y_px": -3, "drift_x_px": 4, "drift_y_px": 2,
              "flyback_amplitude_px": 2, "flyback_decay_px": 6}]"#,
    )
    .unwrap();
    let before = visible(&s.labels);
    chain.apply(&mut s, 3).unwrap();
    let found = refind(&s.image);
    let good = score(&found, &visible(&s.labels), s.image.shape());
    // Smooth distortions (≤ 0.25 px/px gradients) keep columns Gaussian to first order; the
    // fitted centre follows the mapped centre to ~0.05 px.
    assert!(
        good.recall > 0.99 && good.rms_distance_px.unwrap() < 0.08,
        "{good}"
    );
    // The undistorted labels must not fit (distortion amplitude of several px).
    let stale = score(&found, &before, s.image.shape());
    assert!(stale.rms_distance_px.unwrap_or(9.9) > 0.5, "{stale}");
}

#[test]
fn displacement_field_composes() {
    let mut s = srtio3([64, 80], 0.0);
    s.labels.displacement = Some(DisplacementField::zeros([64, 80]));
    let shift = Degradation::Affine(Affine {
        shift_y_px: Param::Fixed(2.5),
        shift_x_px: Param::Fixed(-1.25),
        ..Affine::default()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    shift.apply(&mut s, &mut rng, "a").unwrap();
    // Output pixel p shows input p − t: d ≡ −t (the frame must move by −t to land on the input).
    let d = s.labels.displacement.clone().unwrap();
    assert!(d.dy_px.iter().all(|v| (v + 2.5).abs() < 1e-12));
    assert!(d.dx_px.iter().all(|v| (v - 1.25).abs() < 1e-12));
    assert_eq!(d.mean(), [-2.5, 1.25]);

    // A scan field on top: d(p) = D(p) + (−t) since the shift field is constant.
    let scan = ScanDistortion {
        sine_amplitude_px: Param::Fixed(1.0),
        shear_x_px: Param::Fixed(2.0),
        ..ScanDistortion::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let field = scan.realise([64, 80], &mut rng.clone()).unwrap();
    Degradation::Scan(scan)
        .apply(&mut s, &mut rng, "b")
        .unwrap();
    let d = s.labels.displacement.unwrap();
    for (r, c) in [(0, 0), (10, 33), (63, 79)] {
        let e = field.displacement([r as f64, c as f64]);
        assert!((d.dy_px[[r, c]] - (e[0] - 2.5)).abs() < 1e-12);
        assert!((d.dx_px[[r, c]] - (e[1] + 1.25)).abs() < 1e-12);
    }
}

#[test]
fn resample_and_crop_move_labels_and_calibration() {
    let mut s = srtio3([100, 120], 0.0);
    let q = *s
        .labels
        .positions_px
        .iter()
        .find(|p| p[0] > 5.0 && p[1] > 5.0)
        .unwrap();
    let n = s.labels.len();
    let inside = |v: f64, m: f64| (0.0..=m - 1.0).contains(&((v + 0.5) / 2.0 - 0.5));
    let n_inside = s
        .labels
        .positions_px
        .iter()
        .filter(|p| inside(p[0], 50.0) && inside(p[1], 60.0))
        .count();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    Degradation::Resample {
        factor: Param::Fixed(2.0),
    }
    .apply(&mut s, &mut rng, "r")
    .unwrap();
    assert_eq!(s.image.shape(), [50, 60]);
    assert_eq!(s.sampling_a(), Some([0.3, 0.3]));
    // Edges aligned: labels within ½ new px of the edge fall outside the new pixel centres.
    assert_eq!(s.labels.len(), n_inside);
    assert!(n_inside > n / 2);
    let want = q.map(|v| (v + 0.5) / 2.0 - 0.5);
    assert!(
        s.labels
            .positions_px
            .iter()
            .any(|p| (p[0] - want[0]).abs() < 1e-12 && (p[1] - want[1]).abs() < 1e-12)
    );
    Degradation::Crop {
        size_px: [20, 30],
        random_offset: false,
    }
    .apply(&mut s, &mut rng, "c")
    .unwrap();
    assert_eq!(s.image.shape(), [20, 30]);
    assert_eq!(s.metadata["c.offset_y_px"], 15.0);
    assert!(
        s.labels
            .positions_px
            .iter()
            .all(|p| p[0] <= 19.0 && p[1] <= 29.0)
    );
    assert!(s.labels.len() < n);
}

#[test]
fn same_seed_same_bytes_on_one_and_two_threads() {
    let chain: Chain = serde_json::from_str(RANDOM_CHAIN).unwrap();
    let base = srtio3([256, 256], 3.0);
    let run = |threads| {
        Parallelism::Threads(threads)
            .install(|| {
                let mut s = base.clone();
                s.labels.displacement = Some(DisplacementField::zeros([256, 256]));
                chain.apply(&mut s, 42).unwrap();
                s
            })
            .unwrap()
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a, b);
    let mut c = base.clone();
    chain.apply(&mut c, 43).unwrap();
    assert_ne!(a.image, c.image);
}

#[test]
fn invalid_parameters_are_errors() {
    let bad: Vec<(&str, &str)> = vec![
        (r#"{"kind": "read_noise", "sigma": -1}"#, "read_noise.sigma"),
        (r#"{"kind": "affine", "zoom": 0}"#, "affine.zoom"),
        (
            r#"{"kind": "affine", "rotation_deg": [5, 1]}"#,
            "affine.rotation_deg",
        ),
        (r#"{"kind": "resample", "factor": 0}"#, "resample.factor"),
        (
            r#"{"kind": "poisson", "dose": {"counts_per_px": 0}}"#,
            "poisson.dose.counts_per_px",
        ),
        (
            r#"{"kind": "poisson", "dose": {"e_per_a2": {"log_uniform": [0, 5]}}}"#,
            "poisson.dose.e_per_a2",
        ),
        (r#"{"kind": "background", "gamma": 0}"#, "background.gamma"),
        (r#"{"kind": "background", "gain": -1}"#, "background.gain"),
        (
            r#"{"kind": "source_blur", "fwhm_a": -0.1}"#,
            "source_blur.fwhm_a",
        ),
        (
            r#"{"kind": "scan", "sine_period_rows": 0.5}"#,
            "scan.sine_period_rows",
        ),
        (
            r#"{"kind": "scan", "flyback_decay_px": 0}"#,
            "scan.flyback_decay_px",
        ),
        (
            r#"{"kind": "scan", "jitter_x_px": -0.1}"#,
            "scan.jitter_x_px",
        ),
        (
            r#"{"kind": "scan", "jitter_smoothing_rows": -1}"#,
            "scan.jitter_smoothing_rows",
        ),
        (r#"{"kind": "crop", "size_px": [0, 4]}"#, "crop.size_px"),
    ];
    for (json, name) in bad {
        let d: Degradation = serde_json::from_str(json).unwrap();
        match d.validate() {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    // Unknown fields are rejected rather than silently ignored.
    assert!(serde_json::from_str::<Degradation>(r#"{"kind": "affine", "zom": 2}"#).is_err());
    // Data-dependent errors.
    let mut s = srtio3([32, 32], 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let crop = Degradation::Crop {
        size_px: [40, 8],
        random_offset: true,
    };
    assert!(matches!(
        crop.apply(&mut s, &mut rng, "c"),
        Err(Error::InvalidParameter {
            name: "crop.size_px",
            ..
        })
    ));
    let mut uncalibrated = Sample {
        image: Image::new(s.image.data().clone()),
        ..s.clone()
    };
    let blur = Degradation::SourceBlur {
        fwhm_a: Param::Fixed(0.5),
    };
    assert!(blur.apply(&mut uncalibrated, &mut rng, "b").is_err());
    let e_dose = Degradation::Poisson {
        dose: DoseParam::ElectronsPerA2(Param::Fixed(100.0)),
    };
    assert!(e_dose.apply(&mut uncalibrated, &mut rng, "p").is_err());
    // A folding scan distortion cannot map labels: an error, not a silent drop.
    let fold = Degradation::Scan(ScanDistortion {
        sine_amplitude_px: Param::Fixed(30.0),
        sine_period_rows: Param::Fixed(10.0),
        stretch_y_px: Param::Fixed(-200.0),
        ..ScanDistortion::default()
    });
    let before = s.clone();
    assert!(matches!(
        fold.apply(&mut s, &mut rng, "f"),
        Err(Error::NotInvertible { .. })
    ));
    assert_eq!(s, before, "a failed warp leaves the sample untouched");
}

#[test]
fn poisson_dose_in_e_per_a2_uses_the_pixel_area() {
    // A flat image of detected fraction 0.5 at 0.2 Å/px and 1000 e/Å²: 0.5·1000·0.04 = 20
    // counts/px expected.
    let img = Image::new(Array2::<f32>::from_elem((64, 64), 0.5)).with_sampling_a(0.2);
    let mut s = Sample {
        image: img,
        labels: Labels::default(),
        metadata: BTreeMap::new(),
        payload: Default::default(),
    };
    let d = Degradation::Poisson {
        dose: DoseParam::ElectronsPerA2(Param::Fixed(1000.0)),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    d.apply(&mut s, &mut rng, "p").unwrap();
    let mean = s.image.data().iter().map(|&v| f64::from(v)).sum::<f64>() / 4096.0;
    // Standard error of the mean: √(20/4096) = 0.07; 5σ = 0.35.
    assert!((mean - 20.0).abs() < 0.35, "{mean}");
}

#[test]
fn background_formula() {
    let img = Image::new(Array2::<f32>::from_elem((3, 5), 2.0));
    let mut s = Sample {
        image: img,
        labels: Labels::default(),
        metadata: BTreeMap::new(),
        payload: Default::default(),
    };
    let b = Degradation::Background(Background {
        gain: Param::Fixed(0.5),
        offset: Param::Fixed(1.0),
        gradient_x: Param::Fixed(2.0),
        ..Background::default()
    });
    b.apply(&mut s, &mut ChaCha8Rng::seed_from_u64(0), "b")
        .unwrap();
    // I' = 0.5·2 + 2·(1 + 2·(x/4 − ½)) = 1 + 2·(x/2) → 1, 2, 3, 4, 5 along x.
    for (c, want) in [1.0, 2.0, 3.0, 4.0, 5.0].iter().enumerate() {
        assert!((f64::from(s.image.data()[[1, c]]) - want).abs() < 1e-6);
    }
}

#[test]
fn cubic_interpolation_oracle() {
    // Keys cubic convolution reproduces quadratics exactly (third-order accurate) inside the
    // grid; compare with the analytic values.
    let f = |y: f64, x: f64| 0.3 * y * y - 0.2 * x * y + 1.5 * x + 2.0;
    let a = Array2::from_shape_fn((12, 12), |(i, j)| f(i as f64, j as f64) as f32);
    for p in [[3.25, 4.5], [5.9, 2.1], [7.0, 7.75]] {
        let v = warp::cubic(&a, p).unwrap();
        // f32 storage of values ≤ 60: 4e-6 relative.
        assert!((v - f(p[0], p[1])).abs() < 1e-4, "{p:?}: {v}");
    }
    assert!(warp::cubic(&a, [-0.6, 3.0]).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn affine_target_inverts_source(
        rot in -180.0..180.0f64, zoom in 0.5..2.0f64, shear in -0.5..0.5f64,
        ty in -20.0..20.0f64, tx in -20.0..20.0f64, y in -50.0..150.0f64, x in -50.0..150.0f64,
    ) {
        let m = AffineMap::new([100, 90], rot, zoom, shear, [ty, tx]).unwrap();
        let p = m.target([y, x]).unwrap();
        let q = m.source(p);
        prop_assert!((q[0] - y).abs() < 1e-9 && (q[1] - x).abs() < 1e-9);
    }

    #[test]
    fn scan_target_inverts_source(seed in 0u64..1000, y in 0.0..127.0f64, x in 0.0..127.0f64) {
        let d: ScanDistortion = serde_json::from_str(
            r#"{"jitter_x_px": 0.3, "jitter_y_px": 0.1, "sine_amplitude_px": [0, 1.5],
                "sine_period_rows": [60, 160], "shear_x_px": [-2, 2], "stretch_y_px": [-2, 2],
                "drift_y_px": [-5, 5], "drift_x_px": [-5, 5], "flyback_amplitude_px": 2}"#,
        ).unwrap();
        let f = d.realise([128, 128], &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let p = f.target([y, x]).unwrap();
        let q = f.source(p);
        prop_assert!((q[0] - y).abs() < 1e-9 && (q[1] - x).abs() < 1e-9);
    }

    #[test]
    fn params_stay_in_their_bounds(lo in -50.0..50.0f64, w in 0.0..50.0f64, seed in 0u64..1000) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let u = Param::Uniform([lo, lo + w]).sample(&mut rng);
        prop_assert!(u >= lo && u <= lo + w);
        let l = Param::LogUniform { log_uniform: [lo.abs() + 0.1, lo.abs() + 0.1 + w] }.sample(&mut rng);
        prop_assert!(l >= (lo.abs() + 0.1) * (1.0 - 1e-12) && l <= (lo.abs() + 0.1 + w) * (1.0 + 1e-12));
        prop_assert_eq!(Param::Fixed(lo).sample(&mut rng), lo);
    }

    #[test]
    fn shift_then_opposite_shift_is_the_identity(ty in -6i32..6, tx in -6i32..6) {
        let base = srtio3([48, 56], 7.0);
        let mut s = base.clone();
        for sign in [1.0, -1.0] {
            let d = Degradation::Affine(Affine {
                shift_y_px: Param::Fixed(sign * f64::from(ty)),
                shift_x_px: Param::Fixed(sign * f64::from(tx)),
                ..Affine::default()
            });
            d.apply(&mut s, &mut ChaCha8Rng::seed_from_u64(0), "s").unwrap();
        }
        // Labels: exact (those that stayed inside both times).
        for p in &s.labels.positions_px {
            prop_assert!(base.labels.positions_px.iter().any(|q| (q[0] - p[0]).abs() < 1e-12 && (q[1] - p[1]).abs() < 1e-12));
        }
        // Image: integer shifts copy pixels exactly away from the filled border.
        let (m, n) = (ty.unsigned_abs() as usize, tx.unsigned_abs() as usize);
        for r in m..48 - m {
            for c in n..56 - n {
                prop_assert_eq!(s.image.data()[[r, c]], base.image.data()[[r, c]]);
            }
        }
    }
}
