//! Chunk loops over a [`FrameSource`]: sequential and parallel map-reduce.

use super::{FrameSource, nonzero_frame_len};
use crate::error::{Error, Result};
use crate::parallel::Parallelism;
use crate::progress::{Progress, check_cancel};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

/// Which frames a chunk holds: `count` consecutive frames from flat frame index `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkInfo {
    /// Flat (row-major over the navigation shape) index of the first frame.
    pub start: usize,
    /// Number of frames in the chunk (≥ 1; only the last chunk may be shorter than asked).
    pub count: usize,
}

impl ChunkInfo {
    /// The frame indices of the chunk, `start..start + count`.
    pub fn frames(&self) -> Range<usize> {
        self.start..self.start + self.count
    }
}

/// The chunking plan shared by both loops: (n_frames, frame_len, frames per chunk, buffer len).
fn plan(source: &dyn FrameSource, frames_per_chunk: usize) -> Result<(usize, usize, usize, usize)> {
    if frames_per_chunk == 0 {
        return Err(Error::invalid(
            "frames_per_chunk",
            "must be at least 1, got 0",
        ));
    }
    let n_frames = source.n_frames();
    let frame_len = nonzero_frame_len(source)?;
    let per_chunk = frames_per_chunk.min(n_frames.max(1));
    let buffer_len = per_chunk.checked_mul(frame_len).ok_or_else(|| {
        Error::invalid(
            "frames_per_chunk",
            format!("{per_chunk} frames of {frame_len} values overflow a buffer length"),
        )
    })?;
    Ok((n_frames, frame_len, per_chunk, buffer_len))
}

fn chunk_at(index: usize, per_chunk: usize, n_frames: usize) -> ChunkInfo {
    let start = index * per_chunk;
    ChunkInfo {
        start,
        count: per_chunk.min(n_frames - start),
    }
}

/// Runs `f` on every chunk of `frames_per_chunk` consecutive frames, in order.
///
/// One buffer of `frames_per_chunk * frame_len` `f32` values is allocated and reused, so the
/// memory used is independent of the number of frames. `f` receives the chunk's
/// [`ChunkInfo`] and its frames (`count * frame_len` values, frames one after another, each
/// row-major over the signal shape); the last chunk may hold fewer frames.
///
/// Progress: `progress.start("frames", n_frames)`, then `advance(count)` after each chunk.
/// Cancellation is checked before each chunk: a cancelled loop returns [`Error::Cancelled`]
/// (chunks already processed stay processed). Errors from the source or from `f` stop the loop
/// and are returned. A source with no frames calls `f` never and returns `Ok`.
///
/// # Errors
/// [`Error::InvalidParameter`] for `frames_per_chunk == 0` or a zero frame length.
pub fn for_each_chunk(
    source: &dyn FrameSource,
    frames_per_chunk: usize,
    progress: &dyn Progress,
    mut f: impl FnMut(ChunkInfo, &[f32]) -> Result<()>,
) -> Result<()> {
    let (n_frames, frame_len, per_chunk, buffer_len) = plan(source, frames_per_chunk)?;
    progress.start("frames", n_frames as u64);
    let mut buffer = vec![0.0f32; buffer_len];
    let n_chunks = n_frames.div_ceil(per_chunk);
    for index in 0..n_chunks {
        check_cancel(progress)?;
        let chunk = chunk_at(index, per_chunk, n_frames);
        let frames = &mut buffer[..chunk.count * frame_len];
        source.read_frames(chunk.start, frames)?;
        f(chunk, frames)?;
        progress.advance(chunk.count as u64);
    }
    Ok(())
}

/// Maps every chunk of `frames_per_chunk` frames to a partial result in parallel, then folds
/// the partial results with `reduce` **in chunk order** on the calling thread.
///
/// The result is therefore deterministic: identical for any [`Parallelism`] (as long as `map`
/// itself is), even for a non-associative floating-point `reduce`. Returns `Ok(None)` when the
/// source has no frames.
///
/// Memory: at most one chunk buffer (`frames_per_chunk * frame_len` `f32` values) per worker
/// thread, plus every per-chunk result (`n_chunks` values of `R`) held until the fold. Choose
/// `frames_per_chunk` so that `n_frames / frames_per_chunk` results fit comfortably.
///
/// Progress and cancellation as in [`for_each_chunk`] (`advance` is called from worker
/// threads; cancellation is checked before each chunk and returns [`Error::Cancelled`]).
/// When several chunks fail, which error is returned may depend on scheduling.
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_core::frame_source::{map_reduce_chunks, InMemorySource};
/// use stem_core::{Hypercube, NoProgress, Parallelism};
///
/// let cube = Hypercube::new(ArrayD::from_elem(IxDyn(&[10, 4, 4]), 0.5f32), 1)?;
/// let source = InMemorySource::new(cube.view());
/// let total = map_reduce_chunks(
///     &source,
///     3,
///     Parallelism::Threads(2),
///     &NoProgress,
///     |_chunk, frames| Ok(frames.iter().map(|&v| f64::from(v)).sum::<f64>()),
///     |a, b| a + b,
/// )?;
/// assert_eq!(total, Some(80.0));
/// # Ok::<(), stem_core::Error>(())
/// ```
pub fn map_reduce_chunks<R: Send>(
    source: &dyn FrameSource,
    frames_per_chunk: usize,
    parallelism: Parallelism,
    progress: &dyn Progress,
    map: impl Fn(ChunkInfo, &[f32]) -> Result<R> + Sync,
    reduce: impl Fn(R, R) -> R,
) -> Result<Option<R>> {
    let (n_frames, frame_len, per_chunk, buffer_len) = plan(source, frames_per_chunk)?;
    progress.start("frames", n_frames as u64);
    let n_chunks = n_frames.div_ceil(per_chunk);
    // Buffers are lent out to the running tasks and returned afterwards, so there are never
    // more buffers than tasks running at once (= worker threads).
    let pool: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
    let run_chunk = |index: usize| -> Result<R> {
        check_cancel(progress)?;
        let chunk = chunk_at(index, per_chunk, n_frames);
        let taken = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut buffer = taken.unwrap_or_else(|| vec![0.0f32; buffer_len]);
        let frames = &mut buffer[..chunk.count * frame_len];
        let result = source
            .read_frames(chunk.start, frames)
            .and_then(|()| map(chunk, frames));
        if let Ok(mut p) = pool.lock() {
            p.push(buffer);
        }
        if result.is_ok() {
            progress.advance(chunk.count as u64);
        }
        result
    };
    let partials: Vec<R> = parallelism.install(|| {
        (0..n_chunks)
            .into_par_iter()
            .map(run_chunk)
            .collect::<Result<Vec<R>>>()
    })??;
    Ok(partials.into_iter().reduce(reduce))
}
