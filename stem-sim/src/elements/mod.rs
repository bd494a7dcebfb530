//! Elements and their electron-scattering parametrisations.
//!
//! * [`symbol`] / [`atomic_number`]: element symbols for Z = 1..=103.
//! * [`ElementPotential`]: one element's electron scattering factor f_e(k) (Å), its projected
//!   scattering factor F(k) = f_e(k)/κ (V·Å³), the radial potential V(r) (V) and the projected
//!   potential V_z(r) = ∫V dz (V·Å), for either parametrisation:
//!   * **Lobato & Van Dyck** (Acta Cryst. A 70 (2014) 636–649), five terms:
//!     f_e(k) = Σᵢ aᵢ (2 + bᵢk²)/(1 + bᵢk²)²;
//!     V(r) = Σᵢ Aᵢ (2/(Bᵢr) + 1) e^(−Bᵢr);
//!     V_z(r) = 2 Σᵢ Aᵢ [(2/Bᵢ) K₀(Bᵢr) + r K₁(Bᵢr)],
//!     with Aᵢ = (1/κ) π² aᵢ / bᵢ^(3/2) and Bᵢ = 2π/√bᵢ.
//!   * **Kirkland** (*Advanced Computing in Electron Microscopy*, 2nd ed., 2010, Appendix C),
//!     three Lorentzians and three Gaussians:
//!     f_e(k) = Σᵢ aᵢ/(k² + bᵢ) + cᵢ e^(−dᵢk²);
//!     V(r) = 2π²a₀e Σ aᵢ e^(−2πr√bᵢ)/r + 2π^(5/2) a₀e Σ cᵢ dᵢ^(−3/2) e^(−π²r²/dᵢ);
//!     V_z(r) = 4π²a₀e Σ aᵢ K₀(2πr√bᵢ) + 2π²a₀e Σ (cᵢ/dᵢ) e^(−π²r²/dᵢ).
//!
//! Spatial frequencies k are in Å⁻¹ **without** 2π (k = 1/d), radii in Å. The conversion factor
//! 1/κ = 2π a₀ e = h²/(2π m₀ e) = [`INV_KAPPA_V_A2`] ≈ 47.8777 V·Å² turns a scattering factor in Å
//! into a potential (CODATA 2018 constants). K₀, K₁ are modified Bessel functions of the second
//! kind.
//!
//! ```
//! use stem_sim::elements::{atomic_number, symbol, ElementPotential};
//! use stem_sim::potential::Parametrization;
//!
//! assert_eq!(atomic_number("Sr")?, 38);
//! assert_eq!(symbol(22)?, "Ti");
//! let sr = ElementPotential::new(38, Parametrization::Lobato)?;
//! // Forward scattering factor of Sr, Lobato: f_e(0) = 2 Σ aᵢ = 13.1099 Å.
//! assert!((sr.scattering_factor_a(0.0) - 13.1099).abs() < 1e-4);
//! # Ok::<(), stem_sim::Error>(())
//! ```

mod kirkland_data;
mod lobato_data;

use std::f64::consts::PI;

use crate::error::{Error, Result};
use crate::potential::Parametrization;

/// Bohr radius a₀ in Å (CODATA 2018).
pub const BOHR_RADIUS_A: f64 = 0.529_177_210_903;

/// e²/(4πε₀) in eV·Å (CODATA 2018): the elementary charge in the Gaussian units of Kirkland's
/// formulas, so that a₀·e is in V·Å².
pub const ELEMENTARY_CHARGE_EV_A: f64 = 14.399_645_478_425_668;

/// 1/κ = 2π a₀ e = h²/(2π m₀ e) ≈ 47.8777 V·Å²: the factor between a scattering factor f_e (Å)
/// and the Fourier transform of the projected potential F (V·Å³), F = f_e/κ.
pub const INV_KAPPA_V_A2: f64 = 2.0 * PI * BOHR_RADIUS_A * ELEMENTARY_CHARGE_EV_A;

/// Largest atomic number covered by the parametrisations.
pub const MAX_Z: u8 = 103;

const SYMBOLS: [&str; 103] = [
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",
    "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk",
    "Cf", "Es", "Fm", "Md", "No", "Lr",
];

fn check_z(z: u8) -> Result<usize> {
    if (1..=MAX_Z).contains(&z) {
        Ok(usize::from(z) - 1)
    } else {
        Err(Error::UnknownElement {
            what: format!("Z = {z} (supported: 1..={MAX_Z})"),
        })
    }
}

/// The chemical symbol of element `z` ("H" … "Lr").
///
/// # Errors
/// [`Error::UnknownElement`] for Z outside 1..=103.
pub fn symbol(z: u8) -> Result<&'static str> {
    Ok(SYMBOLS[check_z(z)?])
}

/// The atomic number of a chemical symbol. Case-insensitive ("Sr", "sr", "SR"); surrounding
/// white space is ignored.
///
/// # Errors
/// [`Error::UnknownElement`] for anything that is not one of the 103 symbols.
pub fn atomic_number(symbol: &str) -> Result<u8> {
    let s = symbol.trim();
    SYMBOLS
        .iter()
        .position(|t| t.eq_ignore_ascii_case(s))
        .and_then(|i| u8::try_from(i + 1).ok())
        .ok_or_else(|| Error::UnknownElement {
            what: format!("symbol {symbol:?}"),
        })
}

/// The parameters of one element in one parametrisation, as published.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AtomicParameters {
    /// Lobato & Van Dyck (2014): f_e(k) = Σᵢ aᵢ (2 + bᵢk²)/(1 + bᵢk²)².
    Lobato {
        /// aᵢ in Å.
        a: [f64; 5],
        /// bᵢ in Å².
        b: [f64; 5],
    },
    /// Kirkland (2010): f_e(k) = Σᵢ aᵢ/(k² + bᵢ) + cᵢ e^(−dᵢk²).
    Kirkland {
        /// aᵢ in Å⁻¹.
        a: [f64; 3],
        /// bᵢ in Å⁻².
        b: [f64; 3],
        /// cᵢ in Å.
        c: [f64; 3],
        /// dᵢ in Å².
        d: [f64; 3],
    },
}

impl AtomicParameters {
    /// The published parameters of element `z` in `parametrization`.
    ///
    /// # Errors
    /// [`Error::UnknownElement`] for Z outside 1..=103.
    pub fn new(z: u8, parametrization: Parametrization) -> Result<Self> {
        let i = check_z(z)?;
        Ok(match parametrization {
            Parametrization::Lobato => {
                let p = &lobato_data::LOBATO[i];
                AtomicParameters::Lobato {
                    a: [p[0], p[1], p[2], p[3], p[4]],
                    b: [p[5], p[6], p[7], p[8], p[9]],
                }
            }
            Parametrization::Kirkland => {
                let p = &kirkland_data::KIRKLAND[i];
                AtomicParameters::Kirkland {
                    a: [p[0], p[1], p[2]],
                    b: [p[3], p[4], p[5]],
                    c: [p[6], p[7], p[8]],
                    d: [p[9], p[10], p[11]],
                }
            }
        })
    }
}

/// One element's scattering factor and potentials in one parametrisation (see the module docs
/// for the formulas). Cheap to copy; evaluation allocates nothing.
///
/// ```
/// use stem_sim::elements::{ElementPotential, INV_KAPPA_V_A2};
/// use stem_sim::potential::Parametrization;
///
/// let o = ElementPotential::new(8, Parametrization::Kirkland)?;
/// let k = 0.7; // Å⁻¹
/// let ratio = o.projected_scattering_factor_va3(k) / o.scattering_factor_a(k);
/// assert!((ratio - INV_KAPPA_V_A2).abs() < 1e-12);
/// // The projected potential is positive and falls off with the radius.
/// assert!(o.projected_potential_va(0.1) > o.projected_potential_va(0.5));
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElementPotential {
    z: u8,
    parametrization: Parametrization,
    parameters: AtomicParameters,
}

impl ElementPotential {
    /// Element `z` in `parametrization`.
    ///
    /// # Errors
    /// [`Error::UnknownElement`] for Z outside 1..=103.
    pub fn new(z: u8, parametrization: Parametrization) -> Result<Self> {
        Ok(Self {
            z,
            parametrization,
            parameters: AtomicParameters::new(z, parametrization)?,
        })
    }

    /// The atomic number.
    pub fn z(&self) -> u8 {
        self.z
    }

    /// The parametrisation.
    pub fn parametrization(&self) -> Parametrization {
        self.parametrization
    }

    /// The published parameters.
    pub fn parameters(&self) -> &AtomicParameters {
        &self.parameters
    }

    /// Electron scattering factor f_e(k) in Å at spatial frequency `k_inv_a` (Å⁻¹, no 2π; the
    /// sign of k is irrelevant).
    pub fn scattering_factor_a(&self, k_inv_a: f64) -> f64 {
        let k2 = k_inv_a * k_inv_a;
        match &self.parameters {
            AtomicParameters::Lobato { a, b } => a
                .iter()
                .zip(b)
                .map(|(&a, &b)| {
                    let d = 1.0 + b * k2;
                    a * (2.0 + b * k2) / (d * d)
                })
                .sum(),
            AtomicParameters::Kirkland { a, b, c, d } => {
                let mut f = 0.0;
                for i in 0..3 {
                    f += a[i] / (k2 + b[i]) + c[i] * (-d[i] * k2).exp();
                }
                f
            }
        }
    }

    /// Projected scattering factor F(k) = f_e(k)/κ in V·Å³: the 2-D Fourier transform
    /// (∫ V_z(r) e^(−2πi k·r) d²r) of the projected potential.
    pub fn projected_scattering_factor_va3(&self, k_inv_a: f64) -> f64 {
        INV_KAPPA_V_A2 * self.scattering_factor_a(k_inv_a)
    }

    /// Radial electrostatic potential V(r) in V at radius `r_a` (Å; the sign is ignored). It
    /// diverges as 1/r: `r_a = 0` gives +∞.
    pub fn potential_v(&self, r_a: f64) -> f64 {
        let r = r_a.abs();
        if r == 0.0 {
            return f64::INFINITY;
        }
        match &self.parameters {
            AtomicParameters::Lobato { a, b } => a
                .iter()
                .zip(b)
                .map(|(&a, &b)| {
                    let (big_a, big_b) = lobato_real_space(a, b);
                    big_a * (2.0 / (big_b * r) + 1.0) * (-big_b * r).exp()
                })
                .sum(),
            AtomicParameters::Kirkland { a, b, c, d } => {
                let a0e = BOHR_RADIUS_A * ELEMENTARY_CHARGE_EV_A;
                let mut v = 0.0;
                for i in 0..3 {
                    v += 2.0 * PI * PI * a0e * a[i] * (-2.0 * PI * r * b[i].sqrt()).exp() / r;
                    v += 2.0
                        * PI.powf(2.5)
                        * a0e
                        * c[i]
                        * d[i].powf(-1.5)
                        * (-PI * PI * r * r / d[i]).exp();
                }
                v
            }
        }
    }

    /// Projected potential V_z(r) = ∫ V(√(r² + z²)) dz in V·Å at radius `r_a` (Å; the sign is
    /// ignored). It diverges logarithmically: `r_a = 0` gives +∞.
    pub fn projected_potential_va(&self, r_a: f64) -> f64 {
        let r = r_a.abs();
        if r == 0.0 {
            return f64::INFINITY;
        }
        match &self.parameters {
            AtomicParameters::Lobato { a, b } => a
                .iter()
                .zip(b)
                .map(|(&a, &b)| {
                    let (big_a, big_b) = lobato_real_space(a, b);
                    2.0 * big_a * ((2.0 / big_b) * bessel_k0(big_b * r) + r * bessel_k1(big_b * r))
                })
                .sum(),
            AtomicParameters::Kirkland { a, b, c, d } => {
                let a0e = BOHR_RADIUS_A * ELEMENTARY_CHARGE_EV_A;
                let mut v = 0.0;
                for i in 0..3 {
                    v += 4.0 * PI * PI * a0e * a[i] * bessel_k0(2.0 * PI * r * b[i].sqrt());
                    v += 2.0 * PI * PI * a0e * (c[i] / d[i]) * (-PI * PI * r * r / d[i]).exp();
                }
                v
            }
        }
    }
}

/// Lobato's real-space amplitude Aᵢ = (1/κ) π² aᵢ / bᵢ^(3/2) (V·Å) and decay Bᵢ = 2π/√bᵢ (Å⁻¹).
fn lobato_real_space(a: f64, b: f64) -> (f64, f64) {
    (
        INV_KAPPA_V_A2 * PI * PI * a / b.powf(1.5),
        2.0 * PI / b.sqrt(),
    )
}

/// Modified Bessel function of the second kind K_ν(x) for x > 0 from its integral
/// representation K_ν(x) = ∫₀^∞ e^(−x cosh t) cosh(νt) dt, evaluated with the trapezoidal rule at
/// step h = 1/4. The integrand is analytic in the strip |Im t| < π/2 and decays
/// double-exponentially, so the rule converges like e^(−2π(π/2)/h) ≈ 1e-17: the result is
/// accurate to rounding (≈ 1e-15 relative). Returns +∞ at x = 0 and 0 when e^(−x) underflows.
fn bessel_k(nu: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return f64::INFINITY;
    }
    const H: f64 = 0.25;
    let mut sum = 0.5 * (-x).exp();
    // Stop once x (cosh t − 1) exceeds 745 + 40: the terms are then below 1e-17 of the first.
    let mut n = 1u32;
    loop {
        let t = H * f64::from(n);
        let e = x * (t.cosh() - 1.0);
        if e > 60.0 {
            break;
        }
        sum += (-x * t.cosh()).exp() * (nu * t).cosh();
        n += 1;
    }
    H * sum
}

/// K₀(x), x > 0 (see [`bessel_k`]).
pub(crate) fn bessel_k0(x: f64) -> f64 {
    bessel_k(0.0, x)
}

/// K₁(x), x > 0 (see [`bessel_k`]).
pub(crate) fn bessel_k1(x: f64) -> f64 {
    bessel_k(1.0, x)
}

#[cfg(test)]
mod tests;
