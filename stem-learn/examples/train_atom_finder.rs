//! Trains the U-Net atom finder on the samples of SEVERAL stem-sim recipes (e.g. one per
//! lattice) and writes a bundle — `stem train atoms` for a mix of recipes, with the same
//! network, optimiser, schedule and scoring as the CLI.
//!
//! From each recipe the first `--per-recipe` samples are used, the last `--holdout` of them
//! held out; the training samples are interleaved recipe by recipe (sample 0 of each recipe,
//! then sample 1, ...). Held-out scores per recipe and pooled (optimal one-to-one matching
//! within 0.5 Å at each sample's own pixel size, true columns within 4 px of the edge not
//! counted) go to stderr and into the model card. Same arguments give a byte-identical bundle
//! on the same CPU type, on any thread count.
//!
//! Run:
//! `cargo run --release -p stem-learn --example train_atom_finder -- --out FILE.safetensors
//!  [--steps 600] [--per-recipe 40] [--holdout 5] [--seed 1] [--threads N]
//!  [--name atom-finder-mixed] [--version 0.2.0] RECIPE.json...`

use std::time::Instant;
use stem_core::Parallelism;
use stem_learn::bundle::{Bundle, ModelCard};
use stem_learn::finder::{AtomFinder, ClassicalFinder, UnetFinder, score};
use stem_learn::optim::{AdamWConfig, LrSchedule};
use stem_learn::train::{SegmentationSet, TrainConfig, Trainer};
use stem_learn::unet::UNetConfig;
use stem_sim::dataset::{Dataset, Recipe};
use stem_sim::degrade::Sample;

const MATCH_A: f64 = 0.5;
const BORDER_PX: f64 = 4.0;

/// Pooled (matched, truth, predicted, Σ distance Å) of `finder` on `samples`.
fn pooled(
    finder: &dyn AtomFinder,
    samples: &[Sample],
) -> Result<[f64; 4], Box<dyn std::error::Error>> {
    let mut acc = [0.0; 4];
    for s in samples {
        let [dy, dx] = s
            .sampling_a()
            .ok_or("recipe images must be calibrated in Å")?;
        let px_a = 0.5 * (dy + dx);
        let case = vec![(s.image.data().clone(), s.labels.positions_px.clone())];
        let r = score(finder, &case, MATCH_A / px_a, BORDER_PX)?;
        acc[0] += r.n_matched as f64;
        acc[1] += r.n_truth as f64;
        acc[2] += r.n_predicted as f64;
        acc[3] += r.mean_distance_px.unwrap_or(0.0) * r.n_matched as f64 * px_a;
    }
    Ok(acc)
}

/// (recall, precision, Δd Å).
fn metrics(a: [f64; 4]) -> (f64, f64, f64) {
    (a[0] / a[1], a[0] / a[2], a[3] / a[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut out, mut steps, mut per, mut holdout, mut seed, mut threads) =
        (None, 600u64, 40usize, 5usize, 1u64, None);
    let (mut name, mut version) = ("atom-finder-mixed".to_string(), "0.2.0".to_string());
    let mut recipes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(val()?),
            "--steps" => steps = val()?.parse()?,
            "--per-recipe" => per = val()?.parse()?,
            "--holdout" => holdout = val()?.parse()?,
            "--seed" => seed = val()?.parse()?,
            "--threads" => threads = Some(val()?.parse()?),
            "--name" => name = val()?,
            "--version" => version = val()?,
            _ => recipes.push(a),
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    if recipes.is_empty() || holdout >= per {
        return Err("give recipes, and --holdout < --per-recipe".into());
    }
    let par = threads.map_or(Parallelism::Auto, Parallelism::Threads);
    let t0 = Instant::now();
    let mut train: Vec<Vec<Sample>> = Vec::new();
    let mut held: Vec<(String, Vec<Sample>)> = Vec::new();
    let mut recipe_json = Vec::new();
    for path in &recipes {
        let r = Recipe::from_json_file(path)?;
        recipe_json.push(serde_json::to_value(&r)?);
        let name = r.name.clone();
        let data = Dataset::new(r, par)?;
        let n = per.min(data.len());
        if holdout >= n {
            return Err(format!("{path}: only {n} samples").into());
        }
        let mut s: Vec<Sample> = (0..n).map(|i| data.sample(i)).collect::<Result<_, _>>()?;
        let h = s.split_off(n - holdout);
        train.push(s);
        held.push((name, h));
    }
    let (mut images, mut masks) = (Vec::new(), Vec::new());
    let longest = train.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for t in &train {
            if let Some(s) = t.get(i) {
                let m = s
                    .labels
                    .mask("columns")
                    .ok_or("recipes need mask_radius_a (a \"columns\" mask)")?;
                images.push(s.image.data().clone());
                masks.push(m.data.mapv(|v| if v > 0 { 1.0 } else { 0.0 }));
            }
        }
    }
    let set = SegmentationSet::new(images, masks)?;
    eprintln!(
        "{} training samples from {} recipes, generated in {:.1} s",
        set.len(),
        recipes.len(),
        t0.elapsed().as_secs_f64()
    );
    let unet = UNetConfig {
        base_filters: 8,
        depth: 3,
        ..Default::default()
    };
    let cfg = TrainConfig {
        steps,
        batch_size: 8,
        crop_px: 64,
        optimizer: AdamWConfig {
            lr: 2e-3,
            ..Default::default()
        },
        schedule: LrSchedule::Cosine {
            warmup_steps: (steps / 20).max(1).min(steps),
            total_steps: steps,
            min_factor: 0.05,
        },
        seed,
        parallelism: par,
        ..Default::default()
    };
    let mut tr = Trainer::new(unet, cfg)?;
    let t1 = Instant::now();
    let report = tr.run(&set, &stem_core::NoProgress)?;
    let tail = report.losses.len().min(20);
    let final_loss = report.losses[report.losses.len() - tail..]
        .iter()
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / tail.max(1) as f64;
    eprintln!(
        "trained {} steps in {:.1} s; mean loss of the last {tail}: {final_loss:.4}",
        report.steps_done,
        t1.elapsed().as_secs_f64()
    );
    let finder = UnetFinder::new(tr.net().clone());
    let classical = ClassicalFinder::new(3);
    let mut card = ModelCard::new(&name, &version, "atom-finding", tr.net().config().clone());
    card.data_checksum = set.checksum();
    let mut all = [0.0; 4];
    let mut per_recipe = serde_json::Map::new();
    for (rname, h) in &held {
        let u = pooled(&finder, h)?;
        let c = pooled(&classical, h)?;
        for k in 0..4 {
            all[k] += u[k];
        }
        let (r, p, d) = metrics(u);
        let (cr, cp, cd) = metrics(c);
        eprintln!(
            "{rname}: unet ID-recall {r:.3}, ID-precision {p:.3}, Δd {d:.3} Å; classical {cr:.3}, {cp:.3}, {cd:.3} Å ({} columns)",
            u[1]
        );
        per_recipe.insert(
            rname.clone(),
            serde_json::json!({"id_recall": r, "id_precision": p, "delta_d_a": d, "columns": u[1]}),
        );
    }
    let (r, p, d) = metrics(all);
    eprintln!("all held-out: ID-recall {r:.3}, ID-precision {p:.3}, mean Δd {d:.3} Å");
    card.metrics.insert("id_recall".into(), r);
    card.metrics.insert("id_precision".into(), p);
    card.metrics.insert("delta_d_a".into(), d);
    card.metrics.insert("match_radius_a".into(), MATCH_A);
    card.training = serde_json::json!({
        "recipes": recipe_json,
        "samples_per_recipe": per,
        "holdout_per_recipe": holdout,
        "train_config": serde_json::to_value(tr.config())?,
        "final_loss": final_loss,
        "held_out_per_recipe": per_recipe,
        "command": "cargo run --release -p stem-learn --example train_atom_finder",
    });
    let mut bundle = Bundle {
        card,
        net: tr.net().clone(),
    };
    bundle.save(std::path::Path::new(&out))?;
    eprintln!("bundle written to {out}");
    Ok(())
}
