//! From decoded header fields to RequestLog fields: the few headers a log needs, status classes and gRPC
//! status. Trace context and request ids go through the crate's shared [`crate::tracectx`], endpoints through
//! [`crate::util::url_endpoint`].

use crate::tracectx::{extract, TraceConfig, TraceContext, TraceHeaders};
use crate::util::lossy;
use fathom_model::ResponseStatus;

/// Most trace-context headers kept per block.
const MAX_TRACE_HEADERS: usize = 8;

/// The headers of one header block that matter for a log. Values are owned (truncated to the field cap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `:method`.
    pub method: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `host` (HTTP/1-style, used when `:authority` is absent).
    pub host: Option<String>,
    /// `:path`.
    pub path: Option<String>,
    /// `:status`.
    pub status: Option<u16>,
    /// Whether `content-type` starts with `application/grpc` (`None` when no content-type was seen).
    pub grpc_content_type: Option<bool>,
    /// `grpc-status`.
    pub grpc_status: Option<i64>,
    /// `grpc-message`, percent-decoded.
    pub grpc_message: Option<String>,
    /// Trace-context and request-id headers of the block (raw, until [`Summary::resolve_trace`]).
    trace_raw: Vec<(Vec<u8>, Vec<u8>)>,
    /// Trace context and request id of the block.
    pub trace: TraceContext,
    /// A `grpc-*` header was seen (`grpc-timeout`, `grpc-encoding`, `grpc-status`...).
    pub grpc_header: bool,
    /// Fields seen in the block (all of them, not only the ones kept).
    pub fields: usize,
}

impl Summary {
    /// Look at one decoded field; the first occurrence of each header wins.
    pub fn observe(&mut self, name: &[u8], value: &[u8], max_len: usize, trace: &TraceConfig) {
        self.fields += 1;
        if name.starts_with(b"grpc-") {
            self.grpc_header = true;
        }
        let keep = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(lossy(value, max_len));
            }
        };
        match name {
            b":method" => keep(&mut self.method),
            b":authority" => keep(&mut self.authority),
            b"host" => keep(&mut self.host),
            b":path" => keep(&mut self.path),
            b":status" if self.status.is_none() => self.status = parse_status(value),
            b"content-type" if self.grpc_content_type.is_none() => {
                self.grpc_content_type = Some(value.starts_with(b"application/grpc"));
            }
            b"grpc-status" if self.grpc_status.is_none() => {
                self.grpc_status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .filter(|c| (0..=i64::from(u32::MAX)).contains(c));
            }
            b"grpc-message" if self.grpc_message.is_none() => {
                self.grpc_message = Some(lossy(&percent_decode(value), max_len));
            }
            _ => {
                if self.trace_raw.len() < MAX_TRACE_HEADERS
                    && TraceHeaders::default().offer(trace, name, value)
                {
                    self.trace_raw.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
}

impl Summary {
    /// Resolve the trace-context headers collected from the block.
    pub fn resolve_trace(&mut self, trace: &TraceConfig) {
        if !self.trace_raw.is_empty() {
            self.trace = extract(
                trace,
                self.trace_raw
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice())),
            );
            self.trace_raw = Vec::new();
        }
    }
}

fn parse_status(v: &[u8]) -> Option<u16> {
    match v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Percent-decoding of `grpc-message` (gRPC over HTTP/2 spec); malformed escapes are kept as they are.
fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if let (Some(h), Some(l)) = (
                v.get(i + 1).copied().and_then(hex),
                v.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// HTTP status class: 4xx client error, 5xx server error, anything else ok.
pub const fn http_status(code: u16) -> ResponseStatus {
    match code {
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

/// gRPC status class (design table): 0 ok; CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
/// PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED are client errors; others server errors.
pub const fn grpc_status(code: i64) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        1 | 3 | 5 | 6 | 7 | 9 | 11 | 16 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

/// A gRPC status code (open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcCode(pub i64);

impl GrpcCode {
    /// The canonical name (`NOT_FOUND`), or `UNKNOWN_CODE`.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "CANCELLED",
            2 => "UNKNOWN",
            3 => "INVALID_ARGUMENT",
            4 => "DEADLINE_EXCEEDED",
            5 => "NOT_FOUND",
            6 => "ALREADY_EXISTS",
            7 => "PERMISSION_DENIED",
            8 => "RESOURCE_EXHAUSTED",
            9 => "FAILED_PRECONDITION",
            10 => "ABORTED",
            11 => "OUT_OF_RANGE",
            12 => "UNIMPLEMENTED",
            13 => "INTERNAL",
            14 => "UNAVAILABLE",
            15 => "DATA_LOSS",
            16 => "UNAUTHENTICATED",
            _ => "UNKNOWN_CODE",
        }
    }

    /// The gRPC status a client reports for an HTTP status without `grpc-status` (gRPC's
    /// http-grpc-status-mapping).
    pub const fn from_http(status: u16) -> GrpcCode {
        GrpcCode(match status {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502 | 503 | 504 => 14,
            _ => 2,
        })
    }
}

/// The canonical reason phrase of common error statuses (HTTP/2 carries none on the wire).
pub const fn reason_phrase(code: u16) -> Option<&'static str> {
    Some(match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_statuses() {
        let mut s = Summary::default();
        let cfg = TraceConfig::default();
        s.observe(b":status", b"404", 64, &cfg);
        s.observe(b"grpc-status", b"5", 64, &cfg);
        s.observe(b"grpc-message", b"item%20missing", 64, &cfg);
        s.observe(b"content-type", b"application/grpc+proto", 64, &cfg);
        s.observe(b"x-request-id", b"abc", 64, &cfg);
        s.observe(
            b"b3",
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            64,
            &cfg,
        );
        s.resolve_trace(&cfg);
        assert_eq!(s.trace.x_request_id.as_deref(), Some("abc"));
        assert_eq!(
            s.trace.trace_id.as_deref(),
            Some("80f198ee56343ba864fe8b2a57d3eff7")
        );
        assert_eq!(s.status, Some(404));
        assert_eq!(s.grpc_status, Some(5));
        assert_eq!(s.grpc_message.as_deref(), Some("item missing"));
        assert_eq!(s.grpc_content_type, Some(true));
        assert_eq!(grpc_status(5), ResponseStatus::ClientError);
        assert_eq!(grpc_status(13), ResponseStatus::ServerError);
        assert_eq!(http_status(500), ResponseStatus::ServerError);
        assert_eq!(GrpcCode::from_http(503).as_str(), "UNAVAILABLE");
        assert_eq!(parse_status(b"20"), None);
    }
}
