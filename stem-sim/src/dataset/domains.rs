//! Domain images: a lattice with polarisation variants and a known boundary map.

use super::lattice::LatticeGenerator;
use super::render::class_names;
use crate::degrade::{Mask, Param, Sample};
use crate::error::{Error, Result};
use ndarray::{Array2, Zip};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How the image is divided into domains. Each domain carries one variant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DomainLayout {
    /// Parallel stripes of width `period_px / 2`, walls along the direction `angle_deg`
    /// (counter-clockwise from +x as displayed); stripe k carries variant `k mod n_variants`.
    /// The stripe phase is drawn uniformly in `[0, period)`.
    Stripes {
        /// Period of the stripe pattern (px, ≥ 4).
        period_px: Param,
        /// Wall direction (degrees).
        angle_deg: Param,
    },
    /// A Voronoi tessellation of `domains` seeds drawn uniformly in the image; each seed gets a
    /// variant drawn uniformly.
    Voronoi {
        /// Number of seeds (1 ..= 10000).
        domains: usize,
    },
}

/// A lattice with two or more polarisation variants: in a domain of variant k the columns of
/// the `displaced` motif labels move by `variants_a[k]` (Å, `[dy, dx]`); the others stay put.
/// A column's domain is that of its undisplaced position.
///
/// Labels: the displaced column positions and motif classes (as [`LatticeGenerator`]), plus the
/// masks `"domain"` (variant index + 1 per pixel) and `"boundary"` (1 where a pixel of another
/// variant lies within `wall_width_px / 2`, 0 elsewhere), and the metadata
/// `generator.domain_fraction_k` (fraction of pixels of variant k).
///
/// ```
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
/// use stem_sim::dataset::DomainGenerator;
///
/// let g: DomainGenerator = serde_json::from_str(r#"{
///     "lattice": {"cell": {"preset": "srtio3001"}, "shape": [64, 64]},
///     "layout": {"kind": "stripes", "period_px": 40, "angle_deg": 30},
///     "variants_a": [[0.2, 0.0], [-0.2, 0.0]], "displaced": ["TiO"]}"#)?;
/// let s = g.generate(&mut ChaCha8Rng::seed_from_u64(2))?;
/// let domain = &s.labels.mask("domain").unwrap().data;
/// assert!(domain.iter().any(|&v| v == 1) && domain.iter().any(|&v| v == 2));
/// assert!(s.labels.mask("boundary").unwrap().data.iter().any(|&v| v == 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainGenerator {
    /// The lattice (its mask settings apply too).
    pub lattice: LatticeGenerator,
    /// The domain layout.
    pub layout: DomainLayout,
    /// Displacement of the displaced columns per variant (Å, `[dy, dx]`); at least 2 variants,
    /// at most 254.
    pub variants_a: Vec<[f64; 2]>,
    /// Motif labels whose columns are displaced (e.g. `["TiO"]`).
    pub displaced: Vec<String>,
    /// Width of the boundary band (px, > 0). Default 2.
    #[serde(default = "default_wall")]
    pub wall_width_px: f64,
}

fn default_wall() -> f64 {
    2.0
}

/// A drawn layout: variant of any point.
enum Layout {
    Stripes {
        normal: [f64; 2],
        half_period: f64,
        phase: f64,
        n: usize,
    },
    Voronoi {
        seeds: Vec<[f64; 2]>,
        variant: Vec<usize>,
    },
}

impl Layout {
    fn variant(&self, p: [f64; 2]) -> usize {
        match self {
            Layout::Stripes {
                normal,
                half_period,
                phase,
                n,
            } => {
                let s = (p[0] * normal[0] + p[1] * normal[1] - phase) / half_period;
                (s.floor() as i64).rem_euclid(*n as i64) as usize
            }
            Layout::Voronoi { seeds, variant } => {
                let mut best = (f64::INFINITY, 0);
                for (k, s) in seeds.iter().enumerate() {
                    let d = (p[0] - s[0]).powi(2) + (p[1] - s[1]).powi(2);
                    if d < best.0 {
                        best = (d, k);
                    }
                }
                variant[best.1]
            }
        }
    }
}

impl DomainGenerator {
    /// Checks the fields (and the lattice's).
    pub fn validate(&self) -> Result<()> {
        self.lattice.validate()?;
        if self.variants_a.len() < 2 || self.variants_a.len() > 254 {
            return Err(Error::invalid(
                "variants_a",
                format!("needs 2 ..= 254 variants, got {}", self.variants_a.len()),
            ));
        }
        if self.variants_a.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::invalid("variants_a", "must be finite"));
        }
        let cell = self.lattice.cell.cell()?;
        let names = class_names(&cell);
        if let Some(bad) = self.displaced.iter().find(|d| !names.contains(d)) {
            return Err(Error::invalid(
                "displaced",
                format!("{bad:?} is not a motif label (labels: {names:?})"),
            ));
        }
        if !(self.wall_width_px.is_finite() && self.wall_width_px > 0.0 && self.wall_width_px < 1e3)
        {
            return Err(Error::invalid(
                "wall_width_px",
                format!("must be in (0, 1000), got {}", self.wall_width_px),
            ));
        }
        match self.layout {
            DomainLayout::Stripes {
                period_px,
                angle_deg,
            } => {
                period_px.validate("layout.period_px", 4.0, 1e7)?;
                angle_deg.validate("layout.angle_deg", -1e4, 1e4)
            }
            DomainLayout::Voronoi { domains } => {
                if domains == 0 || domains > 10_000 {
                    return Err(Error::invalid(
                        "layout.domains",
                        format!("must be 1 ..= 10000, got {domains}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Generates one sample from `rng` (draws: lattice placement, layout, vacancies).
    pub fn generate(&self, rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.validate()?;
        let lat = &self.lattice;
        let cell = lat.cell.cell()?;
        let shape = lat.shape;
        let placement = lat.draw_placement(&cell, shape, rng);
        let n = self.variants_a.len();
        let layout = match self.layout {
            DomainLayout::Stripes {
                period_px,
                angle_deg,
            } => {
                let period = period_px.sample(rng);
                let angle = angle_deg.sample(rng).to_radians();
                // Wall direction [y, x] = [−sin θ, cos θ] (x axis rotated counter-clockwise as
                // displayed, as stem_core::synth); its normal is [cos θ, sin θ].
                let normal = [angle.cos(), angle.sin()];
                let phase = period * rng.random::<f64>();
                Layout::Stripes {
                    normal,
                    half_period: period / 2.0,
                    phase,
                    n,
                }
            }
            DomainLayout::Voronoi { domains } => {
                let mut seeds = Vec::with_capacity(domains);
                let mut variant = Vec::with_capacity(domains);
                for _ in 0..domains {
                    seeds.push([
                        rng.random::<f64>() * shape[0] as f64,
                        rng.random::<f64>() * shape[1] as f64,
                    ]);
                    variant.push(rng.random_range(0..n));
                }
                Layout::Voronoi { seeds, variant }
            }
        };
        let mut columns = lat.columns(&cell, &placement)?;
        let displaced: Vec<bool> = cell
            .motif
            .iter()
            .map(|m| self.displaced.contains(&m.label))
            .collect();
        let s = placement.sampling_a;
        for c in &mut columns {
            if displaced[c.motif_index] {
                let v = self.variants_a[layout.variant(c.position_px)];
                c.position_px = [c.position_px[0] + v[0] / s, c.position_px[1] + v[1] / s];
            }
        }
        let (vacancies, substitutions) = lat.apply_defects(&cell, &mut columns, rng);
        let mut sample = lat.render(&cell, &placement, &columns)?;
        sample
            .metadata
            .insert("generator.vacancies".into(), vacancies as f64);
        sample
            .metadata
            .insert("generator.substitutions".into(), substitutions as f64);

        let mut domain = Array2::<u8>::zeros((shape[0], shape[1]));
        Zip::indexed(domain.rows_mut()).par_for_each(|r, mut row| {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (layout.variant([r as f64, c as f64]) + 1) as u8;
            }
        });
        let boundary = boundary_map(&domain, self.wall_width_px / 2.0);
        let mut counts = vec![0usize; n];
        for &v in &domain {
            counts[usize::from(v) - 1] += 1;
        }
        let total = domain.len() as f64;
        for (k, c) in counts.iter().enumerate() {
            sample
                .metadata
                .insert(format!("generator.domain_fraction_{k}"), *c as f64 / total);
        }
        sample.labels.masks.push(Mask {
            name: "domain".into(),
            data: domain,
        });
        sample.labels.masks.push(Mask {
            name: "boundary".into(),
            data: boundary,
        });
        let m = &mut sample.metadata;
        m.insert("generator.sampling_a".into(), placement.sampling_a);
        m.insert("generator.rotation_deg".into(), placement.rotation_deg);
        m.insert("generator.origin_y_a".into(), placement.origin_a[0]);
        m.insert("generator.origin_x_a".into(), placement.origin_a[1]);
        Ok(sample)
    }
}

/// 1 where a pixel with another value lies within `radius_px` (Euclidean), else 0.
pub(crate) fn boundary_map(domain: &Array2<u8>, radius_px: f64) -> Array2<u8> {
    let r = radius_px.max(1.0);
    let ri = r.floor() as i64;
    let offsets: Vec<(i64, i64)> = (-ri..=ri)
        .flat_map(|dy| (-ri..=ri).map(move |dx| (dy, dx)))
        .filter(|&(dy, dx)| ((dy * dy + dx * dx) as f64) <= r * r && (dy, dx) != (0, 0))
        .collect();
    let (ny, nx) = domain.dim();
    let mut out = Array2::<u8>::zeros((ny, nx));
    Zip::indexed(out.rows_mut()).par_for_each(|i, mut row| {
        for (j, o) in row.iter_mut().enumerate() {
            let v = domain[[i, j]];
            let differs = offsets.iter().any(|&(dy, dx)| {
                let (y, x) = (i as i64 + dy, j as i64 + dx);
                y >= 0
                    && x >= 0
                    && (y as usize) < ny
                    && (x as usize) < nx
                    && domain[[y as usize, x as usize]] != v
            });
            *o = u8::from(differs);
        }
    });
    out
}
