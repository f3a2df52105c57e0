//! How to reach the broker: address, QoS, packet size, credentials, TLS, timeouts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// MQTT quality of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// At most once (Fed-BioMed's choice: loses messages under load).
    AtMostOnce,
    /// At least once: the default.
    AtLeastOnce,
    /// Exactly once.
    ExactlyOnce,
}

impl Qos {
    pub(crate) fn to_rumqttc(self) -> rumqttc::QoS {
        match self {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }
}

/// TLS towards the broker, with rustls and the `ring` provider (no C crypto library to build).
#[derive(Clone)]
pub struct Tls {
    pub(crate) config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls { .. }")
    }
}

/// A TLS set-up that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM data holds no certificate, or a bad one.
    #[error("bad certificate PEM: {0}")]
    Certificate(String),
    /// The PEM data holds no private key, or a bad one.
    #[error("bad private key PEM: {0}")]
    Key(String),
    /// rustls refused the set-up.
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Tls {
    /// Trusts the certificate authorities in `ca_pem`; with `client`, authenticates with that
    /// (certificate chain PEM, private key PEM).
    pub fn new(ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Result<Tls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| TlsError::Certificate(e.to_string()))?;
            roots.add(cert)?;
            any = true;
        }
        if !any {
            return Err(TlsError::Certificate("no certificate found".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsError::Certificate(e.to_string()))?;
                let key =
                    PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Key(e.to_string()))?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        Ok(Tls {
            config: Arc::new(config),
        })
    }
}

/// Reconnection delays: doubling from `min` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay after a lost connection.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

/// Whether the broker keeps a connection's session (subscriptions, QoS 1 messages queued and
/// unacknowledged) while the connection is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// A new session on every connection, gone with it: for short-lived processes (one
    /// `fedreq ping`), which leave nothing on the broker. A publish in flight when the
    /// connection breaks can be lost.
    Clean,
    /// One session for the instance: a researcher's lives as long as its driver, a node's as
    /// long as its run (named after the node, started afresh by each run). The broker queues
    /// what arrives while the connection is down and rumqttc resends what the broker had not
    /// acknowledged; a clean stop ends it. Needs a broker that keeps sessions across its own restarts (mosquitto:
    /// `persistence true`) to survive them too.
    Persistent,
}

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Host name or address (of the member tried first, for a clustered broker).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Other members of the same broker (a cluster, or bridged brokers that share the topics),
    /// as host and port: a connection whose member fails moves to the next in turn, and a
    /// failed member is tried again when its turn comes back.
    pub fallbacks: Vec<(String, u16)>,
    /// QoS of publishes and subscriptions.
    pub qos: Qos,
    /// Largest MQTT packet sent, in bytes. Any packet is accepted (up to MQTT's 256 MiB): an
    /// oversized publish does not cut the connection, the core refuses its payload.
    pub max_packet_size: usize,
    /// Whether the broker keeps our session between connections.
    pub session: Session,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// TLS, if the broker requires it.
    pub tls: Option<Tls>,
    /// How long the first connection may take before it is an error.
    pub connect_timeout: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// Go through the driver's relay, which acknowledges every segment from the broker at
    /// once: no 40 ms stall behind a broker without `TCP_NODELAY`. Off only to measure that.
    pub quick_ack: bool,
    /// Nodes only: announce presence (a retained status and a will). Off, a node announces
    /// nothing, as a Fed-BioMed v4.4 node.
    pub presence: bool,
}

/// 16 MiB: room for `list` replies of many datasets (rumqttc's default is 10 KiB).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 16 << 20;

impl MqttConfig {
    /// `host:port` with the defaults: QoS 1, a persistent session, 16 MiB packets sent, 5 s to
    /// connect, 30 s keep-alive, reconnecting after 50 ms doubling up to 5 s.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        MqttConfig {
            host: host.into(),
            port,
            fallbacks: Vec::new(),
            qos: Qos::AtLeastOnce,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            session: Session::Persistent,
            credentials: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(30),
            backoff: Backoff {
                min: Duration::from_millis(50),
                max: Duration::from_secs(5),
            },
            quick_ack: true,
            presence: true,
        }
    }

    /// Parses `HOST:PORT`, `mqtt://HOST:PORT` or `HOST` (port 1883), or several of them
    /// separated by commas: the members of a clustered broker, tried in that order.
    pub fn parse(address: &str) -> Result<Self, AddressError> {
        let mut members = address
            .split(',')
            .map(|member| parse_one(member.trim(), 1883));
        let (host, port) = members
            .next()
            .ok_or_else(|| AddressError(address.to_owned()))??;
        let fallbacks = members.collect::<Result<_, _>>()?;
        Ok(MqttConfig {
            fallbacks,
            ..MqttConfig::new(host, port)
        })
    }

    /// The same broker, member `member` first (the others in turn after it).
    pub fn starting_at(&self, member: usize) -> MqttConfig {
        let mut members: Vec<(String, u16)> =
            self.members().map(|(h, p)| (h.to_owned(), p)).collect();
        let first = member % members.len();
        members.rotate_left(first);
        let (host, port) = members.remove(0);
        MqttConfig {
            host,
            port,
            fallbacks: members,
            ..self.clone()
        }
    }

    /// The same broker from a member other than the first, the `i`-th in turn (the first
    /// when there is only one): where a benchmark puts its nodes, so that every message
    /// between them and the researcher crosses the cluster.
    pub fn elsewhere(&self, i: usize) -> MqttConfig {
        match self.fallbacks.len() {
            0 => self.clone(),
            others => self.starting_at(1 + i % others),
        }
    }

    /// Every member's address, the first first.
    pub fn members(&self) -> impl Iterator<Item = (&str, u16)> {
        let first = std::iter::once((self.host.as_str(), self.port));
        first.chain(
            self.fallbacks
                .iter()
                .map(|(host, port)| (host.as_str(), *port)),
        )
    }

    /// `host:port`, each member's, for messages.
    pub fn address(&self) -> String {
        let members: Vec<String> = self
            .members()
            .map(|(host, port)| format!("{}:{port}", crate::relay::bracketed(host)))
            .collect();
        members.join(",")
    }
}

/// One member's `HOST:PORT`, `mqtt://HOST:PORT` or `HOST` (port `default_port`).
pub fn parse_one(address: &str, default_port: u16) -> Result<(String, u16), AddressError> {
    let rest = address.strip_prefix("mqtt://").unwrap_or(address);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            let port = port.parse().map_err(|_| AddressError(address.to_owned()))?;
            (host.trim_start_matches('[').trim_end_matches(']'), port)
        }
        None if !rest.is_empty() => (rest, default_port),
        _ => return Err(AddressError(address.to_owned())),
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(AddressError(address.to_owned()));
    }
    Ok((host.to_owned(), port))
}

/// A broker address that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address `{0}`: expected HOST:PORT or mqtt://HOST:PORT, several separated by commas")]
pub struct AddressError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_scheme() {
        for (text, host, port) in [
            ("localhost:1883", "localhost", 1883),
            ("mqtt://10.0.0.1:1884", "10.0.0.1", 1884),
            ("mqtt://broker/", "broker", 1883),
            ("[::1]:1883", "::1", 1883),
        ] {
            let config = MqttConfig::parse(text).unwrap();
            assert_eq!((config.host.as_str(), config.port), (host, port), "{text}");
        }
        for bad in [
            "",
            ":1883",
            "host:port",
            "host:70000",
            "a b:1",
            "mqtt://",
            "a:1,",
            "a:1,b:x",
        ] {
            assert!(MqttConfig::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn several_members_parse_in_order() {
        let config = MqttConfig::parse("a:1, mqtt://b:2,[::1]:3,c").unwrap();
        let members: Vec<(&str, u16)> = config.members().collect();
        assert_eq!(members, [("a", 1), ("b", 2), ("::1", 3), ("c", 1883)]);
        assert_eq!(config.address(), "a:1,b:2,[::1]:3,c:1883");
        let first = |config: MqttConfig| (config.host, config.port);
        assert_eq!(first(config.starting_at(2)), ("::1".to_owned(), 3));
        assert_eq!(config.starting_at(2).address(), "[::1]:3,c:1883,a:1,b:2");
        assert_eq!(first(config.elsewhere(0)), ("b".to_owned(), 2));
        assert_eq!(first(config.elsewhere(2)), ("c".to_owned(), 1883));
        assert_eq!(first(config.elsewhere(3)), ("b".to_owned(), 2));
    }
}
