//! A real-time in-memory MQTT broker: clients in any thread of the process subscribe with
//! MQTT filters and receive, in publish order, every publish that matches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::router::{validate_topic, FilterError, Router, TopicError};

/// One delivered publish. Payloads are shared, not copied, between subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Arc<[u8]>,
}

#[derive(Debug, Default)]
struct State {
    router: Router<u64>,
    inboxes: HashMap<u64, flume::Sender<Publish>>,
    next_client: u64,
}

/// The broker. Cloning it gives another handle to the same broker.
#[derive(Clone, Debug, Default)]
pub struct Broker {
    state: Arc<Mutex<State>>,
}

impl Broker {
    /// A broker with no client.
    pub fn new() -> Self {
        Broker::default()
    }

    /// A new client, with an empty inbox and no subscription.
    pub fn connect(&self) -> Client {
        let (sender, inbox) = flume::unbounded();
        let mut state = lock(&self.state);
        let id = state.next_client;
        state.next_client += 1;
        state.inboxes.insert(id, sender);
        Client {
            id,
            state: Arc::clone(&self.state),
            inbox,
        }
    }
}

/// A connection to the broker. Dropping it unsubscribes it.
#[derive(Debug)]
pub struct Client {
    id: u64,
    state: Arc<Mutex<State>>,
    inbox: flume::Receiver<Publish>,
}

impl Client {
    /// Receives every later publish matching `filter`.
    pub fn subscribe(&self, filter: &str) -> Result<(), FilterError> {
        lock(&self.state).router.subscribe(self.id, filter)
    }

    /// Stops receiving publishes for `filter`.
    pub fn unsubscribe(&self, filter: &str) {
        lock(&self.state).router.unsubscribe(self.id, filter)
    }

    /// Publishes to every matching subscriber (this client too, if subscribed), returning
    /// how many it reached.
    pub fn publish(&self, topic: &str, payload: impl Into<Arc<[u8]>>) -> Result<usize, TopicError> {
        validate_topic(topic)?;
        let publish = Publish {
            topic: topic.into(),
            payload: payload.into(),
        };
        // Sending under the lock keeps one delivery order for every subscriber.
        let state = lock(&self.state);
        let mut reached = 0;
        for subscriber in state.router.route(topic) {
            if let Some(inbox) = state.inboxes.get(&subscriber) {
                reached += usize::from(inbox.send(publish.clone()).is_ok());
            }
        }
        Ok(reached)
    }

    /// The client's inbox: `recv`, `recv_timeout`, `try_recv`, or `recv_async` from any executor.
    pub fn inbox(&self) -> &flume::Receiver<Publish> {
        &self.inbox
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.router.remove(self.id);
        state.inboxes.remove(&self.id);
    }
}

/// The state stays consistent even if a holder panicked: every update is a single call.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn publishes_reach_matching_subscribers_in_order_across_threads() {
        let broker = Broker::new();
        let researcher = broker.connect();
        researcher.subscribe("general/researcher").unwrap();
        let node = broker.connect();
        node.subscribe("general/+").unwrap();
        let publisher = broker.connect();
        let handle = std::thread::spawn(move || {
            for i in 0..100u8 {
                publisher.publish("general/researcher", vec![i]).unwrap();
            }
            publisher
                .publish("general/nodes", b"ping".to_vec())
                .unwrap()
        });
        assert_eq!(
            handle.join().unwrap(),
            1,
            "only the node subscribes to general/nodes"
        );
        let got: Vec<u8> = (0..100)
            .map(|_| researcher.inbox().recv().unwrap().payload[0])
            .collect();
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
        assert_eq!(node.inbox().len(), 101, "general/+ matches both topics");
        assert!(researcher
            .inbox()
            .recv_timeout(Duration::from_millis(10))
            .is_err());
    }

    #[test]
    fn dropped_clients_stop_receiving_and_bad_topics_are_refused() {
        let broker = Broker::new();
        let a = broker.connect();
        let b = broker.connect();
        a.subscribe("t").unwrap();
        b.subscribe("t").unwrap();
        assert_eq!(a.publish("t", b"x".to_vec()), Ok(2));
        drop(b);
        assert_eq!(a.publish("t", b"x".to_vec()), Ok(1));
        assert!(a.publish("t/#", b"x".to_vec()).is_err());
        assert!(a.subscribe("t/#/x").is_err());
    }
}
