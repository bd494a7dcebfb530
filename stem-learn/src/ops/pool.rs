//! 2×2 max-pooling and ×2 upsampling (nearest, bilinear) with exact backward passes.

use super::{Data, Elem, data, dims4};
use crate::error::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Applies `f(input_plane, output_plane)` to every `[y, x]` plane in parallel.
fn per_plane<T: Elem>(
    x: &[T],
    in_plane: usize,
    out_plane: usize,
    f: impl Fn(&[T], &mut [T]) + Sync,
) -> Vec<T> {
    let planes = x.len() / in_plane.max(1);
    let mut out = vec![T::default(); planes * out_plane];
    out.par_chunks_mut(out_plane.max(1))
        .zip(x.par_chunks(in_plane.max(1)))
        .for_each(|(o, i)| f(i, o));
    out
}

fn run1<F32, F64>(
    s: &CpuStorage,
    l: &Layout,
    op: &'static str,
    f32f: F32,
    f64f: F64,
) -> candle_core::Result<CpuStorage>
where
    F32: Fn(&[f32]) -> Vec<f32>,
    F64: Fn(&[f64]) -> Vec<f64>,
{
    Ok(match data(s, l, op)? {
        Data::F32(x) => f32::wrap(f32f(x)),
        Data::F64(x) => f64::wrap(f64f(x)),
    })
}

// ---------------------------------------------------------------------------------------------
// max-pool 2×2

fn maxpool_plane<T: Elem>(h: usize, w: usize, i: &[T], o: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    for oy in 0..oh {
        for ox in 0..ow {
            let a = i[2 * oy * w + 2 * ox];
            let b = i[2 * oy * w + 2 * ox + 1];
            let c = i[(2 * oy + 1) * w + 2 * ox];
            let d = i[(2 * oy + 1) * w + 2 * ox + 1];
            let mut m = a;
            for v in [b, c, d] {
                if v > m {
                    m = v;
                }
            }
            o[oy * ow + ox] = m;
        }
    }
}

/// Gradient routed to the first maximum (scan order) of each window.
fn maxpool_bwd_plane<T: Elem>(h: usize, w: usize, i: &[T], g: &[T], o: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    for oy in 0..oh {
        for ox in 0..ow {
            let idx = [
                2 * oy * w + 2 * ox,
                2 * oy * w + 2 * ox + 1,
                (2 * oy + 1) * w + 2 * ox,
                (2 * oy + 1) * w + 2 * ox + 1,
            ];
            let mut best = idx[0];
            for &j in &idx[1..] {
                if i[j] > i[best] {
                    best = j;
                }
            }
            o[best] += g[oy * ow + ox];
        }
    }
}

struct MaxPool2;

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "stem-maxpool2x2"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [b, c, h, w] = dims4(l, "maxpool2x2")?;
        let (oh, ow) = (h / 2, w / 2);
        let st = run1(
            s,
            l,
            "maxpool2x2",
            |x| per_plane(x, h * w, oh * ow, |i, o| maxpool_plane(h, w, i, o)),
            |x| per_plane(x, h * w, oh * ow, |i, o| maxpool_plane(h, w, i, o)),
        )?;
        Ok((st, Shape::from((b, c, oh, ow))))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2Bwd)?,
        ))
    }
}

struct MaxPool2Bwd;

impl CustomOp2 for MaxPool2Bwd {
    fn name(&self) -> &'static str {
        "stem-maxpool2x2-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let [_, _, h, w] = dims4(l1, "maxpool2x2-bwd")?;
        let (oh, ow) = (h / 2, w / 2);
        let st = match (
            data(s1, l1, "maxpool2x2-bwd")?,
            data(s2, l2, "maxpool2x2-bwd")?,
        ) {
            (Data::F32(x), Data::F32(g)) => f32::wrap(pool_bwd(x, g, h, w, oh * ow)),
            (Data::F64(x), Data::F64(g)) => f64::wrap(pool_bwd(x, g, h, w, oh * ow)),
            _ => candle_core::bail!("maxpool2x2-bwd: dtype mismatch"),
        };
        Ok((st, l1.shape().clone()))
    }
}

fn pool_bwd<T: Elem>(x: &[T], g: &[T], h: usize, w: usize, gp: usize) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    out.par_chunks_mut((h * w).max(1))
        .zip(x.par_chunks((h * w).max(1)))
        .zip(g.par_chunks(gp.max(1)))
        .for_each(|((o, i), g)| maxpool_bwd_plane(h, w, i, g, o));
    out
}

fn check4(x: &Tensor, what: &'static str) -> Result<(usize, usize, usize, usize)> {
    x.dims4().map_err(|_| Error::ShapeMismatch {
        what,
        expected: vec![0, 0, 0, 0],
        found: x.dims().to_vec(),
    })
}

/// 2×2 max-pooling with stride 2 of an NCHW tensor `[b, c, h, w]` → `[b, c, ⌊h/2⌋, ⌊w/2⌋]`
/// (an odd last row/column is dropped, as PyTorch does).
///
/// The backward pass routes each output gradient to the first maximum of its window in scan
/// order (candle's own `max_pool2d` backward scales it by 1/4).
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use stem_learn::ops::max_pool2x2;
/// let x = Var::from_vec(vec![1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
/// let y = max_pool2x2(x.as_tensor()).unwrap();
/// let g = y.sum_all().unwrap().backward().unwrap();
/// let gx: Vec<f32> = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
/// assert_eq!(gx, vec![0., 0., 0., 1.]);
/// ```
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    check4(x, "max_pool2x2 input [b, c, h, w]")?;
    Ok(x.contiguous()?.apply_op1(MaxPool2)?)
}

// ---------------------------------------------------------------------------------------------
// nearest ×2

struct UpNearest2;

fn up_nearest_plane<T: Elem>(h: usize, w: usize, i: &[T], o: &mut [T]) {
    for y in 0..2 * h {
        for x in 0..2 * w {
            o[y * 2 * w + x] = i[(y / 2) * w + x / 2];
        }
    }
}

/// Sum over 2×2 blocks: the adjoint of nearest ×2 upsampling. `(h, w)` is the small size.
fn sum_pool_plane<T: Elem>(h: usize, w: usize, i: &[T], o: &mut [T]) {
    for y in 0..h {
        for x in 0..w {
            let w2 = 2 * w;
            o[y * w + x] = i[2 * y * w2 + 2 * x]
                + i[2 * y * w2 + 2 * x + 1]
                + i[(2 * y + 1) * w2 + 2 * x]
                + i[(2 * y + 1) * w2 + 2 * x + 1];
        }
    }
}

impl CustomOp1 for UpNearest2 {
    fn name(&self) -> &'static str {
        "stem-upsample-nearest2x"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [b, c, h, w] = dims4(l, "upsample-nearest2x")?;
        let st = run1(
            s,
            l,
            "upsample-nearest2x",
            |x| per_plane(x, h * w, 4 * h * w, |i, o| up_nearest_plane(h, w, i, o)),
            |x| per_plane(x, h * w, 4 * h * w, |i, o| up_nearest_plane(h, w, i, o)),
        )?;
        Ok((st, Shape::from((b, c, 2 * h, 2 * w))))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(SumPool2)?))
    }
}

struct SumPool2;

impl CustomOp1 for SumPool2 {
    fn name(&self) -> &'static str {
        "stem-sumpool2x2"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [b, c, h2, w2] = dims4(l, "sumpool2x2")?;
        if h2 % 2 != 0 || w2 % 2 != 0 {
            candle_core::bail!("sumpool2x2: odd size {h2}x{w2}");
        }
        let (h, w) = (h2 / 2, w2 / 2);
        let st = run1(
            s,
            l,
            "sumpool2x2",
            |x| per_plane(x, 4 * h * w, h * w, |i, o| sum_pool_plane(h, w, i, o)),
            |x| per_plane(x, 4 * h * w, h * w, |i, o| sum_pool_plane(h, w, i, o)),
        )?;
        Ok((st, Shape::from((b, c, h, w))))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(UpNearest2)?))
    }
}

/// Nearest-neighbour ×2 upsampling of `[b, c, h, w]` → `[b, c, 2h, 2w]`; the backward pass
/// sums each 2×2 block of the output gradient and adds it to the input's gradient (candle's own
/// backward can overwrite gradients from other consumers).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use stem_learn::ops::upsample_nearest2x;
/// let x = Tensor::new(&[[[[1f32, 2.]]]], &Device::Cpu).unwrap();
/// let y = upsample_nearest2x(&x).unwrap();
/// assert_eq!(y.dims(), &[1, 1, 2, 4]);
/// assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![1., 1., 2., 2., 1., 1., 2., 2.]);
/// ```
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    check4(x, "upsample_nearest2x input [b, c, h, w]")?;
    Ok(x.contiguous()?.apply_op1(UpNearest2)?)
}

// ---------------------------------------------------------------------------------------------
// bilinear ×2 (half-pixel centres, align_corners = false)

/// For each output index of a ×2 upsampling along an axis of `n` samples: the two source
/// indices and their weights. Source coordinate `(o + ½)/2 − ½`, clamped below at 0
/// (PyTorch `align_corners=False`).
fn bilinear_taps(n: usize) -> Vec<(usize, usize, f64, f64)> {
    (0..2 * n)
        .map(|o| {
            let src = ((o as f64 + 0.5) / 2.0 - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            let l1 = src - i0 as f64;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

fn bilinear_plane<T: Elem>(h: usize, w: usize, i: &[T], o: &mut [T]) {
    let ty = bilinear_taps(h);
    let tx: Vec<(usize, usize, T, T)> = bilinear_taps(w)
        .into_iter()
        .map(|(a, b, wa, wb)| (a, b, T::from_f64(wa), T::from_f64(wb)))
        .collect();
    for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
        let (wy0, wy1) = (T::from_f64(wy0), T::from_f64(wy1));
        let r0 = &i[y0 * w..][..w];
        let r1 = &i[y1 * w..][..w];
        let orow = &mut o[oy * 2 * w..][..2 * w];
        for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
            orow[ox] = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
        }
    }
}

/// Adjoint of [`bilinear_plane`]: scatters a `[2h, 2w]` gradient back to `[h, w]`.
fn bilinear_adj_plane<T: Elem>(h: usize, w: usize, g: &[T], o: &mut [T]) {
    let ty = bilinear_taps(h);
    let tx: Vec<(usize, usize, T, T)> = bilinear_taps(w)
        .into_iter()
        .map(|(a, b, wa, wb)| (a, b, T::from_f64(wa), T::from_f64(wb)))
        .collect();
    for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
        let (wy0, wy1) = (T::from_f64(wy0), T::from_f64(wy1));
        let grow = &g[oy * 2 * w..][..2 * w];
        for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
            let v = grow[ox];
            o[y0 * w + x0] += wy0 * wx0 * v;
            o[y0 * w + x1] += wy0 * wx1 * v;
            o[y1 * w + x0] += wy1 * wx0 * v;
            o[y1 * w + x1] += wy1 * wx1 * v;
        }
    }
}

struct UpBilinear2;

impl CustomOp1 for UpBilinear2 {
    fn name(&self) -> &'static str {
        "stem-upsample-bilinear2x"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [b, c, h, w] = dims4(l, "upsample-bilinear2x")?;
        let st = run1(
            s,
            l,
            "upsample-bilinear2x",
            |x| per_plane(x, h * w, 4 * h * w, |i, o| bilinear_plane(h, w, i, o)),
            |x| per_plane(x, h * w, 4 * h * w, |i, o| bilinear_plane(h, w, i, o)),
        )?;
        Ok((st, Shape::from((b, c, 2 * h, 2 * w))))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(BilinearAdj)?))
    }
}

struct BilinearAdj;

impl CustomOp1 for BilinearAdj {
    fn name(&self) -> &'static str {
        "stem-upsample-bilinear2x-adjoint"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [b, c, h2, w2] = dims4(l, "bilinear-adjoint")?;
        if h2 % 2 != 0 || w2 % 2 != 0 {
            candle_core::bail!("bilinear-adjoint: odd size {h2}x{w2}");
        }
        let (h, w) = (h2 / 2, w2 / 2);
        let st = run1(
            s,
            l,
            "bilinear-adjoint",
            |x| per_plane(x, 4 * h * w, h * w, |i, o| bilinear_adj_plane(h, w, i, o)),
            |x| per_plane(x, 4 * h * w, h * w, |i, o| bilinear_adj_plane(h, w, i, o)),
        )?;
        Ok((st, Shape::from((b, c, h, w))))
    }
    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(UpBilinear2)?))
    }
}

/// Bilinear ×2 upsampling of `[b, c, h, w]` → `[b, c, 2h, 2w]` with half-pixel centres
/// (PyTorch `interpolate(scale_factor=2, mode="bilinear", align_corners=False)`); output
/// pixel `o` samples the input at `(o + ½)/2 − ½` (clamped to the edge). The backward pass is
/// the exact adjoint (candle has no bilinear backward). Each input pixel's gradient is summed
/// by one thread in a fixed order.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use stem_learn::ops::upsample_bilinear2x;
/// let x = Tensor::new(&[[[[0f32, 4.]]]], &Device::Cpu).unwrap();
/// let y = upsample_bilinear2x(&x).unwrap();
/// let row: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
/// assert_eq!(&row[..4], &[0., 1., 3., 4.]);
/// ```
pub fn upsample_bilinear2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = check4(x, "upsample_bilinear2x input [b, c, h, w]")?;
    if h == 0 || w == 0 {
        return Err(Error::param(
            "upsample_bilinear2x",
            format!("empty input {h}x{w}"),
        ));
    }
    Ok(x.contiguous()?.apply_op1(UpBilinear2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check, rand_t};
    use candle_core::Device;

    #[test]
    fn maxpool_matches_candle_forward_and_fd_gradient() {
        let x = rand_t(&[2, 3, 6, 8], 7);
        let ours = max_pool2x2(&x).unwrap();
        let theirs = x.max_pool2d(2).unwrap();
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(d, 0.0);
        // Random inputs have distinct values, so max is differentiable; FD exact up to rounding.
        let err = check(&[rand_t(&[2, 2, 5, 7], 8)], |t| max_pool2x2(&t[0]).unwrap());
        assert!(err < 1e-8, "{err}");
    }

    #[test]
    fn maxpool_gradient_is_not_scaled_like_candles() {
        let x =
            candle_core::Var::from_vec(vec![1f64, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let g = max_pool2x2(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(gx, vec![0., 0., 0., 1.]);
    }

    #[test]
    fn nearest_matches_candle_and_accumulates_gradient() {
        let x = rand_t(&[2, 3, 4, 5], 9);
        let d = (upsample_nearest2x(&x).unwrap() - x.upsample_nearest2d(8, 10).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(d, 0.0);
        // The input also feeds a second consumer: its gradient must be the sum of both paths.
        let err = check(&[rand_t(&[1, 2, 3, 4], 10)], |t| {
            let up = upsample_nearest2x(&t[0]).unwrap();
            let extra = t[0].sqr().unwrap().upsample_nearest2d(6, 8).unwrap();
            (up + extra).unwrap()
        });
        assert!(err < 1e-8, "{err}");
    }

    #[test]
    fn bilinear_matches_direct_formula_and_fd_gradient() {
        // Slow oracle: the PyTorch align_corners=False formula evaluated per pixel.
        let (h, w) = (3, 5);
        let x = rand_t(&[1, 1, h, w], 11);
        let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let y = upsample_bilinear2x(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let coord = |o: usize, n: usize| {
            let s = ((o as f64 + 0.5) * 0.5 - 0.5).max(0.0);
            let i0 = s.floor() as usize;
            (i0.min(n - 1), (i0 + 1).min(n - 1), s - i0 as f64)
        };
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                let (y0, y1, ly) = coord(oy, h);
                let (x0, x1, lx) = coord(ox, w);
                let v = (1.0 - ly) * ((1.0 - lx) * xv[y0 * w + x0] + lx * xv[y0 * w + x1])
                    + ly * ((1.0 - lx) * xv[y1 * w + x0] + lx * xv[y1 * w + x1]);
                assert!((v - y[oy * 2 * w + ox]).abs() < 1e-14);
            }
        }
        let err = check(&[rand_t(&[2, 2, 3, 4], 12)], |t| {
            upsample_bilinear2x(&t[0]).unwrap()
        });
        assert!(err < 1e-8, "{err}");
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let x = rand_t(&[2, 3, 4], 1);
        assert!(matches!(max_pool2x2(&x), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(
            upsample_nearest2x(&x),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            upsample_bilinear2x(&x),
            Err(Error::ShapeMismatch { .. })
        ));
        let e = Tensor::zeros((1, 1, 0, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            upsample_bilinear2x(&e),
            Err(Error::InvalidParameter { .. })
        ));
    }
}
