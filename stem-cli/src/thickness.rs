//! `stem thickness PACBED`: specimen thickness and beam tilt from a PACBED pattern with the
//! stem-learn PACBED model ([`stem_learn::pacbed`]).
//!
//! The input is a 2-D pattern `[k_y, k_x]`, or a stack / 4-D cube whose leading (scan) axes are
//! summed into the position-averaged pattern. NPY files are read with
//! [`crate::input::read_array`] and need `--mrad-per-px`; other formats are opened with the same
//! reader ([`stem_core::io::open`]) keeping the calibration of the last two axes when their unit
//! is `mrad` or `rad` (`--mrad-per-px` overrides it). The zero angle must be at pixel
//! `[h/2, w/2]` unless `--center-of-mass` is given. Prints thickness ± ensemble spread, tilt
//! and the out-of-distribution flag with each of its tests (or JSON with `--json`). Uses the shipped SrTiO3 \[001\]
//! model unless `--model FILE` is given.

use crate::CliError;
use clap::Args;
use ndarray::{Array2, ArrayD, Axis as NdAxis, Ix2};
use std::path::{Path, PathBuf};
use stem_core::axis::Axis;
use stem_learn::pacbed::{Centering, PacbedBundle, PacbedPrediction, SHIPPED_PACBED_NAME};

/// Options of `stem thickness`.
#[derive(Args, Debug)]
pub struct ThicknessArgs {
    /// PACBED pattern (2-D) or a 3-D/4-D stack or cube to sum over its leading axes: NPY or any
    /// format `stem info` reads.
    pub pattern: PathBuf,
    /// Angular pixel in mrad (both axes); required when the file has no mrad calibration.
    #[arg(long)]
    pub mrad_per_px: Option<f64>,
    /// A PACBED bundle; default: the shipped SrTiO3 (zone 001) model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Take the zero angle at the pattern's centre of mass instead of pixel [h/2, w/2].
    #[arg(long)]
    pub center_of_mass: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The pattern and its calibration in mrad/px from the file (`None` if uncalibrated).
fn read_pattern(path: &Path) -> Result<(ArrayD<f32>, Option<[f64; 2]>), CliError> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        return Ok((crate::input::read_array(path)?, None));
    }
    let (data, axes, _) = stem_core::io::open(path)?
        .into_first_hypercube()?
        .into_parts();
    let mrad = |a: &Axis| match a.units.trim() {
        "mrad" => Some(a.scale),
        "rad" => Some(a.scale * 1e3),
        "urad" | "µrad" => Some(a.scale * 1e-3),
        _ => None,
    };
    let n = axes.len();
    let cal = if n >= 2 {
        match (mrad(&axes[n - 2]), mrad(&axes[n - 1])) {
            (Some(y), Some(x)) => Some([y, x]),
            _ => None,
        }
    } else {
        None
    };
    Ok((data, cal))
}

/// Sums every axis but the last two.
fn to_pattern(data: ArrayD<f32>) -> Result<Array2<f32>, CliError> {
    if data.ndim() < 2 {
        return Err(CliError::Argument(format!(
            "a PACBED pattern needs at least 2 axes, the file has shape {:?}",
            data.shape()
        )));
    }
    let mut d = data;
    while d.ndim() > 2 {
        d = d.sum_axis(NdAxis(0));
    }
    d.into_dimensionality::<Ix2>()
        .map_err(|e| CliError::Argument(e.to_string()))
}

/// The prediction, the model's name and the calibration used.
fn predict(args: &ThicknessArgs) -> Result<(PacbedPrediction, String, [f64; 2]), CliError> {
    let (data, file_cal) = read_pattern(&args.pattern)?;
    let pattern = to_pattern(data)?;
    let cal = match (args.mrad_per_px, file_cal) {
        (Some(v), _) => [v, v],
        (None, Some(c)) => c,
        (None, None) => {
            return Err(CliError::Argument(format!(
                "{} has no angular calibration in mrad; pass --mrad-per-px",
                args.pattern.display()
            )));
        }
    };
    let (mut bundle, name) = match &args.model {
        Some(p) => (PacbedBundle::load(p)?, p.display().to_string()),
        None => (
            PacbedBundle::shipped()?,
            format!("{SHIPPED_PACBED_NAME} (shipped)"),
        ),
    };
    if args.center_of_mass {
        bundle.model.set_centering(Centering::CentreOfMass);
    }
    let p = bundle.model.predict(pattern.view(), cal)?;
    Ok((p, name, cal))
}

/// Runs `stem thickness`.
pub fn run(args: &ThicknessArgs) -> Result<(), CliError> {
    let (p, name, cal) = predict(args)?;
    if args.json {
        let v = serde_json::json!({
            "model": name,
            "mrad_per_px": cal,
            "prediction": p,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| CliError::Argument(e.to_string()))?
        );
    } else {
        println!("model: {name}");
        println!(
            "thickness: {:.2} ± {:.2} nm",
            p.thickness_nm, p.thickness_spread_nm
        );
        println!(
            "tilt: y {:.2} ± {:.2} mrad, x {:.2} ± {:.2} mrad",
            p.tilt_mrad[0], p.tilt_spread_mrad[0], p.tilt_mrad[1], p.tilt_spread_mrad[1]
        );
        println!(
            "out of distribution: {} (feature distance {:.2}, threshold {:.2}; input residual {:.4}, threshold {:.4}; input score distance {:.2}, threshold {:.2}; normalised ensemble spread {:.2}, threshold {:.2})",
            if p.out_of_distribution {
                "YES - do not trust these values"
            } else {
                "no"
            },
            p.ood_distance,
            p.ood_threshold,
            p.input_residual,
            p.input_residual_threshold,
            p.input_score_distance,
            p.input_score_threshold,
            p.spread_ratio,
            p.spread_threshold
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_leading_axes() {
        let d = ArrayD::from_shape_fn(vec![2, 3, 4, 5], |i| (i[0] + i[1]) as f32 + 1.0);
        let p = to_pattern(d).unwrap();
        assert_eq!(p.dim(), (4, 5));
        // Σ over 2×3 scan positions of (sy + sx + 1) = 6 + 3 + 6 = 15.
        assert_eq!(p[[0, 0]], 15.0);
        assert!(to_pattern(ArrayD::zeros(vec![3])).is_err());
    }

    #[test]
    fn calibration_rules_and_a_4d_cube() {
        let dir = tempfile::tempdir().unwrap();
        // A 2×2 scan of a 20 mrad disc at 1 mrad/px.
        let cube = ArrayD::from_shape_fn(vec![2, 2, 64, 64], |i| {
            let (dy, dx) = (i[2] as f64 - 32.0, i[3] as f64 - 32.0);
            if dy * dy + dx * dx < 400.0 {
                1.0f32
            } else {
                0.01
            }
        });
        let path = dir.path().join("cube.npy");
        stem_core::io::npy::write_npy(&path, &cube).unwrap();
        let mut args = ThicknessArgs {
            pattern: path,
            mrad_per_px: None,
            model: None,
            center_of_mass: false,
            json: false,
        };
        // NPY has no calibration.
        assert!(matches!(predict(&args), Err(CliError::Argument(_))));
        args.mrad_per_px = Some(-1.0);
        assert!(predict(&args).is_err());
        args.mrad_per_px = Some(1.0);
        let (p, name, cal) = predict(&args).unwrap();
        assert_eq!(cal, [1.0, 1.0]);
        assert!(name.contains("shipped"));
        assert!(p.thickness_nm.is_finite() && p.ood_threshold > 0.0);
        args.model = Some(dir.path().join("missing.safetensors"));
        assert!(predict(&args).is_err());
    }
}
