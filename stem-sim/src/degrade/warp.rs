//! Geometric maps, image resampling and the matching label transforms.

use super::{DisplacementField, Labels, Sample, set_axes};
use crate::error::{Error, Result};
use ndarray::{Array2, Zip};
use stem_core::Image;

/// A geometric map between an output grid and an input image (see the
/// [module docs](super#geometric-convention)).
pub trait Warp: Sync {
    /// The input-image position `[y, x]` (px) shown at output pixel position `p`.
    fn source(&self, p: [f64; 2]) -> [f64; 2];
    /// The output position of input position `q`: the solution `p` of `source(p) = q`.
    ///
    /// Errors when the map cannot be inverted at `q` ([`Error::NotInvertible`]).
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]>;
}

/// The affine map of [`super::Affine`] with drawn values: forward (labels)
/// `p = M(q − c) + c + t`, `source(p) = M⁻¹(p − c − t) + c`.
///
/// ```
/// use stem_sim::degrade::{AffineMap, Warp};
///
/// // 90° counter-clockwise about the centre of a 101 × 101 image (c = [50, 50]):
/// // a point 10 px right of the centre moves 10 px up (y down).
/// let m = AffineMap::new([101, 101], 90.0, 1.0, 0.0, [0.0, 0.0])?;
/// let p = m.target([50.0, 60.0])?;
/// assert!((p[0] - 40.0).abs() < 1e-12 && (p[1] - 50.0).abs() < 1e-12);
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineMap {
    m: [[f64; 2]; 2],
    inv: [[f64; 2]; 2],
    centre: [f64; 2],
    shift: [f64; 2],
}

impl AffineMap {
    /// `M = zoom · R(θ) · S(shear)` about the centre of a `shape` image, then shift `[ty, tx]`
    /// px. Errors: non-finite values, zoom ≤ 0.
    pub fn new(
        shape: [usize; 2],
        rotation_deg: f64,
        zoom: f64,
        shear: f64,
        shift_px: [f64; 2],
    ) -> Result<Self> {
        let vals = [rotation_deg, zoom, shear, shift_px[0], shift_px[1]];
        if vals.iter().any(|v| !v.is_finite()) || zoom <= 0.0 {
            return Err(Error::invalid(
                "affine",
                format!(
                    "rotation {rotation_deg}°, zoom {zoom}, shear {shear}, shift {shift_px:?} \
                     must be finite with zoom > 0"
                ),
            ));
        }
        let (s, c) = rotation_deg.to_radians().sin_cos();
        // R on [y, x]: [y c − x s, y s + x c]; S on [y, x]: [y, x + shear·y].
        // M = zoom · R · S.
        let rs = [[c - s * shear, -s], [s + c * shear, c]];
        let m = [
            [zoom * rs[0][0], zoom * rs[0][1]],
            [zoom * rs[1][0], zoom * rs[1][1]],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inv = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        Ok(AffineMap {
            m,
            inv,
            centre: [(shape[0] as f64 - 1.0) / 2.0, (shape[1] as f64 - 1.0) / 2.0],
            shift: shift_px,
        })
    }

    /// The 2×2 matrix `M` acting on `[y, x]`.
    pub fn matrix(&self) -> [[f64; 2]; 2] {
        self.m
    }
}

fn mat_vec(m: &[[f64; 2]; 2], v: [f64; 2]) -> [f64; 2] {
    [
        m[0][0] * v[0] + m[0][1] * v[1],
        m[1][0] * v[0] + m[1][1] * v[1],
    ]
}

impl Warp for AffineMap {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        let d = [
            p[0] - self.centre[0] - self.shift[0],
            p[1] - self.centre[1] - self.shift[1],
        ];
        let q = mat_vec(&self.inv, d);
        [q[0] + self.centre[0], q[1] + self.centre[1]]
    }

    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        let p = mat_vec(&self.m, [q[0] - self.centre[0], q[1] - self.centre[1]]);
        Ok([
            p[0] + self.centre[0] + self.shift[0],
            p[1] + self.centre[1] + self.shift[1],
        ])
    }
}

/// A translation of the grid: `source(p) = p + shift` (a crop for integer shifts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShiftMap {
    pub(crate) shift_px: [f64; 2],
}

impl Warp for ShiftMap {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        [p[0] + self.shift_px[0], p[1] + self.shift_px[1]]
    }
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        Ok([q[0] - self.shift_px[0], q[1] - self.shift_px[1]])
    }
}

/// Resampling to a pixel `factor` times larger, edges aligned: `source(p) = (p + ½)·f − ½`.
#[derive(Clone, Copy, Debug)]
struct ResampleMap {
    factor: f64,
}

impl Warp for ResampleMap {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        p.map(|v| (v + 0.5) * self.factor - 0.5)
    }
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        Ok(q.map(|v| (v + 0.5) / self.factor - 0.5))
    }
}

/// Keys cubic convolution weights (a = −½) for the taps at −1, 0, 1, 2 and fraction `t`.
#[inline]
fn keys_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

/// Cubic-convolution sample of `a` at `[y, x]`; `None` outside `[−½, n − ½]` on either axis.
/// Taps beyond the edge repeat the edge pixel.
#[inline]
pub(crate) fn cubic(a: &Array2<f32>, p: [f64; 2]) -> Option<f64> {
    let (ny, nx) = a.dim();
    let inside = |v: f64, n: usize| v >= -0.5 && v <= n as f64 - 0.5;
    if !(inside(p[0], ny) && inside(p[1], nx)) {
        return None;
    }
    let fy = p[0].floor();
    let fx = p[1].floor();
    let wy = keys_weights(p[0] - fy);
    let wx = keys_weights(p[1] - fx);
    let (iy, ix) = (fy as i64, fx as i64);
    let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
    let mut acc = 0.0;
    for (dy, wy) in wy.iter().enumerate() {
        let r = clamp(iy + dy as i64 - 1, ny);
        let mut row = 0.0;
        for (dx, wx) in wx.iter().enumerate() {
            let c = clamp(ix + dx as i64 - 1, nx);
            row += wx * f64::from(a[[r, c]]);
        }
        acc += wy * row;
    }
    Some(acc)
}

/// Bilinear sample of `a` at `[y, x]`, the position clamped to the grid.
pub(crate) fn bilinear(a: &Array2<f64>, p: [f64; 2]) -> f64 {
    let (ny, nx) = a.dim();
    if ny == 0 || nx == 0 {
        return 0.0;
    }
    let y = p[0].clamp(0.0, ny as f64 - 1.0);
    let x = p[1].clamp(0.0, nx as f64 - 1.0);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(ny - 1), (x0 + 1).min(nx - 1));
    let (ty, tx) = (y - y0 as f64, x - x0 as f64);
    let top = a[[y0, x0]] * (1.0 - tx) + a[[y0, x1]] * tx;
    let bottom = a[[y1, x0]] * (1.0 - tx) + a[[y1, x1]] * tx;
    top * (1.0 - ty) + bottom * ty
}

/// Resamples image, masks, displacement field and labels of `sample` through `warp` onto an
/// output grid of `out_shape` (see the [module docs](super#geometric-convention)). The image
/// keeps its pixel size; interpolated values are clamped to the input's `[min, max]` (cubic
/// overshoot would otherwise create negative intensities). Rows run in parallel.
///
/// Errors: an empty image or output shape, a non-finite pixel, or a label position the warp
/// cannot invert.
pub fn warp_sample(sample: &mut Sample, warp: &dyn Warp, out_shape: [usize; 2]) -> Result<()> {
    let input = sample.image.data();
    if input.is_empty() || out_shape[0] == 0 || out_shape[1] == 0 {
        return Err(stem_core::Error::EmptyInput { what: "image" }.into());
    }
    if out_shape[0]
        .checked_mul(out_shape[1])
        .is_none_or(|n| n > super::MAX_PIXELS)
    {
        return Err(Error::invalid(
            "output shape",
            format!("{out_shape:?} exceeds {} pixels", super::MAX_PIXELS),
        ));
    }
    if let Some(index) = input.iter().position(|v| !v.is_finite()) {
        return Err(stem_core::Error::NonFinite {
            what: "image",
            index,
        }
        .into());
    }
    let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &v in input {
        let v = f64::from(v);
        lo = lo.min(v);
        hi = hi.max(v);
        sum += v;
    }
    let fill = sum / input.len() as f64;
    // Labels first: an error leaves the sample untouched.
    let mut moved = Vec::with_capacity(sample.labels.len());
    for q in &sample.labels.positions_px {
        moved.push(warp.target(*q)?);
    }

    let mut out = Array2::<f32>::zeros((out_shape[0], out_shape[1]));
    Zip::indexed(out.rows_mut()).par_for_each(|r, mut row| {
        for (c, o) in row.iter_mut().enumerate() {
            let q = warp.source([r as f64, c as f64]);
            *o = cubic(input, q).map_or(fill, |v| v.clamp(lo, hi)) as f32;
        }
    });

    let labels: &mut Labels = &mut sample.labels;
    for mask in &mut labels.masks {
        let src = &mask.data;
        let (ny, nx) = src.dim();
        let mut m = Array2::<u8>::zeros((out_shape[0], out_shape[1]));
        Zip::indexed(m.rows_mut()).par_for_each(|r, mut row| {
            for (c, o) in row.iter_mut().enumerate() {
                let q = warp.source([r as f64, c as f64]);
                let (y, x) = (q[0].round(), q[1].round());
                if y >= 0.0 && x >= 0.0 && (y as usize) < ny && (x as usize) < nx {
                    *o = src[[y as usize, x as usize]];
                }
            }
        });
        mask.data = m;
    }
    if let Some(d) = &labels.displacement {
        let mut new = DisplacementField::zeros(out_shape);
        Zip::indexed(new.dy_px.rows_mut())
            .and(new.dx_px.rows_mut())
            .par_for_each(|r, mut dy, mut dx| {
                for c in 0..dy.len() {
                    let p = [r as f64, c as f64];
                    let q = warp.source(p);
                    let prev = d.sample(q);
                    dy[c] = q[0] - p[0] + prev[0];
                    dx[c] = q[1] - p[1] + prev[1];
                }
            });
        labels.displacement = Some(new);
    }
    let [ny, nx] = out_shape.map(|n| n as f64 - 1.0);
    let keep: Vec<bool> = moved
        .iter()
        .map(|p| p[0] >= 0.0 && p[0] <= ny && p[1] >= 0.0 && p[1] <= nx)
        .collect();
    labels.positions_px = moved;
    labels.retain_points(&keep);

    let mut axes = sample.image.axes().clone();
    axes[0].size = out_shape[0];
    axes[1].size = out_shape[1];
    sample.image = Image::with_axes(out, axes)?;
    Ok(())
}

/// Changes the pixel size by `factor` (see [`super::Degradation::Resample`]).
pub(crate) fn resample(sample: &mut Sample, factor: f64) -> Result<()> {
    if !(factor.is_finite() && factor > 0.0) {
        return Err(Error::invalid(
            "resample.factor",
            format!("must be finite and > 0, got {factor}"),
        ));
    }
    let [ny, nx] = sample.image.shape();
    let out_shape = [
        ((ny as f64 / factor).round() as usize).max(1),
        ((nx as f64 / factor).round() as usize).max(1),
    ];
    if factor > 1.0 {
        let sigma = ((factor * factor - 1.0) / 12.0).sqrt();
        let blurred = stem_core::filters::gaussian_blur(sample.image.data().view(), sigma, 4.0)?;
        let axes = sample.image.axes().clone();
        sample.image = Image::with_axes(blurred, axes)?;
    }
    warp_sample(sample, &ResampleMap { factor }, out_shape)?;
    let mut axes = sample.image.axes().clone();
    for a in &mut axes {
        a.scale *= factor;
    }
    set_axes(&mut sample.image, axes)
}
