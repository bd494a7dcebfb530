//! Fused, cache-blocked convolution: im2col of a few output rows at a time (a block that stays
//! in cache) followed immediately by a sequential `gemm` call, for the forward pass and both
//! gradients. Jobs (batch item × row block) run in parallel on rayon; each output element is
//! produced by exactly one job in a fixed order, and the kernel-gradient partial sums are
//! added in job order, so results do not depend on the number of threads.

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

fn forward<T: Elem>(x: &[T], w: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let mut y = vec![T::default(); g.b * o * n_out];
    // Each job owns the columns [oy0·ow, oy1·ow) of every output channel of batch item b:
    // split y into per-(b) chunks, then hand out disjoint row ranges via raw column offsets.
    let jobs = blocks(g);
    let results: Vec<Vec<T>> = jobs
        .par_iter()
        .map(|&(b, oy0, oy1)| {
            let nc = (oy1 - oy0) * g.ow;
            let mut cols = vec![T::default(); k * nc];
            super::conv::im2col_rows(&x[b * xb..][..xb], g, oy0, oy1, &mut cols);
            let mut out = vec![T::default(); o * nc];
            gemm_into(o, nc, k, &mut out, nc, false, w, (k, 1), &cols, (nc, 1));
            out
        })
        .collect();
    for (&(b, oy0, oy1), out) in jobs.iter().zip(results) {
        let nc = (oy1 - oy0) * g.ow;
        for oc in 0..o {
            y[(b * o + oc) * n_out + oy0 * g.ow..][..nc].copy_from_slice(&out[oc * nc..][..nc]);
        }
    }
    y
}

/// Kernel gradient `Σ_jobs g_block · cols_blockᵀ` → `[o, K]`, partial sums added in job order.
fn grad_w<T: Elem>(x: &[T], gy: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let jobs = blocks(g);
    let partial: Vec<Vec<T>> = jobs
        .par_iter()
        .map(|&(b, oy0, oy1)| {
            let nc = (oy1 - oy0) * g.ow;
            let mut cols = vec![T::default(); k * nc];
            super::conv::im2col_rows(&x[b * xb..][..xb], g, oy0, oy1, &mut cols);
            let mut dw = vec![T::default(); o * k];
            let gb = &gy[b * o * n_out + oy0 * g.ow..];
            // lhs = g block [o × nc] with row stride n_out; rhs = colsᵀ [nc × k] (stored [k × nc]).
            gemm_into(o, k, nc, &mut dw, k, false, gb, (n_out, 1), &cols, (1, nc));
            dw
        })
        .collect();
    let mut dw = vec![T::default(); o * k];
    for p in partial {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

/// Input gradient: per batch item, for each row block `dcols = Wᵀ·g_block`, then col2im.
fn grad_x<T: Elem>(w: &[T], gy: &[T], g: &Geom, o: usize) -> Vec<T> {
    let (k, n_out) = (g.rows(), g.oh * g.ow);
    let xb = g.c * g.h * g.w;
    let r = rows_per_block(g);
    let mut dx = vec![T::default(); g.b * xb];
    dx.par_chunks_mut(xb.max(1))
        .enumerate()
        .for_each(|(b, dxb)| {
            let mut oy0 = 0;
            let mut dcols = vec![T::default(); k * r * g.ow];
            while oy0 < g.oh {
                let oy1 = (oy0 + r).min(g.oh);
                let nc = (oy1 - oy0) * g.ow;
                let gb = &gy[b * o * n_out + oy0 * g.ow..];
                // lhs = Wᵀ [k × o] (W stored [o × k]); rhs = g block [o × nc], row stride n_out.
                gemm_into(
                    k,
                    nc,
                    o,
                    &mut dcols[..k * nc],
                    nc,
                    false,
                    w,
                    (1, k),
                    gb,
                    (n_out, 1),
                );
                super::conv::col2im_rows(&dcols[..k * nc], g, oy0, oy1, dxb);
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
