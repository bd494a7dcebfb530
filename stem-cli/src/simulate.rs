//! `stem simulate {cbed,pacbed,image,4d}`: multislice simulations of built-in crystals.
//!
//! Writes NPY (raw values, fractions of the incident beam) and PNG (log scale for diffraction).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ndarray::Axis;
use stem_core::Parallelism;
use stem_core::io::npy::write_npy;
use stem_core::io::png::{PngOptions, save_png};
use stem_sim::detector::{Detector, MaxAngle};
use stem_sim::multislice::{Multislice, MultisliceConfig};
use stem_sim::potential::{PotentialConfig, build_potential_with_progress};
use stem_sim::probe::{Probe, ProbeConfig, nyquist_scan_step_a};
use stem_sim::scan::{DetectorOutput, GridScan, scan};
use stem_sim::structure::builders::{ZoneAxis, by_name};

use crate::CliError;
use crate::progress::Bar;

/// What to simulate.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// One CBED pattern with the probe on the cell origin.
    Cbed,
    /// Position-averaged CBED over one unit cell (8×8 positions).
    Pacbed,
    /// HAADF/ADF/BF images over one unit cell at the Nyquist step.
    Image,
    /// 4D-STEM over one unit cell at the Nyquist step (valid angle range).
    #[value(name = "4d")]
    FourD,
}

/// Arguments of `stem simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// What to simulate.
    #[arg(value_enum)]
    mode: Mode,
    /// Crystal (srtio3, si, gaas, nio, graphene, mos2, ...).
    #[arg(long, default_value = "srtio3")]
    crystal: String,
    /// Zone axis: 001, 110 or 111.
    #[arg(long, default_value = "001")]
    zone: String,
    /// Thickness in unit cells along the beam.
    #[arg(long, default_value_t = 26)]
    cells: usize,
    /// Lateral repeats of the unit cell.
    #[arg(long, default_value_t = 4)]
    lateral: usize,
    /// Acceleration voltage in kV.
    #[arg(long, default_value_t = 200.0)]
    energy_kv: f64,
    /// Probe convergence semi-angle in mrad.
    #[arg(long, default_value_t = 20.0)]
    convergence_mrad: f64,
    /// Grid points per side.
    #[arg(long, default_value_t = 256)]
    gpts: usize,
    /// Output directory.
    #[arg(long, default_value = "stem-simulate-out")]
    out: PathBuf,
    /// Beam tilt along x in mrad (tilted Fresnel propagator; the pattern stays centred on the
    /// incident beam).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    tilt_x_mrad: f64,
    /// Beam tilt along y in mrad.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    tilt_y_mrad: f64,
}

/// Runs `stem simulate`.
pub fn run(args: &SimulateArgs, quiet: bool) -> Result<(), CliError> {
    let zone = match args.zone.as_str() {
        "001" => ZoneAxis::Z001,
        "110" => ZoneAxis::Z110,
        "111" => ZoneAxis::Z111,
        z => {
            return Err(CliError::Argument(format!(
                "zone must be 001, 110 or 111, got {z}"
            )));
        }
    };
    if args.cells == 0 || args.lateral == 0 {
        return Err(CliError::Argument(
            "--cells and --lateral must be >= 1".into(),
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| CliError::Write {
        path: args.out.clone(),
        source,
    })?;
    let bar = Bar::new(quiet);
    let unit = by_name(&args.crystal, zone)?;
    let cell = unit.cell_a();
    let block = unit.repeat([args.lateral, args.lateral, 1])?;
    let pcfg = PotentialConfig {
        gpts: [args.gpts, args.gpts],
        slice_thickness_a: cell[2] / (cell[2] / 2.0).ceil().max(1.0),
        ..Default::default()
    };
    let pot = build_potential_with_progress(&block, &pcfg, &bar)?.with_repeats(args.cells)?;
    let mcfg = MultisliceConfig {
        energy_ev: args.energy_kv * 1e3,
        tilt_yx_mrad: [args.tilt_y_mrad, args.tilt_x_mrad],
        ..Default::default()
    };
    let ms = Multislice::<f32>::new(&pot, &mcfg)?;
    let probe = Probe::new(
        ProbeConfig {
            energy_ev: mcfg.energy_ev,
            semiangle_cutoff_mrad: args.convergence_mrad,
            ..Default::default()
        },
        *ms.grid(),
    )?;
    let log_png = PngOptions {
        log_scale: true,
        ..Default::default()
    };
    let save =
        |name: &str, a: ndarray::ArrayView2<'_, f32>, opts: &PngOptions| -> Result<(), CliError> {
            write_npy(args.out.join(format!("{name}.npy")), &a)?;
            save_png(args.out.join(format!("{name}.png")), a, opts)?;
            Ok(())
        };
    let unit_scan = |step: f64| GridScan::with_step([0.0, 0.0], [cell[1], cell[0]], step);
    match args.mode {
        Mode::Cbed => {
            let c = ms.diffraction_patterns(&probe, [0.0, 0.0])?;
            save("cbed", c.index_axis(Axis(0), 0), &log_png)?;
        }
        Mode::Pacbed | Mode::Image | Mode::FourD => {
            let step = nyquist_scan_step_a(mcfg.energy_ev, args.convergence_mrad)?;
            let (s, dets) = match args.mode {
                Mode::Pacbed => (
                    GridScan::new([0.0, 0.0], [cell[1], cell[0]], [8, 8])?,
                    vec![Detector::Pacbed {
                        max_angle: MaxAngle::Valid,
                    }],
                ),
                Mode::Image => {
                    let max = ms.max_angle_mrad();
                    let mut d = vec![
                        Detector::annular((0.0, args.convergence_mrad)),
                        Detector::annular((args.convergence_mrad * 1.5, 70.0f64.min(max))),
                    ];
                    if max > 75.0 {
                        d.push(Detector::annular((70.0, 200.0f64.min(max))));
                    } else {
                        eprintln!(
                            "note: no HAADF image: the grid reaches only {max:.1} mrad (need > 75); use a larger --gpts"
                        );
                    }
                    (unit_scan(step)?, d)
                }
                _ => (
                    unit_scan(step)?,
                    vec![Detector::Pixelated {
                        max_angle: MaxAngle::Valid,
                    }],
                ),
            };
            let r = scan(&ms, &probe, &s, &dets, Parallelism::Auto, &bar)?;
            for (i, o) in r.outputs.iter().enumerate() {
                match o {
                    DetectorOutput::Pacbed(p) => save(
                        "pacbed",
                        p.index_axis(Axis(0), 0).mapv(|v| v as f32).view(),
                        &log_png,
                    )?,
                    DetectorOutput::Annular(a) => {
                        let name = ["bf", "adf", "haadf"].get(i).copied().unwrap_or("annular");
                        save(
                            name,
                            a.index_axis(Axis(0), 0).mapv(|v| v as f32).view(),
                            &PngOptions::default(),
                        )?
                    }
                    DetectorOutput::Pixelated(p) => {
                        write_npy(args.out.join("4d.npy"), &p.index_axis(Axis(0), 0))?;
                        let mean = p
                            .index_axis(Axis(0), 0)
                            .mean_axis(Axis(0))
                            .and_then(|m| m.mean_axis(Axis(0)));
                        if let Some(m) = mean {
                            save("4d_mean", m.view(), &log_png)?;
                        }
                    }
                    DetectorOutput::CenterOfMass(_) => {}
                }
            }
        }
    }
    bar.finish();
    if !quiet {
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}
