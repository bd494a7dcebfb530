//! # stem-sim
//!
//! The multislice simulator of the `stem` family: crystal structures (atoms with Z, position in Å
//! and rms displacement; SrTiO3, Si, GaAs, graphene, MoS2, ... builders), Lobato–Van Dyck and
//! Kirkland projected potentials, aberrated probes, the band-limited multislice with exit planes
//! for thickness series and beam tilt (tilted Fresnel propagator), annular / pixelated / PACBED / centre-of-mass detectors and frozen
//! phonons. It agrees with abTEM 1.0.11 on the reference arrays in `shared/reference/abtem/`.
//! [`dataset`] turns JSON recipes into labelled data, from the fast incoherent model up to
//! multislice ADF images, PACBED thickness/tilt series and 4D-STEM cubes.
//!
//! Conventions: positions are `[x, y, z]` in Å (physical order), while every 2-D array is `[y, x]`
//! (numpy order, as in stem-core); angles in mrad, energies in eV, potentials in V·Å (projected).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::print_stdout))]

pub mod error;

// Structures, parametrisations and potentials.
pub mod elements;
pub mod phonons;
pub mod potential;
pub mod structure;

// Waves: probe, multislice, detectors, scanning.
pub mod aberrations;
pub mod antialias;
pub mod detector;
pub mod energy;
mod engine;
pub mod frozen;
pub mod grid;
pub mod multislice;
pub mod probe;
pub mod sampling;
pub mod scan;

// Labeled data and degradations.
pub mod dataset;
pub mod degrade;

pub use error::{Error, Result};
