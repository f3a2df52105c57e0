//! Presence and the roster: the researcher core's rules for who is out there, one test each.

use std::time::Duration;

use fedreq_protocol::presence::{self, Presence, Status};
use fedreq_protocol::{
    Completion, ConnectionState, DecodeError, Event, Outcome, Policy, Request, Researcher,
    ResearcherConfig, Submission, Timestamp,
};
use serde_json::{json, Value};

const ME: &str = "researcher_me";

fn ms(ms: f64) -> Timestamp {
    Timestamp::from_duration(Duration::from_secs_f64(ms / 1000.0))
}

fn status(core: &mut Researcher, at: Timestamp, node: &str, status: Status, incarnation: u64) {
    let presence = Presence::new(node, status, incarnation);
    core.handle_publish(at, &presence::topic(node), &presence.encode());
}

fn pong(core: &mut Researcher, at: Timestamp, node: &str, sequence: u64) {
    let pong = json!({"researcher_id": ME, "node_id": node, "success": true, "sequence": sequence,
                      "command": "pong", "protocol_version": "1"});
    core.handle_publish(at, "general/researcher", pong.to_string().as_bytes());
}

fn outcome(core: &mut Researcher, until: Timestamp) -> Outcome {
    loop {
        while let Some(event) = core.poll_event() {
            if let Event::Completed(outcome) = event {
                return outcome;
            }
        }
        match core.poll_timeout() {
            Some(at) if at <= until => core.handle_timeout(at),
            _ => panic!("nothing completed by {until:?}"),
        }
    }
}

fn online(core: &Researcher) -> Vec<String> {
    core.roster()
        .iter()
        .filter(|(_, m)| m.online())
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn a_broadcast_expects_the_nodes_online_and_completes_a_settle_window_after_the_last() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    for node in ["a", "b"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    core.submit(ms(10.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(11.0), "a", 0);
    pong(&mut core, ms(14.0), "b", 0);
    let outcome = outcome(&mut core, ms(60_000.0));
    assert_eq!(outcome.completion, Completion::Settled);
    // The last expected reply came 4 ms after sending: a quarter of it is the settle window.
    assert_eq!(outcome.elapsed, Duration::from_millis(5));
    assert_eq!(outcome.online(), ["a", "b"]);
}

#[test]
fn a_targeted_request_to_a_node_that_dies_ends_a_return_window_after_its_will() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 7);
    let policy = Policy::quiet(Duration::from_secs(30)).with_return_window(Duration::from_secs(2));
    core.submit(
        ms(1.0),
        Submission::to_nodes(Request::ping(), vec!["a".into()]).with_policy(policy),
    )
    .unwrap();
    status(&mut core, ms(250.0), "a", Status::Offline, 7);
    assert!(online(&core).is_empty(), "the roster says so at once");
    let outcome = outcome(&mut core, ms(3_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed, outcome.missing),
        (
            Completion::Offline,
            Duration::from_micros(2_249_000),
            vec!["a".to_owned()]
        )
    );
}

#[test]
fn a_node_back_within_its_return_window_is_awaited_and_its_reply_counts() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    for node in ["a", "b"] {
        status(&mut core, ms(0.0), node, Status::Online, 7);
    }
    let policy = Policy::quiet(Duration::from_secs(30)).with_return_window(Duration::from_secs(2));
    core.submit(
        ms(1.0),
        Submission::to_nodes(Request::ping(), vec!["a".into(), "b".into()]).with_policy(policy),
    )
    .unwrap();
    pong(&mut core, ms(2.0), "b", 0);
    // a's connection breaks: the broker fires its will; a is back on a new session.
    status(&mut core, ms(10.0), "a", Status::Offline, 7);
    status(&mut core, ms(900.0), "a", Status::Online, 7);
    pong(&mut core, ms(901.0), "a", 0);
    let outcome = outcome(&mut core, ms(1_000.0));
    assert_eq!(outcome.completion, Completion::AllAnswered);
    assert_eq!(outcome.online(), ["b", "a"]);
    assert!(outcome.missing.is_empty());
}

#[test]
fn a_node_back_as_a_new_run_is_missing_at_once_from_what_must_not_run_twice() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 7);
    let policy = Policy::quiet(Duration::from_secs(30));
    let approval = Request::approval("plan", "http://repo/plan.py");
    core.submit(
        ms(1.0),
        Submission::to_nodes(approval, vec!["a".into()]).with_policy(policy),
    )
    .unwrap();
    status(&mut core, ms(10.0), "a", Status::Offline, 7);
    // It crashed and restarted at 200 ms: its new run knows nothing of the approval.
    status(&mut core, ms(300.0), "a", Status::Online, 200_000_000);
    let outcome = outcome(&mut core, ms(301.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed, outcome.missing),
        (
            Completion::Offline,
            Duration::from_millis(299),
            vec!["a".to_owned()]
        )
    );
}

#[test]
fn the_return_window_waits_while_our_own_connection_is_down() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 7);
    let policy = Policy::quiet(Duration::from_secs(60)).with_return_window(Duration::from_secs(2));
    core.submit(
        ms(1.0),
        Submission::to_nodes(Request::ping(), vec!["a".into()]).with_policy(policy),
    )
    .unwrap();
    // A broker shutting down fires every will, then closes our connection too.
    status(&mut core, ms(10.0), "a", Status::Offline, 7);
    core.handle_connection(ms(11.0), ConnectionState::Disconnected("reset".into()));
    core.handle_timeout(ms(19_999.0));
    let completed =
        std::iter::from_fn(|| core.poll_event()).any(|event| matches!(event, Event::Completed(_)));
    assert!(!completed, "the return window waits for our connection");
    core.handle_connection(ms(20_000.0), ConnectionState::Connected);
    // Counted again from our return: a comes back 1.5 s later and answers.
    status(&mut core, ms(21_500.0), "a", Status::Online, 7);
    pong(&mut core, ms(21_501.0), "a", 0);
    let outcome = outcome(&mut core, ms(22_000.0));
    assert_eq!(outcome.online(), ["a"]);
    assert!(outcome.missing.is_empty());
}

#[test]
fn an_old_incarnations_status_never_counts_for_a_new_one() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 2);
    status(&mut core, ms(1.0), "a", Status::Offline, 1);
    assert_eq!(
        online(&core),
        ["a"],
        "a retained offline of run 1 does not end run 2"
    );
    status(&mut core, ms(2.0), "a", Status::Offline, 2);
    assert!(
        online(&core).is_empty(),
        "run 2's will: its connection broke"
    );
    status(&mut core, ms(3.0), "a", Status::Online, 2);
    assert_eq!(
        online(&core),
        ["a"],
        "run 2 is back on a new session (a broker restart fires every will)"
    );
    status(&mut core, ms(4.0), "a", Status::Online, 3);
    assert_eq!(online(&core), ["a"]);
    assert_eq!(core.roster()["a"].incarnation, 3);
}

#[test]
fn malformed_statuses_are_refused_with_a_typed_error_and_counted() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    let good = |node: &str| {
        json!({"node_id": node, "status": "online", "incarnation": 1,
                                   "command": "presence", "protocol_version": "1"})
    };
    let mut extra = good("a");
    extra["since"] = json!(0);
    let mut missing = good("a");
    missing.as_object_mut().unwrap().remove("incarnation");
    let mut bad_status = good("a");
    bad_status["status"] = json!("sleeping");
    let mut negative = good("a");
    negative["incarnation"] = json!(-1);
    type Check = fn(&DecodeError) -> bool;
    let cases: [(&str, Value, Check); 5] = [
        (
            "fedreq/presence/a",
            extra,
            |e| matches!(e, DecodeError::ExtraField { field, .. } if field == "since"),
        ),
        ("fedreq/presence/a", missing, |e| {
            matches!(
                e,
                DecodeError::MissingField {
                    field: "incarnation",
                    ..
                }
            )
        }),
        ("fedreq/presence/a", bad_status, |e| {
            matches!(
                e,
                DecodeError::WrongValue {
                    field: "status",
                    ..
                }
            )
        }),
        ("fedreq/presence/a", negative, |e| {
            matches!(
                e,
                DecodeError::WrongType {
                    field: "incarnation",
                    ..
                }
            )
        }),
        ("fedreq/presence/b", good("a"), |e| {
            matches!(e, DecodeError::WrongTopic { .. })
        }),
    ];
    for (topic, payload, expected) in &cases {
        core.handle_publish(ms(0.0), topic, payload.to_string().as_bytes());
        match core.poll_event() {
            Some(Event::Rejected { error, .. }) => assert!(expected(&error), "{payload}: {error}"),
            other => panic!("{payload}: {other:?}"),
        }
    }
    core.handle_publish(ms(0.0), "fedreq/presence/a", b"not json");
    assert_eq!(core.stats().presence_refused, 6);
    assert!(core.roster().is_empty());
}

#[test]
fn a_broadcast_finds_nodes_with_and_without_presence() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "with", Status::Online, 1);
    // v4.4 nodes announce nothing: "quick" answers within the settle window, "slow" after it.
    core.submit(ms(10.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(14.0), "with", 0);
    pong(&mut core, ms(14.5), "quick", 0);
    let first = outcome(&mut core, ms(60_000.0));
    assert_eq!(first.online(), ["with", "quick"]);
    pong(&mut core, ms(40.0), "slow", 0);
    // The next broadcast expects the nodes heard, "slow" included.
    core.submit(ms(100.0), Submission::broadcast(Request::ping()))
        .unwrap();
    for node in ["with", "quick", "slow"] {
        pong(&mut core, ms(101.0), node, 1);
    }
    let second = outcome(&mut core, ms(60_000.0));
    assert_eq!(second.completion, Completion::AllAnswered);
    let mut found = second.online();
    found.sort();
    assert_eq!(found, ["quick", "slow", "with"]);
    assert!(
        second.elapsed < Duration::from_millis(10),
        "{:?}",
        second.elapsed
    );
}

#[test]
fn broadcasts_settle_only_until_first_contact_is_made() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 1);
    let ping = |core: &mut Researcher, at: f64, sequence: u64, nodes: &[&str]| {
        core.submit(ms(at), Submission::broadcast(Request::ping()))
            .unwrap();
        for node in nodes {
            pong(core, ms(at + 4.0), node, sequence);
        }
        outcome(core, ms(60_000.0))
    };
    let first = ping(&mut core, 10.0, 0, &["a"]);
    assert_eq!(
        first.elapsed,
        Duration::from_millis(5),
        "the first one settles"
    );
    let second = ping(&mut core, 100.0, 1, &["a"]);
    assert_eq!(
        second.elapsed,
        Duration::from_millis(4),
        "everyone announces: no window"
    );
    // A node without presence answers, after the last expected one: too late for this
    // broadcast, it is expected by the next ones, which end as soon as both answered.
    let third = ping(&mut core, 200.0, 2, &["a", "silent"]);
    assert_eq!(third.online(), ["a"]);
    let fourth = ping(&mut core, 300.0, 3, &["a", "silent"]);
    assert_eq!(
        (fourth.online().len(), fourth.elapsed, fourth.completion),
        (2, Duration::from_millis(4), Completion::AllAnswered)
    );
}

#[test]
fn each_connection_probes_and_a_node_that_announces_itself_answers_live() {
    use fedreq_protocol::{Node, NodeConfig};
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    core.handle_connection(ms(0.0), ConnectionState::Connected);
    let probe = core.poll_transmit().expect("a probe on connecting");
    assert_eq!(probe.topic, presence::PROBE);
    assert!(
        probe.at_most_once,
        "a lost probe is asked again on reconnecting"
    );

    let announcing = |announces_as| NodeConfig {
        announces_as,
        ..NodeConfig::new("n1", Vec::new().into())
    };
    let mut silent = Node::new(announcing(None));
    silent.handle_publish(ms(1.0), presence::PROBE, &probe.payload);
    assert!(silent.poll_transmit().is_none(), "v4.4's nodes say nothing");

    let mut node = Node::new(announcing(Some(7)));
    assert!(node.subscriptions().iter().any(|t| t == presence::PROBE));
    // Any publish there is a probe: its payload is not read.
    node.handle_publish(ms(1.0), presence::PROBE, b"\xff not json");
    let answer = node.poll_transmit().expect("its status, again");
    assert!(node.poll_transmit().is_none());
    assert_eq!(answer.topic, presence::probed_topic("n1"));
    let decoded = Presence::decode(&answer.topic, &answer.payload, &Default::default()).unwrap();
    assert_eq!(decoded, Presence::new("n1", Status::Online, 7));

    // Delivered live (no retained status reached us): the node is online, and expected.
    core.handle_publish(ms(2.0), &answer.topic, &answer.payload);
    assert_eq!(online(&core), ["n1"]);
    node.announce_as(Some(8));
    node.handle_publish(ms(3.0), presence::PROBE, b"");
    let restarted = node.poll_transmit().unwrap();
    let decoded = Presence::decode(&restarted.topic, &restarted.payload, &Default::default());
    assert_eq!(decoded.unwrap().incarnation, 8);
}

#[test]
fn a_node_that_says_online_again_is_asked_again_what_is_safe_to_repeat() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 7);
    let to_a = |request| Submission::to_nodes(request, vec!["a".into()]);
    core.submit(ms(1.0), to_a(Request::ping())).unwrap();
    let approval = Request::approval("plan", "http://repo/plan.py");
    core.submit(ms(1.0), to_a(approval)).unwrap();
    while core.poll_transmit().is_some() {}
    let commands = |core: &mut Researcher| {
        let mut commands = Vec::new();
        while let Some(t) = core.poll_transmit() {
            let message: Value = serde_json::from_slice(&t.payload).unwrap();
            commands.push((t.topic, message["command"].as_str().unwrap().to_owned()));
        }
        commands
    };
    // Its answer to someone's probe says nothing new.
    let probed = Presence::new("a", Status::Online, 7);
    core.handle_publish(ms(5.0), &presence::probed_topic("a"), &probed.encode());
    assert!(commands(&mut core).is_empty());
    // Its member died; it connected again, on a new session elsewhere, and says so: the
    // ping may be lost and goes again, the approval must not run twice and waits its time.
    status(&mut core, ms(900.0), "a", Status::Online, 7);
    assert_eq!(
        commands(&mut core),
        [("general/a".to_owned(), "ping".to_owned())]
    );
    // Said again (anyone may publish it): each request is asked again once at most.
    status(&mut core, ms(900.5), "a", Status::Online, 7);
    assert!(commands(&mut core).is_empty());
    pong(&mut core, ms(901.0), "a", 0);
    let ping = outcome(&mut core, ms(1_000.0));
    assert_eq!(
        (ping.completion, ping.online()),
        (Completion::AllAnswered, vec!["a".to_owned()])
    );
    let approval = outcome(&mut core, ms(10_000.0));
    assert_eq!(
        (approval.completion, approval.missing),
        (Completion::QuietPeriod, vec!["a".to_owned()])
    );
}

#[test]
fn a_node_that_stops_ends_the_request_awaiting_it_and_the_next_of_its_command_at_once() {
    let mut core = Researcher::new(ResearcherConfig::new(ME));
    status(&mut core, ms(0.0), "a", Status::Online, 7);
    let to_a = || Submission::to_nodes(Request::list(), vec!["a".into()]);
    core.submit(ms(1.0), to_a()).unwrap();
    // Lists carry no sequence: the second waits for the first to end.
    core.submit(ms(1.0), to_a()).unwrap();
    // Anyone may publish this. Ending the first sends the second, to a node that stopped:
    // it ends at once too, inside the same step.
    status(&mut core, ms(5.0), "a", Status::Stopped, 7);
    for _ in 0..2 {
        let list = outcome(&mut core, ms(5.0));
        assert_eq!(
            (list.completion, list.missing),
            (Completion::Offline, vec!["a".to_owned()])
        );
    }
}

#[test]
fn a_full_roster_forgets_its_offline_members_first_and_takes_no_newcomer_when_all_are_online() {
    let mut core = Researcher::new(ResearcherConfig {
        mailbox_capacity: 3,
        ..ResearcherConfig::new(ME)
    });
    for node in ["a", "b", "c"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    status(&mut core, ms(1.0), "b", Status::Offline, 1);
    status(&mut core, ms(2.0), "d", Status::Online, 1);
    let members: Vec<&String> = core.roster().keys().collect();
    assert_eq!(members, ["a", "c", "d"], "b, offline, made room");
    status(&mut core, ms(3.0), "e", Status::Online, 1);
    assert_eq!(online(&core), ["a", "c", "d"], "full of online members");
    // One that went offline and came back is not forgotten for having been offline.
    status(&mut core, ms(4.0), "c", Status::Offline, 1);
    status(&mut core, ms(5.0), "c", Status::Online, 1);
    status(&mut core, ms(6.0), "f", Status::Online, 1);
    assert_eq!(online(&core), ["a", "c", "d"]);
}
