//! A federation on a real clustered broker: three RabbitMQ members on loopback, nodes on two
//! of them, the researcher on the third. RabbitMQ keeps retained messages per member and never
//! delivers them on a wildcard subscription, keeps a persistent session on the member that
//! started it, and publishes no will of the clients of a member that dies.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// A stream of at least 1,000 pings, broadcast and targeted in turn, while members die and
/// come back: the member holding half the nodes, then the researcher's own.
fn a_member_that_dies_costs_its_nodes_a_failover_and_no_request_hangs(cluster: &RabbitCluster) {
    let runtime = Runtime::new().unwrap();
    let _nodes = nodes(&runtime, cluster);
    let requests = researcher(cluster, Remember::Nothing);
    fedreq_tests::wait_for_online(requests.handle(), &everyone());
    let timeout = Duration::from_secs(2);
    let asked = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    // Each request: when it was sent, since the start, whether it got every reply, and how
    // long it took.
    let stream = || {
        let mut log = Vec::new();
        while !done.load(Ordering::Relaxed) || log.len() < 1_000 {
            let broadcast = log.len() % 2 == 0;
            let (submission, expected) = match broadcast {
                true => (Submission::broadcast(Request::ping()), everyone()),
                false => (
                    Submission::to_nodes(Request::ping(), ids(&["a-1", "c-1"])),
                    ids(&["a-1", "c-1"]),
                ),
            };
            let sent = started.elapsed();
            let outcome = requests
                .request(submission.with_policy(Policy::quiet(timeout)))
                .unwrap();
            // Never past its timeout, whatever the cluster does.
            assert!(
                outcome.elapsed <= timeout + Duration::from_millis(100),
                "{outcome:?}"
            );
            log.push((sent, sorted(outcome.online()) == expected, outcome.elapsed));
            asked.fetch_add(1, Ordering::Relaxed);
        }
        log
    };
    // Waits until the stream asked `count` more.
    let after = |count: usize| {
        let until = asked.load(Ordering::Relaxed) + count;
        while asked.load(Ordering::Relaxed) < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let (log, faults) = std::thread::scope(|scope| {
        let stream = scope.spawn(stream);
        let mut faults = Vec::new();
        after(100);
        cluster.kill(0);
        faults.push(("member 0 killed (half the nodes)", started.elapsed()));
        after(200);
        cluster.restart(0);
        faults.push(("member 0 restarted", started.elapsed()));
        after(200);
        cluster.kill(1);
        faults.push(("member 1 killed (the researcher's)", started.elapsed()));
        after(200);
        cluster.restart(1);
        faults.push(("member 1 restarted", started.elapsed()));
        after(100);
        done.store(true, Ordering::Relaxed);
        (stream.join().unwrap(), faults)
    });

    // Each fault: the requests that lost a reply, all before the federation was whole again,
    // within 10 s; from then on, until the next fault, every request got every reply.
    eprintln!("{} requests in {:?}", log.len(), started.elapsed());
    let bounds = faults.iter().map(|(_, at)| *at).chain([Duration::MAX]);
    for ((what, at), next) in faults.iter().zip(bounds.skip(1)) {
        let window: Vec<&(Duration, bool, Duration)> = log
            .iter()
            .filter(|(sent, ..)| sent >= at && *sent < next)
            .collect();
        let lost = window.iter().filter(|(_, whole, _)| !whole).count();
        let last_lost = window.iter().rposition(|(_, whole, _)| !whole);
        let whole_at = match last_lost {
            Some(i) => window.get(i + 1).map(|(sent, ..)| *sent - *at),
            None => Some(Duration::ZERO),
        };
        let longest = window
            .iter()
            .map(|(.., took)| *took)
            .max()
            .unwrap_or_default();
        eprintln!(
            "{what} at {at:?}: {} requests, {lost} with a reply lost, whole again after \
             {whole_at:?}, the longest {longest:?}",
            window.len()
        );
        let whole_at = whole_at.expect("whole again before the next fault");
        assert!(
            whole_at < Duration::from_secs(10),
            "{what}: whole again after {whole_at:?}"
        );
    }
    let before = |(sent, ..): &&(Duration, bool, Duration)| *sent < faults[0].1;
    let whole = log.iter().filter(before).all(|(_, whole, _)| *whole);
    assert!(whole, "a reply lost before any fault");
}
