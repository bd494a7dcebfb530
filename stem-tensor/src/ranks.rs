//! Automatic Tucker ranks by **projected parallel analysis**.
//!
//! Horn's parallel analysis compares the singular values of the data with those of pure noise.
//! On heteroscedastic Poisson data the plain version on the raw unfoldings under-estimates and
//! the Marchenko–Pastur edge with the mean variance grossly over-estimates (detector rank 146
//! instead of 4 on the reference cube, `peer-benchmarks.md` §3). The projected variant, the
//! data-driven analogue of STAT-SVD's `r₋ₖ`-based threshold (Zhang & Han, JASA 2019):
//!
//! 1. start from generous ranks;
//! 2. HOOI at the current ranks (ST-HOSVD start plus a few sweeps);
//! 3. for each mode `k`, project the data `Y` **and** a Poisson surrogate noise tensor `Z`
//!    ([`crate::poisson`]) with the factors of the other modes, giving `p_k × r₋ₖ` matrices;
//!    the threshold is `threshold_factor ×` the top singular value of the projected noise, and
//!    `r_k` is the number of singular values of the projected data above it;
//! 4. repeat from 2 (`rounds` times, default 2).
//!
//! Ranks are then clamped to `1 ≤ r_k ≤ p_k` and `r_k ≤ Π_{j≠k} r_j`. The singular values and
//! thresholds of every round are returned as scree data so a user can override.

use crate::dense::{project, unfold};
use crate::error::{Error, Result};
use crate::linalg::leading_left_singular;
use crate::tucker::{Tucker, TuckerConfig, hooi, hooi_sweeps, st_hosvd};
use ndarray::{Array2, ArrayD, ArrayViewD};
use stem_core::{Progress, progress::check_cancel};

/// Settings of [`projected_parallel_analysis`].
#[derive(Clone, Debug, PartialEq)]
pub struct AutoRankConfig {
    /// Generous starting ranks; `None` = `min(p_k, 32)` per mode. Default `None`.
    pub initial_ranks: Option<Vec<usize>>,
    /// Rounds of (HOOI, re-threshold). Default 2.
    pub rounds: usize,
    /// Threshold = this × top singular value of the projected surrogate noise. Default 1.1.
    pub threshold_factor: f64,
    /// HOOI sweeps per round after the ST-HOSVD start. Default 3.
    pub sweeps_per_round: usize,
    /// Seed of the Poisson surrogate noise. Default 0.
    pub seed: u64,
}

impl Default for AutoRankConfig {
    fn default() -> Self {
        AutoRankConfig {
            initial_ranks: None,
            rounds: 2,
            threshold_factor: 1.1,
            sweeps_per_round: 3,
            seed: 0,
        }
    }
}

impl AutoRankConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `rounds == 0` or a threshold factor that is not finite
    /// and positive.
    pub fn validate(&self) -> Result<()> {
        if self.rounds == 0 {
            return Err(Error::invalid("rounds", "must be at least 1, got 0"));
        }
        if !(self.threshold_factor.is_finite() && self.threshold_factor > 0.0) {
            return Err(Error::invalid(
                "threshold_factor",
                format!("must be finite and > 0, got {}", self.threshold_factor),
            ));
        }
        Ok(())
    }
}

/// Scree data of one mode in one round.
#[derive(Clone, Debug, PartialEq)]
pub struct ScreeMode {
    /// The mode.
    pub mode: usize,
    /// Singular values of the projected data `M_k(Y ×_{j≠k} U_jᵀ)`, descending.
    pub singular_values: Vec<f64>,
    /// Top singular value of the projected surrogate noise.
    pub noise_top: f64,
    /// The threshold used (`threshold_factor × noise_top`).
    pub threshold: f64,
    /// Number of singular values above the threshold (before clamping).
    pub count: usize,
}

/// One round of the rank search.
#[derive(Clone, Debug, PartialEq)]
pub struct ScreeRound {
    /// Ranks whose factors projected the data in this round.
    pub ranks_in: Vec<usize>,
    /// Per-mode scree data.
    pub modes: Vec<ScreeMode>,
    /// Ranks selected by this round (after clamping).
    pub ranks_out: Vec<usize>,
}

/// Result of [`projected_parallel_analysis`].
#[derive(Clone, Debug, PartialEq)]
pub struct RankSelection {
    /// The selected ranks.
    pub ranks: Vec<usize>,
    /// Scree data of every round.
    pub rounds: Vec<ScreeRound>,
}

/// Clamps ranks to `1 ≤ r_k ≤ p_k` and `r_k ≤ Π_{j≠k} r_j`.
pub fn clamp_ranks(shape: &[usize], ranks: &mut [usize]) {
    for (r, &p) in ranks.iter_mut().zip(shape) {
        *r = (*r).clamp(1, p.max(1));
    }
    if ranks.len() < 2 {
        return;
    }
    loop {
        let mut changed = false;
        for k in 0..ranks.len() {
            let others: usize = ranks
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .map(|(_, &r)| r)
                .product();
            if ranks[k] > others {
                ranks[k] = others;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn top_singular_values(m: &Array2<f64>) -> Result<Vec<f64>> {
    Ok(leading_left_singular(m.view(), 1)?.singular_values)
}

/// Projected parallel analysis (see the module docs). `y` is the (already Poisson-scaled, if
/// wanted) data; `surrogate` returns a noise tensor of the same shape, scaled the same way,
/// given the previous round's fit (`None` in the first round). The denoiser draws it from
/// the rank-1 mean model first and from the previous round's fit afterwards, so that the
/// surrogate's heteroscedastic variance follows the data more closely.
///
/// Returns the ranks, the scree data and the last round's HOOI decomposition.
///
/// # Errors
/// [`Error::ShapeMismatch`] if `y` and `z` differ; config errors; `Cancelled`.
pub fn projected_parallel_analysis(
    y: ArrayViewD<'_, f64>,
    surrogate: &dyn Fn(Option<&Tucker>) -> Result<ArrayD<f64>>,
    config: &AutoRankConfig,
    progress: &dyn Progress,
) -> Result<(RankSelection, Tucker)> {
    config.validate()?;
    let shape = y.shape().to_vec();
    let mut ranks = match &config.initial_ranks {
        Some(r) => {
            if r.len() != shape.len() {
                return Err(Error::RankCount {
                    expected: shape.len(),
                    found: r.len(),
                });
            }
            r.clone()
        }
        None => shape.iter().map(|&p| p.min(32)).collect(),
    };
    clamp_ranks(&shape, &mut ranks);
    let mut rounds = Vec::with_capacity(config.rounds);
    let mut last: Option<Tucker> = None;
    for _ in 0..config.rounds {
        check_cancel(progress)?;
        let z = surrogate(last.as_ref())?;
        if y.shape() != z.shape() {
            return Err(Error::ShapeMismatch {
                expected: y.shape().to_vec(),
                found: z.shape().to_vec(),
            });
        }
        let start = st_hosvd(y.view(), &ranks, progress)?;
        let tk = hooi_sweeps(y.view(), start, config.sweeps_per_round, 0.0, progress)?;
        let mut modes = Vec::with_capacity(shape.len());
        let mut new_ranks = ranks.clone();
        #[allow(clippy::needless_range_loop)]
        for k in 0..shape.len() {
            let py = unfold(project(y.view(), &tk.factors, Some(k))?.view(), k)?;
            let pz = unfold(project(z.view(), &tk.factors, Some(k))?.view(), k)?;
            let sy = top_singular_values(&py)?;
            let sz = top_singular_values(&pz)?;
            let noise_top = sz.first().copied().unwrap_or(0.0);
            let threshold = config.threshold_factor * noise_top;
            let count = sy.iter().filter(|&&s| s > threshold).count();
            new_ranks[k] = count;
            modes.push(ScreeMode {
                mode: k,
                singular_values: sy,
                noise_top,
                threshold,
                count,
            });
        }
        clamp_ranks(&shape, &mut new_ranks);
        rounds.push(ScreeRound {
            ranks_in: ranks.clone(),
            modes,
            ranks_out: new_ranks.clone(),
        });
        ranks = new_ranks;
        last = Some(tk);
    }
    let tk = match last {
        Some(t) => t,
        None => hooi(y.view(), &TuckerConfig::with_ranks(ranks.clone()), progress)?,
    };
    Ok((RankSelection { ranks, rounds }, tk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_respects_products() {
        let mut r = vec![10, 1, 2];
        clamp_ranks(&[20, 20, 20], &mut r);
        assert_eq!(r, vec![2, 1, 2]);
        let mut r = vec![0, 50, 3];
        clamp_ranks(&[4, 5, 6], &mut r);
        assert_eq!(r, vec![1, 3, 3]);
    }

    #[test]
    fn config_validation() {
        let c = AutoRankConfig {
            rounds: 0,
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidParameter { name: "rounds", .. })
        ));
        let c = AutoRankConfig {
            threshold_factor: -1.0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
