//! Synthetic atomic-resolution images with known column positions (ground truth).
//!
//! A projected crystal is described by a 2-D unit cell (two lattice vectors in Å, `[y, x]`) and a
//! motif of columns (fractional coordinates plus the atomic numbers in the column). Each column is
//! drawn as an isotropic Gaussian whose amplitude follows the incoherent HAADF "Z-contrast" rule
//! `A = Σ_atoms Z^n` (Pennycook's approximation, n ≈ 1.7 by default), normalised so that the
//! brightest motif column has amplitude 1. This is a *fast stand-in* for a multislice simulation:
//! it gets the geometry exactly right (which is what column-finding tests need) and the contrast
//! only roughly.
//!
//! Pixel `(i, j)` has its centre at coordinate `(i, j)` px, i.e. at `(i·s, j·s)` Å for sampling
//! `s` Å/px. Labels list every column whose centre lies inside the image
//! (`0 ≤ y ≤ ny−1`, `0 ≤ x ≤ nx−1`); columns just outside still contribute their tails.
//!
//! ```
//! use stem_core::synth::{LatticeImageConfig, UnitCell2D};
//!
//! let cfg = LatticeImageConfig {
//!     shape: [64, 64],
//!     sampling_a: 0.2,
//!     ..LatticeImageConfig::new(UnitCell2D::srtio3_001())
//! };
//! let out = cfg.render().unwrap();
//! assert_eq!(out.image.shape(), [64, 64]);
//! // 12.8 Å field of view: about (12.8 / 3.905)^2 ≈ 11 cells, 4 columns per cell.
//! assert!(out.columns.len() > 30);
//! ```

use crate::error::{Error, Result};
use crate::image::Image;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// One column of the motif.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MotifColumn {
    /// Label of the column species, e.g. `"Sr"` or `"TiO"`.
    pub label: String,
    /// Fractional coordinates `[f1, f2]` along the two lattice vectors.
    pub frac: [f64; 2],
    /// Atomic numbers of the atoms in one repeat of the column (e.g. `[22, 8]` for Ti–O).
    pub z: Vec<u32>,
}

/// A 2-D (projected) unit cell: lattice vectors in Å as `[y, x]`, and a motif.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitCell2D {
    /// First lattice vector `[y, x]` in Å.
    pub a1_a: [f64; 2],
    /// Second lattice vector `[y, x]` in Å.
    pub a2_a: [f64; 2],
    /// Columns in the cell.
    pub motif: Vec<MotifColumn>,
}

impl UnitCell2D {
    /// SrTiO3 viewed along \[001\], a = 3.905 Å: Sr columns at the corners, Ti–O columns at the
    /// centre, pure O columns on the edges.
    pub fn srtio3_001() -> Self {
        let a = 3.905;
        UnitCell2D {
            a1_a: [a, 0.0],
            a2_a: [0.0, a],
            motif: vec![
                col("Sr", [0.0, 0.0], &[38]),
                col("TiO", [0.5, 0.5], &[22, 8]),
                col("O", [0.5, 0.0], &[8]),
                col("O", [0.0, 0.5], &[8]),
            ],
        }
    }

    /// A square lattice of one species with lattice constant `a_a` Å.
    pub fn square(a_a: f64, z: u32) -> Self {
        UnitCell2D {
            a1_a: [a_a, 0.0],
            a2_a: [0.0, a_a],
            motif: vec![col("A", [0.0, 0.0], &[z])],
        }
    }

    /// A two-species oblique lattice (for robustness tests of lattice-based algorithms):
    /// |a1| = 4.0 Å, |a2| = 3.2 Å at 75°, a heavy column (Z = 74) at the origin and a light one
    /// (Z = 16) at (0.5, 0.5).
    pub fn oblique_two_species() -> Self {
        let g = 75f64.to_radians();
        UnitCell2D {
            a1_a: [0.0, 4.0],
            a2_a: [3.2 * g.sin(), 3.2 * g.cos()],
            motif: vec![col("W", [0.0, 0.0], &[74]), col("S", [0.5, 0.5], &[16])],
        }
    }

    fn validate(&self) -> Result<()> {
        let det = self.a1_a[0] * self.a2_a[1] - self.a1_a[1] * self.a2_a[0];
        let all = self.a1_a.iter().chain(self.a2_a.iter());
        if all.clone().any(|v| !v.is_finite()) || det.abs() < 1e-6 {
            return Err(Error::invalid(
                "unit_cell",
                format!(
                    "lattice vectors {:?}, {:?} are degenerate or non-finite",
                    self.a1_a, self.a2_a
                ),
            ));
        }
        if self.motif.is_empty() {
            return Err(Error::EmptyInput { what: "motif" });
        }
        for m in &self.motif {
            if m.z.is_empty() || m.z.iter().any(|&z| z == 0 || z > 118) {
                return Err(Error::invalid(
                    "motif.z",
                    format!("column {:?} has atomic numbers {:?}", m.label, m.z),
                ));
            }
            if m.frac.iter().any(|f| !f.is_finite()) {
                return Err(Error::invalid(
                    "motif.frac",
                    format!("column {:?} at {:?}", m.label, m.frac),
                ));
            }
        }
        Ok(())
    }
}

fn col(label: &str, frac: [f64; 2], z: &[u32]) -> MotifColumn {
    MotifColumn {
        label: label.into(),
        frac,
        z: z.to_vec(),
    }
}

/// How to render a lattice image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatticeImageConfig {
    /// The projected crystal.
    pub cell: UnitCell2D,
    /// Image shape `[ny, nx]` in pixels. Default `[256, 256]`.
    pub shape: [usize; 2],
    /// Pixel size in Å (square pixels). Default 0.15 Å.
    pub sampling_a: f64,
    /// Rotation of the lattice in degrees, counter-clockwise in the displayed image
    /// (y down). Default 0.
    pub rotation_deg: f64,
    /// Position of the lattice origin `[y, x]` in Å. Default `[1.0, 1.0]`.
    pub origin_a: [f64; 2],
    /// Gaussian column width σ in Å. Default 0.45 Å.
    pub column_sigma_a: f64,
    /// Exponent n of the Z-contrast rule `A = Σ Z^n`. Default 1.7.
    pub z_exponent: f64,
    /// Constant background added everywhere (same units as the amplitudes, where the brightest
    /// column has amplitude 1). Default 0.05.
    pub background: f64,
}

impl LatticeImageConfig {
    /// Defaults for a given cell.
    pub fn new(cell: UnitCell2D) -> Self {
        LatticeImageConfig {
            cell,
            shape: [256, 256],
            sampling_a: 0.15,
            rotation_deg: 0.0,
            origin_a: [1.0, 1.0],
            column_sigma_a: 0.45,
            z_exponent: 1.7,
            background: 0.05,
        }
    }

    fn validate(&self) -> Result<()> {
        self.cell.validate()?;
        if self.shape[0] == 0 || self.shape[1] == 0 {
            return Err(Error::invalid(
                "shape",
                format!("{:?} has a zero dimension", self.shape),
            ));
        }
        let positive = [
            ("sampling_a", self.sampling_a),
            ("column_sigma_a", self.column_sigma_a),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("must be finite and > 0, got {v}"),
                ));
            }
        }
        let finite = [
            ("rotation_deg", self.rotation_deg),
            ("z_exponent", self.z_exponent),
            ("background", self.background),
            ("origin_a", self.origin_a[0]),
            ("origin_a", self.origin_a[1]),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(Error::invalid(name, format!("must be finite, got {v}")));
            }
        }
        Ok(())
    }

    /// All column positions (px, `[y, x]`) with motif index, including those within `margin_px`
    /// outside the image.
    fn column_positions(&self, margin_px: f64) -> Vec<([f64; 2], usize)> {
        lattice_sites(
            &self.cell,
            self.shape,
            self.sampling_a,
            self.rotation_deg,
            self.origin_a,
            margin_px,
        )
    }

    /// Renders the image and its labels.
    ///
    /// The image is calibrated in Å. Cost: O(columns × (8σ/s)²).
    pub fn render(&self) -> Result<LatticeImage> {
        self.validate()?;
        let weights: Vec<f64> = self
            .cell
            .motif
            .iter()
            .map(|m| {
                m.z.iter()
                    .map(|&z| f64::from(z).powf(self.z_exponent))
                    .sum()
            })
            .collect();
        let wmax = weights.iter().cloned().fold(f64::MIN, f64::max);
        let amps: Vec<f64> = weights.iter().map(|w| w / wmax).collect();

        let sigma_px = self.column_sigma_a / self.sampling_a;
        let reach = (4.0 * sigma_px).ceil();
        let [ny, nx] = self.shape;
        let mut data = Array2::<f64>::from_elem((ny, nx), self.background);
        let inv2s2 = 1.0 / (2.0 * sigma_px * sigma_px);
        let mut columns = Vec::new();
        for (p, m) in self.column_positions(reach) {
            let amp = amps[m];
            let y0 = (p[0] - reach).floor().max(0.0) as usize;
            let y1 = ((p[0] + reach).ceil()).min(ny as f64 - 1.0);
            let x0 = (p[1] - reach).floor().max(0.0) as usize;
            let x1 = ((p[1] + reach).ceil()).min(nx as f64 - 1.0);
            if y1 >= 0.0 && x1 >= 0.0 {
                for i in y0..=(y1 as usize) {
                    let dy2 = (i as f64 - p[0]).powi(2);
                    for j in x0..=(x1 as usize) {
                        let d2 = dy2 + (j as f64 - p[1]).powi(2);
                        data[[i, j]] += amp * (-d2 * inv2s2).exp();
                    }
                }
            }
            let inside =
                p[0] >= 0.0 && p[0] <= ny as f64 - 1.0 && p[1] >= 0.0 && p[1] <= nx as f64 - 1.0;
            if inside {
                columns.push(ColumnLabel {
                    position_px: p,
                    motif_index: m,
                    label: self.cell.motif[m].label.clone(),
                    amplitude: amp,
                });
            }
        }
        let image = Image::new(data.mapv(|v| v as f32)).with_sampling_a(self.sampling_a);
        Ok(LatticeImage {
            image,
            columns,
            sigma_px,
        })
    }
}

/// The label of one rendered column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnLabel {
    /// Exact centre `[y, x]` in px.
    pub position_px: [f64; 2],
    /// Index into the motif.
    pub motif_index: usize,
    /// The motif column's label.
    pub label: String,
    /// Peak amplitude above background (brightest motif column = 1).
    pub amplitude: f64,
}

/// A rendered lattice image and its exact labels.
#[derive(Clone, Debug)]
pub struct LatticeImage {
    /// Noise-free image, calibrated in Å.
    pub image: Image<f32>,
    /// Every column whose centre lies inside the image.
    pub columns: Vec<ColumnLabel>,
    /// Column width σ in px.
    pub sigma_px: f64,
}

impl LatticeImage {
    /// Positions `[y, x]` (px) of the columns whose amplitude is at least `min_amplitude`
    /// (e.g. 0.3 keeps the cation columns of SrTiO3 and drops the faint O columns).
    pub fn positions_with_min_amplitude(&self, min_amplitude: f64) -> Vec<[f64; 2]> {
        self.columns
            .iter()
            .filter(|c| c.amplitude >= min_amplitude)
            .map(|c| c.position_px)
            .collect()
    }
}

/// Every site of `cell` (position in px `[y, x]`, motif index) on an image of `shape` px at
/// `sampling_a` Å/px, the lattice rotated by `rotation_deg` (counter-clockwise as displayed, y
/// down) and its origin at `origin_a` (Å, `[y, x]`), keeping the sites within `margin_px` of the
/// image (inclusive; pixel `(i, j)` is centred at `(i, j)`). Order: lattice index `i`, then `j`,
/// then motif index.
///
/// ```
/// use stem_core::synth::{lattice_sites, UnitCell2D};
/// let sites = lattice_sites(&UnitCell2D::square(4.0, 79), [16, 16], 1.0, 0.0, [0.0, 0.0], 0.0);
/// assert_eq!(sites.len(), 16); // (0, 4, 8, 12) px on both axes
/// ```
pub fn lattice_sites(
    cell: &UnitCell2D,
    shape: [usize; 2],
    sampling_a: f64,
    rotation_deg: f64,
    origin_a: [f64; 2],
    margin_px: f64,
) -> Vec<([f64; 2], usize)> {
    let s = sampling_a;
    let (sin, cos) = rotation_deg.to_radians().sin_cos();
    // Rotate [y, x] by θ counter-clockwise as displayed with y pointing down.
    let rot = |v: [f64; 2]| [v[0] * cos - v[1] * sin, v[0] * sin + v[1] * cos];
    let a1 = rot(cell.a1_a).map(|v| v / s);
    let a2 = rot(cell.a2_a).map(|v| v / s);
    let o = [origin_a[0] / s, origin_a[1] / s];
    let [ny, nx] = shape.map(|n| n as f64);
    // Range of lattice indices: solve for the corners of the padded image.
    let det = a1[0] * a2[1] - a1[1] * a2[0];
    let corners = [
        [-margin_px, -margin_px],
        [-margin_px, nx + margin_px],
        [ny + margin_px, -margin_px],
        [ny + margin_px, nx + margin_px],
    ];
    let (mut lo1, mut hi1, mut lo2, mut hi2) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in corners {
        let d = [c[0] - o[0], c[1] - o[1]];
        let u = (d[0] * a2[1] - d[1] * a2[0]) / det;
        let v = (a1[0] * d[1] - a1[1] * d[0]) / det;
        lo1 = lo1.min(u);
        hi1 = hi1.max(u);
        lo2 = lo2.min(v);
        hi2 = hi2.max(v);
    }
    let mut out = Vec::new();
    for i in (lo1.floor() as i64 - 1)..=(hi1.ceil() as i64 + 1) {
        for j in (lo2.floor() as i64 - 1)..=(hi2.ceil() as i64 + 1) {
            for (m, site) in cell.motif.iter().enumerate() {
                let f1 = i as f64 + site.frac[0];
                let f2 = j as f64 + site.frac[1];
                let p = [
                    o[0] + f1 * a1[0] + f2 * a2[0],
                    o[1] + f1 * a1[1] + f2 * a2[1],
                ];
                if p[0] >= -margin_px
                    && p[0] <= ny - 1.0 + margin_px
                    && p[1] >= -margin_px
                    && p[1] <= nx - 1.0 + margin_px
                {
                    out.push((p, m));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_values_sit_on_labels() {
        // Columns on exact pixel centres: the pixel value there is amplitude + background
        // plus the tails of neighbours, which are negligible at 18 px separation and σ = 3 px.
        let cfg = LatticeImageConfig {
            shape: [80, 80],
            sampling_a: 0.15,
            origin_a: [1.5, 1.5],
            ..LatticeImageConfig::new(UnitCell2D::square(3.0, 50))
        };
        let out = cfg.render().unwrap();
        // a = 20 px, origin at 10 px: columns at 10, 30, 50, 70 on each axis.
        assert_eq!(out.columns.len(), 16);
        for c in &out.columns {
            let [y, x] = c.position_px;
            assert!((y - y.round()).abs() < 1e-9 && (x - x.round()).abs() < 1e-9);
            let v = out.image.data()[[y.round() as usize, x.round() as usize]];
            assert!((f64::from(v) - 1.05).abs() < 1e-4, "value {v}");
        }
        // Halfway between columns (10 px away from each of 4 columns at σ = 3 px):
        let mid = out.image.data()[[20, 20]];
        let expected = 0.05 + 4.0 * (-(200.0f64) / 18.0).exp();
        assert!((f64::from(mid) - expected).abs() < 1e-5);
    }

    #[test]
    fn srtio3_amplitudes_follow_z_rule() {
        let out = LatticeImageConfig::new(UnitCell2D::srtio3_001())
            .render()
            .unwrap();
        let amp = |l: &str| {
            out.columns
                .iter()
                .find(|c| c.label == l)
                .map(|c| c.amplitude)
                .unwrap()
        };
        assert_eq!(amp("Sr"), 1.0);
        let sr = 38f64.powf(1.7);
        assert!((amp("TiO") - (22f64.powf(1.7) + 8f64.powf(1.7)) / sr).abs() < 1e-12);
        assert!((amp("O") - 8f64.powf(1.7) / sr).abs() < 1e-12);
    }

    #[test]
    fn rotation_preserves_distances() {
        let base = LatticeImageConfig::new(UnitCell2D::square(4.0, 30));
        let rotated = LatticeImageConfig {
            rotation_deg: 17.0,
            origin_a: [19.0, 19.0],
            ..base
        };
        let out = rotated.render().unwrap();
        let a_px = 4.0 / 0.15;
        // every column has a neighbour at exactly a
        let p = &out.columns;
        for c in p.iter().take(20) {
            let nn = p
                .iter()
                .filter(|d| d.position_px != c.position_px)
                .map(|d| {
                    ((d.position_px[0] - c.position_px[0]).powi(2)
                        + (d.position_px[1] - c.position_px[1]).powi(2))
                    .sqrt()
                })
                .fold(f64::MAX, f64::min);
            assert!((nn - a_px).abs() < 1e-9);
        }
    }

    #[test]
    fn invalid_configs_are_errors() {
        let mut c = LatticeImageConfig::new(UnitCell2D::srtio3_001());
        c.sampling_a = 0.0;
        assert!(c.render().is_err());
        let mut c = LatticeImageConfig::new(UnitCell2D::srtio3_001());
        c.cell.a2_a = c.cell.a1_a;
        assert!(c.render().is_err());
        let mut c = LatticeImageConfig::new(UnitCell2D::srtio3_001());
        c.shape = [0, 4];
        assert!(c.render().is_err());
        let mut c = LatticeImageConfig::new(UnitCell2D::srtio3_001());
        c.cell.motif[0].z = vec![0];
        assert!(c.render().is_err());
        let mut c = LatticeImageConfig::new(UnitCell2D::srtio3_001());
        c.column_sigma_a = f64::NAN;
        assert!(c.render().is_err());
    }

    #[test]
    fn labels_are_exactly_the_columns_inside() {
        let cfg = LatticeImageConfig {
            shape: [100, 60],
            ..LatticeImageConfig::new(UnitCell2D::oblique_two_species())
        };
        let out = cfg.render().unwrap();
        assert!(!out.columns.is_empty());
        for c in &out.columns {
            assert!(c.position_px[0] >= 0.0 && c.position_px[0] <= 99.0);
            assert!(c.position_px[1] >= 0.0 && c.position_px[1] <= 59.0);
        }
        // Count by brute force over a generous index range.
        let s = cfg.sampling_a;
        let mut n = 0;
        for i in -100..100 {
            for j in -100..100 {
                for site in &cfg.cell.motif {
                    let f = [i as f64 + site.frac[0], j as f64 + site.frac[1]];
                    let y =
                        (cfg.origin_a[0] + f[0] * cfg.cell.a1_a[0] + f[1] * cfg.cell.a2_a[0]) / s;
                    let x =
                        (cfg.origin_a[1] + f[0] * cfg.cell.a1_a[1] + f[1] * cfg.cell.a2_a[1]) / s;
                    if (0.0..=99.0).contains(&y) && (0.0..=59.0).contains(&x) {
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(out.columns.len(), n);
    }
}
