//! The researcher core's workloads, shared by the benchmark (`core.rs`) and the instruction
//! count (`examples/absorb.rs`): replies to absorb and cores waiting for them.

use std::time::Duration;

use fedreq_protocol::presence::{self, Presence, Status};
use fedreq_protocol::{Policy, Request, Researcher, ResearcherConfig, Submission, Timestamp};
use serde_json::json;

pub const ME: &str = "researcher_b99c48ec-4234-456a-b891-81204b508fac";

pub fn node_id(node: usize) -> String {
    format!("node_{node:08}-4f12-572d-ad91-d96bb8218cb6")
}

pub fn pong(node: usize, sequence: u64) -> Vec<u8> {
    json!({"protocol_version": "1", "researcher_id": ME, "node_id": node_id(node),
           "success": true, "sequence": sequence, "command": "pong"})
    .to_string()
    .into_bytes()
}

/// A core with one broadcast ping in flight, after `announced` nodes said they are online.
pub fn pinging(announced: usize) -> Researcher {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    for node in (0..announced).map(node_id) {
        let online = Presence::new(&node, Status::Online, 1);
        core.handle_publish(Timestamp::ZERO, &presence::topic(&node), &online.encode());
    }
    while core.poll_event().is_some() {}
    core.submit(
        Timestamp::ZERO,
        Submission::broadcast(Request::ping()).with_policy(Policy::quiet(Duration::from_secs(5))),
    )
    .unwrap();
    core.poll_transmit();
    core
}

/// A core with `requests` broadcast pings in flight, knowing nobody.
pub fn pings_in_flight(requests: usize) -> Researcher {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    for _ in 0..requests {
        core.submit(Timestamp::ZERO, Submission::broadcast(Request::ping()))
            .unwrap();
    }
    while core.poll_transmit().is_some() {}
    core
}

/// `requests` × `per_request` pongs, the replies of `pings_in_flight(requests)`.
pub fn spread_pongs(requests: usize, per_request: usize) -> Vec<Vec<u8>> {
    (0..requests * per_request)
        .map(|i| pong(i % per_request, (i / per_request) as u64))
        .collect()
}

/// `core` after taking these replies, one a nanosecond.
pub fn absorb_all(mut core: Researcher, payloads: &[Vec<u8>]) -> Researcher {
    for (i, payload) in payloads.iter().enumerate() {
        let at = Timestamp::from_duration(Duration::from_nanos(i as u64));
        core.handle_publish(at, "general/researcher", payload);
    }
    core
}
