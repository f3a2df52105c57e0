//! Who may speak: mosquitto with a password file, an ACL file and a TLS certificate made here.
//! A node account may publish only to `general/researcher`, `general/logger` and
//! `general/monitoring` and read only `general/nodes` and `general/<its id>`; the researcher
//! account the reverse. The files are those of docs/deployment.md.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fedreq_mqtt::{MqttConfig, NodeDriver, Runtime, Tls};
use fedreq_protocol::{
    Event, NodeConfig, Policy, Request, ResearcherConfig, Submission, Unmatched,
};
use fedreq_tests::{datasets, plan_fetcher, Mosquitto};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

const NODES: [&str; 2] = ["node-1", "node-2"];

/// The ACL of docs/deployment.md: node accounts are named after their node id.
const ACL: &str = "\
# Nodes: read the broadcast topic and their own, write replies, logs and scalars, and
# their status (its retained will included); answer presence probes, and say when a search
# finds nothing (a node starting probes its own id, so it reads its answers too).
pattern read general/nodes
pattern read general/%u
pattern write general/researcher
pattern write general/logger
pattern write general/monitoring
pattern write fedreq/presence/%u
pattern read fedreq/probe
pattern readwrite fedreq/probe/%u
pattern readwrite fedreq/probed/%u
pattern write fedreq/no-match

# The researcher: the reverse.
user researcher
topic write general/nodes
topic write general/node-1
topic write general/node-2
topic read general/researcher
topic read general/logger
topic read general/monitoring
topic read fedreq/presence/+
topic write fedreq/probe
topic read fedreq/probed/+
topic read fedreq/no-match
topic readwrite fedreq/sync/#
";

struct Files {
    dir: PathBuf,
    ca_pem: Vec<u8>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The CA, the broker's certificate for 127.0.0.1, the password file and the ACL.
fn files() -> Files {
    let dir = std::env::temp_dir().join(format!("fedreq-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf named like its issuer looks self-signed to OpenSSL.
    ca.distinguished_name
        .push(DnType::CommonName, "fedreq test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("acl"), ACL).unwrap();
    let passwords = dir.join("passwords");
    for (i, (user, password)) in [
        ("researcher", "researcher-secret"),
        ("node-1", "secret-1"),
        ("node-2", "secret-2"),
    ]
    .iter()
    .enumerate()
    {
        let mut command = Command::new("mosquitto_passwd");
        if i == 0 {
            command.arg("-c");
        }
        let status = command
            .arg("-b")
            .arg(&passwords)
            .arg(user)
            .arg(password)
            .status()
            .expect("mosquitto_passwd");
        assert!(status.success());
    }
    Files {
        ca_pem: ca.pem().into_bytes(),
        dir,
    }
}

fn config(dir: &Path) -> String {
    format!(
        "allow_anonymous false\npassword_file {p}\nacl_file {a}\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        p = dir.join("passwords").display(),
        a = dir.join("acl").display(),
        d = dir.display()
    )
}

fn account(port: u16, user: &str, password: &str, ca_pem: Option<&[u8]>) -> MqttConfig {
    let mut mqtt = MqttConfig::new("127.0.0.1", port);
    mqtt.credentials = Some((user.to_owned(), password.to_owned()));
    mqtt.tls = ca_pem.map(|pem| Tls::new(pem, None).unwrap());
    mqtt.connect_timeout = Duration::from_secs(3);
    mqtt
}

#[test]
fn only_the_right_accounts_speak_on_the_right_topics() {
    if !fedreq_tests::mosquitto_tools() {
        return;
    }
    let files = files();
    let Some(mosquitto) = Mosquitto::start_with(&config(&files.dir)) else {
        return;
    };
    let port = mosquitto.port();
    let ca = Some(files.ca_pem.as_slice());

    let runtime = Runtime::new().unwrap();
    let _nodes: Vec<NodeDriver> = NODES
        .iter()
        .zip(["secret-1", "secret-2"])
        .map(|(id, password)| {
            let node = NodeConfig::new(*id, datasets(1, 10));
            NodeDriver::start(
                &runtime,
                &account(port, id, password, ca),
                node,
                plan_fetcher(),
            )
            .unwrap()
        })
        .collect();
    // A node account listening where the researcher does: the broker delivers it nothing.
    let spy = fedreq_mqtt::connect_researcher(
        account(port, "node-1", "secret-1", ca),
        ResearcherConfig::new("spy"),
    )
    .unwrap();
    let researcher = fedreq_mqtt::connect_researcher(
        account(port, "researcher", "researcher-secret", ca),
        ResearcherConfig::new("researcher"),
    )
    .unwrap();
    let nodes: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
    let ping = researcher
        .submit(Submission::to_nodes(Request::ping(), nodes.clone()))
        .recv()
        .unwrap()
        .unwrap();
    let mut online = ping.online();
    online.sort();
    assert_eq!(online, nodes, "over TLS, with passwords, within the ACL");
    let roster = researcher.roster().recv().unwrap();
    assert_eq!(
        roster.keys().cloned().collect::<Vec<_>>(),
        nodes,
        "presence passes the ACL, retained before the first request"
    );
    let spied = spy.roster().recv().unwrap();
    assert!(
        spied.keys().all(|node| node == "node-1"),
        "a node account reads no status but its own: {spied:?}"
    );
    // The nodes' word that they hold no match passes the ACL: once a broadcast made first
    // contact, a search of nodes that announce themselves relies on it, and waits no quiet
    // period.
    let broadcast = Submission::broadcast(Request::ping());
    researcher.submit(broadcast).recv().unwrap().unwrap();
    let search = Submission::broadcast(Request::search(vec!["nothing-here".into()]));
    let none = researcher.submit(search).recv().unwrap().unwrap();
    let waited = none.completion == fedreq_protocol::Completion::QuietPeriod;
    assert!(!waited && none.missing.is_empty(), "{none:?}");

    // A wrong password is refused, clearly.
    let error = fedreq_mqtt::connect_researcher(
        account(port, "researcher", "guess", ca),
        ResearcherConfig::new("r"),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(
        error.to_string().contains("refused the connection"),
        "{error}"
    );

    // Without TLS on a TLS listener: no session.
    assert!(fedreq_mqtt::connect_researcher(
        account(port, "researcher", "researcher-secret", None),
        ResearcherConfig::new("r")
    )
    .is_err());

    // The spy's core would report the researcher's pongs as foreign mail, had it seen them.
    let overheard: Vec<Event> = spy
        .events()
        .try_iter()
        .filter(|e| matches!(e, Event::Unmatched { .. }))
        .collect();
    assert!(overheard.is_empty(), "{overheard:?}");

    // A node that publishes a request on general/nodes reaches no other node: had node-2
    // received it, it would have answered, and the researcher would have seen the pong.
    let forge = |user: &str, password: &str| {
        while researcher.events().try_recv().is_ok() {}
        let forged = r#"{"researcher_id": "researcher", "sequence": 424242, "command": "ping", "protocol_version": "1"}"#;
        let published = Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &port.to_string(),
                "-u",
                user,
                "-P",
                password,
                "-q",
                "1",
            ])
            .arg("--cafile")
            .arg(files.dir.join("ca.pem"))
            .args(["-t", "general/nodes", "-m", forged])
            .output()
            .expect("mosquitto_pub");
        assert!(
            published.status.success(),
            "{}",
            String::from_utf8_lossy(&published.stderr)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut answered = false;
        while let Ok(event) = researcher.events().recv_deadline(deadline) {
            answered |= matches!(
                event,
                Event::Unmatched {
                    reason: Unmatched::Unknown,
                    ..
                }
            );
        }
        answered
    };
    assert!(
        forge("researcher", "researcher-secret"),
        "control: the researcher account reaches the nodes"
    );
    assert!(
        !forge("node-1", "secret-1"),
        "a node's publish on general/nodes reached another node"
    );
    // The researcher still reaches everyone.
    let policy = Policy::quiet(Duration::from_secs(2));
    let again = researcher
        .submit(Submission::to_nodes(Request::ping(), nodes).with_policy(policy))
        .recv()
        .unwrap()
        .unwrap();
    assert!(again.missing.is_empty());
}
