//! BM3D (Dabov, Foi, Katkovnik & Egiazarian, IEEE TIP 16(8), 2007) for count images, in the
//! Poisson form of Mevenkamp et al. (ASCI 2015): periodic block matching with the Poisson
//! likelihood-ratio distance on raw counts.
//!
//! The image is Anscombe-transformed, `z = 2√(y + 3/8)` (noise σ ≈ 1), filtered in two steps
//! and mapped back to counts with the exact unbiased inverse (Mäkitalo & Foi 2011):
//!
//! 1. **Hard thresholding.** For every reference block (`B × B` px, top-left corners on a grid
//!    with step [`Bm3dConfig::step_px`], plus the last row/column so every pixel is covered),
//!    the blocks of the search set with the smallest **Poisson likelihood-ratio distance on the
//!    raw counts** `D(k, l)/n = Σ [k ln k + l ln l − (k + l) ln((k + l)/2)]/B²` (half the
//!    Poisson deviance per pixel, ≈ 0.5 for two blocks of equal mean) that are below
//!    `tau_glr` are stacked (at most `max_group_ht`, truncated to a power of two; the reference
//!    block comes first). The group is transformed in 3-D (orthonormal 2-D DCT-II of each block,
//!    orthonormal Haar along the group), coefficients with `|c| < λ₃D·σ` are set to 0, the group
//!    is transformed back and every block is aggregated with weight `w = 1/(σ²·N_nonzero)`
//!    times a Kaiser window (β = [`Bm3dConfig::kaiser_beta`]).
//! 2. **Wiener filtering.** Blocks are matched again, with the mean squared difference on the
//!    basic estimate `ẑ` of step 1 (`≤ tau_wiener`, at most `max_group_wiener`); the noisy
//!    group's 3-D coefficients are multiplied by `W = P²/(P² + σ²)` (`P` the basic estimate's
//!    coefficients), aggregated with `w = 1/(σ²·Σ W²)` and the Kaiser window.
//!
//! **Search sets** ([`Bm3dSearch`]): *periodic* — a local `(2ℓ + 1)²` window plus, for every
//! lattice translate `n₁a₁ + n₂a₂` (`|nᵢ| ≤ max_order`, lattice from
//! [`stem_core::lattice::estimate_lattice`] or given), a `(2b + 1)²` box around its rounded
//! position from which only the best-matching block enters (re-centring on the best match per
//! translate tolerates lattice distortion, like ELMA's adaptive walk); *local* — the classic
//! square window, for non-periodic images. When the lattice cannot be found, the run either
//! fails with the reason or falls back to local search ([`LatticeFallback`]).
//!
//! **Block size rule** (from the data, never tuned per image): `B = 2^round(log₂(0.4·|a₁|))`
//! clamped to `4..=16` px (8 px for lattice constants of 14–28 px), or 8 px without a lattice.
//!
//! Implementation: block distances for one offset are box sums over the per-pixel term image
//! of the offset (no per-pair loops), over bands of reference rows in parallel (rayon); each
//! band keeps the best matches per reference block in a fixed offset order. Aggregation goes
//! into 64-bit fixed-point accumulators (2⁻³² resolution, coarser only when needed to rule out
//! overflow for huge counts or images), whose sums do not depend on the
//! order of addition, so the result is bit-identical on any number of threads.

use crate::nlm::{glr_lut, xlogx};
use crate::{Denoiser, Error, Result, check_counts, like};
use ndarray::Array2;
use rayon::prelude::*;
use std::collections::BTreeSet;
use stem_core::lattice::{Lattice, LatticeConfig, estimate_lattice};
use stem_core::noise::ExactUnbiasedInverse;
use stem_core::progress::check_cancel;
use stem_core::{Image, ImageView, Parallelism, Progress};

/// Search set of [`Bm3d`] (offsets `[dy, dx]` in px from the reference block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bm3dSearch {
    /// All offsets in the `(2·radius_px + 1)²` window (classic BM3D).
    Local {
        /// Half-width (px).
        radius_px: usize,
    },
    /// A local `(2·local_radius_px + 1)²` window plus, per lattice translate
    /// `n₁a₁ + n₂a₂` (`|nᵢ| ≤ max_order`, not both 0), the best match in the
    /// `(2·box_radius_px + 1)²` box around its rounded position.
    Periodic {
        /// Largest lattice order `|nᵢ|`.
        max_order: usize,
        /// Half-width `b` of the box around each translate (px).
        box_radius_px: usize,
        /// Half-width of the local window (px).
        local_radius_px: usize,
    },
}

/// What a periodic search does when the lattice cannot be estimated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatticeFallback {
    /// Fail with [`stem_core::Error::LatticeNotFound`] (the reason included).
    Error,
    /// Use the local window of radius `local_fallback_radius_px` and record the reason in
    /// [`Bm3dReport::lattice_failure`].
    Local,
}

/// Settings of [`Bm3d`]. Defaults follow Dabov et al. 2007 and Mevenkamp et al. 2015 (ELMA),
/// with the periodic search.
#[derive(Clone, Debug, PartialEq)]
pub struct Bm3dConfig {
    /// Search set. Default periodic, order 3 (48 translates), box radius 0, local radius 1:
    /// picking the best of a 3 × 3 box per translate selects blocks by their noise and cost
    /// 2.2 dB at 5 counts/px on the benchmark lattice (38.8 vs 41.0 dB); order 4 was 0.6 dB
    /// worse at 5 counts/px.
    pub search: Bm3dSearch,
    /// Block side `B` (px); `None` = from the lattice (rule in the [module docs](self)).
    /// Default `None`.
    pub block_px: Option<usize>,
    /// Step of the reference-block grid (px, ≤ `B`). Default 4 (Dabov et al. use 3; with
    /// periodic groups every pixel is already estimated many times, and 3 was ≤ 0.1 dB better
    /// at 1.6× the time on the benchmark lattice).
    pub step_px: usize,
    /// Largest group in step 1 (a power of two). Default 16.
    pub max_group_ht: usize,
    /// Largest group in step 2 (a power of two). Default 32.
    pub max_group_wiener: usize,
    /// Hard threshold `λ₃D` (in units of σ = 1). Default 2.7.
    pub lambda_3d: f64,
    /// Largest per-pixel likelihood-ratio distance (step 1, counts) of a matched block.
    /// Default 1.0 (two blocks of equal mean give ≈ 0.5 ± 0.1 for 8×8 blocks).
    pub tau_glr: f64,
    /// Largest per-pixel mean squared difference on the basic estimate (step 2, Anscombe units,
    /// σ = 1) of a matched block. Default 3.0 (lattice translates rounded to whole pixels differ
    /// by up to half a pixel, which at high doses gives mean squared differences ≫ σ²; with
    /// 0.4 the groups at 100 counts/px shrank to 7 blocks and lost 1.5 dB).
    pub tau_wiener: f64,
    /// Kaiser window parameter β (0 = flat). Default 2.0.
    pub kaiser_beta: f64,
    /// Run step 2 (Wiener). Default `true`; `false` returns the basic estimate.
    pub wiener: bool,
    /// A known lattice; `None` = estimated from the image for the periodic search.
    pub lattice: Option<Lattice>,
    /// Settings of the lattice estimation.
    pub lattice_config: LatticeConfig,
    /// What to do when the lattice is not found. Default [`LatticeFallback::Local`].
    pub on_lattice_failure: LatticeFallback,
    /// Local window half-width (px) used by the fallback. Default 12 (a 25 × 25 window).
    pub local_fallback_radius_px: usize,
    /// Threads (results do not depend on it). Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for Bm3dConfig {
    fn default() -> Self {
        Bm3dConfig {
            search: Bm3dSearch::Periodic {
                max_order: 3,
                box_radius_px: 0,
                local_radius_px: 1,
            },
            block_px: None,
            step_px: 4,
            max_group_ht: 16,
            max_group_wiener: 32,
            lambda_3d: 2.7,
            tau_glr: 1.0,
            tau_wiener: 3.0,
            kaiser_beta: 2.0,
            wiener: true,
            lattice: None,
            lattice_config: LatticeConfig::default(),
            on_lattice_failure: LatticeFallback::Local,
            local_fallback_radius_px: 12,
            parallelism: Parallelism::Auto,
        }
    }
}

impl Bm3dConfig {
    /// Classic BM3D with a local `(2·radius_px + 1)²` search window (no lattice), otherwise the
    /// defaults.
    pub fn local(radius_px: usize) -> Self {
        Bm3dConfig {
            search: Bm3dSearch::Local { radius_px },
            ..Bm3dConfig::default()
        }
    }
}

/// What [`Bm3d::denoise_with_report`] chose and found.
#[derive(Clone, Debug, PartialEq)]
pub struct Bm3dReport {
    /// Block side used (px).
    pub block_px: usize,
    /// The lattice used (periodic search).
    pub lattice: Option<Lattice>,
    /// Why the lattice was not found, when the run fell back to local search.
    pub lattice_failure: Option<String>,
    /// Number of search offsets (including `[0, 0]`).
    pub n_offsets: usize,
    /// Number of reference blocks per step.
    pub n_reference_blocks: usize,
    /// Mean group size of step 1 (blocks).
    pub mean_group_ht: f64,
    /// Mean group size of step 2 (blocks; 0 without step 2).
    pub mean_group_wiener: f64,
}

/// BM3D denoiser for count images (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Bm3d {
    config: Bm3dConfig,
    inverse: ExactUnbiasedInverse,
}

fn is_pow2_in(v: usize, max: usize) -> bool {
    v.is_power_of_two() && v <= max
}

impl Bm3d {
    /// Validates the configuration.
    ///
    /// Errors ([`Error::InvalidParameter`]): `block_px` outside `2..=32`; `step_px` 0;
    /// group sizes not a power of two in `1..=64`; `lambda_3d`, `kaiser_beta` negative or not
    /// finite; `tau_glr`, `tau_wiener` not finite and > 0; local radius outside `1..=32`;
    /// periodic `max_order` outside `1..=6`, `box_radius_px` > 3 or `local_radius_px` > 8;
    /// fallback radius outside `1..=32`.
    ///
    /// ```
    /// use stem_denoise::{Bm3d, Bm3dConfig};
    /// assert!(Bm3d::new(Bm3dConfig::default()).is_ok());
    /// assert!(Bm3d::new(Bm3dConfig { max_group_ht: 12, ..Bm3dConfig::default() }).is_err());
    /// ```
    pub fn new(config: Bm3dConfig) -> Result<Self> {
        if let Some(b) = config.block_px
            && !(2..=32).contains(&b)
        {
            return Err(Error::invalid(
                "block_px",
                format!("must lie in 2..=32, got {b}"),
            ));
        }
        if config.step_px == 0 {
            return Err(Error::invalid("step_px", "must be >= 1, got 0"));
        }
        for (name, v) in [
            ("max_group_ht", config.max_group_ht),
            ("max_group_wiener", config.max_group_wiener),
        ] {
            if !is_pow2_in(v, 64) {
                return Err(Error::invalid(
                    name,
                    format!("must be a power of two in 1..=64, got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("lambda_3d", config.lambda_3d),
            ("kaiser_beta", config.kaiser_beta),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("tau_glr", config.tau_glr),
            ("tau_wiener", config.tau_wiener),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ));
            }
        }
        match config.search {
            Bm3dSearch::Local { radius_px } if !(1..=32).contains(&radius_px) => {
                return Err(Error::invalid(
                    "search",
                    format!("local radius must lie in 1..=32, got {radius_px}"),
                ));
            }
            Bm3dSearch::Periodic {
                max_order,
                box_radius_px,
                local_radius_px,
            } if !(1..=6).contains(&max_order) || box_radius_px > 3 || local_radius_px > 8 => {
                return Err(Error::invalid(
                    "search",
                    format!(
                        "max_order must lie in 1..=6, box_radius_px in 0..=3 and local_radius_px in 0..=8, got {max_order}, {box_radius_px}, {local_radius_px}"
                    ),
                ));
            }
            _ => {}
        }
        if !(1..=32).contains(&config.local_fallback_radius_px) {
            return Err(Error::invalid(
                "local_fallback_radius_px",
                format!(
                    "must lie in 1..=32, got {}",
                    config.local_fallback_radius_px
                ),
            ));
        }
        Ok(Bm3d {
            config,
            inverse: ExactUnbiasedInverse::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Bm3dConfig {
        &self.config
    }

    /// Denoises and reports the chosen parameters.
    ///
    /// Errors: see [`Denoiser::denoise`]; also [`Error::InvalidParameter`] when `step_px`
    /// exceeds the block size.
    ///
    /// ```
    /// use stem_core::{NoProgress, synth::{LatticeImageConfig, UnitCell2D}};
    /// use stem_core::noise::{add_poisson_noise, Dose};
    /// use stem_denoise::{Bm3d, Bm3dConfig};
    ///
    /// let clean = LatticeImageConfig { shape: [96, 96], ..LatticeImageConfig::new(UnitCell2D::square(3.0, 40)) }
    ///     .render().unwrap().image;
    /// let noisy = add_poisson_noise(clean.view(), Dose::CountsPerPixel(20.0), 1).unwrap();
    /// let (den, report) = Bm3d::new(Bm3dConfig::default()).unwrap()
    ///     .denoise_with_report(noisy.view(), &NoProgress).unwrap();
    /// assert_eq!(report.block_px, 8); // 20 px lattice
    /// assert!(report.lattice.is_some());
    /// // The mean dose is kept to within 2 %.
    /// assert!((den.data().mean().unwrap() - 20.0).abs() < 0.4);
    /// ```
    pub fn denoise_with_report(
        &self,
        counts: ImageView<'_, f32>,
        progress: &dyn Progress,
    ) -> Result<(Image<f32>, Bm3dReport)> {
        let cfg = &self.config;
        check_counts(counts, cfg.block_px.unwrap_or(2))?;
        let mut lattice_failure = None;
        let (search, lattice) = match cfg.search {
            Bm3dSearch::Local { radius_px } => (Search::Local(radius_px), None),
            Bm3dSearch::Periodic {
                max_order,
                box_radius_px,
                local_radius_px,
            } => {
                let lat = match &cfg.lattice {
                    Some(l) => Ok(l.clone()),
                    None => estimate_lattice(counts, &cfg.lattice_config),
                };
                match (lat, cfg.on_lattice_failure) {
                    (Ok(l), _) => (
                        Search::Periodic {
                            order: max_order,
                            b: box_radius_px,
                            local: local_radius_px,
                        },
                        Some(l),
                    ),
                    (Err(e), LatticeFallback::Error) => return Err(e.into()),
                    (Err(e), LatticeFallback::Local) => {
                        log::warn!("bm3d: {e}; falling back to local search");
                        lattice_failure = Some(e.to_string());
                        (Search::Local(cfg.local_fallback_radius_px), None)
                    }
                }
            }
        };
        let b = cfg.block_px.unwrap_or_else(|| block_rule(lattice.as_ref()));
        check_counts(counts, b)?;
        if cfg.step_px > b {
            return Err(Error::invalid(
                "step_px",
                format!("must not exceed the block size {b} px, got {}", cfg.step_px),
            ));
        }
        let groups = search_groups(search, lattice.as_ref());
        let n_offsets = 1 + groups.iter().map(|g| g.offsets.len()).sum::<usize>();
        check_cancel(progress)?;

        let data = counts.data().as_standard_layout().into_owned();
        let [ny, nx] = counts.shape();
        let y: Vec<f32> = data.iter().copied().collect();
        let z: Vec<f32> = y.iter().map(|&v| 2.0 * (v + 0.375).sqrt()).collect();
        let lut = glr_lut(data.view());
        let xl: Vec<f32> = y.iter().map(|&v| xlogx(v)).collect();
        let tr = Transforms::new(b, cfg.kaiser_beta);
        let ys = positions(ny, b, cfg.step_px);
        let xs = positions(nx, b, cfg.step_px);
        let geom = Geom {
            ny,
            nx,
            b,
            ys: &ys,
            xs: &xs,
            groups: &groups,
        };
        let step1 = Pass {
            geom: &geom,
            metric: Metric::Glr {
                v: &y,
                xl: &xl,
                lut: &lut,
            },
            tau: cfg.tau_glr as f32,
            max_group: cfg.max_group_ht,
            noisy: &z,
            pilot: None,
            threshold: cfg.lambda_3d as f32,
            tr: &tr,
        };
        let (basic, g1) = cfg
            .parallelism
            .install(|| step1.run("bm3d: hard thresholding", progress))??;
        let (est, g2) = if cfg.wiener {
            let step2 = Pass {
                geom: &geom,
                metric: Metric::L2 { v: &basic },
                tau: cfg.tau_wiener as f32,
                max_group: cfg.max_group_wiener,
                noisy: &z,
                pilot: Some(&basic),
                threshold: 0.0,
                tr: &tr,
            };
            cfg.parallelism
                .install(|| step2.run("bm3d: Wiener", progress))??
        } else {
            (basic, 0.0)
        };
        let est = Array2::from_shape_vec((ny, nx), est)
            .map_err(|e| Error::invalid("image", e.to_string()))?;
        let out = self.inverse.invert_array(est.view());
        let report = Bm3dReport {
            block_px: b,
            lattice,
            lattice_failure,
            n_offsets,
            n_reference_blocks: ys.len() * xs.len(),
            mean_group_ht: g1,
            mean_group_wiener: g2,
        };
        Ok((like(out, counts)?, report))
    }
}

impl Denoiser for Bm3d {
    fn name(&self) -> &'static str {
        "bm3d"
    }
    fn denoise(&self, counts: ImageView<'_, f32>, progress: &dyn Progress) -> Result<Image<f32>> {
        self.denoise_with_report(counts, progress).map(|r| r.0)
    }
}

/// The block-size rule: `2^round(log₂(0.4·|a₁|))` clamped to `4..=16`, 8 without a lattice.
fn block_rule(lattice: Option<&Lattice>) -> usize {
    match lattice {
        Some(l) => {
            let e = (0.4 * l.lengths_px()[0])
                .max(1.0)
                .log2()
                .round()
                .clamp(2.0, 4.0);
            1usize << (e as u32)
        }
        None => 8,
    }
}

/// Top-left corners `0, step, 2·step, …` plus `n − b` (so every pixel is covered).
fn positions(n: usize, b: usize, step: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=n - b).step_by(step).collect();
    if v.last() != Some(&(n - b)) {
        v.push(n - b);
    }
    v
}

#[derive(Clone, Copy, Debug)]
enum Search {
    Local(usize),
    Periodic {
        order: usize,
        b: usize,
        local: usize,
    },
}

/// Offsets that contribute individually, or (per reference block) only through their best one.
#[derive(Clone, Debug, PartialEq)]
struct Group {
    offsets: Vec<[i64; 2]>,
    best_only: bool,
}

fn boxed(centre: [i64; 2], b: i64) -> impl Iterator<Item = [i64; 2]> {
    (-b..=b).flat_map(move |dy| (-b..=b).map(move |dx| [centre[0] + dy, centre[1] + dx]))
}

/// The search groups (without `[0, 0]`, which is always the first match).
fn search_groups(search: Search, lattice: Option<&Lattice>) -> Vec<Group> {
    match search {
        Search::Local(r) => vec![Group {
            offsets: boxed([0, 0], r as i64).filter(|&o| o != [0, 0]).collect(),
            best_only: false,
        }],
        Search::Periodic { order, b, local } => {
            let local: BTreeSet<[i64; 2]> = boxed([0, 0], local as i64).collect();
            let mut groups = vec![Group {
                offsets: local.iter().copied().filter(|&o| o != [0, 0]).collect(),
                best_only: false,
            }];
            if let Some(l) = lattice {
                let o = order as i64;
                for n1 in -o..=o {
                    for n2 in -o..=o {
                        if (n1, n2) == (0, 0) {
                            continue;
                        }
                        let t = l.translate(n1, n2);
                        let c = [t[0].round() as i64, t[1].round() as i64];
                        let offsets: Vec<[i64; 2]> =
                            boxed(c, b as i64).filter(|o| !local.contains(o)).collect();
                        if !offsets.is_empty() {
                            groups.push(Group {
                                offsets,
                                best_only: true,
                            });
                        }
                    }
                }
            }
            groups
        }
    }
}

/// Image geometry and the search set.
struct Geom<'a> {
    ny: usize,
    nx: usize,
    b: usize,
    ys: &'a [usize],
    xs: &'a [usize],
    groups: &'a [Group],
}

/// Block distance of a pass.
enum Metric<'a> {
    /// Poisson likelihood ratio on counts `v` (with `x ln x` of the counts and, for integer
    /// counts, a `s ln s` table).
    Glr {
        v: &'a [f32],
        xl: &'a [f32],
        lut: &'a [f32],
    },
    /// Squared difference of `v`.
    L2 { v: &'a [f32] },
}

/// The 2-D DCT-II matrix, its transpose and the 2-D Kaiser window of one block size.
struct Transforms {
    b: usize,
    c: Vec<f32>,
    ct: Vec<f32>,
    kaiser: Vec<f32>,
}

/// Modified Bessel function `I₀(x)` (power series; converges for all x used here).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    let q = 0.25 * x * x;
    for k in 1..60 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

impl Transforms {
    fn new(b: usize, beta: f64) -> Self {
        let mut c = vec![0.0f32; b * b];
        for k in 0..b {
            let a = if k == 0 {
                (1.0 / b as f64).sqrt()
            } else {
                (2.0 / b as f64).sqrt()
            };
            for n in 0..b {
                let v = a
                    * (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * b) as f64).cos();
                c[k * b + n] = v as f32;
            }
        }
        let mut ct = vec![0.0f32; b * b];
        for i in 0..b {
            for j in 0..b {
                ct[j * b + i] = c[i * b + j];
            }
        }
        let k1: Vec<f64> = (0..b)
            .map(|n| {
                let t = if b > 1 {
                    2.0 * n as f64 / (b - 1) as f64 - 1.0
                } else {
                    0.0
                };
                bessel_i0(beta * (1.0 - t * t).max(0.0).sqrt()) / bessel_i0(beta)
            })
            .collect();
        let kaiser = (0..b * b).map(|k| (k1[k / b] * k1[k % b]) as f32).collect();
        Transforms { b, c, ct, kaiser }
    }

    /// `x ← M·x·Mᵀ` with `m` = M and `mt` = Mᵀ (`tmp` of `b²`).
    fn sandwich(&self, m: &[f32], mt: &[f32], x: &mut [f32], tmp: &mut [f32]) {
        let b = self.b;
        matmul(m, x, tmp, b);
        matmul(tmp, mt, x, b);
    }

    /// Orthonormal 2-D DCT-II of a `b × b` block in place.
    fn dct2(&self, x: &mut [f32], tmp: &mut [f32]) {
        self.sandwich(&self.c, &self.ct, x, tmp);
    }

    /// Inverse of [`dct2`](Self::dct2).
    fn idct2(&self, x: &mut [f32], tmp: &mut [f32]) {
        self.sandwich(&self.ct, &self.c, x, tmp);
    }
}

/// `out = a·m` for `b × b` row-major matrices (fixed-size kernels for 4, 8 and 16 px).
#[inline]
fn matmul(a: &[f32], m: &[f32], out: &mut [f32], b: usize) {
    match b {
        4 => matmul_n::<4>(a, m, out),
        8 => matmul_n::<8>(a, m, out),
        16 => matmul_n::<16>(a, m, out),
        _ => {
            for i in 0..b {
                let o = &mut out[i * b..(i + 1) * b];
                o.iter_mut().for_each(|v| *v = 0.0);
                for k in 0..b {
                    let aik = a[i * b + k];
                    for (ov, &mv) in o.iter_mut().zip(&m[k * b..(k + 1) * b]) {
                        *ov += aik * mv;
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn matmul_n<const N: usize>(a: &[f32], m: &[f32], out: &mut [f32]) {
    for (arow, orow) in a.chunks_exact(N).zip(out.chunks_exact_mut(N)).take(N) {
        let mut o = [0.0f32; N];
        for (&aik, mrow) in arow.iter().zip(m.chunks_exact(N)) {
            for j in 0..N {
                o[j] += aik * mrow[j];
            }
        }
        orow.copy_from_slice(&o);
    }
}

/// Orthonormal multilevel Haar transform along the group: `g` holds `m` (a power of two) rows
/// of length `len`; `tmp` at least `m·len`.
fn haar_forward(g: &mut [f32], m: usize, len: usize, tmp: &mut [f32]) {
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let mut n = m;
    while n > 1 {
        let half = n / 2;
        for i in 0..half {
            let (r0, r1) = (
                &g[2 * i * len..(2 * i + 1) * len],
                &g[(2 * i + 1) * len..(2 * i + 2) * len],
            );
            let (lo, hi) = tmp.split_at_mut(half * len);
            let a = &mut lo[i * len..(i + 1) * len];
            let d = &mut hi[i * len..(i + 1) * len];
            for j in 0..len {
                a[j] = (r0[j] + r1[j]) * s;
                d[j] = (r0[j] - r1[j]) * s;
            }
        }
        g[..n * len].copy_from_slice(&tmp[..n * len]);
        n = half;
    }
}

/// Inverse of [`haar_forward`].
fn haar_inverse(g: &mut [f32], m: usize, len: usize, tmp: &mut [f32]) {
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let mut n = 2;
    while n <= m {
        let half = n / 2;
        for i in 0..half {
            let (a, d) = (
                &g[i * len..(i + 1) * len],
                &g[(half + i) * len..(half + i + 1) * len],
            );
            let (t0, t1) = tmp[2 * i * len..(2 * i + 2) * len].split_at_mut(len);
            for j in 0..len {
                t0[j] = (a[j] + d[j]) * s;
                t1[j] = (a[j] - d[j]) * s;
            }
        }
        g[..n * len].copy_from_slice(&tmp[..n * len]);
        n *= 2;
    }
}

/// One matched block: per-pixel distance and top-left corner.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Match {
    d: f32,
    y: u32,
    x: u32,
}

const NONE: Match = Match {
    d: f32::INFINITY,
    y: 0,
    x: 0,
};

/// Inserts `m` into the ascending list `top` (`cnt` used entries, capacity `top.len()`); ties
/// keep the earlier entry.
#[inline]
fn insert(top: &mut [Match], cnt: &mut u32, m: Match) {
    let k = top.len();
    let c = *cnt as usize;
    if c == k && m.d >= top[k - 1].d {
        return;
    }
    let mut i = c.min(k - 1);
    while i > 0 && top[i - 1].d > m.d {
        top[i] = top[i - 1];
        i -= 1;
    }
    top[i] = m;
    if c < k {
        *cnt += 1;
    }
}

/// Reference rows per band.
const BAND_ROWS: usize = 8;
/// Largest fixed-point scale of the accumulators (2³²).
const FIX_MAX: f64 = 4_294_967_296.0;

/// The fixed-point scale: 2³², or a smaller power of two that keeps every sum below 2⁶² for
/// large values or many groups. A block value is at most the group's L2 norm,
/// `z_max·√(m·B²)`; a pixel receives at most one contribution per group and block.
fn fixed_scale(z_max: f32, n_groups: usize, max_group: usize, b: usize) -> f32 {
    let zmax = f64::from(z_max).max(1.0);
    let bound = zmax * ((max_group * b * b) as f64).sqrt() * (n_groups.max(1) * max_group) as f64;
    let s = (2f64.powi(62) / bound).min(FIX_MAX);
    2f64.powi(s.log2().floor() as i32) as f32
}

/// One BM3D step.
struct Pass<'a> {
    geom: &'a Geom<'a>,
    metric: Metric<'a>,
    tau: f32,
    max_group: usize,
    noisy: &'a [f32],
    /// Basic estimate (Wiener step); `None` = hard thresholding.
    pilot: Option<&'a [f32]>,
    /// `λ₃D` (hard thresholding).
    threshold: f32,
    tr: &'a Transforms,
}

#[derive(Default)]
struct Scratch {
    term: Vec<f32>,
    colsum: Vec<f32>,
    top: Vec<Match>,
    cnt: Vec<u32>,
    best: Vec<Match>,
    g: Vec<f32>,
    p: Vec<f32>,
    tmp: Vec<f32>,
    tmp3: Vec<f32>,
}

struct Acc {
    num: Vec<i64>,
    den: Vec<i64>,
    groups: u64,
    blocks: u64,
}

impl Acc {
    fn new(n: usize) -> Self {
        Acc {
            num: vec![0; n],
            den: vec![0; n],
            groups: 0,
            blocks: 0,
        }
    }
    fn merge(mut self, o: Acc) -> Acc {
        for (a, b) in self.num.iter_mut().zip(&o.num) {
            *a += b;
        }
        for (a, b) in self.den.iter_mut().zip(&o.den) {
            *a += b;
        }
        self.groups += o.groups;
        self.blocks += o.blocks;
        self
    }
}

impl Pass<'_> {
    /// Runs the step over all bands; returns the aggregated estimate (Anscombe domain) and
    /// the mean group size.
    fn run(&self, stage: &str, progress: &dyn Progress) -> Result<(Vec<f32>, f64)> {
        let g = self.geom;
        let n = g.ny * g.nx;
        let nb = g.ys.len().div_ceil(BAND_ROWS);
        let z_max = self.noisy.iter().fold(0.0f32, |a, &b| a.max(b));
        let fix = fixed_scale(z_max, g.ys.len() * g.xs.len(), self.max_group, g.b);
        progress.start(stage, nb as u64);
        // At most ~4 accumulators per thread (each holds two full-image i64 arrays).
        let min_len = nb.div_ceil(4 * rayon::current_num_threads()).max(1);
        let acc = (0..nb)
            .into_par_iter()
            .with_min_len(min_len)
            .fold(
                || (Scratch::default(), None::<Acc>),
                |(mut s, acc), band| {
                    let mut acc = acc.unwrap_or_else(|| Acc::new(n));
                    if !progress.is_cancelled() {
                        let r0 = band * BAND_ROWS;
                        let rows = &g.ys[r0..(r0 + BAND_ROWS).min(g.ys.len())];
                        self.match_band(rows, &mut s);
                        self.filter_band(rows, &mut s, &mut acc, fix);
                        progress.advance(1);
                    }
                    (s, Some(acc))
                },
            )
            .map(|(_, a)| a)
            .reduce(
                || None,
                |a, b| match (a, b) {
                    (Some(a), Some(b)) => Some(a.merge(b)),
                    (a, None) => a,
                    (None, b) => b,
                },
            );
        check_cancel(progress)?;
        let acc = acc.unwrap_or_else(|| Acc::new(n));
        let est = acc
            .num
            .iter()
            .zip(&acc.den)
            .zip(self.noisy)
            .map(|((&nu, &de), &z)| {
                if de > 0 {
                    (nu as f64 / de as f64) as f32
                } else {
                    z
                }
            })
            .collect();
        Ok((est, acc.blocks as f64 / acc.groups.max(1) as f64))
    }

    /// Block matching for the reference rows `rows`: fills `s.top` / `s.cnt` (per reference
    /// block, ascending distance, the reference itself first).
    fn match_band(&self, rows: &[usize], s: &mut Scratch) {
        let g = self.geom;
        let (ny, nx, b) = (g.ny, g.nx, g.b);
        let nxr = g.xs.len();
        let nref = rows.len() * nxr;
        let k = self.max_group;
        s.top.clear();
        s.top.resize(nref * k, NONE);
        s.cnt.clear();
        s.cnt.resize(nref, 1);
        for (ri, &y) in rows.iter().enumerate() {
            for (ci, &x) in g.xs.iter().enumerate() {
                s.top[(ri * nxr + ci) * k] = Match {
                    d: 0.0,
                    y: y as u32,
                    x: x as u32,
                };
            }
        }
        let (y_lo, y_hi) = (rows[0], rows[rows.len() - 1] + b);
        let th = y_hi - y_lo;
        s.term.resize(th * nx, 0.0);
        s.colsum.resize(nx, 0.0);
        let inv_n = 1.0 / (b * b) as f32;
        let ln2 = std::f32::consts::LN_2;
        for grp in g.groups {
            if grp.best_only {
                s.best.clear();
                s.best.resize(nref, NONE);
            }
            for &[dy, dx] in &grp.offsets {
                let x_lo = (-dx).max(0) as usize;
                let x_hi = (nx as i64).min(nx as i64 - dx);
                if x_hi <= x_lo as i64 {
                    continue;
                }
                let x_hi = x_hi as usize;
                // Is any reference row of the band matched at this offset?
                let valid_row = |y: usize| {
                    let q = y as i64 + dy;
                    q >= 0 && q <= (ny - b) as i64
                };
                if !rows.iter().any(|&y| valid_row(y)) {
                    continue;
                }
                for r in y_lo..y_hi {
                    let q = r as i64 + dy;
                    if q < 0 || q >= ny as i64 {
                        continue;
                    }
                    let q = q as usize;
                    let t = &mut s.term[(r - y_lo) * nx + x_lo..(r - y_lo) * nx + x_hi];
                    let qs = (x_lo as i64 + dx) as usize;
                    let qe = qs + (x_hi - x_lo);
                    match &self.metric {
                        Metric::Glr { v, xl, lut } => {
                            let a = &v[r * nx + x_lo..r * nx + x_hi];
                            let bq = &v[q * nx + qs..q * nx + qe];
                            let xa = &xl[r * nx + x_lo..r * nx + x_hi];
                            let xb = &xl[q * nx + qs..q * nx + qe];
                            if lut.is_empty() {
                                for j in 0..t.len() {
                                    let sm = a[j] + bq[j];
                                    t[j] = xa[j] + xb[j] - xlogx(sm) + sm * ln2;
                                }
                            } else {
                                for j in 0..t.len() {
                                    let sm = a[j] + bq[j];
                                    t[j] = xa[j] + xb[j] - lut[sm as usize] + sm * ln2;
                                }
                            }
                        }
                        Metric::L2 { v } => {
                            let a = &v[r * nx + x_lo..r * nx + x_hi];
                            let bq = &v[q * nx + qs..q * nx + qe];
                            for j in 0..t.len() {
                                let e = a[j] - bq[j];
                                t[j] = e * e;
                            }
                        }
                    }
                }
                for (ri, &y) in rows.iter().enumerate() {
                    if !valid_row(y) {
                        continue;
                    }
                    let qy = (y as i64 + dy) as u32;
                    let cs = &mut s.colsum[x_lo..x_hi];
                    let base = (y - y_lo) * nx;
                    cs.copy_from_slice(&s.term[base + x_lo..base + x_hi]);
                    for i in 1..b {
                        let row = &s.term[base + i * nx + x_lo..base + i * nx + x_hi];
                        for (c, &t) in cs.iter_mut().zip(row) {
                            *c += t;
                        }
                    }
                    for (ci, &x) in g.xs.iter().enumerate() {
                        let qx = x as i64 + dx;
                        if qx < 0 || qx > (nx - b) as i64 {
                            continue;
                        }
                        let d: f32 = s.colsum[x..x + b].iter().sum::<f32>() * inv_n;
                        if d > self.tau {
                            continue;
                        }
                        let m = Match {
                            d,
                            y: qy,
                            x: qx as u32,
                        };
                        let idx = ri * nxr + ci;
                        if grp.best_only {
                            if d < s.best[idx].d {
                                s.best[idx] = m;
                            }
                        } else {
                            insert(&mut s.top[idx * k..(idx + 1) * k], &mut s.cnt[idx], m);
                        }
                    }
                }
            }
            if grp.best_only {
                for idx in 0..nref {
                    let m = s.best[idx];
                    if m.d.is_finite() {
                        insert(&mut s.top[idx * k..(idx + 1) * k], &mut s.cnt[idx], m);
                    }
                }
            }
        }
    }

    /// Collaborative filtering of the groups of `rows` into `acc`.
    fn filter_band(&self, rows: &[usize], s: &mut Scratch, acc: &mut Acc, fix: f32) {
        let g = self.geom;
        let (nx, b) = (g.nx, g.b);
        let bb = b * b;
        let k = self.max_group;
        let nref = rows.len() * g.xs.len();
        s.g.resize(k * bb, 0.0);
        s.p.resize(k * bb, 0.0);
        s.tmp.resize(bb, 0.0);
        s.tmp3.resize(k * bb, 0.0);
        let tr = self.tr;
        for idx in 0..nref {
            let cnt = s.cnt[idx] as usize;
            // Largest power of two ≤ cnt (cnt ≥ 1: the reference block).
            let m = 1usize << (usize::BITS - 1 - cnt.leading_zeros());
            let top = &s.top[idx * k..idx * k + m];
            let load = |src: &[f32], dst: &mut [f32], tmp: &mut [f32]| {
                for (kk, mt) in top.iter().enumerate() {
                    let blk = &mut dst[kk * bb..(kk + 1) * bb];
                    for i in 0..b {
                        let o = (mt.y as usize + i) * nx + mt.x as usize;
                        blk[i * b..(i + 1) * b].copy_from_slice(&src[o..o + b]);
                    }
                    tr.dct2(blk, tmp);
                }
            };
            load(self.noisy, &mut s.g, &mut s.tmp);
            haar_forward(&mut s.g, m, bb, &mut s.tmp3);
            let gm = &mut s.g[..m * bb];
            let weight = match self.pilot {
                None => {
                    let thr = self.threshold;
                    let mut nnz = 0u32;
                    for c in gm.iter_mut() {
                        if c.abs() < thr {
                            *c = 0.0;
                        } else {
                            nnz += 1;
                        }
                    }
                    1.0 / nnz.max(1) as f32
                }
                Some(pilot) => {
                    load(pilot, &mut s.p, &mut s.tmp);
                    haar_forward(&mut s.p, m, bb, &mut s.tmp3);
                    let mut sw = 0.0f32;
                    for (c, &p) in gm.iter_mut().zip(&s.p[..m * bb]) {
                        let p2 = p * p;
                        let w = p2 / (p2 + 1.0);
                        *c *= w;
                        sw += w * w;
                    }
                    1.0 / sw.max(1e-6)
                }
            };
            haar_inverse(&mut s.g, m, bb, &mut s.tmp3);
            for (kk, mt) in top.iter().enumerate() {
                let blk = &mut s.g[kk * bb..(kk + 1) * bb];
                tr.idct2(blk, &mut s.tmp);
                for i in 0..b {
                    let o = (mt.y as usize + i) * nx + mt.x as usize;
                    let num = &mut acc.num[o..o + b];
                    let den = &mut acc.den[o..o + b];
                    let kw = &tr.kaiser[i * b..(i + 1) * b];
                    let v = &blk[i * b..(i + 1) * b];
                    for j in 0..b {
                        let w = weight * kw[j];
                        num[j] += (w * v[j] * fix) as i64;
                        den[j] += (w * fix) as i64;
                    }
                }
            }
            acc.groups += 1;
            acc.blocks += m as u64;
        }
    }
}

#[cfg(test)]
mod tests;
