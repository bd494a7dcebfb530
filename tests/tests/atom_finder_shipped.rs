//! Ground-truth scenario: the shipped stem-learn atom finder (and the classical baseline through
//! the same `AtomFinder` trait) on freshly generated stem-sim images with exact column labels.
//!
//! Metrics (as `stem_learn::finder::score` / `stem_core::points::evaluate`): optimal one-to-one
//! matching within 0.5 Å, true columns within 4 px of the edge not counted; ID-recall =
//! matched / true, ID-precision = matched / found, Δd = mean matched distance (Å). The
//! benchmark targets are recall > 0.90, precision > 0.95, Δd < 0.3 Å.

use ndarray::Array2;
use stem_core::Parallelism;
use stem_learn::bundle::Bundle;
use stem_learn::finder::{AtomFinder, ClassicalFinder, InferenceConfig, UnetFinder, score};
use stem_sim::dataset::{Dataset, Recipe};
use stem_sim::degrade::Sample;

const MATCH_A: f64 = 0.5;
const BORDER_PX: f64 = 4.0;

/// Pooled scores of `finder` over `samples` (each with its own pixel size).
struct Pooled {
    n_truth: usize,
    n_found: usize,
    n_matched: usize,
    dist_sum_a: f64,
}

impl Pooled {
    fn recall(&self) -> f64 {
        self.n_matched as f64 / self.n_truth as f64
    }
    fn precision(&self) -> f64 {
        self.n_matched as f64 / self.n_found as f64
    }
    fn delta_d_a(&self) -> f64 {
        self.dist_sum_a / self.n_matched as f64
    }
}

impl std::fmt::Display for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} true, {} found, {} matched: recall {:.3}, precision {:.3}, Δd {:.3} Å",
            self.n_truth,
            self.n_found,
            self.n_matched,
            self.recall(),
            self.precision(),
            self.delta_d_a()
        )
    }
}

/// Scores `finder` on each sample against `truth(sample)`, pooling counts and distances.
fn pooled(
    finder: &dyn AtomFinder,
    samples: &[Sample],
    truth: impl Fn(&Sample) -> Vec<[f64; 2]>,
) -> Pooled {
    let mut p = Pooled {
        n_truth: 0,
        n_found: 0,
        n_matched: 0,
        dist_sum_a: 0.0,
    };
    for s in samples {
        let [dy, dx] = s.sampling_a().unwrap();
        let px_a = 0.5 * (dy + dx);
        let case = vec![(s.image.data().clone(), truth(s))];
        let r = score(finder, &case, MATCH_A / px_a, BORDER_PX).unwrap();
        p.n_truth += r.n_truth;
        p.n_found += r.n_predicted;
        p.n_matched += r.n_matched;
        p.dist_sum_a += r.mean_distance_px.unwrap_or(0.0) * r.n_matched as f64 * px_a;
    }
    p
}

fn all_columns(s: &Sample) -> Vec<[f64; 2]> {
    s.labels.positions_px.clone()
}

/// Held-out samples of the training recipe itself (same distribution: scan distortions,
/// affine, blur, resampling, background, 20–500 counts/px), drawn with a seed the bundle was
/// not trained on (training used 20261121).
fn held_out_srtio3(count: usize) -> Vec<Sample> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stem-sim/examples/recipes/atom_finding_srtio3.json"
    );
    let mut recipe = Recipe::from_json_file(path).unwrap();
    assert_ne!(recipe.seed, 4242);
    recipe.seed = 4242;
    recipe.count = count;
    let data = Dataset::new(recipe, Parallelism::Auto).unwrap();
    data.iter().map(|s| s.unwrap()).collect()
}

fn shipped() -> UnetFinder {
    UnetFinder::new(Bundle::shipped_atom_finder().unwrap().net)
}

#[test]
fn shipped_bundle_meets_the_targets_on_held_out_srtio3() {
    let samples = held_out_srtio3(8);
    let p = pooled(&shipped(), &samples, all_columns);
    println!("shipped U-Net, held-out SrTiO3 recipe samples: {p}");
    // The issue's benchmark targets, on all columns including the weak O columns (measured:
    // 922/922 found, precision 0.990, Δd 0.039 Å).
    assert!(p.n_truth > 500, "{p}");
    assert!(p.recall() > 0.90, "{p}");
    assert!(p.precision() > 0.95, "{p}");
    assert!(p.delta_d_a() < 0.3, "{p}");
}

#[test]
fn classical_baseline_through_the_same_trait_finds_the_cations_only() {
    let samples = held_out_srtio3(8);
    let classical = ClassicalFinder::new(3);
    let f: &dyn AtomFinder = &classical;
    assert_eq!(f.name(), "classical");
    // Cations: classes 0 (Sr) and 1 (TiO); the O columns (class 2) have ≈ 7 % of the Sr
    // amplitude under Σ Z^1.7 and lie below the classical finder's 0.2 relative threshold.
    assert_eq!(samples[0].labels.class_names, ["Sr", "TiO", "O"]);
    let cations = |s: &Sample| {
        let mut v = s.labels.positions_of_class(0);
        v.extend(s.labels.positions_of_class(1));
        v
    };
    let c = pooled(f, &samples, cations);
    let all = pooled(f, &samples, all_columns);
    let u = pooled(&shipped(), &samples, all_columns);
    println!("classical vs cations: {c}\nclassical vs all: {all}\nunet vs all: {u}");
    // Measured: cations 466/466 found, Δd 0.032 Å (targets recall > 0.9, Δd < 0.3 Å).
    assert!(c.recall() > 0.90 && c.delta_d_a() < 0.3, "{c}");
    // Half the columns are O: the baseline's recall on all columns is far below the U-Net's
    // (measured 0.524 vs 1.000); a baseline finding O columns too would fail this.
    assert!(all.recall() < 0.7, "{all}");
    assert!(
        u.recall() > all.recall() + 0.25,
        "unet {u} vs classical {all}"
    );
}

/// A SrTiO3 image of odd size, not a multiple of 8 and wider than one 128-px tile, with the
/// lattice rotated by 17° (so reflecting it about the diagonal gives a different lattice):
/// found with whole-tile and with small-tile inference, every column is found at its label;
/// swapping the found positions' y and x must fail the same scoring.
#[test]
fn odd_sized_rotated_image_checks_axes_and_tiling() {
    let recipe: Recipe = serde_json::from_str(
        r#"{"name": "odd", "seed": 99, "count": 1,
            "generator": {"kind": "lattice", "cell": {"preset": "srtio3001"},
                          "shape": [101, 301], "sampling_a": 0.15, "rotation_deg": 17,
                          "profile": {"kind": "gaussian", "sigma_a": 0.45}},
            "degradations": [{"kind": "poisson", "dose": {"counts_per_px": 200}}]}"#,
    )
    .unwrap();
    let s = Dataset::new(recipe, Parallelism::Auto)
        .unwrap()
        .sample(0)
        .unwrap();
    assert_eq!(s.image.shape(), [101, 301]);
    let truth = s.labels.positions_px.clone();
    let img: &Array2<f32> = s.image.data();
    let radius = MATCH_A / 0.15;
    let mut small = shipped();
    // 64-px tiles with 12 px discarded margins: 3 tile rows × 6 tile columns, the last ones
    // shifted to end at the image edge.
    small.inference = InferenceConfig {
        tile_px: 64,
        overlap_px: 12,
        batch: 5,
        parallelism: Parallelism::Threads(2),
    };
    for (name, f) in [("default tiles", shipped()), ("64-px tiles", small)] {
        let found = f.find(s.image.view()).unwrap();
        let case = vec![(img.clone(), truth.clone())];
        let r = score(&f, &case, radius, BORDER_PX).unwrap();
        println!("{name}: {r:?}");
        // Measured: 161/161 found, precision 1.0, Δd 0.16 px (default) / 0.14 px (64-px tiles)
        // = 0.02 Å; a broken tile placement or padding would lose or shift the columns there.
        assert!(r.n_truth > 100, "{r:?}");
        assert!(r.recall > 0.90 && r.precision > 0.95, "{name}: {r:?}");
        assert!(r.mean_distance_px.unwrap() * 0.15 < 0.3, "{name}: {r:?}");
        // The same finds with y and x swapped: most lie outside the 101-px height or between
        // columns of the reflected lattice.
        let swapped: Vec<[f64; 2]> = found.iter().map(|p| [p[1], p[0]]).collect();
        let m =
            stem_core::points::evaluate(&swapped, &truth, radius, [101, 301], BORDER_PX).unwrap();
        println!("{name}, y and x swapped: {m}");
        assert!(m.recall < 0.3, "swapped axes still match: {m}");
    }
}
