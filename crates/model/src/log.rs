//! The RequestLog contract: one request and its response.

use crate::{Direction, FlowKey, L7Protocol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome class of a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Answered without error, or a one-way message.
    Ok,
    /// An error caused by the request (HTTP 4xx, DNS NXDOMAIN, ...).
    ClientError,
    /// Any other error.
    ServerError,
    /// A request whose response never came.
    Timeout,
    /// Not known.
    #[default]
    Unknown,
}

impl ResponseStatus {
    /// The contract's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "ok",
            ResponseStatus::ClientError => "client_error",
            ResponseStatus::ServerError => "server_error",
            ResponseStatus::Timeout => "timeout",
            ResponseStatus::Unknown => "unknown",
        }
    }

    /// True for client and server errors.
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            ResponseStatus::ClientError | ResponseStatus::ServerError
        )
    }
}

/// Where the data of a log was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapSide {
    /// Packets (pcap file, AF_PACKET).
    #[default]
    Network,
    /// eBPF on the client process.
    ClientProcess,
    /// eBPF on the server process.
    ServerProcess,
}

impl TapSide {
    /// The contract's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TapSide::Network => "network",
            TapSide::ClientProcess => "client_process",
            TapSide::ServerProcess => "server_process",
        }
    }
}

/// One request and its response: the JSON contract of `fathom-agent --json logs`.
///
/// Field names follow DeepFlow's `l7_flow_log`. Every field is always serialized; unknown values are `null`.
/// `ip_src`/`port_src` are the client of the flow and `ip_dst`/`port_dst` its server, whichever side sent the
/// message (a broker-to-subscriber MQTT PUBLISH keeps the flow's orientation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestLog {
    /// Lowercase protocol name, or a plugin's name.
    pub l7_protocol: L7Protocol,
    /// Protocol version (`1.1`, `2`, `3.1.1`, `5`...).
    pub version: Option<String>,
    /// Method / command / opcode.
    pub request_type: Option<String>,
    /// Host/authority, DNS query name, TLS SNI, database name, Kafka client id.
    pub request_domain: Option<String>,
    /// URL path with query, SQL, command with key, topic, gRPC method path.
    pub request_resource: Option<String>,
    /// Low-cardinality name for metrics.
    pub endpoint: Option<String>,
    /// The protocol's own id (HTTP/2 stream, DNS id, Kafka correlation id, Dubbo request id, MQTT packet id).
    pub request_id: Option<u64>,
    /// Numeric status/error code.
    pub response_code: Option<i64>,
    /// Outcome class.
    pub response_status: ResponseStatus,
    /// Error message or reason phrase when not ok; string error codes come first.
    pub response_exception: Option<String>,
    /// Short result (DNS answers, affected rows).
    pub response_result: Option<String>,
    /// TCP sequence number of the request's first byte.
    pub req_tcp_seq: Option<u32>,
    /// TCP sequence number of the response's first byte.
    pub resp_tcp_seq: Option<u32>,
    /// eBPF thread-causality id of the request.
    pub syscall_trace_id_request: Option<u64>,
    /// eBPF thread-causality id of the response.
    pub syscall_trace_id_response: Option<u64>,
    /// Trace id from trace-context headers.
    pub trace_id: Option<String>,
    /// Span id from trace-context headers.
    pub span_id: Option<String>,
    /// Parent span id from trace-context headers.
    pub parent_span_id: Option<String>,
    /// `X-Request-ID` (or configured equivalent) on the request.
    pub x_request_id_0: Option<String>,
    /// `X-Request-ID` (or configured equivalent) on the response.
    pub x_request_id_1: Option<String>,
    /// Request first byte, µs since the epoch.
    pub start_time_us: u64,
    /// Response last byte (request last byte for one-way messages), µs since the epoch.
    pub end_time_us: u64,
    /// `end - start`; null for one-way messages and timeouts.
    pub response_duration_us: Option<u64>,
    /// Client address.
    pub ip_src: String,
    /// Server address.
    pub ip_dst: String,
    /// Client port.
    pub port_src: u16,
    /// Server port.
    pub port_dst: u16,
    /// `tcp` or `udp`.
    pub l4_protocol: crate::L4Protocol,
    /// Payload bytes of the request message(s).
    pub captured_request_byte: u64,
    /// Payload bytes of the response message(s).
    pub captured_response_byte: u64,
    /// Where it was observed.
    pub tap_side: TapSide,
    /// eBPF origin only.
    pub process_id: Option<u32>,
    /// eBPF origin only.
    pub thread_id: Option<u32>,
    /// eBPF origin only.
    pub process_name: Option<String>,
    /// Resource tags from AutoTagging; empty when none.
    pub tags: BTreeMap<String, String>,
}

impl Default for L7Protocol {
    fn default() -> Self {
        L7Protocol::Custom("unknown".into())
    }
}

impl RequestLog {
    /// An empty log of `protocol`: every optional field null, status unknown.
    pub fn new(protocol: L7Protocol) -> RequestLog {
        // Spelled out rather than `..Default::default()`: that would build (allocate) and drop a default
        // protocol name per log.
        RequestLog {
            l7_protocol: protocol,
            version: None,
            request_type: None,
            request_domain: None,
            request_resource: None,
            endpoint: None,
            request_id: None,
            response_code: None,
            response_status: ResponseStatus::Unknown,
            response_exception: None,
            response_result: None,
            req_tcp_seq: None,
            resp_tcp_seq: None,
            syscall_trace_id_request: None,
            syscall_trace_id_response: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            x_request_id_0: None,
            x_request_id_1: None,
            start_time_us: 0,
            end_time_us: 0,
            response_duration_us: None,
            ip_src: String::new(),
            ip_dst: String::new(),
            port_src: 0,
            port_dst: 0,
            l4_protocol: crate::L4Protocol::default(),
            captured_request_byte: 0,
            captured_response_byte: 0,
            tap_side: TapSide::default(),
            process_id: None,
            thread_id: None,
            process_name: None,
            tags: BTreeMap::new(),
        }
    }

    /// Fill the address fields from the flow key (client = src, server = dst).
    pub fn set_flow(&mut self, key: &FlowKey) {
        self.ip_src = ip_string(key.ip_src);
        self.ip_dst = ip_string(key.ip_dst);
        self.port_src = key.port_src;
        self.port_dst = key.port_dst;
        self.l4_protocol = key.l4_protocol;
    }

    /// Which side initiated this exchange is not in the contract; this helper names the side a *message* came
    /// from as the flow's orientation sees it, for callers that need it.
    pub const fn side_of(dir: Direction) -> &'static str {
        match dir {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        }
    }
}

/// `ip.to_string()`, without the formatting machinery for IPv4 (once per log per address: it showed in
/// profiles).
fn ip_string(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, b) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if b >= 100 {
            s.push(char::from(b'0' + b / 100));
        }
        if b >= 10 {
            s.push(char::from(b'0' + (b / 10) % 10));
        }
        s.push(char::from(b'0' + b % 10));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every field of the contract table in `design.md`, with its JSON type ("s" string, "i" integer,
    /// "o" object); a trailing `?` means nullable.
    const CONTRACT: &[(&str, &str)] = &[
        ("l7_protocol", "s"),
        ("version", "s?"),
        ("request_type", "s?"),
        ("request_domain", "s?"),
        ("request_resource", "s?"),
        ("endpoint", "s?"),
        ("request_id", "i?"),
        ("response_code", "i?"),
        ("response_status", "s"),
        ("response_exception", "s?"),
        ("response_result", "s?"),
        ("req_tcp_seq", "i?"),
        ("resp_tcp_seq", "i?"),
        ("syscall_trace_id_request", "i?"),
        ("syscall_trace_id_response", "i?"),
        ("trace_id", "s?"),
        ("span_id", "s?"),
        ("parent_span_id", "s?"),
        ("x_request_id_0", "s?"),
        ("x_request_id_1", "s?"),
        ("start_time_us", "i"),
        ("end_time_us", "i"),
        ("response_duration_us", "i?"),
        ("ip_src", "s"),
        ("ip_dst", "s"),
        ("port_src", "i"),
        ("port_dst", "i"),
        ("l4_protocol", "s"),
        ("captured_request_byte", "i"),
        ("captured_response_byte", "i"),
        ("tap_side", "s"),
        ("process_id", "i?"),
        ("thread_id", "i?"),
        ("process_name", "s?"),
        ("tags", "o"),
    ];

    fn check_type(name: &str, v: &Value, ty: &str) {
        let (base, nullable) = ty.strip_suffix('?').map_or((ty, false), |b| (b, true));
        if v.is_null() {
            assert!(nullable, "{name} is null but not nullable");
            return;
        }
        let ok = match base {
            "s" => v.is_string(),
            "i" => v.is_i64() || v.is_u64(),
            "o" => v.is_object(),
            _ => false,
        };
        assert!(ok, "{name} has the wrong JSON type: {v}");
    }

    fn full_log() -> RequestLog {
        let mut tags = BTreeMap::new();
        tags.insert("k8s.pod".to_string(), "web-1".to_string());
        RequestLog {
            l7_protocol: L7Protocol::Http1,
            version: Some("1.1".into()),
            request_type: Some("GET".into()),
            request_domain: Some("example.com".into()),
            request_resource: Some("/a?b=1".into()),
            endpoint: Some("/a".into()),
            request_id: Some(7),
            response_code: Some(200),
            response_status: ResponseStatus::Ok,
            response_exception: Some("x".into()),
            response_result: Some("y".into()),
            req_tcp_seq: Some(1),
            resp_tcp_seq: Some(2),
            syscall_trace_id_request: Some(3),
            syscall_trace_id_response: Some(4),
            trace_id: Some("t".into()),
            span_id: Some("s".into()),
            parent_span_id: Some("p".into()),
            x_request_id_0: Some("r0".into()),
            x_request_id_1: Some("r1".into()),
            start_time_us: 10,
            end_time_us: 20,
            response_duration_us: Some(10),
            ip_src: "127.0.0.1".into(),
            ip_dst: "127.0.0.2".into(),
            port_src: 5000,
            port_dst: 80,
            l4_protocol: crate::L4Protocol::Tcp,
            captured_request_byte: 100,
            captured_response_byte: 200,
            tap_side: TapSide::ClientProcess,
            process_id: Some(42),
            thread_id: Some(43),
            process_name: Some("curl".into()),
            tags,
        }
    }

    #[test]
    fn every_contract_field_is_present_with_its_type() {
        for log in [RequestLog::new(L7Protocol::Redis), full_log()] {
            let v = serde_json::to_value(&log).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(
                obj.len(),
                CONTRACT.len(),
                "extra or missing fields: {:?}",
                obj.keys()
            );
            for (name, ty) in CONTRACT {
                let field = obj
                    .get(*name)
                    .unwrap_or_else(|| panic!("missing field {name}"));
                check_type(name, field, ty);
            }
        }
    }

    #[test]
    fn empty_log_is_null_not_empty_string() {
        let v = serde_json::to_value(RequestLog::new(L7Protocol::Dns)).unwrap();
        assert_eq!(v["request_type"], Value::Null);
        assert_eq!(v["response_status"], "unknown");
        assert_eq!(v["tap_side"], "network");
        assert_eq!(v["tags"], serde_json::json!({}));
    }

    /// `new` is the default log with the given protocol.
    #[test]
    fn new_is_default_with_protocol() {
        let want = RequestLog {
            l7_protocol: L7Protocol::Mqtt,
            ..RequestLog::default()
        };
        assert_eq!(RequestLog::new(L7Protocol::Mqtt), want);
    }

    /// Addresses are written as `IpAddr`'s `Display` writes them.
    #[test]
    fn addresses_match_display() {
        let mut ips: Vec<std::net::IpAddr> =
            ["0.0.0.0", "255.255.255.255", "10.9.100.99", "1.20.199.5"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        ips.extend((0..=255u8).map(|b| std::net::IpAddr::from([b, 255 - b, b / 2, b % 10])));
        ips.push("::ffff:10.0.0.1".parse().unwrap());
        ips.push("fe80::1".parse().unwrap());
        for ip in ips {
            let mut log = RequestLog::new(L7Protocol::Http1);
            log.set_flow(&FlowKey {
                ip_src: ip,
                ip_dst: ip,
                port_src: 1,
                port_dst: 2,
                l4_protocol: crate::L4Protocol::Tcp,
            });
            assert_eq!(log.ip_src, ip.to_string());
            assert_eq!(log.ip_dst, ip.to_string());
        }
    }

    #[test]
    fn round_trips_through_json() {
        let log = full_log();
        let back: RequestLog = serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
        assert_eq!(back, log);
        assert_eq!(
            serde_json::to_value(&log).unwrap()["tap_side"],
            "client_process"
        );
    }
}
