//! One of the core benchmark's workloads, run once, for an instruction count that does not
//! move with the machine's load: `scripts/core_cost.sh` runs it under cachegrind with and
//! without its replies and takes the difference.
//!
//! `cargo run --release -p fedreq-protocol --example absorb -- CASE [setup]`, CASE one of
//! `keep` (decode and keep 10,000 pongs), `keep-many` (the same, of `many`'s pongs, whose
//! sequences take longer to read), `known` (one ping, 10,000 nodes known by presence),
//! `first` (one ping, 10,000 nodes met for the first time), `many` (1,000 pings in flight,
//! ten nodes answering each); `setup` stops before the replies.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use fedreq_protocol::{Limits, NodeMessage};
use workloads::{absorb_all, pinging, pings_in_flight, pong, spread_pongs};

const REPLIES: usize = 10_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let absorb = args.next().as_deref() != Some("setup");
    let mut pongs: Vec<Vec<u8>> = match case.as_str() {
        "many" | "keep-many" => spread_pongs(1_000, 10),
        _ => (0..REPLIES).map(|i| pong(i, 0)).collect(),
    };
    if !absorb {
        pongs.clear();
    }
    let core = match case.as_str() {
        "keep" | "keep-many" => {
            let mut kept = Vec::with_capacity(REPLIES);
            for payload in &pongs {
                kept.push(NodeMessage::decode(payload, &Limits::default()).unwrap());
            }
            // Dropping is not part of the work measured.
            std::mem::forget(kept);
            return;
        }
        "known" => pinging(REPLIES),
        "first" => pinging(0),
        "many" => pings_in_flight(1_000),
        other => panic!("unknown case `{other}`: keep, keep-many, known, first or many"),
    };
    std::mem::forget(absorb_all(core, &pongs));
}
