//! Tag dictionaries: strings ↔ dense `u32` ids, per tag key.

use hashbrown::HashMap;
use std::sync::Arc;

/// A tag key (or a built-in low-cardinality field), as a dense id. Key ids start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKeyId(pub u32);

/// A value of one tag key, as a dense id. `0` means absent (null); ids of real values start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TagValueId(pub u32);

impl TagValueId {
    /// Absent value (JSON `null`).
    pub const NULL: TagValueId = TagValueId(0);
    /// The id every string gets once the dictionary is full; it reads back as [`OVERFLOW_VALUE`].
    pub const OVERFLOW: TagValueId = TagValueId(u32::MAX);
}

/// What an overflowed value reads back as.
pub const OVERFLOW_VALUE: &str = "__overflow__";

/// The key id of the key-name dictionary itself: its values are the names of the other keys.
pub(crate) const KEY_NAMES: u32 = 0;

/// Approximate bytes per entry beyond the string itself: two `Arc` pointers, the hash slot and the `Arc` header.
const ENTRY_OVERHEAD: usize = 56;

/// The built-in low-cardinality RequestLog fields, dictionary-encoded like tags. Their key names start with `@`
/// so they can never collide with a user tag key.
pub const FIELD_KEYS: [&str; 10] = [
    "@l7_protocol",
    "@version",
    "@request_type",
    "@request_domain",
    "@endpoint",
    "@response_status",
    "@ip",
    "@l4_protocol",
    "@tap_side",
    "@process_name",
];

#[derive(Debug, Clone, Default)]
struct KeyDict {
    by_str: HashMap<Arc<str>, u32>,
    /// `by_id[i]` is the string of id `i + 1`.
    by_id: Vec<Arc<str>>,
}

/// One entry of a dictionary, as synced and persisted: `key`'s value `id` is `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key id (0 for the key-name dictionary).
    pub key: u32,
    /// Value id.
    pub id: u32,
    /// The string.
    pub value: Arc<str>,
}

/// String ↔ id dictionaries for every tag key, with a memory cap.
///
/// Single-owner by design: the encoding thread owns its dictionary, so lookups and inserts on the hot path take
/// no lock at all and can never wait for another thread (readers elsewhere use snapshots or the server's
/// [`crate::GlobalDictionary`]). Ids are dense and never reused; once [`Dictionary::memory_bytes`] would pass
/// the cap, new strings get [`TagValueId::OVERFLOW`] and are counted in [`Dictionary::overflowed`].
#[derive(Debug, Clone)]
pub struct Dictionary {
    keys: Vec<KeyDict>,
    bytes: usize,
    cap_bytes: usize,
    overflowed: u64,
    /// Entries added since the last [`Dictionary::take_new_entries`], in id order.
    journal: Vec<(u32, u32)>,
}

impl Dictionary {
    /// Default memory cap: 64 MiB of strings and index.
    pub const DEFAULT_CAP_BYTES: usize = 64 << 20;

    /// An empty dictionary holding at most `cap_bytes` (approximately, strings plus index), with the built-in
    /// field keys interned first (so they have the same ids everywhere).
    pub fn new(cap_bytes: usize) -> Dictionary {
        let mut d = Dictionary {
            keys: vec![KeyDict::default()],
            bytes: 0,
            cap_bytes,
            overflowed: 0,
            journal: Vec::new(),
        };
        for k in FIELD_KEYS {
            d.key_id(k);
        }
        d
    }

    /// The id of key `name`, interned if new. Key names are never refused by the cap (they are few).
    pub fn key_id(&mut self, name: &str) -> TagKeyId {
        let id = self.intern(KEY_NAMES, name, true);
        TagKeyId(id)
    }

    /// The id of a built-in field key (see [`FIELD_KEYS`]), by index.
    pub(crate) fn field_key(i: usize) -> TagKeyId {
        TagKeyId(i as u32 + 1)
    }

    /// The id of `value` under `key`, interned if new ([`TagValueId::OVERFLOW`] when the cap is reached).
    ///
    /// # Panics
    /// Never; an unknown `key` is created empty.
    #[inline]
    pub fn value_id(&mut self, key: TagKeyId, value: &str) -> TagValueId {
        TagValueId(self.intern(key.0, value, false))
    }

    /// The id of an optional value (`None` → [`TagValueId::NULL`]).
    #[inline]
    pub fn opt_value_id(&mut self, key: TagKeyId, value: Option<&str>) -> TagValueId {
        value.map_or(TagValueId::NULL, |v| self.value_id(key, v))
    }

    fn intern(&mut self, key: u32, value: &str, force: bool) -> u32 {
        let k = key as usize;
        if let Some(&id) = self.keys.get(k).and_then(|d| d.by_str.get(value)) {
            return id;
        }
        let cost = value.len() + ENTRY_OVERHEAD;
        if !force && self.bytes + cost > self.cap_bytes {
            self.overflowed += 1;
            return TagValueId::OVERFLOW.0;
        }
        if self.keys.len() <= k {
            self.keys.resize_with(k + 1, KeyDict::default);
        }
        let d = &mut self.keys[k];
        let id = d.by_id.len() as u32 + 1;
        let s: Arc<str> = Arc::from(value);
        d.by_id.push(s.clone());
        d.by_str.insert(s, id);
        self.bytes += cost;
        self.journal.push((key, id));
        id
    }

    /// The id of `value` under `key` without inserting.
    pub fn lookup(&self, key: TagKeyId, value: &str) -> Option<TagValueId> {
        self.keys
            .get(key.0 as usize)?
            .by_str
            .get(value)
            .map(|&id| TagValueId(id))
    }

    /// The id of key `name` without inserting.
    pub fn lookup_key(&self, name: &str) -> Option<TagKeyId> {
        self.keys.first()?.by_str.get(name).map(|&id| TagKeyId(id))
    }

    /// The string of `id` under `key` (`None` for null and unknown ids; the overflow id reads as
    /// [`OVERFLOW_VALUE`]).
    pub fn value(&self, key: TagKeyId, id: TagValueId) -> Option<&str> {
        if id == TagValueId::OVERFLOW {
            return Some(OVERFLOW_VALUE);
        }
        let i = id.0.checked_sub(1)? as usize;
        self.keys.get(key.0 as usize)?.by_id.get(i).map(|s| &**s)
    }

    /// The name of key `id`.
    pub fn key_name(&self, id: TagKeyId) -> Option<&str> {
        self.value(TagKeyId(KEY_NAMES), TagValueId(id.0))
    }

    /// Number of values of `key`.
    pub fn len(&self, key: TagKeyId) -> u32 {
        self.keys
            .get(key.0 as usize)
            .map_or(0, |d| d.by_id.len() as u32)
    }

    /// Number of keys (including the key-name dictionary).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// True when no user value was ever interned.
    pub fn is_empty(&self) -> bool {
        self.keys.iter().skip(1).all(|d| d.by_id.is_empty())
    }

    /// Approximate memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    /// Values refused because the cap was reached.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// The entries of `key` with ids above `after`, in id order.
    pub fn entries_after(&self, key: u32, after: u32) -> impl Iterator<Item = Entry> + '_ {
        let d = self.keys.get(key as usize);
        let list: &[Arc<str>] = d.map_or(&[], |d| &d.by_id);
        list.iter()
            .enumerate()
            .skip(after as usize)
            .map(move |(i, s)| Entry {
                key,
                id: i as u32 + 1,
                value: s.clone(),
            })
    }

    /// Entries added since the last call, in the order they were added (for persistence).
    pub fn take_new_entries(&mut self) -> Vec<Entry> {
        let journal = std::mem::take(&mut self.journal);
        journal
            .into_iter()
            .filter_map(|(key, id)| {
                let value = self
                    .keys
                    .get(key as usize)?
                    .by_id
                    .get(id as usize - 1)?
                    .clone();
                Some(Entry { key, id, value })
            })
            .collect()
    }

    /// Re-insert an entry read back from storage or the wire. The entry must be the next id of its key.
    ///
    /// # Errors
    /// `Err(expected_id)` when `entry.id` is not the next id of its key.
    pub fn restore(&mut self, entry: &Entry) -> Result<(), u32> {
        let next = self.len(TagKeyId(entry.key)) + 1;
        if entry.id != next {
            // Re-sent entries that are already known with the same value are fine.
            if self.value(TagKeyId(entry.key), TagValueId(entry.id)) == Some(&*entry.value) {
                return Ok(());
            }
            return Err(next);
        }
        let id = self.intern(entry.key, &entry.value, true);
        debug_assert_eq!(id, entry.id);
        Ok(())
    }

    /// Forget the journal (entries already persisted by a restore).
    pub(crate) fn clear_journal(&mut self) {
        self.journal.clear();
    }
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary::new(Self::DEFAULT_CAP_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_stable_and_per_key() {
        let mut d = Dictionary::default();
        let pod = d.key_id("k8s.pod");
        let ns = d.key_id("k8s.namespace");
        assert_eq!(d.key_id("k8s.pod"), pod);
        assert_eq!(d.value_id(pod, "web-1"), TagValueId(1));
        assert_eq!(d.value_id(pod, "web-2"), TagValueId(2));
        assert_eq!(d.value_id(ns, "web-1"), TagValueId(1));
        assert_eq!(d.value_id(pod, "web-1"), TagValueId(1));
        assert_eq!(d.value(pod, TagValueId(2)), Some("web-2"));
        assert_eq!(d.value(pod, TagValueId::NULL), None);
        assert_eq!(d.key_name(pod), Some("k8s.pod"));
        assert_eq!(d.lookup(ns, "nope"), None);
    }

    #[test]
    fn cap_gives_overflow_id_and_counts() {
        let mut d = Dictionary::new(0);
        let k = d.key_id("k");
        assert_eq!(d.value_id(k, "a"), TagValueId::OVERFLOW);
        assert_eq!(d.overflowed(), 1);
        assert_eq!(d.value(k, TagValueId::OVERFLOW), Some(OVERFLOW_VALUE));
    }

    #[test]
    fn journal_lists_new_entries_once() {
        let mut d = Dictionary::default();
        d.take_new_entries();
        let k = d.key_id("x");
        d.value_id(k, "v");
        let e = d.take_new_entries();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].value.as_ref(), "v");
        assert!(d.take_new_entries().is_empty());
    }
}
