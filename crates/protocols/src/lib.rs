//! # fathom-protocols
//!
//! Application protocol parsers: detect the protocol of a flow from its payload, parse messages incrementally
//! from ordered byte streams, pair requests with responses, and emit [`fathom_model::RequestLog`]s.
//!
//! The layers, from the bottom:
//! - per protocol, a module (`http1`, `dns`, ...) with a cheap `probe`, an incremental parser and an
//!   [`L7Parser`] implementation;
//! - the [`L7Parser`] / [`FlowParser`] traits, the [`Message`] they emit and the [`Limits`] they obey;
//! - the [`ExchangeTable`], which pairs requests and responses by [`Correlation`] (FIFO or by id) in bounded space;
//! - the [`Engine`], which owns per-flow state: detection, buffering, gap handling, timeouts, and RequestLog
//!   assembly (times and TCP sequence numbers from stream offsets);
//! - [`MessageHook`]s, optional user code the engine runs on each parsed message of chosen protocols to
//!   rewrite its fields and add tags ([`Engine::add_hook`]).
//!
//! The crate never depends on a capture library: feed it [`fathom_model::StreamChunk`]s from anywhere.
//!
//! ```
//! use fathom_model::{Direction, FlowKey, L4Protocol, StreamChunk, ChunkOrigin};
//! use fathom_protocols::{Engine, Limits};
//! # #[cfg(feature = "proto-http1")] {
//! let flow = FlowKey { ip_src: "10.0.0.1".parse().unwrap(), ip_dst: "10.0.0.2".parse().unwrap(),
//!                      port_src: 40000, port_dst: 80, l4_protocol: L4Protocol::Tcp };
//! let mut engine = Engine::new(fathom_protocols::builtin_parsers(), Limits::default());
//! let mut logs = Vec::new();
//! let chunk = |dir, t, bytes: &'static [u8]| StreamChunk { flow_id: 1, flow, direction: dir, time_us: t,
//!     seq: None, gap_before: 0, bytes: bytes::Bytes::from_static(bytes), origin: ChunkOrigin::Packet };
//! engine.on_chunk(&chunk(Direction::ClientToServer, 1_000, b"GET /users/42 HTTP/1.1\r\nHost: a\r\n\r\n"), &mut logs);
//! engine.on_chunk(&chunk(Direction::ServerToClient, 1_500, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), &mut logs);
//! engine.finish(&mut logs);
//! assert_eq!(logs.len(), 1);
//! assert_eq!(logs[0].response_code, Some(404));
//! assert_eq!(logs[0].response_duration_us, Some(500));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod engine;
mod error;
mod exchange;
mod hook;
mod limits;
mod message;
mod parser;
mod registry;
#[cfg(test)]
mod test_support;
pub mod tracectx;
pub mod util;

#[cfg(feature = "proto-dns")]
pub mod dns;
#[cfg(feature = "proto-dubbo")]
pub mod dubbo;
#[cfg(feature = "proto-http1")]
pub mod http1;
#[cfg(feature = "proto-http2")]
pub mod http2;
#[cfg(feature = "proto-kafka")]
pub mod kafka;
#[cfg(feature = "proto-mqtt")]
pub mod mqtt;
#[cfg(feature = "proto-mysql")]
pub mod mysql;
#[cfg(feature = "proto-postgresql")]
pub mod postgresql;
#[cfg(feature = "proto-redis")]
pub mod redis;
#[cfg(feature = "proto-tls")]
pub mod tls;

pub use engine::{Engine, EngineStats, FlowProtocol};
pub use error::{ParseError, ParseErrorKind};
pub use exchange::{EndReason, ExchangeTable, Paired};
pub use hook::{HookInput, MessageHook};
pub use limits::Limits;
pub use message::{Correlation, LogInfo, Message, MessageKind};
pub use parser::{FlowParser, L7Parser, ParseCtx, Probe, ProbeInput, Transports};
pub use registry::builtin_parsers;
