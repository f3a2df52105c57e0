//! Presence over a real broker, as a user meets it: `fedreq node` processes on a mosquitto in
//! its default configuration (plus a port), `fedreq ping` and `fedreq roster` against them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fedreq_tests::Mosquitto;
use serde_json::Value;

const DATASETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/datasets.json");

/// `fedreq node --id ID [--count N]`, returned once it says its nodes are connected.
fn nodes(port: u16, id: &str, count: Option<usize>) -> Child {
    let broker = format!("127.0.0.1:{port}");
    let count = count.map(|n| n.to_string());
    let mut args = vec![
        "node",
        "--id",
        id,
        "--datasets",
        DATASETS,
        "--broker",
        &broker,
    ];
    if let Some(count) = &count {
        args.extend(["--count", count]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("connected"), "{line}");
    child
}

fn fedreq(port: u16, args: &[&str]) -> Output {
    let broker = format!("127.0.0.1:{port}");
    Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(args)
        .args(["--broker", &broker, "--json"])
        .env_remove("FEDREQ_TIMEOUT")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn online(port: u16) -> Vec<(String, u64)> {
    let roster = json(&fedreq(port, &["roster"]));
    roster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["online"] == true)
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["incarnation"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn fedreq_ping_with_no_options_finds_ten_nodes_by_presence_on_a_default_mosquitto() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let mut site = nodes(mosquitto.port(), "site", Some(10));
    let first = json(&fedreq(mosquitto.port(), &["ping"]));
    // A new process, on the same broker: it knows from the first that nobody is silent.
    let second = json(&fedreq(mosquitto.port(), &["ping"]));
    let _ = site.kill();
    let _ = site.wait();
    for report in [&first, &second] {
        assert_eq!(report["nodes"].as_array().unwrap().len(), 10, "{report}");
        assert!(report["elapsed_ms"].as_f64().unwrap() < 1_000.0, "{report}");
    }
    assert_eq!(
        first["completion"], "settled",
        "first contact: not the 5 s quiet period, a settle window: {first}"
    );
    assert_eq!(
        second["completion"], "all_answered",
        "the roster carried to a new process: {second}"
    );
}

#[test]
fn a_node_killed_during_a_targeted_request_is_missing_when_its_will_arrives() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let port = mosquitto.port();
    let mut victim = nodes(port, "victim", None);
    // Stopped, it cannot answer; killed, its socket closes and the broker publishes its will.
    signal(&victim, "STOP");
    let broker = format!("127.0.0.1:{port}");
    let ping = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args([
            "ping",
            "--nodes",
            "victim",
            "--timeout",
            "30",
            "--json",
            "--broker",
            &broker,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    signal(&victim, "KILL");
    let _ = victim.wait();
    let report = json(&ping.wait_with_output().unwrap());
    assert_eq!(report["missing"], serde_json::json!(["victim"]), "{report}");
    assert_eq!(report["completion"], "offline", "{report}");
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "ended by the will, not the 30 s timeout"
    );
}

#[test]
fn a_node_that_restarts_is_online_again_and_its_old_status_does_not_count() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let port = mosquitto.port();
    let mut first = nodes(port, "phoenix", None);
    let before = online(port);
    assert_eq!(before.len(), 1, "{before:?}");
    signal(&first, "KILL");
    let _ = first.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !online(port).is_empty() {
        assert!(Instant::now() < deadline, "the will never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut second = nodes(port, "phoenix", None);
    let after = online(port);
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(
        after.len(),
        1,
        "a newcomer knows it at once from the retained status"
    );
    assert!(
        after[0].1 > before[0].1,
        "a later incarnation: {before:?} then {after:?}"
    );
}

#[test]
fn a_node_stopped_with_sigterm_says_offline_and_exits_cleanly() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let port = mosquitto.port();
    let mut node = nodes(port, "tidy", Some(2));
    assert_eq!(online(port).len(), 2);
    signal(&node, "TERM");
    let status = node.wait().unwrap();
    assert!(status.success(), "a clean stop: {status:?}");
    // Its `offline` is retained: a newcomer sees both nodes offline.
    assert!(online(port).is_empty());
}

#[test]
fn a_node_that_crashed_starts_afresh_and_answers_nothing_asked_of_its_dead_run() {
    use fedreq::{Requests, RequestsConfig};
    use fedreq_protocol::{Command as Cmd, Policy, Request, Submission};
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let port = mosquitto.port();
    let mut first = nodes(port, "lazarus", None);
    let mqtt = fedreq_mqtt::MqttConfig::new("127.0.0.1", port);
    let requests = Requests::connect(mqtt, RequestsConfig::new("r-lazarus")).unwrap();
    signal(&first, "KILL");
    let _ = first.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests.roster().unwrap()["lazarus"].online() {
        assert!(Instant::now() < deadline, "the will never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Asked while it is down: these wait in its session on the broker.
    let quick = Policy::quiet(Duration::from_millis(100)).with_return_window(Duration::ZERO);
    for _ in 0..5 {
        let ping = Submission::to_nodes(Request::ping(), vec!["lazarus".into()]);
        let outcome = requests.request(ping.with_policy(quick.clone())).unwrap();
        assert_eq!(outcome.missing, ["lazarus"]);
    }
    let mut second = nodes(port, "lazarus", None);
    let ping = Submission::to_nodes(Request::ping(), vec!["lazarus".into()]);
    let outcome = requests.request(ping).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stale = requests.take_mail(vec![Cmd::Pong]).unwrap();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(outcome.online(), ["lazarus"], "the new run answers");
    assert!(
        stale.is_empty(),
        "{} pongs to the dead run's pings",
        stale.len()
    );
}
