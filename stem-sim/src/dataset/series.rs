//! Image series with known rigid drift and non-rigid scan distortions (registration truth).

use super::lattice::LatticeGenerator;
use crate::degrade::{
    DisplacementField, Param, Sample, ScanDistortion, ScanField, Warp, warp_sample,
};
use crate::error::{Error, Result};
use ndarray::Zip;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use stem_core::ImageView;

/// A series of frames of one specimen: frame f shows the specimen at
/// `p + s_f + D_f(p)` (px), with a rigid shift `s_f = f · drift_px_per_frame + j_f` (a known
/// linear drift plus a random part `j_f`, both components drawn from `shift_px`) and a scan
/// distortion `D_f` drawn from `scan` (see [`ScanDistortion`]), sampled with cubic
/// convolution from a specimen rendered `margin_px` larger on every side (so no frame sees past
/// the specimen while `|s| + |D| < margin_px`).
///
/// Labels of frame f: the specimen's columns mapped exactly into the frame, and the
/// displacement field `d_f(p) = s_f + D_f(p)` (the ARCHITECTURE.md `shift` convention:
/// frame pixel p shows specimen point p + d). Metadata: `generator.shift_y_px` / `_x_px`
/// (the drawn `s_f`), `generator.effective_shift_y_px` / `_x_px` (the mean of `d_f`, what a
/// translation-only registration should return) and the drawn scan parameters.
/// The undistorted specimen window is [`SeriesGenerator::reference`].
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::dataset::SeriesGenerator;
///
/// let g: SeriesGenerator = serde_json::from_str(r#"{
///     "specimen": {"cell": {"preset": "srtio3001"}, "shape": [64, 64]},
///     "shift_px": [-4, 4], "margin_px": 12,
///     "scan": {"sine_amplitude_px": 1.0, "sine_period_rows": 50}}"#)?;
/// let specimen = g.specimen_with_margin(&mut ChaCha8Rng::seed_from_u64(0))?;
/// let frame = g.frame(&specimen, 0, &mut ChaCha8Rng::seed_from_u64(1))?;
/// let d = frame.labels.displacement.as_ref().unwrap();
/// // The drawn rigid shift plus a sinusoid of amplitude 1 px in x.
/// let sx = frame.metadata["generator.shift_x_px"];
/// assert!(d.dx_px.iter().all(|v| (v - sx).abs() <= 1.0 + 1e-12));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesGenerator {
    /// The specimen; its `shape` is the frame shape.
    pub specimen: LatticeGenerator,
    /// Random part of the rigid shift per axis (px). Default uniform in `[−12, 12]`.
    #[serde(default = "default_shift")]
    pub shift_px: Param,
    /// Linear drift `[dy, dx]` per frame (px): frame f is shifted by `f ·` this on top of the
    /// random part. Default `[0, 0]`.
    #[serde(default)]
    pub drift_px_per_frame: [f64; 2],
    /// Scan distortion of each frame.
    #[serde(default)]
    pub scan: ScanDistortion,
    /// Specimen margin around the frame (px, ≤ 4096). Default 32.
    #[serde(default = "default_margin")]
    pub margin_px: usize,
}

fn default_shift() -> Param {
    Param::Uniform([-12.0, 12.0])
}
fn default_margin() -> usize {
    32
}

/// The map of one frame: specimen-image position of frame pixel p is
/// `p + margin + s + D(p)`.
struct FrameMap<'a> {
    field: &'a ScanField,
    offset: [f64; 2],
}

impl Warp for FrameMap<'_> {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        let q = self.field.source(p);
        [q[0] + self.offset[0], q[1] + self.offset[1]]
    }
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        self.field
            .target([q[0] - self.offset[0], q[1] - self.offset[1]])
    }
}

impl SeriesGenerator {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        self.specimen.validate()?;
        self.shift_px.validate("shift_px", -1e4, 1e4)?;
        self.scan.validate()?;
        if self.margin_px > 4096 {
            return Err(Error::invalid(
                "margin_px",
                format!("must be <= 4096, got {}", self.margin_px),
            ));
        }
        if self.drift_px_per_frame.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "drift_px_per_frame",
                format!("must be finite, got {:?}", self.drift_px_per_frame),
            ));
        }
        self.check_margin(0)
    }

    /// Checks that the margin covers the largest rigid shift of frames `0..frames`.
    pub(crate) fn check_margin(&self, frames: usize) -> Result<()> {
        let last = frames.saturating_sub(1) as f64;
        let drift = self.drift_px_per_frame.map(|v| (v * last).abs());
        let max_shift = self.shift_px.max_abs() + drift[0].max(drift[1]);
        if max_shift >= self.margin_px as f64 {
            return Err(Error::invalid(
                "margin_px",
                format!(
                    "{} px does not cover rigid shifts up to {max_shift} px",
                    self.margin_px
                ),
            ));
        }
        Ok(())
    }

    fn big_shape(&self) -> [usize; 2] {
        self.specimen.shape.map(|n| n + 2 * self.margin_px)
    }

    /// The specimen rendered with its margin, drawn from `specimen_rng` (the same for every
    /// frame of a series).
    pub fn specimen_with_margin(&self, specimen_rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.validate()?;
        self.specimen.generate_shape(self.big_shape(), specimen_rng)
    }

    /// The undistorted specimen window (frame shape, at the margin) with its labels: the
    /// reference that registration should recover.
    pub fn reference(&self, specimen_rng: &mut ChaCha8Rng) -> Result<Sample> {
        let mut big = self.specimen_with_margin(specimen_rng)?;
        let m = self.margin_px as f64;
        let shift = ShiftOnly { offset: [m, m] };
        warp_sample(&mut big, &shift, self.specimen.shape)?;
        Ok(big)
    }

    /// Frame `index` from the specimen (as returned by [`Self::specimen_with_margin`]) and
    /// the frame's own `rng`.
    pub fn frame(&self, specimen: &Sample, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        let f = index as f64;
        let sy = f * self.drift_px_per_frame[0] + self.shift_px.sample(rng);
        let sx = f * self.drift_px_per_frame[1] + self.shift_px.sample(rng);
        let field = self.scan.realise(self.specimen.shape, rng)?;
        let mut frame = specimen.clone();
        frame.labels.displacement = None;
        distort_frame(
            &mut frame,
            &field,
            [sy, sx],
            self.margin_px as f64,
            self.specimen.shape,
        )?;
        let m = &mut frame.metadata;
        m.insert("generator.shift_y_px".into(), sy);
        m.insert("generator.shift_x_px".into(), sx);
        if let Some(d) = &frame.labels.displacement {
            let e = d.mean();
            m.insert("generator.effective_shift_y_px".into(), e[0]);
            m.insert("generator.effective_shift_x_px".into(), e[1]);
        }
        for (n, v) in field.drawn() {
            m.insert(format!("generator.scan.{n}"), v);
        }
        Ok(frame)
    }
}

/// Integer-free translation used for the reference window.
struct ShiftOnly {
    offset: [f64; 2],
}

impl Warp for ShiftOnly {
    fn source(&self, p: [f64; 2]) -> [f64; 2] {
        [p[0] + self.offset[0], p[1] + self.offset[1]]
    }
    fn target(&self, q: [f64; 2]) -> Result<[f64; 2]> {
        Ok([q[0] - self.offset[0], q[1] - self.offset[1]])
    }
}

/// Turns `specimen` (any calibrated image with labels, e.g. a multislice image later) into one
/// distorted frame of `frame_shape`: frame pixel p shows the specimen at
/// `p + margin + shift + D(p)`. Sets `labels.displacement` to `d(p) = shift + D(p)` (relative
/// to the specimen window that starts at `margin`).
///
/// Errors: those of [`warp_sample`] (e.g. a folding distortion).
pub fn distort_frame(
    specimen: &mut Sample,
    field: &ScanField,
    shift_px: [f64; 2],
    margin_px: f64,
    frame_shape: [usize; 2],
) -> Result<()> {
    let map = FrameMap {
        field,
        offset: [margin_px + shift_px[0], margin_px + shift_px[1]],
    };
    warp_sample(specimen, &map, frame_shape)?;
    let mut d = DisplacementField::zeros(frame_shape);
    Zip::indexed(d.dy_px.rows_mut())
        .and(d.dx_px.rows_mut())
        .par_for_each(|r, mut dy, mut dx| {
            for c in 0..dy.len() {
                let v = field.displacement([r as f64, c as f64]);
                dy[c] = shift_px[0] + v[0];
                dx[c] = shift_px[1] + v[1];
            }
        });
    specimen.labels.displacement = Some(d);
    Ok(())
}

/// Convenience for callers with a bare specimen image (no labels): [`distort_frame`] on a
/// copy; returns the frame and its displacement field.
pub fn distort_image(
    specimen: ImageView<'_, f32>,
    field: &ScanField,
    shift_px: [f64; 2],
    margin_px: f64,
    frame_shape: [usize; 2],
) -> Result<(stem_core::Image<f32>, DisplacementField)> {
    let mut s = Sample {
        image: specimen.to_owned(),
        labels: Default::default(),
        metadata: Default::default(),
        payload: Default::default(),
    };
    distort_frame(&mut s, field, shift_px, margin_px, frame_shape)?;
    let d = s
        .labels
        .displacement
        .unwrap_or_else(|| DisplacementField::zeros(frame_shape));
    Ok((s.image, d))
}
