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

/// A map keyed by node id whose entries keep their id's hash. The ids are kept end to end
/// in one buffer: meeting a node costs a copy of its id, not an allocation.
#[derive(Debug)]
pub(crate) struct NodeTable<V> {
    table: HashTable<Slot<V>>,
    ids: String,
    /// Bytes of `ids` whose entries were removed: reclaimed once they are most of it.
    freed: usize,
    keyed: Keyed,
}

#[derive(Debug)]
struct Slot<V> {
    hash: u64,
    /// Where its id is in the table's `ids`.
    at: usize,
    len: usize,
    value: V,
}

impl<V> Slot<V> {
    fn id<'a>(&self, ids: &'a str) -> &'a str {
        &ids[self.at..self.at + self.len]
    }
}

impl<V> NodeTable<V> {
    pub(crate) fn new(keyed: Keyed) -> Self {
        NodeTable {
            table: HashTable::new(),
            ids: String::new(),
            freed: 0,
            keyed,
        }
    }

    pub(crate) fn hash(&self, node: &str) -> NodeHash {
        NodeHash::of(&self.keyed, node)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, hash: NodeHash, node: &str) -> Option<&V> {
        let ids = &self.ids;
        let found = self.table.find(hash.0, |slot| slot.id(ids) == node);
        found.map(|slot| &slot.value)
    }

    pub(crate) fn get_mut(&mut self, hash: NodeHash, node: &str) -> Option<&mut V> {
        let ids = &self.ids;
        let found = self.table.find_mut(hash.0, |slot| slot.id(ids) == node);
        found.map(|slot| &mut slot.value)
    }

    /// The value of `node`, made by `new` (and the id copied) when it has none.
    pub(crate) fn get_or_insert_with(
        &mut self,
        hash: NodeHash,
        node: &str,
        new: impl FnOnce() -> V,
    ) -> &mut V {
        let ids = &self.ids;
        let eq = |slot: &Slot<V>| slot.id(ids) == node;
        match self.table.entry(hash.0, eq, |slot| slot.hash) {
            Entry::Occupied(entry) => &mut entry.into_mut().value,
            Entry::Vacant(entry) => {
                let (at, len) = (self.ids.len(), node.len());
                self.ids.push_str(node);
                let slot = Slot {
                    hash: hash.0,
                    at,
                    len,
                    value: new(),
                };
                &mut entry.insert(slot).into_mut().value
            }
        }
    }

    pub(crate) fn insert(&mut self, hash: NodeHash, node: &str, value: V)
    where
        V: Copy,
    {
        *self.get_or_insert_with(hash, node, || value) = value;
    }

    pub(crate) fn remove(&mut self, node: &str) -> Option<V> {
        let (hash, ids) = (self.hash(node).0, &self.ids);
        let found = self.table.find_entry(hash, |slot| slot.id(ids) == node);
        let slot = found.ok()?.remove().0;
        self.freed += slot.len;
        if self.freed > self.ids.len() / 2 {
            self.compact();
        }
        Some(slot.value)
    }

    /// Copies the ids still in use to a buffer of their own.
    fn compact(&mut self) {
        let mut ids = String::with_capacity(self.ids.len() - self.freed);
        for slot in self.table.iter_mut() {
            let at = ids.len();
            ids.push_str(slot.id(&self.ids));
            slot.at = at;
        }
        (self.ids, self.freed) = (ids, 0);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        let ids = &self.ids;
        self.table.iter().map(|slot| (slot.id(ids), &slot.value))
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
        table.insert(table.hash("node-1"), "node-1", 11);
        assert_eq!(table.remove("node-1"), Some(11));
        assert_eq!(table.remove("node-1"), None);
        assert_eq!(table.len(), 999);
        // Removing most of them reclaims their ids' room; the rest are still found.
        for i in 2..900 {
            assert_eq!(table.remove(&format!("node-{i}")), Some(i));
        }
        assert!(table.ids.len() < 2 * "node-999".len() * table.len());
        let mut left: Vec<(String, i32)> = table.iter().map(|(n, v)| (n.to_owned(), *v)).collect();
        left.sort_by_key(|&(_, v)| v);
        assert_eq!(left.len(), 101);
        assert_eq!(left[0], ("node-0".to_owned(), 0));
        assert_eq!(table.get(table.hash("node-950"), "node-950"), Some(&950));
        // Another table of the same core takes the same hash.
        let mut other = NodeTable::new(keyed(7));
        other.insert(hash, "node-500", ());
        assert!(other.get_mut(hash, "node-500").is_some());
    }
}
