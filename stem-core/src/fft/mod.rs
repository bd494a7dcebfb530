//! 2-D FFT plans and frequency helpers, with numpy's conventions.
//!
//! * [`Fft2`]: a reusable plan for one shape `[ny, nx]` (axis order `[y, x]`), built on
//!   rustfft 6. The forward transform is unnormalised,
//!   `X[ky, kx] = Σ_y Σ_x x[y, x] · exp(−2πi (ky·y/ny + kx·x/nx))`, and the inverse is scaled
//!   by `1/(ny·nx)`, exactly as `numpy.fft.fft2` / `numpy.fft.ifft2`.
//! * [`fftfreq`]: sample frequencies in cycles per unit of the sample spacing (no 2π), as
//!   `numpy.fft.fftfreq`.
//! * [`fftshift`] / [`ifftshift`] (and 1-D forms): move the zero frequency to the centre and back,
//!   as numpy's functions, including odd sizes. Spectra are kept unshifted everywhere in the
//!   library; `fftshift` is only for display and for diffraction-pattern outputs, whose docs
//!   say so.
//!
//! ```
//! use ndarray::Array2;
//! use num_complex::Complex;
//! use stem_core::fft::{fftfreq, Fft2};
//!
//! let plan = Fft2::<f64>::new([4, 6])?;
//! // A unit impulse at the origin has a flat spectrum of ones.
//! let mut a = Array2::<Complex<f64>>::zeros((4, 6));
//! a[[0, 0]] = Complex::new(1.0, 0.0);
//! plan.forward(&mut a)?;
//! assert!(a.iter().all(|v| (v - Complex::new(1.0, 0.0)).norm() < 1e-12));
//! plan.inverse(&mut a)?;
//! assert!((a[[0, 0]].re - 1.0).abs() < 1e-12 && a[[1, 2]].norm() < 1e-12);
//! // Frequencies of a 4-sample axis with 0.5 Å spacing, in 1/Å.
//! assert_eq!(fftfreq(4, 0.5), vec![0.0, 0.5, -1.0, -0.5]);
//! # Ok::<(), stem_core::Error>(())
//! ```

mod shift;
#[cfg(test)]
mod tests;

pub use shift::{fftfreq, fftshift, fftshift_1d, ifftshift, ifftshift_1d};

use crate::error::{Error, Result};
use crate::real::Real;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use std::fmt;
use std::sync::Arc;

/// Number of lanes (rows, or columns) transformed together: the unit of work of a rayon task
/// and the width of the gather buffer used for strided lanes. Fixed so that sequential and
/// parallel runs do the same arithmetic on the same batches (bit-identical results).
const LANE_BLOCK: usize = 16;

/// A reusable 2-D FFT plan for arrays of shape `[ny, nx]` (axis order `[y, x]`).
///
/// Forward transforms are unnormalised; inverse transforms are scaled by `1/(ny·nx)` (numpy's
/// convention). Transforms run in place on `Complex<T>` arrays of any memory layout (standard,
/// Fortran, transposed, sliced with steps or negative strides).
///
/// The plan is `Send + Sync` and holds no scratch memory, so one plan can be shared by many
/// threads at once; each call allocates its own scratch (one small buffer per call, or per
/// rayon task when parallel). It is single-threaded by default;
/// [`with_parallel`](Self::with_parallel) spreads rows and columns over rayon's current pool (use
/// [`Parallelism::install`](crate::Parallelism::install) to choose the pool). Results are
/// bit-identical either way.
///
/// Rows (contiguous in a standard-layout array) are transformed in place; columns are gathered
/// in blocks of 16 into a contiguous buffer, transformed and scattered back, which keeps memory
/// access sequential.
#[derive(Clone)]
pub struct Fft2<T: Real> {
    shape: [usize; 2],
    row_forward: Arc<dyn Fft<T>>,
    row_inverse: Arc<dyn Fft<T>>,
    col_forward: Arc<dyn Fft<T>>,
    col_inverse: Arc<dyn Fft<T>>,
    parallel: bool,
}

impl<T: Real> fmt::Debug for Fft2<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fft2")
            .field("shape", &self.shape)
            .field("parallel", &self.parallel)
            .finish()
    }
}

impl<T: Real> Fft2<T> {
    /// Plans transforms for arrays of shape `[ny, nx]`.
    ///
    /// Errors with [`Error::InvalidParameter`] if a dimension is zero. Any sizes are supported
    /// (including primes, through rustfft's Rader/Bluestein algorithms).
    pub fn new(shape: [usize; 2]) -> Result<Self> {
        if shape[0] == 0 || shape[1] == 0 {
            return Err(Error::invalid(
                "shape",
                format!("FFT dimensions must be >= 1, got {shape:?}"),
            ));
        }
        let mut planner = FftPlanner::<T>::new();
        Ok(Fft2 {
            shape,
            row_forward: planner.plan_fft_forward(shape[1]),
            row_inverse: planner.plan_fft_inverse(shape[1]),
            col_forward: planner.plan_fft_forward(shape[0]),
            col_inverse: planner.plan_fft_inverse(shape[0]),
            parallel: false,
        })
    }

    /// Whether to spread rows and columns over rayon's current thread pool (default `false`).
    /// Pays for large arrays (roughly 256² and up); results are bit-identical either way.
    pub fn with_parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// Whether this plan runs in parallel (see [`with_parallel`](Self::with_parallel)).
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }

    /// The planned shape `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// Forward transform in place (unnormalised). Errors with [`Error::ShapeMismatch`] if the
    /// array's shape is not the planned one.
    pub fn forward(&self, data: &mut Array2<Complex<T>>) -> Result<()> {
        self.forward_view(data.view_mut())
    }

    /// Inverse transform in place, scaled by `1/(ny·nx)`. Errors with
    /// [`Error::ShapeMismatch`] if the array's shape is not the planned one.
    pub fn inverse(&self, data: &mut Array2<Complex<T>>) -> Result<()> {
        self.inverse_view(data.view_mut())
    }

    /// Forward transform in place on a mutable view of any layout.
    pub fn forward_view(&self, data: ArrayViewMut2<'_, Complex<T>>) -> Result<()> {
        self.transform(data, false)
    }

    /// Inverse transform (scaled by `1/(ny·nx)`) in place on a mutable view of any layout.
    pub fn inverse_view(&self, data: ArrayViewMut2<'_, Complex<T>>) -> Result<()> {
        self.transform(data, true)
    }

    /// Forward transform of a real array, returned as a new complex array of the same shape
    /// (the full spectrum, not the half spectrum of an rfft).
    pub fn forward_real(&self, data: ArrayView2<'_, T>) -> Result<Array2<Complex<T>>> {
        self.check_shape(data.dim())?;
        let mut out = data.mapv(|v| Complex::new(v, T::zero()));
        self.forward(&mut out)?;
        Ok(out)
    }

    fn check_shape(&self, (ny, nx): (usize, usize)) -> Result<()> {
        if [ny, nx] != self.shape {
            return Err(Error::ShapeMismatch {
                expected: self.shape.to_vec(),
                found: vec![ny, nx],
            });
        }
        Ok(())
    }

    fn transform(&self, mut data: ArrayViewMut2<'_, Complex<T>>, inverse: bool) -> Result<()> {
        self.check_shape(data.dim())?;
        let (row, col) = if inverse {
            (&self.row_inverse, &self.col_inverse)
        } else {
            (&self.row_forward, &self.col_forward)
        };
        let scale =
            inverse.then(|| T::from_f64_lossy(1.0 / (self.shape[0] as f64 * self.shape[1] as f64)));
        // Rows: lanes along axis 1.
        process_lanes(data.view_mut(), row.as_ref(), None, self.parallel);
        // Columns: lanes along axis 0 are the rows of the transposed view.
        process_lanes(data.reversed_axes(), col.as_ref(), scale, self.parallel);
        Ok(())
    }
}

/// Transforms every row of `lanes` (each of length `lanes.ncols()`, the FFT length), then
/// multiplies by `scale` if given.
fn process_lanes<T: Real>(
    mut lanes: ArrayViewMut2<'_, Complex<T>>,
    fft: &dyn Fft<T>,
    scale: Option<T>,
    parallel: bool,
) {
    let scratch_len = fft.get_inplace_scratch_len();
    let init = || {
        (
            Vec::<Complex<T>>::new(),
            vec![Complex::new(T::zero(), T::zero()); scratch_len],
        )
    };
    let chunks = lanes.axis_chunks_iter_mut(Axis(0), LANE_BLOCK);
    if parallel {
        chunks
            .into_par_iter()
            .for_each_init(init, |(buf, scratch), block| {
                process_block(block, fft, scale, buf, scratch)
            });
    } else {
        let (mut buf, mut scratch) = init();
        for block in chunks {
            process_block(block, fft, scale, &mut buf, &mut scratch);
        }
    }
}

fn scale_slice<T: Real>(s: &mut [Complex<T>], scale: Option<T>) {
    if let Some(f) = scale {
        s.iter_mut().for_each(|v| *v = *v * f);
    }
}

/// Transforms the rows of one block of at most [`LANE_BLOCK`] lanes.
fn process_block<T: Real>(
    mut block: ArrayViewMut2<'_, Complex<T>>,
    fft: &dyn Fft<T>,
    scale: Option<T>,
    buf: &mut Vec<Complex<T>>,
    scratch: &mut [Complex<T>],
) {
    let n = block.ncols();
    // Whole block contiguous in memory (standard layout): one batched call, in place.
    if let Some(s) = block.as_slice_mut() {
        fft.process_with_scratch(s, scratch);
        scale_slice(s, scale);
        return;
    }
    // Each lane contiguous (e.g. a column slice of a wider array): lane by lane, in place.
    if block.rows().into_iter().all(|r| r.as_slice().is_some()) {
        for mut row in block.rows_mut() {
            if let Some(s) = row.as_slice_mut() {
                fft.process_with_scratch(s, scratch);
                scale_slice(s, scale);
            }
        }
        return;
    }
    // Strided lanes: gather into a contiguous buffer position by position (for the columns of
    // a row-major array the lanes of one position are adjacent in memory), transform, scatter.
    let b = block.nrows();
    buf.clear();
    buf.resize(b * n, Complex::new(T::zero(), T::zero()));
    for (i, col) in block.columns().into_iter().enumerate() {
        for (l, v) in col.iter().enumerate() {
            buf[l * n + i] = *v;
        }
    }
    fft.process_with_scratch(buf, scratch);
    scale_slice(buf, scale);
    for (i, mut col) in block.columns_mut().into_iter().enumerate() {
        for (l, v) in col.iter_mut().enumerate() {
            *v = buf[l * n + i];
        }
    }
}
