//! Polar aberration coefficients (Krivanek notation) and the phase error χ(α, φ).
//!
//! χ(α,φ) = (2π/λ) [ ½α²(C10 + C12 cos 2(φ−φ12))
//!                  + ⅓α³(C21 cos(φ−φ21) + C23 cos 3(φ−φ23))
//!                  + ¼α⁴(C30 + C32 cos 2(φ−φ32) + C34 cos 4(φ−φ34))
//!                  + ⅕α⁵(C41 cos(φ−φ41) + C43 cos 3(φ−φ43) + C45 cos 5(φ−φ45))
//!                  + ⅙α⁶(C50 + C52 cos 2(φ−φ52) + C54 cos 4(φ−φ54) + C56 cos 6(φ−φ56)) ]
//!
//! with α = λ|k| (rad), φ = atan2(k_y, k_x) and all Cnm in Å. The wave is multiplied by
//! exp(−iχ). **Sign convention (abTEM's): defocus = −C10**, so a positive defocus focuses the
//! probe *inside* the specimen (propagation by +C10 is exp(−iπλk²C10)).

/// Polar aberration coefficients in Å and their azimuths in rad (all zero by default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Aberrations {
    /// C10 (Å) = −defocus.
    pub c10_a: f64,
    /// C12, two-fold astigmatism (Å).
    pub c12_a: f64,
    /// φ12 (rad).
    pub phi12_rad: f64,
    /// C21, axial coma (Å).
    pub c21_a: f64,
    /// φ21 (rad).
    pub phi21_rad: f64,
    /// C23, three-fold astigmatism (Å).
    pub c23_a: f64,
    /// φ23 (rad).
    pub phi23_rad: f64,
    /// C30 = Cs, spherical aberration (Å).
    pub c30_a: f64,
    /// C32, axial star aberration (Å).
    pub c32_a: f64,
    /// φ32 (rad).
    pub phi32_rad: f64,
    /// C34, four-fold astigmatism (Å).
    pub c34_a: f64,
    /// φ34 (rad).
    pub phi34_rad: f64,
    /// C41 (Å).
    pub c41_a: f64,
    /// φ41 (rad).
    pub phi41_rad: f64,
    /// C43 (Å).
    pub c43_a: f64,
    /// φ43 (rad).
    pub phi43_rad: f64,
    /// C45 (Å).
    pub c45_a: f64,
    /// φ45 (rad).
    pub phi45_rad: f64,
    /// C50 = C5 (Å).
    pub c50_a: f64,
    /// C52 (Å).
    pub c52_a: f64,
    /// φ52 (rad).
    pub phi52_rad: f64,
    /// C54 (Å).
    pub c54_a: f64,
    /// φ54 (rad).
    pub phi54_rad: f64,
    /// C56 (Å).
    pub c56_a: f64,
    /// φ56 (rad).
    pub phi56_rad: f64,
}

impl Aberrations {
    /// Sets the defocus Δf in Å (C10 = −Δf; positive focuses below the entrance surface).
    pub fn with_defocus_a(mut self, defocus_a: f64) -> Self {
        self.c10_a = -defocus_a;
        self
    }

    /// Sets Cs = C30 in Å.
    pub fn with_cs_a(mut self, cs_a: f64) -> Self {
        self.c30_a = cs_a;
        self
    }

    /// The defocus Δf = −C10 in Å.
    pub fn defocus_a(&self) -> f64 {
        -self.c10_a
    }

    /// Scherzer defocus sign(Cs)·√(1.5·|Cs|·λ) in Å for wavelength `wavelength_a`.
    pub fn scherzer_defocus_a(cs_a: f64, wavelength_a: f64) -> f64 {
        cs_a.signum() * (1.5 * cs_a.abs() * wavelength_a).sqrt()
    }

    /// All coefficients finite?
    pub fn is_finite(&self) -> bool {
        self.terms()
            .iter()
            .all(|t| t.1.is_finite() && t.2.is_finite())
    }

    /// Whether every coefficient is zero (χ ≡ 0).
    pub fn is_zero(&self) -> bool {
        self.terms().iter().all(|t| t.1 == 0.0)
    }

    /// (n, C_nm, m, φ_nm) for every term, n being the power of α minus one.
    fn terms(&self) -> [(i32, f64, f64, f64); 14] {
        [
            (1, self.c10_a, 0.0, 0.0),
            (1, self.c12_a, 2.0, self.phi12_rad),
            (2, self.c21_a, 1.0, self.phi21_rad),
            (2, self.c23_a, 3.0, self.phi23_rad),
            (3, self.c30_a, 0.0, 0.0),
            (3, self.c32_a, 2.0, self.phi32_rad),
            (3, self.c34_a, 4.0, self.phi34_rad),
            (4, self.c41_a, 1.0, self.phi41_rad),
            (4, self.c43_a, 3.0, self.phi43_rad),
            (4, self.c45_a, 5.0, self.phi45_rad),
            (5, self.c50_a, 0.0, 0.0),
            (5, self.c52_a, 2.0, self.phi52_rad),
            (5, self.c54_a, 4.0, self.phi54_rad),
            (5, self.c56_a, 6.0, self.phi56_rad),
        ]
    }

    /// The phase error χ(α, φ) in rad for angle `alpha_rad`, azimuth `phi_rad` and
    /// wavelength `wavelength_a` (Å).
    ///
    /// ```
    /// use stem_sim::aberrations::Aberrations;
    /// // Pure defocus: χ = π λ k² C10 with α = λ k.
    /// let ab = Aberrations::default().with_defocus_a(-100.0); // C10 = +100 Å
    /// let (l, k) = (0.025, 0.5);
    /// let chi = ab.chi(l * k, 0.3, l);
    /// assert!((chi - std::f64::consts::PI * l * k * k * 100.0).abs() < 1e-12);
    /// ```
    pub fn chi(&self, alpha_rad: f64, phi_rad: f64, wavelength_a: f64) -> f64 {
        let mut sum = 0.0;
        for (n, c, m, phi0) in self.terms() {
            if c == 0.0 {
                continue;
            }
            let p = n + 1;
            let ang = if m == 0.0 {
                1.0
            } else {
                (m * (phi_rad - phi0)).cos()
            };
            sum += alpha_rad.powi(p) / p as f64 * c * ang;
        }
        2.0 * std::f64::consts::PI / wavelength_a * sum
    }
}
