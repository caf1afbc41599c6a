//! Message heads: request and status lines plus the headers that frame the body or go into the log.
//!
//! Parsing borrows from the input and does not allocate: headers go into a stack array of at most
//! [`MAX_HEADERS_CAP`] slots (the limit in force is `min(Limits::max_headers, MAX_HEADERS_CAP)`).
//! Only [`RequestHead::log_info`] / [`ResponseHead::log_info`] allocate, for the fields that go into a log.

use crate::tracectx::{TraceConfig, TraceHeaders};
use crate::util::{truncate, url_endpoint};
use crate::{Limits, LogInfo, ParseError, ParseErrorKind};
use fathom_model::ResponseStatus;
use std::mem::MaybeUninit;

/// Most header slots a head parse can use, whatever [`Limits::max_headers`] says.
pub const MAX_HEADERS_CAP: usize = 256;

/// Result of parsing a head from a prefix of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole head.
    Complete(T),
    /// The head is not complete yet: call again with more bytes (not an error).
    NeedMore,
}

/// HTTP/1 minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub u8);

impl Version {
    /// HTTP/1.0.
    pub const HTTP_10: Version = Version(0);
    /// HTTP/1.1.
    pub const HTTP_11: Version = Version(1);

    /// `"1.0"`, `"1.1"`, or `"1.x"` for anything else.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0 => "1.0",
            1 => "1.1",
            _ => "1.x",
        }
    }
}

/// What the headers say about the body and the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// `Content-Length`, when present and valid.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`.
    pub chunked: bool,
    /// `Transfer-Encoding` present but not ending with `chunked`.
    pub other_transfer_encoding: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// An `Upgrade` header is present.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// A parsed request head, borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Method token.
    pub method: &'a str,
    /// Request target (path and query, absolute URI, authority or `*`).
    pub target: &'a str,
    /// Version.
    pub version: Version,
    /// `Host` header value.
    pub host: Option<&'a [u8]>,
    /// Body and connection framing.
    pub framing: Framing,
    /// Trace-context headers.
    pub trace: TraceHeaders<'a>,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

/// A parsed response head, borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// Version.
    pub version: Version,
    /// Status code.
    pub code: u16,
    /// Reason phrase (may be empty).
    pub reason: &'a str,
    /// Body and connection framing.
    pub framing: Framing,
    /// Trace-context / request-id headers.
    pub trace: TraceHeaders<'a>,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

fn map_err(e: httparse::Error, offset: usize) -> ParseError {
    let kind = match e {
        httparse::Error::TooManyHeaders => ParseErrorKind::TooMany,
        _ => ParseErrorKind::Invalid,
    };
    ParseError::new(kind, offset)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let e = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (s, e) {
        (Some(s), Some(e)) => v.get(s..=e).unwrap_or(&[]),
        _ => &[],
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Walk the headers once: framing headers here, trace headers to `trace`, Host out.
fn scan_headers<'a>(
    headers: &[httparse::Header<'a>],
    cfg: &TraceConfig,
    trace: &mut TraceHeaders<'a>,
    host: &mut Option<&'a [u8]>,
) -> Result<Framing, ParseErrorKind> {
    let mut f = Framing::default();
    for h in headers {
        let name = h.name.as_bytes();
        let v = h.value;
        let handled = match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                host.get_or_insert(trim(v));
                true
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                f.expect_continue |= trim(v).eq_ignore_ascii_case(b"100-continue");
                true
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                f.upgrade = true;
                true
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for t in tokens(v) {
                    if t.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        f.keep_alive = true;
                    }
                }
                true
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_u64(v).ok_or(ParseErrorKind::BadValue)?;
                match f.content_length {
                    Some(old) if old != n => return Err(ParseErrorKind::BadValue),
                    _ => f.content_length = Some(n),
                }
                true
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // The last coding decides; later headers append to earlier ones.
                if let Some(last) = tokens(v).last() {
                    let chunked = last.eq_ignore_ascii_case(b"chunked");
                    f.chunked = chunked;
                    f.other_transfer_encoding = !chunked;
                }
                true
            }
            _ => false,
        };
        if !handled {
            trace.offer(cfg, name, v);
        }
    }
    Ok(f)
}

fn window<'a>(data: &'a [u8], limits: &Limits) -> &'a [u8] {
    data.get(..data.len().min(limits.max_message_len))
        .unwrap_or(data)
}

fn need_more<T>(data: &[u8], limits: &Limits) -> Result<Parsed<T>, ParseError> {
    if data.len() >= limits.max_message_len {
        Err(ParseError::new(ParseErrorKind::TooLarge, 0))
    } else {
        Ok(Parsed::NeedMore)
    }
}

/// Parse a request head from the start of `data`.
///
/// # Errors
/// `TooMany` with more headers than `min(limits.max_headers, MAX_HEADERS_CAP)`, `TooLarge` when no complete
/// head fits in `limits.max_message_len` bytes, `BadValue` for an invalid or conflicting `Content-Length`,
/// `Invalid` for anything that is not an HTTP/1 request head.
pub fn parse_request<'a>(
    data: &'a [u8],
    limits: &Limits,
    cfg: &TraceConfig,
) -> Result<Parsed<RequestHead<'a>>, ParseError> {
    let buf = window(data, limits);
    let mut slots = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; MAX_HEADERS_CAP];
    let n = limits.max_headers.min(MAX_HEADERS_CAP);
    let slots = slots.get_mut(..n).unwrap_or(&mut []);
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, slots)
        .map_err(|e| map_err(e, 0))?;
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return need_more(data, limits),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    };
    let mut trace = TraceHeaders::default();
    let mut host = None;
    let framing =
        scan_headers(req.headers, cfg, &mut trace, &mut host).map_err(|k| ParseError::new(k, 0))?;
    Ok(Parsed::Complete(RequestHead {
        method,
        target,
        version: Version(version),
        host,
        framing,
        trace,
        len,
    }))
}

/// Parse a response head from the start of `data`.
///
/// # Errors
/// As [`parse_request`].
pub fn parse_response<'a>(
    data: &'a [u8],
    limits: &Limits,
    cfg: &TraceConfig,
) -> Result<Parsed<ResponseHead<'a>>, ParseError> {
    let buf = window(data, limits);
    let mut slots = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; MAX_HEADERS_CAP];
    let n = limits.max_headers.min(MAX_HEADERS_CAP);
    let slots = slots.get_mut(..n).unwrap_or(&mut []);
    let mut resp = httparse::Response::new(&mut []);
    let status = response_config()
        .parse_response_with_uninit_headers(&mut resp, buf, slots)
        .map_err(|e| map_err(e, 0))?;
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return need_more(data, limits),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    };
    let mut trace = TraceHeaders::default();
    let mut host = None;
    let framing = scan_headers(resp.headers, cfg, &mut trace, &mut host)
        .map_err(|k| ParseError::new(k, 0))?;
    Ok(Parsed::Complete(ResponseHead {
        version: Version(version),
        code,
        reason: resp.reason.unwrap_or(""),
        framing,
        trace,
        len,
    }))
}

/// Servers in the wild send slightly malformed response heads; accept what browsers accept.
fn response_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    c
}

/// The status class of an HTTP status code: 4xx client error, 5xx server error, anything else ok.
pub const fn status_of(code: u16) -> ResponseStatus {
    match code {
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

fn lossy(v: &[u8], max: usize) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => truncate(s, max).to_string(),
        Err(_) => crate::util::lossy(v, max),
    }
}

/// The authority of an absolute-form target (`http://host:port/path`), for requests without `Host`.
fn authority(target: &str) -> Option<&str> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..end).filter(|a| !a.is_empty())
}

impl RequestHead<'_> {
    /// The request half of a log: version, method, host, target, endpoint, trace ids, request id.
    pub fn log_info(&self, limits: &Limits, cfg: &TraceConfig) -> LogInfo {
        let max = limits.max_field_len;
        let tc = if self.trace.is_empty() {
            Default::default()
        } else {
            self.trace.resolve(cfg)
        };
        LogInfo {
            version: Some(self.version.as_str().to_string()),
            request_type: Some(truncate(self.method, max).to_string()),
            request_domain: self
                .host
                .filter(|h| !h.is_empty())
                .map(|h| lossy(h, max))
                .or_else(|| authority(self.target).map(|a| truncate(a, max).to_string())),
            request_resource: Some(truncate(self.target, max).to_string()),
            endpoint: Some(url_endpoint(self.target, max)),
            trace_id: tc.trace_id,
            span_id: tc.span_id,
            parent_span_id: tc.parent_span_id,
            x_request_id: tc.x_request_id,
            ..LogInfo::default()
        }
    }
}

impl ResponseHead<'_> {
    /// The response half of a log: version, code, status, reason phrase when not ok, request id.
    pub fn log_info(&self, limits: &Limits, cfg: &TraceConfig) -> LogInfo {
        let status = status_of(self.code);
        let x_request_id = if self.trace.is_empty() {
            None
        } else {
            self.trace.resolve(cfg).x_request_id
        };
        let reason = self.reason.trim();
        LogInfo {
            version: Some(self.version.as_str().to_string()),
            response_code: Some(i64::from(self.code)),
            response_status: Some(status),
            response_exception: (status != ResponseStatus::Ok && !reason.is_empty())
                .then(|| truncate(reason, limits.max_field_len).to_string()),
            x_request_id,
            ..LogInfo::default()
        }
    }
}
