//! The band-limited multislice (abTEM's `FourierMultislice`, order 1).
//!
//! Per stored slice n, once per potential: the transmission function
//! t_n = IFFT[ FFT(exp(iσV_z,n)) · A(k) ] (band-limited by the [`Antialias`] aperture A).
//! Per unique slice thickness Δz, once: the Fresnel propagator P(k) = exp(−iπλΔz|k|²)·A(k).
//! Per probe and slice: **ψ_{n+1} = IFFT[ P · FFT(ψ_n · t_n) ]** (transmit, then propagate).
//! The stored slices are applied `repeats` times; [`ExitPlanes`] chooses after how many slices
//! the wave is recorded, so one pass yields a whole thickness series.
//!
//! # Beam tilt
//!
//! [`MultisliceConfig::tilt_yx_mrad`] tilts the incident beam by θ = (θ_y, θ_x) relative to the
//! specimen's z axis (equivalently, the specimen by −θ). It is applied through the **tilted
//! Fresnel propagator** (Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed., §6.5):
//!
//! P(k) = exp(−iπλΔz|k|² − 2πiΔz(k_x tan θ_x + k_y tan θ_y))·A(k)
//!
//! for the wave in the frame that moves with the beam. Writing the tilted wave as
//! exp(2πi q·r)·φ(r) with q = θ/λ and expanding |k + q|² in the untilted propagator gives
//! exactly this factor for φ (up to a constant phase), with the sign chosen for the numpy FFT
//! convention so that the beam drifts by +Δz·tan θ per slice (the sign of the term in Kirkland's
//! form depends on the FFT convention and on whether the beam or the specimen is tilted; the
//! test `tilted_beam_drifts_along_the_tilt` pins this one). Why the propagator and not a tilted incident wave
//! exp(2πi q·r): on a periodic grid q must be a multiple of 1/extent (e.g. 1.6 mrad steps for
//! a 15.6 Å cell at 200 kV) and the pattern would move off the optic axis; the tilted
//! propagator takes any tilt and keeps the diffraction pattern centred on the incident beam,
//! which is how tilted PACBED patterns are recorded and compared. A zero tilt skips the extra
//! term, so untilted results are bit for bit those without the option.
//!
//! Generic over the wave precision `T` (`f32` default as abTEM, `f64` for reference work); the
//! transmission phases and propagator are computed in `f64` and rounded once.

use ndarray::{Array2, Array3};
use num_complex::Complex;
use rayon::prelude::*;
use stem_core::{Parallelism, Real};

use crate::antialias::Antialias;
use crate::energy::{interaction_parameter, wavelength_a};
use crate::engine::{Buffers, Engine};
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::potential::SlicedPotential;
use crate::probe::Probe;

/// After how many slices the wave is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExitPlanes {
    /// Only after the last slice (default).
    #[default]
    Last,
    /// The entrance plane (0 slices) and after every `m` slices (`m, 2m, ...` up to the total).
    Every(usize),
    /// After these numbers of slices (0 = entrance plane); sorted and deduplicated.
    AfterSlices(Vec<usize>),
}

impl ExitPlanes {
    /// The sorted numbers of slices after which the wave is recorded, for `total` slices.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `Every(0)`, an empty list, or a count above `total`.
    pub fn resolve(&self, total: usize) -> Result<Vec<usize>> {
        match self {
            ExitPlanes::Last => Ok(vec![total]),
            ExitPlanes::Every(0) => {
                Err(Error::invalid("exit_planes", "Every(0): step must be >= 1"))
            }
            ExitPlanes::Every(m) => Ok((0..=total).step_by(*m).collect()),
            ExitPlanes::AfterSlices(v) => {
                if v.is_empty() {
                    return Err(Error::invalid("exit_planes", "empty list of exit planes"));
                }
                if let Some(bad) = v.iter().find(|&&n| n > total) {
                    return Err(Error::invalid(
                        "exit_planes",
                        format!(
                            "exit plane after {bad} slices, but the potential has only {total}"
                        ),
                    ));
                }
                let mut v = v.clone();
                v.sort_unstable();
                v.dedup();
                Ok(v)
            }
        }
    }
}

/// Multislice settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MultisliceConfig {
    /// Acceleration voltage in eV (default 200 kV).
    pub energy_ev: f64,
    /// Antialias aperture (default abTEM's 2/3 with 0.01 taper).
    pub antialias: Antialias,
    /// Which planes to record (default the exit surface).
    pub exit_planes: ExitPlanes,
    /// Threads for precomputing the transmission functions (default all).
    pub parallelism: Parallelism,
    /// Beam tilt `[θ_y, θ_x]` in mrad relative to the specimen z axis (default `[0, 0]`;
    /// each |θ| ≤ [`MAX_TILT_MRAD`]); see the module docs.
    pub tilt_yx_mrad: [f64; 2],
}

/// Largest beam tilt component in mrad (the paraxial propagator is meant for small tilts).
pub const MAX_TILT_MRAD: f64 = 200.0;

impl Default for MultisliceConfig {
    fn default() -> Self {
        Self {
            energy_ev: 200e3,
            antialias: Antialias::default(),
            exit_planes: ExitPlanes::Last,
            parallelism: Parallelism::Auto,
            tilt_yx_mrad: [0.0, 0.0],
        }
    }
}

/// A potential prepared for multislice: band-limited transmission functions and propagators.
pub struct Multislice<T: Real> {
    grid: Grid,
    energy_ev: f64,
    wavelength_a: f64,
    antialias: Antialias,
    pub(crate) engine: Engine<T>,
    transmissions: Vec<Vec<Complex<T>>>,
    propagators: Vec<Vec<Complex<T>>>,
    prop_index: Vec<usize>,
    n_slices: usize,
    repeats: usize,
    exit_after: Vec<usize>,
    thicknesses_a: Vec<f64>,
}

impl<T: Real> std::fmt::Debug for Multislice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multislice")
            .field("grid", &self.grid)
            .field("energy_ev", &self.energy_ev)
            .field("n_slices", &self.n_slices)
            .field("repeats", &self.repeats)
            .field("exit_after", &self.exit_after)
            .finish()
    }
}

impl<T: Real> Multislice<T> {
    /// Prepares `potential` (any precision) for multislice with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a bad energy, antialias, tilt or exit-plane setting.
    ///
    /// ```
    /// use ndarray::Array3;
    /// use stem_sim::{multislice::{Multislice, MultisliceConfig}, potential::SlicedPotential};
    /// use stem_sim::{grid::Grid, probe::{Probe, ProbeConfig}};
    /// // Vacuum: 10 slices of 2 Å of zero potential conserve the probe's intensity.
    /// let pot = SlicedPotential::new(Array3::<f64>::zeros((1, 64, 64)), vec![2.0], [10.0, 10.0])
    ///     .unwrap().with_repeats(10).unwrap();
    /// let ms = Multislice::<f32>::new(&pot, &MultisliceConfig::default()).unwrap();
    /// let probe = Probe::new(ProbeConfig::default(), Grid::of_potential(&pot)).unwrap();
    /// let cbed = ms.diffraction_patterns(&probe, [5.0, 5.0]).unwrap();
    /// assert!((cbed.sum() - 1.0).abs() < 1e-5);
    /// ```
    pub fn new<P: Real>(potential: &SlicedPotential<P>, config: &MultisliceConfig) -> Result<Self> {
        config.antialias.validate()?;
        let [tilt_y, tilt_x] = config.tilt_yx_mrad;
        if !config
            .tilt_yx_mrad
            .iter()
            .all(|t| t.is_finite() && t.abs() <= MAX_TILT_MRAD)
        {
            return Err(Error::invalid(
                "tilt_yx_mrad",
                format!(
                    "each tilt component must be finite and within ±{MAX_TILT_MRAD} mrad, got {:?}",
                    config.tilt_yx_mrad
                ),
            ));
        }
        let tilted = tilt_y != 0.0 || tilt_x != 0.0;
        let (tan_y, tan_x) = ((tilt_y * 1e-3).tan(), (tilt_x * 1e-3).tan());
        let wavelength = wavelength_a(config.energy_ev)?;
        let sigma = interaction_parameter(config.energy_ev)?;
        let grid = Grid::of_potential(potential);
        let engine = Engine::<T>::new(grid.gpts())?;
        let [ny, nx] = grid.gpts();
        let n = (ny * nx) as f64;
        let aperture = transposed_aperture(&grid, &config.antialias);

        let total = potential.n_slices_total();
        let exit_after = config.exit_planes.resolve(total)?;

        // Propagators, one per distinct thickness.
        let (ky, kx) = (grid.ky(), grid.kx());
        let mut dzs: Vec<f64> = Vec::new();
        let mut prop_index = Vec::with_capacity(potential.n_slices());
        for &dz in potential.slice_thickness_a() {
            let idx = match dzs.iter().position(|&d| d == dz) {
                Some(i) => i,
                None => {
                    dzs.push(dz);
                    dzs.len() - 1
                }
            };
            prop_index.push(idx);
        }
        let propagators: Vec<Vec<Complex<T>>> = dzs
            .iter()
            .map(|&dz| {
                let mut p = Vec::with_capacity(ny * nx);
                for x in &kx {
                    for y in &ky {
                        let k2 = x * x + y * y;
                        let a = aperture[p.len()] / n;
                        let mut phase = -std::f64::consts::PI * wavelength * dz * k2;
                        if tilted {
                            phase -= 2.0 * std::f64::consts::PI * dz * (x * tan_x + y * tan_y);
                        }
                        let c = Complex::from_polar(a, phase);
                        p.push(cast(c));
                    }
                }
                p
            })
            .collect();

        // Band-limited transmission functions, one per stored slice, in parallel.
        let data = potential.data();
        let engine_ref = &engine;
        let aperture_ref = &aperture;
        let transmissions = config.parallelism.install(|| {
            (0..potential.n_slices())
                .into_par_iter()
                .map_init(
                    || engine_ref.buffers(),
                    |b, s| {
                        let v = data.index_axis(ndarray::Axis(0), s);
                        for (dst, &val) in b.real.iter_mut().zip(v.iter()) {
                            *dst = cast(Complex::from_polar(1.0, sigma * val.to_f64_lossless()));
                        }
                        engine_ref.forward(b);
                        for (k, a) in b.kspace.iter_mut().zip(aperture_ref) {
                            *k = *k * T::from_f64_lossy(a / n);
                        }
                        engine_ref.inverse(b);
                        b.real.clone()
                    },
                )
                .collect::<Vec<_>>()
        })?;

        let mut thicknesses_a = Vec::with_capacity(exit_after.len());
        let per_slice = potential.slice_thickness_a();
        for &m in &exit_after {
            let t: f64 = (0..m).map(|i| per_slice[i % per_slice.len()]).sum();
            thicknesses_a.push(t);
        }

        Ok(Self {
            grid,
            energy_ev: config.energy_ev,
            wavelength_a: wavelength,
            antialias: config.antialias,
            engine,
            transmissions,
            propagators,
            prop_index,
            n_slices: potential.n_slices(),
            repeats: potential.repeats(),
            exit_after,
            thicknesses_a,
        })
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Acceleration voltage in eV.
    pub fn energy_ev(&self) -> f64 {
        self.energy_ev
    }

    /// Wavelength in Å.
    pub fn wavelength_a(&self) -> f64 {
        self.wavelength_a
    }

    /// The antialias aperture.
    pub fn antialias(&self) -> &Antialias {
        &self.antialias
    }

    /// Largest simulated angle λ·k_c in mrad (detectors must stay inside it).
    pub fn max_angle_mrad(&self) -> f64 {
        self.antialias.max_angle_mrad(&self.grid, self.wavelength_a)
    }

    /// Numbers of slices after which the wave is recorded.
    pub fn exit_slices(&self) -> &[usize] {
        &self.exit_after
    }

    /// Thickness in Å of each recorded plane.
    pub fn thicknesses_a(&self) -> &[f64] {
        &self.thicknesses_a
    }

    /// Total number of slices (stored slices × repeats).
    pub fn n_slices_total(&self) -> usize {
        self.n_slices * self.repeats
    }

    /// The band-limited transmission function of stored slice `s` (`[y, x]`).
    ///
    /// # Errors
    /// [`stem_core::Error::OutOfRange`] for a slice index beyond the stored slices.
    pub fn transmission(&self, s: usize) -> Result<Array2<Complex<T>>> {
        let t = self
            .transmissions
            .get(s)
            .ok_or(stem_core::Error::OutOfRange {
                what: "slice",
                index: s,
                len: self.n_slices,
            })?;
        let [ny, nx] = self.grid.gpts();
        Ok(Array2::from_shape_vec((ny, nx), t.clone()).map_err(|_| {
            stem_core::Error::ShapeMismatch {
                expected: vec![ny, nx],
                found: vec![t.len()],
            }
        })?)
    }

    /// Runs the multislice on `b.real` (the incident wave, `[y][x]`). At every exit plane,
    /// `on_exit(plane_index, kspace)` sees FFT(ψ)/N in `[k_x][k_y]` order (so |N·kspace|² is
    /// the diffraction pattern). Stops after the last exit plane.
    pub(crate) fn run(
        &self,
        b: &mut Buffers<T>,
        mut on_exit: impl FnMut(usize, &[Complex<T>]) -> Result<()>,
    ) -> Result<()> {
        let mut next = 0;
        if self.exit_after.first() == Some(&0) {
            let saved = b.real.clone();
            self.engine.forward(b);
            let inv_n = T::from_f64_lossy(1.0 / self.engine.len() as f64);
            b.kspace.iter_mut().for_each(|v| *v = *v * inv_n);
            on_exit(0, &b.kspace)?;
            b.real.copy_from_slice(&saved);
            next = 1;
        }
        let total = self.n_slices_total();
        for step in 0..total {
            if next >= self.exit_after.len() {
                break;
            }
            let s = step % self.n_slices;
            for (v, t) in b.real.iter_mut().zip(&self.transmissions[s]) {
                *v = *v * *t;
            }
            self.engine.forward(b);
            for (v, p) in b
                .kspace
                .iter_mut()
                .zip(&self.propagators[self.prop_index[s]])
            {
                *v = *v * *p;
            }
            if self.exit_after[next] == step + 1 {
                on_exit(next, &b.kspace)?;
                next += 1;
                if next >= self.exit_after.len() {
                    break;
                }
            }
            self.engine.inverse(b);
        }
        Ok(())
    }

    fn check_probe(&self, probe: &Probe) -> Result<()> {
        if probe.grid() != &self.grid {
            return Err(Error::invalid(
                "probe",
                format!(
                    "probe grid {:?} at {:?} Å differs from the potential's {:?} at {:?} Å",
                    probe.grid().gpts(),
                    probe.grid().sampling_a(),
                    self.grid.gpts(),
                    self.grid.sampling_a()
                ),
            ));
        }
        if probe.config().energy_ev != self.energy_ev {
            return Err(Error::invalid(
                "probe",
                format!(
                    "probe energy {} eV differs from the multislice energy {} eV",
                    probe.config().energy_ev,
                    self.energy_ev
                ),
            ));
        }
        Ok(())
    }

    /// Exit waves (`[y, x]`, real space, numpy FFT convention) at every exit plane for a
    /// probe at `position_yx_a` (Å).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the probe's grid or energy differs from the potential's.
    pub fn exit_waves(
        &self,
        probe: &Probe,
        position_yx_a: [f64; 2],
    ) -> Result<Vec<Array2<Complex<T>>>> {
        self.check_probe(probe)?;
        let psi0 = probe.real_space::<T>(position_yx_a);
        self.exit_waves_of(&psi0)
    }

    /// Exit waves for an arbitrary incident wave `psi0` (`[y, x]`, e.g. a plane wave).
    ///
    /// # Errors
    /// [`stem_core::Error::ShapeMismatch`] if `psi0` is not on the grid.
    pub fn exit_waves_of(&self, psi0: &Array2<Complex<T>>) -> Result<Vec<Array2<Complex<T>>>> {
        let [ny, nx] = self.grid.gpts();
        if psi0.dim() != (ny, nx) {
            return Err(stem_core::Error::ShapeMismatch {
                expected: vec![ny, nx],
                found: psi0.shape().to_vec(),
            }
            .into());
        }
        let mut b = self.engine.buffers();
        for (d, s) in b.real.iter_mut().zip(psi0.iter()) {
            *d = *s;
        }
        let mut out = Vec::with_capacity(self.exit_after.len());
        let mut tmp = self.engine.buffers();
        self.run(&mut b, |_, k| {
            // k = FFT(ψ)/N, so the unnormalised inverse gives ψ.
            tmp.kspace.copy_from_slice(k);
            self.engine.inverse(&mut tmp);
            let v = tmp.real.clone();
            out.push(Array2::from_shape_vec((ny, nx), v).map_err(|_| {
                stem_core::Error::ShapeMismatch {
                    expected: vec![ny, nx],
                    found: vec![ny * nx],
                }
            })?);
            Ok(())
        })?;
        // (the last plane's inverse is also available in b.real, but one path keeps it simple)
        Ok(out)
    }

    /// Diffraction patterns |FFT ψ|² at every exit plane (`[plane, k_y, k_x]`, fftshifted: zero
    /// frequency at `[ny/2, nx/2]`, full grid), as fractions of the incident intensity, for a
    /// probe at `position_yx_a` (Å).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the probe's grid or energy differs from the potential's.
    pub fn diffraction_patterns(
        &self,
        probe: &Probe,
        position_yx_a: [f64; 2],
    ) -> Result<Array3<T>> {
        self.check_probe(probe)?;
        let psi0 = probe.real_space::<T>(position_yx_a);
        let [ny, nx] = self.grid.gpts();
        let mut b = self.engine.buffers();
        for (d, s) in b.real.iter_mut().zip(psi0.iter()) {
            *d = *s;
        }
        let mut out = Array3::<T>::zeros((self.exit_after.len(), ny, nx));
        let n = T::from_f64_lossy(self.engine.len() as f64);
        self.run(&mut b, |plane, k| {
            let mut o = out.index_axis_mut(ndarray::Axis(0), plane);
            for ix in 0..nx {
                let sx = (ix + nx / 2) % nx;
                for iy in 0..ny {
                    let sy = (iy + ny / 2) % ny;
                    o[[sy, sx]] = (k[ix * ny + iy] * n).norm_sqr();
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[inline]
pub(crate) fn cast<T: Real>(c: Complex<f64>) -> Complex<T> {
    Complex::new(T::from_f64_lossy(c.re), T::from_f64_lossy(c.im))
}

/// The antialias aperture in transposed `[k_x][k_y]` order.
pub(crate) fn transposed_aperture(grid: &Grid, antialias: &Antialias) -> Vec<f64> {
    let (ky, kx) = (grid.ky(), grid.kx());
    let (kc, tau) = (antialias.cutoff_k(grid), antialias.taper_k(grid));
    let mut v = Vec::with_capacity(ky.len() * kx.len());
    for x in &kx {
        for y in &ky {
            v.push(antialias.value((x * x + y * y).sqrt(), kc, tau));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_planes_rules() {
        assert_eq!(ExitPlanes::Last.resolve(5).unwrap(), vec![5]);
        assert_eq!(ExitPlanes::Every(2).resolve(5).unwrap(), vec![0, 2, 4]);
        assert!(ExitPlanes::Every(0).resolve(5).is_err());
        assert!(ExitPlanes::AfterSlices(vec![]).resolve(5).is_err());
        assert!(ExitPlanes::AfterSlices(vec![6]).resolve(5).is_err());
        assert_eq!(
            ExitPlanes::AfterSlices(vec![3, 1, 3]).resolve(5).unwrap(),
            vec![1, 3]
        );
    }

    fn vacuum(n_slices: usize) -> SlicedPotential<f64> {
        SlicedPotential::new(Array3::<f64>::zeros((1, 64, 64)), vec![2.0], [16.0, 16.0])
            .unwrap()
            .with_repeats(n_slices)
            .unwrap()
    }

    /// Position from the phase of the first Fourier harmonic of |ψ|² (exact for a translated
    /// symmetric intensity on a periodic grid, unlike a plain centroid).
    fn centre_yx(w: &Array2<Complex<f64>>, extent: f64) -> [f64; 2] {
        let n = w.nrows() as f64;
        let tau = 2.0 * std::f64::consts::PI;
        let (mut y, mut x) = (Complex::new(0.0, 0.0), Complex::new(0.0, 0.0));
        for ((i, j), v) in w.indexed_iter() {
            let p = v.norm_sqr();
            y += Complex::from_polar(p, tau * i as f64 / n);
            x += Complex::from_polar(p, tau * j as f64 / n);
        }
        let pos = |c: Complex<f64>| c.arg().rem_euclid(tau) / tau * extent;
        [pos(y), pos(x)]
    }

    #[test]
    fn tilted_beam_drifts_along_the_tilt() {
        // 100 slices of 2 Å of vacuum = 200 Å; θ = (−5, +10) mrad moves the probe by
        // 200·tan θ ≈ (−1.0, +2.0) Å along the tilt.
        let pot = vacuum(100);
        let cfg = MultisliceConfig {
            tilt_yx_mrad: [-5.0, 10.0],
            exit_planes: ExitPlanes::AfterSlices(vec![0, 100]),
            ..Default::default()
        };
        let ms = Multislice::<f64>::new(&pot, &cfg).unwrap();
        let probe = Probe::new(
            crate::probe::ProbeConfig::default(),
            Grid::of_potential(&pot),
        )
        .unwrap();
        let w = ms.exit_waves(&probe, [8.0, 8.0]).unwrap();
        let c0 = centre_yx(&w[0], 16.0);
        let c1 = centre_yx(&w[1], 16.0);
        // The tilted wave is the untilted one translated by 200·tan θ and the aberration-free
        // probe intensity is symmetric, so the harmonic phase moves exactly: 1e-6 Å is
        // rounding over 100 slices.
        assert!(
            (c1[0] - c0[0] + 200.0 * 5e-3f64.tan()).abs() < 1e-6,
            "{c0:?} -> {c1:?}"
        );
        assert!(
            (c1[1] - c0[1] - 200.0 * 10e-3f64.tan()).abs() < 1e-6,
            "{c0:?} -> {c1:?}"
        );
    }

    #[test]
    fn zero_tilt_is_bit_identical_and_bad_tilts_are_rejected() {
        let pot = vacuum(3);
        let probe = Probe::new(
            crate::probe::ProbeConfig::default(),
            Grid::of_potential(&pot),
        )
        .unwrap();
        let plain = Multislice::<f32>::new(&pot, &MultisliceConfig::default()).unwrap();
        let zero = MultisliceConfig {
            tilt_yx_mrad: [0.0, -0.0],
            ..Default::default()
        };
        let zero = Multislice::<f32>::new(&pot, &zero).unwrap();
        assert_eq!(
            plain.diffraction_patterns(&probe, [3.0, 5.0]).unwrap(),
            zero.diffraction_patterns(&probe, [3.0, 5.0]).unwrap()
        );
        for bad in [[f64::NAN, 0.0], [0.0, 201.0], [-250.0, 0.0]] {
            let cfg = MultisliceConfig {
                tilt_yx_mrad: bad,
                ..Default::default()
            };
            assert!(Multislice::<f32>::new(&pot, &cfg).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_bad_config_and_mismatched_probe() {
        let pot =
            SlicedPotential::new(Array3::<f64>::zeros((1, 16, 16)), vec![1.0], [4.0, 4.0]).unwrap();
        let bad = MultisliceConfig {
            energy_ev: 0.0,
            ..Default::default()
        };
        assert!(Multislice::<f32>::new(&pot, &bad).is_err());
        let ms = Multislice::<f32>::new(&pot, &MultisliceConfig::default()).unwrap();
        let other = Grid::new([16, 16], [5.0, 5.0]).unwrap();
        let probe = Probe::new(crate::probe::ProbeConfig::default(), other).unwrap();
        assert!(ms.exit_waves(&probe, [0.0, 0.0]).is_err());
        assert!(ms.exit_waves_of(&Array2::zeros((8, 8))).is_err());
        assert!(ms.transmission(1).is_err());
    }
}
