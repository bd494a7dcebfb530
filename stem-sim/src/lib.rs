//! # stem-sim (planned)
//!
//! Will hold the multislice simulator of the `stem` family: crystal structures (atoms with Z,
//! position in Å and rms displacement; SrTiO3, Si, GaAs, graphene, MoS2, ... builders),
//! Lobato–Van Dyck and Kirkland projected potentials, aberrated probes, the band-limited
//! multislice with exit planes for thickness series, annular / pixelated / PACBED / centre-of-mass
//! detectors, frozen phonons, and reproducible labeled-dataset recipes with degradations.
//! It agrees with abTEM on the reference arrays in `shared/reference/abtem/`.
//!
//! Nothing is implemented yet; see the project issues. Until then,
//! `stem_core::synth` renders simple Gaussian-column lattices with known positions.
