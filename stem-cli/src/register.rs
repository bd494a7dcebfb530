//! `stem register SERIES.npy OUT_DIR`: rigid + non-rigid (scan-line by default, or the dense
//! match-series-style model) registration of an image series, the averages, the displacement
//! fields and an atom-position table.

use crate::CliError;
use crate::progress::Bar;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use stem_core::io::npy;
use stem_register::atoms::{AtomConfig, SeriesAtomPositions, atom_positions_jackknife};
use stem_register::lattice_prior::{LatticePriorConfig, compose_fields, fit_lattice_prior};
use stem_register::nonrigid::NonRigidConfig;
use stem_register::scanline::ScanLineConfig;
use stem_register::series::{NonRigidModel, SeriesConfig, register_series};
use stem_register::warp::{Interpolation, average_series};

/// Arguments of `stem register`.
#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    /// Input series: a 3-D array `[frame, y, x]` in counts, in any format `stem info` reads (NPY, DM3/DM4, MRC, TIFF, SER...).
    pub series: PathBuf,
    /// Output directory (created): mean.npy, median.npy, counts.npy, shifts.csv,
    /// fields.npy `[frame, 2, y, x]` (dy, dx in px), columns.csv, bonds.csv.
    ///
    /// columns.csv: `y_px,x_px` (column position on the average), `sigma_jk_y_px,sigma_jk_x_px`
    /// (delete-one jackknife σ over the frames: consistent with the observed scatter, relative
    /// to the column ensemble), `sigma_model_y_px,sigma_model_x_px` (the Poisson-model σ of the
    /// fit, which understates the scatter of an average ~2–3×; for comparison only),
    /// `amplitude,lattice_i,lattice_j`. bonds.csv: `sigma_jk_px` is the jackknife σ of the
    /// bond length.
    pub out: PathBuf,
    /// Rigid registration only (the same as `--model rigid`).
    #[arg(long)]
    pub rigid_only: bool,
    /// The non-rigid model after the rigid pre-alignment.
    #[arg(long, value_enum, default_value_t = Model::Scanline)]
    pub model: Model,
    /// λ of the dense model (`--model nonrigid` / `scanline-nonrigid`); default: the
    /// library's (300, bending prior).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Nearest-neighbour warping (keeps counts integral, e.g. EELS/EDS maps).
    #[arg(long)]
    pub nearest: bool,
    /// Gaussian pre-smoothing σ (px) of the rigid cross-correlation.
    #[arg(long, default_value_t = 2.0)]
    pub smoothing: f64,
    /// Largest rigid shift searched (px), e.g. below half a lattice constant for a perfect
    /// lattice; default: all.
    #[arg(long)]
    pub max_shift: Option<f64>,
    /// Skip the atom-position table.
    #[arg(long)]
    pub no_atoms: bool,
    /// Crystalline specimens only, opt-in: remove the series' mean scan distortion that
    /// self-registration leaves in the average, by pulling the average's columns onto the
    /// fitted ideal lattice (row-wise, smooth along the slow axis; `stem_register::lattice_prior`).
    /// It removes REAL strain, defects and interface displacements too: do not use it before
    /// measuring strain or bond lengths. Also writes lattice_prior.csv (row, dy_px, dx_px).
    #[arg(long)]
    pub lattice_prior: bool,
}

/// The non-rigid model of `stem register`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Rigid shifts only.
    Rigid,
    /// One shift per scan row, smooth along the slow axis (default; cheap, row-wise
    /// distortions).
    Scanline,
    /// A dense 2-D displacement field per frame (match-series style).
    Nonrigid,
    /// The scan-line model first, then the dense field from its result.
    ScanlineNonrigid,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn write_text(path: &Path, text: &str) -> Result<(), CliError> {
    let mut f = std::fs::File::create(path).map_err(write_err(path))?;
    f.write_all(text.as_bytes()).map_err(write_err(path))
}

/// Runs `stem register`.
pub fn run(args: &RegisterArgs, quiet: bool) -> Result<(), CliError> {
    let t0 = Instant::now();
    let data = crate::input::read_array(&args.series)?;
    let frames = data.into_dimensionality::<ndarray::Ix3>().map_err(|e| {
        CliError::Argument(format!("series must be a 3-D array [frame, y, x]: {e}"))
    })?;
    let mut config = SeriesConfig::default();
    config.rigid.correlation.smoothing_sigma_px = args.smoothing;
    config.rigid.correlation.max_shift_px = args.max_shift;
    let dense = |scanline_first| {
        let mut nr = NonRigidConfig {
            scanline_first,
            ..Default::default()
        };
        if let Some(l) = args.lambda {
            nr.lambda = l;
        }
        NonRigidModel::Dense(nr)
    };
    config.model = match (args.rigid_only, args.model) {
        (true, _) | (_, Model::Rigid) => NonRigidModel::None,
        (_, Model::Scanline) => NonRigidModel::default(),
        (_, Model::Nonrigid) => dense(None),
        (_, Model::ScanlineNonrigid) => dense(Some(ScanLineConfig::default())),
    };
    if args.nearest {
        config.average.interpolation = Interpolation::Nearest;
    }
    let bar = Bar::new(quiet);
    let mut reg = register_series(frames.view(), &config, &bar)?;
    let prior = if args.lattice_prior {
        let p = fit_lattice_prior(&reg.average, &LatticePriorConfig::default(), &bar)?;
        // one resampling of the frames with the composed fields
        reg.fields = compose_fields(&p, &reg.fields)?;
        reg.average = average_series(frames.view(), &reg.fields, &config.average, &bar)?;
        Some(p)
    } else {
        None
    };
    let atoms = if args.no_atoms {
        None
    } else {
        // jackknife σ over the frames (the Poisson-model σ of a fit to the average understates
        // the observed scatter: tests/tests/register_atoms_sigma.rs)
        Some(atom_positions_jackknife(
            frames.view(),
            &reg.fields,
            config.average.interpolation,
            &AtomConfig::default(),
            &bar,
        )?)
    };
    bar.finish();
    std::fs::create_dir_all(&args.out).map_err(write_err(&args.out))?;
    npy::write_npy(args.out.join("mean.npy"), &reg.average.mean)?;
    npy::write_npy(args.out.join("median.npy"), &reg.average.median)?;
    npy::write_npy(
        args.out.join("counts.npy"),
        &reg.average.counts.mapv(|c| c as f32),
    )?;
    let [ny, nx] = reg.fields[0].shape();
    let mut fields = ndarray::Array4::<f32>::zeros((reg.fields.len(), 2, ny, nx));
    for (k, f) in reg.fields.iter().enumerate() {
        fields
            .index_axis_mut(ndarray::Axis(0), k)
            .assign(&f.to_array3());
    }
    npy::write_npy(args.out.join("fields.npy"), &fields)?;
    let mut text = String::from("frame,dy_px,dx_px,peak\n");
    for (k, (s, p)) in reg.rigid.shifts.iter().zip(&reg.rigid.peaks).enumerate() {
        text.push_str(&format!("{k},{:.4},{:.4},{:.4}\n", s[0], s[1], p));
    }
    write_text(&args.out.join("shifts.csv"), &text)?;
    if let Some(p) = &prior {
        let mut text = String::from("row,dy_px,dx_px\n");
        for (y, (dy, dx)) in p.row_dy_px.iter().zip(&p.row_dx_px).enumerate() {
            text.push_str(&format!("{y},{dy:.4},{dx:.4}\n"));
        }
        write_text(&args.out.join("lattice_prior.csv"), &text)?;
    }
    if let Some(jk) = &atoms {
        write_text(&args.out.join("columns.csv"), &columns_csv(jk))?;
        let a = &jk.positions;
        let mut text = String::from("from,to,direction,length_px,sigma_jk_px,change_px\n");
        for b in &a.bonds {
            text.push_str(&format!(
                "{},{},{},{:.4},{:.4},{:.4}\n",
                b.from, b.to, b.direction, b.length_px, b.sigma_px, b.change_px
            ));
        }
        write_text(&args.out.join("bonds.csv"), &text)?;
    }
    println!(
        "registered {} frames of {ny}×{nx} in {:.2} s → {}",
        reg.fields.len(),
        t0.elapsed().as_secs_f64(),
        args.out.display()
    );
    if let Some(p) = &prior {
        println!(
            "lattice prior: {} columns, displacement from the ideal lattice {:.4} → {:.4} px RMS \
             (removed from the average and the fields: real strain is removed too)",
            p.columns_used, p.rms_before_px, p.rms_after_px
        );
    }
    if let Some(jk) = &atoms {
        let a = &jk.positions;
        println!(
            "{} columns (σ: delete-one jackknife over {} frames, relative to the column \
             ensemble; its common shift σ = [{:.4}, {:.4}] px)",
            a.columns.len(),
            jk.frames,
            jk.common_shift_sigma_px[0],
            jk.common_shift_sigma_px[1]
        );
        if let Some(l) = &a.lattice {
            println!(
                "lattice |a1| = {:.4} ± {:.4} px, |a2| = {:.4} ± {:.4} px ({} columns indexed, RMS residual {:.4} px)",
                l.a1_len_px(),
                l.sigma_a1[0].hypot(l.sigma_a1[1]),
                l.a2_len_px(),
                l.sigma_a2[0].hypot(l.sigma_a2[1]),
                l.indexed,
                l.rms_residual_px
            );
        }
        println!("direction  bonds  mean length (px)      std (px)  RMS jackknife σ (px)");
        for s in &a.summary {
            println!(
                "a{}        {:5}  {:.4} ± {:.4}       {:.4}    {:.4}",
                s.direction, s.count, s.mean_px, s.sem_px, s.std_px, s.rms_sigma_px
            );
        }
    }
    Ok(())
}

/// The columns table: position, jackknife σ, Poisson-model σ, amplitude, lattice indices.
fn columns_csv(jk: &SeriesAtomPositions) -> String {
    let mut text = String::from(
        "y_px,x_px,sigma_jk_y_px,sigma_jk_x_px,sigma_model_y_px,sigma_model_x_px,amplitude,\
         lattice_i,lattice_j\n",
    );
    for (c, m) in jk.positions.columns.iter().zip(&jk.model_sigma) {
        let (i, j) = c.lattice_index.map_or((String::new(), String::new()), |v| {
            (v[0].to_string(), v[1].to_string())
        });
        text.push_str(&format!(
            "{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{i},{j}\n",
            c.position[0], c.position[1], c.sigma[0], c.sigma[1], m[0], m[1], c.amplitude
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_a_small_series_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = |y: f64, x: f64| ((y * 0.4).sin() * (x * 0.35).cos() * 10.0 + 20.0) as f32;
        let frames = ndarray::Array3::from_shape_fn((3, 40, 40), |(k, i, j)| {
            f(i as f64 + k as f64 * 0.5, j as f64)
        });
        let input = dir.path().join("s.npy");
        npy::write_npy(&input, &frames).unwrap();
        let out = dir.path().join("out");
        let args = RegisterArgs {
            series: input,
            out: out.clone(),
            rigid_only: false,
            model: Model::Scanline,
            lambda: None,
            nearest: false,
            smoothing: 2.0,
            max_shift: None,
            no_atoms: false,
            lattice_prior: false,
        };
        run(&args, true).unwrap();
        for name in [
            "mean.npy",
            "median.npy",
            "counts.npy",
            "fields.npy",
            "shifts.csv",
            "columns.csv",
            "bonds.csv",
        ] {
            assert!(out.join(name).exists(), "{name}");
        }
        let shifts = std::fs::read_to_string(out.join("shifts.csv")).unwrap();
        assert_eq!(shifts.lines().count(), 4);
        let cols = std::fs::read_to_string(out.join("columns.csv")).unwrap();
        assert!(cols.starts_with(
            "y_px,x_px,sigma_jk_y_px,sigma_jk_x_px,sigma_model_y_px,sigma_model_x_px,"
        ));
        // the dense model writes the same outputs; fields [frame, 2, y, x]
        let dense_out = dir.path().join("dense");
        let dense_args = RegisterArgs {
            out: dense_out.clone(),
            model: Model::Nonrigid,
            lambda: Some(100.0),
            no_atoms: true,
            ..args.clone()
        };
        run(&dense_args, true).unwrap();
        let fields = npy::read_npy_f32(dense_out.join("fields.npy")).unwrap();
        assert_eq!(fields.shape(), &[3, 2, 40, 40]);
        // frame 2 shows the pattern 1 px further down: its field is ≈ +1 px in y
        let dy2 = fields[[2, 0, 20, 20]] - fields[[0, 0, 20, 20]];
        assert!((dy2 - 1.0).abs() < 0.1, "{dy2}");
        // a 2-D array is rejected with an argument error
        let bad = dir.path().join("b.npy");
        npy::write_npy(&bad, &ndarray::Array2::<f32>::zeros((4, 4))).unwrap();
        let args = RegisterArgs {
            series: bad,
            ..args
        };
        assert!(matches!(run(&args, true), Err(CliError::Argument(_))));
    }
}

#[cfg(test)]
mod csv_tests {
    use super::*;
    use stem_core::NoProgress;
    use stem_register::warp::DisplacementField;

    /// `frames` of a 10-px lattice (σ 1.5 px, 100 counts peak) with `noise` Poisson-like
    /// deterministic perturbation per frame.
    fn lattice_frames(n: usize, noise: f32) -> ndarray::Array3<f32> {
        ndarray::Array3::from_shape_fn((n, 48, 48), |(k, i, j)| {
            let (dy, dx) = ((i as f64 - 2.0) % 10.0 - 5.0, (j as f64 - 3.0) % 10.0 - 5.0);
            let h = ((k * 7919 + i * 104_729 + j * 1_299_709) % 1000) as f32 / 1000.0 - 0.5;
            (5.0 + 100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32 + noise * h
        })
    }

    fn table(frames: &ndarray::Array3<f32>) -> Vec<Vec<f64>> {
        let n = frames.dim().0;
        let fields = vec![DisplacementField::constant([48, 48], [0.0, 0.0]); n];
        let jk = atom_positions_jackknife(
            frames.view(),
            &fields,
            Interpolation::Bicubic,
            &AtomConfig::default(),
            &NoProgress,
        )
        .unwrap();
        let text = columns_csv(&jk);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "y_px,x_px,sigma_jk_y_px,sigma_jk_x_px,sigma_model_y_px,sigma_model_x_px,amplitude,\
             lattice_i,lattice_j"
        );
        lines
            .map(|l| l.split(',').take(7).map(|v| v.parse().unwrap()).collect())
            .collect()
    }

    #[test]
    fn columns_csv_reports_jackknife_and_model_sigma() {
        // identical frames: no scatter over frames, so the jackknife σ is 0 while the pixel
        // noise model still reports its (Poisson) σ > 0: the columns are not swapped
        let rows = table(&lattice_frames(5, 0.0));
        assert!(!rows.is_empty());
        for r in &rows {
            assert!(r[2] < 1e-3 && r[3] < 1e-3, "jackknife σ {r:?}");
            assert!(r[4] > 1e-3 && r[5] > 1e-3, "model σ {r:?}");
        }
        // frames that differ: the jackknife σ becomes positive
        let rows = table(&lattice_frames(5, 20.0));
        assert!(rows.iter().any(|r| r[2] > 1e-3 && r[3] > 1e-3));
    }
}

#[cfg(test)]
mod lattice_prior_tests {
    use super::*;

    #[test]
    fn lattice_prior_flag_writes_the_row_field_and_flattens_a_row_step() {
        // 3 identical frames of a 12-px lattice whose rows ≥ 48 are shifted by 0.6 px in x
        // (a mean scan distortion no self-registration can see)
        let dir = tempfile::tempdir().unwrap();
        let frames = ndarray::Array3::from_shape_fn((3, 96, 96), |(_, i, j)| {
            let x = j as f64 + if i >= 48 { 0.6 } else { 0.0 };
            let (dy, dx) = ((i as f64 + 6.0) % 12.0 - 6.0, (x + 6.0) % 12.0 - 6.0);
            (5.0 + 100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32
        });
        let input = dir.path().join("s.npy");
        npy::write_npy(&input, &frames).unwrap();
        let out = dir.path().join("out");
        let args = RegisterArgs {
            series: input,
            out: out.clone(),
            rigid_only: true,
            model: Model::Rigid,
            lambda: None,
            nearest: false,
            smoothing: 2.0,
            max_shift: None,
            no_atoms: true,
            lattice_prior: true,
        };
        run(&args, true).unwrap();
        let text = std::fs::read_to_string(out.join("lattice_prior.csv")).unwrap();
        assert_eq!(text.lines().count(), 97);
        // the columns of the written average sit on a lattice: their displacement from the
        // fitted ideal lattice drops (the step minus the absorbed shear is ≈ 0.15 px RMS)
        let rms = |img: ndarray::Array2<f32>| {
            let avg = stem_register::warp::Average {
                median: img.clone(),
                counts: ndarray::Array2::from_elem(img.raw_dim(), 1),
                mean: img,
            };
            fit_lattice_prior(&avg, &LatticePriorConfig::default(), &stem_core::NoProgress)
                .unwrap()
                .rms_before_px
        };
        let before = rms(frames.index_axis(ndarray::Axis(0), 0).to_owned());
        let mean = npy::read_npy_f32(out.join("mean.npy")).unwrap();
        let after = rms(mean.into_dimensionality::<ndarray::Ix2>().unwrap());
        // bicubic resampling and the σ = 4-row smoothing of the step leave a few 0.01 px
        assert!(before > 0.05 && after < 0.4 * before, "{before} → {after}");
    }
}
