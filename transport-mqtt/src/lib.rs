//! fedreq over real MQTT: the researcher and node cores driven through rumqttc, and an
//! embedded rumqttd broker.
//!
//! A [`Runtime`] is a background thread owning a tokio runtime, the rumqttc event loops and
//! the cores; drivers are handles that send it orders over channels and get answers back as
//! [`Pending`] values, which a caller can [`wait`](Pending::wait) for or `.await` from any
//! executor. tokio stays inside this crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod config;
mod connection;
pub mod node;
mod outbox;
pub mod researcher;
pub mod runtime;

pub use broker::EmbeddedBroker;
pub use config::{MqttConfig, Qos, Tls};
pub use connection::{ConnectError, ConnectionState};
pub use node::{Fetcher, NodeDriver};
pub use researcher::{DriverEvent, ResearcherDriver};
pub use runtime::{Pending, Runtime, Stopped};
