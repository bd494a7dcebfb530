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
//! RGB / CMYK / multi-channel images give [`Error::Unsupported`]; palette images are read as
//! their index values. The decoder's buffer limit is bounded by the file size (64× for
//! compressed data, at least 16 MiB), so a small hostile file cannot request a large
//! allocation.

use super::common::{file_title, sane_offset, sane_scale};
use super::dataset::{Dataset, Format, MAX_INLINE_ARRAY, Metadata, Signal, SignalData, TagValue};
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

/// Reads a TIFF file held in `bytes`.
///
/// The `tiff` crate (0.10) panics on some corrupted files (found by the mutation tests, e.g. an
/// empty `SampleFormat` list); such a panic is caught and reported as [`Error::InvalidFile`].
pub(crate) fn read(bytes: &[u8], err_path: &Path) -> Result<Dataset> {
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
    let color = dec.colortype().map_err(e)?;
    match color {
        ColorType::Gray(_) | ColorType::Palette(_) => {}
        c => {
            return Err(Error::Unsupported {
                what: format!("TIFF colour type {c:?} (only grey-level images)"),
            });
        }
    }
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
        let same = dec.dimensions().map_err(e)? == (w, h) && dec.colortype().map_err(e)? == color;
        if same {
            dtype = append(dec.read_image().map_err(e)?, &mut data);
            pages += 1;
        }
        if !dec.more_images() || pages >= MAX_PAGES {
            break;
        }
        dec.next_image().map_err(e)?;
    }
    let (w, h) = (w as usize, h as usize);
    if data.len() != pages * w * h {
        return Err(Error::invalid_file(
            err_path,
            format!(
                "TIFF pages decode to {} values, expected {pages} x {h} x {w}",
                data.len()
            ),
        ));
    }
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
    let (shape, axes, nav_dims) = if pages == 1 {
        (vec![h, w], vec![y, x], 0)
    } else {
        (vec![pages, h, w], vec![z, y, x], 1)
    };
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
    Ok(Dataset {
        format: Format::Tiff,
        signals: vec![Signal {
            title,
            axes,
            nav_dims,
            original_dtype: dtype,
            data: SignalData::Loaded(cube),
            metadata,
            tags: tags.clone(),
        }],
        tags,
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
