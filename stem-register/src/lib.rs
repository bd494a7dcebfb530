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
//! * [`nonrigid`]: dense 2-D registration in the manner of match-series: NCC data term,
//!   Dirichlet (H¹) or bending prior, multilevel pyramid for any image size, H¹/H²-preconditioned
//!   nonlinear CG with Armijo steps, per-pixel bias removal.
//! * [`series`]: the whole pipeline: rigid pre-alignment, non-rigid model (scan-line or dense)
//!   against an evolving reference, bias removal, mean / median / counts.
//! * [`lattice_prior`]: opt-in removal of the mean scan distortion a crystalline average keeps
//!   (column displacements from the fitted ideal lattice, smoothed along the slow axis); it
//!   removes real strain too.
//! * [`atoms`]: column positions with uncertainties on the average, lattice fit, bond lengths
//!   and their changes with error bars.
//!
//! Conventions (ARCHITECTURE.md): images are `[y, x]`, series `[frame, y, x]`; a shift or
//! displacement `[dy, dx]` (px) is how far the moving image must move to land on the reference,
//! so a warped frame is `warped(p) = moving(p − d(p))`.
//!
//! ```
//! use ndarray::Array3;
//! use stem_register::series::{register_series, SeriesConfig};
//! use stem_core::NoProgress;
//!
//! // three frames of a smooth pattern, moved rigidly by (0.5 k, −0.25 k) px
//! let f = |y: f64, x: f64| ((y * 0.4).sin() * (x * 0.35).cos() * 10.0 + 20.0) as f32;
//! let frames = Array3::from_shape_fn((3, 48, 48), |(k, i, j)| {
//!     f(i as f64 + 0.5 * k as f64, j as f64 - 0.25 * k as f64)
//! });
//! // one pass against the evolving reference: on images this small, more passes let the
//! // fields drift (see the crate's known issues)
//! let cfg = SeriesConfig { reference_passes: 1, ..Default::default() };
//! let reg = register_series(frames.view(), &cfg, &NoProgress).unwrap();
//! let eff = reg.effective_shifts();
//! assert!((eff[2][0] - 1.0).abs() < 0.05 && (eff[2][1] + 0.5).abs() < 0.05);
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]
// Small fixed-size linear algebra (2×2, 3×3 blocks) reads better with index loops.
#![allow(clippy::needless_range_loop)]

pub mod atoms;
pub mod error;
mod interp;
pub mod lattice_prior;
pub mod nonrigid;
pub mod rigid;
pub mod scanline;
pub mod series;
pub mod warp;

pub use error::{Error, Result};
