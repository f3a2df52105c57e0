//! Publishes without ever waiting on rumqttc's request channel: what does not fit now waits
//! here, in order, and is retried on the next turn of the task. Between a lost connection and
//! the broker's acknowledgement of the new session's subscriptions, everything waits here:
//! rumqttc drops what it held when a clean session starts, and replies to a request sent
//! before the subscription would find no one.

use std::collections::VecDeque;

use fedreq_protocol::Transmit;
use rumqttc::{AsyncClient, ClientError, QoS, Request, SubscribeFilter};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// What to publish, and whether the broker retains it.
    queue: VecDeque<(Transmit, bool)>,
    /// Holding everything until the session's subscriptions are acknowledged.
    closed: bool,
    /// Subscriptions owed to a new session, retried until rumqttc takes them.
    owed: Option<Vec<SubscribeFilter>>,
}

impl Outbox {
    /// A new session started: subscribe again, and hold publishes until the broker answers.
    pub(crate) fn reconnected(&mut self, filters: Vec<SubscribeFilter>) {
        self.closed = true;
        self.owed = Some(filters);
    }

    /// The broker answered the subscriptions. Even a refusal opens: requests then go out and
    /// complete under their own timers, instead of piling up here.
    pub(crate) fn subscribed(&mut self) {
        self.closed = false;
    }

    /// The connection was lost.
    pub(crate) fn disconnected(&mut self) {
        self.closed = true;
    }

    pub(crate) fn push(&mut self, transmit: Transmit) {
        self.queue.push_back((transmit, false));
    }

    /// A publish the broker keeps for later subscribers (a node's status).
    pub(crate) fn push_retained(&mut self, transmit: Transmit) {
        self.queue.push_back((transmit, true));
    }

    /// Whether something waits that a later flush can send.
    pub(crate) fn is_pending(&self) -> bool {
        self.owed.is_some() || (!self.closed && !self.queue.is_empty())
    }

    /// Hands what is owed and as much as fits to the client, oldest first.
    pub(crate) fn flush(&mut self, client: &AsyncClient, qos: QoS) {
        if let Some(filters) = self.owed.take() {
            if client.try_subscribe_many(filters.clone()).is_err() {
                self.owed = Some(filters);
            }
        }
        if self.closed {
            return;
        }
        while let Some((transmit, retain)) = self.queue.pop_front() {
            let at_most_once = transmit.at_most_once;
            let qos = if at_most_once { QoS::AtMostOnce } else { qos };
            match client.try_publish(transmit.topic, qos, retain, transmit.payload) {
                Ok(()) => {}
                Err(
                    ClientError::TryRequest(Request::Publish(publish))
                    | ClientError::Request(Request::Publish(publish)),
                ) => {
                    let transmit = Transmit {
                        at_most_once,
                        ..Transmit::new(publish.topic, publish.payload.to_vec())
                    };
                    self.queue.push_front((transmit, retain));
                    return;
                }
                // The event loop is gone: the task is about to stop.
                Err(_) => return,
            }
        }
    }
}
