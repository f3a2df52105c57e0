//! The node core under arbitrary payloads and download answers. See `../targets.rs`.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|ops: Vec<targets::NodeOp>| targets::node(ops));
