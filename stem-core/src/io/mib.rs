//! Quantum Detectors Merlin `.mib` frame files, with or without the acquisition `.hdr`.
//!
//! Every frame is an ASCII header followed by big-endian pixels. The header is a comma-separated
//! list (Merlin manual): `MQ1, frame number, header bytes, chips, width, height, pixel depth
//! (U08 / U16 / U32 / R64), sensor layout, chip select, timestamp, shutter time (s), counter,
//! colour mode, gain mode, thresholds...`. All frames are assumed to share the first header's
//! geometry; the frame count is the file length over the record size.
//!
//! Navigation shape: from the `.hdr` beside the file (`Frames per Trigger (Number)` = scan
//! width, when it divides the frame count); without one, a square scan when the frame count is
//! a perfect square, else a 1-D series. Raw-mode `R64` files (packed 1/6/12/24-bit counters)
//! give [`Error::Unsupported`].

use super::common::{OpenOptions, RawBlock, file_title};
use super::dataset::{Dataset, Format, Metadata, TagValue};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, Endianness};
use std::path::Path;

/// Longest frame header accepted, in bytes (real headers are 384 bytes, or 768 for quads).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// Whether `bytes` start like a MIB frame header.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"MQ1,")
}

/// The frame header fields of the first frame.
fn header_fields(bytes: &[u8], err_path: &Path) -> Result<(Vec<String>, usize)> {
    let bad = |r: String| Error::invalid_file(err_path, r);
    if !sniff(bytes) {
        return Err(bad("not a MIB file (no MQ1 header)".into()));
    }
    let head = &bytes[..bytes.len().min(64)];
    let text: String = head.iter().map(|&b| char::from(b)).collect();
    let size: usize = text
        .split(',')
        .nth(2)
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("MIB header has no header size field".into()))?;
    if !(16..=MAX_HEADER_BYTES).contains(&size) || size > bytes.len() {
        return Err(bad(format!(
            "MIB header size {size} is implausible for a {}-byte file",
            bytes.len()
        )));
    }
    let text: String = bytes[..size]
        .iter()
        .map(|&b| char::from(b))
        .filter(|&c| c != '\0')
        .collect();
    Ok((
        text.split(',').map(|s| s.trim().to_string()).collect(),
        size,
    ))
}

/// Navigation shape from a `.hdr` text, if it determines one for `n_frames`.
fn nav_from_hdr(hdr: &str, n_frames: usize) -> Option<Vec<usize>> {
    let value = |key: &str| -> Option<usize> {
        hdr.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
    };
    let per_trigger = value("Frames per Trigger")?;
    (per_trigger > 1 && n_frames % per_trigger == 0)
        .then(|| vec![n_frames / per_trigger, per_trigger])
}

/// Reads a MIB file held in `bytes`; `hdr` is the text of the `.hdr` file when there is one.
pub(crate) fn read(
    bytes: &[u8],
    path: Option<&Path>,
    hdr: Option<&str>,
    options: &OpenOptions,
    err_path: &Path,
) -> Result<Dataset> {
    let bad = |r: String| Error::invalid_file(err_path, r);
    let (fields, header_bytes) = header_fields(bytes, err_path)?;
    let field = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
    let dim = |i: usize| -> Result<usize> {
        field(i)
            .parse::<usize>()
            .ok()
            .filter(|&v| (1..=1 << 16).contains(&v))
            .ok_or_else(|| {
                bad(format!(
                    "MIB header field {i} = {:?} is not a size",
                    field(i)
                ))
            })
    };
    let (width, height) = (dim(4)?, dim(5)?);
    let dtype = match field(6) {
        "U08" | "U8" => DType::U8,
        "U16" => DType::U16,
        "U32" => DType::U32,
        "U64" => DType::U64,
        other => {
            return Err(Error::Unsupported {
                what: format!("MIB pixel depth {other:?} (raw-mode R64 data)"),
            });
        }
    };
    let record = header_bytes + width * height * dtype.size_bytes();
    let n_frames = bytes.len() / record;
    if n_frames == 0 {
        return Err(bad(format!(
            "MIB file of {} bytes is shorter than one {record}-byte frame record",
            bytes.len()
        )));
    }
    if bytes.len() % record != 0 {
        log::warn!(
            "{}: {} trailing bytes after {n_frames} MIB frames ignored",
            err_path.display(),
            bytes.len() % record
        );
    }
    let nav = hdr
        .and_then(|h| nav_from_hdr(h, n_frames))
        .unwrap_or_else(|| {
            let s = (n_frames as f64).sqrt().round() as usize;
            if s > 1 && s * s == n_frames {
                vec![s, s]
            } else {
                vec![n_frames]
            }
        });
    let mut axes: Vec<Axis> = if nav.len() == 2 {
        vec![
            Axis::pixels("scan_y", nav[0]),
            Axis::pixels("scan_x", nav[1]),
        ]
    } else {
        vec![Axis::pixels("frame", nav[0])]
    };
    axes.push(Axis::pixels("k_y", height));
    axes.push(Axis::pixels("k_x", width));
    let mut tags = TagValue::group();
    for (i, f) in fields.iter().enumerate() {
        tags.push(format!("field{i}"), TagValue::Text(f.clone()));
    }
    if let Some(h) = hdr {
        let mut g = TagValue::group();
        for l in h.lines() {
            if let Some((k, v)) = l.split_once(':') {
                g.push(k.trim(), TagValue::Text(v.trim().to_string()));
            }
        }
        tags.push("hdr", g);
    }
    let title = file_title(err_path);
    let metadata = Metadata {
        title: Some(title.clone()),
        dwell_time_us: field(10).parse::<f64>().ok().map(|s| s * 1e6),
        acquisition_date: Some(field(9).to_string()).filter(|s| !s.is_empty()),
        ..Metadata::default()
    };
    let mut file_shape = nav.clone();
    file_shape.extend([height, width]);
    let block = RawBlock {
        title,
        file_shape,
        axes,
        nav_dims: nav.len(),
        permutation: None,
        dtype,
        endianness: Endianness::Big,
        offset: 0,
        frame_header_bytes: header_bytes as u64,
        metadata,
        tags: tags.clone(),
    };
    Ok(Dataset {
        format: Format::Mib,
        signals: vec![block.into_signal(bytes, path, options, err_path)?],
        tags,
    })
}
