//! Quality of the adaptive periodic NLM search (issue #5; reference note §1.4: re-centring on
//! the best match per lattice translate tolerates lattice distortion): on a distorted
//! two-species lattice with a vacancy region, the adaptive periodic search must beat the local
//! window clearly and the fixed periodic set of the same translates, and must not fill the
//! vacancies with the columns of the lattice.

use ndarray::Array2;
use stem_core::NoProgress;
use stem_core::lattice::{LatticeConfig, estimate_lattice};
use stem_core::metrics::psnr;
use stem_denoise::{BlockDistance, Denoiser, FilterStrength, Nlm, NlmConfig, SearchSet};

const N: usize = 256;
const A: f64 = 16.0;

/// Heavy columns (amplitude 1) on a 16 px square lattice with a smooth displacement field
/// (up to 1.5 px), light columns (0.45) at the cell centres, and heavy vacancies in a 3 × 3
/// block of cells around the centre. Returns (clean, vacancy sites `[y, x]`).
fn image() -> (Array2<f64>, Vec<[f64; 2]>) {
    let disp = |y: f64, x: f64| {
        let t = 2.0 * std::f64::consts::PI / N as f64;
        [1.5 * (t * x).sin(), 1.5 * (t * y).cos()]
    };
    let mut img = Array2::<f64>::from_elem((N, N), 0.03);
    let mut vac = Vec::new();
    let draw = |img: &mut Array2<f64>, p: [f64; 2], amp: f64, s: f64| {
        let (y0, y1) = (
            (p[0] - 8.0).max(0.0) as usize,
            (p[0] + 8.0).min(N as f64 - 1.0),
        );
        let (x0, x1) = (
            (p[1] - 8.0).max(0.0) as usize,
            (p[1] + 8.0).min(N as f64 - 1.0),
        );
        if y1 < 0.0 || x1 < 0.0 {
            return;
        }
        for y in y0..=y1 as usize {
            for x in x0..=x1 as usize {
                let d2 = (y as f64 - p[0]).powi(2) + (x as f64 - p[1]).powi(2);
                img[[y, x]] += amp * (-d2 / (2.0 * s * s)).exp();
            }
        }
    };
    for i in -1..=(N as i64 / 16 + 1) {
        for j in -1..=(N as i64 / 16 + 1) {
            let (y, x) = (4.0 + i as f64 * A, 5.0 + j as f64 * A);
            let d = disp(y, x);
            let p = [y + d[0], x + d[1]];
            if (7..=9).contains(&i) && (7..=9).contains(&j) {
                vac.push(p);
            } else {
                draw(&mut img, p, 1.0, 2.0);
            }
            let (ly, lx) = (y + A / 2.0, x + A / 2.0);
            let d = disp(ly, lx);
            draw(&mut img, [ly + d[0], lx + d[1]], 0.45, 1.8);
        }
    }
    (img, vac)
}

#[test]
fn adaptive_periodic_beats_local_and_fixed_periodic_on_a_distorted_lattice_with_vacancies() {
    let dose = 10.0;
    let (unit, vac) = image();
    let mean = unit.mean().unwrap();
    let clean = unit.mapv(|v| (v * dose / mean) as f32);
    let noisy = stem_core::noise::poisson(clean.view(), 77).unwrap();
    let lattice = estimate_lattice((&noisy).into(), &LatticeConfig::default()).unwrap();
    let peak = f64::from(clean.fold(0.0f32, |a, &b| a.max(b)));
    let run = |search: SearchSet| {
        let cfg = NlmConfig {
            distance: BlockDistance::PoissonGlr,
            search,
            block_radius_px: Some(2),
            strength: FilterStrength::Fixed(1.2),
            lattice: Some(lattice.clone()),
            ..NlmConfig::default()
        };
        let out = Nlm::new(cfg)
            .unwrap()
            .denoise((&noisy).into(), &NoProgress)
            .unwrap()
            .into_array();
        let p = psnr(clean.view(), out.view(), peak).unwrap();
        // Mean counts in 3 × 3 px at the vacancy sites (clean: background + light tails).
        let at_vac = |img: &Array2<f32>| {
            let mut s = 0.0;
            for v in &vac {
                let (cy, cx) = (v[0].round() as usize, v[1].round() as usize);
                for y in cy - 1..=cy + 1 {
                    for x in cx - 1..=cx + 1 {
                        s += f64::from(img[[y, x]]);
                    }
                }
            }
            s / (9 * vac.len()) as f64
        };
        (p, at_vac(&out), at_vac(&clean))
    };
    let (p_loc, _, _) = run(SearchSet::Local { radius_px: 7 });
    let (p_per, _, _) = run(SearchSet::Periodic {
        max_order: 2,
        box_radius_px: 0,
    });
    let (p_ada, v_ada, v_clean) = run(SearchSet::AdaptivePeriodic {
        max_order: 2,
        box_radius_px: 1,
    });
    let p_noisy = psnr(clean.view(), noisy.view(), peak).unwrap();
    eprintln!(
        "noisy {p_noisy:.2} dB, local {p_loc:.2}, periodic (box 0) {p_per:.2}, adaptive {p_ada:.2}; vacancy counts clean {v_clean:.2}, adaptive {v_ada:.2}, column peak {peak:.1}"
    );
    // Measured on this seed: local 29.86, periodic 33.85, adaptive 34.41 dB; vacancy sites
    // 1.80 counts (clean 1.87; a filled vacancy would approach the 64-count column peak).
    // Margins: ≥ 3.5 dB over local, ≥ 0.4 dB over the fixed periodic set, vacancies within
    // 1 count of the truth.
    assert!(p_ada - p_loc >= 3.5, "adaptive {p_ada} vs local {p_loc}");
    assert!(p_ada - p_per >= 0.4, "adaptive {p_ada} vs periodic {p_per}");
    assert!(
        (v_ada - v_clean).abs() < 1.0,
        "vacancies {v_ada} vs {v_clean}"
    );
}
