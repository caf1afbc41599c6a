//! From decoded header fields to RequestLog fields: the few headers a log needs, status classes, gRPC status,
//! endpoint normalisation and (minimal, local) trace context extraction.

use crate::util::lossy;
use fathom_model::ResponseStatus;

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
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// `x-request-id`.
    pub x_request_id: Option<String>,
    /// Fields seen in the block (all of them, not only the ones kept).
    pub fields: usize,
}

impl Summary {
    /// Look at one decoded field; the first occurrence of each header wins.
    pub fn observe(&mut self, name: &[u8], value: &[u8], max_len: usize) {
        self.fields += 1;
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
            b"traceparent" => keep(&mut self.traceparent),
            b"x-request-id" => keep(&mut self.x_request_id),
            _ => {}
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

/// The low-cardinality endpoint of an HTTP path: no query or fragment, and id-like segments (numbers, UUIDs,
/// long hex strings) replaced by `{id}`.
pub fn endpoint(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let hexish = b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    let hex_digits = b.iter().filter(|c| c.is_ascii_hexdigit()).count();
    hexish && hex_digits >= 8 && b.iter().any(u8::is_ascii_digit)
}

/// Trace context from the request headers: (trace_id, span_id).
///
/// Minimal local extraction of W3C `traceparent` only (`00-<32 hex>-<16 hex>-<2 hex>`, not all-zero ids); a
/// shared trace-context helper can replace this function once one exists in the crate.
pub fn trace_context(traceparent: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(tp) = traceparent else {
        return (None, None);
    };
    let mut parts = tp.trim().split('-');
    let (Some(ver), Some(trace), Some(span), Some(fl)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, None);
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|c| c != b'0');
    if !hex(ver, 2)
        || ver.eq_ignore_ascii_case("ff")
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(fl, 2)
        || !nonzero(trace)
        || !nonzero(span)
    {
        return (None, None);
    }
    (
        Some(trace.to_ascii_lowercase()),
        Some(span.to_ascii_lowercase()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("/api/users/123"), "/api/users/{id}");
        assert_eq!(endpoint("/api/orders/9f8e7d6c5b4a?x=1"), "/api/orders/{id}");
        assert_eq!(endpoint("/api/kepler-2f52"), "/api/kepler-2f52");
        assert_eq!(endpoint("/static/alpha.js"), "/static/alpha.js");
        assert_eq!(
            endpoint("/u/123e4567-e89b-12d3-a456-426614174000/x"),
            "/u/{id}/x"
        );
    }

    #[test]
    fn trace_parent() {
        // From truth/http2.jsonl (httpx stream 1).
        let (t, s) = trace_context(Some(
            "00-ae40f7d399d2edbec917149794cab8d4-808075942aa72cd7-01",
        ));
        assert_eq!(t.as_deref(), Some("ae40f7d399d2edbec917149794cab8d4"));
        assert_eq!(s.as_deref(), Some("808075942aa72cd7"));
        assert_eq!(trace_context(Some("00-abc-def-01")), (None, None));
        assert_eq!(
            trace_context(Some(
                "00-00000000000000000000000000000000-808075942aa72cd7-01"
            )),
            (None, None)
        );
    }

    #[test]
    fn summary_and_statuses() {
        let mut s = Summary::default();
        s.observe(b":status", b"404", 64);
        s.observe(b"grpc-status", b"5", 64);
        s.observe(b"grpc-message", b"item%20missing", 64);
        s.observe(b"content-type", b"application/grpc+proto", 64);
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
