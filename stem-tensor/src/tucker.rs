//! Tucker decompositions: sequentially truncated HOSVD and HOOI.
//!
//! Model (Zhang & Xia, IEEE Trans. Inf. Theory 64(11) 7311, 2018): `Y = X + Z` with `X` of
//! multilinear rank `(r_1, …, r_N)`. The estimate is `X̂ = S ×_1 U_1 ⋯ ×_N U_N` with
//! orthonormal factors `U_k` (`p_k × r_k`) and core `S = Y ×_1 U_1ᵀ ⋯ ×_N U_Nᵀ`.
//!
//! * **ST-HOSVD** (Vannieuwenhoven, Vandebril & Meerbergen, SIAM J. Sci. Comput. 34, 2012):
//!   modes in increasing size; `U_k` = top-`r_k` left singular vectors of the unfolding of the
//!   tensor already projected on the previous modes, then project. The long (detector) mode comes
//!   last, when the tensor is small, so no `p × p` problem of the long mode is ever formed.
//! * **HOOI**: Gauss–Seidel sweeps `U_k ← SVD_{r_k}(M_k(Y ×_{j≠k} U_jᵀ))`, from the ST-HOSVD
//!   start, until the relative change of `‖S‖²_F` is below `tolerance` or `max_sweeps` is
//!   reached (`‖S‖²` is non-decreasing in exact arithmetic).
//!
//! Singular vectors come from the Gram matrix of the smaller side of each unfolding
//! ([`leading_left_singular`]).

use crate::dense::{expand, mode_gram, mode_product, project, unfold};
use crate::error::{Error, Result};
use crate::linalg::{LeadingSubspace, leading_left_singular, symmetric_eigen};
use ndarray::{Array2, ArrayD, ArrayViewD};
use stem_core::{Parallelism, Progress, progress::check_cancel};

/// When HOOI stops before `max_sweeps` (the tolerance is the config's `tolerance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopRule {
    /// After the sweep that changes the captured energy by
    /// `|‖S‖² − ‖S‖²_prev| ≤ tolerance · ‖S‖²` (the ST-HOSVD start counts as the previous value
    /// of the first sweep). The default.
    #[default]
    CoreNorm,
    /// The rule of tensorly's `tucker` (0.10, `partial_tucker`): after sweep `k ≥ 3` when the
    /// relative reconstruction error `e_k = √|‖X‖² − ‖S_k‖²| / ‖X‖` (exact for orthonormal
    /// factors) changed by `|e_{k−1} − e_k| < tolerance` (tensorly's default tolerance is 1e-4).
    /// For timing comparisons with tensorly at the same number of sweeps.
    ErrorChange,
}

impl StopRule {
    /// Whether sweep `sweep` (1-based) with `‖S‖² = norm` stops, given the previous sweep's
    /// `prev` (the ST-HOSVD start's for the first sweep) and `‖X‖² = data_sq`.
    fn stops(self, sweep: usize, norm: f64, prev: f64, data_sq: f64, tolerance: f64) -> bool {
        match self {
            StopRule::CoreNorm => (norm - prev).abs() <= tolerance * norm.max(f64::MIN_POSITIVE),
            StopRule::ErrorChange => {
                let x = data_sq.sqrt().max(f64::MIN_POSITIVE);
                let e = (data_sq - norm).abs().sqrt() / x;
                let e_prev = (data_sq - prev).abs().sqrt() / x;
                sweep >= 3 && (e_prev - e).abs() < tolerance
            }
        }
    }
}

/// Settings of [`hooi`].
#[derive(Clone, Debug, PartialEq)]
pub struct TuckerConfig {
    /// Multilinear ranks, one per mode (`1 ≤ r_k ≤ p_k`, `r_k ≤ Π_{j≠k} r_j`).
    pub ranks: Vec<usize>,
    /// Maximum number of HOOI sweeps after the ST-HOSVD start. Default 10 (as the Voyles-group
    /// code). 0 returns the ST-HOSVD.
    pub max_sweeps: usize,
    /// Stop when `|‖S‖² − ‖S‖²_prev| ≤ tolerance · ‖S‖²` (for [`StopRule::CoreNorm`]).
    /// Default 1e-6.
    pub tolerance: f64,
    /// The stopping rule. Default [`StopRule::CoreNorm`].
    pub stop: StopRule,
    /// Threads.
    pub parallelism: Parallelism,
}

impl TuckerConfig {
    /// Defaults with the given ranks.
    pub fn with_ranks(ranks: Vec<usize>) -> Self {
        TuckerConfig {
            ranks,
            max_sweeps: 10,
            tolerance: 1e-6,
            stop: StopRule::CoreNorm,
            parallelism: Parallelism::Auto,
        }
    }
}

/// A Tucker decomposition `S ×_1 U_1 ⋯ ×_N U_N`.
#[derive(Clone, Debug)]
pub struct Tucker {
    /// Orthonormal factors `U_k`, `p_k × r_k`.
    pub factors: Vec<Array2<f64>>,
    /// Core `S`, shape `(r_1, …, r_N)`.
    pub core: ArrayD<f64>,
    /// HOOI sweeps performed (0 for a plain ST-HOSVD).
    pub sweeps: usize,
    /// `‖S‖²_F` after the ST-HOSVD and after each sweep.
    pub core_norm_sq: Vec<f64>,
}

impl Tucker {
    /// The ranks `(r_1, …, r_N)`.
    pub fn ranks(&self) -> Vec<usize> {
        self.factors.iter().map(|u| u.ncols()).collect()
    }
    /// The full-size estimate `X̂ = S ×_k U_k`.
    ///
    /// # Errors
    /// Only on an internally inconsistent decomposition.
    pub fn reconstruct(&self) -> Result<ArrayD<f64>> {
        expand(self.core.view(), &self.factors)
    }
}

/// Checks ranks against a shape: count, `1 ≤ r_k ≤ p_k` and `r_k ≤ Π_{j≠k} r_j`.
///
/// # Errors
/// [`Error::RankCount`], [`Error::InvalidRank`].
pub fn validate_ranks(shape: &[usize], ranks: &[usize]) -> Result<()> {
    if ranks.len() != shape.len() {
        return Err(Error::RankCount {
            expected: shape.len(),
            found: ranks.len(),
        });
    }
    for (k, (&r, &p)) in ranks.iter().zip(shape).enumerate() {
        let others: usize = ranks
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != k)
            .map(|(_, &r)| r)
            .product();
        if r == 0 || r > p || (shape.len() > 1 && r > others) {
            return Err(Error::InvalidRank {
                mode: k,
                rank: r,
                dim: p,
                others,
            });
        }
    }
    Ok(())
}

/// Top-`r` left singular subspace of the mode-`mode` unfolding of `t`, by the Gram matrix of
/// the smaller side (the mode Gram without unfolding when `p_k ≤ Π_{j≠k} p_j`).
///
/// # Errors
/// [`Error::ModeOutOfRange`], [`Error::InvalidParameter`] for a bad `r`, decomposition failures.
pub fn mode_subspace(t: ArrayViewD<'_, f64>, mode: usize, r: usize) -> Result<LeadingSubspace> {
    let (_, p, _) = crate::dense::split_shape(t.shape(), mode)?;
    let rest = t.len() / p.max(1);
    if p <= rest {
        if r == 0 || r > p {
            return Err(Error::invalid(
                "r",
                format!("rank {r} must be in 1..={p} (mode {mode} dimension)"),
            ));
        }
        let g = mode_gram(t, mode)?;
        let (vals, vecs) = symmetric_eigen(g.view())?;
        Ok(LeadingSubspace {
            u: vecs.slice(ndarray::s![.., ..r]).to_owned(),
            singular_values: vals.iter().map(|&v| v.max(0.0).sqrt()).collect(),
        })
    } else {
        leading_left_singular(unfold(t, mode)?.view(), r)
    }
}

/// Subspace-change tolerance (Frobenius norm of `(I − U Uᵀ) U_new`) of the warm-started
/// subspace iteration in [`mode_subspace_warm`].
const WARM_TOL: f64 = 1e-10;
/// Iteration limit of the warm start before falling back to the exact Gram eigenproblem.
const WARM_MAX_ITER: usize = 60;

/// Top-`r` left singular subspace of the mode-`mode` unfolding `M` of `t`, where `prev`
/// (`p × r`, orthonormal) is the previous factor of a HOOI sweep.
///
/// For a tall unfolding (`p > Π_{j≠k} p_j = q`, the long detector mode of 4D-STEM) the exact
/// route ([`mode_subspace`]) costs a `q × q` Gram matrix and its full eigendecomposition
/// (`q = r_1 r_2 = 704` at ranks (32, 22, 4): ~5 GFLOP per sweep). Instead, block subspace
/// iteration `U ← orth(M Mᵀ U)` from `prev` (Golub & Van Loan §8.2.4) until the subspace moves by
/// less than 1e-10 (Frobenius norm of `(I − U Uᵀ) U_new`), then a Rayleigh–Ritz rotation
/// (eigenvectors of the `r × r` matrix `(MᵀU)ᵀ(MᵀU)`), at `4·p·q·r` flops per iteration. HOOI
/// only needs the subspace, and from the previous sweep's factor a few iterations suffice;
/// if 60 do not, the exact route is used. Other shapes use the exact route directly.
fn mode_subspace_warm(
    t: ArrayViewD<'_, f64>,
    mode: usize,
    prev: &Array2<f64>,
) -> Result<Array2<f64>> {
    let (_, p, _) = crate::dense::split_shape(t.shape(), mode)?;
    let r = prev.ncols();
    let q = t.len() / p.max(1);
    if p <= q || 4 * r > q || prev.nrows() != p {
        return Ok(mode_subspace(t, mode, r)?.u);
    }
    let m = unfold(t.view(), mode)?;
    let mt = m.t().as_standard_layout().into_owned();
    let mut u = prev.clone();
    for _ in 0..WARM_MAX_ITER {
        let z = crate::linalg::matmul(mt.view(), u.view())?;
        let y = crate::linalg::matmul(m.view(), z.view())?;
        let un = crate::linalg::orthonormalize(y.view());
        // (I − U Uᵀ) U_new
        let c = crate::linalg::matmul(u.t(), un.view())?;
        let proj = crate::linalg::matmul(u.view(), c.view())?;
        let change: f64 = un
            .iter()
            .zip(proj.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        u = un;
        if change < WARM_TOL {
            let b = crate::linalg::matmul(mt.view(), u.view())?;
            let g = crate::linalg::matmul(b.t(), b.view())?;
            let (_, vecs) = symmetric_eigen(g.view())?;
            return crate::linalg::matmul(u.view(), vecs.view());
        }
    }
    Ok(leading_left_singular(m.view(), r)?.u)
}

fn check_finite(t: &ArrayViewD<'_, f64>) -> Result<()> {
    if let Some((index, _)) = t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "tensor",
            index,
        });
    }
    Ok(())
}

/// Sequentially truncated HOSVD (modes in increasing size, project after each).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_tensor::tucker::st_hosvd;
/// // A rank-(1,1,1) tensor a ⊗ b ⊗ c is recovered exactly.
/// let t = ArrayD::from_shape_fn(IxDyn(&[4, 5, 6]), |i| {
///     (1.0 + i[0] as f64) * (2.0 - i[1] as f64) * (0.5 + i[2] as f64)
/// });
/// let tk = st_hosvd(t.view(), &[1, 1, 1], &stem_core::NoProgress)?;
/// let x = tk.reconstruct()?;
/// assert!(x.iter().zip(t.iter()).all(|(a, b)| (a - b).abs() < 1e-9));
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::RankCount`], [`Error::InvalidRank`], [`Error::NonFinite`], `Cancelled`.
pub fn st_hosvd(
    t: ArrayViewD<'_, f64>,
    ranks: &[usize],
    progress: &dyn Progress,
) -> Result<Tucker> {
    validate_ranks(t.shape(), ranks)?;
    check_finite(&t)?;
    let order = t.ndim();
    let mut modes: Vec<usize> = (0..order).collect();
    modes.sort_by_key(|&k| (t.shape()[k], k));
    let mut factors: Vec<Array2<f64>> = t.shape().iter().map(|&p| Array2::eye(p)).collect();
    let mut cur: Option<ArrayD<f64>> = None;
    for &k in &modes {
        check_cancel(progress)?;
        let view = cur.as_ref().map(|c| c.view()).unwrap_or_else(|| t.view());
        let sub = mode_subspace(view.clone(), k, ranks[k])?;
        let next = mode_product(view, sub.u.t(), k)?;
        factors[k] = sub.u;
        cur = Some(next);
    }
    let core = cur.unwrap_or_else(|| t.to_owned());
    let norm = core.iter().map(|v| v * v).sum();
    Ok(Tucker {
        factors,
        core,
        sweeps: 0,
        core_norm_sq: vec![norm],
    })
}

/// HOOI from the ST-HOSVD start (see the module docs).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_tensor::tucker::{hooi, TuckerConfig};
/// let t = ArrayD::from_shape_fn(IxDyn(&[6, 7, 8]), |i| {
///     ((i[0] as f64).sin() + (i[1] as f64).cos()) * (1.0 + i[2] as f64)
/// });
/// let tk = hooi(t.view(), &TuckerConfig::with_ranks(vec![2, 2, 1]), &stem_core::NoProgress)?;
/// assert_eq!(tk.ranks(), vec![2, 2, 1]);
/// let x = tk.reconstruct()?;
/// assert!(x.iter().zip(t.iter()).all(|(a, b)| (a - b).abs() < 1e-9));
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// As [`st_hosvd`]; [`Error::InvalidParameter`] for a negative or NaN tolerance.
pub fn hooi(
    t: ArrayViewD<'_, f64>,
    config: &TuckerConfig,
    progress: &dyn Progress,
) -> Result<Tucker> {
    if config.tolerance.is_nan() || config.tolerance < 0.0 {
        return Err(Error::invalid(
            "tolerance",
            format!("must be >= 0, got {}", config.tolerance),
        ));
    }
    config.parallelism.install(|| {
        progress.start("HOOI sweeps", config.max_sweeps as u64);
        let start = st_hosvd(t.view(), &config.ranks, progress)?;
        hooi_sweeps_until(
            t,
            start,
            config.max_sweeps,
            config.tolerance,
            config.stop,
            progress,
        )
    })?
}

/// Runs up to `max_sweeps` HOOI sweeps from an existing decomposition (`Gauss–Seidel`),
/// stopping by [`StopRule::CoreNorm`].
pub(crate) fn hooi_sweeps(
    t: ArrayViewD<'_, f64>,
    tk: Tucker,
    max_sweeps: usize,
    tolerance: f64,
    progress: &dyn Progress,
) -> Result<Tucker> {
    hooi_sweeps_until(t, tk, max_sweeps, tolerance, StopRule::CoreNorm, progress)
}

/// [`hooi_sweeps`] with a choice of [`StopRule`].
pub(crate) fn hooi_sweeps_until(
    t: ArrayViewD<'_, f64>,
    mut tk: Tucker,
    max_sweeps: usize,
    tolerance: f64,
    stop: StopRule,
    progress: &dyn Progress,
) -> Result<Tucker> {
    let order = t.ndim();
    let data_sq: f64 = match stop {
        StopRule::CoreNorm => 0.0,
        StopRule::ErrorChange => t.iter().map(|v| v * v).sum(),
    };
    let mut prev = tk.core_norm_sq.last().copied().unwrap_or(0.0);
    for sweep in 0..max_sweeps {
        check_cancel(progress)?;
        let mut last_proj = None;
        for k in 0..order {
            let a = project(t.view(), &tk.factors, Some(k))?;
            tk.factors[k] = mode_subspace_warm(a.view(), k, &tk.factors[k])?;
            if k == order - 1 {
                last_proj = Some(a);
            }
        }
        if let Some(a) = last_proj {
            tk.core = mode_product(a.view(), tk.factors[order - 1].t(), order - 1)?;
        }
        let norm: f64 = tk.core.iter().map(|v| v * v).sum();
        tk.core_norm_sq.push(norm);
        tk.sweeps = sweep + 1;
        progress.advance(1);
        if stop.stops(sweep + 1, norm, prev, data_sq, tolerance) {
            break;
        }
        prev = norm;
    }
    Ok(tk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// A random Tucker tensor with given ranks and core scale, plus its factors.
    pub(crate) fn low_rank(shape: &[usize], ranks: &[usize], scale: f64, seed: u64) -> ArrayD<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let core = ArrayD::from_shape_fn(IxDyn(ranks), |_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            scale * z
        });
        let factors: Vec<Array2<f64>> = shape
            .iter()
            .zip(ranks)
            .map(|(&p, &r)| {
                let g = Array2::from_shape_fn((p, r), |_| StandardNormal.sample(&mut rng));
                crate::linalg::orthonormalize(g.view())
            })
            .collect();
        expand(core.view(), &factors).unwrap()
    }

    fn add_noise(t: &ArrayD<f64>, sigma: f64, seed: u64) -> ArrayD<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        t.mapv(|v| {
            v + sigma * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
        })
    }

    fn frob(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    /// The stopping rules on a noisy low-rank tensor. `ErrorChange` (tensorly's rule) stops at
    /// the first sweep `k ≥ 3` with `|e_{k−1} − e_k| < tol`, recomputed here from the recorded
    /// `‖S‖²` history (and not earlier); with a tolerance of 1 it runs exactly 3 sweeps where
    /// `CoreNorm` runs 1.
    #[test]
    fn stop_rules() {
        let mut t = low_rank(&[12, 10, 8], &[3, 3, 2], 1.0, 11);
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        t.mapv_inplace(|v| {
            let z: f64 = StandardNormal.sample(&mut rng);
            v + 0.5 * z
        });
        let data_sq: f64 = t.iter().map(|v| v * v).sum();
        let base = TuckerConfig {
            max_sweeps: 60,
            ..TuckerConfig::with_ranks(vec![3, 3, 2])
        };
        let np = &stem_core::NoProgress;
        for tol in [1e-2, 1e-4, 1e-6, 1e-9] {
            let c = TuckerConfig {
                tolerance: tol,
                stop: StopRule::ErrorChange,
                ..base.clone()
            };
            let tk = hooi(t.view(), &c, np).unwrap();
            let e: Vec<f64> = tk
                .core_norm_sq
                .iter()
                .map(|s| (data_sq - s).abs().sqrt() / data_sq.sqrt())
                .collect();
            assert_eq!(e.len(), tk.sweeps + 1);
            let first = (3..=tk.sweeps).find(|&k| (e[k - 1] - e[k]).abs() < tol);
            match first {
                Some(k) => assert_eq!(k, tk.sweeps, "tol {tol}"),
                None => assert_eq!(tk.sweeps, 60, "tol {tol}"),
            }
            assert!(tk.sweeps >= 3);
        }
        let one = |stop| {
            let c = TuckerConfig {
                tolerance: 1.0,
                stop,
                ..base.clone()
            };
            hooi(t.view(), &c, np).unwrap().sweeps
        };
        assert_eq!(one(StopRule::ErrorChange), 3);
        assert_eq!(one(StopRule::CoreNorm), 1);
    }

    #[test]
    fn rank_validation() {
        assert!(matches!(
            validate_ranks(&[4, 5], &[1]),
            Err(Error::RankCount {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            validate_ranks(&[4, 5, 6], &[0, 1, 1]),
            Err(Error::InvalidRank { mode: 0, .. })
        ));
        assert!(matches!(
            validate_ranks(&[4, 5, 6], &[5, 1, 5]),
            Err(Error::InvalidRank {
                mode: 0,
                rank: 5,
                dim: 4,
                ..
            })
        ));
        // r_0 = 4 > r_1 r_2 = 2
        assert!(matches!(
            validate_ranks(&[4, 5, 6], &[4, 1, 2]),
            Err(Error::InvalidRank {
                mode: 0,
                others: 2,
                ..
            })
        ));
        let t = ArrayD::<f64>::zeros(IxDyn(&[2, 2]));
        let mut c = TuckerConfig::with_ranks(vec![1, 1]);
        c.tolerance = f64::NAN;
        assert!(matches!(
            hooi(t.view(), &c, &stem_core::NoProgress),
            Err(Error::InvalidParameter {
                name: "tolerance",
                ..
            })
        ));
    }

    #[test]
    fn rejects_non_finite() {
        let mut t = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
        t[[1, 2]] = f64::NAN;
        assert!(matches!(
            st_hosvd(t.view(), &[1, 1], &stem_core::NoProgress),
            Err(Error::NonFinite { index: 5, .. })
        ));
    }

    /// Ground truth: an exactly low-rank tensor is recovered to round-off by ST-HOSVD and HOOI.
    #[test]
    fn exact_low_rank_recovered() {
        let x = low_rank(&[20, 30, 500], &[3, 4, 2], 10.0, 1);
        let tk = hooi(
            x.view(),
            &TuckerConfig::with_ranks(vec![3, 4, 2]),
            &stem_core::NoProgress,
        )
        .unwrap();
        let err = frob(&tk.reconstruct().unwrap(), &x) / frob(&x, &ArrayD::zeros(x.raw_dim()));
        // Gram route: relative precision ~1e-8 of σ₁ on the singular values, far better on
        // the reconstruction of an exactly low-rank tensor.
        assert!(err < 1e-9, "{err}");
    }

    /// Oracle: HOOI is a fixed point of its own update, and it does not lose to ST-HOSVD in
    /// ‖S‖² (which it maximises); the core norm history is non-decreasing.
    #[test]
    fn hooi_improves_on_hosvd() {
        let x = low_rank(&[15, 16, 40], &[3, 3, 3], 5.0, 2);
        let y = add_noise(&x, 0.5, 3);
        let c = TuckerConfig::with_ranks(vec![3, 3, 3]);
        let tk = hooi(y.view(), &c, &stem_core::NoProgress).unwrap();
        for w in tk.core_norm_sq.windows(2) {
            // Monotone up to round-off of the eigensolver.
            assert!(w[1] >= w[0] * (1.0 - 1e-12), "{:?}", tk.core_norm_sq);
        }
    }

    /// Ground truth + theory: with Gaussian noise σ the HOOI error is of the minimax order
    /// σ²(Σ p_k r_k + Π r_k) (Zhang & Xia 2018). We check the error lies within [0.5, 2] of
    /// that degrees-of-freedom count and far below the noise energy σ² Π p_k.
    #[test]
    fn gaussian_noise_error_matches_rate() {
        let shape = [30, 30, 200];
        let ranks = [3, 3, 3];
        let x = low_rank(&shape, &ranks, 200.0, 4);
        for (sigma, seed) in [(1.0, 5u64), (2.0, 6)] {
            let y = add_noise(&x, sigma, seed);
            let tk = hooi(
                y.view(),
                &TuckerConfig::with_ranks(ranks.to_vec()),
                &stem_core::NoProgress,
            )
            .unwrap();
            let err2 = frob(&tk.reconstruct().unwrap(), &x).powi(2);
            let dof: f64 = shape
                .iter()
                .zip(&ranks)
                .map(|(p, r)| (p * r) as f64)
                .sum::<f64>()
                + ranks.iter().product::<usize>() as f64;
            let ratio = err2 / (sigma * sigma * dof);
            // Strong-SNR regime: the error is the projected noise, ≈ σ²·(degrees of freedom).
            assert!((0.5..2.0).contains(&ratio), "ratio {ratio}");
        }
    }

    /// Oracle: the warm-started subspace iteration of a tall unfolding gives the subspace of the
    /// exact Gram eigenproblem (projectors agree to 1e-8), from a start that is only roughly
    /// aligned with it.
    #[test]
    fn warm_subspace_matches_exact() {
        let x = low_rank(&[8, 9, 400], &[3, 3, 4], 20.0, 11);
        let y = add_noise(&x, 0.3, 12);
        let exact = mode_subspace(y.view(), 2, 4).unwrap().u;
        // A rough start: the exact subspace plus a large random perturbation, re-orthonormalised.
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let noise = Array2::from_shape_fn((400, 4), |_| {
            0.5 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
        });
        let start = crate::linalg::orthonormalize((&exact + &noise).view());
        let warm = mode_subspace_warm(y.view(), 2, &start).unwrap();
        let pe = exact.dot(&exact.t());
        let pw = warm.dot(&warm.t());
        let d = (&pe - &pw).iter().map(|v| v * v).sum::<f64>().sqrt();
        // Stopping rule 1e-10 on the subspace change; 1e-8 leaves room for the gap factor.
        assert!(d < 1e-8, "projector difference {d:e}");
        // Orthonormal columns.
        let g = warm.t().dot(&warm);
        for i in 0..4 {
            for j in 0..4 {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((g[[i, j]] - e).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn cancel_is_honoured() {
        let x = low_rank(&[10, 10, 10], &[2, 2, 2], 1.0, 7);
        let flag = stem_core::CancelFlag::default();
        flag.cancel();
        assert!(matches!(
            hooi(x.view(), &TuckerConfig::with_ranks(vec![2, 2, 2]), &flag),
            Err(Error::Core(stem_core::Error::Cancelled))
        ));
    }
}
