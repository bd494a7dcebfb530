//! `stem atoms find IMAGE` and `stem train atoms RECIPE`: the stem-learn atom finder.
//!
//! `stem train atoms RECIPE --out MODEL.safetensors` generates the recipe's samples with
//! stem-sim (deterministic), trains the U-Net on all but the last `--holdout` samples, scores
//! it on those (ID-recall, ID-precision, Δd) and writes a bundle whose model card records the
//! recipe, the settings, the data checksum and the scores. Same recipe and flags give a
//! byte-identical bundle on the same CPU type, on any thread count.
//!
//! `stem atoms find IMAGE [--model MODEL.safetensors | --classical]` prints the column
//! positions `y,x` in px (CSV) to stdout or `--out`; without either flag it uses the shipped
//! SrTiO3 atom finder ([`stem_learn::bundle::Bundle::shipped_atom_finder`]) and says so.

use crate::CliError;
use crate::progress::Bar;
use clap::{Args, Subcommand};
use ndarray::{Array2, Ix2};
use std::io::Write;
use std::path::PathBuf;
use stem_core::{ImageView, Parallelism};
use stem_learn::bundle::{Bundle, ModelCard};
use stem_learn::finder::{AtomFinder, ClassicalFinder, UnetFinder, score};
use stem_learn::optim::{AdamWConfig, LrSchedule};
use stem_learn::train::{SegmentationSet, TrainConfig, Trainer, disk_mask};
use stem_learn::unet::UNetConfig;
use stem_sim::dataset::{Dataset, Recipe};

/// `stem atoms ...`.
#[derive(Args, Debug)]
pub struct AtomsArgs {
    #[command(subcommand)]
    command: AtomsCommand,
}

#[derive(Subcommand, Debug)]
enum AtomsCommand {
    /// Find atom columns in a 2-D image; prints `y,x` (px) per column.
    Find(FindArgs),
}

/// Options of `stem atoms find`.
#[derive(Args, Debug)]
pub struct FindArgs {
    /// Input image (2-D): NPY or any format `stem info` reads.
    pub image: PathBuf,
    /// A stem-learn bundle (`stem train atoms`); without it and without `--classical` the
    /// shipped SrTiO3 atom finder is used.
    #[arg(long, conflicts_with = "classical")]
    pub model: Option<PathBuf>,
    /// Use the classical finder (local maxima + Gaussian fit) instead of a network.
    #[arg(long)]
    pub classical: bool,
    /// Classical: minimum distance between columns (px), about half the spacing.
    #[arg(long, default_value_t = 3)]
    pub min_distance: usize,
    /// U-Net: probability threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Write the CSV here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `stem train ...`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: TrainCommand,
}

#[derive(Subcommand, Debug)]
enum TrainCommand {
    /// Train the U-Net atom finder on a stem-sim recipe and write a bundle.
    Atoms(TrainAtomsArgs),
}

/// Options of `stem train atoms`.
#[derive(Args, Debug)]
pub struct TrainAtomsArgs {
    /// A stem-sim dataset recipe (JSON) with a lattice generator.
    pub recipe: PathBuf,
    /// Output bundle (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimisation steps.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    /// Crops per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Crop side (px), a multiple of 2^depth.
    #[arg(long, default_value_t = 64)]
    pub crop: usize,
    /// Base filters of the U-Net.
    #[arg(long, default_value_t = 8)]
    pub filters: usize,
    /// Poolings of the U-Net.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Seed of initialisation, data order and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Target disk radius (px) around each column when the recipe has no column mask.
    #[arg(long, default_value_t = 2.0)]
    pub mask_radius: f64,
    /// Samples at the end of the recipe held out for the scores in the model card.
    #[arg(long, default_value_t = 10)]
    pub holdout: usize,
    /// Only use the first N samples of the recipe (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Model name and version in the card.
    #[arg(long, default_value = "atom-finder")]
    pub name: String,
    /// Model version in the card.
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    /// Save a checkpoint here at the end (also when interrupted with Ctrl-C).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from this checkpoint (its settings win over the flags).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Threads (default: all). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
}

fn to_2d(data: ndarray::ArrayD<f32>, what: &std::path::Path) -> Result<Array2<f32>, CliError> {
    let shape = data.shape().to_vec();
    data.into_dimensionality::<Ix2>().map_err(|_| {
        CliError::Argument(format!(
            "{}: expected a 2-D array, got shape {shape:?}",
            what.display()
        ))
    })
}

/// Runs `stem atoms`.
pub fn run_atoms(args: &AtomsArgs, _quiet: bool) -> Result<(), CliError> {
    let AtomsCommand::Find(a) = &args.command;
    let image = to_2d(crate::input::read_array(&a.image)?, &a.image)?;
    let finder: Box<dyn AtomFinder> = match (&a.model, a.classical) {
        (Some(p), _) => {
            let b = Bundle::load(p)?;
            let mut f = UnetFinder::new(b.net);
            f.positions.threshold = a.threshold;
            Box::new(f)
        }
        (None, true) => Box::new(ClassicalFinder::new(a.min_distance)),
        (None, false) => {
            eprintln!(
                "using the shipped model {} (trained on SrTiO3 [001] images at 0.12-0.2 Å/px; \
                 for other crystals or pixel sizes give --model or --classical)",
                stem_learn::bundle::SHIPPED_ATOM_FINDER_NAME
            );
            let mut f = UnetFinder::new(Bundle::shipped_atom_finder()?.net);
            f.positions.threshold = a.threshold;
            Box::new(f)
        }
    };
    let pos = finder.find(ImageView::new(image.view()))?;
    let mut csv = String::from("y_px,x_px\n");
    for p in &pos {
        csv.push_str(&format!("{:.4},{:.4}\n", p[0], p[1]));
    }
    match &a.out {
        Some(o) => std::fs::write(o, csv).map_err(|source| CliError::Write {
            path: o.clone(),
            source,
        })?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(csv.as_bytes())
                .map_err(|source| CliError::Write {
                    path: "<stdout>".into(),
                    source,
                })?;
        }
    }
    eprintln!("{}: {} columns", finder.name(), pos.len());
    Ok(())
}

/// Runs `stem train`.
pub fn run_train(args: &TrainArgs, quiet: bool) -> Result<(), CliError> {
    let TrainCommand::Atoms(a) = &args.command;
    let par = a.threads.map_or(Parallelism::Auto, Parallelism::Threads);
    let recipe = Recipe::from_json_file(&a.recipe)?;
    let recipe_json =
        serde_json::to_value(&recipe).map_err(|e| CliError::Argument(e.to_string()))?;
    let data = Dataset::new(recipe, par)?;
    let n = if a.limit > 0 {
        a.limit.min(data.len())
    } else {
        data.len()
    };
    if a.holdout >= n {
        return Err(CliError::Argument(format!(
            "--holdout {} leaves no training samples of {n}",
            a.holdout
        )));
    }
    let (mut images, mut masks, mut held) = (Vec::new(), Vec::new(), Vec::new());
    let mut sampling_a = None;
    for i in 0..n {
        let s = data.sample(i)?;
        let img = s.image.data().clone();
        sampling_a = sampling_a.or_else(|| {
            s.image
                .axes()
                .iter()
                .all(|ax| ax.units == "Å")
                .then(|| s.image.pixel_size()[1])
        });
        if i >= n - a.holdout {
            held.push((img, s.labels.positions_px.clone()));
            continue;
        }
        let mask = match s.labels.mask("columns") {
            Some(m) => m.data.mapv(|v| if v > 0 { 1.0 } else { 0.0 }),
            None => disk_mask(
                [img.nrows(), img.ncols()],
                &s.labels.positions_px,
                a.mask_radius,
            ),
        };
        images.push(img);
        masks.push(mask);
    }
    let set = SegmentationSet::new(images, masks)?;
    let bar = Bar::new(quiet);
    let mut tr = match &a.resume {
        Some(p) => Trainer::load_checkpoint(p, par)?,
        None => {
            let unet = UNetConfig {
                base_filters: a.filters,
                depth: a.depth,
                ..Default::default()
            };
            let cfg = TrainConfig {
                steps: a.steps,
                batch_size: a.batch,
                crop_px: a.crop,
                optimizer: AdamWConfig {
                    lr: a.lr,
                    ..Default::default()
                },
                schedule: LrSchedule::Cosine {
                    warmup_steps: (a.steps / 20).max(1).min(a.steps),
                    total_steps: a.steps,
                    min_factor: 0.05,
                },
                seed: a.seed,
                parallelism: par,
                ..Default::default()
            };
            Trainer::new(unet, cfg)?
        }
    };
    let t0 = std::time::Instant::now();
    let res = tr.run(&set, &bar);
    bar.finish();
    if let Some(p) = &a.checkpoint {
        tr.save_checkpoint(p)?;
        eprintln!(
            "checkpoint after step {} written to {}",
            tr.steps_done(),
            p.display()
        );
    }
    let report = res?;
    let secs = t0.elapsed().as_secs_f64();
    let tail = report.losses.len().min(20);
    let final_loss = report.losses[report.losses.len() - tail..]
        .iter()
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / tail.max(1) as f64;
    eprintln!(
        "trained {} steps in {secs:.1} s; mean loss of the last {tail}: {final_loss:.4}",
        report.steps_done
    );
    let finder = UnetFinder::new(tr.net().clone());
    let mut card = ModelCard::new(
        &a.name,
        &a.version,
        "atom-finding",
        tr.net().config().clone(),
    );
    card.data_checksum = set.checksum();
    card.training = serde_json::json!({
        "recipe": recipe_json,
        "samples_used": n,
        "holdout": a.holdout,
        "train_config": serde_json::to_value(tr.config()).map_err(|e| CliError::Argument(e.to_string()))?,
        "final_loss": final_loss,
    });
    // Matching radius: 0.3 Å when the pixel size is known (the benchmark's Δd target), else 1.5 px.
    let radius_px = sampling_a.map_or(1.5, |s| (0.5 / s).max(1.0));
    for (name, f) in [
        ("unet", &finder as &dyn AtomFinder),
        ("classical", &ClassicalFinder::new(3)),
    ] {
        let s = score(f, &held, radius_px, 4.0)?;
        let d_a = s
            .mean_distance_px
            .map(|d| d * sampling_a.unwrap_or(f64::NAN));
        eprintln!(
            "{name}: ID-recall {:.3}, ID-precision {:.3}, mean Δd {} on {} held-out columns",
            s.recall,
            s.precision,
            d_a.map_or("n/a".into(), |d| format!("{d:.3} Å")),
            s.n_truth
        );
        if name == "unet" {
            card.metrics.insert("id_recall".into(), s.recall);
            card.metrics.insert("id_precision".into(), s.precision);
            if let Some(d) = d_a.filter(|d| d.is_finite()) {
                card.metrics.insert("delta_d_a".into(), d);
            }
            card.metrics.insert("match_radius_px".into(), radius_px);
        }
    }
    let mut bundle = Bundle {
        card,
        net: tr.net().clone(),
    };
    bundle.save(&a.out)?;
    eprintln!("bundle written to {}", a.out.display());
    Ok(())
}
