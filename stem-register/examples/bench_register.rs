//! Benchmark of stem-register on the reference series of peer-benchmarks.md §1.6.
//!
//! `cargo run --release -p stem-register --example bench_register -- OUT_DIR`
//!
//! Generates the series (20 × 512², 10 counts/px, rigid ±12 px, row jitter, shear, stretch,
//! amorphous disc), registers it (rigid only, timed as the best of 3 runs; the full scan-line
//! pipeline, timed), scores against the truth and writes NPY files for `bench/register/peer.py`:
//! frames.npy, specimen.npy, truth_shifts.npy `[20, 2]` (relative to frame 0), true_fields.npy
//! `[20, 2, 512]` (row fields on the specimen grid), ours_rigid_shifts.npy, ours_rigid_mean.npy,
//! ours_nonrigid_mean.npy, oracle_nonrigid_mean.npy, ours_times.npy, and for the dense model
//! (from the rigid start, and after the scan-line model) ours_dense_{mean,median,times}.npy and
//! ours_scanline_dense_{mean,median,times}.npy.

#[path = "../../tests/src/series.rs"]
#[allow(dead_code, missing_docs)]
mod series;

use ndarray::{Array1, Array2, Array3, s};
use std::path::PathBuf;
use std::time::Instant;
use stem_core::NoProgress;
use stem_core::io::npy::write_npy;
use stem_core::metrics::psnr;
use stem_register::lattice_prior::{LatticePriorConfig, compose_fields, fit_lattice_prior};
use stem_register::nonrigid::NonRigidConfig;
use stem_register::rigid::{SeriesRigidConfig, align_series_rigid};
use stem_register::series::{NonRigidModel, SeriesConfig, SeriesRegistration, register_series};
use stem_register::warp::{AverageConfig, DisplacementField, average_series};

fn psnr_border(specimen: &Array2<f32>, img: &Array2<f32>) -> f64 {
    let b = 40;
    let (ny, nx) = specimen.dim();
    let r = specimen.slice(s![b..ny - b, b..nx - b]);
    let t = img.slice(s![b..ny - b, b..nx - b]);
    let peak = f64::from(r.iter().cloned().fold(f32::MIN, f32::max));
    psnr(r, t, peak).unwrap()
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc/self/stat (Linux), in clock ticks of 1/100 s
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "bench/register/out".into()),
    );
    std::fs::create_dir_all(&out).unwrap();
    let cfg = series::SeriesConfig::default();
    let g = series::generate_series(&cfg);
    let n = cfg.frames;
    let [ny, nx] = cfg.shape;
    eprintln!(
        "series: {n} × {ny}×{nx}, intrinsic non-rigid RMS {:.3} px (per component), {:.3} px (|u|,|v| combined)",
        g.intrinsic_nonrigid_rms(),
        g.intrinsic_nonrigid_rms() * 2f64.sqrt()
    );
    let truth = Array2::from_shape_fn((n, 2), |(k, c)| g.relative_shift(k)[c]);
    let true_fields = Array3::from_shape_fn((n, 2, ny), |(k, c, y)| {
        let (dy, dx) = g.true_row_field(k);
        if c == 0 { dy[y] } else { dx[y] }
    });

    // rigid: best of 3
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut rigid = None;
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = align_series_rigid(g.frames.view(), &SeriesRigidConfig::default(), &NoProgress)
            .unwrap();
        let (dt, dc) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        if dt < best {
            best = dt;
            best_cpu = dc;
        }
        rigid = Some(r);
    }
    let rigid = rigid.unwrap();
    let errs: Vec<f64> = (1..n)
        .map(|k| (rigid.shifts[k][0] - truth[[k, 0]]).hypot(rigid.shifts[k][1] - truth[[k, 1]]))
        .collect();
    let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
    let max = errs.iter().cloned().fold(0.0, f64::max);
    let gross = errs.iter().filter(|e| **e > 5.0).count();
    let rigid_fields: Vec<DisplacementField> = rigid
        .shifts
        .iter()
        .map(|&s| DisplacementField::constant([ny, nx], s))
        .collect();
    let mean_only = AverageConfig {
        median: false,
        ..Default::default()
    };
    let rigid_mean = average_series(g.frames.view(), &rigid_fields, &mean_only, &NoProgress)
        .unwrap()
        .mean;

    // non-rigid pipeline (rigid + scan-line + averages incl. median)
    let (t, c) = (Instant::now(), cpu_seconds());
    let reg = register_series(g.frames.view(), &SeriesConfig::default(), &NoProgress).unwrap();
    let (nr_time, nr_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    let eff = reg.effective_shifts();
    let eff_errs: Vec<f64> = (1..n)
        .map(|k| (eff[k][0] - truth[[k, 0]]).hypot(eff[k][1] - truth[[k, 1]]))
        .collect();
    let eff_rms = (eff_errs.iter().map(|e| e * e).sum::<f64>() / eff_errs.len() as f64).sqrt();
    let eff_max = eff_errs.iter().cloned().fold(0.0, f64::max);
    let est: Vec<(Vec<f64>, Vec<f64>)> = reg
        .row_shifts
        .iter()
        .map(|r| r.to_reference_rows(ny))
        .collect();
    let res = g.field_residual(&est, true, 20);
    let res_abs = g.field_residual(&est, false, 20);
    let corrected: Vec<DisplacementField> = g
        .gauge_corrected(&est, &res)
        .iter()
        .map(|(fy, fx)| DisplacementField::from_rows(fy, fx, nx).unwrap())
        .collect();
    let corr_mean = average_series(g.frames.view(), &corrected, &mean_only, &NoProgress)
        .unwrap()
        .mean;
    let oracle_fields: Vec<DisplacementField> = (0..n)
        .map(|k| {
            let (dy, dx) = g.true_row_field(k);
            DisplacementField::from_rows(&dy, &dx, nx).unwrap()
        })
        .collect();
    let oracle_mean = average_series(g.frames.view(), &oracle_fields, &mean_only, &NoProgress)
        .unwrap()
        .mean;

    // opt-in lattice prior on the scan-line average (removes the series' mean row distortion
    // left after self-registration; and any real strain)
    let (t, c) = (Instant::now(), cpu_seconds());
    let prior =
        fit_lattice_prior(&reg.average, &LatticePriorConfig::default(), &NoProgress).unwrap();
    let composed = compose_fields(&prior, &reg.fields).unwrap();
    let lattice_mean = average_series(g.frames.view(), &composed, &mean_only, &NoProgress)
        .unwrap()
        .mean;
    let (lp_time, lp_cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    write_npy(out.join("ours_scanline_lattice_mean.npy"), &lattice_mean).unwrap();
    let lattice_row = format!(
        "lattice prior on the scan-line average: {} columns, displacement from the ideal lattice {:.4} → {:.4} px RMS; {lp_time:.2} s wall, {lp_cpu:.2} s CPU; average PSNR with one global shift gauge (bicubic placement, Rust-side): scan-line {:.2} dB, + lattice prior {:.2} dB",
        prior.columns_used,
        prior.rms_before_px,
        prior.rms_after_px,
        placed_psnr(&g.specimen, &reg.average.mean),
        placed_psnr(&g.specimen, &lattice_mean)
    );

    // dense (match-series-style) model: from the rigid start, and after the scan-line model
    // (skipped with BENCH_REGISTER_SKIP_DENSE=1)
    let mut dense_rows = Vec::new();
    let dense_runs: Vec<(&str, &str, Option<stem_register::scanline::ScanLineConfig>)> =
        if std::env::var_os("BENCH_REGISTER_SKIP_DENSE").is_some() {
            Vec::new()
        } else {
            vec![
                ("rigid + dense (defaults)", "ours_dense", None),
                (
                    "rigid + scan-line + dense",
                    "ours_scanline_dense",
                    Some(Default::default()),
                ),
            ]
        };
    for (name, file, scanline_first) in dense_runs {
        let cfg = SeriesConfig {
            model: NonRigidModel::Dense(NonRigidConfig {
                scanline_first,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = register_series(g.frames.view(), &cfg, &NoProgress).unwrap();
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        let (rms_common, rms_abs, row_gauge) = dense_scores(&g, &r, &mean_only);
        write_npy(out.join(format!("{file}_mean.npy")), &r.average.mean).unwrap();
        write_npy(out.join(format!("{file}_median.npy")), &r.average.median).unwrap();
        write_npy(
            out.join(format!("{file}_times.npy")),
            &Array1::from(vec![wall, cpu]),
        )
        .unwrap();
        dense_rows.push(format!(
            "{name}: {wall:.2} s wall, {cpu:.2} s CPU; field residual RMS {rms_common:.4} px (common part removed), {rms_abs:.4} px (constant gauge only); average PSNR with the gauge from the truth {row_gauge:.2} dB"
        ));
    }

    write_npy(out.join("frames.npy"), &g.frames).unwrap();
    write_npy(out.join("specimen.npy"), &g.specimen).unwrap();
    write_npy(out.join("truth_shifts.npy"), &truth).unwrap();
    write_npy(out.join("true_fields.npy"), &true_fields).unwrap();
    write_npy(
        out.join("ours_rigid_shifts.npy"),
        &Array2::from_shape_fn((n, 2), |(k, c)| rigid.shifts[k][c]),
    )
    .unwrap();
    write_npy(out.join("ours_rigid_mean.npy"), &rigid_mean).unwrap();
    write_npy(out.join("ours_nonrigid_mean.npy"), &reg.average.mean).unwrap();
    write_npy(out.join("ours_nonrigid_median.npy"), &reg.average.median).unwrap();
    write_npy(out.join("oracle_nonrigid_mean.npy"), &oracle_mean).unwrap();
    write_npy(
        out.join("ours_times.npy"),
        &Array1::from(vec![best, best_cpu, nr_time, nr_cpu]),
    )
    .unwrap();

    println!("stem-register (Rust), {} rayon threads", rayon_threads());
    println!(
        "rigid: shift error RMS {rms:.4} px, max {max:.4} px, gross {gross}; {best:.3} s wall, {best_cpu:.3} s CPU (best of 3)"
    );
    println!(
        "scan-line pipeline: {nr_time:.2} s wall, {nr_cpu:.2} s CPU; field residual RMS {:.4} px (common part removed), {:.4} px (constant gauge only)",
        res.rms_px, res_abs.rms_px
    );
    println!(
        "effective (row-mean) shifts of the scan-line model: error RMS {eff_rms:.4} px, max {eff_max:.4} px"
    );
    println!(
        "average PSNR (row gauge from the truth): ours {:.2} dB, true fields {:.2} dB",
        psnr_border(&g.specimen, &corr_mean),
        psnr_border(&g.specimen, &oracle_mean)
    );
    println!("{lattice_row}");
    for r in &dense_rows {
        println!("{r}");
    }
}

/// PSNR (40-px border) of `avg` placed on the specimen by one global cross-correlation shift
/// (σ = 2 px smoothing, upsampling 100), as peer.py's `placed_psnr` (which shifts in Fourier
/// space; here bicubic).
fn placed_psnr(specimen: &Array2<f32>, avg: &Array2<f32>) -> f64 {
    use stem_core::ImageView;
    use stem_register::rigid::{PhaseCorrelation, PhaseCorrelationConfig};
    let shape = [specimen.nrows(), specimen.ncols()];
    let pc = PhaseCorrelation::new(
        PhaseCorrelationConfig {
            upsample: 100,
            ..Default::default()
        },
        shape,
    )
    .unwrap();
    let s = pc
        .run(ImageView::from(specimen), ImageView::from(avg))
        .unwrap();
    let placed = stem_register::warp::warp(
        ImageView::from(avg),
        &DisplacementField::constant(shape, s.shift),
        stem_register::warp::Interpolation::Bicubic,
    )
    .unwrap();
    psnr_border(specimen, &placed.image)
}

/// Dense-field scores against the truth: residual RMS with the common part removed, with a
/// constant gauge only, and the PSNR of the average made with the gauge-corrected fields.
fn dense_scores(
    g: &series::GeneratedSeries,
    r: &SeriesRegistration,
    mean_only: &AverageConfig,
) -> (f64, f64, f64) {
    let est: Vec<[Array2<f64>; 2]> = r
        .fields
        .iter()
        .map(|f| [f.dy.mapv(f64::from), f.dx.mapv(f64::from)])
        .collect();
    let res = g.dense_field_residual(&est, true, 20);
    let abs = g.dense_field_residual(&est, false, 20).rms_px;
    let corrected: Vec<DisplacementField> = g
        .gauge_corrected_dense(&est, &res)
        .iter()
        .map(|f| DisplacementField {
            dy: f[0].mapv(|v| v as f32),
            dx: f[1].mapv(|v| v as f32),
        })
        .collect();
    let mean = average_series(g.frames.view(), &corrected, mean_only, &NoProgress)
        .unwrap()
        .mean;
    (res.rms_px, abs, psnr_border(&g.specimen, &mean))
}

fn rayon_threads() -> usize {
    stem_core::Parallelism::Auto.threads()
}
