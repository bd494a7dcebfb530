//! Custom candle operations for fast and correct CPU training.
//!
//! candle 0.11's CPU convolution runs at a few GFLOP/s, its `max_pool2d` backward scales the
//! gradient by 1/k², its nearest-upsampling backward can overwrite other gradients, bilinear
//! upsampling has no backward and its binary cross-entropy overflows on saturated logits
//! (see `shared/reference/learn.md` §6–7). This module replaces those pieces:
//!
//! * [`conv2d`]: cache-blocked im2col + GEMM (the `gemm` crate candle itself uses) with
//!   padding, stride and dilation; the input gradient is col2im of `Wᵀ·g`, the kernel gradient
//!   `g·colsᵀ`, and the input gradient is skipped for inputs that track no gradient.
//!   Tensors are NCHW (`[batch, channel, y, x]`), kernels `[c_out, c_in, k_y, k_x]`.
//! * [`max_pool2x2`] with an argmax backward, [`upsample_nearest2x`] and
//!   [`upsample_bilinear2x`] (half-pixel centres, PyTorch `align_corners=False`) with exact
//!   adjoint backwards.
//! * [`sigmoid`], [`softplus`] and [`leaky_relu`] as element-wise ops with analytic backward.
//!
//! Every op works on f32 and f64 CPU tensors (f64 is used by the finite-difference gradient
//! checks) and is deterministic: each output element is accumulated by one thread in a fixed
//! order, so results do not depend on the number of threads.

mod act;
mod conv;
mod fused;
mod pool;

pub use act::{leaky_relu, sigmoid, softplus};
pub use conv::{Conv2dParams, conv2d, conv2d_output_size};
pub use pool::{max_pool2x2, upsample_bilinear2x, upsample_nearest2x};

use candle_core::{CpuStorage, Layout};

/// Element types the custom ops run on.
pub(crate) trait Elem:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn wrap(v: Vec<Self>) -> CpuStorage;
}

impl Elem for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn wrap(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Elem for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn wrap(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// A contiguous f32 or f64 slice of a CPU storage.
pub(crate) enum Data<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

pub(crate) fn data<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
) -> candle_core::Result<Data<'a>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: input must be contiguous")
    };
    match s {
        CpuStorage::F32(v) => Ok(Data::F32(&v[a..b])),
        CpuStorage::F64(v) => Ok(Data::F64(&v[a..b])),
        _ => candle_core::bail!("{op}: only f32 and f64 are supported"),
    }
}

/// Dims of a rank-4 layout.
pub(crate) fn dims4(l: &Layout, op: &'static str) -> candle_core::Result<[usize; 4]> {
    match l.dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        d => candle_core::bail!("{op}: expected a rank-4 NCHW tensor, got shape {d:?}"),
    }
}

#[cfg(test)]
pub(crate) mod gradcheck;
