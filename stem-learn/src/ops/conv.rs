//! 2-D convolution as im2col + GEMM with an exact backward.

use super::Elem;
use crate::error::{Error, Result};
use candle_core::Tensor;

/// Padding, stride and dilation of a 2-D convolution, each `[y, x]` in pixels.
///
/// The output size along an axis of input size `n` is
/// `(n + 2·padding − dilation·(k − 1) − 1) / stride + 1` (PyTorch's `Conv2d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Zero padding added on both sides, `[y, x]` px. Default `[0, 0]`.
    pub padding: [usize; 2],
    /// Step between output samples, `[y, x]` px. Default `[1, 1]`.
    pub stride: [usize; 2],
    /// Spacing between kernel taps, `[y, x]` px (1 = dense kernel). Default `[1, 1]`.
    pub dilation: [usize; 2],
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            padding: [0, 0],
            stride: [1, 1],
            dilation: [1, 1],
        }
    }
}

impl Conv2dParams {
    /// "Same" padding for an odd kernel of size `k` at dilation `d`: `d·(k−1)/2` on each side.
    pub fn same(k: usize, dilation: usize) -> Self {
        let p = dilation * (k.saturating_sub(1)) / 2;
        Conv2dParams {
            padding: [p, p],
            stride: [1, 1],
            dilation: [dilation, dilation],
        }
    }
}

/// Output size `[h, w]` of a convolution of an `[h, w]` input with a `[kh, kw]` kernel.
///
/// Errors if a stride or dilation is zero, or the (dilated) kernel does not fit in the padded
/// input.
///
/// ```
/// use stem_learn::ops::{Conv2dParams, conv2d_output_size};
/// let p = Conv2dParams::same(3, 1);
/// assert_eq!(conv2d_output_size([64, 48], [3, 3], p).unwrap(), [64, 48]);
/// ```
pub fn conv2d_output_size(
    input: [usize; 2],
    kernel: [usize; 2],
    p: Conv2dParams,
) -> Result<[usize; 2]> {
    let mut out = [0; 2];
    for a in 0..2 {
        if p.stride[a] == 0 || p.dilation[a] == 0 || kernel[a] == 0 {
            return Err(Error::param(
                "conv2d",
                format!(
                    "stride {:?}, dilation {:?} and kernel {:?} must be >= 1",
                    p.stride, p.dilation, kernel
                ),
            ));
        }
        let span = p.dilation[a] * (kernel[a] - 1) + 1;
        let padded = input[a] + 2 * p.padding[a];
        if padded < span {
            return Err(Error::param(
                "conv2d",
                format!(
                    "dilated kernel span {span} px exceeds padded input {padded} px on axis {a}"
                ),
            ));
        }
        out[a] = (padded - span) / p.stride[a] + 1;
    }
    Ok(out)
}

/// Geometry of a convolution: input `[b, c, h, w]`, kernel `[kh, kw]`, output `[oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) b: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) p: Conv2dParams,
}

impl Geom {
    pub(super) fn new(x: [usize; 4], k: [usize; 2], p: Conv2dParams) -> Result<Self> {
        let [oh, ow] = conv2d_output_size([x[2], x[3]], k, p)?;
        Ok(Geom {
            b: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            kh: k[0],
            kw: k[1],
            oh,
            ow,
            p,
        })
    }
    /// Rows of the im2col matrix, `c·kh·kw`.
    pub(super) fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Input column of output column `ox` for kernel column `kx` (may lie in the padding).
    fn ix(&self, ox: usize, kx: usize) -> isize {
        (ox * self.p.stride[1] + kx * self.p.dilation[1]) as isize - self.p.padding[1] as isize
    }
    fn iy(&self, oy: usize, ky: usize) -> isize {
        (oy * self.p.stride[0] + ky * self.p.dilation[0]) as isize - self.p.padding[0] as isize
    }
    /// Range of `ox` whose input column is inside the image, for stride 1.
    fn valid_ox(&self, kx: usize) -> (usize, usize) {
        let off = (kx * self.p.dilation[1]) as isize - self.p.padding[1] as isize;
        let lo = (-off).clamp(0, self.ow as isize) as usize;
        let hi = (self.w as isize - off).clamp(0, self.ow as isize) as usize;
        (lo, hi.max(lo))
    }
}

/// im2col of output rows `oy0..oy1` of one batch item: `x [c, h, w]` →
/// `out [c·kh·kw, (oy1 − oy0)·ow]`, row `(c, ky, kx)`, column `(oy − oy0, ox)`.
pub(super) fn im2col_rows<T: Elem>(x: &[T], g: &Geom, oy0: usize, oy1: usize, out: &mut [T]) {
    let nc = (oy1 - oy0) * g.ow;
    let plane = g.h * g.w;
    for (r, row) in out.chunks_mut(nc.max(1)).enumerate().take(g.rows()) {
        let kx = r % g.kw;
        let ky = (r / g.kw) % g.kh;
        let c = r / (g.kw * g.kh);
        let (lo, hi) = g.valid_ox(kx);
        let src_plane = &x[c * plane..][..plane];
        for oy in oy0..oy1 {
            let dst = &mut row[(oy - oy0) * g.ow..][..g.ow];
            let iy = g.iy(oy, ky);
            if iy < 0 || iy >= g.h as isize {
                dst.fill(T::default());
                continue;
            }
            let src = &src_plane[iy as usize * g.w..][..g.w];
            if g.p.stride[1] == 1 {
                dst[..lo].fill(T::default());
                if hi > lo {
                    let s0 = g.ix(lo, kx) as usize;
                    dst[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                }
                dst[hi..].fill(T::default());
            } else {
                for (ox, d) in dst.iter_mut().enumerate() {
                    let ix = g.ix(ox, kx);
                    *d = if ix >= 0 && ix < g.w as isize {
                        src[ix as usize]
                    } else {
                        T::default()
                    };
                }
            }
        }
    }
}

/// col2im (the adjoint of [`im2col_rows`]): adds `cols [c·kh·kw, (oy1 − oy0)·ow]` into
/// `dx [c, h, w]` of one batch item, in a fixed order.
pub(super) fn col2im_rows<T: Elem>(cols: &[T], g: &Geom, oy0: usize, oy1: usize, dx: &mut [T]) {
    let nc = (oy1 - oy0) * g.ow;
    let plane = g.h * g.w;
    for c in 0..g.c {
        let dst = &mut dx[c * plane..][..plane];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (c * g.kh + ky) * g.kw + kx;
                let row = &cols[r * nc..][..nc];
                let (lo, hi) = g.valid_ox(kx);
                for oy in oy0..oy1 {
                    let iy = g.iy(oy, ky);
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let drow = &mut dst[iy as usize * g.w..][..g.w];
                    let srow = &row[(oy - oy0) * g.ow..][..g.ow];
                    if g.p.stride[1] == 1 {
                        if hi > lo {
                            let s0 = g.ix(lo, kx) as usize;
                            for (d, s) in drow[s0..s0 + (hi - lo)].iter_mut().zip(&srow[lo..hi]) {
                                *d += *s;
                            }
                        }
                    } else {
                        for (ox, s) in srow.iter().enumerate() {
                            let ix = g.ix(ox, kx);
                            if ix >= 0 && ix < g.w as isize {
                                drow[ix as usize] += *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// 2-D convolution (cross-correlation, as PyTorch's `conv2d`) of `x [b, c_in, h, w]` with
/// `weight [c_out, c_in, k_y, k_x]`, plus an optional `bias [c_out]`.
///
/// `y[b, o, oy, ox] = bias[o] + Σ_{c,ky,kx} w[o, c, ky, kx] · x[b, c, oy·s + ky·d − p, ox·s + kx·d − p]`
/// (zero outside the image). Computed block by block: im2col of a few output rows of one
/// batch item (a `[c_in·k_y·k_x, rows·ow]` block sized to stay in cache), immediately
/// multiplied by the `[c_out, c_in·k_y·k_x]` kernel matrix with the `gemm` crate. The backward
/// pass recomputes the blocks: kernel gradient `Σ g_block·colsᵀ`, input gradient
/// col2im(`Wᵀ·g_block`). The input
/// gradient is only computed when `x` tracks gradients (e.g. never for the network input).
/// Works on f32 and f64 CPU tensors.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use stem_learn::ops::{Conv2dParams, conv2d};
/// let x = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
/// let w = Tensor::ones((2, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
/// let y = conv2d(&x, &w, None, Conv2dParams::same(3, 1)).unwrap();
/// assert_eq!(y.dims(), &[1, 2, 4, 4]);
/// let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
/// assert_eq!(v[0], 4.0); // corner: 2×2 taps inside the image
/// assert_eq!(v[5], 9.0); // interior: all 9 taps
/// ```
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4().map_err(|_| Error::ShapeMismatch {
        what: "conv2d input [b, c, h, w]",
        expected: vec![0, 0, 0, 0],
        found: x.dims().to_vec(),
    })?;
    let (o, ci, kh, kw) = weight.dims4().map_err(|_| Error::ShapeMismatch {
        what: "conv2d kernel [c_out, c_in, k_y, k_x]",
        expected: vec![0, c, 0, 0],
        found: weight.dims().to_vec(),
    })?;
    if ci != c {
        return Err(Error::ShapeMismatch {
            what: "conv2d kernel [c_out, c_in, k_y, k_x]",
            expected: vec![o, c, kh, kw],
            found: weight.dims().to_vec(),
        });
    }
    if let Some(bias) = bias
        && bias.dims() != [o]
    {
        return Err(Error::ShapeMismatch {
            what: "conv2d bias [c_out]",
            expected: vec![o],
            found: bias.dims().to_vec(),
        });
    }
    conv2d_output_size([h, w], [kh, kw], p)?;
    let mut y = x
        .contiguous()?
        .apply_op2(&weight.contiguous()?, super::fused::FusedConv { p })?;
    if let Some(bias) = bias {
        y = y.broadcast_add(&bias.reshape((1, o, 1, 1))?)?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check, rand_t};

    #[test]
    fn matches_candle_conv2d_forward() {
        // candle's own conv2d is the slow, independent reference.
        for (pad, dil, stride, k) in [
            (1, 1, 1, 3),
            (0, 1, 1, 3),
            (2, 2, 1, 3),
            (0, 1, 1, 1),
            (1, 1, 2, 3),
        ] {
            let x = rand_t(&[2, 3, 9, 7], 1);
            let w = rand_t(&[4, 3, k, k], 2);
            let p = Conv2dParams {
                padding: [pad, pad],
                stride: [stride, stride],
                dilation: [dil, dil],
            };
            let ours = conv2d(&x, &w, None, p).unwrap();
            let theirs = x.conv2d(&w, pad, stride, dil, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let d = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            // f64 sums of 27 products of O(1) terms in different orders: rounding ~1e-15.
            assert!(d < 1e-12, "pad {pad} dil {dil} stride {stride}: {d}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (pad, dil, stride) in [(1, 1, 1), (2, 2, 1), (0, 1, 2), (3, 3, 1)] {
            let x = rand_t(&[2, 2, 7, 6], 3);
            let w = rand_t(&[3, 2, 3, 3], 4);
            let bias = rand_t(&[3], 5);
            let p = Conv2dParams {
                padding: [pad, pad],
                stride: [stride, stride],
                dilation: [dil, dil],
            };
            let err = check(&[x, w, bias], |t| {
                conv2d(&t[0], &t[1], Some(&t[2]), p).unwrap()
            });
            // Central differences of a bilinear function are exact up to rounding (~1e-9 at h=1e-6).
            assert!(
                err < 1e-7,
                "pad {pad} dil {dil} stride {stride}: rel err {err}"
            );
        }
    }

    #[test]
    fn invalid_shapes_are_typed_errors() {
        let x = rand_t(&[1, 2, 5, 5], 1);
        let w = rand_t(&[3, 4, 3, 3], 2);
        assert!(matches!(
            conv2d(&x, &w, None, Conv2dParams::default()),
            Err(Error::ShapeMismatch { .. })
        ));
        let w = rand_t(&[3, 2, 7, 7], 2);
        assert!(matches!(
            conv2d(&x, &w, None, Conv2dParams::default()),
            Err(Error::InvalidParameter { .. })
        ));
        let w = rand_t(&[3, 2, 3, 3], 2);
        let p = Conv2dParams {
            stride: [0, 1],
            ..Default::default()
        };
        assert!(matches!(
            conv2d(&x, &w, None, p),
            Err(Error::InvalidParameter { .. })
        ));
        let b = rand_t(&[2], 3);
        assert!(matches!(
            conv2d(&x, &w, Some(&b), Conv2dParams::default()),
            Err(Error::ShapeMismatch { .. })
        ));
        let x3 = rand_t(&[2, 5, 5], 1);
        assert!(matches!(
            conv2d(&x3, &w, None, Conv2dParams::default()),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
