//! Long-running commands: nodes and the embedded broker.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use clap::Args;
use fedreq_mqtt::{EmbeddedBroker, NodeDriver, Runtime};
use fedreq_protocol::node::datasets_from_json;
use fedreq_protocol::NodeConfig;

use super::{fail, Global};

/// Options of `node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's id; with --count, the prefix of ID-1..ID-N
    #[arg(long)]
    id: String,
    /// A JSON list of datasets (name, data_type, tags, description, shape, dataset_id, ...)
    #[arg(long)]
    datasets: std::path::PathBuf,
    /// Run this many nodes, ID-1..ID-N, sharing the datasets
    #[arg(long)]
    count: Option<std::num::NonZeroUsize>,
    /// Answer `train` with a simulated round and a monitoring scalar
    #[arg(long)]
    simulate_training: bool,
    /// Announce nothing (no status, no will), as a Fed-BioMed v4.4 node
    #[arg(long)]
    no_presence: bool,
}

/// Options of `broker` and `repository`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP port (the broker's default 1883, the repository's 8844)
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (0.0.0.0 for every interface)
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
}

pub fn node(global: &Global, args: NodeArgs) -> Result<(), String> {
    let bytes = std::fs::read(&args.datasets)
        .map_err(|e| format!("cannot read {}: {e}", args.datasets.display()))?;
    let datasets =
        datasets_from_json(&bytes).map_err(|e| format!("{}: {e}", args.datasets.display()))?;
    let ids: Vec<String> = match args.count {
        None => vec![args.id.clone()],
        Some(n) => (1..=n.get()).map(|i| format!("{}-{i}", args.id)).collect(),
    };
    let configs: Vec<NodeConfig> = ids
        .iter()
        .map(|id| {
            fedreq_protocol::topic::validate_node_id(id).map_err(fail)?;
            let mut config = NodeConfig::new(id.clone(), Arc::clone(&datasets));
            config.simulate_training = args.simulate_training;
            config.plan_check = Some(fedreq::plan::node_plan_check);
            Ok(config)
        })
        .collect::<Result<_, String>>()?;
    let mqtt = fedreq_mqtt::MqttConfig {
        presence: !args.no_presence,
        ..global.mqtt()?
    };
    let runtime = Runtime::new().map_err(fail)?;
    let nodes =
        NodeDriver::start_many(&runtime, &mqtt, configs, fedreq::repository::http_fetcher())
            .map_err(fail)?;
    // Ctrl-C or SIGTERM is a clean stop: each node says `stopped` and ends its session.
    let (stop, stopped) = flume::bounded(1);
    ctrlc::set_handler(move || {
        let _ = stop.try_send(());
    })
    .map_err(fail)?;
    eprintln!(
        "{} node(s) connected to {}; Ctrl-C to stop",
        ids.len(),
        mqtt.address()
    );
    let _ = stopped.recv();
    drop(nodes);
    Ok(())
}

pub fn broker(args: ServeArgs) -> Result<(), String> {
    let broker = EmbeddedBroker::start(SocketAddr::new(args.listen, args.port.unwrap_or(1883)))
        .map_err(fail)?;
    eprintln!(
        "MQTT broker listening on {}; Ctrl-C to stop",
        broker.address()
    );
    loop {
        std::thread::park();
    }
}

pub fn repository(args: ServeArgs) -> Result<(), String> {
    let server = fedreq::repository::RepositoryServer::start(SocketAddr::new(
        args.listen,
        args.port.unwrap_or(8844),
    ))
    .map_err(fail)?;
    eprintln!(
        "file repository on {}; UPLOADS_URL={}; Ctrl-C to stop",
        server.address(),
        server.uploads_url()
    );
    loop {
        std::thread::park();
    }
}
