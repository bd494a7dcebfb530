//! The example recipes in `examples/recipes/` parse, validate and generate deterministically.

use std::path::PathBuf;
use stem_core::Parallelism;
use stem_sim::dataset::{Dataset, Recipe};

fn recipes() -> Vec<(String, Recipe)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/recipes");
    let mut out: Vec<(String, Recipe)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let r = Recipe::from_json_file(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn example_recipes_generate_the_same_sample_on_one_and_two_threads() {
    let all = recipes();
    assert!(all.len() >= 5);
    for (name, recipe) in all {
        let one = Dataset::new(recipe.clone(), Parallelism::Threads(1)).unwrap();
        let two = Dataset::new(recipe, Parallelism::Threads(2)).unwrap();
        let a = one.sample(0).unwrap();
        let b = two.sample(0).unwrap();
        assert_eq!(a, b, "{name}");
        assert!(!a.labels.is_empty(), "{name}: no labels");
        // Finite (read noise may make counts negative).
        assert!(a.image.data().iter().all(|v| v.is_finite()), "{name}");
        // Every label lies inside the image.
        let [ny, nx] = a.image.shape().map(|n| n as f64 - 1.0);
        assert!(
            a.labels
                .positions_px
                .iter()
                .all(|p| (0.0..=ny).contains(&p[0]) && (0.0..=nx).contains(&p[1])),
            "{name}"
        );
    }
}

#[test]
fn a_recipe_is_a_few_kilobytes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/recipes");
    for e in std::fs::read_dir(dir).unwrap() {
        let len = e.unwrap().metadata().unwrap().len();
        assert!(len < 4096, "{len} bytes");
    }
}
