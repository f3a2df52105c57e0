//! Replays the fuzzing seeds (`fuzz/seeds/<target>/`, and `fuzz/corpus/<target>/` when a
//! local fuzzing run left one) through the fuzz targets' bodies, invariants included.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};

#[path = "../../fuzz/targets.rs"]
mod targets;

/// Every file of the target's seed and corpus folders, with its path.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for folder in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            found.push((
                entry.path().display().to_string(),
                std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    found.sort();
    found
}

/// Builds the structured input the way libFuzzer's `fuzz_target!` does.
fn structured<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

#[test]
fn decode_seeds_replay() {
    let inputs = inputs("decode");
    assert!(inputs.len() >= 30, "the seeds are there");
    for (_, bytes) in inputs {
        targets::decode(&bytes);
    }
}

#[test]
fn researcher_seeds_replay() {
    let inputs = inputs("researcher");
    assert!(!inputs.is_empty());
    for (_, bytes) in inputs {
        if let Some(ops) = structured(&bytes) {
            targets::researcher(ops);
        }
    }
}

#[test]
fn node_seeds_replay() {
    let inputs = inputs("node");
    assert!(!inputs.is_empty());
    for (_, bytes) in inputs {
        if let Some(ops) = structured(&bytes) {
            targets::node(ops);
        }
    }
}
