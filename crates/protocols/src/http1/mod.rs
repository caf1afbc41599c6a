//! HTTP/1.0 and HTTP/1.1.
//!
//! One log per request/response exchange: `request_type` = method, `request_domain` = `Host`,
//! `request_resource` = request target (path and query, truncated to [`Limits::max_field_len`]),
//! `endpoint` = path without query and ids (see [`crate::util::url_endpoint`]), `version` = `1.0`/`1.1`,
//! `response_code` = status, `response_status` 4xx `client_error` / 5xx `server_error`, `response_exception` =
//! reason phrase when not ok, trace ids and request id from the headers (see [`crate::tracectx`]).
//!
//! Layers:
//! - [`probe`]: a complete request line with a known method (`GET /x HTTP/1.1`), or a status line
//!   (`HTTP/1.1 200 `), at the start of the payload or at a later line start (captures that begin mid-stream).
//!   No allocation.
//! - [`head::parse_request`] / [`head::parse_response`]: httparse over a stack header array, borrowed views.
//! - [`Http1Flow`]: bodies skipped as bytes arrive without buffering (`Content-Length`, chunked, read to
//!   close), keep-alive and pipelining (FIFO), 1xx interim responses (counted as events, not paired),
//!   HEAD/204/304 without body, `Expect: 100-continue` (a final answer before the body ends the request at its
//!   head), protocol switches (101 Switching Protocols, CONNECT 2xx: the exchange is logged, then the flow
//!   stops with [`ParseErrorKind::Unsupported`](crate::ParseErrorKind::Unsupported)).
//!
//! A message's start is the first byte of its head and its end the last byte of its body; `wire_bytes` counts
//! head and body bytes seen. After a gap the parser keeps step when the gap lies inside a body of known
//! length; otherwise it emits the message in flight truncated (its head is known) and scans for the next
//! request or status line at a line start. Nothing here panics or grows without bound on any input.

pub mod flow;
pub mod head;
pub mod scan;

pub use flow::Http1Flow;
pub use head::{parse_request, parse_response, Parsed, RequestHead, ResponseHead};

use crate::tracectx::TraceConfig;
use crate::{FlowParser, L7Parser, Limits, Probe, ProbeInput};
use fathom_model::{FlowKey, L7Protocol};
use scan::{line_kind, LineKind};
use std::sync::Arc;

/// How far into a first payload the probe looks for a start line at a later line start.
pub const PROBE_SCAN_BYTES: usize = 4096;

/// Configuration of the HTTP/1 parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http1Config {
    /// Which trace-context and request-id headers to read.
    pub trace: TraceConfig,
}

/// The HTTP/1 [`L7Parser`].
#[derive(Debug, Clone, Default)]
pub struct Http1Parser {
    cfg: Arc<Http1Config>,
}

impl Http1Parser {
    /// A parser with `cfg`.
    pub fn with_config(cfg: Http1Config) -> Http1Parser {
        Http1Parser { cfg: Arc::new(cfg) }
    }
}

/// Detect HTTP/1 from the first payload of a flow. Cheap, no allocation.
///
/// `Yes` for a complete request line with a known method or a status line at the start of `payload`, or at
/// a line start within its first [`PROBE_SCAN_BYTES`] bytes (mid-stream); `Maybe` for a consistent prefix of
/// one; `No` otherwise.
pub fn probe(payload: &[u8]) -> Probe {
    match line_kind(payload) {
        LineKind::Request | LineKind::Response => return Probe::Yes,
        LineKind::Partial => return Probe::Maybe,
        LineKind::No => {}
    }
    let window = payload
        .get(..payload.len().min(PROBE_SCAN_BYTES))
        .unwrap_or(payload);
    let mut p = 0;
    while let Some(i) = window
        .get(p..)
        .and_then(|w| w.iter().position(|&b| b == b'\n'))
    {
        p += i + 1;
        let rest = payload.get(p..).unwrap_or(&[]);
        if matches!(line_kind(rest), LineKind::Request | LineKind::Response) {
            return Probe::Yes;
        }
    }
    Probe::No
}

impl L7Parser for Http1Parser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Http1
    }

    fn default_ports(&self) -> &[u16] {
        &[80, 8000, 8008, 8080, 8081, 8888, 3128]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(Http1Flow::new(self.cfg.clone(), limits))
    }
}

#[cfg(test)]
mod tests;
