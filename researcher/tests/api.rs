//! The Requests API over the in-memory broker: concurrency, async from a non-tokio executor,
//! Fed-BioMed's send/get operations, monitoring, approval.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedreq::repository::{download, RepositoryServer};
use fedreq::{Error, Requests, RequestsConfig, TrainingPlan};
use fedreq_mem::sim::simulated_datasets;
use fedreq_mem::{Broker, NodeDriver};
use fedreq_protocol::{Command, NodeConfig, Policy};
use serde_json::{json, Value};

const IDS: [&str; 3] = ["n1", "n2", "n3"];

fn ids() -> Vec<String> {
    IDS.iter().map(|s| s.to_string()).collect()
}

/// A broker with three nodes (n1..n3, simulating training) and a policy that knows them.
fn federation() -> (Broker, NodeDriver, RequestsConfig) {
    let broker = Broker::new();
    let configs = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut config = NodeConfig::new(*id, simulated_datasets(i));
            config.simulate_training = true;
            config
        })
        .collect();
    let nodes = NodeDriver::start(&broker, configs, download).unwrap();
    let config = RequestsConfig {
        policy: Policy::quiet(Duration::from_secs(2)).with_roster(ids()),
        ..RequestsConfig::new("researcher-api")
    };
    (broker, nodes, config)
}

#[test]
fn requests_from_two_threads_each_get_their_own_replies() {
    let (broker, _nodes, config) = federation();
    let requests = Arc::new(Requests::in_memory(&broker, config));
    let threads: Vec<_> = [vec!["n1", "n2"], vec!["n3"]]
        .into_iter()
        .map(|targets| {
            let requests = Arc::clone(&requests);
            std::thread::spawn(move || {
                for _ in 0..30 {
                    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
                    let ping = fedreq_protocol::Submission::to_nodes(
                        fedreq_protocol::Request::ping(),
                        targets.clone(),
                    );
                    let outcome = requests.request(ping).unwrap();
                    let mut online = outcome.online();
                    online.sort();
                    assert_eq!(online, targets);
                    assert_eq!(outcome.counters.not_targeted, 0);
                    let listed: Vec<String> = requests
                        .list(Some(targets.clone()), false)
                        .unwrap()
                        .into_keys()
                        .collect();
                    assert_eq!(listed, targets);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn two_instances_with_one_researcher_id_do_not_take_each_others_replies() {
    let (broker, _nodes, config) = federation();
    let a = Requests::in_memory(&broker, config.clone());
    let b = Requests::in_memory(&broker, config);
    for _ in 0..20 {
        let (left, right) = std::thread::scope(|s| {
            let left = s.spawn(|| a.ping_nodes().unwrap());
            let right = s.spawn(|| b.ping_nodes().unwrap());
            (left.join().unwrap(), right.join().unwrap())
        });
        for online in [left, right] {
            assert_eq!(
                online.iter().collect::<BTreeSet<_>>().len(),
                3,
                "{online:?}"
            );
        }
    }
}

#[test]
fn async_forms_run_on_any_executor() {
    let (broker, _nodes, config) = federation();
    let requests = Requests::in_memory(&broker, config);
    let (online, found) = pollster::block_on(async {
        let online = requests.ping_nodes_async().await.unwrap();
        let found = requests
            .search_async(vec!["images".into()], None)
            .await
            .unwrap();
        (online, found)
    });
    assert_eq!(online.len(), 3);
    assert_eq!(found.len(), 3, "groups 0 to 2 hold images");
}

#[test]
fn send_message_then_get_responses_as_fedbiomed_does() {
    let (broker, _nodes, config) = federation();
    let requests = Requests::in_memory(&broker, config);
    let ping = json!({"researcher_id": "researcher-api", "command": "ping"});
    let sequence = requests
        .send_message(ping.as_object().unwrap().clone(), None, true)
        .unwrap();
    assert!(sequence.is_some());
    let responses = requests
        .get_responses(
            &[Command::Pong],
            Some(Duration::from_millis(100)),
            true,
            true,
        )
        .unwrap();
    assert_eq!(responses.len(), 3);
    assert!(responses
        .iter()
        .all(|r| r["sequence"].as_u64() == sequence && r["command"] == "pong"));

    let list = json!({"researcher_id": "researcher-api", "command": "list"});
    assert_eq!(
        requests
            .send_message(list.as_object().unwrap().clone(), Some("n2".into()), false)
            .unwrap(),
        None
    );
    let messages = requests
        .get_messages(&[Command::List], Duration::from_millis(200))
        .unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["node_id"], "n2");

    let bad = json!({"command": "frobnicate"});
    assert!(matches!(
        requests.send_message(bad.as_object().unwrap().clone(), None, false),
        Err(Error::Message(_))
    ));
}

#[test]
fn compatibility_rounds_are_reachable_from_the_api() {
    let (broker, _nodes, mut config) = federation();
    config.policy = Policy::fedbiomed(Duration::from_millis(150));
    let requests = Requests::in_memory(&broker, config);
    let started = Instant::now();
    assert_eq!(requests.ping_nodes().unwrap().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "two rounds at least"
    );
}

/// Sends a `train` to n2 as `send_message` does, and collects its replies as `get_responses`
/// does: n2 sends a monitoring scalar before its reply.
fn train_on_n2(requests: &Requests) -> Vec<Value> {
    let message = json!({"researcher_id": "x", "job_id": "j", "params_url": "", "training_args": {},
            "dataset_id": "dataset-clinical-1", "training": true, "model_args": {}, "training_plan_url": "",
            "training_plan_class": "P", "secagg_servkey_id": null, "secagg_biprime_id": null,
            "secagg_random": null, "secagg_clipping_range": null, "round": 0, "aggregator_args": {},
            "command": "train"});
    requests
        .send_message(
            message.as_object().unwrap().clone(),
            Some("n2".into()),
            false,
        )
        .unwrap();
    requests
        .get_responses(
            &[Command::Train],
            Some(Duration::from_millis(100)),
            true,
            true,
        )
        .unwrap()
}

#[test]
fn monitoring_callbacks_come_and_go_and_have_run_when_the_reply_returns() {
    let (broker, _nodes, config) = federation();
    let requests = Requests::in_memory(&broker, config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    // A slow callback (a notebook's plot): the node's scalar comes before its reply, so the
    // callback has run by the time the reply returns.
    requests.add_monitor_callback(move |scalar| {
        std::thread::sleep(Duration::from_millis(200));
        sink.lock().unwrap().push(scalar.node_id.clone())
    });
    assert_eq!(train_on_n2(&requests).len(), 1);
    assert_eq!(*seen.lock().unwrap(), ["n2"]);
    requests.remove_monitor_callback();
    train_on_n2(&requests);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_callback_that_panics_loses_its_event_and_nothing_else() {
    let (broker, _nodes, config) = federation();
    let requests = Requests::in_memory(&broker, config);
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    requests.add_monitor_callback(move |_| {
        let mut calls = counted.lock().unwrap();
        *calls += 1;
        if *calls == 1 {
            drop(calls);
            panic!("a notebook's plot fails");
        }
    });
    // Each request returns, and the scalar after the panic still reaches the callback.
    assert_eq!(train_on_n2(&requests).len(), 1);
    assert_eq!(train_on_n2(&requests).len(), 1);
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[test]
fn training_plan_approval_through_the_repository() {
    let (broker, _nodes, mut config) = federation();
    let plan = TrainingPlan::from_source("plan.py", "class Plan:\n    pass\n").unwrap();
    assert_eq!(
        config.uploads_url.as_deref(),
        Some("http://localhost:8844/upload/"),
        "v4.4's default"
    );
    config.uploads_url = None;
    let without = Requests::in_memory(&broker, config.clone());
    assert!(matches!(
        without.training_plan_approve(&plan, "d", None, None),
        Err(Error::NoRepository)
    ));

    let repository = RepositoryServer::start_local().unwrap();
    config.uploads_url = Some(repository.uploads_url());
    let requests = Requests::in_memory(&broker, config);
    let targets = vec!["n1".to_owned(), "n3".to_owned(), "ghost".to_owned()];
    let approvals = requests
        .training_plan_approve(&plan, "d", Some(targets), Some(Duration::from_millis(300)))
        .unwrap();
    let expected = [
        ("ghost".to_owned(), false),
        ("n1".to_owned(), true),
        ("n3".to_owned(), true),
    ];
    assert_eq!(approvals.into_iter().collect::<Vec<_>>(), expected);
    let all =
        pollster::block_on(requests.training_plan_approve_async(&plan, "d", None, None)).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.values().all(|&ok| ok));
}

/// A plan as large as nodes take: one ordinary training plan class after another.
fn largest_plan() -> String {
    use std::fmt::Write;
    let mut plan = String::new();
    for i in 0.. {
        let class = format!(
            "class Plan{i}:\n    def training_step(self, data, target):\n        loss = (data - target) ** 2\n        return loss.mean()\n\n"
        );
        if plan.len() + class.len() > fedreq::plan::MAX_PLAN_BYTES {
            break;
        }
        let _ = write!(plan, "{class}");
    }
    plan
}

#[test]
fn a_node_answers_pings_while_it_checks_the_largest_plan() {
    let (broker, _nodes, mut config) = federation();
    let repository = RepositoryServer::start_local().unwrap();
    config.uploads_url = Some(repository.uploads_url());
    let requests = Arc::new(Requests::in_memory(&broker, config));
    let plan = TrainingPlan::from_source("largest.py", largest_plan()).unwrap();
    let approving = {
        let requests = Arc::clone(&requests);
        std::thread::spawn(move || {
            let nodes = Some(vec!["n1".to_owned()]);
            requests.training_plan_approve(&plan, "d", nodes, Some(Duration::from_secs(300)))
        })
    };
    let mut round_trips = Vec::new();
    while !approving.is_finished() {
        let sent = Instant::now();
        let mut online = requests.ping_nodes().unwrap();
        online.sort();
        assert_eq!(
            online,
            ids(),
            "a node missed a ping while n1 checked the plan"
        );
        round_trips.push(sent.elapsed());
    }
    let approvals = approving.join().unwrap().unwrap();
    assert_eq!(
        approvals.into_iter().collect::<Vec<_>>(),
        [("n1".to_owned(), true)]
    );
    // Answered again and again: the check (seconds in a debug build) never held n1's message
    // loop. The bound leaves room for a loaded machine.
    let slowest = round_trips.iter().max().unwrap();
    assert!(round_trips.len() >= 10, "{round_trips:?}");
    assert!(*slowest < Duration::from_secs(2), "{round_trips:?}");
}

#[test]
fn get_responses_takes_the_replies_to_every_message_sent_since_the_last_collect_as_jobs_do() {
    let (broker, _nodes, mut config) = federation();
    config.policy = Policy::quiet(Duration::from_secs(30));
    let requests = Requests::in_memory(&broker, config);
    let started = Instant::now();
    for node in IDS {
        let ping = json!({"researcher_id": "researcher-api", "command": "ping"});
        requests
            .send_message(ping.as_object().unwrap().clone(), Some(node.into()), true)
            .unwrap();
        // The first node answers before the message to the last one goes out.
        std::thread::sleep(Duration::from_millis(20));
    }
    let responses = requests
        .get_responses(&[Command::Pong, Command::Error], None, false, true)
        .unwrap();
    let answered: BTreeSet<&str> = responses
        .iter()
        .filter_map(|r| r["node_id"].as_str())
        .collect();
    assert_eq!(answered, IDS.into_iter().collect());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "each named node answered: no 30 s quiet period ({:?})",
        started.elapsed()
    );
}

#[test]
fn an_empty_node_list_means_every_node_as_in_v44() {
    let (broker, _nodes, config) = federation();
    let requests = Requests::in_memory(&broker, config);
    assert_eq!(requests.list(Some(vec![]), false).unwrap().len(), 3);
    assert_eq!(
        requests
            .search(vec!["fbm".into()], Some(vec![]))
            .unwrap()
            .len(),
        3
    );
}
