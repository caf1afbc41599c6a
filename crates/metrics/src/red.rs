//! RED series: keys `(l7_protocol, server, endpoint)`, per-window cells and the [`MetricRow`] contract.

use crate::sketch::LatencySketch;
use crate::table::{Cell, SeriesKey};
use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// The name used for the server and endpoint of overflow series.
pub const OVERFLOW: &str = "__overflow__";

/// One series per window: the JSON contract of `fathom-agent --json metrics` (design.md, "The metric row").
///
/// Field order and names are stable; see `docs/metrics.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Window start, µs since the epoch (a multiple of `window_s` seconds).
    pub window_start_us: u64,
    /// Window length in seconds: 1 or 60.
    pub window_s: u32,
    /// Lowercase protocol name.
    pub l7_protocol: String,
    /// `ip:port` (`[v6]:port` for IPv6), the service tag's value, or `__overflow__`.
    pub server: String,
    /// The log's endpoint; `__overflow__` for overflow series; null when the logs had none.
    pub endpoint: Option<String>,
    /// Logs in the window (every status, one-way messages and timeouts included).
    pub request: u64,
    /// Logs with status `client_error`.
    pub error_client: u64,
    /// Logs with status `server_error`.
    pub error_server: u64,
    /// Logs with status `timeout`.
    pub timeout: u64,
    /// Median response duration (µs) from the sketch; null without paired responses.
    pub latency_p50_us: Option<u64>,
    /// 90th percentile response duration (µs).
    pub latency_p90_us: Option<u64>,
    /// 99th percentile response duration (µs).
    pub latency_p99_us: Option<u64>,
    /// Largest response duration (µs), exact.
    pub latency_max_us: Option<u64>,
    /// Sum of `captured_request_byte`.
    pub byte_request: u64,
    /// Sum of `captured_response_byte`.
    pub byte_response: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRef<'a> {
    Addr { ip: &'a str, port: u16 },
    Tag(&'a str),
    Overflow,
}

const KIND_ADDR: u8 = 0;
const KIND_TAG: u8 = 1;
const KIND_OVERFLOW: u8 = 2;

/// Key text stored inline when short (most `ip` + endpoint pairs), so a lookup compares strings without a
/// pointer chase; longer texts go to the heap.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyText {
    Inline { len: u8, buf: [u8; KeyText::INLINE] },
    Heap(Box<str>),
}

impl KeyText {
    const INLINE: usize = 46;

    fn new(a: &str, b: &str) -> KeyText {
        let len = a.len() + b.len();
        let mut buf = [0u8; KeyText::INLINE];
        match (buf.get_mut(..a.len()), u8::try_from(len)) {
            (Some(head), Ok(len8)) if len <= KeyText::INLINE => {
                head.copy_from_slice(a.as_bytes());
                if let Some(tail) = buf.get_mut(a.len()..len) {
                    tail.copy_from_slice(b.as_bytes());
                }
                KeyText::Inline { len: len8, buf }
            }
            _ => {
                let mut s = String::with_capacity(len);
                s.push_str(a);
                s.push_str(b);
                KeyText::Heap(s.into_boxed_str())
            }
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyText::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            KeyText::Heap(s) => s.as_bytes(),
        }
    }

    /// Always valid UTF-8 (built from two `&str`); the fallback is never taken.
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// A RED series key. The server text (ip or tag value) and the endpoint are stored together, inline when short,
/// so a lookup compares them in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedKey {
    pub(crate) protocol: L7Protocol,
    kind: u8,
    has_endpoint: bool,
    port: u16,
    /// Length of the server text at the start of `text`.
    server_len: u32,
    /// Server text then endpoint text.
    text: KeyText,
}

impl RedKey {
    fn server_text(&self) -> &str {
        self.text
            .as_str()
            .get(..self.server_len as usize)
            .unwrap_or("")
    }

    /// The endpoint, if any.
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.has_endpoint.then(|| {
            self.text
                .as_str()
                .get(self.server_len as usize..)
                .unwrap_or("")
        })
    }

    /// `ip:port`, `[v6]:port`, the tag value or `__overflow__`.
    pub(crate) fn render_server(&self) -> String {
        let t = self.server_text();
        match self.kind {
            KIND_ADDR if t.contains(':') => format!("[{t}]:{}", self.port),
            KIND_ADDR => format!("{t}:{}", self.port),
            KIND_TAG => t.to_string(),
            _ => OVERFLOW.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RedKeyRef<'a> {
    pub(crate) protocol: &'a L7Protocol,
    pub(crate) server: ServerRef<'a>,
    pub(crate) endpoint: Option<&'a str>,
}

impl RedKeyRef<'_> {
    fn parts(&self) -> (u8, u16, &str) {
        match self.server {
            ServerRef::Addr { ip, port } => (KIND_ADDR, port, ip),
            ServerRef::Tag(t) => (KIND_TAG, 0, t),
            ServerRef::Overflow => (KIND_OVERFLOW, 0, ""),
        }
    }
}

impl Hash for RedKeyRef<'_> {
    /// Few hasher calls: the protocol, the strings, then one word of the small fields. (Strings are not
    /// length-delimited: equality, not the hash, decides identity.)
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (kind, port, text) = self.parts();
        if let L7Protocol::Custom(name) = self.protocol {
            h.write(name.as_bytes());
        }
        h.write(text.as_bytes());
        if let Some(e) = self.endpoint {
            h.write(e.as_bytes());
        }
        let proto = L7Protocol::BUILTIN
            .iter()
            .position(|p| p == self.protocol)
            .unwrap_or(L7Protocol::BUILTIN.len());
        h.write_u64(
            (proto as u64) << 32
                | u64::from(kind) << 24
                | u64::from(self.endpoint.is_some()) << 16
                | u64::from(port),
        );
    }
}

impl<'a> RedKeyRef<'a> {
    /// The key of `log`: the server is `tags[service_tag]` when configured and present, else `ip_dst:port_dst`.
    #[inline]
    pub(crate) fn of(log: &'a RequestLog, service_tag: Option<&str>) -> RedKeyRef<'a> {
        let server = match service_tag.and_then(|k| log.tags.get(k)) {
            Some(v) => ServerRef::Tag(v),
            None => ServerRef::Addr {
                ip: &log.ip_dst,
                port: log.port_dst,
            },
        };
        RedKeyRef {
            protocol: &log.l7_protocol,
            server,
            endpoint: log.endpoint.as_deref(),
        }
    }
}

impl SeriesKey for RedKey {
    type Ref<'a> = RedKeyRef<'a>;

    fn as_key_ref(&self) -> RedKeyRef<'_> {
        let t = self.server_text();
        RedKeyRef {
            protocol: &self.protocol,
            server: match self.kind {
                KIND_ADDR => ServerRef::Addr {
                    ip: t,
                    port: self.port,
                },
                KIND_TAG => ServerRef::Tag(t),
                _ => ServerRef::Overflow,
            },
            endpoint: self.endpoint(),
        }
    }

    fn from_ref(r: RedKeyRef<'_>) -> RedKey {
        let (kind, port, server) = r.parts();
        let endpoint = r.endpoint.unwrap_or("");
        RedKey {
            protocol: r.protocol.clone(),
            kind,
            has_endpoint: r.endpoint.is_some(),
            port,
            server_len: u32::try_from(server.len()).unwrap_or(u32::MAX),
            text: KeyText::new(server, endpoint),
        }
    }

    fn overflow_of(r: RedKeyRef<'_>) -> RedKey {
        RedKey::from_ref(RedKeyRef {
            protocol: r.protocol,
            server: ServerRef::Overflow,
            endpoint: Some(OVERFLOW),
        })
    }

    #[inline]
    fn matches(&self, r: RedKeyRef<'_>) -> bool {
        let (kind, port, server) = r.parts();
        let endpoint = r.endpoint.unwrap_or("");
        self.kind == kind
            && self.port == port
            && self.has_endpoint == r.endpoint.is_some()
            && self.server_len as usize == server.len()
            && self.protocol == *r.protocol
            && {
                let t = self.text.as_bytes();
                t.len() == server.len() + endpoint.len()
                    && t.starts_with(server.as_bytes())
                    && t.ends_with(endpoint.as_bytes())
            }
    }

    fn is_overflow(&self) -> bool {
        self.kind == KIND_OVERFLOW
    }
}

/// One RED series' window.
#[derive(Debug, Clone)]
pub(crate) struct RedCell {
    pub(crate) request: u64,
    pub(crate) error_client: u64,
    pub(crate) error_server: u64,
    pub(crate) timeout: u64,
    pub(crate) byte_request: u64,
    pub(crate) byte_response: u64,
    pub(crate) latency: LatencySketch,
}

impl RedCell {
    /// Count one log.
    #[inline]
    pub(crate) fn add(&mut self, log: &RequestLog) {
        self.request += 1;
        match log.response_status {
            ResponseStatus::ClientError => self.error_client += 1,
            ResponseStatus::ServerError => self.error_server += 1,
            ResponseStatus::Timeout => self.timeout += 1,
            ResponseStatus::Ok | ResponseStatus::Unknown => {}
        }
        self.byte_request = self.byte_request.saturating_add(log.captured_request_byte);
        self.byte_response = self
            .byte_response
            .saturating_add(log.captured_response_byte);
        if let Some(d) = log.response_duration_us {
            self.latency.add(d);
        }
    }
}

/// Cumulative totals of a RED series (for Prometheus counters and OTLP cumulative sums).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedTotals {
    /// Requests.
    pub request: u64,
    /// Client errors.
    pub error_client: u64,
    /// Server errors.
    pub error_server: u64,
    /// Timeouts.
    pub timeout: u64,
    /// Request payload bytes.
    pub byte_request: u64,
    /// Response payload bytes.
    pub byte_response: u64,
    /// Responses with a duration.
    pub latency_count: u64,
    /// Sum of durations (µs).
    pub latency_sum_us: u64,
    /// p50, p90, p99 and max (µs) of the last closed 1 min window with latencies.
    pub last_minute_latency_us: Option<[u64; 4]>,
}

impl Cell for RedCell {
    type Key = RedKey;
    type Row = MetricRow;
    type Totals = RedTotals;

    fn empty(scale: u8) -> Self {
        RedCell {
            request: 0,
            error_client: 0,
            error_server: 0,
            timeout: 0,
            byte_request: 0,
            byte_response: 0,
            latency: LatencySketch::new(scale),
        }
    }

    fn is_empty(&self) -> bool {
        self.request == 0
    }

    fn merge_from(&mut self, o: &Self) {
        self.request += o.request;
        self.error_client += o.error_client;
        self.error_server += o.error_server;
        self.timeout += o.timeout;
        self.byte_request = self.byte_request.saturating_add(o.byte_request);
        self.byte_response = self.byte_response.saturating_add(o.byte_response);
        // Same aggregator, same scale: cannot fail.
        let _ = self.latency.merge(&o.latency);
    }

    fn clear(&mut self) {
        self.request = 0;
        self.error_client = 0;
        self.error_server = 0;
        self.timeout = 0;
        self.byte_request = 0;
        self.byte_response = 0;
        self.latency.clear();
    }

    fn to_row(&self, key: &RedKey, window_start_us: u64, window_s: u32) -> MetricRow {
        MetricRow {
            window_start_us,
            window_s,
            l7_protocol: key.protocol.as_str().to_string(),
            server: key.render_server(),
            endpoint: key.endpoint().map(str::to_string),
            request: self.request,
            error_client: self.error_client,
            error_server: self.error_server,
            timeout: self.timeout,
            latency_p50_us: self.latency.quantile_us(0.5),
            latency_p90_us: self.latency.quantile_us(0.9),
            latency_p99_us: self.latency.quantile_us(0.99),
            latency_max_us: self.latency.max(),
            byte_request: self.byte_request,
            byte_response: self.byte_response,
        }
    }

    fn add_second(&self, t: &mut RedTotals) {
        t.request += self.request;
        t.error_client += self.error_client;
        t.error_server += self.error_server;
        t.timeout += self.timeout;
        t.byte_request = t.byte_request.saturating_add(self.byte_request);
        t.byte_response = t.byte_response.saturating_add(self.byte_response);
        t.latency_count += self.latency.count();
        t.latency_sum_us = t.latency_sum_us.saturating_add(self.latency.sum());
    }

    fn close_minute(&self, t: &mut RedTotals) {
        if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
            self.latency.quantile_us(0.5),
            self.latency.quantile_us(0.9),
            self.latency.quantile_us(0.99),
            self.latency.max(),
        ) {
            t.last_minute_latency_us = Some([p50, p90, p99, max]);
        }
    }

    fn sketch(&self) -> &LatencySketch {
        &self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_inline_and_on_the_heap() {
        let long = "/a/very/long/endpoint/that/does/not/fit/inline/at/all";
        for (server, endpoint) in [
            (
                ServerRef::Addr {
                    ip: "10.0.0.1",
                    port: 80,
                },
                Some("/x"),
            ),
            (
                ServerRef::Addr {
                    ip: "fd00::1",
                    port: 443,
                },
                Some(long),
            ),
            (ServerRef::Tag("checkout"), None),
            (ServerRef::Tag("ünïcödé-service"), Some("")),
            (ServerRef::Overflow, Some(OVERFLOW)),
        ] {
            let p = L7Protocol::Custom("plug".into());
            let r = RedKeyRef {
                protocol: &p,
                server,
                endpoint,
            };
            let k = RedKey::from_ref(r);
            assert!(k.matches(r));
            assert_eq!(k.as_key_ref(), r);
            assert_eq!(k.endpoint(), endpoint);
            let other = RedKeyRef {
                endpoint: Some("/y"),
                ..r
            };
            assert!(!k.matches(other));
        }
        let k = RedKey::from_ref(RedKeyRef {
            protocol: &L7Protocol::Http1,
            server: ServerRef::Addr {
                ip: "fd00::1",
                port: 443,
            },
            endpoint: None,
        });
        assert_eq!(k.render_server(), "[fd00::1]:443");
    }
}
