//! Zarr v3 arrays: a chunked container for large results, written frame chunk by frame chunk
//! from any [`FrameSource`] (the whole array is never held in memory) and read back lazily by
//! [`open`](super::open).
//!
//! Layout written (Zarr v3 specification, `zarr_format = 3`): a directory holding `zarr.json`
//! and one file per chunk under `c/` (default chunk key encoding, `/` separator), data type
//! `float32`, codec `bytes` (little endian, uncompressed), fill value 0. The array shape is the
//! source's navigation shape followed by its signal shape (`[scan_y, scan_x, k_y, k_x]` for
//! 4D-STEM); a chunk holds [`ZarrWriteConfig::frames_per_chunk`] consecutive frames along the
//! last navigation axis and the whole signal (`[1, …, 1, c, k_y, k_x]`), so each chunk is one
//! contiguous run of frames. Calibrated axes and the number of navigation axes are stored in
//! the attributes (`attributes.stem.axes`, `attributes.stem.nav_dims`) and the axis names in
//! `dimension_names`.
//!
//! The reader accepts any regular chunk grid of an uncompressed (`bytes` codec only) numeric
//! Zarr v3 array, either endianness; other codecs give [`Error::Unsupported`]. Missing chunk
//! files read as the fill value, as the specification says.
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! use stem_core::frame_source::InMemorySource;
//! use stem_core::io::zarr::{ZarrWriteConfig, write_zarr};
//! use stem_core::{Hypercube, NoProgress};
//!
//! // A 4D-STEM cube [scan_y, scan_x, k_y, k_x] = [3, 4, 5, 6] holding its flat index.
//! let data = ArrayD::from_shape_fn(IxDyn(&[3, 4, 5, 6]), |ix| {
//!     (((ix[0] * 4 + ix[1]) * 5 + ix[2]) * 6 + ix[3]) as f32
//! });
//! let cube = Hypercube::new(data, 2)?;
//! let dir = std::env::temp_dir().join(format!("stem_zarr_doc_{}.zarr", std::process::id()));
//! let config = ZarrWriteConfig { frames_per_chunk: 3, ..ZarrWriteConfig::default() };
//! let report = write_zarr(&InMemorySource::new(cube.view()), &dir, &config, &stem_core::NoProgress)?;
//! assert_eq!(report.chunks_written, 3 * 2); // 3 scan rows × ceil(4 / 3) chunks
//!
//! let back = stem_core::io::open(&dir)?;
//! assert_eq!(back.format, stem_core::io::Format::Zarr);
//! let signal = back.first()?;
//! assert!(signal.is_lazy());
//! assert_eq!(signal.to_hypercube()?.data(), cube.data());
//! std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), stem_core::Error>(())
//! ```

use super::dataset::{
    ChunkedSource, Components, Dataset, Format, Metadata, Signal, SignalData, TagValue,
};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, FrameSource, check_read};
use crate::progress::{Progress, check_cancel};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How [`write_zarr`] lays out the array.
#[derive(Clone, Debug, PartialEq)]
pub struct ZarrWriteConfig {
    /// Frames per chunk along the last navigation axis (≥ 1; clamped to that axis' length).
    /// Default 64: 64 frames of 256 × 256 f32 are 16 MiB.
    pub frames_per_chunk: usize,
    /// Replace an existing `zarr.json` in the target directory (default `false`: an existing
    /// array is an error).
    pub overwrite: bool,
}

impl Default for ZarrWriteConfig {
    fn default() -> Self {
        ZarrWriteConfig {
            frames_per_chunk: 64,
            overwrite: false,
        }
    }
}

impl ZarrWriteConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `frames_per_chunk` is 0.
    pub fn validate(&self) -> Result<()> {
        if self.frames_per_chunk == 0 {
            return Err(Error::invalid(
                "frames_per_chunk",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

/// What [`write_zarr`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ZarrWriteReport {
    /// Array shape (navigation then signal axes).
    pub shape: Vec<usize>,
    /// Chunk shape.
    pub chunk_shape: Vec<usize>,
    /// Number of chunk files written.
    pub chunks_written: usize,
    /// Bytes of chunk data written.
    pub bytes_written: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Writes every frame of `source` to a Zarr v3 array in directory `dir` (created if missing),
/// one chunk of [`frames_per_chunk`](ZarrWriteConfig::frames_per_chunk) frames at a time.
/// Memory: one chunk buffer. Axes are taken from [`FrameSource::axes`] when the source has
/// them, else uncalibrated. Progress: stage `"write zarr"`, one unit per frame; cancellation
/// is checked before each chunk (chunks already written stay on disk).
///
/// # Errors
/// * [`Error::InvalidParameter`] for a bad configuration or a source with an empty frame;
/// * [`Error::InvalidFile`] if `dir` already holds a `zarr.json` and `overwrite` is false;
/// * [`Error::Io`] on write failures, [`Error::Cancelled`], or the source's read errors.
pub fn write_zarr(
    source: &(impl FrameSource + ?Sized),
    dir: impl AsRef<Path>,
    config: &ZarrWriteConfig,
    progress: &dyn Progress,
) -> Result<ZarrWriteReport> {
    config.validate()?;
    let dir = dir.as_ref();
    let nav = source.nav_shape().to_vec();
    let sig = source.sig_shape().to_vec();
    let frame_len = crate::frame_source::nonzero_frame_len(source)?;
    if source.n_frames() == 0 {
        return Err(Error::invalid(
            "source",
            format!("no frames to write (navigation shape {nav:?})"),
        ));
    }
    let meta_path = dir.join("zarr.json");
    if meta_path.exists() && !config.overwrite {
        return Err(Error::invalid_file(
            &meta_path,
            "a Zarr array already exists here (set overwrite to replace it)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;

    let mut shape = nav.clone();
    shape.extend(&sig);
    let last = nav.last().copied().unwrap_or(1);
    let c = config.frames_per_chunk.min(last).max(1);
    let mut chunk_shape = vec![1usize; nav.len()];
    if let Some(l) = chunk_shape.last_mut() {
        *l = c;
    }
    chunk_shape.extend(&sig);

    let axes: Vec<Axis> = match source.axes() {
        Some(a) if a.len() == shape.len() => a.to_vec(),
        _ => shape
            .iter()
            .enumerate()
            .map(|(i, &n)| Axis::pixels(format!("axis{i}"), n))
            .collect(),
    };
    let meta = serde_json::json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": axes.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        "attributes": {"stem": {
            "nav_dims": nav.len(),
            "axes": axes.iter().map(|a| serde_json::json!({
                "name": a.name, "size": a.size, "scale": a.scale,
                "offset": a.offset, "units": a.units,
            })).collect::<Vec<_>>(),
        }},
    });
    let text = serde_json::to_string_pretty(&meta)
        .map_err(|e| Error::invalid("metadata", e.to_string()))?;

    let n_frames = source.n_frames();
    progress.start("write zarr", n_frames as u64);
    let rows = n_frames / last.max(1);
    let per_row = last.div_ceil(c);
    let mut buf = vec![0.0f32; c * frame_len];
    let mut bytes = Vec::with_capacity(c * frame_len * 4);
    let mut report = ZarrWriteReport {
        shape: shape.clone(),
        chunk_shape: chunk_shape.clone(),
        chunks_written: 0,
        bytes_written: 0,
    };
    for row in 0..rows.max(1) {
        // Navigation index of the row (all nav axes but the last).
        let mut prefix = vec![0usize; nav.len().saturating_sub(1)];
        let mut r = row;
        for k in (0..prefix.len()).rev() {
            prefix[k] = r % nav[k];
            r /= nav[k];
        }
        for j in 0..per_row {
            check_cancel(progress)?;
            let first = j * c;
            let count = c.min(last - first);
            let start = row * last + first;
            let filled = count * frame_len;
            source.read_frames(start, &mut buf[..filled])?;
            // Edge chunks are stored full size; the part past the array is fill (0).
            buf[filled..].fill(0.0);
            bytes.clear();
            for v in &buf {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            // Chunk key `c/<row index...>/<j>/0/.../0` (signal axes are one chunk each).
            let mut file = dir.join("c");
            for p in &prefix {
                file.push(p.to_string());
            }
            if !nav.is_empty() {
                file.push(j.to_string());
            }
            for _ in &sig {
                file.push("0");
            }
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            std::fs::write(&file, &bytes).map_err(io_err(&file))?;
            report.chunks_written += 1;
            report.bytes_written += bytes.len() as u64;
            progress.advance(count as u64);
        }
    }
    // Metadata last: a crashed write leaves no array that claims to be complete.
    std::fs::write(&meta_path, text).map_err(io_err(&meta_path))?;
    Ok(report)
}

/// The directory of the Zarr array at `path` (the directory itself or its `zarr.json`), if
/// there is one.
pub(crate) fn array_dir(path: &Path) -> Option<PathBuf> {
    if path.is_dir() && path.join("zarr.json").is_file() {
        Some(path.to_path_buf())
    } else if path.file_name().is_some_and(|n| n == "zarr.json") && path.is_file() {
        Some(path.parent().unwrap_or(Path::new(".")).to_path_buf())
    } else {
        None
    }
}

/// Largest `zarr.json` read, in bytes.
const MAX_META_BYTES: u64 = 16 << 20;

/// Opens the Zarr v3 array in `dir` as a lazily read [`Dataset`].
pub(crate) fn read(dir: &Path) -> Result<Dataset> {
    let meta_path = dir.join("zarr.json");
    let len = std::fs::metadata(&meta_path)
        .map_err(io_err(&meta_path))?
        .len();
    if len > MAX_META_BYTES {
        return Err(Error::invalid_file(
            &meta_path,
            format!("zarr.json of {len} bytes is implausibly large"),
        ));
    }
    let text = std::fs::read(&meta_path).map_err(io_err(&meta_path))?;
    parse(&text, dir, &meta_path)
}

fn parse(text: &[u8], dir: &Path, meta_path: &Path) -> Result<Dataset> {
    let bad = |r: String| Error::invalid_file(meta_path, r);
    let meta: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("zarr.json is not JSON: {e}")))?;
    if meta.get("zarr_format").and_then(|v| v.as_u64()) != Some(3) {
        return Err(Error::Unsupported {
            what: "Zarr arrays other than version 3".into(),
        });
    }
    if meta.get("node_type").and_then(|v| v.as_str()) != Some("array") {
        return Err(Error::Unsupported {
            what: "Zarr groups (open the array directory)".into(),
        });
    }
    let dims = |key: &serde_json::Value| -> Option<Vec<usize>> {
        key.as_array()?
            .iter()
            .map(|v| v.as_u64().and_then(|u| usize::try_from(u).ok()))
            .collect()
    };
    let shape = meta
        .get("shape")
        .and_then(dims)
        .ok_or_else(|| bad("no integer shape".into()))?;
    let grid = meta.get("chunk_grid");
    if grid.and_then(|g| g.get("name")).and_then(|v| v.as_str()) != Some("regular") {
        return Err(Error::Unsupported {
            what: "Zarr chunk grids other than regular".into(),
        });
    }
    let chunk_shape = grid
        .and_then(|g| g.pointer("/configuration/chunk_shape"))
        .and_then(dims)
        .ok_or_else(|| bad("no integer chunk_shape".into()))?;
    if chunk_shape.len() != shape.len() || chunk_shape.contains(&0) {
        return Err(bad(format!(
            "chunk shape {chunk_shape:?} does not fit shape {shape:?}"
        )));
    }
    let dtype = match meta.get("data_type").and_then(|v| v.as_str()) {
        Some("float32") => DType::F32,
        Some("float64") => DType::F64,
        Some("uint8") => DType::U8,
        Some("uint16") => DType::U16,
        Some("uint32") => DType::U32,
        Some("uint64") => DType::U64,
        Some("int8") => DType::I8,
        Some("int16") => DType::I16,
        Some("int32") => DType::I32,
        Some("int64") => DType::I64,
        other => {
            return Err(Error::Unsupported {
                what: format!("Zarr data type {other:?}"),
            });
        }
    };
    let codecs = meta
        .get("codecs")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no codecs".into()))?;
    let big_endian = match codecs.as_slice() {
        [c] if c.get("name").and_then(|v| v.as_str()) == Some("bytes") => {
            c.pointer("/configuration/endian").and_then(|v| v.as_str()) == Some("big")
        }
        _ => {
            return Err(Error::Unsupported {
                what: format!(
                    "Zarr codecs {:?} (only the uncompressed `bytes` codec is read)",
                    codecs
                        .iter()
                        .filter_map(|c| c.get("name").and_then(|v| v.as_str()))
                        .collect::<Vec<_>>()
                ),
            });
        }
    };
    let separator = match meta
        .pointer("/chunk_key_encoding/name")
        .and_then(|v| v.as_str())
    {
        Some("default") | None => meta
            .pointer("/chunk_key_encoding/configuration/separator")
            .and_then(|v| v.as_str())
            .unwrap_or("/")
            .to_string(),
        Some(other) => {
            return Err(Error::Unsupported {
                what: format!("Zarr chunk key encoding {other:?}"),
            });
        }
    };
    if separator != "/" && separator != "." {
        return Err(bad(format!("chunk key separator {separator:?}")));
    }
    let fill = meta
        .get("fill_value")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0) as f32;
    let chunk_elems = chunk_shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&n| n.saturating_mul(dtype.size_bytes()) <= 1 << 32)
        .ok_or_else(|| bad(format!("chunk shape {chunk_shape:?} is too large")))?;
    if shape.is_empty()
        || shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .is_none()
    {
        return Err(bad(format!("shape {shape:?} is empty or overflows")));
    }
    if shape.contains(&0) {
        return Err(bad(format!("shape {shape:?} has an empty axis")));
    }

    // Calibration written by `write_zarr` (or by anyone using the same attributes).
    let stem = meta.pointer("/attributes/stem");
    let names: Vec<String> = meta
        .get("dimension_names")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut axes: Vec<Axis> = shape
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let name = names
                .get(i)
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("axis{i}"));
            Axis::pixels(name, n)
        })
        .collect();
    if let Some(list) = stem.and_then(|s| s.get("axes")).and_then(|v| v.as_array())
        && list.len() == axes.len()
    {
        for (a, v) in axes.iter_mut().zip(list) {
            if let Some(n) = v.get("name").and_then(|x| x.as_str()) {
                a.name = n.to_string();
            }
            a.scale =
                super::common::sane_scale(v.get("scale").and_then(|x| x.as_f64()).unwrap_or(1.0));
            a.offset =
                super::common::sane_offset(v.get("offset").and_then(|x| x.as_f64()).unwrap_or(0.0));
            if let Some(u) = v.get("units").and_then(|x| x.as_str()) {
                a.units = u.to_string();
            }
        }
    }
    let default_nav = shape.len().saturating_sub(2);
    let nav_dims = stem
        .and_then(|s| s.get("nav_dims"))
        .and_then(|v| v.as_u64())
        .map_or(default_nav, |n| (n as usize).min(shape.len()));
    let title = super::common::file_title(dir);
    let source = ZarrSource {
        dir: dir.to_path_buf(),
        nav_shape: shape[..nav_dims].to_vec(),
        sig_shape: shape[nav_dims..].to_vec(),
        shape: shape.clone(),
        chunk_shape,
        chunk_elems,
        dtype,
        big_endian,
        fill,
        separator,
        axes: axes.clone(),
        cache: Mutex::new(None),
    };
    let mut budget = 20_000usize;
    let tags = json_tags(&meta, &mut budget);
    let signal = Signal {
        title: title.clone(),
        axes,
        nav_dims,
        original_dtype: dtype,
        data: SignalData::Chunked(ChunkedSource::new(Box::new(source))),
        components: Components::Scalar,
        metadata: Metadata {
            title: Some(title),
            ..Metadata::default()
        },
        tags: tags.clone(),
    };
    Ok(Dataset {
        format: Format::Zarr,
        signals: vec![signal],
        tags,
    })
}

fn json_tags(v: &serde_json::Value, budget: &mut usize) -> TagValue {
    *budget = budget.saturating_sub(1);
    match v {
        serde_json::Value::Null => TagValue::Text(String::new()),
        serde_json::Value::Bool(b) => TagValue::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(TagValue::Int)
            .unwrap_or_else(|| TagValue::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => TagValue::Text(s.clone()),
        serde_json::Value::Array(a) => {
            let mut g = TagValue::group();
            for x in a.iter().take(*budget) {
                let t = json_tags(x, budget);
                g.push("", t);
            }
            g
        }
        serde_json::Value::Object(o) => {
            let mut g = TagValue::group();
            for (k, x) in o.iter().take(*budget) {
                let t = json_tags(x, budget);
                g.push(k.clone(), t);
            }
            g
        }
    }
}

/// A decoded chunk: its grid index and values.
type CachedChunk = (Vec<usize>, std::sync::Arc<Vec<f32>>);

/// A Zarr v3 array read frame by frame from its chunk files (the last chunk read is cached).
struct ZarrSource {
    dir: PathBuf,
    nav_shape: Vec<usize>,
    sig_shape: Vec<usize>,
    shape: Vec<usize>,
    chunk_shape: Vec<usize>,
    chunk_elems: usize,
    dtype: DType,
    big_endian: bool,
    fill: f32,
    separator: String,
    axes: Vec<Axis>,
    /// The last chunk decoded: its grid index and values.
    cache: Mutex<Option<CachedChunk>>,
}

impl ZarrSource {
    fn chunk_path(&self, idx: &[usize]) -> PathBuf {
        let key: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
        if self.separator == "/" {
            let mut p = self.dir.join("c");
            for k in key {
                p.push(k);
            }
            p
        } else {
            self.dir.join(format!("c.{}", key.join(".")))
        }
    }

    /// The decoded values of chunk `idx` (fill value when the file is missing).
    fn chunk(&self, idx: &[usize]) -> Result<std::sync::Arc<Vec<f32>>> {
        if let Ok(guard) = self.cache.lock()
            && let Some((k, v)) = guard.as_ref()
            && k == idx
        {
            return Ok(v.clone());
        }
        let path = self.chunk_path(idx);
        let values = match std::fs::read(&path) {
            Ok(bytes) => {
                let want = self.chunk_elems * self.dtype.size_bytes();
                if bytes.len() != want {
                    return Err(Error::invalid_file(
                        &path,
                        format!("chunk holds {} bytes, expected {want}", bytes.len()),
                    ));
                }
                let mut out = vec![0.0f32; self.chunk_elems];
                let e = if self.big_endian {
                    crate::frame_source::Endianness::Big
                } else {
                    crate::frame_source::Endianness::Little
                };
                super::common::decode_f32(self.dtype, e, &bytes, &mut out);
                out
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                vec![self.fill; self.chunk_elems]
            }
            Err(err) => return Err(Error::io(&path, err)),
        };
        let values = std::sync::Arc::new(values);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((idx.to_vec(), values.clone()));
        }
        Ok(values)
    }

    /// Copies frame `frame` (flat navigation index) into `out`.
    fn read_frame(&self, frame: usize, out: &mut [f32]) -> Result<()> {
        let nd = self.shape.len();
        let nav_dims = self.nav_shape.len();
        let mut pos = vec![0usize; nd];
        let mut r = frame;
        for k in (0..nav_dims).rev() {
            pos[k] = r % self.nav_shape[k];
            r /= self.nav_shape[k];
        }
        // Walk the signal positions row by row (runs along the last axis), chunk by chunk.
        let sig = &self.sig_shape;
        let last_len = sig.last().copied().unwrap_or(1);
        let rows = out.len() / last_len.max(1);
        let mut cidx = vec![0usize; nd];
        let mut within = vec![0usize; nd];
        for row in 0..rows {
            let mut rr = row;
            for k in (nav_dims..nd.saturating_sub(1)).rev() {
                pos[k] = rr % self.shape[k];
                rr /= self.shape[k];
            }
            let mut x = 0usize;
            while x < last_len {
                if nd > nav_dims {
                    pos[nd - 1] = x;
                }
                for k in 0..nd {
                    cidx[k] = pos[k] / self.chunk_shape[k];
                    within[k] = pos[k] % self.chunk_shape[k];
                }
                let chunk = self.chunk(&cidx)?;
                let off = self
                    .chunk_shape
                    .iter()
                    .zip(&within)
                    .fold(0usize, |o, (&c, &w)| o * c + w);
                let run = if nd > nav_dims {
                    (self.chunk_shape[nd - 1] - within[nd - 1]).min(last_len - x)
                } else {
                    1
                };
                let dst = row * last_len + x;
                out[dst..dst + run].copy_from_slice(&chunk[off..off + run]);
                x += run;
            }
        }
        Ok(())
    }
}

impl FrameSource for ZarrSource {
    fn nav_shape(&self) -> &[usize] {
        &self.nav_shape
    }

    fn sig_shape(&self) -> &[usize] {
        &self.sig_shape
    }

    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let count = check_read(self, start, out.len())?;
        let frame_len = out.len() / count;
        for (k, f) in out.chunks_exact_mut(frame_len).enumerate() {
            self.read_frame(start + k, f)?;
        }
        Ok(())
    }

    fn axes(&self) -> Option<&[Axis]> {
        Some(&self.axes)
    }
}

#[cfg(test)]
mod tests;
