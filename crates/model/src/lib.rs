//! # fathom-model
//!
//! The shared vocabulary of the Fathom workspace: plain data types with serde, and no logic beyond small
//! conversions. Every other Fathom crate depends on this one; it depends on none of them.
//!
//! - [`FlowKey`], [`Direction`], [`L4Protocol`]: who talks to whom, oriented client → server.
//! - [`StreamChunk`] and [`FlowEnd`]: what capture hands to protocol parsers (ordered bytes per flow direction,
//!   explicit gaps, and the end of a flow with its L4 statistics).
//! - [`RequestLog`]: one request and its response, the JSON contract of `fathom-agent --json logs`.
//! - [`FlowRecord`]: one TCP/UDP flow, the JSON contract of `fathom-agent --json flows`.
//! - [`L7Protocol`]: the application protocol, open to plugin names.
//!
//! ```
//! use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
//!
//! let mut log = RequestLog::new(L7Protocol::Http1);
//! log.request_type = Some("GET".into());
//! log.response_code = Some(200);
//! log.response_status = ResponseStatus::Ok;
//! let json = serde_json::to_value(&log).unwrap();
//! assert_eq!(json["l7_protocol"], "http1");
//! assert_eq!(json["trace_id"], serde_json::Value::Null); // every field is present, unknown is null
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod flow;
mod log;
mod protocol;
mod stream;

pub use flow::{CloseType, Direction, FlowKey, FlowRecord, L4Protocol};
pub use log::{RequestLog, ResponseStatus, TapSide};
pub use protocol::L7Protocol;
pub use stream::{ChunkOrigin, FlowEnd, FlowId, ProcessName, StreamChunk, StreamEvent};

/// Microseconds since the Unix epoch, on the capture clock (packet timestamps for files, wall clock live).
pub type TimestampUs = u64;
