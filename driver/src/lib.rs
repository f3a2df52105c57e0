//! The transport-independent half of a researcher driver, written once for every transport.
//!
//! A driver is a loop that owns a researcher core. Callers never touch the core: they hold a
//! [`ResearcherHandle`] (cloneable, for any thread), which sends orders to the loop and gets
//! each answer back on a flume receiver (`recv()` to block, `recv_async().await` from any
//! executor). The loop holds the [`ResearcherDriver`]: the core, the table of callers waiting
//! for an outcome, and the [`Clock`]. A transport adapter then only writes its loop:
//!
//! 1. wait for the first of: a publish from its network, an order
//!    ([`ResearcherDriver::orders`]), or the wake ([`ResearcherDriver::next_wake`]);
//! 2. feed it in: [`handle_publish`](ResearcherDriver::handle_publish),
//!    [`handle_order`](ResearcherDriver::handle_order) or
//!    [`handle_timeout`](ResearcherDriver::handle_timeout);
//! 3. [`drain`](ResearcherDriver::drain): publish every transmit it hands over;
//! 4. go back to 1. The loop ends when `orders` disconnects: every handle is gone.
//!
//! No I/O here: no sockets, no threads, no executor. `examples/smol.rs` is a whole adapter.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod handle;

pub use clock::Clock;
pub use handle::{
    drain, Known, Order, Pending, ResearcherDriver, ResearcherHandle, Roster, Stopped,
    EVENT_CAPACITY,
};
