//! Fused, cache-blocked convolution: im2col of a few output rows at a time (a block that stays
//! in cache) followed immediately by a sequential `gemm` call, for the forward pass and both
//! gradients. Jobs (batch item × row block) run in parallel on rayon; each output element is
//! produced by exactly one job in a fixed order (the forward GEMM writes straight into the
//! output), and the kernel gradient is reduced over a fixed number of job groups in group
//! order, so results do not depend on the number of threads. A 1×1 kernel at stride 1 without
//! padding skips im2col / col2im entirely (the input is its own im2col matrix).

use super::conv::Geom;
use super::{Data, Elem, data, dims4};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Target size of one im2col block, in elements (256 KiB of f32: about an L2 cache).
const BLOCK_ELEMS: usize = 1 << 16;

/// Output rows per block.
fn rows_per_block(g: &Geom) -> usize {
    (BLOCK_ELEMS / (g.rows() * g.ow).max(1)).clamp(1, g.oh.max(1))
}

/// `dst[m×n] (row stride dst_rs) (+)= lhs[m×k] · rhs[k×n]`, all row-major with the given row
/// strides (or column-major when `*_t` says the matrix is stored transposed).
#[allow(clippy::too_many_arguments)]
fn gemm_into<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds of every access, checked once so the unsafe call below stays in range.
    let last = |r: usize, c: usize, s: (usize, usize)| {
        r.saturating_sub(1) * s.0 + c.saturating_sub(1) * s.1
    };
    if k > 0 {
        assert!(last(m, k, lhs_strides) < lhs.len() && last(k, n, rhs_strides) < rhs.len());
    }
    assert!((m - 1) * dst_rs + (n - 1) < dst.len());
    // SAFETY: the asserts above bound every element gemm reads or writes; the slices are
    // valid for the duration of the call and `dst` does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The blocks `(b, oy0, oy1)` of a convolution.
fn blocks(g: &Geom) -> Vec<(usize, usize, usize)> {
    let r = rows_per_block(g);
    let mut v = Vec::new();
    for b in 0..g.b {
        let mut oy = 0;
        while oy < g.oh {
            v.push((b, oy, (oy + r).min(g.oh)));
            oy += r;
        }
    }
    v
}

/// Whether im2col is the identity (a 1×1 kernel at stride 1 without padding): the block of
/// output rows `oy0..oy1` is then the input itself, `x_b[c, oy0·w .. oy1·w]` (row stride
/// `h·w`), and no im2col / col2im buffer is needed.
fn identity_cols(g: &Geom) -> bool {
    g.c > 0 && g.kh == 1 && g.kw == 1 && g.p.stride == [1, 1] && g.p.padding == [0, 0]
}

/// The im2col block of rows `oy0..oy1` of batch item `xb` as `(matrix, row stride)`: a view
/// of the input for [`identity_cols`], else built in `buf`.
fn cols_block<'a, T: Elem>(
    xb: &'a [T],
    g: &Geom,
    oy0: usize,
    oy1: usize,
    buf: &'a mut Vec<T>,
) -> (&'a [T], usize) {
    if identity_cols(g) {
        return (&xb[oy0 * g.w..], g.h * g.w);
    }
    let nc = (oy1 - oy0) * g.ow;
    buf.resize(g.rows() * nc, T::default());
    super::conv::im2col_rows(xb, g, oy0, oy1, &mut buf[..g.rows() * nc]);
    (&buf[..g.rows() * nc], nc)
}

/// A raw pointer to an output buffer shared by jobs that write disjoint parts of it.
struct SharedOut<T>(*mut T, usize);

// SAFETY: jobs only write disjoint element ranges through the pointer (see `forward`), and the
// buffer outlives the parallel loop.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedOut<T> {}

fn forward<T: Elem>(x: &[T], w: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let mut y = vec![T::default(); g.b * o * n_out];
    let out = &SharedOut(y.as_mut_ptr(), y.len());
    // Each job (b, oy0..oy1) writes the columns [oy0·ow, oy1·ow) of the o channel planes of
    // batch item b, straight from the GEMM (row stride n_out): disjoint between jobs.
    blocks(g)
        .par_iter()
        .for_each_init(Vec::new, |buf, &(b, oy0, oy1)| {
            let nc = (oy1 - oy0) * g.ow;
            let (cols, cs) = cols_block(&x[b * xb..][..xb], g, oy0, oy1, buf);
            let off = b * o * n_out + oy0 * g.ow;
            if o == 0 || nc == 0 {
                return;
            }
            let last = off + (o - 1) * n_out + nc;
            assert!(last <= out.1);
            let lhs_ok = k == 0 || (o - 1) * k + k <= w.len();
            let rhs_ok = k == 0 || (k - 1) * cs + nc <= cols.len();
            assert!(lhs_ok && rhs_ok);
            // SAFETY: the asserts bound every element read and written; the written elements
            // (rows 0..o of stride n_out, columns off..off+nc) belong to this job alone, and
            // `y` is neither read nor moved while the loop runs.
            unsafe {
                gemm::gemm(
                    o,
                    nc,
                    k,
                    out.0.add(off),
                    1,
                    n_out as isize,
                    false,
                    w.as_ptr(),
                    1,
                    k as isize,
                    cols.as_ptr(),
                    1,
                    cs as isize,
                    T::from_f64(1.0),
                    T::from_f64(1.0),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
    y
}

/// Groups the kernel gradient is reduced over: a constant (not the thread count), so the
/// summation order, and hence the result, is the same on any number of threads.
const GRAD_W_GROUPS: usize = 16;

/// Kernel gradient `Σ_jobs g_block · cols_blockᵀ` → `[o, K]`. The jobs are split into at most
/// [`GRAD_W_GROUPS`] contiguous groups; each group accumulates its blocks in order into one
/// partial sum (GEMM with accumulation), and the partials are added in group order (in
/// parallel over the elements of `dw`).
fn grad_w<T: Elem>(x: &[T], gy: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let jobs = blocks(g);
    let per = jobs.len().div_ceil(GRAD_W_GROUPS).max(1);
    let partial: Vec<Vec<T>> = jobs
        .par_chunks(per)
        .map(|group| {
            let mut buf = Vec::new();
            let mut dw = vec![T::default(); o * k];
            for (i, &(b, oy0, oy1)) in group.iter().enumerate() {
                let nc = (oy1 - oy0) * g.ow;
                let (cols, cs) = cols_block(&x[b * xb..][..xb], g, oy0, oy1, &mut buf);
                let gb = &gy[b * o * n_out + oy0 * g.ow..];
                // lhs = g block [o × nc] (row stride n_out); rhs = colsᵀ [nc × k] (stored [k × cs]).
                gemm_into(o, k, nc, &mut dw, k, i > 0, gb, (n_out, 1), cols, (1, cs));
            }
            dw
        })
        .collect();
    let mut dw = vec![T::default(); o * k];
    dw.par_chunks_mut(4096).enumerate().for_each(|(j, chunk)| {
        for p in &partial {
            for (a, v) in chunk.iter_mut().zip(&p[j * 4096..]) {
                *a += *v;
            }
        }
    });
    dw
}

/// Input gradient: per batch item, for each row block `dcols = Wᵀ·g_block`, then col2im (for
/// [`identity_cols`] the GEMM writes `dx` directly).
fn grad_x<T: Elem>(w: &[T], gy: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let r = rows_per_block(g);
    let mut dx = vec![T::default(); g.b * xb];
    let direct = identity_cols(g);
    dx.par_chunks_mut(xb.max(1))
        .enumerate()
        .for_each(|(b, dxb)| {
            let mut oy0 = 0;
            let mut dcols = vec![T::default(); if direct { 0 } else { k * r * g.ow }];
            while oy0 < g.oh {
                let oy1 = (oy0 + r).min(g.oh);
                let nc = (oy1 - oy0) * g.ow;
                let gb = &gy[b * o * n_out + oy0 * g.ow..];
                // lhs = Wᵀ [k × o] (W stored [o × k]); rhs = g block [o × nc], row stride n_out.
                if direct {
                    let dst = &mut dxb[oy0 * g.w..];
                    gemm_into(k, nc, o, dst, n_out, false, w, (1, k), gb, (n_out, 1));
                } else {
                    let dst = &mut dcols[..k * nc];
                    gemm_into(k, nc, o, dst, nc, false, w, (1, k), gb, (n_out, 1));
                    super::conv::col2im_rows(&dcols[..k * nc], g, oy0, oy1, dxb);
                }
                oy0 = oy1;
            }
        });
    dx
}

pub(super) struct FusedConv {
    pub(super) p: super::Conv2dParams,
}

impl FusedConv {
    fn geom(&self, xd: [usize; 4], wd: [usize; 4]) -> candle_core::Result<Geom> {
        Geom::new(xd, [wd[2], wd[3]], self.p).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

impl CustomOp2 for FusedConv {
    fn name(&self) -> &'static str {
        "stem-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (xd, wd) = (dims4(l1, "conv2d")?, dims4(l2, "conv2d")?);
        let g = self.geom(xd, wd)?;
        let o = wd[0];
        let st = match (data(s1, l1, "conv2d")?, data(s2, l2, "conv2d")?) {
            (Data::F32(x), Data::F32(w)) => f32::wrap(forward(x, w, &g, o)),
            (Data::F64(x), Data::F64(w)) => f64::wrap(forward(x, w, &g, o)),
            _ => candle_core::bail!("conv2d: dtype mismatch"),
        };
        Ok((st, Shape::from((g.b, o, g.oh, g.ow))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(
                &gy,
                &GradW {
                    p: self.p,
                    wdims: w.dims4()?,
                },
            )?)
        } else {
            None
        };
        // The network input needs no gradient: skip the input gradient when x tracks nothing.
        let dx = if x.track_op() {
            Some(w.apply_op2_no_bwd(
                &gy,
                &GradX {
                    p: self.p,
                    xdims: x.dims4()?,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

struct GradW {
    p: super::Conv2dParams,
    wdims: (usize, usize, usize, usize),
}

impl CustomOp2 for GradW {
    fn name(&self) -> &'static str {
        "stem-conv2d-grad-kernel"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xd = dims4(l1, "conv2d-grad-kernel")?;
        let (o, c, kh, kw) = self.wdims;
        let g =
            Geom::new(xd, [kh, kw], self.p).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let st = match (
            data(s1, l1, "conv2d-grad-kernel")?,
            data(s2, l2, "conv2d-grad-kernel")?,
        ) {
            (Data::F32(x), Data::F32(gy)) => f32::wrap(grad_w(x, gy, &g, o)),
            (Data::F64(x), Data::F64(gy)) => f64::wrap(grad_w(x, gy, &g, o)),
            _ => candle_core::bail!("conv2d-grad-kernel: dtype mismatch"),
        };
        Ok((st, Shape::from((o, c, kh, kw))))
    }
}

struct GradX {
    p: super::Conv2dParams,
    xdims: (usize, usize, usize, usize),
}

impl CustomOp2 for GradX {
    fn name(&self) -> &'static str {
        "stem-conv2d-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let wd = dims4(l1, "conv2d-grad-input")?;
        let (b, c, h, w) = self.xdims;
        let g = Geom::new([b, c, h, w], [wd[2], wd[3]], self.p)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let st = match (
            data(s1, l1, "conv2d-grad-input")?,
            data(s2, l2, "conv2d-grad-input")?,
        ) {
            (Data::F32(wt), Data::F32(gy)) => f32::wrap(grad_x(wt, gy, &g, wd[0])),
            (Data::F64(wt), Data::F64(gy)) => f64::wrap(grad_x(wt, gy, &g, wd[0])),
            _ => candle_core::bail!("conv2d-grad-input: dtype mismatch"),
        };
        Ok((st, Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check, rand_t};
    use crate::ops::{Conv2dParams, conv2d};
    use candle_core::{DType, Var};
    use stem_core::Parallelism;

    /// Output, input gradient and kernel gradient of `Σ conv2d(x, w)·r` with our op.
    fn ours(x: &Tensor, w: &Tensor, p: Conv2dParams) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
        let y = conv2d(xv.as_tensor(), wv.as_tensor(), None, p).unwrap();
        let r = rand_t(y.dims(), 7).to_dtype(y.dtype()).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        (
            flat(&y),
            flat(g.get(xv.as_tensor()).unwrap()),
            flat(g.get(wv.as_tensor()).unwrap()),
        )
    }

    /// Shapes that exercise several row blocks per image, more jobs than `GRAD_W_GROUPS`
    /// (uneven groups), the 1×1 identity path, and stride / dilation.
    fn cases() -> Vec<([usize; 4], [usize; 4], Conv2dParams)> {
        let same = Conv2dParams::same(3, 1);
        vec![
            ([3, 16, 60, 64], [8, 16, 3, 3], same),
            ([3, 8, 20, 24], [4, 8, 1, 1], Conv2dParams::default()),
            (
                [2, 8, 30, 20],
                [5, 8, 1, 1],
                Conv2dParams {
                    stride: [2, 2],
                    ..Default::default()
                },
            ),
            ([2, 6, 33, 17], [4, 6, 3, 3], Conv2dParams::same(3, 2)),
        ]
    }

    #[test]
    fn more_jobs_than_groups_for_the_test_shape() {
        let g = Geom::new([3, 16, 60, 64], [3, 3], Conv2dParams::same(3, 1)).unwrap();
        let n = blocks(&g).len();
        // The grouped reduction (several jobs per group, last group shorter) is exercised.
        assert!(
            n > GRAD_W_GROUPS && n % n.div_ceil(GRAD_W_GROUPS) != 0,
            "{n} jobs"
        );
        assert!(identity_cols(
            &Geom::new([1, 2, 4, 4], [1, 1], Conv2dParams::default()).unwrap()
        ));
    }

    #[test]
    fn bit_identical_on_1_and_2_threads() {
        for (xs, ws, p) in cases() {
            let x = rand_t(&xs, 1).to_dtype(DType::F32).unwrap();
            let w = rand_t(&ws, 2).to_dtype(DType::F32).unwrap();
            let one = Parallelism::Sequential.install(|| ours(&x, &w, p)).unwrap();
            let two = Parallelism::Threads(2).install(|| ours(&x, &w, p)).unwrap();
            let bits = |v: &[f64]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one.0), bits(&two.0), "y {xs:?} {p:?}");
            assert_eq!(bits(&one.1), bits(&two.1), "dx {xs:?} {p:?}");
            assert_eq!(bits(&one.2), bits(&two.2), "dw {xs:?} {p:?}");
        }
    }

    #[test]
    fn gradients_match_candle_autograd() {
        // candle's own conv2d backward (im2col + matmul, independent code) as the oracle, in f64.
        for (xs, ws, p) in cases() {
            let (x, w) = (rand_t(&xs, 3), rand_t(&ws, 4));
            let (y, dx, dw) = ours(&x, &w, p);
            let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let yc = xv
                .as_tensor()
                .conv2d(wv.as_tensor(), p.padding[0], p.stride[0], p.dilation[0], 1)
                .unwrap();
            let r = rand_t(yc.dims(), 7);
            let g = (&yc * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let rel = |a: &[f64], b: &[f64]| {
                assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                a.iter()
                    .zip(b)
                    .fold(0.0f64, |m, (u, v)| m.max((u - v).abs()))
                    / scale
            };
            // f64 sums of up to 3·60·64 products in different orders: rounding ~1e-14.
            assert!(rel(&y, &flat(&yc)) < 1e-12, "y {xs:?}");
            assert!(
                rel(&dx, &flat(g.get(xv.as_tensor()).unwrap())) < 1e-12,
                "dx {xs:?}"
            );
            assert!(
                rel(&dw, &flat(g.get(wv.as_tensor()).unwrap())) < 1e-12,
                "dw {xs:?}"
            );
        }
    }

    #[test]
    fn one_by_one_gradients_match_finite_differences() {
        for p in [
            Conv2dParams::default(),
            Conv2dParams {
                stride: [2, 1],
                ..Default::default()
            },
        ] {
            let x = rand_t(&[2, 3, 5, 4], 5);
            let w = rand_t(&[2, 3, 1, 1], 6);
            let err = check(&[x, w], |t| conv2d(&t[0], &t[1], None, p).unwrap());
            // Central differences of a bilinear function are exact up to rounding (~1e-9 at h=1e-6).
            assert!(err < 1e-7, "{p:?}: rel err {err}");
        }
    }
}
