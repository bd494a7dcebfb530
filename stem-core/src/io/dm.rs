//! Gatan DigitalMicrograph DM3 / DM4 tag files.
//!
//! Layout (from the public descriptions of the format by C. Boothroyd and the DM4 notes):
//! a big-endian header `version: u32` (3 or 4), file size (`u32` in DM3, `u64` in DM4) and a
//! `u32` byte-order flag for the data (1 = little-endian), then the root tag group. A group is
//! `sorted: u8, open: u8, n_tags` (u32 / u64); a tag is `kind: u8` (20 = group, 21 = data),
//! a `u16` label length and the label, in DM4 a `u64` tag size, then either a group or
//! `"%%%%"`, the number of type-info words and the words (u32 / u64, big-endian), then the
//! value in the data byte order. Type codes: 2 i16, 3 i32, 4 u16, 5 u32, 6 f32, 7 f64,
//! 8 bool, 9 i8, 10 u8, 11 i64, 12 u64, 15 struct, 18 string, 20 array.
//!
//! Images are the entries of `ImageList`; each has `ImageData/{Data, Dimensions,
//! Calibrations/Dimension, DataType}` and `ImageTags`. DM dimensions run fastest first
//! (x, y, ...), so the numpy shape is their reverse. Spectrum images (x, y, E with energy the
//! slowest) are transposed to `[y, x, E]`.
//!
//! Multi-number pixels get a trailing component axis ([`Components`]):
//! * complex images (DataType 3 `complex64`, 13 `complex128`; the data array is a struct of two
//!   `f32` / `f64`): `[..., 2]` = (real, imaginary), read in place (lazily when large);
//! * RGB images (DataType 23, and 8): 4-byte words whose bytes, lowest first, are blue, green,
//!   red and an unused pad byte (checked against RosettaSciIO on an edited `test-23.dm3`):
//!   `[..., 3]` = (R, G, B), 0–255, always loaded. An RGB first image of a multi-image file is
//!   the thumbnail and is skipped.
//! * packed complex (DataType 5, half-plane FFTs) gives [`Error::Unsupported`].
//!
//! Hostile input: every count and length is checked against the bytes left before anything is
//! allocated, and groups nest at most [`MAX_DEPTH`] deep.

use super::common::{OpenOptions, RawBlock, Reader, file_title, sane_offset, sane_scale};
use super::dataset::{
    Components, Dataset, Format, MAX_INLINE_ARRAY, Metadata, Signal, SignalData, TagValue,
};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, Endianness};
use crate::hypercube::Hypercube;
use std::path::Path;

/// Deepest tag-group nesting accepted (real files nest about 10 deep).
pub const MAX_DEPTH: usize = 64;

const BE: Endianness = Endianness::Big;

struct Parser<'a> {
    r: Reader<'a>,
    dm4: bool,
    order: Endianness,
}

fn simple_size(t: u64) -> Option<u64> {
    Some(match t {
        2 | 4 => 2,
        3 | 5 | 6 => 4,
        7 | 11 | 12 => 8,
        8..=10 => 1,
        _ => return None,
    })
}

fn dtype_of(t: u64) -> Option<DType> {
    Some(match t {
        2 => DType::I16,
        3 => DType::I32,
        4 => DType::U16,
        5 => DType::U32,
        6 => DType::F32,
        7 => DType::F64,
        8 | 10 => DType::U8,
        9 => DType::I8,
        11 => DType::I64,
        12 => DType::U64,
        _ => return None,
    })
}

fn type_name(t: u64) -> String {
    match dtype_of(t) {
        Some(d) => format!("{d:?}").to_lowercase(),
        None if t == 15 => "struct".into(),
        None => format!("type{t}"),
    }
}

impl<'a> Parser<'a> {
    fn count(&mut self) -> Result<u64> {
        if self.dm4 {
            self.r.u64(BE)
        } else {
            self.r.u32(BE).map(u64::from)
        }
    }

    fn group(&mut self, depth: usize) -> Result<TagValue> {
        if depth > MAX_DEPTH {
            return Err(self
                .r
                .err(format!("tag groups nest deeper than {MAX_DEPTH} levels")));
        }
        let _sorted = self.r.u8()?;
        let _open = self.r.u8()?;
        let n = self.count()?;
        // Each tag takes at least 3 bytes (kind + label length): a larger count is a lie.
        if n > self.r.remaining() as u64 / 3 {
            return Err(self.r.err(format!(
                "tag group at offset {} claims {n} tags, more than the {} bytes left can hold",
                self.r.pos,
                self.r.remaining()
            )));
        }
        // Capacity capped: a lying count must not reserve memory the file does not hold.
        let mut entries = Vec::with_capacity((n as usize).min(1024));
        for _ in 0..n {
            let kind = self.r.u8()?;
            let label_len = self.r.u16(BE)?;
            let label: String = self
                .r
                .take(u64::from(label_len))?
                .iter()
                .map(|&b| char::from(b))
                .collect();
            if self.dm4 {
                let _tag_size = self.r.u64(BE)?;
            }
            let value = match kind {
                20 => self.group(depth + 1)?,
                21 => self.data(&label)?,
                0 => break,
                k => {
                    return Err(self.r.err(format!(
                        "unknown tag kind {k} for tag {label:?} at offset {}",
                        self.r.pos
                    )));
                }
            };
            entries.push((label, value));
        }
        Ok(TagValue::Group(entries))
    }

    fn simple(&mut self, t: u64) -> Result<TagValue> {
        let o = self.order;
        Ok(match t {
            2 => TagValue::Int(self.r.i16(o)?.into()),
            3 => TagValue::Int(self.r.i32(o)?.into()),
            4 => TagValue::Int(self.r.u16(o)?.into()),
            5 => TagValue::Int(self.r.u32(o)?.into()),
            6 => TagValue::Float(self.r.f32(o)?.into()),
            7 => TagValue::Float(self.r.f64(o)?),
            8 => TagValue::Bool(self.r.u8()? != 0),
            9 => TagValue::Int((self.r.u8()? as i8).into()),
            10 => TagValue::Int(self.r.u8()?.into()),
            11 => TagValue::Int(self.r.i64(o)?),
            12 => {
                let v = self.r.u64(o)?;
                i64::try_from(v).map_or(TagValue::Float(v as f64), TagValue::Int)
            }
            _ => return Err(self.r.err(format!("unknown DM data type {t}"))),
        })
    }

    fn data(&mut self, label: &str) -> Result<TagValue> {
        let marker = self.r.take(4)?;
        if marker != b"%%%%" {
            return Err(self.r.err(format!(
                "tag {label:?}: missing %%%% marker at offset {}",
                self.r.pos - 4
            )));
        }
        let n_info = self.count()?;
        let word = if self.dm4 { 8 } else { 4 };
        if n_info == 0 || n_info > (self.r.remaining() / word) as u64 || n_info > 1 << 16 {
            return Err(self.r.err(format!(
                "tag {label:?}: implausible type-info length {n_info}"
            )));
        }
        let mut info = Vec::with_capacity(n_info as usize);
        for _ in 0..n_info {
            info.push(self.count()?);
        }
        let at = |i: usize| info.get(i).copied();
        let bad_info =
            |r: &Reader<'_>| r.err(format!("tag {label:?}: malformed type info {info:?}"));
        let t = info[0];
        match t {
            15 => {
                let fields = struct_fields(&info, 1).ok_or_else(|| bad_info(&self.r))?;
                let mut values = Vec::with_capacity(fields.len());
                for f in fields {
                    values.push(self.simple(f)?.as_f64().unwrap_or(f64::NAN));
                }
                Ok(TagValue::Numbers(values))
            }
            18 => {
                let len = at(1).ok_or_else(|| bad_info(&self.r))?;
                let bytes = self.r.take(len.saturating_mul(2))?;
                Ok(TagValue::Text(utf16(bytes, self.order)))
            }
            20 => {
                let elem = at(1).ok_or_else(|| bad_info(&self.r))?;
                let (elem_size, len, elem_name) = if elem == 15 {
                    let fields = struct_fields(&info, 2).ok_or_else(|| bad_info(&self.r))?;
                    let size = fields
                        .iter()
                        .map(|&f| simple_size(f))
                        .sum::<Option<u64>>()
                        .ok_or_else(|| bad_info(&self.r))?;
                    (size, *info.last().unwrap_or(&0), struct_type_name(&fields))
                } else {
                    let size = simple_size(elem).ok_or_else(|| {
                        self.r.err(format!(
                            "tag {label:?}: arrays of DM type {elem} are not supported"
                        ))
                    })?;
                    (
                        size,
                        at(2).ok_or_else(|| bad_info(&self.r))?,
                        type_name(elem),
                    )
                };
                let total = len
                    .checked_mul(elem_size)
                    .ok_or_else(|| bad_info(&self.r))?;
                let offset = self.r.pos as u64;
                let bytes = self.r.take(total)?;
                if label != "Data" && elem == 4 && len <= 4096 {
                    return Ok(TagValue::Text(utf16(bytes, self.order)));
                }
                if label != "Data" && elem != 15 && len as usize <= MAX_INLINE_ARRAY {
                    let mut sub = Parser {
                        r: Reader::new(bytes, self.r.path),
                        dm4: self.dm4,
                        order: self.order,
                    };
                    let mut values = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        values.push(sub.simple(elem)?.as_f64().unwrap_or(f64::NAN));
                    }
                    return Ok(TagValue::Numbers(values));
                }
                Ok(TagValue::Data {
                    dtype: elem_name,
                    len,
                    offset,
                })
            }
            t => self.simple(t),
        }
    }
}

/// Field types of a struct whose info starts at `start` (`name_len, n_fields, (name_len,
/// type)*`), or `None` when malformed or a field is not a simple type.
fn struct_fields(info: &[u64], start: usize) -> Option<Vec<u64>> {
    let n = usize::try_from(*info.get(start + 1)?).ok()?;
    if n > info.len() {
        return None;
    }
    (0..n)
        .map(|i| {
            let t = *info.get(start + 3 + 2 * i)?;
            simple_size(t).map(|_| t)
        })
        .collect()
}

/// Element-type name of an array of structs: `"complex64"` / `"complex128"` for a pair of
/// `f32` / `f64` fields (DM complex images), else `"struct"`.
fn struct_type_name(fields: &[u64]) -> String {
    match fields {
        [6, 6] => "complex64",
        [7, 7] => "complex128",
        _ => "struct",
    }
    .into()
}

fn utf16(bytes: &[u8], order: Endianness) -> String {
    let units = bytes.chunks_exact(2).map(|c| match order {
        Endianness::Little => u16::from_le_bytes([c[0], c[1]]),
        Endianness::Big => u16::from_be_bytes([c[0], c[1]]),
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .trim_end_matches('\0')
        .to_string()
}

/// Whether `bytes` start like a DM3 / DM4 file.
pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
    let v = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let (f, order_at) = match v {
        3 => (Format::Dm3, 8),
        4 => (Format::Dm4, 12),
        _ => return None,
    };
    let order = u32::from_be_bytes(bytes.get(order_at..order_at + 4)?.try_into().ok()?);
    (order <= 1).then_some(f)
}

/// Parses the whole tag tree; returns the format, the root group and the data byte order.
pub(crate) fn parse_tags(bytes: &[u8], path: &Path) -> Result<(Format, TagValue, Endianness)> {
    let mut r = Reader::new(bytes, path);
    let version = r.u32(BE)?;
    let dm4 = match version {
        3 => false,
        4 => true,
        v => return Err(r.err(format!("DM version {v}, expected 3 or 4"))),
    };
    let _size = if dm4 {
        r.u64(BE)?
    } else {
        u64::from(r.u32(BE)?)
    };
    let order = match r.u32(BE)? {
        0 => Endianness::Big,
        1 => Endianness::Little,
        o => return Err(r.err(format!("DM byte-order flag {o}, expected 0 or 1"))),
    };
    let mut p = Parser { r, dm4, order };
    let root = p.group(0)?;
    Ok((if dm4 { Format::Dm4 } else { Format::Dm3 }, root, order))
}

fn num(tags: &TagValue, path: &str) -> Option<f64> {
    tags.get_path(path).and_then(TagValue::as_f64)
}

fn text(tags: &TagValue, path: &str) -> Option<String> {
    tags.get_path(path)
        .and_then(TagValue::as_str)
        .map(str::to_string)
}

fn metadata(title: &str, t: &TagValue) -> Metadata {
    let date = match (
        text(t, "DataBar/Acquisition Date"),
        text(t, "DataBar/Acquisition Time"),
    ) {
        (Some(d), Some(tm)) => Some(format!("{d} {tm}")),
        (d, tm) => d.or(tm),
    };
    Metadata {
        title: Some(title.to_string()),
        beam_energy_kev: num(t, "Microscope Info/Voltage").map(|v| v / 1000.0),
        convergence_semiangle_mrad: num(
            t,
            "EELS/Experimental Conditions/Convergence semi-angle (mrad)",
        )
        .or_else(|| num(t, "Microscope Info/Convergence Semi-angle (mrad)")),
        collection_semiangle_mrad: num(
            t,
            "EELS/Experimental Conditions/Collection semi-angle (mrad)",
        ),
        magnification: num(t, "Microscope Info/Indicated Magnification"),
        camera_length_mm: num(t, "Microscope Info/STEM Camera Length"),
        dwell_time_us: num(t, "DigiScan/Sample Time")
            .or_else(|| num(t, "Acquisition/Parameters/High Level/Exposure (s)").map(|s| s * 1e6)),
        acquisition_date: date,
        microscope: text(t, "Microscope Info/Microscope")
            .or_else(|| text(t, "Microscope Info/Name")),
    }
}

/// How the elements of a DM image's data array become signal values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pixel {
    /// One real number per element.
    Real,
    /// A `(real, imaginary)` pair of `f32` / `f64` per element (DataType 3 / 13): a trailing
    /// component axis of 2, read in place.
    Complex,
    /// A 4-byte word per element holding blue, green, red and a padding byte in its low to high
    /// bytes (DataType 23 "RGB", and the older 8): a trailing channel axis, reordered to R, G, B.
    Bgra,
}

/// DM image data types holding 4-byte RGB words.
fn is_rgb(data_type: i64) -> bool {
    matches!(data_type, 8 | 23)
}

/// Builds the raw-block description of image `index` of `ImageList`, or `None` for images that
/// are skipped (thumbnails: an RGB or otherwise unreadable first image of a file that holds
/// more than one).
fn image_block(
    image: &TagValue,
    index: usize,
    n_images: usize,
    order: Endianness,
    path: &Path,
) -> Result<Option<(RawBlock, Pixel)>> {
    let bad = |reason: String| Error::invalid_file(path, format!("DM image {index}: {reason}"));
    let data_type = num(image, "ImageData/DataType").unwrap_or(-1.0) as i64;
    let thumbnail_slot = index == 0 && n_images > 1;
    if is_rgb(data_type) && thumbnail_slot {
        return Ok(None); // RGB thumbnail.
    }
    let Some(TagValue::Data { dtype, len, offset }) = image.get_path("ImageData/Data") else {
        return Err(bad("no ImageData/Data array".into()));
    };
    let (dt, pixel) = match (dtype.as_str(), data_type) {
        (_, 5) => {
            return Err(Error::Unsupported {
                what: "DM packed-complex image (DataType 5, a half-plane FFT); convert it to \
                       complex in DigitalMicrograph"
                    .into(),
            });
        }
        ("i32" | "u32", d) if is_rgb(d) => (DType::U8, Pixel::Bgra),
        (other, d) if is_rgb(d) => {
            return Err(Error::Unsupported {
                what: format!("DM RGB image (DataType {d}) stored as {other} elements"),
            });
        }
        ("complex64", _) => (DType::F32, Pixel::Complex),
        ("complex128", _) => (DType::F64, Pixel::Complex),
        ("i16", _) => (DType::I16, Pixel::Real),
        ("i32", _) => (DType::I32, Pixel::Real),
        ("u16", _) => (DType::U16, Pixel::Real),
        ("u32", _) => (DType::U32, Pixel::Real),
        ("f32", _) => (DType::F32, Pixel::Real),
        ("f64", _) => (DType::F64, Pixel::Real),
        ("u8", _) => (DType::U8, Pixel::Real),
        ("i8", _) => (DType::I8, Pixel::Real),
        ("i64", _) => (DType::I64, Pixel::Real),
        ("u64", _) => (DType::U64, Pixel::Real),
        (other, _) => {
            if thumbnail_slot {
                return Ok(None);
            }
            return Err(Error::Unsupported {
                what: format!("DM image data of element type {other} (DataType {data_type})"),
            });
        }
    };
    let dims: Vec<usize> = image
        .get_path("ImageData/Dimensions")
        .map(|d| {
            d.entries()
                .iter()
                .map(|(_, v)| v.as_f64().unwrap_or(-1.0))
                .map(|v| if v >= 0.0 { v as usize } else { usize::MAX })
                .collect()
        })
        .unwrap_or_default();
    if dims.is_empty() || dims.len() > 4 {
        return Err(bad(format!("{} dimensions", dims.len())));
    }
    let count = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    if count != *len {
        return Err(bad(format!(
            "dimensions {dims:?} hold {count} values but the data array has {len}"
        )));
    }
    let cal = image.get_path("ImageData/Calibrations/Dimension");
    let title = text(image, "Name").unwrap_or_else(|| file_title(path));
    let tags = image
        .get("ImageTags")
        .cloned()
        .unwrap_or_else(TagValue::group);
    let format = text(&tags, "Meta Data/Format")
        .unwrap_or_default()
        .to_lowercase();
    // DM axis i (x first).
    let dm_axis = |i: usize, name: &str| {
        let c = cal.and_then(|c| c.entries().get(i)).map(|(_, v)| v);
        let scale = sane_scale(c.and_then(|c| num(c, "Scale")).unwrap_or(1.0));
        let origin = sane_offset(c.and_then(|c| num(c, "Origin")).unwrap_or(0.0));
        let units = c.and_then(|c| text(c, "Units")).unwrap_or_default();
        let units = if units.is_empty() {
            "px".to_string()
        } else {
            units
        };
        // `+ 0.0` turns -0.0 (origin 0) into 0.0.
        Axis::new(
            name,
            dims[i],
            scale,
            sane_offset(-origin * scale) + 0.0,
            units,
        )
    };
    let n = dims.len();
    let mut file_shape: Vec<usize> = dims.iter().rev().copied().collect();
    let spectral = format.contains("spectrum");
    let (mut axes, nav_dims, mut permutation) = match (n, spectral) {
        (1, _) => (vec![dm_axis(0, "energy")], 0, None),
        (2, true) => (vec![dm_axis(1, "x"), dm_axis(0, "energy")], 1, None),
        (2, false) => (vec![dm_axis(1, "y"), dm_axis(0, "x")], 0, None),
        (3, true) => (
            vec![dm_axis(1, "y"), dm_axis(0, "x"), dm_axis(2, "energy")],
            2,
            Some(vec![1, 2, 0]),
        ),
        (3, false) => (
            vec![dm_axis(2, "frame"), dm_axis(1, "y"), dm_axis(0, "x")],
            1,
            None,
        ),
        _ => (
            vec![
                dm_axis(3, "scan_y"),
                dm_axis(2, "scan_x"),
                dm_axis(1, "k_y"),
                dm_axis(0, "k_x"),
            ],
            2,
            None,
        ),
    };
    // Multi-number pixels: one more, trailing file axis (interleaved in the file), kept last.
    let components = match pixel {
        Pixel::Real => None,
        Pixel::Complex => Some(Axis::new("component", 2, 1.0, 0.0, "")),
        Pixel::Bgra => Some(Axis::new("channel", 4, 1.0, 0.0, "")),
    };
    if let Some(axis) = components {
        file_shape.push(axis.size);
        axes.push(axis);
        if let Some(p) = permutation.as_mut() {
            p.push(n);
        }
    }
    Ok(Some((
        RawBlock {
            metadata: metadata(&title, &tags),
            title,
            file_shape,
            axes,
            nav_dims,
            permutation,
            dtype: dt,
            endianness: order,
            offset: *offset,
            frame_header_bytes: 0,
            tags,
        },
        pixel,
    )))
}

/// Turns a loaded `[..., 4]` signal of B, G, R, pad bytes (as the 4-byte words lie in the
/// file's data byte order) into `[..., 3]` R, G, B.
fn bgra_to_rgb(mut signal: Signal, order: Endianness, path: &Path) -> Result<Signal> {
    let SignalData::Loaded(cube) = &signal.data else {
        return Err(Error::invalid_file(path, "DM RGB data was not loaded"));
    };
    let last = cube.data().ndim().saturating_sub(1);
    // A little-endian word B | G << 8 | R << 16 lies as bytes B, G, R, pad; a big-endian one
    // as pad, R, G, B.
    let rgb: [usize; 3] = match order {
        Endianness::Little => [2, 1, 0],
        Endianness::Big => [1, 2, 3],
    };
    let data = cube.data().select(ndarray::Axis(last), &rgb);
    let mut axes = signal.axes.clone();
    if let (Some(a), Some(channel)) = (axes.last_mut(), Components::Rgb.axis()) {
        *a = channel;
    }
    signal.data = SignalData::Loaded(Hypercube::with_axes(data, axes.clone(), signal.nav_dims)?);
    signal.axes = axes;
    signal.components = Components::Rgb;
    Ok(signal)
}

/// Reads a DM3 / DM4 file held in `bytes`.
pub(crate) fn read(
    bytes: &[u8],
    path: Option<&Path>,
    options: &OpenOptions,
    err_path: &Path,
) -> Result<Dataset> {
    let (format, root, order) = parse_tags(bytes, err_path)?;
    let images = root.get("ImageList").map(TagValue::entries).unwrap_or(&[]);
    let mut signals: Vec<Signal> = Vec::new();
    for (i, (_, image)) in images.iter().enumerate() {
        let Some((block, pixel)) = image_block(image, i, images.len(), order, err_path)? else {
            continue;
        };
        let signal = match pixel {
            Pixel::Real => block.into_signal(bytes, path, options, err_path)?,
            Pixel::Complex => {
                let mut signal = block.into_signal(bytes, path, options, err_path)?;
                signal.components = Components::Complex;
                signal
            }
            Pixel::Bgra => {
                // Loaded (the channels are reordered): RGB images are small.
                let load = OpenOptions {
                    lazy_threshold_bytes: u64::MAX,
                };
                bgra_to_rgb(
                    block.into_signal(bytes, path, &load, err_path)?,
                    order,
                    err_path,
                )?
            }
        };
        signals.push(signal);
    }
    if signals.is_empty() {
        return Err(Error::Unsupported {
            what: "DM file holding only thumbnail images".into(),
        });
    }
    Ok(Dataset {
        format,
        signals,
        tags: root,
    })
}
