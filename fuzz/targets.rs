//! The fuzz targets' bodies, shared by the cargo-fuzz binaries and the corpus replay that
//! runs in `cargo test` (tests/tests/fuzz_replay.rs). Each asserts invariants, not only the
//! absence of a panic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use fedreq_protocol::message::{ListReply, SearchReply};
use fedreq_protocol::node::{FetchResult, PlanStatus};
use fedreq_protocol::{
    Event, Limits, Node, NodeConfig, NodeMessage, Policy, Request, Researcher, ResearcherConfig,
    Submission, Timestamp,
};

/// Any payload, on either side: a message or a typed error, never a panic, the same by both
/// decoding paths; whatever decodes re-encodes to a payload that decodes to the same message.
pub fn decode(data: &[u8]) {
    let limits = Limits::default();
    // The fast path and the schema path agree on every input.
    assert_eq!(
        Request::decode(data, &limits),
        Request::decode_schema(data, &limits)
    );
    assert_eq!(
        NodeMessage::decode(data, &limits),
        NodeMessage::decode_schema(data, &limits)
    );
    if let Ok(decoded) = Request::decode(data, &limits) {
        let again = Request::decode(&decoded.message.encode(), &limits)
            .expect("re-encoded request decodes");
        assert_eq!(again.message, decoded.message);
    }
    if let Ok(decoded) = NodeMessage::decode(data, &limits) {
        let again = NodeMessage::decode(&decoded.message.encode(), &limits)
            .expect("re-encoded message decodes");
        assert_eq!(again.message, decoded.message);
    }
}

const ME: &str = "me";
const NODES: [&str; 4] = ["a", "b", "c", "d"];

/// One step of the researcher target.
#[derive(Arbitrary, Debug)]
pub enum ResearcherOp {
    Submit {
        kind: u8,
        targets: Option<Vec<u8>>,
        timeout_ms: u16,
        policy: u8,
    },
    /// A well-formed reply built from the fields given.
    Reply {
        command: u8,
        node: u8,
        sequence: u8,
        foreign: bool,
        success: bool,
    },
    /// Raw bytes on a topic.
    Raw {
        topic: u8,
        bytes: Vec<u8>,
    },
    Tick {
        micros: u32,
    },
    TakeMail,
    /// A well-formed status of one of the nodes, live or from the broker's retained store.
    Status {
        node: u8,
        status: u8,
        incarnation: u8,
        retained: bool,
        /// As an answer to a probe, on `fedreq/probed/<node>`.
        probed: bool,
    },
    /// The caller gives up on one of the requests submitted.
    Cancel {
        index: u8,
    },
    /// Our own connection goes down or comes back.
    Connection {
        up: bool,
    },
}

/// The researcher core under arbitrary steps; panics when an invariant breaks.
pub fn researcher(ops: Vec<ResearcherOp>) {
    let mut core = Researcher::new(ResearcherConfig {
        mailbox_capacity: 8,
        mailbox_bytes: 4096,
        ..ResearcherConfig::new(ME)
    });
    let mut now = Timestamp::ZERO;
    let mut submitted = 0u64;
    let mut ids = Vec::new();
    let mut completed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut check = |core: &mut Researcher| {
        while core.poll_transmit().is_some() {}
        while let Some(event) = core.poll_event() {
            if let Event::Completed(outcome) = event {
                *completed.entry(outcome.id.0).or_default() += 1;
                let mut seen = std::collections::BTreeSet::new();
                for reply in &outcome.replies {
                    assert_eq!(Some(reply.command()), outcome.command.map(|c| c.reply()));
                    assert_eq!(reply.researcher_id(), ME);
                    assert_eq!(reply.sequence(), outcome.sequence);
                    if let Some(targets) = &outcome.targets {
                        assert!(targets.iter().any(|t| t == reply.node_id()));
                    }
                    assert!(seen.insert(reply.node_id().to_owned()));
                }
            }
        }
    };
    for op in ops.into_iter().take(500) {
        match op {
            ResearcherOp::Submit {
                kind,
                targets,
                timeout_ms,
                policy,
            } => {
                let request = match kind % 4 {
                    0 => Request::ping(),
                    1 => Request::list(),
                    2 => Request::search(vec!["t".into()]),
                    _ => Request::approval("d", "http://x/p.py"),
                };
                let timeout = Duration::from_millis(u64::from(timeout_ms));
                let policy = match policy % 4 {
                    0 => Policy::quiet(timeout),
                    1 => Policy::fedbiomed(timeout),
                    2 => Policy::quiet(timeout).with_min_replies(2, timeout / 2),
                    _ => Policy::quiet(timeout).with_stop_on_error(),
                };
                let target = targets.map(|t| {
                    t.iter()
                        .map(|&i| NODES[usize::from(i) % 4].to_owned())
                        .collect::<Vec<_>>()
                });
                let submission = match target {
                    Some(nodes) => Submission::to_nodes(request, nodes),
                    None => Submission::broadcast(request),
                };
                if let Ok(id) = core.submit(now, submission.with_policy(policy)) {
                    ids.push(id);
                    submitted += 1;
                }
            }
            ResearcherOp::Reply {
                command,
                node,
                sequence,
                foreign,
                success,
            } => {
                let researcher = if foreign { "other" } else { ME };
                let node = NODES[usize::from(node) % 4];
                let reply = match command % 5 {
                    4 => {
                        let no_match = serde_json::json!({"researcher_id": researcher, "node_id": node, "tags": ["t"], "command": "no-match", "protocol_version": "1"});
                        core.handle_publish(
                            now,
                            "fedreq/no-match",
                            no_match.to_string().as_bytes(),
                        );
                        check(&mut core);
                        continue;
                    }
                    0 => {
                        serde_json::json!({"researcher_id": researcher, "node_id": node, "success": success, "sequence": sequence, "command": "pong", "protocol_version": "1"})
                    }
                    1 => {
                        serde_json::json!({"researcher_id": researcher, "node_id": node, "success": success, "databases": [], "count": 0, "command": "list", "protocol_version": "1"})
                    }
                    2 => {
                        serde_json::json!({"researcher_id": researcher, "node_id": node, "sequence": sequence, "status": 200, "success": success, "command": "approval", "protocol_version": "1"})
                    }
                    _ => {
                        serde_json::json!({"researcher_id": researcher, "node_id": node, "errnum": "FB301: Protocol error", "extra_msg": "x", "command": "error", "protocol_version": "1"})
                    }
                };
                core.handle_publish(now, "general/researcher", reply.to_string().as_bytes());
            }
            ResearcherOp::Raw { topic, bytes } => {
                let topic = [
                    "general/researcher",
                    "general/logger",
                    "general/monitoring",
                    "fedreq/presence/a",
                    "fedreq/presence/b",
                    "fedreq/probed/a",
                    "fedreq/probed/c",
                    "fedreq/no-match",
                ][usize::from(topic) % 8];
                core.handle_publish(now, topic, &bytes);
            }
            ResearcherOp::Status {
                node,
                status,
                incarnation,
                retained,
                probed,
            } => {
                use fedreq_protocol::presence::{self, Presence, Status};
                let node = NODES[usize::from(node) % 4];
                let status =
                    [Status::Online, Status::Offline, Status::Stopped][usize::from(status) % 3];
                let payload = Presence::new(node, status, u64::from(incarnation)).encode();
                let topic = match probed {
                    true => presence::probed_topic(node),
                    false => presence::topic(node),
                };
                match retained {
                    true => core.handle_retained(now, &topic, &payload),
                    false => core.handle_publish(now, &topic, &payload),
                }
            }
            ResearcherOp::Cancel { index } => {
                if let Some(&id) = ids.get(usize::from(index) % ids.len().max(1)) {
                    core.cancel(now, id);
                }
            }
            ResearcherOp::Connection { up } => {
                let state = match up {
                    true => fedreq_protocol::ConnectionState::Connected,
                    false => fedreq_protocol::ConnectionState::Disconnected("cut".into()),
                };
                core.handle_connection(now, state);
            }
            ResearcherOp::Tick { micros } => {
                now = now + Duration::from_micros(u64::from(micros));
                core.handle_timeout(now);
            }
            ResearcherOp::TakeMail => {
                assert!(core.take_mail(&[]).len() <= 8);
            }
        }
        check(&mut core);
    }
    while let Some(at) = core.poll_timeout() {
        core.handle_timeout(at);
        check(&mut core);
    }
    assert_eq!(core.in_flight(), 0);
    assert!(
        completed.values().all(|&n| n == 1),
        "a request completed twice"
    );
    assert_eq!(
        completed.len() as u64,
        submitted,
        "a request never completed"
    );
}

/// One step of the node target.
#[derive(Arbitrary, Debug)]
pub enum NodeOp {
    /// Bytes on one of the node's topics (the probes' too).
    Publish {
        topic: u8,
        bytes: Vec<u8>,
    },
    Fetched {
        body: Option<Vec<u8>>,
        status: u16,
    },
    Approve {
        index: u8,
    },
}

/// The node core under arbitrary steps; panics when an invariant breaks.
pub fn node(ops: Vec<NodeOp>) {
    let datasets = serde_json::json!([
        {"name": "a", "data_type": "csv", "tags": ["t", "u"], "description": "", "shape": [1], "dataset_id": "x", "path": "/p"}
    ]);
    let datasets =
        fedreq_protocol::node::datasets_from_json(datasets.to_string().as_bytes()).unwrap();
    let mut config = NodeConfig::new("n", Arc::clone(&datasets));
    config.simulate_training = true;
    config.announces_as = Some(7);
    let mut node = Node::new(config);
    let mut fetches = Vec::new();
    for op in ops.into_iter().take(200) {
        match op {
            NodeOp::Publish { topic, bytes } => {
                let topics = [
                    "general/nodes",
                    "general/n",
                    "fedreq/probe",
                    "fedreq/probe/n",
                    "fedreq/probe/m",
                ];
                let topic = topics[usize::from(topic) % topics.len()];
                node.handle_publish(Timestamp::ZERO, topic, &bytes)
            }
            NodeOp::Fetched { body, status } => {
                if let Some(fetch) = fetches.pop() {
                    let result = match body {
                        Some(body) => FetchResult::Body(body),
                        None if status == 0 => FetchResult::Unreachable("x".into()),
                        None => FetchResult::Status(status),
                    };
                    node.handle_fetched(Timestamp::ZERO, fetch, result);
                }
            }
            NodeOp::Approve { index } => {
                node.set_plan_status(usize::from(index), PlanStatus::Approved);
            }
        }
        while let Some(fetch) = node.poll_fetch() {
            fetches.push(fetch.id);
        }
        while let Some(transmit) = node.poll_transmit() {
            if transmit
                .topic
                .starts_with(fedreq_protocol::presence::PROBED)
            {
                let answer = fedreq_protocol::presence::Presence::decode(
                    &transmit.topic,
                    &transmit.payload,
                    &Limits::default(),
                )
                .expect("the node answers probes with its status");
                assert_eq!((answer.node_id.as_str(), answer.incarnation), ("n", 7));
                continue;
            }
            let message = NodeMessage::decode(
                &transmit.payload,
                &Limits {
                    max_payload: usize::MAX,
                },
            )
            .expect("the node sends valid messages");
            assert_eq!(message.message.node_id(), "n");
            if let NodeMessage::List(ListReply { databases, .. })
            | NodeMessage::Search(SearchReply { databases, .. }) = &message.message
            {
                assert!(
                    databases.iter().all(|d| d.get("path").is_none()),
                    "path is never sent"
                );
            }
        }
    }
}
