//! `stem denoise IN.npy OUT.npy --method ...`: denoise a 2-D count image.
//!
//! Which method for which goal: `--method bm3d` (periodic BM3D, the default search) gives the
//! best PSNR/SSIM on crystal images; `--method nlm --preset psnr` is the faster runner-up;
//! `--method nlm --preset precision` gives the most precise column positions (strong
//! filtering, lower PSNR). `--method bm3d --bm3d-search local` is classic BM3D for
//! non-periodic images.
//!
//! Input: a 2-D NPY array of electron counts (any numeric dtype, converted to f32). Output: NPY
//! (f32 counts), or an 8-bit PNG preview when OUT ends in `.png`.

use crate::CliError;
use crate::progress::Bar;
use clap::{Args, ValueEnum};
use ndarray::Ix2;
use std::path::PathBuf;
use stem_core::ImageView;
use stem_core::io::{npy, png};
use stem_denoise::{
    Bm3d, Bm3dConfig, Denoiser, GaussianDenoiser, MedianDenoiser, Nlm, NlmConfig, Preset,
};

/// Denoising method.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Method {
    /// Gaussian blur (`--sigma` px).
    Gaussian,
    /// Median filter (`--radius` px).
    Median,
    /// Periodic non-local means with the Poisson likelihood-ratio distance.
    Nlm,
    /// BM3D with Poisson likelihood-ratio block matching (best PSNR on crystal images).
    Bm3d,
}

/// Block-matching search set of BM3D.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Bm3dSearchArg {
    /// Lattice translates estimated from the image (falls back to local search, with a
    /// warning, when no lattice is found).
    Periodic,
    /// Classic local 25 × 25 px window (non-periodic images).
    Local,
}

/// Objective preset for NLM.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PresetArg {
    /// Best PSNR (SURE-chosen filter strength).
    Psnr,
    /// Best column precision (strong filtering).
    Precision,
}

/// Options of `stem denoise`.
#[derive(Args, Debug, Clone)]
pub struct DenoiseArgs {
    /// Input image (2-D, counts): NPY or any format `stem info` reads (DM3/DM4, MRC, TIFF, SER...).
    pub input: PathBuf,
    /// Output NPY (f32 counts) or PNG preview.
    pub output: PathBuf,
    /// Method.
    #[arg(long, value_enum, default_value = "nlm")]
    pub method: Method,
    /// NLM preset.
    #[arg(long, value_enum, default_value = "psnr")]
    pub preset: PresetArg,
    /// Gaussian σ (px).
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
    /// Median half-width (px).
    #[arg(long, default_value_t = 1)]
    pub radius: usize,
    /// BM3D search set.
    #[arg(long, value_enum, default_value = "periodic")]
    pub bm3d_search: Bm3dSearchArg,
}

/// Runs `stem denoise`.
pub fn run(args: &DenoiseArgs, quiet: bool) -> Result<(), CliError> {
    let data = crate::input::read_array(&args.input)?;
    let shape = data.shape().to_vec();
    let image = data.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::Argument(format!(
            "{}: expected a 2-D array, got shape {shape:?}",
            args.input.display()
        ))
    })?;
    let denoiser: Box<dyn Denoiser> = match args.method {
        Method::Gaussian => Box::new(GaussianDenoiser::new(args.sigma)?),
        Method::Median => Box::new(MedianDenoiser::new(args.radius)?),
        Method::Nlm => Box::new(Nlm::new(NlmConfig::preset(match args.preset {
            PresetArg::Psnr => Preset::Psnr,
            PresetArg::Precision => Preset::Precision,
        }))?),
        Method::Bm3d => Box::new(Bm3d::new(match args.bm3d_search {
            Bm3dSearchArg::Periodic => Bm3dConfig::default(),
            Bm3dSearchArg::Local => Bm3dConfig::local(12),
        })?),
    };
    let bar = Bar::new(quiet);
    let out = denoiser.denoise(ImageView::new(image.view()), &bar);
    bar.finish();
    let out = out?;
    let is_png = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        png::save_png(&args.output, out.data().view(), &png::PngOptions::default())?;
    } else {
        npy::write_npy(&args.output, out.data())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stem_core::synth::{LatticeImageConfig, UnitCell2D};

    fn args(dir: &std::path::Path, method: Method, out: &str) -> DenoiseArgs {
        DenoiseArgs {
            input: dir.join("in.npy"),
            output: dir.join(out),
            method,
            preset: PresetArg::Psnr,
            sigma: 1.0,
            radius: 1,
            bm3d_search: Bm3dSearchArg::Periodic,
        }
    }

    #[test]
    fn denoises_an_npy_lattice_and_rejects_3d_input() {
        let dir = tempfile::tempdir().unwrap();
        let clean = LatticeImageConfig {
            shape: [128, 128],
            ..LatticeImageConfig::new(UnitCell2D::square(3.0, 40))
        }
        .render()
        .unwrap()
        .image;
        let noisy = stem_core::noise::add_poisson_noise(
            clean.view(),
            stem_core::noise::Dose::CountsPerPixel(20.0),
            3,
        )
        .unwrap();
        npy::write_npy(dir.path().join("in.npy"), noisy.data()).unwrap();
        run(&args(dir.path(), Method::Nlm, "out.npy"), true).unwrap();
        let out = npy::read_npy_f32(dir.path().join("out.npy")).unwrap();
        assert_eq!(out.shape(), &[128, 128]);
        // Denoised counts keep the mean dose (20 counts/px) to within 2 %.
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / out.len() as f64;
        assert!((mean - 20.0).abs() < 0.4, "{mean}");
        run(&args(dir.path(), Method::Bm3d, "bm3d.npy"), true).unwrap();
        let out = npy::read_npy_f32(dir.path().join("bm3d.npy")).unwrap();
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / out.len() as f64;
        assert!((mean - 20.0).abs() < 0.4, "bm3d {mean}");
        run(&args(dir.path(), Method::Median, "out.png"), true).unwrap();
        assert!(dir.path().join("out.png").exists());

        npy::write_npy(
            dir.path().join("in.npy"),
            &ndarray::Array3::<f32>::zeros((2, 8, 8)),
        )
        .unwrap();
        assert!(matches!(
            run(&args(dir.path(), Method::Gaussian, "x.npy"), true),
            Err(CliError::Argument(_))
        ));
    }
}
