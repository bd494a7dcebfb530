//! The infinite projection, built in Fourier space (see the parent module's docs).

use ndarray::{Array2, Array3, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use stem_core::Progress;
use stem_core::fft::{Fft2, fftfreq};

use super::Plan;
use crate::error::Result;

/// Per-element Fourier weights W_s(k) = F_s(|k|) / (dx·dy·sin(q)/q), `[k_y, k_x]` unshifted.
fn weights(plan: &Plan) -> Vec<Array2<f64>> {
    let [ny, nx] = plan.gpts;
    let [dy, dx] = plan.sampling;
    let ky = fftfreq(ny, dy);
    let kx = fftfreq(nx, dx);
    plan.species
        .par_iter()
        .map(|s| {
            Array2::from_shape_fn((ny, nx), |(i, j)| {
                let (ky, kx) = (ky[i], kx[j]);
                let q = ((kx * dx).powi(2) + (ky * dy).powi(2)).sqrt();
                let sinc = if q == 0.0 { 1.0 } else { q.sin() / q };
                let k = (kx * kx + ky * ky).sqrt();
                s.element.projected_scattering_factor_va3(k) / (dx * dy * sinc)
            })
        })
        .collect()
}

/// Adds unit deltas at the positions `[x, y]` (Å, inside the cell) with bilinear weights,
/// periodic, to the real part (`imag == false`) or the imaginary part of `buf`.
fn deposit(buf: &mut Array2<Complex<f64>>, plan: &Plan, positions: &[[f64; 2]], imag: bool) {
    let [ny, nx] = plan.gpts;
    let [dy, dx] = plan.sampling;
    let unit = if imag {
        Complex::new(0.0, 1.0)
    } else {
        Complex::new(1.0, 0.0)
    };
    for p in positions {
        let (px, py) = (p[0] / dx, p[1] / dy);
        let (fx0, fy0) = (px.floor(), py.floor());
        let (fx, fy) = (px - fx0, py - fy0);
        // Positions are wrapped into [0, L), so the floors are in 0..=n; `%` keeps n → 0.
        let i0 = (fx0 as usize) % nx;
        let j0 = (fy0 as usize) % ny;
        let i1 = (i0 + 1) % nx;
        let j1 = (j0 + 1) % ny;
        buf[[j0, i0]] += unit * ((1.0 - fx) * (1.0 - fy));
        buf[[j0, i1]] += unit * (fx * (1.0 - fy));
        buf[[j1, i0]] += unit * ((1.0 - fx) * fy);
        buf[[j1, i1]] += unit * (fx * fy);
    }
}

/// Builds the slices two at a time: the deposits of slice 2p go into the real part and those of
/// slice 2p+1 into the imaginary part of one complex array. Because the weights W_s(k) are real
/// and even, Σ_s W_s·FFT(D_{2p,s} + i·D_{2p+1,s}) transforms back to V_{2p} + i·V_{2p+1}: one
/// forward FFT per element and one inverse FFT serve two slices.
pub(super) fn build(plan: &Plan, progress: &dyn Progress) -> Result<Array3<f64>> {
    let [ny, nx] = plan.gpts;
    let fft = Fft2::<f64>::new([ny, nx])?;
    let weights = weights(plan);
    // bins[slice][species]: lateral positions of the atoms whose centre lies in the slice.
    let mut bins = vec![vec![Vec::<[f64; 2]>::new(); plan.species.len()]; plan.n_slices];
    for (si, s) in plan.species.iter().enumerate() {
        for p in &s.positions {
            bins[plan.slice_of(p[2])][si].push([p[0], p[1]]);
        }
    }
    let mut out = Array3::<f64>::zeros((plan.n_slices, ny, nx));
    out.axis_chunks_iter_mut(Axis(0), 2)
        .into_par_iter()
        .enumerate()
        .try_for_each_init(
            || {
                (
                    Array2::<Complex<f64>>::zeros((ny, nx)),
                    Array2::<Complex<f64>>::zeros((ny, nx)),
                )
            },
            |(acc, buf), (pair, mut slices)| -> Result<()> {
                stem_core::progress::check_cancel(progress)?;
                let ks: Vec<usize> = (2 * pair..(2 * pair + 2).min(plan.n_slices)).collect();
                acc.fill(Complex::new(0.0, 0.0));
                for (si, w) in weights.iter().enumerate() {
                    if ks.iter().all(|&k| bins[k][si].is_empty()) {
                        continue;
                    }
                    buf.fill(Complex::new(0.0, 0.0));
                    for (part, &k) in ks.iter().enumerate() {
                        deposit(buf, plan, &bins[k][si], part == 1);
                    }
                    fft.forward(buf)?;
                    ndarray::Zip::from(&mut *acc)
                        .and(&*buf)
                        .and(w)
                        .for_each(|a, &b, &w| *a += b * w);
                }
                fft.inverse(acc)?;
                for (part, mut slice) in slices.axis_iter_mut(Axis(0)).enumerate() {
                    ndarray::Zip::from(&mut slice)
                        .and(&*acc)
                        .for_each(|o, a| *o = if part == 0 { a.re } else { a.im });
                }
                progress.advance(ks.len() as u64);
                Ok(())
            },
        )?;
    Ok(out)
}
