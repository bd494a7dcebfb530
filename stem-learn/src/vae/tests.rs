use super::*;
use crate::optim::AdamWConfig;
use stem_core::{CancelFlag, NoProgress};

fn textured() -> Array2<f32> {
    Array2::from_shape_fn((40, 48), |(y, x)| {
        let v = if x < 24 {
            (y as f32 * 1.3).sin()
        } else {
            (x as f32 * 1.3).sin()
        };
        v + 0.1 * ((y * 31 + x * 17) % 7) as f32
    })
}

fn small(mode: VaeMode) -> VaeConfig {
    VaeConfig {
        window_px: 8,
        stride_px: 4,
        epochs: 3,
        batch_side: 4,
        tiles_per_batch: 1,
        hidden: 16,
        mode,
        ..VaeConfig::default()
    }
}

#[test]
fn config_validation_rules() {
    let ok = VaeConfig::default();
    assert!(ok.validate().is_ok());
    let bad = |f: &dyn Fn(&mut VaeConfig), name: &str| {
        let mut c = VaeConfig::default();
        f(&mut c);
        match c.validate() {
            Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    };
    bad(&|c| c.window_px = 1, "window_px");
    bad(&|c| c.stride_px = 0, "stride_px");
    bad(&|c| c.align_blur_px = 0.0, "align_blur_px");
    bad(&|c| c.latent_dim = 0, "latent_dim");
    bad(&|c| c.latent_dim = 9, "latent_dim");
    bad(&|c| c.hidden = 0, "hidden");
    bad(&|c| c.epochs = 0, "epochs");
    bad(&|c| c.batch_side = 0, "batch_side");
    bad(&|c| c.kl_weight = -1.0, "kl_weight");
    bad(&|c| c.recon_sigma = f64::NAN, "recon_sigma");
    bad(&|c| c.optimizer.lr = 0.0, "lr");
    bad(&|c| c.classes = 0, "classes");
    bad(&|c| c.classes = 256, "classes");
    bad(&|c| c.mode = VaeMode::phy(-1.0), "lambda");
    bad(
        &|c| {
            c.mode = VaeMode::Phy {
                lambda: 1.0,
                eps: 0.0,
            }
        },
        "eps",
    );
    bad(
        &|c| {
            c.mode = VaeMode::Faithful {
                w1: -0.1,
                sigma_spatial: 5.0,
            }
        },
        "w1",
    );
    bad(
        &|c| {
            c.mode = VaeMode::Faithful {
                w1: 0.5,
                sigma_spatial: 0.0,
            }
        },
        "sigma_spatial",
    );
}

#[test]
fn image_errors_are_typed() {
    let img = textured();
    let mut c = small(VaeMode::Plain);
    c.window_px = 41;
    assert!(matches!(
        fit(ImageView::new(img.view()), &c, &NoProgress),
        Err(Error::InvalidParameter { .. })
    ));
    let mut nan = img.clone();
    nan[[3, 3]] = f32::NAN;
    assert!(
        fit(
            ImageView::new(nan.view()),
            &small(VaeMode::Plain),
            &NoProgress
        )
        .is_err()
    );
}

#[test]
fn tv_iso_matches_reference_and_gradient() {
    let (ty, tx, d) = (3usize, 4usize, 2usize);
    let vals: Vec<f64> = (0..ty * tx * d)
        .map(|i| ((i * 7) % 5) as f64 * 0.3 - 0.4)
        .collect();
    let mu = candle_core::Var::from_vec(vals.clone(), (ty * tx, d), &Device::Cpu).unwrap();
    let eps = 1e-3;
    let tv = tv_iso(mu.as_tensor(), ty, tx, eps).unwrap();
    let at = |i: usize, k: usize, j: usize| vals[(i * tx + k) * d + j];
    let mut reference = 0.0;
    for j in 0..d {
        for i in 0..ty - 1 {
            for k in 0..tx - 1 {
                let gy = at(i + 1, k, j) - at(i, k, j);
                let gx = at(i, k + 1, j) - at(i, k, j);
                reference += (eps + gy * gy + gx * gx).sqrt();
            }
        }
    }
    let got = tv.to_scalar::<f64>().unwrap();
    // f64, same terms in another order.
    assert!((got - reference).abs() < 1e-12, "{got} {reference}");
    // Gradient against central finite differences.
    let g = tv.backward().unwrap();
    let g = g
        .get(mu.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for p in 0..vals.len() {
        let f = |delta: f64| {
            let mut v = vals.clone();
            v[p] += delta;
            let t = Tensor::from_vec(v, (ty * tx, d), &Device::Cpu).unwrap();
            tv_iso(&t, ty, tx, eps).unwrap().to_scalar::<f64>().unwrap()
        };
        let fd = (f(1e-6) - f(-1e-6)) / 2e-6;
        // Central differences of a smooth function in f64 at h = 1e-6: error ~1e-9.
        assert!((fd - g[p]).abs() < 1e-6, "{p}: {fd} vs {}", g[p]);
    }
}

#[test]
fn tiles_are_contiguous_and_plain_batches_cover_the_grid() {
    let grid = GridSpec::fit([40, 48], 8, 4, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (b, t) = epoch_batches(&VaeMode::Plain, &grid, 4, 1, &mut rng);
    assert_eq!(t, None);
    let mut all: Vec<u32> = b.concat();
    all.sort_unstable();
    assert_eq!(all, (0..grid.len() as u32).collect::<Vec<_>>());
    let (b, t) = epoch_batches(&VaeMode::phy(1.0), &grid, 4, 1, &mut rng);
    assert_eq!(t, Some([4, 4]));
    assert_eq!(b.len(), grid.len().div_ceil(16));
    let gx = grid.shape[1] as u32;
    for tile in &b {
        // Raster order inside a 4×4 block: rows of 4 consecutive indices, rows gx apart.
        for r in 0..4 {
            for c in 0..4 {
                assert_eq!(tile[r * 4 + c], tile[0] + r as u32 * gx + c as u32);
            }
        }
    }
}

#[test]
fn deterministic_across_runs_and_thread_counts() {
    let img = textured();
    for mode in [VaeMode::Plain, VaeMode::phy(1.0), VaeMode::faithful()] {
        let mut c = small(mode);
        c.parallelism = Parallelism::Sequential;
        let a = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        c.parallelism = Parallelism::Threads(2);
        let b = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        assert_eq!(a.latent_mean, b.latent_mean, "{mode:?}");
        assert_eq!(a.epoch_neg_elbo, b.epoch_neg_elbo);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.steps, 3 * a.grid.len().div_ceil(16) as u64);
        c.seed = 1;
        let other = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        assert_ne!(a.latent_mean, other.latent_mean);
    }
}

#[test]
fn cancel_stops_training() {
    let img = textured();
    let flag = CancelFlag::cancel_after(1);
    let r = fit(ImageView::new(img.view()), &small(VaeMode::Plain), &flag);
    assert!(matches!(r, Err(Error::Cancelled)));
}

#[test]
fn training_lowers_the_loss_and_pngs_are_written() {
    let img = textured();
    let mut c = small(VaeMode::phy(1.0));
    c.epochs = 60;
    let f = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
    let (first, last) = (f.epoch_neg_elbo[0], *f.epoch_neg_elbo.last().unwrap());
    // 60 epochs of Adam on a learnable texture must cut −ELBO by more than a quarter.
    assert!(last < 0.75 * first, "{first} → {last}");
    assert!(f.epoch_physics.iter().all(|&p| p > 0.0));
    let dir = std::env::temp_dir().join(format!("stem_vae_png_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    f.write_pngs(&dir).unwrap();
    for name in [
        "latent_0.png",
        "latent_1.png",
        "segmentation.png",
        "boundary.png",
    ] {
        assert!(dir.join(name).exists(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stem-sim SrTiO3 [001] image with two 180° polarisation variants (Ti-O columns ±0.25 Å
/// along y) in stripes, Poisson noise, and its exact `domain` mask.
fn stripes(shape: usize, dose: f64, seed: u64) -> (Array2<f32>, Array2<u8>) {
    use stem_core::noise::{Dose, add_poisson_noise};
    let json = format!(
        r#"{{"lattice": {{"cell": {{"preset": "srtio3001"}}, "shape": [{shape}, {shape}],
             "sampling_a": 0.12, "rotation_deg": [-5, 5]}},
            "layout": {{"kind": "stripes", "period_px": [100, 160], "angle_deg": [0, 180]}},
            "variants_a": [[0.25, 0.0], [-0.25, 0.0]], "displaced": ["TiO"]}}"#
    );
    let g: stem_sim::dataset::DomainGenerator = serde_json::from_str(&json).unwrap();
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
    let noisy = add_poisson_noise(s.image.view(), Dose::CountsPerPixel(dose), seed + 1000).unwrap();
    (
        noisy.into_array(),
        s.labels.mask("domain").unwrap().data.clone(),
    )
}

fn domain_config(mode: VaeMode) -> VaeConfig {
    VaeConfig {
        window_px: 40,
        stride_px: 8,
        align_px: 32,
        epochs: 30,
        mode,
        optimizer: AdamWConfig {
            lr: 2e-3,
            ..AdamWConfig::default()
        },
        ..VaeConfig::default()
    }
}

/// Ground truth on simulated domains: the lattice-aligned plain VAE separates the two
/// polarisation variants. Measured (seed 0, dose 1000 counts/px, 256², x86-64 AVX-512, windows
/// scored at their cut centres): plain accuracy 0.862 / boundary F1 0.826. The bound 0.7 sits
/// 0.1 below (room for ULP-level differences across CPUs changing k-means assignments near
/// walls) and 0.2 above chance (0.5). On this image phy (λ = 1000) gets only 0.575 / 0.711: its
/// latent maps are clean two-level maps of another spatially coherent feature (one of the
/// images where phy loses; see `phy_beats_plain_on_held_out_domain_images`).
#[test]
#[ignore = "about 15 CPU-s at release; run by bench/vae/run.sh"]
fn lattice_aligned_vae_separates_polarisation_domains() {
    let (img, domain) = stripes(256, 1000.0, 0);
    let f = fit(
        ImageView::new(img.view()),
        &domain_config(VaeMode::Plain),
        &NoProgress,
    )
    .unwrap();
    let truth = f.sample_mask_at_centres(domain.view()).unwrap();
    let s = score_segmentation(f.labels.view(), truth.view(), 1).unwrap();
    eprintln!("plain: {s:?}");
    assert!(s.accuracy > 0.7 && s.boundary_f1 > 0.7, "{s:?}");
}

use super::domain_images::domain_image;

/// The issue's target: phyVAE (λ = 1000, full-grid TV normalised by the mean absolute
/// deviation) above the plain VAE on segmentation accuracy AND boundary F1, on HELD-OUT images
/// (seeds 2–5; λ and the formulation were chosen on seeds 0, 1), small model (MLP h = 64, d = 2,
/// 30 epochs). 16 images: stripes and Voronoi, 30 and 1000 counts/px, four seeds; windows scored
/// at their cut centres, boundary tolerance 1 cell. Measured means (x86-64 AVX-512): plain
/// 0.669 / 0.621, phy 0.782 / 0.679: +0.114 accuracy (phy ≥ plain on 13 of 16 images), +0.058
/// boundary F1. The boundary gain is small and uneven: +0.108 on seeds 2, 3, +0.007 on seeds
/// 4, 5, and −0.039 on the tuning seeds 0, 1 (accuracy there −0.002); see bench/vae/RESULTS.md.
/// Asserted margins: accuracy ≥ +0.08, boundary F1 ≥ +0.03. Each sits about 0.025 below the
/// measurement, the effect on the 16-image mean of two images changing by 0.2 (one k-means
/// assignment flip) through cross-CPU rounding.
#[test]
#[ignore = "about 350 CPU-s at release (32 fits); run by bench/vae/run.sh"]
fn phy_beats_plain_on_held_out_domain_images() {
    let mut sum = [[0.0f64; 2]; 2];
    let mut n = 0.0;
    for layout in ["stripes", "voronoi"] {
        for dose in [30.0, 1000.0] {
            for seed in 2u64..=5 {
                let (img, domain, k) = domain_image(layout, dose, seed);
                for (m, mode) in [VaeMode::Plain, VaeMode::phy(1000.0)]
                    .into_iter()
                    .enumerate()
                {
                    let mut c = domain_config(mode);
                    c.classes = k;
                    c.seed = seed;
                    let f = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
                    let truth = f.sample_mask_at_centres(domain.view()).unwrap();
                    let s = score_segmentation(f.labels.view(), truth.view(), 1).unwrap();
                    eprintln!("{layout} {dose} {seed} {mode:?}: {s:?}");
                    sum[m][0] += s.accuracy;
                    sum[m][1] += s.boundary_f1;
                }
                n += 1.0;
            }
        }
    }
    let (d_acc, d_f1) = ((sum[1][0] - sum[0][0]) / n, (sum[1][1] - sum[0][1]) / n);
    eprintln!("phy − plain: accuracy {d_acc:+.3}, boundary F1 {d_f1:+.3}");
    assert!(d_acc >= 0.08 && d_f1 >= 0.03, "{d_acc} {d_f1}");
}

/// Mechanism: the differentiable TV term makes the latent maps smoother relative to their
/// spread than plain training does, on the same data and seed. Measured: mean TV per cell / map
/// std 1.297 (plain) vs 0.484 (phy, λ = 300, full-grid TV normalised by the mean absolute
/// deviation; 0.885 with the earlier std-normalised tile TV), ratio 0.37; the bound 0.8 leaves room for
/// cross-CPU rounding and fails if the TV term has no effect (ratio ≈ 1).
#[test]
fn phy_mode_lowers_relative_total_variation() {
    let (img, _) = stripes(128, 1000.0, 0);
    let rel_tv = |mode| {
        let mut c = domain_config(mode);
        c.window_px = 24;
        c.epochs = 15;
        let f = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        let mut total = 0.0;
        for m in &f.latent_mean {
            let m = m.mapv(f64::from);
            let n = m.len() as f64;
            let mean = m.sum() / n;
            let sd = (m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            let (gy, gx) = m.dim();
            let mut tv = 0.0;
            for i in 0..gy - 1 {
                for j in 0..gx - 1 {
                    let a = m[[i + 1, j]] - m[[i, j]];
                    let b = m[[i, j + 1]] - m[[i, j]];
                    tv += (a * a + b * b).sqrt();
                }
            }
            total += tv / (sd.max(1e-12) * ((gy - 1) * (gx - 1)) as f64);
        }
        total / f.latent_mean.len() as f64
    };
    let plain = rel_tv(VaeMode::Plain);
    let phy = rel_tv(VaeMode::phy(300.0));
    eprintln!("relative TV per cell: plain {plain:.3}, phy {phy:.3}");
    assert!(phy < 0.8 * plain, "plain {plain}, phy {phy}");
}

#[test]
fn full_grid_mode_is_deterministic_and_keeps_plain_batches() {
    let img = textured();
    for mode in [VaeMode::Plain, VaeMode::phy(1.0), VaeMode::faithful()] {
        let mut c = small(mode);
        c.full_grid = true;
        c.epochs = 4;
        c.parallelism = Parallelism::Sequential;
        let a = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        // Shuffled minibatches of tiles_per_batch·batch_side² = 16 windows, as plain mode.
        assert_eq!(a.steps, 4 * a.grid.len().div_ceil(16) as u64, "{mode:?}");
        c.parallelism = Parallelism::Threads(2);
        let b = fit(ImageView::new(img.view()), &c, &NoProgress).unwrap();
        assert_eq!(a.latent_mean, b.latent_mean, "{mode:?}");
        if !matches!(mode, VaeMode::Plain) {
            assert!(a.epoch_physics.iter().all(|&p| p > 0.0), "{mode:?}");
        }
    }
}

#[test]
fn phy_full_grid_penalises_the_whole_grid_tv() {
    // λ = 0 must reproduce plain training exactly (same minibatches and ε: the TV term is the
    // only change), while λ > 0 changes the weights.
    let img = textured();
    let run = |mode| {
        let mut c = small(mode);
        c.full_grid = true;
        c.epochs = 5;
        fit(ImageView::new(img.view()), &c, &NoProgress).unwrap()
    };
    let plain = run(VaeMode::Plain);
    assert_eq!(plain.latent_mean, run(VaeMode::phy(0.0)).latent_mean);
    assert_ne!(plain.latent_mean, run(VaeMode::phy(10.0)).latent_mean);
}

#[test]
fn kl_warmup_starts_without_the_kl_term() {
    // Epoch 0 of a warm-up run is exactly a β = 0 epoch.
    let img = textured();
    let mut warm = small(VaeMode::Plain);
    warm.kl_warmup_epochs = 3;
    let w = fit(ImageView::new(img.view()), &warm, &NoProgress).unwrap();
    let mut zero = small(VaeMode::Plain);
    zero.kl_weight = 0.0;
    zero.epochs = 1;
    let z = fit(ImageView::new(img.view()), &zero, &NoProgress).unwrap();
    assert_eq!(w.epoch_neg_elbo[0], z.epoch_neg_elbo[0]);
    let plain = fit(
        ImageView::new(img.view()),
        &small(VaeMode::Plain),
        &NoProgress,
    )
    .unwrap();
    assert_ne!(w.epoch_neg_elbo[0], plain.epoch_neg_elbo[0]);
}

#[test]
fn truth_at_centres_follows_the_cut_windows() {
    let img = textured();
    let mask = Array2::from_shape_fn(img.dim(), |(_, x)| u8::from(x >= 24));
    // Without alignment the cut centres are the nominal ones: both samplers agree.
    let f = fit(
        ImageView::new(img.view()),
        &small(VaeMode::Plain),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        f.sample_mask_at_centres(mask.view()).unwrap(),
        f.grid.sample_mask(mask.view()).unwrap()
    );
    // Moving every centre by +6 px in x moves the label edge by the corresponding cells.
    let mut moved = f.clone();
    for c in &mut moved.centres_px {
        c[1] += 6.0;
    }
    let t = moved.sample_mask_at_centres(mask.view()).unwrap();
    let row: Vec<u16> = t.row(0).to_vec();
    let expect: Vec<u16> = (0..f.grid.shape[1])
        .map(|j| u16::from(f.grid.centre_px(0, j)[1] + 6.0 + 0.5 >= 24.0))
        .collect();
    assert_eq!(row, expect);
    assert!(matches!(
        f.sample_mask_at_centres(Array2::<u8>::zeros((0, 0)).view()),
        Err(Error::ShapeMismatch { .. })
    ));
}
