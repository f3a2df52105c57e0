//! A map keyed by node id that keeps each id's hash beside it: a reply's node id is hashed
//! once for every table it visits, and a table grows without hashing its ids again.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry, HashTable};

use crate::topic::NodeId;

/// Hashes keyed by the configured seed. Node ids come from the network: without the seed,
/// colliding ids cannot be chosen; foldhash's quality variant costs a fraction of SipHash on
/// short keys.
pub(crate) type Keyed = foldhash::quality::FixedState;

/// The hasher of a core configured with `seed`.
pub(crate) fn keyed(seed: u64) -> Keyed {
    foldhash::quality::FixedState::with_seed(seed)
}

/// A plain map keyed by node id, for the tables no reply visits.
pub(crate) type NodeMap<V> = hashbrown::HashMap<NodeId, V, Keyed>;

/// A node id's hash under one core's [`Keyed`]: every table of that core takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeHash(pub(crate) u64);

impl NodeHash {
    pub(crate) fn of(keyed: &Keyed, node: &str) -> Self {
        NodeHash(keyed.hash_one(node))
    }
}

/// A map keyed by node id whose entries keep their id's hash.
#[derive(Clone, Debug)]
pub(crate) struct NodeTable<V> {
    table: HashTable<(u64, NodeId, V)>,
    keyed: Keyed,
}

impl<V> NodeTable<V> {
    pub(crate) fn new(keyed: Keyed) -> Self {
        NodeTable {
            table: HashTable::new(),
            keyed,
        }
    }

    pub(crate) fn hash(&self, node: &str) -> NodeHash {
        NodeHash::of(&self.keyed, node)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, node: &str) -> Option<&V> {
        let hash = self.hash(node);
        let found = self.table.find(hash.0, |(_, id, _)| id == node);
        found.map(|(.., value)| value)
    }

    pub(crate) fn get_mut(&mut self, hash: NodeHash, node: &str) -> Option<&mut V> {
        let found = self.table.find_mut(hash.0, |(_, id, _)| id == node);
        found.map(|(.., value)| value)
    }

    /// The value of `node`, made by `new` (and the id copied) when it has none.
    pub(crate) fn get_or_insert_with(
        &mut self,
        hash: NodeHash,
        node: &str,
        new: impl FnOnce() -> V,
    ) -> &mut V {
        let eq = |(_, id, _): &(u64, NodeId, V)| id == node;
        match self.table.entry(hash.0, eq, |(hash, ..)| *hash) {
            Entry::Occupied(entry) => &mut entry.into_mut().2,
            Entry::Vacant(entry) => {
                &mut entry.insert((hash.0, node.to_owned(), new())).into_mut().2
            }
        }
    }

    pub(crate) fn insert(&mut self, node: NodeId, value: V) {
        let hash = self.hash(&node);
        match self.get_mut(hash, &node) {
            Some(old) => *old = value,
            None => {
                _ = self
                    .table
                    .insert_unique(hash.0, (hash.0, node, value), |(h, ..)| *h)
            }
        }
    }

    pub(crate) fn remove(&mut self, node: &str) -> Option<V> {
        let hash = self.hash(node);
        let found = self.table.find_entry(hash.0, |(_, id, _)| id == node);
        found.ok().map(|entry| entry.remove().0 .2)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.table.iter().map(|(_, node, value)| (node, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_finds_inserts_and_removes_by_id_across_growth() {
        let mut table = NodeTable::new(keyed(7));
        for i in 0..1000 {
            let node = format!("node-{i}");
            let hash = table.hash(&node);
            assert_eq!(*table.get_or_insert_with(hash, &node, || i), i);
        }
        assert_eq!(table.len(), 1000);
        let hash = table.hash("node-500");
        assert_eq!(table.get_mut(hash, "node-500"), Some(&mut 500));
        assert_eq!(*table.get_or_insert_with(hash, "node-500", || 0), 500);
        assert_eq!(table.get_mut(table.hash("absent"), "absent"), None);
        table.insert("node-1".into(), 11);
        assert_eq!(table.remove("node-1"), Some(11));
        assert_eq!(table.remove("node-1"), None);
        assert_eq!(table.len(), 999);
        // Another table of the same core takes the same hash.
        let mut other = NodeTable::new(keyed(7));
        other.insert("node-500".into(), ());
        assert!(other.get_mut(hash, "node-500").is_some());
    }
}
