//! Dense linear algebra on top of faer: symmetric eigendecompositions, leading singular
//! subspaces through the Gram matrix of the smaller side, and a randomized range finder.
//!
//! All decompositions run sequentially inside faer (`Par::Seq`); the parallel work (Gram
//! accumulation, matrix products) is split into blocks of a fixed size that does not depend on
//! the thread count, so results are identical for every [`Parallelism`](stem_core::Parallelism).
//!
//! **Gram route.** For a `p × q` matrix `M` the leading left singular vectors are the leading
//! eigenvectors of the smaller Gram matrix: `M Mᵀ` (`p × p`) when `p ≤ q`, otherwise `MᵀM`
//! (`q × q`) followed by `U = M V` and an orthonormalisation. For the tall-skinny and short-fat
//! unfoldings of tensor denoising (64 × 262 144 or 4096 × 144) this replaces an SVD of the large
//! side by an eigenproblem of at most `min(p, q)²` and one pass of matrix products, which is
//! far cheaper than a thin SVD (O(pq·min) flops in blocked BLAS-3 products, then O(min³)).
//! The price is precision: singular values below about `1e-8 · σ₁` are lost in `f64`
//! (squared condition number), which is far below any noise floor met in denoising.

use crate::error::{Error, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Rows per block in blocked Gram accumulations and products (fixed: results do not depend on
/// the thread count).
pub(crate) const ROW_BLOCK: usize = 2048;

/// A faer view of a standard-layout (row-major) ndarray matrix, copying only if needed.
pub(crate) fn as_rm<'b>(m: &'b ArrayView2<'_, f64>) -> std::borrow::Cow<'b, [f64]> {
    match m.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(m.iter().copied().collect()),
    }
}

/// Copies a faer matrix into an ndarray matrix.
pub(crate) fn to_array(m: MatRef<'_, f64>) -> Array2<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

/// `a · b` for row-major ndarray matrices (rows of the output in parallel, fixed blocks).
pub(crate) fn matmul(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    if k != k2 {
        return Err(Error::ShapeMismatch {
            expected: vec![k, n],
            found: vec![k2, n],
        });
    }
    let a_s = as_rm(&a);
    let b_s = as_rm(&b);
    let bm = MatRef::from_row_major_slice(&b_s, k, n);
    let mut out = vec![0.0f64; m * n];
    if n > 0 {
        out.par_chunks_mut(ROW_BLOCK * n)
            .zip(a_s.par_chunks(ROW_BLOCK * k.max(1)))
            .for_each(|(o, a_blk)| {
                let rows = o.len() / n;
                let am = MatRef::from_row_major_slice(&a_blk[..rows * k], rows, k);
                let om = MatMut::from_row_major_slice_mut(o, rows, n);
                faer::linalg::matmul::matmul(om, Accum::Replace, am, bm, 1.0, Par::Seq);
            });
    }
    Array2::from_shape_vec((m, n), out).map_err(|e| Error::invalid("matmul", e.to_string()))
}

/// `MᵀM` (`cols × cols`) of a row-major `rows × cols` matrix, accumulated over fixed row blocks
/// in parallel and summed in block order.
pub(crate) fn gram_ata(m: &[f64], rows: usize, cols: usize) -> Array2<f64> {
    if rows == 0 || cols == 0 {
        return Array2::zeros((cols, cols));
    }
    let partials: Vec<Mat<f64>> = m[..rows * cols]
        .par_chunks(ROW_BLOCK * cols)
        .map(|blk| {
            let r = blk.len() / cols;
            let bm = MatRef::from_row_major_slice(blk, r, cols);
            let mut g = Mat::<f64>::zeros(cols, cols);
            faer::linalg::matmul::matmul(
                g.as_mut(),
                Accum::Replace,
                bm.transpose(),
                bm,
                1.0,
                Par::Seq,
            );
            g
        })
        .collect();
    let mut total = Mat::<f64>::zeros(cols, cols);
    for p in &partials {
        total += p;
    }
    to_array(total.as_ref())
}

/// Eigen-decomposition of a symmetric matrix, eigenvalues in **descending** order with the
/// eigenvectors as the columns of the returned matrix (same order).
pub fn symmetric_eigen(g: ArrayView2<'_, f64>) -> Result<(Vec<f64>, Array2<f64>)> {
    let (n, n2) = g.dim();
    if n != n2 {
        return Err(Error::ShapeMismatch {
            expected: vec![n, n],
            found: vec![n, n2],
        });
    }
    if n == 0 {
        return Ok((Vec::new(), Array2::zeros((0, 0))));
    }
    let gs = as_rm(&g);
    let gm = MatRef::from_row_major_slice(&gs, n, n);
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let mut u = Mat::<f64>::zeros(n, n);
    let par = Par::Seq;
    let params = Default::default();
    let req = evd::self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::Yes, par, params);
    let mut buf = MemBuffer::new(req);
    evd::self_adjoint_evd(
        gm,
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut buf),
        params,
    )
    .map_err(|_| Error::Decomposition {
        what: "symmetric eigendecomposition",
        rows: n,
        cols: n,
    })?;
    // faer returns ascending order; reverse.
    let values: Vec<f64> = (0..n).rev().map(|i| s[i]).collect();
    let vectors = Array2::from_shape_fn((n, n), |(i, j)| u[(i, n - 1 - j)]);
    Ok((values, vectors))
}

/// Orthonormal basis (thin Q of a Householder QR) of the columns of a `p × r` matrix.
pub(crate) fn orthonormalize(m: ArrayView2<'_, f64>) -> Array2<f64> {
    let (p, r) = m.dim();
    if p == 0 || r == 0 {
        return Array2::zeros((p, r));
    }
    let ms = as_rm(&m);
    let mm = MatRef::from_row_major_slice(&ms, p, r);
    // Householder QR with explicit `Par::Seq`: faer's convenience `qr()` uses the global
    // parallelism (the current rayon pool), whose blocking depends on the thread count.
    let par = Par::Seq;
    let size = p.min(r);
    let mut qr = mm.to_owned();
    let block = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(p, r);
    let mut coeff = Mat::<f64>::zeros(block, size);
    faer::linalg::qr::no_pivoting::factor::qr_in_place(
        qr.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut MemBuffer::new(
            faer::linalg::qr::no_pivoting::factor::qr_in_place_scratch::<f64>(
                p,
                r,
                block,
                par,
                Default::default(),
            ),
        )),
        Default::default(),
    );
    // Householder basis: the strictly lower part of the factored matrix, unit diagonal.
    let mut basis = Mat::<f64>::zeros(p, size);
    for j in 0..size {
        basis[(j, j)] = 1.0;
        for i in j + 1..p {
            basis[(i, j)] = qr[(i, j)];
        }
    }
    let mut q = Mat::<f64>::identity(p, size);
    faer::linalg::householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
        basis.as_ref(),
        coeff.as_ref(),
        faer::Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut MemBuffer::new(
            faer::linalg::householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
                p, block, size,
            ),
        )),
    );
    to_array(q.as_ref())
}

/// The leading left singular subspace of a matrix, from [`leading_left_singular`].
#[derive(Clone, Debug)]
pub struct LeadingSubspace {
    /// Orthonormal columns: the top `r` left singular vectors (`p × r`).
    pub u: Array2<f64>,
    /// All `min(p, q)` singular values in descending order (from the Gram eigenvalues; values
    /// below ~1e-8·σ₁ are not resolved).
    pub singular_values: Vec<f64>,
}

/// Top-`r` left singular vectors and all singular values of the row-major `p × q` matrix `m`
/// through the Gram matrix of its smaller side (see the module docs for why).
///
/// ```
/// use ndarray::array;
/// use stem_tensor::linalg::leading_left_singular;
/// let m = array![[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]];
/// let s = leading_left_singular(m.view(), 1)?;
/// assert!((s.singular_values[0] - 3.0).abs() < 1e-12);
/// assert!((s.u[[0, 0]].abs() - 1.0).abs() < 1e-12);
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if `r` is 0 or exceeds `p`; [`Error::Decomposition`] if the
/// eigensolver fails.
pub fn leading_left_singular(m: ArrayView2<'_, f64>, r: usize) -> Result<LeadingSubspace> {
    let (p, q) = m.dim();
    if r == 0 || r > p {
        return Err(Error::invalid(
            "r",
            format!("rank {r} must be in 1..={p} (rows of the matrix)"),
        ));
    }
    let ms = as_rm(&m);
    if p <= q {
        let mm = MatRef::from_row_major_slice(&ms, p, q);
        // M Mᵀ over fixed column blocks.
        let cb = 16 * ROW_BLOCK;
        let starts: Vec<usize> = (0..q).step_by(cb).collect();
        let partials: Vec<Mat<f64>> = starts
            .par_iter()
            .map(|&c0| {
                let w = cb.min(q - c0);
                let sub = mm.subcols(c0, w);
                let mut g = Mat::<f64>::zeros(p, p);
                faer::linalg::matmul::matmul(
                    g.as_mut(),
                    Accum::Replace,
                    sub,
                    sub.transpose(),
                    1.0,
                    Par::Seq,
                );
                g
            })
            .collect();
        let mut g = Mat::<f64>::zeros(p, p);
        for part in &partials {
            g += part;
        }
        let (vals, vecs) = symmetric_eigen(to_array(g.as_ref()).view())?;
        let u = vecs.slice(ndarray::s![.., ..r]).to_owned();
        Ok(LeadingSubspace {
            u,
            singular_values: vals.iter().map(|&v| v.max(0.0).sqrt()).collect(),
        })
    } else {
        let g = gram_ata(&ms, p, q);
        let (vals, vecs) = symmetric_eigen(g.view())?;
        let rr = r.min(q);
        let v = vecs.slice(ndarray::s![.., ..rr]).to_owned();
        let mv = matmul(m, v.view())?;
        let mut u = orthonormalize(mv.view());
        if rr < r {
            // More vectors than the rank of M: complete with an orthonormal basis.
            u = complete_basis(u.view(), r);
        }
        Ok(LeadingSubspace {
            u,
            singular_values: vals.iter().map(|&v| v.max(0.0).sqrt()).collect(),
        })
    }
}

/// Extends the orthonormal columns of `u` (`p × k`) to `r ≤ p` orthonormal columns.
fn complete_basis(u: ArrayView2<'_, f64>, r: usize) -> Array2<f64> {
    let (p, k) = u.dim();
    let mut full = Array2::<f64>::zeros((p, k + p));
    full.slice_mut(ndarray::s![.., ..k]).assign(&u);
    for i in 0..p {
        full[[i, k + i]] = 1.0;
    }
    let q = orthonormalize(full.view());
    q.slice(ndarray::s![.., ..r]).to_owned()
}

/// Settings of the randomized range finder (Halko, Martinsson & Tropp, SIAM Rev. 53, 2011,
/// Alg. 4.4: Gaussian sketch, power iterations with re-orthonormalisation).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomizedConfig {
    /// Extra sketch columns beyond the rank. Default 10.
    pub oversampling: usize,
    /// Power iterations (each re-orthonormalised). Default 4.
    pub power_iterations: usize,
    /// Seed of the Gaussian sketch.
    pub seed: u64,
}

impl Default for RandomizedConfig {
    fn default() -> Self {
        RandomizedConfig {
            oversampling: 10,
            power_iterations: 4,
            seed: 0,
        }
    }
}

/// Orthonormal `p × min(r + oversampling, p, q)` basis `Q` approximating the range of the
/// row-major `p × q` matrix `m` (randomized range finder with power iterations).
///
/// ```
/// use ndarray::Array2;
/// use stem_tensor::linalg::{randomized_range_finder, RandomizedConfig};
/// // A rank-2 matrix: its range is captured exactly.
/// let m = Array2::from_shape_fn((50, 40), |(i, j)| (i as f64) * 0.1 + ((j * i) % 7) as f64 * 0.0 + (j as f64).cos());
/// let q = randomized_range_finder(m.view(), 2, &RandomizedConfig::default())?;
/// let resid = &m - &q.dot(&q.t().dot(&m));
/// assert!(resid.iter().all(|v| v.abs() < 1e-9));
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for `r == 0`.
pub fn randomized_range_finder(
    m: ArrayView2<'_, f64>,
    r: usize,
    config: &RandomizedConfig,
) -> Result<Array2<f64>> {
    let (p, q) = m.dim();
    if r == 0 {
        return Err(Error::invalid("r", "rank must be at least 1"));
    }
    let k = (r + config.oversampling).min(p).min(q).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let omega = Array2::from_shape_fn((q, k), |_| StandardNormal.sample(&mut rng));
    let mut y = orthonormalize(matmul(m, omega.view())?.view());
    let mt = m.t().as_standard_layout().into_owned();
    for _ in 0..config.power_iterations {
        let z = orthonormalize(matmul(mt.view(), y.view())?.view());
        y = orthonormalize(matmul(m, z.view())?.view());
    }
    Ok(y)
}

/// Truncated SVD by the randomized range finder: `Q` from [`randomized_range_finder`], then an
/// exact SVD of the small `Qᵀ M` through its Gram matrix. Returns the top-`r` left singular
/// vectors and the top singular values.
///
/// # Errors
/// As [`randomized_range_finder`] and [`leading_left_singular`].
pub fn randomized_svd(
    m: ArrayView2<'_, f64>,
    r: usize,
    config: &RandomizedConfig,
) -> Result<LeadingSubspace> {
    let q = randomized_range_finder(m, r, config)?;
    let b = matmul(q.t(), m)?;
    let rr = r.min(b.nrows());
    let small = leading_left_singular(b.view(), rr)?;
    let u = matmul(q.view(), small.u.view())?;
    Ok(LeadingSubspace {
        u,
        singular_values: small.singular_values.into_iter().take(rr).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn random(p: usize, q: usize, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((p, q), |_| rng.random::<f64>() - 0.5)
    }

    /// Oracle: faer's dense thin SVD against the Gram route, both orientations.
    #[test]
    fn gram_route_matches_dense_svd() {
        for &(p, q) in &[(20, 300), (300, 20), (17, 17)] {
            let m = random(p, q, 3);
            let s = leading_left_singular(m.view(), 5).unwrap();
            let ms = m.as_slice().unwrap();
            let svd = MatRef::from_row_major_slice(ms, p, q).thin_svd().unwrap();
            for i in 0..p.min(q) {
                // Gram route: relative error ~ eps·σ₁²/σᵢ², random matrices are well conditioned.
                assert!((s.singular_values[i] - svd.S()[i]).abs() < 1e-9 * svd.S()[0]);
            }
            // Same subspace: |U_gramᵀ U_svd| has unit singular values, i.e. the projections agree.
            let us = to_array(svd.U().subcols(0, 5));
            let proj_a = s.u.dot(&s.u.t());
            let proj_b = us.dot(&us.t());
            let d = (&proj_a - &proj_b)
                .iter()
                .fold(0.0f64, |a, v| a.max(v.abs()));
            assert!(d < 1e-8, "subspace difference {d}");
            let gram = s.u.t().dot(&s.u);
            for i in 0..5 {
                for j in 0..5 {
                    let e = if i == j { 1.0 } else { 0.0 };
                    assert!((gram[[i, j]] - e).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn rejects_bad_rank() {
        let m = random(4, 6, 1);
        assert!(matches!(
            leading_left_singular(m.view(), 0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            leading_left_singular(m.view(), 5),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(randomized_range_finder(m.view(), 0, &RandomizedConfig::default()).is_err());
    }

    #[test]
    fn rank_above_column_count_is_completed() {
        let m = random(10, 3, 2);
        let s = leading_left_singular(m.view(), 5).unwrap();
        let g = s.u.t().dot(&s.u);
        for i in 0..5 {
            assert!((g[[i, i]] - 1.0).abs() < 1e-12);
        }
    }

    /// Randomized SVD of a matrix with a decaying spectrum matches the exact top values.
    #[test]
    fn randomized_svd_matches_exact_on_decaying_spectrum() {
        let u = orthonormalize(random(200, 8, 5).view());
        let v = orthonormalize(random(150, 8, 6).view());
        let s = [100.0, 50.0, 20.0, 10.0, 5.0, 1.0, 0.5, 0.1];
        let mut m = Array2::<f64>::zeros((200, 150));
        for k in 0..8 {
            for i in 0..200 {
                for j in 0..150 {
                    m[[i, j]] += s[k] * u[[i, k]] * v[[j, k]];
                }
            }
        }
        let r = randomized_svd(m.view(), 4, &RandomizedConfig::default()).unwrap();
        for k in 0..4 {
            // Exact rank-8 matrix, sketch of 14 columns spans it: errors at round-off level.
            assert!((r.singular_values[k] - s[k]).abs() < 1e-8 * s[0]);
        }
    }

    #[test]
    fn eigen_descending() {
        let g = ndarray::array![[2.0, 1.0], [1.0, 2.0]];
        let (vals, vecs) = symmetric_eigen(g.view()).unwrap();
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[[0, 0]].abs() - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
