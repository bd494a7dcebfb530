//! # stem-denoise (planned)
//!
//! Will hold denoisers for atomic-resolution images in electron counts: Gaussian and median
//! baselines, non-local means with local / periodic / adaptive-periodic search sets and either
//! an L2 distance on Anscombe-transformed data or the Poisson likelihood-ratio distance
//! (Mevenkamp et al.), and BM3D with periodic block matching, all with data-driven parameters.
//!
//! Nothing is implemented yet; see the project issues.
