//! Benchmark of stem-denoise on the lattice images of `peer-benchmarks.md` §1.4 (512², square
//! lattice a = 20 px rotated by 4°, two species, 4 vacancies) at 5 / 20 / 100 counts/px.
//!
//! `cargo run --release -p stem-denoise --example bench_denoise -- [OUT_DIR]`
//!
//! Writes `clean_<dose>.npy`, `noisy_<dose>.npy`, `ours_<method>_<dose>.npy` and
//! `heavy_columns.npy` (`[y, x]` of the heavy columns) into OUT_DIR (default
//! `bench/denoise/out`) and prints PSNR / SSIM / column RMS / wall time per method.

use ndarray::Array2;
use std::time::Instant;
use stem_core::NoProgress;
use stem_core::io::npy::write_npy;
use stem_core::metrics::{SsimConfig, psnr, ssim};
use stem_denoise::{Bm3d, Bm3dConfig, Denoiser, GaussianDenoiser, Nlm, NlmConfig, Preset};

/// The §1.4 image: (clean image scaled to mean 1, heavy column positions `[y, x]`).
fn lattice_image() -> (Array2<f64>, Vec<[f64; 2]>) {
    let n = 512usize;
    let th = 4f64.to_radians();
    let a = 20.0;
    let a1 = [a * th.cos(), a * th.sin()]; // (x, y)
    let a2 = [-a * th.sin(), a * th.cos()];
    let o = [7.3, 11.6];
    let vac = [
        [128.0, 128.0],
        [384.0, 140.0],
        [250.0, 300.0],
        [400.0, 420.0],
    ];
    let mut heavy = Vec::new();
    let mut light = Vec::new();
    for i in -3..30i64 {
        for j in -3..30i64 {
            let (fi, fj) = (i as f64, j as f64);
            let p = [
                o[0] + fi * a1[0] + fj * a2[0],
                o[1] + fi * a1[1] + fj * a2[1],
            ];
            if p[0] > -a && p[0] < n as f64 + a && p[1] > -a && p[1] < n as f64 + a {
                heavy.push(p);
            }
            let q = [p[0] + 0.5 * (a1[0] + a2[0]), p[1] + 0.5 * (a1[1] + a2[1])];
            if q[0] > -a && q[0] < n as f64 + a && q[1] > -a && q[1] < n as f64 + a {
                light.push(q);
            }
        }
    }
    for v in vac {
        let k = (0..heavy.len())
            .min_by(|&x, &y| {
                let d = |p: [f64; 2]| (p[0] - v[0]).powi(2) + (p[1] - v[1]).powi(2);
                d(heavy[x]).total_cmp(&d(heavy[y]))
            })
            .unwrap();
        heavy.remove(k);
    }
    let mut img = Array2::<f64>::from_elem((n, n), 0.03);
    let mut draw = |p: [f64; 2], amp: f64, s: f64| {
        let reach = 5.0 * s;
        let (x0, x1) = (
            (p[0] - reach).floor().max(0.0) as usize,
            ((p[0] + reach).ceil().min(n as f64 - 1.0)),
        );
        let (y0, y1) = (
            (p[1] - reach).floor().max(0.0) as usize,
            ((p[1] + reach).ceil().min(n as f64 - 1.0)),
        );
        if x1 < 0.0 || y1 < 0.0 {
            return;
        }
        for y in y0..=y1 as usize {
            for x in x0..=x1 as usize {
                let d2 = (x as f64 - p[0]).powi(2) + (y as f64 - p[1]).powi(2);
                if d2 <= reach * reach {
                    img[[y, x]] += amp * (-d2 / (2.0 * s * s)).exp();
                }
            }
        }
    };
    for &p in &heavy {
        draw(p, 1.0, 2.2);
    }
    for &p in &light {
        draw(p, 0.45, 2.0);
    }
    let mean = img.mean().unwrap();
    img.mapv_inplace(|v| v / mean);
    let heavy_yx = heavy.iter().map(|p| [p[1], p[0]]).collect();
    (img, heavy_yx)
}

/// Column RMS error (px) of the heavy columns > 12 px from the border (§1.3 of the notes):
/// arg-max in the 7×7 window at the rounded truth, then log-parabola refinement in x and y.
fn column_rms(img: &Array2<f32>, heavy: &[[f64; 2]]) -> f64 {
    let (ny, nx) = img.dim();
    let mut sum = 0.0;
    let mut cnt = 0;
    for p in heavy {
        if p[0] <= 12.0
            || p[1] <= 12.0
            || p[0] >= ny as f64 - 1.0 - 12.0
            || p[1] >= nx as f64 - 1.0 - 12.0
        {
            continue;
        }
        let (cy, cx) = (p[0].round() as i64, p[1].round() as i64);
        let mut best = (f32::MIN, 0i64, 0i64);
        for dy in -3..=3 {
            for dx in -3..=3 {
                let v = img[[(cy + dy) as usize, (cx + dx) as usize]];
                if v > best.0 {
                    best = (v, cy + dy, cx + dx);
                }
            }
        }
        let l = |y: i64, x: i64| f64::from(img[[y as usize, x as usize]]).max(1e-3).ln();
        let off = |a: f64, b: f64, c: f64| {
            let den = a - 2.0 * b + c;
            if den < 0.0 {
                (0.5 * (a - c) / den).clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        let (y, x) = (best.1, best.2);
        let ry = y as f64 + off(l(y - 1, x), l(y, x), l(y + 1, x));
        let rx = x as f64 + off(l(y, x - 1), l(y, x), l(y, x + 1));
        sum += (ry - p[0]).powi(2) + (rx - p[1]).powi(2);
        cnt += 1;
    }
    (sum / cnt as f64).sqrt()
}

/// A benchmarked method: returns the estimate and a note (the filter strength).
type Method<'a> = Box<dyn Fn() -> (Array2<f32>, String) + 'a>;

/// CPU time (user + system, s) of this process from `/proc/self/stat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the ")".
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let out_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/denoise/out".into());
    std::fs::create_dir_all(&out_dir).unwrap();
    let (unit, heavy) = lattice_image();
    let heavy_arr = Array2::from_shape_fn((heavy.len(), 2), |(i, k)| heavy[i][k]);
    write_npy(format!("{out_dir}/heavy_columns.npy"), &heavy_arr).unwrap();
    let mut times = String::from("method,dose,wall_s,cpu_s,h\n");
    println!("| dose | method | PSNR dB | SSIM | column RMS px | wall s | h |");
    println!("|---|---|---|---|---|---|---|");
    for dose in [5.0f64, 20.0, 100.0] {
        let clean = unit.mapv(|v| (v * dose) as f32);
        let noisy = stem_core::noise::poisson(clean.view(), 20240601 + dose as u64).unwrap();
        write_npy(format!("{out_dir}/clean_{dose}.npy"), &clean).unwrap();
        write_npy(format!("{out_dir}/noisy_{dose}.npy"), &noisy).unwrap();
        let peak = f64::from(clean.fold(0.0f32, |a, &b| a.max(b)));
        let range = peak - f64::from(clean.fold(f32::MAX, |a, &b| a.min(b)));
        let score = |name: &str, est: &Array2<f32>, secs: f64, h: String| {
            let p = psnr(clean.view(), est.view(), peak).unwrap();
            let s = ssim(clean.view(), est.view(), &SsimConfig::new(range)).unwrap();
            let c = column_rms(est, &heavy);
            println!("| {dose} | {name} | {p:.2} | {s:.4} | {c:.3} | {secs:.3} | {h} |");
        };
        score("noisy", &noisy, 0.0, String::new());
        let methods: Vec<(&str, Method<'_>)> = vec![
            (
                "gaussian σ=1",
                Box::new(|| {
                    let d = GaussianDenoiser::new(1.0).unwrap();
                    (
                        d.denoise((&noisy).into(), &NoProgress)
                            .unwrap()
                            .into_array(),
                        String::new(),
                    )
                }),
            ),
            (
                "nlm psnr",
                Box::new(|| {
                    let d = Nlm::new(NlmConfig::preset(Preset::Psnr)).unwrap();
                    let (img, rep) = d.denoise_with_report((&noisy).into(), &NoProgress).unwrap();
                    (img.into_array(), format!("{:.2}", rep.h))
                }),
            ),
            (
                "nlm precision",
                Box::new(|| {
                    let d = Nlm::new(NlmConfig::preset(Preset::Precision)).unwrap();
                    let (img, rep) = d.denoise_with_report((&noisy).into(), &NoProgress).unwrap();
                    (img.into_array(), format!("{:.2}", rep.h))
                }),
            ),
            (
                "bm3d periodic",
                Box::new(|| {
                    let d = Bm3d::new(Bm3dConfig::default()).unwrap();
                    let (img, rep) = d.denoise_with_report((&noisy).into(), &NoProgress).unwrap();
                    let note = format!(
                        "B={} groups {:.1}/{:.1}",
                        rep.block_px, rep.mean_group_ht, rep.mean_group_wiener
                    );
                    (img.into_array(), note)
                }),
            ),
            (
                "bm3d local",
                Box::new(|| {
                    let d = Bm3d::new(Bm3dConfig::local(12)).unwrap();
                    let (img, rep) = d.denoise_with_report((&noisy).into(), &NoProgress).unwrap();
                    let note = format!(
                        "B={} groups {:.1}/{:.1}",
                        rep.block_px, rep.mean_group_ht, rep.mean_group_wiener
                    );
                    (img.into_array(), note)
                }),
            ),
        ];
        for (name, f) in methods {
            let (t, c) = (Instant::now(), cpu_seconds());
            let (est, h) = f();
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - c;
            let tag = name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("_")
                .replace('σ', "s")
                .replace('=', "");
            write_npy(format!("{out_dir}/ours_{tag}_{dose}.npy"), &est).unwrap();
            times.push_str(&format!("{tag},{dose},{secs:.4},{cpu:.3},{h}\n"));
            score(name, &est, secs, h);
        }
    }
    std::fs::write(format!("{out_dir}/ours_times.csv"), times).unwrap();
}
