//! The node core answers as a Fed-BioMed v4.4 node does, and refuses what real nodes refused.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use fedreq_protocol::node::{datasets_from_json, DatasetError, FetchResult, PlanStatus};
use fedreq_protocol::{Node, NodeConfig, Timestamp};
use serde_json::{json, Value};

const R: &str = "researcher_wire";

fn datasets() -> Arc<[serde_json::Map<String, Value>]> {
    let list = json!([
        {"name": "ds0", "data_type": "csv", "tags": ["fbm", "ds0", "even"], "description": "zero",
         "shape": [10, 3], "dataset_id": "dataset_0", "dtypes": ["int64"], "path": "/secret/0.csv",
         "dataset_parameters": null},
        {"name": "ds1", "data_type": "csv", "tags": ["fbm", "ds1"], "description": "one",
         "shape": [11, 3], "dataset_id": "dataset_1", "dtypes": ["float64"], "path": "/secret/1.csv",
         "dataset_parameters": null}
    ]);
    datasets_from_json(list.to_string().as_bytes()).unwrap()
}

/// A node that announces itself, as fedreq's do.
fn node() -> Node {
    Node::new(NodeConfig {
        announces_as: Some(1),
        ..NodeConfig::new("node_a", datasets())
    })
}

fn send(node: &mut Node, message: Value) -> Vec<(String, Value)> {
    node.handle_publish(
        Timestamp::ZERO,
        "general/nodes",
        message.to_string().as_bytes(),
    );
    drain(node)
}

fn drain(node: &mut Node) -> Vec<(String, Value)> {
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| (t.topic, serde_json::from_slice(&t.payload).unwrap()))
        .collect()
}

fn replies(out: &[(String, Value)]) -> Vec<&Value> {
    out.iter()
        .filter(|(t, _)| t == "general/researcher")
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn ping_is_answered_with_a_pong_echoing_the_sequence() {
    let out = send(
        &mut node(),
        json!({"researcher_id": R, "sequence": 999, "command": "ping", "protocol_version": "1"}),
    );
    assert_eq!(
        out,
        [(
            "general/researcher".to_owned(),
            json!({"researcher_id": R, "node_id": "node_a", "success": true,
            "sequence": 999, "command": "pong", "protocol_version": "1"})
        )]
    );
}

#[test]
fn list_sends_every_dataset_without_path_or_dtypes() {
    let out = send(
        &mut node(),
        json!({"researcher_id": R, "command": "list", "protocol_version": "1"}),
    );
    let reply = replies(&out)[0];
    assert_eq!(
        (reply["command"].as_str(), reply["count"].as_i64()),
        (Some("list"), Some(2))
    );
    for dataset in reply["databases"].as_array().unwrap() {
        assert!(
            dataset.get("path").is_none() && dataset.get("dtypes").is_none(),
            "{dataset}"
        );
        assert!(dataset.get("dataset_parameters").is_some());
    }
}

#[test]
fn search_needs_every_tag_and_stays_silent_without_a_match_on_v44_topics() {
    let mut node = node();
    let search = |tags: Value| json!({"researcher_id": R, "tags": tags, "command": "search", "protocol_version": "1"});
    let out = send(&mut node, search(json!(["fbm", "even"])));
    let reply = replies(&out)[0];
    assert_eq!(reply["count"], 1);
    assert_eq!(reply["databases"][0]["name"], "ds0");
    assert_eq!(
        reply["databases"][0]["dtypes"],
        json!(["int64"]),
        "search keeps dtypes"
    );
    assert!(reply["databases"][0].get("path").is_none());
    assert_eq!(
        replies(&send(&mut node, search(json!(["fbm"]))))[0]["count"],
        2
    );
    let out = send(&mut node, search(json!(["fbm", "nope"])));
    assert!(replies(&out).is_empty(), "v4.4 sends nothing: {out:?}");
    // fedreq's researcher hears of it on its own topic, unless the node is silent as v4.4's.
    assert_eq!(
        out,
        [(
            "fedreq/no-match".to_owned(),
            json!({"researcher_id": R, "node_id": "node_a", "tags": ["fbm", "nope"],
                   "command": "no-match", "protocol_version": "1"})
        )]
    );
    let mut silent = Node::new(NodeConfig::new("node_a", datasets()));
    assert!(send(&mut silent, search(json!(["nope"]))).is_empty());
}

fn approval(sequence: u64, url: &str) -> Value {
    json!({"researcher_id": R, "description": "my plan", "sequence": sequence, "training_plan_url": url,
           "command": "approval", "protocol_version": "1"})
}

#[test]
fn approval_downloads_the_plan_registers_it_once_and_acknowledges() {
    let mut node = node();
    assert!(
        send(&mut node, approval(100, "http://repo/p.py")).is_empty(),
        "nothing before the download"
    );
    let fetch = node.poll_fetch().unwrap();
    assert_eq!(fetch.url, "http://repo/p.py");
    node.handle_fetched(
        Timestamp::ZERO,
        fetch.id,
        FetchResult::Body(b"class P: pass\n".to_vec()),
    );
    let out = drain(&mut node);
    assert_eq!(
        replies(&out),
        [
            &json!({"researcher_id": R, "node_id": "node_a", "sequence": 100, "status": 200, "success": true,
                 "command": "approval", "protocol_version": "1"})
        ]
    );
    assert_eq!(node.plans().len(), 1);
    assert_eq!(node.plans()[0].status, PlanStatus::Pending);

    send(&mut node, approval(101, "http://repo/same-content.py"));
    let fetch = node.poll_fetch().unwrap();
    node.handle_fetched(
        Timestamp::ZERO,
        fetch.id,
        FetchResult::Body(b"class P: pass\n".to_vec()),
    );
    let out = drain(&mut node);
    assert_eq!(node.plans().len(), 1, "the same content twice is one plan");
    let log: Value = serde_json::from_str(out[0].1["msg"].as_str().unwrap()).unwrap();
    assert_eq!(
        log["message"],
        "Training plan 'my plan' already sent for Approval (status Pending). Please wait for Node approval."
    );
}

#[test]
fn failed_download_is_status_zero_and_logged_as_fedbiomed_does() {
    let mut node = node();
    send(&mut node, approval(101, "http://repo/does_not_exist.py"));
    let fetch = node.poll_fetch().unwrap();
    node.handle_fetched(Timestamp::ZERO, fetch.id, FetchResult::Status(404));
    let out = drain(&mut node);
    let logs: Vec<&Value> = out
        .iter()
        .filter(|(t, _)| t == "general/logger")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(logs.len(), 2);
    for log in &logs {
        assert_eq!(
            (log["level"].as_str(), log["researcher_id"].as_str()),
            (Some("ERROR"), Some("<unknown>"))
        );
        let msg = log["msg"].as_str().unwrap();
        let at = |key: &str| msg.find(&format!("\"{key}\":")).unwrap();
        let keys = ["asctime", "node_id", "name", "level", "message"];
        assert!(
            keys.windows(2).all(|pair| at(pair[0]) < at(pair[1])),
            "v4.4's order (general-logger samples): {msg}"
        );
        let inner: Value = serde_json::from_str(msg).unwrap();
        assert!(inner["message"]
            .as_str()
            .unwrap()
            .contains("FB202: server returns 404 error"));
    }
    let reply = replies(&out)[0];
    assert_eq!(
        (reply["status"].as_i64(), reply["success"].as_bool()),
        (Some(0), Some(false))
    );
    assert!(node.plans().is_empty());
}

#[test]
fn training_plan_status_follows_the_operators_decision() {
    let mut node = node();
    let status_of = |node: &mut Node| {
        send(
            node,
            json!({"researcher_id": R, "job_id": "j", "training_plan_url": "http://repo/p.py",
                          "command": "training-plan-status", "protocol_version": "1"}),
        );
        let fetch = node.poll_fetch().unwrap();
        node.handle_fetched(
            Timestamp::ZERO,
            fetch.id,
            FetchResult::Body(b"plan".to_vec()),
        );
        let out = drain(node);
        let reply = replies(&out)[0].clone();
        reply["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(status_of(&mut node), "Not Registered");
    send(&mut node, approval(1, "http://repo/p.py"));
    let fetch = node.poll_fetch().unwrap();
    node.handle_fetched(
        Timestamp::ZERO,
        fetch.id,
        FetchResult::Body(b"plan".to_vec()),
    );
    drain(&mut node);
    assert_eq!(status_of(&mut node), "Pending");
    assert!(node.set_plan_status(0, PlanStatus::Approved));
    assert_eq!(status_of(&mut node), "Approved");
}

/// The shared wire samples' refused requests get the error replies real nodes sent, and the
/// node keeps answering afterwards (a real v4.4.4 node went silent after `not-json.txt`).
#[test]
fn refused_samples_get_fedbiomeds_error_and_the_node_goes_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wire");
    let expected: Value = serde_json::from_slice(
        &fs::read(root.join("valid/general-researcher/error-unknown-command.json")).unwrap(),
    )
    .unwrap();
    let mut node = node();
    for (file, extra_msg, researcher) in [
        ("frobnicate.json", "Message was not properly formatted", R),
        ("search.json", "Message was not properly formatted", R),
        (
            "not-json.txt",
            "Not able to deserialize the message",
            "unknown_researcher_id",
        ),
    ] {
        let payload = fs::read(root.join("invalid/general-nodes").join(file)).unwrap();
        node.handle_publish(Timestamp::ZERO, "general/nodes", &payload);
        let out = drain(&mut node);
        let mut error = replies(&out)[0].clone();
        assert_eq!(error["node_id"], "node_a");
        error["node_id"] = expected["node_id"].clone();
        let mut want = expected.clone();
        want["extra_msg"] = json!(extra_msg);
        want["researcher_id"] = json!(researcher);
        assert_eq!(error, want, "{file}");
        assert!(
            out.iter().any(|(t, _)| t == "general/logger"),
            "{file}: an error log too"
        );
        let pong = send(
            &mut node,
            json!({"researcher_id": R, "sequence": 1, "command": "ping", "protocol_version": "1"}),
        );
        assert_eq!(
            replies(&pong)[0]["command"],
            "pong",
            "still answering after {file}"
        );
    }
}

#[test]
fn dataset_files_are_checked() {
    assert!(matches!(
        datasets_from_json(b"{"),
        Err(DatasetError::NotJson(_))
    ));
    assert_eq!(datasets_from_json(b"{}"), Err(DatasetError::NotAList));
    let missing =
        json!([{"name": "a", "data_type": "csv", "tags": [], "description": "", "shape": []}]);
    assert_eq!(
        datasets_from_json(missing.to_string().as_bytes()),
        Err(DatasetError::MissingField {
            index: 0,
            field: "dataset_id"
        })
    );
    let bad_tags = json!([{"name": "a", "data_type": "csv", "tags": [1], "description": "", "shape": [], "dataset_id": "x"}]);
    assert_eq!(
        datasets_from_json(bad_tags.to_string().as_bytes()),
        Err(DatasetError::BadTags { index: 0 })
    );
}

fn train(dataset_id: &str) -> Value {
    json!({"researcher_id": R, "job_id": "job", "params_url": "http://repo/params", "training_args": {},
           "dataset_id": dataset_id, "training": true, "model_args": {}, "training_plan_url": "http://repo/p.py",
           "training_plan_class": "Plan", "secagg_servkey_id": null, "secagg_biprime_id": null,
           "secagg_random": null, "secagg_clipping_range": null, "round": 1, "aggregator_args": {},
           "command": "train", "protocol_version": "1"})
}

#[test]
fn train_is_refused_unless_simulated_and_then_reports_a_scalar() {
    let out = send(&mut node(), train("dataset_0"));
    assert_eq!(
        (replies(&out)[0]["success"].as_bool(), out.len()),
        (Some(false), 1)
    );

    let mut config = NodeConfig::new("node_a", datasets());
    config.simulate_training = true;
    let mut simulating = Node::new(config);
    let out = send(&mut simulating, train("dataset_0"));
    let (topic, scalar) = &out[0];
    assert_eq!(topic, "general/monitoring");
    assert_eq!(
        (
            scalar["command"].as_str(),
            scalar["metric"]["Loss"].as_f64()
        ),
        (Some("add_scalar"), Some(0.5))
    );
    let reply = replies(&out)[0];
    assert_eq!(
        (reply["success"].as_bool(), reply["sample_size"].as_i64()),
        (Some(true), Some(10))
    );
    let unknown = send(&mut simulating, train("nope"));
    let error = replies(&unknown)[0];
    assert_eq!(
        (
            error["command"].as_str(),
            error["errnum"].as_str(),
            error["researcher_id"].as_str()
        ),
        (
            Some("error"),
            Some("FB313: no dataset matching request"),
            Some(R)
        ),
        "v4.4 answers an unknown dataset with FB313 for the researcher who asked"
    );
}

/// A stand-in check: "python" is what does not start with `!`, normalised by dropping spaces.
fn toy_check(content: &[u8]) -> Result<Vec<u8>, String> {
    match content.first() {
        Some(b'!') => Err("invalid syntax".into()),
        _ => Ok(content.iter().copied().filter(|b| *b != b' ').collect()),
    }
}

fn checking_node() -> Node {
    let mut config = NodeConfig::new("node_a", datasets());
    config.plan_check = Some(toy_check);
    Node::new(config)
}

/// Sends `message`, answers its download with `result`, and returns what the node said.
fn downloaded(node: &mut Node, message: Value, result: FetchResult) -> Vec<(String, Value)> {
    send(node, message);
    let fetch = node.poll_fetch().unwrap();
    node.handle_fetched(Timestamp::ZERO, fetch.id, result);
    // The adapter runs each check where it likes; here, at once.
    while let Some(job) = node.poll_check() {
        node.handle_checked(Timestamp::ZERO, job.run());
    }
    drain(node)
}

fn log_texts(out: &[(String, Value)]) -> Vec<(String, String)> {
    out.iter()
        .filter(|(t, _)| t == "general/logger")
        .map(|(_, log)| {
            let inner: Value = serde_json::from_str(log["msg"].as_str().unwrap()).unwrap();
            (
                log["level"].as_str().unwrap().to_owned(),
                inner["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_plan_that_is_not_python_is_answered_unsuccessful_with_status_200() {
    let mut node = checking_node();
    let out = downloaded(
        &mut node,
        approval(7, "http://repo/p.py"),
        FetchResult::Body(b"!nope".to_vec()),
    );
    let reply = replies(&out)[0];
    assert_eq!(
        (reply["status"].as_i64(), reply["success"].as_bool()),
        (Some(200), Some(false))
    );
    assert!(node.plans().is_empty());
    let (level, text) = &log_texts(&out)[0];
    assert_eq!(level, "ERROR");
    assert!(
        text.starts_with("Can not check whether training plan has already be registered or not due to error: FB606: model manager error: cannot minify file http://repo/p.py"),
        "{text}"
    );
}

#[test]
fn plans_are_told_apart_by_their_normalised_form_and_logged_by_status_as_v44() {
    let mut node = checking_node();
    downloaded(
        &mut node,
        approval(1, "http://repo/a.py"),
        FetchResult::Body(b"class P: pass".to_vec()),
    );
    assert!(node.set_plan_status(0, PlanStatus::Approved));
    let out = downloaded(
        &mut node,
        approval(2, "http://repo/b.py"),
        FetchResult::Body(b"class  P:  pass".to_vec()),
    );
    assert_eq!(node.plans().len(), 1, "the same plan laid out differently");
    assert_eq!(replies(&out)[0]["success"], true);
    assert_eq!(
        log_texts(&out),
        [(
            "INFO".to_owned(),
            "Training plan 'my plan' is already Approved. Ready to train on this training plan."
                .to_owned()
        )]
    );
    assert!(node.set_plan_status(0, PlanStatus::Rejected));
    let out = downloaded(
        &mut node,
        approval(3, "http://repo/c.py"),
        FetchResult::Body(b"class P:pass".to_vec()),
    );
    assert_eq!(
        log_texts(&out),
        [(
            "WARNING".to_owned(),
            "Training plan 'my plan' already exists in database. Aborting".to_owned()
        )]
    );
}

#[test]
fn training_plan_status_reports_fb604_for_a_failed_download_and_fb606_for_a_plan_it_cannot_check() {
    let status = json!({"researcher_id": R, "job_id": "j", "training_plan_url": "http://repo/p.py",
                        "command": "training-plan-status", "protocol_version": "1"});
    let mut node = checking_node();
    let out = downloaded(&mut node, status.clone(), FetchResult::Status(404));
    let reply = replies(&out)[0];
    assert_eq!(
        (reply["success"].as_bool(), reply["status"].as_str()),
        (Some(false), Some("Error"))
    );
    assert_eq!(
        reply["msg"],
        "FB604: repository error: An error occurred when downloading training plan file. http://repo/p.py , FB202: server returns 404 error when downloading file http://repo/p.py"
    );
    let out = downloaded(&mut node, status, FetchResult::Body(b"!nope".to_vec()));
    let msg = replies(&out)[0]["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("FB606: model manager error: Cannot check if training plan has been registered. Details FB606"),
        "{msg}"
    );
}

#[test]
fn a_medical_folder_is_listed_without_its_tabular_file_as_v44_does() {
    let list = json!([{"name": "mri", "data_type": "medical-folder", "tags": ["mri"], "description": "d",
        "shape": {"T1": [1, 2]}, "dataset_id": "dataset_m", "dtypes": [], "path": "/secret",
        "dataset_parameters": {"tabular_file": "/secret/demographics.csv", "index_col": 14}}]);
    let mut node = Node::new(NodeConfig::new(
        "node_a",
        datasets_from_json(list.to_string().as_bytes()).unwrap(),
    ));
    let message = json!({"researcher_id": R, "command": "list", "protocol_version": "1"});
    let out = send(&mut node, message);
    assert_eq!(
        replies(&out)[0]["databases"][0]["dataset_parameters"],
        json!({"index_col": 14})
    );
    let search =
        json!({"researcher_id": R, "tags": ["mri"], "command": "search", "protocol_version": "1"});
    let out = send(&mut node, search);
    assert_eq!(
        replies(&out)[0]["databases"][0]["dataset_parameters"],
        json!({"index_col": 14})
    );
}

#[test]
fn a_plan_above_max_plan_bytes_is_refused_before_any_check_and_one_at_the_limit_is_checked() {
    use fedreq_protocol::node::MAX_PLAN_BYTES;
    let mut node = checking_node();
    send(&mut node, approval(8, "http://repo/huge.py"));
    let fetch = node.poll_fetch().unwrap();
    let huge = vec![b'x'; MAX_PLAN_BYTES + 1];
    node.handle_fetched(Timestamp::ZERO, fetch.id, FetchResult::Body(huge));
    assert!(
        node.poll_check().is_none(),
        "a plan above the limit reached the check"
    );
    let out = drain(&mut node);
    assert_eq!(replies(&out)[0]["success"].as_bool(), Some(false));
    let (_, text) = &log_texts(&out)[0];
    assert!(
        text.contains(&format!(
            "{} bytes, above the limit of {MAX_PLAN_BYTES}",
            MAX_PLAN_BYTES + 1
        )),
        "{text}"
    );
    assert!(node.plans().is_empty());

    let at_limit = vec![b'x'; MAX_PLAN_BYTES];
    let out = downloaded(
        &mut node,
        approval(9, "http://repo/large.py"),
        FetchResult::Body(at_limit),
    );
    assert_eq!(replies(&out)[0]["success"].as_bool(), Some(true));
    assert_eq!(node.plans().len(), 1);
}
