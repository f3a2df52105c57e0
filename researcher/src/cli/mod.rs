//! The `fedreq` program. Exit status: 0 on success, 1 on an error (one line on stderr naming
//! the cause), 2 on a usage error.

use std::fmt::Display;
use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fedreq::{Requests, RequestsConfig};
use fedreq_mqtt::{MqttConfig, Qos, Session, Tls};
use fedreq_protocol::Policy;
use indicatif::{ProgressBar, ProgressStyle};

/// `println!` for the program's output: a reader that went away ends the program quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out(format_args!($($arg)*))
    };
}

mod bench;
mod demo;
mod mosquitto;
mod researcher;
mod serve;
mod sim;
mod soak;
mod tools;
mod watch;

/// fedreq: ping the nodes of a Fed-BioMed v4.4 federation, list and search their datasets,
/// send training plans for approval, and collect the replies.
#[derive(Debug, Parser)]
#[command(name = "fedreq", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options of every command, accepted before or after the subcommand.
#[derive(Debug, Args)]
struct Global {
    /// MQTT broker, HOST:PORT or mqtt://HOST:PORT; the members of a cluster separated by
    /// commas [default: MQTT_BROKER:MQTT_BROKER_PORT, else localhost:1883]
    #[arg(long, global = true, value_parser = broker)]
    broker: Option<MqttConfig>,
    /// Our researcher id [default: RESEARCHER_ID, else a random one]
    #[arg(long, global = true, env = "RESEARCHER_ID")]
    researcher_id: Option<String>,
    /// Seconds of quiet after the last reply before a request completes (Fed-BioMed's TIMEOUT,
    /// fixed at 5 in v4.4)
    #[arg(long, global = true, env = "FEDREQ_TIMEOUT", default_value = "5", value_parser = positive)]
    timeout: Seconds,
    /// Upload URL of the file repository (Fed-BioMed's UPLOADS_URL, and its default)
    #[arg(long, global = true, env = "UPLOADS_URL", default_value = fedreq::requests::DEFAULT_UPLOADS_URL)]
    uploads_url: Option<String>,
    /// Print one JSON object on stdout
    #[arg(long, global = true)]
    json: bool,
    /// Fed-BioMed v4.4's round semantics: at least two timeouts per request
    #[arg(long, global = true)]
    compat: bool,
    /// Complete once this many nodes have answered, after --grace
    #[arg(long, global = true)]
    min_replies: Option<std::num::NonZeroUsize>,
    /// Seconds to wait for stragglers once --min-replies is reached
    #[arg(long, global = true, default_value = "0")]
    grace: Seconds,
    /// Complete at the latest this many seconds after submission
    #[arg(long, global = true, value_parser = positive)]
    deadline: Option<Seconds>,
    /// The nodes of the federation, NODE,NODE,...: a broadcast completes once they answered
    /// [default: the nodes online by presence, and those heard before on this broker]
    #[arg(long, global = true, env = "FEDREQ_ROSTER", value_delimiter = ',')]
    roster: Option<Vec<String>>,
    /// MQTT QoS: 0, 1 or 2
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// MQTT user name
    #[arg(long, global = true, env = "MQTT_USERNAME")]
    username: Option<String>,
    /// MQTT password
    #[arg(long, global = true, env = "MQTT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// PEM file of the certificate authority: connect to the broker with TLS
    #[arg(long, global = true)]
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The nodes that answer a ping
    Ping(researcher::Nodes),
    /// Each node's datasets
    List(researcher::ListArgs),
    /// The datasets carrying every one of these tags
    Search(researcher::SearchArgs),
    /// Upload a training plan and ask the nodes to register it for approval
    Approve(researcher::ApproveArgs),
    /// Send any request message and print the replies
    Send(researcher::SendArgs),
    /// Print node logs, and monitoring scalars for our --researcher-id, until interrupted
    Listen(researcher::ListenArgs),
    /// Print the nodes that announce their presence: who is online, since when
    Roster,
    /// Serve a live page of the federation on this machine: nodes, datasets, scalars, logs,
    /// requests
    Watch(watch::WatchArgs),
    /// Check that a training plan is valid Python
    Check(tools::CheckArgs),
    /// Decode `TOPIC PAYLOAD` lines (as `mosquitto_sub -v` prints them)
    Decode(tools::DecodeArgs),
    /// Start a broker, a repository and nodes in-process, and show every request
    Demo(demo::DemoArgs),
    /// Run nodes over MQTT until interrupted
    Node(serve::NodeArgs),
    /// Run the embedded MQTT broker until interrupted
    Broker(serve::ServeArgs),
    /// Run the embedded file repository (Fed-BioMed's upload endpoint) until interrupted
    Repository(serve::ServeArgs),
    /// Simulate a federation in memory, with seeded faults, on a virtual clock
    Sim(sim::SimArgs),
    /// Measure requests end to end: simulator, embedded broker, mosquitto
    Bench(bench::BenchArgs),
    /// A long run over mosquitto with node crashes and broker restarts (not for CI)
    Soak(soak::SoakArgs),
}

/// Whether `subcommand` reads the global `option`: the others are left out of its `--help`
/// (and still accepted anywhere, as options of every command).
fn reads(subcommand: &str, option: &str) -> bool {
    const CONNECT: &[&str] = &["broker", "qos", "username", "password", "ca_file"];
    const POLICY: &[&str] = &[
        "timeout",
        "compat",
        "min_replies",
        "grace",
        "deadline",
        "roster",
    ];
    let connect = CONNECT.contains(&option);
    let policy = POLICY.contains(&option);
    let researcher = option == "researcher_id";
    let json = option == "json";
    match subcommand {
        "ping" | "list" | "search" | "send" => connect || researcher || policy || json,
        "approve" => connect || researcher || policy || json || option == "uploads_url",
        "watch" => connect || researcher || policy,
        "listen" | "roster" => connect || researcher || json,
        "node" => connect,
        "demo" => policy,
        "sim" => option == "timeout" || json,
        "bench" => connect || json,
        "decode" | "soak" => json,
        _ => false,
    }
}

/// The command line's definition, each subcommand's help listing only the options it reads.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let globals: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(&name, |mut sub| {
            // A subcommand's own copy of a global option takes its place there: hidden.
            for arg in globals
                .iter()
                .filter(|a| !reads(&name, a.get_id().as_str()))
            {
                sub = sub.arg(arg.clone().hide(true));
            }
            sub
        });
    }
    command
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), String> {
    let global = cli.global;
    match cli.command {
        Command::Ping(args) => researcher::ping(&global, args),
        Command::List(args) => researcher::list(&global, args),
        Command::Search(args) => researcher::search(&global, args),
        Command::Approve(args) => researcher::approve(&global, args),
        Command::Send(args) => researcher::send(&global, args),
        Command::Listen(args) => researcher::listen(&global, args),
        Command::Roster => researcher::roster(&global),
        Command::Watch(args) => watch::watch(&global, args),
        Command::Check(args) => tools::check(args),
        Command::Decode(args) => tools::decode(&global, args),
        Command::Demo(args) => demo::run(&global, args),
        Command::Node(args) => serve::node(&global, args),
        Command::Broker(args) => serve::broker(args),
        Command::Repository(args) => serve::repository(args),
        Command::Sim(args) => sim::run(args, global.json, global.timeout.0),
        Command::Soak(args) => soak::run(args, global.json),
        Command::Bench(args) => {
            let broker = global.broker.as_ref().map(|_| global.mqtt()).transpose()?;
            bench::run(args, broker, global.json)
        }
    }
}

/// The error's message, for `?` on any error type.
fn fail(error: impl Display) -> String {
    error.to_string()
}

/// A non-negative number of seconds, decimals allowed.
#[derive(Clone, Copy, Debug)]
struct Seconds(Duration);

impl FromStr for Seconds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Seconds)
            .ok_or_else(|| format!("`{text}` is not a number of seconds"))
    }
}

/// A number of seconds that must be more than zero.
fn positive(text: &str) -> Result<Seconds, String> {
    match text.parse::<Seconds>()? {
        Seconds(duration) if duration.is_zero() => {
            Err(format!("`{text}` is not a positive number of seconds"))
        }
        seconds => Ok(seconds),
    }
}

/// A broker's address, or its members'.
fn broker(text: &str) -> Result<MqttConfig, String> {
    MqttConfig::parse(text).map_err(|e| e.to_string())
}

impl Global {
    /// The collection policy the options describe.
    fn policy(&self) -> Policy {
        fedreq::requests::Completion {
            timeout: self.timeout.0,
            compat: self.compat,
            min_replies: self.min_replies.map(std::num::NonZeroUsize::get),
            grace: self.grace.0,
            deadline: self.deadline.map(|d| d.0),
            roster: self
                .roster
                .as_ref()
                .map(|nodes| nodes.iter().filter(|n| !n.is_empty()).cloned().collect())
                .filter(|nodes: &Vec<String>| !nodes.is_empty()),
        }
        .policy()
    }

    /// The broker: `--broker`, else Fed-BioMed's `MQTT_BROKER` and `MQTT_BROKER_PORT`.
    fn mqtt(&self) -> Result<MqttConfig, String> {
        let mut mqtt = match &self.broker {
            Some(config) => config.clone(),
            None => fedreq::requests::broker_from_env().map_err(fail)?,
        };
        mqtt.qos = [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce][usize::from(self.qos)];
        mqtt.connect_timeout = self
            .timeout
            .0
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        if let Some(user) = &self.username {
            mqtt.credentials = Some((user.clone(), self.password.clone().unwrap_or_default()));
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            mqtt.tls = Some(Tls::new(&pem, None).map_err(fail)?);
        }
        Ok(mqtt)
    }

    fn requests_config(&self) -> RequestsConfig {
        let researcher_id = self
            .researcher_id
            .clone()
            .unwrap_or_else(fedreq::requests::random_researcher_id);
        RequestsConfig {
            policy: self.policy(),
            uploads_url: self.uploads_url.clone(),
            ..RequestsConfig::new(researcher_id)
        }
    }

    /// Connects to the broker with a clean session, printing node logs on stderr.
    fn connect(&self) -> Result<Requests, String> {
        if self.timeout.0.is_zero() {
            return Err("--timeout must be more than 0 seconds".into());
        }
        // One command, one short session: nothing is left on the broker after it.
        let mqtt = MqttConfig {
            session: Session::Clean,
            ..self.mqtt()?
        };
        let requests = Requests::connect(mqtt, self.requests_config()).map_err(fail)?;
        requests.set_log_handler(|log| eprintln!("{:<7} {}: {}", log.level, log.node_id, log.text));
        Ok(requests)
    }
}

/// A spinner on stderr while waiting, only when stderr is a terminal.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn start(message: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner().with_message(message.to_owned());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(Some(bar))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`), in MiB to
/// one decimal; 0 where there is no such file.
fn memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// Milliseconds, for `elapsed_ms`.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Writes one line of output. A reader that went away (`fedreq list | head -1`) ends the
/// program quietly, with success: nothing more would be read. Another failure to write ends
/// it with one line on stderr.
pub(crate) fn out(line: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = writeln!(
                std::io::stderr(),
                "fedreq: cannot write the output: {error}"
            );
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}
