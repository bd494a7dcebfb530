//! Detectors: annular (BF/ABF/ADF/HAADF), pixelated (4D-STEM), PACBED and centre of mass.
//!
//! All work on the diffraction intensity I(k) = |FFT ψ_exit|², normalised so that the incident
//! probe sums to 1 (values are fractions of the incident electrons). Angles are α = λ|k| in mrad.
//!
//! * [`Detector::Annular`]: Σ I over pixels with `inner ≤ α < outer` (a plain pixel sum, as
//!   abTEM). Output `[plane, scan_y, scan_x]`.
//! * [`Detector::Pixelated`]: the patterns themselves, cropped to [`MaxAngle`], zero frequency
//!   at `[h/2, w/2]`. Output `[plane, scan_y, scan_x, k_y, k_x]` (f32).
//! * [`Detector::Pacbed`]: the mean of the cropped patterns over the scan, `[plane, k_y, k_x]`.
//! * [`Detector::CenterOfMass`]: (Σ I·α_y, Σ I·α_x)/Σ I in mrad, `[plane, scan_y, scan_x, 2]`
//!   with the last axis (y, x).
//!
//! Every angle must lie inside the antialias cutoff λ·k_c; otherwise
//! [`Error::BeyondCutoff`] names the largest allowed angle.

use crate::error::{Error, Result};
use crate::grid::Grid;

/// Conventional annular ranges at 20 mrad convergence (mrad): BF [0, 20).
pub const BF_MRAD: (f64, f64) = (0.0, 20.0);
/// Annular bright field [10, 20) mrad.
pub const ABF_MRAD: (f64, f64) = (10.0, 20.0);
/// Annular dark field [30, 70) mrad.
pub const ADF_MRAD: (f64, f64) = (30.0, 70.0);
/// High-angle annular dark field [70, 200) mrad.
pub const HAADF_MRAD: (f64, f64) = (70.0, 200.0);

/// How far out a pixelated detector or PACBED reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum MaxAngle {
    /// The largest square inside the antialias circle: |α_x|, |α_y| ≤ λk_c/√2 (default).
    #[default]
    Valid,
    /// The square around the antialias circle: |α_x|, |α_y| ≤ λk_c (corners are zero).
    Cutoff,
    /// The full grid (beyond the cutoff everything is zero).
    Full,
    /// |α_x|, |α_y| ≤ this many mrad (must not exceed the cutoff).
    Mrad(f64),
}

/// A detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Detector {
    /// Annular detector collecting `inner_mrad ≤ α < outer_mrad`.
    Annular {
        /// Inner angle in mrad (≥ 0).
        inner_mrad: f64,
        /// Outer angle in mrad (> inner, ≤ the antialias cutoff).
        outer_mrad: f64,
    },
    /// Full diffraction patterns per position (4D-STEM).
    Pixelated {
        /// Crop.
        max_angle: MaxAngle,
    },
    /// Position-averaged CBED.
    Pacbed {
        /// Crop.
        max_angle: MaxAngle,
    },
    /// Centre of mass of the diffraction pattern in mrad.
    CenterOfMass,
}

impl Detector {
    /// An annular detector `[inner, outer)` in mrad.
    pub fn annular((inner_mrad, outer_mrad): (f64, f64)) -> Self {
        Detector::Annular {
            inner_mrad,
            outer_mrad,
        }
    }

    /// A short name ("annular 70-200 mrad", "pixelated", ...).
    pub fn name(&self) -> String {
        match self {
            Detector::Annular {
                inner_mrad,
                outer_mrad,
            } => format!("annular {inner_mrad}-{outer_mrad} mrad"),
            Detector::Pixelated { .. } => "pixelated".into(),
            Detector::Pacbed { .. } => "PACBED".into(),
            Detector::CenterOfMass => "centre of mass".into(),
        }
    }

    /// Checks the detector against the largest simulated angle `max_angle_mrad`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for negative, non-finite or inverted angles;
    /// [`Error::BeyondCutoff`] if the detector reaches beyond `max_angle_mrad`.
    ///
    /// ```
    /// use stem_sim::detector::Detector;
    /// let haadf = Detector::annular((70.0, 200.0));
    /// assert!(haadf.validate(205.5).is_ok());
    /// assert!(matches!(haadf.validate(137.0), Err(stem_sim::Error::BeyondCutoff { .. })));
    /// ```
    pub fn validate(&self, max_angle_mrad: f64) -> Result<()> {
        match *self {
            Detector::Annular {
                inner_mrad,
                outer_mrad,
            } => {
                if !(inner_mrad.is_finite() && inner_mrad >= 0.0 && outer_mrad > inner_mrad) {
                    return Err(Error::invalid(
                        "annular detector",
                        format!(
                            "need 0 <= inner < outer, finite; got [{inner_mrad}, {outer_mrad}) mrad"
                        ),
                    ));
                }
                if outer_mrad > max_angle_mrad {
                    return Err(Error::BeyondCutoff {
                        what: self.name(),
                        requested_mrad: outer_mrad,
                        max_mrad: max_angle_mrad,
                    });
                }
            }
            Detector::Pixelated { max_angle } | Detector::Pacbed { max_angle } => {
                if let MaxAngle::Mrad(m) = max_angle {
                    if !(m.is_finite() && m > 0.0) {
                        return Err(Error::invalid(
                            "max_angle",
                            format!("must be finite and > 0 mrad, got {m}"),
                        ));
                    }
                    if m > max_angle_mrad {
                        return Err(Error::BeyondCutoff {
                            what: self.name(),
                            requested_mrad: m,
                            max_mrad: max_angle_mrad,
                        });
                    }
                }
            }
            Detector::CenterOfMass => {}
        }
        Ok(())
    }
}

/// A detector prepared for a grid, in the engine's transposed `[k_x][k_y]` order.
#[derive(Clone, Debug)]
pub(crate) enum Prepared {
    Annular {
        pixels: Vec<u32>,
    },
    Pattern {
        map: Vec<u32>,
        shape: [usize; 2],
        mean: bool,
    },
    Com {
        alpha_y: Vec<f64>,
        alpha_x: Vec<f64>,
    },
}

impl Prepared {
    pub(crate) fn new(
        d: &Detector,
        grid: &Grid,
        wavelength_a: f64,
        max_angle_mrad: f64,
    ) -> Result<Self> {
        d.validate(max_angle_mrad)?;
        let (ky, kx) = (grid.ky(), grid.kx());
        let ny = ky.len();
        let mrad = |k: f64| 1e3 * wavelength_a * k;
        Ok(match *d {
            Detector::Annular {
                inner_mrad,
                outer_mrad,
            } => {
                let mut pixels = Vec::new();
                for (i, x) in kx.iter().enumerate() {
                    for (j, y) in ky.iter().enumerate() {
                        let a = mrad((x * x + y * y).sqrt());
                        if a >= inner_mrad && a < outer_mrad {
                            pixels.push((i * ny + j) as u32);
                        }
                    }
                }
                Prepared::Annular { pixels }
            }
            Detector::Pixelated { max_angle } | Detector::Pacbed { max_angle } => {
                let limit = match max_angle {
                    MaxAngle::Valid => max_angle_mrad / std::f64::consts::SQRT_2,
                    MaxAngle::Cutoff => max_angle_mrad,
                    MaxAngle::Full => f64::INFINITY,
                    MaxAngle::Mrad(m) => m,
                };
                let axis = |k: &[f64]| {
                    let mut idx: Vec<usize> = (0..k.len())
                        .filter(|&i| mrad(k[i].abs()) <= limit)
                        .collect();
                    idx.sort_by(|&a, &b| k[a].total_cmp(&k[b]));
                    idx
                };
                let (iy, ix) = (axis(&ky), axis(&kx));
                let mut map = Vec::with_capacity(iy.len() * ix.len());
                for &j in &iy {
                    for &i in &ix {
                        map.push((i * ny + j) as u32);
                    }
                }
                Prepared::Pattern {
                    map,
                    shape: [iy.len(), ix.len()],
                    mean: matches!(d, Detector::Pacbed { .. }),
                }
            }
            Detector::CenterOfMass => {
                let mut alpha_y = Vec::with_capacity(grid.len());
                let mut alpha_x = Vec::with_capacity(grid.len());
                for x in &kx {
                    for y in &ky {
                        alpha_y.push(mrad(*y));
                        alpha_x.push(mrad(*x));
                    }
                }
                Prepared::Com { alpha_y, alpha_x }
            }
        })
    }

    /// Values per exit plane for one position.
    pub(crate) fn len_per_plane(&self) -> usize {
        match self {
            Prepared::Annular { .. } => 1,
            Prepared::Pattern { map, .. } => map.len(),
            Prepared::Com { .. } => 2,
        }
    }

    /// Measures the intensity `int` (`[k_x][k_y]`) into `out` (`len_per_plane` values).
    pub(crate) fn measure(&self, int: &[f64], out: &mut [f64]) {
        match self {
            Prepared::Annular { pixels } => {
                out[0] = pixels.iter().map(|&p| int[p as usize]).sum();
            }
            Prepared::Pattern { map, .. } => {
                for (o, &p) in out.iter_mut().zip(map) {
                    *o = int[p as usize];
                }
            }
            Prepared::Com { alpha_y, alpha_x } => {
                let (mut s, mut sy, mut sx) = (0.0, 0.0, 0.0);
                for ((&v, ay), ax) in int.iter().zip(alpha_y).zip(alpha_x) {
                    s += v;
                    sy += v * ay;
                    sx += v * ax;
                }
                if s > 0.0 {
                    out[0] = sy / s;
                    out[1] = sx / s;
                } else {
                    out[0] = 0.0;
                    out[1] = 0.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        assert!(Detector::annular((20.0, 10.0)).validate(100.0).is_err());
        assert!(Detector::annular((-1.0, 10.0)).validate(100.0).is_err());
        assert!(Detector::annular((f64::NAN, 10.0)).validate(100.0).is_err());
        match Detector::annular((70.0, 200.0)).validate(137.0) {
            Err(Error::BeyondCutoff { max_mrad, .. }) => assert_eq!(max_mrad, 137.0),
            other => panic!("{other:?}"),
        }
        let p = Detector::Pixelated {
            max_angle: MaxAngle::Mrad(150.0),
        };
        assert!(matches!(p.validate(137.0), Err(Error::BeyondCutoff { .. })));
        let p = Detector::Pacbed {
            max_angle: MaxAngle::Mrad(-1.0),
        };
        assert!(p.validate(137.0).is_err());
        assert!(Detector::CenterOfMass.validate(1.0).is_ok());
    }

    #[test]
    fn crop_is_centred_and_symmetric() {
        let g = Grid::new([64, 64], [10.0, 10.0]).unwrap();
        let l = 0.025;
        let max = 1e3 * l * 0.6666666 / (2.0 * 10.0 / 64.0);
        let p = Prepared::new(
            &Detector::Pacbed {
                max_angle: MaxAngle::Cutoff,
            },
            &g,
            l,
            max,
        )
        .unwrap();
        let Prepared::Pattern { map, shape, .. } = p else {
            panic!()
        };
        // k_c = 2.1333 Å⁻¹, dk = 0.1: |k| ≤ 2.1 → 43 pixels per axis, zero frequency in the centre.
        assert_eq!(shape, [43, 43]);
        assert_eq!(map[21 * 43 + 21], 0);
    }
}
