//! Shared pieces of the format readers: a bounds-checked byte reader, element decoding and the
//! step from a parsed "raw block" description to a loaded or memory-mapped [`Signal`].

use super::dataset::{Components, Metadata, Signal, SignalData, TagValue};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::frame_source::{DType, Endianness, RawFileSource, RawLayout};
use crate::hypercube::Hypercube;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// A bounds-checked cursor over a file's bytes. Every read that would pass the end returns
/// [`Error::InvalidFile`] naming the position, so that truncated files never panic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) path: &'a Path,
}

macro_rules! read_num {
    ($name:ident, $t:ty, $n:literal) => {
        pub(crate) fn $name(&mut self, e: Endianness) -> Result<$t> {
            let b: [u8; $n] = self.array()?;
            Ok(match e {
                Endianness::Little => <$t>::from_le_bytes(b),
                Endianness::Big => <$t>::from_be_bytes(b),
            })
        }
    };
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], path: &'a Path) -> Self {
        Reader { data, pos: 0, path }
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> Error {
        Error::invalid_file(self.path, reason)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn seek(&mut self, pos: u64) -> Result<()> {
        match usize::try_from(pos) {
            Ok(p) if p <= self.data.len() => {
                self.pos = p;
                Ok(())
            }
            _ => Err(self.err(format!(
                "offset {pos} is past the end of the file ({} bytes)",
                self.data.len()
            ))),
        }
    }

    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let s = &self.data[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(self.err(format!(
                "truncated: need {n} bytes at offset {}, only {left} left",
                self.pos
            ))),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    read_num!(u16, u16, 2);
    read_num!(u32, u32, 4);
    read_num!(u64, u64, 8);
    read_num!(i16, i16, 2);
    read_num!(i32, i32, 4);
    read_num!(i64, i64, 8);
    read_num!(f32, f32, 4);
    read_num!(f64, f64, 8);
}

/// Decodes `out.len()` elements of `dtype` from `bytes` (which must hold at least
/// `out.len() * dtype.size_bytes()` bytes; the caller checked it) to `f32`: the same conversion
/// as the raw frame reader's.
pub(crate) fn decode_f32(dtype: DType, e: Endianness, bytes: &[u8], out: &mut [f32]) {
    crate::frame_source::convert::convert_to_f32(dtype, e, bytes, out);
}

/// When to leave pixel data in the file instead of loading it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenOptions {
    /// Raw pixel blocks of at least this many bytes are memory-mapped and read lazily through
    /// [`FrameSource`](crate::frame_source::FrameSource) instead of being loaded (only where
    /// the file stores frames contiguously in array order). `0` maps every such block,
    /// `u64::MAX` loads everything. Default 256 MiB.
    pub lazy_threshold_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            lazy_threshold_bytes: 256 << 20,
        }
    }
}

/// A parsed description of one signal stored as a raw block in the file.
#[derive(Clone, Debug)]
pub(crate) struct RawBlock {
    pub(crate) title: String,
    /// Shape as stored, numpy (row-major) order.
    pub(crate) file_shape: Vec<usize>,
    /// Axes of the result, in result order (after `permutation`).
    pub(crate) axes: Vec<Axis>,
    pub(crate) nav_dims: usize,
    /// Result axis `i` is file axis `permutation[i]`; `None` for the identity.
    pub(crate) permutation: Option<Vec<usize>>,
    pub(crate) dtype: DType,
    pub(crate) endianness: Endianness,
    pub(crate) offset: u64,
    /// Bytes before each frame (MIB); frames are the blocks over the last `sig dims` of
    /// `file_shape`.
    pub(crate) frame_header_bytes: u64,
    pub(crate) metadata: Metadata,
    pub(crate) tags: TagValue,
}

fn product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

impl RawBlock {
    /// Turns the block into a [`Signal`]: memory-mapped when `path` is given, the layout is in
    /// array order and the block is at least the lazy threshold; else decoded from `bytes`.
    pub(crate) fn into_signal(
        self,
        bytes: &[u8],
        path: Option<&Path>,
        options: &OpenOptions,
        err_path: &Path,
    ) -> Result<Signal> {
        let bad = |reason: String| Error::invalid_file(err_path, reason);
        let shape_sizes: Vec<usize> = self.axes.iter().map(|a| a.size).collect();
        let n = product(&self.file_shape)
            .ok_or_else(|| bad(format!("shape {:?} overflows", self.file_shape)))?;
        if n == 0 {
            return Err(bad(format!("shape {:?} is empty", self.file_shape)));
        }
        let sig_dims = self.axes.len() - self.nav_dims.min(self.axes.len());
        let split = self.file_shape.len().saturating_sub(sig_dims);
        let frame_len = product(&self.file_shape[split..]).unwrap_or(usize::MAX);
        let n_frames = n / frame_len.max(1);
        let stride = (frame_len as u64)
            .checked_mul(self.dtype.size_bytes() as u64)
            .and_then(|b| b.checked_add(self.frame_header_bytes))
            .ok_or_else(|| bad("frame size overflows".into()))?;
        let total = stride
            .checked_mul(n_frames as u64)
            .ok_or_else(|| bad("data size overflows".into()))?;
        let end = self
            .offset
            .checked_add(total)
            .ok_or_else(|| bad("data end overflows".into()))?;
        if end > bytes.len() as u64 {
            return Err(bad(format!(
                "truncated: {} data of shape {:?} needs bytes {}..{end}, file has {}",
                self.title,
                self.file_shape,
                self.offset,
                bytes.len()
            )));
        }
        if shape_sizes.len() != self.file_shape.len() {
            return Err(bad("axes do not match the data shape".into()));
        }
        let signal_of = |data: SignalData, s: RawBlock| Signal {
            title: s.title,
            axes: s.axes,
            nav_dims: s.nav_dims,
            original_dtype: s.dtype,
            data,
            components: Components::Scalar,
            metadata: s.metadata,
            tags: s.tags,
        };
        if let Some(path) = path
            && self.permutation.is_none()
            && total >= options.lazy_threshold_bytes
            && sig_dims > 0
        {
            let layout = RawLayout {
                dtype: self.dtype,
                endianness: self.endianness,
                nav_shape: shape_sizes[..self.nav_dims].to_vec(),
                sig_shape: shape_sizes[self.nav_dims..].to_vec(),
                header_offset_bytes: self.offset,
                frame_header_bytes: self.frame_header_bytes,
            };
            let source = RawFileSource::open_with_axes(path, layout, self.axes.clone())?;
            return Ok(signal_of(SignalData::Lazy(source), self));
        }
        let mut buf = vec![0.0f32; n];
        let esize = self.dtype.size_bytes();
        let start = self.offset as usize;
        for (f, out) in buf.chunks_exact_mut(frame_len).enumerate() {
            let b = start + f * stride as usize + self.frame_header_bytes as usize;
            decode_f32(
                self.dtype,
                self.endianness,
                &bytes[b..b + frame_len * esize],
                out,
            );
        }
        let mut data = ArrayD::from_shape_vec(IxDyn(&self.file_shape), buf).map_err(|_| {
            Error::ShapeMismatch {
                expected: self.file_shape.clone(),
                found: vec![n],
            }
        })?;
        if let Some(p) = &self.permutation {
            data = data
                .permuted_axes(IxDyn(p))
                .as_standard_layout()
                .into_owned();
        }
        let cube = Hypercube::with_axes(data, self.axes.clone(), self.nav_dims)?;
        Ok(signal_of(SignalData::Loaded(cube), self))
    }
}

/// Title from a file path: the file stem.
pub(crate) fn file_title(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A finite, non-zero scale or 1.
pub(crate) fn sane_scale(scale: f64) -> f64 {
    if scale.is_finite() && scale != 0.0 {
        scale
    } else {
        1.0
    }
}

/// A finite offset or 0.
pub(crate) fn sane_offset(offset: f64) -> f64 {
    if offset.is_finite() { offset } else { 0.0 }
}
