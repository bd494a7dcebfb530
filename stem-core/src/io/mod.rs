//! File input and output: microscope formats read into calibrated [`Dataset`]s, NumPy `.npy`
//! arrays, PNG export and calibrated TIFF output.
//!
//! * [`open`] / [`open_with`]: detect the format from the magic bytes (and the extension where
//!   a format has no magic) and read every data set of the file as a [`Signal`] with
//!   calibrated axes, a [`SignalKind`](crate::hypercube::SignalKind), normalised
//!   [`Metadata`] and the original tag tree ([`TagValue`]). Formats: Gatan DM3 / DM4, MRC2014
//!   (with extended headers), TIFF (ImageJ calibration), NPY, Quantum Detectors Merlin MIB
//!   (with or without `.hdr`), FEI TIA `.ser` (+ `.emi`), EMD (Velox and Berkeley) and other
//!   HDF5 files ([`emd`]), Zarr v3 arrays (a directory; [`zarr`]). See [`Format`].
//! * Large raw blocks (MIB frames, NPY, MRC, uncompressed DM data in array order) are
//!   memory-mapped and read lazily through [`FrameSource`](crate::frame_source::FrameSource)
//!   ([`SignalData::Lazy`]) once they reach [`OpenOptions::lazy_threshold_bytes`]; large HDF5
//!   data sets are read frame by frame through hyperslabs ([`SignalData::Chunked`]).
//! * [`read_bytes`] parses a file already in memory (always loads; used by the fuzz targets).
//! * [`zarr::write_zarr`]: a chunked Zarr v3 array written frame chunk by frame chunk from any
//!   [`FrameSource`](crate::frame_source::FrameSource), for results too large for memory.
//! * [`npy`]: read / write `.npy` arrays; [`png`]: 8-bit PNG export; [`tiff`]: calibrated
//!   TIFF writer (ImageJ convention).
//!
//! Pixels are delivered as `f32` (what every algorithm of the workspace consumes); the stored
//! element type is kept in [`Signal::original_dtype`]. Integer data up to 2^24 (all detector
//! counts in practice) convert exactly. Complex (DM) and colour (DM, TIFF RGB) pixels get a
//! trailing component axis, `[..., 2]` (real, imaginary) or `[..., 3]` (R, G, B), flagged by
//! [`Signal::components`] ([`Components`]); palette TIFF images are their colour indices with
//! the colour map in the tags ([`tiff::palette_to_rgb`] applies it).
//!
//! Hostile input: every parser reads through a bounds-checked cursor, checks counts and sizes
//! against the bytes the file holds before allocating, and bounds tag-tree recursion; bad files
//! give [`Error::InvalidFile`] or [`Error::Unsupported`], never a panic.
//!
//! Write an array to a temporary file and read it back:
//!
//! ```
//! use ndarray::{Array3, ArrayD};
//! use stem_core::io::npy::{read_npy, read_npy_f32, write_npy, NpyArray};
//!
//! let path = std::env::temp_dir().join(format!("stem_io_doc_{}.npy", std::process::id()));
//! // An image series [frame, y, x].
//! let series = Array3::from_shape_fn((2, 3, 4), |(f, y, x)| (f * 100 + y * 10 + x) as f64);
//! write_npy(&path, &series)?;
//!
//! let back = read_npy(&path)?;
//! assert_eq!(back.dtype(), "float64");
//! assert_eq!(back.shape(), &[2, 3, 4]);
//! let NpyArray::F64(exact) = back else { unreachable!() };
//! assert_eq!(exact, series.into_dyn());
//!
//! let as_f32: ArrayD<f32> = read_npy_f32(&path)?;
//! assert_eq!(as_f32[[1, 2, 3]], 123.0);
//!
//! // The same file through the generic entry point: a 3-D array is an image series.
//! let ds = stem_core::io::open(&path)?;
//! assert_eq!(ds.format, stem_core::io::Format::Npy);
//! let signal = ds.first()?;
//! assert_eq!(signal.shape(), vec![2, 3, 4]);
//! assert_eq!(signal.kind(), stem_core::hypercube::SignalKind::ImageSeries);
//! std::fs::remove_file(&path).ok();
//! # Ok::<(), stem_core::Error>(())
//! ```
//!
//! [`Error::InvalidFile`]: crate::Error::InvalidFile
//! [`Error::Unsupported`]: crate::Error::Unsupported

mod common;
mod dataset;
pub mod dm;
pub mod emd;
pub mod mib;
pub mod mrc;
pub mod npy;
pub mod png;
pub mod ser;
pub mod tiff;
pub mod zarr;

pub use common::OpenOptions;
pub use dataset::{
    ChunkedSource, Components, Dataset, Format, MAX_INLINE_ARRAY, Metadata, Signal, SignalData,
    TagValue,
};

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// Detects the format of a file from its first bytes and, where a format has no magic
/// number, its extension. `None` when unknown.
pub fn detect(head: &[u8], path: &Path) -> Option<Format> {
    if let Some(f) = dm::sniff(head) {
        return Some(f);
    }
    if head.starts_with(b"\x93NUMPY") {
        return Some(Format::Npy);
    }
    if mib::sniff(head) {
        return Some(Format::Mib);
    }
    if ser::sniff(head) {
        return Some(Format::Ser);
    }
    if tiff::sniff(head) {
        return Some(Format::Tiff);
    }
    if mrc::sniff(head) {
        return Some(Format::Mrc);
    }
    let ext_is = |e: &str| {
        path.extension()
            .is_some_and(|x| x.to_string_lossy().eq_ignore_ascii_case(e))
    };
    if emd::sniff(head) {
        return Some(if ext_is("emd") {
            Format::Emd
        } else {
            Format::Hdf5
        });
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "dm3" => Some(Format::Dm3),
        "dm4" => Some(Format::Dm4),
        "npy" => Some(Format::Npy),
        "mrc" | "mrcs" | "map" | "st" | "rec" | "ali" => Some(Format::Mrc),
        "mib" => Some(Format::Mib),
        "tif" | "tiff" => Some(Format::Tiff),
        "ser" => Some(Format::Ser),
        "emd" => Some(Format::Emd),
        "h5" | "hdf5" | "hspy" => Some(Format::Hdf5),
        _ => None,
    }
}

/// Opens a file with the default [`OpenOptions`]. See [`open_with`].
///
/// # Errors
/// As [`open_with`].
pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
    open_with(path, &OpenOptions::default())
}

/// Opens a file, detects its format and reads every data set in it.
///
/// The file is memory-mapped for parsing; blocks at least
/// [`OpenOptions::lazy_threshold_bytes`] long that are stored in array order stay mapped
/// ([`SignalData::Lazy`]), everything else is decoded to `f32`.
///
/// **Memory-mapping caveat:** the file must not be truncated by another process while it is
/// open (see [`RawFileSource`](crate::frame_source::RawFileSource)).
///
/// # Errors
/// * [`Error::Io`] if the file cannot be opened or mapped;
/// * [`Error::Unsupported`] for an unknown format or an unsupported variant (DM packed
///   complex, TIFF CMYK / RGBA, MIB raw mode, ...);
/// * [`Error::InvalidFile`] for a truncated or corrupted file.
pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Dataset> {
    let path = path.as_ref();
    if let Some(dir) = zarr::array_dir(path) {
        return zarr::read(&dir);
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::invalid_file(path, "empty file"));
    }
    // SAFETY: read-only mapping; soundness relies on no other process truncating or writing
    // the file while it is mapped, the documented contract of this function.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let format = detect(&map, path).ok_or_else(|| Error::Unsupported {
        what: format!("file format of {}", path.display()),
    })?;
    match format {
        Format::Mib => {
            let hdr = std::fs::read(path.with_extension("hdr"))
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            mib::read(&map, Some(path), hdr.as_deref(), options, path)
        }
        Format::Ser => {
            let emi = emi_path(path).and_then(|p| std::fs::read(p).ok());
            ser::read(&map, emi.as_deref(), &common::file_title(path), path)
        }
        _ => read_format(&map, format, Some(path), options, path),
    }
}

/// Parses a file already held in memory as `format`; all pixels are loaded. For MIB the
/// navigation shape is the frame count (no `.hdr` is looked for); TIA `.ser` gets no `.emi`
/// metadata.
///
/// # Errors
/// As [`open_with`].
pub fn read_bytes(bytes: &[u8], format: Format) -> Result<Dataset> {
    read_format(
        bytes,
        format,
        None,
        &OpenOptions {
            lazy_threshold_bytes: u64::MAX,
        },
        Path::new(""),
    )
}

/// The `.emi` file of a TIA `.ser` file: `name_1.ser` → `name.emi`.
fn emi_path(ser: &Path) -> Option<std::path::PathBuf> {
    let stem = ser.file_stem()?.to_string_lossy().into_owned();
    let base = stem.rsplit_once('_').map_or(stem.as_str(), |(b, _)| b);
    let p = ser.with_file_name(format!("{base}.emi"));
    p.exists().then_some(p)
}

#[cfg(test)]
mod formats_tests;

fn read_format(
    bytes: &[u8],
    format: Format,
    path: Option<&Path>,
    options: &OpenOptions,
    err_path: &Path,
) -> Result<Dataset> {
    match format {
        Format::Dm3 | Format::Dm4 => dm::read(bytes, path, options, err_path),
        Format::Npy => {
            let block = npy::raw_block(bytes, err_path)?;
            let tags = block.tags.clone();
            let signal = block.into_signal(bytes, path, options, err_path)?;
            Ok(Dataset {
                format,
                signals: vec![signal],
                tags,
            })
        }
        Format::Tiff => tiff::read(bytes, err_path),
        Format::Mrc => mrc::read(bytes, path, options, err_path),
        Format::Mib => mib::read(bytes, path, None, options, err_path),
        Format::Ser => ser::read(bytes, None, "", err_path),
        Format::Emd | Format::Hdf5 => emd::read(bytes, path, options, err_path),
        Format::Zarr => Err(Error::Unsupported {
            what: "Zarr arrays from bytes (open the array directory)".into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported {
            what: format!("reading {} files", other.name()),
        }),
    }
}
