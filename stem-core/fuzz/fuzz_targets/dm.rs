//! Fuzz target: the dm parser must return Ok or a typed error for any input, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stem_core::io::{Format, read_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = read_bytes(data, Format::Dm3);
});
