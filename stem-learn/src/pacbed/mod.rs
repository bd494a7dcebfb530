//! PACBED thickness and tilt from a small CNN ensemble, with an out-of-distribution flag.
//!
//! Position-averaged CBED patterns change strongly with specimen thickness and beam tilt; a
//! small CNN regressor on a downsampled, log-scaled pattern recovers both (Xu & LeBeau,
//! Ultramicroscopy 188, 59 (2018); Oberaigner et al., Microsc. Microanal. 29, 427 (2023) use
//! large classifiers; a CPU-sized regressor is enough for one material and zone, see
//! `shared/reference/learn.md` §5).
//!
//! * [`PreprocessConfig`]: the pattern `[k_y, k_x]` is resampled from its own calibration
//!   (mrad/px) to a fixed `size_px²` window of fixed mrad/px around the zero angle, divided by
//!   its total (dose-independent), log-compressed and standardised.
//! * [`PacbedNet`]: conv blocks (3×3 conv, leaky ReLU, 2×2 max-pool) → flatten → dense
//!   features → dense `[thickness, tilt_y, tilt_x]`, built on the crate's fast
//!   [`conv2d`](crate::ops::conv2d).
//! * [`PacbedModel::train`]: an ensemble of K members, each trained with seeded AdamW on
//!   augmented patterns (Poisson noise at a random dose; shift, zoom, rotation and shear as one
//!   affine resampling), bit-identical on any thread count.
//! * Out-of-distribution test: the Mahalanobis distance of each member's features to the
//!   Gaussian fitted on the training features (Lee et al., NeurIPS 2018), averaged over
//!   members, against a threshold set on held-out in-distribution patterns; predictions
//!   outside the training ranges are flagged too. [`PacbedModel::predict`] returns
//!   value ± ensemble spread and the flag.
//! * [`PacbedBundle`]: the model in a verified safetensors bundle with its card.

mod model;
mod net;
mod preprocess;

pub use model::{
    PacbedAugment, PacbedModel, PacbedModelConfig, PacbedPrediction, PacbedSample, PacbedSet,
    PacbedTrainConfig, PacbedTrainReport,
};
pub use net::{N_OUTPUTS, PacbedNet, PacbedNetConfig};
pub use preprocess::{Affine, Centering, PreprocessConfig, Scaling};

use crate::bundle::{ModelCard, decode, encode, read_file, write_file};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use model::FeatureStats;
use std::collections::BTreeMap;
use std::path::Path;

/// The task string of PACBED bundles.
pub const PACBED_TASK: &str = "pacbed-thickness-tilt";

/// A trained [`PacbedModel`] with its model card.
#[derive(Clone, Debug)]
pub struct PacbedBundle {
    /// The card (`architecture` is the model's config; `weights_sha256` is set on writing).
    pub card: ModelCard<PacbedModelConfig>,
    /// The model.
    pub model: PacbedModel,
}

impl PacbedBundle {
    /// A bundle with a fresh card (`name`, `version`, task [`PACBED_TASK`]) for `model`.
    pub fn new(name: &str, version: &str, model: PacbedModel) -> Self {
        PacbedBundle {
            card: ModelCard::new(name, version, PACBED_TASK, model.config.clone()),
            model,
        }
    }

    fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut t = BTreeMap::new();
        for (k, net) in self.model.nets.iter().enumerate() {
            for (name, v) in net.params().snapshot() {
                t.insert(format!("m{k}.{name}"), v);
            }
        }
        for (k, s) in self.model.stats.iter().enumerate() {
            let d = s.mean.len();
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            t.insert(
                format!("ood{k}.mean"),
                Tensor::from_vec(f(&s.mean), d, &Device::Cpu)?,
            );
            t.insert(
                format!("ood{k}.precision"),
                Tensor::from_vec(f(&s.precision), (d, d), &Device::Cpu)?,
            );
        }
        Ok(t)
    }

    /// Safetensors bytes with the card in the metadata; sets `card.weights_sha256`.
    /// Byte-identical for equal models and cards.
    pub fn to_bytes(&mut self) -> Result<Vec<u8>> {
        if self.card.architecture != self.model.config {
            return Err(Error::param(
                "card.architecture",
                "differs from the model's config",
            ));
        }
        let t = self.tensors()?;
        encode(&mut self.card, &t)
    }

    /// Parses and verifies a bundle (`path` names it in errors): format, task, weights'
    /// SHA-256, the config, and every tensor's presence and shape.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidBundle {
            path: path.to_string(),
            reason,
        };
        let (card, tensors) = decode::<PacbedModelConfig>(bytes, path, Some(PACBED_TASK))?;
        let config = card.architecture.clone();
        config
            .validate()
            .map_err(|e| bad(format!("architecture: {e}")))?;
        let d = config.net.hidden;
        let mut nets = Vec::new();
        let mut stats = Vec::new();
        let mut expected = 0;
        for k in 0..config.ensemble {
            let net = PacbedNet::new(config.net.clone(), 0).map_err(|e| bad(e.to_string()))?;
            let prefix = format!("m{k}.");
            let own: BTreeMap<String, Tensor> = tensors
                .iter()
                .filter_map(|(n, v)| n.strip_prefix(&prefix).map(|s| (s.to_string(), v.clone())))
                .collect();
            net.params()
                .load(&own)
                .map_err(|e| bad(format!("member {k}: {e}")))?;
            expected += net.params().len() + 2;
            nets.push(net);
            let get = |name: String, shape: &[usize]| -> Result<Vec<f64>> {
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| bad(format!("missing tensor {name}")))?;
                if t.dims() != shape {
                    return Err(bad(format!(
                        "{name} has shape {:?}, expected {shape:?}",
                        t.dims()
                    )));
                }
                Ok(t.flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect())
            };
            stats.push(FeatureStats {
                mean: get(format!("ood{k}.mean"), &[d])?,
                precision: get(format!("ood{k}.precision"), &[d, d])?,
            });
        }
        if tensors.len() != expected {
            return Err(bad(format!(
                "{} tensors, the architecture has {expected}",
                tensors.len()
            )));
        }
        Ok(PacbedBundle {
            model: PacbedModel {
                config,
                nets,
                stats,
            },
            card,
        })
    }

    /// Writes the bundle to `path`.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let b = self.to_bytes()?;
        write_file(path, &b)
    }

    /// Reads and verifies a bundle file.
    pub fn load(path: &Path) -> Result<Self> {
        let b = read_file(path)?;
        Self::from_bytes(&b, &path.display().to_string())
    }
}
