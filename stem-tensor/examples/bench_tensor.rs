//! Benchmark of the tensor denoiser on the synthetic 4D-STEM cubes of `peer-benchmarks.md` §1.5.
//!
//! `cargo run --release -p stem-tensor --example bench_tensor -- [OUT_DIR] [SCAN] [DET]`
//!
//! For each dose (200, 1000, 10 000 e⁻/pattern): generates the clean cube and its Poisson
//! counts, writes `clean_{dose}.npy` / `noisy_{dose}.npy` (f32) into OUT_DIR for the Python
//! peers, and prints one line per method: PSNR (dB), wall time (s), ranks.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;
use stem_core::{Hypercube, NoProgress};
use stem_tensor::denoise::{DenoiseConfig, Ranks, TensorDenoiser, pca_denoise, psnr};
use stem_tensor::synth::{clean_cube, poisson_cube};
use stem_tensor::tucker::StopRule;

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc/self/stat (Linux), in clock ticks of 100 Hz.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out_dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "bench/tensor/out".into());
    let scan: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let det: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    std::fs::create_dir_all(&out_dir).unwrap();
    println!("method\tdose\tpsnr_db\twall_s\tcpu_s\tranks\tsweeps");
    for dose in [200.0, 1000.0, 10000.0] {
        let clean = clean_cube(scan, det, dose).unwrap();
        let noisy = poisson_cube(&clean, det * det, 20240601 + 100 + dose as u64).unwrap();
        stem_core::io::npy::write_npy(format!("{out_dir}/clean_{dose}.npy"), &clean).unwrap();
        stem_core::io::npy::write_npy(format!("{out_dir}/noisy_{dose}.npy"), &noisy).unwrap();
        let cube = Hypercube::new(noisy.clone(), 2).unwrap();
        println!(
            "noisy\t{dose}\t{:.2}\t-\t-\t-",
            psnr(clean.view(), noisy.view()).unwrap()
        );
        let run = |name: &str, config: DenoiseConfig| {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            let r = TensorDenoiser::new(config)
                .unwrap()
                .run(cube.view(), &NoProgress)
                .unwrap();
            let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            let p = psnr(clean.view(), r.denoised.view()).unwrap();
            println!(
                "{name}\t{dose}\t{p:.2}\t{wall:.3}\t{cpu:.2}\t{:?}\t{}",
                r.ranks, r.sweeps
            );
            if name == "kk_hooi_auto" {
                stem_core::io::npy::write_npy(format!("{out_dir}/ours_{dose}.npy"), &r.denoised)
                    .unwrap();
            }
        };
        run("kk_hooi_auto", DenoiseConfig::default());
        run(
            "kk_hooi_32_22_4",
            DenoiseConfig {
                ranks: Ranks::Fixed(vec![32, 22, 4]),
                ..Default::default()
            },
        );
        run(
            "raw_hooi_32_22_4",
            DenoiseConfig {
                ranks: Ranks::Fixed(vec![32, 22, 4]),
                poisson_scaling: false,
                ..Default::default()
            },
        );
        // The same fit stopped by tensorly's rule (|Δ relative error| < 1e-4 from sweep 3 on,
        // at most 100 sweeps), as tensorly's `tucker` is run by peer.py.
        run(
            "raw_hooi_32_22_4_tlstop",
            DenoiseConfig {
                ranks: Ranks::Fixed(vec![32, 22, 4]),
                poisson_scaling: false,
                max_sweeps: 100,
                tolerance: 1e-4,
                stop: StopRule::ErrorChange,
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        let pca = pca_denoise(cube.view(), 4, true).unwrap();
        println!(
            "kk_pca_4\t{dose}\t{:.2}\t{:.3}\t-\t[4]",
            psnr(clean.view(), pca.view()).unwrap(),
            t0.elapsed().as_secs_f64()
        );
    }
}
