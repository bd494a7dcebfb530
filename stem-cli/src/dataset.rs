//! `stem dataset`: labelled datasets from recipes (stem_sim::dataset).
//!
//! `stem dataset generate RECIPE.json OUT_DIR` regenerates the recipe's samples bit for bit
//! and writes them as NPY files plus `manifest.json` (labels, drawn parameters and the SHA-256
//! of every file). Example recipes: `stem-sim/examples/recipes/`.

use crate::CliError;
use crate::progress::Bar;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use stem_core::Parallelism;
use stem_sim::dataset::{Dataset, Recipe};

/// Options of `stem dataset`.
#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DatasetCommand,
}

/// Subcommands of `stem dataset`.
#[derive(Subcommand, Debug, Clone)]
pub enum DatasetCommand {
    /// Generate a dataset from a JSON recipe into a folder (NPY files + manifest.json).
    Generate(GenerateArgs),
}

/// Options of `stem dataset generate`.
#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// The recipe (JSON).
    pub recipe: PathBuf,
    /// Output folder (created if missing).
    pub out: PathBuf,
    /// Generate only the first N samples (overrides the recipe's count).
    #[arg(long)]
    pub count: Option<usize>,
    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `stem dataset`.
pub fn run(args: &DatasetArgs, quiet: bool) -> Result<(), CliError> {
    match &args.command {
        DatasetCommand::Generate(g) => generate(g, quiet),
    }
}

fn generate(args: &GenerateArgs, quiet: bool) -> Result<(), CliError> {
    let mut recipe = Recipe::from_json_file(&args.recipe)?;
    if let Some(n) = args.count {
        if n == 0 {
            return Err(CliError::Argument("--count must be at least 1".into()));
        }
        recipe.count = n;
    }
    let parallelism = match args.threads {
        Some(0) => return Err(CliError::Argument("--threads must be at least 1".into())),
        Some(n) => Parallelism::Threads(n),
        None => Parallelism::Auto,
    };
    let t0 = Instant::now();
    let data = Dataset::new(recipe, parallelism)?;
    let bar = Bar::new(quiet);
    let manifest = data.write(&args.out, &bar)?;
    bar.finish();
    let files: usize = manifest
        .samples
        .iter()
        .chain(manifest.reference.iter())
        .map(|s| {
            1 + s.masks.len()
                + usize::from(s.displacement.is_some())
                + usize::from(s.stack.is_some())
                + s.cube
                    .as_ref()
                    .map_or(0, |c| 1 + usize::from(c.clean.is_some()))
        })
        .sum();
    let labels: usize = manifest.samples.iter().map(|s| s.positions_px.len()).sum();
    println!(
        "{}: {} samples ({} files, {} labelled columns) in {:.2} s -> {}",
        manifest.recipe.name,
        manifest.samples.len(),
        files,
        labels,
        t0.elapsed().as_secs_f64(),
        args.out.join("manifest.json").display()
    );
    Ok(())
}
