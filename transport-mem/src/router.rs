//! MQTT topic semantics: filters with `+` and `#`, and who a publish reaches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

/// A filter that is not valid MQTT.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Empty filter.
    #[error("empty topic filter")]
    Empty,
    /// `#` that is not a whole last level, or `+` that is not a whole level.
    #[error("invalid topic filter {0:?}: `#` must be the whole last level and `+` a whole level")]
    Wildcard(String),
}

/// A topic that cannot be published to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic {0:?}: a topic to publish to is non-empty and has no `+` or `#`")]
pub struct TopicError(pub String);

/// Checks an MQTT subscription filter.
pub fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        let bad_hash = level.contains('#') && (*level != "#" || i != last);
        let bad_plus = level.contains('+') && *level != "+";
        if bad_hash || bad_plus {
            return Err(FilterError::Wildcard(filter.to_owned()));
        }
    }
    Ok(())
}

/// Checks a topic to publish to.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        Err(TopicError(topic.to_owned()))
    } else {
        Ok(())
    }
}

/// Whether `topic` matches `filter` (both already valid). As MQTT says, wildcards at the
/// first level do not match topics starting with `$`, and `a/#` also matches `a`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (level, Some(t)) if level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// A subscription table. Filters without wildcards are looked up by topic, the others tried
/// in turn, so a publish to one of 100,000 node topics costs one lookup; every subscriber
/// knows its filters, so removing one costs what it subscribed to.
#[derive(Debug)]
pub struct Router<S> {
    next: u64,
    /// Exact filter -> subscribers, keyed by subscription order.
    exact: HashMap<String, BTreeMap<u64, S>>,
    /// Wildcard subscriptions, in subscription order.
    wildcard: BTreeMap<u64, (String, S)>,
    /// Subscriber -> its filters and their order keys.
    filters: HashMap<S, Vec<(String, u64)>>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router {
            next: 0,
            exact: HashMap::new(),
            wildcard: BTreeMap::new(),
            filters: HashMap::new(),
        }
    }
}

impl<S: Copy + Eq + Hash> Router<S> {
    /// Subscribes `subscriber` to `filter`; subscribing twice to the same filter is once.
    pub fn subscribe(&mut self, subscriber: S, filter: &str) -> Result<(), FilterError> {
        validate_filter(filter)?;
        let mine = self.filters.entry(subscriber).or_default();
        if mine.iter().any(|(f, _)| f == filter) {
            return Ok(());
        }
        let order = self.next;
        self.next += 1;
        mine.push((filter.to_owned(), order));
        if filter.contains(['+', '#']) {
            self.wildcard.insert(order, (filter.to_owned(), subscriber));
        } else {
            self.exact
                .entry(filter.to_owned())
                .or_default()
                .insert(order, subscriber);
        }
        Ok(())
    }

    /// Removes `subscriber` from `filter`.
    pub fn unsubscribe(&mut self, subscriber: S, filter: &str) {
        let Some(mine) = self.filters.get_mut(&subscriber) else {
            return;
        };
        let Some(at) = mine.iter().position(|(f, _)| f == filter) else {
            return;
        };
        let (filter, order) = mine.swap_remove(at);
        if mine.is_empty() {
            self.filters.remove(&subscriber);
        }
        self.forget(&filter, order);
    }

    /// Removes every subscription of `subscriber`.
    pub fn remove(&mut self, subscriber: S) {
        for (filter, order) in self.filters.remove(&subscriber).unwrap_or_default() {
            self.forget(&filter, order);
        }
    }

    fn forget(&mut self, filter: &str, order: u64) {
        if self.wildcard.remove(&order).is_none() {
            if let Some(subscribers) = self.exact.get_mut(filter) {
                subscribers.remove(&order);
                if subscribers.is_empty() {
                    self.exact.remove(filter);
                }
            }
        }
    }

    /// Everyone `topic` reaches, each once, in subscription order (exact filters first).
    pub fn route(&self, topic: &str) -> Vec<S> {
        let mut out: Vec<S> = self
            .exact
            .get(topic)
            .map(|s| s.values().copied().collect())
            .unwrap_or_default();
        if !self.wildcard.is_empty() {
            let mut seen: HashSet<S> = out.iter().copied().collect();
            for (filter, subscriber) in self.wildcard.values() {
                if matches(filter, topic) && seen.insert(*subscriber) {
                    out.push(*subscriber);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_mqtt() {
        let cases = [
            ("general/+", "general/nodes", true),
            ("general/+", "general/a/b", false),
            ("general/#", "general/a/b", true),
            ("general/#", "general", true),
            ("#", "general/nodes", true),
            ("+/nodes", "general/nodes", true),
            ("general/nodes", "general/nodes", true),
            ("general/nodes", "general/node", false),
            ("general/nodes", "general/nodes/x", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} ~ {topic}");
        }
    }

    #[test]
    fn invalid_filters_and_topics_are_refused() {
        for filter in ["", "a/#/b", "a#", "a/b+", "+a"] {
            assert!(validate_filter(filter).is_err(), "{filter:?}");
        }
        for topic in ["", "a/+", "a/#"] {
            assert!(validate_topic(topic).is_err(), "{topic:?}");
        }
    }

    #[test]
    fn route_reaches_each_subscriber_once() {
        let mut router = Router::default();
        router.subscribe(1, "general/nodes").unwrap();
        router.subscribe(1, "general/+").unwrap();
        router.subscribe(2, "general/#").unwrap();
        router.subscribe(3, "general/n3").unwrap();
        router.subscribe(3, "general/n3").unwrap();
        assert_eq!(router.route("general/nodes"), [1, 2]);
        assert_eq!(router.route("general/n3"), [3, 1, 2]);
        router.unsubscribe(1, "general/+");
        assert_eq!(router.route("general/n3"), [3, 2]);
        router.remove(2);
        assert_eq!(router.route("general/nodes"), [1]);
    }
}
