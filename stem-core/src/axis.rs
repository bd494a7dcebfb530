//! Calibrated axes.

use serde::{Deserialize, Serialize};

/// One calibrated array axis: coordinate of index `i` is `offset + i * scale` in `units`.
///
/// Follows HyperSpy's axis idea. Names are free text (`"y"`, `"x"`, `"scan_y"`, `"k_x"`,
/// `"energy"`, `"frame"`); units are free text too, with `"px"` meaning uncalibrated pixels,
/// `"Å"` real space, `"1/Å"` or `"mrad"` reciprocal space, `"eV"` energy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// Name of the axis.
    pub name: String,
    /// Number of samples along the axis.
    pub size: usize,
    /// Step between samples, in `units`.
    pub scale: f64,
    /// Coordinate of index 0, in `units`.
    pub offset: f64,
    /// Unit of `scale` and `offset`.
    pub units: String,
}

impl Axis {
    /// A calibrated axis.
    pub fn new(
        name: impl Into<String>,
        size: usize,
        scale: f64,
        offset: f64,
        units: impl Into<String>,
    ) -> Self {
        Axis {
            name: name.into(),
            size,
            scale,
            offset,
            units: units.into(),
        }
    }

    /// An uncalibrated axis: scale 1, offset 0, units `"px"`.
    pub fn pixels(name: impl Into<String>, size: usize) -> Self {
        Axis::new(name, size, 1.0, 0.0, "px")
    }

    /// Coordinate of index `i`: `offset + i * scale`.
    pub fn coordinate(&self, i: usize) -> f64 {
        self.offset + i as f64 * self.scale
    }

    /// Coordinates of all samples.
    pub fn coordinates(&self) -> Vec<f64> {
        (0..self.size).map(|i| self.coordinate(i)).collect()
    }

    /// Fractional index of a coordinate (inverse of [`coordinate`](Self::coordinate)).
    /// Returns NaN for a zero scale.
    pub fn index_of(&self, coordinate: f64) -> f64 {
        (coordinate - self.offset) / self.scale
    }

    /// Whether this axis carries a physical calibration (units other than `"px"` or empty).
    pub fn is_calibrated(&self) -> bool {
        !(self.units.is_empty() || self.units == "px")
    }
}
