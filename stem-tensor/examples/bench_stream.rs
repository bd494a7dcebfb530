//! End-to-end out-of-core run: a generated Poisson 4D-STEM cube written to an NPY file chunk by
//! chunk, denoised from disk by [`StreamedDenoiser`] (lazy NPY through `stem_core::io::open`),
//! the output written chunk by chunk to another NPY file, and the PSNR against the clean cube
//! computed streamed (the clean frames are regenerated, never stored).
//!
//! ```text
//! cargo run --release -p stem-tensor --example bench_stream -- gen OUT_DIR [SCAN] [DET] [DOSE]
//! cargo run --release -p stem-tensor --example bench_stream -- run OUT_DIR [SCAN] [DET] [DOSE]
//! ```
//!
//! `gen` writes `OUT_DIR/stream_noisy.npy` (`[SCAN, SCAN, DET, DET]` f32; default 256, 80,
//! 1000 e⁻ per pattern: 1.68 GB). `run` denoises it into `OUT_DIR/stream_denoised.npy`, prints
//! wall and CPU time of the denoiser, the peak anonymous and file-backed resident memory
//! (sampled every 20 ms from `/proc/self/status`; the input is memory-mapped, so its pages
//! count as file-backed RSS, reclaimable page cache), the ranks, and the PSNR of the noisy and
//! denoised cubes. The caller deletes the files.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use stem_tensor::stream::{FrameSink, NpyWriter, StreamConfig, StreamedDenoiser};
use stem_tensor::synth::{abundances, prototypes};

/// Prints every stage start with the wall and CPU time since the run began (`STAGES=1`).
struct StageLog {
    t0: Instant,
    c0: f64,
    on: bool,
}

impl stem_core::Progress for StageLog {
    fn start(&self, stage: &str, _total: u64) {
        if self.on {
            println!(
                "  stage {stage:<12} at wall {:7.2} s, cpu {:7.2} s",
                self.t0.elapsed().as_secs_f64(),
                cpu_seconds() - self.c0
            );
        }
    }
}

fn cpu_seconds() -> f64 {
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

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Clean frames `first .. first + count` (row-major), `dose` electrons per pattern.
struct Clean {
    scan: usize,
    det: usize,
    dose: f64,
    p: Vec<Vec<f64>>,
    a: Vec<ndarray::Array2<f64>>,
}

impl Clean {
    fn new(scan: usize, det: usize, dose: f64) -> Self {
        Clean {
            scan,
            det,
            dose,
            p: prototypes(det)
                .into_iter()
                .map(|m| m.into_raw_vec_and_offset().0)
                .collect(),
            a: abundances(scan),
        }
    }
    fn frames(&self, first: usize, out: &mut [f64]) {
        let n = self.det * self.det;
        out.par_chunks_mut(n).enumerate().for_each(|(i, f)| {
            let idx = first + i;
            let (sy, sx) = (idx / self.scan, idx % self.scan);
            let w: Vec<f64> = (0..4).map(|k| self.a[k][[sy, sx]] * self.dose).collect();
            for (j, v) in f.iter_mut().enumerate() {
                *v = w[0] * self.p[0][j]
                    + w[1] * self.p[1][j]
                    + w[2] * self.p[2][j]
                    + w[3] * self.p[3][j];
            }
        });
    }
}

fn psnr_streamed(path: &str, clean: &Clean) -> f64 {
    let ds = stem_core::io::open(path).unwrap();
    let sig = ds.first().unwrap();
    let src = sig.frame_source();
    let n = src.frame_len();
    let chunk = 1024;
    let mut buf = vec![0.0f32; chunk * n];
    let mut cl = vec![0.0f64; chunk * n];
    let (mut sse, mut peak) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < src.n_frames() {
        let count = chunk.min(src.n_frames() - start);
        src.read_frames(start, &mut buf[..count * n]).unwrap();
        clean.frames(start, &mut cl[..count * n]);
        // The clean values are rounded to f32 as in the in-memory benchmark.
        let (s, p) = cl[..count * n]
            .par_chunks(n)
            .zip(buf[..count * n].par_chunks(n))
            .map(|(c, b)| {
                c.iter().zip(b).fold((0.0f64, 0.0f64), |(s, p), (&c, &b)| {
                    let c = f64::from(c as f32);
                    (s + (c - f64::from(b)).powi(2), p.max(c))
                })
            })
            .reduce(|| (0.0, 0.0), |x, y| (x.0 + y.0, x.1.max(y.1)));
        sse += s;
        peak = peak.max(p);
        start += count;
    }
    let mse = sse / (src.n_frames() * n) as f64;
    10.0 * (peak * peak / mse).log10()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "run".into());
    let out_dir = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "bench/tensor/out".into());
    let scan: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(256);
    let det: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(80);
    let dose: f64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1000.0);
    std::fs::create_dir_all(&out_dir).unwrap();
    let noisy_path = format!("{out_dir}/stream_noisy.npy");
    let out_path = format!("{out_dir}/stream_denoised.npy");
    let clean = Clean::new(scan, det, dose);
    let n = det * det;
    let n_frames = scan * scan;
    if mode == "gen" {
        let t0 = Instant::now();
        let mut w = NpyWriter::create(&noisy_path, &[scan, scan, det, det]).unwrap();
        let chunk = 1024;
        let mut cl = vec![0.0f64; chunk * n];
        let mut out = vec![0.0f32; chunk * n];
        let mut start = 0;
        while start < n_frames {
            let count = chunk.min(n_frames - start);
            clean.frames(start, &mut cl[..count * n]);
            out[..count * n]
                .par_chunks_mut(n)
                .zip(cl[..count * n].par_chunks(n))
                .enumerate()
                .for_each(|(i, (o, c))| {
                    let mut rng = ChaCha8Rng::seed_from_u64(20261121);
                    rng.set_stream((start + i) as u64);
                    for (a, &m) in o.iter_mut().zip(c) {
                        let m = f64::from(m as f32);
                        *a = match Poisson::new(m) {
                            Ok(d) => d.sample(&mut rng) as f32,
                            Err(_) => 0.0,
                        };
                    }
                });
            w.write_frames(start, n, &out[..count * n]).unwrap();
            start += count;
        }
        w.finish().unwrap();
        let bytes = std::fs::metadata(&noisy_path).unwrap().len();
        println!(
            "generated {noisy_path}: [{scan}, {scan}, {det}, {det}] f32, {:.3} GB, dose {dose}, {:.1} s",
            bytes as f64 / 1e9,
            t0.elapsed().as_secs_f64()
        );
        return;
    }
    // run
    let stop = Arc::new(AtomicBool::new(false));
    let (peak_anon, peak_file) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (stop, pa, pf) = (stop.clone(), peak_anon.clone(), peak_file.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                pa.fetch_max(status_kb("RssAnon:"), Ordering::Relaxed);
                pf.fetch_max(status_kb("RssFile:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let ds = stem_core::io::open(&noisy_path).unwrap();
    let sig = ds.first().unwrap();
    assert!(sig.is_lazy(), "the input must be memory-mapped, not loaded");
    let src = sig.frame_source();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let log = StageLog {
        t0,
        c0,
        on: std::env::var_os("STAGES").is_some(),
    };
    let mut w = NpyWriter::create(&out_path, &sig.shape()).unwrap();
    // Optional overrides for experiments: EXACT_SWEEPS, POWER_PASSES, OVERSAMPLING, CHUNK.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let d = StreamConfig::default();
    let config = StreamConfig {
        exact_sweeps: env("EXACT_SWEEPS").unwrap_or(d.exact_sweeps),
        sketch_power_passes: env("POWER_PASSES").unwrap_or(d.sketch_power_passes),
        sketch_oversampling: env("OVERSAMPLING").unwrap_or(d.sketch_oversampling),
        frames_per_chunk: env("CHUNK").unwrap_or(d.frames_per_chunk),
        ..d
    };
    let r = StreamedDenoiser::new(config)
        .unwrap()
        .run(src.as_ref(), &mut w, &log)
        .unwrap();
    w.finish().unwrap();
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let input_gb = std::fs::metadata(&noisy_path).unwrap().len() as f64 / 1e9;
    println!(
        "stream_denoise\tinput {input_gb:.3} GB\twall {wall:.2} s\tcpu {cpu:.2} s\tpeak RssAnon {:.0} MB\tpeak RssFile {:.0} MB\tranks {:?}\tsweeps {}\tpasses {}\tchunk {} frames",
        peak_anon.load(Ordering::Relaxed) as f64 / 1024.0,
        peak_file.load(Ordering::Relaxed) as f64 / 1024.0,
        r.ranks,
        r.tucker.sweeps,
        r.data_passes,
        r.frames_per_chunk
    );
    let t1 = Instant::now();
    let p_noisy = psnr_streamed(&noisy_path, &clean);
    let p_out = psnr_streamed(&out_path, &clean);
    println!(
        "psnr\tnoisy {p_noisy:.2} dB\tdenoised {p_out:.2} dB\t(streamed PSNR passes {:.1} s)",
        t1.elapsed().as_secs_f64()
    );
}
