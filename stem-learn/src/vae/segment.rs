//! Segmentation of latent maps (seeded k-means), boundary maps and their scores.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seeded k-means (k-means++ initialisation, Lloyd iterations, `restarts` runs, lowest inertia
/// kept) of `points` (`n × dim`, row-major). Labels are renumbered so that cluster centroids
/// are in increasing order of their first coordinate. Deterministic for a given `seed`.
///
/// ```
/// use stem_learn::vae::kmeans;
/// let pts = [0.0, 0.1, 0.05, 5.0, 5.1, 4.9];
/// let labels = kmeans(&pts, 1, 2, 3, 0).unwrap();
/// assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
/// ```
pub fn kmeans(
    points: &[f32],
    dim: usize,
    k: usize,
    restarts: usize,
    seed: u64,
) -> Result<Vec<u16>> {
    if dim == 0 || points.len() % dim != 0 {
        return Err(Error::param(
            "dim",
            format!(
                "{} values do not split into points of dim {dim}",
                points.len()
            ),
        ));
    }
    let n = points.len() / dim;
    if k == 0 || k > n || k > usize::from(u16::MAX) {
        return Err(Error::param(
            "classes",
            format!("must be 1 ..= number of points {n}, got {k}"),
        ));
    }
    if let Some(i) = points.iter().position(|v| !v.is_finite()) {
        return Err(Error::param("points", format!("value {i} is not finite")));
    }
    let p = |i: usize| &points[i * dim..(i + 1) * dim];
    let d2 = |a: &[f32], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - y).powi(2))
            .sum()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<(f64, Vec<usize>, Vec<Vec<f64>>)> = None;
    for _ in 0..restarts.max(1) {
        // k-means++ seeding.
        let mut cents: Vec<Vec<f64>> = Vec::with_capacity(k);
        let first = rng.random_range(0..n);
        cents.push(p(first).iter().map(|&v| f64::from(v)).collect());
        let mut dist: Vec<f64> = (0..n).map(|i| d2(p(i), &cents[0])).collect();
        while cents.len() < k {
            let total: f64 = dist.iter().sum();
            let pick = if total > 0.0 {
                let mut u = rng.random::<f64>() * total;
                let mut pick = n - 1;
                for (i, &d) in dist.iter().enumerate() {
                    if u < d {
                        pick = i;
                        break;
                    }
                    u -= d;
                }
                pick
            } else {
                rng.random_range(0..n)
            };
            let c: Vec<f64> = p(pick).iter().map(|&v| f64::from(v)).collect();
            for (i, d) in dist.iter_mut().enumerate() {
                *d = d.min(d2(p(i), &c));
            }
            cents.push(c);
        }
        let mut labels = vec![0usize; n];
        let mut inertia = f64::INFINITY;
        for _ in 0..300 {
            let mut changed = false;
            inertia = 0.0;
            for (i, l) in labels.iter_mut().enumerate() {
                let (mut bd, mut bl) = (f64::INFINITY, 0);
                for (c, cent) in cents.iter().enumerate() {
                    let d = d2(p(i), cent);
                    if d < bd {
                        (bd, bl) = (d, c);
                    }
                }
                inertia += bd;
                if *l != bl {
                    *l = bl;
                    changed = true;
                }
            }
            let mut sums = vec![vec![0.0; dim]; k];
            let mut counts = vec![0usize; k];
            for (i, &l) in labels.iter().enumerate() {
                counts[l] += 1;
                for (s, &v) in sums[l].iter_mut().zip(p(i)) {
                    *s += f64::from(v);
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    cents[c] = sums[c].iter().map(|s| s / counts[c] as f64).collect();
                }
            }
            if !changed {
                break;
            }
        }
        if best.as_ref().is_none_or(|b| inertia < b.0) {
            best = Some((inertia, labels, cents));
        }
    }
    let Some((_, labels, cents)) = best else {
        return Err(Error::param("restarts", "no k-means run"));
    };
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| cents[a][0].total_cmp(&cents[b][0]).then(a.cmp(&b)));
    let mut rank = vec![0u16; k];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r as u16;
    }
    Ok(labels.iter().map(|&l| rank[l]).collect())
}

/// 1 where a cell's label differs from that of one of its 4 neighbours, else 0 (`[gy, gx]`).
///
/// ```
/// use ndarray::array;
/// use stem_learn::vae::boundary_map;
/// let l = array![[0u16, 0, 1], [0, 0, 1]];
/// assert_eq!(boundary_map(l.view()), array![[0u8, 1, 1], [0, 1, 1]]);
/// ```
pub fn boundary_map(labels: ArrayView2<'_, u16>) -> Array2<u8> {
    let (h, w) = labels.dim();
    Array2::from_shape_fn((h, w), |(i, j)| {
        let v = labels[[i, j]];
        let diff = (i > 0 && labels[[i - 1, j]] != v)
            || (i + 1 < h && labels[[i + 1, j]] != v)
            || (j > 0 && labels[[i, j - 1]] != v)
            || (j + 1 < w && labels[[i, j + 1]] != v);
        u8::from(diff)
    })
}

/// Scores of a segmentation against the truth, both `[gy, gx]` label maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentationScore {
    /// Fraction of cells whose predicted label, mapped by the best one-to-one label
    /// permutation, equals the true label (in [0, 1]).
    pub accuracy: f64,
    /// Fraction of predicted boundary cells with a true boundary cell within the tolerance.
    pub boundary_precision: f64,
    /// Fraction of true boundary cells with a predicted boundary cell within the tolerance.
    pub boundary_recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0; 1 when neither map has a
    /// boundary).
    pub boundary_f1: f64,
}

/// Scores `pred` against `truth` (`[gy, gx]` label maps): accuracy under the best label
/// permutation (all permutations, so at most 8 labels on either side), and the precision, recall
/// and F1 of their [`boundary_map`]s, a boundary cell matching when one of the other map lies
/// within Chebyshev distance `tolerance_cells`.
///
/// ```
/// use ndarray::array;
/// use stem_learn::vae::score_segmentation;
/// let truth = array![[1u16, 1, 2, 2], [1, 1, 2, 2]];
/// let pred = array![[5u16, 5, 5, 0], [5, 5, 5, 0]]; // labels swapped names, boundary off by 1
/// let s = score_segmentation(pred.view(), truth.view(), 1).unwrap();
/// assert_eq!(s.accuracy, 0.75);
/// assert_eq!(s.boundary_f1, 1.0);
/// assert!(score_segmentation(pred.view(), truth.view(), 0).unwrap().boundary_f1 < 1.0);
/// ```
pub fn score_segmentation(
    pred: ArrayView2<'_, u16>,
    truth: ArrayView2<'_, u16>,
    tolerance_cells: usize,
) -> Result<SegmentationScore> {
    if pred.dim() != truth.dim() {
        return Err(Error::ShapeMismatch {
            what: "segmentation vs truth",
            expected: vec![truth.dim().0, truth.dim().1],
            found: vec![pred.dim().0, pred.dim().1],
        });
    }
    let ids = |m: &ArrayView2<'_, u16>| {
        let mut v: Vec<u16> = m.iter().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (pi, ti) = (ids(&pred), ids(&truth));
    let k = pi.len().max(ti.len());
    if k > 8 {
        return Err(Error::param(
            "classes",
            format!("at most 8 labels can be scored, got {k}"),
        ));
    }
    let mut conf = vec![vec![0usize; k]; k];
    for (a, b) in pred.iter().zip(truth.iter()) {
        let ia = pi.binary_search(a).unwrap_or(0);
        let ib = ti.binary_search(b).unwrap_or(0);
        conf[ia][ib] += 1;
    }
    let mut perm: Vec<usize> = (0..k).collect();
    let mut best = 0usize;
    permute(&mut perm, 0, &mut |p| {
        let s: usize = (0..k).map(|a| conf[a][p[a]]).sum();
        best = best.max(s);
    });
    let n = pred.len().max(1);
    let (bp, bt) = (boundary_map(pred), boundary_map(truth));
    let near = |m: &Array2<u8>, i: usize, j: usize| {
        let t = tolerance_cells;
        let (h, w) = m.dim();
        (i.saturating_sub(t)..(i + t + 1).min(h))
            .any(|y| (j.saturating_sub(t)..(j + t + 1).min(w)).any(|x| m[[y, x]] == 1))
    };
    let (mut np, mut tp_p, mut nt, mut tp_t) = (0usize, 0usize, 0usize, 0usize);
    for ((i, j), &v) in bp.indexed_iter() {
        if v == 1 {
            np += 1;
            tp_p += usize::from(near(&bt, i, j));
        }
    }
    for ((i, j), &v) in bt.indexed_iter() {
        if v == 1 {
            nt += 1;
            tp_t += usize::from(near(&bp, i, j));
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp_p, np), ratio(tp_t, nt));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Ok(SegmentationScore {
        accuracy: best as f64 / n as f64,
        boundary_precision: precision,
        boundary_recall: recall,
        boundary_f1: f1,
    })
}

fn permute(p: &mut [usize], i: usize, f: &mut impl FnMut(&[usize])) {
    if i == p.len() {
        f(p);
        return;
    }
    for j in i..p.len() {
        p.swap(i, j);
        permute(p, i + 1, f);
        p.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn kmeans_validation_rules() {
        assert!(kmeans(&[1.0, 2.0, 3.0], 2, 1, 1, 0).is_err());
        assert!(kmeans(&[1.0, 2.0], 1, 3, 1, 0).is_err());
        assert!(kmeans(&[1.0, 2.0], 1, 0, 1, 0).is_err());
        assert!(kmeans(&[1.0, f32::NAN], 1, 1, 1, 0).is_err());
    }

    #[test]
    fn kmeans_recovers_three_blobs() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let centres = [[0.0f32, 0.0], [4.0, 0.0], [0.0, 4.0]];
        let mut pts = Vec::new();
        let mut truth = Vec::new();
        for i in 0..300 {
            let c = centres[i % 3];
            pts.push(c[0] + rng.random_range(-1.0f32..1.0));
            pts.push(c[1] + rng.random_range(-1.0f32..1.0));
            truth.push((i % 3) as u16);
        }
        let l = kmeans(&pts, 2, 3, 4, 1).unwrap();
        let p = Array2::from_shape_vec((1, 300), l).unwrap();
        let t = Array2::from_shape_vec((1, 300), truth).unwrap();
        // Blobs of half-width 1 that are 4 apart never overlap: perfect separation.
        assert_eq!(
            score_segmentation(p.view(), t.view(), 0).unwrap().accuracy,
            1.0
        );
    }

    #[test]
    fn scores_validation_and_edge_cases() {
        let a = Array2::<u16>::zeros((2, 2));
        let b = Array2::<u16>::zeros((2, 3));
        assert!(matches!(
            score_segmentation(a.view(), b.view(), 1),
            Err(Error::ShapeMismatch { .. })
        ));
        let many = Array2::from_shape_fn((1, 9), |(_, j)| j as u16);
        assert!(score_segmentation(many.view(), many.view(), 0).is_err());
        // No boundaries anywhere: perfect.
        let s = score_segmentation(a.view(), a.view(), 0).unwrap();
        assert_eq!((s.accuracy, s.boundary_f1), (1.0, 1.0));
        // Predicted boundary where there is none: precision 0, F1 0.
        let p = ndarray::array![[0u16, 1]];
        let t = ndarray::array![[0u16, 0]];
        let s = score_segmentation(p.view(), t.view(), 0).unwrap();
        assert_eq!((s.boundary_precision, s.boundary_f1), (0.0, 0.0));
        assert_eq!(s.accuracy, 0.5);
    }
}
