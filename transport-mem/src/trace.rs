//! The simulator's trace: every delivery, and a hash of it that is the same on every machine.

use std::sync::Arc;

use fedreq_protocol::Timestamp;

/// Who sends or receives in a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// The researcher.
    Researcher,
    /// Node number `i` (see `Simulation::node_ids`).
    Node(u32),
}

/// What became of one message to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Handed to the recipient's core.
    Delivered,
    /// Lost on the way (the drop probability).
    Dropped,
    /// The recipient was down when it arrived.
    Down,
}

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// When it arrived (or would have).
    pub at: Timestamp,
    /// The sender.
    pub from: Endpoint,
    /// The recipient.
    pub to: Endpoint,
    /// The topic.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Arc<[u8]>,
    /// What became of it.
    pub fate: Fate,
}

/// FNV-1a, 64 bits: fixed here so that a hash means the same thing on every machine.
#[derive(Clone, Copy, Debug)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Adds one entry, field by field, in a fixed byte layout.
    pub fn add(&mut self, entry: &TraceEntry) {
        let nanos = entry.at.since_epoch().as_nanos() as u64;
        self.write(&nanos.to_le_bytes());
        for endpoint in [entry.from, entry.to] {
            let code = match endpoint {
                Endpoint::Researcher => u64::MAX,
                Endpoint::Node(i) => u64::from(i),
            };
            self.write(&code.to_le_bytes());
        }
        self.write(&[entry.fate as u8]);
        self.write(&(entry.topic.len() as u64).to_le_bytes());
        self.write(entry.topic.as_bytes());
        self.write(&(entry.payload.len() as u64).to_le_bytes());
        self.write(&entry.payload);
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        let mut h = TraceHash::default();
        h.write(b"a");
        assert_eq!(h.value(), 0xaf63dc4c8601ec8c);
        let mut h = TraceHash::default();
        h.write(b"foobar");
        assert_eq!(h.value(), 0x85944171f73967e8);
    }
}
