//! `stem tensor`: Tucker denoising of hypercubes and 4D-STEM symmetry maps.
//!
//! * `stem tensor denoise IN.npy OUT.npy --ranks auto|r1,r2,r3[,r4] [--nav-dims 2]
//!   [--no-poisson] [--full]`: HOOI denoising (Keenan–Kotula scaling, automatic ranks by
//!   projected parallel analysis); prints the ranks and writes the scree data next to OUT as
//!   `OUT.scree.json`. With `--stream [--chunk-frames N]` the input is read chunk by chunk
//!   from disk and the output written chunk by chunk (out-of-core HOOI, `stem_tensor::stream`).
//!   With `--method statsvd` the tensor is fitted by STAT-SVD (`stem_tensor::statsvd`: sparse
//!   loadings, MAD noise level, its own rank rule for `--ranks auto`) on the data as they are
//!   (Gaussian noise model, no Poisson scaling; in memory only).
//! * `stem tensor symmetry IN.npy OUT_DIR`: rotational (n = 2, 3, 4, 6) and mirror symmetry maps
//!   of a 4D-STEM cube `[scan_y, scan_x, k_y, k_x]`, written as `sym_n{n}.npy` and `mirror.npy`.

use crate::CliError;
use crate::progress::Bar;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use stem_core::Hypercube;
use stem_core::frame_source::InMemorySource;
use stem_core::io::npy;
use stem_tensor::denoise::{DenoiseConfig, Layout, Ranks, TensorDenoiser};
use stem_tensor::fourd::{SymmetryConfig, symmetry_maps};
use stem_tensor::statsvd::{StatSvd, StatSvdConfig};
use stem_tensor::stream::{NpyWriter, StreamConfig, StreamedDenoiser};

/// `stem tensor` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum TensorCommand {
    /// Tucker (HOOI) denoising of a hypercube stored as NPY.
    Denoise(DenoiseArgs),
    /// Rotational and mirror symmetry maps of a 4D-STEM cube stored as NPY.
    Symmetry(SymmetryArgs),
}

/// Options of `stem tensor`.
#[derive(Args, Debug, Clone)]
pub struct TensorArgs {
    /// The subcommand.
    #[command(subcommand)]
    pub command: TensorCommand,
}

/// Options of `stem tensor denoise`.
#[derive(Args, Debug, Clone)]
pub struct DenoiseArgs {
    /// Input hypercube (counts), e.g. `[scan_y, scan_x, k_y, k_x]`: NPY or any format `stem info` reads.
    pub input: PathBuf,
    /// Output NPY (f32, same shape).
    pub output: PathBuf,
    /// `auto` or comma-separated ranks, one per tensor mode.
    #[arg(long, default_value = "auto")]
    pub ranks: String,
    /// Number of leading navigation axes.
    #[arg(long, default_value_t = 2)]
    pub nav_dims: usize,
    /// Disable Keenan–Kotula Poisson scaling (for data that are not counts).
    #[arg(long)]
    pub no_poisson: bool,
    /// Keep every signal axis as its own mode instead of flattening the signal.
    #[arg(long)]
    pub full: bool,
    /// Out of core: read the input chunk by chunk from disk (memory-mapped when the format
    /// allows) and write the output chunk by chunk; memory stays far below the cube's size.
    #[arg(long)]
    pub stream: bool,
    /// Frames per chunk with `--stream` (rounded down to whole scan rows).
    #[arg(long, default_value_t = 1024)]
    pub chunk_frames: usize,
    /// `hooi` (default) or `statsvd` (sparse loadings, Gaussian noise; not with `--stream`).
    #[arg(long, default_value = "hooi")]
    pub method: String,
}

/// Options of `stem tensor symmetry`.
#[derive(Args, Debug, Clone)]
pub struct SymmetryArgs {
    /// Input 4D-STEM cube `[scan_y, scan_x, k_y, k_x]`: NPY or any format `stem info` reads (MIB, DM4...).
    pub input: PathBuf,
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// Mirror-axis angles in [0, 180°).
    #[arg(long, default_value_t = 36)]
    pub mirror_angles: usize,
}

fn parse_ranks(s: &str) -> Result<Ranks, CliError> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Ranks::Auto);
    }
    s.split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map(Ranks::Fixed)
        .map_err(|e| CliError::Argument(format!("--ranks {s:?}: {e}")))
}

/// Runs `stem tensor ...`.
pub fn run(args: &TensorArgs, quiet: bool) -> Result<(), CliError> {
    let bar = Bar::new(quiet);
    match &args.command {
        TensorCommand::Denoise(a) if a.method.eq_ignore_ascii_case("statsvd") => {
            run_statsvd(a, &bar)?
        }
        TensorCommand::Denoise(a) if !a.method.eq_ignore_ascii_case("hooi") => {
            return Err(CliError::Argument(format!(
                "--method {:?}: expected hooi or statsvd",
                a.method
            )));
        }
        TensorCommand::Denoise(a) if a.stream => run_streamed(a, &bar)?,
        TensorCommand::Denoise(a) => {
            let data = crate::input::read_array(&a.input)?;
            let cube = Hypercube::new(data, a.nav_dims)?;
            let config = DenoiseConfig {
                ranks: parse_ranks(&a.ranks)?,
                poisson_scaling: !a.no_poisson,
                layout: if a.full {
                    Layout::Full
                } else {
                    Layout::FlattenSignal
                },
                ..Default::default()
            };
            let result = TensorDenoiser::new(config)?.run(cube.view(), &bar)?;
            bar.finish();
            npy::write_npy(&a.output, &result.denoised)?;
            write_scree(
                &a.output,
                &result.scree,
                &result.tensor_shape,
                &result.ranks,
                result.sweeps,
            )?;
            println!(
                "tensor {:?}, ranks {:?}, {} HOOI sweeps -> {}",
                result.tensor_shape,
                result.ranks,
                result.sweeps,
                a.output.display()
            );
        }
        TensorCommand::Symmetry(a) => {
            let data = crate::input::read_array(&a.input)?;
            let cube = Hypercube::new(data, 2)?;
            let source = InMemorySource::new(cube.view());
            let config = SymmetryConfig {
                mirror_angles: a.mirror_angles,
                ..Default::default()
            };
            let maps = symmetry_maps(&source, &config, &bar)?;
            bar.finish();
            std::fs::create_dir_all(&a.out_dir).map_err(|source| CliError::Write {
                path: a.out_dir.clone(),
                source,
            })?;
            for (n, m) in &maps.rotational {
                npy::write_npy(
                    a.out_dir.join(format!("sym_n{n}.npy")),
                    &m.mapv(|v| v as f32),
                )?;
            }
            if let Some(m) = &maps.mirror {
                npy::write_npy(a.out_dir.join("mirror.npy"), &m.mapv(|v| v as f32))?;
            }
            println!("symmetry maps -> {}", a.out_dir.display());
        }
    }
    Ok(())
}

/// `stem tensor denoise --method statsvd`: STAT-SVD of the in-memory tensor (signal axes
/// flattened unless `--full`), output as f32 in the input's shape.
fn run_statsvd(a: &DenoiseArgs, bar: &Bar) -> Result<(), CliError> {
    if a.stream {
        return Err(CliError::Argument(
            "--method statsvd runs in memory; drop --stream".into(),
        ));
    }
    let data = crate::input::read_array(&a.input)?;
    let cube = Hypercube::new(data, a.nav_dims)?;
    let view = cube.view();
    let mut shape = view.nav_shape().to_vec();
    if a.full {
        shape.extend_from_slice(view.sig_shape());
    } else {
        shape.push(view.frame_len());
    }
    let values: Vec<f64> = view.data().iter().map(|&v| f64::from(v)).collect();
    let tensor = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values)
        .map_err(|e| CliError::Argument(format!("tensor shape {shape:?}: {e}")))?;
    let ranks = match parse_ranks(&a.ranks)? {
        Ranks::Auto => None,
        Ranks::Fixed(r) => Some(r),
    };
    let config = StatSvdConfig {
        ranks,
        ..Default::default()
    };
    let result = StatSvd::new(config)?.run(tensor.view(), bar)?;
    bar.finish();
    let estimate = result.tucker.reconstruct()?;
    let out: Vec<f32> = estimate.iter().map(|&v| v as f32).collect();
    let out = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(view.data().shape()), out)
        .map_err(|e| CliError::Argument(format!("output shape: {e}")))?;
    npy::write_npy(&a.output, &out)?;
    println!(
        "tensor {:?}, STAT-SVD sigma {:.4}, ranks {:?} (rule {:?}), active rows {:?}, {} iterations -> {}",
        shape,
        result.sigma,
        result.ranks(),
        result.rule_ranks,
        result.supports.iter().map(Vec::len).collect::<Vec<_>>(),
        result.tucker.sweeps,
        a.output.display()
    );
    Ok(())
}

/// Writes the scree data and ranks next to `output` as `OUTPUT.scree.json`.
fn write_scree(
    output: &std::path::Path,
    scree: &[stem_tensor::ranks::ScreeRound],
    tensor_shape: &[usize],
    ranks: &[usize],
    sweeps: usize,
) -> Result<(), CliError> {
    let scree: Vec<_> = scree
        .iter()
        .map(|r| {
            serde_json::json!({
                "ranks_in": r.ranks_in,
                "ranks_out": r.ranks_out,
                "modes": r.modes.iter().map(|m| serde_json::json!({
                    "mode": m.mode,
                    "threshold": m.threshold,
                    "singular_values": m.singular_values,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let summary = serde_json::json!({
        "tensor_shape": tensor_shape,
        "ranks": ranks,
        "sweeps": sweeps,
        "scree": scree,
    });
    let mut path = output.to_path_buf().into_os_string();
    path.push(".scree.json");
    let path = PathBuf::from(path);
    std::fs::write(&path, summary.to_string()).map_err(|source| CliError::Write { path, source })
}

/// `stem tensor denoise --stream`: the out-of-core denoiser from disk to an NPY file.
fn run_streamed(a: &DenoiseArgs, bar: &Bar) -> Result<(), CliError> {
    if a.full {
        return Err(CliError::Argument(
            "--stream flattens the signal; it cannot be combined with --full".into(),
        ));
    }
    let dataset = stem_core::io::open(&a.input)?;
    let signal = dataset.first()?;
    if signal.nav_dims != a.nav_dims {
        return Err(CliError::Argument(format!(
            "--nav-dims {} but {} has {} navigation axes (shape {:?})",
            a.nav_dims,
            a.input.display(),
            signal.nav_dims,
            signal.shape()
        )));
    }
    let source = signal.frame_source();
    let config = StreamConfig {
        ranks: parse_ranks(&a.ranks)?,
        poisson_scaling: !a.no_poisson,
        frames_per_chunk: a.chunk_frames,
        ..Default::default()
    };
    let mut writer = NpyWriter::create(&a.output, &signal.shape())?;
    let result = StreamedDenoiser::new(config)?.run(source.as_ref(), &mut writer, bar)?;
    writer.finish()?;
    bar.finish();
    write_scree(
        &a.output,
        &result.scree,
        &result.tensor_shape,
        &result.ranks,
        result.tucker.sweeps,
    )?;
    println!(
        "tensor {:?} streamed ({} frames per chunk, {} passes), ranks {:?}, {} HOOI sweeps -> {}",
        result.tensor_shape,
        result.frames_per_chunk,
        result.data_passes,
        result.ranks,
        result.tucker.sweeps,
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(input: PathBuf, output: PathBuf, stream: bool, full: bool) -> TensorArgs {
        TensorArgs {
            command: TensorCommand::Denoise(DenoiseArgs {
                input,
                output,
                ranks: "4,4,4".into(),
                nav_dims: 2,
                no_poisson: false,
                full,
                stream,
                chunk_frames: 32,
                method: "hooi".into(),
            }),
        }
    }

    /// `--stream` gives the in-memory result's quality (PSNR within 0.05 dB on the reference
    /// structure at 16×16 × 16×16) and rejects `--full`.
    #[test]
    fn streamed_denoise_matches_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let clean = stem_tensor::synth::clean_cube(16, 16, 1000.0).unwrap();
        let noisy = stem_tensor::synth::poisson_cube(&clean, 256, 9).unwrap();
        let input = dir.path().join("in.npy");
        npy::write_npy(&input, &noisy).unwrap();
        let (a, b) = (dir.path().join("mem.npy"), dir.path().join("str.npy"));
        run(&args(input.clone(), a.clone(), false, false), true).unwrap();
        run(&args(input.clone(), b.clone(), true, false), true).unwrap();
        let psnr = |p: &PathBuf| {
            let x = npy::read_npy_f32(p).unwrap();
            stem_tensor::denoise::psnr(clean.view(), x.view()).unwrap()
        };
        let (pm, ps) = (psnr(&a), psnr(&b));
        let pn = stem_tensor::denoise::psnr(clean.view(), noisy.view()).unwrap();
        assert!((pm - ps).abs() < 0.05, "in memory {pm}, streamed {ps}");
        assert!(ps > pn + 5.0, "streamed {ps}, noisy {pn}");
        assert!(std::fs::metadata(dir.path().join("str.npy.scree.json")).is_ok());
        let bad = run(&args(input, dir.path().join("x.npy"), true, true), true);
        assert!(matches!(bad, Err(CliError::Argument(_))));
    }

    /// `--method statsvd` on a 12×12 scan × 8×8 detector cube whose signal is a rank-1 spike on
    /// scan rows 2..6 and detector pixels 10..20 (sparse), plus unit Gaussian noise: the error
    /// drops, off-support output is exactly 0, a wrong method name is rejected.
    #[test]
    fn statsvd_method() {
        let dir = tempfile::tempdir().unwrap();
        let clean = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[12, 12, 8, 8]), |i| {
            let on = (2..6).contains(&i[0]) && (2..6).contains(&i[1]);
            let k = i[2] * 8 + i[3];
            if on && (10..20).contains(&k) {
                30.0f32
            } else {
                0.0
            }
        });
        // Seeded N(0, 1) noise (splitmix64 + Box–Muller; stem-cli has no rand dependency).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let noisy = clean.mapv(|v| {
            let (u1, u2) = (uniform().max(1e-300), uniform());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            v + z as f32
        });
        let input = dir.path().join("in.npy");
        npy::write_npy(&input, &noisy).unwrap();
        let out = dir.path().join("out.npy");
        let mut a = args(input.clone(), out.clone(), false, false);
        let TensorCommand::Denoise(d) = &mut a.command else {
            unreachable!()
        };
        d.method = "statsvd".into();
        d.ranks = "auto".into();
        d.no_poisson = true;
        run(&a, true).unwrap();
        let x = npy::read_npy_f32(&out).unwrap();
        assert_eq!(x.shape(), clean.shape());
        let err = |y: &ndarray::ArrayD<f32>| {
            y.iter()
                .zip(clean.iter())
                .map(|(p, q)| f64::from(p - q).powi(2))
                .sum::<f64>()
        };
        // Oracle rank-1 fit on the support has ~4+4+10 degrees of freedom against 9216 noisy
        // entries: the squared error must fall by far more than 10×.
        assert!(
            err(&x) < err(&noisy) / 10.0,
            "{} vs {}",
            err(&x),
            err(&noisy)
        );
        assert_eq!(x[[8, 8, 0, 0]], 0.0);
        let TensorCommand::Denoise(d) = &mut a.command else {
            unreachable!()
        };
        d.method = "pca".into();
        assert!(matches!(run(&a, true), Err(CliError::Argument(_))));
    }
}
