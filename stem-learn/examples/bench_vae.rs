//! phyVAE comparison on simulated polarisation domains: plain VAE vs differentiable phyVAE vs
//! the Biswas et al. (2023) weighting, over seeds, layouts and doses.
//!
//! `cargo run --release -p stem-learn --example bench_vae -- [--seeds N] [--layouts stripes,voronoi]
//!  [--doses 100,1000] [--epochs E] [--lambda L] [--seed0 S] [--modes plain,phy,faithful]
//!  [--full-grid 0|1] [--warmup EPOCHS] [--eval snapped|nominal] [--out DIR]`
//!
//! `--full-grid 0` takes phy's TV term on random 4×4 tiles instead of the whole grid
//! (`VaeConfig::full_grid`, default 1). `--eval snapped` (default) labels each
//! window by the truth at the centre it was actually cut at, `nominal` at its grid centre.
//!
//! Prints one row per (layout, dose, seed, mode) and a mean per (layout, dose, mode). With
//! `--out`, writes each image, its truth and the latent maps as NPY.

use std::time::Instant;
use stem_core::{ImageView, NoProgress};
use stem_learn::vae::{VaeConfig, VaeMode, fit, score_segmentation};

#[path = "../src/vae/domain_images.rs"]
mod domain_images;
use domain_images::domain_image;

fn cpu_seconds() -> f64 {
    // utime + stime of this process (clock ticks, 100 Hz on Linux).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| d.to_string())
    };
    let seeds: u64 = get("--seeds", "3").parse().unwrap();
    let layouts = get("--layouts", "stripes,voronoi");
    let doses: Vec<f64> = get("--doses", "100,1000")
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let seed0: u64 = get("--seed0", "0").parse().unwrap();
    let only = get("--modes", "plain,phy,faithful");
    let epochs: usize = get("--epochs", "60").parse().unwrap();
    let lambda: f64 = get("--lambda", "1.0").parse().unwrap();
    let window: usize = get("--window", "40").parse().unwrap();
    let lr: f64 = get("--lr", "0.002").parse().unwrap();
    let sigma: f64 = get("--sigma", "0.3").parse().unwrap();
    let full_grid = get("--full-grid", "1") == "1";
    let warmup: usize = get("--warmup", "0").parse().unwrap();
    let eval_snapped = get("--eval", "snapped") == "snapped";
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let modes = [
        ("plain", VaeMode::Plain),
        ("phy", VaeMode::phy(lambda)),
        ("faithful", VaeMode::faithful()),
    ];
    println!("layout   dose  seed mode      acc    bF1    bP     bR     wall_s cpu_s");
    let mut summary: Vec<(String, f64, &str, Vec<[f64; 4]>)> = Vec::new();
    for layout in layouts.split(',') {
        for &dose in &doses {
            for seed in seed0..seed0 + seeds {
                let (img, domain, k) = domain_image(layout, dose, seed);
                for (name, mode) in modes
                    .iter()
                    .copied()
                    .filter(|m| only.split(',').any(|o| o == m.0))
                {
                    let cfg = VaeConfig {
                        window_px: window,
                        stride_px: 8,
                        align_px: 32,
                        optimizer: stem_learn::optim::AdamWConfig {
                            lr,
                            ..Default::default()
                        },
                        mode,
                        epochs,
                        classes: k,
                        recon_sigma: sigma,
                        seed,
                        full_grid,
                        kl_warmup_epochs: warmup,
                        ..VaeConfig::default()
                    };
                    let (t0, c0) = (Instant::now(), cpu_seconds());
                    let f = fit(ImageView::new(img.view()), &cfg, &NoProgress).unwrap();
                    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
                    let truth = if eval_snapped {
                        f.sample_mask_at_centres(domain.view()).unwrap()
                    } else {
                        f.grid.sample_mask(domain.view()).unwrap()
                    };
                    let s = score_segmentation(f.labels.view(), truth.view(), 1).unwrap();
                    if std::env::var("VAE_TRACE").is_ok() {
                        eprintln!(
                            "{name} elbo {:?}",
                            f.epoch_neg_elbo
                                .iter()
                                .step_by(10)
                                .map(|v| *v as f32)
                                .collect::<Vec<_>>()
                        );
                    }
                    println!(
                        "{layout:8} {dose:5} {seed:4} {name:9} {:.3}  {:.3}  {:.3}  {:.3}  {wall:6.2} {cpu:6.2}",
                        s.accuracy, s.boundary_f1, s.boundary_precision, s.boundary_recall
                    );
                    let key = summary
                        .iter()
                        .position(|e| e.0 == layout && e.1 == dose && e.2 == name);
                    let row = [s.accuracy, s.boundary_f1, wall, cpu];
                    match key {
                        Some(i) => summary[i].3.push(row),
                        None => summary.push((layout.to_string(), dose, name, vec![row])),
                    }
                    if let Some(dir) = &out {
                        let dir = std::path::Path::new(dir);
                        std::fs::create_dir_all(dir).unwrap();
                        let tag = format!("{layout}_{dose}_{seed}_{name}");
                        let pd = dir.join(&tag);
                        std::fs::create_dir_all(&pd).unwrap();
                        f.write_pngs(&pd).unwrap();
                        let t8 = truth.mapv(|v| (v * 60) as u8);
                        stem_core::io::png::save_gray_png(pd.join("truth.png"), &t8).unwrap();
                        stem_core::io::png::save_png(
                            pd.join("image.png"),
                            img.view(),
                            &Default::default(),
                        )
                        .unwrap();
                        for (j, m) in f.latent_mean.iter().enumerate() {
                            stem_core::io::npy::write_npy(dir.join(format!("{tag}_z{j}.npy")), m)
                                .unwrap();
                        }
                        stem_core::io::npy::write_npy(
                            dir.join(format!("{tag}_labels.npy")),
                            &f.labels.mapv(|v| v as u8),
                        )
                        .unwrap();
                        stem_core::io::npy::write_npy(
                            dir.join(format!("{tag}_truth.npy")),
                            &truth.mapv(|v| v as u8),
                        )
                        .unwrap();
                        stem_core::io::npy::write_npy(
                            dir.join(format!("{layout}_{dose}_{seed}_image.npy")),
                            &img,
                        )
                        .unwrap();
                    }
                }
            }
        }
    }
    println!();
    println!("| layout | dose (counts/px) | mode | accuracy | boundary F1 | wall s | CPU s | n |");
    println!("|---|---|---|---|---|---|---|---|");
    for (layout, dose, name, rows) in &summary {
        let n = rows.len() as f64;
        let m = |i: usize| rows.iter().map(|r| r[i]).sum::<f64>() / n;
        println!(
            "| {layout} | {dose} | {name} | {:.3} | {:.3} | {:.2} | {:.2} | {} |",
            m(0),
            m(1),
            m(2),
            m(3),
            rows.len()
        );
    }
}
