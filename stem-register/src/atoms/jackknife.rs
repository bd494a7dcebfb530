//! Column positions on a series average with delete-one jackknife uncertainties over frames.
//!
//! # Why a pixel-noise model can understate the scatter on an average
//! The first cause found (session 2's ≈ 2.6×) was a bias, not the noise model: fitting the
//! summed counts `S = Σ_k w_k` (`w_k` the warped frames), which step down where shifted frames
//! leave pixels with fewer frames (see
//! [`atom_positions_on_average`](super::atom_positions_on_average), which now fits
//! `mean × N`). With that removed, the fit of `mean × N` with `σᵢ² = mean·N` treats the
//! average as *independent Poisson pixels*, which it is not:
//! 1. each `w_k` is an interpolation `w_k(p) = Σ_q h(p − q + d_k) f_k(q)` of a Poisson frame.
//!    The kernel `h` (bicubic, bilinear) lowers the per-pixel variance by `Σ h²` (< 1 for
//!    fractional shifts) but correlates neighbouring pixels. A least-squares fit that treats
//!    the pixels as independent then counts each independent count more than once and its
//!    `(JᵀWJ)⁻¹` is too small (the sandwich `(JᵀWJ)⁻¹ JᵀW C W J (JᵀWJ)⁻¹` with the true
//!    covariance `C` is the right one);
//! 2. each frame's residual registration error `δ_k` moves its contribution: the average's
//!    column is displaced by `≈ (1/N) Σ_k δ_k(p)`, a scatter no pixel-noise model contains;
//! 3. the per-frame noise of the aligned frames is not exactly Poisson after resampling at all.
//!
//! # The estimate
//! The frames are independent given the specimen (independent counting noise, independently
//! estimated fields), and the average is their mean, so the delete-one jackknife over frames
//! (Efron & Stein 1981; Efron, *The Jackknife, the Bootstrap and Other Resampling Plans*, 1982)
//! captures all three effects without modelling any of them: with `θ` a column position refined
//! on the full average and `θ₍ₖ₎` the same refinement on the average without frame `k`,
//!
//! ```text
//! σ²_JK = (N − 1)/N · Σ_k (θ₍ₖ₎ − θ̄₍·₎)²,   θ̄₍·₎ = (1/N) Σ_k θ₍ₖ₎.
//! ```
//!
//! For a statistic that is linear in the frames (the mean itself) this equals
//! `s²/N` exactly (`s²` the unbiased sample variance over frames); for the Gaussian fit it is
//! the first-order (delta-method) variance. Assumptions and limits:
//! - the fields are held fixed (the registration is not rerun without frame `k`); a frame's
//!   field error enters as that frame's random effect, but the part of the error that is common
//!   to all frames (the reference's own error, the mean realised distortion of the series) is
//!   a systematic offset no resampling over frames can see;
//! - the estimate itself is noisy for few frames (relative SD of `σ²_JK` ≈ `√(2/(N − 1))` for
//!   Gaussian errors); use ≥ 8 frames for per-column values, fewer suffice for RMS summaries;
//! - positions are reported relative to the **column ensemble** (per replicate, the mean shift
//!   of the columns refined in every replicate is removed before the variance; the removed
//!   common shift's own jackknife σ is [`SeriesAtomPositions::common_shift_sigma_px`]): the
//!   average's absolute placement is a gauge, and bond lengths and lattice distortions do not
//!   depend on it. Absolute uncertainty ≈ `√(σ² + σ_common²)`.
//!
//! Bond lengths are jackknifed directly (`L₍ₖ₎ = |p_b,₍ₖ₎ − p_a,₍ₖ₎|`), so the correlation of
//! neighbouring columns' errors (e.g. a shared row error of the scan-line model) is included.
//!
//! The full average is fitted as `mean · N` (`N` frames) and the replicates as
//! `avg₍ₖ₎(p) = (S(p) − w_k(p)) / (c(p) − v_k(p)) · N` (`c` the frame count, `v_k` frame `k`'s
//! validity), i.e. the mean without frame `k` on the same scale so that the fitter's Poisson
//! weights are the same in every replicate; each replicate refines
//! the full average's columns from their full-average positions. Columns whose fit fails in
//! any replicate are dropped (an unstable fit has no trustworthy σ).

use super::{AtomConfig, AtomPositions, Column, assemble, find_columns, summarize};
use crate::error::{Error, Result, check_cancel};
use crate::warp::{DisplacementField, Interpolation, check_series_fields, warp_unchecked};
use ndarray::{Array2, ArrayView3, Axis, Zip};
use stem_core::peaks::{GaussianFitConfig, NoiseModel, refine_gaussian_with_progress};
use stem_core::{ImageView, NoProgress, Progress};

/// The result of [`atom_positions_jackknife`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesAtomPositions {
    /// Columns, lattice and bonds of the full average; every [`Column::sigma`] and
    /// [`Bond::sigma_px`](super::Bond::sigma_px) is the jackknife σ (px) and the
    /// [`BondSummary::rms_sigma_px`](super::BondSummary::rms_sigma_px) their RMS.
    pub positions: AtomPositions,
    /// Per column (same order), the Poisson-model σ `[σ_y, σ_x]` (px) of the fit to the summed
    /// counts, i.e. what [`atom_positions_on_average`](super::atom_positions_on_average)
    /// reports; kept for comparison.
    pub model_sigma: Vec<[f64; 2]>,
    /// Jackknife σ `[σ_y, σ_x]` (px) of the common shift of all columns (the gauge removed
    /// from the per-column values).
    pub common_shift_sigma_px: [f64; 2],
    /// Number of frames (replicates).
    pub frames: usize,
}

/// Finds and refines the columns on the average of `frames[k, y, x]` warped with `fields[k]`
/// (the fields of a [`SeriesRegistration`](crate::series::SeriesRegistration), or any others),
/// and replaces the model uncertainties by delete-one jackknife uncertainties over the frames
/// (see the module docs for the formula and its assumptions). The columns are found on the
/// summed counts with [`NoiseModel::Poisson`], as
/// [`atom_positions_on_average`](super::atom_positions_on_average) does. Positions `[y, x]` px
/// on the fields' grid.
///
/// Cost: one warp per frame twice plus `N + 1` Gaussian refinements of all columns.
/// Progress: stage "jackknife", one unit per frame; cancellable between frames.
///
/// ```
/// use ndarray::Array3;
/// use stem_core::NoProgress;
/// use stem_register::atoms::{AtomConfig, atom_positions_jackknife};
/// use stem_register::warp::{DisplacementField, Interpolation};
///
/// // 6 noiseless identical frames of a 10-px lattice: zero jackknife scatter
/// let frames = Array3::from_shape_fn((6, 48, 48), |(_, i, j)| {
///     let (dy, dx) = ((i as f64 - 2.0) % 10.0 - 5.0, (j as f64 - 3.0) % 10.0 - 5.0);
///     (5.0 + 100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32
/// });
/// let fields = vec![DisplacementField::constant([48, 48], [0.0, 0.0]); 6];
/// let r = atom_positions_jackknife(
///     frames.view(), &fields, Interpolation::Bicubic, &AtomConfig::default(), &NoProgress,
/// ).unwrap();
/// assert!(!r.positions.columns.is_empty());
/// assert!(r.positions.columns.iter().all(|c| c.sigma[0] < 1e-4 && c.sigma[1] < 1e-4));
/// ```
///
/// # Errors
/// [`Error::TooFewFrames`] for fewer than 2 frames; [`Error::ShapeMismatch`] when the number of
/// fields differs from the number of frames or the fields differ in shape;
/// [`Error::NonFinite`]; those of [`atom_positions`](super::atom_positions);
/// [`Error::Cancelled`].
pub fn atom_positions_jackknife(
    frames: ArrayView3<'_, f32>,
    fields: &[DisplacementField],
    interpolation: Interpolation,
    config: &AtomConfig,
    progress: &dyn Progress,
) -> Result<SeriesAtomPositions> {
    let n = frames.len_of(Axis(0));
    if n < 2 {
        return Err(Error::TooFewFrames { min: 2, found: n });
    }
    let shape = check_series_fields(frames, fields)?;
    progress.start("jackknife", n as u64);
    // pass 1: the summed counts S and the frame counts c
    let mut sum = Array2::<f64>::zeros(shape);
    let mut counts = Array2::<u32>::zeros(shape);
    for k in 0..n {
        check_cancel(progress)?;
        let w = warp_unchecked(&frames.index_axis(Axis(0), k), &fields[k], interpolation);
        Zip::from(&mut sum)
            .and(&mut counts)
            .and(&w.image)
            .and(&w.valid)
            .for_each(|s, c, &v, &ok| {
                if ok {
                    *s += f64::from(v);
                    *c += 1;
                }
            });
    }
    let scale = n as f64;
    let full = Zip::from(&sum).and(&counts).map_collect(|&s, &c| {
        if c > 0 {
            (s / f64::from(c) * scale).max(0.0) as f32
        } else {
            0.0
        }
    });
    let cfg = AtomConfig {
        fit: GaussianFitConfig {
            noise: NoiseModel::Poisson,
            ..config.fit.clone()
        },
        ..config.clone()
    };
    let found = find_columns(ImageView::new(full.view()), &cfg, &NoProgress)?;
    let start: Vec<[f64; 2]> = found.iter().map(|c| c.position).collect();
    let m = found.len();
    // pass 2: replicates; reps[k][c] = position of column c without frame k (None: failed)
    let mut reps: Vec<Vec<Option<[f64; 2]>>> = Vec::with_capacity(n);
    let mut img = Array2::<f32>::zeros(shape);
    for k in 0..n {
        check_cancel(progress)?;
        let w = warp_unchecked(&frames.index_axis(Axis(0), k), &fields[k], interpolation);
        Zip::from(&mut img)
            .and(&sum)
            .and(&counts)
            .and(&w.image)
            .and(&w.valid)
            .for_each(|o, &s, &c, &v, &ok| {
                let (s_k, c_k) = if ok {
                    (s - f64::from(v), c.saturating_sub(1))
                } else {
                    (s, c)
                };
                *o = if c_k > 0 {
                    (s_k / f64::from(c_k) * scale).max(0.0) as f32
                } else {
                    0.0
                };
            });
        let refined = if m > 0 {
            refine_gaussian_with_progress(ImageView::new(img.view()), &start, &cfg.fit, &NoProgress)
                .map_err(crate::error::from_core)?
        } else {
            Vec::new()
        };
        reps.push(
            refined
                .iter()
                .map(|p| {
                    (p.converged && p.position.iter().all(|v| v.is_finite())).then_some(p.position)
                })
                .collect(),
        );
        progress.advance(1);
    }
    // keep the columns refined in every replicate
    let keep: Vec<usize> = (0..m)
        .filter(|&c| reps.iter().all(|r| r[c].is_some()))
        .collect();
    let pos: Vec<Vec<[f64; 2]>> = reps
        .iter()
        .map(|r| keep.iter().map(|&c| r[c].unwrap_or([0.0, 0.0])).collect())
        .collect();
    let kept = keep.len();
    // per replicate, the common shift of the kept columns relative to the full average
    let common: Vec<[f64; 2]> = pos
        .iter()
        .map(|p| {
            let mut acc = [0.0f64; 2];
            for (q, &c) in p.iter().zip(&keep) {
                acc[0] += q[0] - start[c][0];
                acc[1] += q[1] - start[c][1];
            }
            let d = kept.max(1) as f64;
            [acc[0] / d, acc[1] / d]
        })
        .collect();
    let common_shift_sigma_px = [
        jackknife_sigma(common.iter().map(|c| c[0])),
        jackknife_sigma(common.iter().map(|c| c[1])),
    ];
    let columns: Vec<Column> = keep
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let s = |a: usize| jackknife_sigma((0..n).map(|k| pos[k][i][a] - common[k][a]));
            Column {
                sigma: [s(0), s(1)],
                ..found[c]
            }
        })
        .collect();
    let model_sigma = keep.iter().map(|&c| found[c].sigma).collect();
    let mut positions = assemble(columns)?;
    for b in &mut positions.bonds {
        b.sigma_px = jackknife_sigma((0..n).map(|k| {
            let (pa, pb) = (pos[k][b.from], pos[k][b.to]);
            (pb[0] - pa[0]).hypot(pb[1] - pa[1])
        }));
    }
    positions.summary = summarize(&positions.bonds);
    Ok(SeriesAtomPositions {
        positions,
        model_sigma,
        common_shift_sigma_px,
        frames: n,
    })
}

/// `√((N − 1)/N · Σ (θₖ − θ̄)²)` of the delete-one replicates `θₖ`.
fn jackknife_sigma(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    ((n - 1.0) / n * values.map(|v| (v - mean).powi(2)).sum::<f64>()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn jackknife_of_a_mean_is_the_standard_error() {
        // θ_(k) = mean without k ⇒ σ_JK = s/√N exactly
        let x = [1.0, 4.0, 2.0, 8.0, 5.0];
        let n = x.len() as f64;
        let tot: f64 = x.iter().sum();
        let loo: Vec<f64> = x.iter().map(|v| (tot - v) / (n - 1.0)).collect();
        let mean = tot / n;
        let s2 = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let want = (s2 / n).sqrt();
        assert!((jackknife_sigma(loo.iter().copied()) - want).abs() < 1e-12);
    }

    #[test]
    fn validation() {
        let frames = Array3::<f32>::zeros((3, 16, 16));
        let f = DisplacementField::constant([16, 16], [0.0, 0.0]);
        let cfg = AtomConfig::default();
        let one = Array3::<f32>::zeros((1, 16, 16));
        assert!(matches!(
            atom_positions_jackknife(
                one.view(),
                std::slice::from_ref(&f),
                Interpolation::Bicubic,
                &cfg,
                &NoProgress
            ),
            Err(Error::TooFewFrames { min: 2, found: 1 })
        ));
        assert!(matches!(
            atom_positions_jackknife(
                frames.view(),
                &[f.clone(), f.clone()],
                Interpolation::Bicubic,
                &cfg,
                &NoProgress
            ),
            Err(Error::ShapeMismatch { .. })
        ));
        let g = DisplacementField::constant([16, 15], [0.0, 0.0]);
        assert!(matches!(
            atom_positions_jackknife(
                frames.view(),
                &[f.clone(), f.clone(), g],
                Interpolation::Bicubic,
                &cfg,
                &NoProgress
            ),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut nan = frames.clone();
        nan[[1, 2, 3]] = f32::NAN;
        assert!(matches!(
            atom_positions_jackknife(
                nan.view(),
                &[f.clone(), f.clone(), f.clone()],
                Interpolation::Bicubic,
                &cfg,
                &NoProgress
            ),
            Err(Error::NonFinite { .. })
        ));
        let flag = stem_core::CancelFlag::cancel_after(1);
        assert!(matches!(
            atom_positions_jackknife(
                frames.view(),
                &[f.clone(), f.clone(), f],
                Interpolation::Bicubic,
                &cfg,
                &flag
            ),
            Err(Error::Cancelled)
        ));
    }
}
