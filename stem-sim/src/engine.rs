//! The multislice FFT engine: 2-D transforms that leave reciprocal space transposed.
//!
//! A forward transform takes a real-space wave `[y][x]` (row-major, `ny·nx` values), transforms
//! its rows, transposes into the reciprocal buffer and transforms the rows again, leaving the
//! spectrum in `[k_x][k_y]` order. The inverse undoes it. Keeping reciprocal space transposed
//! saves two transposes per slice; every reciprocal-space kernel (propagator, aperture,
//! detector masks) is stored in the same `[k_x][k_y]` order. Transforms are unnormalised; the
//! 1/N of the inverse is folded into the propagator.

use std::sync::Arc;

use num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use stem_core::Real;

use crate::error::{Error, Result};

/// Planned row transforms for a `[ny, nx]` grid (shared between threads).
#[derive(Clone)]
pub(crate) struct Engine<T: Real> {
    ny: usize,
    nx: usize,
    fwd_x: Arc<dyn Fft<T>>,
    fwd_y: Arc<dyn Fft<T>>,
    inv_x: Arc<dyn Fft<T>>,
    inv_y: Arc<dyn Fft<T>>,
}

/// Per-thread buffers: a real-space wave, its transposed spectrum and FFT scratch.
pub(crate) struct Buffers<T: Real> {
    /// Real-space wave `[y][x]`.
    pub real: Vec<Complex<T>>,
    /// Reciprocal space `[k_x][k_y]`.
    pub kspace: Vec<Complex<T>>,
    scratch: Vec<Complex<T>>,
}

impl<T: Real> Engine<T> {
    pub(crate) fn new(gpts: [usize; 2]) -> Result<Self> {
        let [ny, nx] = gpts;
        if ny == 0 || nx == 0 {
            return Err(Error::invalid(
                "gpts",
                format!("grid must be non-empty, got {gpts:?}"),
            ));
        }
        let mut p = FftPlanner::<T>::new();
        Ok(Self {
            ny,
            nx,
            fwd_x: p.plan_fft_forward(nx),
            fwd_y: p.plan_fft_forward(ny),
            inv_x: p.plan_fft_inverse(nx),
            inv_y: p.plan_fft_inverse(ny),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ny * self.nx
    }

    pub(crate) fn buffers(&self) -> Buffers<T> {
        let z = Complex::new(T::zero(), T::zero());
        let s = [&self.fwd_x, &self.fwd_y, &self.inv_x, &self.inv_y]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Buffers {
            real: vec![z; self.len()],
            kspace: vec![z; self.len()],
            scratch: vec![z; s],
        }
    }

    /// `b.real` `[y][x]` → `b.kspace` `[k_x][k_y]` (unnormalised). Destroys `b.real`.
    pub(crate) fn forward(&self, b: &mut Buffers<T>) {
        self.fwd_x.process_with_scratch(&mut b.real, &mut b.scratch);
        transpose(&b.real, &mut b.kspace, self.ny, self.nx);
        self.fwd_y
            .process_with_scratch(&mut b.kspace, &mut b.scratch);
    }

    /// `b.kspace` `[k_x][k_y]` → `b.real` `[y][x]` (unnormalised). Destroys `b.kspace`.
    pub(crate) fn inverse(&self, b: &mut Buffers<T>) {
        self.inv_y
            .process_with_scratch(&mut b.kspace, &mut b.scratch);
        transpose(&b.kspace, &mut b.real, self.nx, self.ny);
        self.inv_x.process_with_scratch(&mut b.real, &mut b.scratch);
    }
}

/// `src` is `rows × cols` row-major; writes its transpose (`cols × rows`) into `dst`.
pub(crate) fn transpose<V: Copy>(src: &[V], dst: &mut [V], rows: usize, cols: usize) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        let r1 = (r0 + B).min(rows);
        for c0 in (0..cols).step_by(B) {
            let c1 = (c0 + B).min(cols);
            for r in r0..r1 {
                let srow = &src[r * cols + c0..r * cols + c1];
                for (c, v) in (c0..c1).zip(srow) {
                    dst[c * rows + r] = *v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn forward_is_transposed_numpy_fft_and_inverse_roundtrips() {
        let (ny, nx) = (6, 10);
        let e = Engine::<f64>::new([ny, nx]).unwrap();
        let mut b = e.buffers();
        let data: Vec<Complex<f64>> = (0..ny * nx)
            .map(|i| Complex::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
            .collect();
        b.real.copy_from_slice(&data);
        e.forward(&mut b);
        let mut reference = Array2::from_shape_vec((ny, nx), data.clone()).unwrap();
        stem_core::fft::Fft2::new([ny, nx])
            .unwrap()
            .forward(&mut reference)
            .unwrap();
        for ky in 0..ny {
            for kx in 0..nx {
                assert!((b.kspace[kx * ny + ky] - reference[[ky, kx]]).norm() < 1e-10);
            }
        }
        e.inverse(&mut b);
        let n = (ny * nx) as f64;
        for (a, d) in b.real.iter().zip(&data) {
            assert!((a / n - d).norm() < 1e-12);
        }
    }

    #[test]
    fn rejects_empty() {
        assert!(Engine::<f32>::new([0, 4]).is_err());
    }
}
