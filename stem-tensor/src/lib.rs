//! # stem-tensor (planned)
//!
//! Will hold tensor denoising of hypercubes (mode-n unfolding, truncated HOSVD, HOOI, STAT-SVD,
//! PCA baseline) with Poisson-aware scaling and automatic ranks, driven out of core through
//! `stem_core::frame_source::FrameSource`, plus chunked 4D-STEM analysis (virtual detectors,
//! PACBED, centre of mass, symmetry maps).
//!
//! Nothing is implemented yet; see the project issues.
