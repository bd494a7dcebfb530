//! Writing a dataset: NPY files and a JSON manifest with labels and SHA-256 digests.

use super::{Dataset, Recipe};
use crate::degrade::Sample;
use crate::error::{Error, Result};
use ndarray::{Array3, Axis, stack};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use stem_core::Progress;
use stem_core::io::npy::write_npy;

/// Format tag of the manifest.
pub const MANIFEST_FORMAT: &str = "stem-dataset/1";

/// One written file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the dataset folder.
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Array shape.
    pub shape: Vec<usize>,
    /// numpy dtype (`"float32"`, `"uint8"`, `"float64"`).
    pub dtype: String,
}

/// One sample in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleEntry {
    /// Sample index.
    pub index: usize,
    /// The image, `[y, x]` float32.
    pub image: FileEntry,
    /// Pixel size `[dy, dx]` in Å, when calibrated.
    pub sampling_a: Option<[f64; 2]>,
    /// Class names; `classes` index into them.
    pub class_names: Vec<String>,
    /// Column positions `[y, x]` in px.
    pub positions_px: Vec<[f64; 2]>,
    /// Column positions `[y, x]` in Å (px × pixel size, origin at pixel 0), when calibrated.
    pub positions_a: Option<Vec<[f64; 2]>>,
    /// Class per position.
    pub classes: Vec<u16>,
    /// Masks by name (`[y, x]` uint8).
    pub masks: BTreeMap<String, FileEntry>,
    /// Displacement field `[2, y, x]` float64 (`[dy, dx]` px), when tracked.
    pub displacement: Option<FileEntry>,
    /// The parameters drawn for this sample.
    pub metadata: BTreeMap<String, f64>,
}

/// `manifest.json` of a written dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// Version of stem-sim that wrote it.
    pub stem_sim_version: String,
    /// The recipe (regenerates everything).
    pub recipe: Recipe,
    /// The undistorted reference (series), if any.
    pub reference: Option<SampleEntry>,
    /// The samples in order.
    pub samples: Vec<SampleEntry>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn entry(dir: &Path, name: String, shape: Vec<usize>, dtype: &str) -> Result<FileEntry> {
    Ok(FileEntry {
        sha256: sha256_file(&dir.join(&name))?,
        path: name,
        shape,
        dtype: dtype.into(),
    })
}

/// Writes one sample's files under `stem` (e.g. `sample_000003`) and returns its entry.
fn write_sample(dir: &Path, stem: &str, index: usize, s: &Sample) -> Result<SampleEntry> {
    let image_name = format!("{stem}.npy");
    write_npy(dir.join(&image_name), s.image.data())?;
    let image = entry(dir, image_name, s.image.shape().to_vec(), "float32")?;
    let mut masks = BTreeMap::new();
    for m in &s.labels.masks {
        let name = format!("{stem}_mask_{}.npy", m.name);
        write_npy(dir.join(&name), &m.data)?;
        let (ny, nx) = m.data.dim();
        masks.insert(m.name.clone(), entry(dir, name, vec![ny, nx], "uint8")?);
    }
    let displacement = match &s.labels.displacement {
        Some(d) => {
            let name = format!("{stem}_displacement.npy");
            let both: Array3<f64> = stack(Axis(0), &[d.dy_px.view(), d.dx_px.view()])
                .map_err(|e| Error::invalid("displacement", e.to_string()))?;
            write_npy(dir.join(&name), &both)?;
            Some(entry(dir, name, both.shape().to_vec(), "float64")?)
        }
        None => None,
    };
    let sampling_a = s.sampling_a();
    Ok(SampleEntry {
        index,
        image,
        sampling_a,
        class_names: s.labels.class_names.clone(),
        positions_px: s.labels.positions_px.clone(),
        positions_a: sampling_a.map(|a| {
            s.labels
                .positions_px
                .iter()
                .map(|p| [p[0] * a[0], p[1] * a[1]])
                .collect()
        }),
        classes: s.labels.classes.clone(),
        masks,
        displacement,
        metadata: s.metadata.clone(),
    })
}

pub(crate) fn write(data: &Dataset, dir: &Path, progress: &dyn Progress) -> Result<Manifest> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let run = || -> Result<Manifest> {
        progress.start("samples", data.len() as u64);
        let reference = match data.reference_here()? {
            Some(r) => Some(write_sample(dir, "reference", 0, &r)?),
            None => None,
        };
        let mut samples = Vec::with_capacity(data.len());
        for i in 0..data.len() {
            stem_core::progress::check_cancel(progress)?;
            let s = data.sample_here(i)?;
            samples.push(write_sample(dir, &format!("sample_{i:06}"), i, &s)?);
            progress.advance(1);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            stem_sim_version: env!("CARGO_PKG_VERSION").into(),
            recipe: data.recipe().clone(),
            reference,
            samples,
        };
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        std::fs::write(&path, text).map_err(io_err(&path))?;
        Ok(manifest)
    };
    data.parallelism().install(run).map_err(Error::from)?
}
