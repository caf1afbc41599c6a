//! # fathom-encoding
//!
//! SmartEncoding: tags travel and are stored as small integers, strings live once in a dictionary, and queries
//! translate names at query time.
//!
//! - [`Dictionary`]: per tag key, string ↔ dense `u32` ids ([`TagKeyId`], [`TagValueId`]), with a memory cap
//!   and an overflow id; [`PersistentDictionary`] keeps ids stable across restarts in a crash-safe append-only
//!   file.
//! - [`Encoder`] (agent side): RequestLog batches as columns — dictionary ids for low-cardinality fields and tag
//!   values, delta varints for timestamps, run-length encoded ids, batch-deduplicated text, optional zstd. A batch
//!   carries only the dictionary entries the receiver has not acknowledged.
//!   Tags come as strings in each log, or pre-interned once per flow as a [`TagSet`]
//!   ([`Encoder::encode_tagged`]); both write the same bytes.
//! - Metric batches (feature `metrics`, default): AutoMetrics rows ([`MetricBatch`]: `MetricRow`, `L4Row`, and
//!   optionally each window's latency sketch) with the same dictionary, header and sync
//!   ([`Encoder::encode_metrics`], [`GlobalDictionary::decode_metrics`]).
//! - [`GlobalDictionary`] (server side): decodes batches exactly and merges every agent's dictionary into
//!   global ids.
//! - [`QueryTranslator`]: tag predicates to id predicates, result ids to names.
//!
//! The wire format (versioned header, CRC32, size limits) is documented in `docs/encoding.md`. Decoding hostile
//! input returns a [`DecodeError`] naming the offset; every count is checked before it sizes an allocation.
//!
//! The varint codec is written here (a dozen lines) so that its reader can report our own errors with offsets.
//!
//! ```
//! use fathom_encoding::{Encoder, GlobalDictionary, QueryTranslator, SyncMode};
//! use fathom_model::{L7Protocol, RequestLog};
//!
//! let mut log = RequestLog::new(L7Protocol::Http1);
//! log.request_type = Some("GET".into());
//! log.tags.insert("k8s.pod".into(), "web-7f9c".into());
//!
//! let mut agent = Encoder::new(1, SyncMode::Acknowledged);
//! let (seq, batch) = agent.encode(&[log.clone()]).unwrap();
//!
//! let mut server = GlobalDictionary::default();
//! let decoded = server.decode(&batch).unwrap();
//! assert_eq!(decoded.logs, vec![log.clone()]);
//! agent.ack(seq);
//!
//! // The next batch no longer carries the strings the server acknowledged.
//! let (_, second) = agent.encode(&[log.clone()]).unwrap();
//! assert!(second.len() < batch.len());
//!
//! let q = QueryTranslator::new(server.dictionary());
//! let pod = q.key("k8s.pod").unwrap();
//! assert_eq!(q.name(pod, fathom_encoding::TagValueId(1)), Some("web-7f9c"));
//!
//! // Pre-interned tags: resolve a flow's tags once, then every log of the flow carries the handle.
//! let flow_tags = agent.tag_set([("k8s.pod", "web-7f9c")]);
//! let mut bare = log.clone();
//! bare.tags.clear();
//! let (_, third) = agent.encode_tagged(&[bare], &[&flow_tags]).unwrap();
//! assert_eq!(server.decode(&third).unwrap().logs, vec![log]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod batch;
mod dict;
mod encoder;
mod error;
#[cfg(feature = "metrics")]
mod metrics;
mod query;
mod store;
mod varint;

pub use batch::{
    DecodedBatch, GlobalDictionary, HEADER_LEN, MAGIC, MAX_AGENTS, MAX_BODY_BYTES, MAX_ENTRIES,
    MAX_ROWS, MAX_TAGS_PER_ROW, MAX_TAG_KEYS, METRIC_MAGIC, VERSION,
};
pub use dict::{Dictionary, Entry, TagKeyId, TagValueId, FIELD_KEYS, OVERFLOW_VALUE};
pub use encoder::{Encoder, SyncMode, TagSet, TAG_CACHE_BYTES};
pub use error::{DecodeError, EncodeError, StoreError};
#[cfg(feature = "metrics")]
pub use metrics::{DecodedMetrics, L4Record, MetricBatch, RedRecord, SERVER_KEY};
pub use query::{IdPredicate, QueryTranslator};
pub use store::PersistentDictionary;
