//! Trace context and request id extraction from header pairs, shared by the HTTP/1, HTTP/2 and gRPC parsers.
//!
//! Every function here takes `(name, value)` byte pairs, so any header representation (httparse headers,
//! HPACK-decoded fields, gRPC metadata) can feed it. Names compare ASCII-case-insensitively. Nothing panics on
//! any input, and nothing allocates unless a recognised header is present.
//!
//! Supported formats, in precedence order when several are present:
//! 1. W3C `traceparent: 00-<trace-id 32 hex>-<parent-id 16 hex>-<flags>`: `trace_id` = trace-id,
//!    `span_id` = parent-id (the calling span), `parent_span_id` = none.
//! 2. B3 single header `b3: <traceid>-<spanid>[-<sampled>[-<parentspanid>]]`.
//! 3. B3 multi headers `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`.
//! 4. Jaeger `uber-trace-id: <traceid>:<spanid>:<parentspanid>:<flags>` (`%3A` accepted for `:`; parent `0`
//!    means none).
//! 5. SkyWalking `sw8: <sample>-<base64 trace id>-<base64 segment id>-<span id>-...`: `trace_id` = decoded trace
//!    id, `span_id` = `<decoded segment id>-<span id>` (the calling span).
//!
//! The request id comes from the first header of [`TraceConfig::request_id_headers`] present (default
//! `X-Request-ID`).

/// Which headers to read. Cheap to clone; build it once and share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// Header names carrying a request id, in preference order (compared case-insensitively).
    pub request_id_headers: Vec<String>,
    /// Read W3C `traceparent`.
    pub w3c: bool,
    /// Read B3 (`b3` and `X-B3-*`).
    pub b3: bool,
    /// Read Jaeger `uber-trace-id`.
    pub jaeger: bool,
    /// Read SkyWalking `sw8`.
    pub skywalking: bool,
    /// Longest id kept, in bytes; longer values are ignored.
    pub max_id_len: usize,
}

impl TraceConfig {
    /// Default for [`TraceConfig::request_id_headers`].
    pub const DEFAULT_REQUEST_ID_HEADER: &'static str = "x-request-id";
    /// Default for [`TraceConfig::max_id_len`].
    pub const DEFAULT_MAX_ID_LEN: usize = 256;
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            request_id_headers: vec![Self::DEFAULT_REQUEST_ID_HEADER.to_string()],
            w3c: true,
            b3: true,
            jaeger: true,
            skywalking: true,
            max_id_len: Self::DEFAULT_MAX_ID_LEN,
        }
    }
}

/// The ids found in one message's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id (the calling span, as the header names it).
    pub span_id: Option<String>,
    /// Parent span id, when the format carries one.
    pub parent_span_id: Option<String>,
    /// Request id (`X-Request-ID` or a configured equivalent).
    pub x_request_id: Option<String>,
}

/// Borrowed trace headers of one message, collected in one pass over the headers and resolved once.
///
/// Use it on hot paths where the caller already walks the headers: call [`TraceHeaders::offer`] for each
/// header it does not handle itself, then [`TraceHeaders::resolve`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceHeaders<'a> {
    traceparent: Option<&'a [u8]>,
    b3: Option<&'a [u8]>,
    b3_trace: Option<&'a [u8]>,
    b3_span: Option<&'a [u8]>,
    b3_parent: Option<&'a [u8]>,
    uber: Option<&'a [u8]>,
    sw8: Option<&'a [u8]>,
    /// (preference index, value) of the best request id header seen so far.
    request_id: Option<(usize, &'a [u8])>,
}

impl<'a> TraceHeaders<'a> {
    /// Look at one header; returns true when it is a trace or request-id header (remembered).
    #[inline]
    pub fn offer(&mut self, cfg: &TraceConfig, name: &'a [u8], value: &'a [u8]) -> bool {
        let n = name.len();
        // Cheap dispatch on length before any case-insensitive compare.
        let hit = match n {
            2 if cfg.b3 && name.eq_ignore_ascii_case(b"b3") => {
                self.b3.get_or_insert(value);
                true
            }
            3 if cfg.skywalking && name.eq_ignore_ascii_case(b"sw8") => {
                self.sw8.get_or_insert(value);
                true
            }
            11 if cfg.w3c && name.eq_ignore_ascii_case(b"traceparent") => {
                self.traceparent.get_or_insert(value);
                true
            }
            11 if cfg.b3 && name.eq_ignore_ascii_case(b"x-b3-spanid") => {
                self.b3_span.get_or_insert(value);
                true
            }
            12 if cfg.b3 && name.eq_ignore_ascii_case(b"x-b3-traceid") => {
                self.b3_trace.get_or_insert(value);
                true
            }
            13 if cfg.jaeger && name.eq_ignore_ascii_case(b"uber-trace-id") => {
                self.uber.get_or_insert(value);
                true
            }
            17 if cfg.b3 && name.eq_ignore_ascii_case(b"x-b3-parentspanid") => {
                self.b3_parent.get_or_insert(value);
                true
            }
            _ => false,
        };
        if hit {
            return true;
        }
        for (i, h) in cfg.request_id_headers.iter().enumerate() {
            if h.len() == n && h.as_bytes().eq_ignore_ascii_case(name) {
                match self.request_id {
                    Some((j, _)) if j <= i => {}
                    _ => self.request_id = Some((i, value)),
                }
                return true;
            }
        }
        false
    }

    /// True when no recognised header was offered.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none()
            && self.b3.is_none()
            && self.b3_trace.is_none()
            && self.uber.is_none()
            && self.sw8.is_none()
            && self.request_id.is_none()
    }

    /// Decode the collected headers (allocates only the ids found).
    pub fn resolve(&self, cfg: &TraceConfig) -> TraceContext {
        let mut ctx = TraceContext::default();
        if let Some((_, v)) = self.request_id {
            ctx.x_request_id = text(trim(v), cfg.max_id_len).map(str::to_string);
        }
        let ids = self
            .traceparent
            .and_then(parse_traceparent)
            .or_else(|| self.b3.and_then(parse_b3_single))
            .or_else(|| {
                self.b3_trace
                    .and_then(|t| parse_b3_multi(t, self.b3_span, self.b3_parent))
            })
            .or_else(|| self.uber.and_then(parse_uber))
            .map(|(t, s, p)| (Some(ascii_lower(t)), s.map(ascii_lower), p.map(ascii_lower)))
            .or_else(|| self.sw8.and_then(|v| parse_sw8(v, cfg.max_id_len)));
        if let Some((t, s, p)) = ids {
            ctx.trace_id = t;
            ctx.span_id = s;
            ctx.parent_span_id = p;
        }
        ctx
    }
}

/// Extract the trace context and request id from `headers` (`(name, value)` pairs).
///
/// ```
/// use fathom_protocols::tracectx::{extract, TraceConfig};
/// let h: [(&[u8], &[u8]); 2] = [
///     (b"traceparent", b"00-0c5dbb8895ebadeb3eb4e9e72276e210-5d8f7b9db55a859c-01"),
///     (b"X-Request-ID", b"req-27aa91618132"),
/// ];
/// let ctx = extract(&TraceConfig::default(), h);
/// assert_eq!(ctx.trace_id.as_deref(), Some("0c5dbb8895ebadeb3eb4e9e72276e210"));
/// assert_eq!(ctx.span_id.as_deref(), Some("5d8f7b9db55a859c"));
/// assert_eq!(ctx.x_request_id.as_deref(), Some("req-27aa91618132"));
/// ```
pub fn extract<'a, I>(cfg: &TraceConfig, headers: I) -> TraceContext
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut th = TraceHeaders::default();
    for (n, v) in headers {
        th.offer(cfg, n, v);
    }
    th.resolve(cfg)
}

type Ids<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    v.get(s..e).unwrap_or(&[])
}

/// `v` as printable ASCII text of at most `max` bytes, or None.
fn text(v: &[u8], max: usize) -> Option<&str> {
    if v.is_empty() || v.len() > max || !v.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    std::str::from_utf8(v).ok()
}

fn is_hex(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(u8::is_ascii_hexdigit)
}

fn all_zero(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'0')
}

fn ascii_lower(v: &[u8]) -> String {
    // Callers pass validated hex only, so this is ASCII.
    std::str::from_utf8(v)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// W3C trace context `version-traceid-parentid-flags`.
fn parse_traceparent(v: &[u8]) -> Option<Ids<'_>> {
    let v = trim(v);
    let mut it = v.split(|&b| b == b'-');
    let version = it.next()?;
    let trace = it.next()?;
    let parent = it.next()?;
    let flags = it.next()?;
    if version.len() != 2 || !is_hex(version) || version.eq_ignore_ascii_case(b"ff") {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == b"00" && it.next().is_some() {
        return None;
    }
    if trace.len() != 32 || !is_hex(trace) || all_zero(trace) {
        return None;
    }
    if parent.len() != 16 || !is_hex(parent) || all_zero(parent) {
        return None;
    }
    if flags.len() != 2 || !is_hex(flags) {
        return None;
    }
    Some((trace, Some(parent), None))
}

fn b3_trace_ok(t: &[u8]) -> bool {
    (t.len() == 16 || t.len() == 32) && is_hex(t) && !all_zero(t)
}

fn b3_span_ok(s: &[u8]) -> bool {
    s.len() == 16 && is_hex(s) && !all_zero(s)
}

/// B3 single header `traceid-spanid[-sampled[-parentspanid]]` (a lone `0`/`1`/`d` carries no ids).
fn parse_b3_single(v: &[u8]) -> Option<Ids<'_>> {
    let v = trim(v);
    let mut it = v.split(|&b| b == b'-');
    let trace = it.next()?;
    let span = it.next()?;
    if !b3_trace_ok(trace) || !b3_span_ok(span) {
        return None;
    }
    let _sampled = it.next();
    let parent = it.next().filter(|p| b3_span_ok(p));
    Some((trace, Some(span), parent))
}

fn parse_b3_multi<'a>(
    trace: &'a [u8],
    span: Option<&'a [u8]>,
    parent: Option<&'a [u8]>,
) -> Option<Ids<'a>> {
    let trace = trim(trace);
    if !b3_trace_ok(trace) {
        return None;
    }
    let span = span.map(trim).filter(|s| b3_span_ok(s));
    let parent = parent.map(trim).filter(|s| b3_span_ok(s));
    Some((trace, span, parent))
}

/// Jaeger `traceid:spanid:parentspanid:flags`, ids of 1..=32 (trace) / 1..=16 (span) hex digits.
fn parse_uber(v: &[u8]) -> Option<Ids<'_>> {
    let v = trim(v);
    // URL-encoded separators (`%3A`) are allowed by Jaeger clients.
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    let mut start = 0;
    let mut i = 0;
    while i <= v.len() {
        let (sep_len, at_sep) = match v.get(i) {
            None => (0, true),
            Some(b':') => (1, true),
            Some(b'%')
                if v.get(i + 1) == Some(&b'3')
                    && v.get(i + 2).is_some_and(|b| b.eq_ignore_ascii_case(&b'a')) =>
            {
                (3, true)
            }
            _ => (0, false),
        };
        if at_sep {
            if n == 4 {
                return None;
            }
            fields[n] = v.get(start..i)?;
            n += 1;
            i += sep_len.max(1);
            start = i;
        } else {
            i += 1;
        }
    }
    if n != 4 {
        return None;
    }
    let [trace, span, parent, flags] = fields;
    if trace.len() > 32 || !is_hex(trace) || all_zero(trace) {
        return None;
    }
    if span.len() > 16 || !is_hex(span) || all_zero(span) || !is_hex(flags) {
        return None;
    }
    let parent = Some(parent).filter(|p| p.len() <= 16 && is_hex(p) && !all_zero(p));
    Some((trace, Some(span), parent))
}

type OwnedIds = (Option<String>, Option<String>, Option<String>);

/// SkyWalking v3 `sw8`: `sample-traceId-segmentId-spanId-service-instance-endpoint-address`, ids base64.
fn parse_sw8(v: &[u8], max: usize) -> Option<OwnedIds> {
    let v = trim(v);
    let mut it = v.split(|&b| b == b'-');
    let sample = it.next()?;
    let trace = it.next()?;
    let segment = it.next()?;
    let span = it.next()?;
    if sample != b"0" && sample != b"1" {
        return None;
    }
    let trace = base64_text(trace, max)?;
    let segment = base64_text(segment, max)?;
    if span.is_empty() || span.len() > 10 || !span.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let span = std::str::from_utf8(span).ok()?;
    Some((Some(trace), Some(format!("{segment}-{span}")), None))
}

/// Decode standard or URL-safe base64 (padding optional) into printable ASCII text.
fn base64_text(v: &[u8], max: usize) -> Option<String> {
    if v.is_empty() || v.len() > max.saturating_mul(2) {
        return None;
    }
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in v {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let s = text(&out, max)?;
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(h: &[(&str, &str)]) -> TraceContext {
        extract(
            &TraceConfig::default(),
            h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn w3c_traceparent() {
        // From truth/http1.jsonl (curl one-shot).
        let c = ex(&[(
            "TraceParent",
            "00-2dadaf009278460f8fa0d1b09a750a7a-7f09f269dd70416e-01",
        )]);
        assert_eq!(
            c.trace_id.as_deref(),
            Some("2dadaf009278460f8fa0d1b09a750a7a")
        );
        assert_eq!(c.span_id.as_deref(), Some("7f09f269dd70416e"));
        assert_eq!(c.parent_span_id, None);
        // Invalid: all-zero trace id, wrong lengths, version ff.
        assert_eq!(
            ex(&[(
                "traceparent",
                "00-00000000000000000000000000000000-7f09f269dd70416e-01"
            )]),
            TraceContext::default()
        );
        assert_eq!(
            ex(&[("traceparent", "00-2dadaf-7f09f269dd70416e-01")]),
            TraceContext::default()
        );
        assert_eq!(
            ex(&[(
                "traceparent",
                "ff-2dadaf009278460f8fa0d1b09a750a7a-7f09f269dd70416e-01"
            )]),
            TraceContext::default()
        );
    }

    #[test]
    fn b3_single_and_multi() {
        // Examples from the openzipkin/b3-propagation README.
        let c = ex(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]);
        assert_eq!(
            c.trace_id.as_deref(),
            Some("80f198ee56343ba864fe8b2a57d3eff7")
        );
        assert_eq!(c.span_id.as_deref(), Some("e457b5a2e4d86bd1"));
        assert_eq!(c.parent_span_id.as_deref(), Some("05e3ac9a4f6e3b90"));
        assert_eq!(ex(&[("b3", "0")]), TraceContext::default());
        let c = ex(&[
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
            ("X-B3-SpanId", "e457b5a2e4d86bd1"),
            ("X-B3-Sampled", "1"),
        ]);
        assert_eq!(c.span_id.as_deref(), Some("e457b5a2e4d86bd1"));
        assert_eq!(c.parent_span_id.as_deref(), Some("05e3ac9a4f6e3b90"));
    }

    #[test]
    fn jaeger_uber_trace_id() {
        let c = ex(&[("uber-trace-id", "3d7a2c1f5e2b9a10:5e2b9a103d7a2c1f:0:1")]);
        assert_eq!(c.trace_id.as_deref(), Some("3d7a2c1f5e2b9a10"));
        assert_eq!(c.span_id.as_deref(), Some("5e2b9a103d7a2c1f"));
        assert_eq!(c.parent_span_id, None);
        let c = ex(&[("Uber-Trace-Id", "abc%3Adef%3a123%3A1")]);
        assert_eq!(c.trace_id.as_deref(), Some("abc"));
        assert_eq!(c.parent_span_id.as_deref(), Some("123"));
        assert_eq!(ex(&[("uber-trace-id", "a:b:c")]), TraceContext::default());
        assert_eq!(
            ex(&[("uber-trace-id", "a:b:c:1:2")]),
            TraceContext::default()
        );
    }

    #[test]
    fn skywalking_sw8() {
        // Example from the SkyWalking cross-process propagation protocol v3 docs.
        let c = ex(&[(
            "sw8",
            "1-MWYyZDBiZTc1YjFkNDcyNjhiZjBmOTFlYmIzZjNjNjYuMTEuMTYyNjc4MjA1ODQ3OTAwMDE=-MWYyZDBiZTc1YjFkNDcyNjhiZjBmOTFlYmIzZjNjNjYuMTEuMTYyNjc4MjA1ODQ3OTAwMDA=-1-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaQ==-MTI3LjAuMC4xOjgwODA=",
        )]);
        assert_eq!(
            c.trace_id.as_deref(),
            Some("1f2d0be75b1d47268bf0f91ebb3f3c66.11.16267820584790001")
        );
        assert_eq!(
            c.span_id.as_deref(),
            Some("1f2d0be75b1d47268bf0f91ebb3f3c66.11.16267820584790000-1")
        );
        assert_eq!(ex(&[("sw8", "1-!!-x-1")]), TraceContext::default());
    }

    #[test]
    fn precedence_and_request_id_config() {
        let c = ex(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"),
            (
                "traceparent",
                "00-0c5dbb8895ebadeb3eb4e9e72276e210-5d8f7b9db55a859c-01",
            ),
            ("x-request-id", " req-27aa91618132 "),
        ]);
        assert_eq!(
            c.trace_id.as_deref(),
            Some("0c5dbb8895ebadeb3eb4e9e72276e210")
        );
        assert_eq!(c.x_request_id.as_deref(), Some("req-27aa91618132"));
        let cfg = TraceConfig {
            request_id_headers: vec!["X-Correlation-ID".into(), "x-request-id".into()],
            ..TraceConfig::default()
        };
        let h: [(&[u8], &[u8]); 2] = [(b"x-request-id", b"b"), (b"x-correlation-id", b"a")];
        assert_eq!(extract(&cfg, h).x_request_id.as_deref(), Some("a"));
        let off = TraceConfig {
            w3c: false,
            ..TraceConfig::default()
        };
        let h: [(&[u8], &[u8]); 1] = [(
            b"traceparent",
            b"00-0c5dbb8895ebadeb3eb4e9e72276e210-5d8f7b9db55a859c-01",
        )];
        assert_eq!(extract(&off, h), TraceContext::default());
    }
}
