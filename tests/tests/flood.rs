//! Input any client may send cannot make requests wait: a flood of pongs from invented node
//! ids with random sequences (10,000 a second for 10 s) on `general/researcher` while a
//! researcher broadcasts to five nodes on a default mosquitto.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedreq_mqtt::{MqttConfig, Runtime};
use fedreq_protocol::{Request, ResearcherConfig, Submission};
use fedreq_tests::{mosquitto_tools, start_nodes, Mosquitto};

const NODES: [&str; 5] = ["f1", "f2", "f3", "f4", "f5"];
const RATE: u64 = 10_000;
const FLOOD: Duration = Duration::from_secs(10);

/// A hundred broadcast pings: each one's time, every node answering every one.
fn pings(researcher: &fedreq_driver::ResearcherHandle) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..100)
        .map(|_| {
            let outcome = researcher
                .submit(Submission::broadcast(Request::ping()))
                .recv()
                .unwrap()
                .unwrap();
            assert_eq!(outcome.replies.len(), NODES.len(), "{outcome:?}");
            assert!(outcome.missing.is_empty(), "{:?}", outcome.missing);
            outcome.elapsed
        })
        .collect();
    times.sort();
    times
}

#[test]
fn a_flood_of_forged_pongs_does_not_slow_broadcasts() {
    let Some(mosquitto) = Mosquitto::start().filter(|_| mosquitto_tools()) else {
        return;
    };
    let port = mosquitto.port();
    let mqtt = MqttConfig::new("127.0.0.1", port);
    let runtime = Runtime::new().unwrap();
    let _nodes = start_nodes(&runtime, &mqtt, &NODES.map(str::to_owned), (1, 10));
    let researcher = fedreq_mqtt::connect_researcher(
        mqtt,
        ResearcherConfig {
            known: Some(Vec::new()),
            ..ResearcherConfig::new("flooded")
        },
    )
    .unwrap();
    fedreq_tests::wait_for_online(&researcher, &NODES.map(str::to_owned));
    let quiet = pings(&researcher);

    let mut flooder = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "general/researcher", "-q", "0", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    let mut lines = flooder.stdin.take().unwrap();
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        while started.elapsed() < FLOOD {
            // Paced: the lines due by now, in batches.
            let due = started.elapsed().as_millis() as u64 * RATE / 1000;
            while sent < due {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let line = format!(
                    r#"{{"researcher_id": "flooded", "node_id": "forged-{}", "success": true, "sequence": {}, "command": "pong", "protocol_version": "1"}}"#,
                    state >> 44,
                    state >> 20
                );
                if writeln!(lines, "{line}").is_err() {
                    return sent;
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let flooded = pings(&researcher);
    let sent = flood.join().unwrap();
    let _ = flooder.wait();

    let median = |times: &[Duration]| times[times.len() / 2];
    eprintln!(
        "broadcast ping of {} nodes: p50 {:?} quiet, {:?} during the flood ({sent} forged pongs); max {:?} and {:?}",
        NODES.len(),
        median(&quiet),
        median(&flooded),
        quiet.last().unwrap(),
        flooded.last().unwrap()
    );
    assert!(sent >= RATE * 9, "the flood ran: {sent}");
    // No forged pong is ever awaited: a broadcast that waited for an invented node would take
    // at least the first-contact gap. The ratio of the two times is a measurement, not a test
    // (two cores shared with the flood's publisher and the broker): BENCHMARKS.md has it.
    let gap = fedreq_protocol::policy::FirstContact::default().min;
    assert!(
        median(&flooded) < median(&quiet) + gap,
        "{:?} against {:?}",
        median(&flooded),
        median(&quiet)
    );
    let roster = researcher.roster().recv().unwrap();
    assert_eq!(roster.len(), NODES.len(), "no forged id became a member");
    let known = researcher.known().recv().unwrap();
    assert!(
        known.keys().eq(roster.keys()),
        "no forged id is awaited: {} known",
        known.len()
    );
}
