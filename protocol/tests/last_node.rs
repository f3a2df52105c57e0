//! Knowing when the last node has spoken: fences, first contact, known nodes, offline targets,
//! and why each request ended. One rule a test.

use std::time::Duration;

use fedreq_protocol::presence::{self, NoMatch, Presence, Status};
use fedreq_protocol::{
    Completion, Event, Outcome, Policy, Request, RequestId, Researcher, ResearcherConfig,
    Submission, Timestamp,
};
use serde_json::{json, Value};

const ME: &str = "researcher_me";

fn ms(ms: f64) -> Timestamp {
    Timestamp::from_duration(Duration::from_secs_f64(ms / 1000.0))
}

fn nodes(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A core that knows, from an earlier process, these nodes without presence.
fn knowing(known: &[(&str, f64)]) -> Researcher {
    let known = known
        .iter()
        .map(|&(n, took)| (n.to_owned(), Duration::from_secs_f64(took / 1000.0)))
        .collect();
    Researcher::new(ResearcherConfig {
        known: Some(known),
        ..ResearcherConfig::new(ME)
    })
}

fn fresh() -> Researcher {
    Researcher::new(ResearcherConfig::new(ME))
}

fn status(core: &mut Researcher, at: Timestamp, node: &str, status: Status, incarnation: u64) {
    let presence = Presence::new(node, status, incarnation);
    core.handle_publish(at, &presence::topic(node), &presence.encode());
}

fn publish(core: &mut Researcher, at: Timestamp, message: Value) {
    core.handle_publish(at, "general/researcher", message.to_string().as_bytes());
}

fn pong(core: &mut Researcher, at: Timestamp, node: &str, sequence: u64) {
    publish(
        core,
        at,
        json!({"researcher_id": ME, "node_id": node, "success": true, "sequence": sequence,
               "command": "pong", "protocol_version": "1"}),
    );
}

fn found(core: &mut Researcher, at: Timestamp, node: &str, tag: &str) {
    publish(
        core,
        at,
        json!({"researcher_id": ME, "node_id": node, "success": true, "count": 1,
               "databases": [{"name": "d", "tags": [tag]}],
               "command": "search", "protocol_version": "1"}),
    );
}

/// `node` says the search for `tag` found nothing on it, as a fedreq node with presence does.
fn nothing(core: &mut Researcher, at: Timestamp, node: &str, tag: &str) {
    let no_match = NoMatch {
        researcher_id: ME.to_owned(),
        node_id: node.to_owned(),
        tags: vec![tag.to_owned()],
    };
    core.handle_publish(at, presence::NO_MATCH, &no_match.encode());
}

fn error(core: &mut Researcher, at: Timestamp, node: &str) {
    publish(
        core,
        at,
        json!({"researcher_id": ME, "node_id": node, "errnum": "FB313: no dataset matching request",
               "extra_msg": "boom", "command": "error", "protocol_version": "1"}),
    );
}

/// Everything the core sent since the last call: (topic, payload).
fn sent(core: &mut Researcher) -> Vec<(String, Value)> {
    std::iter::from_fn(|| core.poll_transmit())
        .map(|t| (t.topic, serde_json::from_slice(&t.payload).unwrap()))
        .collect()
}

/// The sequence of the fence among what was sent: the ping after the request.
fn fence_of(sent: &[(String, Value)]) -> u64 {
    let request = sent
        .iter()
        .position(|(_, m)| m["command"] != "ping")
        .unwrap();
    let ping = sent[request..].iter().find(|(_, m)| m["command"] == "ping");
    ping.unwrap().1["sequence"].as_u64().unwrap()
}

/// The sequence of the primer: the ping before the request.
fn primer_of(sent: &[(String, Value)]) -> u64 {
    assert_eq!(sent[0].1["command"], "ping", "a primer first");
    sent[0].1["sequence"].as_u64().unwrap()
}

/// Runs the timers up to `until`, and returns the outcomes completed by then.
fn done_by(core: &mut Researcher, until: Timestamp) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    loop {
        while let Some(event) = core.poll_event() {
            if let Event::Completed(outcome) = event {
                outcomes.push(outcome);
            }
        }
        match core.poll_timeout() {
            Some(at) if at <= until => core.handle_timeout(at),
            _ => return outcomes,
        }
    }
}

fn only(core: &mut Researcher, until: Timestamp) -> Outcome {
    let mut outcomes = done_by(core, until);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.remove(0)
}

/// Submits `request` to the nodes `to` at `at` ms, under the default policy.
fn ask(core: &mut Researcher, at: f64, request: Request, to: &[&str]) -> RequestId {
    core.submit(ms(at), Submission::to_nodes(request, nodes(to)))
        .unwrap()
}

fn search(tag: &str) -> Request {
    Request::search(vec![tag.to_owned()])
}

/// A broadcast search for `tag` at 0 ms, primed and fenced: the primer's and fence's sequences.
fn broadcast_search(core: &mut Researcher, tag: &str) -> (u64, u64) {
    core.submit(ms(0.0), Submission::broadcast(search(tag)))
        .unwrap();
    let out = sent(core);
    (primer_of(&out), fence_of(&out))
}

#[test]
fn a_search_of_nodes_that_announce_themselves_goes_alone() {
    // They say when they have nothing: no fence, no primer.
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, 1);
    core.submit(ms(0.0), Submission::broadcast(search("x")))
        .unwrap();
    ask(&mut core, 1.0, search("y"), &["a"]);
    done_by(&mut core, ms(60_000.0));
    let out = sent(&mut core);
    let commands: Vec<_> = out
        .iter()
        .map(|(t, m)| (t.as_str(), m["command"].as_str().unwrap()))
        .collect();
    assert_eq!(
        commands,
        [("general/nodes", "search"), ("general/a", "search")]
    );
}

#[test]
fn a_search_that_may_reach_v44_nodes_is_primed_and_fenced_on_each_topic() {
    let mut core = fresh();
    core.submit(ms(0.0), Submission::broadcast(search("x")))
        .unwrap();
    let out = sent(&mut core);
    let commands: Vec<_> = out
        .iter()
        .map(|(t, m)| (t.as_str(), m["command"].as_str().unwrap()))
        .collect();
    assert_eq!(
        commands,
        [
            ("general/nodes", "ping"),
            ("general/nodes", "search"),
            ("general/nodes", "ping")
        ]
    );
    assert_ne!(out[0].1["sequence"], out[2].1["sequence"]);
    ask(&mut core, 1.0, search("x"), &["a", "b"]);
    done_by(&mut core, ms(60_000.0));
    let out = sent(&mut core);
    let commands: Vec<_> = out
        .iter()
        .map(|(t, m)| (t.as_str(), m["command"].as_str().unwrap()))
        .collect();
    assert_eq!(
        commands,
        [
            ("general/a", "ping"),
            ("general/a", "search"),
            ("general/a", "ping"),
            ("general/b", "ping"),
            ("general/b", "search"),
            ("general/b", "ping")
        ]
    );
}

#[test]
fn the_primer_tells_a_first_contact_search_whom_to_wait_for() {
    let mut core = fresh();
    let (primer, fence) = broadcast_search(&mut core, "even");
    for node in ["even-1", "odd-1", "odd-2"] {
        pong(&mut core, ms(1.0), node, primer);
    }
    found(&mut core, ms(2.0), "even-1", "even");
    pong(&mut core, ms(2.1), "even-1", fence);
    pong(&mut core, ms(2.2), "odd-1", fence);
    // odd-2's fence is slow: the search waits for it, past the first-contact gap.
    let early = done_by(&mut core, ms(200.0));
    assert!(early.is_empty(), "{early:?}");
    pong(&mut core, ms(300.0), "odd-2", fence);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.online(), ["even-1"]);
    assert!(outcome.missing.is_empty());
    assert_eq!(outcome.completion, Completion::Settled);
}

#[test]
fn a_partial_search_ends_once_every_node_online_replied_or_said_it_has_nothing() {
    // Every node announces itself, and none without presence was ever heard.
    let mut core = knowing(&[]);
    for node in ["a", "b", "c"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    core.submit(ms(10.0), Submission::broadcast(search("fbm")))
        .unwrap();
    found(&mut core, ms(11.0), "a", "fbm");
    nothing(&mut core, ms(12.0), "b", "fbm");
    assert!(done_by(&mut core, ms(12.0)).is_empty(), "c has not spoken");
    nothing(&mut core, ms(13.0), "c", "fbm");
    let outcome = only(&mut core, ms(13.0));
    assert_eq!(outcome.completion, Completion::AllAnswered);
    assert_eq!(outcome.elapsed, Duration::from_millis(3));
    assert_eq!(outcome.datasets().keys().collect::<Vec<_>>(), ["a"]);
    assert!(
        outcome.missing.is_empty(),
        "a node with nothing is no missing node"
    );
}

#[test]
fn an_empty_search_ends_on_the_words_of_nodes_with_nothing() {
    let mut core = knowing(&[]);
    for node in ["a", "b"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    core.submit(ms(10.0), Submission::broadcast(search("nothing-here")))
        .unwrap();
    nothing(&mut core, ms(11.0), "a", "nothing-here");
    nothing(&mut core, ms(11.2), "b", "nothing-here");
    let outcome = only(&mut core, ms(11.2));
    assert_eq!(
        (outcome.completion, outcome.replies.len()),
        (Completion::AllAnswered, 0)
    );
}

#[test]
fn a_word_of_nothing_counts_only_for_our_search_of_the_same_tags() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, 1);
    core.submit(ms(10.0), Submission::broadcast(search("fbm")))
        .unwrap();
    // For an earlier search of other tags, and for another researcher's search.
    nothing(&mut core, ms(11.0), "a", "other");
    let foreign = NoMatch {
        researcher_id: "researcher_other".to_owned(),
        node_id: "a".to_owned(),
        tags: vec!["fbm".to_owned()],
    };
    core.handle_publish(ms(11.0), presence::NO_MATCH, &foreign.encode());
    core.handle_publish(ms(11.0), presence::NO_MATCH, b"{not json");
    assert!(
        done_by(&mut core, ms(11.0)).is_empty(),
        "a has not answered"
    );
    nothing(&mut core, ms(12.0), "a", "fbm");
    let outcome = only(&mut core, ms(12.0));
    assert_eq!(
        (
            outcome.completion,
            outcome.counters.late,
            outcome.counters.malformed
        ),
        (Completion::AllAnswered, 1, 1)
    );
}

#[test]
fn where_v44_nodes_may_be_a_word_of_nothing_still_counts_before_the_fence() {
    let mut core = fresh();
    status(&mut core, ms(0.0), "a", Status::Online, 1);
    ask(&mut core, 0.0, search("fbm"), &["a", "v44"]);
    let fence = fence_of(&sent(&mut core));
    nothing(&mut core, ms(1.0), "a", "fbm");
    pong(&mut core, ms(2.0), "v44", fence);
    let outcome = only(&mut core, ms(2.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::AllAnswered, Duration::from_millis(2))
    );
}

#[test]
fn a_targeted_search_of_nodes_without_presence_ends_when_they_passed_the_fence() {
    let mut core = fresh();
    ask(&mut core, 0.0, search("fbm"), &["v44-a", "v44-b"]);
    let fence = fence_of(&sent(&mut core));
    pong(&mut core, ms(2.0), "v44-a", fence);
    found(&mut core, ms(2.5), "v44-b", "fbm");
    pong(&mut core, ms(3.0), "v44-b", fence);
    let outcome = only(&mut core, ms(3.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (
            Completion::AllAnswered,
            Duration::from_millis(2) + Duration::from_micros(500)
        )
    );
    assert_eq!(outcome.online(), ["v44-b"]);
}

#[test]
fn a_search_reply_after_its_fence_is_kept_in_flight_and_late_after() {
    let mut core = fresh();
    ask(&mut core, 0.0, search("fbm"), &["a", "b"]);
    let fence = fence_of(&sent(&mut core));
    // A broker that reorders, or a redelivery: a's reply comes after its pong.
    pong(&mut core, ms(1.0), "a", fence);
    found(&mut core, ms(1.5), "a", "fbm");
    pong(&mut core, ms(2.0), "b", fence);
    let outcome = only(&mut core, ms(2.0));
    assert_eq!(outcome.online(), ["a"], "kept while in flight");
    assert_eq!(outcome.counters.duplicates, 0);
    found(&mut core, ms(3.0), "b", "fbm");
    let mail = core.take_mail(&[]);
    assert_eq!(mail.len(), 1, "after completion it is late, in the mailbox");
    assert_eq!(mail[0].reason, fedreq_protocol::Unmatched::Late);
}

#[test]
fn a_late_pong_to_a_fence_is_ours_and_dropped() {
    let mut core = fresh();
    ask(&mut core, 0.0, search("fbm"), &["a"]);
    let fence = fence_of(&sent(&mut core));
    found(&mut core, ms(1.0), "a", "fbm");
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.completion, Completion::AllAnswered);
    pong(&mut core, ms(70_000.0), "a", fence);
    assert!(core.take_mail(&[]).is_empty());
    assert_eq!(core.stats().late_fences, 1);
}

#[test]
fn first_contact_ends_a_gap_after_the_last_reply_derived_from_their_spread() {
    let mut core = fresh();
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    for (t, node) in [(1.0, "a"), (2.0, "b"), (30.0, "c")] {
        pong(&mut core, ms(t), node, 0);
    }
    // The replies spread over 29 ms (from the first, at 1 ms): twice that is the gap.
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed, outcome.replies.len()),
        (Completion::Settled, Duration::from_millis(88), 3)
    );
}

#[test]
fn first_contact_gap_is_at_least_its_minimum() {
    let mut core = fresh();
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(1.0), "a", 0);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.elapsed, Duration::from_millis(51));
}

#[test]
fn a_first_broadcast_nobody_answers_waits_the_quiet_period() {
    let mut core = fresh();
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::QuietPeriod, Duration::from_secs(5))
    );
}

#[test]
fn a_node_missed_on_first_contact_is_found_by_the_next_broadcast() {
    let mut core = fresh();
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(1.0), "quick", 0);
    let first = only(&mut core, ms(60_000.0));
    assert_eq!(first.online(), ["quick"]);
    // Ten times slower than the gap: late, so known from now on, with its time.
    pong(&mut core, ms(250.0), "slow", 0);
    assert_eq!(core.heard().get("slow"), Some(&Duration::from_millis(250)));
    core.submit(ms(1_000.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(1_001.0), "quick", 1);
    pong(&mut core, ms(1_240.0), "slow", 1);
    let second = only(&mut core, ms(60_000.0));
    assert_eq!(second.online(), ["quick", "slow"]);
    assert!(second.missing.is_empty());
}

#[test]
fn a_known_node_that_stays_silent_costs_at_most_its_first_contact_wait() {
    // Heard by an earlier process, answering in 2 ms; dead since.
    let mut core = knowing(&[("gone", 2.0), ("alive", 2.0)]);
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(2.0), "alive", 0);
    let outcome = only(&mut core, ms(60_000.0));
    // Awaited 2 ms + the 50 ms gap after sending.
    assert_eq!(outcome.missing, nodes(&["gone"]));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::WaitedOut, Duration::from_millis(52))
    );
    assert!(
        !core.heard().contains_key("gone"),
        "forgotten until it answers again"
    );
}

#[test]
fn a_node_known_only_by_presence_is_awaited_until_its_status_or_reply_can_come() {
    // An earlier process knew both online by presence, untimed. On a broker that gives no
    // retained status (RabbitMQ's wildcard), a new process's first replies may be slow.
    let mut core = knowing(&[("slow", 0.0), ("gone", 0.0)]);
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(200.0), "slow", 0);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.missing, nodes(&["gone"]));
    assert_eq!(outcome.online(), nodes(&["slow"]));
    // The longest wait of first contact: 1 s.
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::WaitedOut, Duration::from_secs(1))
    );
}

#[test]
fn a_retained_offline_status_ends_the_wait_for_a_node_known_only_by_presence() {
    let mut core = knowing(&[("gone", 0.0), ("alive", 0.0)]);
    let offline = Presence::new("gone", Status::Offline, 1);
    core.handle_retained(ms(0.0), &presence::topic("gone"), &offline.encode());
    core.submit(ms(1.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(3.0), "alive", 0);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.missing),
        (Completion::AllAnswered, vec![])
    );
}

#[test]
fn a_known_federation_ends_its_first_broadcast_as_soon_as_its_nodes_answered() {
    let mut core = knowing(&[("a", 1.0), ("b", 1.0)]);
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(1.0), "a", 0);
    pong(&mut core, ms(1.2), "b", 0);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::AllAnswered, Duration::from_micros(1_200))
    );
}

#[test]
fn forged_late_replies_cost_a_later_broadcast_at_most_the_first_contact_window() {
    let mut core = knowing(&[]);
    for node in ["a", "b", "c"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    let ping = |core: &mut Researcher, at: f64, sequence: u64| {
        core.submit(ms(at), Submission::broadcast(Request::ping()))
            .unwrap();
        for node in ["a", "b", "c"] {
            pong(core, ms(at + 1.0), node, sequence);
        }
        only(core, ms(at + 60_000.0))
    };
    assert_eq!(ping(&mut core, 10.0, 0).elapsed, Duration::from_millis(1));
    // Anyone reading general/nodes sees the sequence: twenty pongs from invented ids,
    // four seconds late, and as many with sequences never sent.
    for i in 0..20 {
        pong(&mut core, ms(4_000.0), &format!("forged-{i}"), 0);
        pong(&mut core, ms(4_000.0), &format!("random-{i}"), 7_000 + i);
    }
    let next = ping(&mut core, 5_000.0, 1);
    assert_eq!(next.online().len(), 3);
    assert!(
        next.elapsed <= Duration::from_millis(1_100),
        "{:?}",
        next.elapsed
    );
    assert_eq!(next.missing.len(), 20, "the forged ids, reported");
    // Waited out, forgotten: the one after is as quick as the first.
    assert!(ping(&mut core, 10_000.0, 2).elapsed <= Duration::from_millis(2));
}

#[test]
fn a_target_offline_for_ten_seconds_is_missing_at_once() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "up", Status::Online, 1);
    status(&mut core, ms(0.0), "solo", Status::Online, 1);
    status(&mut core, ms(1.0), "solo", Status::Offline, 1);
    core.submit(
        ms(10_000.0),
        Submission::to_nodes(Request::ping(), nodes(&["up", "solo"]))
            .with_policy(Policy::quiet(Duration::from_secs(30))),
    )
    .unwrap();
    pong(&mut core, ms(10_001.0), "up", 0);
    let outcome = only(&mut core, ms(10_001.0));
    assert_eq!(
        (outcome.completion, outcome.elapsed, outcome.missing),
        (
            Completion::Offline,
            Duration::from_millis(1),
            nodes(&["solo"])
        )
    );
}

#[test]
fn a_target_that_just_went_offline_is_awaited_until_its_return_window_from_then() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "solo", Status::Online, 1);
    status(&mut core, ms(1_000.0), "solo", Status::Offline, 1);
    core.submit(
        ms(3_000.0),
        Submission::to_nodes(Request::ping(), nodes(&["solo"])),
    )
    .unwrap();
    let outcome = only(&mut core, ms(60_000.0));
    // The default return window, 5 s, counted from its will at 1 s.
    assert_eq!(
        (outcome.completion, outcome.elapsed),
        (Completion::Offline, Duration::from_secs(3))
    );
}

#[test]
fn a_target_whose_offline_status_predates_us_is_missing_at_once() {
    let mut core = knowing(&[]);
    let will = Presence::new("solo", Status::Offline, 1);
    core.handle_retained(ms(0.0), &presence::topic("solo"), &will.encode());
    assert_eq!(core.roster()["solo"].since, None);
    ask(&mut core, 5.0, Request::ping(), &["solo"]);
    let outcome = only(&mut core, ms(5.0));
    assert_eq!(outcome.completion, Completion::Offline);
}

#[test]
fn a_node_that_stops_cleanly_is_missing_at_once() {
    let mut core = knowing(&[]);
    for node in ["a", "b"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    core.submit(ms(10.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(11.0), "a", 0);
    status(&mut core, ms(12.0), "b", Status::Stopped, 1);
    let outcome = only(&mut core, ms(12.0));
    assert_eq!(
        (outcome.completion, outcome.missing),
        (Completion::Offline, nodes(&["b"]))
    );
    // The next broadcast does not expect it.
    core.submit(ms(20.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(21.0), "a", 1);
    assert_eq!(
        only(&mut core, ms(21.0)).completion,
        Completion::AllAnswered
    );
}

/// A run's incarnation: its start, in nanoseconds since the epoch of the core's clock.
fn started_at(ms: u64) -> u64 {
    ms * 1_000_000
}

#[test]
fn a_node_restarted_before_its_will_fired_is_asked_again_what_is_safe_to_repeat() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, started_at(0));
    core.submit(
        ms(1.0),
        Submission::to_nodes(Request::ping(), nodes(&["a"]))
            .with_policy(Policy::quiet(Duration::from_secs(30))),
    )
    .unwrap();
    sent(&mut core);
    // The run crashed unseen; a new one, started at 400 ms, says online before the broker
    // noticed the old one was gone. The ping went to the old run: it goes again.
    status(&mut core, ms(500.0), "a", Status::Online, started_at(400));
    let again = sent(&mut core);
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].0.as_str(), &again[0].1["command"]),
        ("general/a", &json!("ping"))
    );
    pong(&mut core, ms(501.0), "a", 0);
    let outcome = only(&mut core, ms(501.0));
    assert_eq!(
        (outcome.completion, outcome.online()),
        (Completion::AllAnswered, nodes(&["a"]))
    );
}

#[test]
fn a_node_restarted_before_its_will_fired_is_missing_from_what_must_not_run_twice() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, started_at(0));
    let approval = Request::approval("plan", "http://repo/plan.py".to_owned());
    core.submit(
        ms(1.0),
        Submission::to_nodes(approval, nodes(&["a"]))
            .with_policy(Policy::quiet(Duration::from_secs(30))),
    )
    .unwrap();
    sent(&mut core);
    status(&mut core, ms(500.0), "a", Status::Online, started_at(400));
    assert!(sent(&mut core).is_empty(), "never sent twice");
    let outcome = only(&mut core, ms(500.0));
    assert_eq!(
        (outcome.completion, outcome.missing),
        (Completion::Offline, nodes(&["a"]))
    );
}

#[test]
fn what_was_sent_after_a_restart_is_awaited_from_the_new_run() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, started_at(0));
    // The new run started at 400 ms; the request left at 450 ms, before its status came.
    ask(&mut core, 450.0, Request::ping(), &["a"]);
    sent(&mut core);
    status(&mut core, ms(500.0), "a", Status::Online, started_at(400));
    assert!(sent(&mut core).is_empty());
    pong(&mut core, ms(501.0), "a", 0);
    assert_eq!(
        only(&mut core, ms(501.0)).completion,
        Completion::AllAnswered
    );
}

#[test]
fn an_error_answers_the_oldest_request_to_its_node_and_no_other() {
    let mut core = fresh();
    let list = ask(&mut core, 0.0, Request::list(), &["a"]);
    let ping = ask(&mut core, 1.0, Request::ping(), &["a"]);
    error(&mut core, ms(2.0), "a");
    let first = only(&mut core, ms(2.0));
    assert_eq!((first.id, first.errors.len()), (list, 1));
    pong(&mut core, ms(3.0), "a", 0);
    let second = only(&mut core, ms(3.0));
    assert_eq!(
        (second.id, second.completion, second.replies.len()),
        (ping, Completion::AllAnswered, 1),
        "the real pong is the ping's answer, not a late reply"
    );
}

#[test]
fn stop_on_error_ends_only_the_request_the_error_answers() {
    let mut core = fresh();
    let stop = Policy::quiet(Duration::from_secs(5)).with_stop_on_error();
    let list = core
        .submit(
            ms(0.0),
            Submission::to_nodes(Request::list(), nodes(&["a"])).with_policy(stop.clone()),
        )
        .unwrap();
    core.submit(
        ms(1.0),
        Submission::to_nodes(Request::ping(), nodes(&["a", "b"])).with_policy(stop),
    )
    .unwrap();
    error(&mut core, ms(2.0), "a");
    let first = only(&mut core, ms(2.0));
    assert_eq!((first.id, first.completion), (list, Completion::Error));
    pong(&mut core, ms(3.0), "a", 0);
    pong(&mut core, ms(3.0), "b", 0);
    assert_eq!(only(&mut core, ms(3.0)).completion, Completion::AllAnswered);
}

#[test]
fn a_cancelled_request_completes_once_and_the_next_of_its_command_goes_out_at_once() {
    let mut core = fresh();
    let ghost = ask(&mut core, 0.0, Request::list(), &["ghost-node"]);
    let next = ask(&mut core, 100.0, Request::list(), &["a"]);
    sent(&mut core);
    assert!(core.cancel(ms(500.0), ghost));
    assert!(!core.cancel(ms(501.0), ghost), "once");
    let cancelled = only(&mut core, ms(500.0));
    assert_eq!(
        (cancelled.id, cancelled.completion),
        (ghost, Completion::Cancelled)
    );
    let out = sent(&mut core);
    assert_eq!(out.len(), 1, "the waiting list went out at the cancel");
    publish(
        &mut core,
        ms(501.0),
        json!({"researcher_id": ME, "node_id": "a", "success": true, "count": 0,
               "databases": [], "command": "list", "protocol_version": "1"}),
    );
    let outcome = only(&mut core, ms(501.0));
    assert_eq!(
        (outcome.id, outcome.elapsed),
        (next, Duration::from_millis(401))
    );
}

#[test]
fn a_node_nobody_expected_turns_a_broadcast_into_first_contact() {
    // An earlier process met nobody without presence; now silent nodes answer.
    let mut core = knowing(&[]);
    core.submit(ms(0.0), Submission::broadcast(Request::ping()))
        .unwrap();
    for (t, node) in [(1.0, "a"), (2.0, "b"), (3.0, "c")] {
        pong(&mut core, ms(t), node, 0);
    }
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(
        (outcome.completion, outcome.replies.len()),
        (Completion::Settled, 3)
    );
}

#[test]
fn a_retained_stopped_status_does_not_erase_a_node_heard_since() {
    let mut core = knowing(&[("v44", 1.0)]);
    let stopped = Presence::new("v44", Status::Stopped, 1);
    core.handle_retained(ms(0.0), &presence::topic("v44"), &stopped.encode());
    assert!(core.heard().contains_key("v44"));
    core.submit(ms(1.0), Submission::broadcast(Request::ping()))
        .unwrap();
    pong(&mut core, ms(2.0), "v44", 0);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.online(), ["v44"]);
    assert!(
        outcome.elapsed < Duration::from_millis(10),
        "{:?}",
        outcome.elapsed
    );
}

#[test]
fn back_from_a_broken_connection_what_is_safe_to_repeat_goes_again_to_who_has_not_answered() {
    use fedreq_protocol::ConnectionState;
    let mut core = fresh();
    ask(&mut core, 0.0, Request::ping(), &["a", "b"]);
    let approval = Request::approval("plan", "http://repo/plan.py");
    core.submit(ms(0.0), Submission::to_nodes(approval, nodes(&["a"])))
        .unwrap();
    sent(&mut core);
    pong(&mut core, ms(1.0), "a", 0);
    core.handle_connection(ms(2.0), ConnectionState::Disconnected("reset".into()));
    // b's pong, published at most once, is lost while we are away.
    core.handle_connection(ms(50.0), ConnectionState::Connected);
    let again = sent(&mut core);
    let again: Vec<(&str, &str)> = again
        .iter()
        .map(|(t, m)| (t.as_str(), m["command"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        again,
        [("fedreq/probe", ""), ("general/b", "ping")],
        "a presence probe; the approval never runs twice"
    );
    pong(&mut core, ms(51.0), "b", 0);
    let outcome = only(&mut core, ms(51.0));
    assert_eq!(outcome.online(), ["a", "b"]);
}

#[test]
fn a_node_given_up_as_stopped_that_comes_back_is_awaited_again() {
    let mut core = knowing(&[]);
    status(&mut core, ms(0.0), "a", Status::Online, started_at(0));
    status(&mut core, ms(10.0), "a", Status::Stopped, started_at(0));
    // Its new run started at 15 ms; its status is still on its way when the ping leaves.
    ask(&mut core, 20.0, Request::ping(), &["a", "b"]);
    status(&mut core, ms(21.0), "a", Status::Online, started_at(15));
    pong(&mut core, ms(22.0), "b", 0);
    assert!(
        done_by(&mut core, ms(22.0)).is_empty(),
        "a is awaited again"
    );
    pong(&mut core, ms(23.0), "a", 0);
    let outcome = only(&mut core, ms(23.0));
    assert_eq!(
        (outcome.completion, outcome.replies.len()),
        (Completion::AllAnswered, 2)
    );
}

#[test]
fn a_delay_every_pong_shares_does_not_lengthen_the_first_contact_gap() {
    // Every node's answers come 40 ms late (a slow link they all share): the gap grows with
    // their spread, from the first primer pong, not from sending.
    let mut core = fresh();
    let (primer, fence) = broadcast_search(&mut core, "even");
    for (t, node) in [
        (40.0, "even-1"),
        (41.0, "odd-1"),
        (42.0, "odd-2"),
        (43.0, "odd-3"),
    ] {
        pong(&mut core, ms(t), node, primer);
    }
    found(&mut core, ms(44.0), "even-1", "even");
    for (t, node) in [
        (45.0, "even-1"),
        (46.0, "odd-1"),
        (48.0, "odd-2"),
        (50.0, "odd-3"),
    ] {
        pong(&mut core, ms(t), node, fence);
    }
    let outcome = only(&mut core, ms(60_000.0));
    // Spread 10 ms from the first pong: the gap after the last answer is the minimum, 50 ms.
    assert_eq!(outcome.elapsed, Duration::from_millis(100));
    assert_eq!(outcome.online(), ["even-1"]);
}

#[test]
fn collecting_search_replies_after_a_broadcast_fences_it_then() {
    let mut core = knowing(&[]);
    for node in ["a", "b"] {
        status(&mut core, ms(0.0), node, Status::Online, 1);
    }
    // As send_message sends: fire and forget, the replies left for a collect.
    let forget = Policy {
        early: false,
        ..Policy::quiet(Duration::ZERO)
    };
    core.submit(
        ms(1.0),
        Submission::broadcast(search("x")).with_policy(forget),
    )
    .unwrap();
    done_by(&mut core, ms(1.0));
    sent(&mut core);
    found(&mut core, ms(2.0), "a", "x");
    let collect = fedreq_protocol::Collect {
        commands: vec![fedreq_protocol::Command::Search],
        policy: Policy::quiet(Duration::from_secs(5)),
        since: None,
        expect: None,
        broadcast: true,
    };
    core.collect(ms(3.0), collect);
    let fence = sent(&mut core);
    assert_eq!(fence.len(), 1);
    assert_eq!(fence[0].1["command"], "ping");
    pong(
        &mut core,
        ms(4.0),
        "b",
        fence[0].1["sequence"].as_u64().unwrap(),
    );
    let outcome = only(&mut core, ms(4.0));
    assert_eq!(
        (outcome.completion, outcome.replies.len()),
        (Completion::AllAnswered, 1)
    );
}

#[test]
fn a_forged_pong_to_a_primer_costs_a_search_at_most_the_first_contact_window() {
    let mut core = fresh();
    let (primer, fence) = broadcast_search(&mut core, "x");
    pong(&mut core, ms(1.0), "real", primer);
    // Anyone reading general/nodes sees the primer's sequence.
    pong(&mut core, ms(1.5), "forged", primer);
    pong(&mut core, ms(2.0), "real", fence);
    let outcome = only(&mut core, ms(60_000.0));
    assert_eq!(outcome.missing, nodes(&["forged"]));
    // Awaited a second after its pong, then the settle window: not the 5 s timeout.
    assert!(
        outcome.elapsed < Duration::from_millis(1_100),
        "{:?}",
        outcome.elapsed
    );
}
