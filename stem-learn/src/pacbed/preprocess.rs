//! PACBED preprocessing: resampling to a fixed angular pixel, intensity scaling, and the
//! affine map used for geometric augmentation.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// How pattern intensities are compressed before the network sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scaling {
    /// `ln(1 + d / d_ref)` with `d` the fraction of the beam per mrad² and `d_ref` = 1 % of the
    /// mean of `d` over the output window.
    Log,
    /// `√d`.
    Sqrt,
}

/// Where the zero scattering angle of an input pattern is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Centering {
    /// At pixel `[h/2, w/2]` (integer division; the convention of `stem-sim` and of FFT-shifted
    /// patterns).
    ArrayCentre,
    /// At the intensity centre of mass (for experimental patterns whose optic axis is not
    /// centred; the tilt then shifts the centre slightly, which the network learns if it was
    /// trained with the same setting).
    CentreOfMass,
}

/// The fixed input the network sees: a `size_px × size_px` window of `mrad_per_px` pixels
/// centred on the zero angle, intensities scaled by `scaling` and standardised to mean 0 and
/// standard deviation 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Output side in px (8 ..= 256; default 48).
    pub size_px: usize,
    /// Output angular pixel in mrad (> 0; default 1.5, so 48 px cover ±36 mrad).
    pub mrad_per_px: f64,
    /// Intensity compression (default [`Scaling::Log`]).
    pub scaling: Scaling,
    /// Zero-angle convention (default [`Centering::ArrayCentre`]).
    pub centering: Centering,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            size_px: 48,
            mrad_per_px: 1.5,
            scaling: Scaling::Log,
            centering: Centering::ArrayCentre,
        }
    }
}

/// A 2×2 linear map plus a shift, applied to the output sampling grid: output angle `θ` (mrad,
/// `[y, x]`) samples the input at angle `m·θ + shift_mrad`. The identity is
/// [`Affine::IDENTITY`]. Used for augmentation (rotation, zoom, shear and centring errors in
/// one resampling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Row-major `[[m_yy, m_yx], [m_xy, m_xx]]`.
    pub m: [[f64; 2]; 2],
    /// Shift in mrad `[y, x]`.
    pub shift_mrad: [f64; 2],
}

impl Affine {
    /// No change.
    pub const IDENTITY: Affine = Affine {
        m: [[1.0, 0.0], [0.0, 1.0]],
        shift_mrad: [0.0, 0.0],
    };

    /// Rotation by `rot_rad` (counter-clockwise in the `[y, x]` = (row, column) frame), then
    /// isotropic zoom `zoom` (> 1 magnifies the pattern), shear `shear` (x += shear·y) and the
    /// shift: `m = (R·S)⁻¹ / zoom`, so a feature at input angle `φ` appears at output angle
    /// `zoom·R·S·(φ − shift)`.
    pub fn compose(rot_rad: f64, zoom: f64, shear: f64, shift_mrad: [f64; 2]) -> Affine {
        let (s, c) = rot_rad.sin_cos();
        // Forward F = R·S with R = [[c, -s], [s, c]] ([y, x] frame), S = [[1, 0], [shear, 1]].
        let f = [[c - s * shear, -s], [s + c * shear, c]];
        let det = f[0][0] * f[1][1] - f[0][1] * f[1][0];
        let inv = [
            [f[1][1] / det / zoom, -f[0][1] / det / zoom],
            [-f[1][0] / det / zoom, f[0][0] / det / zoom],
        ];
        Affine { m: inv, shift_mrad }
    }
}

impl PreprocessConfig {
    /// Checks `size_px` in 8 ..= 256 and `mrad_per_px` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        if !(8..=256).contains(&self.size_px) {
            return Err(Error::param(
                "size_px",
                format!("must be 8 ..= 256, got {}", self.size_px),
            ));
        }
        if !(self.mrad_per_px.is_finite() && self.mrad_per_px > 0.0) {
            return Err(Error::param(
                "mrad_per_px",
                format!("must be finite and > 0, got {}", self.mrad_per_px),
            ));
        }
        Ok(())
    }

    /// Half-width of the output window in mrad.
    pub fn half_width_mrad(&self) -> f64 {
        self.size_px as f64 / 2.0 * self.mrad_per_px
    }

    /// The network input for a pattern `[k_y, k_x]` (counts or fractions, ≥ 0) with angular
    /// pixel `pattern_mrad_per_px` `[y, x]`.
    ///
    /// Resampling is bilinear with a box prefilter (`⌈r⌉²` sub-samples per output pixel when the
    /// output pixel is `r` times the input one), outside the pattern counts as 0. Then the
    /// intensity is divided by the pattern total and the input pixel area (fraction per mrad²,
    /// so dose and pixel size drop out), compressed by [`Scaling`] and standardised.
    ///
    /// Errors ([`Error::InvalidParameter`]): a calibration not finite or ≤ 0, a pattern smaller
    /// than 4×4 px, one that does not reach at least 60 % of the output half-width (the network
    /// would see mostly padding), negative or non-finite values, or a zero total.
    ///
    /// ```
    /// use ndarray::Array2;
    /// use stem_learn::pacbed::{Affine, PreprocessConfig};
    /// let cfg = PreprocessConfig::default();
    /// // A uniform 20 mrad disc sampled at 1 mrad/px.
    /// let p = Array2::from_shape_fn((64, 64), |(y, x)| {
    ///     let (dy, dx) = (y as f64 - 32.0, x as f64 - 32.0);
    ///     if dy * dy + dx * dx < 400.0 { 1.0f32 } else { 0.0 }
    /// });
    /// let x = cfg.preprocess(p.view(), [1.0, 1.0], &Affine::IDENTITY).unwrap();
    /// assert_eq!(x.dim(), (48, 48));
    /// assert!(x.mean().unwrap().abs() < 1e-4);
    /// assert!(cfg.preprocess(p.view(), [0.0, 1.0], &Affine::IDENTITY).is_err());
    /// ```
    pub fn preprocess(
        &self,
        pattern: ArrayView2<'_, f32>,
        pattern_mrad_per_px: [f64; 2],
        affine: &Affine,
    ) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((self.size_px, self.size_px));
        self.preprocess_into(pattern, pattern_mrad_per_px, affine, &mut out)?;
        Ok(out)
    }

    /// [`preprocess`](Self::preprocess) into `out` (`size_px × size_px`), without allocating.
    pub fn preprocess_into(
        &self,
        pattern: ArrayView2<'_, f32>,
        pattern_mrad_per_px: [f64; 2],
        affine: &Affine,
        out: &mut Array2<f32>,
    ) -> Result<()> {
        self.validate()?;
        let n = self.size_px;
        if out.dim() != (n, n) {
            return Err(Error::ShapeMismatch {
                what: "preprocess output",
                expected: vec![n, n],
                found: out.shape().to_vec(),
            });
        }
        let [sy, sx] = pattern_mrad_per_px;
        if !(sy.is_finite() && sy > 0.0 && sx.is_finite() && sx > 0.0) {
            return Err(Error::param(
                "mrad_per_px",
                format!("pattern calibration must be finite and > 0 mrad/px, got [{sy}, {sx}]"),
            ));
        }
        let (h, w) = pattern.dim();
        if h < 4 || w < 4 {
            return Err(Error::param(
                "pattern",
                format!("must be at least 4×4 px, got {h}×{w}"),
            ));
        }
        let mut total = 0.0f64;
        let (mut cy, mut cx) = (0.0f64, 0.0f64);
        for ((y, x), &v) in pattern.indexed_iter() {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(
                    "pattern",
                    format!("pixel [{y}, {x}] = {v} is negative or not finite"),
                ));
            }
            let v = f64::from(v);
            total += v;
            cy += v * y as f64;
            cx += v * x as f64;
        }
        if total <= 0.0 {
            return Err(Error::param("pattern", "total intensity is zero"));
        }
        let (c0y, c0x) = match self.centering {
            Centering::ArrayCentre => ((h / 2) as f64, (w / 2) as f64),
            Centering::CentreOfMass => (cy / total, cx / total),
        };
        // The smallest reach of the pattern from its centre, in mrad.
        let reach = [
            c0y * sy,
            (h as f64 - 1.0 - c0y) * sy,
            c0x * sx,
            (w as f64 - 1.0 - c0x) * sx,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        let need = 0.6 * self.half_width_mrad();
        if reach < need {
            return Err(Error::param(
                "pattern",
                format!(
                    "reaches only {reach:.1} mrad from its centre ({h}×{w} px at [{sy}, {sx}] mrad/px); the network needs >= {need:.1} mrad"
                ),
            ));
        }
        // Box prefilter: ⌈r⌉ sub-samples per output pixel and axis.
        let r = (self.mrad_per_px / sy.min(sx)).max(1.0);
        let sub = (r.ceil() as usize).min(8);
        let norm = 1.0 / (total * sy * sx);
        let half = (n / 2) as f64;
        let m = affine.m;
        let sample = |ty: f64, tx: f64| -> f64 {
            // Output angle → input angle → input pixel.
            let ay = m[0][0] * ty + m[0][1] * tx + affine.shift_mrad[0];
            let ax = m[1][0] * ty + m[1][1] * tx + affine.shift_mrad[1];
            let py = c0y + ay / sy;
            let px = c0x + ax / sx;
            let (y0, x0) = (py.floor(), px.floor());
            let (fy, fx) = (py - y0, px - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            let get = |y: isize, x: isize| -> f64 {
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    0.0
                } else {
                    f64::from(pattern[[y as usize, x as usize]])
                }
            };
            (1.0 - fy) * ((1.0 - fx) * get(y0, x0) + fx * get(y0, x0 + 1))
                + fy * ((1.0 - fx) * get(y0 + 1, x0) + fx * get(y0 + 1, x0 + 1))
        };
        let step = self.mrad_per_px / sub as f64;
        for i in 0..n {
            for j in 0..n {
                let mut acc = 0.0;
                for a in 0..sub {
                    let ty = (i as f64 - half) * self.mrad_per_px + (a as f64 + 0.5) * step
                        - 0.5 * self.mrad_per_px;
                    for b in 0..sub {
                        let tx = (j as f64 - half) * self.mrad_per_px + (b as f64 + 0.5) * step
                            - 0.5 * self.mrad_per_px;
                        acc += sample(ty, tx);
                    }
                }
                out[[i, j]] = (acc / (sub * sub) as f64 * norm) as f32;
            }
        }
        match self.scaling {
            Scaling::Log => {
                let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / (n * n) as f64;
                let dref = (0.01 * mean).max(f64::MIN_POSITIVE);
                out.mapv_inplace(|v| (f64::from(v) / dref).ln_1p() as f32);
            }
            Scaling::Sqrt => out.mapv_inplace(|v| v.max(0.0).sqrt()),
        }
        standardise(out);
        Ok(())
    }
}

/// Mean 0, standard deviation 1 in place (a constant image becomes all zeros).
fn standardise(a: &mut Array2<f32>) {
    let n = a.len() as f64;
    let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = a
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
    a.mapv_inplace(|v| ((f64::from(v) - mean) * inv) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(n: usize, r_px: f64, c: [f64; 2]) -> Array2<f32> {
        Array2::from_shape_fn((n, n), |(y, x)| {
            let (dy, dx) = (y as f64 - c[0], x as f64 - c[1]);
            if dy * dy + dx * dx < r_px * r_px {
                1.0
            } else {
                0.0
            }
        })
    }

    #[test]
    fn validation_rules() {
        let p = disc(64, 20.0, [32.0, 32.0]);
        let id = Affine::IDENTITY;
        let cfg = PreprocessConfig::default();
        for bad in [
            [0.0, 1.0],
            [1.0, -1.0],
            [f64::NAN, 1.0],
            [1.0, f64::INFINITY],
        ] {
            assert!(matches!(
                cfg.preprocess(p.view(), bad, &id),
                Err(Error::InvalidParameter {
                    name: "mrad_per_px",
                    ..
                })
            ));
        }
        // Too small an angular range: 64 px × 0.5 mrad = ±16 mrad < 0.6 × 36.
        assert!(cfg.preprocess(p.view(), [0.5, 0.5], &id).is_err());
        assert!(
            cfg.preprocess(Array2::zeros((3, 3)).view(), [9.0, 9.0], &id)
                .is_err()
        );
        assert!(
            cfg.preprocess(Array2::zeros((64, 64)).view(), [1.0, 1.0], &id)
                .is_err()
        );
        let mut neg = p.clone();
        neg[[0, 0]] = -1.0;
        assert!(cfg.preprocess(neg.view(), [1.0, 1.0], &id).is_err());
        let mut nan = p.clone();
        nan[[3, 3]] = f32::NAN;
        assert!(cfg.preprocess(nan.view(), [1.0, 1.0], &id).is_err());
        for c in [
            PreprocessConfig {
                size_px: 4,
                ..cfg.clone()
            },
            PreprocessConfig {
                size_px: 300,
                ..cfg.clone()
            },
            PreprocessConfig {
                mrad_per_px: 0.0,
                ..cfg.clone()
            },
        ] {
            assert!(c.preprocess(p.view(), [1.0, 1.0], &id).is_err());
        }
        let mut wrong = Array2::zeros((3, 3));
        assert!(matches!(
            cfg.preprocess_into(p.view(), [1.0, 1.0], &id, &mut wrong),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    /// The same physical disc (20 mrad) at two calibrations gives the same network input: the
    /// disc edge lands on the same output pixels.
    #[test]
    fn calibration_is_honoured() {
        let cfg = PreprocessConfig {
            scaling: Scaling::Sqrt,
            ..Default::default()
        };
        let a = cfg
            .preprocess(
                disc(64, 20.0, [32.0, 32.0]).view(),
                [1.0, 1.0],
                &Affine::IDENTITY,
            )
            .unwrap();
        let b = cfg
            .preprocess(
                disc(128, 40.0, [64.0, 64.0]).view(),
                [0.5, 0.5],
                &Affine::IDENTITY,
            )
            .unwrap();
        let d = (&a - &b).mapv(f32::abs);
        // Only the rim pixels (partial coverage, different sub-sampling) may differ.
        let far = d.iter().filter(|&&v| v > 0.5).count();
        assert!(far <= 4 * 48 / 2, "{far} pixels differ");
        // Inside the disc (13 mrad from the centre) and outside (30 mrad) agree to 2 %: the
        // values before standardisation are equal, only the rim pixels (partial coverage,
        // sampled differently) move the mean and standard deviation, by < 1 %.
        for x in [24, 24 + 9, 24 + 20] {
            assert!((a[[24, x]] - b[[24, x]]).abs() < 0.02 * a[[24, x]].abs().max(1.0));
        }
        assert!(a[[24, 24 + 9]] > a[[24, 24 + 20]]);
    }

    /// Dose invariance: scaling the counts does not change the input.
    #[test]
    fn dose_invariant_and_standardised() {
        let cfg = PreprocessConfig::default();
        let p = disc(64, 20.0, [32.0, 32.0]).mapv(|v| v + 0.01);
        let a = cfg
            .preprocess(p.view(), [1.0, 1.0], &Affine::IDENTITY)
            .unwrap();
        let b = cfg
            .preprocess(p.mapv(|v| v * 1000.0).view(), [1.0, 1.0], &Affine::IDENTITY)
            .unwrap();
        let d = (&a - &b).mapv(f32::abs).fold(0.0f32, |m, &v| m.max(v));
        assert!(d < 1e-4, "{d}"); // f32 rounding of the rescaled values only
        let n = a.len() as f32;
        let mean = a.sum() / n;
        let var = a.mapv(|v| (v - mean) * (v - mean)).sum() / n;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
    }

    /// A shifted disc is re-centred by `CentreOfMass`; the affine shift moves it back.
    #[test]
    fn centring_and_affine_shift() {
        let cfg = PreprocessConfig {
            scaling: Scaling::Sqrt,
            ..Default::default()
        };
        let centred = cfg
            .preprocess(
                disc(64, 20.0, [32.0, 32.0]).view(),
                [1.0, 1.0],
                &Affine::IDENTITY,
            )
            .unwrap();
        let off = disc(64, 20.0, [36.0, 29.0]);
        let com = PreprocessConfig {
            centering: Centering::CentreOfMass,
            ..cfg.clone()
        }
        .preprocess(off.view(), [1.0, 1.0], &Affine::IDENTITY)
        .unwrap();
        let shifted = cfg
            .preprocess(
                off.view(),
                [1.0, 1.0],
                &Affine {
                    shift_mrad: [4.0, -3.0],
                    ..Affine::IDENTITY
                },
            )
            .unwrap();
        for x in [&com, &shifted] {
            let d = (&centred - x).mapv(f32::abs).fold(0.0f32, |m, &v| m.max(v));
            assert!(d < 0.3, "{d}"); // centre of mass of a pixelated disc is exact to < 0.05 px
        }
        let unshifted = cfg
            .preprocess(off.view(), [1.0, 1.0], &Affine::IDENTITY)
            .unwrap();
        let d = (&centred - &unshifted)
            .mapv(f32::abs)
            .fold(0.0f32, |m, &v| m.max(v));
        assert!(d > 1.0);
    }

    /// `compose`: a 90° rotation maps the y axis onto x; zoom 2 halves the sampled angles.
    #[test]
    fn affine_compose() {
        let a = Affine::compose(std::f64::consts::FRAC_PI_2, 2.0, 0.0, [0.0, 0.0]);
        // m = R⁻¹/2 with R(90°) = [[0, -1], [1, 0]] → R⁻¹ = [[0, 1], [-1, 0]].
        let want = [[0.0, 0.5], [-0.5, 0.0]];
        for (row, wrow) in a.m.iter().zip(&want) {
            for (v, w) in row.iter().zip(wrow) {
                assert!((v - w).abs() < 1e-12);
            }
        }
        let id = Affine::compose(0.0, 1.0, 0.0, [0.0, 0.0]);
        assert_eq!(id.m, Affine::IDENTITY.m);
    }
}
