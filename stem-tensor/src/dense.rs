//! Mode-n unfolding, folding, products and Gram matrices of dense N-d arrays.
//!
//! Tensors are `ndarray` arrays in row-major (numpy) order. Conventions (those of Kolda & Bader,
//! SIAM Rev. 51, 2009, with row-major column ordering as in tensorly's `unfold`):
//!
//! * **Unfolding** `M_n(Y)`: a `p_n × (Π_{j≠n} p_j)` matrix whose column index runs row-major
//!   over the remaining axes in their original order: `M_n(Y)[i_n, (i_0,…,i_{n−1},i_{n+1},…)]`.
//! * **Mode-n product** `Y ×_n A` with `A` of shape `q × p_n`:
//!   `(Y ×_n A)[…, j, …] = Σ_i A[j, i] · Y[…, i, …]`, i.e. `M_n(Y ×_n A) = A · M_n(Y)`.
//! * **Mode-n Gram** `M_n(Y) M_n(Y)ᵀ` (`p_n × p_n`), computed without forming the unfolding.
//!
//! All kernels view the array as `(a, p_n, b)` with `a = Π_{j<n} p_j`, `b = Π_{j>n} p_j` and run
//! faer's BLAS-3 products on fixed blocks in parallel (block sizes do not depend on the thread
//! count, so the results do not either).

use crate::error::{Error, Result};
use crate::linalg::{ROW_BLOCK, as_rm, gram_ata, to_array};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// `(a, p, b)`: the sizes before, at and after `mode`.
pub(crate) fn split_shape(shape: &[usize], mode: usize) -> Result<(usize, usize, usize)> {
    if mode >= shape.len() {
        return Err(Error::ModeOutOfRange {
            mode,
            order: shape.len(),
        });
    }
    let a = shape[..mode].iter().product();
    let b = shape[mode + 1..].iter().product();
    Ok((a, shape[mode], b))
}

fn standard<'b>(t: &'b ArrayViewD<'_, f64>) -> std::borrow::Cow<'b, [f64]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

/// The mode-`mode` unfolding `M_n(Y)` (`p_n × Π_{j≠n} p_j`).
///
/// ```
/// use ndarray::{ArrayD, IxDyn};
/// use stem_tensor::dense::unfold;
/// let t = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 100 + i[1] * 10 + i[2]) as f64);
/// let m = unfold(t.view(), 1)?;
/// assert_eq!(m.dim(), (3, 8));
/// assert_eq!(m[[2, 5]], 121.0); // column 5 = (i0, i2) = (1, 1)
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::ModeOutOfRange`].
pub fn unfold(t: ArrayViewD<'_, f64>, mode: usize) -> Result<Array2<f64>> {
    let (a, p, b) = split_shape(t.shape(), mode)?;
    let data = standard(&t);
    let mut out = vec![0.0f64; a * p * b];
    if b > 0 {
        out.par_chunks_mut((a * b).max(1))
            .enumerate()
            .for_each(|(j, row)| {
                for i in 0..a {
                    let src = &data[(i * p + j) * b..(i * p + j + 1) * b];
                    row[i * b..(i + 1) * b].copy_from_slice(src);
                }
            });
    }
    Array2::from_shape_vec((p, a * b), out).map_err(|e| Error::invalid("unfold", e.to_string()))
}

/// Inverse of [`unfold`]: the tensor of `shape` whose mode-`mode` unfolding is `m`.
///
/// # Errors
/// [`Error::ModeOutOfRange`]; [`Error::ShapeMismatch`] if `m` is not
/// `shape[mode] × Π_{j≠mode} shape[j]`.
pub fn fold(m: ArrayView2<'_, f64>, mode: usize, shape: &[usize]) -> Result<ArrayD<f64>> {
    let (a, p, b) = split_shape(shape, mode)?;
    if m.dim() != (p, a * b) {
        return Err(Error::ShapeMismatch {
            expected: vec![p, a * b],
            found: vec![m.nrows(), m.ncols()],
        });
    }
    let ms = as_rm(&m);
    let mut out = vec![0.0f64; a * p * b];
    if p * b > 0 {
        out.par_chunks_mut(p * b).enumerate().for_each(|(i, blk)| {
            for j in 0..p {
                let src = &ms[j * a * b + i * b..j * a * b + (i + 1) * b];
                blk[j * b..(j + 1) * b].copy_from_slice(src);
            }
        });
    }
    ArrayD::from_shape_vec(IxDyn(shape), out).map_err(|e| Error::invalid("fold", e.to_string()))
}

/// The mode-`mode` product `Y ×_n A` with `A` of shape `q × p_n` (see the module docs).
///
/// ```
/// use ndarray::{array, ArrayD, IxDyn};
/// use stem_tensor::dense::mode_product;
/// let t = ArrayD::from_elem(IxDyn(&[2, 3, 4]), 1.0);
/// let a = array![[1.0, 1.0, 1.0]]; // sums mode 1
/// let y = mode_product(t.view(), a.view(), 1)?;
/// assert_eq!(y.shape(), &[2, 1, 4]);
/// assert!(y.iter().all(|&v| v == 3.0));
/// # Ok::<(), stem_tensor::Error>(())
/// ```
///
/// # Errors
/// [`Error::ModeOutOfRange`]; [`Error::ShapeMismatch`] if `A` has not `p_n` columns.
pub fn mode_product(
    t: ArrayViewD<'_, f64>,
    a_mat: ArrayView2<'_, f64>,
    mode: usize,
) -> Result<ArrayD<f64>> {
    let (a, p, b) = split_shape(t.shape(), mode)?;
    let (q, p2) = a_mat.dim();
    if p2 != p {
        return Err(Error::ShapeMismatch {
            expected: vec![q, p],
            found: vec![q, p2],
        });
    }
    let mut shape = t.shape().to_vec();
    shape[mode] = q;
    let data = standard(&t);
    let ms = as_rm(&a_mat);
    let am = MatRef::from_row_major_slice(&ms, q, p);
    let mut out = vec![0.0f64; a * q * b];
    if a * q * b > 0 && p > 0 {
        if b == 1 {
            // out (a × q) = Y (a × p) · Aᵀ, fixed row blocks.
            out.par_chunks_mut(ROW_BLOCK * q)
                .zip(data.par_chunks(ROW_BLOCK * p))
                .for_each(|(o, y)| {
                    let rows = o.len() / q;
                    let ym = MatRef::from_row_major_slice(&y[..rows * p], rows, p);
                    let om = MatMut::from_row_major_slice_mut(o, rows, q);
                    faer::linalg::matmul::matmul(
                        om,
                        Accum::Replace,
                        ym,
                        am.transpose(),
                        1.0,
                        Par::Seq,
                    );
                });
        } else {
            // For each leading index i: out_i (q × b, row-major) = A · Y_i. Seen column-major,
            // out_iᵀ (b × q) = Y_iᵀ (b × p) · Aᵀ; split over fixed blocks of b.
            let cb = ROW_BLOCK;
            out.par_chunks_mut(q * b)
                .zip(data.par_chunks(p * b))
                .for_each(|(o, y)| {
                    let ym = MatRef::from_column_major_slice(y, b, p);
                    let om = MatMut::from_column_major_slice_mut(o, b, q);
                    let mut blocks = Vec::with_capacity(b.div_ceil(cb));
                    let mut rest = om;
                    let mut start = 0;
                    while start < b {
                        let w = cb.min(b - start);
                        let (head, tail) = rest.split_at_row_mut(w);
                        blocks.push((start, head));
                        rest = tail;
                        start += w;
                    }
                    blocks.into_par_iter().for_each(|(s, blk)| {
                        let w = blk.nrows();
                        faer::linalg::matmul::matmul(
                            blk,
                            Accum::Replace,
                            ym.subrows(s, w),
                            am.transpose(),
                            1.0,
                            Par::Seq,
                        );
                    });
                });
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out)
        .map_err(|e| Error::invalid("mode_product", e.to_string()))
}

/// The mode-`mode` Gram matrix `M_n(Y) M_n(Y)ᵀ` (`p_n × p_n`), accumulated over fixed blocks
/// without forming the unfolding.
///
/// # Errors
/// [`Error::ModeOutOfRange`].
pub fn mode_gram(t: ArrayViewD<'_, f64>, mode: usize) -> Result<Array2<f64>> {
    let (a, p, b) = split_shape(t.shape(), mode)?;
    let data = standard(&t);
    if b == 1 {
        return Ok(gram_ata(&data, a, p));
    }
    if a * p * b == 0 {
        return Ok(Array2::zeros((p, p)));
    }
    // Groups of consecutive leading indices, each holding about 16·ROW_BLOCK columns in all.
    let group = (16 * ROW_BLOCK / b).max(1);
    let partials: Vec<Mat<f64>> = data
        .par_chunks(group * p * b)
        .map(|chunk| {
            let mut g = Mat::<f64>::zeros(p, p);
            for y in chunk.chunks_exact(p * b) {
                let ym = MatRef::from_row_major_slice(y, p, b);
                faer::linalg::matmul::matmul(
                    g.as_mut(),
                    Accum::Add,
                    ym,
                    ym.transpose(),
                    1.0,
                    Par::Seq,
                );
            }
            g
        })
        .collect();
    let mut g = Mat::<f64>::zeros(p, p);
    for part in &partials {
        g += part;
    }
    Ok(to_array(g.as_ref()))
}

/// `Y ×_j U_jᵀ` for every mode `j` except `skip` (all modes for `None`), applying the products
/// in the order that shrinks the tensor fastest (largest `p_j / r_j` first). `factors[j]` is
/// `p_j × r_j`.
///
/// # Errors
/// [`Error::RankCount`] if `factors.len()` is not the tensor order; shape errors of
/// [`mode_product`].
pub fn project(
    t: ArrayViewD<'_, f64>,
    factors: &[Array2<f64>],
    skip: Option<usize>,
) -> Result<ArrayD<f64>> {
    let order = t.ndim();
    if factors.len() != order {
        return Err(Error::RankCount {
            expected: order,
            found: factors.len(),
        });
    }
    let mut modes: Vec<usize> = (0..order).filter(|&j| Some(j) != skip).collect();
    modes.sort_by(|&x, &y| {
        let rx = factors[x].nrows() as f64 / factors[x].ncols().max(1) as f64;
        let ry = factors[y].nrows() as f64 / factors[y].ncols().max(1) as f64;
        ry.total_cmp(&rx).then(x.cmp(&y))
    });
    let mut cur: Option<ArrayD<f64>> = None;
    for j in modes {
        let ut = factors[j].t();
        let next = match &cur {
            None => mode_product(t.view(), ut, j)?,
            Some(c) => mode_product(c.view(), ut, j)?,
        };
        cur = Some(next);
    }
    Ok(cur.unwrap_or_else(|| t.to_owned()))
}

/// `S ×_j U_j` for every mode: expands a Tucker core back to full size, smallest expansion first.
///
/// # Errors
/// As [`project`].
pub fn expand(core: ArrayViewD<'_, f64>, factors: &[Array2<f64>]) -> Result<ArrayD<f64>> {
    let order = core.ndim();
    if factors.len() != order {
        return Err(Error::RankCount {
            expected: order,
            found: factors.len(),
        });
    }
    let mut modes: Vec<usize> = (0..order).collect();
    modes.sort_by(|&x, &y| {
        let rx = factors[x].nrows() as f64 / factors[x].ncols().max(1) as f64;
        let ry = factors[y].nrows() as f64 / factors[y].ncols().max(1) as f64;
        rx.total_cmp(&ry).then(x.cmp(&y))
    });
    let mut cur = core.to_owned();
    for j in modes {
        cur = mode_product(cur.view(), factors[j].view(), j)?;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random::<f64>() - 0.5)
    }

    /// Oracle: element-by-element definition of the unfolding.
    #[test]
    fn unfold_matches_definition() {
        let t = random(&[3, 4, 5, 2], 1);
        for mode in 0..4 {
            let m = unfold(t.view(), mode).unwrap();
            for (idx, &v) in t.indexed_iter() {
                let mut col = 0;
                for j in 0..4 {
                    if j != mode {
                        col = col * t.shape()[j] + idx[j];
                    }
                }
                assert_eq!(m[[idx[mode], col]], v);
            }
            let back = fold(m.view(), mode, t.shape()).unwrap();
            assert_eq!(back, t);
        }
    }

    /// Oracle: triple loop for the mode product and the Gram matrix, on sizes that cross the
    /// internal block boundaries.
    #[test]
    fn mode_product_and_gram_match_loops() {
        for shape in [
            vec![3, 5, 2100],
            vec![2100, 3, 2],
            vec![4, 3, 5],
            vec![5000, 3],
        ] {
            let t = random(&shape, 2);
            for mode in 0..shape.len() {
                let p = shape[mode];
                let a = random(&[2, p], 3)
                    .into_dimensionality::<ndarray::Ix2>()
                    .unwrap();
                let y = mode_product(t.view(), a.view(), mode).unwrap();
                let m = unfold(t.view(), mode).unwrap();
                let expect = a.dot(&m);
                let got = unfold(y.view(), mode).unwrap();
                let d = (&got - &expect).iter().fold(0.0f64, |x, v| x.max(v.abs()));
                assert!(d < 1e-10, "mode {mode} shape {shape:?}: {d}");
                let g = mode_gram(t.view(), mode).unwrap();
                let ge = m.dot(&m.t());
                let d = (&g - &ge).iter().fold(0.0f64, |x, v| x.max(v.abs()));
                assert!(d < 1e-9, "gram mode {mode}: {d}");
            }
        }
    }

    #[test]
    fn errors_on_bad_mode_and_shape() {
        let t = random(&[2, 3], 1);
        assert!(matches!(
            unfold(t.view(), 2),
            Err(Error::ModeOutOfRange { mode: 2, order: 2 })
        ));
        let a = Array2::<f64>::zeros((2, 4));
        assert!(matches!(
            mode_product(t.view(), a.view(), 1),
            Err(Error::ShapeMismatch { .. })
        ));
        let m = Array2::<f64>::zeros((3, 3));
        assert!(matches!(
            fold(m.view(), 1, &[2, 3]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            project(t.view(), &[], None),
            Err(Error::RankCount { .. })
        ));
    }

    /// Results do not depend on the thread count.
    #[test]
    fn parallel_equals_sequential() {
        let t = random(&[6, 7, 3000], 5);
        let a = random(&[4, 3000], 6)
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        let seq = stem_core::Parallelism::Sequential
            .install(|| {
                (
                    mode_product(t.view(), a.view(), 2).unwrap(),
                    mode_gram(t.view(), 0).unwrap(),
                )
            })
            .unwrap();
        let par = stem_core::Parallelism::Threads(3)
            .install(|| {
                (
                    mode_product(t.view(), a.view(), 2).unwrap(),
                    mode_gram(t.view(), 0).unwrap(),
                )
            })
            .unwrap();
        assert_eq!(seq, par);
    }

    proptest! {
        /// Products along different modes commute, and project ∘ expand with orthonormal
        /// square factors is the identity.
        #[test]
        fn products_commute(d0 in 1usize..5, d1 in 1usize..5, d2 in 1usize..5, seed in 0u64..100) {
            let t = random(&[d0, d1, d2], seed);
            let a = random(&[2, d0], seed + 1).into_dimensionality::<ndarray::Ix2>().unwrap();
            let b = random(&[3, d2], seed + 2).into_dimensionality::<ndarray::Ix2>().unwrap();
            let x = mode_product(mode_product(t.view(), a.view(), 0).unwrap().view(), b.view(), 2).unwrap();
            let y = mode_product(mode_product(t.view(), b.view(), 2).unwrap().view(), a.view(), 0).unwrap();
            let d = (&x - &y).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            prop_assert!(d < 1e-12);
            let eye: Vec<Array2<f64>> = [d0, d1, d2].iter().map(|&n| Array2::eye(n)).collect();
            let back = expand(project(t.view(), &eye, None).unwrap().view(), &eye).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}
