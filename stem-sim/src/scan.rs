//! Scanning the probe: grid scans run in parallel over positions with bounded memory.
//!
//! Positions are processed in fixed-size chunks (the size depends only on the detectors and the
//! grid, never on the thread count). Within a chunk, positions run in parallel on rayon (each
//! thread owns its wave buffers and FFT scratch; the transmission functions and propagators are
//! shared). Chunk results are then reduced in position order, so every output (including the
//! PACBED sum) is bit-identical for any number of threads, and the working memory does not grow
//! with the number of positions (only the 4D output itself does).

use ndarray::{Array3, Array4, Array5};
use num_complex::Complex;
use rayon::prelude::*;
use stem_core::{Parallelism, Progress, Real};

use crate::detector::{Detector, Prepared};
use crate::error::{Error, Result};
use crate::multislice::{Multislice, cast};
use crate::probe::Probe;

/// A rectangular grid of probe positions (`[y, x]` in Å), abTEM's `GridScan` convention:
/// `gpts` positions per axis at `start + i·(end − start)/gpts` (`endpoint = false`) or
/// `start + i·(end − start)/(gpts − 1)` (`endpoint = true`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridScan {
    /// First position `[y, x]` in Å.
    pub start_yx_a: [f64; 2],
    /// End `[y, x]` in Å (excluded unless `endpoint`).
    pub end_yx_a: [f64; 2],
    /// Number of positions `[n_y, n_x]`.
    pub gpts: [usize; 2],
    /// Whether `end` is the last position.
    pub endpoint: bool,
}

impl GridScan {
    /// A scan of `gpts` positions from `start` to `end` (excluded).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for zero positions or non-finite coordinates.
    pub fn new(start_yx_a: [f64; 2], end_yx_a: [f64; 2], gpts: [usize; 2]) -> Result<Self> {
        let s = Self {
            start_yx_a,
            end_yx_a,
            gpts,
            endpoint: false,
        };
        s.validate()?;
        Ok(s)
    }

    /// A scan from `start` to `end` (excluded) with at most `step_a` Å between positions:
    /// `gpts = ceil(|end − start| / step_a)` per axis (at least 1).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a step that is not finite and > 0, or bad coordinates.
    ///
    /// ```
    /// use stem_sim::{probe::nyquist_scan_step_a, scan::GridScan};
    /// let step = nyquist_scan_step_a(200e3, 20.0).unwrap();
    /// let s = GridScan::with_step([0.0, 0.0], [7.81, 7.81], step).unwrap();
    /// assert_eq!(s.gpts, [25, 25]);
    /// assert!((s.step_a()[1] - 0.3124).abs() < 1e-4);
    /// ```
    pub fn with_step(start_yx_a: [f64; 2], end_yx_a: [f64; 2], step_a: f64) -> Result<Self> {
        if !(step_a.is_finite() && step_a > 0.0) {
            return Err(Error::invalid(
                "step_a",
                format!("must be finite and > 0 Å, got {step_a}"),
            ));
        }
        let n = |i: usize| (((end_yx_a[i] - start_yx_a[i]).abs() / step_a).ceil() as usize).max(1);
        Self::new(start_yx_a, end_yx_a, [n(0), n(1)])
    }

    fn validate(&self) -> Result<()> {
        if self.gpts.contains(&0) {
            return Err(Error::invalid(
                "gpts",
                format!("scan needs >= 1 position per axis, got {:?}", self.gpts),
            ));
        }
        if self
            .start_yx_a
            .iter()
            .chain(&self.end_yx_a)
            .any(|v| !v.is_finite())
        {
            return Err(Error::invalid(
                "scan",
                format!(
                    "non-finite start {:?} or end {:?}",
                    self.start_yx_a, self.end_yx_a
                ),
            ));
        }
        Ok(())
    }

    /// Distance between neighbouring positions `[y, x]` in Å.
    pub fn step_a(&self) -> [f64; 2] {
        let f = |i: usize| {
            let d = if self.endpoint {
                self.gpts[i].saturating_sub(1).max(1)
            } else {
                self.gpts[i]
            };
            (self.end_yx_a[i] - self.start_yx_a[i]) / d as f64
        };
        [f(0), f(1)]
    }

    /// All positions `[y, x]` in Å, row-major (x fastest).
    pub fn positions(&self) -> Vec<[f64; 2]> {
        let st = self.step_a();
        let mut v = Vec::with_capacity(self.gpts[0] * self.gpts[1]);
        for i in 0..self.gpts[0] {
            for j in 0..self.gpts[1] {
                v.push([
                    self.start_yx_a[0] + i as f64 * st[0],
                    self.start_yx_a[1] + j as f64 * st[1],
                ]);
            }
        }
        v
    }
}

/// The output of one detector.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorOutput {
    /// Annular signal `[plane, scan_y, scan_x]`, fraction of the incident intensity.
    Annular(Array3<f64>),
    /// Diffraction patterns `[plane, scan_y, scan_x, k_y, k_x]`, zero frequency at `[h/2, w/2]`.
    Pixelated(Array5<f32>),
    /// Position-averaged CBED `[plane, k_y, k_x]`, zero frequency at `[h/2, w/2]`.
    Pacbed(Array3<f64>),
    /// Centre of mass `[plane, scan_y, scan_x, 2]` in mrad, last axis (y, x).
    CenterOfMass(Array4<f64>),
}

/// The result of a scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanResult {
    /// Number of positions `[n_y, n_x]`.
    pub scan_gpts: [usize; 2],
    /// Scan step `[y, x]` in Å.
    pub scan_step_a: [f64; 2],
    /// Thickness of each recorded plane in Å.
    pub thicknesses_a: Vec<f64>,
    /// Reciprocal-space pixel size `[y, x]` in mrad (for pixelated and PACBED outputs).
    pub angular_sampling_mrad: [f64; 2],
    /// One output per detector, in the order given.
    pub outputs: Vec<DetectorOutput>,
}

impl ScanResult {
    /// Adds `other · weight` to `self · 1` element-wise (for incoherent averages).
    ///
    /// # Errors
    /// [`stem_core::Error::ShapeMismatch`] if the results have different layouts.
    pub fn add_scaled(&mut self, other: &ScanResult, weight: f64) -> Result<()> {
        if self.outputs.len() != other.outputs.len() || self.scan_gpts != other.scan_gpts {
            return Err(stem_core::Error::ShapeMismatch {
                expected: vec![self.outputs.len(), self.scan_gpts[0], self.scan_gpts[1]],
                found: vec![other.outputs.len(), other.scan_gpts[0], other.scan_gpts[1]],
            }
            .into());
        }
        for (a, b) in self.outputs.iter_mut().zip(&other.outputs) {
            let ok = match (a, b) {
                (DetectorOutput::Annular(a), DetectorOutput::Annular(b))
                | (DetectorOutput::Pacbed(a), DetectorOutput::Pacbed(b))
                    if a.dim() == b.dim() =>
                {
                    a.zip_mut_with(b, |x, y| *x += weight * y);
                    true
                }
                (DetectorOutput::CenterOfMass(a), DetectorOutput::CenterOfMass(b))
                    if a.dim() == b.dim() =>
                {
                    a.zip_mut_with(b, |x, y| *x += weight * y);
                    true
                }
                (DetectorOutput::Pixelated(a), DetectorOutput::Pixelated(b))
                    if a.dim() == b.dim() =>
                {
                    a.zip_mut_with(b, |x, y| *x += (weight * f64::from(*y)) as f32);
                    true
                }
                _ => false,
            };
            if !ok {
                return Err(Error::invalid(
                    "scan result",
                    "detector outputs differ in kind or shape",
                ));
            }
        }
        Ok(())
    }

    /// Multiplies every output by `factor`.
    pub fn scale(&mut self, factor: f64) {
        for o in &mut self.outputs {
            match o {
                DetectorOutput::Annular(a) | DetectorOutput::Pacbed(a) => {
                    a.mapv_inplace(|v| v * factor)
                }
                DetectorOutput::CenterOfMass(a) => a.mapv_inplace(|v| v * factor),
                DetectorOutput::Pixelated(a) => a.mapv_inplace(|v| (f64::from(v) * factor) as f32),
            }
        }
    }
}

/// Per-thread state: wave buffers, an intensity buffer and phase-ramp scratch.
struct Worker<T: Real> {
    b: crate::engine::Buffers<T>,
    intensity: Vec<f64>,
    ey: Vec<Complex<T>>,
    ex: Vec<Complex<T>>,
}

/// Target working memory for one chunk's per-position outputs, in bytes.
const CHUNK_BYTES: usize = 64 << 20;
/// Most positions per chunk.
const CHUNK_MAX: usize = 64;

/// Scans `probe` over `scan` through the prepared potential `ms`, recording every detector at
/// every exit plane of `ms`.
///
/// Progress: one stage "multislice scan" with one unit per position; cancellation is checked
/// before every position.
///
/// # Errors
/// [`Error::InvalidParameter`] for an empty detector list or a probe on another grid/energy;
/// [`Error::BeyondCutoff`] for a detector beyond the antialias cutoff;
/// [`stem_core::Error::Cancelled`] (as [`Error::Core`]) when cancelled.
///
/// ```
/// use ndarray::Array3;
/// use stem_core::{NoProgress, Parallelism};
/// use stem_sim::{detector::Detector, grid::Grid, multislice::*, potential::SlicedPotential};
/// use stem_sim::{probe::{Probe, ProbeConfig}, scan::{scan, DetectorOutput, GridScan}};
/// let pot = SlicedPotential::new(Array3::<f64>::zeros((1, 64, 64)), vec![2.0], [10.0, 10.0]).unwrap();
/// let ms = Multislice::<f32>::new(&pot, &MultisliceConfig::default()).unwrap();
/// let probe = Probe::new(ProbeConfig::default(), Grid::of_potential(&pot)).unwrap();
/// let grid_scan = GridScan::new([0.0, 0.0], [10.0, 10.0], [2, 2]).unwrap();
/// let r = scan(&ms, &probe, &grid_scan, &[Detector::annular((0.0, 40.0))],
///              Parallelism::Auto, &NoProgress).unwrap();
/// let DetectorOutput::Annular(bf) = &r.outputs[0] else { panic!() };
/// // In vacuum the whole 20 mrad probe lands inside 40 mrad.
/// assert!(bf.iter().all(|v| (v - 1.0).abs() < 1e-5));
/// ```
pub fn scan<T: Real>(
    ms: &Multislice<T>,
    probe: &Probe,
    scan: &GridScan,
    detectors: &[Detector],
    parallelism: Parallelism,
    progress: &dyn Progress,
) -> Result<ScanResult> {
    scan.validate()?;
    if detectors.is_empty() {
        return Err(Error::invalid("detectors", "need at least one detector"));
    }
    if probe.grid() != ms.grid() || probe.config().energy_ev != ms.energy_ev() {
        return Err(Error::invalid(
            "probe",
            "probe grid or energy differs from the multislice potential's",
        ));
    }
    let grid = *ms.grid();
    let [ny, nx] = grid.gpts();
    let n = grid.len();
    let lambda = ms.wavelength_a();
    let max_angle = ms.max_angle_mrad();
    let prepared: Vec<Prepared> = detectors
        .iter()
        .map(|d| Prepared::new(d, &grid, lambda, max_angle))
        .collect::<Result<_>>()?;
    let planes = ms.exit_slices().len();
    // Offsets of each detector's values in a position's output vector.
    let mut offsets = Vec::with_capacity(prepared.len() + 1);
    let mut per_pos = 0;
    for p in &prepared {
        offsets.push(per_pos);
        per_pos += planes * p.len_per_plane();
    }
    let chunk = (CHUNK_BYTES / (per_pos * 8).max(1)).clamp(1, CHUNK_MAX);

    // CTF in the engine's [k_x][k_y] order with the inverse FFT's 1/N folded in.
    let ctf = probe.ctf();
    let norm = 1.0 / (probe.ctf_power().sqrt() * n as f64);
    let mut ctf_t = Vec::with_capacity(n);
    for i in 0..nx {
        for j in 0..ny {
            ctf_t.push(cast::<T>(ctf[[j, i]] * norm));
        }
    }
    let (ky, kx) = (grid.ky(), grid.kx());
    let nn = n as f64;

    let positions = scan.positions();
    let [sy, sx] = scan.gpts;
    let mut outputs: Vec<DetectorOutput> = prepared
        .iter()
        .map(|p| match p {
            Prepared::Annular { .. } => DetectorOutput::Annular(Array3::zeros((planes, sy, sx))),
            Prepared::Com { .. } => {
                DetectorOutput::CenterOfMass(Array4::zeros((planes, sy, sx, 2)))
            }
            Prepared::Pattern { shape, mean, .. } => {
                if *mean {
                    DetectorOutput::Pacbed(Array3::zeros((planes, shape[0], shape[1])))
                } else {
                    DetectorOutput::Pixelated(Array5::zeros((planes, sy, sx, shape[0], shape[1])))
                }
            }
        })
        .collect();

    progress.start("multislice scan", positions.len() as u64);
    let engine = &ms.engine;
    let run_position = |w: &mut Worker<T>, pos: &[f64; 2]| -> Result<Vec<f64>> {
        stem_core::progress::check_cancel(progress)?;
        let tau = 2.0 * std::f64::consts::PI;
        for (e, k) in w.ey.iter_mut().zip(&ky) {
            *e = cast(Complex::from_polar(1.0, -tau * k * pos[0]));
        }
        for (e, k) in w.ex.iter_mut().zip(&kx) {
            *e = cast(Complex::from_polar(1.0, -tau * k * pos[1]));
        }
        for i in 0..nx {
            let row = &mut w.b.kspace[i * ny..(i + 1) * ny];
            let c = &ctf_t[i * ny..(i + 1) * ny];
            let ex = w.ex[i];
            for ((v, c), ey) in row.iter_mut().zip(c).zip(&w.ey) {
                *v = *c * ex * *ey;
            }
        }
        engine.inverse(&mut w.b);
        let mut out = vec![0.0; per_pos];
        let intensity = &mut w.intensity;
        ms.run(&mut w.b, |plane, k| {
            for (d, v) in intensity.iter_mut().zip(k) {
                let re = v.re.to_f64_lossless();
                let im = v.im.to_f64_lossless();
                *d = (re * re + im * im) * nn * nn;
            }
            for (p, off) in prepared.iter().zip(&offsets) {
                let l = p.len_per_plane();
                p.measure(intensity, &mut out[off + plane * l..off + (plane + 1) * l]);
            }
            Ok(())
        })?;
        Ok(out)
    };

    parallelism.install(|| -> Result<()> {
        for (c, block) in positions.chunks(chunk).enumerate() {
            stem_core::progress::check_cancel(progress)?;
            let results: Vec<Vec<f64>> = block
                .par_iter()
                .map_init(
                    || Worker {
                        b: engine.buffers(),
                        intensity: vec![0.0; n],
                        ey: vec![Complex::new(T::zero(), T::zero()); ny],
                        ex: vec![Complex::new(T::zero(), T::zero()); nx],
                    },
                    |w, pos| {
                        let r = run_position(w, pos);
                        progress.advance(1);
                        r
                    },
                )
                .collect::<Result<_>>()?;
            for (q, vals) in results.iter().enumerate() {
                let idx = c * chunk + q;
                let (iy, ix) = (idx / sx, idx % sx);
                for ((o, p), off) in outputs.iter_mut().zip(&prepared).zip(&offsets) {
                    let l = p.len_per_plane();
                    for plane in 0..planes {
                        let v = &vals[off + plane * l..off + (plane + 1) * l];
                        match o {
                            DetectorOutput::Annular(a) => a[[plane, iy, ix]] = v[0],
                            DetectorOutput::CenterOfMass(a) => {
                                a[[plane, iy, ix, 0]] = v[0];
                                a[[plane, iy, ix, 1]] = v[1];
                            }
                            DetectorOutput::Pacbed(a) => {
                                for (d, s) in
                                    a.index_axis_mut(ndarray::Axis(0), plane).iter_mut().zip(v)
                                {
                                    *d += s;
                                }
                            }
                            DetectorOutput::Pixelated(a) => {
                                let mut dst = a.slice_mut(ndarray::s![plane, iy, ix, .., ..]);
                                for (d, s) in dst.iter_mut().zip(v) {
                                    *d = *s as f32;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })??;
    let count = positions.len() as f64;
    for o in &mut outputs {
        if let DetectorOutput::Pacbed(a) = o {
            a.mapv_inplace(|v| v / count);
        }
    }
    let rs = grid.reciprocal_sampling();
    Ok(ScanResult {
        scan_gpts: scan.gpts,
        scan_step_a: scan.step_a(),
        thicknesses_a: ms.thicknesses_a().to_vec(),
        angular_sampling_mrad: [1e3 * lambda * rs[0], 1e3 * lambda * rs[1]],
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_scan_rules() {
        assert!(GridScan::new([0.0, 0.0], [1.0, 1.0], [0, 2]).is_err());
        assert!(GridScan::new([0.0, f64::NAN], [1.0, 1.0], [2, 2]).is_err());
        assert!(GridScan::with_step([0.0, 0.0], [1.0, 1.0], 0.0).is_err());
        let s = GridScan::new([0.0, 0.0], [4.0, 2.0], [4, 2]).unwrap();
        let p = s.positions();
        assert_eq!(p.len(), 8);
        assert_eq!(p[1], [0.0, 1.0]);
        assert_eq!(p[2], [1.0, 0.0]);
    }
}
