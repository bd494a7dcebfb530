//! Out-of-core Tucker denoising: HOOI driven chunk by chunk through a
//! [`FrameSource`], output written chunk by chunk to a [`FrameSink`] (e.g. [`NpyWriter`]).
//!
//! The hypercube is the tensor `(p_1, …, p_m, n)` of the [`FlattenSignal`](crate::denoise::Layout::FlattenSignal) layout of
//! [`crate::denoise`]: the `m` navigation axes as modes and the flattened signal (`n` values per
//! frame) as the last mode. A **chunk** is a run of consecutive frames covering whole indices of
//! the first navigation axis (for 4D-STEM: whole scan rows), so that it is itself a tensor
//! `(c, p_2, …, p_m, n)` and every product below is a sum over chunks.
//!
//! **Passes** (each reads every frame once, in order, one chunk at a time; a reader thread
//! copies the next chunk out of the source while the current one is processed):
//! 1. Keenan–Kotula sums `g_i`, `h_j` ([`crate::poisson`]; needed with scaling and for
//!    automatic ranks), plus the finite/non-negative checks, **fused with the first sketch
//!    pass**: `g_i` is the frame's own sum, so `Yᵀ Ω` of the scaled data is accumulated as
//!    `Σ_i (Y_i/√g_i)ᵀ Ω_i` and its rows divided by `√h_j` once the pass is over;
//! 2. a randomized sketch of the signal mode (Halko, Martinsson & Tropp 2011):
//!    `W = Yᵀ Ω` (`n × w`, `Ω` Gaussian, one ChaCha8 stream per frame), `q` fused power passes
//!    (`B = Y Q`, `W = Yᵀ B`) and a last pass `B = Y Q` with `Q = orth(W)`. `B` (`N_f × w`,
//!    `w = r_n + oversampling`) is held in memory and gives the start of every HOOI below: the
//!    ST-HOSVD of the small tensor `(p_1, …, p_m, w)`, with the signal factor mapped back by `Q`.
//!    The sketch depends on the data only, so all rounds of the rank search share it.
//! 3. HOOI sweeps, two passes each, in the Gauss–Seidel order of [`crate::tucker`]: pass 1
//!    forms `P = Y ×_n U_nᵀ` (`N_f × r_n`, in memory) from which every navigation factor is
//!    updated in memory; pass 2 accumulates `C = Y ×_1 U_1ᵀ ⋯ ×_m U_mᵀ` (`r_1⋯r_m × n`) over the
//!    chunks (each chunk's part is the mode products of the chunk with the matching rows of
//!    `U_1`), whose `n`-mode subspace gives `U_n` and the core `S = C ×_n U_nᵀ`. Stops like the
//!    in-memory HOOI (relative change of `‖S‖²` below `tolerance`, or `exact_sweeps`).
//!    The start of every fit is the HOOI of the sketched tensor, in memory (as many sweeps as
//!    the fit), so the exact sweeps begin next to their fixed point and usually stop after one
//!    or two.
//! 4. for automatic ranks, the projected parallel analysis of [`crate::ranks`], with the
//!    Poisson surrogate generated chunk by chunk (one ChaCha8 stream per frame, so it is the
//!    same surrogate as in memory): per round, `sweeps_per_round` sketched sweeps (in memory)
//!    and `round_sweeps` exact sweeps at the current ranks, one data pass for `P` and one
//!    surrogate pass (no file reads);
//! 5. the output pass: `X̂ = S ×_k U_k` for the chunk's rows (navigation modes first, then one
//!    GEMM with `U_nᵀ`), times the weights `W`, as `f32`, handed to the sink by a writer thread
//!    while the next chunk is computed.
//!
//! So with fixed ranks, `s` sweeps cost `(q + 2) + 2s` passes that read the source (the sums
//! share the first sketch pass), and the automatic ranks add `rounds × (2·round_sweeps + 1)`
//! (with the default `round_sweeps = 0`: one pass per round for `P` and `C` together; one more
//! sketch of `q + 2` passes if a round raises the signal rank above the sketch width). The
//! output pass reads nothing.
//!
//! **Memory bound** (`f64` = 8 bytes; `F` frames per chunk after rounding to whole rows of the
//! first navigation axis, `n` values per frame, `N_f` frames, `R = r_1⋯r_m`, `w` sketch width):
//!
//! `8·(2.5·F·n + R·n + N_f·(w + r_n) + n·w + 2·(N_f + n)) + 8·F·n` bytes, plus the sink's
//! buffers ([`NpyWriter`]: `4·F·n` + 1 MiB): a chunk as `f64`, two `f32` chunk buffers (the one
//! being processed and the one being read ahead; in the output pass, the one being computed and
//! the one being written), the partial mode products of one chunk (at most `F·n·r_2/p_2`,
//! counted as `0.5·F·n`) or its reconstruction, `C` (accumulated in place), the projections `B`
//! and `P`, the sketch `W` and the weights. Only the `N_f·(w + r_n)` projections grow with the
//! number of frames (16.8 MB per 65 536 frames at `w + r_n = 32`). For a 256×256 × 80×80 cube
//! (1.68 GB as `f32`) with `F = 1024` at the generous starting ranks of the rank search
//! (32, 32, 8): 131 + 52 + 17 + 2 + 52 ≈ 255 MB, plus 27 MB for the NPY sink.
//!
//! **Agreement with the in-memory denoiser.** The sweeps are the in-memory sweeps; only the
//! start differs (sketched ST-HOSVD instead of the exact one), so the two agree at convergence,
//! not bit for bit after a fixed small number of sweeps. Results do not depend on the thread
//! count (chunks are reduced in order, all blocked kernels use fixed block sizes).

use crate::denoise::{DenoiseConfig, Ranks};
use crate::dense::{mode_product, unfold};
use crate::error::{Error, Result};
use crate::linalg::{leading_left_singular, orthonormalize};
use crate::poisson::{PoissonScaling, surrogate_from_mean_at};
use crate::ranks::{AutoRankConfig, ScreeMode, ScreeRound, clamp_ranks};
use crate::tucker::{Tucker, hooi_sweeps, mode_subspace, st_hosvd, validate_ranks};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ndarray::{Array2, ArrayD, IxDyn, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use stem_core::frame_source::FrameSource;
use stem_core::{Parallelism, Progress, progress::check_cancel};

/// Frames per parallel block inside a chunk (fixed: results do not depend on the thread count).
const FRAME_BLOCK: usize = 64;

/// A destination for frames written in order, chunk by chunk.
pub trait FrameSink: Send {
    /// Writes `frames.len() / frame_len` frames starting at flat frame index `start`. Calls come
    /// in increasing, contiguous order.
    ///
    /// # Errors
    /// Whatever the sink reports (I/O, out-of-order writes, too many frames).
    fn write_frames(&mut self, start: usize, frame_len: usize, frames: &[f32]) -> Result<()>;
}

/// An in-memory sink: frames are appended to the vector.
impl FrameSink for Vec<f32> {
    fn write_frames(&mut self, start: usize, frame_len: usize, frames: &[f32]) -> Result<()> {
        if self.len() != start * frame_len {
            return Err(Error::invalid(
                "start",
                format!(
                    "frame {start} written after {} values (frames must come in order)",
                    self.len()
                ),
            ));
        }
        self.extend_from_slice(frames);
        Ok(())
    }
}

/// A streaming writer of a little-endian `f32` NPY file (format 1.0, C order): the header is
/// written first, then frames as they come; [`finish`](Self::finish) checks that exactly the
/// announced number of values arrived.
///
/// ```
/// use stem_tensor::stream::{FrameSink, NpyWriter};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.npy");
/// let mut w = NpyWriter::create(&path, &[2, 3])?;
/// w.write_frames(0, 3, &[1.0, 2.0, 3.0])?;
/// w.write_frames(1, 3, &[4.0, 5.0, 6.0])?;
/// w.finish()?;
/// let a = stem_core::io::npy::read_npy_f32(&path)?;
/// assert_eq!(a.shape(), &[2, 3]);
/// assert_eq!(a[[1, 2]], 6.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NpyWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    expected: usize,
    written: usize,
    /// Reused little-endian byte buffer of the last write.
    bytes: Vec<u8>,
}

impl NpyWriter {
    /// Creates (truncates) `path` and writes the header of an `f32` array of `shape`.
    ///
    /// # Errors
    /// I/O errors (as `stem_core::Error::Io`); [`Error::InvalidParameter`] if the element count
    /// overflows.
    pub fn create(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let expected = shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| Error::invalid("shape", format!("{shape:?} overflows")))?;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let tuple = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
        // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let io = |e| Error::Core(stem_core::Error::io(&path, e));
        let file = std::fs::File::create(&path).map_err(io)?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        let len = u16::try_from(header.len())
            .map_err(|_| Error::invalid("shape", format!("{shape:?}: NPY header too long")))?;
        file.write_all(b"\x93NUMPY\x01\x00").map_err(io)?;
        file.write_all(&len.to_le_bytes()).map_err(io)?;
        file.write_all(header.as_bytes()).map_err(io)?;
        Ok(NpyWriter {
            file,
            path,
            expected,
            written: 0,
            bytes: Vec::new(),
        })
    }

    /// Flushes the file; [`Error::ShapeMismatch`] if fewer values than announced were written.
    ///
    /// # Errors
    /// I/O errors, [`Error::ShapeMismatch`].
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::ShapeMismatch {
                expected: vec![self.expected],
                found: vec![self.written],
            });
        }
        self.file
            .flush()
            .map_err(|e| Error::Core(stem_core::Error::io(&self.path, e)))
    }
}

impl FrameSink for NpyWriter {
    fn write_frames(&mut self, start: usize, frame_len: usize, frames: &[f32]) -> Result<()> {
        if self.written != start * frame_len || self.written + frames.len() > self.expected {
            return Err(Error::invalid(
                "start",
                format!(
                    "frame {start} ({} values) does not follow the {} values written of {}",
                    frames.len(),
                    self.written,
                    self.expected
                ),
            ));
        }
        self.bytes.clear();
        self.bytes.reserve(frames.len() * 4);
        for v in frames {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.file
            .write_all(&self.bytes)
            .map_err(|e| Error::Core(stem_core::Error::io(&self.path, e)))?;
        self.written += frames.len();
        Ok(())
    }
}

/// Settings of [`StreamedDenoiser`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamConfig {
    /// Rank rule ([`Ranks::Fixed`] ranks are one per navigation axis plus one for the signal).
    /// Default [`Ranks::Auto`].
    pub ranks: Ranks,
    /// Keenan–Kotula Poisson scaling (data must be counts ≥ 0). Default true.
    pub poisson_scaling: bool,
    /// HOOI sweeps of the sketched tensor (in memory) that start the final fit. Default 10.
    pub max_sweeps: usize,
    /// Stop when the relative change of `‖S‖²` is at most this. Default 1e-6.
    pub tolerance: f64,
    /// Automatic-rank settings. Default as [`AutoRankConfig::default`].
    pub auto: AutoRankConfig,
    /// Frames per chunk; rounded down to whole indices of the first navigation axis (at least
    /// one). Default 1024.
    pub frames_per_chunk: usize,
    /// Extra sketch columns beyond the signal rank. Default 16.
    pub sketch_oversampling: usize,
    /// Power passes of the sketch. Default 1.
    pub sketch_power_passes: usize,
    /// Seed of the sketch. Default 0.
    pub sketch_seed: u64,
    /// Maximum exact (streamed, two passes each) HOOI sweeps of the final fit, after the HOOI
    /// of the sketched tensor (`max_sweeps` sweeps in memory); they stop early at `tolerance`.
    /// Default 1: the sketched fit is already next to the fixed point. On the 1.68 GB benchmark
    /// cube (`bench/tensor/run_stream.sh`, automatic ranks (29, 24, 4)) the PSNR is 51.68 dB
    /// with no exact sweep, 53.97 dB after one and 53.96 dB after two or six.
    pub exact_sweeps: usize,
    /// Exact (streamed) HOOI sweeps per round of the automatic rank search, after the HOOI of
    /// the sketched tensor (`auto.sweeps_per_round` sweeps, in memory). Default 0: the scree
    /// data are then computed, exactly, with the factors of the sketched HOOI, in one data pass
    /// per round.
    pub round_sweeps: usize,
    /// Threads.
    pub parallelism: Parallelism,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            ranks: Ranks::Auto,
            poisson_scaling: true,
            max_sweeps: 10,
            tolerance: 1e-6,
            auto: AutoRankConfig::default(),
            frames_per_chunk: 1024,
            sketch_oversampling: 16,
            sketch_power_passes: 1,
            sketch_seed: 0,
            round_sweeps: 0,
            exact_sweeps: 1,
            parallelism: Parallelism::Auto,
        }
    }
}

impl StreamConfig {
    /// The streamed equivalent of an in-memory configuration (its layout must be
    /// `FlattenSignal`, the only layout streamed).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for the `Full` layout.
    pub fn from_denoise(c: &DenoiseConfig) -> Result<Self> {
        if c.layout != crate::denoise::Layout::FlattenSignal {
            return Err(Error::invalid(
                "layout",
                "the streamed denoiser supports the FlattenSignal layout only",
            ));
        }
        Ok(StreamConfig {
            ranks: c.ranks.clone(),
            poisson_scaling: c.poisson_scaling,
            max_sweeps: c.max_sweeps,
            tolerance: c.tolerance,
            auto: c.auto.clone(),
            parallelism: c.parallelism,
            ..Default::default()
        })
    }
}

/// Output of [`StreamedDenoiser::run`].
#[derive(Clone, Debug)]
pub struct StreamResult {
    /// The tensor shape decomposed: navigation shape plus the flattened signal.
    pub tensor_shape: Vec<usize>,
    /// The ranks used.
    pub ranks: Vec<usize>,
    /// Scree data of the automatic rank search (empty for fixed ranks).
    pub scree: Vec<ScreeRound>,
    /// The final decomposition of the (scaled, if enabled) tensor.
    pub tucker: Tucker,
    /// Frames per chunk actually used.
    pub frames_per_chunk: usize,
    /// Number of passes over the source (each reads every frame once).
    pub data_passes: usize,
}

/// The out-of-core denoiser (see the module docs).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_core::frame_source::InMemorySource;
/// use stem_core::{Hypercube, NoProgress};
/// use stem_tensor::denoise::Ranks;
/// use stem_tensor::stream::{StreamConfig, StreamedDenoiser};
/// // A rank-1 4D cube, processed 16 frames (two scan rows) at a time.
/// let data = ArrayD::from_shape_fn(IxDyn(&[8, 8, 4, 4]), |i| {
///     ((1 + i[0]) * (2 + i[1]) * (1 + i[2] * 4 + i[3])) as f32
/// });
/// let cube = Hypercube::new(data.clone(), 2)?;
/// let config = StreamConfig {
///     ranks: Ranks::Fixed(vec![1, 1, 1]),
///     frames_per_chunk: 16,
///     ..Default::default()
/// };
/// let mut out: Vec<f32> = Vec::new();
/// let r = StreamedDenoiser::new(config)?.run(
///     &InMemorySource::new(cube.view()),
///     &mut out,
///     &NoProgress,
/// )?;
/// assert_eq!(r.tensor_shape, vec![8, 8, 16]);
/// assert!(out.iter().zip(data.iter()).all(|(a, b)| (a - b).abs() < 1e-3 * b));
/// # Ok::<(), stem_tensor::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StreamedDenoiser {
    config: StreamConfig,
}

/// What a pass feeds: the data (read from the source, scaled) or the Poisson surrogate.
#[derive(Clone, Copy)]
enum Feed<'a> {
    Data,
    Noise {
        w: &'a PoissonScaling,
        seed: u64,
        fit: Option<&'a Tucker>,
    },
}

struct Run<'a> {
    source: &'a dyn FrameSource,
    scaling: Option<PoissonScaling>,
    /// `1 / √h_j` of the scaling (empty without scaling).
    inv_sig_weights: Vec<f64>,
    nav: Vec<usize>,
    n: usize,
    n_frames: usize,
    /// Frames per index of the first navigation axis.
    hyper: usize,
    /// Frames per chunk (a multiple of `hyper`).
    chunk: usize,
    passes: Cell<usize>,
    progress: &'a dyn Progress,
}

/// `(P, C)` of one pass of [`Run::accumulate`], each if asked for.
type Projections = (Option<ArrayD<f64>>, Option<ArrayD<f64>>);

/// The sketch: `Q` (`n × w`) and `B = Y Q` as the tensor `(p_1, …, p_m, w)`.
struct Sketch {
    q: Array2<f64>,
    b: ArrayD<f64>,
}

impl StreamedDenoiser {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a negative/NaN tolerance, `frames_per_chunk == 0`,
    /// invalid auto-rank settings or a zero fixed rank.
    pub fn new(config: StreamConfig) -> Result<Self> {
        if config.tolerance.is_nan() || config.tolerance < 0.0 {
            return Err(Error::invalid(
                "tolerance",
                format!("must be >= 0, got {}", config.tolerance),
            ));
        }
        if config.frames_per_chunk == 0 {
            return Err(Error::invalid(
                "frames_per_chunk",
                "must be at least 1, got 0",
            ));
        }
        config.auto.validate()?;
        if let Ranks::Fixed(r) = &config.ranks
            && r.contains(&0)
        {
            return Err(Error::invalid("ranks", format!("{r:?} contains a zero")));
        }
        Ok(StreamedDenoiser { config })
    }

    /// The configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Denoises the frames of `source` and writes the result, frame by frame in order, to
    /// `sink` (`n_frames × frame_len` `f32` values).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a source without navigation axes or with empty frames;
    /// rank errors; [`Error::Negative`] / [`Error::NonFinite`] for invalid data; source and
    /// sink errors; `Cancelled`.
    pub fn run(
        &self,
        source: &dyn FrameSource,
        sink: &mut dyn FrameSink,
        progress: &dyn Progress,
    ) -> Result<StreamResult> {
        self.config
            .parallelism
            .install(|| self.run_inner(source, sink, progress))?
    }

    fn run_inner(
        &self,
        source: &dyn FrameSource,
        sink: &mut dyn FrameSink,
        progress: &dyn Progress,
    ) -> Result<StreamResult> {
        let c = &self.config;
        let nav = source.nav_shape().to_vec();
        let n = source.frame_len();
        if nav.is_empty() || n == 0 || nav.contains(&0) {
            return Err(Error::invalid(
                "source",
                format!(
                    "needs navigation axes and non-empty frames, got nav {nav:?}, signal {:?}",
                    source.sig_shape()
                ),
            ));
        }
        let n_frames = source.n_frames();
        let hyper = n_frames / nav[0];
        let chunk = (c.frames_per_chunk / hyper).max(1) * hyper;
        let mut shape = nav.clone();
        shape.push(n);
        let order = shape.len();
        let mut run = Run {
            source,
            scaling: None,
            inv_sig_weights: Vec::new(),
            nav,
            n,
            n_frames,
            hyper,
            chunk,
            passes: Cell::new(0),
            progress,
        };
        let is_auto = c.ranks == Ranks::Auto;
        // The fixed ranks, or the generous starting ranks of the rank search.
        let first_ranks = match &c.ranks {
            Ranks::Fixed(r) => {
                validate_ranks(&shape, r)?;
                r.clone()
            }
            _ => {
                let mut r = match &c.auto.initial_ranks {
                    Some(r) => {
                        if r.len() != order {
                            return Err(Error::RankCount {
                                expected: order,
                                found: r.len(),
                            });
                        }
                        r.clone()
                    }
                    None => shape
                        .iter()
                        .enumerate()
                        .map(|(k, &p)| if k < order - 1 { p.min(32) } else { p.min(8) })
                        .collect(),
                };
                clamp_ranks(&shape, &mut r);
                r
            }
        };
        let width = first_ranks[order - 1] + c.sketch_oversampling;
        if c.poisson_scaling || is_auto {
            let (w, range) = run.sums_and_range(width, c.sketch_seed, c.poisson_scaling)?;
            if c.poisson_scaling {
                run.inv_sig_weights = w.sig_weights.iter().map(|h| 1.0 / h).collect();
                run.scaling = Some(w.clone());
            }
            let sketch = run.finish_sketch(range, c)?;
            if is_auto {
                // Kept separately: the surrogate needs the counts even without scaling.
                return self.finish_auto(run, w, shape, first_ranks, sketch, sink);
            }
            return self.finish_fixed(run, shape, first_ranks, sketch, sink);
        }
        let sketch = run.sketch(width, c)?;
        self.finish_fixed(run, shape, first_ranks, sketch, sink)
    }

    /// The fit at fixed ranks from the sketch, and the output pass.
    fn finish_fixed(
        &self,
        run: Run<'_>,
        shape: Vec<usize>,
        ranks: Vec<usize>,
        sketch: Sketch,
        sink: &mut dyn FrameSink,
    ) -> Result<StreamResult> {
        let c = &self.config;
        let ranks = &ranks;
        let start = run.init(&sketch, ranks, c.max_sweeps, c.tolerance)?;
        let (tk, _) = run.sweeps(Feed::Data, start, c.exact_sweeps, c.tolerance)?;
        run.write(&tk, sink)?;
        Ok(StreamResult {
            tensor_shape: shape,
            ranks: ranks.clone(),
            scree: Vec::new(),
            tucker: tk,
            frames_per_chunk: run.chunk,
            data_passes: run.passes.get(),
        })
    }

    /// The automatic rank search from the sketch, the final fit and the output pass.
    fn finish_auto(
        &self,
        run: Run<'_>,
        w: PoissonScaling,
        shape: Vec<usize>,
        mut ranks: Vec<usize>,
        mut sketch: Sketch,
        sink: &mut dyn FrameSink,
    ) -> Result<StreamResult> {
        let c = &self.config;
        let order = shape.len();
        let m = order - 1;
        let mut rounds = Vec::with_capacity(c.auto.rounds);
        let mut last: Option<Tucker> = None;
        for _ in 0..c.auto.rounds {
            check_cancel(run.progress)?;
            if ranks[m] > sketch.q.ncols() {
                sketch = run.sketch(ranks[m] + c.sketch_oversampling, c)?;
            }
            let start = run.init(&sketch, &ranks, c.auto.sweeps_per_round, 0.0)?;
            let (tk, c_y) = run.sweeps(Feed::Data, start, c.round_sweeps, 0.0)?;
            let (p_y, c_y2) = run.accumulate(
                Feed::Data,
                if c_y.is_none() {
                    Some(&tk.factors[..m])
                } else {
                    None
                },
                Some(&tk.factors[m]),
            )?;
            let c_y = match (c_y, c_y2) {
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => return Err(Error::invalid("ranks", "missing projection")),
            };
            let feed = Feed::Noise {
                w: &w,
                seed: if last.is_some() {
                    c.auto.seed ^ 0x5eed
                } else {
                    c.auto.seed
                },
                fit: last.as_ref(),
            };
            let (p_z, c_z) = run.accumulate(feed, Some(&tk.factors[..m]), Some(&tk.factors[m]))?;
            let (Some(p_y), Some(p_z), Some(c_z)) = (p_y, p_z, c_z) else {
                return Err(Error::invalid("ranks", "missing projection"));
            };
            let mut modes = Vec::with_capacity(order);
            let mut new_ranks = ranks.clone();
            #[allow(clippy::needless_range_loop)]
            for k in 0..order {
                let (my, mz) = if k < m {
                    (
                        unfold(project_nav_except(&p_y, &tk.factors, k)?.view(), k)?,
                        unfold(project_nav_except(&p_z, &tk.factors, k)?.view(), k)?,
                    )
                } else {
                    (unfold(c_y.view(), m)?, unfold(c_z.view(), m)?)
                };
                let sy = leading_left_singular(my.view(), 1)?.singular_values;
                let sz = leading_left_singular(mz.view(), 1)?.singular_values;
                let noise_top = sz.first().copied().unwrap_or(0.0);
                let threshold = c.auto.threshold_factor * noise_top;
                let count = sy.iter().filter(|&&s| s > threshold).count();
                new_ranks[k] = count; // k < order = new_ranks.len()
                modes.push(ScreeMode {
                    mode: k,
                    singular_values: sy,
                    noise_top,
                    threshold,
                    count,
                });
            }
            clamp_ranks(&shape, &mut new_ranks);
            rounds.push(ScreeRound {
                ranks_in: ranks.clone(),
                modes,
                ranks_out: new_ranks.clone(),
            });
            ranks = new_ranks;
            last = Some(tk);
        }
        if ranks[m] > sketch.q.ncols() {
            sketch = run.sketch(ranks[m] + c.sketch_oversampling, c)?;
        }
        let start = run.init(&sketch, &ranks, c.max_sweeps, c.tolerance)?;
        let (tk, _) = run.sweeps(Feed::Data, start, c.exact_sweeps, c.tolerance)?;
        run.write(&tk, sink)?;
        Ok(StreamResult {
            tensor_shape: shape,
            ranks,
            scree: rounds,
            tucker: tk,
            frames_per_chunk: run.chunk,
            data_passes: run.passes.get(),
        })
    }
}

/// `P ×_j U_jᵀ` over the navigation modes `j ≠ k` of `P` (`(p_1, …, p_m, r)`).
fn project_nav_except(p: &ArrayD<f64>, factors: &[Array2<f64>], k: usize) -> Result<ArrayD<f64>> {
    let m = p.ndim() - 1;
    let mut modes: Vec<usize> = (0..m).filter(|&j| j != k).collect();
    // Largest reduction first, as `dense::project`.
    modes.sort_by(|&x, &y| {
        let rx = factors[x].nrows() as f64 / factors[x].ncols().max(1) as f64;
        let ry = factors[y].nrows() as f64 / factors[y].ncols().max(1) as f64;
        ry.total_cmp(&rx).then(x.cmp(&y))
    });
    let mut cur = p.clone();
    for j in modes {
        cur = mode_product(cur.view(), factors[j].t(), j)?;
    }
    Ok(cur)
}

/// `out (rows × r) = a (rows × n) · u (n × r)` over fixed row blocks in parallel.
fn rows_times(a: &[f64], n: usize, u: MatRef<'_, f64>, out: &mut [f64]) {
    let r = u.ncols();
    if r == 0 || n == 0 {
        return;
    }
    out.par_chunks_mut(FRAME_BLOCK * r)
        .zip(a.par_chunks(FRAME_BLOCK * n))
        .for_each(|(o, blk)| {
            let rows = o.len() / r;
            let am = MatRef::from_row_major_slice(&blk[..rows * n], rows, n);
            let om = MatMut::from_row_major_slice_mut(o, rows, r);
            faer::linalg::matmul::matmul(om, Accum::Replace, am, u, 1.0, Par::Seq);
        });
}

/// `acc (n × w) += aᵀ (n × rows) · t (rows × w)`, partials over fixed row blocks summed in order.
fn add_t_times(a: &[f64], n: usize, t: &[f64], w: usize, acc: &mut Mat<f64>) {
    if n == 0 || w == 0 {
        return;
    }
    let block = 4 * FRAME_BLOCK;
    let partials: Vec<Mat<f64>> = a
        .par_chunks(block * n)
        .zip(t.par_chunks(block * w))
        .map(|(ab, tb)| {
            let rows = tb.len() / w;
            let am = MatRef::from_row_major_slice(&ab[..rows * n], rows, n);
            let tm = MatRef::from_row_major_slice(tb, rows, w);
            let mut g = Mat::<f64>::zeros(n, w);
            faer::linalg::matmul::matmul(
                g.as_mut(),
                Accum::Replace,
                am.transpose(),
                tm,
                1.0,
                Par::Seq,
            );
            g
        })
        .collect();
    for p in &partials {
        *acc += p;
    }
}

/// `acc (r × cols) += uᵀ (r × rows) · t (rows × cols)`, all row-major, over fixed column
/// blocks in parallel (each block's sum is computed entirely by one task).
fn add_ut_times(u: MatRef<'_, f64>, t: &[f64], cols: usize, acc: &mut [f64]) {
    let (rows, r) = (u.nrows(), u.ncols());
    if cols == 0 || r == 0 || rows == 0 {
        return;
    }
    let tm = MatRef::from_row_major_slice(t, rows, cols);
    let am = MatMut::from_row_major_slice_mut(acc, r, cols);
    let cb = 512;
    let mut blocks = Vec::with_capacity(cols.div_ceil(cb));
    let mut rest = am;
    let mut start = 0;
    while start < cols {
        let w = cb.min(cols - start);
        let (head, tail) = rest.split_at_col_mut(w);
        blocks.push((start, head));
        rest = tail;
        start += w;
    }
    blocks.into_par_iter().for_each(|(c0, blk)| {
        let w = blk.ncols();
        faer::linalg::matmul::matmul(
            blk,
            Accum::Add,
            u.transpose(),
            tm.subcols(c0, w),
            1.0,
            Par::Seq,
        );
    });
}

/// Fills the rows (`w` values each) of `om` with standard normal values, row `i` from ChaCha8
/// stream `start + i` of `seed` (so a chunk's `Ω` does not depend on the chunking).
fn fill_gaussian(om: &mut [f64], w: usize, start: usize, seed: u64) {
    om.par_chunks_mut(w).enumerate().for_each(|(i, row)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((start + i) as u64);
        for x in row.iter_mut() {
            *x = StandardNormal.sample(&mut rng);
        }
    });
}

fn mat_to_array(m: &Mat<f64>) -> Array2<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

fn array_ref(a: &Array2<f64>) -> Result<MatRef<'_, f64>> {
    let s = a
        .as_slice()
        .ok_or_else(|| Error::invalid("factor", "not in standard layout"))?;
    Ok(MatRef::from_row_major_slice(s, a.nrows(), a.ncols()))
}

impl Run<'_> {
    /// Calls `f(start_frame, count, values)` for every chunk of the fed tensor (row-major
    /// `count × n` `f64` values), in order. For the data, chunks are read by
    /// [`read_chunks`](Self::read_chunks) (one chunk ahead, overlapping the computation).
    fn for_each(
        &self,
        feed: Feed<'_>,
        stage: &str,
        mut f: impl FnMut(usize, usize, &mut [f64]) -> Result<()>,
    ) -> Result<()> {
        let n = self.n;
        let mut vals = vec![0.0f64; self.chunk * n];
        self.progress.start(stage, self.n_frames as u64);
        if matches!(feed, Feed::Data) {
            self.passes.set(self.passes.get() + 1);
            let inv_h = &self.inv_sig_weights;
            let scaling = self.scaling.as_ref();
            return self.read_chunks(|start, count, r| {
                let v = &mut vals[..count * n];
                // Conversion and Keenan–Kotula scaling in one sweep (multiplication by the
                // reciprocal weights), with the finiteness check of every frame.
                let bad: Vec<bool> = v
                    .par_chunks_mut(n)
                    .zip(r.par_chunks(n))
                    .enumerate()
                    .map(|(i, (a, b))| {
                        let mut finite = true;
                        match scaling {
                            Some(w) => {
                                let ig = 1.0 / w.nav_weights[start + i];
                                for ((x, &y), &ih) in a.iter_mut().zip(b).zip(inv_h) {
                                    finite &= y.is_finite();
                                    *x = f64::from(y) * ig * ih;
                                }
                            }
                            None => {
                                for (x, &y) in a.iter_mut().zip(b) {
                                    finite &= y.is_finite();
                                    *x = f64::from(y);
                                }
                            }
                        }
                        !finite
                    })
                    .collect();
                if let Some(i) = bad.iter().position(|&b| b) {
                    let j = r[i * n..(i + 1) * n]
                        .iter()
                        .position(|x| !x.is_finite())
                        .unwrap_or(0);
                    return Err(Error::NonFinite {
                        what: "hypercube",
                        index: (start + i) * n + j,
                    });
                }
                f(start, count, v)
            });
        }
        let mut start = 0;
        while start < self.n_frames {
            check_cancel(self.progress)?;
            let count = self.chunk.min(self.n_frames - start);
            let v = &mut vals[..count * n];
            if let Feed::Noise { w, seed, fit } = feed {
                match fit {
                    None => w.surrogate_rows(start, v, seed, self.scaling.is_some()),
                    Some(tk) => {
                        let mut mean = self.reconstruct_rows(tk, start, count)?;
                        if let Some(s) = &self.scaling {
                            s.unscale_rows(start, &mut mean);
                        }
                        surrogate_from_mean_at(start, &mean, n, v, seed);
                        if let Some(s) = &self.scaling {
                            s.scale_rows(start, v);
                        }
                    }
                }
            }
            f(start, count, v)?;
            self.progress.advance(count as u64);
            start += count;
        }
        Ok(())
    }

    /// Reads every chunk of the source in order and calls `f(start_frame, count, raw)`.
    ///
    /// A reader thread fills one chunk ahead while `f` works on the current one (two `f32`
    /// chunk buffers circulate between the threads), so the copy out of the file or the page
    /// cache overlaps the computation. The results do not depend on it: `f` sees the chunks
    /// in order, exactly as read.
    fn read_chunks(&self, mut f: impl FnMut(usize, usize, &[f32]) -> Result<()>) -> Result<()> {
        type Filled = (usize, usize, Vec<f32>, stem_core::Result<()>);
        let (n, chunk, total, source) = (self.n, self.chunk, self.n_frames, self.source);
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Filled>(1);
            let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<f32>>();
            for _ in 0..2 {
                // Cannot fail: the receiver is alive.
                let _ = free_tx.send(vec![0.0f32; chunk * n]);
            }
            scope.spawn(move || {
                let mut start = 0;
                while start < total {
                    // Stops when the consumer is gone (finished early or failed).
                    let Ok(mut buf) = free_rx.recv() else { return };
                    let count = chunk.min(total - start);
                    let r = source.read_frames(start, &mut buf[..count * n]);
                    let failed = r.is_err();
                    if full_tx.send((start, count, buf, r)).is_err() || failed {
                        return;
                    }
                    start += count;
                }
            });
            let mut start = 0;
            while start < total {
                check_cancel(self.progress)?;
                let (s, count, buf, r) = full_rx
                    .recv()
                    .map_err(|_| Error::invalid("source", "the reader thread stopped"))?;
                r?;
                f(s, count, &buf[..count * n])?;
                // The reader may have finished already; the buffer is then dropped.
                let _ = free_tx.send(buf);
                self.progress.advance(count as u64);
                start += count;
            }
            Ok(())
        })
    }

    /// Pass 1: Keenan–Kotula sums and the data checks, fused with the first pass of the sketch
    /// (width `width`, see [`sketch`](Self::sketch)). `Ω` is applied to the data as
    /// [`for_each`](Self::for_each) would feed them once the weights are known: with scaling,
    /// `W = Σ_i (Y_i / √g_i)ᵀ Ω_i` over the frames `i` (`g_i` is the frame's own sum), then
    /// row `j` of `W` divided by `√h_j` at the end (`h` needs the whole pass); without
    /// scaling `W = Yᵀ Ω` directly.
    fn sums_and_range(
        &self,
        width: usize,
        seed: u64,
        scaled: bool,
    ) -> Result<(PoissonScaling, Mat<f64>)> {
        let n = self.n;
        let w = self.sketch_width(width);
        let mut g = vec![0.0f64; self.n_frames];
        let mut h = vec![0.0f64; n];
        let mut acc = Mat::<f64>::zeros(n, w);
        let mut omega = vec![0.0f64; self.chunk * w];
        self.for_each(Feed::Data, "counts+sketch", |start, count, v| {
            if let Some(i) = v
                .par_chunks(n)
                .position_first(|row| row.iter().any(|&x| x < 0.0))
            {
                let j = v[i * n..(i + 1) * n]
                    .iter()
                    .position(|&x| x < 0.0)
                    .unwrap_or(0);
                return Err(Error::Negative {
                    index: (start + i) * n + j,
                    value: v[i * n + j],
                });
            }
            v.par_chunks(n)
                .zip(g[start..start + count].par_iter_mut())
                .for_each(|(row, s)| *s = row.iter().sum());
            let parts: Vec<Vec<f64>> = v
                .par_chunks(FRAME_BLOCK * n)
                .map(|blk| {
                    let mut s = vec![0.0f64; n];
                    for row in blk.chunks_exact(n) {
                        for (a, b) in s.iter_mut().zip(row) {
                            *a += b;
                        }
                    }
                    s
                })
                .collect();
            for p in &parts {
                for (a, b) in h.iter_mut().zip(p) {
                    *a += b;
                }
            }
            if scaled {
                let gs = &g[start..start + count];
                v.par_chunks_mut(n)
                    .zip(gs.par_iter())
                    .for_each(|(row, &gi)| {
                        let ig = 1.0 / if gi > 0.0 { gi.sqrt() } else { 1.0 };
                        for x in row.iter_mut() {
                            *x *= ig;
                        }
                    });
            }
            let om = &mut omega[..count * w];
            fill_gaussian(om, w, start, seed);
            add_t_times(v, n, om, w, &mut acc);
            Ok(())
        })?;
        let weights = PoissonScaling::from_sums(g, h)?;
        if scaled {
            for (j, &hj) in weights.sig_weights.iter().enumerate() {
                for k in 0..w {
                    acc[(j, k)] /= hj;
                }
            }
        }
        Ok((weights, acc))
    }

    /// The sketch width for a requested `width` (at most `n`, at least 1).
    fn sketch_width(&self, width: usize) -> usize {
        width.min(self.n).max(1)
    }

    /// The first pass of the sketch: `W = Yᵀ Ω` (`n × w`).
    fn range(&self, w: usize, seed: u64) -> Result<Mat<f64>> {
        let n = self.n;
        let mut acc = Mat::<f64>::zeros(n, w);
        let mut omega = vec![0.0f64; self.chunk * w];
        self.for_each(Feed::Data, "sketch", |start, count, v| {
            let om = &mut omega[..count * w];
            fill_gaussian(om, w, start, seed);
            add_t_times(v, n, om, w, &mut acc);
            Ok(())
        })?;
        Ok(acc)
    }

    /// The randomized sketch of width `width` (see the module docs): [`range`](Self::range)
    /// then [`finish_sketch`](Self::finish_sketch).
    fn sketch(&self, width: usize, c: &StreamConfig) -> Result<Sketch> {
        let acc = self.range(self.sketch_width(width), c.sketch_seed)?;
        self.finish_sketch(acc, c)
    }

    /// The power passes and the last pass `B = Y Q` of the sketch, from `W = Yᵀ Ω`.
    fn finish_sketch(&self, acc: Mat<f64>, c: &StreamConfig) -> Result<Sketch> {
        let (n, w) = (self.n, acc.ncols());
        let mut q = orthonormalize(mat_to_array(&acc).view());
        let mut b = vec![0.0f64; self.n_frames * w];
        for pass in 0..=c.sketch_power_passes {
            let last = pass == c.sketch_power_passes;
            let qm = array_ref(&q)?;
            let mut acc = Mat::<f64>::zeros(n, w);
            self.for_each(Feed::Data, "sketch", |start, count, v| {
                let bs = &mut b[start * w..(start + count) * w];
                rows_times(v, n, qm, bs);
                if !last {
                    add_t_times(v, n, bs, w, &mut acc);
                }
                Ok(())
            })?;
            if !last {
                q = orthonormalize(mat_to_array(&acc).view());
            }
        }
        let mut shape = self.nav.clone();
        shape.push(w);
        let b = ArrayD::from_shape_vec(IxDyn(&shape), b)
            .map_err(|e| Error::invalid("sketch", e.to_string()))?;
        Ok(Sketch { q, b })
    }

    /// The start of a HOOI at `ranks`: ST-HOSVD of the sketched tensor, signal factor `Q U`.
    fn init(
        &self,
        sketch: &Sketch,
        ranks: &[usize],
        sweeps: usize,
        tolerance: f64,
    ) -> Result<Tucker> {
        let m = self.nav.len();
        self.progress.start("sketched HOOI", sweeps as u64);
        let start = st_hosvd(sketch.b.view(), ranks, self.progress)?;
        let mut tk = hooi_sweeps(sketch.b.view(), start, sweeps, tolerance, self.progress)?;
        tk.factors[m] = crate::linalg::matmul(sketch.q.view(), tk.factors[m].view())?;
        Ok(tk)
    }

    /// One pass: `P = Y ×_n uᵀ` as `(p_1, …, p_m, r)` when `sig` is given and
    /// `C = Y ×_{j ≤ m} U_jᵀ` as `(r_1, …, r_m, n)` when `nav` factors are given.
    fn accumulate(
        &self,
        feed: Feed<'_>,
        nav: Option<&[Array2<f64>]>,
        sig: Option<&Array2<f64>>,
    ) -> Result<Projections> {
        let n = self.n;
        let r = sig.map(|u| u.ncols()).unwrap_or(0);
        let mut p = sig.map(|_| vec![0.0f64; self.n_frames * r]);
        let mut c_acc: Option<ArrayD<f64>> = match nav {
            Some(f) => {
                let mut sh: Vec<usize> = f.iter().map(|u| u.ncols()).collect();
                sh.push(n);
                Some(ArrayD::zeros(IxDyn(&sh)))
            }
            None => None,
        };
        let sig_ref = match sig {
            Some(u) => Some(array_ref(u)?),
            None => None,
        };
        let stage = match feed {
            Feed::Data => "projection",
            Feed::Noise { .. } => "surrogate",
        };
        self.for_each(feed, stage, |start, count, v| {
            if let (Some(p), Some(u)) = (p.as_mut(), sig_ref) {
                rows_times(v, n, u, &mut p[start * r..(start + count) * r]);
            }
            if let (Some(acc), Some(f)) = (c_acc.as_mut(), nav) {
                let (a, b) = (start / self.hyper, (start + count) / self.hyper);
                let mut sh = self.nav.clone();
                sh[0] = b - a;
                sh.push(n);
                let t = ndarray::ArrayViewD::from_shape(IxDyn(&sh), v)
                    .map_err(|e| Error::invalid("chunk", e.to_string()))?;
                // Modes 2..m first (mode products), then the first navigation mode as one
                // GEMM accumulated straight into C: C (r_1 × rest) += U_1[rows]ᵀ · T.
                let mut part: Option<ArrayD<f64>> = None;
                for (j, u) in f.iter().enumerate().skip(1) {
                    let next = match &part {
                        None => mode_product(t.view(), u.t(), j)?,
                        Some(pt) => mode_product(pt.view(), u.t(), j)?,
                    };
                    part = Some(next);
                }
                let tv = match &part {
                    Some(pt) => pt
                        .as_slice()
                        .ok_or_else(|| Error::invalid("chunk", "non-standard layout"))?,
                    None => v,
                };
                let rows = b - a;
                let rest = tv.len() / rows.max(1);
                let u0 = f[0].slice(s![a..b, ..]).as_standard_layout().into_owned();
                let u0s = u0
                    .as_slice()
                    .ok_or_else(|| Error::invalid("factor", "non-standard layout"))?;
                let r0 = f[0].ncols();
                let um = MatRef::from_row_major_slice(u0s, rows, r0);
                let accs = acc
                    .as_slice_mut()
                    .ok_or_else(|| Error::invalid("projection", "non-standard layout"))?;
                add_ut_times(um, tv, rest, accs);
            }
            Ok(())
        })?;
        let p = match p {
            Some(p) => {
                let mut sh = self.nav.clone();
                sh.push(r);
                Some(
                    ArrayD::from_shape_vec(IxDyn(&sh), p)
                        .map_err(|e| Error::invalid("projection", e.to_string()))?,
                )
            }
            None => None,
        };
        Ok((p, c_acc))
    }

    /// HOOI sweeps from `tk` (two data passes each). Returns the fit and the last `C`.
    fn sweeps(
        &self,
        feed: Feed<'_>,
        mut tk: Tucker,
        max_sweeps: usize,
        tolerance: f64,
    ) -> Result<(Tucker, Option<ArrayD<f64>>)> {
        let m = self.nav.len();
        let mut prev = tk.core_norm_sq.last().copied().unwrap_or(0.0);
        let mut last_c = None;
        for sweep in 0..max_sweeps {
            check_cancel(self.progress)?;
            let (p, _) = self.accumulate(feed, None, Some(&tk.factors[m]))?;
            let p = p.ok_or_else(|| Error::invalid("sweep", "missing projection"))?;
            for j in 0..m {
                let a = project_nav_except(&p, &tk.factors, j)?;
                tk.factors[j] = mode_subspace(a.view(), j, tk.factors[j].ncols())?.u;
            }
            let (_, c) = self.accumulate(feed, Some(&tk.factors[..m]), None)?;
            let c = c.ok_or_else(|| Error::invalid("sweep", "missing projection"))?;
            tk.factors[m] = mode_subspace(c.view(), m, tk.factors[m].ncols())?.u;
            tk.core = mode_product(c.view(), tk.factors[m].t(), m)?;
            last_c = Some(c);
            let norm: f64 = tk.core.iter().map(|v| v * v).sum();
            tk.core_norm_sq.push(norm);
            tk.sweeps = sweep + 1;
            if (norm - prev).abs() <= tolerance * norm.max(f64::MIN_POSITIVE) {
                break;
            }
            prev = norm;
        }
        Ok((tk, last_c))
    }

    /// `X̂` for the frames `start .. start + count` (whole rows of the first navigation axis),
    /// row-major `count × n`.
    fn reconstruct_rows(&self, tk: &Tucker, start: usize, count: usize) -> Result<Vec<f64>> {
        let mut out = vec![0.0f64; count * self.n];
        self.reconstruct_rows_into(tk, start, count, &mut out)?;
        Ok(out)
    }

    /// [`reconstruct_rows`](Self::reconstruct_rows) into `out` (`count × n`): the navigation
    /// modes first, `G = S ×_1 U_1[rows] ×_2 U_2 ⋯ ×_m U_m` (`count × r_n`, small), then one
    /// GEMM `X̂ = G U_nᵀ` over fixed row blocks.
    fn reconstruct_rows_into(
        &self,
        tk: &Tucker,
        start: usize,
        count: usize,
        out: &mut [f64],
    ) -> Result<()> {
        let m = self.nav.len();
        let (a, b) = (start / self.hyper, (start + count) / self.hyper);
        let mut cur = mode_product(tk.core.view(), tk.factors[0].slice(s![a..b, ..]), 0)?;
        for j in 1..m {
            cur = mode_product(cur.view(), tk.factors[j].view(), j)?;
        }
        let g = cur
            .as_slice()
            .ok_or_else(|| Error::invalid("reconstruction", "non-standard layout"))?;
        let un = array_ref(&tk.factors[m])?;
        rows_times(g, un.ncols(), un.transpose(), &mut out[..count * self.n]);
        Ok(())
    }

    /// The output pass: each chunk reconstructed, multiplied back by the weights and rounded
    /// to `f32` while a writer thread hands the previous chunk to the sink (two `f32` chunk
    /// buffers circulate, so the sink's I/O overlaps the computation).
    fn write(&self, tk: &Tucker, sink: &mut dyn FrameSink) -> Result<()> {
        let n = self.n;
        let (chunk, total) = (self.chunk, self.n_frames);
        let mut x = vec![0.0f64; chunk * n];
        self.progress.start("output", total as u64);
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(usize, usize, Vec<f32>)>(1);
            let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<f32>>();
            for _ in 0..2 {
                // Cannot fail: the receiver is alive.
                let _ = free_tx.send(vec![0.0f32; chunk * n]);
            }
            let writer = scope.spawn(move || -> Result<()> {
                // Ends when the computing side stops sending (done or failed).
                while let Ok((start, count, buf)) = full_rx.recv() {
                    sink.write_frames(start, n, &buf[..count * n])?;
                    let _ = free_tx.send(buf);
                }
                Ok(())
            });
            let computed = (|| -> Result<()> {
                let mut start = 0;
                while start < total {
                    check_cancel(self.progress)?;
                    let count = chunk.min(total - start);
                    let xs = &mut x[..count * n];
                    self.reconstruct_rows_into(tk, start, count, xs)?;
                    let mut o = free_rx
                        .recv()
                        .map_err(|_| Error::invalid("sink", "the writer thread stopped"))?;
                    let scaling = self.scaling.as_ref();
                    o[..count * n]
                        .par_chunks_mut(n)
                        .zip(xs.par_chunks(n))
                        .enumerate()
                        .for_each(|(i, (o, x))| match scaling {
                            Some(w) => {
                                let g = w.nav_weights[start + i];
                                for ((a, &b), &h) in o.iter_mut().zip(x).zip(&w.sig_weights) {
                                    *a = (b * (g * h)) as f32;
                                }
                            }
                            None => {
                                for (a, &b) in o.iter_mut().zip(x) {
                                    *a = b as f32;
                                }
                            }
                        });
                    if full_tx.send((start, count, o)).is_err() {
                        // The writer failed: its error is reported below.
                        break;
                    }
                    self.progress.advance(count as u64);
                    start += count;
                }
                Ok(())
            })();
            drop(full_tx);
            let written = writer
                .join()
                .map_err(|_| Error::invalid("sink", "the writer thread panicked"))?;
            // A failed sink stops the computation too: its error is the one to report.
            written.and(computed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denoise::{TensorDenoiser, psnr};
    use std::sync::Mutex;
    use stem_core::frame_source::InMemorySource;
    use stem_core::{Hypercube, NoProgress};

    /// Records the largest read and the number of passes (reads starting at frame 0).
    struct Counting<'a> {
        inner: InMemorySource<'a>,
        stats: Mutex<(usize, usize)>,
    }

    impl FrameSource for Counting<'_> {
        fn nav_shape(&self) -> &[usize] {
            self.inner.nav_shape()
        }
        fn sig_shape(&self) -> &[usize] {
            self.inner.sig_shape()
        }
        fn read_frames(&self, start: usize, out: &mut [f32]) -> stem_core::Result<()> {
            let mut s = self.stats.lock().unwrap();
            s.0 = s.0.max(out.len() / self.inner.frame_len());
            if start == 0 {
                s.1 += 1;
            }
            self.inner.read_frames(start, out)
        }
    }

    fn noisy_cube(scan: usize, det: usize, dose: f64, seed: u64) -> (ArrayD<f32>, ArrayD<f32>) {
        let clean = crate::synth::clean_cube(scan, det, dose).unwrap();
        let noisy = crate::synth::poisson_cube(&clean, det * det, seed).unwrap();
        (clean, noisy)
    }

    fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
        let peak = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
            .fold(0.0, f64::max)
            / peak
    }

    #[test]
    fn config_validation() {
        let bad = |c: StreamConfig| StreamedDenoiser::new(c).is_err();
        assert!(bad(StreamConfig {
            tolerance: f64::NAN,
            ..Default::default()
        }));
        assert!(bad(StreamConfig {
            frames_per_chunk: 0,
            ..Default::default()
        }));
        assert!(bad(StreamConfig {
            ranks: Ranks::Fixed(vec![2, 0, 2]),
            ..Default::default()
        }));
        assert!(bad(StreamConfig {
            auto: AutoRankConfig {
                rounds: 0,
                ..Default::default()
            },
            ..Default::default()
        }));
        let full = DenoiseConfig {
            layout: crate::denoise::Layout::Full,
            ..Default::default()
        };
        assert!(matches!(
            StreamConfig::from_denoise(&full),
            Err(Error::InvalidParameter { name: "layout", .. })
        ));
    }

    #[test]
    fn data_validation() {
        let run = |data: ArrayD<f32>, nav: usize, ranks: Ranks| {
            let cube = Hypercube::new(data, nav).unwrap();
            let mut out = Vec::new();
            StreamedDenoiser::new(StreamConfig {
                ranks,
                ..Default::default()
            })
            .unwrap()
            .run(&InMemorySource::new(cube.view()), &mut out, &NoProgress)
        };
        let ones = ArrayD::<f32>::ones(IxDyn(&[4, 4, 2, 2]));
        assert!(matches!(
            run(ones.clone(), 2, Ranks::Fixed(vec![1, 1])),
            Err(Error::RankCount {
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            run(ones.clone(), 2, Ranks::Fixed(vec![5, 1, 1])),
            Err(Error::InvalidRank { mode: 0, .. })
        ));
        assert!(matches!(
            run(ones.clone(), 0, Ranks::Auto),
            Err(Error::InvalidParameter { name: "source", .. })
        ));
        let mut neg = ones.clone();
        neg[[1, 0, 0, 1]] = -2.0;
        assert!(matches!(
            run(neg, 2, Ranks::Auto),
            Err(Error::Negative { index: 17, .. })
        ));
        let mut nan = ones;
        nan[[0, 1, 1, 0]] = f32::NAN;
        assert!(matches!(
            run(nan, 2, Ranks::Fixed(vec![1, 1, 1])),
            Err(Error::NonFinite { index: 6, .. })
        ));
    }

    /// Memory bound: no read asks for more than one chunk of frames (whole scan rows), and the
    /// number of passes over the source is the one stated in the module docs.
    #[test]
    fn chunks_and_passes_are_bounded() {
        let (_, noisy) = noisy_cube(12, 8, 500.0, 1);
        let cube = Hypercube::new(noisy, 2).unwrap();
        for (ranks, scaling) in [(Ranks::Fixed(vec![4, 4, 3]), true), (Ranks::Auto, true)] {
            let src = Counting {
                inner: InMemorySource::new(cube.view()),
                stats: Mutex::new((0, 0)),
            };
            let config = StreamConfig {
                ranks: ranks.clone(),
                poisson_scaling: scaling,
                frames_per_chunk: 30, // rounded down to 2 scan rows = 24 frames
                tolerance: 0.0,
                exact_sweeps: 4,
                ..Default::default()
            };
            let mut out = Vec::new();
            let r = StreamedDenoiser::new(config.clone())
                .unwrap()
                .run(&src, &mut out, &NoProgress)
                .unwrap();
            let (max_read, passes) = *src.stats.lock().unwrap();
            assert_eq!(r.frames_per_chunk, 24);
            assert_eq!(max_read, 24);
            let q = config.sketch_power_passes;
            // The Keenan–Kotula sums share the first sketch pass.
            let mut expected = (q + 2) + 2 * r.tucker.sweeps;
            if ranks == Ranks::Auto {
                // Initial signal rank 8 + 16 columns ≥ every later rank here: no re-sketch.
                expected += config.auto.rounds * (2 * config.round_sweeps + 1);
            }
            assert_eq!(r.tucker.sweeps, 4);
            assert_eq!(passes, expected, "{ranks:?}");
            assert_eq!(r.data_passes, expected);
            assert_eq!(out.len(), 12 * 12 * 64);
        }
    }

    /// Oracle: run to convergence, the streamed HOOI equals the in-memory HOOI (same fixed
    /// point; only the start differs), with and without Keenan–Kotula scaling.
    #[test]
    fn equals_in_memory_hooi() {
        let (_, noisy) = noisy_cube(16, 12, 1000.0, 2);
        let cube = Hypercube::new(noisy, 2).unwrap();
        for scaling in [true, false] {
            let dc = DenoiseConfig {
                ranks: Ranks::Fixed(vec![5, 5, 4]),
                poisson_scaling: scaling,
                max_sweeps: 300,
                tolerance: 1e-14,
                ..Default::default()
            };
            let mem = TensorDenoiser::new(dc.clone())
                .unwrap()
                .run(cube.view(), &NoProgress)
                .unwrap();
            let sc = StreamConfig {
                frames_per_chunk: 40,
                exact_sweeps: 300,
                ..StreamConfig::from_denoise(&dc).unwrap()
            };
            let mut out = Vec::new();
            let r = StreamedDenoiser::new(sc)
                .unwrap()
                .run(&InMemorySource::new(cube.view()), &mut out, &NoProgress)
                .unwrap();
            let d = max_rel_diff(&out, mem.denoised.as_slice().unwrap());
            // Both stop within 1e-14 of the same fixed point of ‖S‖²; the f32 output rounds
            // at 6e-8 relative, so 1e-5 of the peak leaves room for the slow final convergence.
            assert!(
                d < 1e-5,
                "scaling {scaling}: max diff {d:e}, sweeps {}",
                r.tucker.sweeps
            );
        }
    }

    /// Automatic ranks streamed: the same Poisson surrogate and rank rule as in memory give the
    /// same ranks on the reference-style cube, and the same PSNR to 0.05 dB.
    #[test]
    fn auto_ranks_streamed_match_in_memory() {
        let (clean, noisy) = noisy_cube(24, 16, 1000.0, 3);
        let cube = Hypercube::new(noisy.clone(), 2).unwrap();
        let mem = TensorDenoiser::new(DenoiseConfig::default())
            .unwrap()
            .run(cube.view(), &NoProgress)
            .unwrap();
        let mut out = Vec::new();
        let r = StreamedDenoiser::new(StreamConfig {
            frames_per_chunk: 100,
            ..Default::default()
        })
        .unwrap()
        .run(&InMemorySource::new(cube.view()), &mut out, &NoProgress)
        .unwrap();
        let out = ArrayD::from_shape_vec(noisy.raw_dim(), out).unwrap();
        let (p_mem, p_str) = (
            psnr(clean.view(), mem.denoised.view()).unwrap(),
            psnr(clean.view(), out.view()).unwrap(),
        );
        let p_noisy = psnr(clean.view(), noisy.view()).unwrap();
        eprintln!(
            "ranks mem {:?} streamed {:?}; PSNR {p_mem:.3} / {p_str:.3} (noisy {p_noisy:.2})",
            mem.ranks, r.ranks
        );
        assert_eq!(r.ranks, mem.ranks);
        assert_eq!(r.scree.len(), 2);
        assert!((p_mem - p_str).abs() < 0.05, "{p_mem} vs {p_str}");
        assert!(p_str > p_noisy + 10.0);
    }

    /// Thread-count determinism: 1 and 2 threads give bit-identical output, streamed and in
    /// memory (fixed block sizes, chunk-ordered reductions).
    #[test]
    fn thread_count_determinism() {
        let (_, noisy) = noisy_cube(16, 12, 300.0, 4);
        let cube = Hypercube::new(noisy, 2).unwrap();
        let streamed = |p: Parallelism| {
            let mut out = Vec::new();
            StreamedDenoiser::new(StreamConfig {
                frames_per_chunk: 48,
                parallelism: p,
                ..Default::default()
            })
            .unwrap()
            .run(&InMemorySource::new(cube.view()), &mut out, &NoProgress)
            .unwrap();
            out
        };
        assert_eq!(
            streamed(Parallelism::Threads(1)),
            streamed(Parallelism::Threads(2))
        );
        let mem = |p: Parallelism| {
            TensorDenoiser::new(DenoiseConfig {
                parallelism: p,
                ..Default::default()
            })
            .unwrap()
            .run(cube.view(), &NoProgress)
            .unwrap()
            .denoised
        };
        assert_eq!(mem(Parallelism::Threads(1)), mem(Parallelism::Threads(2)));
    }

    /// From disk to disk: a lazily opened NPY file denoised into an [`NpyWriter`] equals the
    /// in-memory sink bit for bit.
    #[test]
    fn npy_to_npy_matches_memory_sink() {
        let (_, noisy) = noisy_cube(8, 8, 200.0, 5);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.npy");
        let output = dir.path().join("out.npy");
        stem_core::io::npy::write_npy(&input, &noisy).unwrap();
        let opts = stem_core::io::OpenOptions {
            lazy_threshold_bytes: 0,
        };
        let ds = stem_core::io::open_with(&input, &opts).unwrap();
        let sig = ds.first().unwrap();
        assert!(sig.is_lazy());
        let src = sig.frame_source();
        let config = StreamConfig {
            ranks: Ranks::Fixed(vec![3, 3, 3]),
            frames_per_chunk: 16,
            ..Default::default()
        };
        let den = StreamedDenoiser::new(config).unwrap();
        let mut writer = NpyWriter::create(&output, &[8, 8, 8, 8]).unwrap();
        den.run(src.as_ref(), &mut writer, &NoProgress).unwrap();
        writer.finish().unwrap();
        let mut mem = Vec::new();
        den.run(src.as_ref(), &mut mem, &NoProgress).unwrap();
        let back = stem_core::io::npy::read_npy_f32(&output).unwrap();
        assert_eq!(back.shape(), &[8, 8, 8, 8]);
        assert_eq!(back.as_slice().unwrap(), &mem[..]);
    }

    #[test]
    fn npy_writer_checks_order_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = NpyWriter::create(dir.path().join("a.npy"), &[3, 2]).unwrap();
        assert!(w.write_frames(1, 2, &[1.0, 2.0]).is_err());
        w.write_frames(0, 2, &[1.0, 2.0]).unwrap();
        assert!(matches!(w.finish(), Err(Error::ShapeMismatch { .. })));
        let mut v: Vec<f32> = Vec::new();
        assert!(v.write_frames(2, 2, &[1.0, 2.0]).is_err());
    }

    #[test]
    fn cancel_is_honoured() {
        let (_, noisy) = noisy_cube(8, 8, 200.0, 6);
        let cube = Hypercube::new(noisy, 2).unwrap();
        let flag = stem_core::CancelFlag::default();
        flag.cancel();
        let mut out = Vec::new();
        assert!(matches!(
            StreamedDenoiser::new(StreamConfig::default()).unwrap().run(
                &InMemorySource::new(cube.view()),
                &mut out,
                &flag
            ),
            Err(Error::Core(stem_core::Error::Cancelled))
        ));
    }
}
