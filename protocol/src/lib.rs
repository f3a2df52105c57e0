//! fedreq's protocol: the Fed-BioMed v4.4 wire messages and the Sans-IO cores.
//!
//! Pure: no sockets, threads, async, clock reads or randomness. A core is a value that
//! adapters push inputs into (a submitted request, a received publish, the clock reaching a
//! deadline) and drain outputs from (publishes to make, the next deadline, events such as
//! completed requests). The same inputs always give the same outputs.
//!
//! - [`message`]: typed wire messages, strict decoding, encoding.
//! - [`version`]: the protocol version rule.
//! - [`topic`]: topic names and targets.
//! - [`policy`]: when a request is complete (the settings; the rules live in one private
//!   module, `completion`).
//! - [`outcome`]: what a completed request reports.
//! - [`researcher`]: the researcher core; [`event`]: what it reports.
//! - [`node`]: the node core.
//! - [`presence`]: fedreq nodes' statuses, which the researcher keeps as its roster.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod completion;
pub mod error;
pub mod event;
mod inflight;
pub mod message;
pub mod node;
pub mod outcome;
pub mod policy;
pub mod presence;
mod registry;
pub mod researcher;
pub mod time;
pub mod topic;
pub mod version;

pub use error::{DecodeError, SubmitError};
pub use event::{ConnectionState, Event, Mail, NodeLog, Unmatched};
pub use message::{Command, Decoded, Limits, NodeMessage, Request, Sequence};
pub use node::{Node, NodeConfig};
pub use outcome::{Completion, Counters, Outcome, RequestId};
pub use policy::Policy;
pub use researcher::{Collect, Researcher, ResearcherConfig, Submission, Transmit};
pub use time::Timestamp;
pub use topic::{NodeId, Target};
pub use version::{ProtocolVersion, PROTOCOL_VERSION};
