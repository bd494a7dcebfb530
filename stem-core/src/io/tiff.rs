//! TIFF images and stacks, read with the `tiff` crate, with DigitalMicrograph and ImageJ
//! calibrations; and a calibrated TIFF writer in the ImageJ convention.
//!
//! Reading: every page with the first page's size and grey-level type becomes one frame
//! (`[frame, y, x]` when there are several). Calibration, first found wins:
//! * DigitalMicrograph private tags: 65009 / 65010 / 65011 scale of x / y / z, 65006 / 65007 /
//!   65008 offset, 65003 / 65004 / 65005 units (else the names in 65012 / 65013 / 65014);
//! * ImageJ: `ImageDescription` starting `ImageJ=`, with `unit=` (`micron` → µm) and `spacing=`
//!   (z step); pixel size `1 / XResolution`, `1 / YResolution`;
//! * otherwise uncalibrated pixels (the 72-dpi style resolutions of ordinary TIFFs are
//!   ignored).
//!
//! Colour: RGB images (8 / 16 bits per sample, `PhotometricInterpretation` 2) are read as
//! `[(frame,) y, x, 3]` with [`Components::Rgb`]; palette (indexed-colour, photometric 3)
//! images are read as their colour indices, with the colour map (TIFF tag 320, 16-bit R, G, B
//! per index) in the signal's tags as `ColorMap/{red, green, blue}` for palettes of at most
//! [`MAX_INLINE_ARRAY`] colours; [`palette_to_rgb`] maps the indices through it. CMYK, RGBA and
//! other multi-channel images give [`Error::Unsupported`]. The decoder's buffer limit is bounded by the file size (64× for
//! compressed data, at least 16 MiB), so a small hostile file cannot request a large
//! allocation.

use super::common::{file_title, sane_offset, sane_scale};
use super::dataset::{
    Components, Dataset, Format, MAX_INLINE_ARRAY, Metadata, Signal, SignalData, TagValue,
};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::DType;
use crate::hypercube::Hypercube;
use ndarray::{ArrayD, ArrayView2, IxDyn};
use std::io::Cursor;
use std::path::Path;
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult, Limits, ifd::Value};
use tiff::encoder::{Rational, TiffEncoder, colortype};
use tiff::tags::{ResolutionUnit, Tag};

/// Most pages read from one file.
pub const MAX_PAGES: usize = 1 << 16;

/// Whether `bytes` start like a (classic or Big) TIFF file.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
        || bytes.starts_with(b"II+\0")
        || bytes.starts_with(b"MM\0+")
}

fn value_f64(v: &Value) -> Option<f64> {
    Some(match v {
        Value::Byte(x) => f64::from(*x),
        Value::Short(x) => f64::from(*x),
        Value::SignedByte(x) => f64::from(*x),
        Value::SignedShort(x) => f64::from(*x),
        Value::Signed(x) => f64::from(*x),
        Value::SignedBig(x) => *x as f64,
        Value::Unsigned(x) => f64::from(*x),
        Value::UnsignedBig(x) => *x as f64,
        Value::Float(x) => f64::from(*x),
        Value::Double(x) => *x,
        Value::Rational(n, d) => f64::from(*n) / f64::from(*d),
        Value::RationalBig(n, d) => *n as f64 / *d as f64,
        Value::SRational(n, d) => f64::from(*n) / f64::from(*d),
        Value::SRationalBig(n, d) => *n as f64 / *d as f64,
        Value::List(l) if l.len() == 1 => return value_f64(&l[0]),
        Value::Ascii(s) => return s.trim().parse().ok(),
        _ => return None,
    })
}

fn tag_value(v: Value) -> TagValue {
    match v {
        Value::Ascii(s) => TagValue::Text(s),
        Value::List(l) if l.len() <= MAX_INLINE_ARRAY => {
            TagValue::Numbers(l.iter().map(|x| value_f64(x).unwrap_or(f64::NAN)).collect())
        }
        Value::List(l) => TagValue::Data {
            dtype: "list".into(),
            len: l.len() as u64,
            offset: 0,
        },
        v => value_f64(&v).map_or(TagValue::Text(format!("{v:?}")), TagValue::Float),
    }
}

fn tiff_err(path: &Path, e: tiff::TiffError) -> Error {
    match e {
        tiff::TiffError::UnsupportedError(u) => Error::Unsupported {
            what: format!("TIFF feature in {}: {u}", path.display()),
        },
        e => Error::invalid_file(path, format!("TIFF: {e}")),
    }
}

fn append(result: DecodingResult, out: &mut Vec<f32>) -> DType {
    macro_rules! ext {
        ($v:expr, $d:expr) => {{
            out.extend($v.iter().map(|&x| x as f32));
            $d
        }};
    }
    match result {
        DecodingResult::U8(v) => ext!(v, DType::U8),
        DecodingResult::U16(v) => ext!(v, DType::U16),
        DecodingResult::U32(v) => ext!(v, DType::U32),
        DecodingResult::U64(v) => ext!(v, DType::U64),
        DecodingResult::I8(v) => ext!(v, DType::I8),
        DecodingResult::I16(v) => ext!(v, DType::I16),
        DecodingResult::I32(v) => ext!(v, DType::I32),
        DecodingResult::I64(v) => ext!(v, DType::I64),
        DecodingResult::F32(v) => ext!(v, DType::F32),
        DecodingResult::F64(v) => ext!(v, DType::F64),
        DecodingResult::F16(v) => {
            out.extend(v.iter().map(|x| x.to_f32()));
            DType::F32
        }
    }
}

/// Most IFD entries [`prescan`] looks at in one file (bounds its time on hostile IFD chains).
const MAX_PRESCAN_ENTRIES: usize = 1 << 20;

/// Walks the IFD chain (classic and BigTIFF) before the `tiff` crate sees the file and rejects
/// the entries that make `tiff` 0.10 panic: a `BitsPerSample` (258) or `SampleFormat` (339)
/// list that is empty or not of an unsigned-integer type (it decodes to an empty list; both
/// found by the `tiff` fuzz target, `stem-core/tests/fuzz_regressions/`). Anything
/// else that is malformed is left to the decoder, which reports it.
fn prescan(bytes: &[u8], err_path: &Path) -> Result<()> {
    let le = match bytes.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Ok(()),
    };
    let get = |o: usize, n: usize| -> Option<u64> {
        let b = bytes.get(o..o.checked_add(n)?)?;
        Some(if le {
            b.iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x))
        } else {
            b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x))
        })
    };
    let big = get(2, 2) == Some(43);
    // (count field width, entry size, offset of the entry count width).
    let (count_w, entry, n_w) = if big { (8, 20, 8) } else { (4, 12, 2) };
    let mut next = get(4 + 4 * usize::from(big), if big { 8 } else { 4 });
    let mut visited = std::collections::HashSet::new();
    let mut scanned = 0usize;
    while let Some(off) = next.filter(|&o| o != 0) {
        let Ok(off) = usize::try_from(off) else { break };
        if !visited.insert(off) {
            break; // an IFD loop: the decoder reports it
        }
        let Some(n) = get(off, n_w).and_then(|n| usize::try_from(n).ok()) else {
            break;
        };
        let first = off + n_w;
        for i in 0..n {
            scanned += 1;
            if scanned > MAX_PRESCAN_ENTRIES {
                return Ok(());
            }
            let e = first + i * entry;
            let (Some(tag), Some(typ), Some(count)) =
                (get(e, 2), get(e + 2, 2), get(e + 4, count_w))
            else {
                return Ok(());
            };
            // BYTE, SHORT, LONG, LONG8: other types (e.g. ASCII) decode to an empty list.
            if matches!(tag, 258 | 339) && (count == 0 || !matches!(typ, 1 | 3 | 4 | 16)) {
                return Err(Error::invalid_file(
                    err_path,
                    format!(
                        "TIFF: IFD at offset {off} has tag {tag} as {count} values of type {typ} \
                         (an unsigned-integer list expected)"
                    ),
                ));
            }
        }
        next = n
            .checked_mul(entry)
            .and_then(|b| get(first.checked_add(b)?, count_w));
    }
    Ok(())
}

/// Reads a TIFF file held in `bytes`.
///
/// The `tiff` crate (0.10) panics on some corrupted files (e.g. an empty `SampleFormat` list):
/// [`prescan`] rejects the known cases first; any other panic of the decoder is still caught
/// and reported as [`Error::InvalidFile`].
pub(crate) fn read(bytes: &[u8], err_path: &Path) -> Result<Dataset> {
    prescan(bytes, err_path)?;
    std::panic::catch_unwind(|| read_inner(bytes, err_path)).unwrap_or_else(|_| {
        Err(Error::invalid_file(
            err_path,
            "corrupted TIFF (the TIFF decoder failed)",
        ))
    })
}

fn read_inner(bytes: &[u8], err_path: &Path) -> Result<Dataset> {
    let e = |x| tiff_err(err_path, x);
    let mut limits = Limits::default();
    limits.decoding_buffer_size = bytes.len().saturating_mul(64).clamp(16 << 20, 1 << 32);
    limits.intermediate_buffer_size = limits.decoding_buffer_size;
    let mut dec = Decoder::new(Cursor::new(bytes))
        .map_err(e)?
        .with_limits(limits);
    let (w, h) = dec.dimensions().map_err(e)?;
    // The `tiff` crate (0.10) does not decode palette images: those are read here.
    let palette_bits = palette_bits(&mut dec).map_err(e)?;
    let color = match palette_bits {
        Some(bits) => ColorType::Palette(bits),
        None => dec.colortype().map_err(e)?,
    };
    let samples = match color {
        ColorType::Gray(_) | ColorType::Palette(_) => 1,
        ColorType::RGB(8 | 16) => 3,
        c => {
            return Err(Error::Unsupported {
                what: format!("TIFF colour type {c:?} (grey-level, palette and RGB images only)"),
            });
        }
    };
    let mut tags = TagValue::group();
    let mut skipped = 0usize;
    for t in dec.tag_iter() {
        // A malformed private tag (vendors write some) is skipped, not fatal.
        let Ok((tag, v)) = t else {
            skipped += 1;
            continue;
        };
        let name = match tag {
            Tag::Unknown(n) => n.to_string(),
            t => format!("{t:?}"),
        };
        if !matches!(
            tag,
            Tag::StripOffsets | Tag::StripByteCounts | Tag::TileOffsets | Tag::TileByteCounts
        ) {
            tags.push(name, tag_value(v));
        }
    }
    if skipped > 0 {
        log::warn!(
            "{}: {skipped} unreadable TIFF tags skipped",
            err_path.display()
        );
    }
    for code in [
        65003u16, 65004, 65005, 65006, 65007, 65008, 65009, 65010, 65011, 65012, 65013, 65014,
    ] {
        if tags.get(&code.to_string()).is_none()
            && let Ok(Some(v)) = dec.find_tag(Tag::Unknown(code))
        {
            tags.push(code.to_string(), tag_value(v));
        }
    }
    let num = |tags: &TagValue, n: &str| tags.get(n).and_then(TagValue::as_f64);
    let txt = |tags: &TagValue, n: &str| tags.get(n).and_then(TagValue::as_str).map(str::to_string);
    let mut data = Vec::new();
    let mut dtype = DType::U8;
    let mut pages = 0usize;
    loop {
        let same = dec.dimensions().map_err(e)? == (w, h)
            && match palette_bits {
                Some(bits) => palette_bits_of_page(&mut dec).map_err(e)? == Some(bits),
                None => dec.colortype().map_err(e)? == color,
            };
        if same {
            dtype = match palette_bits {
                Some(bits) => read_palette_page(&mut dec, bytes, bits, err_path, &mut data)?,
                None => append(dec.read_image().map_err(e)?, &mut data),
            };
            pages += 1;
        }
        if !dec.more_images() || pages >= MAX_PAGES {
            break;
        }
        dec.next_image().map_err(e)?;
    }
    let (w, h) = (w as usize, h as usize);
    if Some(data.len())
        != pages
            .checked_mul(w * h)
            .and_then(|n| n.checked_mul(samples))
    {
        return Err(Error::invalid_file(
            err_path,
            format!(
                "TIFF pages decode to {} values, expected {pages} x {h} x {w} x {samples}",
                data.len()
            ),
        ));
    }
    let palette = match color {
        ColorType::Palette(bits) => Some(colour_map(&mut dec, bits, err_path)?),
        _ => None,
    };
    // Calibration.
    let description = txt(&tags, "ImageDescription").unwrap_or_default();
    let ij: Vec<(String, String)> = if description.starts_with("ImageJ=") {
        description
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    } else {
        Vec::new()
    };
    let ij_get = |k: &str| ij.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let unit_name = |u: String| match u.as_str() {
        "micron" | "um" | "microns" | "micrometer" => "µm".to_string(),
        "nanometer" => "nm".to_string(),
        "angstrom" => "Å".to_string(),
        "second" => "s".to_string(),
        "1/nanometer" => "1/nm".to_string(),
        "A" => "Å".to_string(),
        "" | "pixel" | "pixels" => "px".to_string(),
        _ => u,
    };
    let (mut x, mut y, mut z);
    if let Some(sx) = num(&tags, "65009") {
        // 65003.. hold short units (often with a non-ASCII µ the decoder rejects); 65012.. the
        // spelled-out names.
        let unit = |short: &str, long: &str| txt(&tags, short).or_else(|| txt(&tags, long));
        let ax = |s: Option<f64>, o: &str, u: Option<String>, name: &str, n: usize| {
            Axis::new(
                name,
                n,
                sane_scale(s.unwrap_or(1.0)),
                sane_offset(num(&tags, o).unwrap_or(0.0)),
                unit_name(u.unwrap_or_default()),
            )
        };
        x = ax(Some(sx), "65006", unit("65003", "65012"), "x", w);
        y = ax(num(&tags, "65010"), "65007", unit("65004", "65013"), "y", h);
        z = ax(
            num(&tags, "65011"),
            "65008",
            unit("65005", "65014"),
            "frame",
            pages,
        );
    } else {
        x = Axis::pixels("x", w);
        y = Axis::pixels("y", h);
        z = Axis::pixels("frame", pages);
        if let Some(unit) = ij_get("unit") {
            let units = unit_name(unit);
            let res = |n: &str| num(&tags, n).filter(|r| *r > 0.0).map(|r| 1.0 / r);
            x = Axis::new(
                "x",
                w,
                sane_scale(res("XResolution").unwrap_or(1.0)),
                0.0,
                &*units,
            );
            y = Axis::new(
                "y",
                h,
                sane_scale(res("YResolution").unwrap_or(1.0)),
                0.0,
                &*units,
            );
            if let Some(s) = ij_get("spacing").and_then(|s| s.parse::<f64>().ok()) {
                z = Axis::new("frame", pages, sane_scale(s), 0.0, &*units);
            }
        } else if let Some(s) = ij_get("spacing").and_then(|s| s.parse::<f64>().ok()) {
            z.scale = sane_scale(s);
        }
    }
    let (mut shape, mut axes, nav_dims) = if pages == 1 {
        (vec![h, w], vec![y, x], 0)
    } else {
        (vec![pages, h, w], vec![z, y, x], 1)
    };
    let components = if samples == 3 {
        Components::Rgb
    } else {
        Components::Scalar
    };
    if let Some(channel) = components.axis() {
        shape.push(channel.size);
        axes.push(channel);
    }
    let array = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|_| Error::ShapeMismatch {
        expected: shape.clone(),
        found: vec![pages * w * h],
    })?;
    let cube = Hypercube::with_axes(array, axes.clone(), nav_dims)?;
    let title = file_title(err_path);
    let metadata = Metadata {
        title: Some(title.clone()),
        acquisition_date: txt(&tags, "DateTime"),
        microscope: txt(&tags, "Model"),
        ..Metadata::default()
    };
    let mut signal_tags = tags.clone();
    if let Some(map) = palette.filter(|m| m[0].len() <= MAX_INLINE_ARRAY) {
        let [r, g, b] = map.map(|c| TagValue::Numbers(c.iter().map(|&v| f64::from(v)).collect()));
        // Replaces the file tag's long-array stub of the same name.
        if let TagValue::Group(entries) = &mut signal_tags {
            entries.retain(|(name, _)| name != "ColorMap");
        }
        signal_tags.push(
            "ColorMap",
            TagValue::Group(vec![
                ("red".into(), r),
                ("green".into(), g),
                ("blue".into(), b),
            ]),
        );
    }
    Ok(Dataset {
        format: Format::Tiff,
        signals: vec![Signal {
            title,
            axes,
            nav_dims,
            original_dtype: dtype,
            data: SignalData::Loaded(cube),
            components,
            metadata,
            tags: signal_tags,
        }],
        tags,
    })
}

/// Bits per index of the first page when it is a palette image (`PhotometricInterpretation`
/// 3), else `None`.
fn palette_bits<R: std::io::Read + std::io::Seek>(
    dec: &mut Decoder<R>,
) -> tiff::TiffResult<Option<u8>> {
    palette_bits_of_page(dec)
}

/// As [`palette_bits`] for the decoder's current page.
fn palette_bits_of_page<R: std::io::Read + std::io::Seek>(
    dec: &mut Decoder<R>,
) -> tiff::TiffResult<Option<u8>> {
    if dec.find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)? != Some(3) {
        return Ok(None);
    }
    let bits = dec
        .find_tag_unsigned_vec::<u16>(Tag::BitsPerSample)?
        .unwrap_or_else(|| vec![1]);
    // An unreadable depth becomes 0 and is rejected by the page reader.
    Ok(Some(match bits.as_slice() {
        [b] => u8::try_from(*b).unwrap_or(0),
        _ => 0,
    }))
}

/// Appends the colour indices of the current page of an uncompressed, stripped palette image
/// (1, 2, 4, 8 or 16 bits per index, rows padded to whole bytes, most significant bits first)
/// to `out`. Every strip is checked to lie inside the file before it is read.
fn read_palette_page<R: std::io::Read + std::io::Seek>(
    dec: &mut Decoder<R>,
    bytes: &[u8],
    bits: u8,
    err_path: &Path,
    out: &mut Vec<f32>,
) -> Result<DType> {
    let e = |x| tiff_err(err_path, x);
    let bad = |r: String| Error::invalid_file(err_path, format!("palette TIFF: {r}"));
    if !matches!(bits, 1 | 2 | 4 | 8 | 16) {
        return Err(Error::Unsupported {
            what: format!("palette TIFF with {bits} bits per index"),
        });
    }
    let samples = dec
        .find_tag_unsigned::<u16>(Tag::SamplesPerPixel)
        .map_err(e)?
        .unwrap_or(1);
    let compression = dec
        .find_tag_unsigned::<u16>(Tag::Compression)
        .map_err(e)?
        .unwrap_or(1);
    if samples != 1 || compression != 1 {
        return Err(Error::Unsupported {
            what: format!(
                "palette TIFF with {samples} samples per pixel and compression {compression} \
                 (uncompressed single-sample palettes only)"
            ),
        });
    }
    if dec.find_tag(Tag::TileOffsets).map_err(e)?.is_some() {
        return Err(Error::Unsupported {
            what: "tiled palette TIFF".into(),
        });
    }
    let (w, h) = dec.dimensions().map_err(e)?;
    let (w, h) = (w as usize, h as usize);
    let rows_per_strip = dec
        .find_tag_unsigned::<u64>(Tag::RowsPerStrip)
        .map_err(e)?
        .map_or(h, |r| usize::try_from(r).unwrap_or(usize::MAX).min(h))
        .max(1);
    let offsets = dec
        .find_tag_unsigned_vec::<u64>(Tag::StripOffsets)
        .map_err(e)?
        .ok_or_else(|| bad("no StripOffsets".into()))?;
    let bits = usize::from(bits);
    let stride = w
        .checked_mul(bits)
        .map(|b| b.div_ceil(8))
        .ok_or_else(|| bad(format!("width {w} overflows")))?;
    let n_strips = h.div_ceil(rows_per_strip);
    if offsets.len() < n_strips {
        return Err(bad(format!(
            "{} strip offsets for {n_strips} strips of {rows_per_strip} rows",
            offsets.len()
        )));
    }
    // The page must fit in the file before anything is allocated.
    let page_bytes = stride
        .checked_mul(h)
        .filter(|&n| n <= bytes.len())
        .ok_or_else(|| bad(format!("{h} rows of {stride} bytes exceed the file")))?;
    out.reserve(page_bytes.saturating_mul(8) / bits);
    let big = bytes.starts_with(b"MM");
    for (s, &offset) in offsets.iter().take(n_strips).enumerate() {
        let rows = rows_per_strip.min(h - s * rows_per_strip);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let strip = start
            .checked_add(rows * stride)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| bad(format!("strip {s} at offset {offset} is past the end")))?;
        for row in strip.chunks_exact(stride) {
            match bits {
                8 => out.extend(row.iter().map(|&v| f32::from(v))),
                16 => out.extend(row.chunks_exact(2).map(|c| {
                    f32::from(if big {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    })
                })),
                _ => {
                    let per_byte = 8 / bits;
                    let mask = (1u8 << bits) - 1;
                    out.extend(
                        row.iter()
                            .flat_map(|&byte| {
                                (0..per_byte).map(move |k| (byte >> (8 - bits * (k + 1))) & mask)
                            })
                            .take(w)
                            .map(f32::from),
                    );
                }
            }
        }
    }
    Ok(if bits == 16 { DType::U16 } else { DType::U8 })
}

/// The colour map of a palette image: `2^bits` red, green and blue values (16-bit).
fn colour_map<R: std::io::Read + std::io::Seek>(
    dec: &mut Decoder<R>,
    bits: u8,
    err_path: &Path,
) -> Result<[Vec<u16>; 3]> {
    let bad = |r: String| Error::invalid_file(err_path, r);
    if bits == 0 || bits > 16 {
        return Err(bad(format!("palette TIFF with {bits} bits per index")));
    }
    let n = 1usize << bits;
    let values: Vec<u16> = match dec.find_tag(Tag::ColorMap) {
        Ok(Some(Value::List(l))) => l
            .iter()
            .map(|v| value_f64(v).filter(|x| (0.0..=65535.0).contains(x)))
            .map(|v| v.map(|x| x as u16))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("palette TIFF: colour map entries are not 16-bit".into()))?,
        _ => return Err(bad("palette TIFF without a ColorMap tag".into())),
    };
    if values.len() != 3 * n {
        return Err(bad(format!(
            "palette TIFF: colour map holds {} values, {bits}-bit indices need 3 x {n}",
            values.len()
        )));
    }
    Ok([
        values[..n].to_vec(),
        values[n..2 * n].to_vec(),
        values[2 * n..].to_vec(),
    ])
}

/// Maps the colour indices of a palette TIFF signal (as [`open`](super::open) reads it)
/// through the colour map in its tags (`ColorMap/{red, green, blue}`) to an RGB signal,
/// `[(frame,) y, x, 3]` with [`Components::Rgb`], in the colour map's 16-bit units (0–65535).
/// Axes, metadata and tags are kept.
///
/// ```
/// use stem_core::io::{Components, open, tiff::palette_to_rgb};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("palette.tif");
/// # // A 2 x 3 palette TIFF with 8-bit indices: 0 = black, 1 = red.
/// # let mut f = Vec::new();
/// # f.extend_from_slice(b"II*\0");
/// # f.extend_from_slice(&8u32.to_le_bytes());
/// # let entries: [(u16, u16, u32, u32); 9] = [
/// #     (256, 3, 1, 3), (257, 3, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 3),
/// #     (273, 4, 1, 122), (278, 3, 1, 2), (279, 4, 1, 6), (320, 3, 768, 128)];
/// # f.extend_from_slice(&(entries.len() as u16).to_le_bytes());
/// # for (tag, typ, count, value) in entries {
/// #     f.extend_from_slice(&tag.to_le_bytes());
/// #     f.extend_from_slice(&typ.to_le_bytes());
/// #     f.extend_from_slice(&count.to_le_bytes());
/// #     f.extend_from_slice(&value.to_le_bytes());
/// # }
/// # f.extend_from_slice(&0u32.to_le_bytes());
/// # assert_eq!(f.len(), 122);
/// # f.extend_from_slice(&[0, 1, 0, 1, 0, 1]); // rows 0 1 0 / 1 0 1
/// # let mut map = vec![0u16; 768];
/// # map[1] = 65535; // red of index 1
/// # for v in map { f.extend_from_slice(&v.to_le_bytes()); }
/// # std::fs::write(&path, &f)?;
/// let indexed = open(&path)?.signals.remove(0);
/// assert_eq!(indexed.shape(), vec![2, 3]);
/// let rgb = palette_to_rgb(&indexed)?;
/// assert_eq!(rgb.components, Components::Rgb);
/// assert_eq!(rgb.shape(), vec![2, 3, 3]);
/// let cube = rgb.to_hypercube()?;
/// assert_eq!(cube.data()[[0, 1, 0]], 65535.0); // index 1 = red
/// assert_eq!(cube.data()[[0, 0, 0]], 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if the signal has no colour map in its tags, already has
/// components, or holds an index outside the colour map; the signal's read errors.
pub fn palette_to_rgb(signal: &Signal) -> Result<Signal> {
    let channel = |name: &str| match signal.tags.get_path(&format!("ColorMap/{name}")) {
        Some(TagValue::Numbers(v)) => Ok(v.as_slice()),
        _ => Err(Error::invalid(
            "signal",
            format!(
                "{:?} has no ColorMap/{name} tag (not a palette TIFF image)",
                signal.title
            ),
        )),
    };
    let (r, g, b) = (channel("red")?, channel("green")?, channel("blue")?);
    if signal.components.has_axis() {
        return Err(Error::invalid(
            "signal",
            format!("{:?} already has a component axis", signal.title),
        ));
    }
    let n = r.len().min(g.len()).min(b.len());
    let cube = signal.to_hypercube()?;
    let mut out = Vec::with_capacity(cube.data().len() * 3);
    for &v in cube.data() {
        let i = v as usize;
        if v < 0.0 || v.fract() != 0.0 || i >= n {
            return Err(Error::invalid(
                "signal",
                format!("colour index {v} outside the {n}-entry colour map"),
            ));
        }
        out.extend([r[i] as f32, g[i] as f32, b[i] as f32]);
    }
    let mut shape = signal.shape();
    shape.push(3);
    let mut axes = signal.axes.clone();
    axes.extend(Components::Rgb.axis());
    let data = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|_| Error::ShapeMismatch {
        expected: shape.clone(),
        found: vec![cube.data().len() * 3],
    })?;
    Ok(Signal {
        title: signal.title.clone(),
        axes: axes.clone(),
        nav_dims: signal.nav_dims,
        original_dtype: DType::U16,
        data: SignalData::Loaded(Hypercube::with_axes(data, axes, signal.nav_dims)?),
        components: Components::Rgb,
        metadata: signal.metadata.clone(),
        tags: signal.tags.clone(),
    })
}

/// Writes a calibrated `f32` image (`[y, x]`, in `image` order) to an uncompressed TIFF that
/// ImageJ, tifffile and [`open`](super::open) read back with its calibration.
///
/// The calibration follows the ImageJ convention: `ImageDescription` `"ImageJ=1.11a\nunit=..."`
/// and `XResolution` / `YResolution` = pixels per unit (`1 / scale`, as a rational with
/// denominator 10⁶). Units are written as given (`"µm"` as `micron`); offsets are not stored
/// (ImageJ has none in TIFF). Uncalibrated axes (`px`) write no unit.
///
/// ```
/// use ndarray::Array2;
/// use stem_core::Axis;
/// use stem_core::io::{open, tiff::write_tiff};
///
/// let path = std::env::temp_dir().join(format!("stem_tiff_doc_{}.tif", std::process::id()));
/// let image = Array2::from_shape_fn((3, 4), |(y, x)| (y * 4 + x) as f32);
/// let axes = [Axis::new("y", 3, 0.25, 0.0, "nm"), Axis::new("x", 4, 0.25, 0.0, "nm")];
/// write_tiff(&path, image.view(), &axes)?;
/// let ds = open(&path)?;
/// let s = ds.first()?;
/// assert_eq!(s.shape(), vec![3, 4]);
/// assert!((s.axes[1].scale - 0.25).abs() < 1e-6);
/// assert_eq!(s.axes[1].units, "nm");
/// assert_eq!(s.to_hypercube()?.data()[[2, 3]], 11.0);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), stem_core::Error>(())
/// ```
///
/// # Errors
/// * [`Error::ShapeMismatch`] if `axes` are not two axes of the image's sizes;
/// * [`Error::InvalidParameter`] for a non-positive or non-finite scale, or an image dimension
///   above `u32::MAX`;
/// * [`Error::Io`] if the file cannot be written.
pub fn write_tiff(path: impl AsRef<Path>, image: ArrayView2<'_, f32>, axes: &[Axis]) -> Result<()> {
    let path = path.as_ref();
    let (h, w) = image.dim();
    let sizes: Vec<usize> = axes.iter().map(|a| a.size).collect();
    if sizes != [h, w] {
        return Err(Error::ShapeMismatch {
            expected: vec![h, w],
            found: sizes,
        });
    }
    for a in axes {
        if !(a.scale.is_finite() && a.scale > 0.0) {
            return Err(Error::invalid(
                "axes",
                format!(
                    "axis {} has scale {}, must be finite and > 0",
                    a.name, a.scale
                ),
            ));
        }
    }
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            return Err(Error::invalid(
                "image",
                format!("{h} x {w} exceeds TIFF limits"),
            ));
        }
    };
    let io = |e: std::io::Error| Error::io(path, e);
    let terr = |e: tiff::TiffError| match e {
        tiff::TiffError::IoError(i) => Error::io(path, i),
        e => Error::io(path, std::io::Error::other(e.to_string())),
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut enc = TiffEncoder::new(std::io::BufWriter::new(file)).map_err(terr)?;
    let data: Vec<f32> = image.iter().copied().collect();
    let mut img = enc
        .new_image::<colortype::Gray32Float>(wu, hu)
        .map_err(terr)?;
    let calibrated = axes[1].is_calibrated();
    let units = match axes[1].units.as_str() {
        "µm" | "um" => "micron".to_string(),
        u => u.to_string(),
    };
    let description = if calibrated {
        format!("ImageJ=1.11a\nunit={units}\n")
    } else {
        "ImageJ=1.11a\n".to_string()
    };
    img.encoder()
        .write_tag(Tag::ImageDescription, description.as_str())
        .map_err(terr)?;
    let rational = |scale: f64| {
        let ppu = 1.0 / scale;
        Rational {
            n: (ppu * 1e6).round().clamp(1.0, f64::from(u32::MAX)) as u32,
            d: 1_000_000,
        }
    };
    if calibrated {
        img.resolution_unit(ResolutionUnit::None);
        img.x_resolution(rational(axes[1].scale));
        img.y_resolution(rational(axes[0].scale));
    }
    img.write_data(&data).map_err(terr)?;
    Ok(())
}
