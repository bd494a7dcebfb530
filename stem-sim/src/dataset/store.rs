//! Writing a dataset: NPY files and a JSON manifest with labels and SHA-256 digests.

use super::{Dataset, Recipe};
use crate::degrade::{Payload, Sample};
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
    /// The stack payload (`pacbed`): `[plane, y, x]` float32, absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackEntry>,
    /// The cube payload (`cube_4d`): `[scan_y, scan_x, k_y, k_x]` float32 as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cube: Option<CubeEntry>,
}

/// A written stack payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackEntry {
    /// The `[plane, y, x]` float32 file.
    pub file: FileEntry,
    /// Name (with unit) of the plane coordinate, e.g. `"thickness_nm"`.
    pub axis: String,
    /// Coordinate of each plane.
    pub values: Vec<f64>,
}

/// A written cube payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CubeEntry {
    /// The data as recorded (float32).
    pub file: FileEntry,
    /// The noise-free cube (float32), when known.
    pub clean: Option<FileEntry>,
    /// Axes (name, size, scale, offset, units), navigation first.
    pub axes: Vec<stem_core::Axis>,
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
    let (mut stack, mut cube) = (None, None);
    match &s.payload {
        Payload::Image => {}
        Payload::Stack { data, axis, values } => {
            let name = format!("{stem}_stack.npy");
            write_npy(dir.join(&name), data)?;
            stack = Some(StackEntry {
                file: entry(dir, name, data.shape().to_vec(), "float32")?,
                axis: axis.clone(),
                values: values.clone(),
            });
        }
        Payload::Cube { data, clean } => {
            let name = format!("{stem}_cube.npy");
            write_npy(dir.join(&name), data.data())?;
            let file = entry(dir, name, data.data().shape().to_vec(), "float32")?;
            let clean = match clean {
                Some(c) => {
                    let name = format!("{stem}_cube_clean.npy");
                    write_npy(dir.join(&name), c.data())?;
                    Some(entry(dir, name, c.data().shape().to_vec(), "float32")?)
                }
                None => None,
            };
            cube = Some(CubeEntry {
                file,
                clean,
                axes: data.axes().to_vec(),
            });
        }
    }
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
        stack,
        cube,
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
            let s = data.sample_cancellable(i, progress)?;
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
