//! Training data, augmentation, the ensemble model with its out-of-distribution test, training
//! and prediction.

use super::net::{N_OUTPUTS, PacbedNet, PacbedNetConfig};
use super::preprocess::{Affine, PreprocessConfig};
use crate::error::{Error, Result};
use crate::optim::{AdamW, AdamWConfig, LrSchedule};
use candle_core::{Device, Tensor};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stem_core::{Parallelism, Progress};

/// One labelled PACBED pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct PacbedSample {
    /// The pattern `[k_y, k_x]` (fractions of the beam or counts, ≥ 0), zero angle at
    /// `[h/2, w/2]` (or wherever the model's [`super::Centering`] finds it).
    pub pattern: Array2<f32>,
    /// Angular pixel `[y, x]` in mrad.
    pub mrad_per_px: [f64; 2],
    /// Specimen thickness in nm.
    pub thickness_nm: f64,
    /// Beam tilt `[y, x]` in mrad.
    pub tilt_mrad: [f64; 2],
}

/// A set of labelled patterns.
#[derive(Clone, Debug, Default)]
pub struct PacbedSet {
    /// The samples.
    pub samples: Vec<PacbedSample>,
}

impl PacbedSet {
    /// Checks every sample: finite, non-negative pattern of at least 4×4 px with a non-zero
    /// total, calibration finite and > 0, finite labels (thickness ≥ 0). Errors name the
    /// first bad sample.
    pub fn new(samples: Vec<PacbedSample>) -> Result<Self> {
        for (i, s) in samples.iter().enumerate() {
            let (h, w) = s.pattern.dim();
            let ok = h >= 4
                && w >= 4
                && s.pattern.iter().all(|v| v.is_finite() && *v >= 0.0)
                && s.pattern.sum() > 0.0
                && s.mrad_per_px.iter().all(|v| v.is_finite() && *v > 0.0)
                && s.thickness_nm.is_finite()
                && s.thickness_nm >= 0.0
                && s.tilt_mrad.iter().all(|v| v.is_finite());
            if !ok {
                return Err(Error::param(
                    "samples",
                    format!(
                        "sample {i} ({h}×{w} px, {:?} mrad/px, {} nm, tilt {:?}) has a bad pattern, calibration or label",
                        s.mrad_per_px, s.thickness_nm, s.tilt_mrad
                    ),
                ));
            }
        }
        Ok(PacbedSet { samples })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// SHA-256 over every pattern (shape, little-endian f32), calibration and label, in order.
    pub fn checksum(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.samples {
            for d in s.pattern.shape() {
                h.update((*d as u64).to_le_bytes());
            }
            for v in s.pattern.iter() {
                h.update(v.to_le_bytes());
            }
            for v in s
                .mrad_per_px
                .iter()
                .chain([s.thickness_nm].iter())
                .chain(s.tilt_mrad.iter())
            {
                h.update(v.to_le_bytes());
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// Random degradations applied to each training pattern (a fresh draw per step and sample).
///
/// Geometric ones are one affine resampling ([`Affine::compose`]). Only the rotation changes
/// the labels: the tilt vector is rotated with the pattern; zoom, shear and shift model
/// calibration and centring errors and leave the labels alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PacbedAugment {
    /// Total electrons per pattern, drawn log-uniformly in `[lo, hi]` for Poisson noise;
    /// `None` disables noise (default `Some([1e4, 1e7])`).
    pub dose_range: Option<[f64; 2]>,
    /// Largest centring error in mrad, each axis uniform in ±this (default 0.5).
    pub max_shift_mrad: f64,
    /// Largest relative zoom, uniform in `1 ± this` (default 0.03).
    pub max_zoom: f64,
    /// Largest rotation in degrees, uniform in ±this (default 3).
    pub max_rotation_deg: f64,
    /// Largest shear, uniform in ±this (default 0.02).
    pub max_shear: f64,
}

impl Default for PacbedAugment {
    fn default() -> Self {
        PacbedAugment {
            dose_range: Some([1e4, 1e7]),
            max_shift_mrad: 0.5,
            max_zoom: 0.03,
            max_rotation_deg: 3.0,
            max_shear: 0.02,
        }
    }
}

impl PacbedAugment {
    /// No augmentation at all.
    pub fn none() -> Self {
        PacbedAugment {
            dose_range: None,
            max_shift_mrad: 0.0,
            max_zoom: 0.0,
            max_rotation_deg: 0.0,
            max_shear: 0.0,
        }
    }

    /// Checks: dose range finite with 1 ≤ lo ≤ hi; shift 0 ..= 10 mrad; zoom 0 ..= 0.5;
    /// rotation 0 ..= 180°; shear 0 ..= 0.5.
    pub fn validate(&self) -> Result<()> {
        if let Some([lo, hi]) = self.dose_range
            && !(lo.is_finite() && hi.is_finite() && lo >= 1.0 && lo <= hi)
        {
            return Err(Error::param(
                "dose_range",
                format!("need finite 1 <= lo <= hi electrons, got [{lo}, {hi}]"),
            ));
        }
        for (name, v, max) in [
            ("max_shift_mrad", self.max_shift_mrad, 10.0),
            ("max_zoom", self.max_zoom, 0.5),
            ("max_rotation_deg", self.max_rotation_deg, 180.0),
            ("max_shear", self.max_shear, 0.5),
        ] {
            if !(0.0..=max).contains(&v) {
                return Err(Error::param(name, format!("must be 0 ..= {max}, got {v}")));
            }
        }
        Ok(())
    }

    /// Applies one random draw from `rng` to `s`: writes the network input into `out` and
    /// returns the (possibly rotated) tilt label.
    fn apply(
        &self,
        pre: &PreprocessConfig,
        s: &PacbedSample,
        rng: &mut ChaCha8Rng,
        out: &mut Array2<f32>,
    ) -> Result<[f64; 2]> {
        let u = |rng: &mut ChaCha8Rng, m: f64| {
            if m > 0.0 {
                rng.random_range(-m..=m)
            } else {
                0.0
            }
        };
        let rot = u(rng, self.max_rotation_deg).to_radians();
        let zoom = 1.0 + u(rng, self.max_zoom);
        let shear = u(rng, self.max_shear);
        let shift = [u(rng, self.max_shift_mrad), u(rng, self.max_shift_mrad)];
        let noise_seed: u64 = rng.random();
        let affine = Affine::compose(rot, zoom, shear, shift);
        match self.dose_range {
            Some([lo, hi]) => {
                let dose = if hi > lo {
                    (rng.random_range(lo.ln()..=hi.ln())).exp()
                } else {
                    lo
                };
                let total = f64::from(s.pattern.sum());
                let k = (dose / total) as f32;
                let mean = s.pattern.mapv(|v| v * k);
                let counts = stem_core::noise::poisson(mean.view(), noise_seed)?;
                if counts.sum() > 0.0 {
                    pre.preprocess_into(counts.view(), s.mrad_per_px, &affine, out)?;
                } else {
                    pre.preprocess_into(s.pattern.view(), s.mrad_per_px, &affine, out)?;
                }
            }
            None => pre.preprocess_into(s.pattern.view(), s.mrad_per_px, &affine, out)?,
        }
        // The pattern (and with it the tilt) is rotated by R(rot) = [[c, -s], [s, c]] in the
        // [y, x] frame (see `Affine::compose`).
        let (sn, cs) = rot.sin_cos();
        let [ty, tx] = s.tilt_mrad;
        Ok([cs * ty - sn * tx, sn * ty + cs * tx])
    }
}

/// Everything that defines a trained PACBED model apart from its weights (the card's
/// `architecture`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PacbedModelConfig {
    /// The network of each ensemble member (its `input_px` must equal `preprocess.size_px`).
    pub net: PacbedNetConfig,
    /// How patterns become network inputs.
    pub preprocess: PreprocessConfig,
    /// Number of independently initialised and trained members (1 ..= 16; default 3); the
    /// spread of their predictions is reported.
    pub ensemble: usize,
    /// The network predicts thickness / this (nm, > 0; default 20).
    pub thickness_scale_nm: f64,
    /// The network predicts tilt / this (mrad, > 0; default 4).
    pub tilt_scale_mrad: f64,
    /// Thickness range of the training data `[min, max]` in nm (filled in by training;
    /// predictions outside are flagged).
    pub thickness_range_nm: [f64; 2],
    /// Largest |tilt| component of the training data in mrad (filled in by training).
    pub max_tilt_mrad: f64,
    /// Quantile of the calibration set's Mahalanobis distances used as the out-of-distribution
    /// threshold (0.5 ..= 1; default 0.99).
    pub ood_quantile: f64,
    /// The threshold itself (filled in by training), in units of the feature covariance.
    pub ood_threshold: f64,
    /// Number of principal components of the preprocessed training inputs kept for the
    /// input-space reconstruction test (0 = no such test, as in bundles written before it
    /// existed; 0 ..= 256; default 24).
    #[serde(default)]
    pub pca_components: usize,
    /// Threshold on the relative reconstruction residual `‖x − x̄ − P(x − x̄)‖ / ‖x‖` of the
    /// network input `x` (filled in by training: the `ood_quantile` of held-out
    /// in-distribution residuals).
    #[serde(default)]
    pub pca_threshold: f64,
    /// Threshold on the Mahalanobis distance of the input's principal-component scores to
    /// the training scores (Hotelling's T², square-rooted; filled in by training: the
    /// `ood_quantile` of held-out in-distribution distances).
    #[serde(default)]
    pub pca_score_threshold: f64,
    /// Ensemble-spread test: the median thickness spread (nm) of held-out in-distribution
    /// patterns in each of `len` equal bins of predicted thickness over
    /// `thickness_range_nm` (filled in by training when `ensemble ≥ 2`; empty = no such test,
    /// as in bundles written before it existed).
    #[serde(default)]
    pub spread_reference_nm: Vec<f64>,
    /// Threshold on the normalised spread `s / s_ref(t̂)` (the members' thickness standard
    /// deviation over the reference of the bin of the predicted thickness; filled in by
    /// training: the `ood_quantile` of the held-out in-distribution ratios).
    #[serde(default)]
    pub spread_threshold: f64,
}

impl Default for PacbedModelConfig {
    fn default() -> Self {
        PacbedModelConfig {
            net: PacbedNetConfig::default(),
            preprocess: PreprocessConfig::default(),
            ensemble: 3,
            thickness_scale_nm: 20.0,
            tilt_scale_mrad: 4.0,
            thickness_range_nm: [0.0, 0.0],
            max_tilt_mrad: 0.0,
            ood_quantile: 0.99,
            ood_threshold: 0.0,
            pca_components: 24,
            pca_threshold: 0.0,
            pca_score_threshold: 0.0,
            spread_reference_nm: Vec::new(),
            spread_threshold: 0.0,
        }
    }
}

impl PacbedModelConfig {
    /// Checks the ranges on the fields, the net, the preprocessing and that they agree on the
    /// input size.
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        self.preprocess.validate()?;
        if self.net.input_px != self.preprocess.size_px {
            return Err(Error::param(
                "net.input_px",
                format!(
                    "{} differs from preprocess.size_px {}",
                    self.net.input_px, self.preprocess.size_px
                ),
            ));
        }
        if !(1..=16).contains(&self.ensemble) {
            return Err(Error::param(
                "ensemble",
                format!("must be 1 ..= 16, got {}", self.ensemble),
            ));
        }
        for (name, v) in [
            ("thickness_scale_nm", self.thickness_scale_nm),
            ("tilt_scale_mrad", self.tilt_scale_mrad),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::param(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ));
            }
        }
        if !(0.5..=1.0).contains(&self.ood_quantile) {
            return Err(Error::param(
                "ood_quantile",
                format!("must be 0.5 ..= 1, got {}", self.ood_quantile),
            ));
        }
        if self.spread_reference_nm.len() > 256
            || self
                .spread_reference_nm
                .iter()
                .any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::param(
                "spread_reference_nm",
                format!(
                    "need <= 256 finite bins > 0 nm, got {:?}",
                    self.spread_reference_nm
                ),
            ));
        }
        if self.pca_components > 256 {
            return Err(Error::param(
                "pca_components",
                format!("must be 0 ..= 256, got {}", self.pca_components),
            ));
        }
        Ok(())
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PacbedTrainConfig {
    /// Optimisation steps per ensemble member (≥ 1; default 3000).
    pub steps: u64,
    /// Patterns per step (1 ..= 1024; default 32).
    pub batch_size: usize,
    /// AdamW settings (default lr 2e-3, no weight decay).
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule (default cosine to 2 % with 100 warm-up steps).
    pub schedule: LrSchedule,
    /// Augmentation.
    pub augment: PacbedAugment,
    /// Seed of weights, data order and augmentation (member `k` uses `seed + k`).
    pub seed: u64,
    /// Threads (results are identical for any setting).
    pub parallelism: Parallelism,
}

impl Default for PacbedTrainConfig {
    fn default() -> Self {
        PacbedTrainConfig {
            steps: 3000,
            batch_size: 32,
            optimizer: AdamWConfig {
                lr: 2e-3,
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            schedule: LrSchedule::Cosine {
                warmup_steps: 100,
                total_steps: 3000,
                min_factor: 0.02,
            },
            augment: PacbedAugment::default(),
            seed: 0,
            parallelism: Parallelism::Auto,
        }
    }
}

impl PacbedTrainConfig {
    /// Checks steps ≥ 1, batch 1 ..= 1024, the optimizer, schedule and augmentation.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::param("steps", "must be >= 1"));
        }
        if !(1..=1024).contains(&self.batch_size) {
            return Err(Error::param(
                "batch_size",
                format!("must be 1 ..= 1024, got {}", self.batch_size),
            ));
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.augment.validate()
    }
}

/// What training did.
#[derive(Clone, Debug, PartialEq)]
pub struct PacbedTrainReport {
    /// Loss (mean squared error of the scaled outputs) per step, per member.
    pub losses: Vec<Vec<f32>>,
    /// The fitted out-of-distribution threshold.
    pub ood_threshold: f64,
    /// The fitted input-reconstruction threshold (0 without the test).
    pub pca_threshold: f64,
    /// The fitted principal-score distance threshold (0 without the test).
    pub pca_score_threshold: f64,
    /// The fitted normalised-spread threshold (0 without the test, i.e. one member).
    pub spread_threshold: f64,
}

/// A prediction for one pattern.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PacbedPrediction {
    /// Ensemble-mean thickness in nm.
    pub thickness_nm: f64,
    /// Standard deviation of the members' thickness in nm (0 for one member).
    pub thickness_spread_nm: f64,
    /// Ensemble-mean tilt `[y, x]` in mrad.
    pub tilt_mrad: [f64; 2],
    /// Standard deviation of the members' tilt `[y, x]` in mrad.
    pub tilt_spread_mrad: [f64; 2],
    /// Mahalanobis distance of the features to the training features (mean over members).
    pub ood_distance: f64,
    /// The threshold it is compared with.
    pub ood_threshold: f64,
    /// Relative residual `‖x − x̄ − P(x − x̄)‖ / ‖x‖` of the network input after projection
    /// onto the principal subspace of the training inputs (0 when the model has none).
    pub input_residual: f64,
    /// The threshold it is compared with (0 when the model has no input subspace).
    pub input_residual_threshold: f64,
    /// Mahalanobis distance of the input's principal-component scores to the training
    /// scores (0 when the model has no input subspace).
    pub input_score_distance: f64,
    /// The threshold it is compared with (0 when the model has no input subspace).
    pub input_score_threshold: f64,
    /// Thickness spread over its in-distribution reference at the predicted thickness,
    /// `s / s_ref(t̂)` (0 when the model has no spread test).
    pub spread_ratio: f64,
    /// The threshold it is compared with (0 when the model has no spread test).
    pub spread_threshold: f64,
    /// `true` when the pattern looks unlike the training data (feature distance, input
    /// residual, input score distance or normalised ensemble spread above its threshold, or
    /// the prediction outside the training ranges by more than 10 %): do not trust it.
    pub out_of_distribution: bool,
}

/// Gaussian statistics of one member's features: mean and precision (inverse of the
/// covariance plus a 1e-3·trace/d ridge).
#[derive(Clone, Debug)]
pub(crate) struct FeatureStats {
    pub(crate) mean: Vec<f64>,
    pub(crate) precision: Vec<f64>,
}

impl FeatureStats {
    fn fit(features: &[Vec<f32>]) -> Result<Self> {
        let n = features.len();
        let d = features.first().map_or(0, Vec::len);
        if n < 2 || d == 0 {
            return Err(Error::param(
                "samples",
                format!("need at least 2 patterns for the feature statistics, got {n}"),
            ));
        }
        let mut mean = vec![0.0; d];
        for f in features {
            for (m, &v) in mean.iter_mut().zip(f) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0; d * d];
        for f in features {
            for i in 0..d {
                let a = f64::from(f[i]) - mean[i];
                for j in 0..d {
                    cov[i * d + j] += a * (f64::from(f[j]) - mean[j]);
                }
            }
        }
        cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
        let tr: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        let ridge = (1e-3 * tr / d as f64).max(1e-12);
        for i in 0..d {
            cov[i * d + i] += ridge;
        }
        // Rounded to f32, as stored in bundles, so a loaded model equals the trained one.
        let r = |v: Vec<f64>| {
            v.into_iter()
                .map(|x| f64::from(x as f32))
                .collect::<Vec<_>>()
        };
        let precision = r(invert_spd(&cov, d)?);
        Ok(FeatureStats {
            mean: r(mean),
            precision,
        })
    }

    fn distance(&self, f: &[f32]) -> f64 {
        let d = self.mean.len();
        let diff: Vec<f64> = f
            .iter()
            .zip(&self.mean)
            .map(|(&v, m)| f64::from(v) - m)
            .collect();
        let mut s = 0.0;
        for (i, di) in diff.iter().enumerate() {
            let r = self.precision[i * d..(i + 1) * d]
                .iter()
                .zip(&diff)
                .fold(0.0, |r, (p, x)| r + p * x);
            s += di * r;
        }
        s.max(0.0).sqrt()
    }
}

/// Inverse of a symmetric positive-definite matrix by Gauss–Jordan elimination with partial
/// pivoting (d ≤ 1024, done once per model).
fn invert_spd(a: &[f64], d: usize) -> Result<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        inv[i * d + i] = 1.0;
    }
    for c in 0..d {
        let p = (c..d)
            .max_by(|&i, &j| m[i * d + c].abs().total_cmp(&m[j * d + c].abs()))
            .unwrap_or(c);
        let piv = m[p * d + c];
        if piv.abs() <= 1e-300 || !piv.is_finite() {
            return Err(Error::param("features", "singular feature covariance"));
        }
        if p != c {
            for k in 0..d {
                m.swap(p * d + k, c * d + k);
                inv.swap(p * d + k, c * d + k);
            }
        }
        for k in 0..d {
            m[c * d + k] /= piv;
            inv[c * d + k] /= piv;
        }
        for r in 0..d {
            if r != c {
                let f = m[r * d + c];
                if f != 0.0 {
                    for k in 0..d {
                        m[r * d + k] -= f * m[c * d + k];
                        inv[r * d + k] -= f * inv[c * d + k];
                    }
                }
            }
        }
    }
    Ok(inv)
}

/// Principal subspace of the preprocessed training inputs (Pearson 1901; here by seeded
/// subspace iteration on the centred data, Halko et al., SIAM Rev. 53, 217 (2011)): mean
/// `x̄` (`d = size_px²`) and `k` orthonormal components (row-major `[k, d]`), stored as f32,
/// and the Gaussian statistics of the training scores `Q(x − x̄)` (Jackson & Mudholkar,
/// Technometrics 21, 341 (1979): residual Q and score T² statistics).
#[derive(Clone, Debug)]
pub(crate) struct InputPca {
    pub(crate) mean: Vec<f32>,
    pub(crate) components: Vec<f32>,
    pub(crate) scores: Option<FeatureStats>,
}

impl InputPca {
    /// Fits `k` components to the rows of `x` (`n × d`, row-major) by 30 rounds of subspace
    /// iteration `Q ← orth(Xᵀ X Q)` from a seeded uniform random start, with modified Gram–Schmidt.
    /// Every reduction runs in a fixed order, so the result does not depend on the thread
    /// count.
    fn fit(x: &[f32], n: usize, d: usize, k: usize, seed: u64) -> Result<Self> {
        if n < 2 || k == 0 || k > d.min(n) {
            return Err(Error::param(
                "pca_components",
                format!("need 1 ..= min(patterns {n}, inputs {d}), got {k}"),
            ));
        }
        let mut mean = vec![0.0f64; d];
        for row in x.chunks(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let xc: Vec<f64> = x
            .chunks(d)
            .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Q stored as k vectors of length d, started uniform in [-1, 1).
        let mut q: Vec<Vec<f64>> = (0..k)
            .map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        orthonormalise(&mut q)?;
        for _ in 0..30 {
            // Z = X Q (n × k), row by row.
            let z: Vec<Vec<f64>> = xc
                .par_chunks(d)
                .map(|row| {
                    q.iter()
                        .map(|c| row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>())
                        .collect()
                })
                .collect();
            // Y = Xᵀ Z: component j, element i = Σ_s X[s, i] Z[s, j] (sum over s in order).
            q = (0..k)
                .into_par_iter()
                .map(|j| {
                    let mut y = vec![0.0; d];
                    for (row, zs) in xc.chunks(d).zip(&z) {
                        let w = zs[j];
                        for (yi, &xi) in y.iter_mut().zip(row) {
                            *yi += w * xi;
                        }
                    }
                    y
                })
                .collect();
            orthonormalise(&mut q)?;
        }
        let mut pca = InputPca {
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: q.iter().flatten().map(|&v| v as f32).collect(),
            scores: None,
        };
        let sc: Vec<Vec<f32>> = x.par_chunks(d).map(|r| pca.scores_of(r)).collect();
        pca.scores = Some(FeatureStats::fit(&sc)?);
        Ok(pca)
    }

    /// Scores `c_j · (x − x̄)` (as f32, like network features).
    fn scores_of(&self, x: &[f32]) -> Vec<f32> {
        let d = self.mean.len();
        self.components
            .chunks(d)
            .map(|c| {
                c.iter()
                    .zip(x.iter().zip(&self.mean))
                    .map(|(&ci, (&v, &m))| f64::from(ci) * (f64::from(v) - f64::from(m)))
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// Mahalanobis distance of the scores of `x` to the training scores (0 without them).
    fn score_distance(&self, x: &[f32]) -> f64 {
        self.scores
            .as_ref()
            .map_or(0.0, |s| s.distance(&self.scores_of(x)))
    }

    /// Relative residual `‖r − Σ_j (c_j·r) c_j‖ / ‖x‖` with `r = x − x̄` (0 for `x = 0`).
    fn residual(&self, x: &[f32]) -> f64 {
        let d = self.mean.len();
        let r: Vec<f64> = x
            .iter()
            .zip(&self.mean)
            .map(|(&v, &m)| f64::from(v) - f64::from(m))
            .collect();
        let mut res = r.clone();
        for c in self.components.chunks(d) {
            let a: f64 = c.iter().zip(&r).map(|(&ci, ri)| f64::from(ci) * ri).sum();
            for (e, &ci) in res.iter_mut().zip(c) {
                *e -= a * f64::from(ci);
            }
        }
        let nx = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        if nx > 0.0 {
            res.iter().map(|v| v * v).sum::<f64>().sqrt() / nx
        } else {
            0.0
        }
    }
}

/// Modified Gram–Schmidt on the vectors `q` in order; a vector that loses all but 1e-9 of its
/// norm (the data span fewer dimensions) is an error.
fn orthonormalise(q: &mut [Vec<f64>]) -> Result<()> {
    for j in 0..q.len() {
        let (done, rest) = q.split_at_mut(j);
        let v = &mut rest[0];
        let before = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for u in done.iter() {
            let a: f64 = u.iter().zip(v.iter()).map(|(x, y)| x * y).sum();
            for (vi, ui) in v.iter_mut().zip(u) {
                *vi -= a * ui;
            }
        }
        let nrm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !(nrm > 1e-9 * before && nrm > 0.0) {
            return Err(Error::param(
                "samples",
                "the training inputs span fewer dimensions than pca_components",
            ));
        }
        v.iter_mut().for_each(|x| *x /= nrm);
    }
    Ok(())
}

/// Bins of predicted thickness of the spread reference.
const SPREAD_BINS: usize = 8;

/// Lowest total dose (e⁻ per pattern) of the calibration draws of the spread test: the
/// threshold holds for patterns of at least this dose; noisier patterns have larger spreads
/// and are flagged more often (their predictions are less reliable).
const SPREAD_MIN_DOSE: f64 = 1e6;

/// Mean and population standard deviation of the members' outputs `i`.
fn mean_sd(outs: &[[f64; 3]], i: usize) -> (f64, f64) {
    let m = outs.len() as f64;
    let mu = outs.iter().map(|o| o[i]).sum::<f64>() / m;
    let sd = (outs.iter().map(|o| (o[i] - mu).powi(2)).sum::<f64>() / m).sqrt();
    (mu, sd)
}

/// Bin of predicted thickness `t` (nm) among `bins` equal bins over `range`, clamped.
fn spread_bin(t: f64, range: [f64; 2], bins: usize) -> usize {
    let w = (range[1] - range[0]).max(1e-9);
    let b = ((t - range[0]) / w * bins as f64).floor();
    if b.is_finite() && b > 0.0 {
        (b as usize).min(bins.saturating_sub(1))
    } else {
        0
    }
}

/// Fits the spread reference (median spread per bin; an empty bin takes the overall median;
/// floored at 1e-3 nm) and the `q` quantile of the normalised spreads, from `(thickness,
/// spread)` pairs in nm.
fn fit_spread(pairs: &[(f64, f64)], range: [f64; 2], q: f64) -> (Vec<f64>, f64) {
    let median = |mut v: Vec<f64>| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    };
    let all = median(pairs.iter().map(|p| p.1).collect()).unwrap_or(1e-3);
    let reference: Vec<f64> = (0..SPREAD_BINS)
        .map(|b| {
            median(
                pairs
                    .iter()
                    .filter(|p| spread_bin(p.0, range, SPREAD_BINS) == b)
                    .map(|p| p.1)
                    .collect(),
            )
            .unwrap_or(all)
            .max(1e-3)
        })
        .collect();
    let mut r: Vec<f64> = pairs
        .iter()
        .map(|p| p.1 / reference[spread_bin(p.0, range, SPREAD_BINS)])
        .collect();
    r.sort_by(f64::total_cmp);
    let pos = ((r.len() as f64 - 1.0) * q).round() as usize;
    let thr = r
        .get(pos.min(r.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    (reference, thr)
}

/// A trained PACBED thickness/tilt model: an ensemble of [`PacbedNet`]s, feature statistics for
/// the out-of-distribution test, and its config.
#[derive(Clone, Debug)]
pub struct PacbedModel {
    pub(crate) config: PacbedModelConfig,
    pub(crate) nets: Vec<PacbedNet>,
    pub(crate) stats: Vec<FeatureStats>,
    pub(crate) pca: Option<InputPca>,
}

/// Builds the inputs `[b, 1, n, n]` and scaled targets `[b, 3]` of `idx` with one augmentation
/// draw per sample (seeded by `seeds`), in parallel; results do not depend on the thread count.
fn make_batch(
    cfg: &PacbedModelConfig,
    aug: &PacbedAugment,
    data: &PacbedSet,
    idx: &[usize],
    seeds: &[u64],
) -> Result<(Tensor, Vec<f32>)> {
    let n = cfg.preprocess.size_px;
    let per: Vec<Result<(Vec<f32>, [f32; 3])>> = idx
        .par_iter()
        .zip(seeds.par_iter())
        .map(|(&k, &seed)| {
            let s = &data.samples[k];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut out = Array2::zeros((n, n));
            let tilt = aug.apply(&cfg.preprocess, s, &mut rng, &mut out)?;
            let t = [
                (s.thickness_nm / cfg.thickness_scale_nm) as f32,
                (tilt[0] / cfg.tilt_scale_mrad) as f32,
                (tilt[1] / cfg.tilt_scale_mrad) as f32,
            ];
            Ok((out.into_raw_vec_and_offset().0, t))
        })
        .collect();
    let mut xs = Vec::with_capacity(idx.len() * n * n);
    let mut ys = Vec::with_capacity(idx.len() * N_OUTPUTS);
    for r in per {
        let (x, t) = r?;
        xs.extend_from_slice(&x);
        ys.extend_from_slice(&t);
    }
    Ok((
        Tensor::from_vec(xs, (idx.len(), 1, n, n), &Device::Cpu)?,
        ys,
    ))
}

fn member_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_add(k as u64)
}

/// Mixes a step / sample index into a per-sample augmentation seed.
fn sample_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(a.wrapping_mul(1 << 20).wrapping_add(b).wrapping_add(1));
    rng.random()
}

impl PacbedModel {
    /// Trains `config.ensemble` members on `train` (member `k` from seed `tc.seed + k`: its
    /// weights, data order and augmentation draws), one progress unit per step, then fits the
    /// feature statistics on one augmented draw of every training pattern and sets the
    /// out-of-distribution threshold to the `ood_quantile` of the distances of one augmented
    /// draw of every `calibration` pattern (held-out, in-distribution).
    ///
    /// Bit-identical for equal inputs on any thread count. Errors: invalid configs or data,
    /// [`Error::NonFiniteLoss`], [`Error::Cancelled`] (checked every step).
    pub fn train(
        config: PacbedModelConfig,
        tc: &PacbedTrainConfig,
        train: &PacbedSet,
        calibration: &PacbedSet,
        progress: &dyn Progress,
    ) -> Result<(PacbedModel, PacbedTrainReport)> {
        config.validate()?;
        tc.validate()?;
        if train.len() < 2 || calibration.is_empty() {
            return Err(Error::param(
                "samples",
                format!(
                    "need >= 2 training and >= 1 calibration patterns, got {} and {}",
                    train.len(),
                    calibration.len()
                ),
            ));
        }
        let mut config = config;
        let th = train.samples.iter().map(|s| s.thickness_nm);
        config.thickness_range_nm = [
            th.clone().fold(f64::INFINITY, f64::min),
            th.fold(f64::NEG_INFINITY, f64::max),
        ];
        config.max_tilt_mrad = train
            .samples
            .iter()
            .flat_map(|s| s.tilt_mrad)
            .fold(0.0, |m: f64, v| m.max(v.abs()));
        tc.parallelism.install(|| {
            progress.start("train pacbed", tc.steps * config.ensemble as u64);
            let mut nets = Vec::new();
            let mut losses = Vec::new();
            for k in 0..config.ensemble {
                let seed = member_seed(tc.seed, k);
                let net = PacbedNet::new(config.net.clone(), seed)?;
                let mut opt = AdamW::new(tc.optimizer.clone())?;
                let mut l = Vec::with_capacity(tc.steps as usize);
                for step in 0..tc.steps {
                    if progress.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    rng.set_stream(step + 1);
                    let idx: Vec<usize> = (0..tc.batch_size)
                        .map(|_| rng.random_range(0..train.len()))
                        .collect();
                    let seeds: Vec<u64> = (0..tc.batch_size).map(|_| rng.random()).collect();
                    let (x, t) = make_batch(&config, &tc.augment, train, &idx, &seeds)?;
                    let t = Tensor::from_vec(t, (tc.batch_size, N_OUTPUTS), &Device::Cpu)?;
                    let (y, _) = net.forward(&x)?;
                    let loss = (y - t)?.sqr()?.mean_all()?;
                    let lv = loss.to_scalar::<f32>()?;
                    if !lv.is_finite() {
                        return Err(Error::NonFiniteLoss {
                            step,
                            loss: f64::from(lv),
                        });
                    }
                    let grads = loss.backward()?;
                    opt.step(net.params(), &grads, tc.schedule.factor(step))?;
                    l.push(lv);
                    progress.advance(1);
                }
                nets.push(net);
                losses.push(l);
            }
            let mut model = PacbedModel {
                config,
                nets,
                stats: Vec::new(),
                pca: None,
            };
            let (_, ftrain) = model.forward_all(train, &tc.augment, tc.seed ^ 0x5eed_f00d)?;
            model.stats = ftrain
                .iter()
                .map(|f| FeatureStats::fit(f))
                .collect::<Result<_>>()?;
            let (_, fcal) = model.forward_all(calibration, &tc.augment, tc.seed ^ 0x000c_a11b)?;
            let mut d: Vec<f64> = (0..calibration.len())
                .map(|i| {
                    model
                        .stats
                        .iter()
                        .zip(&fcal)
                        .map(|(s, f)| s.distance(&f[i]))
                        .sum::<f64>()
                        / model.stats.len() as f64
                })
                .collect();
            d.sort_by(f64::total_cmp);
            let q = model.config.ood_quantile;
            let pos = ((d.len() as f64 - 1.0) * q).round() as usize;
            model.config.ood_threshold = d[pos.min(d.len() - 1)];
            model.fit_spread_test(calibration, &tc.augment, tc.seed ^ 0x5b4e_ad00)?;
            let k = model.config.pca_components;
            model.fit_input_pca(k, train, calibration, &tc.augment, tc.seed)?;
            let report = PacbedTrainReport {
                losses,
                ood_threshold: model.config.ood_threshold,
                pca_threshold: model.config.pca_threshold,
                pca_score_threshold: model.config.pca_score_threshold,
                spread_threshold: model.config.spread_threshold,
            };
            Ok((model, report))
        })?
    }

    /// Fits the ensemble-spread test (nothing for one member): one draw of `aug` (its dose
    /// range floored at 1e6 e⁻) of every `calibration` pattern, the members' thickness mean and
    /// spread, the median spread per bin of predicted thickness and the `ood_quantile` of the
    /// normalised spreads. Deterministic on any thread count.
    fn fit_spread_test(
        &mut self,
        calibration: &PacbedSet,
        aug: &PacbedAugment,
        seed: u64,
    ) -> Result<()> {
        self.config.spread_reference_nm = Vec::new();
        self.config.spread_threshold = 0.0;
        if self.nets.len() < 2 {
            return Ok(());
        }
        let aug = PacbedAugment {
            dose_range: aug
                .dose_range
                .map(|[lo, hi]| [lo.max(SPREAD_MIN_DOSE), hi.max(SPREAD_MIN_DOSE)]),
            ..aug.clone()
        };
        let (outs, _) = self.forward_all(calibration, &aug, seed)?;
        let pairs: Vec<(f64, f64)> = (0..calibration.len())
            .map(|i| {
                let o: Vec<[f64; 3]> = outs.iter().map(|m| m[i]).collect();
                mean_sd(&o, 0)
            })
            .collect();
        let (reference, thr) = fit_spread(
            &pairs,
            self.config.thickness_range_nm,
            self.config.ood_quantile,
        );
        self.config.spread_reference_nm = reference;
        self.config.spread_threshold = thr;
        Ok(())
    }

    /// Every member's forward pass on one augmentation draw of every pattern of `data` (in
    /// chunks of 64, sample `i` of chunk `c` drawn with `sample_seed(seed, c, i)`): the outputs
    /// `[thickness nm, tilt y mrad, tilt x mrad]` as `[member][sample]` and the features as
    /// `[member][sample][feature]`.
    #[allow(clippy::type_complexity)]
    fn forward_all(
        &self,
        data: &PacbedSet,
        aug: &PacbedAugment,
        seed: u64,
    ) -> Result<(Vec<Vec<[f64; 3]>>, Vec<Vec<Vec<f32>>>)> {
        let mut outs = vec![Vec::with_capacity(data.len()); self.nets.len()];
        let mut feats = vec![Vec::with_capacity(data.len()); self.nets.len()];
        let all: Vec<usize> = (0..data.len()).collect();
        for (c, idx) in all.chunks(64).enumerate() {
            let seeds: Vec<u64> = idx
                .iter()
                .map(|&i| sample_seed(seed, c as u64, i as u64))
                .collect();
            let (x, _) = make_batch(&self.config, aug, data, idx, &seeds)?;
            for (k, net) in self.nets.iter().enumerate() {
                let (y, f) = net.forward(&x)?;
                outs[k].extend(y.to_vec2::<f32>()?.into_iter().map(|r| {
                    [
                        f64::from(r[0]) * self.config.thickness_scale_nm,
                        f64::from(r[1]) * self.config.tilt_scale_mrad,
                        f64::from(r[2]) * self.config.tilt_scale_mrad,
                    ]
                }));
                feats[k].extend(f.to_vec2::<f32>()?);
            }
        }
        Ok((outs, feats))
    }

    /// Fits (or replaces) the input-space reconstruction test: the principal subspace of
    /// `components` components of one geometry-augmented draw (`aug` without its Poisson
    /// noise) of every `train` input with the Gaussian of the training scores, and two
    /// thresholds, the `ood_quantile` of the relative residuals and of the score distances
    /// of one such draw of every `calibration` pattern. `components = 0` removes
    /// the test. [`train`](Self::train) calls it with `config.pca_components`; it also adds
    /// the test to a model trained without it (the networks are not touched).
    ///
    /// Noise-free calibration: Poisson noise at low dose (≲ 1e6 e⁻ per pattern) raises the
    /// residual and may set the flag. Deterministic on any thread count. Errors:
    /// `components` > 256 or > min(patterns, inputs), empty sets, invalid patterns.
    pub fn fit_input_pca(
        &mut self,
        components: usize,
        train: &PacbedSet,
        calibration: &PacbedSet,
        aug: &PacbedAugment,
        seed: u64,
    ) -> Result<()> {
        if components == 0 {
            self.pca = None;
            self.config.pca_components = 0;
            self.config.pca_threshold = 0.0;
            self.config.pca_score_threshold = 0.0;
            return Ok(());
        }
        if components > 256 {
            return Err(Error::param(
                "pca_components",
                format!("must be 0 ..= 256, got {components}"),
            ));
        }
        if train.len() < 2 || calibration.is_empty() {
            return Err(Error::param(
                "samples",
                format!(
                    "need >= 2 training and >= 1 calibration patterns, got {} and {}",
                    train.len(),
                    calibration.len()
                ),
            ));
        }
        let aug = PacbedAugment {
            dose_range: None,
            ..aug.clone()
        };
        aug.validate()?;
        let n = self.config.preprocess.size_px;
        let inputs = |data: &PacbedSet, seed: u64| -> Result<Vec<f32>> {
            let all: Vec<usize> = (0..data.len()).collect();
            let mut out = Vec::with_capacity(data.len() * n * n);
            for (c, idx) in all.chunks(64).enumerate() {
                let seeds: Vec<u64> = idx
                    .iter()
                    .map(|&i| sample_seed(seed, c as u64, i as u64))
                    .collect();
                let (x, _) = make_batch(&self.config, &aug, data, idx, &seeds)?;
                out.extend(x.flatten_all()?.to_vec1::<f32>()?);
            }
            Ok(out)
        };
        let xt = inputs(train, seed ^ 0x00c0_ffee)?;
        let pca = InputPca::fit(&xt, train.len(), n * n, components, seed ^ 0x000b_ca5e)?;
        let xc = inputs(calibration, seed ^ 0x00ca_11b2)?;
        let q = self.config.ood_quantile;
        let quantile = |mut r: Vec<f64>| {
            r.sort_by(f64::total_cmp);
            let pos = ((r.len() as f64 - 1.0) * q).round() as usize;
            r[pos.min(r.len() - 1)]
        };
        self.config.pca_threshold = quantile(xc.chunks(n * n).map(|x| pca.residual(x)).collect());
        self.config.pca_score_threshold =
            quantile(xc.chunks(n * n).map(|x| pca.score_distance(x)).collect());
        self.config.pca_components = components;
        self.pca = Some(pca);
        Ok(())
    }

    /// The configuration (with the fitted ranges and threshold).
    pub fn config(&self) -> &PacbedModelConfig {
        &self.config
    }

    /// Changes where [`predict`](Self::predict) takes the zero angle (e.g. centre of mass for
    /// experimental patterns whose optic axis is off-centre; the model was trained with the
    /// array centre, so expect slightly worse tilts).
    pub fn set_centering(&mut self, centering: super::Centering) {
        self.config.preprocess.centering = centering;
    }

    /// The ensemble members.
    pub fn nets(&self) -> &[PacbedNet] {
        &self.nets
    }

    /// Predicts thickness and tilt of one pattern `[k_y, k_x]` with angular pixel
    /// `mrad_per_px` `[y, x]` (see [`PreprocessConfig::preprocess`] for the input rules).
    pub fn predict(
        &self,
        pattern: ArrayView2<'_, f32>,
        mrad_per_px: [f64; 2],
    ) -> Result<PacbedPrediction> {
        let x = self
            .config
            .preprocess
            .preprocess(pattern, mrad_per_px, &Affine::IDENTITY)?;
        let n = self.config.preprocess.size_px;
        let x = x.into_raw_vec_and_offset().0;
        let input_residual = self.pca.as_ref().map_or(0.0, |p| p.residual(&x));
        let input_score_distance = self.pca.as_ref().map_or(0.0, |p| p.score_distance(&x));
        let x = Tensor::from_vec(x, (1, 1, n, n), &Device::Cpu)?;
        let mut outs = Vec::new();
        let mut dist = 0.0;
        for (k, net) in self.nets.iter().enumerate() {
            let (y, f) = net.forward(&x)?;
            let y = y.to_vec2::<f32>()?;
            let f = f.to_vec2::<f32>()?;
            outs.push([
                f64::from(y[0][0]) * self.config.thickness_scale_nm,
                f64::from(y[0][1]) * self.config.tilt_scale_mrad,
                f64::from(y[0][2]) * self.config.tilt_scale_mrad,
            ]);
            if let Some(s) = self.stats.get(k) {
                dist += s.distance(&f[0]);
            }
        }
        let m = outs.len() as f64;
        let mean = |i: usize| mean_sd(&outs, i).0;
        let sd = |i: usize| mean_sd(&outs, i).1;
        let ood_distance = dist / m;
        let [t0, t1] = self.config.thickness_range_nm;
        let slack = 0.1 * (t1 - t0).max(1.0);
        let thickness = mean(0);
        let tilt = [mean(1), mean(2)];
        let refs = &self.config.spread_reference_nm;
        let spread_ratio = if refs.is_empty() || outs.len() < 2 {
            0.0
        } else {
            sd(0) / refs[spread_bin(thickness, [t0, t1], refs.len())]
        };
        let outside = thickness < t0 - slack
            || thickness > t1 + slack
            || tilt
                .iter()
                .any(|t| t.abs() > 1.1 * self.config.max_tilt_mrad + 0.5);
        Ok(PacbedPrediction {
            thickness_nm: thickness,
            thickness_spread_nm: sd(0),
            tilt_mrad: tilt,
            tilt_spread_mrad: [sd(1), sd(2)],
            ood_distance,
            ood_threshold: self.config.ood_threshold,
            input_residual,
            input_residual_threshold: self.config.pca_threshold,
            input_score_distance,
            input_score_threshold: self.config.pca_score_threshold,
            spread_ratio,
            spread_threshold: self.config.spread_threshold,
            out_of_distribution: ood_distance > self.config.ood_threshold
                || (!refs.is_empty() && spread_ratio > self.config.spread_threshold)
                || (self.pca.is_some()
                    && (input_residual > self.config.pca_threshold
                        || input_score_distance > self.config.pca_score_threshold))
                || outside,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stem_core::{CancelFlag, NoProgress};
    use stem_sim::dataset::{CrystalSpec, PacbedGenerator};

    /// SrTiO3 [001] thickness series (every cell up to `cells`) at each tilt, 2×2 positions.
    fn srtio3(tilts: &[[f64; 2]], cells: usize, every: usize) -> Vec<PacbedSample> {
        let g = PacbedGenerator {
            crystal: CrystalSpec {
                cells_yx: [4, 4],
                thickness_cells: cells,
                ..CrystalSpec::new("srtio3")
            },
            thickness_cells: (every..=cells).step_by(every).collect(),
            positions_per_cell: 2,
            ..PacbedGenerator::default()
        };
        let mut out = Vec::new();
        for &t in tilts {
            let (stack, nm, mrad) = g.run(t).unwrap();
            for (i, &th) in nm.iter().enumerate() {
                out.push(PacbedSample {
                    pattern: stack.index_axis(ndarray::Axis(0), i).to_owned(),
                    mrad_per_px: mrad,
                    thickness_nm: th,
                    tilt_mrad: t,
                });
            }
        }
        out
    }

    fn disc_sample() -> PacbedSample {
        PacbedSample {
            pattern: Array2::from_shape_fn((64, 64), |(y, x)| {
                let (dy, dx) = (y as f64 - 32.0, x as f64 - 32.0);
                if dy * dy + dx * dx < 400.0 { 1.0 } else { 0.0 }
            }),
            mrad_per_px: [1.0, 1.0],
            thickness_nm: 5.0,
            tilt_mrad: [1.0, -2.0],
        }
    }

    #[test]
    fn validation_rules() {
        let ok = disc_sample();
        let mut bad = vec![];
        let mut s = ok.clone();
        s.pattern[[0, 0]] = -1.0;
        bad.push(s);
        bad.push(PacbedSample {
            mrad_per_px: [0.0, 1.0],
            ..ok.clone()
        });
        bad.push(PacbedSample {
            thickness_nm: -1.0,
            ..ok.clone()
        });
        bad.push(PacbedSample {
            tilt_mrad: [f64::NAN, 0.0],
            ..ok.clone()
        });
        bad.push(PacbedSample {
            pattern: Array2::zeros((8, 8)),
            ..ok.clone()
        });
        bad.push(PacbedSample {
            pattern: Array2::ones((3, 8)),
            ..ok.clone()
        });
        for b in bad {
            assert!(matches!(
                PacbedSet::new(vec![ok.clone(), b]),
                Err(Error::InvalidParameter {
                    name: "samples",
                    ..
                })
            ));
        }
        let a = PacbedAugment::default();
        for b in [
            PacbedAugment {
                dose_range: Some([0.5, 10.0]),
                ..a.clone()
            },
            PacbedAugment {
                dose_range: Some([100.0, 10.0]),
                ..a.clone()
            },
            PacbedAugment {
                dose_range: Some([1.0, f64::INFINITY]),
                ..a.clone()
            },
            PacbedAugment {
                max_shift_mrad: -1.0,
                ..a.clone()
            },
            PacbedAugment {
                max_zoom: 0.6,
                ..a.clone()
            },
            PacbedAugment {
                max_rotation_deg: 181.0,
                ..a.clone()
            },
            PacbedAugment {
                max_shear: f64::NAN,
                ..a.clone()
            },
        ] {
            assert!(b.validate().is_err(), "{b:?}");
        }
        let m = PacbedModelConfig::default();
        for b in [
            PacbedModelConfig {
                ensemble: 0,
                ..m.clone()
            },
            PacbedModelConfig {
                ensemble: 17,
                ..m.clone()
            },
            PacbedModelConfig {
                thickness_scale_nm: 0.0,
                ..m.clone()
            },
            PacbedModelConfig {
                tilt_scale_mrad: f64::NAN,
                ..m.clone()
            },
            PacbedModelConfig {
                ood_quantile: 0.4,
                ..m.clone()
            },
            PacbedModelConfig {
                preprocess: PreprocessConfig {
                    size_px: 64,
                    ..Default::default()
                },
                ..m.clone()
            },
            PacbedModelConfig {
                pca_components: 257,
                ..m.clone()
            },
            PacbedModelConfig {
                spread_reference_nm: vec![0.5, 0.0],
                ..m.clone()
            },
            PacbedModelConfig {
                spread_reference_nm: vec![f64::NAN],
                ..m.clone()
            },
        ] {
            assert!(b.validate().is_err(), "{b:?}");
        }
        let t = PacbedTrainConfig::default();
        for b in [
            PacbedTrainConfig {
                steps: 0,
                ..t.clone()
            },
            PacbedTrainConfig {
                batch_size: 0,
                ..t.clone()
            },
            PacbedTrainConfig {
                batch_size: 2000,
                ..t.clone()
            },
            PacbedTrainConfig {
                augment: PacbedAugment {
                    max_zoom: 1.0,
                    ..a.clone()
                },
                ..t.clone()
            },
        ] {
            assert!(b.validate().is_err(), "{b:?}");
        }
        let one = PacbedSet::new(vec![ok.clone()]).unwrap();
        let two = PacbedSet::new(vec![ok.clone(), ok.clone()]).unwrap();
        assert!(PacbedModel::train(m.clone(), &t, &one, &two, &NoProgress).is_err());
        assert!(PacbedModel::train(m, &t, &two, &PacbedSet::default(), &NoProgress).is_err());
    }

    /// A bright spot placed along the tilt vector stays along the returned (rotated) tilt after
    /// a random rotation of up to ±90°: the label turns with the pattern.
    #[test]
    fn rotation_turns_the_tilt_label_with_the_pattern() {
        let mut s = disc_sample();
        s.tilt_mrad = [2.0, 1.0];
        // Spot at 5 × tilt = (10, 5) mrad from the centre.
        s.pattern[[42, 37]] = 50.0;
        let aug = PacbedAugment {
            max_rotation_deg: 90.0,
            ..PacbedAugment::none()
        };
        let pre = PreprocessConfig {
            mrad_per_px: 1.0,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut out = Array2::zeros((48, 48));
        let mut turned = 0;
        for _ in 0..20 {
            let t = aug.apply(&pre, &s, &mut rng, &mut out).unwrap();
            let norm = t[0].hypot(t[1]);
            assert!((norm - 5f64.sqrt()).abs() < 1e-9);
            let (mut best, mut at) = (f32::MIN, (0, 0));
            for ((i, j), &v) in out.indexed_iter() {
                if v > best {
                    (best, at) = (v, (i, j));
                }
            }
            let p = [at.0 as f64 - 24.0, at.1 as f64 - 24.0];
            let cos = (p[0] * t[0] + p[1] * t[1]) / (p[0].hypot(p[1]) * norm);
            // The spot is 11.2 px from the centre, so pixel rounding turns it by < 0.1 rad.
            assert!(cos > 0.99, "spot at {p:?}, tilt {t:?}");
            if (t[0] - 2.0).abs() > 0.5 {
                turned += 1;
            }
        }
        assert!(turned > 5);
    }

    /// Gauss–Jordan inverse against the definition, and the Mahalanobis distance against the
    /// closed form for independent features (distance² = Σ (x − μ)² / σ²).
    #[test]
    fn feature_statistics_oracle() {
        let d = 5;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let b: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 0.5 } else { 0.0 };
            }
        }
        let inv = invert_spd(&a, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let v: f64 = (0..d).map(|k| a[i * d + k] * inv[k * d + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
        assert!(invert_spd(&[0.0; 4], 2).is_err());
        // Independent features with σ = 1, 2, 3 (exact ±σ design, mean 0).
        let sig = [1.0f32, 2.0, 3.0];
        let mut f = Vec::new();
        for s in [-1.0f32, 1.0] {
            for k in 0..3 {
                let mut v = vec![0.0; 3];
                v[k] = s * sig[k] * 3f32.sqrt();
                f.push(v);
            }
        }
        let st = FeatureStats::fit(&f).unwrap();
        // Sample variance = 2·3σ²/5 per axis; ridge 1e-3·mean variance is a < 0.5 % effect.
        let var: Vec<f64> = sig.iter().map(|&s| 6.0 * f64::from(s * s) / 5.0).collect();
        let x = [1.0f32, -2.0, 4.0];
        let want: f64 = x
            .iter()
            .zip(&var)
            .map(|(&v, s)| f64::from(v * v) / s)
            .sum::<f64>()
            .sqrt();
        let got = st.distance(&x);
        assert!((got - want).abs() < 5e-3 * want, "{got} vs {want}");
        assert!(FeatureStats::fit(&f[..1]).is_err());
    }

    /// Spread reference on made-up (thickness, spread) pairs: 8 bins of 1 nm over 0–8 nm; bins
    /// 0–3 hold spreads {0.5, 1, 1.5}·(b + 1) (median b + 1), bins 4–7 are empty and take the
    /// overall median (2); the ratios are then {0.5, 1, 1.5} four times each, so the 0.99
    /// quantile is 1.5 and the 0.5 quantile (index round(5.5) = 6) is 1. Out-of-range and
    /// non-finite thicknesses fall in the end bins.
    #[test]
    fn spread_reference_oracle() {
        let mut pairs = Vec::new();
        for b in 0..4 {
            for f in [0.5, 1.0, 1.5] {
                pairs.push((b as f64 + 0.5, f * (b + 1) as f64));
            }
        }
        let (r, thr) = fit_spread(&pairs, [0.0, 8.0], 0.99);
        assert_eq!(r, vec![1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(thr, 1.5);
        assert_eq!(fit_spread(&pairs, [0.0, 8.0], 0.5).1, 1.0);
        assert_eq!(spread_bin(-3.0, [0.0, 8.0], 8), 0);
        assert_eq!(spread_bin(100.0, [0.0, 8.0], 8), 7);
        assert_eq!(spread_bin(f64::NAN, [0.0, 8.0], 8), 0);
        assert_eq!(spread_bin(2.5, [0.0, 8.0], 8), 2);
        // Zero spreads are floored at 1e-3 nm (no division by zero in `predict`).
        let (r0, _) = fit_spread(&[(1.0, 0.0), (1.0, 0.0)], [0.0, 8.0], 0.99);
        assert!(r0.iter().all(|&v| v == 1e-3));
    }

    fn tiny() -> (PacbedModelConfig, PacbedTrainConfig) {
        let m = PacbedModelConfig {
            net: PacbedNetConfig {
                input_px: 32,
                filters: vec![4, 8, 8],
                hidden: 16,
                ..Default::default()
            },
            preprocess: PreprocessConfig {
                size_px: 32,
                mrad_per_px: 2.0,
                ..Default::default()
            },
            ensemble: 2,
            thickness_scale_nm: 8.0,
            ..Default::default()
        };
        let t = PacbedTrainConfig {
            steps: 250,
            batch_size: 16,
            optimizer: AdamWConfig {
                lr: 3e-3,
                weight_decay: 0.0,
                ..Default::default()
            },
            schedule: LrSchedule::Cosine {
                warmup_steps: 10,
                total_steps: 250,
                min_factor: 0.05,
            },
            augment: PacbedAugment {
                dose_range: Some([1e5, 1e7]),
                ..Default::default()
            },
            seed: 3,
            parallelism: Parallelism::Sequential,
        };
        (m, t)
    }

    /// The seconds-long version of the full training: SrTiO3 [001] 0.39–15.6 nm (40 thicknesses)
    /// at 4 training tilts, 2 × 250 steps of a tiny net. The loss must fall and the held-out
    /// thickness RMS (2 other tilts) must be below 2.5 nm: the labels' own standard deviation
    /// is 4.5 nm (uniform over 15.2 nm), so this needs a model that learnt thickness, while
    /// 250 steps are far from the full model's ≤ 1 nm. Training is bit-identical on 1 and 2
    /// threads and cancels.
    #[test]
    fn input_pca_oracle_and_rules() {
        // Rows x = 3 + Σ_j a_j u_j in a known 3-D subspace of R^40 (u_j orthonormal).
        let (n, d) = (50, 40);
        let u: Vec<Vec<f64>> = (0..3)
            .map(|j| (0..d).map(|i| if i % 3 == j { 1.0 } else { 0.0 }).collect())
            .map(|v: Vec<f64>| {
                let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                v.iter().map(|x| x / nv).collect()
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut x = Vec::new();
        for _ in 0..n {
            let a: Vec<f64> = (0..3).map(|_| rng.random_range(-2.0..2.0)).collect();
            x.extend((0..d).map(|i| (3.0 + (0..3).map(|j| a[j] * u[j][i]).sum::<f64>()) as f32));
        }
        let p = InputPca::fit(&x, n, d, 3, 1).unwrap();
        // Orthonormal components (f32 rounding: 1e-5).
        for a in 0..3 {
            for b in 0..3 {
                let dot: f64 = (0..d)
                    .map(|i| f64::from(p.components[a * d + i] * p.components[b * d + i]))
                    .sum();
                assert!(
                    (dot - f64::from(u8::from(a == b))).abs() < 1e-5,
                    "{a} {b} {dot}"
                );
            }
        }
        // A new point of the affine subspace: residual ~0 (f32 storage: < 1e-5); adding a
        // vector e orthogonal to every u_j gives residual ‖e‖ / ‖x‖ exactly.
        let inside: Vec<f32> = (0..d)
            .map(|i| (3.0 + 0.7 * u[0][i] - 1.1 * u[2][i]) as f32)
            .collect();
        assert!(p.residual(&inside) < 1e-5, "{}", p.residual(&inside));
        let e: Vec<f64> = (0..d)
            .map(|i| {
                if i == 0 {
                    1.0
                } else if i == 3 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect();
        let out: Vec<f32> = inside.iter().zip(&e).map(|(&v, &w)| v + w as f32).collect();
        let nx = out
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        let want = 2f64.sqrt() / nx;
        assert!(
            (p.residual(&out) - want).abs() < 1e-5,
            "{} vs {want}",
            p.residual(&out)
        );
        // Thread count does not change the fit.
        let p1 = Parallelism::Sequential
            .install(|| InputPca::fit(&x, n, d, 3, 1).unwrap())
            .unwrap();
        let p2 = Parallelism::Threads(2)
            .install(|| InputPca::fit(&x, n, d, 3, 1).unwrap())
            .unwrap();
        assert_eq!(p1.components, p2.components);
        assert_eq!(p1.mean, p2.mean);
        // Rules: k = 0, k > n, k > d, n < 2; rank-deficient data (4 components of rank-3 data).
        assert!(InputPca::fit(&x, n, d, 0, 1).is_err());
        assert!(InputPca::fit(&x, n, d, 41, 1).is_err());
        assert!(InputPca::fit(&x[..d], 1, d, 1, 1).is_err());
        assert!(InputPca::fit(&x[..5 * d], 5, d, 6, 1).is_err());
        assert!(InputPca::fit(&x, n, d, 4, 1).is_err());
    }

    #[test]
    fn small_training_learns_thickness_and_is_deterministic() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut tilts = |n: usize| -> Vec<[f64; 2]> {
            (0..n)
                .map(|_| [rng.random_range(-3.0..3.0), rng.random_range(-3.0..3.0)])
                .collect()
        };
        let train = PacbedSet::new(srtio3(&tilts(4), 40, 1)).unwrap();
        let held = srtio3(&tilts(2), 40, 3);
        let calib = PacbedSet::new(held[..held.len() / 2].to_vec()).unwrap();
        let test = &held[held.len() / 2..];
        let (m, t) = tiny();
        let (model, rep) = PacbedModel::train(m.clone(), &t, &train, &calib, &NoProgress).unwrap();
        for l in &rep.losses {
            let head: f32 = l[..20].iter().sum::<f32>() / 20.0;
            let tail: f32 = l[l.len() - 20..].iter().sum::<f32>() / 20.0;
            assert!(tail < 0.3 * head, "loss {head} -> {tail}");
        }
        let mut se = 0.0;
        for s in test {
            let p = model.predict(s.pattern.view(), s.mrad_per_px).unwrap();
            se += (p.thickness_nm - s.thickness_nm).powi(2);
        }
        let rms = (se / test.len() as f64).sqrt();
        assert!(rms < 2.5, "held-out thickness RMS {rms} nm");
        // Two members: the spread test is fitted (8 bins; the 0.99 quantile of spreads over
        // their bin medians is at least 1).
        assert_eq!(model.config().spread_reference_nm.len(), SPREAD_BINS);
        assert!(rep.spread_threshold >= 1.0, "{}", rep.spread_threshold);
        // Two threads: the same losses, bit for bit, and the same threshold.
        let t2 = PacbedTrainConfig {
            parallelism: Parallelism::Threads(2),
            steps: 30,
            ..t.clone()
        };
        let t1 = PacbedTrainConfig {
            parallelism: Parallelism::Sequential,
            steps: 30,
            ..t.clone()
        };
        let (_, r1) = PacbedModel::train(m.clone(), &t1, &train, &calib, &NoProgress).unwrap();
        let (_, r2) = PacbedModel::train(m.clone(), &t2, &train, &calib, &NoProgress).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(r1.losses[0][..], rep.losses[0][..30]);
        let cancel = CancelFlag::cancel_after(5);
        assert!(matches!(
            PacbedModel::train(m, &t1, &train, &calib, &cancel),
            Err(Error::Cancelled)
        ));
    }
}
