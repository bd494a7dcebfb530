//! Frame sources: whole frames or chunks of frames handed out into caller buffers.
//!
//! Out-of-core data is processed chunk by chunk through the [`FrameSource`] trait; no
//! algorithm built on it assumes that the whole hypercube fits in memory. A *frame* is one
//! signal-shaped block (a diffraction pattern in 4D-STEM, a spectrum in a spectrum image, an
//! image in a series); frames are numbered by the flat row-major index over the navigation
//! shape (`index = scan_y * scan_x_len + scan_x` for 4D-STEM) and each frame is delivered
//! row-major over the signal shape, converted to `f32`.
//!
//! Implementations:
//! * [`InMemorySource`]: zero-copy reads from a [`HypercubeView`](crate::HypercubeView).
//! * [`RawFileSource`]: a memory-mapped raw binary file of any [`DType`] and [`Endianness`],
//!   with an optional file header and per-frame headers (Merlin MIB style).
//!
//! Loops:
//! * [`for_each_chunk`]: sequential, one reused buffer, progress and cancellation.
//! * [`map_reduce_chunks`]: parallel map over chunks with a deterministic, chunk-ordered reduce.
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! use stem_core::frame_source::{for_each_chunk, FrameSource, InMemorySource};
//! use stem_core::{Hypercube, NoProgress};
//!
//! // A 4D-STEM cube [scan_y, scan_x, k_y, k_x] = [3, 4, 2, 2] holding its flat index.
//! let data = ArrayD::from_shape_fn(IxDyn(&[3, 4, 2, 2]), |ix| {
//!     (((ix[0] * 4 + ix[1]) * 2 + ix[2]) * 2 + ix[3]) as f32
//! });
//! let cube = Hypercube::new(data, 2)?;
//! let source = InMemorySource::new(cube.view());
//! assert_eq!(source.n_frames(), 12);
//! assert_eq!(source.frame_len(), 4);
//!
//! // Sum of every frame, five frames at a time (the last chunk holds two frames).
//! let mut frame_sums = Vec::new();
//! for_each_chunk(&source, 5, &NoProgress, |chunk, frames| {
//!     assert_eq!(frames.len(), chunk.count * 4);
//!     frame_sums.extend(frames.chunks_exact(4).map(|f| f.iter().sum::<f32>()));
//!     Ok(())
//! })?;
//! assert_eq!(frame_sums.len(), 12);
//! assert_eq!(frame_sums[1], 4.0 + 5.0 + 6.0 + 7.0);
//! # Ok::<(), stem_core::Error>(())
//! ```

mod chunks;
pub(crate) mod convert;
mod memory;
mod raw;

pub use chunks::{ChunkInfo, for_each_chunk, map_reduce_chunks};
pub use memory::InMemorySource;
pub use raw::{DType, Endianness, RawFileSource, RawLayout};

use crate::axis::Axis;
use crate::error::{Error, Result};

/// A provider of frames (signal-shaped blocks) of a hypercube, read into caller buffers.
///
/// Frames are indexed by the flat row-major index over [`nav_shape`](Self::nav_shape); each
/// frame is row-major over [`sig_shape`](Self::sig_shape) and converted to `f32`. Reads take
/// `&self`, so several threads may read from one source at once.
pub trait FrameSource: Send + Sync {
    /// Navigation shape, e.g. `[scan_y, scan_x]` for 4D-STEM (empty for a single frame).
    fn nav_shape(&self) -> &[usize];

    /// Signal shape, e.g. `[k_y, k_x]` detector pixels for 4D-STEM.
    fn sig_shape(&self) -> &[usize];

    /// Number of frames: the product of the navigation shape (1 for an empty navigation shape).
    /// Saturates at `usize::MAX` instead of overflowing.
    fn n_frames(&self) -> usize {
        saturating_product(self.nav_shape())
    }

    /// Number of `f32` values in one frame: the product of the signal shape.
    /// Saturates at `usize::MAX` instead of overflowing.
    fn frame_len(&self) -> usize {
        saturating_product(self.sig_shape())
    }

    /// Fills `out` with `out.len() / frame_len` consecutive frames starting at frame `start`.
    ///
    /// # Errors
    /// * [`Error::InvalidParameter`] if `out.len()` is not a non-zero multiple of
    ///   [`frame_len`](Self::frame_len) (or the frame length is zero);
    /// * [`Error::OutOfRange`] if `start + count > n_frames`;
    /// * whatever the underlying storage reports.
    ///
    /// Implementations should validate with [`check_read`].
    fn read_frames(&self, start: usize, out: &mut [f32]) -> Result<()>;

    /// Reads the single frame `index` into `out` (length [`frame_len`](Self::frame_len), else
    /// [`Error::ShapeMismatch`]).
    fn read_frame(&self, index: usize, out: &mut [f32]) -> Result<()> {
        let frame_len = self.frame_len();
        if out.len() != frame_len {
            return Err(Error::ShapeMismatch {
                expected: vec![frame_len],
                found: vec![out.len()],
            });
        }
        self.read_frames(index, out)
    }

    /// The calibration of all axes (navigation first, then signal) when the source has one.
    fn axes(&self) -> Option<&[Axis]> {
        None
    }
}

/// The frame length of `source`, or [`Error::InvalidParameter`] when it is zero (an empty
/// signal shape dimension), which no chunk loop or read can handle.
pub(crate) fn nonzero_frame_len(source: &(impl FrameSource + ?Sized)) -> Result<usize> {
    let frame_len = source.frame_len();
    if frame_len == 0 {
        return Err(Error::invalid(
            "sig_shape",
            format!(
                "frame length is zero (signal shape {:?})",
                source.sig_shape()
            ),
        ));
    }
    Ok(frame_len)
}

/// Validates a [`FrameSource::read_frames`] request and returns the number of frames it asks
/// for.
///
/// For use by implementations: `out_len` must be a non-zero multiple of the source's frame
/// length (else [`Error::InvalidParameter`] naming both lengths) and
/// `start + count <= n_frames` (else [`Error::OutOfRange`] with the requested end).
pub fn check_read(
    source: &(impl FrameSource + ?Sized),
    start: usize,
    out_len: usize,
) -> Result<usize> {
    let frame_len = nonzero_frame_len(source)?;
    if out_len == 0 || out_len % frame_len != 0 {
        return Err(Error::invalid(
            "out",
            format!(
                "buffer length {out_len} is not a non-zero multiple of the frame length {frame_len}"
            ),
        ));
    }
    let count = out_len / frame_len;
    let n_frames = source.n_frames();
    let end = start.saturating_add(count);
    if end > n_frames {
        return Err(Error::OutOfRange {
            what: "frame range end",
            index: end,
            len: n_frames,
        });
    }
    Ok(count)
}

/// Product of a shape, saturating at `usize::MAX`.
fn saturating_product(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |acc, &n| acc.saturating_mul(n))
}

/// Product of a shape, `None` on overflow.
fn checked_product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n))
}

#[cfg(test)]
mod tests;
