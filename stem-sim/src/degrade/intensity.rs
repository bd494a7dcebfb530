//! Intensity degradations: dose, background, contrast, source-size blur.

use super::{Param, set_axes};
use crate::error::{Error, Result};
use ndarray::Zip;
use rand::Rng;
use serde::{Deserialize, Serialize};
use stem_core::Image;
use stem_core::noise::Dose;

/// The dose of [`super::Degradation::Poisson`]. JSON: `{"counts_per_px": 50}` (mean counts per
/// pixel over the image) or `{"e_per_a2": 1000}` (incident electrons per Å²; the image is taken
/// as the detected fraction of the beam per pixel, as a multislice ADF image, and must be
/// calibrated in Å). See [`stem_core::noise::Dose`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DoseParam {
    /// Mean counts per pixel (> 0).
    #[serde(rename = "counts_per_px")]
    CountsPerPx(Param),
    /// Electrons per Å² (> 0).
    #[serde(rename = "e_per_a2")]
    ElectronsPerA2(Param),
}

impl DoseParam {
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            DoseParam::CountsPerPx(p) => p.validate("poisson.dose.counts_per_px", 1e-12, 1e15),
            DoseParam::ElectronsPerA2(p) => p.validate("poisson.dose.e_per_a2", 1e-12, 1e15),
        }
    }

    /// Draws the dose; returns it and the drawn number.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> (Dose, f64) {
        match self {
            DoseParam::CountsPerPx(p) => {
                let v = p.sample(rng);
                (Dose::CountsPerPixel(v), v)
            }
            DoseParam::ElectronsPerA2(p) => {
                let v = p.sample(rng);
                (Dose::ElectronsPerA2(v), v)
            }
        }
    }
}

/// Background and contrast changes relative to the image mean `m` (so that a recipe does not
/// depend on the image's scale):
///
/// `I' = max(0, gain · m · (I/m)^γ + m · (offset + g_y·(y/(n_y − 1) − ½) + g_x·(x/(n_x − 1) − ½)))`
///
/// (negative inputs count as 0 in the power; the final clamp keeps intensities physical, so
/// that Poisson noise can follow). Defaults: gain 1, γ 1, offset and gradients 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Background {
    /// Multiplicative gain (≥ 0).
    pub gain: Param,
    /// Contrast exponent γ (> 0); 1 = linear.
    pub gamma: Param,
    /// Constant background as a fraction of the mean.
    pub offset: Param,
    /// Linear ramp along y over the image height, as a fraction of the mean.
    pub gradient_y: Param,
    /// Linear ramp along x over the image width, as a fraction of the mean.
    pub gradient_x: Param,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            gain: Param::Fixed(1.0),
            gamma: Param::Fixed(1.0),
            offset: Param::Fixed(0.0),
            gradient_y: Param::Fixed(0.0),
            gradient_x: Param::Fixed(0.0),
        }
    }
}

impl Background {
    pub(crate) fn validate(&self) -> Result<()> {
        self.gain.validate("background.gain", 0.0, 1e6)?;
        self.gamma.validate("background.gamma", 0.01, 100.0)?;
        self.offset.validate("background.offset", -1e6, 1e6)?;
        self.gradient_y
            .validate("background.gradient_y", -1e6, 1e6)?;
        self.gradient_x.validate("background.gradient_x", -1e6, 1e6)
    }

    /// Draws the parameters and applies them; returns the drawn values by name.
    pub(crate) fn apply(
        &self,
        image: &mut Image<f32>,
        rng: &mut impl Rng,
    ) -> Result<Vec<(&'static str, f64)>> {
        let gain = self.gain.sample(rng);
        let gamma = self.gamma.sample(rng);
        let offset = self.offset.sample(rng);
        let gy = self.gradient_y.sample(rng);
        let gx = self.gradient_x.sample(rng);
        let data = image.data();
        if data.is_empty() {
            return Err(stem_core::Error::EmptyInput { what: "image" }.into());
        }
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(stem_core::Error::NonFinite {
                what: "image",
                index,
            }
            .into());
        }
        let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / data.len() as f64;
        if gamma != 1.0 && mean <= 0.0 {
            return Err(Error::invalid(
                "background.gamma",
                format!("γ = {gamma} needs an image mean > 0, got {mean}"),
            ));
        }
        let (ny, nx) = data.dim();
        let fy = if ny > 1 { 1.0 / (ny - 1) as f64 } else { 0.0 };
        let fx = if nx > 1 { 1.0 / (nx - 1) as f64 } else { 0.0 };
        let mut out = data.clone();
        Zip::indexed(out.rows_mut()).par_for_each(|r, mut row| {
            let base = offset + gy * (r as f64 * fy - 0.5);
            for (c, v) in row.iter_mut().enumerate() {
                let i = f64::from(*v);
                let contrast = if gamma == 1.0 {
                    i
                } else {
                    mean * (i.max(0.0) / mean).powf(gamma)
                };
                let bg = mean * (base + gx * (c as f64 * fx - 0.5));
                *v = (gain * contrast + bg).max(0.0) as f32;
            }
        });
        let axes = image.axes().clone();
        *image = Image::with_axes(out, axes)?;
        Ok(vec![
            ("gain", gain),
            ("gamma", gamma),
            ("offset", offset),
            ("gradient_y", gy),
            ("gradient_x", gx),
        ])
    }
}

/// FWHM → σ of a Gaussian: `FWHM = 2√(2 ln 2)·σ`.
pub(crate) const FWHM_PER_SIGMA: f64 = 2.354_820_045_030_949;

/// Gaussian blur of FWHM `fwhm_a` Å (the image must be calibrated in Å).
pub(crate) fn source_blur(image: &mut Image<f32>, fwhm_a: f64) -> Result<()> {
    let axes = image.axes().clone();
    if axes
        .iter()
        .any(|a| a.units != "Å" || !(a.scale.is_finite() && a.scale > 0.0))
    {
        return Err(Error::invalid(
            "source_blur",
            format!(
                "needs an image calibrated in Å, got scales {} {:?} / {} {:?}",
                axes[0].scale, axes[0].units, axes[1].scale, axes[1].units
            ),
        ));
    }
    if fwhm_a == 0.0 {
        return Ok(());
    }
    // Square pixels are assumed (the mean of the two scales).
    let sigma_px = fwhm_a / FWHM_PER_SIGMA / (0.5 * (axes[0].scale + axes[1].scale));
    let blurred = stem_core::filters::gaussian_blur(image.data().view(), sigma_px, 4.0)?;
    *image = Image::new(blurred);
    set_axes(image, axes)
}
