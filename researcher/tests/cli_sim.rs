//! `fedreq sim` as a user runs it: the built binary, its JSON, its exit statuses.

use std::process::Command;

use serde_json::Value;

fn fedreq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn sim_json(args: &[&str]) -> Value {
    let mut all = vec!["sim", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = fedreq(&all);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn ten_thousand_nodes_answer_a_ping() {
    let report = sim_json(&["--nodes", "10000", "--seed", "1"]);
    let requests = report["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["command"], "ping");
    assert_eq!(requests[0]["replies"], 10000);
    assert_eq!(requests[0]["missing"], Value::Array(vec![]));
    assert_eq!(requests[0]["completion"], "all_answered");
    for key in ["trace_hash", "virtual_ms", "wall_ms"] {
        assert!(report.get(key).is_some(), "{key}");
    }
}

#[test]
fn the_seed_decides_the_trace() {
    let args = [
        "--nodes",
        "50",
        "--drop",
        "0.1",
        "--dup",
        "0.1",
        "--reorder",
        "0.1",
        "--offline",
        "0.2",
        "--latency",
        "0.5..20",
        "--requests",
        "ping,list,search:even,approve",
    ];
    let run = |seed: &str| {
        let mut all = args.to_vec();
        all.extend(["--seed", seed]);
        sim_json(&all)
    };
    let (a, b, c) = (run("4"), run("4"), run("5"));
    assert_eq!(a["trace_hash"], b["trace_hash"]);
    assert_eq!(a["requests"], b["requests"]);
    assert_ne!(a["trace_hash"], c["trace_hash"]);
    let requests = a["requests"].as_array().unwrap();
    let commands: Vec<&str> = requests
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["ping", "list", "search", "approval"]);
    assert!(
        requests[0]["missing"].as_array().unwrap().len() >= 10,
        "20% of 50 are offline"
    );
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["sim", "--drop", "1.5"][..],
        &["sim", "--latency", "5..1"],
        &["sim", "--requests", "frobnicate"],
        &["sim", "--nodes", "-3"],
    ] {
        let (code, _, stderr) = fedreq(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn human_output_has_a_row_per_request_and_the_hash() {
    let (code, stdout, _) = fedreq(&["sim", "--nodes", "30", "--requests", "ping,search:group1"]);
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("1   ping") && l.contains(" 30 ")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("2   search")),
        "{stdout}"
    );
    assert!(stdout.contains("trace hash"), "{stdout}");
}
