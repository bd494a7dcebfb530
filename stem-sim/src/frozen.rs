//! Frozen-phonon incoherent averaging.
//!
//! Each configuration (atoms displaced by seeded Gaussians, see [`crate::phonons`]) gets its own
//! potential and multislice; the detector outputs (intensities) are averaged incoherently:
//! ⟨I⟩ = (1/N) Σ_c I_c. Only one configuration's potential and result are alive at a time.

use stem_core::{Parallelism, Progress, Real};

use crate::detector::Detector;
use crate::error::{Error, Result};
use crate::multislice::{Multislice, MultisliceConfig};
use crate::potential::SlicedPotential;
use crate::probe::Probe;
use crate::scan::{GridScan, ScanResult, scan};

/// Runs [`scan`] for `n_configs` configurations whose potentials `potential_for(index)`
/// provides, and returns the mean of the outputs (the centre of mass is the mean of the
/// per-configuration centres of mass).
///
/// # Errors
/// [`Error::InvalidParameter`] for `n_configs == 0`; any error of `potential_for`,
/// [`Multislice::new`] or [`scan`] (including cancellation).
///
/// ```
/// use ndarray::Array3;
/// use stem_core::{NoProgress, Parallelism};
/// use stem_sim::{detector::Detector, frozen::frozen_phonon_scan, grid::Grid};
/// use stem_sim::{multislice::MultisliceConfig, potential::SlicedPotential};
/// use stem_sim::{probe::{Probe, ProbeConfig}, scan::{DetectorOutput, GridScan}};
/// let make = |c: usize| SlicedPotential::new(
///     Array3::<f64>::from_elem((1, 32, 32), c as f64), vec![1.0], [8.0, 8.0]);
/// let probe = Probe::new(ProbeConfig::default(), Grid::new([32, 32], [8.0, 8.0]).unwrap()).unwrap();
/// let s = GridScan::new([0.0, 0.0], [8.0, 8.0], [1, 1]).unwrap();
/// let r = frozen_phonon_scan::<f64, f64>(3, make, &MultisliceConfig::default(), &probe, &s,
///     &[Detector::annular((0.0, 30.0))], Parallelism::Auto, &NoProgress).unwrap();
/// let DetectorOutput::Annular(a) = &r.outputs[0] else { panic!() };
/// // A constant potential only changes the phase: the BF signal stays 1.
/// assert!((a[[0, 0, 0]] - 1.0).abs() < 1e-9);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn frozen_phonon_scan<T: Real, P: Real>(
    n_configs: usize,
    mut potential_for: impl FnMut(usize) -> Result<SlicedPotential<P>>,
    config: &MultisliceConfig,
    probe: &Probe,
    grid_scan: &GridScan,
    detectors: &[Detector],
    parallelism: Parallelism,
    progress: &dyn Progress,
) -> Result<ScanResult> {
    if n_configs == 0 {
        return Err(Error::invalid(
            "n_configs",
            "need at least one configuration",
        ));
    }
    let mut acc: Option<ScanResult> = None;
    for c in 0..n_configs {
        stem_core::progress::check_cancel(progress)?;
        let pot = potential_for(c)?;
        let ms = Multislice::<T>::new(&pot, config)?;
        let r = scan(&ms, probe, grid_scan, detectors, parallelism, progress)?;
        match acc.as_mut() {
            None => acc = Some(r),
            Some(a) => a.add_scaled(&r, 1.0)?,
        }
    }
    let mut out = acc.ok_or_else(|| Error::invalid("n_configs", "no configuration ran"))?;
    out.scale(1.0 / n_configs as f64);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::probe::ProbeConfig;
    use crate::scan::DetectorOutput;
    use ndarray::Array3;
    use stem_core::NoProgress;

    #[test]
    fn mean_of_configurations_equals_mean_of_runs() {
        let grid = Grid::new([32, 32], [8.0, 8.0]).unwrap();
        let probe = Probe::new(ProbeConfig::default(), grid).unwrap();
        let s = GridScan::new([0.0, 0.0], [8.0, 8.0], [2, 2]).unwrap();
        let det = [Detector::annular((0.0, 20.0))];
        let make = |c: usize| {
            let mut v = Array3::<f64>::zeros((1, 32, 32));
            v[[0, 4 + 8 * c, 4]] = 500.0;
            SlicedPotential::new(v, vec![1.0], [8.0, 8.0])
        };
        let cfg = MultisliceConfig::default();
        let fp = frozen_phonon_scan::<f64, f64>(
            2,
            make,
            &cfg,
            &probe,
            &s,
            &det,
            Parallelism::Auto,
            &NoProgress,
        )
        .unwrap();
        let mut want = Array3::<f64>::zeros((1, 2, 2));
        for c in 0..2 {
            let ms = Multislice::<f64>::new(&make(c).unwrap(), &cfg).unwrap();
            let r = scan(&ms, &probe, &s, &det, Parallelism::Auto, &NoProgress).unwrap();
            let DetectorOutput::Annular(a) = &r.outputs[0] else {
                panic!()
            };
            want = want + a * 0.5;
        }
        let DetectorOutput::Annular(got) = &fp.outputs[0] else {
            panic!()
        };
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-12);
        }
        assert!(
            frozen_phonon_scan::<f64, f64>(
                0,
                make,
                &cfg,
                &probe,
                &s,
                &det,
                Parallelism::Auto,
                &NoProgress
            )
            .is_err()
        );
    }
}
