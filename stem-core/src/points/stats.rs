//! Recall, precision and distance statistics of a matching.

use super::Matching;
use crate::error::{Error, Result};
use std::fmt;

/// Benchmark metrics of a [`Matching`] (see the [module docs](super) for the definitions).
#[derive(Clone, Debug, PartialEq)]
pub struct MatchMetrics {
    /// Number of true positions `N_truth`.
    pub n_truth: usize,
    /// Number of predicted positions `N_predicted`.
    pub n_predicted: usize,
    /// Number of matched pairs (true positives, `TP`).
    pub n_matched: usize,
    /// ID-recall `TP / N_truth` in `[0, 1]`; 1 when `N_truth = 0`.
    pub recall: f64,
    /// ID-precision `TP / N_predicted` in `[0, 1]`; 1 when `N_predicted = 0`.
    pub precision: f64,
    /// Δd: mean distance of the matched pairs (px); `None` without matches.
    pub mean_distance_px: Option<f64>,
    /// Root-mean-square distance of the matched pairs (px); `None` without matches.
    pub rms_distance_px: Option<f64>,
    /// 95th percentile of the matched distances (px), linear interpolation between order
    /// statistics as numpy's default `np.percentile(d, 95)`; `None` without matches.
    pub p95_distance_px: Option<f64>,
}

/// [`MatchMetrics`] with the distances converted to Å (square pixels of `pixel_size_a` Å).
#[derive(Clone, Debug, PartialEq)]
pub struct MatchMetricsA {
    /// Number of true positions.
    pub n_truth: usize,
    /// Number of predicted positions.
    pub n_predicted: usize,
    /// Number of matched pairs.
    pub n_matched: usize,
    /// ID-recall, as in [`MatchMetrics::recall`].
    pub recall: f64,
    /// ID-precision, as in [`MatchMetrics::precision`].
    pub precision: f64,
    /// Δd in Å; `None` without matches.
    pub mean_distance_a: Option<f64>,
    /// RMS distance in Å; `None` without matches.
    pub rms_distance_a: Option<f64>,
    /// 95th-percentile distance in Å; `None` without matches.
    pub p95_distance_a: Option<f64>,
    /// The pixel size used for the conversion (Å/px).
    pub pixel_size_a: f64,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// numpy's default (linear) percentile of sorted data, `q` in `[0, 100]`.
fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q / 100.0 * last as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(last);
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

impl MatchMetrics {
    pub(super) fn from_matching(m: &Matching) -> Self {
        let n = m.pairs.len();
        let mut d: Vec<f64> = m.pairs.iter().map(|p| p.distance_px).collect();
        d.sort_by(f64::total_cmp);
        let (mean, rms) = if n == 0 {
            (None, None)
        } else {
            let sum: f64 = d.iter().sum();
            let sum2: f64 = d.iter().map(|v| v * v).sum();
            (Some(sum / n as f64), Some((sum2 / n as f64).sqrt()))
        };
        MatchMetrics {
            n_truth: m.n_truth,
            n_predicted: m.n_predicted,
            n_matched: n,
            recall: ratio(n, m.n_truth),
            precision: ratio(n, m.n_predicted),
            mean_distance_px: mean,
            rms_distance_px: rms,
            p95_distance_px: percentile_sorted(&d, 95.0),
        }
    }

    /// F1 score `2·P·R / (P + R)`; 0 when both are 0.
    pub fn f1(&self) -> f64 {
        let s = self.precision + self.recall;
        if s == 0.0 {
            0.0
        } else {
            2.0 * self.precision * self.recall / s
        }
    }

    /// Δd in Å for square pixels of `pixel_size_a` Å (`None` without matches).
    ///
    /// Errors: `pixel_size_a` not finite and > 0.
    pub fn mean_distance_a(&self, pixel_size_a: f64) -> Result<Option<f64>> {
        Ok(self.to_angstrom(pixel_size_a)?.mean_distance_a)
    }

    /// The metrics with distances converted to Å for square pixels of `pixel_size_a` Å.
    ///
    /// Errors: `pixel_size_a` not finite and > 0.
    pub fn to_angstrom(&self, pixel_size_a: f64) -> Result<MatchMetricsA> {
        if !(pixel_size_a.is_finite() && pixel_size_a > 0.0) {
            return Err(Error::invalid(
                "pixel_size_a",
                format!("must be finite and > 0, got {pixel_size_a}"),
            ));
        }
        let s = |v: Option<f64>| v.map(|v| v * pixel_size_a);
        Ok(MatchMetricsA {
            n_truth: self.n_truth,
            n_predicted: self.n_predicted,
            n_matched: self.n_matched,
            recall: self.recall,
            precision: self.precision,
            mean_distance_a: s(self.mean_distance_px),
            rms_distance_a: s(self.rms_distance_px),
            p95_distance_a: s(self.p95_distance_px),
            pixel_size_a,
        })
    }
}

fn fmt_line(
    f: &mut fmt::Formatter<'_>,
    counts: [usize; 3],
    rp: [f64; 2],
    d: [Option<f64>; 3],
    unit: &str,
) -> fmt::Result {
    let [nt, np, tp] = counts;
    write!(
        f,
        "recall {:.4} ({tp}/{nt} true), precision {:.4} ({tp}/{np} predicted), ",
        rp[0], rp[1]
    )?;
    match d {
        [Some(mean), Some(rms), Some(p95)] => {
            write!(
                f,
                "Δd mean {mean:.4} {unit}, rms {rms:.4} {unit}, p95 {p95:.4} {unit}"
            )
        }
        _ => write!(f, "Δd n/a (no matches)"),
    }
}

/// One line, e.g. `recall 0.9800 (98/100 true), precision 0.9899 (98/99 predicted),
/// Δd mean 0.1230 px, rms 0.1500 px, p95 0.2500 px`.
impl fmt::Display for MatchMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = [
            self.mean_distance_px,
            self.rms_distance_px,
            self.p95_distance_px,
        ];
        let c = [self.n_truth, self.n_predicted, self.n_matched];
        fmt_line(f, c, [self.recall, self.precision], d, "px")
    }
}

/// One line as for [`MatchMetrics`], distances in Å.
impl fmt::Display for MatchMetricsA {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = [
            self.mean_distance_a,
            self.rms_distance_a,
            self.p95_distance_a,
        ];
        let c = [self.n_truth, self.n_predicted, self.n_matched];
        fmt_line(f, c, [self.recall, self.precision], d, "Å")
    }
}
