//! The researcher and node drivers over real TCP: against the embedded broker always, and
//! against Debian's mosquitto when it is installed (CI requires it).

use std::time::Duration;

use fedreq_mqtt::{ConnectError, EmbeddedBroker, MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{
    Completion, ConnectionState, Event, NodeConfig, Policy, Request, ResearcherConfig, Submission,
};
use fedreq_tests::{
    datasets, mosquitto_pub, plan_fetcher, start_nodes, wait_for_online, Mosquitto,
};

const NODES: usize = 5;

fn node_ids() -> Vec<String> {
    (0..NODES).map(|i| format!("node-{i}")).collect()
}

/// Ping, list, search and approval between one researcher and five nodes on `port`.
fn exchange(port: u16) {
    let mqtt = MqttConfig::new("127.0.0.1", port);
    let runtime = Runtime::new().unwrap();
    let _nodes = start_nodes(&runtime, &mqtt, &node_ids(), (2, 10));
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("researcher-mqtt-test"))
            .unwrap();
    let known = Policy::quiet(Duration::from_secs(5)).with_roster(node_ids());

    let ping = researcher
        .submit(Submission::broadcast(Request::ping()).with_policy(known.clone()))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(ping.completion, Completion::AllAnswered, "{ping:?}");
    assert!(ping.elapsed < Duration::from_secs(1), "{:?}", ping.elapsed);
    let mut online = ping.online();
    online.sort();
    assert_eq!(online, node_ids());

    let list = researcher
        .submit(Submission::broadcast(Request::list()).with_policy(known.clone()))
        .recv()
        .unwrap()
        .unwrap();
    let datasets = list.datasets();
    assert_eq!(datasets.len(), NODES);
    assert!(datasets
        .values()
        .all(|d| d.len() == 2 && d[0].get("path").is_none()));

    let targeted = vec!["node-1".to_owned(), "node-3".to_owned()];
    let search = Submission::to_nodes(Request::search(vec!["odd".into()]), targeted.clone());
    let search = researcher.submit(search).recv().unwrap().unwrap();
    assert_eq!(search.completion, Completion::AllAnswered);
    assert_eq!(search.datasets().into_keys().collect::<Vec<_>>(), targeted);

    let approve =
        Submission::to_nodes(Request::approval("plan", "http://repo/plan.py"), node_ids());
    let approvals = researcher
        .submit(approve)
        .recv()
        .unwrap()
        .unwrap()
        .approvals();
    assert_eq!(approvals.len(), NODES);
    assert!(approvals.values().all(|&ok| ok), "{approvals:?}");
}

#[test]
fn exchange_over_the_embedded_broker() {
    let broker = EmbeddedBroker::start_local().unwrap();
    exchange(broker.address().port());
}

#[test]
fn exchange_over_mosquitto() {
    if let Some(mosquitto) = Mosquitto::start() {
        exchange(mosquitto.port());
    }
}

/// A `list` reply of 256 KiB and more arrives whole (rumqttc's default limit is 10 KiB).
fn big_list(port: u16) {
    let mqtt = MqttConfig::new("127.0.0.1", port);
    let runtime = Runtime::new().unwrap();
    let _node = NodeDriver::start(
        &runtime,
        &mqtt,
        NodeConfig::new("big", datasets(300, 1000)),
        plan_fetcher(),
    )
    .unwrap();
    let researcher =
        fedreq_mqtt::connect_researcher_on(&runtime, mqtt, ResearcherConfig::new("r-big")).unwrap();
    let list = Submission::to_nodes(Request::list(), vec!["big".into()]);
    let outcome = researcher.submit(list).recv().unwrap().unwrap();
    assert_eq!(outcome.completion, Completion::AllAnswered);
    let encoded = outcome.replies[0].encode();
    assert!(encoded.len() >= 256 * 1024, "{} bytes", encoded.len());
    assert_eq!(outcome.datasets()["big"].len(), 300);
}

#[test]
fn a_list_of_256_kib_arrives_whole_over_the_embedded_broker() {
    big_list(EmbeddedBroker::start_local().unwrap().address().port());
}

#[test]
fn a_list_of_256_kib_arrives_whole_over_mosquitto() {
    if let Some(mosquitto) = Mosquitto::start() {
        big_list(mosquitto.port());
    }
}

#[test]
fn an_unreachable_broker_is_a_clear_error_naming_the_address() {
    let port = fedreq_tests::free_port();
    let mut mqtt = MqttConfig::new("127.0.0.1", port);
    mqtt.connect_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let error = fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("r")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(error, ConnectError::Unreachable { .. }));
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[test]
fn the_driver_survives_a_broker_restart_and_subscribes_again() {
    let Some(mut mosquitto) = Mosquitto::start() else {
        return;
    };
    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let _nodes = start_nodes(&runtime, &mqtt, &node_ids(), (1, 10));
    let researcher =
        fedreq_mqtt::connect_researcher_on(&runtime, mqtt, ResearcherConfig::new("r-restart"))
            .unwrap();

    // The broker goes away while a ping is in flight, and comes back on the same port.
    let policy = Policy::quiet(Duration::from_secs(2)).with_roster(node_ids());
    mosquitto.stop();
    let in_flight =
        researcher.submit(Submission::broadcast(Request::ping()).with_policy(policy.clone()));
    std::thread::sleep(Duration::from_millis(300));
    mosquitto.restart();
    let outcome = in_flight.recv().unwrap().unwrap();
    assert_eq!(
        outcome.replies.len() + outcome.missing.len(),
        NODES,
        "{outcome:?}"
    );

    let mut states = Vec::new();
    while let Ok(event) = researcher.events().recv_timeout(Duration::from_secs(10)) {
        if let Event::Connection(state) = event {
            let up = state == ConnectionState::Connected;
            states.push(state);
            if up {
                break;
            }
        }
    }
    assert!(
        matches!(states.first(), Some(ConnectionState::Disconnected(_))),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&ConnectionState::Connected));

    // Nodes reconnect on their own backoff: a new ping soon sees them all again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ping = researcher
            .submit(Submission::broadcast(Request::ping()).with_policy(policy.clone()))
            .recv()
            .unwrap()
            .unwrap();
        if ping.missing.is_empty() {
            assert_eq!(ping.completion, Completion::AllAnswered);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nodes still missing: {:?}",
            ping.missing
        );
    }
}

/// A listener that resets its first `resets` connections, then relays the others to `broker`.
fn resetting_relay(broker: std::net::SocketAddr, resets: usize) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            if i < resets {
                // Linger 0: closing sends a reset, as a broker still starting can.
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                drop(client);
                continue;
            }
            let Ok(upstream) = TcpStream::connect(broker) else {
                return;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                (upstream, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

#[test]
fn a_first_connection_that_is_reset_is_tried_again_within_the_connect_timeout() {
    let broker = EmbeddedBroker::start_local().unwrap();
    let port = resetting_relay(broker.address(), 2);
    let mut mqtt = MqttConfig::new("127.0.0.1", port);
    mqtt.connect_timeout = Duration::from_secs(10);
    let researcher = fedreq_mqtt::connect_researcher(mqtt.clone(), ResearcherConfig::new("r"))
        .expect("the third connection is relayed to the broker");
    let runtime = Runtime::new().unwrap();
    let node = NodeDriver::start(
        &runtime,
        &mqtt,
        NodeConfig::new("n", datasets(1, 1)),
        plan_fetcher(),
    )
    .unwrap();
    let ping = researcher
        .submit(Submission::to_nodes(
            Request::ping(),
            vec![node.node_id().into()],
        ))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(ping.online(), vec!["n".to_owned()]);
}

/// A broker queues at most so many QoS 1 messages per client: the retained statuses of many
/// nodes must not crowd out the replies to the first broadcast (they come at QoS 0).
#[test]
fn the_first_broadcast_after_connecting_sees_every_node_past_the_brokers_queue_limit() {
    let Some(mosquitto) = Mosquitto::start_with("max_queued_messages 70\nmax_inflight_messages 5")
    else {
        return;
    };
    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let mut ids: Vec<String> = (0..60).map(|i| format!("crowd-{i}")).collect();
    let _nodes = start_nodes(&runtime, &mqtt, &ids, (1, 1));
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("r-crowd")).unwrap();
    ids.sort();
    wait_for_online(&researcher, &ids);
    let ping = researcher
        .submit(Submission::broadcast(Request::ping()))
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(
        (ping.online().len(), ping.missing.len()),
        (60, 0),
        "{:?}",
        ping.completion
    );
}

/// Anyone allowed to publish on the Fed-BioMed topics can send 20 MB: the researcher and the
/// nodes refuse the payload and keep their connections, and the requests around it lose nothing.
#[test]
fn oversized_publishes_during_requests_cut_no_connection_and_lose_nothing() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    if !fedreq_tests::mosquitto_tools() {
        return;
    }
    let port = mosquitto.port();
    let mqtt = MqttConfig::new("127.0.0.1", port);
    let runtime = Runtime::new().unwrap();
    let ids = node_ids();
    let _nodes = start_nodes(&runtime, &mqtt, &ids, (1, 1));
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("r-oversized")).unwrap();
    let big = std::env::temp_dir().join(format!("fedreq-20mb-{}-{port}", std::process::id()));
    std::fs::write(&big, vec![b'x'; 20_000_000]).unwrap();
    let policy = Policy::quiet(Duration::from_secs(10));
    let mut completed = 0;
    for topic in [
        "general/researcher",
        "general/nodes",
        "general/researcher",
        "general/node-1",
    ] {
        let sender = mosquitto_pub(port, topic)
            .arg("-f")
            .arg(&big)
            .spawn()
            .unwrap();
        for _ in 0..5 {
            let pending: Vec<_> = (0..20)
                .map(|_| {
                    let ping = Submission::to_nodes(Request::ping(), ids.clone());
                    researcher.submit(ping.with_policy(policy.clone()))
                })
                .collect();
            for answer in pending {
                let outcome = answer.recv().unwrap().unwrap();
                assert_eq!(outcome.online().len(), NODES, "{:?}", outcome.missing);
                completed += 1;
            }
        }
        let status = sender.wait_with_output().unwrap().status;
        assert!(status.success(), "the broker took the 20 MB publish");
    }
    let _ = std::fs::remove_file(&big);
    // Let the last oversized message arrive, then look at what the researcher saw.
    std::thread::sleep(Duration::from_millis(500));
    let events: Vec<Event> = researcher.events().try_iter().collect();
    let refused = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { topic, .. } if topic == "general/researcher"))
        .count();
    let dropped = events
        .iter()
        .filter(|e| matches!(e, Event::Connection(ConnectionState::Disconnected(_))))
        .count();
    let nodes_lost = events
        .iter()
        .filter(|e| matches!(e, Event::Presence(p) if p.status == fedreq_protocol::presence::Status::Offline))
        .count();
    assert_eq!(completed, 400);
    assert_eq!(
        refused, 2,
        "each oversized publish to the researcher refused, typed"
    );
    assert_eq!((dropped, nodes_lost), (0, 0), "no connection was cut");
}

#[test]
fn a_second_node_with_a_taken_id_stops_with_a_clear_error_and_the_first_goes_on() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let twin = || NodeConfig::new("twin", datasets(1, 10));
    let _first = NodeDriver::start(&runtime, &mqtt, twin(), plan_fetcher()).unwrap();
    let second = NodeDriver::start(&runtime, &mqtt, twin(), plan_fetcher());
    match second {
        Err(ConnectError::NodeIdTaken { node_id, .. }) => assert_eq!(node_id, "twin"),
        other => panic!("the second run of `twin` started: {:?}", other.map(|_| ())),
    }
    let researcher =
        fedreq_mqtt::connect_researcher(mqtt, ResearcherConfig::new("researcher-twins")).unwrap();
    wait_for_online(&researcher, &["twin".to_owned()]);
    let before = researcher.roster().recv().unwrap()["twin"].incarnation;
    for _ in 0..5 {
        let ping = Submission::to_nodes(Request::ping(), vec!["twin".into()]);
        let outcome = researcher.submit(ping).recv().unwrap().unwrap();
        assert_eq!(outcome.completion, Completion::AllAnswered);
    }
    let after = researcher.roster().recv().unwrap()["twin"].incarnation;
    assert_eq!(before, after, "one run of `twin` all along");
}
