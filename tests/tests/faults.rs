//! Faults over real MQTT (mosquitto on loopback), in bounded time: nodes that crash and come
//! back, a node that answers twice, replies that come after their request ended, and a broker
//! restarted twice during a stream of 1,000 requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedreq_mqtt::{MqttConfig, NodeDriver, Runtime, Session};
use fedreq_protocol::{Completion, NodeConfig, Policy, Request, ResearcherConfig, Submission};
use fedreq_tests::{datasets, mosquitto_pub, plan_fetcher, Mosquitto};

const ME: &str = "researcher-faults";

fn node(runtime: &Runtime, mqtt: &MqttConfig, id: &str) -> NodeDriver {
    NodeDriver::start(
        runtime,
        mqtt,
        NodeConfig::new(id, datasets(1, 10)),
        plan_fetcher(),
    )
    .unwrap()
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Publishes a pong as `node` would, for `sequence`, with mosquitto_pub.
fn pong_from(port: u16, node: &str, sequence: u64) {
    let pong = format!(
        r#"{{"researcher_id": "{ME}", "node_id": "{node}", "success": true, "sequence": {sequence}, "command": "pong", "protocol_version": "1"}}"#
    );
    let status = mosquitto_pub(port, "general/researcher")
        .args(["-m", &pong])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
}

/// A ping to `nodes` with sequence `sequence`, kept as given.
fn ping(nodes: &[&str], sequence: u64, policy: Policy) -> Submission {
    let mut submission = Submission::to_nodes(Request::ping(), ids(nodes)).with_policy(policy);
    if let Some(slot) = submission.request.sequence_mut() {
        *slot = sequence;
    }
    submission.keep_sequence = true;
    submission
}

/// The tests of this file measure the process's memory: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn crashes_duplicates_and_late_replies() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mosquitto) = Mosquitto::start().filter(|_| fedreq_tests::mosquitto_tools()) else {
        return;
    };
    let port = mosquitto.port();
    let mqtt = MqttConfig::new("127.0.0.1", port);
    let runtime = Runtime::new().unwrap();
    let a = node(&runtime, &mqtt, "a");
    let _b = node(&runtime, &mqtt, "b");
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt.clone(), ResearcherConfig::new(ME)).unwrap();
    // Wide enough for a mosquitto_pub process to start and publish on a loaded machine.
    let quiet = Policy::quiet(Duration::from_secs(2));

    // Node a crashes while a request is in flight: it is reported missing...
    let in_flight = researcher.submit(ping(&["a", "b", "ghost"], 10, quiet.clone()));
    drop(a);
    let outcome = in_flight.recv().unwrap().unwrap();
    assert!(outcome.missing.contains(&"ghost".to_owned()));
    // ...and once it comes back, a new request sees it.
    let _a = node(&runtime, &mqtt, "a");
    let back = researcher
        .submit(ping(&["a", "b"], 11, quiet.clone()))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.completion, back.missing.len()),
        (Completion::AllAnswered, 0)
    );

    // A node that answers twice is counted once.
    let twice = researcher.submit(ping(&["twice", "ghost"], 12, quiet.clone()));
    std::thread::sleep(Duration::from_millis(100));
    pong_from(port, "twice", 12);
    pong_from(port, "twice", 12);
    let outcome = twice.recv().unwrap().unwrap();
    assert_eq!(
        (outcome.replies.len(), outcome.counters.duplicates),
        (1, 1),
        "{outcome:?}"
    );

    // A reply after its request ended is reported late and never counted in the next one.
    let first = researcher
        .submit(ping(
            &["slow"],
            13,
            Policy::quiet(Duration::from_millis(200)),
        ))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(first.missing, ["slow"]);
    let next = researcher.submit(ping(&["slow", "a"], 14, quiet));
    std::thread::sleep(Duration::from_millis(100));
    pong_from(port, "slow", 13);
    let outcome = next.recv().unwrap().unwrap();
    assert_eq!(outcome.online(), ["a"]);
    assert_eq!(outcome.counters.late, 1, "{outcome:?}");
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_broker_restarted_twice_during_1000_requests_with_clean_sessions() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut mosquitto) = Mosquitto::start() else {
        return;
    };
    // Clean sessions on a broker that keeps nothing: what is in flight at a restart can be
    // lost, but every request still completes exactly once (tests/tests/sessions.rs: nothing lost).
    let mqtt = MqttConfig {
        session: Session::Clean,
        ..MqttConfig::new("127.0.0.1", mosquitto.port())
    };
    let runtime = Runtime::new().unwrap();
    let names = ["n1", "n2", "n3"];
    let _nodes: Vec<NodeDriver> = names.iter().map(|id| node(&runtime, &mqtt, id)).collect();
    let researcher =
        Arc::new(fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new(ME)).unwrap());
    let policy = Policy::quiet(Duration::from_millis(300)).with_deadline(Duration::from_secs(3));
    // Only a summary of each outcome is kept, so that memory measures the driver, not the test.
    let batch = |count: usize| -> Vec<(u64, usize, usize)> {
        let pending: Vec<_> = (0..count)
            .map(|_| {
                researcher.submit(
                    Submission::to_nodes(Request::ping(), ids(&names)).with_policy(policy.clone()),
                )
            })
            .collect();
        pending
            .into_iter()
            .map(|p| p.recv().unwrap().unwrap())
            .map(|o| (o.id.0, o.replies.len(), o.missing.len()))
            .collect()
    };
    batch(100); // warm up, then measure
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(1000);
    let rounds = 20;
    for round in 0..rounds {
        if round == 6 || round == 13 {
            mosquitto.stop();
            std::thread::sleep(Duration::from_millis(200));
            mosquitto.restart();
        }
        outcomes.extend(batch(50));
    }
    let mut completions: BTreeMap<u64, usize> = BTreeMap::new();
    for &(id, replies, missing) in &outcomes {
        *completions.entry(id).or_default() += 1;
        assert_eq!(replies + missing, names.len());
    }
    assert_eq!(completions.len(), rounds * 50, "every request completed");
    assert!(completions.values().all(|&n| n == 1), "each exactly once");
    let all_answered = outcomes.iter().filter(|o| o.2 == 0).count();
    assert!(
        all_answered > 800,
        "most requests saw every node: {all_answered}"
    );
    // The stream's last requests see every node again.
    assert!(outcomes[outcomes.len() - 10..].iter().all(|o| o.2 == 0));
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "memory grew by {grown} KiB");
    eprintln!(
        "1000 requests, 2 broker restarts: {:?}, {all_answered} saw every node, memory {} KiB -> {} KiB",
        started.elapsed(),
        rss_before,
        rss_kib()
    );
}
