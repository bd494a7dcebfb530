//! Held-out quality grid of the atom finders (issue #8, "Quality report").
//!
//! Both finders — the shipped U-Net bundle (`Bundle::shipped_atom_finder`, trained on SrTiO3
//! \[001\] at 0.12–0.2 Å/px) and the classical baseline (`ClassicalFinder`: local maxima +
//! round Gaussian fit) — run on freshly generated, seeded images of stem-sim's `lattice`
//! generator (fast incoherent model: Gaussian columns σ = 0.45 Å, amplitude `Σ Z^1.7`, as the
//! training recipe) with exact column labels, over the grid
//!
//! * lattice: SrTiO3 \[001\] (in training); Si \[110\], GaAs \[110\], graphene, MoS2, WS2
//!   (not in training);
//! * pixel size: 0.10, 0.15, 0.20, 0.30 Å/px (training range 0.12–0.2, resampled ×0.9–1.2);
//! * dose: 20, 100, 1000 mean counts/px (Poisson);
//! * scan distortion: none, or moderate (row jitter σ 0.5 px smoothed over 1 row, sine jitter
//!   0.5 px over 64 rows, drift 3 px in y and −3 px in x over the frame); the labels move
//!   with the distortion.
//!
//! Each cell holds `--images` (default 4) images of 128 × 128 px at random lattice
//! rotations (0–90°) and origins; the seed of a cell is `SEED + cell index`, disjoint from the
//! training recipe's seed 20261121.
//!
//! Metrics per cell, pooled over its images (`stem_learn::finder::score`, i.e.
//! `stem_core::points::evaluate`): optimal one-to-one matching (maximum number of pairs,
//! then minimum total distance) of found and true columns within **0.5 Å**; true columns
//! closer than max(4 px, 1 Å) to the edge are not counted, nor unmatched finds there.
//! ID-recall = matched / true, ID-precision = matched / found, Δd = mean distance of the
//! matched pairs (Å). "ID" here is detection of every column regardless of species (both
//! finders are single-class). A cell passes ("✓") when recall > 0.90, precision > 0.95 and
//! Δd < 0.3 Å all hold.
//!
//! The classical finder's minimum peak distance is half the lattice's smallest projected
//! column distance (the user's "about half the spacing"), at least 1 px.
//!
//! Run: `cargo run --release -p stem-learn --example quality_grid -- [--images N] [--out FILE]
//! [--model BUNDLE]` (prints the markdown tables; `--out` also writes them to FILE; `--model`
//! grades another bundle instead of the shipped one, "in training" then follows the cell
//! presets of the recipes in its model card).

use ndarray::Array2;
use std::fmt::Write as _;
use std::time::Instant;
use stem_core::Parallelism;
use stem_learn::bundle::Bundle;
use stem_learn::finder::{AtomFinder, ClassicalFinder, FinderScore, UnetFinder, score};
use stem_sim::dataset::{Dataset, Recipe};

/// Base seed of the grid (cell k uses SEED + k).
const SEED: u64 = 8_000_000;
/// Image side (px).
const SIDE: usize = 128;
/// Matching radius (Å).
const MATCH_A: f64 = 0.5;

/// A lattice of the grid: preset name, label, in training, smallest projected column
/// distance (Å).
struct Lattice {
    preset: &'static str,
    label: &'static str,
    nn_a: f64,
}

const LATTICES: [Lattice; 6] = [
    Lattice {
        preset: "srtio3001",
        label: "SrTiO3 [001]",
        nn_a: 3.905 / 2.0,
    },
    Lattice {
        preset: "si110",
        label: "Si [110]",
        nn_a: 5.431 / 4.0,
    },
    Lattice {
        preset: "gaas110",
        label: "GaAs [110]",
        nn_a: 5.653 / 4.0,
    },
    Lattice {
        preset: "graphene",
        label: "graphene",
        nn_a: 2.46 / 1.732_050_807_568_877_2,
    },
    Lattice {
        preset: "mos2",
        label: "MoS2",
        nn_a: 3.16 / 1.732_050_807_568_877_2,
    },
    Lattice {
        preset: "ws2",
        label: "WS2",
        nn_a: 3.153 / 1.732_050_807_568_877_2,
    },
];
const PIXELS_A: [f64; 4] = [0.10, 0.15, 0.20, 0.30];
const DOSES: [f64; 3] = [20.0, 100.0, 1000.0];
const DISTORTED: [bool; 2] = [false, true];

/// One cell's recipe.
fn recipe(lat: &Lattice, pixel_a: f64, dose: f64, distorted: bool, seed: u64, n: usize) -> Recipe {
    let scan = if distorted {
        r#"{"kind": "scan", "jitter_x_px": 0.5, "jitter_smoothing_rows": 1.0,
            "sine_amplitude_px": 0.5, "sine_period_rows": 64,
            "drift_y_px": 3.0, "drift_x_px": -3.0},"#
    } else {
        ""
    };
    let text = format!(
        r#"{{"name": "quality-grid", "seed": {seed}, "count": {n},
            "generator": {{"kind": "lattice", "cell": {{"preset": "{}"}},
                "shape": [{SIDE}, {SIDE}], "sampling_a": {pixel_a}, "rotation_deg": [0, 90],
                "profile": {{"kind": "gaussian", "sigma_a": 0.45}}, "z_exponent": 1.7,
                "background": 0.05}},
            "degradations": [{scan}
                {{"kind": "poisson", "dose": {{"counts_per_px": {dose}}}}}]}}"#,
        lat.preset
    );
    // The text is built from constants above; a parse failure is a bug of this example.
    serde_json::from_str(&text).expect("grid recipe")
}

/// The cell presets of the lattice recipes in a model card's `training` (`"recipe"` of
/// `stem train atoms`, `"recipes"` of the `train_atom_finder` example).
fn training_presets(training: &serde_json::Value) -> Vec<String> {
    let mut recipes: Vec<&serde_json::Value> = training.get("recipe").into_iter().collect();
    if let Some(a) = training.get("recipes").and_then(|r| r.as_array()) {
        recipes.extend(a);
    }
    recipes
        .iter()
        .filter_map(|r| r.pointer("/generator/cell/preset")?.as_str())
        .map(str::to_string)
        .collect()
}

struct Row {
    lattice: &'static str,
    in_training: bool,
    pixel_a: f64,
    dose: f64,
    distorted: bool,
    unet: FinderScore,
    classical: FinderScore,
}

fn passes(s: &FinderScore, pixel_a: f64) -> bool {
    s.recall > 0.90 && s.precision > 0.95 && s.mean_distance_px.is_some_and(|d| d * pixel_a < 0.3)
}

fn table(rows: &[Row], which: fn(&Row) -> &FinderScore) -> String {
    let mut t = String::from(
        "| lattice | in training | Å/px | counts/px | scan distortion | columns | found | ID-recall | ID-precision | Δd (Å) | all three |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let s = which(r);
        let d = s
            .mean_distance_px
            .map_or("n/a".to_string(), |d| format!("{:.3}", d * r.pixel_a));
        let _ = writeln!(
            t,
            "| {} | {} | {:.2} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {} |",
            r.lattice,
            if r.in_training { "yes" } else { "no" },
            r.pixel_a,
            r.dose,
            if r.distorted { "moderate" } else { "none" },
            s.n_truth,
            s.n_predicted,
            s.recall,
            s.precision,
            d,
            if passes(s, r.pixel_a) { "✓" } else { "✗" }
        );
    }
    t
}

/// Cells passing per lattice × pixel size (out of doses × distortions).
fn summary(rows: &[Row]) -> String {
    let per = DOSES.len() * DISTORTED.len();
    let mut t = format!(
        "| lattice | finder | {} |\n|---|---|{}\n",
        PIXELS_A
            .iter()
            .map(|p| format!("{p:.2} Å/px"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(PIXELS_A.len())
    );
    for lat in &LATTICES {
        for (name, which) in [
            ("unet", (|r: &Row| &r.unet) as fn(&Row) -> &FinderScore),
            ("classical", |r: &Row| &r.classical),
        ] {
            let cells: Vec<String> = PIXELS_A
                .iter()
                .map(|&p| {
                    let n = rows
                        .iter()
                        .filter(|r| r.lattice == lat.label && r.pixel_a == p)
                        .filter(|r| passes(which(r), r.pixel_a))
                        .count();
                    format!("{n}/{per}")
                })
                .collect();
            let _ = writeln!(t, "| {} | {name} | {} |", lat.label, cells.join(" | "));
        }
    }
    t
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut images = 4usize;
    let mut out: Option<String> = None;
    let mut model: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--images" => images = args.next().ok_or("--images N")?.parse()?,
            "--out" => out = Some(args.next().ok_or("--out FILE")?),
            "--model" => model = Some(args.next().ok_or("--model FILE")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if images == 0 {
        return Err("--images must be >= 1".into());
    }
    let bundle = match &model {
        Some(p) => Bundle::load(std::path::Path::new(p))?,
        None => Bundle::shipped_atom_finder()?,
    };
    let model_name = model
        .clone()
        .unwrap_or_else(|| stem_learn::bundle::SHIPPED_ATOM_FINDER_NAME.to_string());
    let trained_on = training_presets(&bundle.card.training);
    let unet = UnetFinder::new(bundle.net);
    let t_all = Instant::now();
    let (mut t_gen, mut t_unet, mut t_classical) = (0.0, 0.0, 0.0);
    let mut rows = Vec::new();
    let mut k = 0u64;
    for lat in &LATTICES {
        for &pixel_a in &PIXELS_A {
            for &dose in &DOSES {
                for &distorted in &DISTORTED {
                    let t0 = Instant::now();
                    let data = Dataset::new(
                        recipe(lat, pixel_a, dose, distorted, SEED + k, images),
                        Parallelism::Auto,
                    )?;
                    k += 1;
                    let mut cases: Vec<(Array2<f32>, Vec<[f64; 2]>)> = Vec::new();
                    for s in data.iter() {
                        let s = s?;
                        cases.push((s.image.into_array(), s.labels.positions_px));
                    }
                    t_gen += t0.elapsed().as_secs_f64();
                    let radius_px = MATCH_A / pixel_a;
                    let border_px = (1.0 / pixel_a).max(4.0);
                    let t1 = Instant::now();
                    let su = score(&unet, &cases, radius_px, border_px)?;
                    t_unet += t1.elapsed().as_secs_f64();
                    let min_dist = ((0.5 * lat.nn_a / pixel_a).floor() as usize).max(1);
                    let classical = ClassicalFinder::new(min_dist);
                    let t2 = Instant::now();
                    let sc = score(&classical as &dyn AtomFinder, &cases, radius_px, border_px)?;
                    t_classical += t2.elapsed().as_secs_f64();
                    eprintln!(
                        "{} {pixel_a:.2} Å/px {dose} counts/px distorted={distorted}: unet R {:.3} P {:.3}, classical R {:.3} P {:.3}",
                        lat.label, su.recall, su.precision, sc.recall, sc.precision
                    );
                    rows.push(Row {
                        lattice: lat.label,
                        in_training: trained_on.iter().any(|p| p == lat.preset),
                        pixel_a,
                        dose,
                        distorted,
                        unet: su,
                        classical: sc,
                    });
                }
            }
        }
    }
    let n_img = rows.len() * images;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Quality grid: {} cells × {images} images of {SIDE}² px ({n_img} images), seeds {SEED}..{}; \
         match radius {MATCH_A} Å, border max(4 px, 1 Å). Wall time {:.1} s: generation {:.1} s, \
         U-Net {:.1} s ({:.1} ms/image), classical {:.1} s ({:.1} ms/image).\n",
        rows.len(),
        SEED + k - 1,
        t_all.elapsed().as_secs_f64(),
        t_gen,
        t_unet,
        1e3 * t_unet / n_img as f64,
        t_classical,
        1e3 * t_classical / n_img as f64
    );
    let _ = writeln!(
        md,
        "### Cells meeting all three targets (of {} per entry: 3 doses × 2 distortions)\n\n{}",
        DOSES.len() * DISTORTED.len(),
        summary(&rows)
    );
    let _ = writeln!(
        md,
        "### U-Net ({model_name}; trained on {})\n\n{}",
        trained_on.join(", "),
        table(&rows, |r| &r.unet)
    );
    let _ = writeln!(
        md,
        "### Classical (local maxima, threshold 0.2, round Gaussian fit)\n\n{}",
        table(&rows, |r| &r.classical)
    );
    print!("{md}");
    if let Some(o) = out {
        std::fs::write(o, md)?;
    }
    Ok(())
}
