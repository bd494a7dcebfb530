//! Point sets: one-to-one matching of predicted and true atom-column positions, and the
//! benchmark metrics ID-recall, ID-precision and Δd.
//!
//! Positions are `[y, x]` in pixels (numpy order, pixel centres at integer coordinates) as
//! `[f64; 2]`. Distances are Euclidean in the same units, which assumes square pixels; for
//! anisotropic sampling convert both sets with [`to_angstrom`] first and give the radius in Å.
//!
//! # Definitions (the project's ground-truth/benchmark conventions)
//!
//! * **Matching** ([`match_points`]): a one-to-one assignment between predicted and true
//!   positions in which a pair may only be formed when its distance is `≤ radius_px`. The
//!   assignment is *optimal*: it maximises the number of matched pairs and, among all
//!   maximum matchings, minimises the total distance. (A greedy nearest-pair rule can lose
//!   pairs: with prediction A1 near truths T1 and T2 and A2 only near T1, greedy may give T1 to
//!   A1 and leave A2 unmatched; the optimal matching pairs A1–T2 and A2–T1.)
//! * **True positives** `TP` = matched pairs.
//!   **ID-recall** = `TP / N_truth`, **ID-precision** = `TP / N_predicted`
//!   ([`MatchMetrics`]). With `N_truth = 0` recall is defined as 1 (nothing was missed) and with
//!   `N_predicted = 0` precision is 1 (nothing false was reported).
//! * **Δd** = mean distance of the matched pairs (px, or Å via [`MatchMetrics::to_angstrom`]),
//!   with the RMS and 95th percentile beside it; `None` when nothing is matched.
//! * **Border exclusion** ([`exclude_border`], [`evaluate`]): points closer than a margin to
//!   the image edge are dropped from *both* sets before matching, as AtomAI drops edge
//!   predictions (`rem_edge_coord`): a point is kept when
//!   `margin ≤ y ≤ ny − margin` and `margin ≤ x ≤ nx − margin`.
//!
//! # Algorithm
//!
//! Candidate pairs come from a uniform grid (cell side = radius) over the true positions, so
//! each prediction inspects 3×3 cells. The bipartite candidate graph is split into connected
//! components, and each component is solved exactly by a min-cost assignment (successive
//! shortest paths with potentials on the sparse graph) in which every prediction may instead
//! take a private "unmatched" slot. Costs are compared lexicographically as
//! `(number unmatched, total distance)`, so cardinality always comes first without any "big
//! number" rounding. Components are almost always 1–3 points, so the total cost is
//! O(N log N) for 100k points; components are solved in parallel and the result does not depend
//! on the thread count.
//!
//! ```
//! use stem_core::points::{match_points, evaluate};
//!
//! let truth = [[10.0, 10.0], [10.0, 20.0], [30.0, 30.0]];
//! let predicted = [[10.3, 10.4], [10.0, 21.0], [50.0, 50.0]];
//! let m = match_points(&predicted, &truth, 2.0)?.metrics();
//! assert_eq!(m.n_matched, 2);
//! assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
//! assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
//! assert!((m.mean_distance_px.unwrap() - 0.75).abs() < 1e-12); // (0.5 + 1.0) / 2
//! println!("{m}");
//!
//! // Dropping points within 5 px of the edges of a 40 × 40 image removes [50, 50].
//! let e = evaluate(&predicted, &truth, 2.0, [40, 40], 5.0)?;
//! assert_eq!((e.n_predicted, e.n_truth, e.n_matched), (2, 3, 2));
//! # Ok::<(), stem_core::Error>(())
//! ```

mod assign;
mod stats;
#[cfg(test)]
mod tests;

pub use stats::{MatchMetrics, MatchMetricsA};

use crate::error::{Error, Result};

/// One matched pair: indices into the predicted and true sets and their distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchedPair {
    /// Index into the predicted positions.
    pub predicted: usize,
    /// Index into the true positions.
    pub truth: usize,
    /// Euclidean distance between the two positions (px, or the units of the input).
    pub distance_px: f64,
}

/// The result of [`match_points`]: matched pairs sorted by predicted index, and the set sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Matching {
    /// The matched pairs, sorted by `predicted`.
    pub pairs: Vec<MatchedPair>,
    /// Number of predicted positions.
    pub n_predicted: usize,
    /// Number of true positions.
    pub n_truth: usize,
}

impl Matching {
    /// Recall, precision and distance statistics of this matching (see [`MatchMetrics`]).
    pub fn metrics(&self) -> MatchMetrics {
        MatchMetrics::from_matching(self)
    }

    /// Sum of the matched distances (px), the quantity minimised among maximum matchings.
    pub fn total_distance_px(&self) -> f64 {
        self.pairs.iter().map(|p| p.distance_px).sum()
    }

    /// Indices of predicted positions without a partner (false positives), ascending.
    pub fn unmatched_predicted(&self) -> Vec<usize> {
        let mut used = vec![false; self.n_predicted];
        self.pairs.iter().for_each(|p| used[p.predicted] = true);
        (0..self.n_predicted).filter(|&i| !used[i]).collect()
    }

    /// Indices of true positions without a partner (false negatives), ascending.
    pub fn unmatched_truth(&self) -> Vec<usize> {
        let mut used = vec![false; self.n_truth];
        self.pairs.iter().for_each(|p| used[p.truth] = true);
        (0..self.n_truth).filter(|&i| !used[i]).collect()
    }
}

/// Optimal one-to-one matching of `predicted` to `truth` positions (`[y, x]`, px) with pairs
/// allowed only up to `radius_px` (inclusive): maximum number of pairs, then minimum total
/// distance (see the [module docs](self)).
///
/// Errors: `radius_px` not finite and > 0, or a non-finite coordinate
/// ([`Error::InvalidParameter`] naming the set and the point index). Empty sets are allowed.
pub fn match_points(
    predicted: &[[f64; 2]],
    truth: &[[f64; 2]],
    radius_px: f64,
) -> Result<Matching> {
    if !(radius_px.is_finite() && radius_px > 0.0) {
        return Err(Error::invalid(
            "radius_px",
            format!("must be finite and > 0, got {radius_px}"),
        ));
    }
    check_points("predicted", predicted)?;
    check_points("truth", truth)?;
    Ok(Matching {
        pairs: assign::optimal_pairs(predicted, truth, radius_px),
        n_predicted: predicted.len(),
        n_truth: truth.len(),
    })
}

/// Indices (ascending) of the points kept by border exclusion in an image of `shape`
/// `[ny, nx]` px: those with `margin_px ≤ y ≤ ny − margin_px` and
/// `margin_px ≤ x ≤ nx − margin_px` (AtomAI's `rem_edge_coord` rule).
///
/// Errors: `margin_px` not finite or negative, or a non-finite coordinate.
pub fn exclude_border(
    points: &[[f64; 2]],
    shape: [usize; 2],
    margin_px: f64,
) -> Result<Vec<usize>> {
    if !(margin_px.is_finite() && margin_px >= 0.0) {
        return Err(Error::invalid(
            "margin_px",
            format!("must be finite and >= 0, got {margin_px}"),
        ));
    }
    check_points("points", points)?;
    let [ny, nx] = [shape[0] as f64, shape[1] as f64];
    Ok(points
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p[0] >= margin_px
                && p[0] <= ny - margin_px
                && p[1] >= margin_px
                && p[1] <= nx - margin_px
        })
        .map(|(i, _)| i)
        .collect())
}

/// The benchmark evaluation with a border margin: columns closer than `border_margin_px` to
/// the edge of an image of `shape` `[ny, nx]` (see [`exclude_border`]) are left out, because
/// their neighbourhood is cut (AtomAI likewise drops edge predictions).
///
/// To avoid counting a column that straddles the margin as both missed and spurious, the
/// full sets are matched first (with [`match_points`]), and then:
/// * a true position counts if it is inside the margin-free region;
/// * a matched pair counts if its true position counts;
/// * a predicted position counts if it is matched to a counted true position, or if it is
///   unmatched and itself inside the region (a prediction matched to an excluded edge column
///   is a correct detection and is dropped with that column).
///
/// Counts in the result refer to what counts. Errors: as [`match_points`] and
/// [`exclude_border`].
pub fn evaluate(
    predicted: &[[f64; 2]],
    truth: &[[f64; 2]],
    radius_px: f64,
    shape: [usize; 2],
    border_margin_px: f64,
) -> Result<MatchMetrics> {
    let full = match_points(predicted, truth, radius_px)?;
    let mut truth_in = vec![false; truth.len()];
    for i in exclude_border(truth, shape, border_margin_px)? {
        truth_in[i] = true;
    }
    let mut pred_in = vec![false; predicted.len()];
    for i in exclude_border(predicted, shape, border_margin_px)? {
        pred_in[i] = true;
    }
    let mut matched = vec![false; predicted.len()];
    let mut pairs = Vec::new();
    for pair in &full.pairs {
        matched[pair.predicted] = true;
        if truth_in[pair.truth] {
            pairs.push(*pair);
        }
    }
    let n_unmatched_pred_in = (0..predicted.len())
        .filter(|&i| !matched[i] && pred_in[i])
        .count();
    let counted = Matching {
        n_predicted: pairs.len() + n_unmatched_pred_in,
        n_truth: truth_in.iter().filter(|&&k| k).count(),
        pairs,
    };
    Ok(counted.metrics())
}

/// Converts pixel positions `[y, x]` to Å: `[y·dy, x·dx]` with `pixel_size_a = [dy, dx]`
/// (Å/px, origin at pixel 0).
///
/// Errors: a pixel size not finite and > 0, or a non-finite coordinate.
pub fn to_angstrom(points: &[[f64; 2]], pixel_size_a: [f64; 2]) -> Result<Vec<[f64; 2]>> {
    check_pixel_size(pixel_size_a)?;
    check_points("points", points)?;
    Ok(points
        .iter()
        .map(|p| [p[0] * pixel_size_a[0], p[1] * pixel_size_a[1]])
        .collect())
}

/// Converts positions in Å `[y, x]` back to pixels: `[y/dy, x/dx]` with
/// `pixel_size_a = [dy, dx]` (Å/px); the inverse of [`to_angstrom`].
///
/// Errors: as [`to_angstrom`].
pub fn to_pixels(points_a: &[[f64; 2]], pixel_size_a: [f64; 2]) -> Result<Vec<[f64; 2]>> {
    check_pixel_size(pixel_size_a)?;
    check_points("points_a", points_a)?;
    Ok(points_a
        .iter()
        .map(|p| [p[0] / pixel_size_a[0], p[1] / pixel_size_a[1]])
        .collect())
}

fn check_pixel_size(pixel_size_a: [f64; 2]) -> Result<()> {
    if pixel_size_a.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::invalid(
            "pixel_size_a",
            format!("both entries must be finite and > 0, got {pixel_size_a:?}"),
        ));
    }
    Ok(())
}

fn check_points(name: &'static str, points: &[[f64; 2]]) -> Result<()> {
    match points
        .iter()
        .position(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        Some(i) => Err(Error::invalid(
            name,
            format!("point {i} = {:?} has a non-finite coordinate", points[i]),
        )),
        None => Ok(()),
    }
}
