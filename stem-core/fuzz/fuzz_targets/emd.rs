//! Fuzz target: the EMD / HDF5 reader must return Ok or a typed error for any input, never
//! panic (panics inside the HDF5 crate are caught and must become `InvalidFile`).
//!
//! The first byte, when the input does not start with the HDF5 signature, picks the Velox EDS
//! stream options (frames kept or summed, detectors separate or summed, energy bin 1-4) and
//! is dropped; inputs that start with the signature use the defaults. Loaded signals are read
//! back so that the spectrum-image histogramming runs too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stem_core::io::emd::{EdsStreamOptions, HDF5_MAGIC, read_bytes_with_eds};

fuzz_target!(|data: &[u8]| {
    let (opts, bytes) = match data.split_first() {
        Some((&b, rest)) if !data.starts_with(HDF5_MAGIC) => (
            EdsStreamOptions {
                sum_frames: b & 1 == 0,
                sum_detectors: b & 2 == 0,
                energy_bin: 1 + usize::from((b >> 2) & 3),
            },
            rest,
        ),
        _ => (EdsStreamOptions::default(), data),
    };
    if let Ok(ds) = read_bytes_with_eds(bytes, &opts) {
        for s in &ds.signals {
            let _ = s.to_hypercube();
        }
    }
});
