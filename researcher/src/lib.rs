//! fedreq: the researcher's request layer of federated learning, speaking Fed-BioMed v4.4.
//!
//! - [`Requests`]: every operation of Fed-BioMed's `Requests` (ping, list, search, training
//!   plan approval, send any message, get messages and responses, monitoring), blocking or
//!   async, over MQTT by default, the in-memory broker, or any transport driving a
//!   [`fedreq_driver::ResearcherHandle`].
//! - [`TrainingPlan`]: a plan read and checked as Python before anything is sent.
//! - [`repository`]: the HTTP file repository plans travel through, client and embedded server.
//! - [`known`]: the nodes without presence heard on a broker, kept for the next process.
//!
//! ```no_run
//! use fedreq::{Requests, RequestsConfig};
//! use fedreq_mqtt::MqttConfig;
//!
//! let requests = Requests::connect(MqttConfig::new("localhost", 1883), RequestsConfig::new("researcher-1"))?;
//! println!("online: {:?}", requests.ping_nodes()?);
//! # Ok::<(), fedreq::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod known;
pub mod plan;
pub mod repository;
pub mod requests;
pub mod scalars;
pub mod table;

pub use known::KnownNodes;
pub use plan::{PlanError, TrainingPlan};
pub use requests::{Error, Remember, Requests, RequestsConfig};
