//! MRC2014 volumes and image stacks (CCP-EM MRC2014 specification).
//!
//! A 1024-byte header of 4-byte words: `nx, ny, nz` (columns, rows, sections), `mode`,
//! `nxstart..`, `mx, my, mz` (sampling), `cella` (cell size in Å, `f32` × 3), `cellb`,
//! `mapc, mapr, maps` (axis order, 1 2 3 standard), `dmin, dmax, dmean`, `ispg`, `nsymbt`
//! (extended-header bytes), 25 extra words holding `EXTTYP` (bytes 104..108) and `NVERSION`,
//! `origin` (Å, bytes 196..208), `"MAP "` (208), machine stamp (212: `0x44` little-endian,
//! `0x11` big-endian), `rms`, `nlabl` and ten 80-character labels. The data follow the
//! extended header, `x` fastest: numpy shape `[nz, ny, nx]`.
//!
//! Modes read: 0 (`i8`), 1 (`i16`), 2 (`f32`), 6 (`u16`); complex (3, 4), `f16` (12) and
//! 4-bit (101) data give [`Error::Unsupported`]. The pixel size is `cella / m` in Å. A stack
//! (`nz > 1`) is an image series `[z, y, x]`. The extended header is skipped; its type and
//! length are kept in the tags (`EXTTYP`, `nsymbt`).

use super::common::{OpenOptions, RawBlock, Reader, file_title};
use super::dataset::{Dataset, Format, Metadata, TagValue};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, Endianness};
use std::path::Path;

/// Size of the fixed MRC header in bytes.
pub const HEADER_BYTES: u64 = 1024;

/// Whether `bytes` carry the MRC2014 `"MAP "` identifier at byte 208.
pub(crate) fn sniff(bytes: &[u8]) -> bool {
    bytes.get(208..212) == Some(b"MAP ")
}

fn endianness(bytes: &[u8]) -> Endianness {
    match bytes.get(212) {
        Some(0x11) => Endianness::Big,
        Some(0x44) | Some(0x41) => Endianness::Little,
        _ => {
            // No usable stamp: pick the order in which nx is plausible.
            let le = bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_le_bytes)
                .unwrap_or(0);
            if (1..1 << 24).contains(&le) {
                Endianness::Little
            } else {
                Endianness::Big
            }
        }
    }
}

/// Reads an MRC file held in `bytes`.
pub(crate) fn read(
    bytes: &[u8],
    path: Option<&Path>,
    options: &OpenOptions,
    err_path: &Path,
) -> Result<Dataset> {
    let mut r = Reader::new(bytes, err_path);
    if bytes.len() < HEADER_BYTES as usize {
        return Err(r.err(format!(
            "MRC file of {} bytes is shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    let e = endianness(bytes);
    let mut w = [0i32; 24];
    for v in &mut w {
        *v = r.i32(e)?;
    }
    let [nx, ny, nz, mode] = [w[0], w[1], w[2], w[3]];
    let mut f = [0f32; 6];
    r.seek(40)?;
    for v in &mut f {
        *v = r.f32(e)?;
    }
    let nsymbt = w[23];
    r.seek(104)?;
    let exttyp: String = r
        .take(4)?
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| !c.is_control())
        .collect();
    let nversion = r.i32(e)?;
    r.seek(196)?;
    let origin = [r.f32(e)?, r.f32(e)?, r.f32(e)?];
    r.seek(220)?;
    let nlabl = r.i32(e)?.clamp(0, 10) as usize;
    let mut labels = Vec::new();
    for _ in 0..nlabl {
        let l: String = r.take(80)?.iter().map(|&b| char::from(b)).collect();
        labels.push((String::new(), TagValue::Text(l.trim_end().to_string())));
    }
    for (name, v) in [("nx", nx), ("ny", ny), ("nz", nz)] {
        if v <= 0 {
            return Err(r.err(format!("MRC {name} = {v}, must be positive")));
        }
    }
    if nsymbt < 0 {
        return Err(r.err(format!("MRC nsymbt = {nsymbt}, must be >= 0")));
    }
    if (w[16], w[17], w[18]) != (1, 2, 3) && (w[16], w[17], w[18]) != (0, 0, 0) {
        return Err(Error::Unsupported {
            what: format!(
                "MRC axis order mapc/mapr/maps = {}/{}/{} (only 1/2/3)",
                w[16], w[17], w[18]
            ),
        });
    }
    let dtype = match mode {
        0 => DType::I8,
        1 => DType::I16,
        2 => DType::F32,
        6 => DType::U16,
        m => {
            return Err(Error::Unsupported {
                what: format!("MRC mode {m} (complex, float16 or 4-bit data)"),
            });
        }
    };
    let mut tags = TagValue::group();
    let names = [
        "nx", "ny", "nz", "mode", "nxstart", "nystart", "nzstart", "mx", "my", "mz",
    ];
    for (n, v) in names.iter().zip(w) {
        tags.push(*n, TagValue::Int(v.into()));
    }
    for (n, v) in ["cella_x", "cella_y", "cella_z", "alpha", "beta", "gamma"]
        .iter()
        .zip(f)
    {
        tags.push(*n, TagValue::Float(v.into()));
    }
    for (n, i) in [("mapc", 16), ("mapr", 17), ("maps", 18), ("ispg", 22)] {
        tags.push(n, TagValue::Int(w[i].into()));
    }
    tags.push("nsymbt", TagValue::Int(nsymbt.into()));
    tags.push("EXTTYP", TagValue::Text(exttyp));
    tags.push("NVERSION", TagValue::Int(nversion.into()));
    tags.push(
        "origin",
        TagValue::Numbers(origin.iter().map(|&v| f64::from(v)).collect()),
    );
    tags.push("labels", TagValue::Group(labels));
    let pixel = |cell: f32, m: i32| {
        let s = f64::from(cell) / f64::from(m);
        if m > 0 && s.is_finite() && s > 0.0 {
            (s, "Å")
        } else {
            (1.0, "px")
        }
    };
    let (sx, ux) = pixel(f[0], w[7]);
    let (sy, uy) = pixel(f[1], w[8]);
    let (sz, uz) = pixel(f[2], w[9]);
    let (nx, ny, nz) = (nx as usize, ny as usize, nz as usize);
    let (file_shape, axes, nav_dims) = if nz == 1 {
        (
            vec![ny, nx],
            vec![
                Axis::new("y", ny, sy, 0.0, uy),
                Axis::new("x", nx, sx, 0.0, ux),
            ],
            0,
        )
    } else {
        (
            vec![nz, ny, nx],
            vec![
                Axis::new("z", nz, sz, 0.0, uz),
                Axis::new("y", ny, sy, 0.0, uy),
                Axis::new("x", nx, sx, 0.0, ux),
            ],
            1,
        )
    };
    let title = file_title(err_path);
    let block = RawBlock {
        metadata: Metadata {
            title: Some(title.clone()),
            ..Metadata::default()
        },
        title,
        file_shape,
        axes,
        nav_dims,
        permutation: None,
        dtype,
        endianness: e,
        offset: HEADER_BYTES + nsymbt as u64,
        frame_header_bytes: 0,
        tags: tags.clone(),
    };
    let signal = block.into_signal(bytes, path, options, err_path)?;
    Ok(Dataset {
        format: Format::Mrc,
        signals: vec![signal],
        tags,
    })
}
