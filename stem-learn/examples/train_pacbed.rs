//! Simulate → train → evaluate → bundle: the PACBED thickness/tilt model shipped in
//! `stem-learn/models/`.
//!
//! ```text
//! cargo run --release -p stem-learn --example train_pacbed -- \
//!     [--out stem-learn/models/pacbed-srtio3-0.2.0.safetensors] [--train-tilts 40] \
//!     [--steps 1200] [--ensemble 3] [--threads N] [--quick] \
//!     [--filters 16,32,64,64] [--hidden 64] [--size 48] [--mrad-px 1.5] [--tscale 6] \
//!     [--lr 2e-3] [--batch 32] [--dose 1e5,1e8] [--zoom 0.01] [--shear 0.01] [--rot 3] \
//!     [--shift 0.5] [--pca 24]
//! # or keep the networks and feature/spread statistics of a bundle made with the same
//! # options and refit only the input PCA (equal to a full run with `--pca K`):
//! cargo run --release -p stem-learn --example train_pacbed -- --refit-pca IN.safetensors \
//!     --pca K [same options] [--out OUT.safetensors]
//! ```
//!
//! Data (stem-sim multislice, one pass per tilt gives every thickness from the exit planes):
//! SrTiO3 \[001\], 200 kV, 20 mrad, 4×4 cells (1.61 mrad/px), 4×4 probe positions per cell,
//! thickness 1–100 unit cells (0.39–39.05 nm in 0.39 nm steps), tilt uniform in ±4 mrad
//! per axis. Training tilts are drawn with seed 101, calibration tilts (OOD threshold) with
//! seed 202 and held-out test tilts with seed 303, so the test patterns are other tilts than
//! any training pattern. The out-of-distribution check uses Si \[110\] (300 kV, 10 mrad, the
//! `pacbed_si110` recipe's settings) and at the training optics (200 kV, 20 mrad). Prints
//! metrics (also by thickness third and by OOD test), timings (wall and process CPU) and the
//! bundle's SHA-256. With `PACBED_DUMP=DIR` in the environment every evaluated pattern's
//! statistics (true and predicted thickness, spread, input residual, score distance, feature
//! distance, spread ratio) are appended to `DIR/<set>.csv`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::time::Instant;
use stem_core::{NoProgress, Parallelism};
use stem_learn::pacbed::{
    PacbedBundle, PacbedModel, PacbedModelConfig, PacbedSample, PacbedSet, PacbedTrainConfig,
};
use stem_sim::dataset::{CrystalSpec, PacbedGenerator, ProbeSpec};

/// Process CPU time in seconds (user + system, all threads, from /proc/self/stat).
fn cpu_s() -> f64 {
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

/// SrTiO3 \[001\] thickness series at each tilt.
fn srtio3(
    tilts: &[[f64; 2]],
    max_cells: usize,
    every: usize,
    positions: usize,
) -> Vec<PacbedSample> {
    let g = PacbedGenerator {
        crystal: CrystalSpec {
            cells_yx: [4, 4],
            thickness_cells: max_cells,
            ..CrystalSpec::new("srtio3")
        },
        thickness_cells: (every..=max_cells).step_by(every).collect(),
        positions_per_cell: positions,
        ..PacbedGenerator::default()
    };
    series(&g, tilts)
}

/// Si \[110\] at 300 kV, 10 mrad, ±30 mrad (the `pacbed_si110` recipe), or with `training_optics`
/// at the SrTiO3 training optics (200 kV, 20 mrad, ±40 mrad).
fn si110(tilts: &[[f64; 2]], training_optics: bool) -> Vec<PacbedSample> {
    let g = PacbedGenerator {
        crystal: CrystalSpec {
            cells_yx: [3, 4],
            thickness_cells: 100,
            zone: "110".into(),
            ..CrystalSpec::new("si")
        },
        probe: if training_optics {
            ProbeSpec::default()
        } else {
            ProbeSpec {
                energy_kv: 300.0,
                convergence_mrad: 10.0,
                ..ProbeSpec::default()
            }
        },
        thickness_cells: vec![20, 40, 60, 80, 100],
        max_angle_mrad: if training_optics { 40.0 } else { 30.0 },
        positions_per_cell: 4,
        ..PacbedGenerator::default()
    };
    series(&g, tilts)
}

fn series(g: &PacbedGenerator, tilts: &[[f64; 2]]) -> Vec<PacbedSample> {
    let mut out = Vec::new();
    for &t in tilts {
        let (stack, nm, mrad) = g.run(t).expect("simulation");
        for (i, &th) in nm.iter().enumerate() {
            out.push(PacbedSample {
                pattern: stack.index_axis(ndarray::Axis(0), i).to_owned(),
                mrad_per_px: mrad,
                thickness_nm: th,
                tilt_mrad: t,
            });
        }
    }
    out
}

fn draw_tilts(n: usize, seed: u64, max: f64) -> Vec<[f64; 2]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| [rng.random_range(-max..=max), rng.random_range(-max..=max)])
        .collect()
}

/// Poisson counts at `dose` total electrons (seeded).
fn noisy(s: &PacbedSample, dose: f64, seed: u64) -> PacbedSample {
    let k = (dose / f64::from(s.pattern.sum())) as f32;
    let counts = stem_core::noise::poisson(s.pattern.mapv(|v| v * k).view(), seed).expect("noise");
    PacbedSample {
        pattern: counts,
        ..s.clone()
    }
}

struct Eval {
    rms_t: f64,
    rms_tilt: f64,
    flagged: usize,
    n: usize,
    mean_spread: f64,
}

fn evaluate(name: &str, m: &PacbedModel, set: &[PacbedSample]) -> Eval {
    let (mut et, mut ea, mut fl, mut sp) = (0.0, 0.0, 0, 0.0);
    let (mut res, mut sco, mut rat) = (Vec::new(), Vec::new(), Vec::new());
    // Thickness thirds of 0-39 nm: squared error sums and counts.
    let mut third = [(0.0, 0usize); 3];
    // Which criterion fired: feature distance, input residual, score distance, spread.
    let mut why = [0usize; 4];
    for s in set {
        let p = m.predict(s.pattern.view(), s.mrad_per_px).expect("predict");
        let e2 = (p.thickness_nm - s.thickness_nm).powi(2);
        et += e2;
        let b = ((s.thickness_nm / 13.02) as usize).min(2);
        third[b].0 += e2;
        third[b].1 += 1;
        ea += (p.tilt_mrad[0] - s.tilt_mrad[0]).powi(2) + (p.tilt_mrad[1] - s.tilt_mrad[1]).powi(2);
        sp += p.thickness_spread_nm;
        fl += usize::from(p.out_of_distribution);
        why[0] += usize::from(p.ood_distance > p.ood_threshold);
        why[1] += usize::from(
            p.input_residual_threshold > 0.0 && p.input_residual > p.input_residual_threshold,
        );
        why[2] += usize::from(
            p.input_score_threshold > 0.0 && p.input_score_distance > p.input_score_threshold,
        );
        why[3] += usize::from(p.spread_threshold > 0.0 && p.spread_ratio > p.spread_threshold);
        res.push(p.input_residual);
        sco.push(p.input_score_distance);
        rat.push(p.spread_ratio);
        if let Ok(dir) = std::env::var("PACBED_DUMP") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(format!("{dir}/{}.csv", name.replace(' ', "_")))
                .expect("dump");
            writeln!(
                f,
                "{},{},{},{},{},{},{}",
                s.thickness_nm,
                p.thickness_nm,
                p.thickness_spread_nm,
                p.input_residual,
                p.input_score_distance,
                p.ood_distance,
                p.spread_ratio
            )
            .expect("dump");
        }
    }
    for v in [&mut res, &mut sco, &mut rat] {
        v.sort_by(f64::total_cmp);
    }
    let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    eprintln!("{name}:");
    eprintln!(
        "  input residual min/median/max {:.4}/{:.4}/{:.4}; score distance {:.2}/{:.2}/{:.2}; spread ratio min/median/q90/max {:.2}/{:.2}/{:.2}/{:.2}",
        res[0],
        q(&res, 0.5),
        q(&res, 1.0),
        sco[0],
        q(&sco, 0.5),
        q(&sco, 1.0),
        rat[0],
        q(&rat, 0.5),
        q(&rat, 0.9),
        q(&rat, 1.0)
    );
    eprintln!(
        "  thickness RMS by third (0-13 / 13-26 / 26-39 nm): {}; flagged by feature/residual/score/spread: {why:?}",
        third
            .iter()
            .map(|(e, n)| format!("{:.3} ({n})", (e / (*n).max(1) as f64).sqrt()))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let n = set.len() as f64;
    Eval {
        rms_t: (et / n).sqrt(),
        rms_tilt: (ea / (2.0 * n)).sqrt(),
        flagged: fl,
        n: set.len(),
        mean_spread: sp / n,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let out =
        get("--out").unwrap_or_else(|| "stem-learn/models/pacbed-srtio3-0.2.0.safetensors".into());
    let n_train: usize = get("--train-tilts").map_or(if quick { 6 } else { 40 }, |v| {
        v.parse().expect("--train-tilts")
    });
    let steps: u64 = get("--steps").map_or(if quick { 200 } else { 1200 }, |v| {
        v.parse().expect("--steps")
    });
    let ensemble: usize = get("--ensemble").map_or(3, |v| v.parse().expect("--ensemble"));
    let pair = |name: &str| -> Option<[f64; 2]> {
        get(name).map(|v| {
            let p: Vec<f64> = v.split(',').map(|x| x.parse().expect(name)).collect();
            [p[0], p[1]]
        })
    };
    let num = |name: &str| -> Option<f64> { get(name).map(|v| v.parse().expect(name)) };
    let parallelism = get("--threads").map_or(Parallelism::Auto, |v| {
        Parallelism::Threads(v.parse().expect("--threads"))
    });

    let t0 = Instant::now();
    let c0 = cpu_s();
    let train = srtio3(&draw_tilts(n_train, 101, 4.0), 100, 1, 4);
    let calib = srtio3(&draw_tilts(if quick { 2 } else { 6 }, 202, 4.0), 100, 1, 4);
    let test = srtio3(&draw_tilts(if quick { 2 } else { 8 }, 303, 4.0), 100, 1, 4);
    let si = si110(&[[0.0, 0.0], [0.0, 2.0], [1.5, -1.0]], false);
    let si200 = si110(&[[0.0, 0.0], [0.0, 2.0], [1.5, -1.0]], true);
    let sim_wall = t0.elapsed().as_secs_f64();
    let sim_cpu = cpu_s() - c0;
    eprintln!(
        "simulated {} train, {} calibration, {} test, {} Si patterns in {sim_wall:.1} s wall, {sim_cpu:.1} s CPU",
        train.len(),
        calib.len(),
        test.len(),
        si.len()
    );
    let train = PacbedSet::new(train).expect("train set");
    let calib = PacbedSet::new(calib).expect("calibration set");

    // The shipped recipe (0.2.0): wider conv blocks than the library default, thickness
    // weighted up in the loss (scale 6 nm instead of 20), milder zoom/shear, doses 1e5-1e8.
    let mut config = PacbedModelConfig {
        ensemble,
        thickness_scale_nm: 6.0,
        ..PacbedModelConfig::default()
    };
    config.net.filters = vec![16, 32, 64, 64];
    if let Some(f) = get("--filters") {
        config.net.filters = f
            .split(',')
            .map(|x| x.parse().expect("--filters"))
            .collect();
    }
    if let Some(h) = num("--hidden") {
        config.net.hidden = h as usize;
    }
    if let Some(n) = num("--size") {
        config.net.input_px = n as usize;
        config.preprocess.size_px = n as usize;
    }
    if let Some(v) = num("--mrad-px") {
        config.preprocess.mrad_per_px = v;
    }
    if let Some(v) = num("--tscale") {
        config.thickness_scale_nm = v;
    }
    let mut tc = PacbedTrainConfig {
        steps,
        seed: 7,
        parallelism,
        ..PacbedTrainConfig::default()
    };
    tc.augment.dose_range = Some([1e5, 1e8]);
    tc.augment.max_zoom = 0.01;
    tc.augment.max_shear = 0.01;
    if let Some(v) = num("--lr") {
        tc.optimizer.lr = v;
    }
    if let Some(v) = num("--batch") {
        tc.batch_size = v as usize;
    }
    if let Some(d) = pair("--dose") {
        tc.augment.dose_range = Some(d);
    }
    if let Some(v) = num("--zoom") {
        tc.augment.max_zoom = v;
    }
    if let Some(v) = num("--shear") {
        tc.augment.max_shear = v;
    }
    if let Some(v) = num("--rot") {
        tc.augment.max_rotation_deg = v;
    }
    if let Some(v) = num("--shift") {
        tc.augment.max_shift_mrad = v;
    }
    tc.schedule = stem_learn::optim::LrSchedule::Cosine {
        warmup_steps: (steps / 30).max(1),
        total_steps: steps,
        min_factor: 0.02,
    };
    let t1 = Instant::now();
    let c1 = cpu_s();
    let pca_k: usize = get("--pca").map_or(24, |v| v.parse().expect("--pca"));
    let config = PacbedModelConfig {
        pca_components: pca_k,
        ..config
    };
    // `--refit-pca IN`: keep the networks and the feature/spread statistics of an existing
    // bundle made by this example with the same options, and refit only the input PCA with
    // `--pca K` (it depends on the data, the augmentation and the seed, not on the networks:
    // the same as a full run with `--pca K`).
    let (model, report) = match get("--refit-pca") {
        Some(path) => {
            let mut model = PacbedBundle::load(std::path::Path::new(&path))
                .expect("bundle")
                .model;
            model
                .fit_input_pca(pca_k, &train, &calib, &tc.augment, tc.seed)
                .expect("fit input PCA");
            let c = model.config();
            let report = stem_learn::pacbed::PacbedTrainReport {
                losses: Vec::new(),
                ood_threshold: c.ood_threshold,
                pca_threshold: c.pca_threshold,
                pca_score_threshold: c.pca_score_threshold,
                spread_threshold: c.spread_threshold,
            };
            (model, report)
        }
        None => PacbedModel::train(config, &tc, &train, &calib, &NoProgress).expect("train"),
    };
    // The equivalent full-run arguments (without `--refit-pca IN`).
    let mut run_args: Vec<String> = Vec::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        if a == "--refit-pca" {
            it.next();
        } else {
            run_args.push(a.clone());
        }
    }
    let train_wall = t1.elapsed().as_secs_f64();
    let train_cpu = cpu_s() - c1;
    eprintln!(
        "input PCA: {} components, residual threshold {:.4}, score distance threshold {:.3}",
        model.config().pca_components,
        report.pca_threshold,
        report.pca_score_threshold
    );
    for (k, l) in report.losses.iter().enumerate() {
        let head: f32 = l.iter().take(50).sum::<f32>() / l.len().min(50) as f32;
        let tail: f32 = l.iter().rev().take(50).sum::<f32>() / l.len().min(50) as f32;
        eprintln!("member {k}: loss first-50 mean {head:.4}, last-50 mean {tail:.4}");
    }
    if !report.losses.is_empty() {
        eprintln!(
            "trained {ensemble}×{steps} steps in {train_wall:.1} s wall, {train_cpu:.1} s CPU; OOD threshold {:.3}",
            report.ood_threshold
        );
    }
    if ensemble > 1 {
        eprintln!(
            "spread test: reference {:?} nm, threshold {:.3}",
            model.config().spread_reference_nm,
            report.spread_threshold
        );
    }

    let clean = evaluate("held-out clean", &model, &test.clone());
    let noisy_test: Vec<PacbedSample> = test
        .iter()
        .enumerate()
        .map(|(i, s)| noisy(s, 1e6, i as u64))
        .collect();
    let nz = evaluate("held-out 1e6", &model, &noisy_test);
    let si_eval = evaluate("Si own optics", &model, &si);
    let si200_eval = evaluate("Si training optics", &model, &si200);
    let tr = evaluate(
        "train first 400",
        &model,
        &train.samples[..train.len().min(400)],
    );
    println!(
        "| set | patterns | thickness RMS (nm) | tilt RMS (mrad) | mean thickness spread (nm) | OOD flagged |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, e) in [
        ("train (first 400)", &tr),
        ("held-out SrTiO3, clean", &clean),
        ("held-out SrTiO3, 1e6 e⁻ Poisson", &nz),
        ("Si [110] 300 kV 10 mrad (OOD)", &si_eval),
        (
            "Si [110] 200 kV 20 mrad, training optics (OOD)",
            &si200_eval,
        ),
    ] {
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {}/{} |",
            e.n, e.rms_t, e.rms_tilt, e.mean_spread, e.flagged, e.n
        );
    }

    let mut b = PacbedBundle::new("pacbed-srtio3", "0.2.0", model);
    b.card.training = serde_json::json!({
        "data": "stem-sim PacbedGenerator: SrTiO3 [001], 4x4 cells, 200 kV, 20 mrad, 4x4 positions/cell, thickness 1..=100 cells (0.39-39.05 nm), tilts uniform in +-4 mrad per axis",
        "train_tilts": n_train, "train_tilt_seed": 101, "calibration_tilts_seed": 202, "test_tilts_seed": 303,
        "train": tc,
        "command": format!("cargo run --release -p stem-learn --example train_pacbed -- {}", run_args.join(" ")),
    });
    b.card.data_checksum = train.checksum();
    for (k, v) in [
        ("test_thickness_rms_nm", clean.rms_t),
        ("test_tilt_rms_mrad", clean.rms_tilt),
        ("test_noisy_1e6_thickness_rms_nm", nz.rms_t),
        ("test_noisy_1e6_tilt_rms_mrad", nz.rms_tilt),
        ("test_ood_flag_rate", clean.flagged as f64 / clean.n as f64),
        (
            "si110_ood_flag_rate",
            si_eval.flagged as f64 / si_eval.n as f64,
        ),
        (
            "si110_training_optics_ood_flag_rate",
            si200_eval.flagged as f64 / si200_eval.n as f64,
        ),
        (
            "test_noisy_1e6_ood_flag_rate",
            nz.flagged as f64 / nz.n as f64,
        ),
    ] {
        b.card.metrics.insert(k.into(), v);
    }
    let bytes = b.to_bytes().expect("bundle");
    std::fs::write(&out, &bytes).expect("write bundle");
    println!(
        "bundle {out}: {} bytes, SHA-256 {:x}",
        bytes.len(),
        Sha256::digest(&bytes)
    );
    println!(
        "simulation {sim_wall:.1} s wall / {sim_cpu:.1} s CPU; training {train_wall:.1} s wall / {train_cpu:.1} s CPU"
    );
}
