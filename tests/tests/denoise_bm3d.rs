//! Ground truth for BM3D in stem-denoise (issue #5): the two-species SrTiO3 [001] lattice of
//! `denoise_ground_truth.rs` (known columns) at 5, 20 and 100 counts/px. Checks the PSNR / SSIM
//! gains over the noisy input, that the periodic search (lattice translates) beats the classic
//! local window, and that columns re-found on the denoised image are closer to the truth.

use ndarray::Array2;
use stem_core::metrics::{SsimConfig, psnr, ssim};
use stem_core::noise::{Dose, add_poisson_noise};
use stem_core::peaks::{ComConfig, LocalMaximaConfig, find_local_maxima, refine_centre_of_mass};
use stem_core::points::evaluate;
use stem_core::synth::{LatticeImageConfig, UnitCell2D};
use stem_core::{ImageView, NoProgress};
use stem_denoise::{Bm3d, Bm3dConfig, Denoiser};

struct Case {
    clean: Array2<f32>,
    noisy: Array2<f32>,
    truth: Vec<[f64; 2]>,
}

fn case(dose: f64) -> Case {
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
fn columns(img: &Array2<f32>, truth: &[[f64; 2]]) -> (f64, f64) {
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

fn scores(c: &Case, est: &Array2<f32>) -> (f64, f64) {
    let peak = f64::from(c.clean.fold(0.0f32, |a, &b| a.max(b)));
    let lo = f64::from(c.clean.fold(f32::MAX, |a, &b| a.min(b)));
    let p = psnr(c.clean.view(), est.view(), peak).unwrap();
    let s = ssim(c.clean.view(), est.view(), &SsimConfig::new(peak - lo)).unwrap();
    (p, s)
}

fn denoise(cfg: Bm3dConfig, noisy: &Array2<f32>) -> Array2<f32> {
    Bm3d::new(cfg)
        .unwrap()
        .denoise(ImageView::new(noisy.view()), &NoProgress)
        .unwrap()
        .into_array()
}

fn run(
    dose: f64,
    min_psnr_gain_db: f64,
    min_ssim_gain: f64,
    min_periodic_over_local_db: f64,
    max_rms_ratio: f64,
) {
    let c = case(dose);
    let (p0, s0) = scores(&c, &c.noisy);
    let (rms0, rec0) = columns(&c.noisy, &c.truth);
    let per = denoise(Bm3dConfig::default(), &c.noisy);
    let (p1, s1) = scores(&c, &per);
    let (rms1, rec1) = columns(&per, &c.truth);
    let loc = denoise(Bm3dConfig::local(12), &c.noisy);
    let (p2, s2) = scores(&c, &loc);
    eprintln!(
        "dose {dose}: PSNR noisy {p0:.2} / periodic {p1:.2} / local {p2:.2} dB, SSIM {s0:.4} / {s1:.4} / {s2:.4}, columns rms {rms0:.3} (recall {rec0:.3}) -> {rms1:.3} ({rec1:.3})"
    );
    assert!(p1 - p0 >= min_psnr_gain_db, "PSNR gain {} dB", p1 - p0);
    assert!(s1 - s0 >= min_ssim_gain, "SSIM gain {}", s1 - s0);
    assert!(
        p1 - p2 >= min_periodic_over_local_db,
        "periodic {p1} vs local {p2} dB"
    );
    assert!(rec1 >= rec0, "recall {rec0} -> {rec1}");
    assert!(rms1 < max_rms_ratio * rms0, "column rms {rms0} -> {rms1}");
}

// Margins: about 80 % of what this seed gives (PSNR +18.4 / +15.4 / +12.7 dB, SSIM +0.421 /
// +0.184 / +0.048, periodic over local +7.3 / +5.9 / +5.0 dB), so that they fail if BM3D loses
// a fifth of its gain. Column RMS: measured ratios 0.50 / 0.71 / 0.87 of the noisy image's.

#[test]
fn dose_5() {
    run(5.0, 14.5, 0.33, 5.8, 0.6);
}

#[test]
fn dose_20() {
    run(20.0, 12.3, 0.147, 4.7, 0.8);
}

#[test]
fn dose_100() {
    run(100.0, 10.0, 0.038, 3.9, 0.95);
}
