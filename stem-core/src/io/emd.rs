//! HDF5 files: Thermo Fisher Velox EMD, Berkeley EMD (v0.2, incl. Prismatic output), HyperSpy
//! `.hspy` and generic HDF5 arrays, read with the pure-Rust [`hdf5_reader`] crate (no C
//! library).
//!
//! * **Velox** (`/Version` says `"format": "Velox"`): every `Data/Image/<uuid>/Data` (stored
//!   `[y, x, frame]`) becomes an image (one frame) or an image series `[frame, y, x]`; every
//!   `Data/Spectrum/<uuid>/Data` (stored `[channel, spectrum]`) a spectrum (series). Each data
//!   set has a `Metadata` byte array per frame holding a JSON document: pixel size and offset
//!   (`BinaryResult/PixelSize`, `Offset`, `PixelUnitX`: metres become nm), beam energy
//!   (`Optics/AccelerationVoltage`, V), convergence angle (`Optics/BeamConvergence`, rad),
//!   magnification (`CustomProperties/StemMagnification`, else `Optics/NominalMagnification`),
//!   camera length (`Optics/CameraLength`, m), dwell time (`Scan/DwellTime`, s), date
//!   (`Acquisition/AcquisitionStartDatetime/DateTime`, Unix seconds, given as ISO 8601 UTC),
//!   instrument; the spectrum energy axis from the detector's `Dispersion` and `OffsetEnergy`
//!   (eV → keV). The whole JSON document is the signal's tag tree. EDS *spectrum streams*
//!   (`Data/SpectrumStream`, event lists) become spectrum images `[y, x, energy]` (frames and
//!   detectors summed by default; see [`EdsStreamOptions`] and [`open_with_eds`] for the
//!   encoding and the options). Complex images (FFTs, DPC: HDF5 compound `{real, imag}` of
//!   floats) get a trailing component axis `[y, x, 2]` (real, imaginary) like complex DM data
//!   ([`Components::Complex`]; always loaded). The compressed `Data/SpectrumImage` copies of
//!   the streams are listed under `skipped` in the file's tag tree.
//! * **Berkeley EMD** (root attributes `version_major` / `version_minor`, or any group with the
//!   attribute `emd_group_type = 1`): every such group is one signal; its data set is `data`
//!   (or the first data set not named `dimN`) and `dim1`, `dim2`, ... hold the coordinates of
//!   array axes 0, 1, ... (`name` and `units` attributes; scale = `dim[1] - dim[0]`, offset =
//!   `dim[0]`). The last two axes are the signal (image) axes, or the last one when the group
//!   says `record_by = "spectrum"` or the data are 1-D.
//! * **HyperSpy** `.hspy` (`Experiments/<title>/data` with `axis-i` groups) and any other HDF5
//!   file: every numeric data set with at least two dimensions is a signal (last two axes =
//!   signal), calibrated from `axis-i` groups when present.
//!
//! The file's whole group / attribute hierarchy is the [`Dataset::tags`] tree (small JSON string
//! data sets parsed; large arrays as [`TagValue::Data`] with the object address).
//!
//! Large data sets (at least [`OpenOptions::lazy_threshold_bytes`]) stay in the file and are
//! read frame by frame through HDF5 hyperslab reads ([`SignalData::Chunked`]); chunked and
//! deflate-compressed layouts are decoded by the HDF5 crate.
//!
//! Hostile input: the HDF5 crate bounds its own reads; on top of that every decoded size is
//! bounded by 1032 × the file size (the largest deflate expansion) and a panic inside the crate
//! is caught and reported as [`Error::InvalidFile`].
//!
//! [`SignalData::Chunked`]: super::SignalData::Chunked

use super::common::{OpenOptions, file_title, sane_offset, sane_scale};
use super::dataset::{
    ChunkedSource, Components, Dataset, Format, MAX_INLINE_ARRAY, Metadata, Signal, SignalData,
    TagValue,
};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, FrameSource, check_read};
use crate::hypercube::Hypercube;
use hdf5_reader::group::Group;
use hdf5_reader::{Attribute, Datatype, Hdf5File, SliceInfo, SliceInfoElem};
use ndarray::{ArrayD, IxDyn};
use num_traits::AsPrimitive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The HDF5 format signature.
pub const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Largest ratio of decoded to stored bytes accepted (deflate's maximum expansion is 1032:1).
const MAX_EXPANSION: u64 = 1032;

/// Deepest group nesting walked.
const MAX_DEPTH: usize = 32;

/// Most tag nodes built from one file.
const MAX_TAG_NODES: usize = 20_000;

/// Whether `bytes` hold an HDF5 superblock signature at offset 0, 512, 1024, 2048, ...
/// (HDF5 allows a user block of a power of two ≥ 512 bytes before the superblock).
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    if bytes.starts_with(HDF5_MAGIC) {
        return true;
    }
    let mut off = 512usize;
    while off.saturating_add(8) <= bytes.len() {
        if bytes[off..].starts_with(HDF5_MAGIC) {
            return true;
        }
        off = match off.checked_mul(2) {
            Some(o) => o,
            None => break,
        };
    }
    false
}

/// Reads an HDF5 file held in `bytes` (the file at `path`, when given, is opened again by the
/// HDF5 crate for lazy reads).
pub(crate) fn read(
    bytes: &[u8],
    path: Option<&Path>,
    options: &OpenOptions,
    err_path: &Path,
) -> Result<Dataset> {
    read_with_eds(bytes, path, options, &EdsStreamOptions::default(), err_path)
}

/// [`read`] with EDS stream options.
fn read_with_eds(
    bytes: &[u8],
    path: Option<&Path>,
    options: &OpenOptions,
    eds: &EdsStreamOptions,
    err_path: &Path,
) -> Result<Dataset> {
    catch_unwind(AssertUnwindSafe(|| {
        read_inner(bytes, path, options, eds, err_path)
    }))
    .unwrap_or_else(|_| {
        Err(Error::invalid_file(
            err_path,
            "corrupted HDF5 file (the HDF5 decoder failed)",
        ))
    })
}

fn h5err(err_path: &Path, e: hdf5_reader::error::Error) -> Error {
    Error::invalid_file(err_path, format!("HDF5: {e}"))
}

/// Context shared by the readers of one file.
struct Ctx<'a> {
    err_path: &'a Path,
    /// Largest number of decoded bytes any read may produce.
    max_bytes: u64,
    lazy: bool,
    lazy_threshold: u64,
    /// How EDS spectrum streams are decoded.
    eds: EdsStreamOptions,
}

fn read_inner(
    bytes: &[u8],
    path: Option<&Path>,
    options: &OpenOptions,
    eds: &EdsStreamOptions,
    err_path: &Path,
) -> Result<Dataset> {
    if !sniff(bytes) {
        return Err(Error::invalid_file(
            err_path,
            "not an HDF5 file (no signature)",
        ));
    }
    let max_bytes = (bytes.len() as u64)
        .saturating_mul(MAX_EXPANSION)
        .max(1 << 20);
    let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let h5opts = hdf5_reader::OpenOptions::default()
        .with_max_read_bytes(cap)
        .with_max_chunk_bytes(cap.min(hdf5_reader::DEFAULT_MAX_CHUNK_BYTES))
        .with_max_object_header_bytes(
            bytes
                .len()
                .min(hdf5_reader::DEFAULT_MAX_OBJECT_HEADER_BYTES),
        );
    let file = match path {
        Some(p) => Hdf5File::open_with_options(p, h5opts),
        None => Hdf5File::from_bytes_with_options(bytes, h5opts),
    }
    .map_err(|e| h5err(err_path, e))?;
    let root = file.root_group().map_err(|e| h5err(err_path, e))?;
    let ctx = Ctx {
        err_path,
        max_bytes,
        lazy: path.is_some(),
        lazy_threshold: options.lazy_threshold_bytes,
        eds: eds.clone(),
    };
    let mut budget = MAX_TAG_NODES;
    let mut tags = group_tags(&root, 0, &mut budget);
    let mut skipped = TagValue::group();
    let (format, signals) = if is_velox(&root) {
        (Format::Emd, read_velox(&root, &ctx, &mut skipped)?)
    } else {
        let mut groups = Vec::new();
        collect_emd_groups(&root, String::new(), 0, &mut groups);
        if !groups.is_empty() || root.attribute("version_major").is_ok() {
            (
                Format::Emd,
                read_berkeley(&root, &groups, &ctx, &mut skipped)?,
            )
        } else {
            (Format::Hdf5, read_generic(&root, &ctx, &mut skipped)?)
        }
    };
    if !skipped.entries().is_empty() {
        tags.push("skipped", skipped.clone());
    }
    if signals.is_empty() {
        let why: Vec<String> = skipped
            .entries()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
            .collect();
        return Err(Error::Unsupported {
            what: format!(
                "HDF5 file {} holds no readable real-valued data set{}",
                err_path.display(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            ),
        });
    }
    Ok(Dataset {
        format,
        signals,
        tags,
    })
}

// ---------------------------------------------------------------------------------------------
// Element types and reads

/// The element type of a numeric HDF5 datatype.
fn dtype_of(dt: &Datatype) -> Option<DType> {
    Some(match dt {
        Datatype::FixedPoint { size, signed, .. } => match (size, signed) {
            (1, false) => DType::U8,
            (1, true) => DType::I8,
            (2, false) => DType::U16,
            (2, true) => DType::I16,
            (4, false) => DType::U32,
            (4, true) => DType::I32,
            (8, false) => DType::U64,
            (8, true) => DType::I64,
            _ => return None,
        },
        Datatype::FloatingPoint { size: 4, .. } => DType::F32,
        Datatype::FloatingPoint { size: 8, .. } => DType::F64,
        _ => return None,
    })
}

fn copy_as<T, U>(a: &ArrayD<T>, out: &mut [U]) -> bool
where
    T: AsPrimitive<U>,
    U: 'static + Copy,
{
    if a.len() != out.len() {
        return false;
    }
    for (o, v) in out.iter_mut().zip(a.iter()) {
        *o = v.as_();
    }
    true
}

/// Reads the whole data set (`sel = None`) or a hyperslab into `out` (logical row-major order
/// of the selection), converting to `U`. `false` when the selection size differs from `out`.
fn read_into<U>(
    ds: &hdf5_reader::Dataset,
    dtype: DType,
    sel: Option<&SliceInfo>,
    out: &mut [U],
) -> std::result::Result<bool, hdf5_reader::error::Error>
where
    U: 'static + Copy,
    u8: AsPrimitive<U>,
    i8: AsPrimitive<U>,
    u16: AsPrimitive<U>,
    i16: AsPrimitive<U>,
    u32: AsPrimitive<U>,
    i32: AsPrimitive<U>,
    u64: AsPrimitive<U>,
    i64: AsPrimitive<U>,
    f32: AsPrimitive<U>,
    f64: AsPrimitive<U>,
{
    macro_rules! go {
        ($t:ty) => {{
            let a: ArrayD<$t> = match sel {
                Some(s) => ds.read_slice(s)?,
                None => ds.read_array()?,
            };
            copy_as(&a, out)
        }};
    }
    Ok(match dtype {
        DType::U8 => go!(u8),
        DType::I8 => go!(i8),
        DType::U16 => go!(u16),
        DType::I16 => go!(i16),
        DType::U32 => go!(u32),
        DType::I32 => go!(i32),
        DType::U64 => go!(u64),
        DType::I64 => go!(i64),
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
    })
}

/// Shape of a data set as `usize`, or `None` when it does not fit.
fn shape_of(ds: &hdf5_reader::Dataset) -> Option<Vec<usize>> {
    ds.shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect()
}

fn product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

/// Reads a small numeric data set as `f64` (`None` if not numeric or larger than `max`).
fn small_numbers(ds: &hdf5_reader::Dataset, max: usize) -> Option<Vec<f64>> {
    let dtype = dtype_of(ds.dtype())?;
    let n = product(&shape_of(ds)?)?;
    if n > max {
        return None;
    }
    let mut out = vec![0.0f64; n];
    match read_into(ds, dtype, None, &mut out) {
        Ok(true) => Some(out),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes and the tag tree

fn attr_value(a: &Attribute) -> TagValue {
    if let Some(s) = &a.decoded_strings {
        return strings_tag(s.clone());
    }
    match &a.datatype {
        Datatype::String { .. } => match a.read_strings() {
            Ok(s) => strings_tag(s),
            Err(_) => TagValue::Text(String::new()),
        },
        Datatype::VarLen { .. } => match a.read_string() {
            Ok(s) => TagValue::Text(s),
            Err(_) => TagValue::Text(String::new()),
        },
        Datatype::Enum { .. } if a.shape.is_empty() => {
            // numpy booleans (h5py writes an enum over int8).
            a.raw_data
                .first()
                .map_or(TagValue::Text(String::new()), |&b| {
                    TagValue::Int(i64::from(b))
                })
        }
        dt => {
            let Some(dtype) = dtype_of(dt) else {
                return TagValue::Text(format!("<{} attribute>", type_name(dt)));
            };
            let n = a.shape.iter().try_fold(1u64, |x, &y| x.checked_mul(y));
            match n {
                Some(n) if n as usize <= MAX_INLINE_ARRAY => {}
                _ => {
                    return TagValue::Data {
                        dtype: dtype_name(dtype).into(),
                        len: n.unwrap_or(u64::MAX),
                        offset: 0,
                    };
                }
            }
            let v = attr_numbers(a, dtype);
            match v {
                Some(v) if a.shape.is_empty() && v.len() == 1 => {
                    if matches!(dtype, DType::F32 | DType::F64) {
                        TagValue::Float(v[0])
                    } else {
                        TagValue::Int(v[0] as i64)
                    }
                }
                Some(v) => TagValue::Numbers(v),
                None => TagValue::Text(String::new()),
            }
        }
    }
}

fn attr_numbers(a: &Attribute, dtype: DType) -> Option<Vec<f64>> {
    macro_rules! go {
        ($t:ty) => {
            a.read_1d::<$t>()
                .ok()
                .map(|v| v.into_iter().map(|x| x as f64).collect())
        };
    }
    match dtype {
        DType::U8 => go!(u8),
        DType::I8 => go!(i8),
        DType::U16 => go!(u16),
        DType::I16 => go!(i16),
        DType::U32 => go!(u32),
        DType::I32 => go!(i32),
        DType::U64 => go!(u64),
        DType::I64 => go!(i64),
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
    }
}

fn strings_tag(mut s: Vec<String>) -> TagValue {
    if s.len() == 1 {
        TagValue::Text(s.swap_remove(0))
    } else {
        TagValue::Group(
            s.into_iter()
                .map(|x| (String::new(), TagValue::Text(x)))
                .collect(),
        )
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::U8 => "u8",
        DType::I8 => "i8",
        DType::U16 => "u16",
        DType::I16 => "i16",
        DType::U32 => "u32",
        DType::I32 => "i32",
        DType::U64 => "u64",
        DType::I64 => "i64",
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

fn type_name(dt: &Datatype) -> &'static str {
    match dt {
        Datatype::FixedPoint { .. } => "integer",
        Datatype::FloatingPoint { .. } => "float",
        Datatype::String { .. } => "string",
        Datatype::Compound { .. } => "compound",
        Datatype::Array { .. } => "array",
        Datatype::Enum { .. } => "enum",
        Datatype::VarLen { .. } => "vlen",
        Datatype::Opaque { .. } => "opaque",
        Datatype::Reference { .. } => "reference",
        Datatype::Bitfield { .. } => "bitfield",
    }
}

/// An attribute as text (strings, or numbers formatted).
fn attr_text(g: &Group, name: &str) -> Option<String> {
    let a = g.attribute(name).ok()?;
    match attr_value(&a) {
        TagValue::Text(s) => Some(s),
        TagValue::Int(v) => Some(v.to_string()),
        TagValue::Float(v) => Some(v.to_string()),
        _ => None,
    }
}

fn attr_f64(g: &Group, name: &str) -> Option<f64> {
    attr_value(&g.attribute(name).ok()?).as_f64()
}

/// A JSON value as a tag tree (objects → groups, arrays → unnamed entries).
fn json_tag(v: &serde_json::Value, budget: &mut usize) -> TagValue {
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
            for x in a {
                if *budget == 0 {
                    break;
                }
                let t = json_tag(x, budget);
                g.push("", t);
            }
            g
        }
        serde_json::Value::Object(o) => {
            let mut g = TagValue::group();
            for (k, x) in o {
                if *budget == 0 {
                    break;
                }
                let t = json_tag(x, budget);
                g.push(k.clone(), t);
            }
            g
        }
    }
}

/// Parses JSON text (NUL padding trimmed); `None` if it is not JSON.
fn parse_json(bytes: &[u8]) -> Option<serde_json::Value> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).ok()
}

/// Tag of a data set: small string data sets as text (parsed when JSON), small numeric ones
/// inline, others as a data reference.
fn dataset_tag(ds: &hdf5_reader::Dataset, budget: &mut usize) -> TagValue {
    let n = ds.shape().iter().try_fold(1u64, |a, &b| a.checked_mul(b));
    let small = matches!(n, Some(n) if n <= 16);
    match ds.dtype() {
        Datatype::String { .. } | Datatype::VarLen { .. } if small => match ds.read_strings() {
            Ok(s) if s.len() == 1 => match parse_json(s[0].as_bytes()) {
                Some(v @ serde_json::Value::Object(_)) => json_tag(&v, budget),
                _ => TagValue::Text(s[0].clone()),
            },
            Ok(s) => strings_tag(s),
            Err(_) => TagValue::Text(String::new()),
        },
        dt => match (dtype_of(dt), small_numbers(ds, MAX_INLINE_ARRAY)) {
            (Some(_), Some(v)) => TagValue::Numbers(v),
            (Some(d), None) => TagValue::Data {
                dtype: dtype_name(d).into(),
                len: n.unwrap_or(u64::MAX),
                offset: ds.address(),
            },
            (None, _) => TagValue::Data {
                dtype: type_name(dt).into(),
                len: n.unwrap_or(u64::MAX),
                offset: ds.address(),
            },
        },
    }
}

/// The attributes, data sets and sub-groups of `g` as a tag tree (bounded depth and size).
fn group_tags(g: &Group, depth: usize, budget: &mut usize) -> TagValue {
    let mut t = TagValue::group();
    if depth > MAX_DEPTH || *budget == 0 {
        return t;
    }
    for a in g.attributes().unwrap_or_default() {
        if *budget == 0 {
            return t;
        }
        *budget -= 1;
        t.push(a.name.clone(), attr_value(&a));
    }
    let Ok((groups, datasets)) = g.members() else {
        return t;
    };
    for ds in &datasets {
        if *budget == 0 {
            return t;
        }
        *budget -= 1;
        let name = ds.name().rsplit('/').next().unwrap_or("").to_string();
        t.push(name, dataset_tag(ds, budget));
    }
    for sub in &groups {
        if *budget == 0 {
            return t;
        }
        *budget -= 1;
        let name = sub.name().rsplit('/').next().unwrap_or("").to_string();
        let child = group_tags(sub, depth + 1, budget);
        t.push(name, child);
    }
    t
}

fn last_name(full: &str) -> String {
    full.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Building signals

/// Where a data set's axes go: result axis `i` is file axis `order[i]`; the first `nav_dims`
/// result axes are navigation axes. File axes missing from `order` must have length 1 (they
/// are dropped, e.g. the frame axis of a single Velox image).
struct Layout {
    axes: Vec<Axis>,
    nav_dims: usize,
    /// File axis of each result axis.
    order: Vec<usize>,
}

/// Turns a numeric data set into a loaded or lazy signal.
fn make_signal(
    ds: hdf5_reader::Dataset,
    title: String,
    layout: Layout,
    metadata: Metadata,
    tags: TagValue,
    ctx: &Ctx<'_>,
) -> Result<Signal> {
    let bad = |r: String| Error::invalid_file(ctx.err_path, r);
    let dtype = dtype_of(ds.dtype()).ok_or_else(|| Error::Unsupported {
        what: format!("HDF5 data set {title} of {} type", type_name(ds.dtype())),
    })?;
    let file_shape =
        shape_of(&ds).ok_or_else(|| bad(format!("data set {title}: shape overflows")))?;
    let kept: Vec<usize> = (0..file_shape.len())
        .filter(|a| layout.order.contains(a))
        .collect();
    let layout_ok = layout.axes.len() == layout.order.len()
        && kept.len() == layout.order.len()
        && (0..file_shape.len()).all(|a| kept.contains(&a) || file_shape[a] == 1)
        && layout
            .axes
            .iter()
            .zip(&layout.order)
            .all(|(ax, &o)| ax.size == file_shape[o]);
    if !layout_ok {
        return Err(bad(format!(
            "data set {title}: axes {:?} do not fit the array shape {file_shape:?}",
            layout.axes.iter().map(|a| a.size).collect::<Vec<_>>()
        )));
    }
    let n = product(&file_shape).ok_or_else(|| bad(format!("shape {file_shape:?} overflows")))?;
    if n == 0 {
        return Err(bad(format!(
            "data set {title} of shape {file_shape:?} is empty"
        )));
    }
    let stored = (n as u64).saturating_mul(dtype.size_bytes() as u64);
    let as_f32 = (n as u64).saturating_mul(4);
    if stored.max(as_f32) > ctx.max_bytes {
        return Err(bad(format!(
            "data set {title} of shape {file_shape:?} declares {stored} bytes, more than the \
             file can hold ({} bytes at most)",
            ctx.max_bytes
        )));
    }
    let sig_dims = layout.axes.len() - layout.nav_dims;
    if ctx.lazy && stored >= ctx.lazy_threshold && sig_dims > 0 {
        let source = Hdf5Source::new(ds, dtype, &file_shape, &layout, ctx.err_path)?;
        return Ok(Signal {
            title,
            axes: layout.axes,
            nav_dims: layout.nav_dims,
            original_dtype: dtype,
            data: SignalData::Chunked(ChunkedSource::new(Box::new(source))),
            components: Components::Scalar,
            metadata,
            tags,
        });
    }
    let mut buf = vec![0.0f32; n];
    match read_into(&ds, dtype, None, &mut buf) {
        Ok(true) => {}
        Ok(false) => return Err(bad(format!("data set {title}: short read"))),
        Err(e) => return Err(h5err(ctx.err_path, e)),
    }
    // Dropped axes have length 1: the row-major data are the same with them removed.
    let reduced: Vec<usize> = kept.iter().map(|&a| file_shape[a]).collect();
    let perm: Vec<usize> = layout
        .order
        .iter()
        .map(|o| kept.iter().position(|k| k == o).unwrap_or(0))
        .collect();
    let mut data =
        ArrayD::from_shape_vec(IxDyn(&reduced), buf).map_err(|_| Error::ShapeMismatch {
            expected: reduced.clone(),
            found: vec![n],
        })?;
    if perm.iter().enumerate().any(|(i, &o)| i != o) {
        data = data
            .permuted_axes(IxDyn(&perm))
            .as_standard_layout()
            .into_owned();
    }
    let cube = Hypercube::with_axes(data, layout.axes.clone(), layout.nav_dims)?;
    Ok(Signal {
        title,
        axes: layout.axes,
        nav_dims: layout.nav_dims,
        original_dtype: dtype,
        data: SignalData::Loaded(cube),
        components: Components::Scalar,
        metadata,
        tags,
    })
}

/// Length units to nm (and 1/m to 1/nm).
fn length_units(scale: f64, offset: f64, units: &str) -> (f64, f64, String) {
    match units.trim() {
        "m" => (scale * 1e9, offset * 1e9, "nm".into()),
        "1/m" | "m^-1" | "1 / m" => (scale * 1e-9, offset * 1e-9, "1/nm".into()),
        "" => (scale, offset, "px".into()),
        u => (scale, offset, u.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Velox

fn is_velox(root: &Group) -> bool {
    let version = root
        .dataset("Version")
        .ok()
        .and_then(|d| d.read_strings().ok())
        .and_then(|s| s.into_iter().next())
        .and_then(|s| parse_json(s.as_bytes()));
    if let Some(v) = version
        && v.get("format").and_then(|f| f.as_str()) == Some("Velox")
    {
        return true;
    }
    root.group("Data")
        .map(|d| d.group("Image").is_ok() || d.group("Spectrum").is_ok())
        .unwrap_or(false)
}

/// The JSON metadata of frame 0 of a Velox data group (`Metadata`: u8 `[bytes, frames]`).
fn velox_metadata(g: &Group, ctx: &Ctx<'_>) -> Option<serde_json::Value> {
    let ds = g.dataset("Metadata").ok()?;
    let shape = shape_of(&ds)?;
    let (len, cols) = match shape.as_slice() {
        [len] => (*len, 1),
        [len, cols] => (*len, *cols),
        _ => return None,
    };
    if len as u64 > ctx.max_bytes || cols == 0 || dtype_of(ds.dtype()) != Some(DType::U8) {
        return None;
    }
    let mut bytes = vec![0u8; len];
    let sel = (shape.len() == 2).then(|| SliceInfo {
        selections: vec![
            SliceInfoElem::Slice {
                start: 0,
                end: u64::MAX,
                step: 1,
            },
            SliceInfoElem::Index(0),
        ],
    });
    match read_into(&ds, DType::U8, sel.as_ref(), &mut bytes) {
        Ok(true) => parse_json(&bytes),
        _ => None,
    }
}

fn jpath<'v>(v: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('/').try_fold(v, |n, k| n.get(k))
}

fn jnum(v: &serde_json::Value, path: &str) -> Option<f64> {
    let x = jpath(v, path)?;
    x.as_f64()
        .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|f: &f64| f.is_finite())
}

fn jstr(v: &serde_json::Value, path: &str) -> Option<String> {
    jpath(v, path)?
        .as_str()
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// Unix seconds → ISO 8601 UTC (`YYYY-MM-DDThh:mm:ssZ`), by the proleptic Gregorian
/// days-to-civil conversion (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
pub(crate) fn unix_to_iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn velox_common_metadata(m: &serde_json::Value, title: &str) -> Metadata {
    let magnification = jnum(m, "CustomProperties/StemMagnification/value")
        .or_else(|| jnum(m, "Optics/NominalMagnification"));
    let date = jnum(m, "Acquisition/AcquisitionStartDatetime/DateTime")
        .filter(|&s| s > 0.0 && s < 1e11)
        .map(|s| unix_to_iso8601(s as i64));
    let microscope = match (
        jstr(m, "Instrument/Manufacturer"),
        jstr(m, "Instrument/InstrumentClass"),
    ) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (a, b) => a.or(b),
    };
    Metadata {
        title: Some(title.to_string()),
        beam_energy_kev: jnum(m, "Optics/AccelerationVoltage").map(|v| v / 1000.0),
        convergence_semiangle_mrad: jnum(m, "Optics/BeamConvergence").map(|v| v * 1000.0),
        collection_semiangle_mrad: None,
        magnification,
        camera_length_mm: jnum(m, "Optics/CameraLength").map(|v| v * 1000.0),
        dwell_time_us: jnum(m, "Scan/DwellTime").map(|v| v * 1e6),
        acquisition_date: date,
        microscope,
    }
}

fn read_velox(root: &Group, ctx: &Ctx<'_>, skipped: &mut TagValue) -> Result<Vec<Signal>> {
    let mut signals = Vec::new();
    let Ok(data) = root.group("Data") else {
        return Ok(signals);
    };
    let groups = data.groups().map_err(|e| h5err(ctx.err_path, e))?;
    for kind_group in groups {
        let kind = last_name(kind_group.name());
        if kind == "SpectrumStream" {
            signals.extend(eds::read_streams(&kind_group, ctx, skipped)?);
            continue;
        }
        let members = kind_group.groups().map_err(|e| h5err(ctx.err_path, e))?;
        for g in members {
            let path = format!("Data/{kind}/{}", last_name(g.name()));
            let result = match kind.as_str() {
                "Image" => velox_image(&g, ctx),
                "Spectrum" => velox_spectrum(&g, ctx),
                _ => Err(Error::Unsupported {
                    what: format!("Velox {kind} data (not decoded)"),
                }),
            };
            match result {
                Ok(s) => signals.push(s),
                Err(Error::Unsupported { what }) => {
                    log::warn!("{}: {path} skipped: {what}", ctx.err_path.display());
                    skipped.push(path, TagValue::Text(what));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(signals)
}

fn velox_tags(m: Option<&serde_json::Value>) -> TagValue {
    let mut budget = MAX_TAG_NODES;
    m.map(|v| json_tag(v, &mut budget))
        .unwrap_or_else(TagValue::group)
}

/// A compound `{real, imaginary}` floating-point type (Velox FFT and DPC images store
/// `{realFloat, imagFloat}` or `{realFloatHalfEven, imagFloatHalfEven}` of `f32`): the element
/// size, the byte offsets of the real and the imaginary part and the float size (4 or 8).
/// The member named `imag…` is the imaginary part; otherwise the first member is the real one.
fn complex_layout(dt: &Datatype) -> Option<(usize, usize, usize, usize)> {
    let Datatype::Compound { size, fields } = dt else {
        return None;
    };
    let [a, b] = &fields[..] else {
        return None;
    };
    let float_size = |d: &Datatype| match d {
        Datatype::FloatingPoint {
            size: s @ (4 | 8), ..
        } => Some(usize::from(*s)),
        _ => None,
    };
    let fsize = float_size(&a.datatype)?;
    if float_size(&b.datatype)? != fsize {
        return None;
    }
    let is_imag = |n: &str| n.to_ascii_lowercase().starts_with("imag");
    let (re, im) = if is_imag(&a.name) && !is_imag(&b.name) {
        (b, a)
    } else {
        (a, b)
    };
    let size = *size as usize;
    let (ro, io) = (re.byte_offset as usize, im.byte_offset as usize);
    if ro.checked_add(fsize)? > size || io.checked_add(fsize)? > size {
        return None;
    }
    Some((size, ro, io, fsize))
}

/// A Velox image (series) of complex pixels, loaded as `[y, x, 2]` (`[frame, y, x, 2]`) with
/// the real part at component 0 and the imaginary part at component 1, like complex DM data
/// ([`Components::Complex`]); `f64` parts are rounded to `f32`. Always loaded (these are
/// small derived images: FFTs, DPC), bounded like every read.
fn velox_complex_image(
    g: &Group,
    ds: hdf5_reader::Dataset,
    (esize, ro, io, fsize): (usize, usize, usize, usize),
    ctx: &Ctx<'_>,
) -> Result<Signal> {
    let bad = |r: String| Error::invalid_file(ctx.err_path, r);
    let shape = shape_of(&ds).ok_or_else(|| bad("Velox image shape overflows".into()))?;
    let [h, w, n] = shape[..] else {
        return Err(bad(format!(
            "Velox image data of shape {shape:?} is not [y, x, frame]"
        )));
    };
    let count = product(&shape).ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    if count == 0 {
        return Err(bad(format!("Velox image of shape {shape:?} is empty")));
    }
    let stored = (count as u64).saturating_mul(esize as u64);
    let as_f32 = (count as u64).saturating_mul(8);
    if stored.max(as_f32) > ctx.max_bytes {
        return Err(bad(format!(
            "complex image of shape {shape:?} declares {stored} bytes, more than the file can \
             hold ({} bytes at most)",
            ctx.max_bytes
        )));
    }
    let raw = ds.read_native_bytes().map_err(|e| h5err(ctx.err_path, e))?;
    if raw.len() != count * esize {
        return Err(bad(format!(
            "complex image: read {} bytes, expected {}",
            raw.len(),
            count * esize
        )));
    }
    let part = |e: &[u8], o: usize| -> f32 {
        if fsize == 4 {
            e.get(o..o + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0.0, f32::from_ne_bytes)
        } else {
            e.get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0.0, |b| f64::from_ne_bytes(b) as f32)
        }
    };
    let mut out = vec![0.0f32; count * 2];
    for (o, e) in out.chunks_exact_mut(2).zip(raw.chunks_exact(esize)) {
        o[0] = part(e, ro);
        o[1] = part(e, io);
    }
    let file_shape = [h, w, n, 2];
    let data =
        ArrayD::from_shape_vec(IxDyn(&file_shape), out).map_err(|_| Error::ShapeMismatch {
            expected: file_shape.to_vec(),
            found: vec![count * 2],
        })?;
    let meta = velox_metadata(g, ctx);
    let m = meta.clone().unwrap_or(serde_json::Value::Null);
    let title = jstr(&m, "BinaryResult/Detector").unwrap_or_else(|| last_name(g.name()));
    let (y, x) = velox_scan_axes(&m, h, w);
    let component = Components::Complex
        .axis()
        .unwrap_or_else(|| Axis::new("component", 2, 1.0, 0.0, ""));
    let (data, axes, nav_dims) = if n == 1 {
        let d =
            data.into_shape_with_order(IxDyn(&[h, w, 2]))
                .map_err(|_| Error::ShapeMismatch {
                    expected: vec![h, w, 2],
                    found: file_shape.to_vec(),
                })?;
        (d, vec![y, x, component], 0)
    } else {
        let d = data
            .permuted_axes(IxDyn(&[2, 0, 1, 3]))
            .as_standard_layout()
            .into_owned();
        (d, vec![Axis::pixels("frame", n), y, x, component], 1)
    };
    let cube = Hypercube::with_axes(data, axes.clone(), nav_dims)?;
    let metadata = velox_common_metadata(&m, &title);
    Ok(Signal {
        title,
        axes,
        nav_dims,
        original_dtype: if fsize == 4 { DType::F32 } else { DType::F64 },
        data: SignalData::Loaded(cube),
        components: Components::Complex,
        metadata,
        tags: velox_tags(meta.as_ref()),
    })
}

fn velox_image(g: &Group, ctx: &Ctx<'_>) -> Result<Signal> {
    let ds = g.dataset("Data").map_err(|e| h5err(ctx.err_path, e))?;
    if let Some(layout) = complex_layout(ds.dtype()) {
        return velox_complex_image(g, ds, layout, ctx);
    }
    if dtype_of(ds.dtype()).is_none() {
        return Err(Error::Unsupported {
            what: format!(
                "Velox image of {} elements (complex data)",
                type_name(ds.dtype())
            ),
        });
    }
    let shape = shape_of(&ds)
        .ok_or_else(|| Error::invalid_file(ctx.err_path, "Velox image shape overflows"))?;
    let [h, w, n] = shape[..] else {
        return Err(Error::invalid_file(
            ctx.err_path,
            format!("Velox image data of shape {shape:?} is not [y, x, frame]"),
        ));
    };
    let meta = velox_metadata(g, ctx);
    let m = meta.clone().unwrap_or(serde_json::Value::Null);
    let title = jstr(&m, "BinaryResult/Detector").unwrap_or_else(|| last_name(g.name()));
    let (y, x) = velox_scan_axes(&m, h, w);
    let layout = if n == 1 {
        Layout {
            axes: vec![y, x],
            nav_dims: 0,
            order: vec![0, 1],
        }
    } else {
        Layout {
            axes: vec![Axis::pixels("frame", n), y, x],
            nav_dims: 1,
            order: vec![2, 0, 1],
        }
    };
    let metadata = velox_common_metadata(&m, &title);
    make_signal(ds, title, layout, metadata, velox_tags(meta.as_ref()), ctx)
}

/// The calibrated `y` and `x` axes of a Velox image or spectrum image of `h × w` pixels, from
/// `BinaryResult/PixelSize`, `Offset` and `PixelUnitX/Y` (metres become nm).
fn velox_scan_axes(m: &serde_json::Value, h: usize, w: usize) -> (Axis, Axis) {
    let units_x = jstr(m, "BinaryResult/PixelUnitX").unwrap_or_default();
    let units_y = jstr(m, "BinaryResult/PixelUnitY").unwrap_or_else(|| units_x.clone());
    let (sx, ox, ux) = length_units(
        sane_scale(jnum(m, "BinaryResult/PixelSize/width").unwrap_or(1.0)),
        sane_offset(jnum(m, "BinaryResult/Offset/x").unwrap_or(0.0)),
        &units_x,
    );
    let (sy, oy, uy) = length_units(
        sane_scale(jnum(m, "BinaryResult/PixelSize/height").unwrap_or(1.0)),
        sane_offset(jnum(m, "BinaryResult/Offset/y").unwrap_or(0.0)),
        &units_y,
    );
    (Axis::new("y", h, sy, oy, uy), Axis::new("x", w, sx, ox, ux))
}

/// The energy axis of `channels` EDS channels: the analytical detector whose name starts with
/// the result's detector name (`BinaryResult/Detector`) gives `Dispersion` (eV per channel) and
/// `OffsetEnergy` (eV), converted to keV; pixels when the metadata has neither.
fn velox_energy_axis(m: &serde_json::Value, channels: usize) -> Axis {
    let detector = jstr(m, "BinaryResult/Detector").unwrap_or_default();
    if let Some(dets) = jpath(m, "Detectors").and_then(|d| d.as_object()) {
        for d in dets.values() {
            let name = jstr(d, "DetectorName").unwrap_or_default();
            if !detector.is_empty()
                && name.starts_with(&detector)
                && let Some(disp) = jnum(d, "Dispersion")
            {
                return Axis::new(
                    "energy",
                    channels,
                    sane_scale(disp / 1000.0),
                    sane_offset(jnum(d, "OffsetEnergy").unwrap_or(0.0) / 1000.0),
                    "keV",
                );
            }
        }
    }
    Axis::pixels("energy", channels)
}

fn velox_spectrum(g: &Group, ctx: &Ctx<'_>) -> Result<Signal> {
    let ds = g.dataset("Data").map_err(|e| h5err(ctx.err_path, e))?;
    let shape = shape_of(&ds)
        .ok_or_else(|| Error::invalid_file(ctx.err_path, "Velox spectrum shape overflows"))?;
    let [channels, n] = shape[..] else {
        return Err(Error::invalid_file(
            ctx.err_path,
            format!("Velox spectrum data of shape {shape:?} is not [channel, spectrum]"),
        ));
    };
    let meta = velox_metadata(g, ctx);
    let m = meta.clone().unwrap_or(serde_json::Value::Null);
    let detector = jstr(&m, "BinaryResult/Detector").unwrap_or_default();
    let e = velox_energy_axis(&m, channels);
    let title = if detector.is_empty() {
        "EDS".to_string()
    } else {
        detector.clone()
    };
    let layout = if n == 1 {
        Layout {
            axes: vec![e],
            nav_dims: 0,
            order: vec![0],
        }
    } else {
        Layout {
            axes: vec![Axis::pixels("spectrum", n), e],
            nav_dims: 1,
            order: vec![1, 0],
        }
    };
    let metadata = velox_common_metadata(&m, &title);
    make_signal(ds, title, layout, metadata, velox_tags(meta.as_ref()), ctx)
}

// ---------------------------------------------------------------------------------------------
// Berkeley EMD

fn collect_emd_groups(g: &Group, path: String, depth: usize, out: &mut Vec<(String, Group)>) {
    if depth > MAX_DEPTH || out.len() > 4096 {
        return;
    }
    let Ok(groups) = g.groups() else {
        return;
    };
    for sub in groups {
        let p = format!("{path}/{}", last_name(sub.name()));
        if attr_f64(&sub, "emd_group_type") == Some(1.0) {
            out.push((p, sub));
        } else {
            collect_emd_groups(&sub, p, depth + 1, out);
        }
    }
}

/// EMD units text → our units: bracketed Prismatic units lose brackets and underscores
/// (`"[n_m]"` → `"nm"`), `x^-1` → `1/x`; other text is kept.
fn emd_units(u: &str) -> String {
    let t = u.trim();
    let u: String = match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner.chars().filter(|&c| c != '_').collect(),
        None => t.to_string(),
    };
    let u = u.trim();
    if let Some(base) = u.strip_suffix("^-1") {
        format!("1/{base}")
    } else {
        u.to_string()
    }
}

fn read_berkeley(
    root: &Group,
    groups: &[(String, Group)],
    ctx: &Ctx<'_>,
    skipped: &mut TagValue,
) -> Result<Vec<Signal>> {
    let mut meta = Metadata::default();
    if let Ok(mic) = root.group("microscope") {
        meta.microscope = attr_text(&mic, "name").filter(|s| !s.is_empty());
        // Volts when large, else kV.
        meta.beam_energy_kev = attr_f64(&mic, "voltage")
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| if v > 1000.0 { v / 1000.0 } else { v });
    }
    let mut signals = Vec::new();
    for (path, g) in groups {
        match berkeley_signal(path, g, &meta, ctx) {
            Ok(s) => signals.push(s),
            Err(Error::Unsupported { what }) => {
                log::warn!("{}: {path} skipped: {what}", ctx.err_path.display());
                skipped.push(path.clone(), TagValue::Text(what));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(signals)
}

fn berkeley_signal(path: &str, g: &Group, meta: &Metadata, ctx: &Ctx<'_>) -> Result<Signal> {
    let datasets = g.datasets().map_err(|e| h5err(ctx.err_path, e))?;
    let is_dim = |n: &str| {
        n.strip_prefix("dim")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut data = None;
    let mut dims = Vec::new();
    for ds in datasets {
        let name = last_name(ds.name());
        if is_dim(&name) {
            dims.push((name, ds));
        } else if data.is_none() || name == "data" {
            data = Some(ds);
        }
    }
    let ds = data.ok_or_else(|| Error::Unsupported {
        what: "EMD data group without a data set".into(),
    })?;
    if dtype_of(ds.dtype()).is_none() {
        return Err(Error::Unsupported {
            what: format!("EMD data set of {} elements", type_name(ds.dtype())),
        });
    }
    let shape = shape_of(&ds)
        .ok_or_else(|| Error::invalid_file(ctx.err_path, "EMD data shape overflows"))?;
    let mut axes = Vec::with_capacity(shape.len());
    for (i, &size) in shape.iter().enumerate() {
        let dim = dims
            .iter()
            .find(|(n, _)| n == &format!("dim{}", i + 1))
            .map(|(_, d)| d);
        let (mut name, mut scale, mut offset, mut units) =
            (format!("axis{i}"), 1.0, 0.0, "px".to_string());
        if let Some(d) = dim {
            let attrs = d.attributes();
            for a in &attrs {
                match (a.name.as_str(), attr_value(a)) {
                    ("name", TagValue::Text(s)) if !s.is_empty() => name = s,
                    ("units", TagValue::Text(s)) => {
                        let u = emd_units(&s);
                        if !u.is_empty() {
                            units = u;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(v) = small_numbers(d, 1 << 20) {
                if let Some(&v0) = v.first() {
                    offset = sane_offset(v0);
                }
                // A full coordinate vector: mean step (f32 coordinates round each step);
                // a two-element vector: [offset, offset + scale].
                if v.len() >= 2 {
                    scale = sane_scale((v[v.len() - 1] - v[0]) / (v.len() - 1) as f64);
                }
            }
        }
        axes.push(Axis::new(name, size, scale, offset, units));
    }
    let record_by = attr_text(g, "record_by").unwrap_or_default();
    let sig_dims = match (record_by.as_str(), shape.len()) {
        (_, 0) => 0,
        ("spectrum", _) | (_, 1) => 1,
        _ => 2,
    };
    let nav_dims = shape.len() - sig_dims;
    let title = attr_text(g, "title")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| last_name(path));
    let mut budget = MAX_TAG_NODES;
    let tags = group_tags(g, 0, &mut budget);
    let metadata = Metadata {
        title: Some(title.clone()),
        ..meta.clone()
    };
    let order = (0..shape.len()).collect();
    make_signal(
        ds,
        title,
        Layout {
            axes,
            nav_dims,
            order,
        },
        metadata,
        tags,
        ctx,
    )
}

// ---------------------------------------------------------------------------------------------
// Generic HDF5 / HyperSpy

fn collect_arrays(g: &Group, depth: usize, out: &mut Vec<(Group, hdf5_reader::Dataset)>) {
    if depth > MAX_DEPTH || out.len() > 4096 {
        return;
    }
    let Ok((groups, datasets)) = g.members() else {
        return;
    };
    for ds in datasets {
        if ds.ndim() >= 2 && dtype_of(ds.dtype()).is_some() {
            out.push((g.clone(), ds));
        }
    }
    for sub in groups {
        collect_arrays(&sub, depth + 1, out);
    }
}

fn read_generic(root: &Group, ctx: &Ctx<'_>, skipped: &mut TagValue) -> Result<Vec<Signal>> {
    let mut found = Vec::new();
    collect_arrays(root, 0, &mut found);
    let mut signals = Vec::new();
    for (parent, ds) in found {
        let full = ds.name().to_string();
        let shape = shape_of(&ds)
            .ok_or_else(|| Error::invalid_file(ctx.err_path, "HDF5 data shape overflows"))?;
        let ndim = shape.len();
        let mut axes: Vec<Axis> = shape
            .iter()
            .enumerate()
            .map(|(i, &n)| Axis::pixels(format!("axis{i}"), n))
            .collect();
        let mut nav_dims = ndim - 2;
        // HyperSpy: axis-i groups beside the data set calibrate array axis i.
        if parent.group("axis-0").is_ok() {
            let mut leading_nav = 0;
            let mut counting = true;
            for (i, axis) in axes.iter_mut().enumerate() {
                let Ok(ag) = parent.group(&format!("axis-{i}")) else {
                    counting = false;
                    continue;
                };
                if let Some(n) = attr_text(&ag, "name").filter(|s| !s.is_empty()) {
                    axis.name = n;
                }
                axis.scale = sane_scale(attr_f64(&ag, "scale").unwrap_or(1.0));
                axis.offset = sane_offset(attr_f64(&ag, "offset").unwrap_or(0.0));
                if let Some(u) =
                    attr_text(&ag, "units").filter(|s| !s.is_empty() && s != "<undefined>")
                {
                    axis.units = u;
                }
                let nav = attr_f64(&ag, "navigate") == Some(1.0);
                if counting && nav {
                    leading_nav += 1;
                } else {
                    counting = false;
                }
            }
            nav_dims = leading_nav;
        }
        let title = {
            let t = last_name(&full);
            if t == "data" {
                last_name(parent.name())
            } else {
                t
            }
        };
        let title = if title.is_empty() {
            file_title(ctx.err_path)
        } else {
            title
        };
        let metadata = Metadata {
            title: Some(title.clone()),
            ..Metadata::default()
        };
        let mut budget = MAX_TAG_NODES;
        let tags = group_tags(&parent, 0, &mut budget);
        let order = (0..ndim).collect();
        match make_signal(
            ds,
            title,
            Layout {
                axes,
                nav_dims,
                order,
            },
            metadata,
            tags,
            ctx,
        ) {
            Ok(s) => signals.push(s),
            Err(Error::Unsupported { what }) => {
                skipped.push(full, TagValue::Text(what));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(signals)
}

// ---------------------------------------------------------------------------------------------
// Lazy frames

/// Frames of an HDF5 data set read on demand by hyperslab selections.
pub(crate) struct Hdf5Source {
    ds: hdf5_reader::Dataset,
    dtype: DType,
    /// File axis of each navigation axis (result order).
    nav_axes: Vec<usize>,
    /// File axis of each signal axis (result order).
    sig_axes: Vec<usize>,
    nav_shape: Vec<usize>,
    sig_shape: Vec<usize>,
    ndim: usize,
    axes: Vec<Axis>,
    err_path: PathBuf,
}

impl Hdf5Source {
    fn new(
        ds: hdf5_reader::Dataset,
        dtype: DType,
        file_shape: &[usize],
        layout: &Layout,
        err_path: &Path,
    ) -> Result<Self> {
        let nav_axes = layout.order[..layout.nav_dims].to_vec();
        let sig_axes = layout.order[layout.nav_dims..].to_vec();
        Ok(Hdf5Source {
            ds,
            dtype,
            nav_shape: nav_axes.iter().map(|&a| file_shape[a]).collect(),
            sig_shape: sig_axes.iter().map(|&a| file_shape[a]).collect(),
            nav_axes,
            sig_axes,
            ndim: file_shape.len(),
            axes: layout.axes.clone(),
            err_path: err_path.to_path_buf(),
        })
    }

    fn read_frame_into(&self, frame: usize, out: &mut [f32], tmp: &mut Vec<f32>) -> Result<()> {
        // Signal axes: whole range; dropped (length-1) axes: index 0; navigation: the frame.
        let mut sel = vec![SliceInfoElem::Index(0); self.ndim];
        for &ax in &self.sig_axes {
            sel[ax] = SliceInfoElem::Slice {
                start: 0,
                end: u64::MAX,
                step: 1,
            };
        }
        let mut rest = frame;
        for (k, &ax) in self.nav_axes.iter().enumerate().rev() {
            let n = self.nav_shape[k].max(1);
            sel[ax] = SliceInfoElem::Index((rest % n) as u64);
            rest /= n;
        }
        let sel = SliceInfo { selections: sel };
        let sorted = self.sig_axes.windows(2).all(|w| w[0] < w[1]);
        let target: &mut [f32] = if sorted {
            out
        } else {
            tmp.resize(out.len(), 0.0);
            tmp.as_mut_slice()
        };
        let ok = catch_unwind(AssertUnwindSafe(|| {
            read_into(&self.ds, self.dtype, Some(&sel), target)
        }));
        match ok {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(Error::invalid_file(
                    &self.err_path,
                    "HDF5 frame: short read",
                ));
            }
            Ok(Err(e)) => return Err(h5err(&self.err_path, e)),
            Err(_) => {
                return Err(Error::invalid_file(
                    &self.err_path,
                    "corrupted HDF5 file (the HDF5 decoder failed)",
                ));
            }
        }
        if !sorted {
            // The selection holds the signal axes in file order; permute to result order.
            let mut by_file: Vec<usize> = self.sig_axes.clone();
            by_file.sort_unstable();
            let file_shape: Vec<usize> = by_file
                .iter()
                .map(|a| self.sig_shape[self.sig_axes.iter().position(|x| x == a).unwrap_or(0)])
                .collect();
            let perm: Vec<usize> = self
                .sig_axes
                .iter()
                .map(|a| by_file.iter().position(|x| x == a).unwrap_or(0))
                .collect();
            let view = ndarray::ArrayViewD::from_shape(IxDyn(&file_shape), tmp.as_slice())
                .map_err(|_| Error::ShapeMismatch {
                    expected: file_shape.clone(),
                    found: vec![tmp.len()],
                })?;
            for (o, v) in out.iter_mut().zip(view.permuted_axes(IxDyn(&perm)).iter()) {
                *o = *v;
            }
        }
        Ok(())
    }
}

impl FrameSource for Hdf5Source {
    fn nav_shape(&self) -> &[usize] {
        &self.nav_shape
    }

    fn sig_shape(&self) -> &[usize] {
        &self.sig_shape
    }

    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let count = check_read(self, start, out.len())?;
        let frame_len = out.len() / count;
        let mut tmp = Vec::new();
        for (k, chunk) in out.chunks_exact_mut(frame_len).enumerate() {
            self.read_frame_into(start + k, chunk, &mut tmp)?;
        }
        Ok(())
    }

    fn axes(&self) -> Option<&[Axis]> {
        Some(&self.axes)
    }
}

pub mod eds;
pub use eds::{EdsStreamOptions, MAX_SCAN_PIXELS, PIXEL_MARKER};

/// Opens an EMD / HDF5 file like [`open_with`](super::open_with), decoding Velox EDS spectrum
/// streams as `eds` says (frames kept or summed, detectors separate or summed, energy binning).
///
/// ```no_run
/// use stem_core::io::{OpenOptions, emd::{EdsStreamOptions, open_with_eds}};
/// let eds = EdsStreamOptions { sum_frames: false, ..Default::default() };
/// let ds = open_with_eds("si.emd", &OpenOptions::default(), &eds)?;
/// // The spectrum image keeps its frames: [frame, y, x, channel].
/// assert_eq!(ds.signals.iter().filter(|s| s.nav_dims == 3).count(), 1);
/// # Ok::<(), stem_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for invalid `eds` options, otherwise as
/// [`open_with`](super::open_with) (a file that is not HDF5 is [`Error::InvalidFile`]).
pub fn open_with_eds(
    path: impl AsRef<Path>,
    options: &OpenOptions,
    eds: &EdsStreamOptions,
) -> Result<Dataset> {
    eds.validate()?;
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only mapping; as for `open_with`, the file must not be truncated or written
    // by another process while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    read_with_eds(&map, Some(path), options, eds, path)
}

/// [`read_bytes`](super::read_bytes) for EMD / HDF5 bytes with EDS stream options (all pixels
/// loaded; used by the fuzz target).
///
/// # Errors
/// As [`open_with_eds`].
pub fn read_bytes_with_eds(bytes: &[u8], eds: &EdsStreamOptions) -> Result<Dataset> {
    eds.validate()?;
    let options = OpenOptions {
        lazy_threshold_bytes: u64::MAX,
    };
    read_with_eds(bytes, None, &options, eds, Path::new(""))
}

#[cfg(test)]
mod tests;
