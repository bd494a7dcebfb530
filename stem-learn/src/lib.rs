//! # stem-learn
//!
//! Neural networks for STEM image analysis on [candle](https://github.com/huggingface/candle),
//! CPU-only, fast and reproducible:
//!
//! * [`ops`]: custom candle ops that make CPU training fast and correct — an im2col + GEMM
//!   [`conv2d`](ops::conv2d) with its backward, 2×2 max-pooling and ×2 upsampling with exact
//!   gradients, stable sigmoid / softplus / leaky ReLU.
//! * [`loss`]: numerically stable BCE-with-logits and soft Dice.
//! * [`params`], [`optim`]: seeded parameters, AdamW with saveable state, learning-rate schedules.
//! * [`unet`]: an AtomAI-like U-Net segmentor sized for CPU.
//! * [`train`]: deterministic training (bit-identical on any thread count and after resume),
//!   checkpoints, progress and cancel.
//! * [`finder`]: the [`AtomFinder`](finder::AtomFinder) trait with the U-Net finder (tiled
//!   inference, components, centroids) and the classical baseline, and pooled scores.
//! * [`vae`]: phyVAE — a VAE on grid sub-images with a differentiable total-variation prior on
//!   its latent maps (and the Biswas et al. 2023 weighting), k-means domains and boundary scores.
//! * [`pacbed`]: thickness and tilt from PACBED patterns (small CNN ensemble regressor with
//!   an out-of-distribution flag).
//! * [`bundle`], [`safetensors`]: model bundles with an embedded model card, a local
//!   [`ModelStore`](bundle::ModelStore).
//!
//! Tensors are NCHW: `[batch, channel, y, x]`, images `[y, x]` as everywhere in `stem`.
//! Every random draw is seeded (`rand_chacha::ChaCha8Rng`): candle's CPU RNG cannot be seeded,
//! so no `Tensor::rand*` is used.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

pub mod bundle;
pub mod error;
pub mod finder;
pub mod loss;
pub mod ops;
pub mod optim;
pub mod pacbed;
pub mod params;
pub mod safetensors;
pub mod train;
pub mod unet;
pub mod vae;

pub use error::{Error, Result};
