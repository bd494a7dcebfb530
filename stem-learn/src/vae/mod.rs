//! phyVAE: a variational autoencoder on sub-images of a regular grid whose latent maps are
//! pushed towards piecewise-constant domains.
//!
//! The image (`[y, x]`) is cut into `window_px` windows at `stride_px` on a regular grid
//! ([`SubimageGrid`], raster order, grid shape `[gy, gx]`), optionally re-centred on the
//! brightest column near each grid point (`align_px`), and standardised (global mean 0, std 1).
//! An MLP VAE (encoder `w² → h → h → (μ, log σ²)`, decoder `d → h → h → w²`, tanh) is trained
//! on them with a **Gaussian likelihood of fixed σ = `recon_sigma`** and an `N(0, I)` prior:
//!
//! `−ELBO/B = (1/B)·Σ_b [ Σ_px (x − x̂)²/(2σ²) + β·½Σ_j (μ_j² + σ_j² − 1 − ln σ_j²) ]`
//! (constants dropped), with the reparameterisation `z = μ + σ·ε`, `ε` drawn from a seeded
//! `ChaCha8Rng` (candle's CPU RNG cannot be seeded).
//!
//! Three modes ([`VaeMode`]; `shared/reference/learn.md` §1.6):
//!
//! * [`VaeMode::Plain`]: −ELBO on shuffled minibatches of `tiles_per_batch·batch_side²` windows.
//! * [`VaeMode::Phy`] (differentiable): the −ELBO sees the same shuffled minibatches as plain
//!   mode, and every step also encodes ALL `N = gy·gx` windows and adds
//!   `(λ/N)·Σ_j TV_iso(μ̃_j)`, `TV_iso(m) = Σ √(ε + (Δ_y m)² + (Δ_x m)²)` over the whole
//!   ordered `[gy, gx]` grid (forward differences: every neighbour pair once), where
//!   `μ̃_j = (μ_j − mean_j)/(mean|μ_j − mean_j| + 10⁻⁶)` is latent map `j` normalised by its mean
//!   absolute deviation over the grid. The normalisation (gradient kept through both statistics)
//!   makes the penalty invariant to the scale of each latent map, so the encoder cannot lower it
//!   by shrinking the range of μ (which the KL term would reward), and `TV(u)/‖u − ū‖₁` is the
//!   Cheeger-ratio relaxation (Szlam & Bresson, ICML 2010), which favours balanced regions with
//!   short walls. (Dividing by the standard deviation instead, an earlier version, let training
//!   reach maps that are constant except for a few outlier lattice sites: TV/std of such a map
//!   → 0.) All of it is tensor ops, so it carries a gradient; with λ = 0 training is
//!   bit-identical to plain mode. With [`VaeConfig::full_grid`]` = false` the TV term is taken
//!   instead over `tiles_per_batch` random contiguous `t × t` tiles (`t = batch_side`, `B_t`
//!   windows, normalised over the tile batch, weight `λ/B_t`), the earlier formulation.
//! * [`VaeMode::Faithful`] (Biswas, Ziatdinov & Kalinin, *Mach. Learn.: Sci. Technol.* 2023,
//!   arXiv:2302.04216, as their published code does it): the same square tiles, and the loss
//!   `(w₁ + L_phys)·(−ELBO/B)`, where [`physics_weight`] `L_phys` (min-max normalise, bilateral
//!   filter σ_s = 5, Scharr edge magnitude, summed, averaged over the latent maps) is computed
//!   on **detached** values: it only rescales the step. With Adam, whose steps are invariant to
//!   a constant loss scale, this is a weak effect; it is reproduced, not endorsed.
//!
//! After training every window is encoded; the latent means form `d` maps `[gy, gx]`, which are
//! segmented by seeded [`kmeans`] into `classes` labels, and a [`boundary_map`] marks cells
//! whose label differs from a 4-neighbour. [`score_segmentation`] scores them against known
//! domain maps (e.g. `stem_sim::dataset::DomainGenerator`'s `domain` mask sampled with
//! [`GridSpec::sample_mask`] at the nominal grid centres, or [`VaeFit::sample_mask_at_centres`]
//! at the centres the windows were actually cut at, the right label once alignment has moved a
//! window by up to half a lattice period). [`VaeConfig::kl_warmup_epochs`] ramps β from 0.
//! Results are deterministic for a seed, on any thread count.
//!
//! The rVAE-style rotation/translation-invariant encoder is not implemented; `align_px` is the
//! cheap substitute for translation invariance on crystalline images.

mod filters;
mod grid;
mod model;
mod segment;

pub use filters::{bilateral, physics_weight, scharr_magnitude};
pub use grid::{GridSpec, SubimageGrid};
pub use segment::{SegmentationScore, boundary_map, kmeans, score_segmentation};

use crate::error::{Error, Result};
use crate::optim::{AdamW, AdamWConfig};
use candle_core::{Device, Tensor};
use model::Mlp;
use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use stem_core::io::png::{PngOptions, save_gray_png, save_png};
use stem_core::{ImageView, Parallelism, Progress};

/// How the VAE is trained (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VaeMode {
    /// −ELBO on shuffled minibatches.
    Plain,
    /// −ELBO (shuffled minibatches) + λ·TV_iso(normalised latent-mean maps) on contiguous
    /// grid tiles (or on the whole grid with [`VaeConfig::full_grid`]), differentiable.
    Phy {
        /// TV weight λ (per window, ≥ 0).
        lambda: f64,
        /// Smoothing ε inside the square root (> 0; in latent units²).
        eps: f64,
    },
    /// Biswas et al. (2023): `(w₁ + L_phys)·(−ELBO)` with detached `L_phys`, on grid tiles.
    Faithful {
        /// Base weight `w₁` (the paper's code recommends 0 < w₁ ≤ 0.5; default 0.5).
        w1: f64,
        /// Bilateral spatial σ (grid cells; the code uses 5).
        sigma_spatial: f64,
    },
}

impl VaeMode {
    /// [`VaeMode::Phy`] with weight `lambda` and ε = 1e-3.
    pub fn phy(lambda: f64) -> Self {
        VaeMode::Phy { lambda, eps: 1e-3 }
    }

    /// [`VaeMode::Faithful`] with the published defaults `w₁ = 0.5`, σ_s = 5.
    pub fn faithful() -> Self {
        VaeMode::Faithful {
            w1: 0.5,
            sigma_spatial: 5.0,
        }
    }
}

/// Settings of [`fit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    /// Window side (px, ≥ 2). Default 32.
    pub window_px: usize,
    /// Grid stride (px, ≥ 1). Default 8.
    pub stride_px: usize,
    /// Side of the square (px) in which each window is re-centred on the brightest column of the
    /// blurred image; 0 = no alignment. About one lattice period works. Default 0.
    pub align_px: usize,
    /// Gaussian σ (px) of the blur used for alignment (> 0). Default 1.5.
    pub align_blur_px: f64,
    /// With alignment on: snap every window to the nearest site of one global lattice
    /// (`stem_core::lattice::estimate_lattice`, see [`SubimageGrid::extract_lattice`]) instead
    /// of the per-window peak. Default true.
    pub align_lattice: bool,
    /// Latent dimension d (1 ..= 8). Default 2.
    pub latent_dim: usize,
    /// Hidden width h of the MLPs (≥ 1). Default 64.
    pub hidden: usize,
    /// Training mode. Default [`VaeMode::phy`]`(1.0)`.
    pub mode: VaeMode,
    /// Training epochs (≥ 1). One epoch = ⌈N / batch_side²⌉ steps. Default 60.
    pub epochs: usize,
    /// Tile side t (tiles are clipped to the grid). Default 4.
    pub batch_side: usize,
    /// Tiles per minibatch m (≥ 1): a minibatch holds m·t² windows, as m independent random
    /// tiles in `Phy`/`Faithful` mode (several tiles keep minibatches closer to i.i.d. than
    /// one large tile) or m·t² shuffled windows in `Plain` mode. Default 4.
    pub tiles_per_batch: usize,
    /// KL weight β (≥ 0). Default 1.
    pub kl_weight: f64,
    /// KL warm-up: the KL weight of epoch `e` (0-based) is `β·min(1, e / kl_warmup_epochs)`,
    /// so training starts as a plain autoencoder; 0 = no warm-up. Default 0.
    pub kl_warmup_epochs: usize,
    /// [`VaeMode::Phy`] only: take the TV term over the whole ordered `[gy, gx]` latent maps at
    /// every step (every neighbour pair once, no tile edges; the issue's formulation; one extra
    /// encoder pass over all windows per step) instead of over `tiles_per_batch` random tiles.
    /// The −ELBO sees the same shuffled minibatches as [`VaeMode::Plain`] either way, and with
    /// λ = 0 full-grid training is bit-identical to plain training. Default true: the
    /// mean-absolute-deviation normalisation needs the whole grid (on 4×4 tiles, where most
    /// windows snap to the same lattice site, it collapsed the segmentation; `bench/vae/RESULTS.md`).
    pub full_grid: bool,
    /// σ of the Gaussian likelihood, in standardised intensity units (> 0). Default 0.3
    /// (σ = 1 let the KL term collapse the posterior on aligned lattice windows).
    pub recon_sigma: f64,
    /// Optimizer settings. Default AdamW lr 1e-3, no weight decay.
    pub optimizer: AdamWConfig,
    /// Number of segmentation classes k for k-means on the latent means (1 ..= 255). Default 2.
    pub classes: usize,
    /// Seed of the weights, minibatch order, tile positions, ε and k-means. Default 0.
    pub seed: u64,
    /// Threads. Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            window_px: 32,
            stride_px: 8,
            align_px: 0,
            align_blur_px: 1.5,
            align_lattice: true,
            latent_dim: 2,
            hidden: 64,
            mode: VaeMode::phy(1.0),
            epochs: 60,
            batch_side: 4,
            tiles_per_batch: 4,
            kl_weight: 1.0,
            kl_warmup_epochs: 0,
            full_grid: true,
            recon_sigma: 0.3,
            optimizer: AdamWConfig::default(),
            classes: 2,
            seed: 0,
            parallelism: Parallelism::Auto,
        }
    }
}

impl VaeConfig {
    /// Checks every field (the window against the image happens in [`fit`]).
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &'static str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ))
            }
        };
        let nonneg = |name: &'static str, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be finite and >= 0, got {v}"),
                ))
            }
        };
        if self.window_px < 2 {
            return Err(Error::param(
                "window_px",
                format!("must be >= 2, got {}", self.window_px),
            ));
        }
        if self.stride_px == 0 {
            return Err(Error::param("stride_px", "must be >= 1, got 0"));
        }
        pos("align_blur_px", self.align_blur_px)?;
        if !(1..=8).contains(&self.latent_dim) {
            return Err(Error::param(
                "latent_dim",
                format!("must be 1 ..= 8, got {}", self.latent_dim),
            ));
        }
        if self.hidden == 0 {
            return Err(Error::param("hidden", "must be >= 1, got 0"));
        }
        if self.epochs == 0 {
            return Err(Error::param("epochs", "must be >= 1, got 0"));
        }
        if self.batch_side == 0 {
            return Err(Error::param("batch_side", "must be >= 1, got 0"));
        }
        if self.tiles_per_batch == 0 {
            return Err(Error::param("tiles_per_batch", "must be >= 1, got 0"));
        }
        nonneg("kl_weight", self.kl_weight)?;
        pos("recon_sigma", self.recon_sigma)?;
        self.optimizer.validate()?;
        if !(1..=255).contains(&self.classes) {
            return Err(Error::param(
                "classes",
                format!("must be 1 ..= 255, got {}", self.classes),
            ));
        }
        match self.mode {
            VaeMode::Plain => {}
            VaeMode::Phy { lambda, eps } => {
                nonneg("lambda", lambda)?;
                pos("eps", eps)?;
            }
            VaeMode::Faithful { w1, sigma_spatial } => {
                nonneg("w1", w1)?;
                pos("sigma_spatial", sigma_spatial)?;
            }
        }
        Ok(())
    }
}

/// What [`fit`] returns.
#[derive(Clone, Debug)]
pub struct VaeFit {
    /// The window grid.
    pub grid: GridSpec,
    /// Latent means μ_j, one `[gy, gx]` map per latent dimension.
    pub latent_mean: Vec<Array2<f32>>,
    /// Latent log-variances ln σ_j², one `[gy, gx]` map per latent dimension.
    pub latent_log_var: Vec<Array2<f32>>,
    /// k-means labels of the latent means (`[gy, gx]`, 0 ..= classes − 1, ordered by the first
    /// latent coordinate of the cluster centroid).
    pub labels: Array2<u16>,
    /// [`boundary_map`] of `labels` (`[gy, gx]`, 1 on a boundary).
    pub boundary: Array2<u8>,
    /// Mean −ELBO per window (standardised units, constants dropped) per epoch.
    pub epoch_neg_elbo: Vec<f64>,
    /// Mean physics term per step and epoch: normalised TV_iso per window for `Phy`, `L_phys` for
    /// `Faithful`, 0 for `Plain`.
    pub epoch_physics: Vec<f64>,
    /// Optimisation steps taken.
    pub steps: u64,
    /// Centre each window was actually cut at (px, `[y, x]`, raster order of the grid): the
    /// nominal grid centre, or the aligned / lattice-snapped one.
    pub centres_px: Vec<[f64; 2]>,
}

impl VaeFit {
    /// The value of `mask` (`[y, x]`, the image's shape) at the centre each window was actually
    /// cut at ([`centres_px`](Self::centres_px), rounded half up and clamped into the mask), as a
    /// `[gy, gx]` map: the physically right label of a window that alignment moved away from its
    /// nominal grid centre (compare [`GridSpec::sample_mask`], which reads the nominal centre).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for an empty mask.
    pub fn sample_mask_at_centres(&self, mask: ArrayView2<'_, u8>) -> Result<Array2<u16>> {
        let (h, w) = mask.dim();
        let [gy, gx] = self.grid.shape;
        if h == 0 || w == 0 || self.centres_px.len() != gy * gx {
            return Err(Error::ShapeMismatch {
                what: "mask covering the window centres",
                expected: vec![gy * gx],
                found: vec![h, w, self.centres_px.len()],
            });
        }
        let at = |v: f64, n: usize| ((v + 0.5).max(0.0) as usize).min(n - 1);
        Ok(Array2::from_shape_fn((gy, gx), |(i, j)| {
            let c = self.centres_px[i * gx + j];
            u16::from(mask[[at(c[0], h), at(c[1], w)]])
        }))
    }

    /// Writes `latent_<j>.png` (percentile-stretched), `segmentation.png` (labels spread over
    /// 0–255) and `boundary.png` (0/255) into `dir` at grid resolution (`[gy, gx]`, one pixel
    /// per window).
    pub fn write_pngs(&self, dir: &Path) -> Result<()> {
        for (j, m) in self.latent_mean.iter().enumerate() {
            save_png(
                dir.join(format!("latent_{j}.png")),
                m.view(),
                &PngOptions::default(),
            )?;
        }
        let k = self.labels.iter().copied().max().unwrap_or(0).max(1);
        let seg = self
            .labels
            .mapv(|l| (u32::from(l) * 255 / u32::from(k)) as u8);
        save_gray_png(dir.join("segmentation.png"), &seg)?;
        save_gray_png(dir.join("boundary.png"), &self.boundary.mapv(|b| b * 255))?;
        Ok(())
    }
}

/// One standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The grid indices of each minibatch of one epoch, and the tile side when batches are tiles.
fn epoch_batches(
    mode: &VaeMode,
    grid: &GridSpec,
    side: usize,
    tiles: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<Vec<u32>>, Option<[usize; 2]>) {
    let n = grid.len();
    let [gy, gx] = grid.shape;
    let (ty, tx) = (side.min(gy), side.min(gx));
    let b = ty * tx * tiles;
    let steps = n.div_ceil(b);
    match mode {
        VaeMode::Plain => {
            let mut perm: Vec<u32> = (0..n as u32).collect();
            perm.shuffle(rng);
            (perm.chunks(b).map(<[u32]>::to_vec).collect(), None)
        }
        _ => {
            let batches =
                (0..steps)
                    .map(|_| {
                        let mut idx = Vec::with_capacity(b);
                        for _ in 0..tiles {
                            let oy = rng.random_range(0..=gy - ty);
                            let ox = rng.random_range(0..=gx - tx);
                            idx.extend((0..ty).flat_map(|i| {
                                (0..tx).map(move |j| ((oy + i) * gx + ox + j) as u32)
                            }));
                        }
                        idx
                    })
                    .collect();
            (batches, Some([ty, tx]))
        }
    }
}

/// Isotropic TV `Σ √(ε + Δ_y² + Δ_x²)` of `mu` `[m·ty·tx, d]` seen as m·d maps `[ty, tx]`,
/// summed over maps (forward differences on the `(ty−1) × (tx−1)` cells that have both).
fn tv_iso(mu: &Tensor, ty: usize, tx: usize, eps: f64) -> Result<Tensor> {
    let d = mu.dim(1)?;
    let tiles = mu.dim(0)? / (ty * tx);
    let m = mu.reshape((tiles, ty, tx, d))?;
    if ty < 2 || tx < 2 {
        return Ok(Tensor::zeros((), mu.dtype(), mu.device())?);
    }
    let gy = (m.narrow(1, 1, ty - 1)? - m.narrow(1, 0, ty - 1)?)?.narrow(2, 0, tx - 1)?;
    let gx = (m.narrow(2, 1, tx - 1)? - m.narrow(2, 0, tx - 1)?)?.narrow(1, 0, ty - 1)?;
    Ok(((gy.sqr()? + gx.sqr()?)? + eps)?.sqrt()?.sum_all()?)
}

/// Normalises each column of `mu` `[b, d]` over the batch by its mean absolute deviation,
/// `(μ_j − mean_j)/(mean_b |μ_j − mean_j| + 1e-6)`, keeping the gradient through both
/// statistics. TV of the result is invariant to a rescaling of a latent map (the encoder cannot
/// lower it by shrinking μ, which the KL term would reward), and it is the Cheeger-ratio
/// relaxation `TV(u)/‖u − ū‖₁` (Szlam & Bresson, ICML 2010): for a two-level map covering a
/// fraction f of the grid it equals perimeter/(2f(1 − f)), smallest for balanced regions with
/// short walls. Dividing by the standard deviation instead (√(f(1 − f))) rewards maps that are
/// constant except for a few outlier cells (TV/std ∝ √f → 0), which is what training found.
fn normalise_columns(mu: &Tensor) -> Result<Tensor> {
    let c = mu.broadcast_sub(&mu.mean_keepdim(0)?)?;
    let mad = (c.abs()?.mean_keepdim(0)? + 1e-6)?;
    Ok(c.broadcast_div(&mad)?)
}

/// Trains a VAE on the windows of `image` (`[y, x]`) and segments its latent maps.
///
/// Reports one progress unit per epoch (stage `"vae"`) and checks for cancel before every step.
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad config or a window (plus alignment margin) larger than
/// the image, [`Error::Core`] for non-finite pixels, [`Error::NonFiniteLoss`] if training
/// diverges, [`Error::Cancelled`].
///
/// ```
/// use ndarray::Array2;
/// use stem_core::{ImageView, NoProgress};
/// use stem_learn::vae::{VaeConfig, VaeMode, fit, score_segmentation};
///
/// // Two domains: a darker left half and a brighter right half, both with a fixed texture.
/// let img = Array2::from_shape_fn((48, 64), |(y, x)| {
///     let level = if x < 32 { 0.0 } else { 1.0 };
///     level + 0.3 * ((y * 31 + x * 17) % 7) as f32 / 7.0
/// });
/// let cfg = VaeConfig { window_px: 8, stride_px: 4, epochs: 30, batch_side: 4,
///                       mode: VaeMode::phy(1.0), ..VaeConfig::default() };
/// let fit = fit(ImageView::new(img.view()), &cfg, &NoProgress).unwrap();
/// assert_eq!(fit.grid.shape, [11, 15]);
/// let truth = Array2::from_shape_fn((11, 15), |(i, j)| {
///     u16::from(fit.grid.centre_px(i, j)[1] >= 32.0)
/// });
/// let s = score_segmentation(fit.labels.view(), truth.view(), 1).unwrap();
/// assert!(s.accuracy > 0.9, "{s:?}");
/// ```
pub fn fit(
    image: ImageView<'_, f32>,
    config: &VaeConfig,
    progress: &dyn Progress,
) -> Result<VaeFit> {
    config.validate()?;
    config
        .parallelism
        .install(|| fit_inner(image.data(), config, progress))?
}

fn fit_inner(image: ArrayView2<'_, f32>, c: &VaeConfig, progress: &dyn Progress) -> Result<VaeFit> {
    let smoothed = if c.align_px > 0 {
        Some(stem_core::filters::gaussian_blur(
            image,
            c.align_blur_px,
            3.0,
        )?)
    } else {
        None
    };
    let grid = match &smoothed {
        Some(s) if c.align_lattice => {
            let lattice = stem_core::lattice::estimate_lattice(
                ImageView::new(image),
                &stem_core::lattice::LatticeConfig::default(),
            )?;
            SubimageGrid::extract_lattice(
                image,
                s.view(),
                c.window_px,
                c.stride_px,
                c.align_px,
                &lattice,
            )?
        }
        s => SubimageGrid::extract(
            image,
            s.as_ref().map(|s| s.view()),
            c.window_px,
            c.stride_px,
            c.align_px,
        )?,
    };
    let spec = grid.spec;
    let n = spec.len();
    let ww = c.window_px * c.window_px;
    // Standardise globally (f64 sums; a constant image keeps std 1).
    let mean = grid.data.iter().map(|&v| f64::from(v)).sum::<f64>() / grid.data.len() as f64;
    let var = grid
        .data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / grid.data.len() as f64;
    let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
    let data: Vec<f32> = grid
        .data
        .iter()
        .map(|&v| ((f64::from(v) - mean) / sd) as f32)
        .collect();
    let dev = Device::Cpu;
    let xs = Tensor::from_vec(data, (n, ww), &dev)?;

    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let net = Mlp::new(ww, c.hidden, c.latent_dim, &mut rng)?;
    let mut opt = AdamW::new(c.optimizer.clone())?;
    let mut data_rng = ChaCha8Rng::seed_from_u64(c.seed);
    data_rng.set_stream(1);
    let d = c.latent_dim;
    let two_s2 = 2.0 * c.recon_sigma * c.recon_sigma;
    progress.start("vae", c.epochs as u64);
    let mut epoch_neg_elbo = Vec::with_capacity(c.epochs);
    let mut epoch_physics = Vec::with_capacity(c.epochs);
    let grid_tv = c.full_grid && matches!(c.mode, VaeMode::Phy { .. });
    for epoch in 0..c.epochs {
        let beta = if c.kl_warmup_epochs > 0 {
            c.kl_weight * (epoch as f64 / c.kl_warmup_epochs as f64).min(1.0)
        } else {
            c.kl_weight
        };
        let (batches, tiles, tile) = if grid_tv {
            // −ELBO on shuffled minibatches; the TV term on the whole grid each step.
            let (shuffled, _) = epoch_batches(
                &VaeMode::Plain,
                &spec,
                c.batch_side,
                c.tiles_per_batch,
                &mut data_rng,
            );
            (shuffled, Vec::new(), Some(spec.shape))
        } else {
            let (tiles, tile) = epoch_batches(
                &c.mode,
                &spec,
                c.batch_side,
                c.tiles_per_batch,
                &mut data_rng,
            );
            // Phy: the −ELBO sees shuffled minibatches exactly as plain mode; the TV term sees
            // separate contiguous tiles (one tile batch per step).
            if matches!(c.mode, VaeMode::Phy { .. }) {
                let (shuffled, _) = epoch_batches(
                    &VaeMode::Plain,
                    &spec,
                    c.batch_side,
                    c.tiles_per_batch,
                    &mut data_rng,
                );
                (shuffled, tiles, tile)
            } else {
                (tiles, Vec::new(), tile)
            }
        };
        let mut tiles = tiles.into_iter();
        let (mut sum_elbo, mut sum_phys, mut count) = (0.0, 0.0, 0usize);
        for idx in batches {
            let tile_idx = tiles.next();
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let b = idx.len();
            let ids = Tensor::from_vec(idx, b, &dev)?;
            let x = xs.index_select(&ids, 0)?;
            let (mu, lv) = net.encode(&x)?;
            let eps: Vec<f32> = (0..b * d).map(|_| normal(&mut data_rng)).collect();
            let eps = Tensor::from_vec(eps, (b, d), &dev)?;
            let z = (&mu + ((&lv * 0.5)?.exp()? * eps)?)?;
            let xhat = net.decode(&z)?;
            let rec = ((xhat - &x)?.sqr()?.sum_all()? / two_s2)?;
            let kl = ((mu.sqr()? + lv.exp()?)? - &lv)?;
            let kl = ((kl.sum_all()? - (b * d) as f64)? * 0.5)?;
            let neg_elbo = ((rec + (kl * beta)?)? / b as f64)?;
            let (loss, phys) = match (c.mode, tile) {
                (VaeMode::Phy { lambda, eps }, Some([ty, tx])) if grid_tv => {
                    // The whole ordered grid: μ of every window, raster order = [gy, gx] maps.
                    let (mu_all, _) = net.encode(&xs)?;
                    let tv = (tv_iso(&normalise_columns(&mu_all)?, ty, tx, eps)? / n as f64)?;
                    let p = f64::from(tv.to_scalar::<f32>()?);
                    (((tv * lambda)? + &neg_elbo)?, p)
                }
                (VaeMode::Phy { lambda, eps }, Some([ty, tx])) => {
                    let ti = tile_idx.unwrap_or_default();
                    let nt = ti.len();
                    let bt = nt.max(1);
                    let ti = Tensor::from_vec(ti, nt, &dev)?;
                    let (mu_t, _) = net.encode(&xs.index_select(&ti, 0)?)?;
                    let tv = (tv_iso(&normalise_columns(&mu_t)?, ty, tx, eps)? / bt as f64)?;
                    let p = f64::from(tv.to_scalar::<f32>()?);
                    (((tv * lambda)? + &neg_elbo)?, p)
                }
                (VaeMode::Faithful { w1, sigma_spatial }, Some([ty, tx])) => {
                    let m = mu.detach().to_dtype(candle_core::DType::F64)?;
                    let v: Vec<Vec<f64>> = m.to_vec2()?;
                    // L_phys of each tile (0 unless square, as the published code), averaged.
                    let tiles = b / (ty * tx);
                    let mut l = 0.0;
                    if ty == tx {
                        for t in 0..tiles {
                            let maps: Vec<Array2<f64>> = (0..d)
                                .map(|j| {
                                    Array2::from_shape_fn((ty, tx), |(i, k)| {
                                        v[t * ty * tx + i * tx + k][j]
                                    })
                                })
                                .collect();
                            l += physics_weight(&maps, sigma_spatial);
                        }
                        l /= tiles as f64;
                    }
                    ((&neg_elbo * (w1 + l))?, l)
                }
                _ => (neg_elbo.clone(), 0.0),
            };
            let lv_ = loss.to_scalar::<f32>()?;
            if !lv_.is_finite() {
                return Err(Error::NonFiniteLoss {
                    step: opt.step_count(),
                    loss: f64::from(lv_),
                });
            }
            sum_elbo += f64::from(neg_elbo.to_scalar::<f32>()?);
            sum_phys += phys;
            count += 1;
            let grads = loss.backward()?;
            opt.step(&net.params, &grads, 1.0)?;
        }
        epoch_neg_elbo.push(sum_elbo / count.max(1) as f64);
        epoch_physics.push(sum_phys / count.max(1) as f64);
        progress.advance(1);
    }

    // Encode every window (chunks keep memory bounded).
    let mut mus = Vec::with_capacity(n * d);
    let mut lvs = Vec::with_capacity(n * d);
    let chunk = 4096;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let (mu, lv) = net.encode(&xs.narrow(0, start, len)?)?;
        mus.extend(mu.flatten_all()?.to_vec1::<f32>()?);
        lvs.extend(lv.flatten_all()?.to_vec1::<f32>()?);
        start += len;
    }
    let [gy, gx] = spec.shape;
    let maps = |v: &[f32]| -> Vec<Array2<f32>> {
        (0..d)
            .map(|j| Array2::from_shape_fn((gy, gx), |(i, k)| v[(i * gx + k) * d + j]))
            .collect()
    };
    let k = c.classes.min(n);
    let labels = kmeans(&mus, d, k, 8, c.seed)?;
    let labels = Array2::from_shape_vec((gy, gx), labels)
        .map_err(|e| Error::param("grid", e.to_string()))?;
    let boundary = boundary_map(labels.view());
    Ok(VaeFit {
        grid: spec,
        latent_mean: maps(&mus),
        latent_log_var: maps(&lvs),
        labels,
        boundary,
        epoch_neg_elbo,
        epoch_physics,
        steps: opt.step_count(),
        centres_px: grid.centres_px,
    })
}

#[cfg(test)]
mod domain_images;
#[cfg(test)]
mod tests;
