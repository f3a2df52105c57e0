//! fedreq over real MQTT: the researcher and node cores driven through rumqttc, and an
//! embedded rumqttd broker.
//!
//! A [`Runtime`] is a background thread owning a tokio runtime, the rumqttc event loops and
//! the cores; drivers are handles that send it orders over channels and get answers back on
//! flume receivers, which a caller can `recv()` (blocking) or `recv_async().await` from any
//! executor. tokio stays inside this crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bare;
pub mod broker;
pub mod config;
mod connection;
pub mod node;
mod outbox;
mod relay;
pub mod researcher;
pub mod runtime;

pub use broker::EmbeddedBroker;
pub use config::{MqttConfig, Qos, Session, Tls};
pub use connection::ConnectError;
pub use node::{Fetcher, NodeDriver};
pub use researcher::{connect_researcher, connect_researcher_async, connect_researcher_on};
pub use runtime::Runtime;
