//! # stem-register
//!
//! Registration of STEM image series and atom-column positions on the registered average.
//!
//! * [`rigid`]: cross-correlation of Gaussian-smoothed images with the upsampled-DFT sub-pixel
//!   refinement (Guizar-Sicairos et al., Opt. Lett. 33 (2008) 156) and series alignment against
//!   an evolving leave-one-out reference.
//! * [`warp`]: displacement fields, warping (nearest, bilinear, bicubic), per-pixel mean,
//!   median and frame counts.
//! * [`scanline`]: the scan-line distortion model (one shift per row, smooth along the slow
//!   axis), fitted by Gauss–Newton with an exact block-tridiagonal solve.
//! * [`series`]: the whole pipeline: rigid pre-alignment, non-rigid model against an evolving
//!   reference, bias removal, mean / median / counts.
//! * [`atoms`]: column positions with uncertainties on the average, lattice fit, bond lengths
//!   and their changes with error bars.
//!
//! Conventions (ARCHITECTURE.md): images are `[y, x]`, series `[frame, y, x]`; a shift or
//! displacement `[dy, dx]` (px) is how far the moving image must move to land on the reference,
//! so a warped frame is `warped(p) = moving(p − d(p))`.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]
// Small fixed-size linear algebra (2×2, 3×3 blocks) reads better with index loops.
#![allow(clippy::needless_range_loop)]

pub mod atoms;
pub mod error;
mod interp;
pub mod rigid;
pub mod scanline;
pub mod series;
pub mod warp;

pub use error::{Error, Result};
