use super::*;
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
    let (b, t) = epoch_batches(&VaeMode::Plain, &grid, 4, &mut rng);
    assert_eq!(t, None);
    let mut all: Vec<u32> = b.concat();
    all.sort_unstable();
    assert_eq!(all, (0..grid.len() as u32).collect::<Vec<_>>());
    let (b, t) = epoch_batches(&VaeMode::phy(1.0), &grid, 4, &mut rng);
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
