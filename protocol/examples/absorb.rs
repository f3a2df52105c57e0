//! One of the core benchmark's workloads, for figures that move less than criterion's:
//! `scripts/core_cost.sh` runs each once under cachegrind, with and without its replies, and
//! takes the difference in instructions; `scripts/core_time.sh` times each in a loop.
//!
//! `cargo run --release -p fedreq-protocol --example absorb -- CASE [setup|time]`, CASE one of
//! `known` (one ping, 10,000 nodes known by presence), `first` (one ping, 10,000 nodes met for
//! the first time), `many` (1,000 pings in flight, ten nodes answering each), or `keep-known`,
//! `keep` and `keep-many`: decoding and keeping the same pongs after the same setup, as the
//! criterion benchmark sets them beside each other. `setup` stops before the replies; `time`
//! runs the case `RUNS` times and prints the tenth percentile and the median of its time in
//! ms, setup apart.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::hint::black_box;
use std::time::{Duration, Instant};

use fedreq_protocol::{Decoded, Limits, NodeMessage, Researcher};
use workloads::{absorb_all, pinging, pings_in_flight, pong, spread_pongs};

const REPLIES: usize = 10_000;
const RUNS: usize = 200;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let mode = args.next().unwrap_or_default();
    let pongs: Vec<Vec<u8>> = match case.as_str() {
        "many" | "keep-many" => spread_pongs(1_000, 10),
        _ => (0..REPLIES).map(|i| pong(i, 0)).collect(),
    };
    match mode.as_str() {
        // Dropping is not part of the work measured.
        "" => std::mem::forget(work(&case, setup(&case), &pongs)),
        "setup" => std::mem::forget(setup(&case)),
        "time" => time(&case, &pongs),
        other => panic!("unknown mode `{other}`: setup or time, or none"),
    }
}

/// The core the case starts from; decoding and keeping leaves it untouched, for a heap like
/// the case it is set beside.
fn setup(case: &str) -> Researcher {
    match case {
        "known" | "keep-known" => pinging(REPLIES),
        "first" | "keep" => pinging(0),
        "many" | "keep-many" => pings_in_flight(1_000),
        other => {
            panic!("unknown case `{other}`: known, first, many, keep-known, keep or keep-many")
        }
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
    let mut took: Vec<Duration> = (0..RUNS)
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
    println!("{case} {:.3} {:.3}", ms(RUNS / 10), ms(RUNS / 2));
}
