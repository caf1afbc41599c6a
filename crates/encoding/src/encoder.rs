//! The agent-side [`Encoder`]: RequestLogs (and, with the `metrics` feature, metric rows) into batches.
//!
//! # Cost model
//!
//! The encoder makes **one pass** over the logs and touches each log once, writing every column into scratch
//! buffers that are kept between batches (a steady encoder allocates only the returned batch and the per-batch
//! text dedup tables). Per log, the costs left are:
//!
//! - low-cardinality fields: a pointer/length check against the previous row's string (enum names are
//!   `&'static str`, so this is one compare), and a dictionary lookup (one foldhash of a borrowed `&str`, no
//!   allocation) only when the value changed;
//! - tags: with pre-interned [`TagSet`]s, a copy of `(key id, value id)` pairs into per-key run-length
//!   builders; with string tags, the whole tag map is serialised into one reused buffer, hashed once and looked
//!   up in a bounded cache of tag sets (one hash and one `memcmp` for all the log's tags instead of one lookup
//!   per tag), falling back to per-tag dictionary lookups on a miss;
//! - text: one hash per present value that differs from the previous row's (batch deduplication).

use crate::batch::{
    checksum, F_DOMAIN, F_ENDPOINT, F_IP, F_L4, F_PROCESS, F_PROTO, F_STATUS, F_TAP, F_TYPE,
    F_VERSION, HEADER_LEN, MAGIC, MAX_BODY_BYTES, MAX_ROWS, MAX_TAG_KEYS, VERSION,
};
use crate::dict::{Dictionary, TagKeyId, TagValueId};
use crate::store::PersistentDictionary;
use crate::varint::{put_bytes, put_column, put_u64, zigzag};
use crate::EncodeError;
use fathom_model::RequestLog;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[cfg(test)]
mod reference;

/// How dictionary entries are retired from batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// A batch carries every entry the receiver has not acknowledged ([`Encoder::ack`]); entries of batches
    /// still in flight are repeated until one of them is acknowledged. Safe over lossy transports.
    Acknowledged,
    /// The transport delivers every batch in order (a TCP stream, a file): each entry is sent exactly once.
    Reliable,
}

pub(crate) enum DictHandle {
    Memory(Dictionary),
    Persistent(PersistentDictionary),
}

impl DictHandle {
    pub(crate) fn get(&mut self) -> &mut Dictionary {
        match self {
            DictHandle::Memory(d) => d,
            DictHandle::Persistent(p) => p.dict(),
        }
    }
}

/// Source of encoder instance ids, so a [`TagSet`] can only be used with the encoder that interned it.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A set of resource tags interned once in one [`Encoder`]'s dictionary, to be reused by every log it applies
/// to (typically: resolved by the tagging stage once per flow, or once per distinct pod pair).
///
/// Cheap to clone (an `Arc`). Holds `(key id, value id)` pairs sorted by key name, exactly the order the
/// string path reads a log's `tags` map in, so both paths write the same bytes. Ids are never reused by a
/// dictionary, so a `TagSet` stays valid for the encoder's whole life; using it with another encoder is refused
/// ([`EncodeError::TagSets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSet {
    owner: u64,
    pairs: Arc<[(u32, u32)]>,
}

impl TagSet {
    /// Number of tags.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when the set has no tag.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `(key, value)` ids, sorted by key name.
    pub fn ids(&self) -> impl Iterator<Item = (TagKeyId, TagValueId)> + '_ {
        self.pairs
            .iter()
            .map(|&(k, v)| (TagKeyId(k), TagValueId(v)))
    }
}

/// Most unacknowledged batches remembered; older ones are forgotten (their entries will simply be re-sent).
const MAX_IN_FLIGHT: usize = 1024;

/// Bytes of serialised tag maps the string path's tag-set cache may hold before it is emptied.
pub const TAG_CACHE_BYTES: usize = 32 << 20;

/// One cached string tag map: its serialised form (for verification) and its pairs.
struct CachedSet {
    bytes: Box<[u8]>,
    pairs: Arc<[(u32, u32)]>,
}

/// Cache of string tag maps already interned, looked up by one hash over the whole map.
#[derive(Default)]
struct TagCache {
    table: HashTable<(u64, u32)>,
    sets: Vec<CachedSet>,
    state: DefaultHashBuilder,
    bytes: usize,
    resets: u64,
}

/// Whether `bytes` (`u32le` length + bytes, for each key and value in order) is the serialisation of `tags`.
fn same_tags(bytes: &[u8], tags: &BTreeMap<String, String>) -> bool {
    let mut rest = bytes;
    for (k, v) in tags {
        for s in [k.as_bytes(), v.as_bytes()] {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            if u32::from_le_bytes(*len) as usize != s.len()
                || !tail.get(..s.len()).is_some_and(|t| eq_bytes(t, s))
            {
                return false;
            }
            rest = &tail[s.len()..];
        }
    }
    rest.is_empty()
}

impl TagCache {
    /// The pairs of `tags`, interning on a miss.
    #[inline]
    fn pairs(&mut self, dict: &mut Dictionary, tags: &BTreeMap<String, String>) -> &[(u32, u32)] {
        // Hash the values only (key sets rarely differ between logs; `same_tags` checks every byte anyway, so a
        // collision costs a comparison, never a wrong id).
        let mut h = self.state.build_hasher();
        h.write_usize(tags.len());
        for v in tags.values() {
            h.write(v.as_bytes());
        }
        let hash = h.finish();
        let sets = &self.sets;
        if let Some(&(_, i)) = self.table.find(hash, |&(eh, i)| {
            eh == hash && same_tags(&sets[i as usize].bytes, tags)
        }) {
            return &self.sets[i as usize].pairs;
        }
        let mut bytes = Vec::new();
        for s in tags.iter().flat_map(|(k, v)| [k, v]) {
            bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
            bytes.extend_from_slice(s.as_bytes());
        }
        let pairs: Arc<[(u32, u32)]> = tags
            .iter()
            .map(|(k, v)| {
                let key = dict.key_id(k);
                (key.0, dict.value_id(key, v).0)
            })
            .collect();
        let cost = bytes.len() + pairs.len() * 8 + 64;
        if self.bytes + cost > TAG_CACHE_BYTES {
            self.table.clear();
            self.sets.clear();
            self.bytes = 0;
            self.resets += 1;
        }
        self.bytes += cost;
        let i = self.sets.len() as u32;
        self.sets.push(CachedSet {
            bytes: bytes.into(),
            pairs,
        });
        self.table.insert_unique(hash, (hash, i), |e| e.0);
        &self.sets[i as usize].pairs
    }
}

/// A per-key tag column: the value id of every row (0 = no such tag), filled lazily.
#[derive(Default)]
struct TagCol {
    key: u32,
    ids: Vec<u32>,
}

/// Per-batch column buffers, kept between batches.
#[derive(Default)]
struct Scratch {
    ids: [Vec<u32>; 11],
    starts: Vec<u8>,
    lens: Vec<u8>,
    opt_bits: [Vec<u8>; 9],
    opt_vals: [Vec<u8>; 9],
    port_src: Vec<u8>,
    port_dst: Vec<u32>,
    bytes: Vec<u8>,
    texts: [TextCol; 8],
    text_state: DefaultHashBuilder,
    tag_cols: Vec<TagCol>,
    ntag_cols: usize,
    /// Key id → index in `tag_cols` (`u32::MAX`: not in this batch).
    col_of_key: Vec<u32>,
    tmp: Vec<u8>,
    tmp2: Vec<u8>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        for c in &mut self.ids {
            c.clear();
            c.reserve(n);
        }
        for b in [
            &mut self.starts,
            &mut self.lens,
            &mut self.port_src,
            &mut self.bytes,
        ] {
            b.clear();
            b.reserve(n * 2);
        }
        for b in &mut self.opt_bits {
            b.clear();
            b.resize(n.div_ceil(8), 0);
        }
        for b in &mut self.opt_vals {
            b.clear();
        }
        self.port_dst.clear();
        for c in &mut self.texts {
            c.reset(n);
        }
        self.ntag_cols = 0;
    }

    #[inline]
    fn tag(&mut self, row: usize, key: u32, value: u32, n: usize) {
        let k = key as usize;
        if k >= self.col_of_key.len() {
            self.col_of_key.resize(k + 1, u32::MAX);
        }
        let mut c = self.col_of_key[k] as usize;
        if c == u32::MAX as usize {
            c = self.ntag_cols;
            self.ntag_cols += 1;
            if self.tag_cols.len() < self.ntag_cols {
                self.tag_cols.push(TagCol::default());
            }
            let col = &mut self.tag_cols[c];
            col.key = key;
            col.ids.clear();
            col.ids.resize(n, 0);
            self.col_of_key[k] = c as u32;
        }
        if let Some(slot) = self.tag_cols[c].ids.get_mut(row) {
            *slot = value;
        }
    }

    #[inline]
    fn opt(&mut self, col: usize, row: usize, v: Option<u64>) {
        if let Some(v) = v {
            self.opt_bits[col][row / 8] |= 1 << (row % 8);
            put_u64(&mut self.opt_vals[col], v);
        }
    }
}

/// The text columns, in wire order.
const TEXTS: [fn(&RequestLog) -> Option<&str>; 8] = [
    |l| l.request_resource.as_deref(),
    |l| l.response_exception.as_deref(),
    |l| l.response_result.as_deref(),
    |l| l.trace_id.as_deref(),
    |l| l.span_id.as_deref(),
    |l| l.parent_span_id.as_deref(),
    |l| l.x_request_id_0.as_deref(),
    |l| l.x_request_id_1.as_deref(),
];

/// One text column's batch deduplication. Holds row numbers, not strings, so it is kept (with its capacity)
/// between batches.
#[derive(Default)]
struct TextCol {
    /// (hash, row of the first occurrence, 1-based index).
    table: HashTable<(u64, u32, u32)>,
    /// Row of the first occurrence of each distinct string, in index order.
    uniq: Vec<u32>,
    idx: Vec<u32>,
}

impl TextCol {
    fn reset(&mut self, n: usize) {
        self.table.clear();
        self.uniq.clear();
        self.idx.clear();
        self.idx.reserve(n);
    }

    /// The 1-based index of `s` (found in row `row` of `logs`, column `col`).
    #[inline]
    fn index(
        &mut self,
        state: &DefaultHashBuilder,
        logs: &[RequestLog],
        col: usize,
        row: usize,
        s: &str,
    ) -> u32 {
        let hash = state.hash_one(s);
        let get = TEXTS[col];
        if let Some(&(_, _, i)) = self.table.find(hash, |&(h, r, _)| {
            h == hash && get(&logs[r as usize]).is_some_and(|t| t == s)
        }) {
            return i;
        }
        self.uniq.push(row as u32);
        let i = self.uniq.len() as u32;
        self.table
            .insert_unique(hash, (hash, row as u32, i), |e| e.0);
        i
    }
}

/// String equality that first tries the pointer (enum names are `&'static str`; cloned rows share nothing but
/// repeated borrowed values do).
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || eq_bytes(a.as_bytes(), b.as_bytes()))
}

/// Byte equality without a `memcmp` call for the short strings tags and fields are made of: two overlapping
/// fixed-size compares cover every byte of a 4..=32-byte string.
#[inline(always)]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        a.first_chunk::<N>() == b.first_chunk::<N>() && a.last_chunk::<N>() == b.last_chunk::<N>()
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..=7 => ends::<4>(a, b),
        8..=15 => ends::<8>(a, b),
        16..=32 => ends::<16>(a, b),
        _ => a == b,
    }
}

/// Agent side: turns RequestLogs into compact columnar batches.
///
/// Low-cardinality fields and every tag value become dictionary ids; timestamps are delta-encoded varints;
/// repeated ids are run-length encoded; high-cardinality text is deduplicated within the batch. A batch carries
/// only the dictionary entries its receiver has not acknowledged. Wire format: `docs/encoding.md`.
///
/// Tags can be given as strings in each log's `tags` map ([`Encoder::encode`]) or, faster, as [`TagSet`]s
/// interned once ([`Encoder::tag_set`], [`Encoder::encode_tagged`]); both write the same batch.
pub struct Encoder {
    pub(crate) dict: DictHandle,
    instance: u64,
    agent_id: u64,
    next_seq: u64,
    mode: SyncMode,
    /// Per key: the receiver knows ids `1..=acked[k]`.
    acked: Vec<u32>,
    /// Batches sent but not acknowledged: (seq, per-key watermark at send time).
    in_flight: VecDeque<(u64, Vec<u32>)>,
    zstd_level: Option<i32>,
    pub(crate) body: Vec<u8>,
    scratch: Scratch,
    tag_cache: TagCache,
}

impl Encoder {
    /// An encoder with an in-memory dictionary.
    pub fn new(agent_id: u64, mode: SyncMode) -> Encoder {
        Encoder::with_handle(DictHandle::Memory(Dictionary::default()), agent_id, mode)
    }

    /// An encoder whose dictionary persists in `store`: ids stay stable across agent restarts, and new entries
    /// are made durable before a batch that carries them is returned.
    pub fn with_store(store: PersistentDictionary, agent_id: u64, mode: SyncMode) -> Encoder {
        Encoder::with_handle(DictHandle::Persistent(store), agent_id, mode)
    }

    fn with_handle(dict: DictHandle, agent_id: u64, mode: SyncMode) -> Encoder {
        Encoder {
            dict,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            agent_id,
            next_seq: 0,
            mode,
            acked: Vec::new(),
            in_flight: VecDeque::new(),
            zstd_level: None,
            body: Vec::new(),
            scratch: Scratch::default(),
            tag_cache: TagCache::default(),
        }
    }

    /// Compress batch bodies with zstd at `level` (None: no compression).
    #[cfg(feature = "zstd")]
    pub fn set_zstd(&mut self, level: Option<i32>) {
        self.zstd_level = level;
    }

    /// The dictionary (for query-side translation on the agent, or statistics).
    pub fn dictionary(&mut self) -> &Dictionary {
        self.dict.get()
    }

    /// Times the string path's tag-set cache was emptied because it reached [`TAG_CACHE_BYTES`].
    pub fn tag_cache_resets(&self) -> u64 {
        self.tag_cache.resets
    }

    /// Intern a set of tags once; give the returned handle to [`Encoder::encode_tagged`] for every log it
    /// applies to. A key given twice keeps its last value (as inserting into a map would).
    pub fn tag_set<'a>(&mut self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> TagSet {
        let mut list: Vec<(&str, &str)> = tags.into_iter().collect();
        // Stable sort then keep the last of each key: the map semantics of `RequestLog::tags`.
        list.sort_by(|a, b| a.0.cmp(b.0));
        let mut dedup: Vec<(&str, &str)> = Vec::with_capacity(list.len());
        for (k, v) in list {
            match dedup.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => dedup.push((k, v)),
            }
        }
        let dict = self.dict.get();
        let pairs = dedup
            .into_iter()
            .map(|(k, v)| {
                let key = dict.key_id(k);
                (key.0, dict.value_id(key, v).0)
            })
            .collect();
        TagSet {
            owner: self.instance,
            pairs,
        }
    }

    /// The receiver has applied batch `seq`: entries it carried are not sent again.
    pub fn ack(&mut self, seq: u64) {
        while let Some((s, _)) = self.in_flight.front() {
            if *s > seq {
                break;
            }
            let Some((s, marks)) = self.in_flight.pop_front() else {
                break;
            };
            if s == seq {
                merge_marks(&mut self.acked, &marks);
            }
        }
    }

    /// Tell the encoder what a (re)connected receiver already knows: per key id, the highest id it has.
    pub fn set_acked(&mut self, watermarks: &[u32]) {
        self.acked = watermarks.to_vec();
        self.in_flight.clear();
    }

    /// Encode `logs` (tags from each log's `tags` map) as one batch; returns its sequence number and bytes.
    ///
    /// # Errors
    /// [`EncodeError::TooManyRows`] over [`MAX_ROWS`], [`EncodeError::TooManyTagKeys`] over [`MAX_TAG_KEYS`]
    /// distinct tag keys, [`EncodeError::TooLarge`] over [`MAX_BODY_BYTES`], [`EncodeError::Store`] when new
    /// entries cannot be made durable, [`EncodeError::Compress`].
    pub fn encode(&mut self, logs: &[RequestLog]) -> Result<(u64, Vec<u8>), EncodeError> {
        self.encode_rows(logs, None::<&[&TagSet]>)
    }

    /// Encode `logs` whose tags are given as pre-interned sets: row `i` carries the tags of `tags[i]`. The logs'
    /// own `tags` maps must be empty. The batch is the one [`Encoder::encode`] would write for the same logs
    /// with those tags as strings.
    ///
    /// # Errors
    /// As [`Encoder::encode`], and [`EncodeError::TagSets`] when `tags` and `logs` differ in length, a log also
    /// has string tags, or a set comes from another encoder.
    pub fn encode_tagged<T: std::borrow::Borrow<TagSet>>(
        &mut self,
        logs: &[RequestLog],
        tags: &[T],
    ) -> Result<(u64, Vec<u8>), EncodeError> {
        if tags.len() != logs.len() {
            return Err(EncodeError::TagSets {
                row: tags.len().min(logs.len()),
                what: "tag set count differs from log count",
            });
        }
        for (row, (t, l)) in tags.iter().zip(logs).enumerate() {
            if t.borrow().owner != self.instance {
                return Err(EncodeError::TagSets {
                    row,
                    what: "tag set interned by another encoder",
                });
            }
            if !l.tags.is_empty() {
                return Err(EncodeError::TagSets {
                    row,
                    what: "log has string tags as well as a tag set",
                });
            }
        }
        self.encode_rows(logs, Some(tags))
    }

    fn encode_rows<T: std::borrow::Borrow<TagSet>>(
        &mut self,
        logs: &[RequestLog],
        sets: Option<&[T]>,
    ) -> Result<(u64, Vec<u8>), EncodeError> {
        if logs.len() > MAX_ROWS {
            return Err(EncodeError::TooManyRows {
                rows: logs.len(),
                max: MAX_ROWS,
            });
        }
        let n = logs.len();
        let Encoder {
            dict,
            scratch: s,
            tag_cache,
            ..
        } = self;
        let dict = dict.get();
        s.reset(n);
        let fk = Dictionary::field_key;
        let mut last: [(&str, u32); 11] = [("", 0); 11];
        let mut prev_text: [(&str, u32); 8] = [("", 0); 8];
        let mut prev_t = 0i64;
        for (row, log) in logs.iter().enumerate() {
            let cols: [(usize, Option<&str>); 11] = [
                (F_PROTO, Some(log.l7_protocol.as_str())),
                (F_VERSION, log.version.as_deref()),
                (F_TYPE, log.request_type.as_deref()),
                (F_DOMAIN, log.request_domain.as_deref()),
                (F_ENDPOINT, log.endpoint.as_deref()),
                (F_STATUS, Some(log.response_status.as_str())),
                (F_IP, Some(&log.ip_src)),
                (F_IP, Some(&log.ip_dst)),
                (F_L4, Some(log.l4_protocol.as_str())),
                (F_TAP, Some(log.tap_side.as_str())),
                (F_PROCESS, log.process_name.as_deref()),
            ];
            for (c, ((field, value), (last_s, last_id))) in
                cols.into_iter().zip(last.iter_mut()).enumerate()
            {
                let id = match value {
                    None => 0,
                    Some(v) if *last_id != 0 && same(last_s, v) => *last_id,
                    Some(v) => {
                        let id = dict.value_id(fk(field), v).0;
                        *last_s = v;
                        *last_id = id;
                        id
                    }
                };
                s.ids[c].push(id);
            }
            let t = log.start_time_us as i64;
            put_u64(&mut s.starts, zigzag(t.wrapping_sub(prev_t)));
            prev_t = t;
            put_u64(
                &mut s.lens,
                zigzag((log.end_time_us as i64).wrapping_sub(t)),
            );
            s.opt(0, row, log.response_duration_us);
            s.opt(1, row, log.request_id);
            s.opt(2, row, log.response_code.map(zigzag));
            s.opt(3, row, log.req_tcp_seq.map(u64::from));
            s.opt(4, row, log.resp_tcp_seq.map(u64::from));
            s.opt(5, row, log.syscall_trace_id_request);
            s.opt(6, row, log.syscall_trace_id_response);
            s.opt(7, row, log.process_id.map(u64::from));
            s.opt(8, row, log.thread_id.map(u64::from));
            put_u64(&mut s.port_src, u64::from(log.port_src));
            s.port_dst.push(u32::from(log.port_dst));
            put_u64(&mut s.bytes, log.captured_request_byte);
            put_u64(&mut s.bytes, log.captured_response_byte);
            for (c, (get, prev)) in TEXTS.iter().zip(&mut prev_text).enumerate() {
                let i = match get(log) {
                    None => 0,
                    Some(t) if prev.1 != 0 && same(prev.0, t) => prev.1,
                    Some(t) => {
                        let i = s.texts[c].index(&s.text_state, logs, c, row, t);
                        *prev = (t, i);
                        i
                    }
                };
                s.texts[c].idx.push(i);
            }
            let pairs: &[(u32, u32)] = match sets {
                Some(sets) => &sets[row].borrow().pairs,
                None if log.tags.is_empty() => &[],
                None => tag_cache.pairs(dict, &log.tags),
            };
            for &(k, v) in pairs {
                s.tag(row, k, v, n);
            }
        }
        // Reset the key → column map for the next batch (only the keys used).
        for c in &s.tag_cols[..s.ntag_cols] {
            s.col_of_key[c.key as usize] = u32::MAX;
        }
        if s.ntag_cols > MAX_TAG_KEYS {
            return Err(EncodeError::TooManyTagKeys {
                keys: s.ntag_cols,
                max: MAX_TAG_KEYS,
            });
        }
        let marks = self.write_entries()?;
        let s = &mut self.scratch;
        let body = &mut self.body;
        put_u64(body, n as u64);
        for c in &s.ids {
            put_runs(body, &mut s.tmp, c);
        }
        put_bytes(body, &s.starts);
        put_bytes(body, &s.lens);
        for (bits, vals) in s.opt_bits.iter().zip(&s.opt_vals) {
            put_u64(body, (bits.len() + vals.len()) as u64);
            body.extend_from_slice(bits);
            body.extend_from_slice(vals);
        }
        put_bytes(body, &s.port_src);
        put_runs(body, &mut s.tmp, &s.port_dst);
        put_bytes(body, &s.bytes);
        for (c, col) in s.texts.iter().enumerate() {
            let (tmp, runs) = (&mut s.tmp, &mut s.tmp2);
            tmp.clear();
            runs.clear();
            put_u64(tmp, col.uniq.len() as u64);
            for &r in &col.uniq {
                put_bytes(tmp, TEXTS[c](&logs[r as usize]).unwrap_or("").as_bytes());
            }
            let count = write_runs(runs, &col.idx);
            put_u64(tmp, count);
            tmp.extend_from_slice(runs);
            put_bytes(body, tmp);
        }
        let tmp = &mut s.tmp;
        tmp.clear();
        for c in &s.tag_cols[..s.ntag_cols] {
            put_u64(tmp, u64::from(c.key));
            let runs = &mut s.tmp2;
            runs.clear();
            let count = write_runs(runs, &c.ids);
            put_u64(tmp, count);
            tmp.extend_from_slice(runs);
        }
        put_column(body, s.ntag_cols as u64, tmp);
        self.finish(marks, MAGIC)
    }

    /// Make new entries durable, start the body with the entries the receiver lacks, and return the per-key
    /// watermarks this batch brings the receiver to.
    pub(crate) fn write_entries(&mut self) -> Result<Vec<u32>, EncodeError> {
        if let DictHandle::Persistent(p) = &mut self.dict {
            p.sync()?;
        }
        let dict = self.dict.get();
        let body = &mut self.body;
        body.clear();
        // Dictionary entries the receiver lacks: key names first, then values by key.
        let mut marks = Vec::with_capacity(dict.key_count());
        let mut count = 0u64;
        for k in 0..dict.key_count() as u32 {
            let have = self.acked.get(k as usize).copied().unwrap_or(0);
            count += u64::from(dict.len(TagKeyId(k)).saturating_sub(have));
            marks.push(dict.len(TagKeyId(k)));
        }
        put_u64(body, count);
        for k in 0..dict.key_count() as u32 {
            let have = self.acked.get(k as usize).copied().unwrap_or(0);
            for e in dict.entries_after(k, have) {
                put_u64(body, u64::from(e.key));
                put_u64(body, u64::from(e.id));
                put_bytes(body, e.value.as_bytes());
            }
        }
        Ok(marks)
    }

    /// Size check, header, optional compression, checksum, sync bookkeeping.
    pub(crate) fn finish(
        &mut self,
        marks: Vec<u32>,
        magic: [u8; 4],
    ) -> Result<(u64, Vec<u8>), EncodeError> {
        let body = &self.body;
        if body.len() > MAX_BODY_BYTES {
            return Err(EncodeError::TooLarge {
                bytes: body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        let seq = self.next_seq;
        let (flags, wire): (u8, std::borrow::Cow<'_, [u8]>) = match self.zstd_level {
            #[cfg(feature = "zstd")]
            Some(level) => (
                crate::batch::FLAG_ZSTD,
                zstd::bulk::compress(body, level)
                    .map_err(|e| EncodeError::Compress(e.to_string()))?
                    .into(),
            ),
            _ => (0, std::borrow::Cow::Borrowed(&body[..])),
        };
        self.next_seq += 1;
        let mut out = Vec::with_capacity(HEADER_LEN + wire.len());
        out.extend_from_slice(&magic);
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.agent_id.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(wire.len() as u32).to_le_bytes());
        let crc = checksum(&out, &wire);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&wire);
        match self.mode {
            SyncMode::Reliable => merge_marks(&mut self.acked, &marks),
            SyncMode::Acknowledged => {
                if self.in_flight.len() == MAX_IN_FLIGHT {
                    self.in_flight.pop_front();
                }
                self.in_flight.push_back((seq, marks));
            }
        }
        Ok((seq, out))
    }
}

fn merge_marks(acked: &mut Vec<u32>, marks: &[u32]) {
    if acked.len() < marks.len() {
        acked.resize(marks.len(), 0);
    }
    for (a, &m) in acked.iter_mut().zip(marks) {
        *a = (*a).max(m);
    }
}

/// Append `(length, value)` pairs for the runs of `v`; returns the number of runs.
#[inline]
pub(crate) fn write_runs(out: &mut Vec<u8>, v: &[u32]) -> u64 {
    let Some(&first) = v.first() else {
        return 0;
    };
    out.reserve(v.len().min(1 << 16) * 2);
    let mut count = 1u64;
    let (mut cur, mut len) = (first, 0u64);
    for &x in v {
        if x == cur {
            len += 1;
        } else {
            put_pair(out, len, cur);
            count += 1;
            (cur, len) = (x, 1);
        }
    }
    put_pair(out, len, cur);
    count
}

/// A run: its length and value as varints, with a fast path for the common one- and two-byte cases.
#[inline(always)]
fn put_pair(out: &mut Vec<u8>, len: u64, value: u32) {
    if len < 0x80 && value < 0x80 {
        out.extend_from_slice(&[len as u8, value as u8]);
    } else if len < 0x80 && value < 0x4000 {
        out.extend_from_slice(&[len as u8, (value as u8) | 0x80, (value >> 7) as u8]);
    } else {
        put_u64(out, len);
        put_u64(out, u64::from(value));
    }
}

/// A run-length encoded column: length prefix, run count, then `(length, value)` pairs.
pub(crate) fn put_runs(body: &mut Vec<u8>, tmp: &mut Vec<u8>, v: &[u32]) {
    tmp.clear();
    let count = write_runs(tmp, v);
    put_column(body, count, tmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GlobalDictionary;
    use fathom_model::{L4Protocol, L7Protocol, ResponseStatus, TapSide};
    use proptest::prelude::*;

    /// Logs drawn from small pools, so batches have runs, repeats, cache hits and misses, nulls and new strings.
    fn arb_log() -> impl Strategy<Value = RequestLog> {
        let s = |pool: &'static [&'static str]| {
            proptest::option::of(proptest::sample::select(pool).prop_map(str::to_string))
        };
        (
            (
                0usize..4,
                s(&["GET", "POST", "SET"]),
                s(&["a.example", "b.example"]),
                s(&["/x", "/y", "/z/{id}"]),
                s(&["1.1", "2"]),
                proptest::option::of("[a-z/]{0,6}"),
                proptest::option::of("[0-9a-f]{4}"),
            ),
            (
                proptest::sample::select(&["10.0.0.1", "10.0.0.2", "::1"][..]),
                proptest::sample::select(&["10.0.0.3", "10.0.0.4"][..]),
                any::<u16>(),
                0u16..3,
                0u8..5,
                0u8..3,
                any::<bool>(),
            ),
            (
                any::<u64>(),
                0u64..10_000,
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<u32>()),
                s(&["nginx", "redis-server"]),
            ),
            proptest::collection::btree_map(
                proptest::sample::select(&["pod", "ns", "node", "app"][..])
                    .prop_map(str::to_string),
                proptest::sample::select(&["web-1", "web-2", "db-0", ""][..])
                    .prop_map(str::to_string),
                0..4,
            ),
        )
            .prop_map(|(a, b, c, tags)| {
                let mut l = RequestLog::new(
                    [
                        L7Protocol::Http1,
                        L7Protocol::Redis,
                        L7Protocol::Dns,
                        L7Protocol::Custom("plug".into()),
                    ][a.0]
                        .clone(),
                );
                (l.request_type, l.request_domain, l.endpoint, l.version) = (a.1, a.2, a.3, a.4);
                (l.request_resource, l.trace_id) = (a.5, a.6.clone());
                l.x_request_id_1 = a.6;
                (l.ip_src, l.ip_dst) = (b.0.into(), b.1.into());
                (l.port_src, l.port_dst) = (b.2, 80 + b.3);
                l.response_status = [
                    ResponseStatus::Ok,
                    ResponseStatus::ClientError,
                    ResponseStatus::ServerError,
                    ResponseStatus::Timeout,
                    ResponseStatus::Unknown,
                ][usize::from(b.4)];
                l.tap_side = [
                    TapSide::Network,
                    TapSide::ClientProcess,
                    TapSide::ServerProcess,
                ][usize::from(b.5)];
                l.l4_protocol = if b.6 {
                    L4Protocol::Tcp
                } else {
                    L4Protocol::Udp
                };
                (l.start_time_us, l.end_time_us) = (c.0, c.0.wrapping_add(c.1));
                (l.response_duration_us, l.response_code, l.process_id) = (c.2, c.3, c.4);
                l.process_name = c.5;
                l.tags = tags;
                l
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The one-pass encoder writes exactly the bytes of the original column-by-column encoder, batch after
        /// batch (same dictionary ids, same entries, same columns), acknowledged or not.
        #[test]
        fn one_pass_encoder_writes_the_reference_bytes(
            batches in proptest::collection::vec((proptest::collection::vec(arb_log(), 0..40), any::<bool>()), 1..5),
        ) {
            let mut fast = Encoder::new(1, SyncMode::Acknowledged);
            let mut slow = Encoder::new(1, SyncMode::Acknowledged);
            let mut server = GlobalDictionary::default();
            for (logs, ack) in &batches {
                let (seq, a) = fast.encode(logs).unwrap();
                let (_, b) = reference::encode(&mut slow, logs).unwrap();
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(&server.decode(&a).unwrap().logs, logs);
                if *ack {
                    fast.ack(seq);
                    slow.ack(seq);
                }
            }
        }

        /// Pre-interned tag sets: decoded-equal to the logs with string tags from a cold encoder, and
        /// byte-for-byte the string path's batch once both dictionaries hold the same strings.
        #[test]
        fn tag_sets_write_the_string_path_bytes(logs in proptest::collection::vec(arb_log(), 0..40)) {
            let mut strings = Encoder::new(3, SyncMode::Reliable);
            let mut tagged = Encoder::new(3, SyncMode::Reliable);
            let mut bare = logs.clone();
            let sets: Vec<TagSet> = bare
                .iter_mut()
                .map(|l| {
                    let tags = std::mem::take(&mut l.tags);
                    tagged.tag_set(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                })
                .collect();
            let (_, cold) = tagged.encode_tagged(&bare, &sets).unwrap();
            prop_assert_eq!(&GlobalDictionary::default().decode(&cold).unwrap().logs, &logs);
            // Warm both the same way, then the next batches must be identical.
            let mut warm = Encoder::new(3, SyncMode::Reliable);
            let _ = warm.encode(&logs).unwrap();
            let _ = strings.encode(&logs).unwrap();
            let sets: Vec<TagSet> = logs
                .iter()
                .map(|l| warm.tag_set(l.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
                .collect();
            let (_, a) = strings.encode(&logs).unwrap();
            let (_, b) = warm.encode_tagged(&bare, &sets).unwrap();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn tag_set_misuse_is_an_error() {
        let mut a = Encoder::new(1, SyncMode::Reliable);
        let mut b = Encoder::new(1, SyncMode::Reliable);
        let set = a.tag_set([("pod", "web-1"), ("ns", "prod"), ("pod", "web-2")]);
        assert_eq!(set.len(), 2);
        // Last value of a repeated key wins; pairs sorted by key name (ns < pod).
        let d = a.dictionary();
        let names: Vec<_> = set
            .ids()
            .map(|(k, v)| (d.key_name(k).unwrap(), d.value(k, v).unwrap()))
            .collect();
        assert_eq!(names, [("ns", "prod"), ("pod", "web-2")]);
        let log = RequestLog::new(L7Protocol::Http1);
        let err = b
            .encode_tagged(std::slice::from_ref(&log), &[&set])
            .unwrap_err();
        assert!(matches!(err, EncodeError::TagSets { row: 0, .. }), "{err}");
        let err = a
            .encode_tagged(&[log.clone(), log.clone()], &[&set])
            .unwrap_err();
        assert!(err.to_string().contains("count"), "{err}");
        let mut tagged_log = log;
        tagged_log.tags.insert("k".into(), "v".into());
        let err = a.encode_tagged(&[tagged_log], &[&set]).unwrap_err();
        assert!(err.to_string().contains("string tags"), "{err}");
    }

    /// The string path's tag-set cache is bounded: past its byte budget it is emptied (and counted), and the
    /// batches stay exact.
    #[test]
    fn tag_cache_is_bounded() {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        let mut server = GlobalDictionary::default();
        let mut resets_seen = false;
        for round in 0..12u32 {
            let logs: Vec<RequestLog> = (0..1000u32)
                .map(|i| {
                    let mut l = RequestLog::new(L7Protocol::Http1);
                    l.tags
                        .insert("big".into(), format!("{round}-{i}-{}", "x".repeat(4000)));
                    l
                })
                .collect();
            let (_, b) = enc.encode(&logs).unwrap();
            assert_eq!(server.decode(&b).unwrap().logs, logs);
            resets_seen |= enc.tag_cache_resets() > 0;
            assert!(enc.tag_cache.bytes <= TAG_CACHE_BYTES);
        }
        assert!(resets_seen);
    }
}

#[cfg(test)]
mod eq_tests {
    use super::eq_bytes;

    #[test]
    fn eq_bytes_is_equality_at_every_length_and_position() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(eq_bytes(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!eq_bytes(&a, &b), "len {n}, differs at {i}");
            }
            assert!(!eq_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }
}
