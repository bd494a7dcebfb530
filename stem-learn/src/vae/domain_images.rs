//! The domain images of the phyVAE comparison, shared by the unit tests (`vae::tests`, compiled
//! only with `cfg(test)`, where stem-sim is available as a dev-dependency) and by
//! `examples/bench_vae.rs` (through `#[path]`), so the ignored test and the bench score the
//! very same images.

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stem_core::noise::{Dose, add_poisson_noise};
use stem_sim::dataset::DomainGenerator;

/// SrTiO3 [001], 256² px at 0.12 Å/px, lattice rotation U(−5°, 5°); `layout` `"stripes"`
/// (2 variants ±y, period 100–160 px) or anything else for 6 Voronoi domains (4 variants ±y,
/// ±x); Ti-O columns displaced 0.25 Å; Poisson noise at `dose` counts/px (noise seed
/// `seed + 1000`). Returns the noisy image, its `domain` mask and the class count.
pub fn domain_image(layout: &str, dose: f64, seed: u64) -> (Array2<f32>, Array2<u8>, usize) {
    let (layout_json, variants, k) = match layout {
        "stripes" => (
            r#"{"kind": "stripes", "period_px": [100, 160], "angle_deg": [0, 180]}"#,
            "[[0.25, 0.0], [-0.25, 0.0]]",
            2,
        ),
        _ => (
            r#"{"kind": "voronoi", "domains": 6}"#,
            "[[0.25, 0.0], [-0.25, 0.0], [0.0, 0.25], [0.0, -0.25]]",
            4,
        ),
    };
    let json = format!(
        r#"{{"lattice": {{"cell": {{"preset": "srtio3001"}}, "shape": [256, 256],
             "sampling_a": 0.12, "rotation_deg": [-5, 5]}},
            "layout": {layout_json}, "variants_a": {variants}, "displaced": ["TiO"],
            "wall_width_px": 2}}"#
    );
    let g: DomainGenerator = serde_json::from_str(&json).unwrap();
    let s = g.generate(&mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
    let noisy = add_poisson_noise(s.image.view(), Dose::CountsPerPixel(dose), seed + 1000).unwrap();
    let domain = s.labels.mask("domain").unwrap().data.clone();
    (noisy.into_array(), domain, k)
}
