//! `fedreq.Federation`: a broker, a file repository and nodes in this process, for tutorials
//! and tests; over MQTT (the embedded broker, or one given) or the in-memory broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use fedreq::repository::{download, http_fetcher, RepositoryServer};
use fedreq_mem::sim::simulated_datasets;
use fedreq_mqtt::{EmbeddedBroker, MqttConfig, Runtime};
use fedreq_protocol::message::Object;
use fedreq_protocol::node::datasets_from_json;
use fedreq_protocol::NodeConfig;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pythonize::depythonize;

use crate::errors::{raise, ConnectError, Error};
use crate::requests::{Options, Requests};

/// Where the nodes run.
enum Transport {
    Mqtt {
        mqtt: Box<MqttConfig>,
        /// The nodes' runtime.
        _runtime: Runtime,
        /// Kept running while the federation lives (rumqttd cannot be stopped).
        _broker: Option<EmbeddedBroker>,
    },
    Memory(fedreq_mem::Broker),
}

/// A running node of either transport, stopped when dropped.
type Node = Box<dyn Send>;

/// A whole federation in this process: a file repository and `nodes` fedreq nodes
/// ("node-1"...), on the embedded MQTT broker (transport="mqtt", the default), on the MQTT
/// broker at `broker` ("HOST:PORT"), or on the in-memory broker (transport="memory"). Each node
/// holds `datasets` (a list of dataset dicts, as a node's datasets file), else a few simulated
/// ones tagged "fbm". Nodes answer every request, training simulated. With `presence=False`
/// they announce nothing, as Fed-BioMed v4.4's nodes.
#[pyclass(module = "fedreq", frozen)]
pub struct Federation {
    transport: Transport,
    repository: RepositoryServer,
    node_ids: Vec<String>,
    running: Mutex<BTreeMap<String, Node>>,
    /// `close()` was called: no more `Requests` to it.
    closed: AtomicBool,
}

#[pymethods]
impl Federation {
    #[new]
    #[pyo3(signature = (nodes=3, *, transport="mqtt", broker=None, datasets=None, presence=true))]
    fn new(
        py: Python<'_>,
        nodes: i64,
        transport: &str,
        broker: Option<&str>,
        datasets: Option<Bound<'_, PyList>>,
        presence: bool,
    ) -> PyResult<Self> {
        let nodes = usize::try_from(nodes)
            .map_err(|_| PyValueError::new_err(format!("nodes must be 0 or more, not {nodes}")))?;
        // Checked as `fedreq node --datasets` checks its file.
        let datasets: Option<std::sync::Arc<[Object]>> = datasets
            .map(|list| {
                let value: serde_json::Value = depythonize(list.as_any())
                    .map_err(|e| format!("datasets must be a list of dicts: {e}"))?;
                datasets_from_json(value.to_string().as_bytes())
                    .map_err(|e| format!("datasets: {e}"))
            })
            .transpose()
            .map_err(PyValueError::new_err)?;
        let node_ids: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
        let configs: Vec<NodeConfig> = node_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let held = match &datasets {
                    Some(list) => std::sync::Arc::clone(list),
                    None => simulated_datasets(i),
                };
                let mut config = NodeConfig::new(id.clone(), held);
                config.simulate_training = true;
                config.plan_check = Some(fedreq::plan::node_plan_check);
                config
            })
            .collect();
        py.detach(|| start(transport, broker, node_ids, configs, presence))
    }

    /// The MQTT broker's "HOST:PORT", None on the in-memory broker.
    #[getter]
    fn broker(&self) -> Option<String> {
        match &self.transport {
            Transport::Mqtt { mqtt, .. } => Some(mqtt.address()),
            Transport::Memory(_) => None,
        }
    }

    /// The file repository's upload URL (Fed-BioMed's UPLOADS_URL).
    #[getter]
    fn uploads_url(&self) -> String {
        self.repository.uploads_url()
    }

    /// Every node's id, running or stopped.
    #[getter]
    fn node_ids(&self) -> Vec<String> {
        self.node_ids.clone()
    }

    /// A `Requests` to this federation, uploading to its repository unless `uploads_url` says
    /// otherwise; the other arguments are `Requests`'s.
    #[pyo3(signature = (researcher_id=None, timeout=None, *, compat=false, min_replies=None,
        grace=0.0, deadline=None, uploads_url=None))]
    #[allow(clippy::too_many_arguments)]
    fn requests(
        &self,
        py: Python<'_>,
        researcher_id: Option<String>,
        timeout: Option<f64>,
        compat: bool,
        min_replies: Option<i64>,
        grace: f64,
        deadline: Option<f64>,
        uploads_url: Option<String>,
    ) -> PyResult<Requests> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::new_err(
                "the federation is closed: its nodes are stopped",
            ));
        }
        let options = Options {
            researcher_id,
            timeout,
            compat,
            min_replies,
            grace,
            deadline,
            roster: None,
        };
        let uploads_url = uploads_url.unwrap_or_else(|| self.repository.uploads_url());
        let config = options.config(Some(uploads_url))?;
        let requests = match &self.transport {
            Transport::Mqtt { mqtt, .. } => {
                let mqtt = MqttConfig::clone(mqtt);
                py.detach(|| fedreq::Requests::connect(mqtt, config))
                    .map_err(raise)?
            }
            Transport::Memory(broker) => fedreq::Requests::in_memory(broker, config),
        };
        Ok(Requests::wrap(requests))
    }

    /// Stops node `node_id` (cleanly: it announces that it goes offline).
    fn stop_node(&self, py: Python<'_>, node_id: &str) -> PyResult<()> {
        let node = self.running().remove(node_id);
        match node {
            Some(node) => {
                py.detach(|| drop(node));
                Ok(())
            }
            None => Err(PyKeyError::new_err(format!("no running node `{node_id}`"))),
        }
    }

    /// Stops every node.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Relaxed);
        let nodes = std::mem::take(&mut *self.running());
        py.detach(|| drop(nodes));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        format!(
            "fedreq.Federation(nodes={}, broker={:?}, uploads_url={:?})",
            self.node_ids.len(),
            self.broker(),
            self.uploads_url()
        )
    }
}

impl Federation {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn start(
    transport: &str,
    broker: Option<&str>,
    node_ids: Vec<String>,
    configs: Vec<NodeConfig>,
    presence: bool,
) -> PyResult<Federation> {
    let failed = |e: std::io::Error| Error::new_err(format!("cannot start the federation: {e}"));
    let repository = RepositoryServer::start_local().map_err(failed)?;
    let (transport, nodes) = match (transport, broker) {
        ("mqtt", broker) => {
            let (mqtt, embedded) = match broker {
                Some(address) => (
                    MqttConfig::parse(address).map_err(|e| ConnectError::new_err(e.to_string()))?,
                    None,
                ),
                None => {
                    let embedded = EmbeddedBroker::start_local()
                        .map_err(|e| ConnectError::new_err(e.to_string()))?;
                    let mqtt = MqttConfig::new("127.0.0.1", embedded.address().port());
                    (mqtt, Some(embedded))
                }
            };
            let mqtt = MqttConfig { presence, ..mqtt };
            let runtime = Runtime::new().map_err(failed)?;
            let nodes =
                fedreq_mqtt::NodeDriver::start_many(&runtime, &mqtt, configs, http_fetcher())
                    .map_err(|e| ConnectError::new_err(e.to_string()))?;
            let nodes = nodes
                .into_iter()
                .map(|node| Box::new(node) as Node)
                .collect::<Vec<_>>();
            let transport = Transport::Mqtt {
                mqtt: Box::new(mqtt),
                _runtime: runtime,
                _broker: embedded,
            };
            (transport, nodes)
        }
        ("memory", None) => {
            let broker = fedreq_mem::Broker::new();
            let nodes = configs
                .into_iter()
                .map(|config| {
                    let node = match presence {
                        true => fedreq_mem::NodeDriver::start(&broker, vec![config], download),
                        false => {
                            fedreq_mem::NodeDriver::start_silent(&broker, vec![config], download)
                        }
                    };
                    node.map(|node| Box::new(node) as Node)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            (Transport::Memory(broker), nodes)
        }
        ("memory", Some(_)) => {
            return Err(PyValueError::new_err(
                "broker is for transport=\"mqtt\": the in-memory broker is in this process",
            ))
        }
        (other, _) => {
            return Err(PyValueError::new_err(format!(
                "transport must be \"mqtt\" or \"memory\", not {other:?}"
            )))
        }
    };
    let running = node_ids.iter().cloned().zip(nodes).collect();
    Ok(Federation {
        transport,
        repository,
        node_ids,
        running: Mutex::new(running),
        closed: AtomicBool::new(false),
    })
}
