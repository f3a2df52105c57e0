//! The node core under arbitrary payloads and download answers. See `../targets.rs`.
#![no_main]

#[path = "../targets.rs"]
#[allow(dead_code)] // each binary uses one of the targets
mod targets;

libfuzzer_sys::fuzz_target!(|ops: Vec<targets::NodeOp>| targets::node(ops));
