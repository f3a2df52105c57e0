//! The researcher core's matching and completion rules, one test per rule.

use std::time::Duration;

use fedreq_protocol::{
    Command, Completion, Event, Outcome, Policy, Request, Researcher, ResearcherConfig, Submission,
    Timestamp, Unmatched,
};
use serde_json::{json, Value};

const ME: &str = "researcher_me";

fn core() -> Researcher {
    Researcher::new(ResearcherConfig::new(ME))
}

/// The quiet period alone: a broadcast expecting nobody, first contact off.
fn plain(timeout: Duration) -> Policy {
    Policy {
        expect_online: false,
        ..Policy::quiet(timeout)
    }
}

fn ms(ms: f64) -> Timestamp {
    Timestamp::from_duration(Duration::from_secs_f64(ms / 1000.0))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn nodes(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn pong(node: &str, sequence: u64) -> Value {
    json!({"researcher_id": ME, "node_id": node, "success": true, "sequence": sequence,
           "command": "pong", "protocol_version": "1"})
}

fn list_reply(node: &str) -> Value {
    json!({"researcher_id": ME, "node_id": node, "success": true, "count": 1,
           "databases": [{"name": "d", "tags": ["t"]}], "command": "list", "protocol_version": "1"})
}

fn approval_reply(node: &str, sequence: u64, success: bool) -> Value {
    json!({"researcher_id": ME, "node_id": node, "sequence": sequence, "status": 200,
           "success": success, "command": "approval", "protocol_version": "1"})
}

fn error_from(node: &str) -> Value {
    json!({"researcher_id": ME, "node_id": node, "errnum": "FB301: Protocol error",
           "extra_msg": "Message was not properly formatted", "command": "error",
           "protocol_version": "1"})
}

fn publish(core: &mut Researcher, at: Timestamp, message: &Value) {
    core.handle_publish(at, "general/researcher", message.to_string().as_bytes());
}

/// Runs timers until `until`, returning every event in order.
fn run_until(core: &mut Researcher, until: Timestamp) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        while let Some(event) = core.poll_event() {
            events.push(event);
        }
        match core.poll_timeout() {
            Some(at) if at <= until => core.handle_timeout(at),
            _ => return events,
        }
    }
}

fn completed(events: &[Event]) -> Vec<&Outcome> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Completed(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn only_outcome(core: &mut Researcher, until: Timestamp) -> Outcome {
    let events = run_until(core, until);
    let done = completed(&events);
    assert_eq!(done.len(), 1, "{events:?}");
    done[0].clone()
}

fn sent(core: &mut Researcher) -> Vec<(String, Value)> {
    std::iter::from_fn(|| core.poll_transmit())
        .map(|t| (t.topic, serde_json::from_slice(&t.payload).unwrap()))
        .collect()
}

#[test]
fn request_is_stamped_with_our_id_and_the_next_sequence() {
    let mut core = Researcher::new(ResearcherConfig {
        first_sequence: 41,
        ..ResearcherConfig::new(ME)
    });
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "b"])),
    )
    .unwrap();
    let out = sent(&mut core);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].0, "general/nodes");
    assert_eq!(
        out[0].1,
        json!({"researcher_id": ME, "sequence": 41, "command": "ping", "protocol_version": "1"})
    );
    assert_eq!(
        (out[1].0.as_str(), out[2].0.as_str()),
        ("general/a", "general/b")
    );
    assert_eq!(out[1].1["sequence"], 42);
    assert_eq!(
        out[2].1["sequence"], 42,
        "every target of one request gets its sequence"
    );
}

/// A ping under `policy` with a roster of three nodes, which all answer by 5 ms.
fn roster_answers_by_5_ms(policy: Policy) -> Researcher {
    let mut core = core();
    let policy = policy.with_roster(nodes(&["a", "b", "c"]));
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(policy),
    )
    .unwrap();
    for (i, node) in ["a", "b", "c"].iter().enumerate() {
        publish(&mut core, ms(1.0 + 2.0 * i as f64), &pong(node, 0));
    }
    core
}

#[test]
fn roster_answered_completes_at_the_last_reply_not_the_timeout() {
    let mut core = roster_answers_by_5_ms(Policy::quiet(secs(5)));
    let outcome = only_outcome(&mut core, ms(5.0));
    assert_eq!(outcome.completion, Completion::AllAnswered);
    assert_eq!(outcome.elapsed, Duration::from_millis(5));
    assert_eq!(outcome.online(), nodes(&["a", "b", "c"]));
    assert!(outcome.missing.is_empty());
}

#[test]
fn compatibility_rounds_take_two_timeouts_as_fedbiomed_does() {
    let mut core = roster_answers_by_5_ms(Policy::fedbiomed(secs(5)));
    assert!(completed(&run_until(&mut core, ms(9_999.999))).is_empty());
    let outcome = only_outcome(&mut core, ms(10_000.0));
    assert_eq!(outcome.completion, Completion::Rounds);
    assert_eq!(outcome.elapsed, secs(10));
    assert_eq!(outcome.replies.len(), 3);
}

#[test]
fn rounds_go_on_while_each_round_brings_replies() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(Policy::fedbiomed(secs(1))),
    )
    .unwrap();
    publish(&mut core, ms(500.0), &pong("a", 0));
    publish(&mut core, ms(1_500.0), &pong("b", 0));
    let outcome = only_outcome(&mut core, ms(10_000.0));
    assert_eq!(
        outcome.elapsed,
        secs(3),
        "rounds end at 1 s, 2 s (new reply each), 3 s (none)"
    );

    let mut once = Policy::fedbiomed(secs(1));
    once.rounds = Some(fedreq_protocol::policy::Rounds {
        while_responses: false,
    });
    core.submit(
        ms(10_000.0),
        Submission::broadcast(Request::ping()).with_policy(once),
    )
    .unwrap();
    publish(&mut core, ms(10_500.0), &pong("a", 1));
    assert_eq!(only_outcome(&mut core, ms(20_000.0)).elapsed, secs(1));
}

#[test]
fn quiet_period_runs_from_the_last_reply_with_sub_millisecond_precision() {
    let mut core = core();
    let policy = plain(Duration::from_micros(1_500));
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(policy),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &pong("a", 0));
    // A wake may come early (it finds nothing due), never late.
    assert!(core.poll_timeout().is_some_and(|at| at <= ms(2.5)));
    assert!(completed(&run_until(&mut core, ms(2.4999))).is_empty());
    let outcome = only_outcome(&mut core, ms(2.5));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::QuietPeriod, Duration::from_micros(2_500))
    );
}

#[test]
fn timers_fire_without_any_traffic() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "b"])),
    )
    .unwrap();
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::QuietPeriod, secs(5))
    );
    assert_eq!(outcome.missing, nodes(&["a", "b"]));
}

#[test]
fn stale_sequence_is_not_counted_and_is_reported_late() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"])),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &pong("a", 0));
    assert_eq!(only_outcome(&mut core, ms(1.0)).sequence, Some(0));

    core.submit(
        ms(2.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"])),
    )
    .unwrap();
    publish(&mut core, ms(3.0), &pong("a", 0)); // the first ping's, again
    publish(&mut core, ms(3.0), &pong("a", 77)); // never sent
    let events = run_until(&mut core, ms(3.0));
    assert!(events.contains(&Event::Unmatched {
        reason: Unmatched::Late,
        command: Command::Pong,
        node_id: "a".into()
    }));
    assert!(events.contains(&Event::Unmatched {
        reason: Unmatched::Unknown,
        command: Command::Pong,
        node_id: "a".into()
    }));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert!(outcome.replies.is_empty());
    assert_eq!(outcome.missing, nodes(&["a"]));
    assert_eq!(
        (outcome.counters.late, outcome.counters.wrong_sequence),
        (1, 1)
    );
    assert_eq!(core.take_mail(&[Command::Pong]).len(), 2);
}

#[test]
fn reply_for_another_researcher_is_not_counted() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"])),
    )
    .unwrap();
    let mut foreign = pong("a", 0);
    foreign["researcher_id"] = json!("someone_else");
    publish(&mut core, ms(1.0), &foreign);
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert!(outcome.replies.is_empty());
    assert_eq!(outcome.counters.foreign, 1);
    let mail = core.take_mail(&[]);
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].reason, Unmatched::Foreign);
}

#[test]
fn reply_from_a_node_not_targeted_is_not_counted() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"])),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &pong("intruder", 0));
    publish(&mut core, ms(2.0), &pong("a", 0));
    let outcome = only_outcome(&mut core, ms(2.0));
    assert_eq!(outcome.online(), nodes(&["a"]));
    assert_eq!(outcome.counters.not_targeted, 1);
    assert_eq!(core.take_mail(&[])[0].reason, Unmatched::NotTargeted);
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut core = core();
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    for t in [1.0, 2.0, 3.0] {
        publish(&mut core, ms(t), &pong("a", 0));
    }
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!((outcome.replies.len(), outcome.counters.duplicates), (1, 2));
}

#[test]
fn second_list_waits_until_the_first_completes() {
    let mut core = core();
    let list = || Submission::broadcast(Request::list()).with_policy(plain(secs(5)));
    let first = core.submit(ms(0.0), list()).unwrap();
    let second = core.submit(ms(1.0), list()).unwrap();
    assert_eq!(sent(&mut core).len(), 1, "the second list is held back");
    publish(&mut core, ms(2.0), &list_reply("a"));
    let events = run_until(&mut core, ms(7_000.0));
    let done = completed(&events);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].replies.len()), (first, 1));
    let out = sent(&mut core);
    assert_eq!(
        out.len(),
        1,
        "the second list goes out when the first completes"
    );
    assert_eq!(out[0].1["command"], "list");
    publish(&mut core, ms(7_001.0), &list_reply("a"));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!((outcome.id, outcome.replies.len()), (second, 1));
    assert_eq!(
        outcome.elapsed,
        Duration::from_millis(12_001 - 1),
        "elapsed counts from submission"
    );
}

#[test]
fn list_reply_with_no_list_in_flight_goes_to_the_mailbox() {
    let mut core = core();
    publish(&mut core, ms(0.0), &list_reply("a"));
    assert_eq!(
        core.take_mail(&[Command::List])[0].reason,
        Unmatched::Unknown
    );
}

#[test]
fn min_replies_completes_after_its_grace() {
    let mut core = core();
    let policy = Policy::quiet(secs(5)).with_min_replies(2, Duration::from_millis(100));
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(policy),
    )
    .unwrap();
    publish(&mut core, ms(10.0), &pong("a", 0));
    publish(&mut core, ms(20.0), &pong("b", 0));
    publish(&mut core, ms(50.0), &pong("c", 0));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::MinReplies, Duration::from_millis(120))
    );
    assert_eq!(outcome.replies.len(), 3);
}

#[test]
fn stop_on_error_completes_at_the_first_error_from_a_target() {
    let mut core = core();
    let policy = Policy::quiet(secs(5)).with_stop_on_error();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "b"])).with_policy(policy),
    )
    .unwrap();
    publish(&mut core, ms(3.0), &error_from("stranger"));
    publish(&mut core, ms(4.0), &error_from("b"));
    let outcome = only_outcome(&mut core, ms(4.0));
    assert_eq!(outcome.completion, Completion::Error);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].node_id, "b");
    assert_eq!(outcome.missing, nodes(&["a"]));
}

#[test]
fn an_error_counts_as_an_answer_for_early_completion() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::list(), nodes(&["a", "b"])),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &list_reply("a"));
    publish(&mut core, ms(2.0), &error_from("b"));
    let outcome = only_outcome(&mut core, ms(2.0));
    assert_eq!(outcome.completion, Completion::AllAnswered);
    assert_eq!((outcome.replies.len(), outcome.errors.len()), (1, 1));
    assert_eq!(outcome.responses().len(), 2);
}

#[test]
fn deadline_counts_from_submission_even_while_queued() {
    let mut core = core();
    core.submit(ms(0.0), Submission::broadcast(Request::list()))
        .unwrap();
    let policy = Policy::quiet(secs(5)).with_deadline(secs(2));
    let queued = core
        .submit(
            ms(0.0),
            Submission::broadcast(Request::list()).with_policy(policy),
        )
        .unwrap();
    let events = run_until(&mut core, ms(2_000.0));
    let done = completed(&events);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].id, done[0].completion, done[0].elapsed),
        (queued, Completion::Deadline, secs(2))
    );
    assert_eq!(
        sent(&mut core).len(),
        1,
        "the expired request was never sent"
    );
}

#[test]
fn deadline_caps_a_request_that_keeps_getting_replies() {
    let mut core = core();
    let policy = plain(secs(1)).with_deadline(Duration::from_millis(2_500));
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(policy),
    )
    .unwrap();
    for (i, t) in [900.0, 1_800.0, 2_400.0, 2_600.0].iter().enumerate() {
        publish(&mut core, ms(*t), &pong(&format!("n{i}"), 0));
    }
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.replies.len()),
        (Completion::Deadline, 3)
    );
    assert_eq!(outcome.elapsed, Duration::from_millis(2_500));
}

#[test]
fn approvals_map_every_requested_node_and_only_successful_drops_failures() {
    let mut core = core();
    let plan = Request::approval("plan", "http://h/p.py");
    let policy = Policy::quiet(secs(1)).with_only_successful();
    core.submit(
        ms(0.0),
        Submission::to_nodes(plan, nodes(&["a", "b", "c"])).with_policy(policy),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &approval_reply("a", 0, true));
    publish(&mut core, ms(2.0), &approval_reply("b", 0, false));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(outcome.counters.unsuccessful, 1);
    let approvals = outcome.approvals();
    assert_eq!(
        approvals.into_iter().collect::<Vec<_>>(),
        [("a".into(), true), ("b".into(), false), ("c".into(), false)]
    );
    assert_eq!(outcome.missing, nodes(&["c"]));
}

#[test]
fn malformed_payloads_are_rejected_and_counted_while_the_request_goes_on() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"])),
    )
    .unwrap();
    core.handle_publish(ms(1.0), "general/researcher", b"{not json");
    let mut bad = pong("a", 0);
    bad["sequence"] = json!("zero");
    publish(&mut core, ms(1.5), &bad);
    publish(&mut core, ms(2.0), &pong("a", 0));
    let events = run_until(&mut core, ms(2.0));
    let rejected = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .count();
    assert_eq!(rejected, 2);
    let outcome = completed(&events)[0].clone();
    assert_eq!(
        (outcome.completion, outcome.counters.malformed),
        (Completion::AllAnswered, 2)
    );
}

#[test]
fn node_logs_carry_the_inner_message_or_the_raw_text() {
    let mut core = core();
    let inner = json!({"asctime": "t", "node_id": "a", "name": "fedbiomed", "level": "INFO", "message": "hello"});
    for msg in [inner.to_string(), "plain text".to_string()] {
        let log = json!({"researcher_id": "<unknown>", "node_id": "a", "level": "INFO", "msg": msg,
                         "command": "log", "protocol_version": "1"});
        core.handle_publish(ms(0.0), "general/logger", log.to_string().as_bytes());
    }
    let texts: Vec<String> = std::iter::from_fn(|| core.poll_event())
        .map(|e| match e {
            Event::Log(log) => log.text,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["hello", "plain text"]);
}

#[test]
fn monitoring_scalars_for_us_are_events_and_others_are_mail() {
    let mut core = core();
    let scalar = |researcher: &str| {
        json!({"researcher_id": researcher, "node_id": "a", "job_id": "j", "train": true, "test": false,
               "test_on_local_updates": false, "test_on_global_updates": false, "metric": {"Loss": 0.5},
               "epoch": 1, "total_samples": 10, "batch_samples": 5, "num_batches": 2,
               "num_samples_trained": 5, "iteration": 1, "command": "add_scalar", "protocol_version": "1"})
    };
    core.handle_publish(
        ms(0.0),
        "general/monitoring",
        scalar(ME).to_string().as_bytes(),
    );
    core.handle_publish(
        ms(0.0),
        "general/monitoring",
        scalar("other").to_string().as_bytes(),
    );
    assert!(matches!(core.poll_event(), Some(Event::Monitoring(m)) if m.metric["Loss"] == 0.5));
    assert!(matches!(
        core.poll_event(),
        Some(Event::Unmatched {
            reason: Unmatched::Foreign,
            ..
        })
    ));
}

#[test]
fn mailbox_keeps_the_newest_and_counts_what_it_dropped() {
    let mut core = Researcher::new(ResearcherConfig {
        mailbox_capacity: 3,
        ..ResearcherConfig::new(ME)
    });
    for i in 0..10 {
        publish(&mut core, ms(i as f64), &pong(&format!("n{i}"), 1000 + i));
    }
    assert_eq!(core.stats().mailbox_dropped, 7);
    let kept: Vec<String> = core
        .take_mail(&[])
        .into_iter()
        .map(|m| m.message.node_id().to_owned())
        .collect();
    assert_eq!(kept, ["n7", "n8", "n9"]);
}

#[test]
fn targeted_approval_counts_every_node_not_only_the_last() {
    // Fed-BioMed v4.4 gives each node its own sequence and keeps only the last one's reply.
    let mut core = core();
    let plan = Request::approval("plan", "http://h/p.py");
    core.submit(ms(0.0), Submission::to_nodes(plan, nodes(&["a", "b", "c"])))
        .unwrap();
    let sequences: Vec<u64> = sent(&mut core)
        .iter()
        .map(|(_, m)| m["sequence"].as_u64().unwrap())
        .collect();
    for (node, sequence) in ["a", "b", "c"].iter().zip(&sequences) {
        publish(&mut core, ms(1.0), &approval_reply(node, *sequence, true));
    }
    let approvals = only_outcome(&mut core, ms(1.0)).approvals();
    assert!(approvals.values().all(|&ok| ok), "{approvals:?}");
    assert_eq!(approvals.len(), 3);
}

#[test]
fn datasets_per_node_from_list_replies() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::list(), nodes(&["a", "b"])),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &list_reply("b"));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    let datasets = outcome.datasets();
    assert_eq!(datasets.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(datasets["b"][0]["name"], "d");
    assert_eq!(outcome.missing, nodes(&["a"]));
}

#[test]
fn invalid_targets_are_refused_at_submission() {
    let mut core = core();
    let err = core
        .submit(
            ms(0.0),
            Submission::to_nodes(Request::ping(), nodes(&["a/b"])),
        )
        .unwrap_err();
    assert!(err.to_string().contains("a/b"), "{err}");
    assert!(core
        .submit(ms(0.0), Submission::to_nodes(Request::ping(), vec![]))
        .is_err());
    assert_eq!((core.in_flight(), core.poll_transmit()), (0, None));
}

#[test]
fn kept_sequences_are_sent_as_given_and_may_not_collide() {
    let mut core = core();
    let mut raw = Submission::broadcast(
        Request::from_value(
            json!({"researcher_id": "x", "sequence": 900, "command": "ping"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap(),
    );
    raw.keep_sequence = true;
    core.submit(ms(0.0), raw.clone()).unwrap();
    assert_eq!(sent(&mut core)[0].1["sequence"], 900);
    assert!(core.submit(ms(0.0), raw).is_err());
    publish(&mut core, ms(1.0), &pong("a", 900));
    assert_eq!(only_outcome(&mut core, ms(60_000.0)).replies.len(), 1);
}

fn collect(commands: &[Command], policy: Policy) -> fedreq_protocol::Collect {
    fedreq_protocol::Collect {
        expect: None,
        broadcast: false,
        commands: commands.to_vec(),
        policy,
        since: None,
    }
}

#[test]
fn a_collect_reads_the_mailbox_then_new_arrivals_in_fedbiomed_rounds() {
    let mut core = core();
    // Fire and forget: a request that completes at once, its replies going to the mailbox.
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(Policy {
            early: false,
            ..Policy::quiet(Duration::ZERO)
        }),
    )
    .unwrap();
    assert_eq!(only_outcome(&mut core, ms(0.0)).replies.len(), 0);
    publish(&mut core, ms(1.0), &pong("a", 0));
    publish(&mut core, ms(2.0), &list_reply("b"));
    let id = core.collect(
        ms(3.0),
        collect(&[Command::Pong], Policy::fedbiomed(secs(1))),
    );
    publish(&mut core, ms(500.0), &pong("c", 0));
    publish(&mut core, ms(1_500.0), &pong("d", 0));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!((outcome.id, outcome.command), (id, None));
    assert_eq!(outcome.online(), nodes(&["a", "c", "d"]));
    assert_eq!(
        outcome.elapsed,
        secs(3),
        "rounds end at 1 s (a, c), 2 s (d), 3 s (none)"
    );
    assert_eq!(
        core.take_mail(&[]).len(),
        1,
        "the list reply stays in the mailbox"
    );
}

#[test]
fn a_collect_with_only_a_deadline_is_get_messages() {
    let mut core = core();
    publish(&mut core, ms(0.0), &error_from("a"));
    let policy = Policy {
        early: false,
        ..Policy::quiet(Duration::MAX)
    }
    .with_deadline(Duration::from_millis(10));
    core.collect(ms(1.0), collect(&[], policy));
    publish(&mut core, ms(5.0), &list_reply("b"));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::Deadline, Duration::from_millis(10))
    );
    assert_eq!((outcome.errors.len(), outcome.replies.len()), (1, 1));
}

#[test]
fn a_targeted_request_expects_its_targets_not_the_roster() {
    let mut core = core();
    let policy = Policy::quiet(secs(5)).with_roster(nodes(&["a", "b", "c"]));
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "ghost"])).with_policy(policy),
    )
    .unwrap();
    publish(&mut core, ms(1.0), &pong("a", 0));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.missing),
        (Completion::QuietPeriod, nodes(&["ghost"]))
    );
}

#[test]
fn a_node_repeating_an_error_keeps_nothing_open() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "b"]))
            .with_policy(Policy::quiet(secs(5))),
    )
    .unwrap();
    for t in 1..=100 {
        publish(&mut core, ms(t as f64 * 1_000.0), &error_from("a"));
    }
    let outcome = only_outcome(&mut core, ms(1_000_000.0));
    assert_eq!(
        (
            outcome.elapsed,
            outcome.errors.len(),
            outcome.counters.duplicates
        ),
        (secs(6), 1, 0),
        "the repeats answer nothing: they wait in the mailbox"
    );
    assert_eq!(core.take_mail(&[]).len(), 99);
}

#[test]
fn the_default_policy_has_an_overall_deadline() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::ping()).with_policy(plain(secs(1))),
    )
    .unwrap();
    for i in 0..100 {
        publish(&mut core, ms(500.0 * i as f64), &pong(&format!("n{i}"), 0));
    }
    let outcome = only_outcome(&mut core, ms(1_000_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::Deadline, secs(10))
    );
}

#[test]
fn the_mailbox_has_a_byte_budget() {
    let mut core = Researcher::new(ResearcherConfig {
        mailbox_bytes: 1_000,
        ..ResearcherConfig::new(ME)
    });
    let size = pong("n0", 1000).to_string().len();
    for i in 0..20 {
        publish(&mut core, ms(i as f64), &pong(&format!("n{i}"), 1000 + i));
    }
    let kept = core.take_mail(&[]).len();
    assert_eq!(kept, 1_000 / size);
    assert_eq!(core.stats().mailbox_dropped as usize, 20 - kept);
}

fn search_reply(node: &str, tags: &[&str]) -> Value {
    json!({"researcher_id": ME, "node_id": node, "success": true, "count": 1,
           "databases": [{"name": "d", "tags": tags}], "command": "search", "protocol_version": "1"})
}

#[test]
fn a_late_search_reply_is_not_counted_in_the_next_search() {
    let mut core = core();
    core.submit(
        ms(0.0),
        Submission::broadcast(Request::search(vec!["a".into()])),
    )
    .unwrap();
    assert!(only_outcome(&mut core, ms(60_000.0)).replies.is_empty());
    core.submit(
        ms(60_000.0),
        Submission::broadcast(Request::search(vec!["b".into()])),
    )
    .unwrap();
    publish(&mut core, ms(60_001.0), &search_reply("slow", &["a"]));
    publish(&mut core, ms(60_002.0), &search_reply("quick", &["b", "c"]));
    let outcome = only_outcome(&mut core, ms(120_000.0));
    assert_eq!(
        outcome.datasets().into_keys().collect::<Vec<_>>(),
        ["quick"]
    );
    assert_eq!(outcome.counters.late, 1);
}

#[test]
fn a_collect_since_a_request_ignores_older_mail() {
    let mut core = core();
    publish(&mut core, ms(0.0), &list_reply("old"));
    let fire = Policy {
        early: false,
        ..Policy::quiet(Duration::ZERO)
    };
    let id = core
        .submit(
            ms(1.0),
            Submission::broadcast(Request::ping()).with_policy(fire),
        )
        .unwrap();
    only_outcome(&mut core, ms(1.0));
    publish(&mut core, ms(2.0), &pong("new", 0));
    let since = fedreq_protocol::Collect {
        since: Some(id),
        ..collect(
            &[],
            Policy::quiet(Duration::MAX).with_deadline(Duration::ZERO),
        )
    };
    core.collect(ms(3.0), since);
    let outcome = only_outcome(&mut core, ms(3.0));
    assert_eq!(outcome.online(), nodes(&["new"]));
    assert_eq!(core.take_mail(&[]).len(), 1, "the older mail stays");
}

#[test]
fn automatic_sequences_skip_a_kept_one() {
    let mut core = core();
    let mut kept = Submission::broadcast(Request::ping());
    if let Some(slot) = kept.request.sequence_mut() {
        *slot = 1;
    }
    kept.keep_sequence = true;
    core.submit(ms(0.0), kept).unwrap();
    let sequences: Vec<u64> = (0..3)
        .map(|_| {
            let id = core
                .submit(ms(0.0), Submission::broadcast(Request::ping()))
                .unwrap();
            let _ = id;
            sent(&mut core).last().unwrap().1["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sequences, [0, 2, 3]);
}

#[test]
fn a_request_over_the_payload_limit_is_refused_at_submission() {
    let mut core = Researcher::new(ResearcherConfig {
        limits: fedreq_protocol::Limits { max_payload: 200 },
        ..ResearcherConfig::new(ME)
    });
    let err = core
        .submit(
            ms(0.0),
            Submission::broadcast(Request::search(vec!["t".repeat(300)])),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            fedreq_protocol::SubmitError::TooLarge { limit: 200, .. }
        ),
        "{err}"
    );
    assert_eq!((core.in_flight(), core.poll_transmit()), (0, None));
}

#[test]
fn a_completed_kept_sequence_is_not_stamped_again() {
    let mut core = core();
    let mut kept =
        Submission::broadcast(Request::ping()).with_policy(Policy::quiet(Duration::ZERO));
    kept.keep_sequence = true; // sequence 0, the next one to be stamped
    core.submit(ms(0.0), kept).unwrap();
    only_outcome(&mut core, ms(0.0));
    core.submit(ms(1.0), Submission::broadcast(Request::ping()))
        .unwrap();
    assert_eq!(sent(&mut core).last().unwrap().1["sequence"], 1);
}

fn error_as(researcher_id: &str, node: &str, errnum: &str) -> Value {
    json!({"researcher_id": researcher_id, "node_id": node, "errnum": errnum,
           "extra_msg": "boom", "command": "error", "protocol_version": "1"})
}

fn fire_and_forget() -> Policy {
    Policy {
        early: false,
        ..Policy::quiet(Duration::ZERO)
    }
}

#[test]
fn an_error_for_nobody_in_particular_answers_no_request() {
    for placeholder in fedreq_protocol::message::PLACEHOLDER_RESEARCHER_IDS {
        let mut core = core();
        core.submit(
            ms(0.0),
            Submission::to_nodes(Request::list(), nodes(&["a", "b"])),
        )
        .unwrap();
        publish(&mut core, ms(1.0), &list_reply("a"));
        publish(
            &mut core,
            ms(2.0),
            &error_as(placeholder, "b", "FB300: undetermined node error"),
        );
        let events = run_until(&mut core, ms(2.0));
        assert!(
            completed(&events).is_empty(),
            "{placeholder}: another researcher may have caused it"
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::NodeError(err) if err.node_id == "b")));
        let outcome = only_outcome(&mut core, ms(60_000.0));
        assert_eq!(
            (outcome.completion, outcome.errors.len(), outcome.missing),
            (Completion::QuietPeriod, 0, nodes(&["b"]))
        );
        assert_eq!(
            core.take_mail(&[Command::Error]).len(),
            1,
            "kept for get_messages"
        );
    }
}

#[test]
fn an_error_for_nobody_in_particular_with_nothing_in_flight_waits_in_the_mailbox() {
    let mut core = core();
    publish(
        &mut core,
        ms(0.0),
        &error_as("NOT_SET", "a", "FB300: undetermined node error"),
    );
    publish(
        &mut core,
        ms(1.0),
        &error_as("someone_else", "a", "FB300: undetermined node error"),
    );
    assert!(matches!(core.poll_event(), Some(Event::NodeError(_))));
    let mail = core.take_mail(&[Command::Error]);
    assert_eq!(mail.len(), 2);
    assert_eq!(
        (mail[0].reason, mail[1].reason),
        (Unmatched::Unknown, Unmatched::Foreign),
        "a placeholder is for us; another researcher's id is not"
    );
}

#[test]
fn a_collect_expecting_named_nodes_completes_when_each_answered_with_a_reply_or_an_error() {
    let mut core = core();
    let first = core
        .submit(
            ms(0.0),
            Submission::to_nodes(Request::list(), nodes(&["a"])).with_policy(fire_and_forget()),
        )
        .unwrap();
    // The first node answers before the message to the last one goes out.
    publish(&mut core, ms(1.0), &list_reply("a"));
    for node in ["b", "c"] {
        core.submit(
            ms(2.0),
            Submission::to_nodes(Request::ping(), nodes(&[node])).with_policy(fire_and_forget()),
        )
        .unwrap();
    }
    run_until(&mut core, ms(2.0));
    publish(
        &mut core,
        ms(3.0),
        &error_as("NOT_SET", "b", "FB313: no dataset matching request"),
    );
    let mut collect = collect(&[Command::List, Command::Error], Policy::quiet(secs(30)));
    collect.since = Some(first);
    collect.expect = Some(nodes(&["a", "b", "c"]));
    let id = core.collect(ms(4.0), collect);
    publish(&mut core, ms(5.0), &list_reply("c"));
    let outcome = only_outcome(&mut core, ms(60_000.0));
    assert_eq!(outcome.id, id);
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::AllAnswered, Duration::from_millis(1))
    );
    assert_eq!((outcome.replies.len(), outcome.errors.len()), (2, 1));
}

#[test]
fn a_reply_for_another_job_is_not_taken_by_the_request_in_flight() {
    let mut core = core();
    let status = Request::TrainingPlanStatus(fedreq_protocol::message::TrainingPlanStatusRequest {
        researcher_id: String::new(),
        job_id: "job-1".into(),
        training_plan_url: "http://repo/plan.py".into(),
    });
    let sent = Submission::to_nodes(status, nodes(&["a"])).with_policy(plain(secs(5)));
    core.submit(ms(0.0), sent).unwrap();
    let reply = |job: &str| {
        json!({"researcher_id": ME, "node_id": "a", "job_id": job, "success": true,
               "approval_obligation": true, "status": "Approved", "msg": "",
               "training_plan_url": "http://repo/plan.py", "command": "training-plan-status",
               "protocol_version": "1"})
    };
    publish(&mut core, ms(1.0), &reply("job-0"));
    publish(&mut core, ms(2.0), &reply("job-1"));
    let events = run_until(&mut core, ms(10.0));
    let done = completed(&events);
    assert_eq!(done.len(), 1, "{events:?}");
    assert_eq!(done[0].replies.len(), 1);
    assert_eq!(done[0].replies[0].job_id(), Some("job-1"));
    assert_eq!(done[0].completion, Completion::AllAnswered);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Unmatched {
            command: Command::TrainingPlanStatus,
            ..
        }
    )));
}
