//! Messages emitted by flow parsers, before pairing.

use fathom_model::{Direction, L7Protocol, ResponseStatus};

/// What role a message plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Expects a response (paired through its [`Correlation`]).
    Request,
    /// Answers a request sent the other way.
    Response,
    /// A message with no response by protocol design (MQTT QoS 0 PUBLISH, COM_QUIT, Redis pushes): logged alone.
    OneWay,
    /// A protocol event that is not logged (heartbeats, startup exchanges): only counted.
    Event,
}

/// How a response finds its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Correlation {
    /// In order: the oldest pending request of the other direction (HTTP/1, Redis, MySQL, PostgreSQL).
    Fifo,
    /// By the protocol's own id (DNS id, HTTP/2 stream, Kafka correlation id, MQTT packet id, Dubbo id).
    ById(u64),
    /// Not paired (one-way messages, events).
    Unpaired,
}

/// The RequestLog fields a message knows. A request fills the request half, a response the response half;
/// the session merges both into one [`fathom_model::RequestLog`]. `None` means "this message does not say".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogInfo {
    /// Overrides the parser's protocol for this exchange (HTTP/2 → gRPC).
    pub protocol: Option<L7Protocol>,
    /// Protocol version.
    pub version: Option<String>,
    /// Method / command / opcode.
    pub request_type: Option<String>,
    /// Host, query name, SNI, database, client id.
    pub request_domain: Option<String>,
    /// Path, SQL, command and key, topic.
    pub request_resource: Option<String>,
    /// Low-cardinality name.
    pub endpoint: Option<String>,
    /// The protocol's own id.
    pub request_id: Option<u64>,
    /// Numeric status / error code.
    pub response_code: Option<i64>,
    /// Outcome class (responses; a one-way message defaults to ok).
    pub response_status: Option<ResponseStatus>,
    /// Error message or reason.
    pub response_exception: Option<String>,
    /// Short result.
    pub response_result: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Parent span id.
    pub parent_span_id: Option<String>,
    /// `X-Request-ID` or equivalent (goes to `x_request_id_0` on a request, `x_request_id_1` on a response).
    pub x_request_id: Option<String>,
    /// Tags to add to the RequestLog's `tags` (key, value), set by [`crate::MessageHook`]s (parsers leave it
    /// empty). The request's and the response's are both merged, the request's first; on a repeated key the
    /// last wins. Not touched by [`LogInfo::fill_from`].
    pub tags: Vec<(String, String)>,
}

impl LogInfo {
    /// Fill every field still `None` in `self` from `other`.
    pub fn fill_from(&mut self, other: LogInfo) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            protocol,
            version,
            request_type,
            request_domain,
            request_resource,
            endpoint,
            request_id,
            response_code,
            response_status,
            response_exception,
            response_result,
            trace_id,
            span_id,
            parent_span_id,
            x_request_id
        );
    }
}

/// One parsed protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Which way it travelled.
    pub direction: Direction,
    /// Its role.
    pub kind: MessageKind,
    /// How it pairs.
    pub correlation: Correlation,
    /// Absolute stream offset of its first byte (see [`crate::ParseCtx::stream_offset`]).
    pub start: u64,
    /// Absolute stream offset one past its last byte.
    pub end: u64,
    /// Payload bytes of the message on the wire (for HTTP/2, the bytes of its stream's frames, which need not
    /// be contiguous).
    pub wire_bytes: u64,
    /// The fields it carries.
    pub info: LogInfo,
}

impl Message {
    /// A message spanning `start..end`, with `wire_bytes = end - start`.
    pub fn new(
        direction: Direction,
        kind: MessageKind,
        correlation: Correlation,
        start: u64,
        end: u64,
    ) -> Message {
        Message {
            direction,
            kind,
            correlation,
            start,
            end,
            wire_bytes: end.saturating_sub(start),
            info: LogInfo::default(),
        }
    }

    /// Builder: set the fields.
    pub fn with_info(mut self, info: LogInfo) -> Message {
        self.info = info;
        self
    }
}
