//! An MQTT broker inside the process (rumqttd), for the zero-setup default and for tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The address cannot be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// rumqttd did not come up.
    #[error("the embedded MQTT broker did not start on {0}")]
    NotStarted(SocketAddr),
}

/// A running rumqttd broker. rumqttd has no shutdown: it runs on its own threads until the
/// process ends.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    address: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts on a free loopback port, trying another if the one probed was taken meanwhile.
    pub fn start_local() -> Result<Self, BrokerError> {
        let mut tries = 0;
        loop {
            match Self::start(SocketAddr::from(([127, 0, 0, 1], 0))) {
                Err(BrokerError::NotStarted(_)) if tries < 3 => tries += 1,
                started => return started,
            }
        }
    }

    /// Starts on `address`; port 0 picks a free one (rumqttd itself cannot bind port 0).
    pub fn start(address: SocketAddr) -> Result<Self, BrokerError> {
        let listen_error = |source| BrokerError::Listen { address, source };
        let probe = TcpListener::bind(address).map_err(listen_error)?;
        let address = probe.local_addr().map_err(listen_error)?;
        drop(probe);

        let server = ServerSettings {
            name: "fedreq".into(),
            listen: address,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: crate::config::DEFAULT_MAX_PACKET_SIZE,
                max_inflight_count: 1000,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 100_000,
                max_outgoing_packet_count: 1000,
                max_segment_size: 4 * crate::config::DEFAULT_MAX_PACKET_SIZE,
                max_segment_count: 4,
                ..RouterConfig::default()
            },
            v4: Some(HashMap::from([("fedreq".to_owned(), server)])),
            ..Config::default()
        };
        let thread = std::thread::Builder::new()
            .name("fedreq-broker".into())
            .spawn(move || {
                let _ = rumqttd::Broker::new(config).start();
            })
            .map_err(listen_error)?;

        // Ready means an MQTT session, not an accepted socket: rumqttd accepts before its
        // router runs, and a connect to a port nobody holds can even connect to itself.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !thread.is_finished() {
            if mqtt_session_accepted(address) {
                return Ok(EmbeddedBroker { address });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(BrokerError::NotStarted(address))
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Whether a broker at `address` answers an MQTT 3.1.1 CONNECT with an accepting CONNACK.
fn mqtt_session_accepted(address: SocketAddr) -> bool {
    const CLIENT_ID: &[u8] = b"fedreq-ready";
    let mut connect = vec![0x10, 12 + CLIENT_ID.len() as u8];
    // Protocol "MQTT", level 4, clean session, keep-alive 60 s, then the client id.
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    connect.extend_from_slice(&[0, CLIENT_ID.len() as u8]);
    connect.extend_from_slice(CLIENT_ID);
    let attempt = || -> std::io::Result<[u8; 4]> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(&connect)?;
        let mut connack = [0; 4];
        stream.read_exact(&mut connack)?;
        // A clean goodbye, so the broker logs no error.
        let _ = stream.write_all(&[0xE0, 0]);
        Ok(connack)
    };
    // CONNACK, length 2, no session present, return code 0 (accepted).
    matches!(attempt(), Ok([0x20, 2, 0, 0]))
}
