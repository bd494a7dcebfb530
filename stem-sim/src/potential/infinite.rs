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
/// periodic.
fn deposit(buf: &mut Array2<Complex<f64>>, plan: &Plan, positions: &[[f64; 2]]) {
    let [ny, nx] = plan.gpts;
    let [dy, dx] = plan.sampling;
    for p in positions {
        let (px, py) = (p[0] / dx, p[1] / dy);
        let (fx0, fy0) = (px.floor(), py.floor());
        let (fx, fy) = (px - fx0, py - fy0);
        // Positions are wrapped into [0, L), so the floors are in 0..=n; `%` keeps n → 0.
        let i0 = (fx0 as usize) % nx;
        let j0 = (fy0 as usize) % ny;
        let i1 = (i0 + 1) % nx;
        let j1 = (j0 + 1) % ny;
        buf[[j0, i0]].re += (1.0 - fx) * (1.0 - fy);
        buf[[j0, i1]].re += fx * (1.0 - fy);
        buf[[j1, i0]].re += (1.0 - fx) * fy;
        buf[[j1, i1]].re += fx * fy;
    }
}

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
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .try_for_each_init(
            || {
                (
                    Array2::<Complex<f64>>::zeros((ny, nx)),
                    Array2::<Complex<f64>>::zeros((ny, nx)),
                )
            },
            |(acc, buf), (k, mut slice)| -> Result<()> {
                stem_core::progress::check_cancel(progress)?;
                acc.fill(Complex::new(0.0, 0.0));
                for (positions, w) in bins[k].iter().zip(&weights) {
                    if positions.is_empty() {
                        continue;
                    }
                    buf.fill(Complex::new(0.0, 0.0));
                    deposit(buf, plan, positions);
                    fft.forward(buf)?;
                    ndarray::Zip::from(&mut *acc)
                        .and(&*buf)
                        .and(w)
                        .for_each(|a, &b, &w| *a += b * w);
                }
                fft.inverse(acc)?;
                ndarray::Zip::from(&mut slice)
                    .and(&*acc)
                    .for_each(|o, a| *o = a.re);
                progress.advance(1);
                Ok(())
            },
        )?;
    Ok(out)
}
