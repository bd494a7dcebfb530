//! The finite projection: real-space integration of each atom's potential over each slice's
//! z-range (see the parent module's docs).

use ndarray::{Array3, ArrayViewMut2, Axis};
use rayon::prelude::*;
use stem_core::Progress;

use super::Plan;
use crate::elements::ElementPotential;
use crate::error::Result;

/// |V| (V) at which the potential is cut off.
const CUTOFF_V: f64 = 1e-4;
/// Step of the cumulative z-integral table in Å.
const Z_STEP_A: f64 = 0.02;
/// Points of the geometric radial grid.
const N_RADII: usize = 200;
/// The cosine taper starts at this fraction of the cutoff radius.
const TAPER_START: f64 = 0.85;

/// 8-point Gauss–Legendre nodes and weights on [−1, 1] (Abramowitz & Stegun Table 25.4).
const GL_NODES: [f64; 4] = [
    0.183_434_642_495_649_8,
    0.525_532_409_916_329,
    0.796_666_477_413_626_7,
    0.960_289_856_497_536_3,
];
const GL_WEIGHTS: [f64; 4] = [
    0.362_683_783_378_362,
    0.313_706_645_877_887_3,
    0.222_381_034_453_374_5,
    0.101_228_536_290_376_3,
];

/// The radius (Å) beyond which |V(r)| < 1e-4 V, searched outward-in from 100 Å.
pub(crate) fn cutoff_radius_a(element: &ElementPotential) -> f64 {
    let mut r = 100.0;
    while r > 1e-3 && element.potential_v(r).abs() < CUTOFF_V {
        r *= 0.99;
    }
    // Bisection between r (|V| >= cutoff) and r / 0.99 (below it).
    let (mut lo, mut hi) = (r, (r / 0.99).min(100.0));
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if element.potential_v(mid).abs() >= CUTOFF_V {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Intervals of the uniform r² grid of the outer profile.
const N_OUTER: usize = 2048;

/// One atom–slice profile: on the geometric grid and, beyond `r_split`, on a uniform r² grid.
struct Profile {
    log_grid: Vec<f64>,
    outer: Vec<f64>,
    r2_split: f64,
    r2_step: f64,
}

impl Profile {
    fn new() -> Self {
        Self {
            log_grid: vec![0.0; N_RADII],
            outer: vec![0.0; N_OUTER + 1],
            r2_split: 0.0,
            r2_step: 1.0,
        }
    }
}

/// Cumulative z-integrals T(r_j, z_m) = ∫₀^{z_m} V(√(r_j² + z²)) dz of one element.
struct Table {
    r_min: f64,
    /// ln of the ratio between neighbouring radii.
    log_step: f64,
    r_cut: f64,
    /// Radius (Å) beyond which pixels use the uniform-r² resampling: 20·r_min, at most r_cut/2.
    r_split: f64,
    /// Number of z samples (z_m = m·Z_STEP_A, m < n_z).
    n_z: usize,
    /// `[radius][z]`, row-major.
    values: Vec<f64>,
}

impl Table {
    fn new(element: &ElementPotential, r_min: f64) -> Self {
        let r_cut = cutoff_radius_a(element).max(2.0 * r_min);
        let log_step = (r_cut / r_min).ln() / (N_RADII - 1) as f64;
        let n_z = (r_cut / Z_STEP_A).ceil() as usize + 2;
        let mut values = vec![0.0; N_RADII * n_z];
        values.par_chunks_mut(n_z).enumerate().for_each(|(j, row)| {
            let r = r_min * (log_step * j as f64).exp();
            let mut acc = 0.0;
            for (m, out) in row.iter_mut().enumerate().skip(1) {
                let (z0, z1) = (Z_STEP_A * (m - 1) as f64, Z_STEP_A * m as f64);
                let (c, h) = (0.5 * (z0 + z1), 0.5 * (z1 - z0));
                let mut s = 0.0;
                for (x, w) in GL_NODES.iter().zip(GL_WEIGHTS) {
                    for z in [c - h * x, c + h * x] {
                        s += w * element.potential_v((r * r + z * z).sqrt());
                    }
                }
                acc += s * h;
                *out = acc;
            }
        });
        Self {
            r_min,
            log_step,
            r_cut,
            r_split: (20.0 * r_min).min(0.5 * r_cut),
            n_z,
            values,
        }
    }

    /// T(r_j, z) for any z (odd in z, constant beyond the table), linear in z.
    fn cumulative(&self, j: usize, z: f64) -> f64 {
        let a = z.abs() / Z_STEP_A;
        let m = a.floor() as usize;
        let row = &self.values[j * self.n_z..(j + 1) * self.n_z];
        let v = if m + 1 >= self.n_z {
            row[self.n_z - 1]
        } else {
            let f = a - m as f64;
            row[m] * (1.0 - f) + row[m + 1] * f
        };
        v.copysign(z)
    }

    /// The tapered profile ∫_{z0}^{z1} V dz on the radial grid, plus its resampling on a
    /// uniform grid in r² beyond `r_split` (so that most pixels need no logarithm).
    fn profile(&self, z0: f64, z1: f64, out: &mut Profile) {
        for (j, o) in out.log_grid.iter_mut().enumerate() {
            let r = self.r_min * (self.log_step * j as f64).exp();
            *o = (self.cumulative(j, z1) - self.cumulative(j, z0)) * taper(r, self.r_cut);
        }
        out.r2_split = self.r_split * self.r_split;
        out.r2_step = (self.r_cut * self.r_cut - out.r2_split) / N_OUTER as f64;
        let (r2_split, r2_step) = (out.r2_split, out.r2_step);
        for (i, o) in out.outer.iter_mut().enumerate() {
            *o = self.interpolate(&out.log_grid, r2_split + r2_step * i as f64);
        }
    }

    /// Linear interpolation of a profile at squared radius r2 (< r_cut²), on the geometric
    /// grid: index ln(r/r_min)/log_step = ½·ln(r²/r_min²)/log_step (no square root).
    fn interpolate(&self, profile: &[f64], r2: f64) -> f64 {
        let r_min2 = self.r_min * self.r_min;
        if r2 <= r_min2 {
            return profile[0];
        }
        let a = (r2 / r_min2).ln() * (0.5 / self.log_step);
        let j = a as usize;
        if j + 1 >= N_RADII {
            return profile[N_RADII - 1];
        }
        let f = a - j as f64;
        profile[j] + (profile[j + 1] - profile[j]) * f
    }
}

fn taper(r: f64, r_cut: f64) -> f64 {
    let start = TAPER_START * r_cut;
    if r <= start {
        1.0
    } else if r >= r_cut {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (r - start) / (r_cut - start)).cos())
    }
}

/// Adds one atom's profile to the slice on every pixel within r_cut (periodic laterally).
fn add_atom(
    slice: &mut ArrayViewMut2<'_, f64>,
    plan: &Plan,
    table: &Table,
    profile: &Profile,
    x: f64,
    y: f64,
) {
    let [ny, nx] = plan.gpts;
    let [dy, dx] = plan.sampling;
    let rc = table.r_cut;
    let (iy0, iy1) = (
        ((y - rc) / dy).floor() as i64,
        ((y + rc) / dy).ceil() as i64,
    );
    let (ix0, ix1) = (
        ((x - rc) / dx).floor() as i64,
        ((x + rc) / dx).ceil() as i64,
    );
    let rc2 = rc * rc;
    for iy in iy0..=iy1 {
        let ddy = iy as f64 * dy - y;
        let rest = rc2 - ddy * ddy;
        if rest <= 0.0 {
            continue;
        }
        // Only the columns of this row inside the cutoff disc.
        let half = rest.sqrt();
        let (jx0, jx1) = (
            (((x - half) / dx).floor() as i64).max(ix0),
            (((x + half) / dx).ceil() as i64).min(ix1),
        );
        let row = iy.rem_euclid(ny as i64) as usize;
        let mut out_row = slice.row_mut(row);
        for ix in jx0..=jx1 {
            let ddx = ix as f64 * dx - x;
            let r2 = ddx * ddx + ddy * ddy;
            if r2 >= rc2 {
                continue;
            }
            let col = ix.rem_euclid(nx as i64) as usize;
            out_row[col] += if r2 >= profile.r2_split {
                let a = (r2 - profile.r2_split) / profile.r2_step;
                let i = (a as usize).min(N_OUTER - 1);
                let f = a - i as f64;
                profile.outer[i] + (profile.outer[i + 1] - profile.outer[i]) * f
            } else {
                table.interpolate(&profile.log_grid, r2)
            };
        }
    }
}

pub(super) fn build(plan: &Plan, progress: &dyn Progress) -> Result<Array3<f64>> {
    let [ny, nx] = plan.gpts;
    let r_min = 0.5 * plan.sampling[0].min(plan.sampling[1]);
    let tables: Vec<Table> = plan
        .species
        .iter()
        .map(|s| Table::new(&s.element, r_min))
        .collect();
    let mut out = Array3::<f64>::zeros((plan.n_slices, ny, nx));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .try_for_each_init(Profile::new, |profile, (k, mut slice)| -> Result<()> {
            stem_core::progress::check_cancel(progress)?;
            let (zk0, zk1) = (plan.edges[k], plan.edges[k + 1]);
            let lz = plan.extent[2];
            for (s, table) in plan.species.iter().zip(&tables) {
                // Periodic images along z within reach of the cutoff radius.
                let images = (table.r_cut / lz).ceil() as i64 + 1;
                for p in &s.positions {
                    for m in -images..=images {
                        let za = p[2] + m as f64 * lz;
                        let (z0, z1) = (zk0 - za, zk1 - za);
                        // Skip slices the potential does not reach.
                        if z0 >= table.r_cut || z1 <= -table.r_cut {
                            continue;
                        }
                        table.profile(z0, z1, profile);
                        add_atom(&mut slice, plan, table, profile, p[0], p[1]);
                    }
                }
            }
            progress.advance(1);
            Ok(())
        })?;
    Ok(out)
}
