//! The nodes the researcher core deals with, each under a small number: a reply's node id is
//! hashed and looked up once, in one table, and each request keeps where it stands with each
//! node in an array indexed by that number rather than in a table of its own.

use std::hash::BuildHasher;
use std::time::Duration;

use hashbrown::hash_table::{self, HashTable};

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

/// A node's number in the [`Registry`]. It stays the node's while a request or the roster
/// holds it or the node is heard; after that it may go to another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeRef(u32);

impl NodeRef {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn from_index(index: usize) -> Self {
        NodeRef(index as u32)
    }
}

/// Every node a request in flight or the roster holds, and every node heard without presence
/// (both bounded by the caller): what the network sends is forgotten when nothing holds it
/// any more. The ids are kept end to end in one buffer: meeting a node costs a copy of its
/// id, not an allocation.
#[derive(Debug)]
pub(crate) struct Registry {
    index: HashTable<Slot>,
    entries: Vec<Record>,
    ids: String,
    /// Bytes of `ids` whose entries were forgotten: reclaimed once they are most of it.
    freed: usize,
    /// Numbers of forgotten entries, given to the next nodes met.
    free: Vec<u32>,
    heard: usize,
    keyed: Keyed,
}

/// A node in the index: its number, and its id's hash folded to 32 bits, from which the
/// table's hash is made again: growing the table reads no entry.
#[derive(Clone, Copy, Debug)]
struct Slot {
    number: u32,
    hash: u32,
}

impl Slot {
    /// The table's hash of a node whose folded hash is `hash`: hashbrown takes buckets from
    /// the low bits and tags from the top seven.
    fn spread(hash: u32) -> u64 {
        (u64::from(hash) << 32) | u64::from(hash)
    }

    fn table_hash(&self) -> u64 {
        Slot::spread(self.hash)
    }
}

#[derive(Debug)]
struct Record {
    hash: u32,
    len: u32,
    /// Where its id is in `ids`.
    at: usize,
    /// How long it took to answer a broadcast, when it is heard without presence (zero when
    /// an earlier process knew it by presence only): broadcasts expect it.
    heard: Option<Duration>,
    /// The requests in flight, and the roster, that hold its number.
    holders: u32,
}

impl Record {
    fn id<'a>(&self, ids: &'a str) -> &'a str {
        &ids[self.at..self.at + self.len as usize]
    }
}

impl Registry {
    pub(crate) fn new(keyed: Keyed) -> Self {
        Registry {
            index: HashTable::new(),
            entries: Vec::new(),
            ids: String::new(),
            freed: 0,
            free: Vec::new(),
            heard: 0,
            keyed,
        }
    }

    /// `node`'s id hashed and folded to 32 bits.
    fn hash(&self, node: &str) -> u32 {
        let hash = self.keyed.hash_one(node);
        (hash ^ (hash >> 32)) as u32
    }

    /// `node`'s number, if it has one.
    pub(crate) fn find(&self, node: &str) -> Option<NodeRef> {
        let hash = self.hash(node);
        let (entries, ids) = (&self.entries, &self.ids);
        let is = |slot: &Slot| slot.hash == hash && entries[slot.number as usize].id(ids) == node;
        let found = self.index.find(Slot::spread(hash), is);
        found.map(|slot| NodeRef(slot.number))
    }

    /// `node`'s number, given now if it has none: hold it or hear the node, else
    /// [`forget_if_unused`](Self::forget_if_unused) it.
    pub(crate) fn enter(&mut self, node: &str) -> NodeRef {
        let hash = self.hash(node);
        let (entries, ids) = (&self.entries, &self.ids);
        let is = |slot: &Slot| slot.hash == hash && entries[slot.number as usize].id(ids) == node;
        match self.index.entry(Slot::spread(hash), is, Slot::table_hash) {
            hash_table::Entry::Occupied(found) => NodeRef(found.get().number),
            hash_table::Entry::Vacant(vacant) => {
                let entry = Record {
                    hash,
                    at: self.ids.len(),
                    // Ids come whole from a payload within the limits: far below 4 GiB.
                    len: node.len() as u32,
                    heard: None,
                    holders: 0,
                };
                self.ids.push_str(node);
                let i = match self.free.pop() {
                    Some(i) => {
                        self.entries[i as usize] = entry;
                        i
                    }
                    None => {
                        self.entries.push(entry);
                        (self.entries.len() - 1) as u32
                    }
                };
                vacant.insert(Slot { number: i, hash });
                NodeRef(i)
            }
        }
    }

    /// A request or the roster holds `node`'s number: it is not given to another node meanwhile.
    #[inline]
    pub(crate) fn hold(&mut self, node: NodeRef) {
        self.entries[node.index()].holders += 1;
    }

    /// A request holds `node`'s number no more.
    pub(crate) fn release(&mut self, node: NodeRef) {
        self.entries[node.index()].holders -= 1;
        self.forget_if_unused(node);
    }

    /// Forgets `node` if no request holds it and it is not heard. Asked on every reply to a
    /// broadcast: the question is inlined, the forgetting is not.
    #[inline]
    pub(crate) fn forget_if_unused(&mut self, node: NodeRef) {
        let entry = &self.entries[node.index()];
        if entry.holders == 0 && entry.heard.is_none() {
            self.forget(node);
        }
    }

    /// Forgets `node`, which nothing holds.
    fn forget(&mut self, node: NodeRef) {
        let entry = &self.entries[node.index()];
        let (hash, len) = (entry.hash, entry.len);
        let found = self
            .index
            .find_entry(Slot::spread(hash), |slot| slot.number == node.0);
        if let Ok(found) = found {
            found.remove();
            self.free.push(node.0);
            self.freed += len as usize;
            if self.freed > self.ids.len() / 2 {
                self.compact();
            }
        }
    }

    /// Copies the ids still in use to a buffer of their own.
    fn compact(&mut self) {
        let mut ids = String::with_capacity(self.ids.len() - self.freed);
        for slot in self.index.iter() {
            let entry = &mut self.entries[slot.number as usize];
            let at = ids.len();
            ids.push_str(entry.id(&self.ids));
            entry.at = at;
        }
        (self.ids, self.freed) = (ids, 0);
    }

    /// A bound on the numbers given so far.
    pub(crate) fn count(&self) -> usize {
        self.entries.len()
    }

    /// How many nodes have a number.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.index.len()
    }

    /// How many nodes are heard.
    pub(crate) fn heard_len(&self) -> usize {
        self.heard
    }

    /// How long `node`, heard, took.
    pub(crate) fn heard_took(&self, node: &str) -> Option<Duration> {
        self.entries[self.find(node)?.index()].heard
    }

    /// The id of the node numbered `node`.
    pub(crate) fn id(&self, node: NodeRef) -> &str {
        self.entries[node.index()].id(&self.ids)
    }

    /// The nodes heard, with their numbers and how long each took.
    pub(crate) fn heard(&self) -> impl Iterator<Item = (NodeRef, &str, Duration)> {
        let (entries, ids) = (&self.entries, &self.ids);
        self.index.iter().filter_map(move |slot| {
            let entry = &entries[slot.number as usize];
            Some((NodeRef(slot.number), entry.id(ids), entry.heard?))
        })
    }

    /// How long `node`, without presence, took to answer a broadcast: updated if it is heard
    /// already, remembered if it is met (`meet`) and fewer than `capacity` are heard.
    #[inline]
    pub(crate) fn hear(&mut self, node: NodeRef, took: Duration, meet: bool, capacity: usize) {
        let entry = &mut self.entries[node.index()];
        match &mut entry.heard {
            Some(known) => *known = took,
            None if meet && self.heard < capacity => {
                entry.heard = Some(took);
                self.heard += 1;
            }
            None => self.forget_if_unused(node),
        }
    }

    /// Forgets that `node` was heard: broadcasts expect it no more.
    pub(crate) fn unhear(&mut self, node: &str) {
        let Some(found) = self.find(node) else {
            return;
        };
        if self.entries[found.index()].heard.take().is_some() {
            self.heard -= 1;
            self.forget_if_unused(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_stays_while_held_or_heard_and_is_given_again_after() {
        let mut nodes = Registry::new(keyed(7));
        let refs: Vec<NodeRef> = (0..1000)
            .map(|i| nodes.enter(&format!("node-{i}")))
            .collect();
        for (i, &r) in refs.iter().enumerate() {
            assert_eq!(r.index(), i, "numbers are dense");
            assert_eq!(nodes.find(&format!("node-{i}")), Some(r));
            assert_eq!(nodes.enter(&format!("node-{i}")), r);
            nodes.hold(r);
        }
        assert_eq!(nodes.find("absent"), None);
        // Heard, a node outlives its last holder; heard no more, it is forgotten.
        let one = refs[1];
        nodes.hear(one, Duration::from_millis(3), true, 1);
        nodes.hear(refs[2], Duration::from_millis(4), true, 1);
        assert_eq!(nodes.heard_len(), 1, "bounded by the capacity");
        nodes.release(one);
        assert_eq!(nodes.heard_took("node-1"), Some(Duration::from_millis(3)));
        nodes.hear(one, Duration::from_millis(5), false, 1);
        let heard: Vec<_> = nodes.heard().collect();
        assert_eq!(heard, [(one, "node-1", Duration::from_millis(5))]);
        assert_eq!(nodes.id(one), "node-1");
        nodes.unhear("node-1");
        assert_eq!((nodes.find("node-1"), nodes.heard_len()), (None, 0));
        // Released, most are forgotten; the ids' room is reclaimed and the rest still found.
        for &r in &refs[2..900] {
            nodes.release(r);
        }
        assert!(nodes.ids.len() < 2 * "node-999".len() * nodes.index.len());
        assert_eq!(nodes.index.len(), 101);
        assert_eq!(nodes.find("node-950"), Some(refs[950]));
        assert_eq!(nodes.find("node-0"), Some(refs[0]));
        // A forgotten number goes to the next node met.
        let new = nodes.enter("newcomer");
        assert!(new.index() < 900 && new != refs[0]);
        assert_eq!(nodes.find("newcomer"), Some(new));
        nodes.forget_if_unused(new);
        assert_eq!(nodes.find("newcomer"), None);
    }
}
