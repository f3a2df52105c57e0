//! Properties over random inputs: decoding never panics, encode/decode is the identity, and
//! the researcher core completes every request exactly once, attributes no reply to a
//! request it does not match, and gives the same outputs for the same inputs.

use std::collections::BTreeMap;
use std::time::Duration;

use fedreq_protocol::message::{self, Field, Kind, WireMessage};
use fedreq_protocol::{
    Event, Limits, NodeMessage, Policy, Request, Researcher, ResearcherConfig, Submission,
    Timestamp,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const ME: &str = "me";
const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

// ---------- decoding ----------

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes, &Limits::default());
        let _ = NodeMessage::decode(&bytes, &Limits::default());
    }

    #[test]
    fn decoding_mangled_samples_never_panics(cut in 0usize..400, junk in "\\PC{0,8}", at in 0usize..400) {
        let sample = json!({"researcher_id": "r", "node_id": "n", "success": true, "count": 1,
            "databases": [{"name": "d", "shape": [1, 2]}], "command": "list", "protocol_version": "1"}).to_string();
        let mut text = sample.clone();
        text.truncate(cut.min(text.len()));
        let mut spliced = sample.clone();
        let at = (0..=at.min(sample.len())).rev().find(|&i| sample.is_char_boundary(i)).unwrap_or(0);
        spliced.insert_str(at, &junk);
        for candidate in [text, spliced] {
            let _ = NodeMessage::decode(candidate.as_bytes(), &Limits::default());
            let _ = Request::decode(candidate.as_bytes(), &Limits::default());
        }
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn value_of(field: Field) -> BoxedStrategy<Value> {
    let value = match field.kind {
        Kind::String => "\\PC{0,16}".prop_map(Value::from).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Integer => any::<i64>().prop_map(Value::from).boxed(),
        Kind::Unsigned => any::<u64>().prop_map(Value::from).boxed(),
        Kind::Number => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from)
            .boxed(),
        Kind::List => proptest::collection::vec(json_value(), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Kind::StringList => proptest::collection::vec("\\PC{0,8}".prop_map(Value::from), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Kind::Object => proptest::collection::btree_map("\\PC{0,8}", json_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
    };
    if field.nullable {
        prop_oneof![1 => Just(Value::Null), 3 => value].boxed()
    } else {
        value
    }
}

/// A random valid wire object for message type `T`, built from its schema.
fn object_of<T: WireMessage>() -> BoxedStrategy<Value> {
    let fields: Vec<BoxedStrategy<(String, Value)>> = T::FIELDS
        .iter()
        .map(|&f| {
            value_of(f)
                .prop_map(move |v| (f.name.to_owned(), v))
                .boxed()
        })
        .collect();
    fields
        .prop_map(|pairs| {
            let mut object: Map<String, Value> = pairs.into_iter().collect();
            object.insert("command".into(), T::COMMAND.as_str().into());
            object.insert("protocol_version".into(), "1".into());
            Value::Object(object)
        })
        .boxed()
}

fn any_request_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        object_of::<message::PingRequest>(),
        object_of::<message::ListRequest>(),
        object_of::<message::SearchRequest>(),
        object_of::<message::ApprovalRequest>(),
        object_of::<message::TrainingPlanStatusRequest>(),
        object_of::<message::TrainRequest>(),
        object_of::<message::SecaggRequest>(),
        object_of::<message::SecaggDeleteRequest>(),
    ]
}

fn any_node_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        object_of::<message::PingReply>(),
        object_of::<message::ListReply>(),
        object_of::<message::SearchReply>(),
        object_of::<message::ApprovalReply>(),
        object_of::<message::TrainingPlanStatusReply>(),
        object_of::<message::TrainReply>(),
        object_of::<message::SecaggReply>(),
        object_of::<message::SecaggDeleteReply>(),
        object_of::<message::LogMessage>(),
        object_of::<message::ErrorMessage>(),
        object_of::<message::AddScalarMessage>(),
    ]
}

proptest! {
    #[test]
    fn request_encode_decode_is_identity(object in any_request_object()) {
        let limits = Limits::default();
        let message = Request::decode(object.to_string().as_bytes(), &limits).unwrap().message;
        let encoded = message.encode();
        prop_assert_eq!(serde_json::from_slice::<Value>(&encoded).unwrap(), object);
        prop_assert_eq!(Request::decode(&encoded, &limits).unwrap().message, message);
    }

    #[test]
    fn node_message_encode_decode_is_identity(object in any_node_object()) {
        let limits = Limits::default();
        let message = NodeMessage::decode(object.to_string().as_bytes(), &limits).unwrap().message;
        let encoded = message.encode();
        prop_assert_eq!(serde_json::from_slice::<Value>(&encoded).unwrap(), object);
        prop_assert_eq!(NodeMessage::decode(&encoded, &limits).unwrap().message, message);
    }
}

// ---------- the researcher core ----------

#[derive(Clone, Debug)]
enum Op {
    Submit {
        kind: u8,
        targets: Option<Vec<usize>>,
        policy: u8,
        timeout_ms: u16,
    },
    Reply {
        node: usize,
        pick: usize,
        how: How,
    },
    Tick {
        micros: u32,
    },
}

#[derive(Clone, Copy, Debug)]
enum How {
    /// A reply to one of the requests sent so far (perhaps completed, perhaps twice).
    Matching,
    /// A sequence never sent.
    Stale,
    /// Right command and sequence, another researcher.
    Foreign,
    /// Bytes that do not decode.
    Malformed,
    /// An `error` message.
    Error,
}

fn op() -> impl Strategy<Value = Op> {
    let targets = proptest::option::of(proptest::collection::vec(0..NODES.len(), 1..4));
    prop_oneof![
        2 => (0u8..4, targets, 0u8..5, 1u16..3000)
            .prop_map(|(kind, targets, policy, timeout_ms)| Op::Submit { kind, targets, policy, timeout_ms }),
        6 => (0..NODES.len(), any::<usize>(), prop_oneof![
                6 => Just(How::Matching), 1 => Just(How::Stale), 1 => Just(How::Foreign),
                1 => Just(How::Malformed), 1 => Just(How::Error)])
            .prop_map(|(node, pick, how)| Op::Reply { node, pick, how }),
        3 => (0u32..2_000_000).prop_map(|micros| Op::Tick { micros }),
    ]
}

fn policy_for(choice: u8, timeout: Duration) -> Policy {
    match choice {
        0 => Policy::quiet(timeout),
        1 => Policy::fedbiomed(timeout),
        2 => Policy::quiet(timeout).with_min_replies(2, timeout / 2),
        3 => Policy::quiet(timeout)
            .with_stop_on_error()
            .with_roster(NODES.iter().map(|s| s.to_string()).collect()),
        _ => Policy::quiet(timeout).with_deadline(timeout * 2),
    }
}

/// What was sent: command of the reply, sequence (if any).
struct Sent {
    reply: &'static str,
    sequence: Option<u64>,
}

/// Runs `ops`, then lets every timer fire; returns a transcript of all outputs,
/// the ids submitted, and the outcomes.
fn run(ops: &[Op]) -> (Vec<String>, Vec<u64>, Vec<fedreq_protocol::Outcome>) {
    let mut core = Researcher::new(ResearcherConfig {
        mailbox_capacity: 16,
        ..ResearcherConfig::new(ME)
    });
    let mut now = Timestamp::ZERO;
    let mut sent: Vec<Sent> = Vec::new();
    let mut submitted = Vec::new();
    let mut transcript = Vec::new();
    let mut outcomes = Vec::new();
    let drain = |core: &mut Researcher,
                 sent: &mut Vec<Sent>,
                 transcript: &mut Vec<String>,
                 outcomes: &mut Vec<_>| {
        while let Some(t) = core.poll_transmit() {
            let value: Value = serde_json::from_slice(&t.payload).unwrap();
            let reply = match value["command"].as_str().unwrap() {
                "ping" => "pong",
                "list" => "list",
                "search" => "search",
                _ => "approval",
            };
            sent.push(Sent {
                reply,
                sequence: value["sequence"].as_u64(),
            });
            transcript.push(format!("{} {}", t.topic, value));
        }
        while let Some(event) = core.poll_event() {
            transcript.push(format!("{event:?}"));
            if let Event::Completed(outcome) = event {
                outcomes.push(outcome);
            }
        }
        assert!(core.take_mail(&[]).len() <= 16);
    };
    for op in ops {
        match op {
            Op::Submit {
                kind,
                targets,
                policy,
                timeout_ms,
            } => {
                let request = match kind {
                    0 => Request::ping(),
                    1 => Request::list(),
                    2 => Request::search(vec!["t".into()]),
                    _ => Request::approval("d", "http://x/p.py"),
                };
                let timeout = Duration::from_millis(*timeout_ms as u64);
                let mut submission = match targets {
                    None => Submission::broadcast(request),
                    Some(t) => Submission::to_nodes(
                        request,
                        t.iter().map(|&i| NODES[i].to_string()).collect(),
                    ),
                };
                submission.policy = policy_for(*policy, timeout);
                submitted.push(core.submit(now, submission).unwrap().0);
            }
            Op::Reply { node, pick, how } => {
                let node = NODES[*node];
                let payload = match (how, sent.get(pick % sent.len().max(1))) {
                    (How::Malformed, _) => b"{\"command\": \"pong\", \"sequence\": -1}".to_vec(),
                    (How::Error, _) => json!({"researcher_id": ME, "node_id": node, "errnum": "FB301: Protocol error",
                        "extra_msg": "x", "command": "error", "protocol_version": "1"}).to_string().into_bytes(),
                    (_, None) => continue,
                    (how, Some(s)) => {
                        let mut reply = json!({"researcher_id": ME, "node_id": node, "success": true,
                            "command": s.reply, "protocol_version": "1"});
                        match s.reply {
                            "pong" => {}
                            "approval" => { reply["status"] = json!(200); }
                            _ => { reply["databases"] = json!([]); reply["count"] = json!(0); }
                        }
                        if let Some(sequence) = s.sequence {
                            reply["sequence"] = json!(if matches!(how, How::Stale) { sequence + 1_000_000 } else { sequence });
                        }
                        if matches!(how, How::Foreign) {
                            reply["researcher_id"] = json!("other");
                        }
                        reply.to_string().into_bytes()
                    }
                };
                core.handle_publish(now, "general/researcher", &payload);
            }
            Op::Tick { micros } => {
                now = now + Duration::from_micros(*micros as u64);
                core.handle_timeout(now);
            }
        }
        drain(&mut core, &mut sent, &mut transcript, &mut outcomes);
    }
    while let Some(at) = core.poll_timeout() {
        core.handle_timeout(at);
        drain(&mut core, &mut sent, &mut transcript, &mut outcomes);
    }
    assert_eq!(core.in_flight(), 0);
    (transcript, submitted, outcomes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_request_completes_exactly_once(ops in proptest::collection::vec(op(), 0..80)) {
        let (_, submitted, outcomes) = run(&ops);
        let mut completions: BTreeMap<u64, usize> = BTreeMap::new();
        for outcome in &outcomes {
            *completions.entry(outcome.id.0).or_default() += 1;
        }
        prop_assert!(completions.values().all(|&n| n == 1), "{:?}", completions);
        prop_assert_eq!(completions.keys().copied().collect::<Vec<_>>(), submitted);
    }

    #[test]
    fn no_reply_is_attributed_to_a_request_it_does_not_match(ops in proptest::collection::vec(op(), 0..80)) {
        let (_, _, outcomes) = run(&ops);
        for outcome in outcomes {
            let mut nodes = std::collections::BTreeSet::new();
            for reply in &outcome.replies {
                prop_assert_eq!(Some(reply.command()), outcome.command.map(fedreq_protocol::Command::reply));
                prop_assert_eq!(reply.researcher_id(), ME);
                prop_assert_eq!(reply.sequence(), outcome.sequence);
                if let Some(targets) = &outcome.targets {
                    prop_assert!(targets.iter().any(|t| t == reply.node_id()));
                }
                prop_assert!(nodes.insert(reply.node_id().to_owned()), "two replies from one node");
            }
            for error in &outcome.errors {
                if let Some(targets) = &outcome.targets {
                    prop_assert!(targets.contains(&error.node_id));
                }
            }
            for missing in &outcome.missing {
                prop_assert!(!nodes.contains(missing));
            }
        }
    }

    #[test]
    fn same_inputs_give_the_same_outputs(ops in proptest::collection::vec(op(), 0..80)) {
        prop_assert_eq!(run(&ops).0, run(&ops).0);
    }
}
