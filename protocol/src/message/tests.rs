use super::fast::command_hint;
use super::*;
use crate::error::DecodeError;
use serde_json::json;

fn decode_reply(value: Value) -> Result<NodeMessage, DecodeError> {
    NodeMessage::decode(value.to_string().as_bytes(), &Limits::default()).map(|d| d.message)
}

fn pong() -> Value {
    json!({"researcher_id": "r", "node_id": "n", "success": true, "sequence": 3,
           "command": "pong", "protocol_version": "1"})
}

#[test]
fn a_node_message_is_small_its_large_kinds_boxed() {
    // A request keeps every reply it takes: a train reply or a scalar must not make every pong
    // as large as itself.
    assert!(std::mem::size_of::<NodeMessage>() <= 104);
}

#[test]
fn pong_decodes_and_reencodes_equal() {
    let message = decode_reply(pong()).unwrap();
    assert_eq!(message.command(), Command::Pong);
    assert_eq!(message.sequence(), Some(3));
    let again: Value = serde_json::from_slice(&message.encode()).unwrap();
    assert_eq!(again, pong());
}

#[test]
fn each_field_rule_has_its_error_naming_command_and_field() {
    let mut missing = pong();
    missing.as_object_mut().unwrap().remove("sequence");
    assert_eq!(
        decode_reply(missing),
        Err(DecodeError::MissingField {
            command: Command::Pong,
            field: "sequence"
        })
    );

    let mut extra = pong();
    extra["colour"] = json!("blue");
    assert_eq!(
        decode_reply(extra),
        Err(DecodeError::ExtraField {
            command: Command::Pong,
            field: "colour".into()
        })
    );

    let mut wrong = pong();
    wrong["success"] = json!("yes");
    let err = decode_reply(wrong).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::WrongType {
            command: Command::Pong,
            field: "success",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "`pong`: field `success` must be a boolean, not a string"
    );

    let mut null = pong();
    null["node_id"] = Value::Null;
    assert_eq!(
        decode_reply(null),
        Err(DecodeError::Null {
            command: Command::Pong,
            field: "node_id"
        })
    );
}

#[test]
fn nullable_fields_take_null_but_must_be_present() {
    let scalar = json!({"researcher_id": "r", "node_id": "n", "job_id": "j", "train": true,
        "test": false, "test_on_local_updates": false, "test_on_global_updates": false,
        "metric": {"Loss": 0.5}, "epoch": null, "total_samples": 1, "batch_samples": 1,
        "num_batches": 1, "num_samples_trained": null, "iteration": 1,
        "command": "add_scalar", "protocol_version": "1"});
    assert_eq!(
        decode_reply(scalar.clone()).unwrap().command(),
        Command::AddScalar
    );
    let mut missing = scalar;
    missing.as_object_mut().unwrap().remove("epoch");
    assert_eq!(
        decode_reply(missing),
        Err(DecodeError::MissingField {
            command: Command::AddScalar,
            field: "epoch"
        })
    );
}

#[test]
fn envelope_errors() {
    let limits = Limits { max_payload: 10 };
    assert_eq!(
        NodeMessage::decode(&[b' '; 11], &limits),
        Err(DecodeError::TooLarge {
            size: 11,
            limit: 10
        })
    );
    type Check = fn(&DecodeError) -> bool;
    let cases: [(&[u8], Check); 7] = [
        (b"{\"command\": ", |e| matches!(e, DecodeError::NotJson(_))),
        (b"\xff\xfe", |e| matches!(e, DecodeError::NotJson(_))),
        (b"[1, 2]", |e| matches!(e, DecodeError::NotAnObject(_))),
        (b"{\"a\": 1, \"a\": 2}", |e| {
            *e == DecodeError::DuplicateKey("a".into())
        }),
        (b"{\"a\": 1}", |e| *e == DecodeError::MissingCommand),
        (b"{\"command\": 7}", |e| *e == DecodeError::CommandNotString),
        (b"{\"command\": \"ping\"}", |e| {
            *e == DecodeError::UnknownCommand("ping".into())
        }),
    ];
    for (bytes, expected) in cases {
        let err = NodeMessage::decode(bytes, &Limits::default()).unwrap_err();
        assert!(
            expected(&err),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn version_is_judged_after_the_command_is_known() {
    for (version, ok) in [
        (json!("1"), true),
        (json!("2"), false),
        (json!("1.9"), false),
        (json!("x"), false),
    ] {
        let mut message = pong();
        message["protocol_version"] = version.clone();
        let result = decode_reply(message);
        assert_eq!(result.is_ok(), ok, "{version}");
        if !ok {
            let err = result.unwrap_err();
            assert!(matches!(
                err,
                DecodeError::Version {
                    command: Command::Pong,
                    ..
                }
            ));
            assert!(err.to_string().contains("1.0.0"), "{err}");
        }
    }
    let mut missing = pong();
    missing.as_object_mut().unwrap().remove("protocol_version");
    let err = decode_reply(missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`pong`: protocol_version: missing: the sender predates versioned messaging (ours is 1.0.0)"
    );
}

#[test]
fn escaped_command_and_version_decode_as_plain_ones() {
    // Decoding borrows both from the payload; escapes must still be read.
    let plain = decode_reply(pong()).unwrap();
    let escaped = br#"{"researcher_id": "r", "node_id": "n", "success": true, "sequence": 3,
        "command": "po\u006eg", "protocol_version": "\u0031"}"#;
    let decoded = NodeMessage::decode(escaped, &Limits::default()).unwrap();
    assert_eq!(decoded.message, plain);
}

#[test]
fn numbers_are_checked_for_range_and_sign() {
    for bad in [
        json!(-1),
        json!(1.5),
        json!(18446744073709551616u128 as f64),
        json!(true),
    ] {
        let mut message = pong();
        message["sequence"] = bad.clone();
        let err = decode_reply(message).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::WrongType {
                    field: "sequence",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
    let mut max = pong();
    max["sequence"] = json!(u64::MAX);
    assert_eq!(decode_reply(max).unwrap().sequence(), Some(u64::MAX));
}

#[test]
fn requests_and_replies_share_names_but_not_schemas() {
    let request = json!({"researcher_id": "r", "command": "list", "protocol_version": "1"});
    let bytes = request.to_string();
    assert!(Request::decode(bytes.as_bytes(), &Limits::default()).is_ok());
    assert_eq!(
        NodeMessage::decode(bytes.as_bytes(), &Limits::default()),
        Err(DecodeError::MissingField {
            command: Command::List,
            field: "success"
        })
    );
}

proptest::proptest! {
    /// Whatever the fast path accepts, the schema path accepts as the same message.
    #[test]
    fn the_fast_path_never_accepts_what_the_schema_refuses(
        field in 0usize..8,
        change in 0u8..6,
        base in 0usize..3,
    ) {
        let bases = [
            pong(),
            json!({"researcher_id": "r", "node_id": "n", "job_id": "j", "train": true, "test": false,
                   "test_on_local_updates": false, "test_on_global_updates": false, "metric": {"Loss": 0.5},
                   "epoch": null, "total_samples": 1, "batch_samples": 1, "num_batches": 1,
                   "num_samples_trained": 3, "iteration": 1, "command": "add_scalar", "protocol_version": "1"}),
            json!({"researcher_id": "r", "node_id": "n", "success": true, "count": 1,
                   "databases": [{"name": "d"}], "command": "list", "protocol_version": "1"}),
        ];
        let mut value = bases[base].clone();
        if change == 5 {
            // The same fields as a list, with a `command` nested where a value may be any.
            let fields: Vec<Value> = value.as_object().unwrap().values().cloned().collect();
            value = json!([fields, {"command": value["command"]}]);
        }
        if let Some(object) = value.as_object_mut() {
        let key = object.keys().nth(field % object.len()).unwrap().clone();
        match change {
            0 => { object.remove(&key); }
            1 => { object.insert(key, Value::Null); }
            2 => { object.insert(key, json!("text")); }
            3 => { object.insert(key, json!(-1.5)); }
            4 => { object.insert("extra".into(), json!(1)); }
            _ => {}
        }
        }
        let bytes = value.to_string().into_bytes();
        let limits = Limits::default();
        let fast = NodeMessage::decode(&bytes, &limits);
        let schema = NodeMessage::decode_schema(&bytes, &limits);
        proptest::prop_assert_eq!(fast, schema);
    }
}

#[test]
fn an_array_is_not_a_message_even_when_its_fields_would_fit() {
    let list = br#"["me", true, [{"command": "list"}], "n1", 1, "list", "1"]"#;
    assert!(matches!(
        NodeMessage::decode(list, &Limits::default()),
        Err(DecodeError::NotAnObject(_))
    ));
}

#[test]
fn command_hints_are_plain_strings_only() {
    assert_eq!(
        command_hint(br#"{"a": 1, "command" : "pong"}"#),
        Some("pong")
    );
    assert_eq!(command_hint(br#"{"command": "po\u006eg"}"#), None);
    assert_eq!(command_hint(br#"{"command": 3}"#), None);
    assert_eq!(command_hint(br#"{"x": "command"}"#), None);
}

#[test]
fn from_value_adds_our_version_when_absent() {
    let object = json!({"researcher_id": "r", "tags": ["a"], "command": "search"});
    let request = Request::from_value(object.as_object().unwrap().clone()).unwrap();
    assert_eq!(request.to_value()["protocol_version"], "1");
}
