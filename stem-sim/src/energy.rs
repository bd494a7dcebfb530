//! Relativistic electron wavelength and interaction parameter.
//!
//! With the CODATA 2018 constants (as ASE/abTEM use), for an acceleration voltage `E` in eV:
//!
//! * wavelength λ = h c / √( e E (2 m₀ c² + e E) ), in Å;
//! * relativistic factor γ = 1 + e E / (m₀ c²);
//! * interaction parameter σ = 2π γ m₀ e λ / h², in rad V⁻¹ Å⁻¹ (Kirkland, *Advanced Computing
//!   in Electron Microscopy*, Eq. 5.6, in the form σ = (2π/(λE))·(m₀c² + eE)/(2m₀c² + eE)).
//!
//! At 200 kV: λ = 0.025079340 Å and σ = 7.288401e-4 rad V⁻¹ Å⁻¹.

use crate::error::{Error, Result};

/// Planck constant h in J s (CODATA 2018, exact).
pub const PLANCK_J_S: f64 = 6.626_070_15e-34;
/// Speed of light c in m/s (exact).
pub const SPEED_OF_LIGHT_M_S: f64 = 299_792_458.0;
/// Elementary charge e in C (exact).
pub const ELEMENTARY_CHARGE_C: f64 = 1.602_176_634e-19;
/// Electron rest mass m₀ in kg (CODATA 2018).
pub const ELECTRON_MASS_KG: f64 = 9.109_383_701_5e-31;

fn check_energy(energy_ev: f64) -> Result<()> {
    if !(energy_ev.is_finite() && energy_ev > 0.0) {
        return Err(Error::invalid(
            "energy_ev",
            format!("acceleration voltage must be finite and > 0 eV, got {energy_ev}"),
        ));
    }
    Ok(())
}

/// Relativistic electron wavelength λ in Å for an acceleration voltage `energy_ev` (eV).
///
/// # Errors
/// [`Error::InvalidParameter`] unless `energy_ev` is finite and > 0.
///
/// ```
/// let l = stem_sim::energy::wavelength_a(200e3).unwrap();
/// assert!((l - 0.025079340).abs() < 1e-8);
/// ```
pub fn wavelength_a(energy_ev: f64) -> Result<f64> {
    check_energy(energy_ev)?;
    let ee = ELEMENTARY_CHARGE_C * energy_ev;
    let m0c2 = ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S * SPEED_OF_LIGHT_M_S;
    Ok(PLANCK_J_S * SPEED_OF_LIGHT_M_S / (ee * (2.0 * m0c2 + ee)).sqrt() * 1e10)
}

/// Relativistic factor γ = 1 + eE/(m₀c²) (dimensionless).
///
/// # Errors
/// [`Error::InvalidParameter`] unless `energy_ev` is finite and > 0.
pub fn relativistic_gamma(energy_ev: f64) -> Result<f64> {
    check_energy(energy_ev)?;
    Ok(1.0
        + ELEMENTARY_CHARGE_C * energy_ev
            / (ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S * SPEED_OF_LIGHT_M_S))
}

/// Interaction parameter σ = 2π γ m₀ e λ / h² in rad V⁻¹ Å⁻¹: the phase shift per V·Å of
/// projected potential.
///
/// # Errors
/// [`Error::InvalidParameter`] unless `energy_ev` is finite and > 0.
///
/// ```
/// let s = stem_sim::energy::interaction_parameter(200e3).unwrap();
/// assert!((s / 7.288401e-4 - 1.0).abs() < 1e-6);
/// ```
pub fn interaction_parameter(energy_ev: f64) -> Result<f64> {
    let lambda_m = wavelength_a(energy_ev)? * 1e-10;
    let gamma = relativistic_gamma(energy_ev)?;
    let per_v_m =
        2.0 * std::f64::consts::PI * gamma * ELECTRON_MASS_KG * ELEMENTARY_CHARGE_C * lambda_m
            / (PLANCK_J_S * PLANCK_J_S);
    Ok(per_v_m * 1e-10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wavelength_and_sigma_match_reference_values() {
        // multislice.md §2.1 / §9 test 1; relative 1e-6 (values quoted to 6-8 digits).
        let cases = [
            (60e3, 0.0486606, 1.135691e-3),
            (80e3, 0.0417572, 1.008707e-3),
            (100e3, 0.0370144, 9.24396e-4),
            (200e3, 0.025079340, 7.288401e-4),
            (300e3, 0.0196875, 6.52616e-4),
        ];
        for (e, l, s) in cases {
            let lw = wavelength_a(e).unwrap();
            let sw = interaction_parameter(e).unwrap();
            assert!((lw / l - 1.0).abs() < 3e-6, "λ({e}) = {lw}, want {l}");
            assert!((sw / s - 1.0).abs() < 3e-6, "σ({e}) = {sw}, want {s}");
        }
    }

    #[test]
    fn kirkland_form_is_identical() {
        for e in [60e3, 200e3, 300e3] {
            let l = wavelength_a(e).unwrap();
            let m0c2_ev = 510_998.95;
            let k = 2.0 * std::f64::consts::PI / (l * e) * (m0c2_ev + e) / (2.0 * m0c2_ev + e);
            assert!((interaction_parameter(e).unwrap() / k - 1.0).abs() < 1e-7);
        }
    }

    #[test]
    fn rejects_bad_energy() {
        assert!(wavelength_a(0.0).is_err());
        assert!(wavelength_a(-1.0).is_err());
        assert!(interaction_parameter(f64::NAN).is_err());
        assert!(relativistic_gamma(f64::INFINITY).is_err());
    }
}
