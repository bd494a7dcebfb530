//! 8-bit PNG export: percentile contrast stretch, grayscale and RGB files, marker overlays.
//!
//! Images are `[y, x]` arrays (numpy order); RGB images are `[y, x, 3]`. Marker positions are
//! `[y, x]` in pixels, with pixel centres at integer coordinates.
//!
//! ```
//! use ndarray::Array2;
//! use stem_core::io::png::{draw_markers, gray_to_rgb, save_png, save_rgb_png, stretch_to_u8, PngOptions};
//!
//! let image = Array2::from_shape_fn((32, 48), |(y, x)| (y * 48 + x) as f32);
//! let dir = std::env::temp_dir();
//! let id = std::process::id();
//! save_png(dir.join(format!("stem_png_doc_{id}.png")), image.view(), &PngOptions::default())?;
//!
//! // Two sets of detected columns in two colours on the stretched image.
//! let gray = stretch_to_u8(image.view(), &PngOptions::default())?;
//! let mut rgb = gray_to_rgb(&gray);
//! draw_markers(&mut rgb, &[[10.0, 12.0], [20.2, 30.7]], [255, 0, 0], 2)?;
//! draw_markers(&mut rgb, &[[5.0, 40.0]], [0, 255, 0], 2)?;
//! assert_eq!(rgb.shape(), &[32, 48, 3]);
//! assert_eq!([rgb[[20, 31, 0]], rgb[[20, 31, 1]]], [255, 0]);
//! save_rgb_png(dir.join(format!("stem_png_doc_rgb_{id}.png")), &rgb)?;
//! # std::fs::remove_file(dir.join(format!("stem_png_doc_{id}.png"))).ok();
//! # std::fs::remove_file(dir.join(format!("stem_png_doc_rgb_{id}.png"))).ok();
//! # Ok::<(), stem_core::Error>(())
//! ```

use crate::error::{Error, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageError};
use ndarray::{Array2, Array3, ArrayView2, Axis as NdAxis};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Contrast settings for converting an `f32` image to 8 bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PngOptions {
    /// Percentile (0–100) of the finite values mapped to black. Default 0.5.
    pub low_percentile: f64,
    /// Percentile (0–100) of the finite values mapped to white. Default 99.5.
    pub high_percentile: f64,
    /// Apply `ln(1 + max(v − min, 0))` (min over the finite values) before the stretch, to show
    /// the weak tails of diffraction patterns. Default false.
    pub log_scale: bool,
}

impl Default for PngOptions {
    fn default() -> Self {
        PngOptions {
            low_percentile: 0.5,
            high_percentile: 99.5,
            log_scale: false,
        }
    }
}

/// Converts an image to 8 bits with a percentile stretch.
///
/// With `lo` and `hi` the `low_percentile` and `high_percentile` of the finite (optionally
/// log-scaled) values, linearly interpolated between order statistics as numpy's default
/// `np.percentile`, each pixel becomes `round(255 · clamp((v − lo) / (hi − lo), 0, 1))`.
/// Non-finite pixels become 0. When `hi == lo` (e.g. a constant image) pixels above `hi`
/// become 255 and all others 0, so a constant image is all black; an image with no finite
/// value is all black too.
///
/// # Errors
/// [`Error::EmptyInput`] for an image with no pixels; [`Error::InvalidParameter`] unless
/// `0 ≤ low_percentile < high_percentile ≤ 100`.
pub fn stretch_to_u8(image: ArrayView2<'_, f32>, options: &PngOptions) -> Result<Array2<u8>> {
    let (low, high) = (options.low_percentile, options.high_percentile);
    if !(low.is_finite() && high.is_finite() && 0.0 <= low && low < high && high <= 100.0) {
        return Err(Error::invalid(
            "percentiles",
            format!("need 0 <= low < high <= 100, got low {low}, high {high}"),
        ));
    }
    if image.is_empty() {
        return Err(Error::EmptyInput { what: "image" });
    }
    let min = image
        .iter()
        .filter(|v| v.is_finite())
        .fold(f32::INFINITY, |m, &v| m.min(v));
    let log_scale = options.log_scale;
    let transform = |v: f32| -> f32 {
        if log_scale {
            (f64::from(v) - f64::from(min)).max(0.0).ln_1p() as f32
        } else {
            v
        }
    };
    let mut values: Vec<f32> = image
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| transform(v))
        .collect();
    if values.is_empty() {
        return Ok(Array2::zeros(image.raw_dim()));
    }
    let lo = percentile(&mut values, low);
    let hi = percentile(&mut values, high);
    drop(values);
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    Ok(image.mapv(|v| {
        if !v.is_finite() {
            return 0;
        }
        let t = f64::from(transform(v));
        if hi > lo {
            ((t - lo) * scale).round().clamp(0.0, 255.0) as u8
        } else if t > hi {
            255
        } else {
            0
        }
    }))
}

/// The `p`-th percentile (0–100) of non-empty finite `values`, linear interpolation between
/// order statistics (numpy's default). Reorders `values`.
fn percentile(values: &mut [f32], p: f64) -> f64 {
    let n = values.len();
    let rank = p / 100.0 * (n - 1) as f64;
    let below = (rank.floor() as usize).min(n - 1);
    let frac = rank - below as f64;
    let (_, &mut at, above) = values.select_nth_unstable_by(below, f32::total_cmp);
    let a = f64::from(at);
    match above.iter().copied().reduce(f32::min) {
        Some(b) if frac > 0.0 => a + frac * (f64::from(b) - a),
        _ => a,
    }
}

/// Stretches `image` with [`stretch_to_u8`] and writes it as an 8-bit grayscale PNG.
pub fn save_png(
    path: impl AsRef<Path>,
    image: ArrayView2<'_, f32>,
    options: &PngOptions,
) -> Result<()> {
    save_gray_png(path, &stretch_to_u8(image, options)?)
}

/// Writes an 8-bit grayscale PNG (`[y, x]`, row 0 at the top).
///
/// # Errors
/// [`Error::EmptyInput`] for an image with no pixels, [`Error::InvalidParameter`] for a side
/// longer than 2^32 − 1, [`Error::Io`] when the file cannot be written.
pub fn save_gray_png(path: impl AsRef<Path>, gray: &Array2<u8>) -> Result<()> {
    let (h, w) = gray.dim();
    let pixels: Vec<u8> = gray.iter().copied().collect();
    write_png(path.as_ref(), &pixels, [h, w], ExtendedColorType::L8)
}

/// Writes an 8-bit RGB PNG from a `[y, x, 3]` array.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the last axis has length 3; otherwise as
/// [`save_gray_png`].
pub fn save_rgb_png(path: impl AsRef<Path>, rgb: &Array3<u8>) -> Result<()> {
    let (h, w, c) = rgb.dim();
    if c != 3 {
        return Err(Error::ShapeMismatch {
            expected: vec![h, w, 3],
            found: vec![h, w, c],
        });
    }
    let pixels: Vec<u8> = rgb.iter().copied().collect();
    write_png(path.as_ref(), &pixels, [h, w], ExtendedColorType::Rgb8)
}

fn write_png(
    path: &Path,
    pixels: &[u8],
    [h, w]: [usize; 2],
    color: ExtendedColorType,
) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(Error::EmptyInput { what: "image" });
    }
    let side = |n: usize| {
        u32::try_from(n)
            .map_err(|_| Error::invalid("image", format!("side {n} px exceeds the PNG limit")))
    };
    let (height, width) = (side(h)?, side(w)?);
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut writer = BufWriter::new(file);
    PngEncoder::new(&mut writer)
        .write_image(pixels, width, height, color)
        .map_err(|e| match e {
            ImageError::IoError(io) => Error::io(path, io),
            other => Error::io(path, std::io::Error::other(other.to_string())),
        })?;
    writer.flush().map_err(|e| Error::io(path, e))
}

/// Expands a grayscale image `[y, x]` to RGB `[y, x, 3]` (equal channels).
pub fn gray_to_rgb(gray: &Array2<u8>) -> Array3<u8> {
    let (h, w) = gray.dim();
    Array3::from_shape_fn((h, w, 3), |(y, x, _)| gray[[y, x]])
}

/// Draws a `+` marker of arm length `radius_px` (so `4 · radius_px + 1` pixels) in `color`
/// at each `[y, x]` point (px, rounded to the nearest pixel) of an RGB image `[y, x, 3]`.
///
/// Markers are clipped at the image edges (a point outside the image still draws the part of
/// its arms that falls inside); non-finite points are skipped. Call it once per point set to
/// overlay several sets in different colours.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the last axis has length 3.
pub fn draw_markers(
    rgb: &mut Array3<u8>,
    points: &[[f64; 2]],
    color: [u8; 3],
    radius_px: usize,
) -> Result<()> {
    let (h, w, c) = rgb.dim();
    if c != 3 {
        return Err(Error::ShapeMismatch {
            expected: vec![h, w, 3],
            found: vec![h, w, c],
        });
    }
    // Arms longer than the image cannot add pixels; keeps the arithmetic far from overflow.
    let r = radius_px.min(h + w) as i64;
    let (h, w) = (h as i64, w as i64);
    let mut paint = |y: i64, x: i64| {
        let mut px = rgb.index_axis_mut(NdAxis(0), y as usize);
        let mut px = px.index_axis_mut(NdAxis(0), x as usize);
        for (dst, &src) in px.iter_mut().zip(&color) {
            *dst = src;
        }
    };
    for &[py, px] in points {
        if !(py.is_finite() && px.is_finite()) {
            continue;
        }
        // `as` saturates far-away points at ±2^63, which then clip to nothing.
        let (cy, cx) = (py.round() as i64, px.round() as i64);
        if (0..w).contains(&cx) {
            for y in cy.saturating_sub(r).max(0)..=cy.saturating_add(r).min(h - 1) {
                paint(y, cx);
            }
        }
        if (0..h).contains(&cy) {
            for x in cx.saturating_sub(r).max(0)..=cx.saturating_add(r).min(w - 1) {
                paint(cy, x);
            }
        }
    }
    Ok(())
}

/// [`gray_to_rgb`] followed by [`draw_markers`]: `+` markers of arm `radius_px` in `color`
/// at `[y, x]` points (px) on a grayscale image, e.g. to show detected atom columns.
pub fn overlay_markers(
    gray: &Array2<u8>,
    points: &[[f64; 2]],
    color: [u8; 3],
    radius_px: usize,
) -> Array3<u8> {
    let mut rgb = gray_to_rgb(gray);
    // The RGB image made above always has three channels, so drawing cannot fail.
    let _ = draw_markers(&mut rgb, points, color, radius_px);
    rgb
}

#[cfg(test)]
mod tests;
