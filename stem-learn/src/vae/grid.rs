//! Sub-images on a regular grid (window `w`, stride `s`, raster order), optionally re-centred on
//! the brightest nearby column.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Where the windows of a [`SubimageGrid`] sit in the image.
///
/// Grid cell `[i, j]` (raster order: index `i·gx + j`) has its nominal window top-left corner at
/// `origin_px + [i·stride_px, j·stride_px]` and its nominal centre at that corner
/// `+ (window_px − 1)/2` on both axes (px, `[y, x]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridSpec {
    /// Window side (px).
    pub window_px: usize,
    /// Step between neighbouring windows (px).
    pub stride_px: usize,
    /// Top-left corner of window `[0, 0]` (px, `[y, x]`).
    pub origin_px: [usize; 2],
    /// Number of windows `[gy, gx]`.
    pub shape: [usize; 2],
}

impl GridSpec {
    /// The grid of `window_px` windows at `stride_px` that fits in an image of `image_shape`
    /// (`[y, x]`) with `margin_px` kept free on every side.
    ///
    /// ```
    /// use stem_learn::vae::GridSpec;
    /// let g = GridSpec::fit([100, 60], 16, 8, 0).unwrap();
    /// assert_eq!(g.shape, [11, 6]); // (100 − 16)/8 + 1, (60 − 16)/8 + 1
    /// assert_eq!(g.centre_px(1, 2), [8.0 + 7.5, 16.0 + 7.5]);
    /// ```
    pub fn fit(
        image_shape: [usize; 2],
        window_px: usize,
        stride_px: usize,
        margin_px: usize,
    ) -> Result<Self> {
        if window_px < 2 {
            return Err(Error::param(
                "window_px",
                format!("must be >= 2, got {window_px}"),
            ));
        }
        if stride_px == 0 {
            return Err(Error::param("stride_px", "must be >= 1, got 0"));
        }
        let need = window_px + 2 * margin_px;
        let mut shape = [0; 2];
        for a in 0..2 {
            if image_shape[a] < need {
                return Err(Error::param(
                    "window_px",
                    format!(
                        "window {window_px} px plus 2 × margin {margin_px} px exceeds the image side {} px",
                        image_shape[a]
                    ),
                ));
            }
            shape[a] = (image_shape[a] - need) / stride_px + 1;
        }
        Ok(GridSpec {
            window_px,
            stride_px,
            origin_px: [margin_px, margin_px],
            shape,
        })
    }

    /// Number of windows `gy · gx`.
    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Whether the grid has no windows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nominal centre of cell `[i, j]` (px, `[y, x]`).
    pub fn centre_px(&self, i: usize, j: usize) -> [f64; 2] {
        let h = (self.window_px as f64 - 1.0) / 2.0;
        [
            (self.origin_px[0] + i * self.stride_px) as f64 + h,
            (self.origin_px[1] + j * self.stride_px) as f64 + h,
        ]
    }

    /// The value of `mask` (`[y, x]`, same shape as the image) at each cell's nominal centre
    /// (rounded half up), as a `[gy, gx]` map: e.g. the ground-truth domain of each window.
    ///
    /// Errors if the mask is smaller than the grid's extent.
    pub fn sample_mask(&self, mask: ArrayView2<'_, u8>) -> Result<Array2<u16>> {
        let (h, w) = mask.dim();
        let last = self.centre_px(self.shape[0].max(1) - 1, self.shape[1].max(1) - 1);
        if (last[0] + 0.5) as usize >= h || (last[1] + 0.5) as usize >= w {
            return Err(Error::ShapeMismatch {
                what: "mask covering the grid",
                expected: vec![(last[0] + 1.5) as usize, (last[1] + 1.5) as usize],
                found: vec![h, w],
            });
        }
        Ok(Array2::from_shape_fn(
            (self.shape[0], self.shape[1]),
            |(i, j)| {
                let c = self.centre_px(i, j);
                u16::from(mask[[(c[0] + 0.5) as usize, (c[1] + 0.5) as usize]])
            },
        ))
    }
}

/// The windows of an image: `len × window_px²` values (row-major window pixels, windows in
/// raster order of the grid), plus the centre each window was actually cut at.
#[derive(Clone, Debug)]
pub struct SubimageGrid {
    /// The grid.
    pub spec: GridSpec,
    /// Window pixels, `[len, window_px²]` row-major.
    pub data: Vec<f32>,
    /// Centre of each window as cut (px, `[y, x]`): the nominal centre, or the re-centred one
    /// when alignment is on.
    pub centres_px: Vec<[f64; 2]>,
}

/// Bilinear sample of `img` at (`y`, `x`), which must satisfy `0 ≤ y ≤ h − 1`, `0 ≤ x ≤ w − 1`.
fn bilinear(img: &ArrayView2<'_, f32>, y: f64, x: f64) -> f32 {
    let (h, w) = img.dim();
    let y0 = (y.floor() as usize).min(h - 1);
    let x0 = (x.floor() as usize).min(w - 1);
    let fy = y - y0 as f64;
    let fx = x - x0 as f64;
    let y1 = (y0 + 1).min(h - 1);
    let x1 = (x0 + 1).min(w - 1);
    let a = f64::from(img[[y0, x0]]) * (1.0 - fx) + f64::from(img[[y0, x1]]) * fx;
    let b = f64::from(img[[y1, x0]]) * (1.0 - fx) + f64::from(img[[y1, x1]]) * fx;
    (a * (1.0 - fy) + b * fy) as f32
}

/// Offset of the vertex of the parabola through (−1, a), (0, b), (1, c), clamped to ±0.5.
fn parabola_vertex(a: f64, b: f64, c: f64) -> f64 {
    let den = a - 2.0 * b + c;
    if den < 0.0 {
        (0.5 * (a - c) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

impl SubimageGrid {
    /// Cuts `window_px` windows at `stride_px` from `image` (`[y, x]`).
    ///
    /// With `align_px > 0`, each window is re-centred on the maximum of `smoothed` (the image
    /// blurred by the caller) within the `align_px × align_px` square around its nominal centre,
    /// refined to sub-pixel precision by a 3-point parabola per axis, and cut by bilinear
    /// interpolation. Choosing `align_px` ≈ one lattice period makes every window start on the
    /// same kind of (brightest) column, so the windows differ by what the columns around it do
    /// (e.g. polarisation) rather than by the lattice phase. The grid then keeps a margin of
    /// `align_px/2 + 1` px. Without alignment the windows are exact copies.
    pub fn extract(
        image: ArrayView2<'_, f32>,
        smoothed: Option<ArrayView2<'_, f32>>,
        window_px: usize,
        stride_px: usize,
        align_px: usize,
    ) -> Result<Self> {
        let (h, w) = image.dim();
        if let Some(index) = image.iter().position(|v| !v.is_finite()) {
            return Err(Error::Core(stem_core::Error::NonFinite {
                what: "image",
                index,
            }));
        }
        let margin = if align_px > 0 { align_px / 2 + 1 } else { 0 };
        let spec = GridSpec::fit([h, w], window_px, stride_px, margin)?;
        let smoothed = match smoothed {
            Some(s) if s.dim() != (h, w) => {
                return Err(Error::ShapeMismatch {
                    what: "smoothed image",
                    expected: vec![h, w],
                    found: vec![s.dim().0, s.dim().1],
                });
            }
            s => s,
        };
        let mut centres = Vec::with_capacity(spec.len());
        for i in 0..spec.shape[0] {
            for j in 0..spec.shape[1] {
                let c = spec.centre_px(i, j);
                centres.push(match (align_px > 0, smoothed.as_ref()) {
                    (true, Some(s)) => recentre(s, c, align_px),
                    _ => c,
                });
            }
        }
        Ok(Self::cut(image, spec, &centres))
    }

    /// Like [`extract`](Self::extract) with alignment, but every window is centred on the site
    /// of one global lattice nearest to its nominal centre: sites `o + n₁a₁ + n₂a₂` with the
    /// basis of `lattice` and the origin `o` whose fractional coordinates are the circular means
    /// of those of the per-window peaks found in the `align_px` squares. This removes the
    /// noise-driven jitter of per-window peaks (exact on an undistorted lattice); scan
    /// distortion that bends the lattice by more than a fraction of a pixel defeats it.
    pub fn extract_lattice(
        image: ArrayView2<'_, f32>,
        smoothed: ArrayView2<'_, f32>,
        window_px: usize,
        stride_px: usize,
        align_px: usize,
        lattice: &stem_core::lattice::Lattice,
    ) -> Result<Self> {
        let peaks = Self::extract(image, Some(smoothed), window_px, stride_px, align_px.max(1))?;
        let g = lattice.reciprocal();
        let frac = |p: [f64; 2]| {
            [
                g[0][0] * p[0] + g[0][1] * p[1],
                g[1][0] * p[0] + g[1][1] * p[1],
            ]
        };
        let mut phase = [0.0; 2];
        for (a, ph) in phase.iter_mut().enumerate() {
            let (mut cs, mut sn) = (0.0, 0.0);
            for &p in &peaks.centres_px {
                let t = std::f64::consts::TAU * frac(p)[a];
                cs += t.cos();
                sn += t.sin();
            }
            *ph = sn.atan2(cs) / std::f64::consts::TAU;
        }
        let spec = peaks.spec;
        let mut centres = Vec::with_capacity(spec.len());
        for i in 0..spec.shape[0] {
            for j in 0..spec.shape[1] {
                let f = frac(spec.centre_px(i, j));
                let n1 = (f[0] - phase[0]).round();
                let n2 = (f[1] - phase[1]).round();
                let (u, v) = (n1 + phase[0], n2 + phase[1]);
                centres.push([
                    u * lattice.a1_px[0] + v * lattice.a2_px[0],
                    u * lattice.a1_px[1] + v * lattice.a2_px[1],
                ]);
            }
        }
        Ok(Self::cut(image, spec, &centres))
    }

    /// Cuts one window around each centre (bilinear; clamped to stay inside the image).
    fn cut(image: ArrayView2<'_, f32>, spec: GridSpec, centres: &[[f64; 2]]) -> Self {
        let (h, w) = image.dim();
        let window_px = spec.window_px;
        let n = spec.len();
        let ww = window_px * window_px;
        let half = (window_px as f64 - 1.0) / 2.0;
        let mut data = vec![0f32; n * ww];
        let mut centres_px = Vec::with_capacity(n);
        for (k, c) in centres.iter().enumerate() {
            let ty = (c[0] - half).clamp(0.0, (h - window_px) as f64);
            let tx = (c[1] - half).clamp(0.0, (w - window_px) as f64);
            centres_px.push([ty + half, tx + half]);
            let out = &mut data[k * ww..(k + 1) * ww];
            for u in 0..window_px {
                for v in 0..window_px {
                    out[u * window_px + v] = bilinear(&image, ty + u as f64, tx + v as f64);
                }
            }
        }
        SubimageGrid {
            spec,
            data,
            centres_px,
        }
    }
}

/// The sub-pixel maximum of `s` in the `side × side` square around `c`.
fn recentre(s: &ArrayView2<'_, f32>, c: [f64; 2], side: usize) -> [f64; 2] {
    let (h, w) = s.dim();
    let r = side as f64 / 2.0;
    let y0 = (c[0] - r).ceil().max(0.0) as usize;
    let x0 = (c[1] - r).ceil().max(0.0) as usize;
    let y1 = ((c[0] + r).floor() as usize).min(h - 1);
    let x1 = ((c[1] + r).floor() as usize).min(w - 1);
    let mut best = (f32::NEG_INFINITY, y0, x0);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if s[[y, x]] > best.0 {
                best = (s[[y, x]], y, x);
            }
        }
    }
    let (_, y, x) = best;
    let g = |yy: usize, xx: usize| f64::from(s[[yy, xx]]);
    let dy = if y > 0 && y + 1 < h {
        parabola_vertex(g(y - 1, x), g(y, x), g(y + 1, x))
    } else {
        0.0
    };
    let dx = if x > 0 && x + 1 < w {
        parabola_vertex(g(y, x - 1), g(y, x), g(y, x + 1))
    } else {
        0.0
    };
    [y as f64 + dy, x as f64 + dx]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn grid_validation_rules() {
        assert!(matches!(
            GridSpec::fit([10, 10], 1, 1, 0),
            Err(Error::InvalidParameter {
                name: "window_px",
                ..
            })
        ));
        assert!(matches!(
            GridSpec::fit([10, 10], 4, 0, 0),
            Err(Error::InvalidParameter {
                name: "stride_px",
                ..
            })
        ));
        assert!(GridSpec::fit([10, 10], 11, 1, 0).is_err());
        assert!(GridSpec::fit([10, 10], 8, 1, 2).is_err());
        let img = Array2::<f32>::from_elem((8, 8), f32::NAN);
        assert!(SubimageGrid::extract(img.view(), None, 4, 2, 0).is_err());
        let img = Array2::<f32>::zeros((8, 8));
        let bad = Array2::<f32>::zeros((7, 8));
        assert!(matches!(
            SubimageGrid::extract(img.view(), Some(bad.view()), 4, 2, 2),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn unaligned_windows_are_exact_copies_in_raster_order() {
        let img = Array2::from_shape_fn((9, 11), |(y, x)| (y * 100 + x) as f32);
        let g = SubimageGrid::extract(img.view(), None, 3, 2, 0).unwrap();
        assert_eq!(g.spec.shape, [4, 5]);
        // Window [1, 2] (index 7) starts at (2, 4).
        let w = &g.data[7 * 9..8 * 9];
        assert_eq!(w, &[204., 205., 206., 304., 305., 306., 404., 405., 406.]);
        assert_eq!(g.centres_px[7], [3.0, 5.0]);
    }

    #[test]
    fn alignment_finds_a_subpixel_peak() {
        // One Gaussian peak at (12.3, 13.6); every window whose search square holds it snaps there.
        let img = Array2::from_shape_fn((28, 28), |(y, x)| {
            let d2 = (y as f64 - 12.3).powi(2) + (x as f64 - 13.6).powi(2);
            (-d2 / (2.0 * 2.0f64.powi(2))).exp() as f32
        });
        let g = SubimageGrid::extract(img.view(), Some(img.view()), 8, 4, 10).unwrap();
        let c = g.centres_px[g.spec.shape[1] + 1]; // nominal centre (13.5, 13.5)
        // A parabola through a sampled Gaussian is biased by < 0.1 px at σ = 2 px.
        assert!(
            (c[0] - 12.3).abs() < 0.1 && (c[1] - 13.6).abs() < 0.1,
            "{c:?}"
        );
    }

    #[test]
    fn sample_mask_reads_the_centre() {
        let g = GridSpec::fit([10, 10], 4, 3, 0).unwrap();
        let mask = Array2::from_shape_fn((10, 10), |(y, _)| u8::from(y >= 5));
        let m = g.sample_mask(mask.view()).unwrap();
        // Centres at y = 1.5, 4.5, 7.5 → rows 2, 5, 8.
        assert_eq!(m.column(0).to_vec(), vec![0, 1, 1]);
        assert!(g.sample_mask(Array2::<u8>::zeros((4, 4)).view()).is_err());
    }
}
