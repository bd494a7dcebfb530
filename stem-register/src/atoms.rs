//! Atom-column positions on a (registered) image, a lattice fit, and nearest-neighbour bond
//! lengths with error bars.
//!
//! 1. Columns: stem-core [`find_local_maxima`] then [`refine_gaussian`](stem_core::peaks::refine_gaussian) (2-D Gaussian
//!    least squares on a constant background, uncertainties from `(JᵀWJ)⁻¹`).
//! 2. Lattice: the two shortest non-collinear nearest-neighbour vectors (the modes of the
//!    neighbour-difference vectors) index every column, `p ≈ o + i·a₁ + j·a₂` with integer
//!    `(i, j)`; columns more than 0.25 of the shorter lattice vector from a lattice site are not
//!    indexed (e.g. a second sub-lattice). The origin and vectors are then the linear
//!    least-squares fit to the indexed columns, with covariance `s²(XᵀX)⁻¹`
//!    (`s²` = residual variance per coordinate); indexing and fit are repeated twice.
//! 3. Bonds: for every indexed column, its neighbours at `(i + 1, j)` and `(i, j + 1)`. The
//!    length `L = |p_b − p_a|` has the propagated uncertainty
//!    `σ_L² = Σ_c u_c² (σ_a,c² + σ_b,c²)` (u the unit bond vector), and its change is
//!    `L − |a_k|` relative to the fitted lattice.
//! 4. A per-direction summary (as the Pt-nanoparticle table of the seed talk): mean length and
//!    its standard error, the observed standard deviation, and the RMS of the reported σ_L; the
//!    last two agree when the uncertainties are right.
//!
//! On a series average: [`atom_positions_on_average`] fits `mean × N` (not the summed counts,
//! whose steps where shifted frames leave fewer frames bias the columns) with the Poisson
//! model; [`atom_positions_jackknife`] replaces the model σ by a delete-one jackknife over the
//! frames, `σ² = (N − 1)/N · Σ_k (θ₍ₖ₎ − θ̄)²`, which also contains the frames' own registration
//! errors and the interpolation's noise correlation (causes, formula and assumptions: the
//! [`jackknife`] module).
//!
//! Positions are `[y, x]` in px.
//!
//! ```
//! use ndarray::Array2;
//! use stem_register::atoms::{atom_positions, AtomConfig};
//! use stem_core::{ImageView, NoProgress};
//!
//! // a 10 px square lattice of Gaussian columns
//! let img = Array2::from_shape_fn((64, 64), |(i, j)| {
//!     let (dy, dx) = ((i as f64 - 2.0) % 10.0 - 5.0, (j as f64 - 3.0) % 10.0 - 5.0);
//!     (5.0 + 100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32
//! });
//! let res = atom_positions(ImageView::from(&img), &AtomConfig::default(), &NoProgress).unwrap();
//! let lat = res.lattice.unwrap();
//! assert!((lat.a1_len_px() - 10.0).abs() < 0.01 && (lat.a2_len_px() - 10.0).abs() < 0.01);
//! assert!(res.bonds.iter().all(|b| b.change_px.abs() < 0.01));
//! ```

pub mod jackknife;

pub use jackknife::{SeriesAtomPositions, atom_positions_jackknife};

use crate::error::{Error, Result, check_cancel};
#[cfg(test)]
use stem_core::CancelFlag;
use stem_core::peaks::{
    GaussianFitConfig, LocalMaximaConfig, NoiseModel, find_local_maxima,
    refine_gaussian_with_progress,
};
use stem_core::{ImageView, Progress};

/// Settings of [`atom_positions`].
#[derive(Clone, Debug, PartialEq)]
pub struct AtomConfig {
    /// Local-maximum search. Default: stem-core's defaults with `min_distance_px` 5,
    /// `threshold_rel` 0.2 and `exclude_border_px` 6.
    pub maxima: LocalMaximaConfig,
    /// Gaussian refinement (window, noise model for the uncertainties). Default: stem-core's
    /// defaults with a round Gaussian (`elliptical = false`) and a 4-px window.
    pub fit: GaussianFitConfig,
}

impl Default for AtomConfig {
    fn default() -> Self {
        AtomConfig {
            maxima: LocalMaximaConfig {
                min_distance_px: 5,
                threshold_rel: 0.2,
                exclude_border_px: 6,
                ..Default::default()
            },
            fit: GaussianFitConfig {
                elliptical: false,
                radius_px: 4.0,
                ..Default::default()
            },
        }
    }
}

/// One refined column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    /// Position `[y, x]` (px).
    pub position: [f64; 2],
    /// One-σ uncertainty `[σ_y, σ_x]` (px).
    pub sigma: [f64; 2],
    /// Peak height above the background (image units).
    pub amplitude: f64,
    /// Lattice indices `(i, j)` when the column sits on the fitted lattice.
    pub lattice_index: Option<[i64; 2]>,
}

/// A lattice `p = origin + i·a1 + j·a2` fitted to column positions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatticeFit {
    /// Origin `[y, x]` (px).
    pub origin: [f64; 2],
    /// First lattice vector `[y, x]` (px) (the shorter one).
    pub a1: [f64; 2],
    /// Second lattice vector `[y, x]` (px).
    pub a2: [f64; 2],
    /// Standard errors of `a1` components `[y, x]` (px).
    pub sigma_a1: [f64; 2],
    /// Standard errors of `a2` components `[y, x]` (px).
    pub sigma_a2: [f64; 2],
    /// RMS residual of the indexed columns from their lattice sites (px, per coordinate).
    pub rms_residual_px: f64,
    /// Number of indexed columns.
    pub indexed: usize,
}

impl LatticeFit {
    /// `|a1|` (px).
    pub fn a1_len_px(&self) -> f64 {
        self.a1[0].hypot(self.a1[1])
    }
    /// `|a2|` (px).
    pub fn a2_len_px(&self) -> f64 {
        self.a2[0].hypot(self.a2[1])
    }
}

/// A nearest-neighbour bond between two indexed columns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bond {
    /// Index of the first column in [`AtomPositions::columns`].
    pub from: usize,
    /// Index of the second column.
    pub to: usize,
    /// Lattice direction: 1 for `a1`, 2 for `a2`.
    pub direction: u8,
    /// Length (px).
    pub length_px: f64,
    /// Propagated one-σ uncertainty of the length (px).
    pub sigma_px: f64,
    /// Length minus the fitted lattice vector's length (px).
    pub change_px: f64,
}

/// Statistics of the bonds along one lattice direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BondSummary {
    /// 1 for `a1`, 2 for `a2`.
    pub direction: u8,
    /// Number of bonds.
    pub count: usize,
    /// Mean length (px).
    pub mean_px: f64,
    /// Standard error of the mean (px): observed standard deviation / √count.
    pub sem_px: f64,
    /// Observed standard deviation of the lengths (px).
    pub std_px: f64,
    /// RMS of the reported per-bond uncertainties (px); ≈ `std_px` when the uncertainties are
    /// right and the lattice is undistorted.
    pub rms_sigma_px: f64,
}

/// The result of [`atom_positions`].
#[derive(Clone, Debug, PartialEq)]
pub struct AtomPositions {
    /// Refined columns (converged fits only), in decreasing intensity.
    pub columns: Vec<Column>,
    /// The lattice fit, when at least 6 columns could be indexed.
    pub lattice: Option<LatticeFit>,
    /// Nearest-neighbour bonds along `a1` and `a2`.
    pub bonds: Vec<Bond>,
    /// Per-direction bond statistics (`a1` first); empty without a lattice.
    pub summary: Vec<BondSummary>,
}

/// Finds and refines the columns of `image`, fits a lattice and measures the bonds.
///
/// For a series average use [`atom_positions_on_average`] or, for uncertainties that include
/// the residual registration error, [`atom_positions_jackknife`].
///
/// # Errors
/// Those of stem-core's peak finder and Gaussian fit (as [`Error::Core`]); [`Error::Cancelled`].
pub fn atom_positions(
    image: ImageView<'_, f32>,
    config: &AtomConfig,
    progress: &dyn Progress,
) -> Result<AtomPositions> {
    let columns = find_columns(image, config, progress)?;
    assemble(columns)
}

/// Local maxima of `image` refined with the Gaussian fit; converged fits with finite σ only.
fn find_columns(
    image: ImageView<'_, f32>,
    config: &AtomConfig,
    progress: &dyn Progress,
) -> Result<Vec<Column>> {
    let peaks = find_local_maxima(image, &config.maxima)?;
    check_cancel(progress)?;
    let initial: Vec<[f64; 2]> = peaks
        .iter()
        .map(|p| [p.position[0] as f64, p.position[1] as f64])
        .collect();
    let refined = refine_gaussian_with_progress(image, &initial, &config.fit, progress)
        .map_err(crate::error::from_core)?;
    Ok(refined
        .iter()
        .filter(|p| p.converged && p.sigma_position.iter().all(|s| s.is_finite()))
        .map(|p| Column {
            position: p.position,
            sigma: p.sigma_position,
            amplitude: p.amplitude,
            lattice_index: None,
        })
        .collect())
}

/// Lattice fit, indices and bonds of refined columns.
fn assemble(mut columns: Vec<Column>) -> Result<AtomPositions> {
    let positions: Vec<[f64; 2]> = columns.iter().map(|c| c.position).collect();
    let lattice = match fit_lattice(&positions) {
        Ok((fit, idx)) => {
            for (c, i) in columns.iter_mut().zip(idx) {
                c.lattice_index = i;
            }
            Some(fit)
        }
        Err(Error::TooFewColumns { .. }) => None,
        Err(e) => return Err(e),
    };
    let (bonds, summary) = match &lattice {
        Some(l) => bonds_of(&columns, l),
        None => (Vec::new(), Vec::new()),
    };
    Ok(AtomPositions {
        columns,
        lattice,
        bonds,
        summary,
    })
}

/// [`atom_positions`] on a series average: the image is `mean × N` with `N` the largest
/// per-pixel frame count (the counts of a full-coverage pixel) and the fit uses
/// [`NoiseModel::Poisson`]; each column's σ is then scaled by `√(N / c)` with `c` the frame
/// count at its (rounded) position, since the mean of `c` Poisson frames has variance
/// `mean / c`, i.e. `(mean·N)·(N/c)` on this scale.
///
/// Not the **sum** `mean × counts`: where shifted frames leave a pixel with fewer frames the
/// sum steps down, and a column near such a step is pulled off its position by a bias the
/// same in every frame (measured on a 256², 10-frame series with ±12 px shifts: 0.051 px RMS
/// over the columns, 2.2× the pixel-noise σ; the cause of the ≈ 2.6× understatement of the
/// scatter reported in session 2).
///
/// The uncertainties are those of independent Poisson pixels: they do not contain the
/// residual registration error; [`atom_positions_jackknife`] does.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `mean` and `counts` differ; those of [`atom_positions`].
pub fn atom_positions_on_average(
    average: &crate::warp::Average,
    config: &AtomConfig,
    progress: &dyn Progress,
) -> Result<AtomPositions> {
    if average.mean.dim() != average.counts.dim() {
        return Err(Error::ShapeMismatch {
            expected: average.mean.shape().to_vec(),
            found: average.counts.shape().to_vec(),
        });
    }
    let full = average.counts.iter().copied().max().unwrap_or(0);
    let scaled = ndarray::Zip::from(&average.mean)
        .and(&average.counts)
        .map_collect(|&m, &c| {
            if c > 0 {
                (m * full as f32).max(0.0)
            } else {
                0.0
            }
        });
    let cfg = AtomConfig {
        fit: GaussianFitConfig {
            noise: NoiseModel::Poisson,
            ..config.fit.clone()
        },
        ..config.clone()
    };
    let mut res = atom_positions(ImageView::new(scaled.view()), &cfg, progress)?;
    let (ny, nx) = average.counts.dim();
    let mut changed = false;
    for c in &mut res.columns {
        let (i, j) = (
            (c.position[0].round().max(0.0) as usize).min(ny.saturating_sub(1)),
            (c.position[1].round().max(0.0) as usize).min(nx.saturating_sub(1)),
        );
        let here = average.counts[[i, j]];
        if here > 0 && here < full {
            let f = (f64::from(full) / f64::from(here)).sqrt();
            c.sigma = [c.sigma[0] * f, c.sigma[1] * f];
            changed = true;
        }
    }
    if changed {
        // the bond σ propagate the column σ
        if let Some(l) = &res.lattice {
            let (bonds, summary) = bonds_of(&res.columns, l);
            res.bonds = bonds;
            res.summary = summary;
        }
    }
    Ok(res)
}

type Indexed = Vec<Option<[i64; 2]>>;

/// Fits a lattice to `positions` (`[y, x]`, px); returns the fit and each position's indices.
///
/// # Errors
/// [`Error::TooFewColumns`] with fewer than 6 positions, no two non-collinear neighbour vectors,
/// or fewer than 6 indexed columns.
pub fn fit_lattice(positions: &[[f64; 2]]) -> Result<(LatticeFit, Indexed)> {
    let n = positions.len();
    if n < 6 {
        return Err(Error::TooFewColumns { min: 6, found: n });
    }
    // neighbour difference vectors (4 nearest per column), folded into one half-plane
    let mut vecs: Vec<[f64; 2]> = Vec::new();
    for (a, pa) in positions.iter().enumerate() {
        let mut d: Vec<(f64, [f64; 2])> = positions
            .iter()
            .enumerate()
            .filter(|(b, _)| *b != a)
            .map(|(_, pb)| {
                let v = [pb[0] - pa[0], pb[1] - pa[1]];
                (v[0].hypot(v[1]), v)
            })
            .collect();
        d.sort_by(|x, y| x.0.total_cmp(&y.0));
        for (_, mut v) in d.into_iter().take(4) {
            if v[0] < 0.0 || (v[0] == 0.0 && v[1] < 0.0) {
                v = [-v[0], -v[1]];
            }
            vecs.push(v);
        }
    }
    let too_few = Error::TooFewColumns { min: 6, found: n };
    // mode: the vector with most others within 15 % of its length; ties → shorter
    let support = |v: &[f64; 2]| {
        let tol = 0.15 * v[0].hypot(v[1]);
        vecs.iter()
            .filter(|w| (w[0] - v[0]).hypot(w[1] - v[1]) < tol)
            .count()
    };
    let mode_of = |cands: &[[f64; 2]]| -> Option<[f64; 2]> {
        let best = cands
            .iter()
            .map(|v| (support(v), -v[0].hypot(v[1]), *v))
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))?;
        // average of the cluster
        let v = best.2;
        let tol = 0.15 * v[0].hypot(v[1]);
        let cl: Vec<&[f64; 2]> = vecs
            .iter()
            .filter(|w| (w[0] - v[0]).hypot(w[1] - v[1]) < tol)
            .collect();
        let m = cl.len() as f64;
        Some([
            cl.iter().map(|w| w[0]).sum::<f64>() / m,
            cl.iter().map(|w| w[1]).sum::<f64>() / m,
        ])
    };
    let t1 = mode_of(&vecs).ok_or(Error::TooFewColumns { min: 6, found: n })?;
    let l1 = t1[0].hypot(t1[1]);
    let rest: Vec<[f64; 2]> = vecs
        .iter()
        .filter(|w| {
            let l = w[0].hypot(w[1]);
            l > 0.0 && ((w[0] * t1[0] + w[1] * t1[1]) / (l * l1)).abs() < 0.9
        })
        .cloned()
        .collect();
    let t2 = mode_of(&rest).ok_or(too_few)?;
    let (mut a1, mut a2) = if t1[0].hypot(t1[1]) <= t2[0].hypot(t2[1]) {
        (t1, t2)
    } else {
        (t2, t1)
    };
    // origin: the brightest (first) column
    let mut origin = positions[0];
    let mut fit = None;
    let mut idx: Indexed = vec![None; n];
    for _ in 0..3 {
        let det = a1[0] * a2[1] - a1[1] * a2[0];
        if det.abs() < 1e-9 {
            return Err(Error::TooFewColumns { min: 6, found: 0 });
        }
        let tol = 0.25 * a1[0].hypot(a1[1]).min(a2[0].hypot(a2[1]));
        let mut rows: Vec<([f64; 3], [f64; 2])> = Vec::new();
        for (k, p) in positions.iter().enumerate() {
            let d = [p[0] - origin[0], p[1] - origin[1]];
            // solve d = i a1 + j a2
            let i = (d[0] * a2[1] - d[1] * a2[0]) / det;
            let j = (a1[0] * d[1] - a1[1] * d[0]) / det;
            let (ri, rj) = (i.round(), j.round());
            let site = [
                origin[0] + ri * a1[0] + rj * a2[0],
                origin[1] + ri * a1[1] + rj * a2[1],
            ];
            if (p[0] - site[0]).hypot(p[1] - site[1]) <= tol {
                idx[k] = Some([ri as i64, rj as i64]);
                rows.push(([1.0, ri, rj], *p));
            } else {
                idx[k] = None;
            }
        }
        if rows.len() < 6 {
            return Err(Error::TooFewColumns {
                min: 6,
                found: rows.len(),
            });
        }
        // normal equations (3×3), same design for y and x
        let mut xtx = [[0.0f64; 3]; 3];
        let mut xty = [[0.0f64; 2]; 3];
        for (x, p) in &rows {
            for a in 0..3 {
                for b in 0..3 {
                    xtx[a][b] += x[a] * x[b];
                }
                xty[a][0] += x[a] * p[0];
                xty[a][1] += x[a] * p[1];
            }
        }
        let inv = invert3(xtx).ok_or(Error::TooFewColumns {
            min: 6,
            found: rows.len(),
        })?;
        let mut beta = [[0.0f64; 2]; 3];
        for a in 0..3 {
            for b in 0..3 {
                beta[a][0] += inv[a][b] * xty[b][0];
                beta[a][1] += inv[a][b] * xty[b][1];
            }
        }
        origin = beta[0];
        a1 = beta[1];
        a2 = beta[2];
        let mut rss = [0.0f64; 2];
        for (x, p) in &rows {
            for c in 0..2 {
                let pred = beta[0][c] + x[1] * beta[1][c] + x[2] * beta[2][c];
                rss[c] += (p[c] - pred).powi(2);
            }
        }
        let dof = (rows.len() - 3) as f64;
        let s2 = [rss[0] / dof, rss[1] / dof];
        fit = Some(LatticeFit {
            origin,
            a1,
            a2,
            sigma_a1: [(s2[0] * inv[1][1]).sqrt(), (s2[1] * inv[1][1]).sqrt()],
            sigma_a2: [(s2[0] * inv[2][2]).sqrt(), (s2[1] * inv[2][2]).sqrt()],
            rms_residual_px: ((rss[0] + rss[1]) / (2.0 * rows.len() as f64)).sqrt(),
            indexed: rows.len(),
        });
    }
    fit.map(|f| (f, idx))
        .ok_or(Error::TooFewColumns { min: 6, found: 0 })
}

fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, d) = ((i + 1) % 3, (i + 2) % 3);
            r[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;
        }
    }
    Some(r)
}

fn bonds_of(columns: &[Column], lat: &LatticeFit) -> (Vec<Bond>, Vec<BondSummary>) {
    use std::collections::HashMap;
    let by_index: HashMap<[i64; 2], usize> = columns
        .iter()
        .enumerate()
        .filter_map(|(k, c)| c.lattice_index.map(|i| (i, k)))
        .collect();
    let mut bonds = Vec::new();
    for (a, c) in columns.iter().enumerate() {
        let Some([i, j]) = c.lattice_index else {
            continue;
        };
        for (dir, nb, ideal) in [
            (1u8, [i + 1, j], lat.a1_len_px()),
            (2u8, [i, j + 1], lat.a2_len_px()),
        ] {
            if let Some(&b) = by_index.get(&nb) {
                let (pa, pb) = (c.position, columns[b].position);
                let v = [pb[0] - pa[0], pb[1] - pa[1]];
                let l = v[0].hypot(v[1]);
                let u = [v[0] / l, v[1] / l];
                let (sa, sb) = (c.sigma, columns[b].sigma);
                let var = u[0] * u[0] * (sa[0] * sa[0] + sb[0] * sb[0])
                    + u[1] * u[1] * (sa[1] * sa[1] + sb[1] * sb[1]);
                bonds.push(Bond {
                    from: a,
                    to: b,
                    direction: dir,
                    length_px: l,
                    sigma_px: var.sqrt(),
                    change_px: l - ideal,
                });
            }
        }
    }
    let summary = summarize(&bonds);
    (bonds, summary)
}

/// Per-direction statistics of `bonds` (directions with at least 2 bonds).
fn summarize(bonds: &[Bond]) -> Vec<BondSummary> {
    [1u8, 2]
        .iter()
        .filter_map(|&d| {
            let ls: Vec<&Bond> = bonds.iter().filter(|b| b.direction == d).collect();
            let m = ls.len();
            if m < 2 {
                return None;
            }
            let mean = ls.iter().map(|b| b.length_px).sum::<f64>() / m as f64;
            let var = ls.iter().map(|b| (b.length_px - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
            let rms_sigma = (ls.iter().map(|b| b.sigma_px.powi(2)).sum::<f64>() / m as f64).sqrt();
            Some(BondSummary {
                direction: d,
                count: m,
                mean_px: mean,
                sem_px: (var / m as f64).sqrt(),
                std_px: var.sqrt(),
                rms_sigma_px: rms_sigma,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use stem_core::NoProgress;

    #[test]
    fn lattice_fit_recovers_oblique_lattice() {
        let (a1, a2, o) = ([1.0, 9.0], [8.0, -3.0], [20.0, 30.0]);
        let mut pts = Vec::new();
        for i in -3..4 {
            for j in -3..4 {
                let p = [
                    o[0] + i as f64 * a1[0] + j as f64 * a2[0],
                    o[1] + i as f64 * a1[1] + j as f64 * a2[1],
                ];
                // deterministic ±0.01 px perturbation
                let e = 0.01 * (((i * 7 + j * 3) % 5) as f64 - 2.0) / 2.0;
                pts.push([p[0] + e, p[1] - e]);
            }
        }
        let (fit, idx) = fit_lattice(&pts).unwrap();
        assert_eq!(fit.indexed, 49);
        assert!(idx.iter().all(|i| i.is_some()));
        // the fit may choose ±a or a1 + a2 combinations; compare the cell area and the lengths
        let area = (fit.a1[0] * fit.a2[1] - fit.a1[1] * fit.a2[0]).abs();
        assert!((area - (a1[0] * a2[1] - a1[1] * a2[0]).abs()).abs() < 0.05);
        let l1 = a1[0].hypot(a1[1]).min(a2[0].hypot(a2[1]));
        assert!((fit.a1_len_px() - l1).abs() < 0.01);
        assert!(fit.rms_residual_px < 0.02);
    }

    #[test]
    fn average_sigma_scales_with_frame_count() {
        // identical columns (integer period); 4 frames on the left half, 1 on the right: the
        // mean of 1 frame has 4× the variance of the mean of 4 ⇒ σ twice as large there
        let mean = Array2::from_shape_fn((64, 64), |(i, j)| {
            let (dy, dx) = ((i as f64 - 2.0) % 10.0 - 5.0, (j as f64 - 3.0) % 10.0 - 5.0);
            (5.0 + 100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32
        });
        let counts = Array2::from_shape_fn((64, 64), |(_, j)| if j < 32 { 4u32 } else { 1 });
        let avg = crate::warp::Average {
            mean,
            median: Array2::zeros((0, 0)),
            counts,
        };
        let r = atom_positions_on_average(&avg, &AtomConfig::default(), &NoProgress).unwrap();
        let left = r
            .columns
            .iter()
            .find(|c| c.position[1] < 28.0)
            .unwrap()
            .sigma;
        let mut right = 0;
        for c in &r.columns {
            let f = if c.position[1].round() < 32.0 {
                1.0
            } else {
                right += 1;
                2.0
            };
            // identical columns on an identical grid: σ equal up to rounding (1e-6 relative)
            for a in 0..2 {
                assert!((c.sigma[a] / (f * left[a]) - 1.0).abs() < 1e-6, "{c:?}");
            }
        }
        assert!(right > 3);
    }

    #[test]
    fn cancel_is_reported_as_cancelled() {
        let img = Array2::from_shape_fn((40, 40), |(i, j)| {
            let (dy, dx) = ((i % 10) as f64 - 5.0, (j % 10) as f64 - 5.0);
            (100.0 * (-(dy * dy + dx * dx) / 4.5).exp()) as f32
        });
        let flag = CancelFlag::cancel_after(1);
        assert!(matches!(
            atom_positions(ImageView::from(&img), &AtomConfig::default(), &flag),
            Err(Error::Cancelled)
        ));
    }

    #[test]
    fn too_few_columns() {
        assert!(matches!(
            fit_lattice(&[[0.0, 0.0]; 3]),
            Err(Error::TooFewColumns { min: 6, found: 3 })
        ));
        // collinear points: no second vector
        let line: Vec<[f64; 2]> = (0..10).map(|i| [0.0, 5.0 * i as f64]).collect();
        assert!(fit_lattice(&line).is_err());
        let flat = Array2::<f32>::from_elem((32, 32), 1.0);
        let r =
            atom_positions(ImageView::from(&flat), &AtomConfig::default(), &NoProgress).unwrap();
        assert!(r.columns.is_empty() && r.lattice.is_none() && r.bonds.is_empty());
    }
}
