//! Synthetic 4D-STEM cubes with a known low-rank structure (ground truth for tests and
//! benchmarks), after `peer-benchmarks.md` §1.5.
//!
//! Clean data `dose · Σ_k A_k(sy, sx) P_k(ky, kx)` with four detector prototypes (vacuum /
//! amorphous ring, square zone axis, hexagonal, systematic row; disks of radius 5 px with a
//! logistic edge of width 0.7 px, each prototype normalised to sum 1) and four abundance maps
//! (a curved phase boundary, periodic modulations, a thickness ramp; `Σ_k A_k = 1`). At the
//! reference size 64⁴ the scan × detector matrix has rank 4. Detector geometry scales with the
//! detector size (`d / 64`).

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use rayon::prelude::*;
use std::f64::consts::PI;

fn disk(ky: f64, kx: f64, cy: f64, cx: f64, radius: f64, edge: f64) -> f64 {
    let d = ((ky - cy).powi(2) + (kx - cx).powi(2)).sqrt();
    1.0 / (1.0 + ((d - radius) / edge).exp())
}

/// The four detector prototypes `P_k` (`det × det`, each summing to 1).
pub fn prototypes(det: usize) -> Vec<Array2<f64>> {
    let s = det as f64 / 64.0;
    let c = det as f64 / 2.0;
    let r = 5.0 * s;
    let e = 0.7 * s;
    let mut out = Vec::with_capacity(4);
    for k in 0..4 {
        let p = Array2::from_shape_fn((det, det), |(y, x)| {
            let (y, x) = (y as f64, x as f64);
            let mut v = disk(y, x, c, c, r, e);
            match k {
                0 => {
                    let d = ((y - c).powi(2) + (x - c).powi(2)).sqrt();
                    v += 0.02 * (-(d - 18.0 * s).powi(2) / (2.0 * (4.0 * s).powi(2))).exp();
                }
                1 => {
                    let g = 13.0 * s;
                    for (dy, dx, a) in [
                        (g, 0.0, 0.35),
                        (-g, 0.0, 0.35),
                        (0.0, g, 0.35),
                        (0.0, -g, 0.35),
                        (g, g, 0.15),
                        (g, -g, 0.15),
                        (-g, g, 0.15),
                        (-g, -g, 0.15),
                    ] {
                        v += a * disk(y, x, c + dy, c + dx, r, e);
                    }
                }
                2 => {
                    for m in 0..6 {
                        let t = (10.0 + 60.0 * m as f64).to_radians();
                        let g = 14.0 * s;
                        v += 0.3 * disk(y, x, c + g * t.sin(), c + g * t.cos(), r, e);
                    }
                }
                _ => {
                    let t = 30f64.to_radians();
                    for (n, a) in [(1.0, 0.5), (2.0, 0.2), (3.0, 0.1)] {
                        let g = n * 11.0 * s;
                        v += a * disk(y, x, c + g * t.sin(), c + g * t.cos(), r, e);
                        v += a * disk(y, x, c - g * t.sin(), c - g * t.cos(), r, e);
                    }
                }
            }
            v
        });
        let sum = p.sum();
        out.push(p / sum);
    }
    out
}

/// The four abundance maps `A_k` (`scan × scan`, non-negative, summing to 1 per position).
pub fn abundances(scan: usize) -> Vec<Array2<f64>> {
    let f = scan as f64 / 64.0;
    let m = Array2::from_shape_fn((scan, scan), |(sy, sx)| {
        let (sy, sx) = (sy as f64 / f, sx as f64 / f);
        0.5 * (1.0 + ((sx - 34.0 - 4.0 * (2.0 * PI * sy / 64.0).sin()) / 2.0).tanh())
    });
    let a1 = Array2::from_shape_fn((scan, scan), |(sy, sx)| {
        let (y, x) = (sy as f64 / f, sx as f64 / f);
        (1.0 - m[[sy, sx]])
            * (0.45 + 0.25 * (2.0 * PI * x / 8.0).cos() * (2.0 * PI * y / 8.0).cos())
    });
    let a2 = Array2::from_shape_fn((scan, scan), |(sy, sx)| {
        let (y, x) = (sy as f64 / f, sx as f64 / f);
        m[[sy, sx]] * (0.45 + 0.25 * (2.0 * PI * (x + y / 2.0) / 7.0).cos())
    });
    let a3 = Array2::from_shape_fn((scan, scan), |(sy, sx)| {
        0.25 * (sy as f64 / (scan as f64 - 1.0).max(1.0)) * (1.0 - m[[sy, sx]])
    });
    let a0 = Array2::from_shape_fn((scan, scan), |i| 1.0 - a1[i] - a2[i] - a3[i]);
    vec![a0, a1, a2, a3]
}

/// Clean cube `[scan, scan, det, det]` with `dose` electrons per pattern.
///
/// # Errors
/// [`Error::InvalidParameter`] for a zero size or a dose that is not finite and positive.
pub fn clean_cube(scan: usize, det: usize, dose: f64) -> Result<ArrayD<f32>> {
    if scan == 0 || det == 0 {
        return Err(Error::invalid("scan/det", "sizes must be at least 1"));
    }
    if !(dose.is_finite() && dose > 0.0) {
        return Err(Error::invalid("dose", format!("must be > 0, got {dose}")));
    }
    let p = prototypes(det);
    let a = abundances(scan);
    let n_sig = det * det;
    let mut out = vec![0.0f32; scan * scan * n_sig];
    out.par_chunks_mut(n_sig)
        .enumerate()
        .for_each(|(i, frame)| {
            let (sy, sx) = (i / scan, i % scan);
            for (j, v) in frame.iter_mut().enumerate() {
                let (ky, kx) = (j / det, j % det);
                let s: f64 = (0..4).map(|k| a[k][[sy, sx]] * p[k][[ky, kx]]).sum();
                *v = (dose * s) as f32;
            }
        });
    ArrayD::from_shape_vec(IxDyn(&[scan, scan, det, det]), out)
        .map_err(|e| Error::invalid("cube", e.to_string()))
}

/// Poisson counts of a clean cube (frames are rows of the last `sig_dims` axes; frame `i`
/// draws from ChaCha8 stream `i` of `seed`, so results do not depend on the thread count).
///
/// # Errors
/// [`Error::Negative`] / [`Error::NonFinite`] for invalid means.
pub fn poisson_cube(clean: &ArrayD<f32>, frame_len: usize, seed: u64) -> Result<ArrayD<f32>> {
    if frame_len == 0 || clean.len() % frame_len != 0 {
        return Err(Error::invalid(
            "frame_len",
            format!("{frame_len} does not divide the size"),
        ));
    }
    if let Some((index, &v)) = clean
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(if v.is_finite() {
            Error::Negative {
                index,
                value: f64::from(v),
            }
        } else {
            Error::NonFinite {
                what: "clean",
                index,
            }
        });
    }
    let src: Vec<f32> = clean.iter().copied().collect();
    let mut out = vec![0.0f32; src.len()];
    out.par_chunks_mut(frame_len)
        .zip(src.par_chunks(frame_len))
        .enumerate()
        .for_each(|(i, (o, s))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            for (a, &m) in o.iter_mut().zip(s) {
                *a = match Poisson::new(f64::from(m)) {
                    Ok(d) => d.sample(&mut rng) as f32,
                    Err(_) => 0.0,
                };
            }
        });
    ArrayD::from_shape_vec(clean.raw_dim(), out).map_err(|e| Error::invalid("cube", e.to_string()))
}
