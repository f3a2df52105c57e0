//! The researcher core under an arbitrary sequence of submits, publishes and ticks. See `../targets.rs`.
#![no_main]

#[path = "../targets.rs"]
#[allow(dead_code)] // each binary uses one of the targets
mod targets;

libfuzzer_sys::fuzz_target!(|ops: Vec<targets::ResearcherOp>| targets::researcher(ops));
