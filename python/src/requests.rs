//! `fedreq.Requests`: every operation of Fed-BioMed v4.4's `Requests`, with v4.4's names,
//! arguments, defaults and Python types, over fedreq's core. Each call waits without the GIL.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fedreq::plan::Python as PlanPython;
use fedreq::requests::{broker_from_env, random_researcher_id, Completion, DEFAULT_UPLOADS_URL};
use fedreq::{RequestsConfig, TrainingPlan};
use fedreq_mqtt::{MqttConfig, Qos, Tls};
use fedreq_protocol::message::{NodeMessage, Object};
use fedreq_protocol::Command;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pythonize::{depythonize, pythonize};

use crate::errors::{raise, MessageError, TrainingPlanError};
use crate::wait::wait;

/// Fed-BioMed v4.4's researcher requests to the nodes: ping, list, search, training plan
/// approval, any message and its replies, monitoring. One instance may be shared by threads.
#[pyclass(module = "fedreq", frozen)]
pub struct Requests {
    inner: Slot,
    /// The process that connected it: a forked child has no driver thread to talk to.
    pid: u32,
}

/// Where a `Requests` keeps its connection until it is closed.
type Slot = Arc<SlotInside>;
type SlotInside = Mutex<Option<Arc<fedreq::Requests>>>;

/// Every open `Requests`, closed at interpreter exit.
static OPEN: Mutex<Vec<Weak<SlotInside>>> = Mutex::new(Vec::new());

/// The closes a dropped `Requests` started on a thread of their own: finished before the
/// interpreter exits, else the process would end with their sessions still on the broker.
static CLOSING: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Closes every `Requests` still open, and waits for those being closed: their sessions end
/// on the broker.
pub fn close_all() {
    let slots: Vec<_> = lock(&OPEN).drain(..).filter_map(|s| s.upgrade()).collect();
    let taken: Vec<_> = slots.iter().filter_map(|slot| lock(slot).take()).collect();
    drop(taken);
    for closing in std::mem::take(&mut *lock(&CLOSING)) {
        let _ = closing.join();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// How requests complete, from Python's arguments.
pub struct Options {
    pub researcher_id: Option<String>,
    pub timeout: Option<f64>,
    pub compat: bool,
    pub min_replies: Option<i64>,
    pub grace: f64,
    pub deadline: Option<f64>,
    pub roster: Option<Vec<String>>,
}

impl Options {
    /// Our configuration: what is not given comes from the environment (`RESEARCHER_ID`,
    /// `FEDREQ_TIMEOUT`), else the defaults.
    pub fn config(self, uploads_url: Option<String>) -> PyResult<RequestsConfig> {
        let timeout = match (self.timeout, std::env::var("FEDREQ_TIMEOUT")) {
            (Some(timeout), _) if timeout > 0.0 => seconds("timeout", timeout)?,
            (Some(timeout), _) => {
                let message = format!("timeout must be more than 0 seconds, not {timeout}");
                return Err(PyValueError::new_err(message));
            }
            (None, Ok(text)) => text
                .trim()
                .parse()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| {
                    raise(fedreq::Error::Environment {
                        variable: "FEDREQ_TIMEOUT",
                        value: text.clone(),
                        expected: "a number of seconds",
                    })
                })?,
            (None, Err(_)) => Duration::from_secs(5),
        };
        if timeout.is_zero() {
            return Err(PyValueError::new_err("timeout must be more than 0 seconds"));
        }
        let min_replies = self
            .min_replies
            .map(|count| match usize::try_from(count) {
                Ok(count) if count > 0 => Ok(count),
                _ => Err(PyValueError::new_err(format!(
                    "min_replies must be 1 or more, not {count}"
                ))),
            })
            .transpose()?;
        let completion = Completion {
            timeout,
            compat: self.compat,
            min_replies,
            grace: seconds("grace", self.grace)?,
            deadline: self.deadline.map(|d| seconds("deadline", d)).transpose()?,
            roster: self
                .roster
                .or_else(roster_from_env)
                .filter(|n| !n.is_empty()),
        };
        let researcher_id = self
            .researcher_id
            .or_else(|| std::env::var("RESEARCHER_ID").ok())
            .unwrap_or_else(random_researcher_id);
        Ok(RequestsConfig {
            policy: completion.policy(),
            uploads_url: Some(uploads_url.unwrap_or_else(|| {
                std::env::var("UPLOADS_URL").unwrap_or_else(|_| DEFAULT_UPLOADS_URL.into())
            })),
            ..RequestsConfig::new(researcher_id)
        })
    }
}

/// `FEDREQ_ROSTER`: node ids separated by commas.
fn roster_from_env() -> Option<Vec<String>> {
    let text = std::env::var("FEDREQ_ROSTER").ok()?;
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// A number of seconds from Python.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds, not {value}"
        ))
    })
}

/// Waits for a request without the GIL, interruptibly, and raises its error.
fn run<T: Send>(
    py: Python<'_>,
    request: impl Future<Output = Result<T, fedreq::Error>> + Send,
) -> PyResult<T> {
    wait(py, request)?.map_err(raise)
}

fn to_python<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    Ok(pythonize(py, value)?)
}

/// Replies as a `fedreq.Responses`, as v4.4 returns them.
fn responses<'py>(py: Python<'py>, replies: &[serde_json::Value]) -> PyResult<Bound<'py, PyAny>> {
    let responses = py.import("fedreq.responses")?.getattr("Responses")?;
    responses.call1((to_python(py, &replies)?,))
}

fn commands(names: Vec<String>) -> PyResult<Vec<Command>> {
    names
        .iter()
        .map(|name| {
            Command::parse(name)
                .ok_or_else(|| MessageError::new_err(format!("unknown command `{name}`")))
        })
        .collect()
}

impl Requests {
    pub fn wrap(inner: fedreq::Requests) -> Self {
        let slot: Slot = Arc::new(Mutex::new(Some(Arc::new(inner))));
        let mut open = lock(&OPEN);
        open.retain(|s| s.strong_count() > 0);
        open.push(Arc::downgrade(&slot));
        Requests {
            inner: slot,
            pid: std::process::id(),
        }
    }

    /// The connection, unless it was closed, or this is a forked child's copy.
    fn inner(&self) -> PyResult<Arc<fedreq::Requests>> {
        if std::process::id() != self.pid {
            return Err(crate::errors::Error::new_err(
                "this fedreq.Requests was connected in the parent process: after a fork, \
                 create a new one in the child",
            ));
        }
        lock(&self.inner)
            .clone()
            .ok_or_else(|| crate::errors::Error::new_err("this fedreq.Requests is closed"))
    }
}

impl Drop for Requests {
    /// Ends the session off the interpreter's thread (it waits for the broker), unless
    /// `close()` did.
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // A forked child's copy: its parent's connection is not the child's to close.
            std::mem::forget(lock(&self.inner).take());
            return;
        }
        if let Some(inner) = lock(&self.inner).take() {
            let closing = std::thread::Builder::new()
                .name("fedreq-close".into())
                .spawn(move || drop(inner));
            let mut pending = lock(&CLOSING);
            pending.retain(|closing| !closing.is_finished());
            pending.extend(closing.ok());
        }
    }
}

#[pymethods]
impl Requests {
    /// Connects to the MQTT broker. Not given, each setting is read from Fed-BioMed's
    /// environment variables (`MQTT_BROKER`, `MQTT_BROKER_PORT`, `RESEARCHER_ID`,
    /// `UPLOADS_URL`) or fedreq's (`FEDREQ_TIMEOUT`, `MQTT_USERNAME`, `MQTT_PASSWORD`), else
    /// defaults: localhost:1883, a random researcher id, v4.4's upload URL, 5 seconds.
    ///
    /// broker: "HOST:PORT" or "mqtt://HOST:PORT", or the members of a clustered broker
    /// separated by commas ("mq1:1883,mq2:1883"): the connection moves to the next when its
    /// member fails (`MQTT_BROKER` may list hosts so too). timeout: seconds of quiet after the last
    /// reply before a request completes (v4.4's TIMEOUT). compat: v4.4's rounds (at least two
    /// timeouts per request). min_replies, grace: complete once that many nodes answered, after
    /// grace seconds. deadline: complete at the latest that many seconds after sending.
    /// roster: the federation's node ids (else `FEDREQ_ROSTER`, comma-separated): a broadcast
    /// completes once they answered; without one, the nodes online by presence and those heard
    /// before on this broker are expected. qos: MQTT QoS 0, 1 or 2. ca_file: a PEM certificate
    /// authority, for TLS.
    #[new]
    #[pyo3(signature = (broker=None, researcher_id=None, uploads_url=None, timeout=None, *,
        compat=false, min_replies=None, grace=0.0, deadline=None, roster=None, qos=1,
        username=None, password=None, ca_file=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        broker: Option<&str>,
        researcher_id: Option<String>,
        uploads_url: Option<String>,
        timeout: Option<f64>,
        compat: bool,
        min_replies: Option<i64>,
        grace: f64,
        deadline: Option<f64>,
        roster: Option<Vec<String>>,
        qos: i64,
        username: Option<String>,
        password: Option<String>,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let options = Options {
            researcher_id,
            timeout,
            compat,
            min_replies,
            grace,
            deadline,
            roster,
        };
        let config = options.config(uploads_url)?;
        let mut mqtt = match broker {
            Some(address) => MqttConfig::parse(address)
                .map_err(|e| crate::errors::ConnectError::new_err(e.to_string()))?,
            None => broker_from_env().map_err(raise)?,
        };
        mqtt.qos = match qos {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            2 => Qos::ExactlyOnce,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "qos must be 0, 1 or 2, not {qos}"
                )))
            }
        };
        mqtt.connect_timeout = config
            .policy
            .timeout
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let username = username.or_else(|| std::env::var("MQTT_USERNAME").ok());
        let password = password.or_else(|| std::env::var("MQTT_PASSWORD").ok());
        if let Some(user) = username {
            mqtt.credentials = Some((user, password.unwrap_or_default()));
        }
        if let Some(path) = ca_file {
            let pem = std::fs::read(&path).map_err(|e| {
                crate::errors::ConnectError::new_err(format!(
                    "cannot read CA file {}: {e}",
                    path.display()
                ))
            })?;
            let tls = Tls::new(&pem, None)
                .map_err(|e| crate::errors::ConnectError::new_err(e.to_string()))?;
            mqtt.tls = Some(tls);
        }
        let connected = py.detach(|| fedreq::Requests::connect(mqtt, config));
        Ok(Requests::wrap(connected.map_err(raise)?))
    }

    /// Our researcher id.
    #[getter]
    fn researcher_id(&self) -> PyResult<String> {
        Ok(self.inner()?.config().researcher_id.clone())
    }

    /// Seconds of quiet after the last reply before a request completes.
    #[getter]
    fn timeout(&self) -> PyResult<f64> {
        Ok(self.inner()?.config().policy.timeout.as_secs_f64())
    }

    /// Where training plans are uploaded.
    #[getter]
    fn uploads_url(&self) -> PyResult<Option<String>> {
        Ok(self.inner()?.config().uploads_url.clone())
    }

    fn __repr__(&self) -> String {
        match self.inner() {
            Ok(inner) => format!(
                "fedreq.Requests(researcher_id={:?}, timeout={})",
                inner.config().researcher_id,
                inner.config().policy.timeout.as_secs_f64()
            ),
            Err(_) => "fedreq.Requests(closed)".to_owned(),
        }
    }

    /// Ends the session on the broker (it keeps nothing for us after), waiting for it without
    /// the GIL; requests still waiting in other threads end first. Closing twice does nothing.
    fn close(&self, py: Python<'_>) {
        let inner = lock(&self.inner).take();
        py.detach(move || drop(inner));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes it.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    /// The ids of the nodes that answer a ping.
    fn ping_nodes(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        run(py, self.inner()?.ping_nodes_async())
    }

    /// The datasets carrying every one of `tags`, per node id (of `nodes` only, when given).
    #[pyo3(signature = (tags, nodes=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        tags: Vec<String>,
        nodes: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let found = run(py, self.inner()?.search_async(tags, nodes))?;
        to_python(py, &found)
    }

    /// Each node's datasets, per node id (of `nodes` only, when given); with `verbose`, logs
    /// them as tables (logger `fedreq.requests`, INFO).
    #[pyo3(signature = (nodes=None, verbose=false))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        nodes: Option<Vec<String>>,
        verbose: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let datasets = run(py, self.inner()?.list_async(nodes, verbose))?;
        to_python(py, &datasets)
    }

    /// Checks `training_plan` as Python, uploads it and asks the nodes (all, or `nodes`) to
    /// register it for approval; maps every node id to whether it acknowledged within
    /// `timeout` seconds. `training_plan` is a path (str or os.PathLike) or the plan's source,
    /// checked for `python` ("3.10", v4 nodes', or "3.11"; else `FEDREQ_PYTHON`, else 3.10).
    #[pyo3(signature = (training_plan, description="no description provided", nodes=None, timeout=5.0, python=None))]
    fn training_plan_approve<'py>(
        &self,
        py: Python<'py>,
        training_plan: &Bound<'py, PyAny>,
        description: &str,
        nodes: Option<Vec<String>>,
        timeout: Option<f64>,
        python: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let plan = plan(training_plan, python)?;
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let approvals = run(
            py,
            self.inner()?
                .training_plan_approve_async(&plan, description, nodes, timeout),
        )?;
        to_python(py, &approvals)
    }

    /// Sends any request message (a dict with "command") to every node, or to node `client`
    /// only; with `add_sequence`, stamps a fresh sequence number and returns it, else None.
    /// Replies wait for `get_messages` and `get_responses`.
    #[pyo3(signature = (msg, client=None, add_sequence=false))]
    fn send_message(
        &self,
        py: Python<'_>,
        msg: &Bound<'_, PyDict>,
        client: Option<String>,
        add_sequence: bool,
    ) -> PyResult<Option<u64>> {
        let message: Object = depythonize(msg.as_any())
            .map_err(|e| MessageError::new_err(format!("invalid message: not JSON: {e}")))?;
        run(
            py,
            self.inner()?
                .send_message_async(message, client, add_sequence),
        )
    }

    /// Waits `time` seconds, then takes every message of `commands` (all when empty) that
    /// no request took, as a `fedreq.Responses` of dicts. A command name no node sends
    /// matches nothing, as in v4.4: it waits, and returns what matches.
    #[pyo3(signature = (commands=Vec::new(), time=0.0))]
    fn get_messages<'py>(
        &self,
        py: Python<'py>,
        commands: Vec<String>,
        time: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait_for = seconds("time", time)?;
        let known: Vec<Command> = commands.iter().filter_map(|c| Command::parse(c)).collect();
        if !commands.is_empty() && known.is_empty() {
            // Nothing can match: only the wait is left (an empty list would take everything).
            let until = std::time::Instant::now() + wait_for;
            wait(
                py,
                std::future::poll_fn(move |_| match std::time::Instant::now() >= until {
                    true => std::task::Poll::Ready(()),
                    false => std::task::Poll::Pending,
                }),
            )?;
            return responses(py, &[]);
        }
        let messages = run(py, self.inner()?.get_messages_async(&known, wait_for))?;
        responses(py, &messages)
    }

    /// The replies of `look_for_commands` (errors too, if "error" is among them) to every
    /// message sent since the previous call, as a `fedreq.Responses` of dicts. Completes once every node they went to
    /// answered, else `timeout` seconds after the last reply (the instance's when None); with
    /// `only_successful`, replies with success false are left out. In compat mode, v4.4's
    /// rounds: read every `timeout` until one brings nothing (only once without
    /// `while_responses`).
    #[pyo3(signature = (look_for_commands, timeout=None, only_successful=true, while_responses=true))]
    fn get_responses<'py>(
        &self,
        py: Python<'py>,
        look_for_commands: Vec<String>,
        timeout: Option<f64>,
        only_successful: bool,
        while_responses: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let commands = self::commands(look_for_commands)?;
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let responses = run(
            py,
            self.inner()?
                .get_responses_async(&commands, timeout, only_successful, while_responses),
        )?;
        self::responses(py, &responses)
    }

    /// Calls `callback(scalar)` with every monitoring scalar for us, from fedreq's event
    /// thread; `scalar` is the dict v4.4's Monitor reads ("node_id", "job_id", "metric",
    /// "iteration"...). Replaces any previous callback. A reply is returned once the callback
    /// has run for every scalar that came before it. An exception it raises is reported
    /// through sys.unraisablehook.
    fn add_monitor_callback(&self, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(
                "the monitor callback must be callable",
            ));
        }
        let callback = callback.unbind();
        self.inner()?.add_monitor_callback(move |scalar| {
            let message = NodeMessage::from(scalar.clone()).to_value();
            crate::attach(|py| {
                let called = to_python(py, &message).and_then(|dict| callback.call1(py, (dict,)));
                if let Err(error) = called {
                    error.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        });
        Ok(())
    }

    /// Stops calling the monitor callback.
    fn remove_monitor_callback(&self) -> PyResult<()> {
        self.inner()?.remove_monitor_callback();
        Ok(())
    }

    /// The nodes that announce their presence (fedreq nodes do; v4.4's do not): node id ->
    /// {"online": bool, "since": seconds since the Unix epoch of the last change (None when it
    /// changed before we connected), "incarnation": which run of the node}.
    fn roster<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.inner()?;
        let roster = py.detach(|| inner.roster()).map_err(raise)?;
        let result = PyDict::new(py);
        for (node, member) in roster {
            let entry = PyDict::new(py);
            entry.set_item("online", member.online())?;
            let since = member.since.map(|at| at.since_epoch().as_secs_f64());
            entry.set_item("since", since)?;
            entry.set_item("incarnation", member.incarnation)?;
            result.set_item(node, entry)?;
        }
        Ok(result)
    }

    /// For python/bench.py: `runs` pings from Rust, each one's seconds, to compare with the
    /// same ping from Python.
    fn _ping_times(&self, py: Python<'_>, runs: usize) -> PyResult<Vec<f64>> {
        let inner = self.inner()?;
        py.detach(|| {
            (0..runs)
                .map(|_| {
                    let started = std::time::Instant::now();
                    inner.ping_nodes()?;
                    Ok(started.elapsed().as_secs_f64())
                })
                .collect::<Result<_, fedreq::Error>>()
        })
        .map_err(raise)
    }
}

/// A training plan from a path (str or os.PathLike) or its source, checked for `python`.
fn plan(training_plan: &Bound<'_, PyAny>, python: Option<String>) -> PyResult<TrainingPlan> {
    let python: PlanPython = match python.or_else(|| std::env::var("FEDREQ_PYTHON").ok()) {
        Some(version) => version.parse().map_err(PyValueError::new_err)?,
        None => PlanPython::default(),
    };
    let checked = match training_plan.cast::<PyString>() {
        Ok(text) => {
            let text = text.to_cow()?;
            let looks_like_path = !text.contains('\n') && text.trim_end().ends_with(".py");
            if looks_like_path || std::path::Path::new(text.as_ref()).is_file() {
                TrainingPlan::from_file_for(text.as_ref(), python)
            } else {
                TrainingPlan::from_source_for("training_plan.py", text.as_ref(), python)
            }
        }
        Err(_) => match training_plan.extract::<PathBuf>() {
            Ok(path) => TrainingPlan::from_file_for(path, python),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "training_plan must be a path or the plan's source, not {}",
                    training_plan.get_type().name()?
                )))
            }
        },
    };
    checked.map_err(|e| TrainingPlanError::new_err(e.to_string()))
}
