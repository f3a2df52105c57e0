//! The in-memory broker's fan-out, and the simulator end to end. `cargo bench -p fedreq-mem`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedreq_mem::{Broker, SimConfig, Simulation};
use fedreq_protocol::{Policy, Request, Submission};

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker");
    const SUBSCRIBERS: usize = 1_000;
    let broker = Broker::new();
    let clients: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let client = broker.connect();
            client.subscribe("general/nodes").unwrap();
            client.subscribe(&format!("general/node-{i}")).unwrap();
            client
        })
        .collect();
    let publisher = broker.connect();
    let payload: std::sync::Arc<[u8]> = vec![b'x'; 120].into();
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("publish_to_1000_subscribers", |b| {
        b.iter(|| {
            publisher.publish("general/nodes", payload.clone()).unwrap();
            for client in &clients {
                black_box(client.inbox().try_recv().unwrap());
            }
        })
    });
    group.finish();
}

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim");
    group.sample_size(10);
    for nodes in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_function(format!("ping_{nodes}_nodes"), |b| {
            b.iter(|| {
                let mut sim = Simulation::new(SimConfig::new(nodes, 1));
                let known = Policy::default().with_roster(sim.node_ids().to_vec());
                sim.request(Submission::broadcast(Request::ping()).with_policy(known))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, simulate);
criterion_main!(benches);
