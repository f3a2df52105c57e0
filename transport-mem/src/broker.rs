//! A real-time in-memory MQTT broker: clients in any thread of the process subscribe with
//! MQTT filters and receive, in publish order, every publish that matches; retained messages
//! and last wills as MQTT has them, for presence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::router::{matches, validate_topic, FilterError, Router, TopicError};

/// One delivered publish. Payloads are shared, not copied, between subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Arc<[u8]>,
    /// Delivered from the retained store on a new subscription, as MQTT's retain flag says.
    pub retained: bool,
}

#[derive(Debug, Default)]
struct State {
    router: Router<u64>,
    inboxes: HashMap<u64, flume::Sender<Publish>>,
    next_client: u64,
    /// The last retained publish per topic.
    retained: BTreeMap<Arc<str>, Arc<[u8]>>,
    /// Each client's last will, published (retained) if it crashes.
    wills: HashMap<u64, Publish>,
    /// Retained publishes go only to subscriptions without wildcards, as RabbitMQ's.
    retained_exact_only: bool,
}

impl State {
    /// Sends to every matching subscriber, under the lock: one delivery order for all.
    fn deliver(&self, publish: &Publish) -> usize {
        let mut reached = 0;
        for subscriber in self.router.route(&publish.topic) {
            if let Some(inbox) = self.inboxes.get(&subscriber) {
                reached += usize::from(inbox.send(publish.clone()).is_ok());
            }
        }
        reached
    }

    fn retain(&mut self, publish: &Publish) {
        // An empty retained payload clears the topic, as in MQTT.
        if publish.payload.is_empty() {
            self.retained.remove(&publish.topic);
        } else {
            self.retained
                .insert(Arc::clone(&publish.topic), Arc::clone(&publish.payload));
        }
    }
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

    /// A broker that keeps retained publishes but delivers them only on subscriptions without
    /// wildcards, as RabbitMQ's MQTT plugin does.
    pub fn retained_exact_only() -> Self {
        let broker = Broker::default();
        lock(&broker.state).retained_exact_only = true;
        broker
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
    /// Receives the retained publishes matching `filter`, then every later one.
    pub fn subscribe(&self, filter: &str) -> Result<(), FilterError> {
        let mut state = lock(&self.state);
        state.router.subscribe(self.id, filter)?;
        let wildcard = filter.contains(['+', '#']);
        let inbox = state.inboxes.get(&self.id);
        if let Some(inbox) = inbox.filter(|_| !(wildcard && state.retained_exact_only)) {
            for (topic, payload) in state.retained.iter().filter(|(t, _)| matches(filter, t)) {
                let _ = inbox.send(Publish {
                    topic: Arc::clone(topic),
                    payload: Arc::clone(payload),
                    retained: true,
                });
            }
        }
        Ok(())
    }

    /// Publishes and keeps the publish for later subscribers of its topic.
    pub fn publish_retained(
        &self,
        topic: &str,
        payload: impl Into<Arc<[u8]>>,
    ) -> Result<usize, TopicError> {
        let publish = publish(topic, payload)?;
        let mut state = lock(&self.state);
        state.retain(&publish);
        Ok(state.deliver(&publish))
    }

    /// Sets the will the broker publishes, retained, if this client crashes.
    pub fn set_will(&self, topic: &str, payload: impl Into<Arc<[u8]>>) -> Result<(), TopicError> {
        let will = publish(topic, payload)?;
        lock(&self.state).wills.insert(self.id, will);
        Ok(())
    }

    /// Drops the connection as a crash does: the broker publishes the will.
    pub fn crash(self) {
        let mut state = lock(&self.state);
        if let Some(will) = state.wills.remove(&self.id) {
            state.retain(&will);
            state.deliver(&will);
        }
    }

    /// Stops receiving publishes for `filter`.
    pub fn unsubscribe(&self, filter: &str) {
        lock(&self.state).router.unsubscribe(self.id, filter)
    }

    /// Publishes to every matching subscriber (this client too, if subscribed), returning
    /// how many it reached.
    pub fn publish(&self, topic: &str, payload: impl Into<Arc<[u8]>>) -> Result<usize, TopicError> {
        let publish = publish(topic, payload)?;
        Ok(lock(&self.state).deliver(&publish))
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
        // A clean disconnect: the will is discarded.
        state.wills.remove(&self.id);
    }
}

fn publish(topic: &str, payload: impl Into<Arc<[u8]>>) -> Result<Publish, TopicError> {
    validate_topic(topic)?;
    Ok(Publish {
        topic: topic.into(),
        payload: payload.into(),
        retained: false,
    })
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

    #[test]
    fn retained_publishes_reach_later_subscribers_and_a_crash_publishes_the_will() {
        let broker = Broker::new();
        let node = broker.connect();
        node.set_will("status/n", b"offline".to_vec()).unwrap();
        node.publish_retained("status/n", b"online".to_vec())
            .unwrap();
        let late = broker.connect();
        late.subscribe("status/+").unwrap();
        assert_eq!(&*late.inbox().try_recv().unwrap().payload, b"online");
        node.crash();
        assert_eq!(&*late.inbox().try_recv().unwrap().payload, b"offline");
        let later = broker.connect();
        later.subscribe("status/#").unwrap();
        assert_eq!(
            &*later.inbox().try_recv().unwrap().payload,
            b"offline",
            "the will is retained"
        );

        let clean = broker.connect();
        clean.set_will("status/c", b"offline".to_vec()).unwrap();
        drop(clean);
        assert!(
            later.inbox().try_recv().is_err(),
            "a clean disconnect publishes no will"
        );
    }
}
