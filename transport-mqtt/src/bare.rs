//! A bare MQTT round trip, without fedreq: one publish out, N replies in. The floor that
//! fedreq's own figures are measured against.

use std::time::{Duration, Instant};

use rumqttc::{Event, Packet};

use crate::config::MqttConfig;
use crate::connection::{self, ConnectError};
use crate::relay::Relay;
use crate::runtime::Runtime;

const PING: &str = "fedreq-bare/ping";
const PONG: &str = "fedreq-bare/pong";

/// `runs` round trips through the broker of `mqtt`, each a publish answered by `responders`
/// clients after `pause` of idleness: the time until the last reply arrived, per run.
pub fn round_trips(
    mqtt: &MqttConfig,
    responders: usize,
    runs: usize,
    pause: Duration,
) -> Result<Vec<Duration>, ConnectError> {
    let runtime = Runtime::new().map_err(|e| ConnectError::Runtime(e.to_string()))?;
    // Throwaway clients: they leave no session on the broker.
    let mqtt = MqttConfig {
        session: crate::config::Session::Clean,
        ..mqtt.clone()
    };
    let (done, result) = flume::bounded(1);
    // Through the relay as fedreq is: the floor is the broker's, not a stalled client's.
    let relay = runtime.relay().clone();
    runtime.handle().spawn(async move {
        let _ = done.send(measure(mqtt, &relay, responders, runs, pause).await);
    });
    result
        .recv()
        .map_err(|_| ConnectError::Runtime("the driver thread stopped".into()))?
}

async fn measure(
    mqtt: MqttConfig,
    relay: &Relay,
    responders: usize,
    runs: usize,
    pause: Duration,
) -> Result<Vec<Duration>, ConnectError> {
    let qos = mqtt.qos.to_rumqttc();
    let (ready, readied) = flume::unbounded();
    for i in 0..responders {
        // On a cluster, the responders on the other members: every reply crosses it.
        let elsewhere = mqtt.elsewhere(i);
        let id = connection::client_id("bare");
        let (client, mut eventloop) = connection::open(&elsewhere, id, 64, None, Some(relay));
        let ready = ready.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        let _ = client.try_subscribe(PING, qos);
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        let _ = ready.send(());
                    }
                    Event::Incoming(Packet::Publish(_)) => {
                        let _ = client.try_publish(PONG, qos, false, b"pong".to_vec());
                    }
                    _ => {}
                }
            }
        });
    }
    // A thousand responders connecting at once take longer than one client.
    let timeout = mqtt
        .connect_timeout
        .max(Duration::from_millis(20) * responders as u32);
    let unreachable = |reason: &str| ConnectError::Unreachable {
        address: mqtt.address(),
        reason: reason.to_owned(),
    };
    for _ in 0..responders {
        tokio::time::timeout(timeout, readied.recv_async())
            .await
            .map_err(|_| unreachable("responders did not subscribe in time"))?
            .map_err(|_| unreachable("a responder stopped"))?;
    }
    let (client, mut eventloop) =
        connection::open(&mqtt, connection::client_id("bare"), 64, None, Some(relay));
    let mut times = Vec::with_capacity(runs);
    let mut subscribed = false;
    while !subscribed {
        match tokio::time::timeout(timeout, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                let _ = client.try_subscribe(PONG, qos);
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(&e.to_string())),
            Err(_) => return Err(unreachable("no session in time")),
        }
    }
    for _ in 0..runs {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let started = Instant::now();
        let _ = client.try_publish(PING, qos, false, b"ping".to_vec());
        let mut replies = 0;
        while replies < responders {
            match tokio::time::timeout(timeout, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(_)))) => replies += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(unreachable(&e.to_string())),
                Err(_) => return Err(unreachable("replies did not come in time")),
            }
        }
        times.push(started.elapsed());
    }
    let _ = client.try_disconnect();
    Ok(times)
}
