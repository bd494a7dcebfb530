//! Local maxima: a separable running-max filter, plateau merging and minimum-separation
//! suppression.

use super::check_image;
use crate::error::{Error, Result};
use crate::image::ImageView;
use crate::parallel::Parallelism;
use ndarray::parallel::prelude::*;
use ndarray::{Array2, ArrayView2, Axis};
use std::collections::HashMap;

/// Settings of [`find_local_maxima`].
#[derive(Clone, Debug, PartialEq)]
pub struct LocalMaximaConfig {
    /// Half-width `r` (px) of the square neighbourhood `(2r + 1)²` a peak must dominate, and the
    /// minimum Euclidean distance (px) between two kept peaks. Must be ≥ 1. Default 3.
    pub min_distance_px: usize,
    /// Absolute intensity threshold (same units as the image): peaks must be strictly above it.
    /// Default `None` (no absolute threshold).
    pub threshold_abs: Option<f64>,
    /// Relative threshold in `[0, 1]`: peaks must be strictly above
    /// `min + threshold_rel · (max − min)` of the image. Default 0.1. When both thresholds are
    /// given the larger one applies.
    pub threshold_rel: f64,
    /// Peaks closer than this many pixels to the image edge are dropped: a peak at `(i, j)` is
    /// kept only if `b ≤ i < ny − b` and `b ≤ j < nx − b`. Default 3 (= the default
    /// `min_distance_px`); 0 keeps peaks on the edge.
    pub exclude_border_px: usize,
    /// Threads used by the max filter. Results do not depend on it. Default [`Parallelism::Auto`].
    pub parallelism: Parallelism,
}

impl Default for LocalMaximaConfig {
    fn default() -> Self {
        LocalMaximaConfig {
            min_distance_px: 3,
            threshold_abs: None,
            threshold_rel: 0.1,
            exclude_border_px: 3,
            parallelism: Parallelism::Auto,
        }
    }
}

/// A local maximum at an integer pixel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// Pixel index `[y, x]` (row, column).
    pub position: [usize; 2],
    /// Pixel value there (image units).
    pub value: f32,
}

/// Finds the local maxima of an image.
///
/// A pixel is a candidate when it equals the maximum of the `(2r + 1)²` square around it
/// (`r = min_distance_px`, the square clipped at the image edges) and lies strictly above the
/// threshold (see [`LocalMaximaConfig::threshold_rel`]). The maximum filter is separable and
/// uses the van Herk / Gil-Werman algorithm: about three comparisons per pixel and pass,
/// independent of `r`.
///
/// Candidates that touch (8-connectivity) necessarily have equal values: they form a plateau,
/// which yields one peak, the plateau pixel nearest to the plateau's centroid (ties: lowest
/// row-major index). Then the border exclusion applies, and finally, in order of decreasing value
/// (ties: lowest row-major index first), a peak closer than `min_distance_px` (Euclidean) to an
/// already kept peak is dropped (a grid hash makes this linear in the number of peaks).
///
/// The result is sorted by decreasing value, ties by row-major index.
///
/// # Errors
/// [`Error::EmptyInput`] for an empty image, [`Error::NonFinite`] (with the flat row-major index)
/// for a NaN or infinite pixel, [`Error::InvalidParameter`] for `min_distance_px == 0`, a
/// `threshold_rel` outside `[0, 1]` or a non-finite `threshold_abs`.
pub fn find_local_maxima(
    image: ImageView<'_, f32>,
    config: &LocalMaximaConfig,
) -> Result<Vec<Peak>> {
    let r = config.min_distance_px;
    if r == 0 {
        return Err(Error::invalid("min_distance_px", "must be >= 1, got 0"));
    }
    if !(0.0..=1.0).contains(&config.threshold_rel) {
        return Err(Error::invalid(
            "threshold_rel",
            format!("must lie in [0, 1], got {}", config.threshold_rel),
        ));
    }
    if let Some(t) = config.threshold_abs
        && !t.is_finite()
    {
        return Err(Error::invalid(
            "threshold_abs",
            format!("must be finite, got {t}"),
        ));
    }
    let data = image.data();
    let (lo, hi) = check_image(data)?;
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    let mut threshold = lo + config.threshold_rel * (hi - lo);
    if let Some(t) = config.threshold_abs {
        threshold = threshold.max(t);
    }

    let filtered = config.parallelism.install(|| max_filter(data, r))?;
    let [ny, nx] = image.shape();
    let candidates: Vec<usize> = data
        .iter()
        .zip(filtered.iter())
        .enumerate()
        .filter(|&(_, (&v, &m))| v == m && f64::from(v) > threshold)
        .map(|(k, _)| k)
        .collect();
    drop(filtered);

    let reps = merge_plateaus(&candidates, [ny, nx]);
    let b = config.exclude_border_px;
    let mut peaks: Vec<(usize, f32)> = reps
        .into_iter()
        .filter(|&k| {
            let (i, j) = (k / nx, k % nx);
            i >= b && j >= b && i + b < ny && j + b < nx
        })
        .map(|k| (k, data[[k / nx, k % nx]]))
        .collect();
    peaks.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(suppress_close(&peaks, nx, r)
        .into_iter()
        .map(|(k, value)| Peak {
            position: [k / nx, k % nx],
            value,
        })
        .collect())
}

/// Groups 8-connected candidates (flat indices, ascending) into plateaus and returns one
/// representative per plateau: the member nearest the centroid, ties by lowest flat index.
fn merge_plateaus(candidates: &[usize], [ny, nx]: [usize; 2]) -> Vec<usize> {
    // 0 = not a candidate, 1 = unvisited candidate, 2 = visited.
    let mut state = vec![0u8; ny * nx];
    for &k in candidates {
        state[k] = 1;
    }
    let mut reps = Vec::with_capacity(candidates.len());
    let mut stack = Vec::new();
    let mut members = Vec::new();
    for &start in candidates {
        if state[start] != 1 {
            continue;
        }
        state[start] = 2;
        stack.push(start);
        members.clear();
        while let Some(k) = stack.pop() {
            members.push(k);
            let (i, j) = (k / nx, k % nx);
            for ii in i.saturating_sub(1)..=(i + 1).min(ny - 1) {
                for jj in j.saturating_sub(1)..=(j + 1).min(nx - 1) {
                    let kk = ii * nx + jj;
                    if state[kk] == 1 {
                        state[kk] = 2;
                        stack.push(kk);
                    }
                }
            }
        }
        if members.len() == 1 {
            reps.push(start);
            continue;
        }
        let n = members.len() as f64;
        let cy = members.iter().map(|&k| (k / nx) as f64).sum::<f64>() / n;
        let cx = members.iter().map(|&k| (k % nx) as f64).sum::<f64>() / n;
        let d2 = |k: usize| ((k / nx) as f64 - cy).powi(2) + ((k % nx) as f64 - cx).powi(2);
        let best = members
            .iter()
            .copied()
            .min_by(|&a, &b| d2(a).total_cmp(&d2(b)).then(a.cmp(&b)));
        if let Some(best) = best {
            reps.push(best);
        }
    }
    reps
}

/// Greedy minimum-separation suppression over peaks sorted by priority (a grid hash with cells
/// of `min_distance` px, so that only the 3×3 neighbouring cells need checking).
fn suppress_close(sorted: &[(usize, f32)], nx: usize, min_distance: usize) -> Vec<(usize, f32)> {
    let d2_min = (min_distance * min_distance) as f64;
    let mut grid: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    let mut kept = Vec::with_capacity(sorted.len());
    for &(k, v) in sorted {
        let (i, j) = (k / nx, k % nx);
        let (ci, cj) = (i / min_distance, j / min_distance);
        let mut close = false;
        'search: for gi in ci.saturating_sub(1)..=ci + 1 {
            for gj in cj.saturating_sub(1)..=cj + 1 {
                if let Some(cell) = grid.get(&(gi, gj)) {
                    for &(pi, pj) in cell {
                        let d2 = (pi as f64 - i as f64).powi(2) + (pj as f64 - j as f64).powi(2);
                        if d2 < d2_min {
                            close = true;
                            break 'search;
                        }
                    }
                }
            }
        }
        if !close {
            grid.entry((ci, cj)).or_default().push((i, j));
            kept.push((k, v));
        }
    }
    kept
}

/// Reusable buffers of the 1-D running max.
#[derive(Default)]
struct LineScratch {
    line: Vec<f32>,
    out: Vec<f32>,
    g: Vec<f32>,
    h: Vec<f32>,
}

/// 1-D maximum over the centred window `[i − r, i + r]` clipped to the line, by van Herk /
/// Gil-Werman: the line is padded with −∞ to length `n + 2r`, cut into blocks of `w = 2r + 1`,
/// and `max(window starting at k) = max(suffix_max[k], prefix_max[k + w − 1])`.
fn running_max(src: &[f32], r: usize, dst: &mut [f32], g: &mut Vec<f32>, h: &mut Vec<f32>) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let r = r.min(n - 1);
    let w = 2 * r + 1;
    let m = n + 2 * r;
    let padded = |k: usize| {
        if k >= r && k < n + r {
            src[k - r]
        } else {
            f32::NEG_INFINITY
        }
    };
    g.clear();
    g.resize(m, f32::NEG_INFINITY);
    h.clear();
    h.resize(m, f32::NEG_INFINITY);
    for k in 0..m {
        let v = padded(k);
        g[k] = if k % w == 0 { v } else { g[k - 1].max(v) };
    }
    for k in (0..m).rev() {
        let v = padded(k);
        h[k] = if k % w == w - 1 || k == m - 1 {
            v
        } else {
            h[k + 1].max(v)
        };
    }
    for (i, d) in dst.iter_mut().enumerate() {
        *d = h[i].max(g[i + w - 1]);
    }
}

/// Square `(2r + 1)²` maximum filter (window clipped at the edges), rows then columns, in
/// parallel on the current rayon pool. Exact: the result does not depend on the thread count.
pub(crate) fn max_filter(data: ArrayView2<'_, f32>, r: usize) -> Array2<f32> {
    let (ny, nx) = data.dim();
    let mut tmp = Array2::<f32>::zeros((ny, nx));
    let pass = |mut dst: ndarray::ArrayViewMut1<'_, f32>,
                src: ndarray::ArrayView1<'_, f32>,
                s: &mut LineScratch| {
        s.line.clear();
        s.line.extend(src.iter().copied());
        s.out.resize(s.line.len(), 0.0);
        running_max(&s.line, r, &mut s.out, &mut s.g, &mut s.h);
        for (d, &v) in dst.iter_mut().zip(s.out.iter()) {
            *d = v;
        }
    };
    tmp.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(data.axis_iter(Axis(0)).into_par_iter())
        .for_each_init(LineScratch::default, |s, (dst, src)| pass(dst, src, s));
    let mut out = Array2::<f32>::zeros((ny, nx));
    out.axis_iter_mut(Axis(1))
        .into_par_iter()
        .zip(tmp.axis_iter(Axis(1)).into_par_iter())
        .for_each_init(LineScratch::default, |s, (dst, src)| pass(dst, src, s));
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Blob, render};
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn brute_max(data: ArrayView2<'_, f32>, r: usize) -> Array2<f32> {
        let (ny, nx) = data.dim();
        Array2::from_shape_fn((ny, nx), |(i, j)| {
            let mut m = f32::NEG_INFINITY;
            for ii in i.saturating_sub(r)..=(i + r).min(ny - 1) {
                for jj in j.saturating_sub(r)..=(j + r).min(nx - 1) {
                    m = m.max(data[[ii, jj]]);
                }
            }
            m
        })
    }

    fn random_image(shape: (usize, usize), seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn(shape, |_| rng.random::<f32>())
    }

    fn cfg(min_distance_px: usize, threshold_rel: f64, border: usize) -> LocalMaximaConfig {
        LocalMaximaConfig {
            min_distance_px,
            threshold_rel,
            exclude_border_px: border,
            ..LocalMaximaConfig::default()
        }
    }

    fn positions(p: &[Peak]) -> Vec<[usize; 2]> {
        p.iter().map(|p| p.position).collect()
    }

    #[test]
    fn lattice_of_25_gives_25_nearest_pixels() {
        let mut blobs = Vec::new();
        let mut want = Vec::new();
        for a in 0..5 {
            for b in 0..5 {
                // Sub-pixel offsets up to ±0.4 px, amplitudes all distinct.
                let y = 7.0 + 11.0 * a as f64 + 0.2 * (b as f64 - 2.0);
                let x = 8.0 + 11.0 * b as f64 - 0.15 * (a as f64 - 2.0);
                blobs.push(Blob::round(y, x, 50.0 + (7 * a + 3 * b) as f64, 2.2));
                want.push([y.round() as usize, x.round() as usize]);
            }
        }
        let img = render([60, 62], &blobs, 10.0);
        let found =
            find_local_maxima(ImageView::from(&img), &LocalMaximaConfig::default()).unwrap();
        let mut got = positions(&found);
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(found.windows(2).all(|w| w[0].value >= w[1].value));
    }

    #[test]
    fn plateau_gives_one_peak_near_its_centroid() {
        let mut img = Array2::<f32>::zeros((30, 40));
        // A 3 × 4 plateau: centroid (11, 21.5); (11, 21) and (11, 22) tie, lower index wins.
        img.slice_mut(ndarray::s![10..13, 20..24]).fill(5.0);
        // A 1 × 15 ridge, longer than min_distance: still one peak, at its middle.
        img.slice_mut(ndarray::s![22, 10..25]).fill(3.0);
        let found = find_local_maxima(ImageView::from(&img), &cfg(3, 0.1, 3)).unwrap();
        assert_eq!(positions(&found), vec![[11, 21], [22, 17]]);
    }

    #[test]
    fn close_peaks_keep_the_brighter() {
        let blobs = [
            Blob::round(20.0, 20.0, 100.0, 1.0),
            Blob::round(20.0, 23.0, 80.0, 1.0),
        ];
        let img = render([40, 40], &blobs, 0.0);
        let view = ImageView::from(&img);
        assert_eq!(
            positions(&find_local_maxima(view, &cfg(3, 0.1, 3)).unwrap()),
            vec![[20, 20]]
        );
        assert_eq!(
            positions(&find_local_maxima(view, &cfg(2, 0.1, 3)).unwrap()),
            vec![[20, 20], [20, 23]]
        );
        // Equal isolated pixels at Euclidean distance 2.83: both dominate their windows, so the
        // greedy separation step decides: row-major first is kept when min_distance = 3.
        let mut img = Array2::<f32>::zeros((25, 25));
        img[[10, 10]] = 5.0;
        img[[12, 12]] = 5.0;
        let view = ImageView::from(&img);
        assert_eq!(
            positions(&find_local_maxima(view, &cfg(3, 0.1, 0)).unwrap()),
            vec![[10, 10]]
        );
        assert_eq!(
            positions(&find_local_maxima(view, &cfg(2, 0.1, 0)).unwrap()),
            vec![[10, 10], [12, 12]]
        );
    }

    #[test]
    fn thresholds_filter_dim_peaks() {
        let blobs = [
            Blob::round(10.0, 10.0, 100.0, 1.5),
            Blob::round(10.0, 30.0, 50.0, 1.5),
            Blob::round(30.0, 20.0, 5.0, 1.5),
        ];
        let img = render([40, 40], &blobs, 0.0);
        let view = ImageView::from(&img);
        let all = find_local_maxima(view, &cfg(3, 0.0, 3)).unwrap();
        assert_eq!(positions(&all), vec![[10, 10], [10, 30], [30, 20]]);
        // Relative 0.1: threshold 0 + 0.1 · 100 = 10 drops the amplitude-5 peak.
        let rel = find_local_maxima(view, &cfg(3, 0.1, 3)).unwrap();
        assert_eq!(positions(&rel), vec![[10, 10], [10, 30]]);
        let abs = LocalMaximaConfig {
            threshold_abs: Some(60.0),
            ..cfg(3, 0.0, 3)
        };
        assert_eq!(
            positions(&find_local_maxima(view, &abs).unwrap()),
            vec![[10, 10]]
        );
        // A constant image has no peak (nothing is strictly above the minimum).
        let flat = Array2::<f32>::from_elem((8, 8), 2.0);
        assert!(
            find_local_maxima(ImageView::from(&flat), &cfg(1, 0.0, 0))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn border_exclusion() {
        let blobs = [
            Blob::round(1.0, 20.0, 100.0, 1.0),
            Blob::round(20.0, 37.0, 90.0, 1.0),
            Blob::round(20.0, 20.0, 80.0, 1.0),
        ];
        let img = render([40, 40], &blobs, 0.0);
        let view = ImageView::from(&img);
        let kept = |b| positions(&find_local_maxima(view, &cfg(3, 0.1, b)).unwrap());
        assert_eq!(kept(0), vec![[1, 20], [20, 37], [20, 20]]);
        assert_eq!(kept(1), vec![[1, 20], [20, 37], [20, 20]]);
        assert_eq!(kept(2), vec![[20, 37], [20, 20]]);
        assert_eq!(kept(3), vec![[20, 20]]);
        assert!(kept(20).is_empty());
    }

    #[test]
    fn max_filter_matches_brute_force_on_random_image() {
        let img = random_image((37, 53), 11);
        for r in [1, 2, 3, 5, 8, 40] {
            assert_eq!(
                max_filter(img.view(), r),
                brute_max(img.view(), r),
                "r = {r}"
            );
        }
        // A non-contiguous (transposed) view goes through the same path.
        let t = img.t();
        assert_eq!(max_filter(t, 4), brute_max(t, 4));
    }

    #[test]
    fn maxima_match_brute_force_on_random_image() {
        let img = random_image((41, 47), 12);
        let view = ImageView::from(&img);
        for r in [1, 2, 4] {
            let fast = find_local_maxima(view, &cfg(r, 0.5, 2)).unwrap();
            let m = brute_max(img.view(), r);
            let (lo, hi) = img
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let thr = f64::from(lo) + 0.5 * f64::from(hi - lo);
            let mut want: Vec<(f32, usize, usize)> = Vec::new();
            for ((i, j), &v) in img.indexed_iter() {
                if v == m[[i, j]]
                    && f64::from(v) > thr
                    && (2..39).contains(&i)
                    && (2..45).contains(&j)
                {
                    want.push((v, i, j));
                }
            }
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<[usize; 2]> = want.iter().map(|w| [w.1, w.2]).collect();
            assert!(!want.is_empty());
            assert_eq!(positions(&fast), want, "r = {r}");
        }
    }

    #[test]
    fn result_does_not_depend_on_threads() {
        let img = random_image((64, 70), 13);
        let view = ImageView::from(&img);
        let seq = LocalMaximaConfig {
            parallelism: Parallelism::Sequential,
            ..cfg(2, 0.2, 1)
        };
        let par = LocalMaximaConfig {
            parallelism: Parallelism::Threads(2),
            ..seq.clone()
        };
        assert_eq!(
            find_local_maxima(view, &seq).unwrap(),
            find_local_maxima(view, &par).unwrap()
        );
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let empty = Array2::<f32>::zeros((0, 5));
        assert!(matches!(
            find_local_maxima(ImageView::from(&empty), &LocalMaximaConfig::default()),
            Err(Error::EmptyInput { .. })
        ));
        let mut img = Array2::<f32>::zeros((6, 7));
        let view = ImageView::from(&img);
        for bad in [
            cfg(0, 0.1, 0),
            cfg(1, 1.5, 0),
            cfg(1, -0.1, 0),
            cfg(1, f64::NAN, 0),
            LocalMaximaConfig {
                threshold_abs: Some(f64::INFINITY),
                ..cfg(1, 0.1, 0)
            },
        ] {
            assert!(
                matches!(
                    find_local_maxima(view, &bad),
                    Err(Error::InvalidParameter { .. })
                ),
                "{bad:?}"
            );
        }
        img[[2, 3]] = f32::NAN;
        assert!(matches!(
            find_local_maxima(ImageView::from(&img), &LocalMaximaConfig::default()),
            Err(Error::NonFinite { index: 17, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            // Deterministic: a fixed seed and no regression files.
            rng_seed: proptest::test_runner::RngSeed::Fixed(1064),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Small integer values (many ties and plateaus): the fast filter equals brute force, and
        /// every peak dominates its window, peaks are min_distance apart and sorted.
        #[test]
        fn filter_and_peak_invariants(
            ny in 1usize..20,
            nx in 1usize..20,
            r in 1usize..5,
            seed in 0u64..1000,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let img = Array2::from_shape_fn((ny, nx), |_| rng.random_range(0..4) as f32);
            let m = brute_max(img.view(), r);
            prop_assert_eq!(max_filter(img.view(), r), m.clone());
            let peaks = find_local_maxima(ImageView::from(&img), &cfg(r, 0.0, 0)).unwrap();
            for p in &peaks {
                prop_assert_eq!(p.value, m[[p.position[0], p.position[1]]]);
            }
            for (a, p) in peaks.iter().enumerate() {
                for q in &peaks[a + 1..] {
                    let d = (p.position[0] as f64 - q.position[0] as f64)
                        .hypot(p.position[1] as f64 - q.position[1] as f64);
                    prop_assert!(d >= r as f64);
                    prop_assert!(p.value >= q.value);
                }
            }
        }
    }
}
