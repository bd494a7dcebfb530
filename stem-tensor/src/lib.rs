//! # stem-tensor
//!
//! Tensor denoising of hypercubes and 4D-STEM analysis.
//!
//! * [`dense`]: mode-n unfolding, folding, products and Gram matrices of N-d arrays.
//! * [`linalg`]: faer-based symmetric eigensolver, leading singular subspaces through the Gram
//!   matrix of the smaller side, randomized range finder / SVD.
//! * [`tucker`]: sequentially truncated HOSVD and HOOI.
//! * [`poisson`]: Keenan–Kotula Poisson scaling and Poisson surrogate noise.
//! * [`ranks`]: automatic ranks by projected parallel analysis, with scree data.
//! * [`statsvd`]: STAT-SVD (Zhang & Han 2019), sparse tensor SVD with sparse loadings, MAD
//!   noise level and its rank rule.
//! * [`denoise`]: the hypercube denoiser (layout, scaling, ranks, HOOI) and the matrix PCA
//!   baseline.
//! * [`stream`]: the out-of-core denoiser: HOOI driven chunk by chunk through a `FrameSource`,
//!   output streamed to a [`stream::FrameSink`] (e.g. an NPY file), with a stated memory bound.
//! * [`fourd`]: chunked 4D-STEM analysis: virtual detectors, PACBED, centre of mass, symmetry maps.
//! * [`synth`]: synthetic low-rank 4D-STEM cubes with known truth.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]
#![deny(missing_docs)]

pub mod denoise;
pub mod dense;
pub mod error;
pub mod fourd;
pub mod linalg;
pub mod poisson;
pub mod ranks;
pub mod statsvd;
pub mod stream;
pub mod synth;
pub mod tucker;

pub use error::{Error, Result};
pub use statsvd::{StatSvd, StatSvdConfig, StatSvdResult};
