//! FEI / Thermo Fisher TIA series files (`.ser`) with the `.emi` metadata beside them.
//!
//! Layout (following Dr. Peter Ercius' public description of the SER format), little-endian:
//! `ByteOrder u16 = 0x4949`, `SeriesID u16 = 0x0197`, `SeriesVersion u16` (0x0210: 32-bit
//! offsets, 0x0220: 64-bit), `DataTypeID u32` (0x4120 1-D spectra, 0x4122 2-D images),
//! `TagTypeID u32`, `TotalNumberElements u32`, `ValidNumberElements u32`, `OffsetArrayOffset`,
//! `NumberDimensions u32`, then per navigation dimension `size u32, offset f64, delta f64,
//! element u32, description (u32 length + chars), units (u32 length + chars)`. At
//! `OffsetArrayOffset` the data-offset array (one offset per element). Each element starts with
//! its calibration (`offset f64, delta f64, element u32` per axis), a `DataType u16` (1 u8,
//! 2 u16, 3 u32, 4 i8, 5 i16, 6 i32, 7 f32, 8 f64, 9/10 complex) and the length(s), then the
//! data (x fastest). Coordinate of index `i` is `offset + (i - element) * delta`; lengths in
//! metres are converted to nm (image elements whose step exceeds 1 are diffraction patterns in
//! 1/m, converted to 1/nm). Image rows are stored bottom-up and are flipped to `[y, x]` top-down.
//!
//! The `.emi` file's XML `<ObjectInfo>` block gives the accelerating voltage, magnification,
//! microscope and acquisition date; its `<Data><Label>..<Value>..<Unit>` entries are kept in the
//! tags. All elements are loaded (TIA files are small); every element must have the first's
//! type and shape.

use super::common::{Reader, decode_f32, sane_offset, sane_scale};
use super::dataset::{Components, Dataset, Format, Metadata, Signal, SignalData, TagValue};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, Endianness};
use crate::hypercube::Hypercube;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

const LE: Endianness = Endianness::Little;

/// Whether `bytes` start like a SER file.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x49, 0x49, 0x97, 0x01])
}

fn dtype(code: u16) -> Option<DType> {
    Some(match code {
        1 => DType::U8,
        2 => DType::U16,
        3 => DType::U32,
        4 => DType::I8,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::F32,
        8 => DType::F64,
        _ => return None,
    })
}

/// Length units: metres become nm.
fn unit(scale: f64, offset: f64, units: &str) -> (f64, f64, String) {
    match units {
        // Image elements carry no units: a pixel larger than 1 m is a reciprocal (1/m)
        // diffraction calibration.
        "m" if scale.abs() > 1.0 => (scale * 1e-9, offset * 1e-9, "1/nm".into()),
        "m" | "meters" => (scale * 1e9, offset * 1e9, "nm".into()),
        "1/m" => (scale * 1e-9, offset * 1e-9, "1/nm".into()),
        "" => (scale, offset, "px".into()),
        u => (scale, offset, u.to_string()),
    }
}

fn text(r: &mut Reader<'_>) -> Result<String> {
    let n = r.u32(LE)?;
    Ok(r.take(u64::from(n))?
        .iter()
        .map(|&b| char::from(b))
        .collect())
}

/// One element's calibrated axis: `offset, delta, element` → axis.
fn cal_axis(r: &mut Reader<'_>, name: &str, units: &str) -> Result<(f64, f64, String, String)> {
    let offset = r.f64(LE)?;
    let delta = r.f64(LE)?;
    let element = r.i32(LE)?;
    let (scale, off, u) = unit(
        sane_scale(delta),
        sane_offset(offset - f64::from(element) * delta),
        units,
    );
    Ok((scale, off, u, name.to_string()))
}

/// Metadata from the `.emi` text (its XML `<ObjectInfo>` block).
pub(crate) fn emi_metadata(emi: &[u8]) -> (Metadata, TagValue) {
    let s = String::from_utf8_lossy(emi);
    let mut md = Metadata::default();
    let mut tags = TagValue::group();
    let between = |s: &str, open: &str, close: &str| -> Option<String> {
        let i = s.find(open)? + open.len();
        let j = s[i..].find(close)? + i;
        Some(s[i..j].to_string())
    };
    if let Some(v) = between(&s, "<AcceleratingVoltage>", "</AcceleratingVoltage>") {
        md.beam_energy_kev = v.trim().parse::<f64>().ok().map(|v| v / 1000.0);
        tags.push("AcceleratingVoltage", TagValue::Text(v));
    }
    md.acquisition_date = between(&s, "<AcquireDate>", "</AcquireDate>");
    let mut rest = s.as_ref();
    let mut n = 0;
    while let Some(i) = rest.find("<Data><Label>") {
        n += 1;
        if n > 10_000 {
            break;
        }
        rest = &rest[i + 13..];
        let Some(label) = between(rest, "", "</Label>") else {
            break;
        };
        let value = between(rest, "<Value>", "</Value>").unwrap_or_default();
        let num = value.trim().parse::<f64>().ok();
        match label.as_str() {
            "Magnification" => md.magnification = num,
            "Microscope" => md.microscope = Some(value.clone()),
            "Camera length" => md.camera_length_mm = num.map(|m| m * 1000.0),
            "Dwell time" | "Dwell Time Path" => md.dwell_time_us = num.map(|s| s * 1e6),
            _ => {}
        }
        tags.push(label, TagValue::Text(value));
    }
    (md, tags)
}

/// TIA stores images bottom row first: reverse the rows of a row-major `[y, x]` frame.
fn flip_rows(frame: &mut [f32], width: usize) {
    let rows = frame.len() / width.max(1);
    for r in 0..rows / 2 {
        let (top, bottom) = frame.split_at_mut((rows - 1 - r) * width);
        top[r * width..(r + 1) * width].swap_with_slice(&mut bottom[..width]);
    }
}

/// Reads a SER file held in `bytes`, with `emi` the contents of its `.emi` file when known.
pub(crate) fn read(
    bytes: &[u8],
    emi: Option<&[u8]>,
    title: &str,
    err_path: &Path,
) -> Result<Dataset> {
    let mut r = Reader::new(bytes, err_path);
    let (order, id) = (r.u16(LE)?, r.u16(LE)?);
    if (order, id) != (0x4949, 0x0197) {
        return Err(r.err("not a SER file (bad byte-order / series id)"));
    }
    let version = r.u16(LE)?;
    let data_type_id = r.u32(LE)?;
    let tag_type_id = r.u32(LE)?;
    let total = r.u32(LE)?;
    let valid = r.u32(LE)?;
    let offsets_at = if version >= 0x220 {
        r.u64(LE)?
    } else {
        u64::from(r.u32(LE)?)
    };
    let n_dims = r.u32(LE)?;
    if n_dims > 8 || valid > total || valid == 0 {
        return Err(r.err(format!(
            "SER header: {n_dims} dimensions, {valid} valid of {total} elements"
        )));
    }
    let mut tags = TagValue::group();
    for (n, v) in [
        ("SeriesVersion", u64::from(version)),
        ("DataTypeID", u64::from(data_type_id)),
        ("TagTypeID", u64::from(tag_type_id)),
        ("TotalNumberElements", u64::from(total)),
        ("ValidNumberElements", u64::from(valid)),
    ] {
        tags.push(n, TagValue::Int(v as i64));
    }
    let mut nav_axes = Vec::new();
    for d in 0..n_dims {
        let size = r.u32(LE)? as usize;
        let offset = r.f64(LE)?;
        let delta = r.f64(LE)?;
        let element = r.i32(LE)?;
        let desc = text(&mut r)?;
        let units = text(&mut r)?;
        let (scale, off, u) = unit(
            sane_scale(delta),
            sane_offset(offset - f64::from(element) * delta),
            &units,
        );
        let name = if desc.is_empty() {
            format!("nav{d}")
        } else {
            desc
        };
        nav_axes.push(Axis::new(name, size, scale, off, u));
    }
    // Navigation axes are stored fastest first; numpy order is the reverse.
    nav_axes.reverse();
    if let [y, x] = &mut nav_axes[..] {
        y.name = "scan_y".into();
        x.name = "scan_x".into();
    }
    let nav_count = nav_axes
        .iter()
        .try_fold(1usize, |a, x| a.checked_mul(x.size))
        .unwrap_or(usize::MAX);
    let n_elem = valid as usize;
    if nav_count != n_elem {
        // Incomplete acquisition or unusual layout: a flat series of the valid elements.
        nav_axes = vec![Axis::pixels("frame", n_elem)];
    }
    let word = if version >= 0x220 { 8 } else { 4 };
    if u64::from(total).saturating_mul(word) > bytes.len() as u64 {
        return Err(r.err(format!(
            "SER offset array of {total} entries exceeds the file"
        )));
    }
    r.seek(offsets_at)?;
    let mut offsets = Vec::with_capacity(n_elem.min(1 << 16));
    for _ in 0..n_elem {
        offsets.push(if word == 8 {
            r.u64(LE)?
        } else {
            u64::from(r.u32(LE)?)
        });
    }
    // The first element fixes type, shape and calibration.
    let mut e = r;
    e.seek(offsets[0])?;
    let (sig_axes, dt) = match data_type_id {
        0x4120 => {
            let (s, o, u, n) = cal_axis(&mut e, "energy", "eV")?;
            let code = e.u16(LE)?;
            let len = e.u32(LE)? as usize;
            (vec![Axis::new(n, len, s, o, u)], code)
        }
        0x4122 => {
            let (sx, ox, ux, _) = cal_axis(&mut e, "x", "m")?;
            let (sy, oy, uy, _) = cal_axis(&mut e, "y", "m")?;
            let code = e.u16(LE)?;
            let nx = e.u32(LE)? as usize;
            let ny = e.u32(LE)? as usize;
            (
                vec![
                    Axis::new("y", ny, sy, oy, uy),
                    Axis::new("x", nx, sx, ox, ux),
                ],
                code,
            )
        }
        other => {
            return Err(e.err(format!(
                "SER DataTypeID {other:#x}, expected 0x4120 or 0x4122"
            )));
        }
    };
    let dtype = dtype(dt).ok_or_else(|| Error::Unsupported {
        what: format!("SER data type {dt} (complex)"),
    })?;
    let header_len = e.pos as u64 - offsets[0];
    let frame_len = sig_axes
        .iter()
        .try_fold(1usize, |a, x| a.checked_mul(x.size))
        .filter(|&n| n > 0)
        .ok_or_else(|| e.err("SER element has an empty or overflowing shape"))?;
    let frame_bytes = (frame_len as u64).saturating_mul(dtype.size_bytes() as u64);
    if frame_bytes.saturating_mul(n_elem as u64) > bytes.len() as u64 {
        return Err(e.err(format!(
            "SER: {n_elem} elements of {frame_bytes} bytes exceed the {}-byte file",
            bytes.len()
        )));
    }
    let mut buf = vec![0.0f32; frame_len * n_elem];
    for (i, (&off, out)) in offsets
        .iter()
        .zip(buf.chunks_exact_mut(frame_len))
        .enumerate()
    {
        let mut e = Reader::new(bytes, err_path);
        e.seek(off)?;
        e.take(header_len - 2 - 4 * (sig_axes.len() as u64))?;
        let code = e.u16(LE)?;
        let mut lens = Vec::new();
        for _ in 0..sig_axes.len() {
            lens.push(e.u32(LE)? as usize);
        }
        let mut expect: Vec<usize> = sig_axes.iter().map(|a| a.size).collect();
        expect.reverse();
        if code != dt || lens != expect {
            return Err(e.err(format!(
                "SER element {i}: type {code} shape {lens:?} differ from the first ({dt}, {expect:?})"
            )));
        }
        decode_f32(dtype, LE, e.take(frame_bytes)?, out);
        if let [x, _] = expect[..] {
            flip_rows(out, x);
        }
    }
    let mut shape: Vec<usize> = nav_axes.iter().map(|a| a.size).collect();
    let nav_dims = if n_elem == 1 { 0 } else { shape.len() };
    if n_elem == 1 {
        shape.clear();
        nav_axes.clear();
    }
    shape.extend(sig_axes.iter().map(|a| a.size));
    let mut axes = nav_axes;
    axes.extend(sig_axes);
    let data = ArrayD::from_shape_vec(IxDyn(&shape), buf).map_err(|_| Error::ShapeMismatch {
        expected: shape.clone(),
        found: vec![frame_len * n_elem],
    })?;
    let cube = Hypercube::with_axes(data, axes.clone(), nav_dims)?;
    let (mut metadata, emi_tags) = emi
        .map(emi_metadata)
        .unwrap_or_else(|| (Metadata::default(), TagValue::group()));
    metadata.title = Some(title.to_string());
    if emi.is_some() {
        tags.push("emi", emi_tags);
    }
    Ok(Dataset {
        format: Format::Ser,
        signals: vec![Signal {
            title: title.to_string(),
            axes,
            nav_dims,
            original_dtype: dtype,
            data: SignalData::Loaded(cube),
            components: Components::Scalar,
            metadata,
            tags: tags.clone(),
        }],
        tags,
    })
}
