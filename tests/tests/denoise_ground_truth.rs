//! Ground truth for stem-denoise (issue #5): a two-species SrTiO3 [001] lattice (known columns)
//! at 5, 20 and 100 counts/px, denoised with the periodic NLM presets. Checks PSNR / SSIM gains
//! over the noisy input and that columns re-found on the denoised image (stem-core local maxima
//! + centre-of-mass refinement, scored with `points::evaluate`) are closer to the truth.

use ndarray::Array2;
use stem_core::metrics::{SsimConfig, psnr, ssim};
use stem_core::noise::{Dose, add_poisson_noise};
use stem_core::peaks::{ComConfig, LocalMaximaConfig, find_local_maxima, refine_centre_of_mass};
use stem_core::points::evaluate;
use stem_core::synth::{LatticeImageConfig, UnitCell2D};
use stem_core::{ImageView, NoProgress};
use stem_denoise::{Denoiser, Nlm, NlmConfig, Preset};

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

fn run(dose: f64, min_psnr_gain_db: f64, min_ssim_gain: f64) {
    let c = case(dose);
    let (p0, s0) = scores(&c, &c.noisy);
    let (rms0, rec0) = columns(&c.noisy, &c.truth);
    let psnr_den = Nlm::new(NlmConfig::preset(Preset::Psnr))
        .unwrap()
        .denoise(ImageView::new(c.noisy.view()), &NoProgress)
        .unwrap()
        .into_array();
    let (p1, s1) = scores(&c, &psnr_den);
    let (rms1, rec1) = columns(&psnr_den, &c.truth);
    let prec_den = Nlm::new(NlmConfig::preset(Preset::Precision))
        .unwrap()
        .denoise(ImageView::new(c.noisy.view()), &NoProgress)
        .unwrap()
        .into_array();
    let (rms2, rec2) = columns(&prec_den, &c.truth);
    eprintln!(
        "dose {dose}: PSNR {p0:.2} -> {p1:.2} dB, SSIM {s0:.4} -> {s1:.4}, columns rms {rms0:.3} (recall {rec0:.3}) -> psnr preset {rms1:.3} ({rec1:.3}), precision preset {rms2:.3} ({rec2:.3})"
    );
    assert!(p1 - p0 >= min_psnr_gain_db, "PSNR gain {} dB", p1 - p0);
    assert!(s1 - s0 >= min_ssim_gain, "SSIM gain {}", s1 - s0);
    assert!(
        rec1 >= rec0 && rec2 >= rec0,
        "recall {rec0} -> {rec1}, {rec2}"
    );
    assert!(rms1 < rms0, "column rms {rms0} -> {rms1} (psnr preset)");
    assert!(
        rms2 < rms1,
        "precision preset must beat the psnr preset: {rms2} vs {rms1}"
    );
}

// Margins: about 80 % of the gains measured on this seed (15.2 / 12.5 / 9.9 dB and
// +0.417 / +0.183 / +0.048 SSIM), so that they fail if the denoiser loses a fifth of its gain;
// the reference NLM prototype gains 10.4 / 9.9 / 8.1 dB on a similar lattice.

#[test]
fn dose_5() {
    run(5.0, 12.0, 0.33);
}

#[test]
fn dose_20() {
    run(20.0, 10.0, 0.15);
}

#[test]
fn dose_100() {
    run(100.0, 7.5, 0.038);
}
