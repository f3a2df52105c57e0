//! The researcher driver: a researcher core on an MQTT connection, behind a handle that any
//! thread can use, blocking or async.

use std::collections::HashMap;
use std::time::Duration;

use fedreq_protocol::event::{Event, Mail};
use fedreq_protocol::{
    topic, Collect, Command, ConnectionState, Outcome, RequestId, Researcher, ResearcherConfig,
    Submission, SubmitError, Timestamp,
};
use rumqttc::AsyncClient;
use tokio::time::Instant;

use crate::config::MqttConfig;
use crate::connection::{self, ConnectError, Input};
use crate::outbox::Outbox;
use crate::runtime::Runtime;

/// rumqttc request channel capacity; what does not fit waits in the outbox.
const REQUEST_CAPACITY: usize = 4096;

// Orders are moved once, from a handle to the driver: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Order {
    Submit(Submission, flume::Sender<Result<Outcome, SubmitError>>),
    Collect(Collect, flume::Sender<Result<Outcome, SubmitError>>),
    TakeMail(Vec<Command>, flume::Sender<Vec<Mail>>),
}

/// A researcher core driven over MQTT. Cloning gives another handle to the same driver;
/// it disconnects when the last handle is dropped.
///
/// Answers come back on flume receivers: `recv()` blocks, `recv_async().await` works from any
/// executor.
#[derive(Clone, Debug)]
pub struct ResearcherDriver {
    orders: flume::Sender<Order>,
    events: flume::Receiver<Event>,
    _runtime: Runtime,
}

impl std::fmt::Debug for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Order")
    }
}

impl ResearcherDriver {
    /// Connects on a driver thread of its own; fails within `connect_timeout`, naming the address.
    pub fn connect(mqtt: MqttConfig, core: ResearcherConfig) -> Result<Self, ConnectError> {
        let runtime = Runtime::new().map_err(|e| ConnectError::Runtime(e.to_string()))?;
        Self::connect_on(&runtime, mqtt, core)
    }

    /// Connects on `runtime`'s thread, blocking until the session is up or has failed.
    pub fn connect_on(
        runtime: &Runtime,
        mqtt: MqttConfig,
        core: ResearcherConfig,
    ) -> Result<Self, ConnectError> {
        let (ready, driver) = Self::start(runtime, mqtt, core);
        ready.recv().map_err(|_| stopped())??;
        Ok(driver)
    }

    /// Connects on `runtime`'s thread; await the result from any executor.
    pub async fn connect_async(
        runtime: &Runtime,
        mqtt: MqttConfig,
        core: ResearcherConfig,
    ) -> Result<Self, ConnectError> {
        let (ready, driver) = Self::start(runtime, mqtt, core);
        ready.recv_async().await.map_err(|_| stopped())??;
        Ok(driver)
    }

    fn start(
        runtime: &Runtime,
        mqtt: MqttConfig,
        core: ResearcherConfig,
    ) -> (flume::Receiver<Result<(), ConnectError>>, Self) {
        let (orders_tx, orders) = flume::unbounded();
        let (events, events_rx) = flume::unbounded();
        let (ready_tx, ready) = flume::bounded(1);
        runtime.handle().spawn(async move {
            let qos = mqtt.qos.to_rumqttc();
            let session = match connection::start(
                &mqtt,
                "researcher",
                REQUEST_CAPACITY,
                filters(qos),
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
                core: Researcher::new(core),
                client: session.client,
                qos,
                epoch: Instant::now(),
                outbox: Outbox::default(),
                waiting: HashMap::new(),
                events,
            };
            for input in session.early {
                task.input(input);
            }
            let _ = ready_tx.send(Ok(()));
            task.run(session.inputs, orders).await;
            drop(session.stop);
        });
        let driver = ResearcherDriver {
            orders: orders_tx,
            events: events_rx,
            _runtime: runtime.clone(),
        };
        (ready, driver)
    }

    /// Submits a request; the outcome comes when the core completes it.
    pub fn submit(&self, submission: Submission) -> flume::Receiver<Result<Outcome, SubmitError>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::Submit(submission, reply));
        answer
    }

    /// Collects unmatched messages, as Fed-BioMed's `get_responses` reads its queue.
    pub fn collect(&self, collect: Collect) -> flume::Receiver<Result<Outcome, SubmitError>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::Collect(collect, reply));
        answer
    }

    /// Takes the unmatched messages of these commands (all when empty) from the mailbox.
    pub fn take_mail(&self, commands: Vec<Command>) -> flume::Receiver<Vec<Mail>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::TakeMail(commands, reply));
        answer
    }

    /// A stopped driver drops the reply sender: the caller's receiver reports it.
    fn order(&self, order: Order) {
        let _ = self.orders.send(order);
    }

    /// Every event but completions: node logs, monitoring scalars, unmatched and rejected
    /// messages, connection changes.
    pub fn events(&self) -> &flume::Receiver<Event> {
        &self.events
    }
}

struct Task {
    core: Researcher,
    client: AsyncClient,
    qos: rumqttc::QoS,
    epoch: Instant,
    outbox: Outbox,
    waiting: HashMap<RequestId, flume::Sender<Result<Outcome, SubmitError>>>,
    events: flume::Sender<Event>,
}

impl Task {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    /// Takes what the connection task reports. Subscriptions do not survive a new session:
    /// they are sent again on every connection.
    fn input(&mut self, input: Input) {
        match input {
            Input::Publish { topic, payload } => {
                self.core.handle_publish(self.now(), &topic, &payload)
            }
            Input::Connected => self.outbox.reconnected(filters(self.qos)),
            Input::Subscribed(accepted) => {
                self.outbox.subscribed();
                let state = if accepted {
                    ConnectionState::Connected
                } else {
                    ConnectionState::Disconnected("the broker refused our subscriptions".into())
                };
                self.core.handle_connection(self.now(), state);
            }
            Input::Disconnected(reason) => {
                self.outbox.disconnected();
                self.core
                    .handle_connection(self.now(), ConnectionState::Disconnected(reason));
            }
        }
    }

    async fn run(mut self, inputs: flume::Receiver<Input>, orders: flume::Receiver<Order>) {
        loop {
            // A wake past what an Instant can hold is never.
            let wake = self
                .core
                .poll_timeout()
                .and_then(|at| self.epoch.checked_add(at.since_epoch()));
            tokio::select! {
                input = inputs.recv_async() => match input {
                    Ok(input) => self.input(input),
                    Err(_) => return,
                },
                order = orders.recv_async() => match order {
                    Ok(Order::Submit(submission, reply)) => match self.core.submit(self.now(), submission) {
                        Ok(id) => { self.waiting.insert(id, reply); }
                        Err(error) => { let _ = reply.send(Err(error)); }
                    },
                    Ok(Order::Collect(collect, reply)) => {
                        let id = self.core.collect(self.now(), collect);
                        self.waiting.insert(id, reply);
                    }
                    Ok(Order::TakeMail(commands, reply)) => { let _ = reply.send(self.core.take_mail(&commands)); }
                    // Every handle is gone.
                    Err(_) => return,
                },
                _ = sleep_until(wake), if wake.is_some() => self.core.handle_timeout(self.now()),
                _ = tokio::time::sleep(Duration::from_millis(1)), if self.outbox.is_pending() => {}
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            self.outbox.push(transmit);
        }
        self.outbox.flush(&self.client, self.qos);
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Completed(outcome) => {
                    if let Some(reply) = self.waiting.remove(&outcome.id) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                other => {
                    let _ = self.events.send(other);
                }
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

fn filters(qos: rumqttc::QoS) -> Vec<rumqttc::SubscribeFilter> {
    topic::RESEARCHER_SUBSCRIPTIONS
        .iter()
        .map(|t| rumqttc::SubscribeFilter::new((*t).to_owned(), qos))
        .collect()
}
