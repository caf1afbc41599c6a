//! OTLP metrics export (feature `otlp`): a [`Snapshot`] as an OTLP `ExportMetricsServiceRequest`, sent by
//! OTLP/HTTP with protobuf encoding (`POST {url}/v1/metrics`, `Content-Type: application/x-protobuf`).
//!
//! Counters are cumulative monotonic sums (start time: the aggregator's first record); latency and handshake
//! RTT are summaries (count and sum since start; the 0.5/0.9/0.99 quantiles and the max as quantile 1.0 of the
//! last closed minute). Names and attributes are listed in `docs/metrics.md`.
//!
//! The HTTP client is a minimal blocking HTTP/1.1 client over `std::net` (plain `http://` only; put a local
//! collector in front for TLS), so the feature pulls in only the generated protobuf types and prost.

use crate::aggregator::Snapshot;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An OTLP export failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("invalid OTLP URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting, sending or receiving failed.
    #[error("OTLP request failed: {0}")]
    Io(#[from] io::Error),
    /// The receiver answered with a non-2xx status.
    #[error("OTLP receiver answered HTTP {status}")]
    Status {
        /// The HTTP status code.
        status: u16,
    },
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// A summary data point: attributes, count, sum (µs), last-minute p50/p90/p99/max (µs).
type SummaryPoint = (Vec<KeyValue>, u64, u64, Option<[u64; 4]>);

struct Builder {
    start_ns: u64,
    time_ns: u64,
    metrics: Vec<Metric>,
}

impl Builder {
    fn sum(&mut self, name: &str, unit: &str, help: &str, points: Vec<(Vec<KeyValue>, u64)>) {
        let data_points = points
            .into_iter()
            .map(|(attributes, v)| NumberDataPoint {
                attributes,
                start_time_unix_nano: self.start_ns,
                time_unix_nano: self.time_ns,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(v).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            })
            .collect();
        self.metrics.push(Metric {
            name: name.to_string(),
            description: help.to_string(),
            unit: unit.to_string(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        });
    }

    fn summary(&mut self, name: &str, help: &str, points: Vec<SummaryPoint>) {
        let data_points = points
            .into_iter()
            .map(|(attributes, count, sum_us, q)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: self.start_ns,
                time_unix_nano: self.time_ns,
                count,
                sum: sum_us as f64 / 1e6,
                quantile_values: q
                    .map(|q| {
                        [(0.5, q[0]), (0.9, q[1]), (0.99, q[2]), (1.0, q[3])]
                            .into_iter()
                            .map(|(quantile, v)| ValueAtQuantile {
                                quantile,
                                value: v as f64 / 1e6,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        self.metrics.push(Metric {
            name: name.to_string(),
            description: help.to_string(),
            unit: "s".to_string(),
            data: Some(metric::Data::Summary(Summary { data_points })),
            ..Default::default()
        });
    }
}

/// The OTLP request for `snap`. `resource` becomes the resource's attributes (e.g. `service.name`).
pub fn to_request(snap: &Snapshot, resource: &[(&str, &str)]) -> ExportMetricsServiceRequest {
    let mut b = Builder {
        start_ns: snap.start_time_us.saturating_mul(1000),
        time_ns: snap.time_us.saturating_mul(1000),
        metrics: Vec::new(),
    };
    let red_attrs = |s: &crate::RedSeries| {
        let mut a = vec![kv("l7_protocol", &s.l7_protocol), kv("server", &s.server)];
        if let Some(e) = &s.endpoint {
            a.push(kv("endpoint", e));
        }
        a
    };
    let with = |mut a: Vec<KeyValue>, k: &str, v: &str| {
        a.push(kv(k, v));
        a
    };
    b.sum(
        "fathom.requests",
        "{request}",
        "Requests seen (one per request log).",
        snap.red
            .iter()
            .map(|s| (red_attrs(s), s.totals.request))
            .collect(),
    );
    b.sum(
        "fathom.request.errors",
        "{request}",
        "Failed requests by class (client, server, timeout).",
        snap.red
            .iter()
            .flat_map(|s| {
                let t = &s.totals;
                [
                    ("client", t.error_client),
                    ("server", t.error_server),
                    ("timeout", t.timeout),
                ]
                .map(|(c, n)| (with(red_attrs(s), "class", c), n))
            })
            .collect(),
    );
    b.summary(
        "fathom.request.duration",
        "Response time; quantiles of the last closed minute (1.0 is the max).",
        snap.red
            .iter()
            .map(|s| {
                let t = &s.totals;
                (
                    red_attrs(s),
                    t.latency_count,
                    t.latency_sum_us,
                    t.last_minute_latency_us,
                )
            })
            .collect(),
    );
    b.sum(
        "fathom.request.bytes",
        "By",
        "Request payload bytes.",
        snap.red
            .iter()
            .map(|s| (red_attrs(s), s.totals.byte_request))
            .collect(),
    );
    b.sum(
        "fathom.response.bytes",
        "By",
        "Response payload bytes.",
        snap.red
            .iter()
            .map(|s| (red_attrs(s), s.totals.byte_response))
            .collect(),
    );
    l4_metrics(snap, &mut b);
    b.sum(
        "fathom.metrics.overflow_records",
        "{record}",
        "Records counted in an __overflow__ series because the series cap was reached.",
        vec![
            (vec![kv("kind", "red")], snap.stats.overflow_logs),
            (vec![kv("kind", "l4")], snap.stats.overflow_flows),
        ],
    );
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "fathom-metrics".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics: b.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn l4_metrics(snap: &Snapshot, b: &mut Builder) {
    let attrs = |s: &crate::L4Series| {
        vec![
            kv("l4_protocol", s.l4_protocol.as_str()),
            kv("server", &s.server),
        ]
    };
    let with = |mut a: Vec<KeyValue>, k: &str, v: &str| {
        a.push(kv(k, v));
        a
    };
    b.sum(
        "fathom.l4.connections.opened",
        "{connection}",
        "Connections whose opening was seen.",
        snap.l4
            .iter()
            .map(|s| (attrs(s), s.totals.counts.new_connection))
            .collect(),
    );
    b.sum(
        "fathom.l4.connections.closed",
        "{connection}",
        "Connections ended by reason (fin, rst, timeout, open).",
        snap.l4
            .iter()
            .flat_map(|s| {
                let c = &s.totals.counts;
                let open = c
                    .flow
                    .saturating_sub(c.close_fin + c.close_rst + c.close_timeout);
                [
                    ("fin", c.close_fin),
                    ("rst", c.close_rst),
                    ("timeout", c.close_timeout),
                    ("open", open),
                ]
                .map(|(r, n)| (with(attrs(s), "reason", r), n))
            })
            .collect(),
    );
    type Pick = fn(&crate::L4Counts) -> (u64, u64);
    let dirs: [(&str, &str, &str, Pick); 4] = [
        (
            "fathom.l4.retransmissions",
            "{segment}",
            "Retransmitted segments by direction.",
            |c| (c.retrans_tx, c.retrans_rx),
        ),
        (
            "fathom.l4.packets",
            "{packet}",
            "Packets by direction.",
            |c| (c.packet_tx, c.packet_rx),
        ),
        ("fathom.l4.bytes", "By", "Frame bytes by direction.", |c| {
            (c.byte_tx, c.byte_rx)
        }),
        (
            "fathom.l4.lost_bytes",
            "By",
            "Bytes never seen by direction.",
            |c| (c.lost_byte_tx, c.lost_byte_rx),
        ),
    ];
    for (name, unit, help, pick) in dirs {
        b.sum(
            name,
            unit,
            help,
            snap.l4
                .iter()
                .flat_map(|s| {
                    let (tx, rx) = pick(&s.totals.counts);
                    [("tx", tx), ("rx", rx)].map(|(d, n)| (with(attrs(s), "direction", d), n))
                })
                .collect(),
        );
    }
    b.summary(
        "fathom.l4.handshake_rtt",
        "TCP handshake RTT; quantiles of the last closed minute (1.0 is the max).",
        snap.l4
            .iter()
            .map(|s| {
                let t = &s.totals;
                (attrs(s), t.rtt_count, t.rtt_sum_us, t.last_minute_rtt_us)
            })
            .collect(),
    );
}

/// Sends snapshots to an OTLP/HTTP receiver.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
    resource: Vec<(String, String)>,
}

impl OtlpExporter {
    /// An exporter to `url` (`http://host[:port][/base]`; requests go to `/base/v1/metrics` unless the URL
    /// already ends with `/v1/metrics`), with `service.name = fathom-agent`.
    ///
    /// # Errors
    /// [`OtlpError::InvalidUrl`] for anything but a plain `http://` URL.
    pub fn new(url: &str) -> Result<OtlpExporter, OtlpError> {
        let invalid = |reason| OtlpError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// is supported"))?;
        let (authority, base) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().map_err(|_| invalid("bad port"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let base = base.trim_end_matches('/');
        let path = if base.ends_with("/v1/metrics") {
            base.to_string()
        } else {
            format!("{base}/v1/metrics")
        };
        Ok(OtlpExporter {
            host: host.to_string(),
            port,
            path,
            timeout: Duration::from_secs(10),
            resource: vec![("service.name".to_string(), "fathom-agent".to_string())],
        })
    }

    /// Replace the resource attributes.
    pub fn with_resource(mut self, attrs: &[(&str, &str)]) -> OtlpExporter {
        self.resource = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// Set the connect/read/write timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> OtlpExporter {
        self.timeout = timeout;
        self
    }

    /// The request path (e.g. `/v1/metrics`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Encode `snap` and POST it.
    ///
    /// # Errors
    /// [`OtlpError::Io`] when the receiver cannot be reached, [`OtlpError::Status`] when it answers non-2xx.
    pub fn export(&self, snap: &Snapshot) -> Result<(), OtlpError> {
        let resource: Vec<(&str, &str)> = self
            .resource
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = to_request(snap, &resource).encode_to_vec();
        self.post(&body)
    }

    fn post(&self, body: &[u8]) -> Result<(), OtlpError> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        write!(
            s,
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            body.len()
        )?;
        s.write_all(body)?;
        s.flush()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        let line = String::from_utf8_lossy(&head);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(OtlpError::Status { status })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = OtlpExporter::new("http://127.0.0.1:4318").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path()),
            ("127.0.0.1", 4318, "/v1/metrics")
        );
        let e = OtlpExporter::new("http://collector/otlp/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path()),
            ("collector", 80, "/otlp/v1/metrics")
        );
        let e = OtlpExporter::new("http://[::1]:4318/v1/metrics").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path()),
            ("::1", 4318, "/v1/metrics")
        );
        assert!(OtlpExporter::new("https://x").is_err());
        assert!(OtlpExporter::new("http://:80").is_err());
    }
}
