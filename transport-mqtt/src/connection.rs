//! One MQTT connection: a task that polls rumqttc's event loop and hands what arrives to the
//! core's task, reconnecting with backoff. Polling alone in its own task means the event loop
//! is never cancelled mid-packet and never waits on the core.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};

use fedreq_protocol::presence::{self, Presence};

use crate::config::{MqttConfig, Session as SessionKind};
use crate::relay::{self, Relay};

/// What the connection task tells the core's task.
#[derive(Debug)]
pub(crate) enum Input {
    /// A publish arrived; `retained` when the broker sent it from its retained store, on
    /// our subscription, rather than as it was published.
    Publish {
        topic: String,
        payload: bytes::Bytes,
        retained: bool,
    },
    /// A session started: subscribe (again). `resumed` when the broker still had it.
    Connected { resumed: bool },
    /// The broker answered a subscription: `false` when it refused a topic.
    Subscribed(bool),
    /// The connection was lost or could not be made; `transient` when trying again may work
    /// (a reset, a time-out), not for a refusal.
    Disconnected { reason: String, transient: bool },
}

/// The first connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No MQTT session within the time allowed, with the last reason seen.
    #[error("cannot reach MQTT broker at {address}: {reason}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker refused a subscription (its access rules, typically).
    #[error("the MQTT broker at {address} refused our subscriptions (not authorised?)")]
    SubscriptionRefused {
        /// `host:port`.
        address: String,
    },
    /// The driver thread could not be started.
    #[error("cannot start the MQTT driver thread: {0}")]
    Runtime(String),
    /// Another node runs with this node's id on the broker: both would take one session and
    /// knock each other off.
    #[error("node id `{node_id}` is taken: a node with that id already answers on the broker at {address} (stop it, or choose another id)")]
    NodeIdTaken {
        /// The id.
        node_id: String,
        /// `host:port`.
        address: String,
    },
}

static CLIENTS: AtomicU64 = AtomicU64::new(0);

/// MQTT's largest packet: every packet is read, so that an oversized publish is refused by the
/// core instead of cutting the connection (and, with a persistent session, coming back).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// A client id unique to this instance: role, process, a counter and the start time.
pub(crate) fn client_id(role: &str) -> String {
    let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("fedreq-{role}-{}-{n}-{nanos:x}", std::process::id())
}

/// What a connection registers and checks besides its subscriptions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// The last will, retained (a node's `offline`).
    pub will: Option<(String, Vec<u8>)>,
    /// Wait for an echo on this topic (subscribed too) before the session counts as up: the
    /// broker sends the retained messages of the subscriptions first, so they are in.
    pub sync: Option<String>,
}

/// Builds the rumqttc client and event loop for `config`, on its first member.
pub(crate) fn open(
    config: &MqttConfig,
    client_id: String,
    capacity: usize,
    will: Option<(String, Vec<u8>)>,
    relay: Option<&Relay>,
) -> (AsyncClient, EventLoop) {
    let options = options(config, 0, client_id, will.as_ref(), relay);
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// rumqttc's options to reach member `member` of `config`.
fn options(
    config: &MqttConfig,
    member: usize,
    client_id: String,
    will: Option<&(String, Vec<u8>)>,
    relay: Option<&Relay>,
) -> MqttOptions {
    let (host, port) = config
        .members()
        .nth(member)
        .unwrap_or((&config.host, config.port));
    // Through the relay, an IPv6 literal goes in brackets, so its CONNECT line reads right;
    // with TLS the name must stay the certificate's: direct, then.
    let relayed =
        relay.filter(|_| config.quick_ack && (config.tls.is_none() || !host.contains(':')));
    let address = match relayed {
        Some(_) => crate::relay::bracketed(host),
        None => host.to_owned(),
    };
    let mut options = MqttOptions::new(client_id, address, port);
    if let Some(relay) = relayed {
        options.set_proxy(relay.proxy_for(host, port));
    }
    if let Some((topic, payload)) = will {
        let will = LastWill::new(topic, payload.clone(), config.qos.to_rumqttc(), true);
        options.set_last_will(will);
    }
    options
        .set_keep_alive(config.keep_alive)
        .set_max_packet_size(MQTT_MAX_PACKET, config.max_packet_size)
        .set_clean_session(config.session == SessionKind::Clean);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.config.clone(),
        )));
    }
    options
}

/// Where a connection stands among the members of a clustered broker: when its member fails,
/// it moves to the next in turn. Shared with whoever ends its sessions.
#[derive(Clone)]
pub(crate) struct Members {
    config: MqttConfig,
    will: Option<(String, Vec<u8>)>,
    relay: Relay,
    at: Arc<Mutex<Where>>,
}

/// The member a connection is on, and its sessions.
struct Where {
    /// The member it is on, or trying.
    current: usize,
    /// The member its session was started on.
    home: usize,
    /// Its client id, which names its session.
    client_id: String,
    /// Sessions left behind on a member that was down, by member and client id: ended with
    /// the current one.
    left: Vec<(usize, String)>,
}

impl Members {
    fn new(
        config: &MqttConfig,
        client_id: String,
        will: Option<(String, Vec<u8>)>,
        relay: &Relay,
    ) -> Self {
        let at = Where {
            current: 0,
            home: 0,
            client_id,
            left: Vec::new(),
        };
        Members {
            config: config.clone(),
            will,
            relay: relay.clone(),
            at: Arc::new(Mutex::new(at)),
        }
    }

    fn at(&self) -> std::sync::MutexGuard<'_, Where> {
        self.at.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn options(&self, at: &Where) -> MqttOptions {
        let id = at.client_id.clone();
        options(
            &self.config,
            at.current,
            id,
            self.will.as_ref(),
            Some(&self.relay),
        )
    }

    /// The next member's options, when there is another member.
    fn next(&self) -> Option<MqttOptions> {
        let count = self.config.fallbacks.len() + 1;
        let mut at = self.at();
        if count == 1 {
            return None;
        }
        at.current = (at.current + 1) % count;
        Some(self.options(&at))
    }

    /// The broker took our subscriptions: the session lives where we are.
    fn subscribed(&self) {
        let mut at = self.at();
        at.home = at.current;
    }

    /// A persistent session resumed on another member than its own was cut off at subscribing:
    /// a broker whose sessions live on one member (RabbitMQ: "home node of durable queue is
    /// down") cannot serve it while that member is down. The options of a new session, under a
    /// new client id, on the same member; the old one is ended on closing.
    fn renewed(&self) -> Option<MqttOptions> {
        let mut at = self.at();
        if at.current == at.home {
            return None;
        }
        let old = (at.home, at.client_id.clone());
        let base = old.1.split('~').next().unwrap_or_default().to_owned();
        at.client_id = format!("{base}~{}", at.left.len() + 1);
        at.left.push(old);
        at.home = at.current;
        Some(self.options(&at))
    }

    /// Ends every persistent session of the connection: the current one, then those left on
    /// members that were down. Each bounded by a second.
    pub(crate) async fn end(&self) {
        let sessions: Vec<(usize, String)> = {
            let mut at = self.at();
            let current = (at.current, at.client_id.clone());
            std::iter::once(current).chain(at.left.drain(..)).collect()
        };
        for (member, client_id) in sessions {
            end(&self.config.starting_at(member), &self.relay, client_id).await;
        }
    }

    /// Ends the sessions left behind as soon as their members are back, trying every
    /// `backoff.max`: meanwhile the broker would queue for them what is published for us.
    fn end_left_later(&self) {
        let members = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(members.config.backoff.max).await;
                let left = members.at().left.clone();
                if left.is_empty() {
                    return;
                }
                for (member, client_id) in left {
                    let config = members.config.starting_at(member);
                    if end(&config, &members.relay, client_id.clone()).await {
                        members.at().left.retain(|(_, id)| *id != client_id);
                    }
                }
            }
        });
    }
}

/// A first session, up and subscribed.
pub(crate) struct Session {
    /// Publishes and subscriptions go through it.
    pub client: AsyncClient,
    /// What the connection task reports from now on.
    pub inputs: flume::Receiver<Input>,
    /// What arrived during the handshake, for the core first.
    pub early: Vec<Input>,
    /// Dropping it stops the connection task.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Whether the broker still had the session when the connection started.
    pub resumed: bool,
    /// The members of its broker, and the one it is on: where its sessions live.
    pub members: Members,
}

/// Opens a connection as `client_id`, starts the task that polls it, and runs the first
/// session's handshake with these subscriptions.
pub(crate) async fn start(
    mqtt: &MqttConfig,
    relay: &Relay,
    client_id: String,
    capacity: usize,
    mut filters: Vec<SubscribeFilter>,
    extras: Extras,
) -> Result<Session, ConnectError> {
    let sync = extras.sync.map(|topic| format!("{topic}/{client_id}"));
    if let Some(sync) = &sync {
        filters.push(SubscribeFilter::new(sync.clone(), rumqttc::QoS::AtMostOnce));
    }
    let members = Members::new(mqtt, client_id.clone(), extras.will.clone(), relay);
    let (client, eventloop) = open(mqtt, client_id.clone(), capacity, extras.will, Some(relay));
    let (inputs_tx, inputs) = flume::unbounded();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let persistent = mqtt.session == SessionKind::Persistent;
    tokio::spawn(run(
        eventloop,
        inputs_tx,
        stopped,
        persistent,
        members.clone(),
    ));
    let (early, resumed) = handshake(
        &inputs,
        &client,
        filters,
        sync,
        mqtt.address(),
        mqtt.connect_timeout,
    )
    .await?;
    Ok(Session {
        client,
        inputs,
        early,
        stop,
        resumed,
        members,
    })
}

/// Disconnects cleanly (no will), waiting up to a second for the connection to close.
pub(crate) async fn disconnect(client: &AsyncClient, inputs: &flume::Receiver<Input>) {
    let _ = client.try_disconnect();
    let closed = async {
        while let Ok(input) = inputs.recv_async().await {
            if let Input::Disconnected { .. } = input {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
}

/// Ends a persistent session on the broker, as MQTT 3.1.1 does it: a clean connection under
/// its client id, then a disconnection. Bounded by one second; nothing to do for a clean one.
/// Whether the broker took the clean connection.
async fn end(mqtt: &MqttConfig, relay: &Relay, client_id: String) -> bool {
    if mqtt.session != SessionKind::Persistent {
        return true;
    }
    let clean = MqttConfig {
        session: SessionKind::Clean,
        ..mqtt.clone()
    };
    let (client, mut eventloop) = open(&clean, client_id, 4, None, Some(relay));
    let mut accepted = false;
    let ended = async {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                accepted = true;
                let _ = client.try_disconnect();
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ended).await;
    accepted
}

/// How long a node starting waits for another run of its id to answer its probe: a live
/// node answers within a round trip to the broker.
const CLAIM_WAIT: Duration = Duration::from_millis(250);

/// Whether node `node_id` (run `incarnation`) may take its session: before connecting under its
/// own client id, which would knock off another node of the same id, it probes on a throwaway
/// connection, and another run that answers (a node that announces itself) means the id is taken.
pub(crate) async fn claim(
    mqtt: &MqttConfig,
    relay: &Relay,
    node_id: &str,
    incarnation: u64,
) -> Result<(), ConnectError> {
    let clean = MqttConfig {
        session: SessionKind::Clean,
        ..mqtt.clone()
    };
    let answers = presence::probed_topic(node_id);
    let filters = vec![SubscribeFilter::new(
        answers.clone(),
        rumqttc::QoS::AtMostOnce,
    )];
    let session = start(
        &clean,
        relay,
        client_id("claim"),
        16,
        filters,
        Extras::default(),
    )
    .await?;
    let probe = presence::probe_topic(node_id);
    let _ = session
        .client
        .try_publish(probe, rumqttc::QoS::AtMostOnce, false, "");
    let limits = fedreq_protocol::Limits::default();
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    let mut taken = false;
    while let Ok(Ok(input)) = tokio::time::timeout_at(deadline, session.inputs.recv_async()).await {
        if let Input::Publish { topic, payload, .. } = input {
            let other = Presence::decode(&topic, &payload, &limits)
                .is_ok_and(|p| p.status.is_online() && p.incarnation != incarnation);
            if other {
                taken = true;
                break;
            }
        }
    }
    disconnect(&session.client, &session.inputs).await;
    match taken {
        true => Err(ConnectError::NodeIdTaken {
            node_id: node_id.to_owned(),
            address: mqtt.address(),
        }),
        false => Ok(()),
    }
}

/// Polls the event loop until `stop` fires or the core's task is gone; when the connection
/// fails, tries the next member of a clustered broker. `persistent` for a persistent session,
/// to warn when the broker comes back without it.
async fn run(
    mut eventloop: EventLoop,
    inputs: flume::Sender<Input>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    persistent: bool,
    members: Members,
) {
    let backoff = members.config.backoff;
    let mut delay = backoff.min;
    let mut sessions = 0;
    // Between a session's start and the broker's answer to our subscriptions.
    let mut subscribing = false;
    // Starting a new session in place of one a member that is down holds.
    let mut renewing = false;
    // The broker did not have our session when it took the connection.
    let mut lost = false;
    loop {
        let polled = tokio::select! {
            biased;
            _ = &mut stop => return,
            polled = eventloop.poll() => polled,
        };
        let input = match polled {
            Ok(Event::Incoming(Packet::Publish(publish))) => Input::Publish {
                topic: publish.topic,
                payload: publish.payload,
                retained: publish.retain,
            },
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                subscribing = true;
                delay = backoff.min;
                sessions += 1;
                // Said once subscribed: a member that cannot resume it cuts us off first.
                lost = persistent && !ack.session_present && sessions > 1;
                lost &= !std::mem::take(&mut renewing);
                Input::Connected {
                    resumed: ack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                subscribing = false;
                members.subscribed();
                if std::mem::take(&mut lost) {
                    let (broker, port) = eventloop.mqtt_options.broker_address();
                    log::warn!(
                        "the MQTT broker at {broker}:{port} had lost our session (restarted without persistence, or another member of its cluster): what was in flight may be lost"
                    );
                }
                Input::Subscribed(
                    ack.return_codes
                        .iter()
                        .all(|code| *code != SubscribeReasonCode::Failure),
                )
            }
            Ok(_) => continue,
            Err(ConnectionError::RequestsDone) => return,
            Err(error) => {
                // Cut off between its session's start and our subscriptions, on a member that
                // cannot serve that session: a new one here; else another member may answer.
                let renewed = (persistent && subscribing)
                    .then(|| members.renewed())
                    .flatten();
                subscribing = false;
                if renewed.is_some() {
                    let (broker, port) = eventloop.mqtt_options.broker_address();
                    log::warn!(
                        "the MQTT broker at {broker}:{port} cannot resume our session (it lives on a member that is down): starting a new one, what was queued for us is lost"
                    );
                    renewing = true;
                    members.end_left_later();
                }
                let elsewhere = renewed.or_else(|| members.next());
                let lost = Input::Disconnected {
                    reason: describe(&error),
                    transient: transient(&error) || elsewhere.is_some(),
                };
                if let Some(options) = elsewhere {
                    eventloop.mqtt_options = options;
                }
                if inputs.send(lost).is_err() {
                    return;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(backoff.max);
                continue;
            }
        };
        if inputs.send(input).is_err() {
            return;
        }
    }
}

/// Whether a new try may succeed: the connection broke or timed out, it was not refused.
/// rumqttc wraps a reset in its state and packet errors, so the whole chain is read.
fn transient(error: &ConnectionError) -> bool {
    use std::io::ErrorKind::*;
    if let Some(status) = relay_status(error) {
        return matches!(status, relay::TIMED_OUT | relay::RESET);
    }
    if matches!(
        error,
        ConnectionError::NetworkTimeout
            | ConnectionError::FlushTimeout
            | ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted)
    ) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
            );
        }
        cause = error.source();
    }
    false
}

/// The status the relay answered when it could not reach the broker.
fn relay_status(error: &ConnectionError) -> Option<u16> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(async_http_proxy::HttpError::HttpCode200(code)) = error.downcast_ref() {
            return Some(*code);
        }
        cause = error.source();
    }
    None
}

/// A reason a person can act on.
fn describe(error: &ConnectionError) -> String {
    match relay_status(error) {
        Some(relay::REFUSED) => return "Connection refused (nothing listens there?)".into(),
        Some(relay::TIMED_OUT) => return "no answer within the connection timeout".into(),
        Some(relay::RESET) => return "Connection reset by peer".into(),
        Some(_) => return "the address cannot be resolved or reached".into(),
        None => {}
    }
    match error {
        ConnectionError::Io(io) => io.to_string(),
        ConnectionError::NetworkTimeout => "no answer within the connection timeout".into(),
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorised",
                ConnectReturnCode::BadClientId => "client id refused",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT version refused",
                _ => "service unavailable",
            };
            format!("the broker refused the connection: {why}")
        }
        other => other.to_string(),
    }
}

/// How long a researcher waits for its own echo, the sign that retained statuses are in.
const SYNC_WAIT: Duration = Duration::from_millis(500);

/// The first session: waits for it to start, subscribes to `filters`, and waits for the
/// broker's acknowledgement, all within `timeout`; only then can a request be answered.
/// A connection that breaks (a broker still starting resets it) is tried again until then;
/// a refusal fails at once. Returns what arrived meanwhile, for the core, and whether the
/// broker still had the session.
async fn handshake(
    inputs: &flume::Receiver<Input>,
    client: &AsyncClient,
    filters: Vec<SubscribeFilter>,
    sync: Option<String>,
    address: String,
    timeout: Duration,
) -> Result<(Vec<Input>, bool), ConnectError> {
    let fail = |reason: String| ConnectError::Unreachable {
        address: address.clone(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut early = Vec::new();
    let mut subscribed = false;
    let mut resumed = false;
    let mut last_failure = String::new();
    loop {
        let input = tokio::time::timeout_at(deadline, inputs.recv_async())
            .await
            .map_err(|_| match last_failure.as_str() {
                "" => fail(format!("no MQTT session within {timeout:?}")),
                last => fail(format!("no MQTT session within {timeout:?}; last: {last}")),
            })?
            .map_err(|_| fail("the connection task stopped".into()))?;
        match input {
            Input::Connected { resumed: present } if !subscribed => {
                subscribed = true;
                resumed = present;
                client
                    .try_subscribe_many(filters.clone())
                    .map_err(|e| fail(e.to_string()))?;
            }
            Input::Subscribed(true) => match &sync {
                None => return Ok((early, resumed)),
                Some(topic) => {
                    let _ = client.try_publish(topic.clone(), rumqttc::QoS::AtMostOnce, false, "");
                    // A broker whose access rules refuse the echo costs this wait, no more.
                    let echoed = tokio::time::Instant::now() + SYNC_WAIT;
                    loop {
                        match tokio::time::timeout_at(echoed, inputs.recv_async()).await {
                            Ok(Ok(Input::Publish { topic: t, .. })) if t == *topic => break,
                            Ok(Ok(other)) => early.push(other),
                            Ok(Err(_)) | Err(_) => break,
                        }
                    }
                    return Ok((early, resumed));
                }
            },
            Input::Subscribed(false) => return Err(ConnectError::SubscriptionRefused { address }),
            Input::Disconnected {
                reason,
                transient: true,
            } => {
                subscribed = false;
                last_failure = reason;
            }
            Input::Disconnected { reason, .. } => return Err(fail(reason)),
            other => early.push(other),
        }
    }
}
