//! The simulator: determinism, faults, and requests completing exactly as the trace says.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fedreq_mem::sim::EXAMPLE_PLAN_URL;
use fedreq_mem::{Crash, Endpoint, Fate, Faults, SimConfig, Simulation, Slow};
use fedreq_protocol::{Completion, Outcome, Policy, Request, Submission, Timestamp};
use serde_json::Value;

fn faulty(nodes: usize, seed: u64) -> SimConfig {
    SimConfig {
        faults: Faults {
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.2,
            offline: 0.1,
            ..Faults::default()
        },
        keep_trace: true,
        ..SimConfig::new(nodes, seed)
    }
}

fn roster(sim: &Simulation) -> Policy {
    Policy::quiet(Duration::from_secs(1)).with_roster(sim.node_ids().to_vec())
}

fn run_three(sim: &mut Simulation) -> Vec<Outcome> {
    let ping = Submission::broadcast(Request::ping()).with_policy(roster(sim));
    let list = Submission::broadcast(Request::list()).with_policy(roster(sim));
    let approve = Submission::broadcast(Request::approval("sim plan", EXAMPLE_PLAN_URL))
        .with_policy(roster(sim));
    [ping, list, approve]
        .into_iter()
        .map(|s| sim.request(s).unwrap())
        .collect()
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let runs: Vec<(u64, Vec<Outcome>)> = [7, 7, 8]
        .into_iter()
        .map(|seed| {
            let mut sim = Simulation::new(faulty(200, seed));
            let outcomes = run_three(&mut sim);
            (sim.trace_hash(), outcomes)
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[0].0, runs[2].0);
}

#[test]
fn offline_share_is_exact_and_chosen_by_the_seed() {
    let offline = |seed| {
        let config = SimConfig {
            faults: Faults {
                offline: 0.25,
                ..Faults::default()
            },
            ..SimConfig::new(101, seed)
        };
        Simulation::new(config).offline_nodes()
    };
    assert_eq!(offline(1).len(), 25, "round(0.25 * 101)");
    assert_eq!(offline(1), offline(1));
    assert_ne!(offline(1), offline(2));
}

/// What the trace says about one request: nodes whose reply reached the researcher before
/// `end`, nodes that lost a copy of the request or of a reply, and delivered reply copies.
struct Paths {
    answered: BTreeSet<String>,
    lost: BTreeSet<String>,
    delivered_replies: usize,
}

fn paths(sim: &Simulation, outcome: &Outcome, end: Timestamp) -> Paths {
    let node = |e: Endpoint| match e {
        Endpoint::Node(i) => sim.node_ids()[i as usize].clone(),
        Endpoint::Researcher => unreachable!(),
    };
    let command = outcome.command.expect("a sent request");
    let reply_command = command.reply().as_str();
    let mut paths = Paths {
        answered: BTreeSet::new(),
        lost: BTreeSet::new(),
        delivered_replies: 0,
    };
    for entry in sim.trace() {
        let Ok(message) = serde_json::from_slice::<Value>(&entry.payload) else {
            continue;
        };
        let ours = message["sequence"].as_u64() == outcome.sequence;
        match (entry.from, entry.to) {
            (Endpoint::Researcher, to)
                if ours
                    && message["command"] == command.as_str()
                    && entry.fate != Fate::Delivered =>
            {
                paths.lost.insert(node(to));
            }
            (from, Endpoint::Researcher) if ours && message["command"] == reply_command => {
                match entry.fate {
                    Fate::Delivered if entry.at <= end => {
                        paths.answered.insert(node(from));
                        paths.delivered_replies += 1;
                    }
                    Fate::Delivered => {}
                    _ => {
                        paths.lost.insert(node(from));
                    }
                }
            }
            _ => {}
        }
    }
    paths
}

#[test]
fn under_drop_duplicate_and_reorder_missing_nodes_are_exactly_the_lost_ones() {
    let mut duplicates_seen = 0;
    for seed in 1..=5 {
        let mut outcomes_with_duplicates = 0;
        let mut sim = Simulation::new(faulty(300, seed));
        let offline: BTreeSet<String> = sim.offline_nodes().into_iter().collect();
        let mut clock = Timestamp::ZERO;
        for outcome in run_three(&mut sim) {
            let end = clock + outcome.elapsed;
            clock = end;
            let paths = paths(&sim, &outcome, end);
            let replied: BTreeSet<String> = outcome
                .replies
                .iter()
                .map(|r| r.node_id().to_owned())
                .collect();
            assert_eq!(replied.len(), outcome.replies.len(), "one reply per node");
            assert_eq!(replied, paths.answered, "seed {seed} {:?}", outcome.command);
            let missing: BTreeSet<String> = outcome.missing.iter().cloned().collect();
            let expected: BTreeSet<String> = sim
                .node_ids()
                .iter()
                .filter(|n| !paths.answered.contains(*n))
                .cloned()
                .collect();
            assert_eq!(missing, expected, "seed {seed} {:?}", outcome.command);
            assert!(missing.len() >= offline.len() && !offline.is_empty());
            for node in &missing {
                assert!(
                    offline.contains(node) || paths.lost.contains(node),
                    "{node} missing for no reason"
                );
            }
            outcomes_with_duplicates += usize::from(outcome.counters.duplicates > 0);
            assert_eq!(
                outcome.counters.duplicates as usize,
                paths.delivered_replies - replied.len(),
                "every extra copy counted once"
            );
        }
        assert_eq!(sim.run_until_idle(), Vec::new(), "nothing completes twice");
        duplicates_seen += outcomes_with_duplicates;
    }
    assert!(duplicates_seen > 0, "the duplicate fault was exercised");
}

#[test]
fn a_search_completes_with_exactly_the_nodes_holding_the_tags() {
    let mut sim = Simulation::new(SimConfig::new(100, 3));
    let outcome = sim
        .request(Submission::broadcast(Request::search(vec![
            "fbm".into(),
            "group3".into(),
        ])))
        .unwrap();
    let found: Vec<String> = outcome.datasets().into_keys().collect();
    let expected: Vec<String> = (0..100)
        .filter(|i| i % 10 == 3)
        .map(|i| format!("node-{i:02}"))
        .collect();
    assert_eq!(found, expected);
    // Every node online answered or passed the fence: no quiet period (the first broadcast
    // of a core settles a moment for nodes without presence).
    assert_eq!(outcome.completion, Completion::Settled);
    assert!(outcome.missing.is_empty());
    assert!(
        outcome.elapsed < Duration::from_millis(50),
        "{:?}",
        outcome.elapsed
    );
    let datasets = outcome.datasets();
    assert!(datasets
        .values()
        .all(|d| d.len() == 1 && d[0].get("path").is_none()));
}

#[test]
fn crashed_nodes_miss_requests_while_down_and_answer_after() {
    let config = SimConfig {
        faults: Faults {
            crash: Some(Crash {
                fraction: 0.2,
                within: Duration::ZERO,
                down: Duration::from_secs(10),
            }),
            slow: Some(Slow {
                fraction: 0.1,
                delay: Duration::from_millis(500),
            }),
            ..Faults::default()
        },
        ..SimConfig::new(50, 11)
    };
    let mut sim = Simulation::new(config);
    let policy = Policy::quiet(Duration::from_secs(1)).with_roster(sim.node_ids().to_vec());
    let during = sim
        .request(Submission::broadcast(Request::ping()).with_policy(policy.clone()))
        .unwrap();
    assert_eq!(during.missing.len(), 10, "{:?}", during.missing);
    assert!(
        during.elapsed >= Duration::from_millis(500),
        "slow nodes answer late"
    );
    while sim.now() < Timestamp::from_duration(Duration::from_secs(11)) {
        sim.request(
            Submission::broadcast(Request::list())
                .with_policy(Policy::quiet(Duration::from_secs(2))),
        )
        .unwrap();
    }
    let after = sim
        .request(Submission::broadcast(Request::ping()).with_policy(policy))
        .unwrap();
    assert!(after.missing.is_empty(), "{:?}", after.missing);
    assert_eq!(after.completion, Completion::AllAnswered);
}

#[test]
fn approval_registers_the_plan_on_every_node_and_missing_urls_fail() {
    let mut sim = Simulation::new(SimConfig::new(20, 5));
    let roster = Policy::quiet(Duration::from_secs(1)).with_roster(sim.node_ids().to_vec());
    let ok = sim
        .request(
            Submission::broadcast(Request::approval("p", EXAMPLE_PLAN_URL))
                .with_policy(roster.clone()),
        )
        .unwrap();
    let approvals: BTreeMap<String, bool> = ok.approvals();
    assert_eq!(approvals.len(), 20);
    assert!(approvals.values().all(|&ok| ok));
    assert_eq!(sim.node_mut(0).plans().len(), 1);
    let bad = sim
        .request(
            Submission::broadcast(Request::approval("p", "http://repository.sim/nope.py"))
                .with_policy(roster),
        )
        .unwrap();
    assert!(bad.approvals().values().all(|&ok| !ok));
    let logs = sim.take_events().len();
    assert!(logs >= 20, "nodes log what they do ({logs} events)");
}

/// Broadcasts by presence with crashes and offline nodes: each expects the nodes online when
/// it is sent; a node that crashes is awaited until it comes back as a new run (or its return
/// window ends), and is missing.
#[test]
fn broadcasts_by_presence_follow_crashes_and_rejoins() {
    let config = |seed| SimConfig {
        faults: Faults {
            offline: 0.1,
            crash: Some(Crash {
                fraction: 0.2,
                within: Duration::from_millis(300),
                down: Duration::from_millis(200),
            }),
            ..Faults::default()
        },
        ..SimConfig::new(200, seed)
    };
    let run = |seed| {
        let mut sim = Simulation::new(config(seed));
        let offline: BTreeSet<String> = sim.offline_nodes().into_iter().collect();
        let mut outcomes = Vec::new();
        for _ in 0..20 {
            let ping = Submission::broadcast(Request::ping());
            let outcome = sim.request(ping).unwrap();
            // Never the quiet period: every node online answered, or went offline.
            assert!(
                [
                    Completion::AllAnswered,
                    Completion::Settled,
                    Completion::Offline
                ]
                .contains(&outcome.completion),
                "{:?} {:?}",
                outcome.completion,
                outcome.missing
            );
            assert!(outcome.online().iter().all(|n| !offline.contains(n)));
            outcomes.push(outcome.online().len());
            // Let crashes and rejoins happen between requests.
            let pause = sim.submit(
                Submission::to_nodes(Request::ping(), vec!["nobody".into()])
                    .with_policy(Policy::quiet(Duration::from_millis(30))),
            );
            sim.run_until_complete(pause.unwrap());
        }
        (outcomes, sim.trace_hash())
    };
    let (counts, hash) = run(7);
    assert_eq!(counts[0], 180, "200 nodes, 20 never online");
    assert!(
        counts.iter().any(|&c| c < 180),
        "some broadcast saw a crash: {counts:?}"
    );
    assert_eq!(
        *counts.last().unwrap(),
        180,
        "every crashed node came back: {counts:?}"
    );
    assert_eq!(run(7).1, hash, "the same seed gives the same trace");
}

#[test]
fn silent_nodes_are_found_by_first_contact_and_a_missed_slow_one_by_the_next_broadcast() {
    // Thirty nodes that announce nothing, across a country; one ten times slower.
    let ms = Duration::from_millis;
    let mut sim = Simulation::new(SimConfig {
        faults: Faults {
            latency: (ms(1), ms(2)),
            distance: Some(fedreq_mem::Distance::Uniform(ms(10), ms(40))),
            slow: Some(Slow {
                fraction: 1.0 / 30.0,
                delay: ms(400),
            }),
            silent: 1.0,
            ..Faults::default()
        },
        ..SimConfig::new(30, 5)
    });
    let ping = || Submission::broadcast(Request::ping());
    let first = sim.request(ping()).unwrap();
    assert_eq!(first.replies.len(), 29, "the slow one is missed");
    assert_eq!(first.completion, Completion::Settled);
    assert!(
        first.elapsed < Duration::from_millis(300),
        "{:?}",
        first.elapsed
    );
    sim.run_until_idle();
    let next = sim.request(ping()).unwrap();
    assert_eq!(next.replies.len(), 30, "its late reply made it known");
    assert!(next.missing.is_empty());
    // A search: every node passed the fence or replied; the matching ones replied.
    let search = sim
        .request(Submission::broadcast(Request::search(vec!["even".into()])))
        .unwrap();
    assert_eq!(search.replies.len(), 15);
    assert!(search.missing.is_empty());
}
