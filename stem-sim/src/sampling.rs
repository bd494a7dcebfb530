//! Under-sampling checks: the most common source of wrong simulations.
//!
//! [`check_sampling`] compares a set-up against the rules of thumb of Kirkland (*Advanced
//! Computing in Electron Microscopy*, §5.5–§6) and abTEM's antialias limits, and lists every
//! problem with the numbers and a suggested fix:
//!
//! * the probe aperture must lie inside the antialias cutoff λ·k_c (otherwise the probe itself is
//!   clipped);
//! * every detector's outer angle must lie inside it too;
//! * the probe disc should span at least 5 reciprocal pixels in radius (otherwise discs look
//!   Gaussian and CBED detail is lost: α_c / (λ/L) ≥ 5);
//! * the cell must be larger than the probe: an estimated probe diameter
//!   d ≈ 2·(|Δf|·α_c + |Cs|·α_c³) + 5·λ/α_c must not exceed half the smaller cell side
//!   (otherwise the probe wraps around the periodic cell);
//! * a scan step above the Nyquist step λ/(4α_c) aliases the image.

use crate::antialias::Antialias;
use crate::detector::Detector;
use crate::energy::wavelength_a;
use crate::error::Result;
use crate::grid::Grid;
use crate::probe::ProbeConfig;

/// One sampling problem, with the numbers involved.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplingIssue {
    /// The probe aperture reaches beyond the antialias cutoff.
    ApertureBeyondCutoff {
        /// Probe semi-angle in mrad.
        semiangle_mrad: f64,
        /// Cutoff in mrad.
        max_angle_mrad: f64,
    },
    /// A detector reaches beyond the antialias cutoff.
    DetectorBeyondCutoff {
        /// The detector.
        detector: String,
        /// Its outer angle in mrad.
        outer_mrad: f64,
        /// Cutoff in mrad.
        max_angle_mrad: f64,
    },
    /// Too few reciprocal pixels across the probe disc radius.
    CoarseAngularSampling {
        /// Disc radius in reciprocal pixels.
        pixels_per_radius: f64,
        /// Angular pixel size in mrad (the larger of y, x).
        angular_pixel_mrad: f64,
    },
    /// The cell is too small for the probe: it wraps around.
    CellTooSmall {
        /// Estimated probe diameter in Å.
        probe_diameter_a: f64,
        /// Smaller cell side in Å.
        extent_a: f64,
    },
    /// The scan step exceeds the Nyquist step.
    ScanStepAboveNyquist {
        /// Scan step in Å (the larger of y, x).
        step_a: f64,
        /// Nyquist step λ/(4α_c) in Å.
        nyquist_a: f64,
    },
}

impl std::fmt::Display for SamplingIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplingIssue::ApertureBeyondCutoff {
                semiangle_mrad,
                max_angle_mrad,
            } => write!(
                f,
                "probe aperture {semiangle_mrad:.1} mrad exceeds the antialias cutoff {max_angle_mrad:.1} mrad: use a finer sampling (more grid points)"
            ),
            SamplingIssue::DetectorBeyondCutoff {
                detector,
                outer_mrad,
                max_angle_mrad,
            } => write!(
                f,
                "{detector} reaches {outer_mrad:.1} mrad, beyond the antialias cutoff {max_angle_mrad:.1} mrad: use dx <= λ/(3·θ_max)"
            ),
            SamplingIssue::CoarseAngularSampling {
                pixels_per_radius,
                angular_pixel_mrad,
            } => write!(
                f,
                "the probe disc is only {pixels_per_radius:.1} reciprocal pixels in radius ({angular_pixel_mrad:.2} mrad per pixel): use a larger cell (repeat the structure laterally)"
            ),
            SamplingIssue::CellTooSmall {
                probe_diameter_a,
                extent_a,
            } => write!(
                f,
                "the probe (about {probe_diameter_a:.1} Å across) wraps around a {extent_a:.1} Å cell: use a larger cell"
            ),
            SamplingIssue::ScanStepAboveNyquist { step_a, nyquist_a } => write!(
                f,
                "scan step {step_a:.3} Å exceeds the Nyquist step {nyquist_a:.3} Å: the image aliases"
            ),
        }
    }
}

/// The outcome of [`check_sampling`].
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingReport {
    /// Largest simulated angle λ·k_c in mrad.
    pub max_angle_mrad: f64,
    /// Angular pixel size `[y, x]` in mrad.
    pub angular_sampling_mrad: [f64; 2],
    /// Nyquist scan step λ/(4α_c) in Å (infinite for an infinite aperture).
    pub nyquist_step_a: f64,
    /// Everything that is under-sampled; empty when the set-up is fine.
    pub issues: Vec<SamplingIssue>,
}

impl SamplingReport {
    /// Whether no issue was found.
    pub fn is_ok(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks a probe, detectors and optional scan step (`[y, x]` Å) on `grid` for under-sampling.
///
/// # Errors
/// [`crate::Error::InvalidParameter`] for a bad energy.
///
/// ```
/// use stem_sim::{antialias::Antialias, detector::Detector, grid::Grid, probe::ProbeConfig};
/// use stem_sim::sampling::{check_sampling, SamplingIssue};
/// let grid = Grid::new([256, 256], [15.62, 15.62]).unwrap(); // dx = 0.061 Å: cutoff 137 mrad
/// let r = check_sampling(&grid, &ProbeConfig::default(), &[Detector::annular((70.0, 200.0))],
///                        None, &Antialias::default()).unwrap();
/// assert!(matches!(r.issues[0], SamplingIssue::DetectorBeyondCutoff { .. }));
/// ```
pub fn check_sampling(
    grid: &Grid,
    probe: &ProbeConfig,
    detectors: &[Detector],
    scan_step_yx_a: Option<[f64; 2]>,
    antialias: &Antialias,
) -> Result<SamplingReport> {
    antialias.validate()?;
    let l = wavelength_a(probe.energy_ev)?;
    let max = antialias.max_angle_mrad(grid, l);
    let rs = grid.reciprocal_sampling();
    let ang = [1e3 * l * rs[0], 1e3 * l * rs[1]];
    let alpha = probe.semiangle_cutoff_mrad;
    let mut issues = Vec::new();
    if alpha.is_finite() && alpha > max {
        issues.push(SamplingIssue::ApertureBeyondCutoff {
            semiangle_mrad: alpha,
            max_angle_mrad: max,
        });
    }
    for d in detectors {
        let outer = match d {
            Detector::Annular { outer_mrad, .. } => Some(*outer_mrad),
            Detector::Pixelated { max_angle } | Detector::Pacbed { max_angle } => match max_angle {
                crate::detector::MaxAngle::Mrad(m) => Some(*m),
                _ => None,
            },
            Detector::CenterOfMass => None,
        };
        if let Some(o) = outer
            && o > max
        {
            issues.push(SamplingIssue::DetectorBeyondCutoff {
                detector: d.name(),
                outer_mrad: o,
                max_angle_mrad: max,
            });
        }
    }
    let nyquist = if alpha.is_finite() && alpha > 0.0 {
        l / (4.0 * alpha * 1e-3)
    } else {
        f64::INFINITY
    };
    if alpha.is_finite() && alpha > 0.0 {
        let px = ang[0].max(ang[1]);
        let per_radius = alpha / px;
        if per_radius < 5.0 {
            issues.push(SamplingIssue::CoarseAngularSampling {
                pixels_per_radius: per_radius,
                angular_pixel_mrad: px,
            });
        }
        let a = alpha * 1e-3;
        let ab = &probe.aberrations;
        let d = 2.0 * (ab.c10_a.abs() * a + ab.c30_a.abs() * a.powi(3)) + 5.0 * l / a;
        let e = grid.extent_a();
        let extent = e[0].min(e[1]);
        if d > extent / 2.0 {
            issues.push(SamplingIssue::CellTooSmall {
                probe_diameter_a: d,
                extent_a: extent,
            });
        }
    }
    if let Some(s) = scan_step_yx_a {
        let step = s[0].abs().max(s[1].abs());
        if step > nyquist {
            issues.push(SamplingIssue::ScanStepAboveNyquist {
                step_a: step,
                nyquist_a: nyquist,
            });
        }
    }
    Ok(SamplingReport {
        max_angle_mrad: max,
        angular_sampling_mrad: ang,
        nyquist_step_a: nyquist,
        issues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aberrations::Aberrations;

    #[test]
    fn good_setup_has_no_issues() {
        let g = Grid::new([384, 384], [15.62, 15.62]).unwrap();
        let r = check_sampling(
            &g,
            &ProbeConfig::default(),
            &[Detector::annular((70.0, 200.0))],
            Some([0.3124, 0.3124]),
            &Antialias::default(),
        )
        .unwrap();
        assert!(r.is_ok(), "{:?}", r.issues);
    }

    #[test]
    fn each_rule_fires() {
        let a = Antialias::default();
        // Coarse grid: 20 mrad aperture beyond the cutoff of dx = 0.5 Å (16.7 mrad).
        let g = Grid::new([32, 32], [16.0, 16.0]).unwrap();
        let r = check_sampling(&g, &ProbeConfig::default(), &[], None, &a).unwrap();
        assert!(
            r.issues
                .iter()
                .any(|i| matches!(i, SamplingIssue::ApertureBeyondCutoff { .. }))
        );
        // Small cell: 4 Å → 6.3 mrad pixels, 3.2 px per radius; probe wraps.
        let g = Grid::new([128, 128], [4.0, 4.0]).unwrap();
        let r = check_sampling(&g, &ProbeConfig::default(), &[], None, &a).unwrap();
        assert!(
            r.issues
                .iter()
                .any(|i| matches!(i, SamplingIssue::CoarseAngularSampling { .. }))
        );
        assert!(
            r.issues
                .iter()
                .any(|i| matches!(i, SamplingIssue::CellTooSmall { .. }))
        );
        // Large defocus in a 15.6 Å cell wraps.
        let g = Grid::new([256, 256], [15.62, 15.62]).unwrap();
        let p = ProbeConfig {
            aberrations: Aberrations::default().with_defocus_a(500.0),
            ..Default::default()
        };
        let r = check_sampling(&g, &p, &[], Some([0.5, 0.5]), &a).unwrap();
        assert!(
            r.issues
                .iter()
                .any(|i| matches!(i, SamplingIssue::CellTooSmall { .. }))
        );
        assert!(
            r.issues
                .iter()
                .any(|i| matches!(i, SamplingIssue::ScanStepAboveNyquist { .. }))
        );
        assert!(!r.issues[0].to_string().is_empty());
        let bad = ProbeConfig {
            energy_ev: 0.0,
            ..Default::default()
        };
        assert!(check_sampling(&g, &bad, &[], None, &a).is_err());
    }
}
