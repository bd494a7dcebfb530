//! Simulated SrTiO3 [001] 4D-STEM: Poisson noise at a low dose hides the 4-fold rotational
//! symmetry of the patterns with the probe on Sr columns; `stem_tensor` denoising (Keenan–Kotula
//! scaling, automatic ranks, HOOI) brings it back (the claim of the tensor-SVD talk).
//!
//! Setup: multislice (stem-sim) of a 2 × 2-cell SrTiO3 [001] block (7.8 Å, 64 × 64 grid points,
//! 0.122 Å) 10 cells (3.9 nm) thick, 200 kV, 20 mrad probe; a 16 × 16 scan over the 2 × 2 cells
//! (step a/8), so the Sr columns (cell corners) sit at scan positions (0, 0), (0, 8), (8, 0),
//! (8, 8); pixelated detector cropped to the valid angles (31 × 31 px). Counts =
//! Poisson(dose × pattern) at 1000 e⁻ per pattern.

use ndarray::{Array4, ArrayD, Axis};
use stem_core::frame_source::InMemorySource;
use stem_core::{Hypercube, NoProgress, Parallelism};
use stem_sim::detector::{Detector, MaxAngle};
use stem_sim::multislice::{Multislice, MultisliceConfig};
use stem_sim::potential::{PotentialConfig, build_potential_with_progress};
use stem_sim::probe::{Probe, ProbeConfig};
use stem_sim::scan::{DetectorOutput, GridScan, scan};
use stem_sim::structure::builders::{ZoneAxis, by_name};
use stem_tensor::denoise::{DenoiseConfig, TensorDenoiser};
use stem_tensor::fourd::{SymmetryConfig, symmetry_maps};

fn simulate() -> Array4<f32> {
    let unit = by_name("SrTiO3", ZoneAxis::Z001).unwrap();
    let cell = unit.cell_a();
    let block = unit.repeat([2, 2, 1]).unwrap();
    let pcfg = PotentialConfig {
        gpts: [64, 64],
        slice_thickness_a: cell[2] / 2.0,
        ..Default::default()
    };
    let pot = build_potential_with_progress(&block, &pcfg, &NoProgress)
        .unwrap()
        .with_repeats(10)
        .unwrap();
    let mcfg = MultisliceConfig {
        energy_ev: 200e3,
        ..Default::default()
    };
    let ms = Multislice::<f32>::new(&pot, &mcfg).unwrap();
    let probe = Probe::new(
        ProbeConfig {
            energy_ev: mcfg.energy_ev,
            semiangle_cutoff_mrad: 20.0,
            ..Default::default()
        },
        *ms.grid(),
    )
    .unwrap();
    let s = GridScan::new([0.0, 0.0], [2.0 * cell[1], 2.0 * cell[0]], [16, 16]).unwrap();
    let dets = vec![Detector::Pixelated {
        max_angle: MaxAngle::Valid,
    }];
    let r = scan(&ms, &probe, &s, &dets, Parallelism::Auto, &NoProgress).unwrap();
    match &r.outputs[0] {
        DetectorOutput::Pixelated(p) => p
            .index_axis(Axis(0), 0)
            .to_owned()
            .into_dimensionality()
            .unwrap(),
        _ => panic!("pixelated output expected"),
    }
}

/// The 4-fold map over the scan.
fn four_fold(cube: &ArrayD<f32>) -> ndarray::Array2<f64> {
    let sh = cube.shape().to_vec();
    let hc = Hypercube::new(cube.clone(), 2).unwrap();
    let config = SymmetryConfig {
        orders: vec![4],
        // Zero frequency at [h/2, w/2] (stem-sim's detector convention).
        centre: Some([(sh[2] / 2) as f64, (sh[3] / 2) as f64]),
        mirror_angles: 0,
        ..Default::default()
    };
    let maps = symmetry_maps(&InMemorySource::new(hc.view()), &config, &NoProgress).unwrap();
    maps.rotational[0].1.clone()
}

/// Mean of the map over the four Sr positions.
fn at_sr(m: &ndarray::Array2<f64>) -> f64 {
    [(0, 0), (0, 8), (8, 0), (8, 8)]
        .iter()
        .map(|&(y, x)| m[[y, x]])
        .sum::<f64>()
        / 4.0
}

/// Pearson correlation of two maps over the scan positions.
fn map_corr(a: &ndarray::Array2<f64>, b: &ndarray::Array2<f64>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.sum() / n, b.sum() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt().max(f64::MIN_POSITIVE)
}

/// Thresholds (set after a first diagnostic run at 100, 300, 1000 and 3000 e⁻ per pattern; the
/// values measured at the dose used, 1000 e⁻ ≈ 1 count per detector pixel, are in brackets):
/// * clean patterns on Sr columns are 4-fold symmetric: correlation ≥ 0.95 (only bilinear
///   resampling of the rotated pattern breaks it) [1.000];
/// * the noisy patterns misreport it, at least 0.2 below the clean value [0.670];
/// * the denoised patterns recover it: ≥ 0.9 and at least two thirds of the lost correlation
///   regained [0.924];
/// * without inventing symmetry elsewhere: at the least symmetric clean scan position the
///   denoised value stays below 0.5 [clean 0.345, denoised 0.279], and the denoised map
///   correlates with the clean map over the scan at ≥ 0.9 [0.941; the noisy map: 0.973 — noise
///   lowers the map nearly uniformly, so its shape survives while its values do not].
///
/// At lower doses the automatic ranks keep too few detector components (rank 2 at 300 e⁻, rank
/// 1 at 100 e⁻): the Sr value is restored but every pattern then looks 4-fold symmetric (0.97 at
/// the least symmetric position at 300 e⁻), so this test fixes the dose at 1000 e⁻.
#[test]
fn srtio3_four_fold_symmetry_recovered_by_tensor_denoising() {
    let clean_frac = simulate();
    let sh = clean_frac.shape().to_vec();
    let frame_len = sh[2] * sh[3];
    let dose = 1000.0f32;
    let clean = clean_frac.mapv(|v| v * dose).into_dyn();
    let noisy = stem_tensor::synth::poisson_cube(&clean, frame_len, 2026).unwrap();
    let cube = Hypercube::new(noisy.clone(), 2).unwrap();
    let den = TensorDenoiser::new(DenoiseConfig::default())
        .unwrap()
        .run(cube.view(), &NoProgress)
        .unwrap();
    let (c, n, d) = (
        four_fold(&clean),
        four_fold(&noisy),
        four_fold(&den.denoised),
    );
    let (imin, _) =
        c.indexed_iter().fold(
            ((0, 0), f64::INFINITY),
            |b, (i, &v)| if v < b.1 { (i, v) } else { b },
        );
    let (c_sr, n_sr, d_sr) = (at_sr(&c), at_sr(&n), at_sr(&d));
    eprintln!(
        "detector {:?}; ranks {:?}; Sr: clean {c_sr:.3} noisy {n_sr:.3} denoised {d_sr:.3}; least symmetric position {imin:?}: clean {:.3} noisy {:.3} denoised {:.3}; map corr noisy {:.3} denoised {:.3}",
        &sh[2..],
        den.ranks,
        c[imin],
        n[imin],
        d[imin],
        map_corr(&n, &c),
        map_corr(&d, &c)
    );
    assert!(c_sr >= 0.95, "clean {c_sr}");
    assert!(n_sr <= c_sr - 0.2, "noisy {n_sr} clean {c_sr}");
    assert!(d_sr >= 0.9, "denoised {d_sr}");
    assert!(
        c_sr - d_sr <= (c_sr - n_sr) / 3.0,
        "denoised {d_sr} noisy {n_sr} clean {c_sr}"
    );
    assert!(d[imin] < 0.5, "denoised {} at {imin:?}", d[imin]);
    assert!(
        map_corr(&d, &c) >= 0.9,
        "map correlation {}",
        map_corr(&d, &c)
    );
}
