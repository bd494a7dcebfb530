//! Fuzz target: the EMD / HDF5 reader must return Ok or a typed error for any input, never
//! panic (panics inside the HDF5 crate are caught and must become `InvalidFile`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use stem_core::io::{Format, read_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = read_bytes(data, Format::Emd);
});
