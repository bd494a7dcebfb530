//! # stem-core
//!
//! The shared foundation of the `stem` crate family for scanning transmission electron
//! microscopy (STEM) data:
//!
//! * [`Image`] / [`ImageView`]: a 2-D array with a calibration per axis (`[y, x]`, numpy order).
//! * [`Hypercube`] / [`HypercubeView`]: N-d data split into navigation axes (scan positions,
//!   frames) and signal axes (detector pixels, energy channels). 4D-STEM is
//!   `[scan_y, scan_x, k_y, k_x]` with two navigation and two signal axes.
//! * [`FrameSource`](frame_source::FrameSource): hands out whole frames or chunks of frames into
//!   caller buffers, from memory or from a memory-mapped raw file, so that data larger than memory
//!   is processed chunk by chunk.
//! * [`fft`]: 2-D FFT plans (forward unnormalised, inverse scaled by 1/N), `fftfreq`, `fftshift`.
//! * [`noise`]: seeded Poisson and Gaussian noise, the Anscombe transform and its exact unbiased
//!   inverse.
//! * [`filters`]: separable Gaussian blur.
//! * [`metrics`]: RMSE, PSNR and SSIM.
//! * [`points`]: point sets, one-to-one matching, ID-recall / ID-precision / Δd.
//! * [`peaks`]: local maxima and sub-pixel refinement with uncertainties.
//! * [`lattice`]: lattice vectors of crystal images.
//! * [`synth`]: synthetic lattice images with known column positions (ground truth for tests).
//! * [`io`]: NPY read/write and PNG export.
//! * [`Progress`] observers that report and cancel, and the [`Parallelism`] setting.
//!
//! Conventions shared by every crate: array axes in numpy order; pixel data `f32` by default and
//! physical parameters `f64`; units named in field names (`sampling_a` in Å, `energy_ev`, ...);
//! every function that draws random numbers takes a seed.
//!
//! ```
//! use stem_core::{Axis, Image};
//! use ndarray::Array2;
//!
//! let img = Image::new(Array2::<f32>::zeros((64, 48))).with_sampling_a(0.2);
//! assert_eq!(img.shape(), [64, 48]);
//! assert_eq!(img.axes()[1].units, "Å");
//! assert!((img.axes()[1].coordinate(10) - 2.0).abs() < 1e-12);
//! # let _ = Axis::pixels("x", 1);
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]

pub mod axis;
pub mod error;
pub mod fft;
pub mod filters;
pub mod frame_source;
pub mod hypercube;
pub mod image;
pub mod io;
pub mod lattice;
pub mod metrics;
pub mod noise;
pub mod parallel;
pub mod peaks;
pub mod points;
pub mod progress;
pub mod real;
pub mod synth;

pub use axis::Axis;
pub use error::{Error, Result};
pub use hypercube::{Hypercube, HypercubeView};
pub use image::{Image, ImageView};
pub use parallel::Parallelism;
pub use progress::{CancelFlag, NoProgress, Progress};
pub use real::Real;
