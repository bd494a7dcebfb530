//! Model bundles (FAIR): safetensors weights with an embedded JSON model card, and a local
//! [`ModelStore`].
//!
//! A bundle is one `.safetensors` file; its `__metadata__` holds `model_card` (a [`ModelCard`]
//! as JSON): architecture, training settings and seed, the SHA-256 of the training data and of
//! the weights, metrics, crate versions and the CPU it was trained on. Loading checks the
//! format, the card and the weights' SHA-256, so a truncated or corrupted file gives
//! [`Error::InvalidBundle`].
//!
//! The card is generic over the architecture description (`ModelCard<A>`, default
//! [`UNetConfig`]); [`encode`] and [`decode`] are the architecture-independent layer (tensors
//! plus card, with the checks above) on which the typed bundles are built: [`Bundle`] for the
//! U-Net atom finder and [`crate::pacbed::PacbedBundle`] for the PACBED regressor.

use crate::error::{Error, Result};
use crate::safetensors;
use crate::unet::{UNet, UNetConfig};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The format tag written into every card.
pub const BUNDLE_FORMAT: &str = "stem-learn-bundle/1";

/// Describes a trained model: what it is, how it was made, how good it is.
///
/// `A` is the architecture description (the network's config), serialised as the card's
/// `architecture` field; the default is the U-Net's [`UNetConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard<A = UNetConfig> {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// Model name (a store directory name: letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Version string (same character set).
    pub version: String,
    /// What the model does, e.g. `"atom-finding"`.
    pub task: String,
    /// The network.
    pub architecture: A,
    /// Training settings, data recipe and seed, as given by the trainer (free JSON).
    pub training: serde_json::Value,
    /// SHA-256 of the training data (see `SegmentationSet::checksum`).
    pub data_checksum: String,
    /// Evaluation results by name (e.g. `"id_recall"`, `"id_precision"`, `"delta_d_a"`).
    pub metrics: BTreeMap<String, f64>,
    /// Crate versions (`stem-learn`, `candle-core`, ...).
    pub crate_versions: BTreeMap<String, String>,
    /// CPU architecture and SIMD level of the training machine (GEMM kernels differ by ISA, so
    /// bit-identity holds per ISA).
    pub cpu_isa: String,
    /// SHA-256 of the weights (names, shapes, little-endian f32 values in name order); filled in
    /// when the bundle is written.
    pub weights_sha256: String,
}

impl<A> ModelCard<A> {
    /// A card with the format tag, this crate's and candle's versions and the current CPU;
    /// `training`, `data_checksum` and `metrics` empty.
    pub fn new(name: &str, version: &str, task: &str, architecture: A) -> Self {
        let mut crate_versions = BTreeMap::new();
        crate_versions.insert(
            "stem-learn".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        crate_versions.insert("candle-core".to_string(), "0.11".to_string());
        ModelCard {
            format: BUNDLE_FORMAT.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            task: task.to_string(),
            architecture,
            training: serde_json::Value::Null,
            data_checksum: String::new(),
            metrics: BTreeMap::new(),
            crate_versions,
            cpu_isa: cpu_isa(),
            weights_sha256: String::new(),
        }
    }
}

/// `"<arch>"` plus the widest SIMD level gemm can use here (x86-64: avx512f / avx2 / sse2).
pub fn cpu_isa() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let level = if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2") {
            "avx2"
        } else {
            "sse2"
        };
        format!("x86_64+{level}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

fn weights_sha256(t: &BTreeMap<String, Tensor>) -> Result<String> {
    let mut h = Sha256::new();
    for (k, v) in t {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        for d in v.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        for x in v.flatten_all()?.to_vec1::<f32>()? {
            h.update(x.to_le_bytes());
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Safetensors bytes holding `tensors` and, as the `model_card` metadata, `card` as pretty
/// JSON; sets `card.weights_sha256` first. Byte-identical for equal tensors and cards.
///
/// This is the architecture-independent half of every bundle type (see [`decode`]).
pub fn encode<A: Serialize>(
    card: &mut ModelCard<A>,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<Vec<u8>> {
    card.weights_sha256 = weights_sha256(tensors)?;
    let mut m = BTreeMap::new();
    m.insert(
        "model_card".to_string(),
        serde_json::to_string_pretty(card).map_err(|e| Error::param("card", e.to_string()))?,
    );
    safetensors::to_bytes(tensors, &m)
}

/// Parses bundle bytes written by [`encode`]: checks the safetensors format, parses the card
/// (its `architecture` as `A`), checks the format tag, that the card's task is `task` (when
/// given) and the weights' SHA-256. Errors: [`Error::InvalidBundle`] naming `path`.
///
/// ```
/// use std::collections::BTreeMap;
/// use candle_core::{Device, Tensor};
/// use stem_learn::bundle::{decode, encode, ModelCard};
/// let mut card = ModelCard::new("toy", "1", "demo", vec![3usize]);
/// let mut t = BTreeMap::new();
/// t.insert("w".to_string(), Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap());
/// let bytes = encode(&mut card, &t).unwrap();
/// let (back, tensors) = decode::<Vec<usize>>(&bytes, "toy", Some("demo")).unwrap();
/// assert_eq!(back, card);
/// assert_eq!(tensors["w"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
/// assert!(decode::<Vec<usize>>(&bytes, "toy", Some("other")).is_err());
/// ```
pub fn decode<A: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &str,
    task: Option<&str>,
) -> Result<(ModelCard<A>, BTreeMap<String, Tensor>)> {
    let bad = |reason: String| Error::InvalidBundle {
        path: path.to_string(),
        reason,
    };
    let l = safetensors::from_bytes(bytes, path)?;
    let card: ModelCard<A> = l
        .metadata
        .get("model_card")
        .ok_or_else(|| bad("no model_card metadata".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("model card: {e}"))))?;
    if card.format != BUNDLE_FORMAT {
        return Err(bad(format!(
            "format {:?}, expected {BUNDLE_FORMAT:?}",
            card.format
        )));
    }
    if let Some(task) = task
        && card.task != task
    {
        return Err(bad(format!("task {:?}, expected {task:?}", card.task)));
    }
    let sha = weights_sha256(&l.tensors)?;
    if sha != card.weights_sha256 {
        return Err(bad(format!(
            "weights SHA-256 {sha} differs from the card's {}",
            card.weights_sha256
        )));
    }
    Ok((card, l.tensors))
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A trained U-Net with its model card.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The card (its `weights_sha256` is set by [`to_bytes`](Self::to_bytes)).
    pub card: ModelCard,
    /// The network.
    pub net: UNet,
}

impl Bundle {
    /// Safetensors bytes with the card in the metadata; sets `card.weights_sha256`.
    /// Byte-identical for equal weights and cards.
    pub fn to_bytes(&mut self) -> Result<Vec<u8>> {
        if self.card.architecture != *self.net.config() {
            return Err(Error::param(
                "card.architecture",
                "differs from the network's config",
            ));
        }
        let t = self.net.params().snapshot();
        encode(&mut self.card, &t)
    }

    /// Parses and verifies a bundle (`path` names it in errors).
    ///
    /// ```
    /// use stem_learn::bundle::{Bundle, ModelCard};
    /// use stem_learn::unet::{UNet, UNetConfig};
    /// let cfg = UNetConfig { base_filters: 2, depth: 1, ..Default::default() };
    /// let mut b = Bundle { card: ModelCard::new("demo", "1", "atom-finding", cfg.clone()), net: UNet::new(cfg, 7).unwrap() };
    /// let bytes = b.to_bytes().unwrap();
    /// let back = Bundle::from_bytes(&bytes, "demo").unwrap();
    /// assert_eq!(back.card, b.card);
    /// let mut bad = bytes.clone();
    /// let n = bad.len();
    /// bad[n - 1] ^= 0x40; // flip a bit of the last weight
    /// assert!(Bundle::from_bytes(&bad, "demo").is_err());
    /// ```
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidBundle {
            path: path.to_string(),
            reason,
        };
        let (card, tensors) = decode::<UNetConfig>(bytes, path, None)?;
        let net = UNet::new(card.architecture.clone(), 0)
            .map_err(|e| bad(format!("architecture: {e}")))?;
        if tensors.len() != net.params().len() {
            return Err(bad(format!(
                "{} tensors, the architecture has {}",
                tensors.len(),
                net.params().len()
            )));
        }
        net.params()
            .load(&tensors)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Bundle { card, net })
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

    /// The atom-finder bundle shipped in the crate (`models/atom-finder-srtio3-0.1.0.safetensors`,
    /// embedded in the binary): a U-Net (8 base filters, depth 3) trained on the SrTiO3 \[001\]
    /// recipe of stem-sim (fast incoherent model, 0.12–0.2 Å/px, 20–500 counts/px). Outside that
    /// domain (other crystals, zones or pixel sizes) its answers are not validated; see
    /// `models/README.md` for its scores and the command that regenerates it.
    ///
    /// ```
    /// let b = stem_learn::bundle::Bundle::shipped_atom_finder().unwrap();
    /// assert_eq!(b.card.task, "atom-finding");
    /// ```
    pub fn shipped_atom_finder() -> Result<Self> {
        Self::from_bytes(SHIPPED_ATOM_FINDER, SHIPPED_ATOM_FINDER_NAME)
    }
}

/// File name of the shipped atom-finder bundle (see [`Bundle::shipped_atom_finder`]).
pub const SHIPPED_ATOM_FINDER_NAME: &str = "atom-finder-srtio3-0.1.0.safetensors";

const SHIPPED_ATOM_FINDER: &[u8] = include_bytes!("../models/atom-finder-srtio3-0.1.0.safetensors");

/// A directory of bundles: `<root>/<name>/<version>/model.safetensors`.
#[derive(Clone, Debug)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// A store rooted at `root` (created on the first publish).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelStore { root: root.into() }
    }

    fn path(&self, name: &str, version: &str) -> Result<PathBuf> {
        for (what, s) in [("name", name), ("version", version)] {
            if !valid_name(s) {
                return Err(Error::param(
                    what,
                    format!("{s:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"),
                ));
            }
        }
        Ok(self.root.join(name).join(version).join("model.safetensors"))
    }

    /// Writes `bundle` under its card's name and version and returns the file path. Refuses to
    /// overwrite an existing version.
    pub fn publish(&self, bundle: &mut Bundle) -> Result<PathBuf> {
        let p = self.path(&bundle.card.name, &bundle.card.version)?;
        if p.exists() {
            return Err(Error::param(
                "version",
                format!(
                    "{} {} is already published at {}",
                    bundle.card.name,
                    bundle.card.version,
                    p.display()
                ),
            ));
        }
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        bundle.save(&p)?;
        Ok(p)
    }

    /// Loads and verifies `name` at `version`.
    pub fn load(&self, name: &str, version: &str) -> Result<Bundle> {
        let p = self.path(name, version)?;
        if !p.exists() {
            return Err(Error::ModelNotFound {
                name: name.into(),
                version: version.into(),
                root: self.root.display().to_string(),
            });
        }
        Bundle::load(&p)
    }

    /// Published versions of `name`, sorted.
    pub fn versions(&self, name: &str) -> Result<Vec<String>> {
        let dir = self.root.join(name);
        if !valid_name(name) || !dir.is_dir() {
            return Ok(Vec::new());
        }
        let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("model.safetensors").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let cfg = UNetConfig {
            base_filters: 2,
            depth: 2,
            ..Default::default()
        };
        let mut card = ModelCard::new("toy", "0.1", "atom-finding", cfg.clone());
        card.metrics.insert("id_recall".into(), 0.97);
        Bundle {
            card,
            net: UNet::new(cfg, 3).unwrap(),
        }
    }

    #[test]
    fn store_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("stem-learn-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ModelStore::new(&dir);
        let mut b = bundle();
        let p = store.publish(&mut b).unwrap();
        assert!(p.ends_with("toy/0.1/model.safetensors"));
        assert!(matches!(
            store.publish(&mut b),
            Err(Error::InvalidParameter { .. })
        ));
        let back = store.load("toy", "0.1").unwrap();
        assert_eq!(back.card, b.card);
        for (k, t) in b.net.params().snapshot() {
            let u = &back.net.params().snapshot()[&k];
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                u.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert_eq!(store.versions("toy").unwrap(), vec!["0.1".to_string()]);
        assert!(matches!(
            store.load("toy", "9"),
            Err(Error::ModelNotFound { .. })
        ));
        assert!(matches!(
            store.load("../x", "1"),
            Err(Error::InvalidParameter { .. })
        ));
        // Truncated and corrupted files.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            store.load("toy", "0.1"),
            Err(Error::InvalidBundle { .. })
        ));
        let mut c = bytes.clone();
        let n = c.len();
        c[n - 10] ^= 1;
        std::fs::write(&p, &c).unwrap();
        assert!(matches!(
            store.load("toy", "0.1"),
            Err(Error::InvalidBundle { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bytes_are_deterministic() {
        assert!(bundle().to_bytes().unwrap() == bundle().to_bytes().unwrap());
    }
}
