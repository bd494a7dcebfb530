use super::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn total(m: &Matching) -> f64 {
    m.total_distance_px()
}

#[test]
fn optimal_beats_greedy_nearest_pair() {
    // A1 is nearest to T1 (0.9) but also near T2 (1.1); A2 is only near T1 (1.0).
    // Greedy (closest pair first) gives A1–T1 and leaves A2 alone; optimal matches both.
    let truth = [[0.0, 0.0], [0.0, 2.0]];
    let pred = [[0.0, 0.9], [0.0, -1.0]];
    let m = match_points(&pred, &truth, 1.5).unwrap();
    assert_eq!(m.pairs.len(), 2);
    assert_eq!((m.pairs[0].predicted, m.pairs[0].truth), (0, 1));
    assert_eq!((m.pairs[1].predicted, m.pairs[1].truth), (1, 0));
    assert!((total(&m) - 2.1).abs() < 1e-12);
}

#[test]
fn cardinality_comes_before_distance() {
    // {A1–T1} costs 0 but has one pair; {A1–T2, A2–T1} costs 2.8 with two pairs.
    let truth = [[0.0, 0.0], [0.0, 1.4]];
    let pred = [[0.0, 0.0], [0.0, -1.4]];
    let m = match_points(&pred, &truth, 1.5).unwrap();
    assert_eq!(m.pairs.len(), 2);
    assert!((total(&m) - 2.8).abs() < 1e-12);
}

#[test]
fn among_maximum_matchings_total_distance_is_minimal() {
    // One truth, two candidates: the closer one wins whatever the order.
    let m = match_points(&[[0.0, 1.0], [0.0, 0.1]], &[[0.0, 0.0]], 2.0).unwrap();
    assert_eq!(
        m.pairs,
        vec![MatchedPair {
            predicted: 1,
            truth: 0,
            distance_px: 0.1
        }]
    );
    // Complete 2×2: straight (0.1 + 0.2) beats crossed (1.2 + 0.9).
    let m = match_points(&[[0.0, 0.0], [0.0, 1.0]], &[[0.0, 0.1], [0.0, 1.2]], 2.0).unwrap();
    assert_eq!((m.pairs[0].truth, m.pairs[1].truth), (0, 1));
    assert!((total(&m) - 0.3).abs() < 1e-12);
    assert_eq!(m.unmatched_predicted(), Vec::<usize>::new());
}

#[test]
fn radius_is_inclusive() {
    let m = match_points(&[[0.0, 0.0]], &[[3.0, 4.0]], 5.0).unwrap();
    assert_eq!(m.pairs.len(), 1);
    assert_eq!(m.pairs[0].distance_px, 5.0);
    let m = match_points(&[[0.0, 0.0]], &[[3.0, 4.0]], 4.999_999).unwrap();
    assert!(m.pairs.is_empty());
    assert_eq!(
        (m.unmatched_predicted(), m.unmatched_truth()),
        (vec![0], vec![0])
    );
}

/// Best (count, total distance) over all partial one-to-one assignments.
fn brute_force(pred: &[[f64; 2]], truth: &[[f64; 2]], radius: f64) -> (usize, f64) {
    struct Search<'a> {
        pred: &'a [[f64; 2]],
        truth: &'a [[f64; 2]],
        radius: f64,
        used: Vec<bool>,
        best: (usize, f64),
    }
    impl Search<'_> {
        fn rec(&mut self, i: usize, cnt: usize, tot: f64) {
            if i == self.pred.len() {
                if cnt > self.best.0 || (cnt == self.best.0 && tot < self.best.1) {
                    self.best = (cnt, tot);
                }
                return;
            }
            self.rec(i + 1, cnt, tot);
            for j in 0..self.truth.len() {
                let (p, t) = (self.pred[i], self.truth[j]);
                let d = ((p[0] - t[0]).powi(2) + (p[1] - t[1]).powi(2)).sqrt();
                if !self.used[j] && d <= self.radius {
                    self.used[j] = true;
                    self.rec(i + 1, cnt + 1, tot + d);
                    self.used[j] = false;
                }
            }
        }
    }
    let mut s = Search {
        pred,
        truth,
        radius,
        used: vec![false; truth.len()],
        best: (0, f64::INFINITY),
    };
    s.rec(0, 0, 0.0);
    if s.best.0 == 0 { (0, 0.0) } else { s.best }
}

fn random_points(rng: &mut ChaCha8Rng, n: usize, extent: f64) -> Vec<[f64; 2]> {
    (0..n)
        .map(|_| [rng.random::<f64>() * extent, rng.random::<f64>() * extent])
        .collect()
}

#[test]
fn oracle_brute_force_on_small_random_sets() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut max_err: f64 = 0.0;
    for trial in 0..300 {
        let (np, nt) = (rng.random_range(0..=7), rng.random_range(0..=7));
        let pred = random_points(&mut rng, np, 4.0);
        let truth = random_points(&mut rng, nt, 4.0);
        let radius = rng.random_range(0.5..2.5);
        let m = match_points(&pred, &truth, radius).unwrap();
        let (cnt, tot) = brute_force(&pred, &truth, radius);
        assert_eq!(m.pairs.len(), cnt, "trial {trial}");
        max_err = max_err.max((total(&m) - tot).abs());
        // One-to-one and within the radius.
        let mut seen = vec![false; nt];
        for p in &m.pairs {
            assert!(!seen[p.truth] && p.distance_px <= radius);
            seen[p.truth] = true;
        }
    }
    assert!(max_err < 1e-12, "max |total − brute force| = {max_err:e}");
}

/// Dense Hungarian (rows ≤ columns, O(n²m)) on rows = predictions, columns = truths plus one
/// "unmatched" column per prediction; non-candidate pairs cost the same as unmatched.
fn dense_hungarian(pred: &[[f64; 2]], truth: &[[f64; 2]], radius: f64) -> (usize, f64) {
    let (n, m) = (pred.len(), truth.len() + pred.len());
    let big = (pred.len() + 1) as f64 * radius * 4.0;
    let cost = |i: usize, j: usize| -> f64 {
        if j < truth.len() {
            let d =
                ((pred[i][0] - truth[j][0]).powi(2) + (pred[i][1] - truth[j][1]).powi(2)).sqrt();
            if d <= radius { d } else { big }
        } else {
            big
        }
    };
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let (i0, mut delta, mut j1) = (p[j0], f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let (mut cnt, mut tot) = (0, 0.0);
    for (j, &row) in p.iter().enumerate().take(truth.len() + 1).skip(1) {
        if row != 0 {
            let c = cost(row - 1, j - 1);
            if c < big {
                cnt += 1;
                tot += c;
            }
        }
    }
    (cnt, tot)
}

#[test]
fn oracle_dense_hungarian_on_large_connected_components() {
    // Spacing 1 px with radius 1.3 px chains everything into a few large components.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for trial in 0..4 {
        let mut truth: Vec<[f64; 2]> = Vec::new();
        for k in 0..144 {
            if rng.random::<f64>() > 0.1 {
                let (y, x) = ((k / 12) as f64, (k % 12) as f64);
                truth.push([
                    y + rng.random_range(-0.2..0.2),
                    x + rng.random_range(-0.2..0.2),
                ]);
            }
        }
        let mut pred: Vec<[f64; 2]> = Vec::new();
        for t in &truth {
            if rng.random::<f64>() > 0.1 {
                pred.push([
                    t[0] + rng.random_range(-0.6..0.6),
                    t[1] + rng.random_range(-0.6..0.6),
                ]);
            }
        }
        pred.extend(random_points(&mut rng, 15, 12.0));
        let m = match_points(&pred, &truth, 1.3).unwrap();
        let (cnt, tot) = dense_hungarian(&pred, &truth, 1.3);
        assert_eq!(m.pairs.len(), cnt, "trial {trial}");
        assert!(
            (total(&m) - tot).abs() < 1e-9,
            "trial {trial}: {} vs {tot}",
            total(&m)
        );
    }
}

/// A `side × side` lattice with spacing 8 px and uniform jitter of ±1 px, origin at 20 px.
fn jittered_lattice(side: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..side * side)
        .map(|k| {
            let (i, j) = ((k / side) as f64, (k % side) as f64);
            [
                20.0 + 8.0 * i + rng.random_range(-1.0..1.0),
                20.0 + 8.0 * j + rng.random_range(-1.0..1.0),
            ]
        })
        .collect()
}

#[test]
fn lattice_with_known_offset_missing_and_spurious_points() {
    let truth = jittered_lattice(100, 1);
    let mut pred: Vec<[f64; 2]> = truth.iter().map(|t| [t[0] + 0.3, t[1] - 0.4]).collect();
    let m = match_points(&pred, &truth, 3.0).unwrap().metrics();
    assert_eq!((m.n_matched, m.recall, m.precision), (10_000, 1.0, 1.0));
    for d in [m.mean_distance_px, m.rms_distance_px, m.p95_distance_px] {
        assert!((d.unwrap() - 0.5).abs() < 1e-12, "{d:?}");
    }
    // Remove 250 predictions: recall drops by exactly 250/10000, precision stays 1.
    pred.truncate(10_000 - 250);
    // Add 40 spurious points at cell centres (≥ 4·√2 − √2 ≈ 4.2 px from any truth > 3 px).
    pred.extend((0..40).map(|k| [24.0 + 8.0 * k as f64, 24.0 + 8.0 * (k % 7) as f64]));
    let m = match_points(&pred, &truth, 3.0).unwrap().metrics();
    assert_eq!(m.n_matched, 9_750);
    assert_eq!(m.recall, 9_750.0 / 10_000.0);
    assert_eq!(m.precision, 9_750.0 / 9_790.0);
    assert!((m.mean_distance_px.unwrap() - 0.5).abs() < 1e-12);
}

#[test]
fn hundred_thousand_points_and_one_giant_component() {
    // 317² ≈ 100k points: scaling check with a known answer.
    let truth = jittered_lattice(317, 5);
    let pred: Vec<[f64; 2]> = truth
        .iter()
        .rev()
        .map(|t| [t[0] - 0.6, t[1] + 0.8])
        .collect();
    let m = match_points(&pred, &truth, 2.0).unwrap();
    assert_eq!(m.pairs.len(), 317 * 317);
    assert!(
        m.pairs
            .iter()
            .all(|p| p.truth == 317 * 317 - 1 - p.predicted)
    );
    // Spacing 1 px, radius 1.5 px: one component of 2·10⁴ nodes. A pure translation t is
    // optimal (Σ|p_σ(i) − q_i| ≥ |Σ(p_σ(i) − q_i)| = N|t|), so the minimum total is N·|t|.
    let dense: Vec<[f64; 2]> = (0..10_000)
        .map(|k| [(k / 100) as f64, (k % 100) as f64])
        .collect();
    let shifted: Vec<[f64; 2]> = dense.iter().map(|t| [t[0] + 0.45, t[1] + 0.6]).collect();
    let m = match_points(&shifted, &dense, 1.5).unwrap();
    assert_eq!(m.pairs.len(), 10_000);
    assert!((total(&m) - 10_000.0 * 0.75).abs() < 1e-8, "{}", total(&m));
}

#[test]
fn empty_sets_follow_the_documented_conventions() {
    let m = match_points(&[], &[], 1.0).unwrap().metrics();
    assert_eq!((m.recall, m.precision, m.f1()), (1.0, 1.0, 1.0));
    assert_eq!(
        (m.mean_distance_px, m.rms_distance_px, m.p95_distance_px),
        (None, None, None)
    );
    let m = match_points(&[[1.0, 1.0], [5.0, 5.0]], &[], 1.0)
        .unwrap()
        .metrics();
    assert_eq!((m.recall, m.precision, m.n_predicted), (1.0, 0.0, 2));
    let m = match_points(&[], &[[1.0, 1.0]], 1.0).unwrap().metrics();
    assert_eq!((m.recall, m.precision, m.f1()), (0.0, 1.0, 0.0));
    assert!(m.to_string().contains("no matches"), "{m}");
}

#[test]
fn distance_statistics_and_angstrom_conversion() {
    // Distances 0.1, 0.2, ..., 1.0 (one pair each along x).
    let truth: Vec<[f64; 2]> = (0..10).map(|k| [0.0, 10.0 * k as f64]).collect();
    let pred: Vec<[f64; 2]> = (0..10)
        .map(|k| [0.0, 10.0 * k as f64 + 0.1 * (k + 1) as f64])
        .collect();
    let m = match_points(&pred, &truth, 2.0).unwrap().metrics();
    assert!((m.mean_distance_px.unwrap() - 0.55).abs() < 1e-12);
    assert!((m.rms_distance_px.unwrap() - (3.85f64 / 10.0).sqrt()).abs() < 1e-12);
    // numpy: np.percentile(np.arange(1, 11) / 10, 95) = 0.955
    assert!((m.p95_distance_px.unwrap() - 0.955).abs() < 1e-12);
    let a = m.to_angstrom(0.2).unwrap();
    assert!((a.mean_distance_a.unwrap() - 0.11).abs() < 1e-12);
    assert!((m.mean_distance_a(0.2).unwrap().unwrap() - 0.11).abs() < 1e-12);
    assert_eq!((a.recall, a.n_matched), (1.0, 10));
    let line = a.to_string();
    assert!(line.contains("10/10") && line.contains("Å"), "{line}");
    assert!(m.to_string().contains("Δd mean 0.5500 px"), "{m}");
    for bad in [0.0, -1.0, f64::NAN] {
        assert!(matches!(
            m.to_angstrom(bad),
            Err(Error::InvalidParameter {
                name: "pixel_size_a",
                ..
            })
        ));
    }
}

#[test]
fn border_exclusion_follows_atomai_rule() {
    let pts = [
        [5.0, 5.0],
        [4.9, 50.0],
        [50.0, 95.0],
        [50.0, 95.1],
        [95.0, 50.0],
        [50.0, 50.0],
    ];
    assert_eq!(
        exclude_border(&pts, [100, 100], 5.0).unwrap(),
        vec![0, 2, 4, 5]
    );
    assert_eq!(
        exclude_border(&pts, [100, 100], 0.0).unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );
    // evaluate drops edge truths and edge predictions before matching.
    let truth = [[2.0, 50.0], [50.0, 50.0], [50.0, 97.0]];
    let pred = [[50.5, 50.0], [50.0, 98.0], [3.0, 50.0]];
    let e = evaluate(&pred, &truth, 2.0, [100, 100], 5.0).unwrap();
    assert_eq!((e.n_truth, e.n_predicted, e.n_matched), (1, 1, 1));
    assert_eq!((e.recall, e.precision), (1.0, 1.0));
    let all = evaluate(&pred, &truth, 2.0, [100, 100], 0.0).unwrap();
    assert_eq!((all.n_truth, all.n_predicted, all.n_matched), (3, 3, 3));
}

#[test]
fn evaluate_does_not_penalise_columns_straddling_the_margin() {
    // Truth just inside the margin, its (correct) prediction just outside: a hit, not a miss.
    // Truth just outside, its prediction just inside: dropped together, not a false positive.
    // An unmatched prediction inside still counts as spurious; one outside does not.
    let truth = [[5.1, 50.0], [4.9, 30.0], [50.0, 50.0]];
    let pred = [
        [4.95, 50.0],
        [5.05, 30.0],
        [50.2, 50.0],
        [70.0, 70.0],
        [1.0, 80.0],
    ];
    let e = evaluate(&pred, &truth, 1.0, [100, 100], 5.0).unwrap();
    assert_eq!((e.n_truth, e.n_predicted, e.n_matched), (2, 3, 2));
    assert_eq!(e.recall, 1.0);
    assert!((e.precision - 2.0 / 3.0).abs() < 1e-15);
}

#[test]
fn angstrom_round_trip() {
    let pts = [[1.0, 2.0], [3.5, -4.0]];
    let a = to_angstrom(&pts, [0.5, 0.25]).unwrap();
    assert_eq!(a, vec![[0.5, 0.5], [1.75, -1.0]]);
    assert_eq!(to_pixels(&a, [0.5, 0.25]).unwrap(), pts.to_vec());
    assert!(matches!(
        to_angstrom(&pts, [0.0, 1.0]),
        Err(Error::InvalidParameter {
            name: "pixel_size_a",
            ..
        })
    ));
    assert!(matches!(
        to_pixels(&pts, [1.0, f64::INFINITY]),
        Err(Error::InvalidParameter {
            name: "pixel_size_a",
            ..
        })
    ));
}

#[test]
fn invalid_radius_is_rejected() {
    for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = match_points(&[[0.0, 0.0]], &[[0.0, 0.0]], r).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "radius_px",
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn non_finite_coordinates_are_rejected_with_index() {
    let good = [[0.0, 0.0], [1.0, 1.0]];
    let bad = [[0.0, 0.0], [1.0, 1.0], [f64::NAN, 2.0]];
    let e = match_points(&bad, &good, 1.0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                name: "predicted",
                ..
            }
        ) && e.to_string().contains("point 2"),
        "{e}"
    );
    let e = match_points(&good, &bad, 1.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { name: "truth", .. }),
        "{e}"
    );
    assert!(exclude_border(&bad, [10, 10], 1.0).is_err());
    assert!(evaluate(&good, &bad, 1.0, [10, 10], 1.0).is_err());
    assert!(to_angstrom(&[[f64::INFINITY, 0.0]], [1.0, 1.0]).is_err());
}

#[test]
fn invalid_margin_is_rejected() {
    for m in [-1.0, f64::NAN, f64::INFINITY] {
        let e = exclude_border(&[[1.0, 1.0]], [10, 10], m).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter {
                    name: "margin_px",
                    ..
                }
            ),
            "{e}"
        );
        assert!(evaluate(&[], &[], 1.0, [10, 10], m).is_err());
    }
}

#[test]
fn huge_coordinates_do_not_panic() {
    let pred = [[1e300, -1e300], [f64::MAX, f64::MAX], [0.0, 0.0]];
    let truth = [[1e300, -1e300], [f64::MAX, f64::MAX], [-f64::MAX, 0.0]];
    let m = match_points(&pred, &truth, 1.0).unwrap();
    assert_eq!(m.pairs.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn metrics_are_permutation_invariant_and_bounded(seed in any::<u64>(), np in 0usize..40, nt in 0usize..40, radius in 0.2f64..3.0) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pred = random_points(&mut rng, np, 10.0);
        let mut truth = random_points(&mut rng, nt, 10.0);
        let a = match_points(&pred, &truth, radius).unwrap().metrics();
        pred.shuffle(&mut rng);
        truth.shuffle(&mut rng);
        let b = match_points(&pred, &truth, radius).unwrap().metrics();
        prop_assert_eq!((a.n_matched, a.n_truth, a.n_predicted), (b.n_matched, b.n_truth, b.n_predicted));
        prop_assert_eq!((a.recall, a.precision), (b.recall, b.precision));
        for (x, y) in [(a.mean_distance_px, b.mean_distance_px), (a.rms_distance_px, b.rms_distance_px), (a.p95_distance_px, b.p95_distance_px)] {
            prop_assert_eq!(x.is_some(), y.is_some());
            prop_assert!((x.unwrap_or(0.0) - y.unwrap_or(0.0)).abs() < 1e-9);
        }
        prop_assert!((0.0..=1.0).contains(&a.recall) && (0.0..=1.0).contains(&a.precision));
    }
}
