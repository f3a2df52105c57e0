//! Every captured payload decodes to its typed message and re-encodes to an equal JSON value;
//! every refused one is refused. Reads `../shared/wire/` when present and the copy in
//! `tests/wire/`, so a sample dropped in either is tested without a code change.

use std::fs;
use std::path::{Path, PathBuf};

use fedreq_protocol::{Command, Limits, NodeMessage, Request};
use serde_json::Value;

fn sample_roots() -> Vec<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/wire"),
        manifest.join("tests/wire"),
    ]
    .into_iter()
    .filter(|p| p.is_dir())
    .collect()
}

/// (topic folder, file) for every file under `root/kind`.
fn samples(root: &Path, kind: &str) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for dir in fs::read_dir(root.join(kind)).unwrap() {
        let dir = dir.unwrap().path();
        let topic = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in fs::read_dir(&dir).unwrap() {
            found.push((topic.clone(), file.unwrap().path()));
        }
    }
    found.sort();
    found
}

/// Commands that may travel on a topic folder, nodes -> researcher.
fn node_commands(topic: &str) -> &'static [Command] {
    match topic {
        "general-logger" => &[Command::Log],
        "general-monitoring" => &[Command::AddScalar],
        "general-researcher" => &[
            Command::Pong,
            Command::List,
            Command::Search,
            Command::Approval,
            Command::TrainingPlanStatus,
            Command::Train,
            Command::Secagg,
            Command::SecaggDelete,
            Command::Error,
        ],
        other => panic!("no rule for topic folder {other}"),
    }
}

#[test]
fn valid_samples_decode_to_their_type_and_reencode_equal() {
    let roots = sample_roots();
    assert!(!roots.is_empty(), "no wire samples found");
    let limits = Limits::default();
    let mut seen = 0;
    for root in &roots {
        for (topic, path) in samples(root, "valid") {
            let bytes = fs::read(&path).unwrap();
            let original: Value = serde_json::from_slice(&bytes).unwrap();
            let command = original["command"].as_str().unwrap();
            let (decoded, encoded) = match topic.as_str() {
                "general-nodes" | "general-NODE_ID" => {
                    let message = Request::decode(&bytes, &limits)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                        .message;
                    (message.command(), message.encode())
                }
                _ => {
                    let message = NodeMessage::decode(&bytes, &limits)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                        .message;
                    assert!(
                        node_commands(&topic).contains(&message.command()),
                        "{}: {} on {topic}",
                        path.display(),
                        message.command()
                    );
                    (message.command(), message.encode())
                }
            };
            assert_eq!(decoded.as_str(), command, "{}", path.display());
            let again: Value = serde_json::from_slice(&encoded).unwrap();
            assert_eq!(again, original, "{} re-encodes differently", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 33 * roots.len(),
        "only {seen} valid samples in {} folders",
        roots.len()
    );
}

#[test]
fn invalid_samples_are_refused_with_a_reason() {
    let roots = sample_roots();
    let mut seen = 0;
    for root in &roots {
        for (topic, path) in samples(root, "invalid") {
            let bytes = fs::read(&path).unwrap();
            let limits = Limits::default();
            let refused = match topic.as_str() {
                "general-nodes" | "general-NODE_ID" => Request::decode(&bytes, &limits).err(),
                _ => NodeMessage::decode(&bytes, &limits).err(),
            };
            let err = refused.unwrap_or_else(|| panic!("{} was accepted", path.display()));
            assert!(!err.to_string().is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 3 * roots.len(), "only {seen} invalid samples");
}

fn local_sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/wire/valid/general-researcher")
        .join(name);
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The samples written from v4.4.4's code: whom each error is for.
#[test]
fn errors_with_a_placeholder_researcher_id_are_for_everyone_and_fb313_only_for_the_asker() {
    let limits = Limits::default();
    let cases = [
        ("error-fb300-not-set.json", true),
        ("error-fb301-unknown-researcher-id.json", true),
        ("error-fb312-unknown.json", true),
        ("error-fb313-no-data.json", false),
    ];
    for (name, for_anyone) in cases {
        let bytes = local_sample(name).to_string();
        let NodeMessage::Error(error) = NodeMessage::decode(bytes.as_bytes(), &limits)
            .unwrap()
            .message
        else {
            panic!("{name} is not an error")
        };
        assert_eq!(
            error.is_for("researcher_someone_else"),
            for_anyone,
            "{name}"
        );
        assert!(error.is_for(&error.researcher_id.clone()), "{name}");
    }
}

/// A fedreq node lists a medical folder exactly as the v4.4 sample shows it: no `path`, no
/// `dtypes`, no `dataset_parameters.tabular_file`.
#[test]
fn a_fedreq_node_lists_a_medical_folder_as_the_sample() {
    let sample = local_sample("list-medical-folder.json");
    let mut stored = sample["databases"][0].clone();
    let entry = stored.as_object_mut().unwrap();
    entry.insert("path".into(), "/data/ixi".into());
    entry.insert("dtypes".into(), serde_json::json!([]));
    entry["dataset_parameters"]
        .as_object_mut()
        .unwrap()
        .insert("tabular_file".into(), "/data/ixi/participants.csv".into());
    let datasets = fedreq_protocol::node::datasets_from_json(
        Value::Array(vec![stored]).to_string().as_bytes(),
    )
    .unwrap();
    let mut node = fedreq_protocol::Node::new(fedreq_protocol::NodeConfig::new(
        sample["node_id"].as_str().unwrap(),
        datasets,
    ));
    let request = serde_json::json!({"researcher_id": sample["researcher_id"], "command": "list", "protocol_version": "1"});
    node.handle_publish(
        fedreq_protocol::Timestamp::ZERO,
        "general/nodes",
        request.to_string().as_bytes(),
    );
    let reply: Value = serde_json::from_slice(&node.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(reply, sample);
}
