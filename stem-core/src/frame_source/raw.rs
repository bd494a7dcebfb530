//! A memory-mapped raw binary file as a [`FrameSource`].

use super::convert::convert_to_f32;
use super::{FrameSource, check_read, checked_product};
use crate::axis::Axis;
use crate::error::{Error, Result};
use memmap2::{Mmap, MmapOptions};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Element type of a raw file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer (converted to `f32` with rounding above 2^24).
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer (converted to `f32` with rounding above 2^24).
    I64,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision (rounded to `f32`).
    F64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }
}

/// Byte order of multi-byte elements in a raw file (ignored for 8-bit types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endianness {
    /// Least significant byte first (x86, ARM; most detectors).
    Little,
    /// Most significant byte first (e.g. Merlin MIB frames with `>u2` data).
    Big,
}

/// How frames are laid out in a raw file.
///
/// The file is `header_offset_bytes` of file header, then `n_frames` records each made of
/// `frame_header_bytes` of per-frame header followed by the frame's
/// `frame_len * dtype.size_bytes()` data bytes, row-major over `sig_shape`. Frames follow the
/// flat row-major order of `nav_shape`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawLayout {
    /// Element type.
    pub dtype: DType,
    /// Byte order of the elements.
    pub endianness: Endianness,
    /// Navigation shape, e.g. `[scan_y, scan_x]`; empty for a file holding a single frame.
    pub nav_shape: Vec<usize>,
    /// Signal shape, e.g. `[k_y, k_x]`; must not be empty.
    pub sig_shape: Vec<usize>,
    /// Bytes to skip at the start of the file (file header). Default 0.
    pub header_offset_bytes: u64,
    /// Bytes before each frame (per-frame header, Merlin MIB style). Default 0.
    pub frame_header_bytes: u64,
}

impl RawLayout {
    /// A layout with no file header and no per-frame headers.
    pub fn new(
        dtype: DType,
        endianness: Endianness,
        nav_shape: Vec<usize>,
        sig_shape: Vec<usize>,
    ) -> Self {
        RawLayout {
            dtype,
            endianness,
            nav_shape,
            sig_shape,
            header_offset_bytes: 0,
            frame_header_bytes: 0,
        }
    }
}

/// Sizes derived from a validated [`RawLayout`], all computed with checked arithmetic.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n_frames: usize,
    frame_len: usize,
    frame_bytes: usize,
    frame_header_bytes: usize,
    stride_bytes: usize,
    header_bytes: usize,
    total_bytes: u64,
}

fn geometry(layout: &RawLayout) -> Result<Geometry> {
    if layout.sig_shape.is_empty() {
        return Err(Error::invalid("sig_shape", "the signal shape is empty"));
    }
    for (name, shape) in [
        ("nav_shape", &layout.nav_shape),
        ("sig_shape", &layout.sig_shape),
    ] {
        if shape.contains(&0) {
            return Err(Error::invalid(
                name,
                format!("{shape:?} has a zero dimension"),
            ));
        }
    }
    let overflow = |what: &str| {
        Error::invalid(
            "layout",
            format!(
                "{what} overflows (nav {:?}, sig {:?}, {:?}, file header {} B, frame header {} B)",
                layout.nav_shape,
                layout.sig_shape,
                layout.dtype,
                layout.header_offset_bytes,
                layout.frame_header_bytes
            ),
        )
    };
    let n_frames = checked_product(&layout.nav_shape).ok_or_else(|| overflow("frame count"))?;
    let frame_len = checked_product(&layout.sig_shape).ok_or_else(|| overflow("frame length"))?;
    let frame_bytes = frame_len
        .checked_mul(layout.dtype.size_bytes())
        .ok_or_else(|| overflow("frame size in bytes"))?;
    let frame_header_bytes =
        usize::try_from(layout.frame_header_bytes).map_err(|_| overflow("frame header size"))?;
    let stride_bytes = frame_header_bytes
        .checked_add(frame_bytes)
        .ok_or_else(|| overflow("frame record size"))?;
    let header_bytes =
        usize::try_from(layout.header_offset_bytes).map_err(|_| overflow("file header size"))?;
    let total = n_frames
        .checked_mul(stride_bytes)
        .and_then(|d| d.checked_add(header_bytes))
        .ok_or_else(|| overflow("file size"))?;
    let total_bytes = u64::try_from(total).map_err(|_| overflow("file size"))?;
    Ok(Geometry {
        n_frames,
        frame_len,
        frame_bytes,
        frame_header_bytes,
        stride_bytes,
        header_bytes,
        total_bytes,
    })
}

/// A raw binary file, memory-mapped read-only, as a [`FrameSource`].
///
/// Only the first `header + n_frames * (frame_header + frame_bytes)` bytes are mapped; a longer
/// file (e.g. with a trailing footer) is accepted and its tail ignored.
///
/// **Memory-mapping caveat:** the file must not be truncated or modified by another process
/// while it is mapped; truncation makes reads of the lost pages raise `SIGBUS` (the process
/// dies), modification makes the frames read change underneath. This is the usual contract of
/// memory-mapped I/O and cannot be checked by the library.
///
/// ```
/// use stem_core::frame_source::{DType, Endianness, FrameSource, RawFileSource, RawLayout};
///
/// let path = std::env::temp_dir().join(format!("stem_raw_doc_{}.bin", std::process::id()));
/// // Two frames of 2 x 3 big-endian u16 after a 4-byte file header.
/// let mut bytes = vec![0xAB; 4];
/// for v in 0u16..12 {
///     bytes.extend_from_slice(&v.to_be_bytes());
/// }
/// std::fs::write(&path, &bytes)?;
///
/// let mut layout = RawLayout::new(DType::U16, Endianness::Big, vec![2], vec![2, 3]);
/// layout.header_offset_bytes = 4;
/// let source = RawFileSource::open(&path, layout)?;
/// let mut frame = vec![0.0f32; source.frame_len()];
/// source.read_frame(1, &mut frame)?;
/// assert_eq!(frame, [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
/// # drop(source);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RawFileSource {
    path: PathBuf,
    map: Mmap,
    layout: RawLayout,
    geometry: Geometry,
    axes: Option<Vec<Axis>>,
}

impl RawFileSource {
    /// Opens and maps `path` with `layout`.
    ///
    /// # Errors
    /// * [`Error::InvalidParameter`] for an empty signal shape, a zero dimension or a size that
    ///   overflows (e.g. `nav_shape = [usize::MAX, 2]`);
    /// * [`Error::Io`] if the file cannot be opened or mapped;
    /// * [`Error::InvalidFile`] if the file is shorter than the layout requires (the message
    ///   names the expected and actual sizes in bytes).
    pub fn open(path: impl AsRef<Path>, layout: RawLayout) -> Result<Self> {
        let path = path.as_ref();
        let geometry = geometry(&layout)?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let actual = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if actual < geometry.total_bytes {
            return Err(Error::invalid_file(
                path,
                format!(
                    "file is {actual} bytes but the layout needs at least {} bytes \
                     ({} B header + {} frames x ({} B frame header + {} B data))",
                    geometry.total_bytes,
                    geometry.header_bytes,
                    geometry.n_frames,
                    layout.frame_header_bytes,
                    geometry.frame_bytes
                ),
            ));
        }
        let map_len = usize::try_from(geometry.total_bytes)
            .map_err(|_| Error::invalid("layout", "file size does not fit in memory addresses"))?;
        // SAFETY: the mapping is read-only and only the validated prefix is mapped. Soundness
        // relies on no other process truncating or writing the file while it is mapped, the
        // documented contract of this type.
        let map = unsafe { MmapOptions::new().len(map_len).map(&file) }
            .map_err(|e| Error::io(path, e))?;
        Ok(RawFileSource {
            path: path.to_path_buf(),
            map,
            layout,
            geometry,
            axes: None,
        })
    }

    /// Like [`open`](Self::open), with a calibration: one axis per dimension, navigation axes
    /// first, sizes matching `layout.nav_shape` then `layout.sig_shape` (else
    /// [`Error::ShapeMismatch`]).
    pub fn open_with_axes(
        path: impl AsRef<Path>,
        layout: RawLayout,
        axes: Vec<Axis>,
    ) -> Result<Self> {
        let expected: Vec<usize> = layout
            .nav_shape
            .iter()
            .chain(&layout.sig_shape)
            .copied()
            .collect();
        let found: Vec<usize> = axes.iter().map(|a| a.size).collect();
        if expected != found {
            return Err(Error::ShapeMismatch { expected, found });
        }
        let mut source = Self::open(path, layout)?;
        source.axes = Some(axes);
        Ok(source)
    }

    /// The layout the file was opened with.
    pub fn layout(&self) -> &RawLayout {
        &self.layout
    }

    /// The path of the mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Data bytes of `count` consecutive frames from `start` (including the per-frame headers
    /// between them, excluding the one before the first frame). The request was validated by
    /// [`check_read`]; checked arithmetic and `get` keep a logic error from panicking.
    fn frames_bytes(&self, start: usize, count: usize) -> Result<&[u8]> {
        let g = &self.geometry;
        let begin = start
            .checked_mul(g.stride_bytes)
            .and_then(|o| o.checked_add(g.header_bytes))
            .and_then(|o| o.checked_add(g.frame_header_bytes));
        let len = count
            .checked_sub(1)
            .and_then(|c| c.checked_mul(g.stride_bytes))
            .and_then(|l| l.checked_add(g.frame_bytes));
        begin
            .zip(len)
            .and_then(|(b, l)| self.map.get(b..b.checked_add(l)?))
            .ok_or(Error::OutOfRange {
                what: "frame",
                index: start.saturating_add(count),
                len: g.n_frames,
            })
    }
}

impl FrameSource for RawFileSource {
    fn nav_shape(&self) -> &[usize] {
        &self.layout.nav_shape
    }

    fn sig_shape(&self) -> &[usize] {
        &self.layout.sig_shape
    }

    fn n_frames(&self) -> usize {
        self.geometry.n_frames
    }

    fn frame_len(&self) -> usize {
        self.geometry.frame_len
    }

    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let count = check_read(self, start, out.len())?;
        let (dtype, endianness) = (self.layout.dtype, self.layout.endianness);
        if self.layout.frame_header_bytes == 0 {
            // Frames are contiguous: convert the whole run at once.
            let bytes = self.frames_bytes(start, count)?;
            convert_to_f32(dtype, endianness, bytes, out);
        } else {
            for (i, frame) in out.chunks_exact_mut(self.geometry.frame_len).enumerate() {
                let bytes = self.frames_bytes(start + i, 1)?;
                convert_to_f32(dtype, endianness, bytes, frame);
            }
        }
        Ok(())
    }

    fn axes(&self) -> Option<&[Axis]> {
        self.axes.as_deref()
    }
}
