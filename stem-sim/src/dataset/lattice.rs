//! Atom-finding images from the fast incoherent model, with exact labels.

use super::render::{
    CellSpec, Column, ColumnProfile, Placement, ProfileTable, class_names, lattice_columns,
    render_columns,
};
use crate::degrade::{Labels, MAX_PIXELS, Mask, Param, Sample};
use crate::error::{Error, Result};
use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stem_core::Image;
use stem_core::synth::UnitCell2D;

/// A lattice image from the fast incoherent ADF model: every column is
/// `A · profile(|r − r_col|)` with `A = Σ Z^n` over the column's atoms (normalised to the
/// brightest motif column), on a constant background. With [`ColumnProfile::Airy`] this is
/// "probe intensity convolved with Z^n-weighted columns" for an aberration-free probe.
///
/// Labels: every column whose centre lies in the image, class = motif label (class names in
/// motif order), and optionally a `"columns"` mask (class + 1 within `mask_radius_a` of a
/// column centre, 0 elsewhere).
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::dataset::{CellPreset, CellSpec, ColumnProfile, LatticeGenerator};
///
/// let g = LatticeGenerator {
///     shape: [64, 64],
///     profile: ColumnProfile::Airy { semiangle_mrad: 25.0, energy_ev: 300e3 },
///     mask_radius_a: Some(0.4),
///     ..LatticeGenerator::new(CellSpec::Preset { preset: CellPreset::Gaas110 })
/// };
/// let s = g.generate(&mut ChaCha8Rng::seed_from_u64(1))?;
/// assert_eq!(s.labels.class_names, ["Ga", "As"]);
/// // Every labelled column is bright (amplitude ≥ 0.9; the nearest pixel is ≤ 0.11 Å away,
/// // well inside the 0.41 Å FWHM of the probe).
/// for p in &s.labels.positions_px {
///     assert!(s.image.data()[[p[0].round() as usize, p[1].round() as usize]] > 0.5);
/// }
/// assert_eq!(s.labels.mask("columns").unwrap().data.dim(), (64, 64));
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatticeGenerator {
    /// The projected cell.
    pub cell: CellSpec,
    /// Image shape `[ny, nx]` (px). Default `[256, 256]`.
    #[serde(default = "default_shape")]
    pub shape: [usize; 2],
    /// Pixel size (Å, 0.005 ..= 10). Default 0.15.
    #[serde(default = "default_sampling")]
    pub sampling_a: Param,
    /// Lattice rotation (degrees). Default 0.
    #[serde(default)]
    pub rotation_deg: Param,
    /// Place the lattice origin uniformly at random within one unit cell (default true);
    /// otherwise at `[0, 0]`.
    #[serde(default = "yes")]
    pub random_origin: bool,
    /// Column profile. Default Gaussian σ = 0.45 Å.
    #[serde(default)]
    pub profile: ColumnProfile,
    /// Exponent n of `Σ Z^n` (0 ..= 4). Default 1.7.
    #[serde(default = "default_z_exponent")]
    pub z_exponent: f64,
    /// Constant background (brightest column = 1). Default 0.05.
    #[serde(default = "default_background")]
    pub background: f64,
    /// Probability that a column is missing (a vacancy column: not drawn, not labelled).
    /// Default 0.
    #[serde(default)]
    pub vacancy_fraction: f64,
    /// Radius (Å) of the disks of the `"columns"` mask; no mask when absent.
    #[serde(default)]
    pub mask_radius_a: Option<f64>,
    /// Substitutional defects (at most 16), applied after the vacancies. Default none.
    #[serde(default)]
    pub substitutions: Vec<Substitution>,
}

/// A substitutional defect: each column of motif label `label` becomes, with probability
/// `fraction`, a column of atomic numbers `z` (amplitude `Σ Z^n` on the scale of the
/// undefected motif, so it may exceed 1) labelled with the new class `class`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Substitution {
    /// Motif label of the host columns (e.g. `"Mo"`).
    pub label: String,
    /// Atomic numbers of one repeat of the substituted column (e.g. `[74]`).
    pub z: Vec<u32>,
    /// Probability per host column, in `[0, 1]`.
    pub fraction: f64,
    /// Class name of substituted columns (e.g. `"W_on_Mo"`), appended to the class names.
    pub class: String,
}

/// Largest number of columns a lattice generator draws.
const MAX_COLUMNS: f64 = 5e7;

fn default_shape() -> [usize; 2] {
    [256, 256]
}
fn default_sampling() -> Param {
    Param::Fixed(0.15)
}
fn yes() -> bool {
    true
}
fn default_z_exponent() -> f64 {
    1.7
}
fn default_background() -> f64 {
    0.05
}

impl LatticeGenerator {
    /// Defaults for a cell.
    pub fn new(cell: CellSpec) -> Self {
        LatticeGenerator {
            cell,
            shape: default_shape(),
            sampling_a: default_sampling(),
            rotation_deg: Param::Fixed(0.0),
            random_origin: true,
            profile: ColumnProfile::default(),
            z_exponent: default_z_exponent(),
            background: default_background(),
            vacancy_fraction: 0.0,
            mask_radius_a: None,
            substitutions: Vec::new(),
        }
    }

    /// Checks every field (see their docs for the ranges).
    pub fn validate(&self) -> Result<()> {
        let cell = self.cell.cell()?;
        let pixels = self.shape[0].checked_mul(self.shape[1]);
        if self.shape[0] == 0 || self.shape[1] == 0 || pixels.is_none_or(|n| n > MAX_PIXELS) {
            return Err(Error::invalid(
                "shape",
                format!("{:?} must be non-zero with at most 2^28 pixels", self.shape),
            ));
        }
        self.sampling_a.validate("sampling_a", 0.005, 10.0)?;
        // Columns in the field of view: area / cell area × motif size.
        let area_a2 = pixels.unwrap_or(0) as f64 * self.sampling_a.bounds()[1].powi(2);
        let cell_a2 = (cell.a1_a[0] * cell.a2_a[1] - cell.a1_a[1] * cell.a2_a[0]).abs();
        let n_columns = area_a2 / cell_a2 * cell.motif.len() as f64;
        if n_columns > MAX_COLUMNS {
            return Err(Error::invalid(
                "shape",
                format!(
                    "{:?} px would hold ~{n_columns:.3e} columns (at most {MAX_COLUMNS:e})",
                    self.shape
                ),
            ));
        }
        self.rotation_deg.validate("rotation_deg", -1e4, 1e4)?;
        self.profile.validate()?;
        let checks = [
            ("z_exponent", self.z_exponent, 0.0, 4.0),
            ("background", self.background, -1e6, 1e6),
            ("vacancy_fraction", self.vacancy_fraction, 0.0, 1.0),
        ];
        for (name, v, lo, hi) in checks {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(Error::invalid(
                    name,
                    format!("{v} is not within [{lo}, {hi}]"),
                ));
            }
        }
        if self.substitutions.len() > 16 {
            return Err(Error::invalid(
                "substitutions",
                format!("at most 16, got {}", self.substitutions.len()),
            ));
        }
        let names = class_names(&cell);
        for sub in &self.substitutions {
            let ok = names.contains(&sub.label)
                && !sub.z.is_empty()
                && sub.z.iter().all(|&z| (1..=118).contains(&z))
                && sub.fraction.is_finite()
                && (0.0..=1.0).contains(&sub.fraction)
                && !sub.class.is_empty()
                && !names.contains(&sub.class);
            if !ok {
                return Err(Error::invalid(
                    "substitutions",
                    format!(
                        "{sub:?}: the host must be a motif label ({names:?}), Z in 1..=118, the \
                         fraction in [0, 1] and the class a new, non-empty name"
                    ),
                ));
            }
        }
        if let Some(r) = self.mask_radius_a
            && !(r.is_finite() && r > 0.0)
        {
            return Err(Error::invalid(
                "mask_radius_a",
                format!("must be finite and > 0, got {r}"),
            ));
        }
        Ok(())
    }

    /// Draws the placement (sampling, rotation, origin) in this order.
    pub(crate) fn draw_placement(
        &self,
        cell: &UnitCell2D,
        shape: [usize; 2],
        rng: &mut ChaCha8Rng,
    ) -> Placement {
        let sampling_a = self.sampling_a.sample(rng);
        let rotation_deg = self.rotation_deg.sample(rng);
        let origin_a = if self.random_origin {
            let (f1, f2): (f64, f64) = (rng.random(), rng.random());
            [
                f1 * cell.a1_a[0] + f2 * cell.a2_a[0],
                f1 * cell.a1_a[1] + f2 * cell.a2_a[1],
            ]
        } else {
            [0.0, 0.0]
        };
        Placement {
            shape,
            sampling_a,
            rotation_deg,
            origin_a,
        }
    }

    /// Generates one sample of `shape` (normally `self.shape`) from `rng`.
    pub fn generate(&self, rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.generate_shape(self.shape, rng)
    }

    pub(crate) fn generate_shape(&self, shape: [usize; 2], rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.validate()?;
        let cell = self.cell.cell()?;
        let placement = self.draw_placement(&cell, shape, rng);
        let mut columns = self.columns(&cell, &placement)?;
        let (vacancies, substitutions) = self.apply_defects(&cell, &mut columns, rng);
        let mut sample = self.render(&cell, &placement, &columns)?;
        let m = &mut sample.metadata;
        m.insert("generator.vacancies".into(), vacancies as f64);
        m.insert("generator.substitutions".into(), substitutions as f64);
        m.insert("generator.sampling_a".into(), placement.sampling_a);
        m.insert("generator.rotation_deg".into(), placement.rotation_deg);
        m.insert("generator.origin_y_a".into(), placement.origin_a[0]);
        m.insert("generator.origin_x_a".into(), placement.origin_a[1]);
        Ok(sample)
    }

    /// The cell plus one pseudo motif column per substitution (label = its class, Z = its
    /// Z), so that class names and amplitudes of substituted columns follow from the motif.
    fn extended_cell(&self, cell: &UnitCell2D) -> UnitCell2D {
        let mut ext = cell.clone();
        for sub in &self.substitutions {
            ext.motif.push(stem_core::synth::MotifColumn {
                label: sub.class.clone(),
                frac: [0.0, 0.0],
                z: sub.z.clone(),
            });
        }
        ext
    }

    /// Removes vacancies (one draw per column), then substitutes (one draw per host column and
    /// substitution, in order; a column is substituted at most once). Returns the counts.
    pub(crate) fn apply_defects(
        &self,
        cell: &UnitCell2D,
        columns: &mut Vec<Column>,
        rng: &mut ChaCha8Rng,
    ) -> (usize, usize) {
        let n_all = columns.len();
        if self.vacancy_fraction > 0.0 {
            let keep: Vec<bool> = columns
                .iter()
                .map(|_| rng.random::<f64>() >= self.vacancy_fraction)
                .collect();
            let mut k = keep.iter();
            columns.retain(|_| *k.next().unwrap_or(&true));
        }
        let n_motif = cell.motif.len();
        let weight =
            |z: &[u32]| -> f64 { z.iter().map(|&z| f64::from(z).powf(self.z_exponent)).sum() };
        let wmax = cell
            .motif
            .iter()
            .map(|m| weight(&m.z))
            .fold(f64::MIN, f64::max);
        let mut n_sub = 0;
        for c in columns.iter_mut() {
            for (k, sub) in self.substitutions.iter().enumerate() {
                if c.motif_index < n_motif
                    && cell.motif[c.motif_index].label == sub.label
                    && rng.random::<f64>() < sub.fraction
                {
                    c.motif_index = n_motif + k;
                    c.amplitude = weight(&sub.z) / wmax;
                    n_sub += 1;
                }
            }
        }
        (n_all - columns.len(), n_sub)
    }

    /// The columns that can reach the image (within the profile's reach of the border).
    pub(crate) fn columns(&self, cell: &UnitCell2D, placement: &Placement) -> Result<Vec<Column>> {
        let reach_px = self.profile.reach_a() / placement.sampling_a;
        Ok(lattice_columns(
            cell,
            placement,
            self.z_exponent,
            reach_px.ceil() + 1.0,
        ))
    }

    /// Renders `columns` and builds the labels (inside columns, classes, optional mask).
    pub(crate) fn render(
        &self,
        cell: &UnitCell2D,
        placement: &Placement,
        columns: &[Column],
    ) -> Result<Sample> {
        let cell = &self.extended_cell(cell);
        let table = ProfileTable::new(&self.profile, placement.sampling_a)?;
        let shape = placement.shape;
        let data = render_columns(shape, columns, &table, self.background);
        let names = class_names(cell);
        let class_of: Vec<u16> = cell
            .motif
            .iter()
            .map(|m| names.iter().position(|n| *n == m.label).unwrap_or(0) as u16)
            .collect();
        let [ny, nx] = shape.map(|n| n as f64 - 1.0);
        let inside: Vec<&Column> = columns
            .iter()
            .filter(|c| {
                let [y, x] = c.position_px;
                y >= 0.0 && y <= ny && x >= 0.0 && x <= nx
            })
            .collect();
        let mut labels = Labels {
            positions_px: inside.iter().map(|c| c.position_px).collect(),
            classes: inside.iter().map(|c| class_of[c.motif_index]).collect(),
            class_names: names,
            masks: Vec::new(),
            displacement: None,
        };
        if let Some(r_a) = self.mask_radius_a {
            let r = r_a / placement.sampling_a;
            let cls: Vec<u16> = columns.iter().map(|c| class_of[c.motif_index]).collect();
            labels.masks.push(Mask {
                name: "columns".into(),
                data: disk_mask(shape, columns, &cls, r),
            });
        }
        Ok(Sample {
            image: Image::new(data).with_sampling_a(placement.sampling_a),
            labels,
            metadata: BTreeMap::new(),
            payload: Default::default(),
        })
    }
}

/// `class + 1` within radius `r_px` of each column centre (later columns win overlaps).
pub(crate) fn disk_mask(
    shape: [usize; 2],
    columns: &[Column],
    classes: &[u16],
    r_px: f64,
) -> Array2<u8> {
    let mut m = Array2::<u8>::zeros((shape[0], shape[1]));
    let r2 = r_px * r_px;
    for (c, &k) in columns.iter().zip(classes) {
        let [y, x] = c.position_px;
        let y0 = (y - r_px).ceil().max(0.0);
        let y1 = (y + r_px).floor().min(shape[0] as f64 - 1.0);
        let x0 = (x - r_px).ceil().max(0.0);
        let x1 = (x + r_px).floor().min(shape[1] as f64 - 1.0);
        if y1 < y0 || x1 < x0 {
            continue;
        }
        for i in (y0 as usize)..=(y1 as usize) {
            for j in (x0 as usize)..=(x1 as usize) {
                if (i as f64 - y).powi(2) + (j as f64 - x).powi(2) <= r2 {
                    m[[i, j]] = (k + 1).min(255) as u8;
                }
            }
        }
    }
    m
}
