//! Connecting and closing as the broker sees it: a closed researcher leaves no session behind,
//! a broker that never answers is an error within the connect timeout, and an IPv6 broker
//! goes through the relay like any other (no 40 ms stall).

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use fedreq::{Requests, RequestsConfig};
use fedreq_mqtt::{MqttConfig, Runtime};
use fedreq_tests::{mosquitto_tools, start_nodes, Mosquitto};

/// Waits up to 10 s for the broker's count of sessions kept for disconnected clients to read 0;
/// the last reading if it never does. Mosquitto computes it as all sessions less all sockets,
/// so a socket caught before its CONNECT can make one reading -1: only a lasting count means
/// orphans.
fn sessions_kept(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-t",
                "$SYS/broker/clients/disconnected",
                "-C",
                "1",
                "-W",
                "10",
            ])
            .output()
            .expect("mosquitto_sub");
        let reading = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if reading == "0" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(reading);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_closed_researcher_leaves_no_session_on_the_broker() {
    let Some(mosquitto) = Mosquitto::start_with("sys_interval 1").filter(|_| mosquitto_tools())
    else {
        return;
    };
    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let _node = start_nodes(&runtime, &mqtt, &["n1".to_owned()], (1, 10));
    for i in 0..3 {
        // Persistent sessions, as a notebook's: each must end when the researcher does.
        let requests =
            Requests::connect(mqtt.clone(), RequestsConfig::new(format!("r{i}"))).unwrap();
        assert_eq!(requests.ping_nodes().unwrap(), ["n1"]);
        drop(requests);
    }
    // $SYS is published every second: the count after the three closed.
    std::thread::sleep(Duration::from_millis(1_500));
    if let Err(kept) = sessions_kept(mosquitto.port()) {
        panic!("{kept} sessions left on the broker");
    }
}

#[test]
fn a_broker_that_never_answers_is_an_error_within_the_connect_timeout() {
    // It accepts the connection and reads, but never says CONNACK: a black hole.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let mqtt = MqttConfig {
        connect_timeout: Duration::from_secs(2),
        ..MqttConfig::new("127.0.0.1", port)
    };
    let started = Instant::now();
    let error = Requests::connect(mqtt, RequestsConfig::new("r")).unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[test]
fn an_ipv6_broker_goes_through_the_relay_without_a_stall() {
    // A second listener, on IPv6 loopback.
    let port = fedreq_tests::free_port();
    let listener = format!("listener {port} ::1");
    let Some(_mosquitto) = Mosquitto::start_with(&listener).filter(|_| ipv6_loopback()) else {
        return;
    };
    let mqtt = MqttConfig::parse(&format!("[::1]:{port}")).unwrap();
    let runtime = Runtime::new().unwrap();
    let _node = start_nodes(&runtime, &mqtt, &["v6".to_owned()], (1, 10));
    let requests = Requests::connect(mqtt, RequestsConfig::new("r6")).unwrap();
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let ping = fedreq_protocol::Submission::to_nodes(
                fedreq_protocol::Request::ping(),
                vec!["v6".into()],
            );
            requests.request(ping).unwrap().elapsed
        })
        .collect();
    times.sort();
    // The stall is 40 ms a request; through the relay a ping takes a millisecond or two.
    assert!(times[10] < Duration::from_millis(20), "{times:?}");
}

fn ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn a_request_whose_broker_dies_meanwhile_is_an_error_not_an_empty_answer() {
    let Some(mut mosquitto) = Mosquitto::start() else {
        return;
    };
    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port());
    let runtime = Runtime::new().unwrap();
    let _nodes = start_nodes(&runtime, &mqtt, &["n1".to_owned()], (1, 10));
    let config = RequestsConfig {
        policy: fedreq_protocol::Policy::quiet(Duration::from_secs(2)),
        ..RequestsConfig::new("researcher-broker-dies")
    };
    let requests = Requests::connect(mqtt, config).unwrap();
    assert_eq!(requests.ping_nodes().unwrap(), ["n1"]);
    std::thread::scope(|scope| {
        // Awaits a node that never answers until its 2 s are over; the broker dies meanwhile.
        let ping = scope.spawn(|| {
            let targets = vec!["n1".to_owned(), "ghost".to_owned()];
            let ping = fedreq_protocol::Request::ping();
            requests.request(fedreq_protocol::Submission::to_nodes(ping, targets))
        });
        std::thread::sleep(Duration::from_millis(300));
        mosquitto.stop();
        match ping.join().unwrap() {
            Err(fedreq::Error::Disconnected(reason)) => assert!(!reason.is_empty()),
            other => panic!("not an error: {other:?}"),
        }
    });
}
