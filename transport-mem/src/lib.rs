//! fedreq over memory: a real-time in-memory MQTT broker, and a deterministic simulator of a
//! researcher and thousands of nodes with seeded faults.
//!
//! - [`router`]: MQTT topic filters and routing, shared by both.
//! - [`broker`]: the real-time broker, for any code in the process.
//! - [`driver`]: researcher and node cores driven in real time over that broker.
//! - [`sim`]: the simulator: virtual clock, seeded faults, a trace and its hash.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod driver;
pub mod rng;
pub mod router;
pub mod sim;
pub mod trace;

pub use broker::{Broker, Client, Publish};
pub use driver::{connect_researcher, NodeDriver};
pub use sim::{Crash, Distance, Faults, SimConfig, Simulation, Slow};
pub use trace::{Endpoint, Fate, TraceEntry};
