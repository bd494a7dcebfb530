//! PACBED thickness series at drawn beam tilts (`pacbed` generator kind).

use super::crystal::{CrystalSpec, ProbeSpec, check_slicing};
use crate::degrade::{Labels, Param, Payload, Sample};
use crate::detector::{Detector, MaxAngle};
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::multislice::{ExitPlanes, MAX_TILT_MRAD, Multislice, MultisliceConfig};
use crate::potential::{PotentialConfig, build_potential};
use crate::probe::Probe;
use crate::scan::{DetectorOutput, GridScan, scan};
use ndarray::{Array3, Axis as NdAxis};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stem_core::{Axis, Image, NoProgress, Parallelism, Progress};

/// Position-averaged CBED for a thickness series, from the exit planes of **one** multislice
/// pass per sample (the sample's drawn tilt).
///
/// The potential is that of the unit cell repeated `crystal.cells_yx` laterally (which sets
/// the angular pixel λ/extent) and `thickness_cells` along z (the exit planes are after
/// `thickness_cells[i]` unit cells, so each must be ≤ `crystal.thickness_cells`). The probe
/// visits `positions_per_cell²` positions over one unit cell (the PACBED of a perfect crystal
/// is periodic in the probe position); the beam is tilted by `[tilt_y_mrad, tilt_x_mrad]`
/// with the tilted propagator (see [`crate::multislice`]).
///
/// Payload: [`Payload::Stack`] `[thickness, k_y, k_x]` (fractions of the incident beam per
/// pixel, zero angle at `[h/2, w/2]`, axis `"thickness_nm"`); image: the thickest pattern,
/// axes in mrad. Labels: none (no positions); metadata `generator.tilt_y_mrad`,
/// `generator.tilt_x_mrad` and `generator.thickness_nm.<i>`.
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::dataset::{CrystalSpec, PacbedGenerator, Payload};
///
/// let g = PacbedGenerator {
///     crystal: CrystalSpec { cells_yx: [3, 3], thickness_cells: 4, ..CrystalSpec::new("srtio3") },
///     thickness_cells: vec![2, 4],
///     positions_per_cell: 2,
///     ..PacbedGenerator::default()
/// };
/// let s = g.generate(&mut ChaCha8Rng::seed_from_u64(0))?;
/// let Payload::Stack { data, values, .. } = &s.payload else { panic!() };
/// assert_eq!(data.shape()[0], 2);
/// assert!((values[1] - 1.562).abs() < 1e-3); // 4 × 3.905 Å in nm
/// // Nearly all electrons stay within 30 mrad at 1.6 nm.
/// assert!(data.index_axis(ndarray::Axis(0), 1).sum() > 0.9);
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacbedGenerator {
    /// The crystal; `thickness_cells` is the deepest plane (default SrTiO3 \[001\], 4 × 4
    /// cells, 50 cells ≈ 19.5 nm).
    pub crystal: CrystalSpec,
    /// The probe (default 200 kV, 20 mrad).
    pub probe: ProbeSpec,
    /// Exit planes in unit cells along the beam (default every 10 cells to 50).
    pub thickness_cells: Vec<usize>,
    /// Beam tilt along y in mrad (default 0).
    pub tilt_y_mrad: Param,
    /// Beam tilt along x in mrad (default 0).
    pub tilt_x_mrad: Param,
    /// Half-width of the patterns in mrad (default 40).
    pub max_angle_mrad: f64,
    /// Probe positions per unit cell side (default 8).
    pub positions_per_cell: usize,
    /// Largest potential pixel in Å (default 0.1; the antialias cutoff λ/(3·0.1) = 84 mrad at
    /// 200 kV must exceed `max_angle_mrad`).
    pub potential_sampling_a: f64,
    /// Slice thickness in Å (default 2.0).
    pub slice_thickness_a: f64,
}

impl Default for PacbedGenerator {
    fn default() -> Self {
        PacbedGenerator {
            crystal: CrystalSpec {
                cells_yx: [4, 4],
                thickness_cells: 50,
                ..CrystalSpec::new("srtio3")
            },
            probe: ProbeSpec::default(),
            thickness_cells: vec![10, 20, 30, 40, 50],
            tilt_y_mrad: Param::Fixed(0.0),
            tilt_x_mrad: Param::Fixed(0.0),
            max_angle_mrad: 40.0,
            positions_per_cell: 8,
            potential_sampling_a: 0.1,
            slice_thickness_a: 2.0,
        }
    }
}

impl PacbedGenerator {
    /// Checks the crystal and probe, the planes (non-empty, each 0 ..= `crystal.thickness_cells`),
    /// the tilts (within ±[`MAX_TILT_MRAD`]), the pattern size against the antialias cutoff,
    /// 1 ..= 64 positions per cell, the sampling (grid ≤ 4096 per side) and the slices
    /// (0.1 ..= 20 Å).
    pub fn validate(&self) -> Result<()> {
        self.crystal.validate()?;
        self.probe.validate()?;
        if self.thickness_cells.is_empty()
            || self
                .thickness_cells
                .iter()
                .any(|&t| t > self.crystal.thickness_cells)
        {
            return Err(Error::invalid(
                "thickness_cells",
                format!(
                    "need 1+ planes, each <= crystal.thickness_cells = {}, got {:?}",
                    self.crystal.thickness_cells, self.thickness_cells
                ),
            ));
        }
        self.tilt_y_mrad
            .validate("tilt_y_mrad", -MAX_TILT_MRAD, MAX_TILT_MRAD)?;
        self.tilt_x_mrad
            .validate("tilt_x_mrad", -MAX_TILT_MRAD, MAX_TILT_MRAD)?;
        if !(1..=64).contains(&self.positions_per_cell) {
            return Err(Error::invalid(
                "positions_per_cell",
                format!("must be 1 ..= 64, got {}", self.positions_per_cell),
            ));
        }
        check_slicing(self.slice_thickness_a, self.potential_sampling_a)?;
        let grid = self.grid()?;
        if grid.gpts().iter().any(|&n| n > 4096) {
            return Err(Error::invalid(
                "potential_sampling_a",
                format!("grid {:?} exceeds 4096 per side", grid.gpts()),
            ));
        }
        let lambda = crate::energy::wavelength_a(self.probe.energy_kv * 1e3)?;
        let max = crate::antialias::Antialias::default().max_angle_mrad(&grid, lambda);
        Detector::Pacbed {
            max_angle: MaxAngle::Mrad(self.max_angle_mrad),
        }
        .validate(max)
    }

    fn grid(&self) -> Result<Grid> {
        let extent = self.crystal.extent_yx_a()?;
        Grid::new(
            self.crystal.potential_gpts(self.potential_sampling_a)?,
            extent,
        )
    }

    /// One sample: draws the tilt (y then x) and runs the thickness series.
    pub fn generate(&self, rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.generate_with(rng, &NoProgress)
    }

    pub(crate) fn generate_with(
        &self,
        rng: &mut ChaCha8Rng,
        cancel: &dyn Progress,
    ) -> Result<Sample> {
        self.validate()?;
        let tilt = [self.tilt_y_mrad.sample(rng), self.tilt_x_mrad.sample(rng)];
        let (stack, thick_nm, sampling) = self.run_with(tilt, cancel)?;
        let last = stack.index_axis(NdAxis(0), stack.shape()[0] - 1).to_owned();
        let (h, w) = last.dim();
        let axis = |name: &str, size: usize, scale: f64| Axis {
            name: name.into(),
            size,
            scale,
            offset: -((size / 2) as f64) * scale,
            units: "mrad".into(),
        };
        let image = Image::with_axes(
            last,
            [axis("k_y", h, sampling[0]), axis("k_x", w, sampling[1])],
        )?;
        let mut m = BTreeMap::new();
        m.insert("generator.tilt_y_mrad".into(), tilt[0]);
        m.insert("generator.tilt_x_mrad".into(), tilt[1]);
        for (i, t) in thick_nm.iter().enumerate() {
            m.insert(format!("generator.thickness_nm.{i}"), *t);
        }
        Ok(Sample {
            image,
            labels: Labels::default(),
            metadata: m,
            payload: Payload::Stack {
                data: stack,
                axis: "thickness_nm".into(),
                values: thick_nm,
            },
        })
    }

    /// The PACBED stack `[plane, k_y, k_x]` (f32), the thicknesses in nm and the angular
    /// pixel `[y, x]` in mrad, for the tilt `[θ_y, θ_x]` mrad.
    pub fn run(&self, tilt_yx_mrad: [f64; 2]) -> Result<(Array3<f32>, Vec<f64>, [f64; 2])> {
        self.run_with(tilt_yx_mrad, &NoProgress)
    }

    fn run_with(
        &self,
        tilt_yx_mrad: [f64; 2],
        cancel: &dyn Progress,
    ) -> Result<(Array3<f32>, Vec<f64>, [f64; 2])> {
        let unit = self.crystal.unit_cell()?;
        let [ny, nx] = self.crystal.cells_yx;
        let layer = unit.repeat([nx, ny, 1])?;
        let grid = self.grid()?;
        let pcfg = PotentialConfig {
            gpts: grid.gpts(),
            slice_thickness_a: self.slice_thickness_a,
            ..PotentialConfig::default()
        };
        let pot = build_potential(&layer, &pcfg)?.with_repeats(self.crystal.thickness_cells)?;
        let per_cell = pot.n_slices();
        let mcfg = MultisliceConfig {
            energy_ev: self.probe.energy_kv * 1e3,
            exit_planes: ExitPlanes::AfterSlices(
                self.thickness_cells.iter().map(|t| t * per_cell).collect(),
            ),
            tilt_yx_mrad,
            ..MultisliceConfig::default()
        };
        let ms = Multislice::<f32>::new(&pot, &mcfg)?;
        let probe = Probe::new(self.probe.config(0.0), grid)?;
        let [ax, ay, _] = unit.cell_a();
        let n = self.positions_per_cell;
        let gs = GridScan::new([0.0, 0.0], [ay, ax], [n, n])?;
        let det = [Detector::Pacbed {
            max_angle: MaxAngle::Mrad(self.max_angle_mrad),
        }];
        let r = scan(&ms, &probe, &gs, &det, Parallelism::Auto, cancel)?;
        let stack = match r.outputs.into_iter().next() {
            Some(DetectorOutput::Pacbed(a)) => a.mapv(|v| v as f32),
            _ => return Err(Error::invalid("detector", "scan returned no PACBED")),
        };
        let thick_nm = r.thicknesses_a.iter().map(|t| t / 10.0).collect();
        Ok((stack, thick_nm, r.angular_sampling_mrad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;

    fn small(structure: &str, zone: &str) -> PacbedGenerator {
        PacbedGenerator {
            crystal: CrystalSpec {
                zone: zone.into(),
                cells_yx: [3, 3],
                thickness_cells: 8,
                ..CrystalSpec::new(structure)
            },
            thickness_cells: vec![4, 8],
            positions_per_cell: 4,
            max_angle_mrad: 30.0,
            potential_sampling_a: 0.12,
            ..PacbedGenerator::default()
        }
    }

    /// max |a − b| / max a.
    fn rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
        let m = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        f64::from(d / m)
    }

    fn flip_x(a: &Array2<f32>) -> Array2<f32> {
        let mut b = a.clone();
        b.invert_axis(NdAxis(1));
        b
    }

    fn flip_y(a: &Array2<f32>) -> Array2<f32> {
        let mut b = a.clone();
        b.invert_axis(NdAxis(0));
        b
    }

    fn plane(s: &Array3<f32>, i: usize) -> Array2<f32> {
        s.index_axis(NdAxis(0), i).to_owned()
    }

    #[test]
    fn tilt_symmetry_of_srtio3_pacbed() {
        let g = small("srtio3", "001");
        let (flat, t, _) = g.run([0.0, 0.0]).unwrap();
        assert_eq!(t.len(), 2);
        let p0 = plane(&flat, 1);
        // The crop is symmetric (odd size, zero angle in the middle).
        assert_eq!(p0.nrows() % 2, 1);
        // f32 waves and sums over 16 positions: 1e-4 of the peak is rounding.
        let tol = 1e-4;
        eprintln!(
            "untilted: x {:.2e} y {:.2e} t {:.2e}",
            rel_diff(&p0, &flip_x(&p0)),
            rel_diff(&p0, &flip_y(&p0)),
            rel_diff(&p0, &p0.t().to_owned())
        );
        // Untilted: 4mm (mirrors and the diagonal).
        assert!(rel_diff(&p0, &flip_x(&p0)) < tol);
        assert!(rel_diff(&p0, &flip_y(&p0)) < tol);
        assert!(rel_diff(&p0, &p0.t().to_owned()) < tol);
        // Tilted along x by 5 mrad: the x mirror breaks (by far more than rounding), the y
        // mirror survives.
        let (plus, _, _) = g.run([0.0, 5.0]).unwrap();
        let (minus, _, _) = g.run([0.0, -5.0]).unwrap();
        let (p, m) = (plane(&plus, 1), plane(&minus, 1));
        let broken = rel_diff(&p, &flip_x(&p));
        eprintln!("x-mirror asymmetry at +5 mrad: {broken:.3}");
        assert!(broken > 100.0 * tol, "{broken}");
        assert!(rel_diff(&p, &flip_y(&p)) < tol);
        // ±θ are mirror images of each other.
        assert!(rel_diff(&p, &flip_x(&m)) < tol);
        // Tilt along y: the same, transposed.
        let (py, _, _) = g.run([5.0, 0.0]).unwrap();
        assert!(rel_diff(&plane(&py, 1), &p.t().to_owned()) < tol);
    }

    #[test]
    fn zero_tilt_generator_is_bit_identical_to_untilted_multislice() {
        // The generator path with tilt 0 equals a plain MultisliceConfig without the field.
        let g = small("srtio3", "001");
        let (a, _, _) = g.run([0.0, 0.0]).unwrap();
        let s = g.generate(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let Payload::Stack { data, values, axis } = &s.payload else {
            panic!()
        };
        assert_eq!(data, &a);
        assert_eq!(axis, "thickness_nm");
        assert!((values[0] - 4.0 * 0.3905).abs() < 1e-9);
        assert_eq!(s.image.data(), &plane(&a, 1));
        assert_eq!(s.image.axes()[1].units, "mrad");
        assert!(s.sampling_a().is_none());
    }

    #[test]
    fn second_crystal_and_validation() {
        let g = small("gaas", "110");
        let s = g.generate(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let Payload::Stack { data, .. } = &s.payload else {
            panic!()
        };
        // Fractions of the beam: each plane sums to ≤ 1 and most electrons stay in ±30 mrad.
        for p in data.outer_iter() {
            let sum = p.sum();
            assert!(sum <= 1.0 + 1e-4 && sum > 0.8, "{sum}");
        }
        let bad = |f: &dyn Fn(&mut PacbedGenerator)| {
            let mut g = small("srtio3", "001");
            f(&mut g);
            g.validate().is_err()
        };
        assert!(bad(&|g| g.thickness_cells = vec![]));
        assert!(bad(&|g| g.thickness_cells = vec![9]));
        assert!(bad(&|g| g.tilt_x_mrad = Param::Fixed(250.0)));
        assert!(bad(&|g| g.tilt_y_mrad = Param::Uniform([1.0, 0.0])));
        assert!(bad(&|g| g.positions_per_cell = 0));
        assert!(bad(&|g| g.max_angle_mrad = 500.0));
        assert!(bad(&|g| g.slice_thickness_a = f64::INFINITY));
        assert!(bad(&|g| g.potential_sampling_a = -1.0));
        assert!(!bad(&|_| ()));
    }
}
