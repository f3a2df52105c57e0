//! Persistent sessions lose nothing: over mosquitto with `persistence true`, 1,000 requests to
//! 5 nodes across two broker restarts and two cuts of the researcher's own connection, each
//! while requests are in flight, all complete exactly once with every node's reply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedreq_mqtt::{MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{
    ConnectionState, Event, NodeConfig, Policy, Request, ResearcherConfig, Submission,
};
use fedreq_tests::{datasets, plan_fetcher, Cutter, Mosquitto};

const NODES: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

#[test]
fn persistent_sessions_lose_nothing_across_broker_restarts_and_cut_connections() {
    let Some(mut mosquitto) = Mosquitto::start_persistent("") else {
        return;
    };
    let broker = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let _nodes: Vec<NodeDriver> = NODES
        .iter()
        .map(|id| {
            let config = NodeConfig::new(*id, datasets(1, 10));
            NodeDriver::start(&runtime, &broker, config, plan_fetcher()).unwrap()
        })
        .collect();
    // The researcher reaches the broker through a proxy the test can cut.
    let cutter = Cutter::start(mosquitto.port());
    let through = MqttConfig::new("127.0.0.1", cutter.port());
    let researcher = Arc::new(
        fedreq_mqtt::connect_researcher(through, ResearcherConfig::new("r-sessions")).unwrap(),
    );
    // Long enough to outlast a restart: each request completes when its 5 nodes answered.
    let policy = Policy::quiet(Duration::from_secs(20)).with_deadline(Duration::from_secs(60));
    let targets: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(1000);
    for round in 0..20 {
        let pending: Vec<_> = (0..50)
            .map(|_| {
                let ping = Submission::to_nodes(Request::ping(), targets.clone());
                researcher.submit(ping.with_policy(policy.clone()))
            })
            .collect();
        // Faults strike while this round's requests are in flight.
        match round {
            4 | 12 => mosquitto.terminate(),
            8 | 16 => cutter.cut(),
            _ => {}
        }
        if round == 4 || round == 12 {
            std::thread::sleep(Duration::from_millis(200));
            mosquitto.restart();
        }
        for answer in pending {
            let outcome = answer.recv().unwrap().unwrap();
            outcomes.push((outcome.id, outcome.online().len(), outcome.missing.len()));
        }
    }
    let mut completions: BTreeMap<_, usize> = BTreeMap::new();
    for (id, _, _) in &outcomes {
        *completions.entry(*id).or_default() += 1;
    }
    assert_eq!(completions.len(), 1000, "every request completed");
    assert!(completions.values().all(|&n| n == 1), "each exactly once");
    let whole = outcomes.iter().filter(|o| o.1 == 5 && o.2 == 0).count();
    // The connection really went down four times.
    let drops = researcher
        .events()
        .try_iter()
        .filter(|e| matches!(e, Event::Connection(ConnectionState::Disconnected(_))))
        .count();
    eprintln!(
        "1000 requests, 2 broker restarts, 2 cuts: {:?}, {whole} saw every node, {drops} drops seen",
        started.elapsed()
    );
    assert_eq!(whole, 1000, "every request saw every node");
    assert!(drops >= 4, "{drops} disconnections seen");
}
