//! The built `fedreq` program against the embedded broker and repository with fedreq nodes:
//! each subcommand's `--json`, its errors and exit statuses.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fedreq::repository::{http_fetcher, RepositoryServer};
use fedreq_mem::sim::simulated_datasets;
use fedreq_mqtt::{EmbeddedBroker, NodeDriver, Runtime};
use fedreq_protocol::NodeConfig;
use serde_json::Value;

const NODES: &str = "n1,n2,n3";

/// One broker, one repository and three nodes for every test of this file.
struct Federation {
    broker: String,
    uploads_url: String,
    _repository: RepositoryServer,
    _nodes: Vec<NodeDriver>,
}

fn federation() -> &'static Federation {
    static FEDERATION: OnceLock<Federation> = OnceLock::new();
    FEDERATION.get_or_init(|| {
        let broker = EmbeddedBroker::start_local().unwrap();
        let repository = RepositoryServer::start_local().unwrap();
        let mqtt = fedreq_mqtt::MqttConfig::new("127.0.0.1", broker.address().port());
        let configs = NODES
            .split(',')
            .enumerate()
            .map(|(i, id)| {
                let mut config = NodeConfig::new(id, simulated_datasets(i));
                config.simulate_training = true;
                config
            })
            .collect();
        let runtime = Runtime::new().unwrap();
        let nodes = NodeDriver::start_many(&runtime, &mqtt, configs, http_fetcher()).unwrap();
        Federation {
            broker: broker.address().to_string(),
            uploads_url: repository.uploads_url(),
            _repository: repository,
            _nodes: nodes,
        }
    })
}

fn fedreq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(args)
        .env_remove("MQTT_BROKER")
        .env_remove("MQTT_BROKER_PORT")
        .env_remove("FEDREQ_TIMEOUT")
        .env_remove("UPLOADS_URL")
        .env_remove("RESEARCHER_ID")
        .output()
        .unwrap()
}

/// Runs against the federation with `--json`; asserts exit 0 and returns the JSON.
fn json(args: &[&str]) -> Value {
    let federation = federation();
    let mut all = vec![
        "--broker",
        federation.broker.as_str(),
        "--json",
        "--timeout",
        "0.5",
    ];
    all.extend_from_slice(args);
    let out = fedreq(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn failure(args: &[&str]) -> String {
    let out = fedreq(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

fn example_plan() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/example_plan.py")
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("fedreq-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn ping_lists_the_nodes_before_or_after_the_options() {
    let report = json(&["ping"]);
    let mut nodes: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    // Settled on first contact, at once when an earlier command kept that nobody is silent.
    let completion = report["completion"].as_str().unwrap();
    assert!(
        ["settled", "all_answered"].contains(&completion),
        "a broadcast expects the nodes online by presence: no quiet period, {report}"
    );
    assert!(report["elapsed_ms"].as_f64().unwrap() < 1_000.0);

    let federation = federation();
    let out = fedreq(&[
        "ping",
        "--nodes",
        "n2",
        "--json",
        "--broker",
        &federation.broker,
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nodes"], serde_json::json!(["n2"]));
    assert_eq!(report["missing"], serde_json::json!([]));
    assert!(
        report["elapsed_ms"].as_f64().unwrap() < 1000.0,
        "every target answered: no waiting"
    );
}

#[test]
fn fedbiomed_environment_variables_are_honoured() {
    let federation = federation();
    let (host, port) = federation.broker.split_once(':').unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(["ping", "--json", "--nodes", "n1"])
        .env("MQTT_BROKER", host)
        .env("MQTT_BROKER_PORT", port)
        .env("RESEARCHER_ID", "researcher-from-env")
        .env("FEDREQ_TIMEOUT", "0.2")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nodes"], serde_json::json!(["n1"]));
}

#[test]
fn list_and_search_give_datasets_per_node() {
    let listed = json(&["list", "--nodes", NODES]);
    let nodes = listed["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.values().all(|d| d
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d.get("path").is_none())));

    let found = json(&["search", "fbm", "odd"]);
    let found: Vec<&String> = found["nodes"].as_object().unwrap().keys().collect();
    assert_eq!(found, ["n2"], "only group 1 is odd among groups 0 to 2");
}

#[test]
fn list_verbose_prints_a_grid_per_node() {
    let federation = federation();
    let out = fedreq(&[
        "list",
        "--verbose",
        "--nodes",
        NODES,
        "--broker",
        &federation.broker,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.matches("| Number of Datasets:").count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("+====") && stdout.contains("| clinical-0"),
        "{stdout}"
    );
}

#[test]
fn approve_acknowledges_per_node_and_missing_nodes_are_false() {
    let federation = federation();
    let plan = example_plan();
    let report = json(&[
        "approve",
        plan.to_str().unwrap(),
        "--uploads-url",
        &federation.uploads_url,
        "--nodes",
        "n1,n3,ghost",
    ]);
    assert_eq!(
        report["nodes"],
        serde_json::json!({"ghost": false, "n1": true, "n3": true})
    );
}

#[test]
fn send_stamps_a_sequence_and_prints_the_replies() {
    let report = json(&["send", r#"{"command": "ping"}"#, "--sequence", "--to", "n3"]);
    let sequence = report["sequence"].as_u64().unwrap();
    let responses = report["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!(
        (
            responses[0]["node_id"].as_str(),
            responses[0]["sequence"].as_u64()
        ),
        (Some("n3"), Some(sequence))
    );
}

#[test]
fn a_plan_that_is_not_python_is_refused_with_line_and_column_before_connecting() {
    let bad = temp_file("bad_plan.py", "class Plan:\n    x = = 1\n");
    let bad = bad.to_str().unwrap();
    for args in [
        vec!["check", bad],
        vec![
            "approve",
            bad,
            "--uploads-url",
            "http://127.0.0.1:9/upload/",
            "--broker",
            "127.0.0.1:9",
        ],
    ] {
        let stderr = failure(&args);
        assert!(stderr.contains(&format!("{bad}:2:")), "{stderr}");
        assert!(
            !stderr.contains("127.0.0.1:9"),
            "no connection attempted: {stderr}"
        );
    }
    let out = fedreq(&["check", example_plan().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn plans_are_checked_for_python_3_10_unless_the_user_picks_3_11() {
    let plan = temp_file(
        "except_star.py",
        "try:\n    pass\nexcept* ValueError:\n    pass\n",
    );
    let plan = plan.to_str().unwrap();
    let stderr = failure(&["check", plan]);
    assert!(
        stderr.contains(&format!("{plan}:3:1: ")) && stderr.contains("3.11"),
        "{stderr}"
    );
    let out = fedreq(&["check", plan, "--python", "3.11"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{plan}: valid Python 3.11\n")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(["check", plan])
        .env("FEDREQ_PYTHON", "3.11")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = fedreq(&["check", plan, "--python", "3.12"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3.10 or 3.11, not 3.12"), "{stderr}");
}

#[test]
fn each_subcommands_help_lists_only_the_options_it_reads() {
    let help = |subcommand: &str| {
        let out = fedreq(&[subcommand, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{subcommand}");
        String::from_utf8(out.stdout).unwrap()
    };
    let request_options = [
        "--researcher-id",
        "--compat",
        "--min-replies",
        "--grace",
        "--deadline",
        "--timeout",
        "--roster",
    ];
    for subcommand in ["node", "broker", "repository", "check", "decode"] {
        let text = help(subcommand);
        for option in request_options.iter().chain(&["--uploads-url"]) {
            assert!(
                !text.contains(option),
                "`{subcommand} --help` lists {option}:\n{text}"
            );
        }
    }
    assert!(help("node").contains("--broker") && !help("broker").contains("--broker"));
    assert!(!help("check").contains("--json") && help("decode").contains("--json"));
    for option in request_options.iter().chain(&["--broker", "--json"]) {
        assert!(
            help("ping").contains(option),
            "`ping --help` lacks {option}"
        );
    }
    assert!(help("approve").contains("--uploads-url") && !help("ping").contains("--uploads-url"));
    // Still accepted where they are not listed: options of every command.
    let plan = example_plan();
    let out = fedreq(&["check", plan.to_str().unwrap(), "--timeout", "2", "--json"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn approve_of_a_missing_file_names_it() {
    let stderr = failure(&[
        "approve",
        "/no/such/plan.py",
        "--uploads-url",
        "http://127.0.0.1:9/upload/",
    ]);
    assert!(
        stderr.contains("/no/such/plan.py") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn ping_without_a_broker_fails_within_the_timeout_naming_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let stderr = failure(&["ping", "--broker", &address, "--timeout", "2"]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(stderr.contains(&address), "{stderr}");
}

#[test]
fn decode_prints_each_message_or_why_it_is_refused() {
    let wire = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/wire/valid");
    let pong = std::fs::read_to_string(wire.join("general-researcher/pong.json")).unwrap();
    let ping = std::fs::read_to_string(wire.join("general-nodes/ping.json")).unwrap();
    let good = format!(
        "general/researcher {}\ngeneral/nodes {}\n",
        pong.trim(),
        ping.trim()
    );
    let file = temp_file("capture.txt", &good);
    let out = fedreq(&["decode", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (
            lines[0]["message"]["command"].as_str(),
            lines[1]["message"]["command"].as_str()
        ),
        (Some("pong"), Some("ping"))
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(["decode", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{good}general/nodes this is not json\n{}\n", pong.trim()).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let refusals: Vec<&str> = stdout.lines().skip(2).collect();
    assert!(refusals[0].contains("refused"), "{stdout}");
    // A payload pasted without its topic is told so, not read as a topic.
    assert!(
        refusals[1].starts_with("(no topic) refused (line 4): a payload without its topic"),
        "{stdout}"
    );
}

/// Runs `listen --json` with `options` as `researcher`, sends a `train` of `dataset_id` to n1 as
/// the same researcher, and returns the first JSON line `listen` printed.
fn listen_to_a_train(options: &[&str], researcher: &str, dataset_id: &str) -> Value {
    let federation = federation();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args([
            "listen",
            "--json",
            "--broker",
            &federation.broker,
            "--researcher-id",
            researcher,
        ])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until it is connected (it says so on stderr).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("listening"), "{first}");
    let train =
        serde_json::json!({"job_id": "j", "params_url": "", "training_args": {}, "dataset_id": dataset_id,
        "training": true, "model_args": {}, "training_plan_url": "", "training_plan_class": "P",
        "secagg_servkey_id": null, "secagg_biprime_id": null, "secagg_random": null,
        "secagg_clipping_range": null, "round": 3, "aggregator_args": {}, "command": "train"})
        .to_string();
    let out = fedreq(&[
        "send",
        &train,
        "--to",
        "n1",
        "--broker",
        &federation.broker,
        "--researcher-id",
        researcher,
        "--timeout",
        "0.3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn listen_streams_node_logs_and_monitoring_scalars() {
    let event = listen_to_a_train(&[], "listener", "dataset-clinical-0");
    assert_eq!(event["monitoring"]["node_id"], "n1", "{event}");
    assert_eq!(event["monitoring"]["metric"]["Loss"], 0.25);
}

#[test]
fn listen_writes_the_scalars_as_json_lines_and_csv_too() {
    let jsonl = temp_file("scalars.jsonl", "");
    let csv = temp_file("scalars.csv", "");
    let (jsonl_arg, csv_arg) = (jsonl.to_str().unwrap(), csv.to_str().unwrap());
    let options = ["--monitor", "--jsonl", jsonl_arg, "--csv", csv_arg];
    let event = listen_to_a_train(&options, "listener-files", "dataset-clinical-0");
    assert_eq!(event["monitoring"]["node_id"], "n1", "{event}");
    // Written before it is printed.
    let line: Value = serde_json::from_str(&std::fs::read_to_string(&jsonl).unwrap()).unwrap();
    assert_eq!(
        (
            &line["node_id"],
            &line["job_id"],
            &line["phase"],
            &line["metric"],
            &line["step"],
            &line["value"]
        ),
        (
            &"n1".into(),
            &"j".into(),
            &"training".into(),
            &"Loss".into(),
            &1.into(),
            &0.25.into()
        )
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "wall_time,job_id,node_id,phase,metric,step,epoch,iteration,value"
    );
    assert!(rows[1].ends_with(",j,n1,training,Loss,1,1,1,0.25"), "{csv}");
}

#[test]
fn ping_reports_the_targets_that_did_not_answer() {
    let report = json(&["ping", "--nodes", "n1,ghost"]);
    assert_eq!(
        (report["nodes"].clone(), report["missing"].clone()),
        (serde_json::json!(["n1"]), serde_json::json!(["ghost"]))
    );
}

#[test]
fn send_without_a_sequence_says_how_to_add_one() {
    let federation = federation();
    let stderr = failure(&[
        "send",
        r#"{"command": "ping"}"#,
        "--broker",
        &federation.broker,
    ]);
    assert!(
        stderr.contains("missing field `sequence`") && stderr.contains("--sequence"),
        "{stderr}"
    );
    // A usage error (status 2) that names the option.
    let out = fedreq(&["ping", "--timeout", "0", "--broker", &federation.broker]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["ping", "--timeout", "soon"],
        &["search"],
        &["--qos", "3", "ping"],
        &["--timeout", "0", "ping"],
        &["--timeout=-1", "ping"],
        &["--deadline", "0", "ping"],
        &["--min-replies", "0", "ping"],
        &["--broker", "127.0.0.1:99999", "ping"],
        &["--broker", "foo:bar", "ping"],
        &["node", "--id", "x", "--datasets", "d.json", "--count", "0"],
    ] {
        assert_eq!(fedreq(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn the_demo_runs_every_request_and_exits_0() {
    let out = fedreq(&["demo", "--nodes", "3"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "3 node(s) online",
        "| Number of Datasets:",
        "3 node(s) hold such data",
        "3 of 3 node(s) acknowledged",
        "node log  INFO",
        "monitoring: node-1 job demo-job {\"Loss\":0.5}",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn listen_prints_node_errors_for_us() {
    // A dataset the node does not hold: v4.4 nodes answer with FB313, for the researcher who asked.
    let event = listen_to_a_train(&["--errors"], "listener-errors", "no-such-dataset");
    assert_eq!(
        (
            event["error"]["node_id"].as_str(),
            event["error"]["errnum"].as_str()
        ),
        (Some("n1"), Some("FB313: no dataset matching request")),
        "{event}"
    );
}

#[test]
fn list_and_search_log_what_they_found_as_v44_on_stderr() {
    let broker = federation().broker.as_str();
    let stderr = |args: &[&str]| {
        let all = [&["--broker", broker, "--timeout", "0.5"], args].concat();
        String::from_utf8(fedreq(&all).stderr).unwrap()
    };
    let listed = stderr(&["list", "--nodes", "n1"]);
    assert!(
        listed.contains(r#"Listing datasets of given list of nodes : ["n1"]"#),
        "{listed}"
    );
    let found = stderr(&["search", "fbm", "odd"]);
    assert!(
        found.contains(r#"Searching dataset with data tags: ["fbm", "odd"] for all nodes"#),
        "{found}"
    );
    assert!(
        found.contains("Node selected for training -> n2"),
        "{found}"
    );
    let none = stderr(&["search", "no-such-tag", "--nodes", NODES]);
    assert!(
        none.contains(r#"No available dataset has found in nodes with tags: ["no-such-tag"]"#),
        "{none}"
    );
}

/// Runs `fedreq args` with its output read by nobody (`fedreq ... | true`).
fn unread(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedreq"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_the_program_quietly() {
    let broker = federation().broker.as_str();
    let lines: String = (0..10_000)
        .map(|_| "general/nodes {\"command\": \"ping\"}\n")
        .collect();
    let capture = temp_file("unread.txt", &lines);
    for args in [
        &["--broker", broker, "list"][..],
        &["--broker", broker, "ping"],
        &["decode", capture.to_str().unwrap()],
    ] {
        let out = unread(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn decode_reads_what_fedreq_itself_publishes() {
    use fedreq_protocol::presence::{self, NoMatch, Presence, Status};
    let status = Presence::new("n1", Status::Online, 7).encode();
    let no_match = NoMatch {
        researcher_id: "r".into(),
        node_id: "n1".into(),
        tags: vec!["t".into()],
    };
    let lines = [
        format!(
            "{} {}",
            presence::topic("n1"),
            String::from_utf8(status.clone()).unwrap()
        ),
        format!(
            "{} {}",
            presence::probed_topic("n1"),
            String::from_utf8(status).unwrap()
        ),
        format!(
            "{} {}",
            presence::NO_MATCH,
            String::from_utf8(no_match.encode()).unwrap()
        ),
        format!("{} {{\"researcher_id\": \"r\"}}", presence::PROBE),
        format!("{} ", presence::probe_topic("n1")),
        "fedreq/sync/fedreq-researcher-r-1 ".to_owned(),
    ];
    let file = temp_file("own.txt", &(lines.join("\n") + "\n"));
    let out = fedreq(&["decode", file.to_str().unwrap(), "--json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let decoded: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decoded.len(), 6);
    assert_eq!(decoded[0]["message"]["status"], "online");
    assert_eq!(decoded[1]["message"]["incarnation"], 7);
    assert_eq!(decoded[2]["message"]["command"], "no-match");

    // A message without protocol_version says so, not "version 0.0.0".
    let pong = r#"general/researcher {"researcher_id": "r", "node_id": "n1", "success": true, "sequence": 1, "command": "pong"}"#;
    let file = temp_file("unversioned.txt", &format!("{pong}\n"));
    let out = fedreq(&["decode", file.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("protocol_version: missing"), "{stdout}");
}
