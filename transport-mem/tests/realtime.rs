//! Cores driven in real time over the in-memory broker.

use std::time::Duration;

use fedreq_mem::sim::simulated_datasets;
use fedreq_mem::{Broker, NodeDriver};
use fedreq_protocol::node::FetchResult;
use fedreq_protocol::{Completion, NodeConfig, Policy, Request, ResearcherConfig, Submission};

#[test]
fn a_researcher_and_nodes_exchange_over_the_in_memory_broker() {
    let broker = Broker::new();
    let ids: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
    let configs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| NodeConfig::new(id.clone(), simulated_datasets(i)))
        .collect();
    let _nodes = NodeDriver::start(&broker, configs, |url| {
        if url.ends_with(".py") {
            FetchResult::Body(b"class P: pass".to_vec())
        } else {
            FetchResult::Status(404)
        }
    })
    .unwrap();
    let researcher = fedreq_mem::connect_researcher(&broker, ResearcherConfig::new("r"));
    let known = Policy::quiet(Duration::from_secs(5)).with_roster(ids.clone());

    let ping = researcher
        .submit(Submission::broadcast(Request::ping()).with_policy(known.clone()))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(ping.completion, Completion::AllAnswered);
    assert!(ping.elapsed < Duration::from_secs(1));

    let search = Submission::broadcast(Request::search(vec!["images".into()]))
        .with_policy(Policy::quiet(Duration::from_millis(200)));
    let found: Vec<String> = researcher
        .submit(search)
        .recv()
        .unwrap()
        .unwrap()
        .datasets()
        .into_keys()
        .collect();
    assert_eq!(found, ["n0", "n1", "n2"]);

    let approve = Submission::broadcast(Request::approval("p", "http://x/p.py")).with_policy(known);
    let approvals = researcher
        .submit(approve)
        .recv()
        .unwrap()
        .unwrap()
        .approvals();
    assert!(
        approvals.len() == 4 && approvals.values().all(|&ok| ok),
        "{approvals:?}"
    );
    let logs = researcher.events().try_iter().count();
    assert!(logs >= 4, "each node logged the registration ({logs})");
}

#[test]
fn a_node_id_that_is_not_one_topic_level_is_refused() {
    let broker = Broker::new();
    let bad = vec![NodeConfig::new("a/#", simulated_datasets(0))];
    assert!(NodeDriver::start(&broker, bad, |_| FetchResult::Status(404)).is_err());
}

/// A node as Fed-BioMed v4.4 runs it: the same answers, and no presence.
fn silent_node(broker: &Broker, id: &str) -> std::thread::JoinHandle<()> {
    let client = broker.connect();
    let mut node = fedreq_protocol::Node::new(NodeConfig::new(id, simulated_datasets(0)));
    for filter in node.subscriptions() {
        client.subscribe(&filter).unwrap();
    }
    std::thread::spawn(move || {
        while let Ok(publish) = client.inbox().recv_timeout(Duration::from_secs(2)) {
            node.handle_publish(
                fedreq_protocol::Timestamp::ZERO,
                &publish.topic,
                &publish.payload,
            );
            while let Some(transmit) = node.poll_transmit() {
                let _ = client.publish(&transmit.topic, transmit.payload);
            }
        }
    })
}

#[test]
fn a_broadcast_finds_nodes_with_presence_and_nodes_without() {
    let broker = Broker::new();
    let configs = (0..3)
        .map(|i| NodeConfig::new(format!("announcing-{i}"), simulated_datasets(i)))
        .collect();
    let _nodes = NodeDriver::start(&broker, configs, |_| FetchResult::Status(404)).unwrap();
    let _silent: Vec<_> = (0..3)
        .map(|i| silent_node(&broker, &format!("silent-{i}")))
        .collect();
    let researcher = fedreq_mem::connect_researcher(&broker, ResearcherConfig::new("r"));
    let roster = researcher.roster().recv().unwrap();
    assert_eq!(
        roster.len(),
        3,
        "the retained statuses, known before the first request"
    );
    let ping = || {
        let outcome = researcher
            .submit(Submission::broadcast(Request::ping()))
            .recv()
            .unwrap()
            .unwrap();
        let mut online = outcome.online();
        online.sort();
        (online, outcome.completion)
    };
    let everyone = [
        "announcing-0",
        "announcing-1",
        "announcing-2",
        "silent-0",
        "silent-1",
        "silent-2",
    ];
    // The first broadcast expects the three that announce; the silent ones answering within
    // the first-contact gap are found, one answering later is heard late, and expected from
    // then on: the next broadcast ends as soon as all six answered.
    let (first, completion) = ping();
    assert_eq!(first[..3], everyone[..3], "{first:?}");
    assert_eq!(completion, Completion::Settled);
    std::thread::sleep(Duration::from_millis(50));
    let (second, completion) = ping();
    assert_eq!(second, everyone);
    assert_eq!(completion, Completion::AllAnswered);
}

#[test]
fn a_broker_that_keeps_retained_statuses_from_wildcards_still_gives_the_roster() {
    // RabbitMQ's MQTT plugin: the researcher's `fedreq/presence/+` gets no retained status.
    let broker = Broker::retained_exact_only();
    let configs = (0..3)
        .map(|i| NodeConfig::new(format!("n{i}"), simulated_datasets(i)))
        .collect();
    let _nodes = NodeDriver::start(&broker, configs, |_| FetchResult::Status(404)).unwrap();
    let researcher = fedreq_mem::connect_researcher(&broker, ResearcherConfig::new("r"));
    // The nodes answer the researcher's probe with their statuses, live.
    let mut announced = Vec::new();
    while announced.len() < 3 {
        match researcher.events().recv_timeout(Duration::from_secs(5)) {
            Ok(fedreq_protocol::Event::Presence(p)) => announced.push(p.node_id),
            Ok(_) => {}
            Err(error) => panic!("only {announced:?} announced: {error}"),
        }
    }
    let roster = researcher.roster().recv().unwrap();
    assert!(
        roster.len() == 3 && roster.values().all(|m| m.online()),
        "{roster:?}"
    );
    let ping = researcher
        .submit(Submission::broadcast(Request::ping()))
        .recv()
        .unwrap()
        .unwrap();
    // A first broadcast, from a core that knows of no node without presence: it settles.
    assert_eq!(ping.completion, Completion::Settled);
    assert_eq!(ping.online().len(), 3);
    assert!(ping.elapsed < Duration::from_secs(1), "{:?}", ping.elapsed);
}
