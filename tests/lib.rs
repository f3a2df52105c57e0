//! Helpers shared by the cross-crate integration tests in `tests/`.

#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedreq_protocol::message::Object;
use fedreq_protocol::node::FetchResult;
use serde_json::json;

/// A mosquitto broker started for one test on a free loopback port, with its own config file;
/// stopped (by its PID) when dropped.
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
}

impl Mosquitto {
    /// Starts one, or returns `None` when mosquitto is not installed. With
    /// `FEDREQ_REQUIRE_MOSQUITTO` set (as CI sets it), a missing mosquitto is a failure.
    pub fn start() -> Option<Mosquitto> {
        Self::start_with("")
    }

    /// Starts one with extra lines in its listener's configuration (anonymous clients are
    /// allowed unless they say otherwise).
    pub fn start_with(extra_config: &str) -> Option<Mosquitto> {
        Self::start_configured("persistence false", extra_config)
    }

    /// Starts one that keeps sessions, queued messages and retained ones across its restarts
    /// (`persistence true`, in a folder of its own), written out when it stops.
    pub fn start_persistent(extra_config: &str) -> Option<Mosquitto> {
        let folder = std::env::temp_dir().join(format!(
            "fedreq-mosquitto-db-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&folder).expect("create the persistence folder");
        // Started as root, mosquitto runs as the user `mosquitto`, which must write there.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777))
            .expect("open the persistence folder to mosquitto's user");
        let persistence = format!(
            "persistence true\npersistence_location {}/",
            folder.display()
        );
        Self::start_configured(&persistence, extra_config)
    }

    fn start_configured(persistence: &str, extra_config: &str) -> Option<Mosquitto> {
        if !mosquitto_installed() {
            assert!(
                std::env::var_os("FEDREQ_REQUIRE_MOSQUITTO").is_none(),
                "FEDREQ_REQUIRE_MOSQUITTO is set but mosquitto is not installed"
            );
            eprintln!("mosquitto is not installed: skipping the mosquitto part of this test");
            return None;
        }
        let port = free_port();
        forget_known(port);
        let config = std::env::temp_dir().join(format!(
            "fedreq-mosquitto-{}-{port}.conf",
            std::process::id()
        ));
        let anonymous = if extra_config.contains("allow_anonymous") {
            ""
        } else {
            "allow_anonymous true\n"
        };
        let text = format!("{persistence}\nlistener {port} 127.0.0.1\n{anonymous}{extra_config}\n");
        std::fs::write(&config, text).expect("write mosquitto config");
        let mut broker = Mosquitto {
            child: None,
            port,
            config,
        };
        broker.restart();
        Some(broker)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL, by PID): clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it as a service manager does (SIGTERM, by PID): it closes its connections and
    /// writes out what it persists.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again, on the same port, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_for_port(self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn mosquitto_path() -> PathBuf {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

fn mosquitto_installed() -> bool {
    Command::new(mosquitto_path())
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether mosquitto's command-line tools (`mosquitto_pub`, `mosquitto_passwd`) can run; with
/// `FEDREQ_REQUIRE_MOSQUITTO` set, their absence is a failure.
pub fn mosquitto_tools() -> bool {
    let there = ["mosquitto_pub", "mosquitto_passwd"].iter().all(|tool| {
        Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    assert!(
        there || std::env::var_os("FEDREQ_REQUIRE_MOSQUITTO").is_none(),
        "FEDREQ_REQUIRE_MOSQUITTO is set but mosquitto_pub or mosquitto_passwd is missing"
    );
    there
}

/// A TCP proxy on a loopback port to `target`, which can cut every connection through it at
/// once: a broker or network dropping a client.
pub struct Cutter {
    port: u16,
    live: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Cutter {
    /// Starts it; it runs until the test ends.
    pub fn start(target: u16) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let connections = Arc::clone(&live);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let mut held = connections.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Cutter { port, live }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts every connection through it; new ones are accepted.
    pub fn cut(&self) {
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Nodes `ids` on `mqtt`, each holding `datasets(count, padding)`, once all are connected.
pub fn start_nodes(
    runtime: &fedreq_mqtt::Runtime,
    mqtt: &fedreq_mqtt::MqttConfig,
    ids: &[String],
    (count, padding): (usize, usize),
) -> Vec<fedreq_mqtt::NodeDriver> {
    let configs = ids
        .iter()
        .map(|id| fedreq_protocol::NodeConfig::new(id.clone(), datasets(count, padding)))
        .collect();
    fedreq_mqtt::NodeDriver::start_many(runtime, mqtt, configs, plan_fetcher()).unwrap()
}

/// Waits up to 10 s for the nodes online in `researcher`'s roster to be `expected` (sorted):
/// a node's status may still be on its way to the broker when it starts.
pub fn wait_for_online(researcher: &fedreq_driver::ResearcherHandle, expected: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let roster = researcher.roster().recv().unwrap();
        let online: Vec<String> = roster
            .into_iter()
            .filter(|(_, m)| m.online())
            .map(|(n, _)| n)
            .collect();
        if online == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "online {online:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mosquitto_pub` at QoS 1 to `topic` on the loopback broker at `port`; add `-m` or `-f`.
pub fn mosquitto_pub(port: u16, topic: &str) -> Command {
    let mut command = Command::new("mosquitto_pub");
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ]);
    command
}

/// A new broker is a new federation: what an earlier test on the same port kept of its nodes
/// (`fedreq::known`, in `FEDREQ_STATE_DIR`) does not count for it.
pub fn forget_known(port: u16) {
    if let Some(dir) = std::env::var_os("FEDREQ_STATE_DIR") {
        let file = std::path::Path::new(&dir).join(format!("known-127.0.0.1-{port}.json"));
        let _ = std::fs::remove_file(file);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 10 s for `port` to accept TCP connections.
pub fn wait_for_port(port: u16) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `count` datasets tagged `fbm`, `ds<i>` and `even`/`odd`, each with `padding` bytes of description.
pub fn datasets(count: usize, padding: usize) -> Arc<[Object]> {
    (0..count)
        .map(|i| {
            let parity = if i % 2 == 0 { "even" } else { "odd" };
            let value = json!({
                "name": format!("ds{i}"), "data_type": "csv", "tags": ["fbm", format!("ds{i}"), parity],
                "description": "x".repeat(padding), "shape": [10 + i, 3],
                "dataset_id": format!("dataset_{i}"), "dtypes": ["int64", "float64", "int64"],
                "path": format!("/data/ds{i}.csv"), "dataset_parameters": null,
            });
            match value {
                serde_json::Value::Object(o) => o,
                _ => unreachable!(),
            }
        })
        .collect()
}

/// A fetcher serving a plan at every URL ending in `.py`, 404 elsewhere.
pub fn plan_fetcher() -> Arc<dyn fedreq_mqtt::Fetcher> {
    Arc::new(|url: String| async move {
        if url.ends_with(".py") {
            FetchResult::Body(format!("# plan at {url}\nclass Plan: pass\n").into_bytes())
        } else {
            FetchResult::Status(404)
        }
    })
}

/// A fresh three-member RabbitMQ cluster (Debian's `rabbitmq-server` with its MQTT plugin) on
/// loopback ports, with an epmd of its own; stopped (by PID) when dropped. Starting one takes
/// about 20 s on two cores: start it once per test binary.
pub struct RabbitCluster {
    base: PathBuf,
    epmd_port: u16,
    members: Vec<RabbitMember>,
    /// Each member's `rabbitmq-server`, reaped when it is killed.
    launched: std::sync::Mutex<Vec<Option<Child>>>,
}

struct RabbitMember {
    name: String,
    dir: PathBuf,
    node_port: u16,
    dist_port: u16,
    mqtt_port: u16,
}

const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl RabbitCluster {
    /// Starts one, or returns `None` when RabbitMQ is not installed. With
    /// `FEDREQ_REQUIRE_RABBITMQ` set (as CI sets it), a missing RabbitMQ is a failure.
    pub fn start() -> Option<RabbitCluster> {
        let installed = std::path::Path::new(RABBITMQ_BIN)
            .join("rabbitmq-server")
            .exists();
        if !installed {
            assert!(
                std::env::var_os("FEDREQ_REQUIRE_RABBITMQ").is_none(),
                "FEDREQ_REQUIRE_RABBITMQ is set but rabbitmq-server is not installed"
            );
            eprintln!("rabbitmq-server is not installed: skipping the cluster test");
            return None;
        }
        let base = std::env::temp_dir().join(format!("fedreq-rabbitmq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("home")).expect("create the cluster's folder");
        let cookie = base.join("home/.erlang.cookie");
        std::fs::write(&cookie, format!("fedreq{}", free_port())).expect("write the cookie");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::write(base.join("plugins"), "[rabbitmq_mqtt].").unwrap();
        let members = (1..=3)
            .map(|i| {
                let dir = base.join(format!("rabbit{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                let member = RabbitMember {
                    name: format!("rabbit{i}@localhost"),
                    dir,
                    node_port: free_port(),
                    dist_port: free_port(),
                    mqtt_port: free_port(),
                };
                let config = format!(
                    "listeners.tcp.default = 127.0.0.1:{}\nmqtt.listeners.tcp.default = 127.0.0.1:{}\n\
                     mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n\
                     loopback_users = none\n",
                    member.node_port, member.mqtt_port
                );
                std::fs::write(member.dir.join("rabbitmq.conf"), config).unwrap();
                member
            })
            .collect();
        let cluster = RabbitCluster {
            base,
            epmd_port: free_port(),
            members,
            launched: std::sync::Mutex::new((0..3).map(|_| None).collect()),
        };
        for i in 0..3 {
            cluster.launch(i);
        }
        for i in 0..3 {
            cluster.wait(i);
        }
        for i in 1..3 {
            let first = cluster.members[0].name.clone();
            for step in [
                vec!["stop_app"],
                vec!["join_cluster", &first],
                vec!["start_app"],
            ] {
                cluster.ctl(i, &step);
            }
        }
        Some(cluster)
    }

    /// Member `i`'s MQTT address.
    pub fn member(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].mqtt_port)
    }

    /// Every member's MQTT address, member `first` first and the others in turn after it: what
    /// a client given this cluster connects to.
    pub fn addresses(&self, first: usize) -> String {
        let order = (0..3).map(|k| self.member((first + k) % 3));
        order.collect::<Vec<_>>().join(",")
    }

    /// Kills member `i` (SIGKILL, by PID): its clients see their connections drop, and no will
    /// of theirs is published.
    pub fn kill(&self, i: usize) {
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let dead = Instant::now() + Duration::from_secs(10);
            while Instant::now() < dead && std::path::Path::new(&format!("/proc/{pid}")).exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(self.members[i].dir.join("pid"));
        if let Some(mut launched) = self.launched.lock().unwrap()[i].take() {
            let _ = launched.kill();
            let _ = launched.wait();
        }
        let port = self.members[i].mqtt_port;
        let down = TcpStream::connect(("127.0.0.1", port)).is_err();
        assert!(
            down,
            "member {i} still takes MQTT connections on port {port}"
        );
    }

    /// Starts member `i` again on its data, and waits until it runs.
    pub fn restart(&self, i: usize) {
        self.launch(i);
        self.wait(i);
    }

    fn pid(&self, i: usize) -> Option<u32> {
        let text = std::fs::read_to_string(self.members[i].dir.join("pid")).ok()?;
        text.trim().parse().ok()
    }

    fn command(&self, program: &str, i: usize) -> Command {
        let member = &self.members[i];
        let mut command = Command::new(format!("{RABBITMQ_BIN}/{program}"));
        // An Erlang crash dump lands in the working folder: the cluster's, not the checkout.
        command
            .current_dir(&self.base)
            .env("HOME", self.base.join("home"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_NODENAME", &member.name)
            .env("RABBITMQ_NODE_PORT", member.node_port.to_string())
            .env("RABBITMQ_DIST_PORT", member.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", member.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", member.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", member.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_PID_FILE", member.dir.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.base.join("plugins"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn launch(&self, i: usize) {
        let launched = self
            .command("rabbitmq-server", i)
            .spawn()
            .expect("start rabbitmq-server");
        self.launched.lock().unwrap()[i] = Some(launched);
    }

    fn wait(&self, i: usize) {
        let pid_file = self.members[i].dir.join("pid");
        let pid_file = pid_file.to_string_lossy().into_owned();
        self.ctl(i, &["wait", &pid_file, "--timeout", "180"]);
        wait_for_port(self.members[i].mqtt_port);
    }

    fn ctl(&self, i: usize, args: &[&str]) {
        let status = self
            .command("rabbitmqctl", i)
            .args(["-n", &self.members[i].name])
            .args(args)
            .status()
            .expect("run rabbitmqctl");
        assert!(
            status.success(),
            "rabbitmqctl {args:?} on member {i} failed"
        );
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
