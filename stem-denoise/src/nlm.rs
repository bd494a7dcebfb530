//! Pixel-wise non-local means for count images with Poisson-aware block distances and
//! periodic search sets (Buades et al. 2005; Mevenkamp et al., VMV 2014).
//!
//! For every pixel `p`, `est(p) = Σ_q w(p, q)·v(q) / Σ_q w(p, q)` over the search set
//! `q = p + d`, with `w = exp(−max(D(p, q)/n − c, 0)/h²)`, `D` the block distance over the
//! `(2r + 1)² = n` block and `c` the expected per-pixel distance of two blocks with the same
//! mean (subtracted when [`NlmConfig::subtract_h0`] is set):
//!
//! * [`BlockDistance::AnscombeL2`]: `v = z = 2√(y + 3/8)`, per-pixel term `(z_p − z_q)²`,
//!   `c = 2σ² = 2`; the average is mapped back with the exact unbiased inverse Anscombe.
//! * [`BlockDistance::PoissonGlr`]: `v = y` (counts), per-pixel term
//!   `k ln k + l ln l − (k + l) ln((k + l)/2)` (−log of the generalised likelihood ratio of
//!   "same Poisson mean", half the Poisson deviance; `0 ln 0 = 0`), `c = 0.5`. Since this term is
//!   ≈ ¼·(z_k − z_l)², `h` is given in Anscombe units and `h/2` is used internally, so that one
//!   `h` means the same filtering for both distances.
//!
//! Implementation: for each offset `d`, the per-pixel term image between `v` and `v` shifted by
//! `d` is box-filtered (running sums) into `D(·, · + d)` and turned into weights; one pass per
//! offset, in parallel over bands of 16 rows, each band owning its output (results do not
//! depend on the thread count). Blocks at the borders use mirror padding, so every pixel is
//! denoised, but only candidates `q` inside the image contribute (mirrored data does not follow
//! the lattice).
//!
//! `h` is chosen by SURE (Stein 1981) in the Anscombe domain, with the per-pixel noise variance
//! `σ_p² = Var[A(Y)]` of Poisson counts at a local mean (a 1 px Gaussian blur of the counts;
//! ≈ 1 above ~4 counts, smaller below):
//! `R(h) = Σ_p [(f_p − z_p)² − σ_p² + 2σ_p²·∂f_p/∂z_p] / N`, with the exact NLM divergence
//! `∂f_p/∂z_p = (1 − Σ_q (∂D_pq/∂z_p)·w_pq·(z_q − f_p)/(n h²)) / Σ_q w_pq` (Van De Ville &
//! Kocher 2009), evaluated for 8 values of `h` at once (`w(h_k) = w(h_max)^{2^k}`) on every
//! eighth row band, and refined by a parabola in `ln h`.

use crate::{Denoiser, Error, Result, check_counts, like, reflect};
use ndarray::Array2;
use rayon::prelude::*;
use std::collections::BTreeSet;
use stem_core::lattice::{Lattice, LatticeConfig, estimate_lattice};
use stem_core::noise::ExactUnbiasedInverse;
use stem_core::progress::check_cancel;
use stem_core::{Image, ImageView, Parallelism, Progress};

/// Block (patch) distance of [`Nlm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockDistance {
    /// Mean squared difference of Anscombe-transformed values; averaging in the Anscombe domain
    /// and the exact unbiased inverse.
    AnscombeL2,
    /// Poisson generalised likelihood ratio on raw counts (Mevenkamp et al.); averaging counts.
    PoissonGlr,
}

/// Search set of [`Nlm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchSet {
    /// All offsets in the `(2·radius_px + 1)²` window.
    Local {
        /// Half-width (px).
        radius_px: usize,
    },
    /// A local `(2b + 1)²` box plus a `(2b + 1)²` box around every rounded lattice translate
    /// `n₁a₁ + n₂a₂`, `|nᵢ| ≤ max_order` (625 offsets for order 2, b = 2).
    Periodic {
        /// Largest lattice order `|nᵢ|`.
        max_order: usize,
        /// Box half-width `b` (px).
        box_radius_px: usize,
    },
    /// As `Periodic`, but from each translate box only the best-matching offset (smallest block
    /// distance, per pixel) contributes: the box re-centres on the best local match, which
    /// tolerates lattice distortion and drift (a one-step form of ELMA's adaptive walk).
    AdaptivePeriodic {
        /// Largest lattice order `|nᵢ|`.
        max_order: usize,
        /// Box half-width `b` (px).
        box_radius_px: usize,
    },
}

/// How the filter strength `h` (Anscombe units, see the [module docs](self)) is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilterStrength {
    /// Minimum of the SURE risk estimate over the grid `3.5/√2^k`, `k = 0..8` (`0.31..3.5`),
    /// refined by a parabola in `ln h`, times
    /// `scale`.
    Sure {
        /// Multiplier of the SURE-optimal `h` (1 = minimum estimated MSE).
        scale: f64,
    },
    /// A fixed `h` (finite, > 0).
    Fixed(f64),
}

/// Objective of [`NlmConfig::preset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Best PSNR/SSIM: Poisson likelihood-ratio distance with the H0 offset, periodic search,
    /// SURE-chosen `h`. For viewing and intensity quantification.
    Psnr,
    /// Best column precision: likelihood-ratio distance without the H0 offset, lattice order 3
    /// (441 offsets) and a strong fixed `h = 4` (Anscombe units; ≈ averaging over the lattice
    /// translates). PSNR drops far below
    /// the `Psnr` preset, but column positions are much more precise: for atom positions and
    /// strain maps.
    Precision,
}

/// Settings of [`Nlm`].
#[derive(Clone, Debug, PartialEq)]
pub struct NlmConfig {
    /// Block distance. Default [`BlockDistance::PoissonGlr`].
    pub distance: BlockDistance,
    /// Search set. Default periodic, order 2, box radius 1 (241 offsets; a 5×5 box, as in the
    /// reference prototype, was 0.2–0.6 dB worse and 2.5× slower on the benchmark lattices).
    pub search: SearchSet,
    /// Block half-width `r` (block `(2r + 1)²`, px); `None` = from the lattice,
    /// `round(0.15·|a₁|)` clamped to `1..=5` (3 for a 20 px lattice), or 3 without a lattice.
    /// Default `None`.
    pub block_radius_px: Option<usize>,
    /// Filter strength. Default SURE with scale 1.
    pub strength: FilterStrength,
    /// Subtract the expected per-pixel distance of equal-mean blocks before the exponential.
    /// Default `true`.
    pub subtract_h0: bool,
    /// A known lattice; `None` = estimated from the image for periodic search sets. Default
    /// `None`.
    pub lattice: Option<Lattice>,
    /// Settings of the lattice estimation.
    pub lattice_config: LatticeConfig,
    /// Threads (results do not depend on it). Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for NlmConfig {
    fn default() -> Self {
        NlmConfig::preset(Preset::Psnr)
    }
}

impl NlmConfig {
    /// The configuration of a [`Preset`].
    pub fn preset(preset: Preset) -> Self {
        let base = NlmConfig {
            distance: BlockDistance::PoissonGlr,
            search: SearchSet::Periodic {
                max_order: 2,
                box_radius_px: 1,
            },
            block_radius_px: None,
            strength: FilterStrength::Sure { scale: 1.0 },
            subtract_h0: true,
            lattice: None,
            lattice_config: LatticeConfig::default(),
            parallelism: Parallelism::Auto,
        };
        match preset {
            Preset::Psnr => base,
            Preset::Precision => NlmConfig {
                search: SearchSet::Periodic {
                    max_order: 3,
                    box_radius_px: 1,
                },
                strength: FilterStrength::Fixed(4.0),
                subtract_h0: false,
                ..base
            },
        }
    }
}

/// What [`Nlm::denoise_with_report`] chose.
#[derive(Clone, Debug, PartialEq)]
pub struct NlmReport {
    /// The filter strength used (Anscombe units).
    pub h: f64,
    /// Block half-width used (px).
    pub block_radius_px: usize,
    /// The lattice used (periodic search sets).
    pub lattice: Option<Lattice>,
    /// Number of search offsets (including `[0, 0]`).
    pub n_offsets: usize,
    /// `(h, SURE risk per pixel)` of the grid when SURE was used.
    pub sure: Vec<(f64, f64)>,
}

/// Non-local means denoiser (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Nlm {
    config: NlmConfig,
    inverse: ExactUnbiasedInverse,
    /// `Var[A(Y)]` for `Y ~ Poisson(λ)`, `λ = 0, 0.05, …, 50` (SURE's per-pixel noise variance).
    anscombe_var: Vec<f64>,
}

/// Step and end (counts) of the `Var[A(Y)]` table.
const VAR_STEP: f64 = 0.05;
const VAR_END: f64 = 50.0;

/// `Var[A(Y)] = E[A²] − E[A]² = 4λ + 3/2 − E[A]²` on the table grid (→ 1 for large `λ`).
fn anscombe_variance_table() -> Vec<f64> {
    let n = (VAR_END / VAR_STEP).round() as usize;
    (0..=n)
        .map(|i| {
            let l = i as f64 * VAR_STEP;
            match stem_core::noise::expected_anscombe(l) {
                Ok(e) => (4.0 * l + 1.5 - e * e).max(0.0),
                Err(_) => 1.0,
            }
        })
        .collect()
}

/// Linear interpolation in the `Var[A(Y)]` table (the last value above its end).
fn anscombe_variance(table: &[f64], lambda: f64) -> f64 {
    let x = (lambda.max(0.0) / VAR_STEP).min((table.len() - 1) as f64);
    let i = (x.floor() as usize).min(table.len().saturating_sub(2));
    let t = x - i as f64;
    table[i] * (1.0 - t) + table[(i + 1).min(table.len() - 1)] * t
}

/// Rows per parallel band.
const BAND: usize = 16;
/// SURE is evaluated on every `SURE_STRIDE`-th band.
const SURE_STRIDE: usize = 8;
/// Largest `h` of the SURE grid (Anscombe units) and the powers `m` with `h = H_MAX/√m`.
const H_MAX: f64 = 3.5;
const SURE_POWERS: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
const K: usize = SURE_POWERS.len();

impl Nlm {
    /// Validates the configuration.
    pub fn new(config: NlmConfig) -> Result<Self> {
        if let Some(r) = config.block_radius_px
            && !(1..=10).contains(&r)
        {
            return Err(Error::invalid(
                "block_radius_px",
                format!("must lie in 1..=10, got {r}"),
            ));
        }
        match config.strength {
            FilterStrength::Sure { scale } if !(scale.is_finite() && scale > 0.0) => {
                return Err(Error::invalid(
                    "strength",
                    format!("SURE scale must be finite and > 0, got {scale}"),
                ));
            }
            FilterStrength::Fixed(h) if !(h.is_finite() && h > 0.0) => {
                return Err(Error::invalid(
                    "strength",
                    format!("h must be finite and > 0, got {h}"),
                ));
            }
            _ => {}
        }
        match config.search {
            SearchSet::Local { radius_px } if radius_px == 0 || radius_px > 64 => {
                return Err(Error::invalid(
                    "search",
                    format!("local radius must lie in 1..=64, got {radius_px}"),
                ));
            }
            SearchSet::Periodic {
                max_order,
                box_radius_px,
            }
            | SearchSet::AdaptivePeriodic {
                max_order,
                box_radius_px,
            } if !(1..=6).contains(&max_order) || box_radius_px > 5 => {
                return Err(Error::invalid(
                    "search",
                    format!(
                        "max_order must lie in 1..=6 and box_radius_px in 0..=5, got {max_order}, {box_radius_px}"
                    ),
                ));
            }
            _ => {}
        }
        Ok(Nlm {
            config,
            inverse: ExactUnbiasedInverse::new(),
            anscombe_var: anscombe_variance_table(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NlmConfig {
        &self.config
    }

    /// Denoises and reports the chosen parameters.
    ///
    /// Errors: see [`Denoiser::denoise`].
    pub fn denoise_with_report(
        &self,
        counts: ImageView<'_, f32>,
        progress: &dyn Progress,
    ) -> Result<(Image<f32>, NlmReport)> {
        let cfg = &self.config;
        check_counts(counts, 2 * cfg.block_radius_px.unwrap_or(1) + 1)?;
        let periodic = !matches!(cfg.search, SearchSet::Local { .. });
        let lattice = match (&cfg.lattice, periodic) {
            (Some(l), _) => Some(l.clone()),
            (None, true) => Some(estimate_lattice(counts, &cfg.lattice_config)?),
            (None, false) => None,
        };
        let r = cfg.block_radius_px.unwrap_or_else(|| match &lattice {
            Some(l) => ((0.15 * l.lengths_px()[0]).round() as usize).clamp(1, 5),
            None => 3,
        });
        check_counts(counts, 2 * r + 1)?;
        let groups = search_groups(cfg.search, lattice.as_ref());
        let n_offsets = groups.iter().map(|g| g.offsets.len()).sum();
        check_cancel(progress)?;

        let data = counts.data();
        let z = data.mapv(|y| 2.0 * (y + 0.375).sqrt());
        let mut sure = Vec::new();
        let h = match cfg.strength {
            FilterStrength::Fixed(h) => h,
            FilterStrength::Sure { scale } => {
                let plan = Plan::new(z.view(), None, z.view(), r, &groups);
                // Per-pixel Anscombe noise variance at a local mean estimate (σ = 1 px blur):
                // below ~4 counts it is clearly below 1, which SURE must know.
                let local = stem_core::filters::gaussian_blur(data, 1.0, 4.0)?;
                let var =
                    local.mapv(|l| anscombe_variance(&self.anscombe_var, f64::from(l)) as f32);
                sure = cfg
                    .parallelism
                    .install(|| plan.sure(var.view(), progress))??;
                scale * sure_minimum(&sure)
            }
        };
        check_cancel(progress)?;
        let out = match cfg.distance {
            BlockDistance::AnscombeL2 => {
                let plan = Plan::new(z.view(), None, z.view(), r, &groups);
                let c = if cfg.subtract_h0 { 2.0 } else { 0.0 };
                let est = cfg.parallelism.install(|| plan.filter(h, c, progress))??;
                self.inverse.invert_array(est.view())
            }
            BlockDistance::PoissonGlr => {
                let plan = Plan::new(data, Some(glr_lut(data)), data, r, &groups);
                let c = if cfg.subtract_h0 { 0.5 } else { 0.0 };
                cfg.parallelism
                    .install(|| plan.filter(0.5 * h, c, progress))??
            }
        };
        let report = NlmReport {
            h,
            block_radius_px: r,
            lattice,
            n_offsets,
            sure,
        };
        Ok((like(out, counts)?, report))
    }
}

impl Denoiser for Nlm {
    fn name(&self) -> &'static str {
        "nlm"
    }
    fn denoise(&self, counts: ImageView<'_, f32>, progress: &dyn Progress) -> Result<Image<f32>> {
        self.denoise_with_report(counts, progress).map(|r| r.0)
    }
}

/// A set of offsets that contribute together (all of them, or per pixel only the best one).
#[derive(Clone, Debug, PartialEq)]
struct Group {
    offsets: Vec<[i64; 2]>,
    best_only: bool,
}

fn boxed(centre: [i64; 2], b: i64) -> impl Iterator<Item = [i64; 2]> {
    (-b..=b).flat_map(move |dy| (-b..=b).map(move |dx| [centre[0] + dy, centre[1] + dx]))
}

/// The search groups of a search set (sorted, duplicate-free offsets).
fn search_groups(search: SearchSet, lattice: Option<&Lattice>) -> Vec<Group> {
    let translates = |order: usize| -> Vec<[i64; 2]> {
        let Some(l) = lattice else { return Vec::new() };
        let o = order as i64;
        let mut t = Vec::new();
        for n1 in -o..=o {
            for n2 in -o..=o {
                if (n1, n2) != (0, 0) {
                    let p = l.translate(n1, n2);
                    t.push([p[0].round() as i64, p[1].round() as i64]);
                }
            }
        }
        t
    };
    match search {
        SearchSet::Local { radius_px } => vec![Group {
            offsets: boxed([0, 0], radius_px as i64).collect(),
            best_only: false,
        }],
        SearchSet::Periodic {
            max_order,
            box_radius_px,
        } => {
            let b = box_radius_px as i64;
            let mut set: BTreeSet<[i64; 2]> = boxed([0, 0], b).collect();
            for t in translates(max_order) {
                set.extend(boxed(t, b));
            }
            vec![Group {
                offsets: set.into_iter().collect(),
                best_only: false,
            }]
        }
        SearchSet::AdaptivePeriodic {
            max_order,
            box_radius_px,
        } => {
            let b = box_radius_px as i64;
            let local: BTreeSet<[i64; 2]> = boxed([0, 0], b).collect();
            let mut groups = vec![Group {
                offsets: local.iter().copied().collect(),
                best_only: false,
            }];
            for t in translates(max_order) {
                let offsets: Vec<[i64; 2]> = boxed(t, b).filter(|o| !local.contains(o)).collect();
                if !offsets.is_empty() {
                    groups.push(Group {
                        offsets,
                        best_only: true,
                    });
                }
            }
            groups
        }
    }
}

/// `x ln x` for integer counts `0..=2·max` when all counts are integers ≤ 2¹⁵, else `None`.
pub(crate) fn glr_lut(data: ndarray::ArrayView2<'_, f32>) -> Vec<f32> {
    let integral = data.iter().all(|&v| v.fract() == 0.0 && v <= 32768.0);
    if !integral {
        return Vec::new();
    }
    let max = data.iter().fold(0.0f32, |a, &b| a.max(b)) as usize;
    (0..=2 * max + 1)
        .map(|s| {
            let s = s as f64;
            if s > 0.0 { (s * s.ln()) as f32 } else { 0.0 }
        })
        .collect()
}

pub(crate) fn xlogx(v: f32) -> f32 {
    if v > 0.0 { v * v.ln() } else { 0.0 }
}

/// `exp(−x)` for `x ≥ 0` to ~1.5e-4 relative (degree-5 polynomial for `2^f` and exponent bits),
/// written so that it vectorises; 0 for `x > 87`; exactly 1 at `x = 0`.
#[inline(always)]
fn fexp_neg(x: f32) -> f32 {
    let t = (-x * std::f32::consts::LOG2_E).max(-126.0) + 127.0; // in [1, 127]
    let i = t as i32;
    let f = t - i as f32;
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5 + f * (0.055_504_1 + f * (0.009_618_13 + f * 0.001_333_36))));
    let e = p * f32::from_bits((i as u32) << 23);
    if x > 87.0 { 0.0 } else { e }
}

/// Padded arrays and the offset groups of one run.
struct Plan<'g> {
    ny: usize,
    nx: usize,
    r: usize,
    pad: usize,
    pw: usize,
    /// Padded values used for the distance (z, or counts for the GLR).
    dv: Vec<f32>,
    /// Padded `x ln x` of the counts (GLR only, else empty).
    xl: Vec<f32>,
    /// `s ln s` for integer sums, empty for the GLR on non-integer data (and for L2).
    lut: Vec<f32>,
    glr: bool,
    /// Padded values that are averaged.
    v: Vec<f32>,
    /// Padded mask: 1 inside the image, 0 in the mirror padding. Candidates `q` outside the
    /// image get weight 0 (their blocks are mirrored data, which does not follow the lattice).
    inside: Vec<f32>,
    groups: &'g [Group],
}

/// Receives, per output row of a band, the distances and the matching values.
struct RowCtx<'a> {
    /// Block distance divided by n, per pixel of the row.
    d: &'a [f32],
    /// Averaged values at the matched pixel q.
    vq: &'a [f32],
    /// Averaged values at p.
    vp: &'a [f32],
    /// 1 where q lies inside the image, else 0.
    mq: &'a [f32],
    /// Values at p − d when d lies inside the block (SURE's local divergence term).
    vmd: Option<&'a [f32]>,
}

impl<'g> Plan<'g> {
    fn new(
        dist: ndarray::ArrayView2<'_, f32>,
        lut: Option<Vec<f32>>,
        avg: ndarray::ArrayView2<'_, f32>,
        r: usize,
        groups: &'g [Group],
    ) -> Self {
        let (ny, nx) = dist.dim();
        let maxoff = groups
            .iter()
            .flat_map(|g| g.offsets.iter())
            .map(|o| o[0].abs().max(o[1].abs()))
            .max()
            .unwrap_or(0) as usize;
        let pad = r + maxoff + 1;
        let (ph, pw) = (ny + 2 * pad, nx + 2 * pad);
        let padded = |a: ndarray::ArrayView2<'_, f32>, f: &dyn Fn(f32) -> f32| -> Vec<f32> {
            let mut out = vec![0.0f32; ph * pw];
            for i in 0..ph {
                let yy = reflect(i as i64 - pad as i64, ny);
                for j in 0..pw {
                    out[i * pw + j] = f(a[[yy, reflect(j as i64 - pad as i64, nx)]]);
                }
            }
            out
        };
        let glr = lut.is_some();
        Plan {
            ny,
            nx,
            r,
            pad,
            pw,
            dv: padded(dist, &|v| v),
            xl: if glr {
                padded(dist, &xlogx)
            } else {
                Vec::new()
            },
            lut: lut.unwrap_or_default(),
            glr,
            v: padded(avg, &|v| v),
            inside: (0..ph * pw)
                .map(|k| {
                    let (i, j) = (k / pw, k % pw);
                    let ok = (pad..pad + ny).contains(&i) && (pad..pad + nx).contains(&j);
                    if ok { 1.0 } else { 0.0 }
                })
                .collect(),
            groups,
        }
    }

    fn n_bands(&self) -> usize {
        self.ny.div_ceil(BAND)
    }

    /// Computes the per-pixel mean block distance for offset `d` over the band starting at row
    /// `y0` with `bh` rows and hands each output row to `sink(i, d_row)`.
    fn band_distances(
        &self,
        y0: usize,
        bh: usize,
        d: [i64; 2],
        bufs: &mut Bufs,
        mut sink: impl FnMut(usize, &[f32]),
    ) {
        let Bufs { term, vs, drow } = bufs;
        let (r, nx, pw) = (self.r, self.nx, self.pw);
        let tw = nx + 2 * r;
        let th = bh + 2 * r;
        term.resize(th * tw, 0.0);
        vs.resize(tw, 0.0);
        drow.resize(nx, 0.0);
        let cs = self.pad - r;
        for ii in 0..th {
            let prow = y0 + ii + self.pad - r;
            let qrow = (prow as i64 + d[0]) as usize;
            let qs = (cs as i64 + d[1]) as usize;
            let a = &self.dv[prow * pw + cs..prow * pw + cs + tw];
            let b = &self.dv[qrow * pw + qs..qrow * pw + qs + tw];
            let t = &mut term[ii * tw..(ii + 1) * tw];
            if self.glr {
                let xa = &self.xl[prow * pw + cs..prow * pw + cs + tw];
                let xb = &self.xl[qrow * pw + qs..qrow * pw + qs + tw];
                let ln2 = std::f32::consts::LN_2;
                if self.lut.is_empty() {
                    for j in 0..tw {
                        let s = a[j] + b[j];
                        t[j] = xa[j] + xb[j] - xlogx(s) + s * ln2;
                    }
                } else {
                    for j in 0..tw {
                        let s = a[j] + b[j];
                        t[j] = xa[j] + xb[j] - self.lut[s as usize] + s * ln2;
                    }
                }
            } else {
                for j in 0..tw {
                    let e = a[j] - b[j];
                    t[j] = e * e;
                }
            }
        }
        let k = 2 * r + 1;
        let inv_n = 1.0 / (k * k) as f32;
        vs.iter_mut().for_each(|v| *v = 0.0);
        for ii in 0..k {
            for (v, t) in vs.iter_mut().zip(&term[ii * tw..(ii + 1) * tw]) {
                *v += t;
            }
        }
        for i in 0..bh {
            let mut s: f32 = vs[..k].iter().sum();
            drow[0] = s * inv_n;
            for j in 1..nx {
                s += vs[j + k - 1] - vs[j - 1];
                drow[j] = s * inv_n;
            }
            sink(i, drow);
            if i + 1 < bh {
                let (add, sub) = ((i + k) * tw, i * tw);
                for j in 0..tw {
                    vs[j] += term[add + j] - term[sub + j];
                }
            }
        }
    }

    fn row(&self, y: usize, d: [i64; 2]) -> &[f32] {
        let row = (y as i64 + self.pad as i64 + d[0]) as usize;
        let col = (self.pad as i64 + d[1]) as usize;
        &self.v[row * self.pw + col..row * self.pw + col + self.nx]
    }

    fn mask_row(&self, y: usize, d: [i64; 2]) -> &[f32] {
        let row = (y as i64 + self.pad as i64 + d[0]) as usize;
        let col = (self.pad as i64 + d[1]) as usize;
        &self.inside[row * self.pw + col..row * self.pw + col + self.nx]
    }

    /// Runs all groups over one band, handing every contribution to `acc`.
    fn run_band(
        &self,
        y0: usize,
        bh: usize,
        s: &mut Scratch,
        acc: &mut impl FnMut(usize, RowCtx<'_>),
    ) {
        let nx = self.nx;
        let r = self.r as i64;
        for g in self.groups {
            if g.best_only {
                s.best_d.clear();
                s.best_d.resize(bh * nx, f32::INFINITY);
                s.best_v.clear();
                s.best_v.resize(bh * nx, 0.0);
                for &d in &g.offsets {
                    let (bd, bv) = (&mut s.best_d, &mut s.best_v);
                    self.band_distances(y0, bh, d, &mut s.bufs, |i, dr| {
                        let vq = self.row(y0 + i, d);
                        let mq = self.mask_row(y0 + i, d);
                        let bd = &mut bd[i * nx..(i + 1) * nx];
                        let bv = &mut bv[i * nx..(i + 1) * nx];
                        for j in 0..nx {
                            if mq[j] > 0.0 && dr[j] < bd[j] {
                                bd[j] = dr[j];
                                bv[j] = vq[j];
                            }
                        }
                    });
                }
                s.best_m.clear();
                s.best_m.extend(
                    s.best_d
                        .iter()
                        .map(|d| if d.is_finite() { 1.0 } else { 0.0 }),
                );
                for d in s.best_d.iter_mut().filter(|d| !d.is_finite()) {
                    *d = 0.0;
                }
                for i in 0..bh {
                    acc(
                        i,
                        RowCtx {
                            d: &s.best_d[i * nx..(i + 1) * nx],
                            vq: &s.best_v[i * nx..(i + 1) * nx],
                            vp: self.row(y0 + i, [0, 0]),
                            mq: &s.best_m[i * nx..(i + 1) * nx],
                            vmd: None,
                        },
                    );
                }
            } else {
                for &d in &g.offsets {
                    let local = d != [0, 0] && d[0].abs() <= r && d[1].abs() <= r;
                    self.band_distances(y0, bh, d, &mut s.bufs, |i, dr| {
                        acc(
                            i,
                            RowCtx {
                                d: dr,
                                vq: self.row(y0 + i, d),
                                vp: self.row(y0 + i, [0, 0]),
                                mq: self.mask_row(y0 + i, d),
                                vmd: local.then(|| self.row(y0 + i, [-d[0], -d[1]])),
                            },
                        );
                    });
                }
            }
        }
    }

    /// The NLM estimate with filter strength `h` (distance units) and offset `c`.
    fn filter(&self, h: f64, c: f64, progress: &dyn Progress) -> Result<Array2<f32>> {
        let (ny, nx) = (self.ny, self.nx);
        let nb = self.n_bands();
        progress.start("nlm", nb as u64);
        let inv_h2 = (1.0 / (h * h)) as f32;
        let c = c as f32;
        let bands: Vec<Option<Vec<f32>>> = (0..nb)
            .into_par_iter()
            .map_init(Scratch::default, |s, b| {
                if progress.is_cancelled() {
                    return None;
                }
                let y0 = b * BAND;
                let bh = BAND.min(ny - y0);
                let mut num = vec![0.0f32; bh * nx];
                let mut den = vec![0.0f32; bh * nx];
                self.run_band(y0, bh, s, &mut |i, ctx| {
                    let num = &mut num[i * nx..(i + 1) * nx];
                    let den = &mut den[i * nx..(i + 1) * nx];
                    for ((((n, de), &d), &v), &m) in num
                        .iter_mut()
                        .zip(den.iter_mut())
                        .zip(ctx.d)
                        .zip(ctx.vq)
                        .zip(ctx.mq)
                    {
                        let w = m * fexp_neg((d - c).max(0.0) * inv_h2);
                        *n += w * v;
                        *de += w;
                    }
                });
                progress.advance(1);
                Some(num.iter().zip(&den).map(|(n, d)| n / d).collect())
            })
            .collect();
        check_cancel(progress)?;
        let mut out = Array2::<f32>::zeros((ny, nx));
        for (b, band) in bands.into_iter().enumerate() {
            let band = band.ok_or(stem_core::Error::Cancelled)?;
            for (k, v) in band.into_iter().enumerate() {
                out[[b * BAND + k / nx, k % nx]] = v;
            }
        }
        Ok(out)
    }

    /// SURE risk per pixel for the grid `h_k = H_MAX/√m_k` (Anscombe domain, σ = 1, offset 2),
    /// on every `SURE_STRIDE`-th band. Returns `(h_k, risk_k)`.
    fn sure(
        &self,
        var: ndarray::ArrayView2<'_, f32>,
        progress: &dyn Progress,
    ) -> Result<Vec<(f64, f64)>> {
        let (ny, nx) = (self.ny, self.nx);
        let bands: Vec<usize> = (0..self.n_bands()).step_by(SURE_STRIDE).collect();
        progress.start("nlm: SURE", bands.len() as u64);
        let n = ((2 * self.r + 1) * (2 * self.r + 1)) as f64;
        let inv_h2 = (1.0 / (H_MAX * H_MAX)) as f32;
        let c = 2.0f32;
        let parts: Vec<Option<([f64; K], usize)>> = bands
            .par_iter()
            .map_init(Scratch::default, |s, &b| {
                if progress.is_cancelled() {
                    return None;
                }
                let y0 = b * BAND;
                let bh = BAND.min(ny - y0);
                // Per pixel and h: S0 = Σw, S1 = Σw·z_q, G0 = Σw·g, G1 = Σw·g·z_q.
                let mut acc = vec![0.0f32; bh * nx * K * 4];
                self.run_band(y0, bh, s, &mut |i, ctx| {
                    for j in 0..nx {
                        let x = ctx.d[j] - c;
                        let w1 = ctx.mq[j] * fexp_neg(x.max(0.0) * inv_h2);
                        let zq = ctx.vq[j];
                        let g = if x > 0.0 {
                            let mut g = 2.0 * (ctx.vp[j] - zq);
                            if let Some(vmd) = ctx.vmd {
                                g += 2.0 * (ctx.vp[j] - vmd[j]);
                            }
                            g
                        } else {
                            0.0
                        };
                        let w = powers(w1);
                        let a = &mut acc[(i * nx + j) * K * 4..(i * nx + j + 1) * K * 4];
                        let gz = g * zq;
                        for (a, &wk) in a.chunks_exact_mut(4).zip(&w) {
                            a[0] += wk;
                            a[1] += wk * zq;
                            a[2] += wk * g;
                            a[3] += wk * gz;
                        }
                    }
                });
                let mut risk = [0.0f64; K];
                for i in 0..bh {
                    let zp = self.row(y0 + i, [0, 0]);
                    for j in 0..nx {
                        let a = &acc[(i * nx + j) * K * 4..(i * nx + j + 1) * K * 4];
                        for (k, rk) in risk.iter_mut().enumerate() {
                            let h2 = H_MAX * H_MAX / f64::from(SURE_POWERS[k]);
                            let v = |o: usize| f64::from(a[4 * k + o]);
                            let (s0, s1, g0, g1) = (v(0), v(1), v(2), v(3));
                            let f = s1 / s0;
                            let div = (1.0 - (g1 - f * g0) / (n * h2)) / s0;
                            let e = f - f64::from(zp[j]);
                            let v = f64::from(var[[y0 + i, j]]);
                            *rk += e * e - v + 2.0 * v * div;
                        }
                    }
                }
                progress.advance(1);
                Some((risk, bh * nx))
            })
            .collect();
        check_cancel(progress)?;
        let mut total = [0.0f64; K];
        let mut count = 0usize;
        for p in parts {
            let (risk, c) = p.ok_or(stem_core::Error::Cancelled)?;
            for k in 0..K {
                total[k] += risk[k];
            }
            count += c;
        }
        Ok((0..K)
            .map(|k| {
                (
                    H_MAX / f64::from(SURE_POWERS[k]).sqrt(),
                    total[k] / count.max(1) as f64,
                )
            })
            .collect())
    }
}

/// The `h` minimising SURE: the grid minimum, refined by a parabola through it and its two
/// neighbours in `ln h` (the grid is uniform in `ln h`), clamped to the neighbours.
fn sure_minimum(sure: &[(f64, f64)]) -> f64 {
    let Some(k) = (0..sure.len()).min_by(|&a, &b| sure[a].1.total_cmp(&sure[b].1)) else {
        return 1.0;
    };
    if k == 0 || k + 1 == sure.len() {
        return sure[k].0;
    }
    let (a, b, c) = (sure[k - 1].1, sure[k].1, sure[k + 1].1);
    let den = a - 2.0 * b + c;
    let t = if den > 0.0 {
        (0.5 * (a - c) / den).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    // ln h steps by −ln√2 per grid index.
    (sure[k].0.ln() - t * 0.5 * std::f64::consts::LN_2).exp()
}

/// `w^m` for the SURE grid powers `m = 2^k`, `k = 0..8` (repeated squaring).
#[inline(always)]
fn powers(w1: f32) -> [f32; K] {
    let mut w = [w1; K];
    for k in 1..K {
        w[k] = w[k - 1] * w[k - 1];
    }
    w
}

/// Per-thread buffers of [`Plan::band_distances`]: the term image of a band, the running
/// column sums and one row of distances.
#[derive(Default)]
struct Bufs {
    term: Vec<f32>,
    vs: Vec<f32>,
    drow: Vec<f32>,
}

#[derive(Default)]
struct Scratch {
    bufs: Bufs,
    best_d: Vec<f32>,
    best_v: Vec<f32>,
    best_m: Vec<f32>,
}

#[cfg(test)]
mod tests;
