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
//!   outside the training ranges are flagged too. Input-space test
//!   ([`PacbedModel::fit_input_pca`]): the relative residual of the preprocessed input after
//!   projection onto the principal subspace of the training inputs and the Mahalanobis
//!   distance of its principal scores (Jackson & Mudholkar 1979), each against its own
//!   held-out quantile. Ensemble-spread test: the members' thickness standard deviation over
//!   its held-out in-distribution median at the same predicted thickness (Lakshminarayanan
//!   et al., NeurIPS 2017, deep ensembles), against its held-out quantile.
//!   [`PacbedModel::predict`] returns
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
use model::{FeatureStats, InputPca};
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
        if let Some(p) = &self.model.pca {
            let d = p.mean.len();
            t.insert(
                "pca.mean".into(),
                Tensor::from_vec(p.mean.clone(), d, &Device::Cpu)?,
            );
            if let Some(sc) = &p.scores {
                let k = sc.mean.len();
                let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
                t.insert(
                    "pca.score_mean".into(),
                    Tensor::from_vec(f(&sc.mean), k, &Device::Cpu)?,
                );
                t.insert(
                    "pca.score_precision".into(),
                    Tensor::from_vec(f(&sc.precision), (k, k), &Device::Cpu)?,
                );
            }
            t.insert(
                "pca.components".into(),
                Tensor::from_vec(
                    p.components.clone(),
                    (p.components.len() / d, d),
                    &Device::Cpu,
                )?,
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
        let k = self
            .model
            .pca
            .as_ref()
            .map_or(0, |p| p.components.len() / p.mean.len().max(1));
        if k != self.model.config.pca_components {
            return Err(Error::param(
                "pca_components",
                format!(
                    "config says {}, the model holds {k} input components",
                    self.model.config.pca_components
                ),
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
        let pca = if config.pca_components > 0 {
            let k = config.pca_components;
            let dn = config.preprocess.size_px * config.preprocess.size_px;
            let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let t = tensors
                    .get(name)
                    .ok_or_else(|| bad(format!("missing tensor {name}")))?;
                if t.dims() != shape {
                    return Err(bad(format!(
                        "{name} has shape {:?}, expected {shape:?}",
                        t.dims()
                    )));
                }
                Ok(t.flatten_all()?.to_vec1::<f32>()?)
            };
            expected += 4;
            let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
            Some(InputPca {
                mean: get("pca.mean", &[dn])?,
                components: get("pca.components", &[k, dn])?,
                scores: Some(FeatureStats {
                    mean: f64s(get("pca.score_mean", &[k])?),
                    precision: f64s(get("pca.score_precision", &[k, k])?),
                }),
            })
        } else {
            None
        };
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
                pca,
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

    /// The PACBED model shipped in the crate (`models/pacbed-srtio3-0.2.0.safetensors`,
    /// embedded in the binary): an ensemble of 3 members trained on SrTiO3 \[001\], 200 kV, 20 mrad,
    /// 0.39–39 nm, tilt within ±4 mrad per axis (stem-sim multislice). Other materials, zones,
    /// voltages or convergence angles are outside its domain (the out-of-distribution flag
    /// usually says so); see `models/README.md` for its scores and the regeneration command.
    ///
    /// ```
    /// let b = stem_learn::pacbed::PacbedBundle::shipped().unwrap();
    /// assert_eq!(b.card.task, stem_learn::pacbed::PACBED_TASK);
    /// assert_eq!(b.model.nets().len(), b.model.config().ensemble);
    /// ```
    pub fn shipped() -> Result<Self> {
        Self::from_bytes(SHIPPED_PACBED, SHIPPED_PACBED_NAME)
    }
}

/// File name of the shipped PACBED bundle (see [`PacbedBundle::shipped`]).
pub const SHIPPED_PACBED_NAME: &str = "pacbed-srtio3-0.2.0.safetensors";

const SHIPPED_PACBED: &[u8] = include_bytes!("../../models/pacbed-srtio3-0.2.0.safetensors");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundle;
    use ndarray::Array2;
    use stem_sim::dataset::{CrystalSpec, PacbedGenerator, ProbeSpec};

    fn toy_bundle() -> PacbedBundle {
        // A model straight from the net constructor with made-up feature statistics.
        let config = PacbedModelConfig {
            net: PacbedNetConfig {
                input_px: 16,
                filters: vec![2, 2],
                hidden: 3,
                ..Default::default()
            },
            preprocess: PreprocessConfig {
                size_px: 16,
                ..Default::default()
            },
            ensemble: 2,
            ood_threshold: 2.5,
            pca_components: 0,
            ..Default::default()
        };
        let nets = (0..2)
            .map(|k| PacbedNet::new(config.net.clone(), k).unwrap())
            .collect();
        let stats = (0..2)
            .map(|k| FeatureStats {
                mean: vec![0.5 * k as f64; 3],
                precision: (0..9).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect(),
            })
            .collect();
        PacbedBundle::new(
            "toy",
            "0.1",
            PacbedModel {
                config,
                nets,
                stats,
                pca: None,
            },
        )
    }

    #[test]
    fn bundle_round_trip_corruption_and_task() {
        let mut b = toy_bundle();
        let bytes = b.to_bytes().unwrap();
        assert_eq!(bytes, toy_bundle().to_bytes().unwrap());
        let back = PacbedBundle::from_bytes(&bytes, "toy").unwrap();
        assert_eq!(back.card, b.card);
        let p = Array2::from_shape_fn((40, 40), |(y, x)| 1.0 + ((y * 3 + x) % 7) as f32);
        let (u, v) = (
            b.model.predict(p.view(), [1.5, 1.5]).unwrap(),
            back.model.predict(p.view(), [1.5, 1.5]).unwrap(),
        );
        assert_eq!(u, v);
        // Flipped bit in the last tensor, truncation, a U-Net bundle, a changed card.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x10;
        for b in [&bad[..], &bytes[..n / 2], &bytes[..10]] {
            assert!(matches!(
                PacbedBundle::from_bytes(b, "x"),
                Err(Error::InvalidBundle { .. })
            ));
        }
        let mut unet = Bundle::shipped_atom_finder().unwrap();
        let ub = unet.to_bytes().unwrap();
        assert!(matches!(
            PacbedBundle::from_bytes(&ub, "x"),
            Err(Error::InvalidBundle { .. })
        ));
        let mut wrong = toy_bundle();
        wrong.card.architecture.ensemble = 1;
        assert!(wrong.to_bytes().is_err());
        wrong.model.config.ensemble = 1;
        let wb = wrong.to_bytes().unwrap();
        // One member declared but two stored: extra tensors are refused.
        assert!(matches!(
            PacbedBundle::from_bytes(&wb, "x"),
            Err(Error::InvalidBundle { .. })
        ));
    }

    /// A bundle with the input PCA round-trips (same residuals); a mismatch between the config
    /// and the stored components is refused; a card written before the PCA existed (no
    /// `pca_*` fields) reads as "no input test".
    #[test]
    fn bundle_with_input_pca_and_backward_compatibility() {
        let mut b = toy_bundle();
        let d = 16 * 16;
        b.model.pca = Some(InputPca {
            mean: (0..d).map(|i| (i % 5) as f32 * 0.1).collect(),
            components: (0..2 * d)
                .map(|i| if i == 3 || i == d + 7 { 1.0 } else { 0.0 })
                .collect(),
            scores: Some(FeatureStats {
                mean: vec![0.0, 0.125],
                precision: vec![1.0, 0.0, 0.0, 2.0],
            }),
        });
        // Config still says 0 components: refused.
        assert!(b.to_bytes().is_err());
        b.model.config.pca_components = 2;
        b.model.config.pca_threshold = 0.5;
        b.card.architecture = b.model.config.clone();
        let bytes = b.to_bytes().unwrap();
        let back = PacbedBundle::from_bytes(&bytes, "toy").unwrap();
        let p = Array2::from_shape_fn((40, 40), |(y, x)| 1.0 + ((y * 3 + x) % 7) as f32);
        let (u, v) = (
            b.model.predict(p.view(), [1.5, 1.5]).unwrap(),
            back.model.predict(p.view(), [1.5, 1.5]).unwrap(),
        );
        assert_eq!(u, v);
        assert!(u.input_residual > 0.0 && u.input_residual_threshold == 0.5);
        // Old cards: the fields are absent.
        let mut j = serde_json::to_value(PacbedModelConfig::default()).unwrap();
        let o = j.as_object_mut().unwrap();
        o.remove("pca_components");
        o.remove("pca_threshold");
        o.remove("pca_score_threshold");
        let c: PacbedModelConfig = serde_json::from_value(j).unwrap();
        assert_eq!(
            (c.pca_components, c.pca_threshold, c.pca_score_threshold),
            (0, 0.0, 0.0)
        );
    }

    /// The atom finder still loads, and re-encoding it gives the shipped bytes exactly (the
    /// bundle refactor did not change the format).
    #[test]
    fn shipped_atom_finder_bytes_unchanged() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(crate::bundle::SHIPPED_ATOM_FINDER_NAME);
        let bytes = std::fs::read(path).unwrap();
        let mut b = Bundle::shipped_atom_finder().unwrap();
        assert!(b.to_bytes().unwrap() == bytes);
    }

    /// The shipped model on held-out SrTiO3 [001] tilts (other than any training tilt):
    /// thickness error and in-distribution flag rate.
    #[test]
    fn shipped_model_accuracy_in_distribution() {
        let m = PacbedBundle::shipped().unwrap().model;
        // 4×4 positions per cell as in training; thickness every 5 cells (1.95–39 nm).
        let g = PacbedGenerator {
            crystal: CrystalSpec {
                cells_yx: [4, 4],
                thickness_cells: 100,
                ..CrystalSpec::new("srtio3")
            },
            thickness_cells: (5..=100).step_by(5).collect(),
            positions_per_cell: 4,
            ..PacbedGenerator::default()
        };
        let (mut se, mut flagged, mut n) = (0.0, 0, 0);
        for tilt in [[1.7, -2.9], [-3.3, 0.6]] {
            let (stack, nm, mrad) = g.run(tilt).unwrap();
            for (i, &t) in nm.iter().enumerate() {
                let p = m
                    .predict(stack.index_axis(ndarray::Axis(0), i), mrad)
                    .unwrap();
                se += (p.thickness_nm - t).powi(2);
                flagged += usize::from(p.out_of_distribution);
                n += 1;
            }
        }
        let rms = (se / n as f64).sqrt();
        eprintln!("shipped model: thickness RMS {rms:.3} nm, {flagged}/{n} flagged");
        // Measured 0.970 nm RMS on the 800 held-out patterns of `train_pacbed` and 0.775 nm on
        // these 40 (pre-merge training of the same recipe: 0.922 / 0.795 nm) (the error grows with thickness: 0.42 / 0.64 / 1.39 nm in the thirds of
        // 0-39 nm), so 1.2 nm leaves room for last-bit differences of a regenerated bundle
        // while failing the 0.1.0 model (2.12 nm).
        assert!(rms < 1.2, "held-out thickness RMS {rms} nm");
        // Each threshold is the 99 % quantile of held-out in-distribution values; >= 97 %
        // unflagged is the target, i.e. <= 1 of 40 (0/40 here; 5/800 = 0.6 % in the full
        // evaluation).
        assert!(
            flagged <= 1,
            "{flagged}/{n} in-distribution patterns flagged"
        );
    }

    fn si110(probe: ProbeSpec, max_angle_mrad: f64) -> (ndarray::Array3<f32>, [f64; 2]) {
        let si = PacbedGenerator {
            crystal: CrystalSpec {
                cells_yx: [3, 4],
                thickness_cells: 100,
                zone: "110".into(),
                ..CrystalSpec::new("si")
            },
            probe,
            thickness_cells: vec![25, 50, 75, 100],
            max_angle_mrad,
            positions_per_cell: 3,
            ..PacbedGenerator::default()
        };
        let (stack, _, mrad) = si.run([0.5, 1.0]).unwrap();
        (stack, mrad)
    }

    /// Si [110] at its own recipe's optics (300 kV, 10 mrad, ±30 mrad; `pacbed_si110`) is
    /// flagged on every plane (in the full evaluation of 0.2.0 each of the feature distance,
    /// input residual and score distance flags 15/15).
    #[test]
    fn shipped_model_flags_si110() {
        let m = PacbedBundle::shipped().unwrap().model;
        assert!(
            m.config().pca_components > 0,
            "shipped model has no input PCA"
        );
        let own = ProbeSpec {
            energy_kv: 300.0,
            convergence_mrad: 10.0,
            ..ProbeSpec::default()
        };
        let (stack, mrad) = si110(own, 30.0);
        for i in 0..stack.shape()[0] {
            let p = m
                .predict(stack.index_axis(ndarray::Axis(0), i), mrad)
                .unwrap();
            assert!(
                p.out_of_distribution,
                "Si [110] plane {i} not flagged: {p:?}"
            );
        }
    }

    /// Si [110] at the TRAINING optics (200 kV, 20 mrad, ±40 mrad) should be flagged too, so
    /// that the flag responds to the crystal and not to the optics. KNOWN FAILURE of 0.2.0:
    /// 3/15 in the full evaluation of the shipped bundle (0/15 for the pre-merge training of
    /// the same recipe; input residual 0.094–0.116 vs threshold 0.133, score distance
    /// 3.7–5.4 vs 7.8, feature distance 4.3–5.5 vs 7.4, normalised ensemble spread 0.49–4.02
    /// vs 2.99): at these optics the 20 mrad disc dominates the log input and Si
    /// looks like some SrTiO3 thickness. Neither 64 input components (residual 0.080–0.106
    /// vs 0.122) nor per-thickness-bin thresholds nor a Fisher combination of the four
    /// statistics (1/15) separated it.
    #[test]
    #[ignore = "known failure: Si [110] at the training optics is mostly not flagged (3/15 with 0.2.0), see models/README.md"]
    fn shipped_model_flags_si110_at_training_optics() {
        let m = PacbedBundle::shipped().unwrap().model;
        let (stack, mrad) = si110(ProbeSpec::default(), 40.0);
        for i in 0..stack.shape()[0] {
            let p = m
                .predict(stack.index_axis(ndarray::Axis(0), i), mrad)
                .unwrap();
            assert!(
                p.out_of_distribution,
                "Si [110] plane {i} not flagged: {p:?}"
            );
        }
    }
}
