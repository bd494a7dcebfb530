//! The convergent-beam probe (and plane-wave illumination).
//!
//! In reciprocal space (abTEM's convention, multislice.md §2.8):
//!
//! ψ̃₀(k) = A_ap(α, φ) · exp(−iχ(α, φ)) · exp(−2πi k·r₀) / ‖·‖
//!
//! * soft aperture A_ap = clip((α_c − α)/δ(φ) + ½, 0, 1) with
//!   δ(φ) = √((cos φ·Δα_x)² + (sin φ·Δα_y)²), Δα = λ/L the angular pixel size, A_ap(0) = 1;
//!   a hard aperture is the disc α ≤ α_c;
//! * χ from [`Aberrations`] (defocus = −C10);
//! * normalised so that Σ_k |ψ̃|² = 1: the real-space probe (numpy inverse FFT, ×1/N) has
//!   Σ_r |ψ|² = 1/N and its diffraction pattern |FFT ψ|² sums to 1.
//!
//! Positions are `[y, x]` in Å; the shift is a Fourier phase ramp, so sub-pixel positions are exact.

use ndarray::Array2;
use num_complex::Complex;
use stem_core::Real;

use crate::aberrations::Aberrations;
use crate::energy::wavelength_a;
use crate::error::{Error, Result};
use crate::grid::Grid;

/// How to build the probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Acceleration voltage in eV (default 200 kV).
    pub energy_ev: f64,
    /// Convergence semi-angle α_c in mrad (default 20). `f64::INFINITY` gives no aperture
    /// (a point source; for a plane wave see [`plane_wave`]).
    pub semiangle_cutoff_mrad: f64,
    /// Soft aperture edge (default true, as abTEM).
    pub soft_aperture: bool,
    /// Aberrations (default none).
    pub aberrations: Aberrations,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            energy_ev: 200e3,
            semiangle_cutoff_mrad: 20.0,
            soft_aperture: true,
            aberrations: Aberrations::default(),
        }
    }
}

/// A probe on a grid: the contrast transfer function aperture·exp(−iχ) precomputed once.
#[derive(Clone, Debug)]
pub struct Probe {
    config: ProbeConfig,
    grid: Grid,
    wavelength_a: f64,
    ctf: Array2<Complex<f64>>,
    norm: f64,
}

impl Probe {
    /// A probe with `config` on `grid`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-positive or non-finite energy, a semi-angle that
    /// is not > 0 (infinite is allowed), non-finite aberrations, or an aperture that holds no
    /// grid point.
    ///
    /// ```
    /// use stem_sim::{grid::Grid, probe::{Probe, ProbeConfig}};
    /// let grid = Grid::new([128, 128], [15.62, 15.62]).unwrap();
    /// let probe = Probe::new(ProbeConfig::default(), grid).unwrap();
    /// let psi = probe.real_space::<f64>([7.81, 7.81]);
    /// let total: f64 = psi.iter().map(|c| c.norm_sqr()).sum::<f64>() * 128.0 * 128.0;
    /// assert!((total - 1.0).abs() < 1e-10);
    /// ```
    pub fn new(config: ProbeConfig, grid: Grid) -> Result<Self> {
        let wavelength_a = wavelength_a(config.energy_ev)?;
        let a = config.semiangle_cutoff_mrad;
        if a.is_nan() || a <= 0.0 {
            return Err(Error::invalid(
                "semiangle_cutoff_mrad",
                format!("must be > 0 mrad, got {a}"),
            ));
        }
        if !config.aberrations.is_finite() {
            return Err(Error::invalid(
                "aberrations",
                "all coefficients and angles must be finite",
            ));
        }
        let ctf = ctf_array(&config, &grid, wavelength_a);
        let norm = ctf.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 0.0 {
            return Err(Error::invalid(
                "semiangle_cutoff_mrad",
                format!(
                    "the aperture ({a} mrad) holds no grid point: the angular pixel is {:.3} mrad",
                    1e3 * wavelength_a * grid.reciprocal_sampling()[1]
                ),
            ));
        }
        Ok(Self {
            config,
            grid,
            wavelength_a,
            ctf,
            norm,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Wavelength λ in Å.
    pub fn wavelength_a(&self) -> f64 {
        self.wavelength_a
    }

    /// The contrast transfer function aperture·exp(−iχ), `[k_y, k_x]` in unshifted FFT order,
    /// value 1 at k = 0 (not normalised).
    pub fn ctf(&self) -> &Array2<Complex<f64>> {
        &self.ctf
    }

    /// Σ_k |CTF|² (the square of the normalisation constant).
    pub fn ctf_power(&self) -> f64 {
        self.norm * self.norm
    }

    /// The probe in reciprocal space (`[k_y, k_x]`, unshifted), centred at `position_yx_a`
    /// (Å), normalised to Σ_k |ψ̃|² = 1.
    pub fn fourier(&self, position_yx_a: [f64; 2]) -> Array2<Complex<f64>> {
        let (ky, kx) = (self.grid.ky(), self.grid.kx());
        let tau = 2.0 * std::f64::consts::PI;
        let ey: Vec<Complex<f64>> = ky
            .iter()
            .map(|k| Complex::from_polar(1.0, -tau * k * position_yx_a[0]))
            .collect();
        let ex: Vec<Complex<f64>> = kx
            .iter()
            .map(|k| Complex::from_polar(1.0 / self.norm, -tau * k * position_yx_a[1]))
            .collect();
        let mut out = self.ctf.clone();
        for ((i, j), v) in out.indexed_iter_mut() {
            *v = *v * ey[i] * ex[j];
        }
        out
    }

    /// The probe in real space (`[y, x]`), numpy inverse-FFT convention (Σ_r |ψ|² = 1/N).
    pub fn real_space<T: Real>(&self, position_yx_a: [f64; 2]) -> Array2<Complex<T>> {
        let mut f = self.fourier(position_yx_a);
        inverse_fft_f64(&mut f);
        f.mapv(|c| Complex::new(T::from_f64_lossy(c.re), T::from_f64_lossy(c.im)))
    }
}

/// In-place numpy-convention inverse FFT (×1/N) of an f64 array.
pub(crate) fn inverse_fft_f64(a: &mut Array2<Complex<f64>>) {
    let (ny, nx) = a.dim();
    if let Ok(plan) = stem_core::fft::Fft2::<f64>::new([ny, nx]) {
        // The shape matches the plan by construction, so this cannot fail.
        let _ = plan.inverse(a);
    }
}

fn ctf_array(config: &ProbeConfig, grid: &Grid, wavelength_a: f64) -> Array2<Complex<f64>> {
    let (ky, kx) = (grid.ky(), grid.kx());
    let alpha_c = config.semiangle_cutoff_mrad * 1e-3;
    let [rky, rkx] = grid.reciprocal_sampling();
    let (dax, day) = (wavelength_a * rkx, wavelength_a * rky);
    let ab = config.aberrations;
    let zero_ab = ab.is_zero();
    Array2::from_shape_fn((ky.len(), kx.len()), |(i, j)| {
        let (y, x) = (ky[i], kx[j]);
        let alpha = wavelength_a * (x * x + y * y).sqrt();
        let phi = y.atan2(x);
        let amp = if alpha_c.is_infinite() {
            1.0
        } else if config.soft_aperture {
            if alpha == 0.0 {
                1.0
            } else {
                let delta = ((phi.cos() * dax).powi(2) + (phi.sin() * day).powi(2)).sqrt();
                ((alpha_c - alpha) / delta + 0.5).clamp(0.0, 1.0)
            }
        } else if alpha <= alpha_c {
            1.0
        } else {
            0.0
        };
        if amp == 0.0 {
            return Complex::new(0.0, 0.0);
        }
        if zero_ab {
            Complex::new(amp, 0.0)
        } else {
            Complex::from_polar(amp, -ab.chi(alpha, phi, wavelength_a))
        }
    })
}

/// Plane-wave illumination on `grid` (`[y, x]`): ψ = 1/√N everywhere, so that
/// Σ_k |FFT ψ|² = 1 as for a probe. Run it with
/// [`Multislice::exit_waves_of`](crate::multislice::Multislice::exit_waves_of).
///
/// ```
/// let g = stem_sim::grid::Grid::new([4, 4], [1.0, 1.0]).unwrap();
/// let psi = stem_sim::probe::plane_wave::<f32>(&g);
/// assert!((psi[[1, 2]].re - 0.25).abs() < 1e-7);
/// ```
pub fn plane_wave<T: Real>(grid: &Grid) -> Array2<Complex<T>> {
    let v = T::from_f64_lossy(1.0 / (grid.len() as f64).sqrt());
    Array2::from_elem((grid.gpts()[0], grid.gpts()[1]), Complex::new(v, T::zero()))
}

/// Nyquist scan step λ/(4α_c) in Å for an energy (eV) and convergence semi-angle (mrad): the
/// largest step that samples the probe's band limit 2α_c/λ without aliasing.
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad energy or a semi-angle that is not finite and > 0.
///
/// ```
/// let s = stem_sim::probe::nyquist_scan_step_a(200e3, 20.0).unwrap();
/// assert!((s - 0.31349).abs() < 1e-4);
/// ```
pub fn nyquist_scan_step_a(energy_ev: f64, semiangle_cutoff_mrad: f64) -> Result<f64> {
    let l = wavelength_a(energy_ev)?;
    if !(semiangle_cutoff_mrad.is_finite() && semiangle_cutoff_mrad > 0.0) {
        return Err(Error::invalid(
            "semiangle_cutoff_mrad",
            format!("must be finite and > 0 mrad, got {semiangle_cutoff_mrad}"),
        ));
    }
    Ok(l / (4.0 * semiangle_cutoff_mrad * 1e-3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid::new([64, 64], [10.0, 10.0]).unwrap()
    }

    #[test]
    fn validation_rules() {
        let g = grid();
        let bad_e = ProbeConfig {
            energy_ev: -1.0,
            ..Default::default()
        };
        assert!(Probe::new(bad_e, g).is_err());
        let bad_a = ProbeConfig {
            semiangle_cutoff_mrad: 0.0,
            ..Default::default()
        };
        assert!(Probe::new(bad_a, g).is_err());
        let nan_a = ProbeConfig {
            semiangle_cutoff_mrad: f64::NAN,
            ..Default::default()
        };
        assert!(Probe::new(nan_a, g).is_err());
        let ab = Aberrations {
            c30_a: f64::NAN,
            ..Default::default()
        };
        let bad_ab = ProbeConfig {
            aberrations: ab,
            ..Default::default()
        };
        assert!(Probe::new(bad_ab, g).is_err());
        assert!(nyquist_scan_step_a(200e3, 0.0).is_err());
    }

    #[test]
    fn normalised_and_peaked_at_position_subpixel_too() {
        let p = Probe::new(ProbeConfig::default(), grid()).unwrap();
        for pos in [[5.0, 5.0], [3.125, 7.5]] {
            let psi = p.real_space::<f64>(pos);
            let n = (64 * 64) as f64;
            let tot: f64 = psi.iter().map(|c| c.norm_sqr()).sum::<f64>() * n;
            assert!((tot - 1.0).abs() < 1e-12);
            let (imax, _) = psi
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.norm_sqr().total_cmp(&b.1.norm_sqr()))
                .unwrap();
            let d = 10.0 / 64.0;
            assert_eq!(imax / 64, (pos[0] / d).round() as usize);
            assert_eq!(imax % 64, (pos[1] / d).round() as usize);
        }
    }

    #[test]
    fn fourier_shift_equals_roll_for_integer_pixels() {
        let p = Probe::new(ProbeConfig::default(), grid()).unwrap();
        let d = 10.0 / 64.0;
        let a = p.real_space::<f64>([0.0, 0.0]);
        let b = p.real_space::<f64>([3.0 * d, 5.0 * d]);
        for ((i, j), v) in a.indexed_iter() {
            let w = b[[(i + 3) % 64, (j + 5) % 64]];
            assert!((v - w).norm() < 1e-12);
        }
    }

    #[test]
    fn plane_wave_is_flat() {
        let psi = plane_wave::<f64>(&grid());
        let v = 1.0 / 64.0;
        assert!(
            psi.iter()
                .all(|c| (c.re - v).abs() < 1e-12 && c.im.abs() < 1e-12)
        );
    }
}
