//! # stem-tensor
//!
//! Tensor denoising of hypercubes and 4D-STEM analysis.
//!
//! * [`dense`]: mode-n unfolding, folding, products and Gram matrices of N-d arrays.
//! * [`linalg`]: faer-based symmetric eigensolver, leading singular subspaces through the Gram
//!   matrix of the smaller side, randomized range finder / SVD.
//! * [`tucker`]: sequentially truncated HOSVD and HOOI.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]
#![deny(missing_docs)]

pub mod dense;
pub mod error;
pub mod linalg;
pub mod tucker;

pub use error::{Error, Result};
