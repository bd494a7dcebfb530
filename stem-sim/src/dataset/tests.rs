use super::render;
use super::*;
use crate::degrade::{Labels, Param};
use stem_core::CancelFlag;
use stem_core::peaks::refine_gaussian;
use stem_core::peaks::{GaussianFitConfig, LocalMaximaConfig, NoiseModel, find_local_maxima};
use stem_core::points::{MatchMetrics, evaluate};

fn refind(image: &stem_core::Image<f32>, min_distance_px: usize, rel: f64) -> Vec<[f64; 2]> {
    let maxima = find_local_maxima(
        image.view(),
        &LocalMaximaConfig {
            min_distance_px,
            threshold_rel: rel,
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
        radius_px: min_distance_px as f64,
        noise: NoiseModel::Gaussian { sigma: 1.0 },
        ..GaussianFitConfig::default()
    };
    refine_gaussian(image.view(), &start, &fit)
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect()
}

fn classes(labels: &Labels, names: &[&str]) -> Vec<[f64; 2]> {
    names
        .iter()
        .flat_map(|n| {
            let k = labels.class_names.iter().position(|c| c == n).unwrap() as u16;
            labels.positions_of_class(k)
        })
        .collect()
}

fn score(found: &[[f64; 2]], truth: &[[f64; 2]], shape: [usize; 2]) -> MatchMetrics {
    // 2 px radius, 8 px border (columns cut by the edge fit off-centre).
    evaluate(found, truth, 2.0, shape, 8.0).unwrap()
}

fn lattice_recipe(count: usize) -> Recipe {
    serde_json::from_str(&format!(
        r#"{{"name": "t", "seed": 5, "count": {count},
            "generator": {{"kind": "lattice", "cell": {{"preset": "srtio3001"}},
                          "shape": [96, 96], "rotation_deg": [0, 90], "mask_radius_a": 0.5}},
            "degradations": [{{"kind": "affine", "rotation_deg": [-5, 5]}},
                             {{"kind": "poisson", "dose": {{"counts_per_px": 200}}}}]}}"#
    ))
    .unwrap()
}

#[test]
fn lattice_labels_are_exact_on_clean_images() {
    // Clean Gaussian and Airy-probe images: refined maxima sit on the labels.
    for profile in [
        ColumnProfile::Gaussian { sigma_a: 0.45 },
        ColumnProfile::Airy {
            semiangle_mrad: 20.0,
            energy_ev: 200e3,
        },
    ] {
        let g = LatticeGenerator {
            shape: [128, 128],
            rotation_deg: Param::Uniform([0.0, 90.0]),
            profile,
            ..LatticeGenerator::new(CellSpec::Preset {
                preset: CellPreset::Srtio3001,
            })
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s = g.generate(&mut rng).unwrap();
        let m = score(
            &refind(&s.image, 6, 0.25),
            &classes(&s.labels, &["Sr", "TiO"]),
            [128, 128],
        );
        // The fit of a Gaussian to its own exact samples is exact up to neighbours' tails
        // (< 0.02 px); the Airy peak is symmetric, so its fitted centre is unbiased too.
        assert!(m.recall == 1.0 && m.precision == 1.0, "{profile:?}: {m}");
        assert!(m.rms_distance_px.unwrap() < 0.02, "{profile:?}: {m}");
    }
}

#[test]
fn presets_render_and_dumbbells_resolve() {
    // Si [110] at 0.05 Å/px with a 0.3 Å column σ: the 1.36 Å dumbbells (27 px) are resolved
    // and every column is re-found.
    let g = LatticeGenerator {
        shape: [160, 160],
        sampling_a: Param::Fixed(0.05),
        profile: ColumnProfile::Gaussian { sigma_a: 0.3 },
        ..LatticeGenerator::new(CellSpec::Preset {
            preset: CellPreset::Si110,
        })
    };
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    let m = score(
        &refind(&s.image, 8, 0.3),
        &s.labels.positions_px,
        [160, 160],
    );
    assert!(m.recall == 1.0 && m.precision == 1.0, "{m}");
    for preset in [
        CellPreset::Gaas110,
        CellPreset::Graphene,
        CellPreset::Mos2,
        CellPreset::Ws2,
    ] {
        let g = LatticeGenerator {
            shape: [64, 64],
            ..LatticeGenerator::new(CellSpec::Preset { preset })
        };
        let s = g.generate(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert!(s.labels.len() > 10, "{preset:?}");
    }
}

#[test]
fn vacancies_remove_columns_from_image_and_labels() {
    let mut g = LatticeGenerator {
        shape: [96, 96],
        ..LatticeGenerator::new(CellSpec::Preset {
            preset: CellPreset::Srtio3001,
        })
    };
    let full = g.generate(&mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    g.vacancy_fraction = 0.3;
    let holes = g.generate(&mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let ratio = holes.labels.len() as f64 / full.labels.len() as f64;
    // Binomial with ~200 columns: 0.7 ± 0.03; 5σ band.
    assert!((ratio - 0.7).abs() < 0.15, "{ratio}");
    // The image has no column where a label was removed: the pixel at a missing Sr centre is
    // far below a present one.
    let present: Vec<_> = classes(&holes.labels, &["Sr"]);
    let missing = classes(&full.labels, &["Sr"])
        .into_iter()
        .find(|p| {
            !present
                .iter()
                .any(|q| (q[0] - p[0]).abs() + (q[1] - p[1]).abs() < 1e-9)
        })
        .unwrap();
    let v = holes.image.data()[[missing[0].round() as usize, missing[1].round() as usize]];
    assert!(v < 0.5, "{v}");
}

#[test]
fn substitutions_change_class_and_intensity() {
    let g: LatticeGenerator = serde_json::from_str(
        r#"{"cell": {"preset": "mos2"}, "shape": [128, 128], "sampling_a": 0.1,
            "substitutions": [{"label": "Mo", "z": [74], "fraction": 0.3, "class": "W_on_Mo"}]}"#,
    )
    .unwrap();
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(6)).unwrap();
    assert_eq!(s.labels.class_names, ["Mo", "S2", "W_on_Mo"]);
    let w = classes(&s.labels, &["W_on_Mo"]);
    let mo = classes(&s.labels, &["Mo"]);
    let f = w.len() as f64 / (w.len() + mo.len()) as f64;
    // Binomial over ~90 metal sites: 0.3 ± 0.05; a 3σ band.
    assert!((f - 0.3).abs() < 0.15, "{f}");
    // W columns are (74/42)^1.7 = 2.6× brighter than Mo columns.
    let at =
        |p: &[f64; 2]| f64::from(s.image.data()[[p[0].round() as usize, p[1].round() as usize]]);
    let (wm, mm) = (
        w.iter().map(at).sum::<f64>() / w.len() as f64,
        mo.iter().map(at).sum::<f64>() / mo.len() as f64,
    );
    assert!(wm > 2.0 * mm, "{wm} vs {mm}");
    // Substituted columns just outside the image are counted too.
    assert!(s.metadata["generator.substitutions"] >= w.len() as f64);
    // A host label that is not in the motif is an error.
    let bad: LatticeGenerator = serde_json::from_str(
        r#"{"cell": {"preset": "mos2"},
            "substitutions": [{"label": "Ti", "z": [22], "fraction": 0.3, "class": "x"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        bad.validate(),
        Err(Error::InvalidParameter {
            name: "substitutions",
            ..
        })
    ));
}

#[test]
fn domain_images_carry_variant_displacements_and_walls() {
    let g: DomainGenerator = serde_json::from_str(
        r#"{"lattice": {"cell": {"preset": "srtio3001"}, "shape": [160, 160],
                        "random_origin": false},
            "layout": {"kind": "stripes", "period_px": 80, "angle_deg": 0},
            "variants_a": [[0.3, 0.0], [-0.3, 0.0]], "displaced": ["TiO"]}"#,
    )
    .unwrap();
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    let domain = &s.labels.mask("domain").unwrap().data;
    let boundary = &s.labels.mask("boundary").unwrap().data;
    // Walls along x (angle 0): the variant depends on y only; 160 px / 40 px stripes = 4
    // stripes, so 3 or 4 walls, each 2 px wide (one px each side) across 160 px.
    assert!(
        domain
            .rows()
            .into_iter()
            .all(|r| r.iter().all(|&v| v == r[0]))
    );
    let n_boundary = boundary.iter().filter(|&&v| v == 1).count();
    assert!(
        n_boundary == 3 * 2 * 160 || n_boundary == 4 * 2 * 160,
        "{n_boundary}"
    );
    // TiO columns sit ±0.3 Å = ±2 px in y from the cell centre, with the sign of the domain.
    let sr = classes(&s.labels, &["Sr"]);
    let s_px = 0.15;
    let a_px = 3.905 / s_px;
    let mut checked = 0;
    for p in classes(&s.labels, &["TiO"]) {
        // Undisplaced centre: nearest point of the Sr lattice + (a/2, a/2).
        let Some(q) = sr.iter().find(|q| {
            let d = [p[0] - q[0] - a_px / 2.0, p[1] - q[1] - a_px / 2.0];
            d[0].abs() < 3.0 && d[1].abs() < 1e-9
        }) else {
            continue;
        };
        let dy = p[0] - q[0] - a_px / 2.0;
        let centre_row = (q[0] + a_px / 2.0).round() as usize;
        let variant = domain[[centre_row.min(159), 0]];
        let want = if variant == 1 { 2.0 } else { -2.0 };
        assert!((dy - want).abs() < 1e-9, "dy {dy}, variant {variant}");
        checked += 1;
    }
    assert!(checked > 10, "{checked}");
    // The image agrees with the labels.
    let m = score(
        &refind(&s.image, 6, 0.25),
        &classes(&s.labels, &["Sr", "TiO"]),
        [160, 160],
    );
    assert!(m.recall == 1.0 && m.rms_distance_px.unwrap() < 0.02, "{m}");
}

#[test]
fn voronoi_domains_cover_the_image() {
    let g: DomainGenerator = serde_json::from_str(
        r#"{"lattice": {"cell": {"preset": "srtio3001"}, "shape": [96, 128]},
            "layout": {"kind": "voronoi", "domains": 6},
            "variants_a": [[0.2, 0.0], [-0.2, 0.0], [0.0, 0.2], [0.0, -0.2]],
            "displaced": ["TiO"], "wall_width_px": 3}"#,
    )
    .unwrap();
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(8)).unwrap();
    let domain = &s.labels.mask("domain").unwrap().data;
    assert!(domain.iter().all(|&v| (1..=4).contains(&v)));
    let f: f64 = (0..4)
        .map(|k| s.metadata[&format!("generator.domain_fraction_{k}")])
        .sum();
    assert!((f - 1.0).abs() < 1e-12);
    // Every boundary pixel has a differing pixel within 1.5 px, and vice versa.
    let boundary = &s.labels.mask("boundary").unwrap().data;
    for ((i, j), &b) in boundary.indexed_iter() {
        let mut differs = false;
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let (y, x) = (i as i64 + dy, j as i64 + dx);
                if y >= 0 && x >= 0 && y < 96 && x < 128 && (dy * dy + dx * dx) <= 2 {
                    differs |= domain[[y as usize, x as usize]] != domain[[i, j]];
                }
            }
        }
        assert_eq!(b == 1, differs, "({i}, {j})");
    }
}

fn series_recipe() -> Recipe {
    serde_json::from_str(
        r#"{"name": "series", "seed": 11, "count": 3,
            "generator": {"kind": "series",
              "specimen": {"cell": {"preset": "srtio3001"}, "shape": [128, 128],
                           "rotation_deg": 4},
              "shift_px": [-8, 8],
              "scan": {"jitter_x_px": 0.2, "jitter_smoothing_rows": 1, "sine_amplitude_px": [0.5, 1.5],
                       "sine_period_rows": [60, 160], "shear_x_px": [-2, 2], "stretch_y_px": [-2, 2]}},
            "degradations": []}"#,
    )
    .unwrap()
}

#[test]
fn series_frames_follow_the_true_field() {
    let data = Dataset::new(series_recipe(), Parallelism::Auto).unwrap();
    let reference = data.reference().unwrap().unwrap();
    assert_eq!(reference.image.shape(), [128, 128]);
    let frame = data.sample(1).unwrap();
    let d = frame.labels.displacement.as_ref().unwrap();
    // Every frame label p maps back to a reference label at p + d(p): the labels and the
    // field agree (bilinear interpolation of the smooth field between pixels: < 0.02 px).
    let mut matched = 0;
    for p in &frame.labels.positions_px {
        let dp = d.sample(*p);
        let q = [p[0] + dp[0], p[1] + dp[1]];
        if let Some(r) = reference
            .labels
            .positions_px
            .iter()
            .find(|r| (r[0] - q[0]).abs() < 0.5 && (r[1] - q[1]).abs() < 0.5)
        {
            assert!((r[0] - q[0]).abs() < 0.02 && (r[1] - q[1]).abs() < 0.02);
            matched += 1;
        }
    }
    assert!(matched as f64 > 0.8 * frame.labels.len() as f64);
    // The image agrees with the labels.
    let m = score(
        &refind(&frame.image, 6, 0.25),
        &classes(&frame.labels, &["Sr", "TiO"]),
        [128, 128],
    );
    assert!(m.recall > 0.99 && m.rms_distance_px.unwrap() < 0.1, "{m}");
    // The effective shift is the field's mean and near the drawn rigid shift (the distortions
    // have zero mean up to the sinusoid's and jitter's residual, < 1.5 px).
    let e = d.mean();
    assert_eq!(frame.metadata["generator.effective_shift_y_px"], e[0]);
    let sy = frame.metadata["generator.shift_y_px"];
    let sx = frame.metadata["generator.shift_x_px"];
    assert!(
        (e[0] - sy).abs() < 0.5 && (e[1] - sx).abs() < 1.5,
        "{e:?} vs {sy}, {sx}"
    );
    // Frames differ; the specimen is shared.
    assert_ne!(data.sample(0).unwrap().image, frame.image);
}

#[test]
fn series_frame_matches_analytic_rendering_at_displaced_coordinates() {
    // Oracle, as the registration reference series is built (peer-benchmarks.md §1.6): frame
    // pixel p is the specimen evaluated analytically (a sum of Gaussians, no interpolation) at
    // p + d(p), with d the frame's true displacement field.
    let g: SeriesGenerator = serde_json::from_str(
        r#"{"specimen": {"cell": {"preset": "srtio3001"}, "shape": [64, 64],
                         "rotation_deg": 4, "random_origin": false},
            "shift_px": [-5, 5], "drift_px_per_frame": [0.5, -0.25], "margin_px": 16,
            "scan": {"jitter_x_px": 0.2, "jitter_smoothing_rows": 1, "sine_amplitude_px": 1,
                     "sine_period_rows": 40, "shear_x_px": 2, "stretch_y_px": -2,
                     "flyback_amplitude_px": 1}}"#,
    )
    .unwrap();
    let specimen = g
        .specimen_with_margin(&mut ChaCha8Rng::seed_from_u64(0))
        .unwrap();
    let frame = g
        .frame(&specimen, 3, &mut ChaCha8Rng::seed_from_u64(1))
        .unwrap();
    let placement = render::Placement {
        shape: [96, 96],
        sampling_a: 0.15,
        rotation_deg: 4.0,
        origin_a: [0.0, 0.0],
    };
    let cell = CellPreset::Srtio3001.cell();
    let cols = render::lattice_columns(&cell, &placement, 1.7, 16.0);
    let d = frame.labels.displacement.as_ref().unwrap();
    let mut worst: f64 = 0.0;
    for ((r, c), &v) in frame.image.data().indexed_iter() {
        let q = [
            r as f64 + 16.0 + d.dy_px[[r, c]],
            c as f64 + 16.0 + d.dx_px[[r, c]],
        ];
        let analytic: f64 = 0.05
            + cols
                .iter()
                .map(|k| {
                    let r2 = (q[0] - k.position_px[0]).powi(2) + (q[1] - k.position_px[1]).powi(2);
                    k.amplitude * (-r2 / 18.0).exp()
                })
                .sum::<f64>();
        worst = worst.max((f64::from(v) - analytic).abs());
    }
    // Cubic convolution of σ = 3 px Gaussians is accurate to ~1e-3 of the peak (1.0), plus the
    // 4σ cut of the rendering (exp(−8) = 3e-4 per neighbour).
    eprintln!("series oracle: worst |frame - analytic| = {worst:.2e}");
    assert!(worst < 5e-3, "{worst}");
    // The known linear drift: frame 3 is shifted by 3·[0.5, −0.25] plus at most ±5 px.
    let sy = frame.metadata["generator.shift_y_px"];
    let sx = frame.metadata["generator.shift_x_px"];
    assert!((sy - 1.5).abs() <= 5.0 && (sx + 0.75).abs() <= 5.0);
    assert_eq!(d.dy_px[[0, 0]] - d.dy_px[[0, 1]], 0.0); // y displacement is per row here
}

#[test]
fn registration_recipe_reproduces_the_reference_distortion_statistics() {
    // peer-benchmarks.md §1.6: after removing each frame's mean shift, the non-rigid
    // distortion of the reference series is 0.911 px RMS (vector magnitude over frames and
    // rows). Expected from the recipe's distributions: x² = E[A²]/2 (sinusoid, A ~ U[0.5, 1.5])
    // + E[c²]/12 (shear, c ~ U[−2, 2]) + smoothed white jitter (0.25 px · 0.53)², y² = E[e²]/12:
    // √(0.542 + 0.111 + 0.018 + 0.111) = 0.884 px; the reference's single 20-frame draw is
    // within the sampling spread of that value.
    let recipe: Recipe = serde_json::from_str(include_str!(
        "../../examples/recipes/registration_series.json"
    ))
    .unwrap();
    let Generator::Series(g) = recipe.generator else {
        panic!("not a series recipe")
    };
    let (mut sum2, mut n) = (0.0, 0usize);
    for seed in 0..200u64 {
        let f = g
            .scan
            .realise([512, 512], &mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap();
        let d: Vec<[f64; 2]> = (0..512).map(|r| f.displacement([r as f64, 0.0])).collect();
        let mean = [0, 1].map(|k| d.iter().map(|v| v[k]).sum::<f64>() / 512.0);
        for v in &d {
            sum2 += (v[0] - mean[0]).powi(2) + (v[1] - mean[1]).powi(2);
            n += 1;
        }
    }
    let rms = (sum2 / n as f64).sqrt();
    eprintln!("registration recipe: non-rigid distortion {rms:.3} px RMS");
    // 200 frames: the estimate's relative spread is ~3 %; ±0.06 px is 2σ of it.
    assert!((rms - 0.884).abs() < 0.06, "{rms}");
}

#[test]
fn streaming_equals_random_access_and_is_thread_independent() {
    let a = Dataset::new(lattice_recipe(3), Parallelism::Threads(1)).unwrap();
    let b = Dataset::new(lattice_recipe(3), Parallelism::Threads(2)).unwrap();
    let from_iter: Vec<_> = a.iter().map(|s| s.unwrap()).collect();
    for (i, s) in from_iter.iter().enumerate() {
        assert_eq!(*s, b.sample(i).unwrap());
    }
    assert_ne!(from_iter[0].image, from_iter[1].image);
    assert!(a.sample(3).is_err());
}

#[test]
fn written_files_are_identical_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipes = vec![lattice_recipe(2), series_recipe()];
    recipes[1].count = 2;
    for (k, recipe) in recipes.into_iter().enumerate() {
        let d1 = dir.path().join(format!("{k}-one"));
        let d2 = dir.path().join(format!("{k}-two"));
        let m1 = Dataset::new(recipe.clone(), Parallelism::Threads(1))
            .unwrap()
            .write(&d1, &stem_core::NoProgress)
            .unwrap();
        Dataset::new(recipe, Parallelism::Threads(2))
            .unwrap()
            .write(&d2, &stem_core::NoProgress)
            .unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&d1)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(names.len() >= 4);
        for n in &names {
            let a = std::fs::read(d1.join(n)).unwrap();
            let b = std::fs::read(d2.join(n)).unwrap();
            assert!(a == b, "{n:?} differs");
        }
        // The manifest's digests are those of the files.
        for s in &m1.samples {
            let bytes = std::fs::read(d1.join(&s.image.path)).unwrap();
            let h: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(h, s.image.sha256);
        }
        let text = std::fs::read_to_string(d1.join("manifest.json")).unwrap();
        // Exact round trip of every label (serde_json's `float_roundtrip`).
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m1);
    }
}

#[test]
fn cancelling_stops_writing() {
    let dir = tempfile::tempdir().unwrap();
    let data = Dataset::new(lattice_recipe(5), Parallelism::Auto).unwrap();
    let flag = CancelFlag::cancel_after(2);
    let r = data.write(dir.path(), &flag);
    assert!(matches!(r, Err(Error::Core(stem_core::Error::Cancelled))));
    assert_eq!(flag.done(), 2);
}

#[test]
fn invalid_recipes_are_errors() {
    let mut r = lattice_recipe(1);
    r.count = 0;
    assert!(matches!(
        Dataset::new(r, Parallelism::Auto),
        Err(Error::InvalidParameter { name: "count", .. })
    ));
    let mut s = series_recipe();
    if let Generator::Series(g) = &mut s.generator {
        g.margin_px = 8;
    }
    assert!(matches!(
        Dataset::new(s, Parallelism::Auto),
        Err(Error::InvalidParameter {
            name: "margin_px",
            ..
        })
    ));
    let bad_domain = |json: &str| {
        serde_json::from_str::<DomainGenerator>(json)
            .unwrap()
            .validate()
    };
    assert!(matches!(
        bad_domain(
            r#"{"lattice": {"cell": {"preset": "srtio3001"}},
                "layout": {"kind": "voronoi", "domains": 3},
                "variants_a": [[0.1, 0]], "displaced": ["TiO"]}"#
        ),
        Err(Error::InvalidParameter {
            name: "variants_a",
            ..
        })
    ));
    assert!(matches!(
        bad_domain(
            r#"{"lattice": {"cell": {"preset": "srtio3001"}},
                "layout": {"kind": "voronoi", "domains": 3},
                "variants_a": [[0.1, 0], [-0.1, 0]], "displaced": ["Ti"]}"#
        ),
        Err(Error::InvalidParameter {
            name: "displaced",
            ..
        })
    ));
    assert!(matches!(
        bad_domain(
            r#"{"lattice": {"cell": {"preset": "srtio3001"}},
                "layout": {"kind": "voronoi", "domains": 0},
                "variants_a": [[0.1, 0], [-0.1, 0]], "displaced": ["TiO"]}"#
        ),
        Err(Error::InvalidParameter {
            name: "layout.domains",
            ..
        })
    ));
    let lattice = |json: &str| {
        serde_json::from_str::<LatticeGenerator>(json)
            .unwrap()
            .validate()
    };
    for (json, name) in [
        (r#"{"cell": {"preset": "si110"}, "shape": [0, 5]}"#, "shape"),
        (
            r#"{"cell": {"preset": "si110"}, "sampling_a": 0}"#,
            "sampling_a",
        ),
        (
            r#"{"cell": {"preset": "si110"}, "vacancy_fraction": 1.5}"#,
            "vacancy_fraction",
        ),
        (
            r#"{"cell": {"preset": "si110"}, "z_exponent": -1}"#,
            "z_exponent",
        ),
        (
            r#"{"cell": {"preset": "si110"}, "mask_radius_a": 0}"#,
            "mask_radius_a",
        ),
        (
            r#"{"cell": {"preset": "si110"}, "profile": {"kind": "gaussian", "sigma_a": 0}}"#,
            "profile.sigma_a",
        ),
    ] {
        match lattice(json) {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{json}: {other:?}"),
        }
    }
    // Unknown recipe fields are rejected.
    assert!(
        serde_json::from_str::<Recipe>(
            r#"{"name": "x", "seed": 1, "count": 1, "sed": 2,
                "generator": {"kind": "lattice", "cell": {"preset": "si110"}}}"#
        )
        .is_err()
    );
}

use rand::SeedableRng;
use sha2::Digest;

/// Tiny recipes of the multislice-driven kinds (each sample well under a second).
fn multislice_recipes() -> Vec<Recipe> {
    let texts = [
        r#"{"name": "ms-adf", "seed": 3, "count": 2,
            "generator": {"kind": "multislice_adf",
                          "crystal": {"structure": "srtio3", "cells_yx": [1, 1], "thickness_cells": 2},
                          "probe": {"defocus_a": [-20, 20]},
                          "detector_mrad": [40, 100], "potential_sampling_a": 0.08,
                          "scan_step_a": 0.5, "random_shift": true,
                          "vacancies": [{"element": "O", "fraction": 0.2}]},
            "degradations": [{"kind": "poisson", "dose": {"e_per_a2": 1e5}}]}"#,
        r#"{"name": "fast-adf", "seed": 3, "count": 2,
            "generator": {"kind": "incoherent_adf",
                          "crystal": {"structure": "gaas", "zone": "110", "cells_yx": [2, 2]},
                          "random_shift": true,
                          "substitutions": [{"element": "Ga", "to": "In", "fraction": 0.3, "class": "In"}]}}"#,
        r#"{"name": "pacbed", "seed": 3, "count": 2,
            "generator": {"kind": "pacbed",
                          "crystal": {"structure": "srtio3", "cells_yx": [2, 2], "thickness_cells": 3},
                          "thickness_cells": [1, 3], "tilt_x_mrad": [-3, 3],
                          "positions_per_cell": 2, "max_angle_mrad": 30, "potential_sampling_a": 0.15}}"#,
        r#"{"name": "cube", "seed": 3, "count": 2,
            "generator": {"kind": "cube_4d",
                          "crystal": {"structure": "srtio3", "cells_yx": [1, 2], "thickness_cells": 2},
                          "host_cells_x": 1, "scan_step_a": 1.0, "potential_sampling_a": 0.15}}"#,
    ];
    texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
}

#[test]
fn multislice_kinds_are_thread_independent_and_written_with_payloads() {
    let dir = tempfile::tempdir().unwrap();
    for (k, recipe) in multislice_recipes().into_iter().enumerate() {
        let d1 = dir.path().join(format!("{k}-one"));
        let d2 = dir.path().join(format!("{k}-two"));
        let one = Dataset::new(recipe.clone(), Parallelism::Threads(1)).unwrap();
        let m1 = one.write(&d1, &stem_core::NoProgress).unwrap();
        let two = Dataset::new(recipe.clone(), Parallelism::Threads(2)).unwrap();
        two.write(&d2, &stem_core::NoProgress).unwrap();
        // Random access = streaming, and the two samples differ (drawn parameters).
        let s1 = two.sample(1).unwrap();
        assert_eq!(s1, one.iter().nth(1).unwrap().unwrap());
        assert_ne!(s1, one.sample(0).unwrap(), "{}", recipe.name);
        let mut names: Vec<_> = std::fs::read_dir(&d1)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in &names {
            let a = std::fs::read(d1.join(n)).unwrap();
            let b = std::fs::read(d2.join(n)).unwrap();
            assert!(a == b, "{}: {n:?} differs", recipe.name);
        }
        let text = std::fs::read_to_string(d1.join("manifest.json")).unwrap();
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m1);
        let s = &m1.samples[0];
        match recipe.name.as_str() {
            "pacbed" => {
                let st = s.stack.as_ref().unwrap();
                assert_eq!(st.file.shape[0], 2);
                assert_eq!(st.axis, "thickness_nm");
                let arr = stem_core::io::npy::read_npy_f32(d1.join(&st.file.path)).unwrap();
                assert_eq!(arr.shape(), st.file.shape.as_slice());
                assert!(s.metadata.contains_key("generator.tilt_x_mrad"));
            }
            "cube" => {
                let c = s.cube.as_ref().unwrap();
                assert_eq!(c.file.shape.len(), 4);
                assert_eq!(c.axes.len(), 4);
                assert!(c.clean.is_some());
                assert!(s.masks.contains_key("region"));
            }
            _ => {
                assert!(s.stack.is_none() && s.cube.is_none());
                assert!(!s.positions_px.is_empty());
                assert!(s.positions_a.is_some());
                assert!(s.masks.contains_key("columns"));
            }
        }
    }
}

#[test]
fn payload_kinds_refuse_degradations_and_multislice_cancels_between_samples() {
    let mut r = multislice_recipes().remove(2);
    r.degradations =
        serde_json::from_str(r#"[{"kind": "poisson", "dose": {"counts_per_px": 10}}]"#).unwrap();
    assert!(Dataset::new(r, Parallelism::Auto).is_err());
    let dir = tempfile::tempdir().unwrap();
    let data = Dataset::new(multislice_recipes().remove(0), Parallelism::Auto).unwrap();
    let flag = CancelFlag::cancel_after(1);
    let res = data.write(dir.path(), &flag);
    assert!(matches!(res, Err(Error::Core(stem_core::Error::Cancelled))));
    assert_eq!(flag.done(), 1);
}

/// Cancels once `is_cancelled` has been asked `after` times.
struct CancelAfterChecks {
    after: usize,
    asked: std::sync::atomic::AtomicUsize,
}

impl stem_core::Progress for CancelAfterChecks {
    fn is_cancelled(&self) -> bool {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.after
    }
}

#[test]
fn multislice_samples_are_cancelled_between_probe_positions() {
    // The write loop asks once per sample and the scan at least once per probe position
    // (≥ 4 positions in each of these recipes): cancelling at the 6th question stops inside
    // the first sample's scan, before anything of it is written.
    for k in [0, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::new(multislice_recipes().remove(k), Parallelism::Auto).unwrap();
        let flag = CancelAfterChecks {
            after: 5,
            asked: std::sync::atomic::AtomicUsize::new(0),
        };
        let r = data.write(dir.path(), &flag);
        assert!(
            matches!(r, Err(Error::Core(stem_core::Error::Cancelled))),
            "{k}"
        );
        // Stopped in the first sample: nothing was written for it.
        assert!(!dir.path().join("sample_000000.npy").exists());
    }
}
