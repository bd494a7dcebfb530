//! `stem vae IMAGE OUT_DIR`: phyVAE domain segmentation of a 2-D image.
//!
//! Cuts the image into windows on a regular grid, trains a VAE ([`stem_learn::vae`]) in the
//! chosen mode, and writes into `OUT_DIR`: `latent_<j>.npy/.png` (latent-mean maps `[gy, gx]`),
//! `segmentation.npy/.png` (k-means labels), `boundary.npy/.png` (label changes) and
//! `vae.json` (grid, settings and per-epoch losses).

use crate::CliError;
use crate::progress::Bar;
use clap::{Args, ValueEnum};
use ndarray::Ix2;
use std::path::PathBuf;
use stem_core::ImageView;
use stem_core::io::npy::write_npy;
use stem_learn::vae::{VaeConfig, VaeMode, fit};

/// Training mode of `stem vae`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// −ELBO on shuffled minibatches.
    Plain,
    /// −ELBO + λ·TV(latent maps), differentiable, on grid tiles.
    Phy,
    /// Biswas et al. 2023: (w1 + L_phys)·(−ELBO), detached L_phys, on grid tiles.
    Faithful,
}

/// Options of `stem vae`.
#[derive(Args, Debug)]
pub struct VaeArgs {
    /// Input image (2-D): NPY or any format `stem info` reads.
    pub image: PathBuf,
    /// Output directory (created).
    pub out_dir: PathBuf,
    /// Window side (px).
    #[arg(long, default_value_t = 40)]
    pub window: usize,
    /// Grid stride (px).
    #[arg(long, default_value_t = 8)]
    pub stride: usize,
    /// Re-centre windows on the lattice within this square (px, about one lattice period);
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub align: usize,
    /// Latent dimension.
    #[arg(long, default_value_t = 2)]
    pub latent: usize,
    /// TV weight λ (phy mode).
    #[arg(long, default_value_t = 1000.0)]
    pub lambda: f64,
    /// Training mode.
    #[arg(long, value_enum, default_value_t = Mode::Phy)]
    pub mode: Mode,
    /// Number of segmentation classes.
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `stem vae`.
pub fn run(a: &VaeArgs, quiet: bool) -> Result<(), CliError> {
    let arr = crate::input::read_array(&a.image)?;
    let shape = arr.shape().to_vec();
    let image = arr.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::Argument(format!(
            "{}: expected a 2-D image, got shape {shape:?}",
            a.image.display()
        ))
    })?;
    let mode = match a.mode {
        Mode::Plain => VaeMode::Plain,
        Mode::Phy => VaeMode::phy(a.lambda),
        Mode::Faithful => VaeMode::faithful(),
    };
    let cfg = VaeConfig {
        window_px: a.window,
        stride_px: a.stride,
        align_px: a.align,
        latent_dim: a.latent,
        mode,
        classes: a.classes,
        epochs: a.epochs,
        seed: a.seed,
        optimizer: stem_learn::optim::AdamWConfig {
            lr: 2e-3,
            ..Default::default()
        },
        ..VaeConfig::default()
    };
    let bar = Bar::new(quiet);
    let result = fit(ImageView::new(image.view()), &cfg, &bar);
    bar.finish();
    let f = result?;
    let write_err = |source| CliError::Write {
        path: a.out_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&a.out_dir).map_err(write_err)?;
    for (j, m) in f.latent_mean.iter().enumerate() {
        write_npy(a.out_dir.join(format!("latent_{j}.npy")), m)?;
    }
    write_npy(
        a.out_dir.join("segmentation.npy"),
        &f.labels.mapv(|v| v as u8),
    )?;
    write_npy(a.out_dir.join("boundary.npy"), &f.boundary)?;
    f.write_pngs(&a.out_dir)?;
    let summary = serde_json::json!({
        "grid": f.grid,
        "config": cfg,
        "epoch_neg_elbo": f.epoch_neg_elbo,
        "epoch_physics": f.epoch_physics,
        "steps": f.steps,
    });
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| CliError::Argument(format!("cannot serialise the summary: {e}")))?;
    std::fs::write(a.out_dir.join("vae.json"), text).map_err(write_err)?;
    if !quiet {
        eprintln!(
            "grid {}x{} windows, {} classes; wrote {}",
            f.grid.shape[0],
            f.grid.shape[1],
            a.classes,
            a.out_dir.display()
        );
    }
    Ok(())
}
