//! Displacement fields, warping and per-pixel averages of a registered series.
//!
//! A [`DisplacementField`] lives on the **reference** grid `[y, x]` and follows the shift
//! convention of ARCHITECTURE.md: `d(p) = [dy, dx]` (px) is how far the moving-image content that
//! lands on reference pixel `p` had to move, so the warped frame is
//! `warped(p) = moving(p − d(p))`. A constant field equals a rigid [`Shift`](crate::rigid::Shift).
//!
//! Samples that fall outside the moving frame are not extrapolated: they are marked invalid
//! and left out of the averages, whose per-pixel frame count is returned.
//! [`Interpolation::Nearest`] copies whole pixel values, which keeps counts integral
//! (EELS/EDS spectrum images), as pyMatchSeries does with `map_coordinates(order=0)`.
//!
//! ```
//! use ndarray::{Array2, Array3};
//! use stem_register::warp::{average_series, AverageConfig, DisplacementField};
//! use stem_core::NoProgress;
//!
//! let a = Array2::from_shape_fn((16, 16), |(i, j)| (i * 16 + j) as f32);
//! // frame 1 shows the content one pixel to the left: it must move by +1 in x
//! let b = Array2::from_shape_fn((16, 16), |(i, j)| (i * 16 + (j + 1).min(15)) as f32);
//! let frames = ndarray::stack(ndarray::Axis(0), &[a.view(), b.view()]).unwrap();
//! let fields = vec![
//!     DisplacementField::constant([16, 16], [0.0, 0.0]),
//!     DisplacementField::constant([16, 16], [0.0, 1.0]),
//! ];
//! let avg = average_series(frames.view(), &fields, &AverageConfig::default(), &NoProgress).unwrap();
//! assert_eq!(avg.counts[[5, 0]], 1); // frame 1 has no data for x = 0
//! assert_eq!(avg.counts[[5, 5]], 2);
//! assert!((avg.mean[[5, 5]] - a[[5, 5]]).abs() < 1e-4);
//! ```

use crate::error::{Error, Result, check_cancel, check_finite};
use crate::interp::{clamp_index, keys};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Zip};
use rayon::prelude::*;
use stem_core::{ImageView, Parallelism, Progress};

/// Interpolation used when sampling a frame at non-integer positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interpolation {
    /// Nearest pixel: values are copied, counts stay integral.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Keys cubic convolution (a = −0.5) (default); bilinear within one pixel of the border,
    /// where the cubic support would leave the frame.
    #[default]
    Bicubic,
}

/// A displacement field on the reference grid (see the module docs for the convention).
#[derive(Clone, Debug, PartialEq)]
pub struct DisplacementField {
    /// y component (px), shape `[ny, nx]` of the reference.
    pub dy: Array2<f32>,
    /// x component (px), same shape.
    pub dx: Array2<f32>,
}

impl DisplacementField {
    /// A constant field (a rigid shift `[dy, dx]`, px).
    pub fn constant(shape: [usize; 2], shift: [f64; 2]) -> Self {
        DisplacementField {
            dy: Array2::from_elem(shape, shift[0] as f32),
            dx: Array2::from_elem(shape, shift[1] as f32),
        }
    }

    /// A field that depends only on the reference row: `d(y, x) = [dy[y], dx[y]]` (px).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `dy` and `dx` differ in length.
    pub fn from_rows(dy: &[f64], dx: &[f64], nx: usize) -> Result<Self> {
        if dy.len() != dx.len() {
            return Err(Error::ShapeMismatch {
                expected: vec![dy.len()],
                found: vec![dx.len()],
            });
        }
        let ny = dy.len();
        Ok(DisplacementField {
            dy: Array2::from_shape_fn((ny, nx), |(i, _)| dy[i] as f32),
            dx: Array2::from_shape_fn((ny, nx), |(i, _)| dx[i] as f32),
        })
    }

    /// The grid shape `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.dy.nrows(), self.dy.ncols()]
    }

    /// The field stacked as `[2, ny, nx]` (component 0 = dy, 1 = dx), e.g. for NPY output.
    pub fn to_array3(&self) -> Array3<f32> {
        let [ny, nx] = self.shape();
        Array3::from_shape_fn((2, ny, nx), |(c, i, j)| {
            if c == 0 {
                self.dy[[i, j]]
            } else {
                self.dx[[i, j]]
            }
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.dy.dim() != self.dx.dim() {
            return Err(Error::ShapeMismatch {
                expected: self.dy.shape().to_vec(),
                found: self.dx.shape().to_vec(),
            });
        }
        check_finite("displacement field dy", self.dy.iter())?;
        check_finite("displacement field dx", self.dx.iter())
    }
}

/// Samples `img` at `(y, x)` (px, pixel centres at integers). Returns `None` outside the image
/// (beyond the outermost pixel centres, or beyond ±½ px of them for nearest neighbour).
#[inline]
pub(crate) fn sample(
    img: &ArrayView2<'_, f32>,
    y: f64,
    x: f64,
    interp: Interpolation,
) -> Option<f32> {
    let (ny, nx) = img.dim();
    match interp {
        Interpolation::Nearest => {
            let (i, j) = (y.round(), x.round());
            if i < 0.0 || j < 0.0 || i > (ny - 1) as f64 || j > (nx - 1) as f64 {
                return None;
            }
            Some(img[[i as usize, j as usize]])
        }
        Interpolation::Bilinear | Interpolation::Bicubic => {
            let eps = 1e-9;
            if !(y >= -eps && x >= -eps && y <= (ny - 1) as f64 + eps && x <= (nx - 1) as f64 + eps)
            {
                return None;
            }
            let (y0, x0) = (y.floor(), x.floor());
            let (fy, fx) = (y - y0, x - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            // next to the edge the cubic support would leave the image: bilinear there (edge
            // replication would bias the border rows and columns)
            let cubic_fits = y0 >= 1 && x0 >= 1 && y0 + 2 < ny as isize && x0 + 2 < nx as isize;
            if interp == Interpolation::Bilinear || !cubic_fits {
                let g =
                    |i: isize, j: isize| f64::from(img[[clamp_index(i, ny), clamp_index(j, nx)]]);
                let v = (1.0 - fy) * ((1.0 - fx) * g(y0, x0) + fx * g(y0, x0 + 1))
                    + fy * ((1.0 - fx) * g(y0 + 1, x0) + fx * g(y0 + 1, x0 + 1));
                Some(v as f32)
            } else {
                let (wy, _) = keys(fy);
                let (wx, _) = keys(fx);
                let mut acc = 0.0;
                for (a, wa) in wy.iter().enumerate() {
                    let row = img.row(clamp_index(y0 + a as isize - 1, ny));
                    let mut r = 0.0;
                    for (b, wb) in wx.iter().enumerate() {
                        r += wb * f64::from(row[clamp_index(x0 + b as isize - 1, nx)]);
                    }
                    acc += wa * r;
                }
                Some(acc as f32)
            }
        }
    }
}

/// A warped frame and the mask of pixels that had data.
#[derive(Clone, Debug, PartialEq)]
pub struct Warped {
    /// `warped(p) = moving(p − d(p))`; 0 where `valid` is false.
    pub image: Array2<f32>,
    /// Whether the sample fell inside the moving frame.
    pub valid: Array2<bool>,
}

/// Warps `moving` with `field` onto the reference grid (the field's shape; the moving frame may
/// have another shape).
///
/// # Errors
/// [`Error::ShapeMismatch`] if the field components differ in shape; [`Error::NonFinite`] for
/// NaN/∞ in the frame or the field.
pub fn warp(
    moving: ImageView<'_, f32>,
    field: &DisplacementField,
    interpolation: Interpolation,
) -> Result<Warped> {
    field.validate()?;
    let m = moving.data();
    check_finite("moving frame", m.iter())?;
    Ok(warp_unchecked(&m, field, interpolation))
}

pub(crate) fn warp_unchecked(
    m: &ArrayView2<'_, f32>,
    field: &DisplacementField,
    interp: Interpolation,
) -> Warped {
    let shape = field.dy.raw_dim();
    let mut image = Array2::<f32>::zeros(shape);
    let mut valid = Array2::from_elem(shape, false);
    Zip::indexed(&mut image)
        .and(&mut valid)
        .and(&field.dy)
        .and(&field.dx)
        .for_each(|(i, j), out, ok, &dy, &dx| {
            if let Some(v) = sample(
                m,
                i as f64 - f64::from(dy),
                j as f64 - f64::from(dx),
                interp,
            ) {
                *out = v;
                *ok = true;
            }
        });
    Warped { image, valid }
}

/// Settings of [`average_series`].
#[derive(Clone, Debug, PartialEq)]
pub struct AverageConfig {
    /// Sampling of the frames. Default [`Interpolation::Bicubic`].
    pub interpolation: Interpolation,
    /// Also compute the per-pixel median (keeps every warped frame in memory:
    /// `frames × ny × nx` f32). Default `true`.
    pub median: bool,
    /// Threads (over frames, then rows). Results do not depend on it. Default
    /// [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for AverageConfig {
    fn default() -> Self {
        AverageConfig {
            interpolation: Interpolation::Bicubic,
            median: true,
            parallelism: Parallelism::Auto,
        }
    }
}

/// Per-pixel statistics of a warped series, on the reference grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Average {
    /// Mean over the frames with data at each pixel (0 where none).
    pub mean: Array2<f32>,
    /// Median over the frames with data (mean of the two middle values for an even count;
    /// 0 where none); empty `[0, 0]` when not requested.
    pub median: Array2<f32>,
    /// Number of frames with data at each pixel.
    pub counts: Array2<u32>,
}

/// Checks a series and its per-frame fields before warping: one field per frame (`n` of
/// them, `n ≥ 1`), all of the same shape and each valid, and finite frames. Returns the fields'
/// shape.
pub(crate) fn check_series_fields(
    frames: ArrayView3<'_, f32>,
    fields: &[DisplacementField],
) -> Result<[usize; 2]> {
    let n = frames.len_of(Axis(0));
    if fields.len() != n {
        return Err(Error::ShapeMismatch {
            expected: vec![n],
            found: vec![fields.len()],
        });
    }
    let shape = fields[0].shape();
    for f in fields {
        if f.shape() != shape {
            return Err(Error::ShapeMismatch {
                expected: shape.to_vec(),
                found: f.shape().to_vec(),
            });
        }
        f.validate()?;
    }
    check_finite("frames", frames.iter())?;
    Ok(shape)
}

/// Warps every frame `frames[k]` with `fields[k]` and averages: per-pixel mean, median and the
/// number of frames with data.
///
/// Progress: stage "average", one unit per frame; cancellable between frames.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the number of fields differs from the number of frames or the
/// fields differ in shape; [`Error::TooFewFrames`] for an empty series; [`Error::NonFinite`];
/// [`Error::Cancelled`].
pub fn average_series(
    frames: ArrayView3<'_, f32>,
    fields: &[DisplacementField],
    config: &AverageConfig,
    progress: &dyn Progress,
) -> Result<Average> {
    let n = frames.len_of(Axis(0));
    if n == 0 {
        return Err(Error::TooFewFrames { min: 1, found: 0 });
    }
    let shape = check_series_fields(frames, fields)?;
    progress.start("average", n as u64);
    config.parallelism.install(|| -> Result<Average> {
        let warped: Vec<Warped> = (0..n)
            .into_par_iter()
            .map(|k| {
                check_cancel(progress)?;
                let w = warp_unchecked(
                    &frames.index_axis(Axis(0), k),
                    &fields[k],
                    config.interpolation,
                );
                progress.advance(1);
                Ok(w)
            })
            .collect::<Result<_>>()?;
        let mut sum = Array2::<f64>::zeros(shape);
        let mut counts = Array2::<u32>::zeros(shape);
        for w in &warped {
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
        let mean = Zip::from(&sum).and(&counts).map_collect(|&s, &c| {
            if c > 0 {
                (s / f64::from(c)) as f32
            } else {
                0.0
            }
        });
        let median = if config.median {
            let mut median = Array2::<f32>::zeros(shape);
            median
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(i, mut row)| {
                    let mut buf = Vec::with_capacity(n);
                    for (j, out) in row.iter_mut().enumerate() {
                        buf.clear();
                        buf.extend(
                            warped
                                .iter()
                                .filter(|w| w.valid[[i, j]])
                                .map(|w| w.image[[i, j]]),
                        );
                        *out = median_of(&mut buf);
                    }
                });
            median
        } else {
            Array2::zeros((0, 0))
        };
        Ok(Average {
            mean,
            median,
            counts,
        })
    })?
}

/// Median of a buffer (reordered); 0 for an empty buffer.
pub(crate) fn median_of(buf: &mut [f32]) -> f32 {
    let m = buf.len();
    if m == 0 {
        return 0.0;
    }
    buf.sort_unstable_by(f32::total_cmp);
    if m % 2 == 1 {
        buf[m / 2]
    } else {
        0.5 * (buf[m / 2 - 1] + buf[m / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stem_core::NoProgress;

    fn ramp(ny: usize, nx: usize) -> Array2<f32> {
        Array2::from_shape_fn((ny, nx), |(i, j)| (3 * i + 2 * j) as f32)
    }

    #[test]
    fn linear_ramp_is_reproduced_exactly_by_bilinear_and_bicubic() {
        let m = ramp(20, 24);
        let f = DisplacementField::constant([20, 24], [1.25, -2.5]);
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
            let w = warp(ImageView::from(&m), &f, interp).unwrap();
            for ((i, j), &v) in w.image.indexed_iter() {
                if (3..17).contains(&i) && (3..19).contains(&j) {
                    assert!(w.valid[[i, j]]);
                    let expect = 3.0 * (i as f64 - 1.25) + 2.0 * (j as f64 + 2.5);
                    // both kernels reproduce linear functions; f32 rounding of values ≈ 1e-5
                    assert!((f64::from(v) - expect).abs() < 1e-3, "{interp:?}");
                }
            }
        }
    }

    #[test]
    fn nearest_keeps_integral_counts_and_integer_shift_is_exact() {
        let m = Array2::from_shape_fn((10, 10), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
        let f = DisplacementField::constant([10, 10], [2.0, -1.0]);
        for interp in [
            Interpolation::Nearest,
            Interpolation::Bilinear,
            Interpolation::Bicubic,
        ] {
            let w = warp(ImageView::from(&m), &f, interp).unwrap();
            for i in 2..10 {
                for j in 0..9 {
                    assert!(w.valid[[i, j]]);
                    assert!((w.image[[i, j]] - m[[i - 2, j + 1]]).abs() < 1e-5);
                }
            }
            assert!(!w.valid[[1, 3]] && !w.valid[[5, 9]]);
        }
        let f = DisplacementField::constant([10, 10], [0.3, 0.4]);
        let w = warp(ImageView::from(&m), &f, Interpolation::Nearest).unwrap();
        assert!(w.image.iter().all(|v| v.fract() == 0.0));
    }

    #[test]
    fn median_and_counts() {
        let mut buf = vec![3.0, 1.0, 2.0, 10.0];
        assert_eq!(median_of(&mut buf), 2.5);
        assert_eq!(median_of(&mut []), 0.0);
        let frames = Array3::from_shape_fn((3, 4, 4), |(k, _, _)| [1.0f32, 2.0, 9.0][k]);
        let fields = vec![DisplacementField::constant([4, 4], [0.0, 0.0]); 3];
        let a = average_series(
            frames.view(),
            &fields,
            &AverageConfig::default(),
            &NoProgress,
        )
        .unwrap();
        assert!(a.mean.iter().all(|&v| (v - 4.0).abs() < 1e-6));
        assert!(a.median.iter().all(|&v| v == 2.0));
        assert!(a.counts.iter().all(|&c| c == 3));
    }

    #[test]
    fn validation_errors() {
        let frames = Array3::<f32>::zeros((2, 4, 4));
        let one = vec![DisplacementField::constant([4, 4], [0.0, 0.0])];
        assert!(matches!(
            average_series(frames.view(), &one, &AverageConfig::default(), &NoProgress),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut bad = DisplacementField::constant([4, 4], [0.0, 0.0]);
        bad.dx[[1, 1]] = f32::NAN;
        assert!(matches!(
            warp(
                ImageView::from(&frames.index_axis(Axis(0), 0).to_owned()),
                &bad,
                Interpolation::Bilinear
            ),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            DisplacementField::from_rows(&[0.0], &[0.0, 1.0], 3),
            Err(Error::ShapeMismatch { .. })
        ));
        let empty = Array3::<f32>::zeros((0, 4, 4));
        assert!(matches!(
            average_series(empty.view(), &[], &AverageConfig::default(), &NoProgress),
            Err(Error::TooFewFrames { .. })
        ));
        let flag = stem_core::CancelFlag::default();
        flag.cancel();
        let two = vec![DisplacementField::constant([4, 4], [0.0, 0.0]); 2];
        assert!(matches!(
            average_series(frames.view(), &two, &AverageConfig::default(), &flag),
            Err(Error::Cancelled)
        ));
    }
}
