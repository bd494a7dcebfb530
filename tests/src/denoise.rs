//! The ground-truth case shared by the denoising scenarios (`tests/tests/denoise_*.rs`): a
//! two-species SrTiO3 \[001\] lattice with known columns at a chosen dose, column re-finding
//! (stem-core local maxima + centre-of-mass refinement, scored with `points::evaluate`) and
//! PSNR / SSIM against the clean image.

use ndarray::Array2;
use stem_core::ImageView;
use stem_core::metrics::{SsimConfig, psnr, ssim};
use stem_core::noise::{Dose, add_poisson_noise};
use stem_core::peaks::{ComConfig, LocalMaximaConfig, find_local_maxima, refine_centre_of_mass};
use stem_core::points::evaluate;
use stem_core::synth::{LatticeImageConfig, UnitCell2D};

/// A noisy lattice image with its clean version and the visible column positions.
pub struct Case {
    /// Noise-free image scaled to the dose (counts).
    pub clean: Array2<f32>,
    /// Poisson draw of `clean` (seed 11).
    pub noisy: Array2<f32>,
    /// Sr and Ti–O column positions `[y, x]` (px).
    pub truth: Vec<[f64; 2]>,
}

/// The 256² SrTiO3 \[001\] lattice (rotated 4°) at a mean of `dose` counts/px.
pub fn case(dose: f64) -> Case {
    let cfg = LatticeImageConfig {
        shape: [256, 256],
        rotation_deg: 4.0,
        origin_a: [1.1, 2.3],
        ..LatticeImageConfig::new(UnitCell2D::srtio3_001())
    };
    let img = cfg.render().unwrap();
    let mean = f64::from(img.image.data().mean().unwrap());
    let clean = img
        .image
        .data()
        .mapv(|v| (f64::from(v) * dose / mean) as f32);
    let noisy = add_poisson_noise(img.image.view(), Dose::CountsPerPixel(dose), 11)
        .unwrap()
        .into_array();
    // Sr (1.0) and Ti–O (0.47) columns; the pure O columns (0.07) are invisible.
    let truth = img.positions_with_min_amplitude(0.3);
    Case {
        clean,
        noisy,
        truth,
    }
}

/// RMS distance (px) and recall of columns found on `img`.
pub fn columns(img: &Array2<f32>, truth: &[[f64; 2]]) -> (f64, f64) {
    let maxima = LocalMaximaConfig {
        min_distance_px: 7,
        threshold_rel: 0.2,
        ..Default::default()
    };
    let peaks = find_local_maxima(ImageView::new(img.view()), &maxima).unwrap();
    let init: Vec<[f64; 2]> = peaks.iter().map(|p| p.position.map(|v| v as f64)).collect();
    let refined =
        refine_centre_of_mass(ImageView::new(img.view()), &init, &ComConfig::default()).unwrap();
    let pos: Vec<[f64; 2]> = refined.iter().map(|p| p.position).collect();
    let m = evaluate(&pos, truth, 4.0, [256, 256], 12.0).unwrap();
    (m.rms_distance_px.unwrap_or(f64::INFINITY), m.recall)
}

/// PSNR (dB, peak = max of clean) and SSIM of `est` against the clean image.
pub fn scores(c: &Case, est: &Array2<f32>) -> (f64, f64) {
    let peak = f64::from(c.clean.fold(0.0f32, |a, &b| a.max(b)));
    let lo = f64::from(c.clean.fold(f32::MAX, |a, &b| a.min(b)));
    let p = psnr(c.clean.view(), est.view(), peak).unwrap();
    let s = ssim(c.clean.view(), est.view(), &SsimConfig::new(peak - lo)).unwrap();
    (p, s)
}
