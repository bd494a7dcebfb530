//! Deterministic training of the U-Net segmentor: seeded data order and augmentation, AdamW,
//! learning-rate schedule, checkpoint and resume, progress and cancel.
//!
//! Step `s` draws its batch from `ChaCha8Rng::seed_from_u64(seed)` on stream `s + 1` (stream 0
//! is not used), so the data a step sees depends only on the seed and the step number: a run
//! resumed from a checkpoint continues bit-identically. All ops are deterministic and do not
//! depend on the thread count (see [`crate::ops`]).

use crate::error::{Error, Result};
use crate::loss::{bce_with_logits, dice_loss};
use crate::optim::{AdamW, AdamWConfig, LrSchedule};
use crate::safetensors;
use crate::unet::{UNet, UNetConfig};
use candle_core::{Device, Tensor};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use stem_core::{Parallelism, Progress};

/// Standardises an image to zero mean and unit standard deviation (the network's input
/// normalisation, in training and inference). A constant image becomes all zeros.
///
/// ```
/// use ndarray::array;
/// let s = stem_learn::train::standardize(array![[1f32, 3.], [1., 3.]].view());
/// assert_eq!(s, array![[-1f32, 1.], [-1., 1.]]);
/// ```
pub fn standardize(img: ArrayView2<'_, f32>) -> Array2<f32> {
    let n = img.len().max(1) as f64;
    let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = img
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let sd = var.sqrt();
    if sd.is_nan() || sd <= 1e-12 {
        return Array2::zeros(img.raw_dim());
    }
    img.mapv(|v| ((f64::from(v) - mean) / sd) as f32)
}

/// Training images with target masks (values in [0, 1], e.g. disks at the column positions).
#[derive(Clone, Debug)]
pub struct SegmentationSet {
    images: Vec<Array2<f32>>,
    masks: Vec<Array2<f32>>,
}

impl SegmentationSet {
    /// Checks that there is at least one pair, that each image and mask have the same shape,
    /// and that all values are finite and masks lie in [0, 1]. Images are standardised here.
    pub fn new(images: Vec<Array2<f32>>, masks: Vec<Array2<f32>>) -> Result<Self> {
        if images.is_empty() || images.len() != masks.len() {
            return Err(Error::param(
                "images",
                format!(
                    "need equal, non-zero numbers of images and masks, got {} and {}",
                    images.len(),
                    masks.len()
                ),
            ));
        }
        for (i, (im, m)) in images.iter().zip(&masks).enumerate() {
            if im.dim() != m.dim() {
                return Err(Error::ShapeMismatch {
                    what: "mask (same shape as its image)",
                    expected: vec![im.nrows(), im.ncols()],
                    found: vec![m.nrows(), m.ncols()],
                });
            }
            if let Some(j) = im.iter().position(|v| !v.is_finite()) {
                return Err(Error::param(
                    "images",
                    format!("image {i} has a non-finite pixel at flat index {j}"),
                ));
            }
            if let Some(j) = m.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::param(
                    "masks",
                    format!("mask {i} has a value outside [0, 1] at flat index {j}"),
                ));
            }
        }
        let images = images.iter().map(|im| standardize(im.view())).collect();
        Ok(SegmentationSet { images, masks })
    }

    /// Number of image/mask pairs.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the set is empty (never, after [`new`](Self::new)).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Smallest image side (px).
    pub fn min_side(&self) -> usize {
        self.images
            .iter()
            .map(|i| i.nrows().min(i.ncols()))
            .min()
            .unwrap_or(0)
    }

    /// SHA-256 (hex) of the shapes and little-endian f32 values of the standardised images and
    /// masks: identifies the training data in a model card.
    pub fn checksum(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for a in self.images.iter().chain(&self.masks) {
            h.update((a.nrows() as u64).to_le_bytes());
            h.update((a.ncols() as u64).to_le_bytes());
            for v in a.iter() {
                h.update(v.to_le_bytes());
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// On-the-fly augmentation of training crops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Random flips and 90° rotations (the 8 symmetries of the square). Default true.
    pub dihedral: bool,
    /// Multiplicative contrast jitter: gain uniform in `[1 − g, 1 + g]`. Default 0.2.
    pub gain_jitter: f64,
    /// Additive offset jitter (standardised units), uniform in `[−o, o]`. Default 0.2.
    pub offset_jitter: f64,
    /// Extra white Gaussian noise: σ uniform in `[0, s]` (standardised units). Default 0.3.
    pub max_noise_sigma: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            dihedral: true,
            gain_jitter: 0.2,
            offset_jitter: 0.2,
            max_noise_sigma: 0.3,
        }
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimisation steps (one minibatch each). Default 300.
    pub steps: u64,
    /// Crops per minibatch. Default 8.
    pub batch_size: usize,
    /// Side of the square training crops (px), a multiple of `2^depth`. Default 64.
    pub crop_px: usize,
    /// Optimizer settings.
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Weight of the soft Dice loss added to the BCE. Default 0.5.
    pub dice_weight: f64,
    /// Seed of the weight initialisation, the data order and the augmentation.
    pub seed: u64,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Threads. Results do not depend on it.
    #[serde(skip)]
    pub parallelism: Parallelism,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 300,
            batch_size: 8,
            crop_px: 64,
            optimizer: AdamWConfig::default(),
            schedule: LrSchedule::Cosine {
                warmup_steps: 20,
                total_steps: 300,
                min_factor: 0.05,
            },
            dice_weight: 0.5,
            seed: 1,
            augment: AugmentConfig::default(),
            parallelism: Parallelism::Auto,
        }
    }
}

impl TrainConfig {
    /// Checks the fields (the crop against the network in [`Trainer::new`]).
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.batch_size > 4096 {
            return Err(Error::param(
                "batch_size",
                format!("must lie in 1..=4096, got {}", self.batch_size),
            ));
        }
        if self.crop_px == 0 {
            return Err(Error::param("crop_px", "must be > 0"));
        }
        if !(self.dice_weight >= 0.0 && self.dice_weight.is_finite()) {
            return Err(Error::param(
                "dice_weight",
                format!("must be finite and >= 0, got {}", self.dice_weight),
            ));
        }
        let a = &self.augment;
        for (name, v, max) in [
            ("gain_jitter", a.gain_jitter, 0.99),
            ("offset_jitter", a.offset_jitter, 100.0),
            ("max_noise_sigma", a.max_noise_sigma, 100.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(Error::param(
                    name,
                    format!("must lie in [0, {max}], got {v}"),
                ));
            }
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// What a call to [`Trainer::run`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Steps completed in total (including those before a resume).
    pub steps_done: u64,
    /// Loss of every step completed in this call.
    pub losses: Vec<f32>,
}

/// A U-Net, its optimizer and settings: trains, checkpoints, resumes.
///
/// ```
/// use ndarray::Array2;
/// use stem_core::NoProgress;
/// use stem_learn::train::{SegmentationSet, TrainConfig, Trainer, disk_mask};
/// use stem_learn::unet::UNetConfig;
/// // One image with a column every 8 px and its disk mask.
/// let pos: Vec<[f64; 2]> = (0..4).flat_map(|i| (0..4).map(move |j| [4.0 + 8.0 * i as f64, 4.0 + 8.0 * j as f64])).collect();
/// let mask = disk_mask([32, 32], &pos, 1.5);
/// let data = SegmentationSet::new(vec![mask.mapv(|m| 10.0 * m + 1.0)], vec![mask]).unwrap();
/// let unet = UNetConfig { base_filters: 2, depth: 2, ..Default::default() };
/// let cfg = TrainConfig { steps: 4, batch_size: 2, crop_px: 16, ..Default::default() };
/// let mut tr = Trainer::new(unet.clone(), cfg.clone()).unwrap();
/// let report = tr.run(&data, &NoProgress).unwrap();
/// assert_eq!(report.steps_done, 4);
/// // Same seed, same losses, bit for bit.
/// let again = Trainer::new(unet, cfg).unwrap().run(&data, &NoProgress).unwrap();
/// assert_eq!(report.losses, again.losses);
/// ```
#[derive(Debug)]
pub struct Trainer {
    net: UNet,
    opt: AdamW,
    config: TrainConfig,
}

const CHECKPOINT_KEY: &str = "stem_learn_checkpoint";

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    step: u64,
    unet: UNetConfig,
    train: TrainConfig,
}

impl Trainer {
    /// A fresh network (weights from `config.seed`) and optimizer.
    pub fn new(unet: UNetConfig, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let m = unet.size_multiple();
        if config.crop_px % m != 0 {
            return Err(Error::param(
                "crop_px",
                format!("{} is not a multiple of 2^depth = {m}", config.crop_px),
            ));
        }
        let net = UNet::new(unet, config.seed)?;
        let opt = AdamW::new(config.optimizer.clone())?;
        Ok(Trainer { net, opt, config })
    }

    /// The network being trained.
    pub fn net(&self) -> &UNet {
        &self.net
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimisation steps completed so far.
    pub fn steps_done(&self) -> u64 {
        self.opt.step_count()
    }

    /// The minibatch of step `step`: images `[b, 1, c, c]` and masks `[b, 1, c, c]`.
    pub fn batch(&self, data: &SegmentationSet, step: u64) -> Result<(Tensor, Tensor)> {
        let c = self.config.crop_px;
        if data.min_side() < c {
            return Err(Error::param(
                "crop_px",
                format!(
                    "{c} exceeds the smallest training image side {}",
                    data.min_side()
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(step + 1);
        let b = self.config.batch_size;
        let a = &self.config.augment;
        let mut xs = Vec::with_capacity(b * c * c);
        let mut ys = Vec::with_capacity(b * c * c);
        for _ in 0..b {
            let k = rng.random_range(0..data.len());
            let (im, m) = (&data.images[k], &data.masks[k]);
            let y0 = rng.random_range(0..=im.nrows() - c);
            let x0 = rng.random_range(0..=im.ncols() - c);
            let sym = if a.dihedral {
                rng.random_range(0..8u8)
            } else {
                0
            };
            let gain = 1.0 + a.gain_jitter * rng.random_range(-1.0..=1.0);
            let offset = a.offset_jitter * rng.random_range(-1.0..=1.0);
            let sigma = a.max_noise_sigma * rng.random_range(0.0..=1.0);
            for i in 0..c {
                for j in 0..c {
                    // Dihedral symmetry: optional transpose, then optional flips.
                    let (mut u, mut v) = if sym & 4 != 0 { (j, i) } else { (i, j) };
                    if sym & 1 != 0 {
                        u = c - 1 - u;
                    }
                    if sym & 2 != 0 {
                        v = c - 1 - v;
                    }
                    let noise = if sigma > 0.0 {
                        // Box–Muller from two uniforms of the step's stream.
                        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                        let u2: f64 = rng.random();
                        sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                    } else {
                        0.0
                    };
                    let px = f64::from(im[[y0 + u, x0 + v]]);
                    xs.push((gain * px + offset + noise) as f32);
                    ys.push(m[[y0 + u, x0 + v]]);
                }
            }
        }
        let x = Tensor::from_vec(xs, (b, 1, c, c), &Device::Cpu)?;
        let y = Tensor::from_vec(ys, (b, 1, c, c), &Device::Cpu)?;
        Ok((x, y))
    }

    /// BCE + `dice_weight`·Dice of the network on a batch (a scalar tensor with gradients).
    pub fn loss(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let logits = self.net.forward(x)?;
        let mut l = bce_with_logits(&logits, y)?;
        if self.config.dice_weight > 0.0 {
            l = (l + (dice_loss(&logits, y, 1.0)? * self.config.dice_weight)?)?;
        }
        Ok(l)
    }

    /// Trains until `config.steps` steps are done (continuing from [`steps_done`](Self::steps_done)),
    /// reporting one progress unit per step. On cancel it returns [`Error::Cancelled`] after the
    /// last completed step; the trainer stays consistent and can be checkpointed or run again.
    pub fn run(&mut self, data: &SegmentationSet, progress: &dyn Progress) -> Result<TrainReport> {
        self.run_until(data, self.config.steps, progress)
    }

    /// Like [`run`](Self::run) but stops after step `until` (≤ `config.steps`).
    pub fn run_until(
        &mut self,
        data: &SegmentationSet,
        until: u64,
        progress: &dyn Progress,
    ) -> Result<TrainReport> {
        let until = until.min(self.config.steps);
        let par = self.config.parallelism;
        par.install(|| {
            let start = self.opt.step_count();
            progress.start("train", until.saturating_sub(start));
            let mut losses = Vec::new();
            for step in start..until {
                if progress.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let (x, y) = self.batch(data, step)?;
                let loss = self.loss(&x, &y)?;
                let lv = loss.to_scalar::<f32>()?;
                if !lv.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        step,
                        loss: f64::from(lv),
                    });
                }
                let grads = loss.backward()?;
                let f = self.config.schedule.factor(step);
                self.opt.step(self.net.params(), &grads, f)?;
                losses.push(lv);
                progress.advance(1);
            }
            Ok(TrainReport {
                steps_done: self.opt.step_count(),
                losses,
            })
        })?
    }

    /// Checkpoint bytes: weights (`p.*`), AdamW moments (`m.*`, `v.*`) and, as JSON metadata,
    /// the step count and both configs. Byte-identical for identical states.
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>> {
        let mut t = BTreeMap::new();
        for (k, v) in self.net.params().snapshot() {
            t.insert(format!("p.{k}"), v);
        }
        let (state, step) = self.opt.state();
        t.extend(state);
        let meta = CheckpointMeta {
            step,
            unet: self.net.config().clone(),
            train: self.config.clone(),
        };
        let mut m = BTreeMap::new();
        m.insert(
            CHECKPOINT_KEY.to_string(),
            serde_json::to_string(&meta).map_err(|e| Error::param("checkpoint", e.to_string()))?,
        );
        safetensors::to_bytes(&t, &m)
    }

    /// Writes [`checkpoint_bytes`](Self::checkpoint_bytes) to `path`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let b = self.checkpoint_bytes()?;
        std::fs::write(path, b).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Restores a trainer from checkpoint bytes; `parallelism` is not stored and given here.
    pub fn from_checkpoint_bytes(
        bytes: &[u8],
        path: &str,
        parallelism: Parallelism,
    ) -> Result<Self> {
        let l = safetensors::from_bytes(bytes, path)?;
        let meta: CheckpointMeta = l
            .metadata
            .get(CHECKPOINT_KEY)
            .ok_or_else(|| Error::InvalidBundle {
                path: path.into(),
                reason: format!("no {CHECKPOINT_KEY} metadata"),
            })
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| Error::InvalidBundle {
                    path: path.into(),
                    reason: format!("checkpoint metadata: {e}"),
                })
            })?;
        let mut train = meta.train;
        train.parallelism = parallelism;
        let mut tr = Trainer::new(meta.unet, train)?;
        let mut p = BTreeMap::new();
        let mut opt = BTreeMap::new();
        for (k, v) in l.tensors {
            if let Some(n) = k.strip_prefix("p.") {
                p.insert(n.to_string(), v);
            } else {
                opt.insert(k, v);
            }
        }
        tr.net.params().load(&p).map_err(|e| Error::InvalidBundle {
            path: path.into(),
            reason: e.to_string(),
        })?;
        tr.opt.restore(&opt, meta.step);
        Ok(tr)
    }

    /// Reads a checkpoint written by [`save_checkpoint`](Self::save_checkpoint).
    pub fn load_checkpoint(path: &Path, parallelism: Parallelism) -> Result<Self> {
        let b = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_checkpoint_bytes(&b, &path.display().to_string(), parallelism)
    }
}

/// A target mask: 1 inside disks of radius `radius_px` around each position `[y, x]` (px),
/// 0 elsewhere (AtomAI-style segmentation target).
///
/// ```
/// let m = stem_learn::train::disk_mask([9, 9], &[[4.0, 4.0]], 1.5);
/// assert_eq!(m.sum(), 9.0); // the 3×3 block: corners at distance √2 < 1.5
/// ```
pub fn disk_mask(shape: [usize; 2], positions: &[[f64; 2]], radius_px: f64) -> Array2<f32> {
    let mut m = Array2::<f32>::zeros((shape[0], shape[1]));
    let r = radius_px.max(0.0);
    for p in positions {
        if !(p[0].is_finite() && p[1].is_finite()) {
            continue;
        }
        let y0 = (p[0] - r).floor().max(0.0) as usize;
        let y1 = ((p[0] + r).ceil().max(-1.0) as usize).min(shape[0].saturating_sub(1));
        let x0 = (p[1] - r).floor().max(0.0) as usize;
        let x1 = ((p[1] + r).ceil().max(-1.0) as usize).min(shape[1].saturating_sub(1));
        for y in y0..=y1 {
            for x in x0..=x1 {
                if (y as f64 - p[0]).powi(2) + (x as f64 - p[1]).powi(2) <= r * r
                    && y < shape[0]
                    && x < shape[1]
                {
                    m[[y, x]] = 1.0;
                }
            }
        }
    }
    m
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::*;
    use stem_core::noise::{Dose, add_poisson_noise};
    use stem_core::synth::{LatticeImageConfig, UnitCell2D};

    /// SrTiO3 [001] images (stem-core's synthetic lattice, σ 0.45 Å columns) at 0.2 Å/px with
    /// random rotation and origin, Poisson noise at `counts` per px; truth positions.
    pub fn lattice_cases(
        n: usize,
        size: usize,
        counts: f64,
        seed: u64,
    ) -> Vec<(Array2<f32>, Vec<[f64; 2]>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let cfg = LatticeImageConfig {
                    shape: [size, size],
                    sampling_a: 0.2,
                    rotation_deg: rng.random_range(0.0..90.0),
                    origin_a: [rng.random_range(0.0..4.0), rng.random_range(0.0..4.0)],
                    column_sigma_a: 0.45,
                    background: 0.05,
                    ..LatticeImageConfig::new(UnitCell2D::srtio3_001())
                };
                let out = cfg.render().unwrap();
                let noisy = add_poisson_noise(
                    out.image.view(),
                    Dose::CountsPerPixel(counts),
                    seed * 1000 + i as u64,
                )
                .unwrap();
                let pos = out.columns.iter().map(|c| c.position_px).collect();
                (noisy.into_array(), pos)
            })
            .collect()
    }

    pub fn set(cases: &[(Array2<f32>, Vec<[f64; 2]>)]) -> SegmentationSet {
        let masks = cases
            .iter()
            .map(|(im, p)| disk_mask([im.nrows(), im.ncols()], p, 2.0))
            .collect();
        SegmentationSet::new(cases.iter().map(|c| c.0.clone()).collect(), masks).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stem_core::{CancelFlag, NoProgress};

    fn small() -> (UNetConfig, TrainConfig) {
        let u = UNetConfig {
            base_filters: 4,
            depth: 2,
            ..Default::default()
        };
        let t = TrainConfig {
            steps: 6,
            batch_size: 3,
            crop_px: 32,
            schedule: LrSchedule::Cosine {
                warmup_steps: 2,
                total_steps: 6,
                min_factor: 0.1,
            },
            ..Default::default()
        };
        (u, t)
    }

    #[test]
    fn bit_identical_on_1_and_2_threads_and_after_resume() {
        let data = testdata::set(&testdata::lattice_cases(3, 48, 200.0, 1));
        let (u, t) = small();
        let run = |threads: usize| {
            let mut tr = Trainer::new(
                u.clone(),
                TrainConfig {
                    parallelism: Parallelism::Threads(threads),
                    ..t.clone()
                },
            )
            .unwrap();
            let r = tr.run(&data, &NoProgress).unwrap();
            (r.losses, tr.checkpoint_bytes().unwrap())
        };
        let (l1, c1) = run(1);
        let (l2, c2) = run(2);
        assert_eq!(
            l1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            l2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(c1 == c2, "checkpoints differ between 1 and 2 threads");
        // Interrupted after 3 steps, checkpointed, resumed on another thread count.
        let mut tr = Trainer::new(
            u.clone(),
            TrainConfig {
                parallelism: Parallelism::Threads(2),
                ..t.clone()
            },
        )
        .unwrap();
        let first = tr.run_until(&data, 3, &NoProgress).unwrap();
        let bytes = tr.checkpoint_bytes().unwrap();
        drop(tr);
        let mut tr =
            Trainer::from_checkpoint_bytes(&bytes, "mem", Parallelism::Threads(1)).unwrap();
        assert_eq!(tr.steps_done(), 3);
        let second = tr.run(&data, &NoProgress).unwrap();
        let resumed: Vec<u32> = first
            .losses
            .iter()
            .chain(&second.losses)
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(resumed, l1.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(
            tr.checkpoint_bytes().unwrap() == c1,
            "resumed final state differs"
        );
    }

    #[test]
    fn cancel_stops_after_completed_steps() {
        let data = testdata::set(&testdata::lattice_cases(2, 32, 200.0, 2));
        let (u, t) = small();
        let mut tr = Trainer::new(u, t).unwrap();
        let flag = CancelFlag::cancel_after(2);
        assert!(matches!(tr.run(&data, &flag), Err(Error::Cancelled)));
        assert_eq!(tr.steps_done(), 2);
    }

    #[test]
    fn validation_rules() {
        let (u, t) = small();
        assert!(
            Trainer::new(
                u.clone(),
                TrainConfig {
                    batch_size: 0,
                    ..t.clone()
                }
            )
            .is_err()
        );
        assert!(
            Trainer::new(
                u.clone(),
                TrainConfig {
                    crop_px: 30,
                    ..t.clone()
                }
            )
            .is_err()
        );
        assert!(
            Trainer::new(
                u.clone(),
                TrainConfig {
                    dice_weight: -1.0,
                    ..t.clone()
                }
            )
            .is_err()
        );
        let aug = AugmentConfig {
            gain_jitter: 1.5,
            ..Default::default()
        };
        assert!(
            Trainer::new(
                u.clone(),
                TrainConfig {
                    augment: aug,
                    ..t.clone()
                }
            )
            .is_err()
        );
        let tr = Trainer::new(u, TrainConfig { crop_px: 64, ..t }).unwrap();
        let data = testdata::set(&testdata::lattice_cases(1, 48, 200.0, 3));
        assert!(matches!(
            tr.batch(&data, 0),
            Err(Error::InvalidParameter { .. })
        ));
        let a = Array2::<f32>::zeros((4, 4));
        assert!(SegmentationSet::new(vec![a.clone()], vec![]).is_err());
        assert!(SegmentationSet::new(vec![a.clone()], vec![Array2::zeros((4, 5))]).is_err());
        assert!(
            SegmentationSet::new(vec![a.clone()], vec![Array2::from_elem((4, 4), 2.0)]).is_err()
        );
        assert!(SegmentationSet::new(vec![Array2::from_elem((4, 4), f32::NAN)], vec![a]).is_err());
        let bad = Trainer::from_checkpoint_bytes(b"garbage!", "x", Parallelism::Auto);
        assert!(matches!(bad, Err(Error::InvalidBundle { .. })));
    }
}
