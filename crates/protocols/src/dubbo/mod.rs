//! Dubbo 2 (the `dubbo://` protocol) over TCP.
//!
//! Framing (Dubbo 2 protocol specification, "Dubbo protocol" in the Apache Dubbo documentation): a 16-byte
//! header, then the body.
//!
//! ```text
//! 0      2      3        4                  12            16
//! | dabb | flag | status | request id (u64) | body length | body ...
//! flag: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id (2 = Hessian 2)
//! ```
//!
//! One log per call (design.md): request + response paired by request id ([`Correlation::ById`], so
//! out-of-order answers pair correctly); a one-way call (request without the two-way bit) is a one-way log;
//! events (heartbeats, flag 0x20) are not logged in either direction ([`MessageKind::Event`]).
//!
//! Fields, for Hessian 2 bodies (serialization id 2): `request_type` = method, `request_resource` =
//! `endpoint` = `interface/method`, `request_domain` = interface (service path), `version` = the Dubbo
//! protocol version written by the consumer (`2.0.2`), `request_id` = the Dubbo id. Trace context comes from
//! the attachments map that follows the arguments (`traceparent`, `sw8`, `uber-trace-id`, `b3`,
//! `X-B3-TraceId`/`X-B3-SpanId`/`X-B3-ParentSpanId`, `x-request-id`): reaching it means skipping the
//! arguments, which [`hessian::Reader`] does in bounded depth without allocating. Responses: `response_code` =
//! status byte; 30, 40, 90 are `client_error`, other non-20 `server_error`; the body of an error status is a
//! Hessian string, kept in `response_exception`; an OK response whose result flag says "exception" gets the
//! exception's class name in `response_exception` (status stays `ok`: the contract classifies by status).
//! Other serialization ids are framed and paired, without names.
//!
//! Limits: bodies up to [`Limits::max_message_len`] are buffered and decoded whole; longer ones have their
//! first `max_message_len` bytes decoded (names, usually no attachments) and the rest skipped without
//! buffering. A body length over [`MAX_BODY_LEN`] (Dubbo's own default payload limit is 8 MiB) is `TooLarge`.
//! After a gap the parser resynchronises on the next `0xdabb` whose header is consistent.

pub mod hessian;
pub mod json;

use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use hessian::{HessianError, Reader};

/// The Dubbo parser (registered once, shared by all flows).
#[derive(Debug, Default, Clone)]
pub struct DubboParser;

/// Header length.
pub const HEADER_LEN: usize = 16;
/// The magic number.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Largest body length accepted (bytes beyond `max_message_len` are skipped, not buffered).
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;

const FLAG_REQUEST: u8 = 0x80;
const FLAG_TWO_WAY: u8 = 0x40;
const FLAG_EVENT: u8 = 0x20;
const SERIALIZATION_MASK: u8 = 0x1f;

/// Serialization ids (Dubbo's `Constants`): open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Serialization(pub u8);

impl Serialization {
    /// Hessian 2 (the default).
    pub const HESSIAN2: Serialization = Serialization(2);
    /// FastJSON (JSON lines).
    pub const FASTJSON: Serialization = Serialization(6);
    /// Gson (JSON lines).
    pub const GSON: Serialization = Serialization(16);

    /// Whether bodies are JSON lines (fastjson, gson).
    pub const fn json_lines(self) -> bool {
        matches!(self.0, 6 | 16)
    }

    /// Whether the id is one Dubbo defines (2 hessian2, 3 java, 4 compactedjava, 6 fastjson, 7 nativejava,
    /// 8 kryo, 9 fst, 10 native-hessian, 11 protostuff, 12 avro, 16 gson, 21 protobuf-json, 22 protobuf,
    /// 25 kryo2, 31 fastjson2).
    pub const fn known(self) -> bool {
        matches!(
            self.0,
            2 | 3 | 4 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 21 | 22 | 25 | 31
        )
    }
}

/// Response status byte: open newtype with Dubbo's named values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// OK.
    pub const OK: Status = Status(20);
    /// Client-side timeout.
    pub const CLIENT_TIMEOUT: Status = Status(30);
    /// Server-side timeout.
    pub const SERVER_TIMEOUT: Status = Status(31);
    /// Channel inactive.
    pub const CHANNEL_INACTIVE: Status = Status(35);
    /// Bad request.
    pub const BAD_REQUEST: Status = Status(40);
    /// Bad response.
    pub const BAD_RESPONSE: Status = Status(50);
    /// Service not found.
    pub const SERVICE_NOT_FOUND: Status = Status(60);
    /// Service error (the provider threw).
    pub const SERVICE_ERROR: Status = Status(70);
    /// Server error.
    pub const SERVER_ERROR: Status = Status(80);
    /// Client error.
    pub const CLIENT_ERROR: Status = Status(90);
    /// Server thread pool exhausted.
    pub const SERVER_THREADPOOL_EXHAUSTED: Status = Status(100);

    /// Dubbo's constant name.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            20 => "OK",
            30 => "CLIENT_TIMEOUT",
            31 => "SERVER_TIMEOUT",
            35 => "CHANNEL_INACTIVE",
            40 => "BAD_REQUEST",
            50 => "BAD_RESPONSE",
            60 => "SERVICE_NOT_FOUND",
            70 => "SERVICE_ERROR",
            80 => "SERVER_ERROR",
            90 => "CLIENT_ERROR",
            100 => "SERVER_THREADPOOL_EXHAUSTED_ERROR",
            _ => "UNKNOWN",
        }
    }

    /// Whether Dubbo defines this status.
    pub const fn known(self) -> bool {
        matches!(
            self.0,
            20 | 30 | 31 | 35 | 40 | 50 | 60 | 70 | 80 | 90 | 100
        )
    }

    /// The log status: 20 ok; 30, 40, 90 client_error; anything else server_error.
    pub const fn response_status(self) -> ResponseStatus {
        match self.0 {
            20 => ResponseStatus::Ok,
            30 | 40 | 90 => ResponseStatus::ClientError,
            _ => ResponseStatus::ServerError,
        }
    }
}

/// A decoded Dubbo header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The flag byte.
    pub flag: u8,
    /// Status (meaningful in responses).
    pub status: Status,
    /// Request id.
    pub id: u64,
    /// Body length.
    pub body_len: usize,
}

impl Header {
    /// A request (else a response).
    pub const fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }
    /// A two-way request (expects a response).
    pub const fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }
    /// An event (heartbeat, read-only notice).
    pub const fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }
    /// Serialization id.
    pub const fn serialization(&self) -> Serialization {
        Serialization(self.flag & SERIALIZATION_MASK)
    }
    /// Whether the header is consistent enough to trust as a message boundary: a known serialization,
    /// requests with a zero status byte, responses without the two-way bit and with a known status.
    pub const fn plausible(&self) -> bool {
        self.serialization().known()
            && self.body_len <= MAX_BODY_LEN
            && if self.is_request() {
                self.status.0 == 0
            } else {
                self.flag & FLAG_TWO_WAY == 0 && self.status.known()
            }
    }
}

/// Parse a header at the start of `data`: `Ok(None)` when fewer than 16 bytes are there.
///
/// # Errors
/// `Invalid` for a wrong magic number, `TooLarge` for a body over [`MAX_BODY_LEN`].
pub fn header(data: &[u8]) -> Result<Option<Header>, ParseError> {
    let Some(h) = data.get(..HEADER_LEN) else {
        let n = data.len().min(2);
        if data.get(..n) != MAGIC.get(..n) {
            return Err(ParseError::new(ParseErrorKind::Invalid, 0));
        }
        return Ok(None);
    };
    if h[..2] != MAGIC {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[4..12]);
    let body_len = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize;
    if body_len > MAX_BODY_LEN {
        return Err(ParseError::new(ParseErrorKind::TooLarge, 12));
    }
    Ok(Some(Header {
        flag: h[2],
        status: Status(h[3]),
        id: u64::from_be_bytes(id),
        body_len,
    }))
}

/// Cheap detection: `Yes` for the magic and a plausible header at the start of the payload, `Maybe` for the
/// magic alone (too few bytes yet) or a plausible header later in the first 256 bytes.
pub fn probe(payload: &[u8]) -> Probe {
    match header(payload) {
        Ok(Some(h)) if h.plausible() => return Probe::Yes,
        Ok(None) if payload.len() >= 2 => return Probe::Maybe,
        _ => {}
    }
    let n = payload.len().min(256);
    let found = (1..n).any(
        |i| matches!(header(payload.get(i..).unwrap_or_default()), Ok(Some(h)) if h.plausible()),
    );
    if found {
        Probe::Maybe
    } else {
        Probe::No
    }
}

impl L7Parser for DubboParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Dubbo
    }

    fn default_ports(&self) -> &[u16] {
        &[20880]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(DubboFlow::new(limits))
    }
}

#[derive(Debug, Default)]
struct DirState {
    /// False at the start of a direction and after a gap: look for a plausible header first.
    synced: bool,
    /// Body bytes of the current (large) message still to skip.
    skip: u64,
    /// The message being skipped, emitted when its last byte passes.
    pending: Option<Message>,
}

/// Per-flow Dubbo state.
#[derive(Debug)]
pub struct DubboFlow {
    dirs: [DirState; 2],
    max_field_len: usize,
    max_depth: usize,
}

impl DubboFlow {
    /// Fresh state.
    pub fn new(limits: &Limits) -> DubboFlow {
        DubboFlow {
            dirs: [DirState::default(), DirState::default()],
            max_field_len: limits.max_field_len,
            max_depth: limits.max_depth,
        }
    }

    fn message(&self, d: Direction, h: &Header, body: &[u8], start: u64, end: u64) -> Message {
        if h.is_event() {
            return Message::new(d, MessageKind::Event, Correlation::Unpaired, start, end);
        }
        let corr = Correlation::ById(h.id);
        if h.is_request() {
            let mut info = LogInfo {
                request_id: Some(h.id),
                ..LogInfo::default()
            };
            if h.serialization() == Serialization::HESSIAN2 {
                decode_request(body, self.max_field_len, self.max_depth, &mut info);
            } else if h.serialization().json_lines() {
                decode_request_json(body, self.max_field_len, &mut info);
            }
            let kind = if h.is_two_way() {
                MessageKind::Request
            } else {
                MessageKind::OneWay
            };
            let corr = if h.is_two_way() {
                corr
            } else {
                Correlation::Unpaired
            };
            Message::new(d, kind, corr, start, end).with_info(info)
        } else {
            let mut info = LogInfo {
                response_code: Some(h.status.0 as i64),
                response_status: Some(h.status.response_status()),
                ..LogInfo::default()
            };
            if h.serialization() == Serialization::HESSIAN2 {
                decode_response(
                    h.status,
                    body,
                    self.max_field_len,
                    self.max_depth,
                    &mut info,
                );
            } else if h.serialization().json_lines() && h.status != Status::OK {
                if let Some((msg, _)) = json::lines(body)
                    .next()
                    .and_then(|l| json::string(l, self.max_field_len))
                {
                    info.response_exception = Some(msg);
                }
            }
            if info.response_exception.is_none() && h.status != Status::OK {
                info.response_exception = Some(h.status.as_str().to_string());
            }
            Message::new(d, MessageKind::Response, corr, start, end).with_info(info)
        }
    }

    /// Offset of the first plausible header in `data`: `Ok(i)`, or `Err(keep_from)` when none is complete.
    fn resync(data: &[u8]) -> Result<usize, usize> {
        let mut i = 0;
        while i + 1 < data.len() {
            if data[i] == MAGIC[0] && data[i + 1] == MAGIC[1] {
                match header(&data[i..]) {
                    Ok(Some(h)) if h.plausible() => return Ok(i),
                    Ok(None) => return Err(i),
                    _ => {}
                }
            }
            i += 1;
        }
        // Keep a trailing 0xda: it may start a magic number.
        if data.last() == Some(&MAGIC[0]) {
            Err(data.len() - 1)
        } else {
            Err(data.len())
        }
    }
}

impl FlowParser for DubboFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let di = ctx.direction.index();
        let max_len = ctx.limits.max_message_len.max(HEADER_LEN);
        let mut pos = 0usize;
        loop {
            let dir = &mut self.dirs[di];
            if dir.skip > 0 || dir.pending.is_some() {
                let avail = data.len().saturating_sub(pos) as u64;
                let n = dir.skip.min(avail);
                pos += n as usize;
                dir.skip -= n;
                if dir.skip > 0 {
                    return Ok(pos);
                }
                if let Some(m) = dir.pending.take() {
                    out.push(m);
                }
            }
            let rest = data.get(pos..).unwrap_or_default();
            if !dir.synced {
                match Self::resync(rest) {
                    Ok(i) => {
                        pos += i;
                        dir.synced = true;
                    }
                    Err(keep) => return Ok(pos + keep),
                }
            }
            let rest = data.get(pos..).unwrap_or_default();
            let h = match header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(pos),
                Err(e) => return Err(ParseError::new(e.kind, pos + e.offset)),
            };
            let total = HEADER_LEN + h.body_len;
            let have = total.min(max_len);
            let Some(prefix) = rest.get(HEADER_LEN..have) else {
                return Ok(pos);
            };
            let m = self.message(
                ctx.direction,
                &h,
                prefix,
                ctx.pos(pos),
                ctx.pos(pos + total),
            );
            if have == total {
                out.push(m);
                pos += total;
                continue;
            }
            // Large body: skip what is not buffered, emit at its end.
            let consumed = rest.len().min(total);
            let dir = &mut self.dirs[di];
            dir.skip = (total - consumed) as u64;
            dir.pending = Some(m);
            pos += consumed;
            if dir.skip == 0 {
                if let Some(m) = dir.pending.take() {
                    out.push(m);
                }
                continue;
            }
            return Ok(pos);
        }
    }

    fn on_gap(&mut self, direction: Direction, lost: u64) {
        let dir = &mut self.dirs[direction.index()];
        if dir.skip > 0 && lost <= dir.skip {
            dir.skip -= lost;
            return;
        }
        dir.skip = 0;
        dir.pending = None;
        dir.synced = false;
    }
}

/// Count the parameters in a JVM method descriptor (`Ljava/lang/String;I[J` → 3); `None` if malformed.
pub fn count_params(desc: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut n = 0;
    while let Some(&c) = desc.get(i) {
        match c {
            b'[' => {
                i += 1;
                continue;
            }
            b'L' => {
                let semi = desc.get(i..)?.iter().position(|&b| b == b';')?;
                i += semi + 1;
            }
            b'V' | b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' => i += 1,
            _ => return None,
        }
        n += 1;
    }
    Some(n)
}

/// Decode a Hessian 2 invocation body: dubbo version, service path, service version, method, parameter
/// descriptor, arguments (skipped), attachments. Stops quietly at the first value it cannot read.
fn decode_request(body: &[u8], max: usize, max_depth: usize, info: &mut LogInfo) {
    let mut r = Reader::new(body, max_depth);
    let Ok(dubbo_version) = r.string(max) else {
        return;
    };
    let Ok(path) = r.string(max) else { return };
    let Ok(_service_version) = r.string(max) else {
        return;
    };
    let Ok(method) = r.string(max) else { return };
    info.version = dubbo_version.map(|s| s.lossy(max));
    let path = path.map(|s| s.lossy(max));
    let method = method.map(|s| s.lossy(max));
    if let (Some(p), Some(m)) = (&path, &method) {
        let res = crate::util::truncate(&format!("{p}/{m}"), max).to_string();
        info.endpoint = Some(res.clone());
        info.request_resource = Some(res);
    }
    info.request_domain = path;
    info.request_type = method;
    let Ok(Some(desc)) = r.string(max.max(4096)) else {
        return;
    };
    let Some(n) = count_params(desc.bytes()) else {
        return;
    };
    for _ in 0..n {
        if r.skip().is_err() {
            return;
        }
    }
    let mut trace = TraceCtx::default();
    let _ = r.string_map(max, |k, v| trace.attachment(k, v, max));
    trace.fill(info);
}

/// Decode a JSON-lines invocation body (same values as Hessian 2, one JSON text per line).
fn decode_request_json(body: &[u8], max: usize, info: &mut LogInfo) {
    let mut lines = json::lines(body);
    let mut next_str = || {
        lines
            .next()
            .and_then(|l| json::string(l, max))
            .map(|(s, _)| s)
    };
    let dubbo_version = next_str();
    let path = next_str();
    let _service_version = next_str();
    let method = next_str();
    let desc = next_str();
    info.version = dubbo_version;
    if let (Some(p), Some(m)) = (&path, &method) {
        let res = crate::util::truncate(&format!("{p}/{m}"), max).to_string();
        info.endpoint = Some(res.clone());
        info.request_resource = Some(res);
    }
    info.request_domain = path;
    info.request_type = method;
    let Some(n) = desc.as_deref().and_then(|d| count_params(d.as_bytes())) else {
        return;
    };
    // One line per argument, then the attachments object.
    let Some(att) = json::lines(body).nth(5 + n) else {
        return;
    };
    let mut trace = TraceCtx::default();
    let _ = json::string_members(att, max, |k, v| {
        trace.attachment(k.as_bytes(), v.as_bytes(), max)
    });
    trace.fill(info);
}

/// Decode a response body: for OK, the result flag (exception class when the call threw); otherwise the
/// error message string.
fn decode_response(status: Status, body: &[u8], max: usize, max_depth: usize, info: &mut LogInfo) {
    let mut r = Reader::new(body, max_depth);
    if status != Status::OK {
        if let Ok(Some(s)) = r.string(max) {
            info.response_exception = Some(s.lossy(max));
        }
        return;
    }
    // RESPONSE_WITH_EXCEPTION (0) / RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS (3).
    if let Ok(0 | 3) = r.int() {
        let class: Result<_, HessianError> = r.skip_object_class(max);
        info.response_exception = Some(match class {
            Ok(Some(c)) => c.lossy(max),
            _ => "exception".to_string(),
        });
    }
}

/// Trace context gathered from the attachments.
#[derive(Debug, Default)]
struct TraceCtx {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    x_request_id: Option<String>,
    /// Priority of the source that set the ids (W3C > sw8 > uber > B3).
    rank: u8,
}

impl TraceCtx {
    fn set(&mut self, rank: u8, trace: &str, span: Option<String>, parent: Option<String>) {
        if rank <= self.rank || trace.is_empty() {
            return;
        }
        self.rank = rank;
        self.trace_id = Some(trace.to_string());
        self.span_id = span;
        self.parent_span_id = parent;
    }

    fn attachment(&mut self, k: &[u8], v: &[u8], max: usize) {
        let Ok(v) = std::str::from_utf8(v) else {
            return;
        };
        let v = crate::util::truncate(v.trim(), max);
        let key = |name: &str| k.eq_ignore_ascii_case(name.as_bytes());
        if key("traceparent") {
            let p: Vec<&str> = v.split('-').collect();
            if let [_, t, s, ..] = p[..] {
                self.set(4, t, Some(s.to_string()), None);
            }
        } else if key("sw8") {
            // sample-traceId(b64)-segmentId(b64)-spanId-...
            let p: Vec<&str> = v.split('-').collect();
            if let [_, t, seg, span, ..] = p[..] {
                if let Some(t) = base64(t) {
                    let s = base64(seg).map(|seg| format!("{seg}-{span}"));
                    self.set(3, &t, s, None);
                }
            }
        } else if key("uber-trace-id") {
            let p: Vec<&str> = v.split(':').collect();
            if let [t, s, parent, ..] = p[..] {
                let parent = (parent != "0").then(|| parent.to_string());
                self.set(2, t, Some(s.to_string()), parent);
            }
        } else if key("b3") {
            let p: Vec<&str> = v.split('-').collect();
            if let [t, s, ..] = p[..] {
                self.set(1, t, Some(s.to_string()), p.get(3).map(|x| x.to_string()));
            }
        } else if key("x-b3-traceid") {
            if self.rank <= 1 {
                self.rank = 1;
                self.trace_id = Some(v.to_string());
            }
        } else if key("x-b3-spanid") {
            if self.rank <= 1 {
                self.span_id = Some(v.to_string());
            }
        } else if key("x-b3-parentspanid") {
            if self.rank <= 1 {
                self.parent_span_id = Some(v.to_string());
            }
        } else if key("x-request-id") {
            self.x_request_id = Some(v.to_string());
        }
    }

    fn fill(self, info: &mut LogInfo) {
        if self.trace_id.is_some() {
            info.trace_id = self.trace_id;
            info.span_id = self.span_id;
            info.parent_span_id = self.parent_span_id;
        }
        info.x_request_id = self.x_request_id;
    }
}

/// Standard base64 (with or without padding) to a UTF-8 string; `None` if malformed or not UTF-8.
fn base64(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
