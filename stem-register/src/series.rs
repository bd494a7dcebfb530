//! Whole-series registration: rigid alignment, a non-rigid model against an evolving
//! reference, bias removal and the averages.
//!
//! 1. [`align_series_rigid`]: frame-to-first cross-correlation (smoothed, upsampled DFT), then
//!    passes against the leave-one-out mean. This is the required pre-alignment for lattice
//!    images: a non-rigid model started far from the solution falls into lattice-aliased minima
//!    (peer-benchmarks.md §4).
//! 2. The reference is the mean of the rigidly aligned frames.
//! 3. `reference_passes` times: every frame's non-rigid model is fitted against the current
//!    reference ([`fit_row_shifts`](crate::scanline::fit_row_shifts) for
//!    [`NonRigidModel::ScanLine`], [`register_pair`](crate::nonrigid::register_pair)'s
//!    multilevel NCC + H¹ scheme for [`NonRigidModel::Dense`]); the common part of the
//!    fields (their per-row, or per-pixel, mean over the frames, minus its overall mean) is removed, as
//!    match-series' bias removal does, so that the result is not in the distorted coordinates of
//!    the first reference but in the frames' average geometry (to first order in the
//!    displacements); the reference becomes the mean of the warped frames.
//!    For [`NonRigidModel::Dense`] each frame's reference is the mean of the *other* warped
//!    frames (leave-one-out), so that its own noise does not pin its field to the current
//!    estimate; the bias removal is per pixel
//!    ([`crate::nonrigid::remove_mean_field`]).
//! 4. The final mean, median and per-pixel counts ([`average_series`]).
//!
//! The gauge is frame 0's rigid position (frame 0's mean rigid shift is 0 before bias removal).
//!
//! ```
//! use ndarray::Array3;
//! use stem_register::series::{register_series, SeriesConfig};
//! use stem_core::NoProgress;
//!
//! let f = |y: f64, x: f64| ((y * 0.4).sin() * (x * 0.35).cos() * 10.0 + 20.0) as f32;
//! let frames = Array3::from_shape_fn((3, 48, 48), |(k, i, j)| {
//!     f(i as f64 + k as f64 * 0.5, j as f64 - k as f64 * 0.25 + 0.3 * (i as f64 / 8.0).sin())
//! });
//! let reg = register_series(frames.view(), &SeriesConfig::default(), &NoProgress).unwrap();
//! assert_eq!(reg.fields.len(), 3);
//! assert_eq!(reg.average.mean.dim(), (48, 48));
//! ```

use crate::error::{Error, Result, check_cancel};
use crate::nonrigid::{
    NonRigidConfig, Plans, check_size, pyramid, register_prepared, remove_mean_field,
};
use crate::rigid::{RigidSeries, SeriesRigidConfig, align_series_rigid};
use crate::scanline::{RowShifts, ScanLineConfig, blurred_references, fit_prepared};
use crate::warp::{Average, AverageConfig, DisplacementField, average_series};
use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;
use stem_core::{ImageView, NoProgress, Progress};

/// The non-rigid part of the registration.
#[derive(Clone, Debug, PartialEq)]
pub enum NonRigidModel {
    /// Rigid only.
    None,
    /// One shift per scan row, smooth along the slow axis ([`crate::scanline`]).
    ScanLine(ScanLineConfig),
    /// A dense 2-D displacement field per frame, match-series style ([`crate::nonrigid`]):
    /// the first pass runs the whole pyramid against the mean of the rigidly aligned frames,
    /// later passes the finest level against the mean (or median) of the warped frames with
    /// λ scaled by [`NonRigidConfig::extra_pass_lambda_factor`].
    Dense(NonRigidConfig),
}

impl Default for NonRigidModel {
    fn default() -> Self {
        NonRigidModel::ScanLine(ScanLineConfig::default())
    }
}

/// Settings of [`register_series`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesConfig {
    /// Rigid pre-alignment. Default [`SeriesRigidConfig::default`].
    pub rigid: SeriesRigidConfig,
    /// Non-rigid model. Default [`NonRigidModel::ScanLine`] with its defaults.
    pub model: NonRigidModel,
    /// Passes of the non-rigid model against the evolving reference (the first pass runs the
    /// model's whole coarse-to-fine schedule, later ones only its finest level). ≥ 1.
    /// Default 3.
    pub reference_passes: usize,
    /// Remove the common part of the fields (bias removal). Default `true`.
    pub remove_bias: bool,
    /// How the final averages are made. Default [`AverageConfig::default`].
    pub average: AverageConfig,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig {
            rigid: SeriesRigidConfig::default(),
            model: NonRigidModel::default(),
            reference_passes: 3,
            remove_bias: true,
            average: AverageConfig::default(),
        }
    }
}

/// The result of [`register_series`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRegistration {
    /// The rigid pre-alignment (frame-0 gauge).
    pub rigid: RigidSeries,
    /// Per frame, the row shifts of the scan-line model (frame rows); empty for
    /// [`NonRigidModel::None`] and [`NonRigidModel::Dense`].
    pub row_shifts: Vec<RowShifts>,
    /// Per frame, the displacement field on the reference grid (`warped(p) = frame(p − d(p))`).
    pub fields: Vec<DisplacementField>,
    /// Mean, median and per-pixel frame counts of the warped frames.
    pub average: Average,
}

impl SeriesRegistration {
    /// Per frame, the effective rigid shift relative to frame 0 (px, `[dy, dx]`): the row-mean
    /// of the scan-line shifts (what a translation-only method should return for a frame with
    /// row distortions); for the other models the spatial mean of each field on the reference
    /// grid (the rigid shifts when only the rigid model ran). On the reference
    /// series (peer-benchmarks.md §1.6) this is 0.006 px RMS from the truth, against 0.046 px
    /// for the rigid cross-correlation alone.
    pub fn effective_shifts(&self) -> Vec<[f64; 2]> {
        if self.row_shifts.is_empty() {
            // the spatial mean of each field (the rigid shift for the rigid-only model)
            let means: Vec<[f64; 2]> = self
                .fields
                .iter()
                .map(|f| {
                    [
                        f.dy.iter().map(|&v| f64::from(v)).sum::<f64>() / f.dy.len().max(1) as f64,
                        f.dx.iter().map(|&v| f64::from(v)).sum::<f64>() / f.dx.len().max(1) as f64,
                    ]
                })
                .collect();
            let m0 = means.first().copied().unwrap_or([0.0, 0.0]);
            return means.iter().map(|m| [m[0] - m0[0], m[1] - m0[1]]).collect();
        }
        let m0 = self.row_shifts[0].mean();
        self.row_shifts
            .iter()
            .map(|r| {
                let m = r.mean();
                [m[0] - m0[0], m[1] - m0[1]]
            })
            .collect()
    }
}

/// Registers a series `frames[k, y, x]` (see the module docs).
///
/// Progress: stages "rigid", "average" and "scan-line pass i" or "non-rigid pass i" (one unit per frame);
/// cancellable between frames.
///
/// # Errors
/// [`Error::TooFewFrames`] for fewer than 2 frames; [`Error::InvalidParameter`] for
/// `reference_passes == 0` or invalid model settings; those of the steps; [`Error::Cancelled`].
pub fn register_series(
    frames: ArrayView3<'_, f32>,
    config: &SeriesConfig,
    progress: &dyn Progress,
) -> Result<SeriesRegistration> {
    let n = frames.len_of(Axis(0));
    if n < 2 {
        return Err(Error::TooFewFrames { min: 2, found: n });
    }
    if config.reference_passes == 0 {
        return Err(Error::invalid("reference_passes", "must be >= 1, got 0"));
    }
    match &config.model {
        NonRigidModel::ScanLine(c) => c.validate()?,
        NonRigidModel::Dense(c) => {
            c.validate()?;
            if let Some(s) = &c.scanline_first {
                s.validate()?;
            }
        }
        NonRigidModel::None => {}
    }
    let shape = [frames.len_of(Axis(1)), frames.len_of(Axis(2))];
    let rigid = align_series_rigid(frames, &config.rigid, progress)?;
    let mut fields: Vec<DisplacementField> = rigid
        .shifts
        .iter()
        .map(|&s| DisplacementField::constant(shape, s))
        .collect();
    let mut row_shifts = Vec::new();
    let scan_model = match &config.model {
        NonRigidModel::ScanLine(s) => Some(s),
        NonRigidModel::Dense(nr) => nr.scanline_first.as_ref(),
        NonRigidModel::None => None,
    };
    if let Some(scan) = scan_model {
        let mean_only = AverageConfig {
            median: false,
            ..config.average.clone()
        };
        let mut reference = average_series(frames, &fields, &mean_only, &NoProgress)?.mean;
        row_shifts = rigid
            .shifts
            .iter()
            .map(|&s| RowShifts::constant(shape[0], s))
            .collect();
        for pass in 0..config.reference_passes {
            check_cancel(progress)?;
            let level_cfg = if pass == 0 {
                scan.clone()
            } else {
                ScanLineConfig {
                    smoothing_sigmas_px: scan
                        .smoothing_sigmas_px
                        .last()
                        .map(|&s| vec![s])
                        .unwrap_or_else(|| vec![0.0]),
                    ..scan.clone()
                }
            };
            progress.start(&format!("scan-line pass {}", pass + 1), n as u64);
            let refs = blurred_references(
                ImageView::new(reference.view()),
                &level_cfg.smoothing_sigmas_px,
            )?;
            row_shifts = config.average.parallelism.install(|| {
                (0..n)
                    .into_par_iter()
                    .map(|k| {
                        check_cancel(progress)?;
                        let fit = fit_prepared(
                            &refs,
                            ImageView::new(frames.index_axis(Axis(0), k)),
                            &row_shifts[k],
                            &level_cfg,
                        )?;
                        progress.advance(1);
                        Ok(fit)
                    })
                    .collect::<Result<Vec<_>>>()
            })??;
            if config.remove_bias {
                remove_bias(&mut row_shifts, shape[0]);
            }
            fields = row_shifts.iter().map(|s| s.to_field(shape)).collect();
            if pass + 1 < config.reference_passes {
                reference = average_series(frames, &fields, &mean_only, &NoProgress)?.mean;
            }
        }
    }
    if let NonRigidModel::Dense(nr) = &config.model {
        check_size(shape)?;
        fields = dense_passes(frames, fields, nr, config, progress)?;
    }
    let average = average_series(frames, &fields, &config.average, progress)?;
    Ok(SeriesRegistration {
        rigid,
        row_shifts,
        fields,
        average,
    })
}

/// The passes of [`NonRigidModel::Dense`], starting from the rigid `fields`.
fn dense_passes(
    frames: ArrayView3<'_, f32>,
    mut fields: Vec<DisplacementField>,
    nr: &NonRigidConfig,
    config: &SeriesConfig,
    progress: &dyn Progress,
) -> Result<Vec<DisplacementField>> {
    let n = frames.len_of(Axis(0));
    let shape = fields[0].shape();
    let shapes = nr.level_shapes(shape);
    let plans = Plans::new(&shapes)?;
    let reference_of =
        |fields: &[DisplacementField], median: bool| -> Result<ndarray::Array2<f32>> {
            let cfg = AverageConfig {
                median,
                ..config.average.clone()
            };
            let a = average_series(frames, fields, &cfg, &NoProgress)?;
            let mut img = if median { a.median } else { a.mean };
            // pixels no frame covers: the mean of the covered ones (no artificial edge)
            let (mut s, mut c) = (0.0f64, 0usize);
            for (v, &k) in img.iter().zip(&a.counts) {
                if k > 0 {
                    s += f64::from(*v);
                    c += 1;
                }
            }
            let fill = if c > 0 { (s / c as f64) as f32 } else { 0.0 };
            ndarray::Zip::from(&mut img)
                .and(&a.counts)
                .for_each(|v, &k| {
                    if k == 0 {
                        *v = fill;
                    }
                });
            Ok(img)
        };
    for pass in 0..config.reference_passes {
        check_cancel(progress)?;
        let (lambda, skip) = if pass == 0 {
            (nr.lambda, 0)
        } else {
            (nr.lambda * nr.extra_pass_lambda_factor, shapes.len() - 1)
        };
        // leave-one-out references: frame k is registered to the mean of the *other* warped
        // frames, so that its own noise in the reference does not pin its field to the current
        // estimate (with n frames the frame is 1/n of a plain mean)
        let warped: Vec<crate::warp::Warped> = config.average.parallelism.install(|| {
            (0..n)
                .into_par_iter()
                .map(|k| {
                    crate::warp::warp_unchecked(
                        &frames.index_axis(Axis(0), k),
                        &fields[k],
                        config.average.interpolation,
                    )
                })
                .collect()
        })?;
        let mut sum = ndarray::Array2::<f64>::zeros(shape);
        let mut counts = ndarray::Array2::<u32>::zeros(shape);
        for w in &warped {
            ndarray::Zip::from(&mut sum)
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
        let median_ref = if pass > 0 && nr.median_reference {
            Some(reference_of(&fields, true)?)
        } else {
            None
        };
        progress.start(&format!("non-rigid pass {}", pass + 1), n as u64);
        fields = config.average.parallelism.install(|| {
            (0..n)
                .into_par_iter()
                .map(|k| {
                    check_cancel(progress)?;
                    let reference = match &median_ref {
                        Some(m) => m.clone(),
                        None => leave_one_out(&sum, &counts, &warped[k]),
                    };
                    let refs = pyramid(reference.view(), &shapes)?;
                    let r = register_prepared(
                        &refs,
                        frames.index_axis(Axis(0), k),
                        &fields[k],
                        nr,
                        lambda,
                        &plans,
                        skip,
                    )?;
                    progress.advance(1);
                    Ok(r.field)
                })
                .collect::<Result<Vec<_>>>()
        })??;
        if config.remove_bias {
            remove_mean_field(&mut fields)?;
        }
    }
    Ok(fields)
}

/// The mean of all warped frames but `own` (pixels no other frame covers: the mean of the
/// covered ones, so that the reference has no artificial edge).
fn leave_one_out(
    sum: &ndarray::Array2<f64>,
    counts: &ndarray::Array2<u32>,
    own: &crate::warp::Warped,
) -> ndarray::Array2<f32> {
    let mut img = ndarray::Array2::<f32>::zeros(sum.raw_dim());
    let (mut total, mut covered) = (0.0f64, 0usize);
    ndarray::Zip::from(&mut img)
        .and(sum)
        .and(counts)
        .and(&own.image)
        .and(&own.valid)
        .for_each(|o, &s, &c, &v, &ok| {
            let (s, c) = if ok {
                (s - f64::from(v), c - 1)
            } else {
                (s, c)
            };
            if c > 0 {
                let m = s / f64::from(c);
                *o = m as f32;
                total += m;
                covered += 1;
            } else {
                *o = f32::NAN;
            }
        });
    let fill = if covered > 0 {
        (total / covered as f64) as f32
    } else {
        0.0
    };
    img.mapv_inplace(|v| if v.is_nan() { fill } else { v });
    img
}

/// Removes the common distortion: with `m(Y)` the mean over frames of the reference-row fields
/// and `m̄` its mean over rows, every frame's shifts at frame row `r` (which lands on
/// `Y = r + D_y(r)`) lose `m(Y) − m̄`.
fn remove_bias(shifts: &mut [RowShifts], ny: usize) {
    let n = shifts.len() as f64;
    let mut m = vec![[0.0f64; 2]; ny];
    for s in shifts.iter() {
        let (dy, dx) = s.to_reference_rows(ny);
        for y in 0..ny {
            m[y][0] += dy[y] / n;
            m[y][1] += dx[y] / n;
        }
    }
    let mbar = [
        m.iter().map(|v| v[0]).sum::<f64>() / ny as f64,
        m.iter().map(|v| v[1]).sum::<f64>() / ny as f64,
    ];
    let at = |y: f64| -> [f64; 2] {
        let y = y.clamp(0.0, (ny - 1) as f64);
        let i = (y.floor() as usize).min(ny.saturating_sub(2));
        let t = y - i as f64;
        let j = (i + 1).min(ny - 1);
        [
            m[i][0] * (1.0 - t) + m[j][0] * t - mbar[0],
            m[i][1] * (1.0 - t) + m[j][1] * t - mbar[1],
        ]
    };
    for s in shifts.iter_mut() {
        for r in 0..s.len() {
            let c = at(r as f64 + s.dy[r]);
            s.dy[r] -= c[0];
            s.dx[r] -= c[1];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use stem_core::CancelFlag;

    #[test]
    fn validation_rules() {
        let one = Array3::<f32>::zeros((1, 16, 16));
        assert!(matches!(
            register_series(one.view(), &SeriesConfig::default(), &NoProgress),
            Err(Error::TooFewFrames { .. })
        ));
        let two = Array3::<f32>::zeros((2, 16, 16));
        let c = SeriesConfig {
            reference_passes: 0,
            ..Default::default()
        };
        assert!(matches!(
            register_series(two.view(), &c, &NoProgress),
            Err(Error::InvalidParameter {
                name: "reference_passes",
                ..
            })
        ));
        let c = SeriesConfig {
            model: NonRigidModel::ScanLine(ScanLineConfig {
                iterations: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(register_series(two.view(), &c, &NoProgress).is_err());
        let flag = CancelFlag::cancel_after(3);
        assert!(matches!(
            register_series(two.view(), &SeriesConfig::default(), &flag),
            Err(Error::Cancelled)
        ));
    }

    #[test]
    fn dense_model_validation_and_cancel() {
        let two = Array3::<f32>::from_shape_fn((2, 16, 16), |(_, i, j)| (i * j % 7) as f32);
        let bad = SeriesConfig {
            model: NonRigidModel::Dense(NonRigidConfig {
                lambda: -1.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            register_series(two.view(), &bad, &NoProgress),
            Err(Error::InvalidParameter { name: "lambda", .. })
        ));
        let tiny = Array3::<f32>::from_shape_fn((2, 6, 16), |(_, i, j)| (i + j) as f32);
        let dense = SeriesConfig {
            model: NonRigidModel::Dense(NonRigidConfig::default()),
            ..Default::default()
        };
        assert!(matches!(
            register_series(tiny.view(), &dense, &NoProgress),
            Err(Error::TooSmall { .. })
        ));
        // cancelled after the rigid stage (2 frames × 2 units)
        let flag = CancelFlag::cancel_after(5);
        assert!(matches!(
            register_series(two.view(), &dense, &flag),
            Err(Error::Cancelled)
        ));
    }

    #[test]
    fn bias_removal_makes_mean_field_constant() {
        let mut s: Vec<RowShifts> = (0..4)
            .map(|k| RowShifts {
                dy: (0..40).map(|r| 0.1 * k as f64 + 0.002 * r as f64).collect(),
                dx: (0..40)
                    .map(|r| k as f64 + 0.3 * (r as f64 / 6.0).sin())
                    .collect(),
            })
            .collect();
        remove_bias(&mut s, 40);
        let mut m = vec![[0.0; 2]; 40];
        for f in &s {
            let (dy, dx) = f.to_reference_rows(40);
            for y in 0..40 {
                m[y][0] += dy[y] / 4.0;
                m[y][1] += dx[y] / 4.0;
            }
        }
        for y in 3..37 {
            // first-order removal: the remaining variation is second order in the 0.3-px field
            assert!((m[y][1] - m[20][1]).abs() < 0.02, "{y}: {:?}", m[y]);
            assert!((m[y][0] - m[20][0]).abs() < 0.01, "{y}: {:?}", m[y]);
        }
    }
}
