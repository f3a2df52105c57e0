//! Decoding any payload on either side. See `../targets.rs`.
#![no_main]

#[path = "../targets.rs"]
#[allow(dead_code)] // each binary uses one of the targets
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::decode(data));
