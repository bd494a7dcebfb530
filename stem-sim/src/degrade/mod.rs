//! Realistic degradations of labelled images, with labels that transform along with the data.
//!
//! A [`Sample`] is an image (`[y, x]`, calibrated in Å) plus its [`Labels`]: atom-column
//! positions in px (`[y, x]`, pixel `(i, j)` centred at coordinate `(i, j)`, as in
//! `stem_core::synth`), a class per position, optional per-pixel masks (segmentation, domain
//! and boundary maps) and an optional [`DisplacementField`]. Every [`Degradation`] maps the
//! image *and* the labels, so that after any [`Chain`] the labelled positions still mark the
//! columns:
//!
//! | degradation | image | labels |
//! |---|---|---|
//! | [`Degradation::Poisson`] | counts ~ Poisson(dose · image) ([`stem_core::noise`]) | unchanged |
//! | [`Degradation::ReadNoise`] | + N(0, σ²) per pixel | unchanged |
//! | [`Degradation::Background`] | `gain·I + mean·(offset + gradient)`, optional γ | unchanged |
//! | [`Degradation::SourceBlur`] | Gaussian blur, FWHM in Å | unchanged |
//! | [`Degradation::Scan`] | resampled at `p + D(p)` (row jitter, drift, fly-back, shear) | exact inverse map |
//! | [`Degradation::Affine`] | resampled at `M⁻¹(p − c − t) + c` | `M(q − c) + c + t` |
//! | [`Degradation::Resample`] | new pixel size `s·f` (anti-aliased) | `(q + ½)/f − ½` |
//! | [`Degradation::Crop`] | window of the input | `q − offset` |
//!
//! # Geometric convention
//!
//! A geometric degradation is a map `source(p)`: output pixel `p` shows the input image at
//! `source(p)` (cubic convolution interpolation, Keys 1981 with a = −½; outside the input the
//! image mean is used; masks use the nearest pixel, 0 outside). A label at input position `q`
//! moves to the `p` that solves `source(p) = q` exactly (closed form for affine maps and
//! resampling, fixed-point iteration to 10⁻¹⁰ px for scan distortions); labels that land outside
//! `[0, ny − 1] × [0, nx − 1]` are dropped. A [`DisplacementField`] `d` (output pixel `p` shows
//! specimen point `p + d(p)`) composes as `d'(p) = source(p) − p + d(source(p))`, `d` sampled
//! bilinearly. With that convention a rigid frame shift `d ≡ s` is exactly the `shift` of
//! ARCHITECTURE.md (how far the frame must move to land on the specimen).
//!
//! # Randomness
//!
//! Every parameter is a [`Param`]: a number, or a range drawn uniformly (or log-uniformly) per
//! sample. [`Chain::apply`] draws step `k` from `ChaCha8Rng::seed_from_u64(seed)` on stream `k`;
//! noise seeds are drawn from the same stream. Pixel work runs row-parallel on rayon's current
//! pool and never depends on the number of threads.
//!
//! ```
//! use stem_core::synth::{LatticeImageConfig, UnitCell2D};
//! use stem_sim::degrade::{Chain, Degradation, Labels, Param, Sample};
//!
//! let lattice = LatticeImageConfig { shape: [96, 96], ..LatticeImageConfig::new(UnitCell2D::srtio3_001()) }
//!     .render()?;
//! let mut sample = Sample::from_lattice(&lattice);
//! let n_before = sample.labels.len();
//! let chain: Chain = serde_json::from_str(
//!     r#"[{"kind": "affine", "rotation_deg": [-10, 10]},
//!         {"kind": "poisson", "dose": {"counts_per_px": 50}}]"#,
//! )?;
//! chain.apply(&mut sample, 7)?;
//! assert_eq!(sample.image.shape(), [96, 96]);
//! assert!(sample.labels.len() > n_before / 2); // a rotation moves corner columns out
//! assert!(sample.image.data().iter().all(|v| v.fract() == 0.0)); // counts
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod intensity;
mod scan;
#[cfg(test)]
mod tests;
mod warp;

pub use intensity::{Background, DoseParam};
pub use scan::{ScanDistortion, ScanField};
pub use warp::{AffineMap, Warp, warp_sample};

use crate::error::{Error, Result};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stem_core::Image;
use stem_core::synth::LatticeImage;

/// Largest image (pixels) a degradation or generator makes (2²⁸, 1 GiB of `f32`); larger
/// requests are an error rather than an allocation failure.
pub const MAX_PIXELS: usize = 1 << 28;

/// A parameter: a fixed number or a range drawn once per sample.
///
/// JSON: `3.5` (fixed), `[1.0, 2.0]` (uniform in the closed range), or
/// `{"log_uniform": [5.0, 500.0]}` (log-uniform, both ends > 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    /// Always this value.
    Fixed(f64),
    /// Uniform in `[lo, hi]`.
    Uniform([f64; 2]),
    /// Log-uniform in `[lo, hi]` (`lo > 0`).
    LogUniform {
        /// The range `[lo, hi]`.
        log_uniform: [f64; 2],
    },
}

impl Default for Param {
    fn default() -> Self {
        Param::Fixed(0.0)
    }
}

impl Param {
    /// Draws a value (a fixed value draws nothing from `rng`, so adding a fixed parameter does
    /// not change the other draws).
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Param::Fixed(v) => v,
            Param::Uniform([lo, hi]) => lo + (hi - lo) * rng.random::<f64>(),
            Param::LogUniform {
                log_uniform: [lo, hi],
            } => (lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f64>()).exp(),
        }
    }

    /// The smallest and largest value it can take.
    pub fn bounds(&self) -> [f64; 2] {
        match *self {
            Param::Fixed(v) => [v, v],
            Param::Uniform([lo, hi]) => [lo, hi],
            Param::LogUniform { log_uniform } => log_uniform,
        }
    }

    /// The largest absolute value it can take.
    pub fn max_abs(&self) -> f64 {
        let [lo, hi] = self.bounds();
        lo.abs().max(hi.abs())
    }

    /// Checks that the bounds are finite, ordered and inside `[min, max]`.
    pub fn validate(&self, name: &'static str, min: f64, max: f64) -> Result<()> {
        let [lo, hi] = self.bounds();
        let ok = lo.is_finite() && hi.is_finite() && lo <= hi && lo >= min && hi <= max;
        let log_ok = !matches!(self, Param::LogUniform { .. }) || lo > 0.0;
        if !(ok && log_ok) {
            return Err(Error::invalid(
                name,
                format!("{self:?} must be finite, ordered and within [{min}, {max}]"),
            ));
        }
        Ok(())
    }
}

/// A named per-pixel label map (e.g. column segmentation, domain variant, domain boundary),
/// same shape as the image. Geometric degradations resample it with the nearest pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Name, used in file names (`columns`, `domain`, `boundary`, ...).
    pub name: String,
    /// Values per pixel `[y, x]`; 0 = background / outside.
    pub data: Array2<u8>,
}

/// Where each output pixel's content comes from in the undistorted specimen: pixel `p = [y, x]`
/// shows the specimen point `p + [dy(p), dx(p)]`, in px of the specimen's grid (which is the
/// image's grid unless a [`Degradation::Resample`] step changed the pixel size). A rigid shift `s` of the whole frame is
/// `d ≡ s`, the ARCHITECTURE.md `shift` (how far the frame must move to land on the specimen).
#[derive(Clone, Debug, PartialEq)]
pub struct DisplacementField {
    /// y component (px), shape `[ny, nx]`.
    pub dy_px: Array2<f64>,
    /// x component (px), shape `[ny, nx]`.
    pub dx_px: Array2<f64>,
}

impl DisplacementField {
    /// The identity (zero displacement) on a `[ny, nx]` grid.
    pub fn zeros(shape: [usize; 2]) -> Self {
        DisplacementField {
            dy_px: Array2::zeros((shape[0], shape[1])),
            dx_px: Array2::zeros((shape[0], shape[1])),
        }
    }

    /// Shape `[ny, nx]`.
    pub fn shape(&self) -> [usize; 2] {
        let (ny, nx) = self.dy_px.dim();
        [ny, nx]
    }

    /// Mean displacement `[dy, dx]` (px): the effective rigid shift of a frame, which a
    /// translation-only registration should return. `[0, 0]` for an empty field.
    pub fn mean(&self) -> [f64; 2] {
        let n = self.dy_px.len().max(1) as f64;
        [self.dy_px.sum() / n, self.dx_px.sum() / n]
    }

    /// Bilinear sample at a real position `[y, x]` (px), clamped to the grid.
    pub fn sample(&self, p: [f64; 2]) -> [f64; 2] {
        [
            warp::bilinear(&self.dy_px, p),
            warp::bilinear(&self.dx_px, p),
        ]
    }
}

/// The labels of one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels {
    /// Column positions `[y, x]` in px.
    pub positions_px: Vec<[f64; 2]>,
    /// Class of each position, an index into `class_names`.
    pub classes: Vec<u16>,
    /// Names of the classes (e.g. motif column labels `"Sr"`, `"TiO"`).
    pub class_names: Vec<String>,
    /// Per-pixel maps.
    pub masks: Vec<Mask>,
    /// Displacement of each pixel relative to the undistorted specimen, when tracked
    /// (image series); geometric degradations compose it.
    pub displacement: Option<DisplacementField>,
}

impl Labels {
    /// Number of labelled positions.
    pub fn len(&self) -> usize {
        self.positions_px.len()
    }

    /// Whether there are no labelled positions.
    pub fn is_empty(&self) -> bool {
        self.positions_px.is_empty()
    }

    /// Positions of the points of class `class`.
    pub fn positions_of_class(&self, class: u16) -> Vec<[f64; 2]> {
        self.positions_px
            .iter()
            .zip(&self.classes)
            .filter(|(_, c)| **c == class)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The mask with this name, if any.
    pub fn mask(&self, name: &str) -> Option<&Mask> {
        self.masks.iter().find(|m| m.name == name)
    }

    /// Keeps the points for which `keep` is true (positions and classes together).
    pub(crate) fn retain_points(&mut self, keep: &[bool]) {
        let mut k = keep.iter();
        self.positions_px.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.classes.retain(|_| *k.next().unwrap_or(&false));
    }
}

/// What a sample carries beyond its 2-D [`Sample::image`].
///
/// Degradation chains act on the image and its labels only; generators with a stack or a
/// cube payload make their own noise (see their docs) and take no chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Payload {
    /// Nothing beyond the image (the 2-D generators).
    #[default]
    Image,
    /// A stack of 2-D planes `[plane, y, x]`, one coordinate per plane (e.g. PACBED patterns
    /// `[thickness, k_y, k_x]`).
    Stack {
        /// The planes.
        data: ndarray::Array3<f32>,
        /// Name of the plane coordinate with its unit (e.g. `"thickness_nm"`).
        axis: String,
        /// The coordinate of each plane.
        values: Vec<f64>,
    },
    /// A 4D-STEM cube `[scan_y, scan_x, k_y, k_x]` (calibrated axes) and its clean version.
    Cube {
        /// The data as recorded (e.g. with shot noise).
        data: stem_core::Hypercube<f32>,
        /// The noise-free cube, when known.
        clean: Option<stem_core::Hypercube<f32>>,
    },
}

/// An image with its labels and the parameters drawn to make it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The image, `[y, x]`, calibrated in Å where the generator knows the pixel size. For
    /// stack and cube payloads it is a 2-D summary (documented by each generator).
    pub image: Image<f32>,
    /// Its labels.
    pub labels: Labels,
    /// Parameters drawn while generating and degrading, by name (e.g. `"2.affine.rotation_deg"`).
    pub metadata: BTreeMap<String, f64>,
    /// Data beyond the image (default [`Payload::Image`]: none).
    pub payload: Payload,
}

impl Sample {
    /// A sample from a `stem_core::synth` lattice image: one class per distinct motif label (in
    /// order of first appearance among the labelled columns), positions from its column labels.
    pub fn from_lattice(lattice: &LatticeImage) -> Self {
        let mut class_names: Vec<String> = Vec::new();
        let mut classes = Vec::with_capacity(lattice.columns.len());
        for c in &lattice.columns {
            let k = match class_names.iter().position(|n| *n == c.label) {
                Some(k) => k,
                None => {
                    class_names.push(c.label.clone());
                    class_names.len() - 1
                }
            };
            classes.push(k as u16);
        }
        Sample {
            image: lattice.image.clone(),
            labels: Labels {
                positions_px: lattice.columns.iter().map(|c| c.position_px).collect(),
                classes,
                class_names,
                masks: Vec::new(),
                displacement: None,
            },
            metadata: BTreeMap::new(),
            payload: Payload::Image,
        }
    }

    /// Pixel size in Å (`[dy, dx]`) if the image is calibrated in Å.
    pub fn sampling_a(&self) -> Option<[f64; 2]> {
        let axes = self.image.axes();
        (axes[0].units == "Å" && axes[1].units == "Å").then(|| [axes[0].scale, axes[1].scale])
    }
}

/// An affine degradation about the image centre `c = [(ny − 1)/2, (nx − 1)/2]`: a label at `q`
/// moves to `M(q − c) + c + t` with `M = zoom · R(rotation) · S(shear)`, where
/// `S = [[1, 0], [shear, 1]]` (x += shear·y) and `R` rotates counter-clockwise as displayed
/// (y down), acting on `[y, x]` as `[y cos θ − x sin θ, y sin θ + x cos θ]` (as
/// `stem_core::synth`). The calibration is divided by `zoom` (features grow with zoom > 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Affine {
    /// Rotation θ in degrees. Default 0.
    pub rotation_deg: Param,
    /// Isotropic magnification (> 0). Default 1.
    pub zoom: Param,
    /// Shear factor (x += shear·y). Default 0.
    pub shear: Param,
    /// Shift t_y in px. Default 0.
    pub shift_y_px: Param,
    /// Shift t_x in px. Default 0.
    pub shift_x_px: Param,
}

impl Default for Affine {
    fn default() -> Self {
        Affine {
            rotation_deg: Param::Fixed(0.0),
            zoom: Param::Fixed(1.0),
            shear: Param::Fixed(0.0),
            shift_y_px: Param::Fixed(0.0),
            shift_x_px: Param::Fixed(0.0),
        }
    }
}

/// One degradation. JSON: an object with `"kind"` (snake case) and the fields of the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Degradation {
    /// Poisson shot noise at a dose; the image becomes counts.
    Poisson {
        /// The dose.
        dose: DoseParam,
    },
    /// Additive Gaussian read noise of standard deviation `sigma` (image units, i.e. counts
    /// after [`Degradation::Poisson`]).
    ReadNoise {
        /// σ ≥ 0.
        sigma: Param,
    },
    /// Background, gain and gamma changes.
    Background(Background),
    /// Finite effective source size: Gaussian blur of full width at half maximum `fwhm_a` Å
    /// (σ = FWHM / (2√(2 ln 2)) / pixel size). Needs a calibration in Å.
    SourceBlur {
        /// FWHM in Å, ≥ 0.
        fwhm_a: Param,
    },
    /// Scan distortions (row jitter, drift, fly-back, shear).
    Scan(ScanDistortion),
    /// Affine transform.
    Affine(Affine),
    /// Pixel-size change: the new pixel is `factor` times the old one (factor > 1 = coarser
    /// sampling, fewer pixels). The new shape is `round(n / factor)` per axis, edges aligned.
    /// Coarsening pre-filters with a Gaussian of σ = √((f² − 1)/12) px (the extra variance of
    /// an f-px box), then samples with cubic convolution.
    Resample {
        /// The factor f (0.1 ..= 10).
        factor: Param,
    },
    /// Crop to `size_px` `[h, w]`: centred, or at an integer offset drawn uniformly over all
    /// positions that fit (`random_offset`). Labels shift by the offset; those outside drop.
    Crop {
        /// Output shape `[h, w]` (px), at most the input's.
        size_px: [usize; 2],
        /// Draw the offset instead of centring. Default false.
        #[serde(default)]
        random_offset: bool,
    },
}

impl Degradation {
    /// Short name used in metadata keys.
    pub fn kind(&self) -> &'static str {
        match self {
            Degradation::Poisson { .. } => "poisson",
            Degradation::ReadNoise { .. } => "read_noise",
            Degradation::Background(_) => "background",
            Degradation::SourceBlur { .. } => "source_blur",
            Degradation::Scan(_) => "scan",
            Degradation::Affine(_) => "affine",
            Degradation::Resample { .. } => "resample",
            Degradation::Crop { .. } => "crop",
        }
    }

    /// Checks the parameter ranges without drawing.
    pub fn validate(&self) -> Result<()> {
        match self {
            Degradation::Poisson { dose } => dose.validate(),
            Degradation::ReadNoise { sigma } => sigma.validate("read_noise.sigma", 0.0, 1e30),
            Degradation::Background(b) => b.validate(),
            Degradation::SourceBlur { fwhm_a } => fwhm_a.validate("source_blur.fwhm_a", 0.0, 1e6),
            Degradation::Scan(s) => s.validate(),
            Degradation::Affine(a) => {
                a.rotation_deg.validate("affine.rotation_deg", -1e6, 1e6)?;
                a.zoom.validate("affine.zoom", 0.05, 20.0)?;
                a.shear.validate("affine.shear", -5.0, 5.0)?;
                a.shift_y_px.validate("affine.shift_y_px", -1e7, 1e7)?;
                a.shift_x_px.validate("affine.shift_x_px", -1e7, 1e7)
            }
            Degradation::Resample { factor } => factor.validate("resample.factor", 0.1, 10.0),
            Degradation::Crop { size_px, .. } => {
                if size_px[0] == 0 || size_px[1] == 0 {
                    return Err(Error::invalid(
                        "crop.size_px",
                        format!("{size_px:?} has a zero dimension"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Draws the parameters from `rng` and applies the degradation to `sample`, recording the
    /// drawn values in `sample.metadata` under `"{prefix}.{name}"`.
    pub fn apply(&self, sample: &mut Sample, rng: &mut ChaCha8Rng, prefix: &str) -> Result<()> {
        self.validate()?;
        let record = |name: &str, v: f64| (format!("{prefix}.{name}"), v);
        let mut meta: Vec<(String, f64)> = Vec::new();
        match self {
            Degradation::Poisson { dose } => {
                let (d, value) = dose.sample(rng);
                meta.push(record("dose", value));
                let seed: u64 = rng.random();
                sample.image = stem_core::noise::add_poisson_noise(sample.image.view(), d, seed)?;
            }
            Degradation::ReadNoise { sigma } => {
                let s = sigma.sample(rng);
                meta.push(record("sigma", s));
                let seed: u64 = rng.random();
                let data =
                    stem_core::noise::add_gaussian_noise(sample.image.data().view(), s, seed)?;
                sample.image = Image::with_axes(data, sample.image.axes().clone())?;
            }
            Degradation::Background(b) => {
                let drawn = b.apply(&mut sample.image, rng)?;
                for (n, v) in drawn {
                    meta.push(record(n, v));
                }
            }
            Degradation::SourceBlur { fwhm_a } => {
                let fwhm = fwhm_a.sample(rng);
                meta.push(record("fwhm_a", fwhm));
                intensity::source_blur(&mut sample.image, fwhm)?;
            }
            Degradation::Scan(s) => {
                let field = s.realise(sample.image.shape(), rng)?;
                for (n, v) in field.drawn() {
                    meta.push(record(n, v));
                }
                let shape = sample.image.shape();
                warp_sample(sample, &field, shape)?;
            }
            Degradation::Affine(a) => {
                let theta = a.rotation_deg.sample(rng);
                let zoom = a.zoom.sample(rng);
                let shear = a.shear.sample(rng);
                let ty = a.shift_y_px.sample(rng);
                let tx = a.shift_x_px.sample(rng);
                for (n, v) in [
                    ("rotation_deg", theta),
                    ("zoom", zoom),
                    ("shear", shear),
                    ("shift_y_px", ty),
                    ("shift_x_px", tx),
                ] {
                    meta.push(record(n, v));
                }
                let shape = sample.image.shape();
                let map = AffineMap::new(shape, theta, zoom, shear, [ty, tx])?;
                warp_sample(sample, &map, shape)?;
                let mut axes = sample.image.axes().clone();
                for a in &mut axes {
                    a.scale /= zoom;
                }
                set_axes(&mut sample.image, axes)?;
            }
            Degradation::Resample { factor } => {
                let f = factor.sample(rng);
                meta.push(record("factor", f));
                warp::resample(sample, f)?;
            }
            Degradation::Crop {
                size_px,
                random_offset,
            } => {
                let [ny, nx] = sample.image.shape();
                if size_px[0] > ny || size_px[1] > nx {
                    return Err(Error::invalid(
                        "crop.size_px",
                        format!("{size_px:?} exceeds the image shape [{ny}, {nx}]"),
                    ));
                }
                let room = [ny - size_px[0], nx - size_px[1]];
                let offset = if *random_offset {
                    room.map(|r| rng.random_range(0..=r))
                } else {
                    room.map(|r| r / 2)
                };
                meta.push(record("offset_y_px", offset[0] as f64));
                meta.push(record("offset_x_px", offset[1] as f64));
                let map = warp::ShiftMap {
                    shift_px: offset.map(|o| o as f64),
                };
                warp_sample(sample, &map, *size_px)?;
            }
        }
        sample.metadata.extend(meta);
        Ok(())
    }
}

/// Replaces the calibration of `image` (sizes must match).
pub(crate) fn set_axes(image: &mut Image<f32>, axes: [stem_core::Axis; 2]) -> Result<()> {
    let old = std::mem::replace(image, Image::new(Array2::zeros((0, 0))));
    *image = Image::with_axes(old.into_array(), axes)?;
    Ok(())
}

/// A sequence of degradations applied in order. JSON: an array of [`Degradation`] objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Chain(pub Vec<Degradation>);

impl Chain {
    /// Checks every step's parameter ranges.
    pub fn validate(&self) -> Result<()> {
        self.0.iter().try_for_each(Degradation::validate)
    }

    /// Applies every step to `sample`. Step `k` draws from `ChaCha8Rng::seed_from_u64(seed)`
    /// on stream `k` and records its draws as `"{k}.{kind}.{name}"` in the metadata, so equal
    /// seeds give equal results on any thread count.
    ///
    /// Errors: invalid parameters (checked before anything is changed), and what a step can
    /// fail with (e.g. a dose in e/Å² on an uncalibrated image); on error the sample may be
    /// partly degraded.
    pub fn apply(&self, sample: &mut Sample, seed: u64) -> Result<()> {
        self.validate()?;
        for (k, d) in self.0.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(k as u64);
            d.apply(sample, &mut rng, &format!("{k}.{}", d.kind()))?;
        }
        Ok(())
    }
}
