//! The hot paths of the protocol crate: decoding replies, the researcher core absorbing them,
//! the node core answering. `cargo bench -p fedreq-protocol`.

mod workloads;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fedreq_protocol::{Limits, Node, NodeConfig, NodeMessage, Researcher, Timestamp};
use serde_json::{json, Value};
use workloads::{absorb_all, pinging, pings_in_flight, pong, spread_pongs, ME};

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire/valid");
    [
        "general-researcher/pong.json",
        "general-researcher/list.json",
        "general-researcher/search.json",
        "general-researcher/approval-success.json",
        "general-researcher/error-unknown-command.json",
        "general-logger/log-info.json",
        "general-monitoring/add_scalar.json",
    ]
    .into_iter()
    .map(|path| {
        (
            path.rsplit('/').next().unwrap().trim_end_matches(".json"),
            std::fs::read(format!("{dir}/{path}")).unwrap(),
        )
    })
    .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let limits = Limits::default();
    for (name, bytes) in samples() {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| NodeMessage::decode(black_box(&bytes), &limits).unwrap())
        });
        group.bench_function(format!("{name}/serde_json_value"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

/// A case of the core benchmark: its name, the core waiting for the replies, the replies.
type Case<'a> = (&'a str, fn() -> Researcher, &'a [Vec<u8>]);

/// The researcher core taking 10,000 pongs in three cases, each beside decoding and keeping
/// the same pongs after the same setup: the core's own work is the difference. Both start
/// from the same core, built in the setup, so both find the caches and the allocator in the
/// same state (building a core of 10,000 nodes slows the decoding that follows by a third).
/// Nodes known by presence are the steady state; nodes met for the first time must be
/// remembered; 1,000 requests in flight must be told apart.
fn absorb(c: &mut Criterion) {
    let mut group = c.benchmark_group("researcher");
    const NODES: usize = 10_000;
    const REQUESTS: usize = 1_000;
    let pongs: Vec<Vec<u8>> = (0..NODES).map(|i| pong(i, 0)).collect();
    // Ten nodes answering each request: their sequences run to 999.
    let spread = spread_pongs(REQUESTS, NODES / REQUESTS);
    let limits = Limits::default();
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("decode_10000_pongs", |b| {
        b.iter(|| {
            for payload in &pongs {
                black_box(NodeMessage::decode(black_box(payload), &limits).unwrap());
            }
        })
    });
    let cases: [Case; 3] = [
        ("known", || pinging(NODES), &pongs),
        ("first_contact", || pinging(0), &pongs),
        ("1000_in_flight", || pings_in_flight(REQUESTS), &spread),
    ];
    for (case, setup, payloads) in cases {
        group.bench_function(format!("{case}/decode_and_keep"), |b| {
            b.iter_batched(
                || (setup(), Vec::with_capacity(payloads.len())),
                |(core, mut kept)| {
                    for payload in payloads {
                        kept.push(NodeMessage::decode(black_box(payload), &limits).unwrap());
                    }
                    (core, kept)
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("{case}/core"), |b| {
            b.iter_batched(
                setup,
                |core| absorb_all(core, payloads),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn node(c: &mut Criterion) {
    let mut group = c.benchmark_group("node");
    let datasets: Arc<[fedreq_protocol::message::Object]> = Arc::from(Vec::new());
    let mut node = Node::new(NodeConfig::new(
        "node_17b1a6f6-4f12-572d-ad91-d96bb8218cb6",
        datasets,
    ));
    let ping =
        json!({"protocol_version": "1", "researcher_id": ME, "sequence": 7, "command": "ping"})
            .to_string()
            .into_bytes();
    group.throughput(Throughput::Elements(1));
    group.bench_function("ping_to_pong", |b| {
        b.iter(|| {
            node.handle_publish(Timestamp::ZERO, "general/nodes", black_box(&ping));
            node.poll_transmit().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, decode, absorb, node);
criterion_main!(benches);
