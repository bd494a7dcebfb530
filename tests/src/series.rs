//! Image series with known rigid shifts and smooth row (scan) distortions, with Poisson noise:
//! the registration series of `shared/reference/peer-benchmarks.md` §1.6.
//!
//! Specimen S: a square two-species lattice (a = 20 px, rotated 4°, heavy columns amplitude 1.00
//! σ 2.2 px, light columns at the cell centre amplitude 0.45 σ 2.0 px), an optional amorphous
//! disc (random blobs) that makes absolute shifts identifiable, background 0.03, scaled to the
//! requested mean counts per pixel. Frame f pixel `(r, c)` is a Poisson draw of S rendered
//! analytically at `y = r + sy + v(r)`, `x = c + sx + u(r)` with
//! `u(r) = A sin(2πr/λ + φ) + white(r) + c_shear (r − r̄)/ny` and `v(r) = e (r − r̄)/ny`.
//!
//! Positions are `[y, x]` in px unless a name says otherwise. With the registration convention
//! (`warped(p) = frame(p − d(p))`, fields on the specimen grid) the true field of frame f is
//! `d(Y) = (sy + v(r'), sx + u(r'))` where `r' + sy + v(r') = Y`.
//!
//! This file only depends on stem-core, ndarray and the rand crates so that benchmark
//! examples can include it with `#[path]`.

#![allow(clippy::needless_range_loop)]

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Parameters of [`generate_series`]. Defaults: the reference series of peer-benchmarks.md §1.6.
#[derive(Clone, Debug)]
pub struct SeriesConfig {
    /// Frame shape `[ny, nx]` (px).
    pub shape: [usize; 2],
    /// Number of frames.
    pub frames: usize,
    /// Mean of the specimen (counts/px) over the grid.
    pub mean_counts: f64,
    /// Lattice constant (px).
    pub lattice_a_px: f64,
    /// Lattice rotation (degrees).
    pub rotation_deg: f64,
    /// Rigid shifts are uniform in ±this (px), per axis.
    pub max_shift_px: f64,
    /// Range of the sinusoidal x-jitter amplitude (px).
    pub jitter_amplitude_px: [f64; 2],
    /// Range of the sinusoidal x-jitter period (rows).
    pub jitter_period_rows: [f64; 2],
    /// Shear (x) and stretch (y) are uniform in ±this (px over the frame).
    pub shear_max_px: f64,
    /// Standard deviation (px) of the white row jitter before smoothing.
    pub white_jitter_px: f64,
    /// σ (rows) of the Gaussian that smooths the white jitter along the rows.
    pub white_smoothing_rows: f64,
    /// The amorphous disc: centre `[y, x]` and radius (px); `None` for a perfect lattice.
    pub disc: Option<([f64; 2], f64)>,
    /// Whether to draw Poisson noise (false: the expected counts).
    pub noise: bool,
    /// Amplitude scale (px) of the smooth 2-D distortion (0 = none, the default, which gives
    /// exactly the row-only series). Per frame and per component two plane waves
    /// `a·sin(2π k·p/Λ + φ)` with `a` uniform in [0.5, 1]·this, random direction and phase,
    /// Λ uniform in `smooth_2d_wavelength_px` (drawn from seed + 13).
    pub smooth_2d_px: f64,
    /// Wavelength range (px) of the 2-D plane waves.
    pub smooth_2d_wavelength_px: [f64; 2],
    /// Base seed (disc: seed + 7, distortions: seed + 11, 2-D waves: seed + 13, noise:
    /// seed + 1000 + frame).
    pub seed: u64,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig {
            shape: [512, 512],
            frames: 20,
            mean_counts: 10.0,
            lattice_a_px: 20.0,
            rotation_deg: 4.0,
            max_shift_px: 12.0,
            jitter_amplitude_px: [0.5, 1.5],
            jitter_period_rows: [60.0, 160.0],
            shear_max_px: 2.0,
            white_jitter_px: 0.25,
            white_smoothing_rows: 1.0,
            disc: Some(([140.0, 380.0], 70.0)),
            noise: true,
            smooth_2d_px: 0.0,
            smooth_2d_wavelength_px: [120.0, 300.0],
            seed: 20_240_601,
        }
    }
}

impl SeriesConfig {
    /// A smaller series for fast tests: `n`² frames, scaled disc, same physics.
    pub fn small(n: usize, frames: usize) -> Self {
        let s = n as f64 / 512.0;
        SeriesConfig {
            shape: [n, n],
            frames,
            disc: Some(([140.0 * s, 380.0 * s], 70.0 * s)),
            ..Default::default()
        }
    }
}

/// A generated series with its ground truth.
#[derive(Clone, Debug)]
pub struct GeneratedSeries {
    /// Frames `[frame, y, x]` (counts).
    pub frames: Array3<f32>,
    /// The undistorted specimen S on the frame grid (expected counts).
    pub specimen: Array2<f32>,
    /// Drawn rigid shifts `[sy, sx]` (px).
    pub drawn_shifts: Vec<[f64; 2]>,
    /// Per frame, the x distortion u(r) per frame row (px).
    pub row_u: Vec<Vec<f64>>,
    /// Per frame, the y distortion v(r) per frame row (px).
    pub row_v: Vec<Vec<f64>>,
    /// Heavy-column positions `[y, x]` in specimen coordinates (px), lattice sites only.
    pub heavy_columns: Vec<[f64; 2]>,
    /// Light-column positions `[y, x]` in specimen coordinates (px), lattice sites only.
    pub light_columns: Vec<[f64; 2]>,
    /// Per frame, the plane waves of the smooth 2-D distortion (empty without one).
    pub waves: Vec<Vec<Wave>>,
}

/// One plane wave of the 2-D distortion: adds `amp·sin(ky·r + kx·c + phase)` (px) to component
/// `comp` (0 = y, 1 = x) of the displacement at frame pixel `(r, c)`.
#[derive(Clone, Copy, Debug)]
pub struct Wave {
    /// Component: 0 = y, 1 = x.
    pub comp: usize,
    /// Amplitude (px).
    pub amp: f64,
    /// Wave vector (rad/px) along y and x.
    pub k: [f64; 2],
    /// Phase (rad).
    pub phase: f64,
}

fn wave_displacement(waves: &[Wave], r: f64, c: f64) -> [f64; 2] {
    let mut d = [0.0; 2];
    for w in waves {
        d[w.comp] += w.amp * (w.k[0] * r + w.k[1] * c + w.phase).sin();
    }
    d
}

struct Site {
    y: f64,
    x: f64,
    amp: f64,
    sigma: f64,
}

impl GeneratedSeries {
    /// Effective rigid shift of frame f: drawn shift plus the row-mean of the distortion.
    pub fn effective_shift(&self, f: usize) -> [f64; 2] {
        let n = self.row_u[f].len() as f64;
        [
            self.drawn_shifts[f][0] + self.row_v[f].iter().sum::<f64>() / n,
            self.drawn_shifts[f][1] + self.row_u[f].iter().sum::<f64>() / n,
        ]
    }

    /// Effective shift of frame f relative to frame 0 (what a rigid registration of frame f
    /// onto frame 0 should return).
    pub fn relative_shift(&self, f: usize) -> [f64; 2] {
        let (a, b) = (self.effective_shift(f), self.effective_shift(0));
        [a[0] - b[0], a[1] - b[1]]
    }

    /// The true row field of frame f on the specimen grid: `(dy(Y), dx(Y))` for Y = 0..ny,
    /// found by 8 fixed-point iterations of `r' = Y − sy − v(r')` with v and u linearly
    /// interpolated between rows (clamped at the ends).
    pub fn true_row_field(&self, f: usize) -> (Vec<f64>, Vec<f64>) {
        let ny = self.row_u[f].len();
        let [sy, sx] = self.drawn_shifts[f];
        let interp = |a: &[f64], r: f64| -> f64 {
            let r = r.clamp(0.0, (ny - 1) as f64);
            let i = (r.floor() as usize).min(ny - 2);
            let t = r - i as f64;
            a[i] * (1.0 - t) + a[i + 1] * t
        };
        let mut dy = vec![0.0; ny];
        let mut dx = vec![0.0; ny];
        for yy in 0..ny {
            let mut r = yy as f64 - sy;
            for _ in 0..8 {
                r = yy as f64 - sy - interp(&self.row_v[f], r);
            }
            dy[yy] = sy + interp(&self.row_v[f], r);
            dx[yy] = sx + interp(&self.row_u[f], r);
        }
        (dy, dx)
    }

    /// RMS (px, over frames, rows and both components) of the distortion left after removing
    /// each frame's mean shift.
    pub fn intrinsic_nonrigid_rms(&self) -> f64 {
        let mut acc = 0.0;
        let mut n = 0usize;
        for f in 0..self.row_u.len() {
            let mu = self.row_u[f].iter().sum::<f64>() / self.row_u[f].len() as f64;
            let mv = self.row_v[f].iter().sum::<f64>() / self.row_v[f].len() as f64;
            for (u, v) in self.row_u[f].iter().zip(&self.row_v[f]) {
                acc += (u - mu).powi(2) + (v - mv).powi(2);
                n += 2;
            }
        }
        (acc / n as f64).sqrt()
    }
}

fn lattice_sites(cfg: &SeriesConfig) -> (Vec<Site>, Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let [ny, nx] = cfg.shape;
    let t = cfg.rotation_deg.to_radians();
    let a = cfg.lattice_a_px;
    let a1 = [a * t.sin(), a * t.cos()]; // [y, x]
    let a2 = [a * t.cos(), -a * t.sin()];
    let origin = [11.6, 7.3];
    let margin = 2.0 * a + cfg.max_shift_px + 4.0;
    let span = ((ny.max(nx) as f64 + 2.0 * margin) / a).ceil() as i64 + 2;
    let inside_disc = |p: [f64; 2]| match cfg.disc {
        Some((c, r)) => (p[0] - c[0]).hypot(p[1] - c[1]) < r,
        None => false,
    };
    let (mut sites, mut heavy, mut light) = (Vec::new(), Vec::new(), Vec::new());
    for i in -span..=span {
        for j in -span..=span {
            for (frac, amp, sigma) in [(0.0, 1.0, 2.2), (0.5, 0.45, 2.0)] {
                let (fi, fj) = (i as f64 + frac, j as f64 + frac);
                let p = [
                    origin[0] + fi * a1[0] + fj * a2[0],
                    origin[1] + fi * a1[1] + fj * a2[1],
                ];
                if p[0] < -margin
                    || p[1] < -margin
                    || p[0] > ny as f64 + margin
                    || p[1] > nx as f64 + margin
                    || inside_disc(p)
                {
                    continue;
                }
                sites.push(Site {
                    y: p[0],
                    x: p[1],
                    amp,
                    sigma,
                });
                if (0.0..ny as f64).contains(&p[0]) && (0.0..nx as f64).contains(&p[1]) {
                    if frac == 0.0 {
                        heavy.push(p)
                    } else {
                        light.push(p)
                    }
                }
            }
        }
    }
    if let Some((c, r)) = cfg.disc {
        // the lattice's number density: 2 columns per a²
        let n = (2.0 * std::f64::consts::PI * r * r / (a * a)).round() as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed + 7);
        for _ in 0..n {
            let rr = r * rng.random::<f64>().sqrt();
            let th = 2.0 * std::f64::consts::PI * rng.random::<f64>();
            sites.push(Site {
                y: c[0] + rr * th.sin(),
                x: c[1] + rr * th.cos(),
                amp: rng.random_range(0.3..0.8),
                sigma: 2.5,
            });
        }
    }
    (sites, heavy, light)
}

/// Renders the sites at displaced coordinates: pixel (r, c) gets S(r + dy[r], c + dx[r]).
fn render(sites: &[Site], shape: [usize; 2], dy: &[f64], dx: &[f64]) -> Array2<f64> {
    let [ny, nx] = shape;
    let mut img = Array2::<f64>::from_elem((ny, nx), 0.03);
    let (dy_min, dy_max) = dy
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    for s in sites {
        let cut = 5.0 * s.sigma;
        let r0 = ((s.y - cut - dy_max).floor().max(0.0)) as usize;
        let r1 = ((s.y + cut - dy_min).ceil().min(ny as f64 - 1.0)).max(-1.0);
        if r1 < 0.0 || r0 >= ny {
            continue;
        }
        let inv = 1.0 / (2.0 * s.sigma * s.sigma);
        for r in r0..=(r1 as usize) {
            let yy = r as f64 + dy[r] - s.y;
            if yy.abs() > cut {
                continue;
            }
            let xc = s.x - dx[r];
            let c0 = (xc - cut).ceil().max(0.0) as usize;
            let c1 = (xc + cut).floor().min(nx as f64 - 1.0);
            if c1 < 0.0 {
                continue;
            }
            let mut row = img.row_mut(r);
            for c in c0..=(c1 as usize) {
                let xx = c as f64 + dx[r] - s.x;
                let d2 = xx * xx + yy * yy;
                if d2 <= cut * cut {
                    row[c] += s.amp * (-d2 * inv).exp();
                }
            }
        }
    }
    img
}

/// Renders the sites at per-pixel displaced coordinates: pixel (r, c) gets
/// S(r + dy[r] + W_y(r, c), c + dx[r] + W_x(r, c)) with W the waves.
fn render_2d(
    sites: &[Site],
    shape: [usize; 2],
    dy: &[f64],
    dx: &[f64],
    waves: &[Wave],
) -> Array2<f64> {
    let [ny, nx] = shape;
    let mut img = Array2::<f64>::from_elem((ny, nx), 0.03);
    let wmax: f64 = waves.iter().map(|w| w.amp.abs()).sum::<f64>();
    let (lo_y, hi_y) = dy
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo_x, hi_x) = dx
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    // displacement of every pixel once
    let disp: Vec<[f64; 2]> = (0..ny * nx)
        .map(|k| {
            let (r, c) = (k / nx, k % nx);
            let w = wave_displacement(waves, r as f64, c as f64);
            [dy[r] + w[0], dx[r] + w[1]]
        })
        .collect();
    for s in sites {
        let cut = 5.0 * s.sigma;
        let r0 = (s.y - cut - hi_y - wmax).floor().max(0.0);
        let r1 = (s.y + cut - lo_y + wmax).ceil().min(ny as f64 - 1.0);
        let c0 = (s.x - cut - hi_x - wmax).floor().max(0.0);
        let c1 = (s.x + cut - lo_x + wmax).ceil().min(nx as f64 - 1.0);
        if r1 < r0 || c1 < c0 {
            continue;
        }
        let inv = 1.0 / (2.0 * s.sigma * s.sigma);
        for r in r0 as usize..=r1 as usize {
            for c in c0 as usize..=c1 as usize {
                let d = disp[r * nx + c];
                let yy = r as f64 + d[0] - s.y;
                let xx = c as f64 + d[1] - s.x;
                let d2 = xx * xx + yy * yy;
                if d2 <= cut * cut {
                    img[[r, c]] += s.amp * (-d2 * inv).exp();
                }
            }
        }
    }
    img
}

fn smooth_rows(values: &[f64], sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        return values.to_vec();
    }
    let r = (4.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|t| (-(t * t) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let ks: f64 = k.iter().sum();
    let n = values.len() as isize;
    (0..n)
        .map(|i| {
            let mut acc = 0.0;
            for (t, w) in (-r..=r).zip(&k) {
                let mut j = i + t;
                // reflect (scipy 'reflect' mode)
                while j < 0 || j >= n {
                    j = if j < 0 { -j - 1 } else { 2 * n - j - 1 };
                }
                acc += w * values[j as usize];
            }
            acc / ks
        })
        .collect()
}

/// Generates the series described by `cfg` (deterministic for a given seed).
pub fn generate_series(cfg: &SeriesConfig) -> GeneratedSeries {
    let [ny, nx] = cfg.shape;
    let (sites, heavy, light) = lattice_sites(cfg);
    let zeros = vec![0.0; ny];
    let spec = render(&sites, cfg.shape, &zeros, &zeros);
    let scale = cfg.mean_counts / spec.mean().unwrap_or(1.0);
    let specimen = spec.mapv(|v| (v * scale) as f32);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed + 11);
    let normal =
        Normal::new(0.0, cfg.white_jitter_px.max(0.0)).unwrap_or(Normal::new(0.0, 0.0).unwrap());
    let rc = (ny as f64 - 1.0) / 2.0;
    let mut frames = Array3::<f32>::zeros((cfg.frames, ny, nx));
    let (mut drawn, mut row_u, mut row_v) = (Vec::new(), Vec::new(), Vec::new());
    let mut wave_rng = ChaCha8Rng::seed_from_u64(cfg.seed + 13);
    let mut all_waves = Vec::new();
    for f in 0..cfg.frames {
        let m = cfg.max_shift_px;
        let sy = rng.random_range(-m..=m);
        let sx = rng.random_range(-m..=m);
        let amp = rng.random_range(cfg.jitter_amplitude_px[0]..=cfg.jitter_amplitude_px[1]);
        let period = rng.random_range(cfg.jitter_period_rows[0]..=cfg.jitter_period_rows[1]);
        let phase = rng.random_range(0.0..2.0 * std::f64::consts::PI);
        let sh = cfg.shear_max_px;
        let c = if sh > 0.0 {
            rng.random_range(-sh..=sh)
        } else {
            0.0
        };
        let e = if sh > 0.0 {
            rng.random_range(-sh..=sh)
        } else {
            0.0
        };
        let white: Vec<f64> = (0..ny).map(|_| normal.sample(&mut rng)).collect();
        let white = smooth_rows(&white, cfg.white_smoothing_rows);
        let u: Vec<f64> = (0..ny)
            .map(|r| {
                let r = r as f64;
                amp * (2.0 * std::f64::consts::PI * r / period + phase).sin()
                    + white[r as usize]
                    + c * (r - rc) / ny as f64
            })
            .collect();
        let v: Vec<f64> = (0..ny).map(|r| e * (r as f64 - rc) / ny as f64).collect();
        let dy: Vec<f64> = v.iter().map(|v| sy + v).collect();
        let dx: Vec<f64> = u.iter().map(|u| sx + u).collect();
        let mut waves = Vec::new();
        if cfg.smooth_2d_px > 0.0 {
            for comp in 0..2 {
                for _ in 0..2 {
                    let amp = cfg.smooth_2d_px * wave_rng.random_range(0.5..=1.0);
                    let lam = wave_rng.random_range(
                        cfg.smooth_2d_wavelength_px[0]..=cfg.smooth_2d_wavelength_px[1],
                    );
                    let th = wave_rng.random_range(0.0..2.0 * std::f64::consts::PI);
                    let kk = 2.0 * std::f64::consts::PI / lam;
                    waves.push(Wave {
                        comp,
                        amp,
                        k: [kk * th.sin(), kk * th.cos()],
                        phase: wave_rng.random_range(0.0..2.0 * std::f64::consts::PI),
                    });
                }
            }
        }
        let clean = if waves.is_empty() {
            render(&sites, cfg.shape, &dy, &dx)
        } else {
            render_2d(&sites, cfg.shape, &dy, &dx, &waves)
        }
        .mapv(|v| (v * scale) as f32);
        all_waves.push(waves);
        let frame = if cfg.noise {
            stem_core::noise::poisson(clean.view(), cfg.seed + 1000 + f as u64)
                .unwrap_or_else(|_| clean.clone())
        } else {
            clean
        };
        frames.index_axis_mut(ndarray::Axis(0), f).assign(&frame);
        drawn.push([sy, sx]);
        row_u.push(u);
        row_v.push(v);
    }
    GeneratedSeries {
        frames,
        specimen,
        drawn_shifts: drawn,
        row_u,
        row_v,
        heavy_columns: heavy,
        light_columns: light,
        waves: all_waves,
    }
}

/// Residual of estimated reference-row fields against the truth (see
/// [`GeneratedSeries::field_residual`]).
#[derive(Clone, Debug)]
pub struct FieldResidual {
    /// RMS (px) over frames, rows (inside the border) and both components.
    pub rms_px: f64,
    /// The fitted constant gauge `G` (px): `est_k(Y) ≈ truth_k(Y + G_y) − G (+ common(Y))`.
    pub offset: [f64; 2],
    /// The common per-row part removed (zeros when not requested), per reference row.
    pub common: Vec<[f64; 2]>,
}

fn lerp_rows(a: &[f64], y: f64) -> f64 {
    let y = y.clamp(0.0, (a.len() - 1) as f64);
    let i = (y.floor() as usize).min(a.len() - 2);
    let t = y - i as f64;
    a[i] * (1.0 - t) + a[i + 1] * t
}

impl GeneratedSeries {
    /// Compares estimated reference-row fields `est[k] = (dy(Y), dx(Y))` (any gauge) with the
    /// truth after fitting the unidentifiable gauge: a constant offset (the reference's absolute
    /// position) and, when `common`, the per-row mean error over the frames (the mean distortion
    /// of the realised frames, which no registration can see). Rows within `border` of the
    /// edges are left out.
    pub fn field_residual(
        &self,
        est: &[(Vec<f64>, Vec<f64>)],
        common: bool,
        border: usize,
    ) -> FieldResidual {
        let n = est.len();
        let ny = est[0].0.len();
        let truth: Vec<(Vec<f64>, Vec<f64>)> = (0..n).map(|k| self.true_row_field(k)).collect();
        let mut g = [0.0f64; 2];
        for _ in 0..6 {
            let mut acc = [0.0; 2];
            let mut cnt = 0.0;
            for k in 0..n {
                for y in border..ny - border {
                    let yt = y as f64 + g[0];
                    acc[0] += lerp_rows(&truth[k].0, yt) - est[k].0[y];
                    acc[1] += lerp_rows(&truth[k].1, yt) - est[k].1[y];
                    cnt += 1.0;
                }
            }
            g = [acc[0] / cnt, acc[1] / cnt];
        }
        let mut e = vec![vec![[0.0f64; 2]; ny]; n];
        for k in 0..n {
            for y in border..ny - border {
                let yt = y as f64 + g[0];
                e[k][y] = [
                    est[k].0[y] - (lerp_rows(&truth[k].0, yt) - g[0]),
                    est[k].1[y] - (lerp_rows(&truth[k].1, yt) - g[1]),
                ];
            }
        }
        let mut common_part = vec![[0.0f64; 2]; ny];
        if common {
            for y in border..ny - border {
                let m = [
                    (0..n).map(|k| e[k][y][0]).sum::<f64>() / n as f64,
                    (0..n).map(|k| e[k][y][1]).sum::<f64>() / n as f64,
                ];
                for ek in e.iter_mut() {
                    ek[y][0] -= m[0];
                    ek[y][1] -= m[1];
                }
                common_part[y] = m;
            }
        }
        let mut acc = 0.0;
        let mut cnt = 0.0;
        for ek in &e {
            for v in &ek[border..ny - border] {
                acc += v[0].powi(2) + v[1].powi(2);
                cnt += 2.0;
            }
        }
        FieldResidual {
            rms_px: (acc / cnt).sqrt(),
            offset: g,
            common: common_part,
        }
    }

    /// The estimated fields moved into specimen coordinates with the gauge of `res`:
    /// `est_k(Y − G_y) + G − common(Y − G_y)`. An average made with them lies in specimen
    /// coordinates like the true-field average, so the two can be compared pixel by pixel.
    pub fn gauge_corrected(
        &self,
        est: &[(Vec<f64>, Vec<f64>)],
        res: &FieldResidual,
    ) -> Vec<(Vec<f64>, Vec<f64>)> {
        let cy: Vec<f64> = res.common.iter().map(|c| c[0]).collect();
        let cx: Vec<f64> = res.common.iter().map(|c| c[1]).collect();
        let g = res.offset;
        est.iter()
            .map(|(dy, dx)| {
                let ny = dy.len();
                let fy = (0..ny)
                    .map(|y| {
                        let q = y as f64 - g[0];
                        lerp_rows(dy, q) + g[0] - lerp_rows(&cy, q)
                    })
                    .collect();
                let fx = (0..ny)
                    .map(|y| {
                        let q = y as f64 - g[0];
                        lerp_rows(dx, q) + g[1] - lerp_rows(&cx, q)
                    })
                    .collect();
                (fy, fx)
            })
            .collect()
    }
}

fn bilinear(a: &Array2<f64>, y: f64, x: f64) -> f64 {
    let (ny, nx) = a.dim();
    let y = y.clamp(0.0, (ny - 1) as f64);
    let x = x.clamp(0.0, (nx - 1) as f64);
    let (i, j) = (
        (y.floor() as usize).min(ny - 2),
        (x.floor() as usize).min(nx - 2),
    );
    let (ty, tx) = (y - i as f64, x - j as f64);
    (1.0 - ty) * ((1.0 - tx) * a[[i, j]] + tx * a[[i, j + 1]])
        + ty * ((1.0 - tx) * a[[i + 1, j]] + tx * a[[i + 1, j + 1]])
}

/// Residual of estimated dense fields against the truth (see
/// [`GeneratedSeries::dense_field_residual`]).
#[derive(Clone, Debug)]
pub struct DenseResidual {
    /// RMS (px) over frames, pixels (inside the border) and both components.
    pub rms_px: f64,
    /// The fitted constant gauge `G` (px).
    pub offset: [f64; 2],
    /// The common per-pixel part removed (zeros when not requested): `[dy, dx]`.
    pub common: [Array2<f64>; 2],
}

impl GeneratedSeries {
    /// The true dense field of frame f on the specimen grid: `d(Y, X) = D(r', c')` where
    /// `(r', c') + D(r', c') = (Y, X)` (8 fixed-point iterations), `D(r, c) = (sy + v(r) +
    /// W_y(r, c), sx + u(r) + W_x(r, c))`, u and v linearly interpolated between rows.
    pub fn true_field(&self, f: usize) -> [Array2<f64>; 2] {
        let ny = self.row_u[f].len();
        let nx = self.frames.dim().2;
        let [sy, sx] = self.drawn_shifts[f];
        let waves = &self.waves[f];
        let d = |r: f64, c: f64| -> [f64; 2] {
            let w = wave_displacement(waves, r, c);
            [
                sy + lerp_rows(&self.row_v[f], r) + w[0],
                sx + lerp_rows(&self.row_u[f], r) + w[1],
            ]
        };
        let mut dy = Array2::zeros((ny, nx));
        let mut dx = Array2::zeros((ny, nx));
        for y in 0..ny {
            for x in 0..nx {
                let (yy, xx) = (y as f64, x as f64);
                let mut q = [yy - sy, xx - sx];
                for _ in 0..8 {
                    let v = d(q[0], q[1]);
                    q = [yy - v[0], xx - v[1]];
                }
                let v = d(q[0], q[1]);
                dy[[y, x]] = v[0];
                dx[[y, x]] = v[1];
            }
        }
        [dy, dx]
    }

    /// RMS (px, over frames, pixels and both components) of the true dense fields after
    /// removing each frame's mean.
    pub fn intrinsic_nonrigid_rms_2d(&self) -> f64 {
        let (mut acc, mut n) = (0.0, 0.0);
        for f in 0..self.row_u.len() {
            for c in self.true_field(f) {
                let m = c.mean().unwrap_or(0.0);
                acc += c.iter().map(|v| (v - m).powi(2)).sum::<f64>();
                n += c.len() as f64;
            }
        }
        (acc / n).sqrt()
    }

    /// Compares estimated dense fields `est[k] = [dy, dx]` (any gauge) with the truth after
    /// fitting the unidentifiable gauge: a constant offset `G` (the reference's absolute
    /// position: `est_k(p) ≈ truth_k(p + G) − G`) and, when `common`, the per-pixel mean error
    /// over the frames (the mean distortion of the realised frames, which no registration can
    /// see). Pixels within `border` of the edges are left out, and so is every pixel of frame
    /// k where that frame has no data (its true sample position `p − d_k(p)` is less than 2 px
    /// inside the frame): there the field is only the regulariser's extrapolation and the
    /// frame does not enter the average.
    pub fn dense_field_residual(
        &self,
        est: &[[Array2<f64>; 2]],
        common: bool,
        border: usize,
    ) -> DenseResidual {
        let n = est.len();
        let (ny, nx) = est[0][0].dim();
        let truth: Vec<[Array2<f64>; 2]> = (0..n).map(|k| self.true_field(k)).collect();
        // where frame k has data: its true sample position lies ≥ 2 px inside the frame
        let observed = |k: usize, y: usize, x: usize| -> bool {
            let sy = y as f64 - truth[k][0][[y, x]];
            let sx = x as f64 - truth[k][1][[y, x]];
            sy >= 2.0 && sx >= 2.0 && sy <= ny as f64 - 3.0 && sx <= nx as f64 - 3.0
        };
        let inside = |y: usize, x: usize| -> bool {
            y >= border && x >= border && y + border < ny && x + border < nx
        };
        let mut g = [0.0f64; 2];
        for _ in 0..6 {
            let (mut acc, mut cnt) = ([0.0; 2], 0.0f64);
            for k in 0..n {
                for y in 0..ny {
                    for x in 0..nx {
                        if !inside(y, x) || !observed(k, y, x) {
                            continue;
                        }
                        let (yt, xt) = (y as f64 + g[0], x as f64 + g[1]);
                        for c in 0..2 {
                            acc[c] += bilinear(&truth[k][c], yt, xt) - est[k][c][[y, x]];
                        }
                        cnt += 1.0;
                    }
                }
            }
            g = [acc[0] / cnt.max(1.0), acc[1] / cnt.max(1.0)];
        }
        let mut e: Vec<[Array2<f64>; 2]> = (0..n)
            .map(|k| {
                let mk = |c: usize| {
                    Array2::from_shape_fn((ny, nx), |(y, x)| {
                        est[k][c][[y, x]]
                            - (bilinear(&truth[k][c], y as f64 + g[0], x as f64 + g[1]) - g[c])
                    })
                };
                [mk(0), mk(1)]
            })
            .collect();
        let mut common_part = [Array2::zeros((ny, nx)), Array2::zeros((ny, nx))];
        if common {
            for y in 0..ny {
                for x in 0..nx {
                    let ks: Vec<usize> = (0..n).filter(|&k| observed(k, y, x)).collect();
                    if ks.is_empty() {
                        continue;
                    }
                    for c in 0..2 {
                        let m = ks.iter().map(|&k| e[k][c][[y, x]]).sum::<f64>() / ks.len() as f64;
                        common_part[c][[y, x]] = m;
                        for ek in e.iter_mut() {
                            ek[c][[y, x]] -= m;
                        }
                    }
                }
            }
        }
        let (mut acc, mut cnt) = (0.0, 0.0f64);
        for (k, ek) in e.iter().enumerate() {
            for y in 0..ny {
                for x in 0..nx {
                    if inside(y, x) && observed(k, y, x) {
                        acc += ek[0][[y, x]].powi(2) + ek[1][[y, x]].powi(2);
                        cnt += 2.0;
                    }
                }
            }
        }
        DenseResidual {
            rms_px: (acc / cnt.max(1.0)).sqrt(),
            offset: g,
            common: common_part,
        }
    }

    /// The estimated dense fields moved into specimen coordinates with the gauge of `res`:
    /// `est_k(p − G) + G − common(p − G)` (bilinear, clamped at the edges).
    pub fn gauge_corrected_dense(
        &self,
        est: &[[Array2<f64>; 2]],
        res: &DenseResidual,
    ) -> Vec<[Array2<f64>; 2]> {
        let g = res.offset;
        est.iter()
            .map(|f| {
                let (ny, nx) = f[0].dim();
                let mk = |c: usize| {
                    Array2::from_shape_fn((ny, nx), |(y, x)| {
                        let (qy, qx) = (y as f64 - g[0], x as f64 - g[1]);
                        bilinear(&f[c], qy, qx) + g[c] - bilinear(&res.common[c], qy, qx)
                    })
                };
                [mk(0), mk(1)]
            })
            .collect()
    }
}
