//! The `stem` command: a thin front end over the `stem` crates.
//!
//! Subcommands:
//! * `stem demo`: the end-to-end main job on built-in defaults (synthesise a lattice image with
//!   known columns, add Poisson noise, find and refine the columns, score them, write PNGs).

mod demo;
mod progress;
mod simulate;

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
    /// Multislice simulation of a built-in crystal (cbed, pacbed, image, 4d) to NPY and PNG.
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args, cli.quiet),
        Command::Simulate(args) => simulate::run(&args, cli.quiet),
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
    /// Writing an output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad command-line value.
    #[error("invalid argument: {0}")]
    Argument(String),
}

use std::error::Error as _;
