//! Hostile input, through the real decode path and the researcher core: each case gives its
//! typed error or counter, nothing panics, and the request in flight still completes with
//! exactly its own replies.

use std::time::Duration;

use fedreq_protocol::message::{self, Field, Kind, WireMessage};
use fedreq_protocol::{
    Command, Completion, DecodeError, Event, Limits, NodeMessage, Policy, Request, Researcher,
    ResearcherConfig, Submission, Timestamp, Unmatched,
};
use serde_json::{json, Map, Value};

const ME: &str = "me";

fn pong(node: &str, sequence: u64) -> Value {
    json!({"researcher_id": ME, "node_id": node, "success": true, "sequence": sequence, "command": "pong", "protocol_version": "1"})
}

/// A core with a ping to `a` and `b` in flight (sequence 0).
fn in_flight() -> Researcher {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    let ping = Submission::to_nodes(Request::ping(), vec!["a".into(), "b".into()])
        .with_policy(Policy::quiet(Duration::from_secs(5)));
    core.submit(Timestamp::ZERO, ping).unwrap();
    core.poll_transmit();
    core
}

/// The two right pongs, and the ping's outcome.
fn answer_the_ping(core: &mut Researcher, t: Timestamp) -> fedreq_protocol::Outcome {
    for node in ["a", "b"] {
        core.handle_publish(
            t,
            "general/researcher",
            pong(node, 0).to_string().as_bytes(),
        );
    }
    std::iter::from_fn(|| core.poll_event())
        .find_map(|e| match e {
            Event::Completed(o) => Some(o),
            _ => None,
        })
        .expect("the ping completes")
}

/// Feeds `payload`, then the two right pongs; returns the refusal (if any) and checks the ping
/// completed with exactly `a` and `b`.
fn survive(payload: &[u8]) -> (Option<DecodeError>, fedreq_protocol::Outcome) {
    let mut core = in_flight();
    let t = Timestamp::from_millis(1);
    core.handle_publish(t, "general/researcher", payload);
    let mut refusal = None;
    while let Some(event) = core.poll_event() {
        if let Event::Rejected { error, .. } = event {
            refusal = Some(error);
        }
    }
    let outcome = answer_the_ping(&mut core, t);
    assert_eq!(outcome.completion, Completion::AllAnswered);
    let mut online = outcome.online();
    online.sort();
    assert_eq!(online, ["a", "b"]);
    (refusal, outcome)
}

#[test]
fn truncated_json_at_every_length() {
    let whole = pong("a", 0).to_string();
    for cut in 0..whole.len() {
        let (refusal, _) = survive(&whole.as_bytes()[..cut]);
        assert!(
            matches!(refusal, Some(DecodeError::NotJson(_))),
            "cut at {cut}: {refusal:?}"
        );
    }
}

#[test]
fn invalid_utf8() {
    let mut bytes = pong("a", 0).to_string().into_bytes();
    let at = bytes.iter().position(|&b| b == b'a').unwrap();
    bytes[at] = 0xff;
    assert!(matches!(survive(&bytes).0, Some(DecodeError::NotJson(_))));
}

#[test]
fn a_hundred_thousand_nested_brackets() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        survive(deep.as_bytes()).0,
        Some(DecodeError::NotAnObject(_))
    ));
    let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(
        matches!(survive(objects.as_bytes()).0, Some(DecodeError::NotJson(e)) if e.contains("recursion"))
    );
}

#[test]
fn a_payload_of_100_mib_is_refused_before_parsing() {
    // TooLarge is decided on the length alone, before any parsing.
    let huge = vec![b' '; 100 << 20];
    let (refusal, _) = survive(&huge);
    assert_eq!(
        refusal,
        Some(DecodeError::TooLarge {
            size: 100 << 20,
            limit: Limits::default().max_payload
        })
    );
}

#[test]
fn duplicate_keys() {
    let text = r#"{"researcher_id": "me", "node_id": "a", "node_id": "b", "success": true, "sequence": 0, "command": "pong", "protocol_version": "1"}"#;
    assert_eq!(
        survive(text.as_bytes()).0,
        Some(DecodeError::DuplicateKey("node_id".into()))
    );
}

/// A valid value of `kind`, and one of another type.
fn valid(kind: Kind) -> Value {
    match kind {
        Kind::String => json!("s"),
        Kind::Bool => json!(true),
        Kind::Integer | Kind::Unsigned => json!(1),
        Kind::Number => json!(0.5),
        Kind::List => json!([]),
        Kind::StringList => json!(["t"]),
        Kind::Object => json!({}),
    }
}

fn wrong(kind: Kind) -> Value {
    match kind {
        Kind::String => json!(1),
        _ => json!("wrong"),
    }
}

fn object_of<T: WireMessage>() -> Map<String, Value> {
    let mut object: Map<String, Value> = T::FIELDS
        .iter()
        .map(|f| (f.name.to_owned(), valid(f.kind)))
        .collect();
    object.insert("researcher_id".into(), json!(ME));
    object.insert("command".into(), json!(T::COMMAND.as_str()));
    object.insert("protocol_version".into(), json!("1"));
    object
}

/// Every field of `T`: missing, null and wrongly typed, each refused with the field named.
fn every_field_of<T: WireMessage>() -> usize {
    let command = T::COMMAND;
    let base = object_of::<T>();
    assert!(NodeMessage::decode(
        Value::Object(base.clone()).to_string().as_bytes(),
        &Limits::default()
    )
    .is_ok());
    let mut cases = 0;
    for &Field {
        name,
        kind,
        nullable,
    } in T::FIELDS
    {
        let mut missing = base.clone();
        missing.remove(name);
        assert_eq!(
            survive(Value::Object(missing).to_string().as_bytes()).0,
            Some(DecodeError::MissingField {
                command,
                field: name
            })
        );

        let mut null = base.clone();
        null.insert(name.into(), Value::Null);
        let refusal = survive(Value::Object(null).to_string().as_bytes()).0;
        if nullable {
            assert_eq!(refusal, None, "{command}.{name} may be null");
        } else {
            assert_eq!(
                refusal,
                Some(DecodeError::Null {
                    command,
                    field: name
                })
            );
        }

        let mut typed = base.clone();
        typed.insert(name.into(), wrong(kind));
        assert!(
            matches!(survive(Value::Object(typed).to_string().as_bytes()).0, Some(DecodeError::WrongType { field, .. }) if field == name),
            "{command}.{name}"
        );
        cases += 3;
    }
    let mut extra = base;
    extra.insert("extra".into(), json!(1));
    assert_eq!(
        survive(Value::Object(extra).to_string().as_bytes()).0,
        Some(DecodeError::ExtraField {
            command,
            field: "extra".into()
        })
    );
    cases + 1
}

#[test]
fn every_field_of_every_reply_missing_null_or_mistyped_and_extra_fields() {
    let cases = every_field_of::<message::PingReply>()
        + every_field_of::<message::ListReply>()
        + every_field_of::<message::SearchReply>()
        + every_field_of::<message::ApprovalReply>()
        + every_field_of::<message::TrainingPlanStatusReply>()
        + every_field_of::<message::TrainReply>()
        + every_field_of::<message::SecaggReply>()
        + every_field_of::<message::SecaggDeleteReply>()
        + every_field_of::<message::LogMessage>()
        + every_field_of::<message::ErrorMessage>()
        + every_field_of::<message::AddScalarMessage>();
    assert!(cases > 150, "{cases} cases");
}

#[test]
fn negative_fractional_and_huge_sequences() {
    for text in ["-1", "0.5", "18446744073709551616", "1e400"] {
        let payload = pong("a", 0)
            .to_string()
            .replace("\"sequence\":0", &format!("\"sequence\":{text}"));
        let refusal = survive(payload.as_bytes()).0;
        assert!(
            matches!(
                refusal,
                Some(DecodeError::WrongType {
                    field: "sequence",
                    ..
                }) | Some(DecodeError::NotJson(_))
            ),
            "{text}: {refusal:?}"
        );
    }
}

#[test]
fn nan_and_infinities_where_numbers_are_expected() {
    for text in ["NaN", "Infinity", "-Infinity", "nan"] {
        let payload = pong("a", 0)
            .to_string()
            .replace("\"sequence\":0", &format!("\"sequence\":{text}"));
        assert!(
            matches!(survive(payload.as_bytes()).0, Some(DecodeError::NotJson(_))),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_command() {
    let payload = json!({"researcher_id": ME, "node_id": "a", "command": "frobnicate", "protocol_version": "1"});
    assert_eq!(
        survive(payload.to_string().as_bytes()).0,
        Some(DecodeError::UnknownCommand("frobnicate".into()))
    );
}

#[test]
fn protocol_versions() {
    for version in [
        json!("0"),
        json!("2"),
        json!("1.9"),
        json!("x"),
        Value::Null,
    ] {
        let mut payload = pong("a", 0);
        match &version {
            Value::Null => {
                payload.as_object_mut().unwrap().remove("protocol_version");
            }
            v => payload["protocol_version"] = v.clone(),
        }
        let refusal = survive(payload.to_string().as_bytes()).0;
        assert!(
            matches!(
                refusal,
                Some(DecodeError::Version {
                    command: Command::Pong,
                    ..
                })
            ),
            "{version}: {refusal:?}"
        );
    }
}

#[test]
fn our_sequence_for_another_researcher_is_not_counted() {
    let mut foreign = pong("a", 0);
    foreign["researcher_id"] = json!("impostor");
    let (refusal, outcome) = survive(foreign.to_string().as_bytes());
    assert_eq!(refusal, None);
    assert_eq!(outcome.counters.foreign, 1);
}

#[test]
fn a_reply_from_a_node_not_targeted() {
    let (_, outcome) = survive(pong("c", 0).to_string().as_bytes());
    assert_eq!(outcome.counters.not_targeted, 1);
}

#[test]
fn a_flood_of_100000_unmatched_replies_stays_within_the_mailbox() {
    let mut core = in_flight();
    let t = Timestamp::from_millis(1);
    for i in 0..100_000u64 {
        core.handle_publish(
            t,
            "general/researcher",
            pong(&format!("n{i}"), 1_000_000 + i).to_string().as_bytes(),
        );
        while core.poll_event().is_some() {}
    }
    let capacity = ResearcherConfig::new(ME).mailbox_capacity;
    assert_eq!(core.stats().mailbox_dropped, 100_000 - capacity as u64);
    let outcome = answer_the_ping(&mut core, t);
    assert_eq!(
        (outcome.replies.len(), outcome.counters.wrong_sequence),
        (2, 100_000)
    );
    let mail = core.take_mail(&[]);
    assert_eq!(mail.len(), capacity);
    assert_eq!(
        mail[0].message.node_id(),
        format!("n{}", 100_000 - capacity),
        "the oldest were dropped"
    );
    assert!(mail.iter().all(|m| m.reason == Unmatched::Unknown));
}
