//! One of the core benchmark's workloads, for figures that move less than criterion's:
//! `scripts/core_cost.sh` runs each once under cachegrind, with and without its replies, and
//! takes the difference in instructions; `scripts/core_time.sh` times each in a loop.
//!
//! `cargo run --release -p fedreq-protocol --example absorb -- CASE [setup|time]`, CASE one of
//! `keep` (decode and keep 10,000 pongs), `keep-many` (the same, of `many`'s pongs, whose
//! sequences take longer to read, after `many`'s setup), `known` (one ping, 10,000 nodes known
//! by presence), `first` (one ping, 10,000 nodes met for the first time), `many` (1,000 pings in
//! flight, ten nodes answering each). `setup` stops before the replies; `time` runs the case
//! 200 times and prints the tenth percentile and the median of its time in ms, setup apart.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::hint::black_box;
use std::time::{Duration, Instant};

use fedreq_protocol::{Decoded, Limits, NodeMessage, Researcher};
use workloads::{absorb_all, pinging, pings_in_flight, pong, spread_pongs};

const REPLIES: usize = 10_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let mode = args.next().unwrap_or_default();
    let pongs: Vec<Vec<u8>> = match case.as_str() {
        "many" | "keep-many" => spread_pongs(1_000, 10),
        _ => (0..REPLIES).map(|i| pong(i, 0)).collect(),
    };
    match mode.as_str() {
        "setup" => std::mem::forget(setup(&case)),
        "time" => time(&case, &pongs),
        // Dropping is not part of the work measured.
        _ => std::mem::forget(work(&case, setup(&case), &pongs)),
    }
}

/// The core the case starts from (idle, for decoding and keeping).
fn setup(case: &str) -> Researcher {
    match case {
        "keep" | "first" => pinging(0),
        "known" => pinging(REPLIES),
        "keep-many" | "many" => pings_in_flight(1_000),
        other => panic!("unknown case `{other}`: keep, keep-many, known, first or many"),
    }
}

/// The core taking the replies, or the replies decoded and kept.
fn work(
    case: &str,
    core: Researcher,
    pongs: &[Vec<u8>],
) -> (Researcher, Vec<Decoded<NodeMessage>>) {
    if !case.starts_with("keep") {
        return (absorb_all(core, pongs), Vec::new());
    }
    let limits = Limits::default();
    let decode = |payload: &Vec<u8>| NodeMessage::decode(black_box(payload), &limits).unwrap();
    (core, pongs.iter().map(decode).collect())
}

fn time(case: &str, pongs: &[Vec<u8>]) {
    let mut took: Vec<Duration> = (0..200)
        .map(|_| {
            let core = setup(case);
            let start = Instant::now();
            let done = work(case, core, pongs);
            let took = start.elapsed();
            drop(done);
            took
        })
        .collect();
    took.sort();
    let ms = |at: usize| took[at].as_secs_f64() * 1e3;
    println!(
        "{case} {:.3} {:.3}",
        ms(took.len() / 10),
        ms(took.len() / 2)
    );
}
