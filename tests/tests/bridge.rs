//! A federation across two brokers: a site mosquitto bridged to a central one with the bridge
//! configuration of docs/deployment.md. A researcher on the central broker reaches nodes on
//! both; node statuses cross the bridge; a bridge cut during a request loses nothing.

use std::time::{Duration, Instant};

use fedreq_driver::ResearcherHandle;
use fedreq_mqtt::{MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{Policy, Request, ResearcherConfig, Submission};
use fedreq_tests::{start_nodes, wait_for_online, Cutter, Mosquitto};

/// The bridge block of docs/deployment.md, pointed at `port`.
fn bridge_config(port: u16) -> String {
    let docs = include_str!("../../docs/deployment.md");
    let start = docs
        .find("# fedreq bridge")
        .expect("docs/deployment.md has the bridge block");
    let block = &docs[start..];
    let block = &block[..block.find("```").expect("the block ends")];
    assert!(block.contains("central.example.org:1883"));
    block.replace("central.example.org:1883", &format!("127.0.0.1:{port}"))
}

fn nodes(runtime: &Runtime, port: u16, ids: &[&str]) -> Vec<NodeDriver> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    start_nodes(runtime, &MqttConfig::new("127.0.0.1", port), &ids, (2, 1))
}

fn roster_becomes(researcher: &ResearcherHandle, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_for_online(researcher, &expected);
}

#[test]
fn a_researcher_on_the_central_broker_works_with_nodes_behind_a_bridge() {
    let Some(central) = Mosquitto::start() else {
        return;
    };
    // The bridge reaches the central broker through a proxy the test can cut.
    let cutter = Cutter::start(central.port());
    let site = Mosquitto::start_with(&bridge_config(cutter.port())).unwrap();
    let runtime = Runtime::new().unwrap();
    let _central_nodes = nodes(&runtime, central.port(), &["c1", "c2"]);
    let mut site_nodes = nodes(&runtime, site.port(), &["s1", "s2"]);
    let mqtt = MqttConfig::new("127.0.0.1", central.port());
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("r-bridge")).unwrap();
    let all = ["c1", "c2", "s1", "s2"];
    // Retained statuses cross the bridge: the site's nodes are known online.
    roster_becomes(&researcher, &all);
    let ask = |submission: Submission| researcher.submit(submission).recv().unwrap().unwrap();

    let ping = ask(Submission::broadcast(Request::ping()));
    assert_eq!(
        (ping.online().len(), ping.missing.len()),
        (4, 0),
        "{ping:?}"
    );
    let targets: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let list = ask(Submission::to_nodes(Request::list(), targets.clone()));
    assert_eq!(list.datasets().len(), 4);
    assert!(list.datasets().values().all(|d| d.len() == 2));
    let search = ask(Submission::broadcast(Request::search(vec!["ds1".into()])));
    assert_eq!(search.datasets().len(), 4, "{:?}", search.missing);
    // The site's nodes say they have nothing across the bridge too: no quiet period.
    let none = ask(Submission::broadcast(Request::search(vec![
        "nothing-here".into()
    ])));
    assert!(none.replies.is_empty());
    assert_eq!(
        none.completion,
        fedreq_protocol::Completion::AllAnswered,
        "{none:?}"
    );
    let approval = ask(Submission::broadcast(Request::approval(
        "plan",
        "http://repository.test/plan.py",
    )));
    assert_eq!(approval.approvals().values().filter(|ok| **ok).count(), 4);

    // The bridge drops as requests to the site go out, and reconnects a second later: its
    // sessions on both sides queue what crosses meanwhile, and nothing is lost.
    let policy = Policy::quiet(Duration::from_secs(15));
    let site_ids = vec!["s1".to_owned(), "s2".to_owned()];
    let cut = Instant::now();
    cutter.cut();
    let pending: Vec<_> = (0..20)
        .map(|_| {
            let ping = Submission::to_nodes(Request::ping(), site_ids.clone());
            researcher.submit(ping.with_policy(policy.clone()))
        })
        .collect();
    for answer in pending {
        let outcome = answer.recv().unwrap().unwrap();
        assert_eq!(outcome.online().len(), 2, "{:?}", outcome.missing);
    }
    eprintln!("20 requests across a bridge cut: {:?}", cut.elapsed());
    let ping = ask(Submission::broadcast(Request::ping()));
    assert_eq!(ping.online().len(), 4, "{:?}", ping.missing);

    // A site node that stops says so across the bridge.
    drop(site_nodes.pop());
    roster_becomes(&researcher, &["c1", "c2", "s1"]);
}
