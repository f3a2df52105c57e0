//! `fedreq bench`: end-to-end figures, from the simulator to a real broker.

use std::time::{Duration, Instant};

use clap::Args;
use fedreq::{KnownNodes, Remember, Requests, RequestsConfig};
use fedreq_mem::{SimConfig, Simulation};
use fedreq_mqtt::{EmbeddedBroker, MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{NodeConfig, Outcome, Policy, Request, Submission};
use serde_json::{json, Value};

use super::mosquitto::Mosquitto;
use super::{fail, millis};

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Transports without --broker: sim, embedded, mosquitto (its default configuration),
    /// mosquitto-nodelay (`set_tcp_nodelay true`); mosquitto ones when installed. With
    /// --broker, only that broker is measured (nodes and researcher connect there; on several
    /// members of a cluster, the researcher on the first and the nodes on the others)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sim,embedded,mosquitto,mosquitto-nodelay"
    )]
    transports: Vec<String>,
    /// How requests complete: presence (a broadcast expecting the nodes online), targeted
    /// (every node named), known (a broadcast given the roster), partial (a search half the
    /// nodes match, by presence), quiet, compat; over MQTT, to nodes that announce nothing,
    /// each request from a new researcher: first-contact (knowing nobody), remembered
    /// (knowing the nodes from an earlier process's file)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "presence,targeted,known,partial,quiet,compat,first-contact,remembered"
    )]
    modes: Vec<String>,
    /// Connect straight to the broker, not through the relay that acknowledges at once: shows
    /// the 40 ms stall of a broker without TCP_NODELAY
    #[arg(long)]
    direct: bool,
    /// Node counts for the simulator
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sim_nodes: Vec<usize>,
    /// Node counts over MQTT (all nodes in this process)
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    mqtt_nodes: Vec<usize>,
    /// Runs per figure
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Quiet period and round length of the quiet and compat modes, in seconds
    #[arg(long, default_value_t = 0.1)]
    period: f64,
    /// Seconds of idleness before each run, bare round trips included: a request to a
    /// federation that sat idle (as each `fedreq` command's does) wakes sleeping threads
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pause: f64,
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value >= 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("`{text}` is not a non-negative number of seconds")),
    }
}

const COMMANDS: [&str; 3] = ["ping", "list", "search"];

const MODES: [&str; 8] = [
    "presence",
    "targeted",
    "known",
    "partial",
    "quiet",
    "compat",
    "first-contact",
    "remembered",
];

/// The commands a mode measures: a partial match is a search's.
fn commands(mode: &str) -> &'static [&'static str] {
    match mode {
        "partial" => &["search"],
        _ => &COMMANDS,
    }
}

/// Whether a mode's nodes announce nothing, and each request comes from a new researcher.
fn silent(mode: &str) -> bool {
    matches!(mode, "first-contact" | "remembered")
}

struct Figure<'a> {
    transport: &'a str,
    nodes: usize,
    command: &'static str,
    mode: &'a str,
    times: Vec<Duration>,
    /// The fewest replies of any run.
    replies: usize,
    /// How many replies a run should get.
    expected: usize,
}

impl Figure<'_> {
    fn row(&self) -> Value {
        let (p50, p99) = p50_p99(&self.times);
        json!({
            "transport": self.transport, "nodes": self.nodes, "command": self.command, "mode": self.mode,
            "runs": self.times.len(), "p50_ms": p50, "p99_ms": p99,
            "replies": self.replies, "expected": self.expected,
            "replies_per_s": if p50 > 0.0 { (self.replies as f64 / p50 * 1000.0).round() } else { 0.0 },
            "peak_rss_mb": peak_rss_mb(),
        })
    }
}

/// The median and 99th percentile, in milliseconds (nearest rank).
fn p50_p99(times: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = times.iter().map(|t| millis(*t)).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| match ms.len() {
        0 => 0.0,
        n => ms[((n as f64 * q).ceil() as usize).clamp(1, n) - 1],
    };
    (at(0.5), at(0.99))
}

/// The process's peak resident memory so far (Linux), in MiB.
fn peak_rss_mb() -> f64 {
    super::memory_mb("VmHWM")
}

/// The submission of `command` in `mode` to `nodes`.
fn submission(command: &str, mode: &str, period: Duration, nodes: &[String]) -> Submission {
    let broadcast = Submission::broadcast(request(command));
    match mode {
        "presence" | "first-contact" | "remembered" => {
            broadcast.with_policy(Policy::quiet(Duration::from_secs(30)))
        }
        "partial" => Submission::broadcast(Request::search(vec!["even".into()]))
            .with_policy(Policy::quiet(Duration::from_secs(30))),
        "targeted" => Submission::to_nodes(request(command), nodes.to_vec())
            .with_policy(Policy::quiet(Duration::from_secs(30))),
        "known" => broadcast
            .with_policy(Policy::quiet(Duration::from_secs(30)).with_roster(nodes.to_vec())),
        "quiet" => broadcast.with_policy(Policy {
            expect_online: false,
            ..Policy::quiet(period)
        }),
        _ => broadcast.with_policy(Policy::fedbiomed(period)),
    }
}

/// Whether a mode waits a whole period: fewer runs of those.
fn waits(mode: &str) -> bool {
    matches!(mode, "quiet" | "compat")
}

fn request(command: &str) -> Request {
    match command {
        "ping" => Request::ping(),
        "list" => Request::list(),
        _ => Request::search(vec!["fbm".into()]),
    }
}

pub fn run(args: BenchArgs, broker: Option<MqttConfig>, json_output: bool) -> Result<(), String> {
    for mode in &args.modes {
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("unknown mode `{mode}`: use {}", MODES.join(", ")));
        }
    }
    let period = Duration::try_from_secs_f64(args.period).map_err(fail)?;
    let mut rows = Vec::new();
    let mut show = |figure: Figure| {
        let row = figure.row();
        if !json_output {
            eprintln!(
                "{:<10} {:>7} {:<7} {:<7} p50 {:>10.3} ms  p99 {:>10.3} ms  {:>7}/{:<7} replies  {:>10} replies/s  peak {} MiB",
                row["transport"].as_str().unwrap_or_default(), figure.nodes, figure.command, figure.mode,
                row["p50_ms"].as_f64().unwrap_or_default(), row["p99_ms"].as_f64().unwrap_or_default(),
                figure.replies, figure.nodes, row["replies_per_s"], row["peak_rss_mb"]
            );
        }
        rows.push(row);
    };
    let mut baselines = Vec::new();
    let local_brokers = broker.is_none();
    if let Some(mqtt) = broker {
        let name = mqtt.address();
        mqtt_bench(&name, mqtt, &args, period, &mut show, &mut baselines)?;
    }
    for transport in args.transports.iter().filter(|_| local_brokers) {
        let local = |port| MqttConfig::new("127.0.0.1", port);
        match transport.as_str() {
            "sim" => sim(&args, period, &mut show)?,
            "embedded" => {
                let broker = EmbeddedBroker::start_local().map_err(fail)?;
                let mqtt = local(broker.address().port());
                mqtt_bench(transport, mqtt, &args, period, &mut show, &mut baselines)?;
            }
            "mosquitto" | "mosquitto-nodelay" => {
                let nodelay = if transport == "mosquitto-nodelay" {
                    "set_tcp_nodelay true"
                } else {
                    ""
                };
                match Mosquitto::start(nodelay)? {
                    Some(mosquitto) => {
                        let mqtt = local(mosquitto.port);
                        mqtt_bench(transport, mqtt, &args, period, &mut show, &mut baselines)?;
                    }
                    None => eprintln!("mosquitto is not installed: {transport} skipped"),
                }
            }
            other => {
                return Err(format!(
                    "unknown transport `{other}`: use sim, embedded, mosquitto or mosquitto-nodelay"
                ))
            }
        }
    }
    if json_output {
        outln!("{}", json!({ "rows": rows, "bare_mqtt": baselines }));
    } else {
        for baseline in &baselines {
            eprintln!(
                "bare MQTT  {:>7} round trip (no fedreq) p50 {} ms  p99 {} ms  first {} ms  on {}",
                baseline["nodes"],
                baseline["p50_ms"],
                baseline["p99_ms"],
                baseline["first_ms"],
                baseline["transport"]
            );
        }
    }
    Ok(())
}

fn sim(args: &BenchArgs, period: Duration, show: &mut impl FnMut(Figure)) -> Result<(), String> {
    for &nodes in &args.sim_nodes {
        let mut sim = Simulation::new(SimConfig::new(nodes, 1));
        let ids = sim.node_ids().to_vec();
        for mode in args.modes.iter().filter(|m| !silent(m)) {
            for &command in commands(mode) {
                let mut times = Vec::new();
                let mut replies = nodes;
                for _ in 0..args.runs.min(3) {
                    let submission = submission(command, mode, period, &ids);
                    // Wall time: the simulator's own clock is virtual.
                    let started = Instant::now();
                    let outcome = sim.request(submission).map_err(fail)?;
                    times.push(started.elapsed());
                    replies = replies.min(outcome.replies.len());
                }
                show(Figure {
                    transport: "sim",
                    nodes,
                    command,
                    mode,
                    times,
                    replies,
                    expected: if mode == "partial" { nodes / 2 } else { nodes },
                });
            }
        }
    }
    Ok(())
}

/// The bench's researcher, keeping the nodes it hears where `remember` says.
fn bench_config(remember: Remember) -> RequestsConfig {
    RequestsConfig {
        remember,
        ..RequestsConfig::new("bench")
    }
}

/// `runs` requests, each from a new researcher: one that knows nobody (first contact), or
/// one that knows the nodes an earlier researcher kept (remembered), as a new process would.
fn fresh_researchers(
    mqtt: &MqttConfig,
    mode: &str,
    runs: usize,
    pause: Duration,
    submission: impl Fn() -> Submission,
) -> Result<Vec<Outcome>, String> {
    let file = std::env::temp_dir().join(format!("fedreq-bench-known-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let remember = || match mode {
        "remembered" => Remember::File(KnownNodes::at(&file)),
        _ => Remember::Nothing,
    };
    if mode == "remembered" {
        // An earlier process met them, and kept them.
        let earlier = Requests::connect(mqtt.clone(), bench_config(remember())).map_err(fail)?;
        earlier.request(submission()).map_err(fail)?;
    }
    let outcomes = (0..runs)
        .map(|_| {
            let researcher = Requests::connect(mqtt.clone(), bench_config(remember()))?;
            std::thread::sleep(pause);
            researcher.request(submission())
        })
        .collect::<Result<_, _>>()
        .map_err(fail);
    let _ = std::fs::remove_file(&file);
    outcomes
}

fn mqtt_bench(
    transport: &str,
    mut mqtt: MqttConfig,
    args: &BenchArgs,
    period: Duration,
    show: &mut impl FnMut(Figure),
    baselines: &mut Vec<Value>,
) -> Result<(), String> {
    mqtt.quick_ack = !args.direct;
    let mqtt = &mqtt;
    let pause = Duration::from_secs_f64(args.pause);
    for &nodes in &args.mqtt_nodes {
        let ids: Vec<String> = (0..nodes).map(|i| format!("bench-{i}")).collect();
        // The floor first, on a broker the last figures left alone; worth having, not worth
        // losing the figures for.
        match fedreq_mqtt::bare::round_trips(mqtt, nodes, args.runs, pause) {
            Ok(bare) => {
                let (p50, p99) = p50_p99(&bare);
                // The first round trip of a new connection: the floor of a new process's request.
                let first = bare.first().map(|t| millis(*t));
                baselines.push(json!({
                    "transport": transport, "nodes": nodes,
                    "p50_ms": p50, "p99_ms": p99, "first_ms": first,
                }));
            }
            Err(error) => eprintln!("bare MQTT {nodes} on {transport}: not measured: {error}"),
        }
        for announce in [true, false] {
            let modes: Vec<&String> = args
                .modes
                .iter()
                .filter(|m| silent(m) != announce)
                .collect();
            if modes.is_empty() {
                continue;
            }
            let runtime = Runtime::new().map_err(fail)?;
            let nodes_mqtt = MqttConfig {
                presence: announce,
                ..mqtt.clone()
            };
            // On a cluster, the nodes on the members the researcher is not on.
            let configs = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let datasets = fedreq_mem::sim::simulated_datasets(i);
                    (
                        nodes_mqtt.elsewhere(i),
                        NodeConfig::new(id.clone(), datasets),
                    )
                })
                .collect();
            let drivers =
                NodeDriver::start_each(&runtime, configs, fedreq::repository::http_fetcher())
                    .map_err(fail)?;
            let warm =
                Requests::connect(mqtt.clone(), bench_config(Remember::Nothing)).map_err(fail)?;
            for mode in modes {
                for &command in commands(mode) {
                    let runs = if waits(mode) {
                        args.runs.min(3)
                    } else {
                        args.runs
                    };
                    let submission = || submission(command, mode, period, &ids);
                    let outcomes: Vec<Outcome> = match mode.as_str() {
                        "first-contact" | "remembered" => {
                            fresh_researchers(mqtt, mode, runs, pause, submission)?
                        }
                        _ => (0..runs)
                            .map(|_| {
                                std::thread::sleep(pause);
                                warm.request(submission())
                            })
                            .collect::<Result<_, _>>()
                            .map_err(fail)?,
                    };
                    let replies = outcomes.iter().map(|o| o.replies.len()).min().unwrap_or(0);
                    let times = outcomes.iter().map(|o| o.elapsed).collect();
                    show(Figure {
                        transport,
                        nodes,
                        command: if mode == "partial" {
                            "search/2"
                        } else {
                            command
                        },
                        mode,
                        times,
                        replies,
                        expected: if mode == "partial" { nodes / 2 } else { nodes },
                    });
                }
            }
            drop(warm);
            drop(drivers);
        }
    }
    Ok(())
}
