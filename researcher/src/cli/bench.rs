//! `fedreq bench`: end-to-end figures, from the simulator to a real broker.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use fedreq::{Requests, RequestsConfig};
use fedreq_mem::{SimConfig, Simulation};
use fedreq_mqtt::{EmbeddedBroker, MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::{NodeConfig, Outcome, Policy, Request, Submission};
use serde_json::{json, Value};

use super::{fail, millis};

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Transports: sim, embedded, mosquitto (when installed)
    #[arg(long, value_delimiter = ',', default_value = "sim,embedded,mosquitto")]
    transports: Vec<String>,
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
}

/// How a request knows it is complete.
const MODES: [&str; 3] = ["known", "quiet", "compat"];
const COMMANDS: [&str; 3] = ["ping", "list", "search"];

struct Figure {
    transport: &'static str,
    nodes: usize,
    command: &'static str,
    mode: &'static str,
    times: Vec<Duration>,
    /// The fewest replies of any run; every node is expected to answer.
    replies: usize,
}

impl Figure {
    fn row(&self) -> Value {
        let (p50, p99) = p50_p99(&self.times);
        json!({
            "transport": self.transport, "nodes": self.nodes, "command": self.command, "mode": self.mode,
            "runs": self.times.len(), "p50_ms": p50, "p99_ms": p99,
            "replies": self.replies, "expected": self.nodes,
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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

fn policy(mode: &str, period: Duration, nodes: &[String]) -> Policy {
    match mode {
        "known" => Policy::quiet(Duration::from_secs(30)).with_roster(nodes.to_vec()),
        "quiet" => Policy::quiet(period),
        _ => Policy::fedbiomed(period),
    }
}

fn request(command: &str) -> Request {
    match command {
        "ping" => Request::ping(),
        "list" => Request::list(),
        _ => Request::search(vec!["fbm".into()]),
    }
}

pub fn run(args: BenchArgs, json_output: bool) -> Result<(), String> {
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
    for transport in &args.transports {
        match transport.as_str() {
            "sim" => sim(&args, period, &mut show)?,
            "embedded" => {
                let broker = EmbeddedBroker::start_local().map_err(fail)?;
                let mqtt = MqttConfig::new("127.0.0.1", broker.address().port());
                mqtt_bench("embedded", &mqtt, &args, period, &mut show, &mut baselines)?;
            }
            "mosquitto" => match Mosquitto::start()? {
                Some(mosquitto) => {
                    let mqtt = MqttConfig::new("127.0.0.1", mosquitto.port);
                    mqtt_bench("mosquitto", &mqtt, &args, period, &mut show, &mut baselines)?;
                }
                None => eprintln!("mosquitto is not installed: skipped"),
            },
            other => {
                return Err(format!(
                    "unknown transport `{other}`: use sim, embedded or mosquitto"
                ))
            }
        }
    }
    if json_output {
        println!("{}", json!({ "rows": rows, "bare_mqtt": baselines }));
    } else {
        for baseline in &baselines {
            eprintln!(
                "bare MQTT  {:>7} round trip (no fedreq) p50 {} ms  p99 {} ms  on {}",
                baseline["nodes"], baseline["p50_ms"], baseline["p99_ms"], baseline["transport"]
            );
        }
    }
    Ok(())
}

fn sim(args: &BenchArgs, period: Duration, show: &mut impl FnMut(Figure)) -> Result<(), String> {
    for &nodes in &args.sim_nodes {
        let mut sim = Simulation::new(SimConfig::new(nodes, 1));
        let ids = sim.node_ids().to_vec();
        for command in COMMANDS {
            for mode in MODES {
                let mut times = Vec::new();
                let mut replies = nodes;
                for _ in 0..args.runs.min(3) {
                    let submission = Submission::broadcast(request(command))
                        .with_policy(policy(mode, period, &ids));
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
                });
            }
        }
    }
    Ok(())
}

fn mqtt_bench(
    transport: &'static str,
    mqtt: &MqttConfig,
    args: &BenchArgs,
    period: Duration,
    show: &mut impl FnMut(Figure),
    baselines: &mut Vec<Value>,
) -> Result<(), String> {
    for &nodes in &args.mqtt_nodes {
        let ids: Vec<String> = (0..nodes).map(|i| format!("bench-{i}")).collect();
        let runtime = Runtime::new().map_err(fail)?;
        let configs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| NodeConfig::new(id.clone(), fedreq_mem::sim::simulated_datasets(i)))
            .collect();
        let drivers =
            NodeDriver::start_many(&runtime, mqtt, configs, fedreq::repository::http_fetcher())
                .map_err(fail)?;
        for mode in MODES {
            let config = RequestsConfig {
                policy: policy(mode, period, &ids),
                ..RequestsConfig::new(format!("bench-{mode}"))
            };
            let requests = Requests::connect(mqtt.clone(), config).map_err(fail)?;
            for command in COMMANDS {
                let runs = if mode == "known" {
                    args.runs
                } else {
                    args.runs.min(3)
                };
                let outcomes: Vec<Outcome> = (0..runs)
                    .map(|_| {
                        requests.request(
                            Submission::broadcast(request(command))
                                .with_policy(requests.config().policy.clone()),
                        )
                    })
                    .collect::<Result<_, _>>()
                    .map_err(fail)?;
                let replies = outcomes.iter().map(|o| o.replies.len()).min().unwrap_or(0);
                let times = outcomes.iter().map(|o| o.elapsed).collect();
                show(Figure {
                    transport,
                    nodes,
                    command,
                    mode,
                    times,
                    replies,
                });
            }
        }
        drop(drivers);
        let bare = fedreq_mqtt::bare::round_trips(mqtt, nodes, args.runs).map_err(fail)?;
        let (p50, p99) = p50_p99(&bare);
        baselines
            .push(json!({ "transport": transport, "nodes": nodes, "p50_ms": p50, "p99_ms": p99 }));
    }
    Ok(())
}

/// mosquitto on a free loopback port with TCP_NODELAY, stopped when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    config: std::path::PathBuf,
}

impl Mosquitto {
    fn start() -> Result<Option<Mosquitto>, String> {
        let Some(binary) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            return Ok(None);
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(fail)?
            .port();
        let config = std::env::temp_dir().join(format!("fedreq-bench-mosquitto-{port}.conf"));
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 100000\n");
        std::fs::write(&config, text).map_err(fail)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mosquitto: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("mosquitto did not listen on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(Mosquitto {
            child,
            port,
            config,
        }))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
