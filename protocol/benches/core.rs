//! The hot paths of the protocol crate: decoding replies, the researcher core absorbing them,
//! the node core answering. `cargo bench -p fedreq-protocol`.

mod workloads;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fedreq_protocol::{Limits, Node, NodeConfig, NodeMessage, Timestamp};
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

/// Decoding `payloads` and keeping the replies, as the core keeps them for the outcome: what
/// any caller pays to hold its replies, without the core's bookkeeping.
fn decode_and_keep<'a>(
    payloads: &'a [Vec<u8>],
    limits: &'a Limits,
) -> impl FnMut(&mut criterion::Bencher) + 'a {
    move |b| {
        b.iter_batched(
            || Vec::with_capacity(payloads.len()),
            |mut kept| {
                for payload in payloads {
                    kept.push(NodeMessage::decode(black_box(payload), limits).unwrap());
                }
                kept
            },
            BatchSize::LargeInput,
        )
    }
}

/// The researcher core taking 10,000 pongs, beside decoding the same pongs alone: the core's
/// own work is the difference. Nodes known by presence are the steady state; nodes it meets
/// for the first time must be remembered, which costs their ids' copies.
fn absorb(c: &mut Criterion) {
    let mut group = c.benchmark_group("researcher");
    const NODES: usize = 10_000;
    let pongs: Vec<Vec<u8>> = (0..NODES).map(|i| pong(i, 0)).collect();
    let limits = Limits::default();
    group.throughput(Throughput::Elements(NODES as u64));
    group.bench_function("decode_10000_pongs", |b| {
        b.iter(|| {
            for payload in &pongs {
                black_box(NodeMessage::decode(black_box(payload), &limits).unwrap());
            }
        })
    });
    group.bench_function(
        "decode_and_keep_10000_pongs",
        decode_and_keep(&pongs, &limits),
    );
    group.bench_function("one_ping_10000_known_pongs", |b| {
        b.iter_batched(
            || pinging(NODES),
            |core| absorb_all(core, &pongs),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("one_ping_10000_pongs", |b| {
        b.iter_batched(
            || pinging(0),
            |core| absorb_all(core, &pongs),
            BatchSize::LargeInput,
        )
    });

    const REQUESTS: usize = 1_000;
    const PER_REQUEST: usize = 10;
    let spread = spread_pongs(REQUESTS, PER_REQUEST);
    group.throughput(Throughput::Elements((REQUESTS * PER_REQUEST) as u64));
    // Their sequences run to 999: they take longer to decode than the pongs above.
    group.bench_function(
        "decode_and_keep_10000_spread_pongs",
        decode_and_keep(&spread, &limits),
    );
    group.bench_function("1000_pings_in_flight_10000_pongs", |b| {
        b.iter_batched(
            || pings_in_flight(REQUESTS),
            |core| absorb_all(core, &spread),
            BatchSize::LargeInput,
        )
    });
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
