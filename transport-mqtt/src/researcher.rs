//! The researcher driver over MQTT: [`fedreq_driver`]'s loop on a rumqttc connection, behind a
//! [`ResearcherHandle`] that any thread can use, blocking or async.

use std::time::Duration;

use fedreq_driver::{ResearcherDriver, ResearcherHandle};
use fedreq_protocol::{presence, topic, ConnectionState, ResearcherConfig};
use rumqttc::AsyncClient;
use tokio::time::Instant;

use crate::config::MqttConfig;
use crate::connection::{self, ConnectError, Extras, Input};
use crate::outbox::Outbox;
use crate::runtime::Runtime;

/// rumqttc request channel capacity; what does not fit waits in the outbox.
const REQUEST_CAPACITY: usize = 4096;

/// Connects a researcher core on a driver thread of its own; fails within `connect_timeout`,
/// naming the address. The driver stops when the last handle is dropped.
pub fn connect_researcher(
    mqtt: MqttConfig,
    core: ResearcherConfig,
) -> Result<ResearcherHandle, ConnectError> {
    let runtime = Runtime::new().map_err(|e| ConnectError::Runtime(e.to_string()))?;
    connect_researcher_on(&runtime, mqtt, core)
}

/// Connects on `runtime`'s thread, blocking until the session is up or has failed.
pub fn connect_researcher_on(
    runtime: &Runtime,
    mqtt: MqttConfig,
    core: ResearcherConfig,
) -> Result<ResearcherHandle, ConnectError> {
    let (ready, handle) = start(runtime, mqtt, core);
    ready.recv().map_err(|_| stopped())??;
    Ok(handle)
}

/// Connects on `runtime`'s thread; await the result from any executor.
pub async fn connect_researcher_async(
    runtime: &Runtime,
    mqtt: MqttConfig,
    core: ResearcherConfig,
) -> Result<ResearcherHandle, ConnectError> {
    let (ready, handle) = start(runtime, mqtt, core);
    ready.recv_async().await.map_err(|_| stopped())??;
    Ok(handle)
}

fn start(
    runtime: &Runtime,
    mqtt: MqttConfig,
    core: ResearcherConfig,
) -> (flume::Receiver<Result<(), ConnectError>>, ResearcherHandle) {
    // The researcher id names the connection for operators; the client id is also a topic
    // level (the sync echo), so only characters safe in both are kept.
    let core_id: String = core
        .researcher_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let (driver, handle) = ResearcherDriver::new(core);
    let (ready_tx, ready) = flume::bounded(1);
    let relay = runtime.relay().clone();
    runtime.spawn(async move {
        let qos = mqtt.qos.to_rumqttc();
        let client_id = connection::client_id(&format!("researcher-{}", core_id));
        let session = match connection::start(
            &mqtt,
            &relay,
            client_id,
            REQUEST_CAPACITY,
            filters(qos),
            extras(),
        )
        .await
        {
            Ok(session) => session,
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        let mut task = Task {
            driver,
            client: session.client.clone(),
            qos,
            outbox: Outbox::default(),
        };
        for input in session.early {
            task.input(input);
        }
        // Subscribed: ask for the statuses a broker did not deliver (RabbitMQ's wildcards).
        task.driver.probe_presence();
        let _ = ready_tx.send(Ok(()));
        task.run(&session.inputs).await;
        // Every handle is gone: a clean stop.
        connection::disconnect(&session.client, &session.inputs).await;
        drop(session.stop);
        session.members.end().await;
    });
    (ready, handle.keeping(runtime.clone()))
}

struct Task {
    driver: ResearcherDriver,
    client: AsyncClient,
    qos: rumqttc::QoS,
    outbox: Outbox,
}

impl Task {
    /// Takes what the connection task reports. Subscriptions do not survive a new session:
    /// they are sent again on every connection.
    fn input(&mut self, input: Input) {
        match input {
            // A late echo of the first session's sync is no message for the core.
            Input::Publish { topic, .. } if topic.starts_with(SYNC) => {}
            Input::Publish {
                topic,
                payload,
                retained,
            } => match retained {
                true => self.driver.handle_retained(&topic, &payload),
                false => self.driver.handle_publish(&topic, &payload),
            },
            Input::Connected { .. } => self.outbox.reconnected(filters(self.qos)),
            Input::Subscribed(accepted) => {
                self.outbox.subscribed();
                let state = if accepted {
                    ConnectionState::Connected
                } else {
                    ConnectionState::Disconnected("the broker refused our subscriptions".into())
                };
                self.driver.handle_connection(state);
            }
            Input::Disconnected { reason, .. } => {
                self.outbox.disconnected();
                self.driver
                    .handle_connection(ConnectionState::Disconnected(reason));
            }
        }
    }

    async fn run(mut self, inputs: &flume::Receiver<Input>) {
        let orders = self.driver.orders().clone();
        loop {
            let outbox = &mut self.outbox;
            self.driver.drain(|transmit| outbox.push(transmit));
            self.outbox.flush(&self.client, self.qos);
            let wake = self.driver.next_wake().map(Instant::from_std);
            tokio::select! {
                input = inputs.recv_async() => match input {
                    Ok(input) => self.input(input),
                    Err(_) => return,
                },
                order = orders.recv_async() => match order {
                    Ok(order) => self.driver.handle_order(order),
                    // Every handle is gone.
                    Err(_) => return,
                },
                _ = sleep_until(wake), if wake.is_some() => self.driver.handle_timeout(),
                _ = tokio::time::sleep(Duration::from_millis(1)), if self.outbox.is_pending() => {}
            }
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn stopped() -> ConnectError {
    ConnectError::Runtime("the driver thread stopped".into())
}

/// The researcher waits for its echo on a topic of its own: the retained statuses are in
/// before the first request.
fn extras() -> Extras {
    Extras {
        will: None,
        sync: Some(SYNC.to_owned()),
    }
}

/// Below it, each researcher connection's echo topic.
pub const SYNC: &str = "fedreq/sync";

/// The researcher's topics. Statuses come at QoS 0: a broker queues at most so many QoS 1
/// messages per client (mosquitto: 1,000), and a thousand statuses delivered on connection
/// (retained, or answering our probe) would crowd out the replies to the first broadcast.
fn filters(qos: rumqttc::QoS) -> Vec<rumqttc::SubscribeFilter> {
    topic::RESEARCHER_SUBSCRIPTIONS
        .iter()
        .map(|&t| {
            let statuses = [presence::SUBSCRIPTION, presence::PROBED_SUBSCRIPTION];
            let qos = match statuses.contains(&t) {
                true => rumqttc::QoS::AtMostOnce,
                false => qos,
            };
            rumqttc::SubscribeFilter::new(t.to_owned(), qos)
        })
        .collect()
}
