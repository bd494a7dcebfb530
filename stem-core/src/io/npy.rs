//! NumPy `.npy` files: read any real or complex numeric array, write any array.
//!
//! The header (magic `\x93NUMPY`, version, header length, then a Python dict literal with
//! `'descr'`, `'fortran_order'` and `'shape'`; see the
//! [format description](https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html))
//! is checked here before any data is allocated: the header length must fit in the file and
//! the data size implied by dtype and shape must equal the bytes left in the file. Only then
//! are the data decoded by `ndarray-npy`. A corrupted or hostile file therefore gives an
//! [`Error::InvalidFile`] and never an allocation of a size that the file does not hold.
//!
//! ```
//! use ndarray::{array, IxDyn};
//! use stem_core::io::npy::{read_npy, read_npy_f32, write_npy, NpyArray};
//!
//! let path = std::env::temp_dir().join(format!("stem_npy_mod_{}.npy", std::process::id()));
//! write_npy(&path, &array![[1u16, 2, 3], [4, 5, 6]])?;
//! assert!(matches!(read_npy(&path)?, NpyArray::U16(_)));
//! let as_f32 = read_npy_f32(&path)?;
//! assert_eq!(as_f32.shape(), &[2, 3]);
//! assert_eq!(as_f32[IxDyn(&[1, 2])], 6.0);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), stem_core::Error>(())
//! ```

use crate::error::{Error, Result};
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadDataError, ReadableElement, WriteNpyError};
use num_complex::Complex;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

pub use ndarray_npy::WritableElement;

/// Magic string at the start of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Longest accepted header dict, in bytes (numpy's own `np.load` default is 10 000).
const MAX_HEADER_BYTES: usize = 1 << 16;
/// Deepest accepted bracket nesting in the header dict (a plain array header has depth 2).
const MAX_HEADER_DEPTH: usize = 16;

/// An array read from a `.npy` file, in its stored element type.
///
/// Arrays are returned in standard (row-major) layout whatever the file's `fortran_order`;
/// the logical element order is the one numpy shows.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NpyArray {
    /// `float32` (`<f4`, `>f4`).
    F32(ArrayD<f32>),
    /// `float64`.
    F64(ArrayD<f64>),
    /// `uint8`.
    U8(ArrayD<u8>),
    /// `uint16`.
    U16(ArrayD<u16>),
    /// `uint32`.
    U32(ArrayD<u32>),
    /// `uint64`.
    U64(ArrayD<u64>),
    /// `int8`.
    I8(ArrayD<i8>),
    /// `int16`.
    I16(ArrayD<i16>),
    /// `int32`.
    I32(ArrayD<i32>),
    /// `int64`.
    I64(ArrayD<i64>),
    /// `complex64` (two `f32`).
    C64(ArrayD<Complex<f32>>),
    /// `complex128` (two `f64`).
    C128(ArrayD<Complex<f64>>),
    /// `bool` (converted to 0/1 by [`into_f32`](Self::into_f32)).
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the array inside any variant.
macro_rules! each_variant {
    ($value:expr, $a:ident => $body:expr) => {
        match $value {
            NpyArray::F32($a) => $body,
            NpyArray::F64($a) => $body,
            NpyArray::U8($a) => $body,
            NpyArray::U16($a) => $body,
            NpyArray::U32($a) => $body,
            NpyArray::U64($a) => $body,
            NpyArray::I8($a) => $body,
            NpyArray::I16($a) => $body,
            NpyArray::I32($a) => $body,
            NpyArray::I64($a) => $body,
            NpyArray::C64($a) => $body,
            NpyArray::C128($a) => $body,
            NpyArray::Bool($a) => $body,
        }
    };
}

/// Converts a real variant with `as $t`; complex variants are an error.
macro_rules! convert_real {
    ($self:expr, $t:ty) => {
        match $self {
            NpyArray::F32(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::F64(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::U8(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::U16(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::U32(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::U64(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::I8(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::I16(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::I32(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::I64(a) => Ok(a.mapv(|v| v as $t)),
            NpyArray::Bool(a) => Ok(a.mapv(|v| u8::from(v) as $t)),
            complex @ (NpyArray::C64(_) | NpyArray::C128(_)) => Err(Error::Unsupported {
                what: format!(
                    "converting a {} array to {} (take the real part or modulus explicitly)",
                    complex.dtype(),
                    stringify!($t)
                ),
            }),
        }
    };
}

impl NpyArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        each_variant!(self, a => a.shape())
    }

    /// numpy's name of the element type (`"float32"`, `"uint16"`, `"complex64"`, ...).
    pub fn dtype(&self) -> &'static str {
        match self {
            NpyArray::F32(_) => "float32",
            NpyArray::F64(_) => "float64",
            NpyArray::U8(_) => "uint8",
            NpyArray::U16(_) => "uint16",
            NpyArray::U32(_) => "uint32",
            NpyArray::U64(_) => "uint64",
            NpyArray::I8(_) => "int8",
            NpyArray::I16(_) => "int16",
            NpyArray::I32(_) => "int32",
            NpyArray::I64(_) => "int64",
            NpyArray::C64(_) => "complex64",
            NpyArray::C128(_) => "complex128",
            NpyArray::Bool(_) => "bool",
        }
    }

    /// Converts a real (or bool) array to `f32` with `as` (nearest; large integers and `f64`
    /// lose precision). Complex arrays give [`Error::Unsupported`].
    pub fn into_f32(self) -> Result<ArrayD<f32>> {
        match self {
            NpyArray::F32(a) => Ok(a),
            other => convert_real!(other, f32),
        }
    }

    /// Converts a real (or bool) array to `f64` with `as` (exact except 64-bit integers above
    /// 2^53). Complex arrays give [`Error::Unsupported`].
    pub fn into_f64(self) -> Result<ArrayD<f64>> {
        match self {
            NpyArray::F64(a) => Ok(a),
            other => convert_real!(other, f64),
        }
    }
}

/// Reads a `.npy` file in its stored element type.
///
/// # Errors
/// * [`Error::Io`] (with the path) if the file cannot be opened or read;
/// * [`Error::InvalidFile`] for a bad magic string, unknown version, malformed or oversized
///   header (> 64 KiB), a shape whose size overflows, or data shorter or longer than the
///   header says;
/// * [`Error::Unsupported`] for element types other than those of [`NpyArray`] (structured
///   dtypes, `float16`, strings, objects, native-order `=` descriptors).
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let (header, header_total) = read_header(&mut reader, path, file_len)?;
    let Some(descr) = header.type_descriptor.as_string().cloned() else {
        return Err(Error::Unsupported {
            what: format!(
                "NPY dtype {} (structured arrays) in {}",
                header.type_descriptor,
                path.display()
            ),
        });
    };
    let elem_bytes = element_size(&descr).ok_or_else(|| Error::Unsupported {
        what: format!("NPY dtype '{descr}' in {}", path.display()),
    })?;
    let len = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .and_then(|n| n.checked_mul(elem_bytes).map(|bytes| (n, bytes)));
    let Some((len, data_bytes)) = len else {
        return Err(Error::invalid_file(
            path,
            format!("shape {:?} overflows", header.shape),
        ));
    };
    let available = file_len - header_total;
    if data_bytes as u64 != available {
        return Err(Error::invalid_file(
            path,
            format!(
                "shape {:?} of '{descr}' needs {data_bytes} data bytes but the file holds {available}",
                header.shape
            ),
        ));
    }
    let h = &header;
    Ok(match descr.trim_start_matches(['<', '>', '|']) {
        "f4" => NpyArray::F32(read_data(reader, h, len, path)?),
        "f8" => NpyArray::F64(read_data(reader, h, len, path)?),
        "u1" | "B" => NpyArray::U8(read_data(reader, h, len, path)?),
        "u2" => NpyArray::U16(read_data(reader, h, len, path)?),
        "u4" => NpyArray::U32(read_data(reader, h, len, path)?),
        "u8" => NpyArray::U64(read_data(reader, h, len, path)?),
        "i1" | "b" => NpyArray::I8(read_data(reader, h, len, path)?),
        "i2" => NpyArray::I16(read_data(reader, h, len, path)?),
        "i4" => NpyArray::I32(read_data(reader, h, len, path)?),
        "i8" => NpyArray::I64(read_data(reader, h, len, path)?),
        "c8" => NpyArray::C64(read_data(reader, h, len, path)?),
        "c16" => NpyArray::C128(read_data(reader, h, len, path)?),
        "b1" => NpyArray::Bool(read_data(reader, h, len, path)?),
        _ => {
            return Err(Error::Unsupported {
                what: format!("NPY dtype '{descr}' in {}", path.display()),
            });
        }
    })
}

/// Reads a `.npy` file of any real type (or bool) and converts it to `f32`
/// (see [`NpyArray::into_f32`]; complex files give [`Error::Unsupported`]).
pub fn read_npy_f32(path: impl AsRef<Path>) -> Result<ArrayD<f32>> {
    read_npy(path)?.into_f32()
}

/// Reads a `.npy` file of any real type (or bool) and converts it to `f64`
/// (see [`NpyArray::into_f64`]; complex files give [`Error::Unsupported`]).
pub fn read_npy_f64(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    read_npy(path)?.into_f64()
}

/// Writes `array` to a `.npy` file (created or overwritten), little-endian, version 1.0
/// header unless the header needs more room.
///
/// Element types: `f32`, `f64`, all 8- to 64-bit integers, `bool`, `Complex<f32>`,
/// `Complex<f64>`. Standard-layout arrays are written row-major, Fortran-layout arrays
/// with `fortran_order: True`, other layouts element by element in logical order; numpy reads
/// back the same logical array in every case.
///
/// # Errors
/// [`Error::Io`] with the path when the file cannot be created or written.
pub fn write_npy<A, S, D>(path: impl AsRef<Path>, array: &ArrayBase<S, D>) -> Result<()>
where
    A: WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    let path = path.as_ref();
    ndarray_npy::write_npy(path, array).map_err(|e| match e {
        WriteNpyError::Io(io) => Error::io(path, io),
        other => Error::io(path, std::io::Error::other(other.to_string())),
    })
}

/// Size in bytes of one element of a numpy type descriptor we can read.
fn element_size(descr: &str) -> Option<usize> {
    let body = descr.trim_start_matches(['<', '>', '|']);
    match body {
        "B" | "b" => Some(1),
        _ => {
            let size: usize = body.get(1..)?.parse().ok()?;
            matches!(
                body.as_bytes().first(),
                Some(b'f' | b'u' | b'i' | b'c' | b'b')
            )
            .then_some(size)
        }
    }
}

/// Reads and validates the header; returns it with the total header size in bytes.
/// The reader is left at the first data byte.
fn read_header(reader: &mut impl Read, path: &Path, file_len: u64) -> Result<(Header, u64)> {
    let truncated = |what: &str| Error::invalid_file(path, format!("truncated NPY file: {what}"));
    let mut prefix = [0u8; 8];
    read_exact_or(reader, &mut prefix, path, || {
        truncated("no complete magic string and version")
    })?;
    if &prefix[..6] != MAGIC {
        return Err(Error::invalid_file(
            path,
            "not an NPY file (bad magic string)",
        ));
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(Error::invalid_file(
                path,
                format!("unknown NPY version {major}.{minor}"),
            ));
        }
    };
    let mut len_buf = [0u8; 4];
    read_exact_or(reader, &mut len_buf[..len_bytes], path, || {
        truncated("no header length")
    })?;
    let header_len = u32::from_le_bytes(len_buf) as usize;
    let header_total = (8 + len_bytes + header_len) as u64;
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::invalid_file(
            path,
            format!("NPY header of {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if header_total > file_len {
        return Err(truncated(&format!(
            "header needs {header_total} bytes, file has {file_len}"
        )));
    }
    let mut raw = Vec::with_capacity(8 + len_bytes + header_len);
    raw.extend_from_slice(&prefix);
    raw.extend_from_slice(&len_buf[..len_bytes]);
    let start = raw.len();
    raw.resize(start + header_len, 0);
    read_exact_or(reader, &mut raw[start..], path, || {
        truncated("incomplete header")
    })?;
    let depth = raw[start..]
        .iter()
        .try_fold((0usize, 0usize), |(depth, max), &b| match b {
            b'(' | b'[' | b'{' => Some((depth + 1, max.max(depth + 1))),
            b')' | b']' | b'}' => depth.checked_sub(1).map(|d| (d, max)),
            _ => Some((depth, max)),
        });
    if !matches!(depth, Some((_, max)) if max <= MAX_HEADER_DEPTH) {
        return Err(Error::invalid_file(
            path,
            "malformed NPY header (bracket nesting)",
        ));
    }
    let header = Header::from_reader(&mut raw.as_slice())
        .map_err(|e| Error::invalid_file(path, format!("malformed NPY header: {e}")))?;
    Ok((header, header_total))
}

fn read_exact_or(
    reader: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    on_eof: impl FnOnce() -> Error,
) -> Result<()> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            on_eof()
        } else {
            Error::io(path, e)
        }
    })
}

/// Decodes `len` elements and shapes them; Fortran-order data are returned in standard layout.
fn read_data<T: ReadableElement + Clone>(
    reader: impl Read,
    header: &Header,
    len: usize,
    path: &Path,
) -> Result<ArrayD<T>> {
    let (shape, fortran) = (&header.shape, header.layout.is_fortran());
    let data =
        T::read_to_end_exact_vec(reader, &header.type_descriptor, len).map_err(|e| match e {
            ReadDataError::Io(io) => Error::io(path, io),
            other => Error::invalid_file(path, format!("NPY data: {other}")),
        })?;
    let array = ArrayD::from_shape_vec(IxDyn(shape).set_f(fortran), data).map_err(|e| {
        Error::invalid_file(path, format!("NPY data do not fit shape {shape:?}: {e}"))
    })?;
    Ok(if fortran {
        array.as_standard_layout().into_owned()
    } else {
        array
    })
}

/// The raw-block description of a `.npy` file in `bytes` for [`open`](super::open): real
/// element types of either byte order, C or Fortran order. The navigation / signal split is
/// guessed from the number of dimensions (1-D spectrum, 2-D image, 3-D image series, 4-D
/// 4D-STEM); all axes are uncalibrated.
pub(crate) fn raw_block(bytes: &[u8], path: &Path) -> Result<super::common::RawBlock> {
    use crate::axis::Axis;
    use crate::frame_source::{DType, Endianness};
    let mut reader = bytes;
    let (header, header_total) = read_header(&mut reader, path, bytes.len() as u64)?;
    let descr = header
        .type_descriptor
        .as_string()
        .cloned()
        .unwrap_or_default();
    let endianness = if descr.starts_with('>') {
        Endianness::Big
    } else {
        Endianness::Little
    };
    let dtype = match descr.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "u1" | "B" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "i1" | "b" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        _ => {
            return Err(Error::Unsupported {
                what: format!("NPY dtype {} in a data set", header.type_descriptor),
            });
        }
    };
    let shape = header.shape.clone();
    let (names, nav_dims): (&[&str], usize) = match shape.len() {
        1 => (&["x"], 0),
        2 => (&["y", "x"], 0),
        3 => (&["frame", "y", "x"], 1),
        4 => (&["scan_y", "scan_x", "k_y", "k_x"], 2),
        n => {
            return Err(Error::Unsupported {
                what: format!("{n}-dimensional NPY array as a data set"),
            });
        }
    };
    let axes = shape
        .iter()
        .zip(names)
        .map(|(&n, name)| Axis::pixels(*name, n))
        .collect();
    let fortran = header.layout.is_fortran();
    let (file_shape, permutation) = if fortran && shape.len() > 1 {
        let rev: Vec<usize> = shape.iter().rev().copied().collect();
        (rev, Some((0..shape.len()).rev().collect()))
    } else {
        (shape, None)
    };
    Ok(super::common::RawBlock {
        title: super::common::file_title(path),
        file_shape,
        axes,
        nav_dims,
        permutation,
        dtype,
        endianness,
        offset: header_total,
        frame_header_bytes: 0,
        metadata: Default::default(),
        tags: super::dataset::TagValue::Group(vec![
            ("descr".into(), super::dataset::TagValue::Text(descr)),
            (
                "fortran_order".into(),
                super::dataset::TagValue::Bool(fortran),
            ),
        ]),
    })
}

#[cfg(test)]
mod tests;
