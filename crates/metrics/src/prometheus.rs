//! Prometheus text exposition format (version 0.0.4) of a [`Snapshot`], and a tiny HTTP server for it.
//!
//! Counters are cumulative since the series was created (a series evicted after being idle disappears and
//! restarts from zero if it comes back, which Prometheus treats as a counter reset). Latency and handshake RTT
//! are summaries: `_sum`/`_count` cumulative, the `quantile` samples from the last closed 1 min window.
//! Metric names and labels are listed in `docs/metrics.md`.

use crate::aggregator::Snapshot;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value: backslash, double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds from microseconds, for `_seconds` metrics.
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Render `snap` in the Prometheus text format.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    render_red(snap, &mut out);
    render_l4(snap, &mut out);
    render_stats(snap, &mut out);
    out
}

fn render_red(snap: &Snapshot, out: &mut String) {
    let keyed: Vec<([(&str, &str); 3], &crate::RedTotals)> = snap
        .red
        .iter()
        .map(|s| {
            (
                [
                    ("l7_protocol", s.l7_protocol.as_str()),
                    ("server", s.server.as_str()),
                    ("endpoint", s.endpoint.as_deref().unwrap_or("")),
                ],
                &s.totals,
            )
        })
        .collect();
    let mut f = Family::header(
        out,
        "fathom_requests_total",
        "counter",
        "Requests seen (one per request log), by protocol, server and endpoint.",
    );
    for (l, t) in &keyed {
        f.sample("fathom_requests_total", l, t.request as f64);
    }
    let mut f = Family::header(
        out,
        "fathom_request_errors_total",
        "counter",
        "Requests that failed, by class: client (client_error), server (server_error), timeout.",
    );
    for (l, t) in &keyed {
        for (class, n) in [
            ("client", t.error_client),
            ("server", t.error_server),
            ("timeout", t.timeout),
        ] {
            let labels = [l[0], l[1], l[2], ("class", class)];
            f.sample("fathom_request_errors_total", &labels, n as f64);
        }
    }
    let mut f = Family::header(
        out,
        "fathom_request_duration_seconds",
        "summary",
        "Response time; quantiles over the last closed minute, sum and count since start.",
    );
    for (l, t) in &keyed {
        if let Some(q) = t.last_minute_latency_us {
            for (name, v) in [("0.5", q[0]), ("0.9", q[1]), ("0.99", q[2])] {
                let labels = [l[0], l[1], l[2], ("quantile", name)];
                f.sample("fathom_request_duration_seconds", &labels, secs(v));
            }
        }
        f.sample(
            "fathom_request_duration_seconds_sum",
            l,
            secs(t.latency_sum_us),
        );
        f.sample(
            "fathom_request_duration_seconds_count",
            l,
            t.latency_count as f64,
        );
    }
    let mut f = Family::header(
        out,
        "fathom_request_duration_max_seconds",
        "gauge",
        "Largest response time in the last closed minute.",
    );
    for (l, t) in &keyed {
        if let Some(q) = t.last_minute_latency_us {
            f.sample("fathom_request_duration_max_seconds", l, secs(q[3]));
        }
    }
    for (name, help, pick) in [
        (
            "fathom_request_bytes_total",
            "Request payload bytes.",
            (|t: &crate::RedTotals| t.byte_request) as fn(&crate::RedTotals) -> u64,
        ),
        (
            "fathom_response_bytes_total",
            "Response payload bytes.",
            |t: &crate::RedTotals| t.byte_response,
        ),
    ] {
        let mut f = Family::header(out, name, "counter", help);
        for (l, t) in &keyed {
            f.sample(name, l, pick(t) as f64);
        }
    }
}

fn render_l4(snap: &Snapshot, out: &mut String) {
    use crate::L4Totals;
    let keyed: Vec<([(&str, &str); 2], &L4Totals)> = snap
        .l4
        .iter()
        .map(|s| {
            (
                [
                    ("l4_protocol", s.l4_protocol.as_str()),
                    ("server", s.server.as_str()),
                ],
                &s.totals,
            )
        })
        .collect();
    let mut f = Family::header(
        out,
        "fathom_l4_connections_opened_total",
        "counter",
        "Connections whose opening was seen (TCP handshake measured, or a UDP flow).",
    );
    for (l, t) in &keyed {
        f.sample(
            "fathom_l4_connections_opened_total",
            l,
            t.counts.new_connection as f64,
        );
    }
    let mut f = Family::header(
        out,
        "fathom_l4_connections_closed_total",
        "counter",
        "Connections ended, by reason: fin, rst, timeout (idle timeout or flow-table eviction), open (still open when the capture ended).",
    );
    for (l, t) in &keyed {
        let c = &t.counts;
        let open = c
            .flow
            .saturating_sub(c.close_fin + c.close_rst + c.close_timeout);
        for (reason, n) in [
            ("fin", c.close_fin),
            ("rst", c.close_rst),
            ("timeout", c.close_timeout),
            ("open", open),
        ] {
            let labels = [l[0], l[1], ("reason", reason)];
            f.sample("fathom_l4_connections_closed_total", &labels, n as f64);
        }
    }
    type Pick = fn(&L4Totals) -> (u64, u64);
    let per_direction: [(&str, &str, Pick); 4] = [
        (
            "fathom_l4_retransmissions_total",
            "Retransmitted segments, by direction (tx client to server, rx server to client).",
            |t| (t.counts.retrans_tx, t.counts.retrans_rx),
        ),
        ("fathom_l4_packets_total", "Packets, by direction.", |t| {
            (t.counts.packet_tx, t.counts.packet_rx)
        }),
        (
            "fathom_l4_bytes_total",
            "Frame bytes on the wire, by direction.",
            |t| (t.counts.byte_tx, t.counts.byte_rx),
        ),
        (
            "fathom_l4_lost_bytes_total",
            "Bytes never seen (capture gaps), by direction.",
            |t| (t.counts.lost_byte_tx, t.counts.lost_byte_rx),
        ),
    ];
    for (name, help, pick) in per_direction {
        let mut f = Family::header(out, name, "counter", help);
        for (l, t) in &keyed {
            let (tx, rx) = pick(t);
            f.sample(name, &[l[0], l[1], ("direction", "tx")], tx as f64);
            f.sample(name, &[l[0], l[1], ("direction", "rx")], rx as f64);
        }
    }
    let mut f = Family::header(
        out,
        "fathom_l4_handshake_rtt_seconds",
        "summary",
        "TCP handshake round-trip time at the capture point; quantiles over the last closed minute.",
    );
    for (l, t) in &keyed {
        if let Some(q) = t.last_minute_rtt_us {
            for (name, v) in [("0.5", q[0]), ("0.9", q[1]), ("0.99", q[2])] {
                let labels = [l[0], l[1], ("quantile", name)];
                f.sample("fathom_l4_handshake_rtt_seconds", &labels, secs(v));
            }
        }
        f.sample("fathom_l4_handshake_rtt_seconds_sum", l, secs(t.rtt_sum_us));
        f.sample(
            "fathom_l4_handshake_rtt_seconds_count",
            l,
            t.rtt_count as f64,
        );
    }
}

fn render_stats(snap: &Snapshot, out: &mut String) {
    let s = &snap.stats;
    let mut f = Family::header(
        out,
        "fathom_metrics_series",
        "gauge",
        "Live series in the aggregator, overflow series excluded.",
    );
    f.sample("fathom_metrics_series", &[("kind", "red")], s.series as f64);
    f.sample(
        "fathom_metrics_series",
        &[("kind", "l4")],
        s.l4_series as f64,
    );
    let mut f = Family::header(
        out,
        "fathom_metrics_overflow_records_total",
        "counter",
        "Records counted in an __overflow__ series because the series cap was reached.",
    );
    let labels = |k| [("kind", k)];
    f.sample(
        "fathom_metrics_overflow_records_total",
        &labels("red"),
        s.overflow_logs as f64,
    );
    f.sample(
        "fathom_metrics_overflow_records_total",
        &labels("l4"),
        s.overflow_flows as f64,
    );
    let mut f = Family::header(
        out,
        "fathom_metrics_late_records_total",
        "counter",
        "Records older than their window's close, counted in the oldest open window.",
    );
    f.sample(
        "fathom_metrics_late_records_total",
        &labels("red"),
        s.late_logs as f64,
    );
    f.sample(
        "fathom_metrics_late_records_total",
        &labels("l4"),
        s.late_flows as f64,
    );
    let mut f = Family::header(
        out,
        "fathom_metrics_evicted_series_total",
        "counter",
        "RED series forgotten after being idle.",
    );
    f.sample(
        "fathom_metrics_evicted_series_total",
        &[],
        s.series_evicted as f64,
    );
}

/// A tiny HTTP/1.1 server answering `GET /metrics` with the last published exposition, on its own thread.
///
/// Stopped (and its thread joined) on drop.
pub struct PrometheusServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PrometheusServer {
    /// Listen on `addr` (e.g. `127.0.0.1:9100`, or port 0 for any free port).
    ///
    /// # Errors
    /// Binding or spawning the thread failed.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<PrometheusServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let body = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&body), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("fathom-prometheus".into())
            .spawn(move || serve(&listener, &b, &s))?;
        Ok(PrometheusServer {
            addr,
            body,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Render `snap` and serve it from now on.
    pub fn publish(&self, snap: &Snapshot) {
        let text = render(snap);
        if let Ok(mut b) = self.body.lock() {
            *b = text;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, body: &Mutex<String>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(stream) = conn {
            // One bad client must not stop the server.
            let _ = answer(stream, body);
        }
    }
}

fn answer(mut stream: TcpStream, body: &Mutex<String>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let Some(free) = buf.get_mut(len..).filter(|f| !f.is_empty()) else {
            break;
        };
        let n = stream.read(free)?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, text) = if method != "GET" {
        ("405 Method Not Allowed", "text/plain", String::new())
    } else if path == "/metrics" || path == "/" {
        let text = body.lock().map(|b| b.clone()).unwrap_or_default();
        ("200 OK", CONTENT_TYPE, text)
    } else {
        ("404 Not Found", "text/plain", String::new())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )?;
    stream.write_all(text.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
