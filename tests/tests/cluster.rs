//! A federation on a real clustered broker: three RabbitMQ members on loopback, nodes on two
//! of them, the researcher on the third. RabbitMQ keeps retained messages per member and never
//! delivers them on a wildcard subscription, keeps a persistent session on the member that
//! started it, and publishes no will of the clients of a member that dies.

use std::time::{Duration, Instant};

use fedreq::known::KnownNodes;
use fedreq::requests::{Remember, RequestsConfig};
use fedreq::Requests;
use fedreq_mqtt::{MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{Completion, Outcome, Policy, Request, Submission};
use fedreq_tests::{start_nodes, RabbitCluster};

/// Nodes `a-1`..`a-3` start on member 0, `c-1`..`c-3` on member 2; the researcher on member 1.
const ON_0: [&str; 3] = ["a-1", "a-2", "a-3"];
const ON_2: [&str; 3] = ["c-1", "c-2", "c-3"];

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn everyone() -> Vec<String> {
    ids(&[ON_0, ON_2].concat())
}

fn sorted(mut nodes: Vec<String>) -> Vec<String> {
    nodes.sort();
    nodes
}

fn researcher(cluster: &RabbitCluster, remember: Remember) -> Requests {
    let mqtt = MqttConfig::parse(&cluster.addresses(1)).unwrap();
    let config = RequestsConfig {
        remember,
        policy: Policy::quiet(Duration::from_secs(5)),
        ..RequestsConfig::new(format!(
            "researcher-cluster-{}",
            fedreq::requests::random_u64()
        ))
    };
    Requests::connect(mqtt, config).unwrap()
}

/// The nodes, those on member 0 holding datasets `ds0` and `ds1`, those on member 2 `ds0`.
fn nodes(runtime: &Runtime, cluster: &RabbitCluster) -> Vec<NodeDriver> {
    let on = |member, names: &[&str], datasets| {
        let mqtt = MqttConfig::parse(&cluster.addresses(member)).unwrap();
        start_nodes(runtime, &mqtt, &ids(names), (datasets, 10))
    };
    let mut drivers = on(0, &ON_0, 2);
    drivers.extend(on(2, &ON_2, 1));
    drivers
}

/// One cluster (it takes 20 s to start), for both parts in turn: the second kills members.
#[test]
fn a_federation_on_a_rabbitmq_cluster() {
    let Some(cluster) = RabbitCluster::start() else {
        return;
    };
    across_members_the_roster_is_known_and_requests_end_when_the_last_node_spoke(&cluster);
    a_member_that_dies_costs_its_nodes_a_failover_and_no_request_hangs(&cluster);
}

fn across_members_the_roster_is_known_and_requests_end_when_the_last_node_spoke(
    cluster: &RabbitCluster,
) {
    let runtime = Runtime::new().unwrap();
    let _nodes = nodes(&runtime, cluster);
    let file = std::env::temp_dir().join(format!("fedreq-cluster-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let first = researcher(cluster, Remember::File(KnownNodes::at(&file)));
    // No retained status reaches `fedreq/presence/+`: the answers to the probe make the roster.
    fedreq_tests::wait_for_online(first.handle(), &everyone());
    let ping = first
        .request(Submission::broadcast(Request::ping()))
        .unwrap();
    assert_eq!(sorted(ping.online()), everyone());
    assert_ne!(ping.completion, Completion::QuietPeriod);
    drop(first);

    // A new process: it knows the federation from the file before any status reaches it.
    let next = researcher(cluster, Remember::File(KnownNodes::at(&file)));
    let broadcast = |request| next.request(Submission::broadcast(request)).unwrap();
    let quick = |outcome: &Outcome| {
        assert_eq!(outcome.completion, Completion::AllAnswered, "{outcome:?}");
        assert!(
            outcome.elapsed < Duration::from_secs(1),
            "{:?}",
            outcome.elapsed
        );
    };
    let ping = broadcast(Request::ping());
    quick(&ping);
    assert_eq!(sorted(ping.online()), everyone());
    let list = broadcast(Request::list());
    quick(&list);
    assert_eq!(list.datasets().len(), 6);
    // A partial and an empty search end without the quiet period, by the word of the nodes
    // that have nothing.
    let partial = broadcast(Request::search(vec!["ds1".into()]));
    quick(&partial);
    assert_eq!(
        partial.datasets().into_keys().collect::<Vec<_>>(),
        ids(&ON_0)
    );
    let empty = broadcast(Request::search(vec!["nothing-here".into()]));
    quick(&empty);
    assert!(empty.replies.is_empty());
    let targeted = next
        .request(Submission::to_nodes(Request::ping(), ids(&["a-1", "c-3"])))
        .unwrap();
    quick(&targeted);
    let _ = std::fs::remove_file(&file);
}

fn a_member_that_dies_costs_its_nodes_a_failover_and_no_request_hangs(cluster: &RabbitCluster) {
    let runtime = Runtime::new().unwrap();
    let _nodes = nodes(&runtime, cluster);
    let requests = researcher(cluster, Remember::Nothing);
    fedreq_tests::wait_for_online(requests.handle(), &everyone());
    let timeout = Duration::from_secs(2);
    let ask = |broadcast: bool| {
        let submission = match broadcast {
            true => Submission::broadcast(Request::ping()),
            false => Submission::to_nodes(Request::ping(), ids(&["a-1", "c-1"])),
        };
        let outcome = requests
            .request(submission.with_policy(Policy::quiet(timeout)))
            .unwrap();
        // Never past its timeout, whatever the cluster does.
        assert!(
            outcome.elapsed <= timeout + Duration::from_millis(100),
            "{outcome:?}"
        );
        outcome
    };
    // Whether a broadcast and a targeted request each got every reply.
    let whole = || {
        sorted(ask(true).online()) == everyone() && sorted(ask(false).online()) == ["a-1", "c-1"]
    };
    // How long until the federation is whole again after a fault at `at`: within 10 s, and
    // then every request gets every reply.
    let until_whole = |what: &str, at: Instant| -> Duration {
        while !whole() {
            assert!(
                at.elapsed() < Duration::from_secs(10),
                "{what}: not whole after 10 s"
            );
        }
        let back = at.elapsed();
        for _ in 0..10 {
            assert!(whole(), "{what}: a reply missing once whole again");
        }
        back
    };

    until_whole("before any fault", Instant::now());
    // The member holding half the nodes dies: they move to another, with new sessions.
    cluster.kill(0);
    let back = until_whole("the nodes of the dead member", Instant::now());
    eprintln!("nodes of the dead member whole again after {back:?}");
    cluster.restart(0);
    until_whole("the member restarted", Instant::now());
    // The researcher's own member dies: it moves on, and asks again what was in flight.
    cluster.kill(1);
    let back = until_whole("the researcher's member", Instant::now());
    eprintln!("the researcher whole again after {back:?}");
    cluster.restart(1);
    until_whole("its member restarted", Instant::now());
}
