//! # stem-tests
//!
//! Cross-crate scenarios with synthetic ground truth live in `tests/tests/*.rs`; this library
//! holds the small helpers they share.

pub mod denoise;
pub mod series;
pub mod test_data;
