//! `Requests`: every operation of Fed-BioMed v4.4's `Requests`, over any transport. Each is
//! written once, async (any executor can await it); the blocking form blocks on it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedreq_driver::ResearcherHandle;
use fedreq_mem::Broker;
use fedreq_mqtt::{ConnectError, MqttConfig};
use fedreq_protocol::message::{AddScalarMessage, ErrorMessage, Object};
use fedreq_protocol::policy::Rounds;
use fedreq_protocol::NodeLog;
use fedreq_protocol::{
    Collect, Command, ConnectionState, DecodeError, Event, Mail, NodeId, Outcome, Policy, Request,
    RequestId, ResearcherConfig, Sequence, Submission, SubmitError, Target,
};
use serde_json::Value;

use pollster::block_on;

use crate::known::KnownNodes;
use crate::plan::{PlanError, TrainingPlan};
use crate::repository::{RepositoryClient, UploadError};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The core refused the request (a bad node id, a sequence in use).
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The messaging driver stopped.
    #[error("the messaging driver stopped")]
    Stopped,
    /// The connection to the broker broke and was not back when the request ended: what it
    /// got is not what the nodes answered.
    #[error("the connection to the MQTT broker was lost: {0}")]
    Disconnected(String),
    /// The training plan cannot be used.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The training plan could not be uploaded.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// Approval needs a file repository and none is configured.
    #[error("no file repository configured: set --uploads-url or UPLOADS_URL")]
    NoRepository,
    /// `add_sequence` for a command that carries no sequence.
    #[error("`{0}` messages carry no sequence")]
    NoSequence(Command),
    /// A message for `send_message` that is not a valid request.
    #[error("invalid message: {0}")]
    Message(#[from] DecodeError),
    /// The file of nodes known could not be written.
    #[error("could not keep the nodes heard in {path}: {error}")]
    Known {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// An environment variable that cannot be used.
    #[error("{variable} `{value}` is not {expected}")]
    Environment {
        /// Its name.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

/// Fed-BioMed v4.4's broker: `MQTT_BROKER` (else `localhost`) and `MQTT_BROKER_PORT` (else 1883).
/// `MQTT_BROKER` may also list the members of a clustered broker, separated by commas, each
/// `HOST` or `HOST:PORT` (`MQTT_BROKER_PORT` when it has none).
pub fn broker_from_env() -> Result<MqttConfig, Error> {
    let hosts = std::env::var("MQTT_BROKER").unwrap_or_else(|_| "localhost".into());
    let port = match std::env::var("MQTT_BROKER_PORT") {
        Ok(port) => port.parse().map_err(|_| Error::Environment {
            variable: "MQTT_BROKER_PORT",
            value: port,
            expected: "a port",
        })?,
        Err(_) => 1883,
    };
    if !hosts.contains(',') {
        // One host, as v4.4 reads it (an IPv6 literal included).
        return Ok(MqttConfig::new(hosts, port));
    }
    let bad = || Error::Environment {
        variable: "MQTT_BROKER",
        value: hosts.clone(),
        expected: "a host, or hosts separated by commas (each HOST or HOST:PORT)",
    };
    let members = hosts
        .split(',')
        .map(|member| fedreq_mqtt::config::parse_one(member.trim(), port).map_err(|_| bad()));
    let mut members = members.collect::<Result<Vec<_>, _>>()?.into_iter();
    let (host, port) = members.next().ok_or_else(bad)?;
    Ok(MqttConfig {
        fallbacks: members.collect(),
        ..MqttConfig::new(host, port)
    })
}

/// How requests complete, as the program's options and Python's arguments say it.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Quiet period after the last reply (Fed-BioMed's `TIMEOUT`), or round length with `compat`.
    pub timeout: Duration,
    /// Fed-BioMed v4.4's rounds: at least two timeouts per request.
    pub compat: bool,
    /// Complete once this many nodes have answered, after `grace`.
    pub min_replies: Option<usize>,
    /// How long to wait for stragglers once `min_replies` answered.
    pub grace: Duration,
    /// Complete at the latest this long after submission.
    pub deadline: Option<Duration>,
    /// The nodes a broadcast expects, given by the user; `None`: those known (presence, and
    /// nodes heard before).
    pub roster: Option<Vec<NodeId>>,
}

impl Completion {
    /// The policy every request of a `Requests` is collected under.
    pub fn policy(&self) -> Policy {
        let mut policy = match self.compat {
            true => Policy::fedbiomed(self.timeout),
            false => Policy::quiet(self.timeout),
        };
        if let Some(count) = self.min_replies {
            policy = policy.with_min_replies(count, self.grace);
        }
        if let Some(deadline) = self.deadline {
            policy = policy.with_deadline(deadline);
        }
        if let Some(roster) = &self.roster {
            policy = policy.with_roster(roster.clone());
        }
        policy
    }
}

/// A researcher id for who gives none: `researcher_` and 16 random hex digits.
pub fn random_researcher_id() -> String {
    format!("researcher_{:016x}", random_u64())
}

/// Fed-BioMed v4.4's default `UPLOADS_URL`.
pub const DEFAULT_UPLOADS_URL: &str = "http://localhost:8844/upload/";

/// How `Requests` talks.
#[derive(Clone, Debug)]
pub struct RequestsConfig {
    /// Our researcher id (Fed-BioMed's `RESEARCHER_ID`).
    pub researcher_id: String,
    /// The policy every request is collected under; its `timeout` is Fed-BioMed's `TIMEOUT`.
    pub policy: Policy,
    /// Where training plans are uploaded (Fed-BioMed's `UPLOADS_URL`).
    pub uploads_url: Option<String>,
    /// Where the nodes without presence heard are kept for the next process.
    pub remember: Remember,
}

/// Where a `Requests` keeps the nodes without presence it heard, for the next process on the
/// same broker (see [`known`](crate::known)).
#[derive(Clone, Debug, Default)]
pub enum Remember {
    /// The state folder's file for the broker connected to.
    #[default]
    PerBroker,
    /// This file.
    File(KnownNodes),
    /// Nowhere: every process meets the nodes anew (first contact).
    Nothing,
}

impl RequestsConfig {
    /// `researcher_id`, the default policy (quiet period of 5 s, early completion), and
    /// v4.4's default repository ([`DEFAULT_UPLOADS_URL`]).
    pub fn new(researcher_id: impl Into<String>) -> Self {
        RequestsConfig {
            researcher_id: researcher_id.into(),
            policy: Policy::default(),
            uploads_url: Some(DEFAULT_UPLOADS_URL.to_owned()),
            remember: Remember::PerBroker,
        }
    }
}

type MonitorCallback = Arc<dyn Fn(&AddScalarMessage) + Send + Sync>;
type LogHandler = Arc<dyn Fn(&NodeLog) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(&ErrorMessage) + Send + Sync>;

#[derive(Default)]
struct Handlers {
    monitor: Option<MonitorCallback>,
    log: Option<LogHandler>,
    error: Option<ErrorHandler>,
}

impl Handlers {
    fn is_empty(&self) -> bool {
        self.monitor.is_none() && self.log.is_none() && self.error.is_none()
    }
}

/// The researcher's requests to the nodes. Share it between threads: each request gets its
/// own replies.
pub struct Requests {
    handle: ResearcherHandle,
    config: RequestsConfig,
    handlers: Arc<Mutex<Handlers>>,
    dispatched: Arc<Dispatched>,
    /// Why the connection to the broker is down, while it is.
    down: Arc<Mutex<Option<String>>>,
    /// What `send_message` sent since the previous `get_responses`, which collects its replies.
    unanswered: Mutex<Unanswered>,
    /// Where the nodes heard are kept, and whether a broadcast taught anything to keep.
    known: Option<KnownNodes>,
    broadcast_done: AtomicBool,
}

/// The messages sent since the previous collect, and who still owes an answer.
#[derive(Debug, Default)]
struct Unanswered {
    /// The first of them: the mail since then is theirs.
    since: Option<RequestId>,
    /// The nodes they were sent to; `None` once one went to every node.
    nodes: Option<BTreeSet<NodeId>>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A random 64-bit value from the standard library's hasher keys.
pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Requests {
    /// Over MQTT, the default: connects to the broker (failing within its connect timeout,
    /// naming the address).
    pub fn connect(mqtt: MqttConfig, config: RequestsConfig) -> Result<Self, Error> {
        let known = match &config.remember {
            Remember::PerBroker => KnownNodes::for_broker(&mqtt.host, mqtt.port),
            Remember::File(file) => Some(file.clone()),
            Remember::Nothing => None,
        };
        let core = Self::core_config(&config, known.as_ref());
        let handle = fedreq_mqtt::connect_researcher(mqtt, core)?;
        Ok(Self::with_handle(handle, config).remembering(known))
    }

    /// Over the in-memory broker (which keeps nothing beyond the process, unless
    /// [`Remember::File`] says where).
    pub fn in_memory(broker: &Broker, config: RequestsConfig) -> Self {
        let known = match &config.remember {
            Remember::File(file) => Some(file.clone()),
            Remember::PerBroker | Remember::Nothing => None,
        };
        let core = Self::core_config(&config, known.as_ref());
        let handle = fedreq_mem::connect_researcher(broker, core);
        Self::with_handle(handle, config).remembering(known)
    }

    fn remembering(mut self, known: Option<KnownNodes>) -> Self {
        self.known = known;
        self
    }

    /// Keeps the nodes known for the next process (as dropping it does). Only after a
    /// broadcast: without one, this process learnt nothing about who is out there.
    pub fn save_known(&self) -> Result<(), Error> {
        let Some(known) = &self.known else {
            return Ok(());
        };
        if !self.broadcast_done.load(Ordering::Relaxed) {
            return Ok(());
        }
        let nodes = self
            .handle
            .known()
            .recv_timeout(Duration::from_secs(1))
            .map_err(|_| Error::Stopped)?;
        known.save(&nodes).map_err(|error| Error::Known {
            path: known.path().display().to_string(),
            error: error.to_string(),
        })
    }

    /// Over a researcher core driven by any transport, as Fed-BioMed lets a caller pass its
    /// own messaging. One `Requests` per driver: it takes the driver's events for its callbacks.
    pub fn with_handle(handle: ResearcherHandle, config: RequestsConfig) -> Self {
        let handlers = Arc::new(Mutex::new(Handlers::default()));
        let down = Arc::new(Mutex::new(None));
        let events = handle.events().clone();
        let dispatched = Arc::new(Dispatched::default());
        let (dispatching, link, progress) = (
            Arc::clone(&handlers),
            Arc::clone(&down),
            Arc::clone(&dispatched),
        );
        // Ends when the driver stops and its event channel closes.
        std::thread::Builder::new()
            .name("fedreq-events".into())
            .spawn(move || {
                progress.state().thread = Some(std::thread::current().id());
                for event in events.iter() {
                    if let Event::Connection(state) = &event {
                        *link.lock().unwrap_or_else(|p| p.into_inner()) = match state {
                            ConnectionState::Connected => None,
                            ConnectionState::Disconnected(reason) => Some(reason.clone()),
                        };
                    }
                    // A callback that panics loses its event, not the thread: later events
                    // still reach the callbacks, and requests waiting for them still end.
                    let dispatched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        dispatch(&dispatching, event)
                    }));
                    if dispatched.is_err() {
                        log::error!("a fedreq callback panicked; its event is lost");
                    }
                    progress.one_more();
                }
                progress.ended();
            })
            .expect("spawn the event thread");
        Requests {
            handle,
            config,
            handlers,
            dispatched,
            down,
            unanswered: Mutex::default(),
            known: None,
            broadcast_done: AtomicBool::new(false),
        }
    }

    /// The core's configuration: a random first sequence and hash seed, so that instances
    /// sharing a researcher id never take each other's replies; the nodes known from `known`.
    fn core_config(config: &RequestsConfig, known: Option<&KnownNodes>) -> ResearcherConfig {
        ResearcherConfig {
            first_sequence: random_u64() >> 16,
            hash_seed: random_u64(),
            known: known.and_then(KnownNodes::load),
            ..ResearcherConfig::new(config.researcher_id.clone())
        }
    }

    /// The handle of the driver underneath.
    pub fn handle(&self) -> &ResearcherHandle {
        &self.handle
    }

    /// The configuration.
    pub fn config(&self) -> &RequestsConfig {
        &self.config
    }

    /// Calls `callback` with every monitoring scalar addressed to us, replacing any previous
    /// one. Callbacks run on an event thread of their own; an outcome is returned once they
    /// have seen every event that came before it.
    pub fn add_monitor_callback(
        &self,
        callback: impl Fn(&AddScalarMessage) + Send + Sync + 'static,
    ) {
        self.handlers().monitor = Some(Arc::new(callback));
    }

    /// Stops calling the monitoring callback.
    pub fn remove_monitor_callback(&self) {
        self.handlers().monitor = None;
    }

    /// Handles node logs with `handler` instead of the `log` crate (target `fedreq::node`).
    pub fn set_log_handler(&self, handler: impl Fn(&NodeLog) + Send + Sync + 'static) {
        self.handlers().log = Some(Arc::new(handler));
    }

    /// Handles node errors (for us, or for nobody in particular) with `handler` instead of the
    /// `log` crate (a warning, target `fedreq::node`).
    pub fn set_error_handler(&self, handler: impl Fn(&ErrorMessage) + Send + Sync + 'static) {
        self.handlers().error = Some(Arc::new(handler));
    }

    fn handlers(&self) -> std::sync::MutexGuard<'_, Handlers> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits any request and waits for its outcome.
    pub fn request(&self, submission: Submission) -> Result<Outcome, Error> {
        block_on(self.request_async(submission))
    }

    /// [`request`](Self::request), async.
    pub async fn request_async(&self, submission: Submission) -> Result<Outcome, Error> {
        let pending = self.handle.submit(submission);
        let outcome = pending.recv_async().await.map_err(|_| Error::Stopped)??;
        self.callbacks_caught_up().await;
        if let Some(reason) = self.down.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::Disconnected(reason));
        }
        if outcome.targets.is_none() {
            self.broadcast_done.store(true, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    async fn collected(&self, collect: Collect) -> Result<Outcome, Error> {
        let pending = self.handle.collect(collect);
        let outcome = pending.recv_async().await.map_err(|_| Error::Stopped)??;
        self.callbacks_caught_up().await;
        Ok(outcome)
    }

    /// Waits until the callbacks have seen every event that came before the outcome just
    /// received: a scalar a node sent before its reply reaches the monitor callback before
    /// the caller sees the reply, as in Fed-BioMed, whose callbacks run on the thread that
    /// reads the replies.
    async fn callbacks_caught_up(&self) {
        // Without handlers, events are only logged: nobody to keep in order.
        if self.handlers().is_empty() {
            return;
        }
        // Sent first: the driver counts a drop before the send that caused it, so in this
        // order the target can come out low (a short wait), never high (no end).
        let sent = self.handle.events_sent();
        let target = sent.saturating_sub(self.handle.events_dropped());
        if let Some(caught_up) = self.dispatched.wait_for(target) {
            let _ = caught_up.recv_async().await;
        }
    }

    /// `request` to `nodes` under our policy: every node when `None` or empty, as v4.4's
    /// `if nodes:` reads it.
    fn submission(&self, request: Request, nodes: Option<Vec<NodeId>>) -> Submission {
        let target = match nodes {
            Some(nodes) if !nodes.is_empty() => Target::Nodes(nodes),
            _ => Target::All,
        };
        Submission {
            request,
            target,
            policy: self.config.policy.clone(),
            keep_sequence: false,
        }
    }

    /// The nodes that answer a ping.
    pub fn ping_nodes(&self) -> Result<Vec<NodeId>, Error> {
        block_on(self.ping_nodes_async())
    }

    /// [`ping_nodes`](Self::ping_nodes), async.
    pub async fn ping_nodes_async(&self) -> Result<Vec<NodeId>, Error> {
        let outcome = self
            .request_async(self.submission(Request::ping(), None))
            .await?;
        Ok(outcome.online())
    }

    /// Each node's datasets (of `nodes` only, when given); with `verbose`, logs them as tables.
    pub fn list(
        &self,
        nodes: Option<Vec<NodeId>>,
        verbose: bool,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        block_on(self.list_async(nodes, verbose))
    }

    /// [`list`](Self::list), async.
    pub async fn list_async(
        &self,
        nodes: Option<Vec<NodeId>>,
        verbose: bool,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        match nodes.as_deref() {
            Some(nodes) => log::info!("Listing datasets of given list of nodes : {nodes:?}"),
            None => log::info!("Listing available datasets in all nodes... "),
        }
        let datasets = self
            .request_async(self.submission(Request::list(), nodes))
            .await?
            .datasets();
        if verbose {
            for (node, list) in &datasets {
                log::info!("{}", crate::table::datasets(node, list));
            }
        }
        Ok(datasets)
    }

    /// The datasets carrying every one of `tags`, per node (of `nodes` only, when given).
    pub fn search(
        &self,
        tags: Vec<String>,
        nodes: Option<Vec<NodeId>>,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        block_on(self.search_async(tags, nodes))
    }

    /// [`search`](Self::search), async.
    pub async fn search_async(
        &self,
        tags: Vec<String>,
        nodes: Option<Vec<NodeId>>,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        match nodes.as_deref() {
            Some(nodes) => log::info!(
                "Searching dataset with data tags: {tags:?} on specified nodes: {nodes:?}"
            ),
            None => log::info!("Searching dataset with data tags: {tags:?} for all nodes"),
        }
        let outcome = self
            .request_async(self.submission(Request::search(tags.clone()), nodes))
            .await?;
        let found = outcome.datasets();
        for node in found.keys() {
            log::info!("Node selected for training -> {node}");
        }
        if found.is_empty() {
            log::info!("No available dataset has found in nodes with tags: {tags:?}");
        }
        Ok(found)
    }

    /// Uploads `plan` and asks the nodes (all, or `nodes`) to register it for approval; maps
    /// every node to whether it acknowledged. `timeout` replaces the policy's for this request.
    pub fn training_plan_approve(
        &self,
        plan: &TrainingPlan,
        description: &str,
        nodes: Option<Vec<NodeId>>,
        timeout: Option<Duration>,
    ) -> Result<BTreeMap<NodeId, bool>, Error> {
        block_on(self.training_plan_approve_async(plan, description, nodes, timeout))
    }

    /// [`training_plan_approve`](Self::training_plan_approve), async; the upload runs on a
    /// thread of its own.
    pub async fn training_plan_approve_async(
        &self,
        plan: &TrainingPlan,
        description: &str,
        nodes: Option<Vec<NodeId>>,
        timeout: Option<Duration>,
    ) -> Result<BTreeMap<NodeId, bool>, Error> {
        let client = self.repository()?;
        let (file_name, bytes) = (plan.file_name(), plan.bytes().to_owned());
        let (done, uploaded) = flume::bounded(1);
        std::thread::spawn(move || {
            let _ = done.send(client.upload(&file_name, &bytes));
        });
        let url = uploaded.recv_async().await.map_err(|_| Error::Stopped)??;
        let mut submission = self.submission(Request::approval(description, url), nodes);
        if let Some(timeout) = timeout {
            submission.policy.timeout = timeout;
        }
        let outcome = self.request_async(submission).await?;
        let approvals = outcome.approvals();
        for (node, acknowledged) in &approvals {
            match (acknowledged, outcome.missing.contains(node)) {
                (_, true) => log::info!(
                    "node ({node}) has not acknowledge training plan reception before the timeout"
                ),
                (true, _) => log::info!("node ({node}) has correctly downloaded the training plan"),
                (false, _) => {
                    log::info!("node ({node}) has not correctly downloaded the training plan")
                }
            }
        }
        if !approvals.values().any(|&ok| ok) {
            log::info!(
                "no nodes have acknowledged correct training plan reception before the timeout"
            );
        }
        Ok(approvals)
    }

    fn repository(&self) -> Result<RepositoryClient, Error> {
        self.config
            .uploads_url
            .as_ref()
            .map(RepositoryClient::new)
            .ok_or(Error::NoRepository)
    }

    /// Sends any request message (a JSON object with `command`; our `researcher_id` is
    /// stamped on it) to every node, or to `client`
    /// only; with `add_sequence`, stamps the next sequence number and returns it. Replies go to
    /// the mailbox, for [`get_messages`](Self::get_messages) and [`get_responses`](Self::get_responses).
    pub fn send_message(
        &self,
        message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Option<Sequence>, Error> {
        block_on(self.send_message_async(message, client, add_sequence))
    }

    /// [`send_message`](Self::send_message), async.
    pub async fn send_message_async(
        &self,
        message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Option<Sequence>, Error> {
        let submission = self.raw(message, client.clone(), add_sequence)?;
        let outcome = self.request_async(submission).await?;
        let mut unanswered = self.unanswered();
        if unanswered.since.is_none() {
            *unanswered = Unanswered {
                since: Some(outcome.id),
                nodes: Some(BTreeSet::new()),
            };
        }
        match (client, &mut unanswered.nodes) {
            (Some(node), Some(nodes)) => {
                nodes.insert(node);
            }
            // A broadcast: nobody knows who will answer.
            (None, nodes) => *nodes = None,
            (Some(_), None) => {}
        }
        Ok(outcome.sequence.filter(|_| add_sequence))
    }

    fn raw(
        &self,
        mut message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Submission, Error> {
        if add_sequence {
            let command = message
                .get("command")
                .and_then(Value::as_str)
                .and_then(Command::parse);
            match command {
                Some(command) if !command.has_sequence() => return Err(Error::NoSequence(command)),
                _ => message.insert("sequence".into(), 0.into()),
            };
        }
        // The core stamps our id on every request: a message may leave it out.
        message
            .entry("researcher_id")
            .or_insert_with(|| self.config.researcher_id.clone().into());
        let request = Request::from_value(message)?;
        let mut submission = self.submission(request, client.map(|node| vec![node]));
        // Sent, not collected: completes at once, and the replies wait in the mailbox.
        submission.policy = Policy {
            early: false,
            ..Policy::quiet(Duration::ZERO)
        };
        submission.keep_sequence = !add_sequence;
        Ok(submission)
    }

    /// Waits `wait`, then takes every unmatched message of `commands` (all when empty), as
    /// the JSON objects that travelled.
    pub fn get_messages(&self, commands: &[Command], wait: Duration) -> Result<Vec<Value>, Error> {
        block_on(self.get_messages_async(commands, wait))
    }

    /// [`get_messages`](Self::get_messages), async.
    pub async fn get_messages_async(
        &self,
        commands: &[Command],
        wait: Duration,
    ) -> Result<Vec<Value>, Error> {
        Ok(self.collected(messages(commands, wait)).await?.responses())
    }

    /// Fed-BioMed's `get_responses`: the replies of `commands` (and errors, when asked for) to
    /// every message sent since the previous call. When those went to named nodes, it
    /// completes as soon as each has answered, else `timeout` (our policy's when `None`) after
    /// the last reply; a node that did not answer is awaited by the next call. In
    /// compatibility mode, Fed-BioMed's rounds instead: read every `timeout` until a round
    /// brings nothing new (or after the first, without `while_responses`).
    pub fn get_responses(
        &self,
        commands: &[Command],
        timeout: Option<Duration>,
        only_successful: bool,
        while_responses: bool,
    ) -> Result<Vec<Value>, Error> {
        block_on(self.get_responses_async(commands, timeout, only_successful, while_responses))
    }

    /// [`get_responses`](Self::get_responses), async.
    pub async fn get_responses_async(
        &self,
        commands: &[Command],
        timeout: Option<Duration>,
        only_successful: bool,
        while_responses: bool,
    ) -> Result<Vec<Value>, Error> {
        let timeout = timeout.unwrap_or(self.config.policy.timeout);
        let compat = self.config.policy.rounds.is_some();
        let mut policy = match compat {
            true => Policy {
                rounds: Some(Rounds { while_responses }),
                ..Policy::fedbiomed(timeout)
            },
            false => Policy::quiet(timeout),
        };
        policy.only_successful = only_successful;
        let (since, expect, broadcast) = {
            let unanswered = self.unanswered();
            let expect = unanswered.nodes.as_ref().filter(|nodes| !nodes.is_empty());
            let broadcast = unanswered.since.is_some() && unanswered.nodes.is_none();
            (
                unanswered.since,
                expect.map(|n| n.iter().cloned().collect()),
                broadcast,
            )
        };
        // After a broadcast, the nodes known are expected, as by a broadcast request.
        let collect = Collect {
            commands: commands.to_vec(),
            policy,
            since,
            expect,
            broadcast,
        };
        let outcome = self.collected(collect).await?;
        let mut unanswered = self.unanswered();
        match &mut unanswered.nodes {
            Some(nodes) if !compat && !outcome.missing.is_empty() => {
                nodes.retain(|node| outcome.missing.contains(node))
            }
            _ => *unanswered = Unanswered::default(),
        }
        Ok(outcome.responses())
    }

    fn unanswered(&self) -> std::sync::MutexGuard<'_, Unanswered> {
        self.unanswered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The nodes known by their presence, online or not, with when their status last changed
    /// (time since the Unix epoch).
    pub fn roster(&self) -> Result<fedreq_driver::Roster, Error> {
        self.handle.roster().recv().map_err(|_| Error::Stopped)
    }

    /// Takes the mailbox's messages of these commands (all when empty): late replies, replies
    /// for another researcher, messages that matched nothing.
    pub fn take_mail(&self, commands: Vec<Command>) -> Result<Vec<Mail>, Error> {
        self.handle
            .take_mail(commands)
            .recv()
            .map_err(|_| Error::Stopped)
    }
}

impl Drop for Requests {
    /// Keeps the nodes known for the next process; a failure is only logged.
    fn drop(&mut self) {
        if let Err(error) = self.save_known() {
            log::warn!("{error}");
        }
    }
}

/// A collect that only waits: `get_messages`.
fn messages(commands: &[Command], wait: Duration) -> Collect {
    Collect {
        commands: commands.to_vec(),
        policy: Policy {
            early: false,
            ..Policy::quiet(Duration::MAX)
        }
        .with_deadline(wait),
        since: None,
        expect: None,
        broadcast: false,
    }
}

/// How many events the event thread has handed to the callbacks, and who waits for a count.
#[derive(Default)]
struct Dispatched(Mutex<DispatchedState>);

#[derive(Default)]
struct DispatchedState {
    count: u64,
    ended: bool,
    /// The event thread's: a callback that makes a request must not wait for itself.
    thread: Option<std::thread::ThreadId>,
    waiters: Vec<(u64, flume::Sender<()>)>,
}

impl Dispatched {
    fn state(&self) -> std::sync::MutexGuard<'_, DispatchedState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` when `count` events were dispatched already (or never will be), else a
    /// receiver that hears once they are. Events dropped unread are left out of `count`.
    fn wait_for(&self, count: u64) -> Option<flume::Receiver<()>> {
        let mut state = self.state();
        if state.ended || state.count >= count || state.thread == Some(std::thread::current().id())
        {
            return None;
        }
        let (reached, waiting) = flume::bounded(1);
        state.waiters.push((count, reached));
        Some(waiting)
    }

    fn one_more(&self) {
        let mut state = self.state();
        state.count += 1;
        let count = state.count;
        state.waiters.retain(|(wanted, reached)| {
            let waits = *wanted > count;
            if !waits {
                let _ = reached.send(());
            }
            waits
        });
    }

    /// Frees every waiter: no event is coming.
    fn ended(&self) {
        let mut state = self.state();
        state.ended = true;
        state.waiters.clear();
    }
}

fn dispatch(handlers: &Mutex<Handlers>, event: Event) {
    // Called without the lock: a handler may replace the handlers.
    let (monitor, log_handler, error_handler) = {
        let handlers = handlers.lock().unwrap_or_else(|p| p.into_inner());
        let handlers = &*handlers;
        (
            handlers.monitor.clone(),
            handlers.log.clone(),
            handlers.error.clone(),
        )
    };
    match event {
        Event::Monitoring(scalar) => {
            if let Some(callback) = &monitor {
                callback(&scalar);
            }
        }
        Event::Log(log) => match &log_handler {
            Some(handler) => handler(&log),
            None => {
                log::log!(target: "fedreq::node", node_level(&log.level), "{} {}", log.node_id, log.text)
            }
        },
        Event::NodeError(error) => match &error_handler {
            Some(handler) => handler(&error),
            None => {
                log::warn!(target: "fedreq::node", "{} {}: {}", error.node_id, error.errnum, error.extra_msg)
            }
        },
        Event::Rejected { topic, error } => log::warn!("refused a message on {topic}: {error}"),
        Event::Connection(state) => log::info!("broker connection: {state:?}"),
        Event::OlderVersion { node_id, version } => {
            log::warn!("node {node_id} speaks protocol version {version}, older than ours")
        }
        other => log::debug!("{other:?}"),
    }
}

/// A Fed-BioMed log level as a `log` level.
pub fn node_level(level: &str) -> log::Level {
    match level {
        "DEBUG" => log::Level::Debug,
        "WARNING" => log::Level::Warn,
        "ERROR" | "CRITICAL" => log::Level::Error,
        _ => log::Level::Info,
    }
}
