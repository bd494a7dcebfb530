//! 4D-STEM cubes across a chemical interface, with their clean version (`cube_4d` kind).

use super::crystal::{CrystalSpec, ProbeSpec, check_slicing};
use crate::degrade::{Labels, Mask, Payload, Sample};
use crate::detector::{Detector, MaxAngle};
use crate::elements::atomic_number;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::multislice::{Multislice, MultisliceConfig};
use crate::potential::{PotentialConfig, build_potential};
use crate::probe::Probe;
use crate::scan::{DetectorOutput, GridScan, scan};
use crate::structure::{Atom, Structure};
use ndarray::{Array2, Array4, Axis as NdAxis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stem_core::{Axis, Hypercube, Image, NoProgress, Parallelism, Progress};

/// Replace every atom of `element` by `to` (on the far side of the interface).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementSwap {
    /// Host element symbol.
    pub element: String,
    /// Replacement element symbol.
    pub to: String,
}

/// A 4D-STEM scan across coherent chemical interfaces: in the periodic supercell, the unit
/// cells with x index `< host_cells_x` keep the crystal, the others get `swaps` (default
/// SrTiO3 | LaMnO3-type: Sr→La, Ti→Mn on the same lattice), so the scan crosses interfaces at
/// x = 0 and x = `host_cells_x · a_x`.
///
/// The probe scans the whole supercell (`[0, 0]` to the extent, step ≤ `scan_step_a`); every
/// position's diffraction pattern is cropped to ±`max_angle_mrad` (zero angle at
/// `[h/2, w/2]`), values = fraction of the incident beam.
///
/// Payload: [`Payload::Cube`] `[scan_y, scan_x, k_y, k_x]` (axes in Å and mrad): `data` =
/// Poisson counts with `dose_e_per_pattern` electrons per pattern (or the clean cube when the
/// dose is `null`), `clean` = the noise-free fractions. Image: the clean virtual dark field
/// (sum beyond the convergence angle) per scan position, in Å. Labels: a `"region"` mask (1 =
/// host, 2 = swapped side) and class names `["host", "swapped"]`; metadata
/// `generator.interface_x_a.0/1`, `generator.defocus_a`, `generator.dose_e_per_pattern`.
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::dataset::{Cube4dGenerator, CrystalSpec, Payload};
///
/// let g = Cube4dGenerator {
///     crystal: CrystalSpec { cells_yx: [1, 2], thickness_cells: 2, ..CrystalSpec::new("srtio3") },
///     host_cells_x: 1,
///     scan_step_a: 1.0,
///     ..Cube4dGenerator::default()
/// };
/// let s = g.generate(&mut ChaCha8Rng::seed_from_u64(0))?;
/// let Payload::Cube { data, clean } = &s.payload else { panic!() };
/// assert_eq!(data.data().shape()[..2], [4, 8]);
/// assert!(clean.is_some());
/// let region = &s.labels.mask("region").unwrap().data;
/// assert_eq!((region[[0, 0]], region[[0, 7]]), (1, 2));
/// # Ok::<(), stem_sim::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cube4dGenerator {
    /// The crystal (default SrTiO3 \[001\], 4 × 4 cells, 10 cells thick).
    pub crystal: CrystalSpec,
    /// The probe (default 200 kV, 20 mrad).
    pub probe: ProbeSpec,
    /// Element swaps on the far side (default Sr→La, Ti→Mn).
    pub swaps: Vec<ElementSwap>,
    /// Unit cells along x that keep the host crystal (1 ..< `cells_yx[1]`; default 2).
    pub host_cells_x: usize,
    /// Largest scan step in Å (default 0.5).
    pub scan_step_a: f64,
    /// Half-width of the patterns in mrad (default 30).
    pub max_angle_mrad: f64,
    /// Largest potential pixel in Å (default 0.1).
    pub potential_sampling_a: f64,
    /// Slice thickness in Å (default 2.0).
    pub slice_thickness_a: f64,
    /// Electrons per pattern for the Poisson-noisy `data` (default 10⁴; `null`: no noise).
    pub dose_e_per_pattern: Option<f64>,
}

impl Default for Cube4dGenerator {
    fn default() -> Self {
        Cube4dGenerator {
            crystal: CrystalSpec {
                cells_yx: [4, 4],
                thickness_cells: 10,
                ..CrystalSpec::new("srtio3")
            },
            probe: ProbeSpec::default(),
            swaps: vec![
                ElementSwap {
                    element: "Sr".into(),
                    to: "La".into(),
                },
                ElementSwap {
                    element: "Ti".into(),
                    to: "Mn".into(),
                },
            ],
            host_cells_x: 2,
            scan_step_a: 0.5,
            max_angle_mrad: 30.0,
            potential_sampling_a: 0.1,
            slice_thickness_a: 2.0,
            dose_e_per_pattern: Some(1e4),
        }
    }
}

impl Cube4dGenerator {
    /// Checks the crystal, probe, swaps (known symbols), `host_cells_x` (1 ..< cells along
    /// x), the step (> 0, ≤ 1024 positions per side), the pattern size against the antialias
    /// cutoff, the sampling, the slices (0.1 ..= 20 Å) and the dose (> 0, ≤ 10⁹).
    pub fn validate(&self) -> Result<()> {
        self.crystal.validate()?;
        self.probe.validate()?;
        for s in &self.swaps {
            atomic_number(&s.element)?;
            atomic_number(&s.to)?;
        }
        if self.host_cells_x == 0 || self.host_cells_x >= self.crystal.cells_yx[1] {
            return Err(Error::invalid(
                "host_cells_x",
                format!(
                    "must be 1 ..< cells along x ({}), got {}",
                    self.crystal.cells_yx[1], self.host_cells_x
                ),
            ));
        }
        let extent = self.crystal.extent_yx_a()?;
        let st = self.scan_step_a;
        if !(st.is_finite() && st > 0.0) || extent.iter().any(|e| e / st > 1024.0) {
            return Err(Error::invalid(
                "scan_step_a",
                format!("must be > 0 Å with <= 1024 positions per side, got {st}"),
            ));
        }
        check_slicing(self.slice_thickness_a, self.potential_sampling_a)?;
        let s = self.potential_sampling_a;
        let gpts = self.crystal.potential_gpts(s)?;
        if gpts.iter().any(|&n| n > 4096) {
            return Err(Error::invalid(
                "potential_sampling_a",
                format!("grid {gpts:?} exceeds 4096 per side"),
            ));
        }
        if let Some(d) = self.dose_e_per_pattern
            && !(d.is_finite() && d > 0.0 && d <= 1e9)
        {
            return Err(Error::invalid(
                "dose_e_per_pattern",
                format!("must be > 0 and <= 1e9, got {d}"),
            ));
        }
        let lambda = crate::energy::wavelength_a(self.probe.energy_kv * 1e3)?;
        let max = crate::antialias::Antialias::default()
            .max_angle_mrad(&Grid::new(gpts, extent)?, lambda);
        Detector::Pixelated {
            max_angle: MaxAngle::Mrad(self.max_angle_mrad),
        }
        .validate(max)?;
        // Cube size: positions × pattern pixels (angular pixel λ/extent) within MAX_PIXELS.
        let side = |e: f64| {
            let pixel_mrad = 1e3 * lambda / e;
            (e / st).ceil() * (2.0 * (self.max_angle_mrad / pixel_mrad).floor() + 1.0)
        };
        let values = side(extent[0]) * side(extent[1]);
        if values > crate::degrade::MAX_PIXELS as f64 {
            return Err(Error::invalid(
                "scan_step_a",
                format!(
                    "the cube would hold {values:.3e} values, more than {}; use a coarser scan, \
                     fewer cells or a smaller max_angle_mrad",
                    crate::degrade::MAX_PIXELS
                ),
            ));
        }
        Ok(())
    }

    /// The supercell with the swaps applied to the cells at x ≥ `host_cells_x · a_x`.
    pub fn structure(&self) -> Result<Structure> {
        let s = self.crystal.supercell()?;
        let ax = self.crystal.unit_cell()?.cell_a()[0];
        let x0 = self.host_cells_x as f64 * ax;
        let swaps: Vec<(u8, u8)> = self
            .swaps
            .iter()
            .map(|w| Ok((atomic_number(&w.element)?, atomic_number(&w.to)?)))
            .collect::<Result<_>>()?;
        // The atoms of cell i sit in [i·a_x, (i+1)·a_x); 1e-9 Å absorbs the rounding of i·a_x.
        let atoms: Vec<Atom> = s
            .atoms()
            .iter()
            .map(|a| {
                let mut a = *a;
                if a.position_a[0] >= x0 - 1e-9 {
                    if let Some(&(_, to)) = swaps.iter().find(|(z, _)| *z == a.z) {
                        a.z = to;
                    }
                }
                a
            })
            .collect();
        Structure::new(s.cell_a(), atoms)
    }

    /// One sample: draws the defocus and the noise seed.
    pub fn generate(&self, rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.generate_with(rng, &NoProgress)
    }

    pub(crate) fn generate_with(
        &self,
        rng: &mut ChaCha8Rng,
        cancel: &dyn Progress,
    ) -> Result<Sample> {
        self.validate()?;
        let defocus = self.probe.defocus_a.sample(rng);
        let noise_seed: u64 = rng.random();
        let extent = self.crystal.extent_yx_a()?;
        let grid = Grid::new(
            self.crystal.potential_gpts(self.potential_sampling_a)?,
            extent,
        )?;
        let pcfg = PotentialConfig {
            gpts: grid.gpts(),
            slice_thickness_a: self.slice_thickness_a,
            ..PotentialConfig::default()
        };
        let pot = build_potential(&self.structure()?, &pcfg)?;
        let mcfg = MultisliceConfig {
            energy_ev: self.probe.energy_kv * 1e3,
            ..MultisliceConfig::default()
        };
        let ms = Multislice::<f32>::new(&pot, &mcfg)?;
        let probe = Probe::new(self.probe.config(defocus), grid)?;
        let gs = GridScan::with_step([0.0, 0.0], extent, self.scan_step_a)?;
        let det = [Detector::Pixelated {
            max_angle: MaxAngle::Mrad(self.max_angle_mrad),
        }];
        let r = scan(&ms, &probe, &gs, &det, Parallelism::Auto, cancel)?;
        let clean: Array4<f32> = match r.outputs.into_iter().next() {
            Some(DetectorOutput::Pixelated(a)) => a.index_axis_move(NdAxis(0), 0),
            _ => return Err(Error::invalid("detector", "scan returned no patterns")),
        };
        let (sy, sx, h, w) = clean.dim();
        let step = gs.step_a();
        let ang = r.angular_sampling_mrad;
        // Clean virtual dark field: everything beyond the convergence angle.
        let alpha = self.probe.convergence_mrad;
        let mut dark = Vec::new();
        for i in 0..h {
            for j in 0..w {
                let a = ((i as f64 - (h / 2) as f64) * ang[0])
                    .hypot((j as f64 - (w / 2) as f64) * ang[1]);
                if a > alpha {
                    dark.push((i, j));
                }
            }
        }
        let vdf = Array2::from_shape_fn((sy, sx), |(y, x)| {
            dark.iter().map(|&(i, j)| clean[[y, x, i, j]]).sum::<f32>()
        });
        let noisy = match self.dose_e_per_pattern {
            None => clean.clone(),
            Some(dose) => {
                let mut nr = ChaCha8Rng::seed_from_u64(noise_seed);
                let mut out = clean.clone();
                for v in out.iter_mut() {
                    let lam = f64::from(*v).max(0.0) * dose;
                    *v = if lam > 0.0 {
                        let p =
                            Poisson::new(lam).map_err(|e| Error::invalid("dose", e.to_string()))?;
                        p.sample(&mut nr) as f32
                    } else {
                        0.0
                    };
                }
                out
            }
        };
        let ax = |name: &str, size: usize, scale: f64, offset: f64, units: &str| Axis {
            name: name.into(),
            size,
            scale,
            offset,
            units: units.into(),
        };
        let axes = vec![
            ax("scan_y", sy, step[0], 0.0, "Å"),
            ax("scan_x", sx, step[1], 0.0, "Å"),
            ax("k_y", h, ang[0], -((h / 2) as f64) * ang[0], "mrad"),
            ax("k_x", w, ang[1], -((w / 2) as f64) * ang[1], "mrad"),
        ];
        let cube = |a: Array4<f32>| Hypercube::with_axes(a.into_dyn(), axes.clone(), 2);
        let unit_ax = self.crystal.unit_cell()?.cell_a()[0];
        let x_if = self.host_cells_x as f64 * unit_ax;
        let region =
            Array2::from_shape_fn(
                (sy, sx),
                |(_, x)| {
                    if (x as f64) * step[1] < x_if { 1u8 } else { 2 }
                },
            );
        let image = Image::with_axes(
            vdf,
            [
                ax("y", sy, step[0], 0.0, "Å"),
                ax("x", sx, step[1], 0.0, "Å"),
            ],
        )?;
        let mut m = BTreeMap::new();
        m.insert("generator.defocus_a".into(), defocus);
        m.insert("generator.interface_x_a.0".into(), 0.0);
        m.insert("generator.interface_x_a.1".into(), x_if);
        m.insert(
            "generator.dose_e_per_pattern".into(),
            self.dose_e_per_pattern.unwrap_or(0.0),
        );
        Ok(Sample {
            image,
            labels: Labels {
                class_names: vec!["host".into(), "swapped".into()],
                masks: vec![Mask {
                    name: "region".into(),
                    data: region,
                }],
                ..Labels::default()
            },
            metadata: m,
            payload: Payload::Cube {
                data: cube(noisy)?,
                clean: Some(cube(clean)?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Cube4dGenerator {
        Cube4dGenerator {
            crystal: CrystalSpec {
                cells_yx: [1, 2],
                thickness_cells: 3,
                ..CrystalSpec::new("srtio3")
            },
            host_cells_x: 1,
            scan_step_a: 0.5,
            dose_e_per_pattern: Some(1e3),
            ..Cube4dGenerator::default()
        }
    }

    #[test]
    fn interface_is_visible_and_noise_is_poisson_of_the_clean_cube() {
        let g = small();
        let s = g.generate(&mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        let Payload::Cube { data, clean } = &s.payload else {
            panic!()
        };
        let clean = clean.as_ref().unwrap();
        assert_eq!(data.data().shape(), clean.data().shape());
        assert_eq!(data.nav_dims(), 2);
        // Counts are integers whose total is the dose × the clean total (Poisson mean):
        // n ≈ 8 × 16 patterns × 1e3 e × ~1 → relative σ ≈ 1e-2.5; 5σ = 1.5 %.
        assert!(data.data().iter().all(|v| v.fract() == 0.0));
        let (n, c) = (
            data.data().iter().map(|&v| f64::from(v)).sum::<f64>(),
            clean.data().iter().map(|&v| f64::from(v)).sum::<f64>() * 1e3,
        );
        assert!((n / c - 1.0).abs() < 0.015, "{n} vs {c}");
        // La (57) / Mn (25) scatter more than Sr (38) / Ti (22): the swapped side's mean dark
        // field is higher.
        let region = &s.labels.mask("region").unwrap().data;
        let img = s.image.data();
        let mean = |k: u8| {
            let v: Vec<f32> = img
                .iter()
                .zip(region.iter())
                .filter(|(_, r)| **r == k)
                .map(|(v, _)| *v)
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        eprintln!("dark field swapped/host: {}", mean(2) / mean(1));
        // Measured 1.06 on this clean (noise-free) 20–30 mrad dark field, which the shared
        // lattice's Bragg discs dominate; 1.03 is half the measured contrast.
        assert!(mean(2) > 1.03 * mean(1), "{} vs {}", mean(2), mean(1));
        assert_eq!(s.metadata["generator.interface_x_a.1"], 3.905);
        // No swaps, no interface: both halves are the same crystal.
        let same = Cube4dGenerator {
            swaps: vec![],
            dose_e_per_pattern: None,
            ..g.clone()
        }
        .generate(&mut ChaCha8Rng::seed_from_u64(4))
        .unwrap();
        let Payload::Cube { data, clean } = &same.payload else {
            panic!()
        };
        assert_eq!(data, clean.as_ref().unwrap());
        let (sy, sx) = (data.data().shape()[0], data.data().shape()[1]);
        // Cells 0 and 1 are identical: position x and x + one cell see the same pattern.
        let d = data.data();
        let half = sx / 2;
        for y in 0..sy {
            for x in 0..half {
                let a = d.slice(ndarray::s![y, x, .., ..]);
                let b = d.slice(ndarray::s![y, x + half, .., ..]);
                let m = a.iter().fold(0.0f32, |m, v| m.max(*v));
                let e = a
                    .iter()
                    .zip(b)
                    .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
                // f32 multislice: 1e-4 of the peak is rounding.
                assert!(e < 1e-4 * m, "{e} vs {m}");
            }
        }
    }

    #[test]
    fn validation_rules() {
        let bad = |f: &dyn Fn(&mut Cube4dGenerator)| {
            let mut g = small();
            f(&mut g);
            g.validate().is_err()
        };
        assert!(!bad(&|_| ()));
        assert!(bad(&|g| g.host_cells_x = 0));
        assert!(bad(&|g| g.host_cells_x = 2));
        assert!(bad(&|g| g.scan_step_a = 0.0));
        assert!(bad(&|g| g.scan_step_a = 1e-4));
        assert!(bad(&|g| g.dose_e_per_pattern = Some(-1.0)));
        assert!(bad(&|g| g.max_angle_mrad = 300.0));
        assert!(bad(&|g| g.swaps = vec![ElementSwap {
            element: "Sr".into(),
            to: "Qq".into()
        }]));
        assert!(bad(&|g| g.slice_thickness_a = 0.0));
        // 64 × 64 cells at 0.25 Å: 10⁶ positions × ~37² pixels is far beyond 2²⁸ values.
        assert!(bad(&|g| {
            g.crystal.cells_yx = [64, 64];
            g.host_cells_x = 1;
            g.scan_step_a = 0.25;
        }));
    }
}
