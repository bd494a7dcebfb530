//! The `stem` command: a thin front end over the `stem` crates.
//!
//! Subcommands:
//! * `stem demo`: the end-to-end main job on built-in defaults (synthesise a lattice image with
//!   known columns, add Poisson noise, find and refine the columns, score them, write PNGs).
//! * `stem simulate {cbed,pacbed,image,4d}`: multislice simulation of a built-in crystal.
//! * `stem dataset generate RECIPE OUT`: labelled data from a reproducible recipe.
//! * `stem denoise IN OUT`: NLM and baseline denoisers for count images.
//! * `stem register SERIES OUT`: rigid + scan-line registration, averages, atom positions.
//! * `stem tensor {denoise,symmetry}`: Tucker denoising of hypercubes, 4D-STEM symmetry maps.
//! * `stem info FILE`: format, shape, calibrated axes and metadata of a microscope file.

mod dataset;
mod demo;
mod denoise;
mod info;
mod input;
mod learn;
mod progress;
mod register;
mod simulate;
mod tensor;
mod thickness;
mod vae;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Analysis of scanning transmission electron microscopy (STEM) data.
#[derive(Parser, Debug)]
#[command(name = "stem", version, about, long_about = None)]
struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the end-to-end demonstration on built-in defaults (no input needed).
    Demo(demo::DemoArgs),
    /// Labelled datasets from reproducible recipes (`stem dataset generate RECIPE OUT`).
    Dataset(dataset::DatasetArgs),
    /// Denoise a 2-D count image (NPY in; NPY or PNG out).
    Denoise(denoise::DenoiseArgs),
    /// Tensor (Tucker) denoising of hypercubes and 4D-STEM symmetry maps.
    Tensor(tensor::TensorArgs),
    /// Register an image series (rigid + scan-line), average it and tabulate atom positions.
    Register(register::RegisterArgs),
    /// Multislice simulation of a built-in crystal (cbed, pacbed, image, 4d) to NPY and PNG.
    Simulate(simulate::SimulateArgs),
    /// Describe a microscope file: format, shapes, calibrated axes, key metadata.
    Info(info::InfoArgs),
    /// Atom-column finding with a trained U-Net bundle or the classical baseline.
    Atoms(learn::AtomsArgs),
    /// Train models (`stem train atoms RECIPE --out MODEL.safetensors`).
    Train(learn::TrainArgs),
    /// phyVAE domain segmentation: latent maps, segmentation and boundary PNG + NPY.
    Vae(vae::VaeArgs),
    /// Specimen thickness and beam tilt from a PACBED pattern (stem-learn PACBED model).
    Thickness(thickness::ThicknessArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args, cli.quiet),
        Command::Dataset(args) => dataset::run(&args, cli.quiet),
        Command::Denoise(args) => denoise::run(&args, cli.quiet),
        Command::Tensor(args) => tensor::run(&args, cli.quiet),
        Command::Register(args) => register::run(&args, cli.quiet),
        Command::Simulate(args) => simulate::run(&args, cli.quiet),
        Command::Info(args) => info::run(&args),
        Command::Atoms(args) => learn::run_atoms(&args, cli.quiet),
        Command::Train(args) => learn::run_train(&args, cli.quiet),
        Command::Vae(args) => vae::run(&args, cli.quiet),
        Command::Thickness(args) => thickness::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Errors of the command-line front end.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An error from stem-core.
    #[error(transparent)]
    Core(#[from] stem_core::Error),
    /// An error from stem-sim.
    #[error(transparent)]
    Sim(#[from] stem_sim::Error),
    /// An error from stem-tensor.
    #[error(transparent)]
    Tensor(#[from] stem_tensor::Error),
    /// An error from stem-register.
    #[error(transparent)]
    Register(#[from] stem_register::Error),
    /// Writing an output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error from stem-denoise.
    #[error(transparent)]
    Denoise(#[from] stem_denoise::Error),
    /// An error from stem-learn.
    #[error(transparent)]
    Learn(#[from] stem_learn::Error),
    /// A bad command-line value.
    #[error("invalid argument: {0}")]
    Argument(String),
}

use std::error::Error as _;
