//! [`MetricsDriver`]: the few calls an agent needs to turn its logs and flows into metric outputs — JSON rows on
//! a writer, a Prometheus endpoint, OTLP pushes — with the clock handled for it.

use crate::aggregator::{Aggregator, Closed, Config};
use crate::prometheus::PrometheusServer;
use fathom_model::{FlowRecord, RequestLog};
use std::io::{self, Write};

/// Where the metrics go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// Write every closed window's [`crate::MetricRow`] as a JSON line.
    pub json_rows: bool,
    /// Also write [`crate::L4Row`]s as JSON lines (a different shape: off for `--json metrics`).
    pub json_l4_rows: bool,
    /// Serve the Prometheus exposition on this address (`host:port`).
    pub prometheus: Option<String>,
    /// Push OTLP/HTTP to this URL (needs the `otlp` feature).
    pub otlp: Option<String>,
    /// Push OTLP every this many µs of the driver's clock (and at the end). 0 means 10 s.
    pub otlp_interval_us: u64,
    /// Take the clock from the records' times (capture files) instead of [`MetricsDriver::tick`] calls.
    pub clock_from_records: bool,
}

/// A driver setup failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The Prometheus address could not be bound.
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    PrometheusBind {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The OTLP URL is invalid.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Otlp(#[from] crate::otlp::OtlpError),
    /// OTLP was asked for but this build has no `otlp` feature.
    #[error("OTLP export needs fathom-metrics built with the `otlp` feature")]
    OtlpNotBuilt,
}

/// Aggregator plus outputs. Feed it with [`MetricsDriver::on_log`] / [`MetricsDriver::on_flow`], call
/// [`MetricsDriver::tick`] periodically when live, and [`MetricsDriver::finish`] at the end.
pub struct MetricsDriver {
    agg: Aggregator,
    opts: DriverOptions,
    clock_us: u64,
    prometheus: Option<PrometheusServer>,
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::OtlpExporter>,
    next_otlp_us: u64,
    otlp_failures: u64,
    last_otlp_error: Option<String>,
    /// Wall-clock time of the last Prometheus publish (rendering is throttled to once per second).
    last_publish: Option<std::time::Instant>,
}

impl MetricsDriver {
    /// Set up the aggregator and the outputs.
    ///
    /// # Errors
    /// [`DriverError`] when the Prometheus address cannot be bound or the OTLP URL is invalid/unsupported.
    pub fn new(config: Config, opts: DriverOptions) -> Result<MetricsDriver, DriverError> {
        let prometheus = match &opts.prometheus {
            Some(addr) => Some(PrometheusServer::bind(addr.as_str()).map_err(|source| {
                DriverError::PrometheusBind {
                    addr: addr.clone(),
                    source,
                }
            })?),
            None => None,
        };
        #[cfg(feature = "otlp")]
        let otlp = match &opts.otlp {
            Some(url) => Some(crate::otlp::OtlpExporter::new(url)?),
            None => None,
        };
        #[cfg(not(feature = "otlp"))]
        if opts.otlp.is_some() {
            return Err(DriverError::OtlpNotBuilt);
        }
        Ok(MetricsDriver {
            agg: Aggregator::new(config),
            opts,
            clock_us: 0,
            prometheus,
            #[cfg(feature = "otlp")]
            otlp,
            next_otlp_us: 0,
            otlp_failures: 0,
            last_otlp_error: None,
            last_publish: None,
        })
    }

    /// The aggregator (for its stats or snapshot).
    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// The Prometheus server's bound address, if serving.
    pub fn prometheus_addr(&self) -> Option<std::net::SocketAddr> {
        self.prometheus.as_ref().map(PrometheusServer::local_addr)
    }

    /// OTLP pushes that failed, and the last failure.
    pub fn otlp_failures(&self) -> (u64, Option<&str>) {
        (self.otlp_failures, self.last_otlp_error.as_deref())
    }

    /// Count a log; with `clock_from_records`, its end time moves the clock.
    ///
    /// # Errors
    /// Writing JSON rows to `out` failed.
    pub fn on_log(&mut self, log: &RequestLog, out: &mut impl Write) -> io::Result<()> {
        self.agg.observe_log(log);
        if self.opts.clock_from_records {
            self.tick(log.end_time_us.max(log.start_time_us), out)?;
        }
        Ok(())
    }

    /// Count an ended flow; with `clock_from_records`, its end time moves the clock.
    ///
    /// # Errors
    /// Writing JSON rows to `out` failed.
    pub fn on_flow(&mut self, flow: &FlowRecord, out: &mut impl Write) -> io::Result<()> {
        self.agg.observe_flow(flow);
        if self.opts.clock_from_records {
            self.tick(flow.end_time_us, out)?;
        }
        Ok(())
    }

    /// Move the clock to `now_us` (wall clock live), emitting closed windows.
    ///
    /// # Errors
    /// Writing JSON rows to `out` failed.
    pub fn tick(&mut self, now_us: u64, out: &mut impl Write) -> io::Result<()> {
        if now_us <= self.clock_us {
            return Ok(());
        }
        self.clock_us = now_us;
        let closed = self.agg.advance(now_us);
        self.emit(closed, false, out)
    }

    /// Close every window, write the last rows, publish and push the final totals.
    ///
    /// # Errors
    /// Writing JSON rows to `out` failed.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        let closed = self.agg.flush();
        self.emit(closed, true, out)
    }

    fn emit(&mut self, closed: Closed, last: bool, out: &mut impl Write) -> io::Result<()> {
        let any = !closed.is_empty();
        if self.opts.json_rows {
            for r in &closed.rows {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
        }
        if self.opts.json_l4_rows {
            for r in &closed.l4_rows {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
        }
        if !any && !last {
            return Ok(());
        }
        let want_otlp = self.opts.otlp.is_some() && (last || self.clock_us >= self.next_otlp_us);
        // Replaying a file closes many windows per wall-clock second: render at most once per second.
        let want_prometheus = self.prometheus.is_some()
            && (last
                || self
                    .last_publish
                    .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)));
        if !want_prometheus && !want_otlp {
            return Ok(());
        }
        let snap = self.agg.snapshot();
        if let Some(p) = self.prometheus.as_ref().filter(|_| want_prometheus) {
            p.publish(&snap);
            self.last_publish = Some(std::time::Instant::now());
        }
        if want_otlp {
            let interval = match self.opts.otlp_interval_us {
                0 => 10_000_000,
                n => n,
            };
            self.next_otlp_us = self.clock_us.saturating_add(interval);
            self.push_otlp(&snap);
        }
        Ok(())
    }

    #[cfg(feature = "otlp")]
    fn push_otlp(&mut self, snap: &crate::Snapshot) {
        if let Some(e) = &self.otlp {
            if let Err(err) = e.export(snap) {
                self.otlp_failures += 1;
                self.last_otlp_error = Some(err.to_string());
            }
        }
    }

    #[cfg(not(feature = "otlp"))]
    fn push_otlp(&mut self, _snap: &crate::Snapshot) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_model::L7Protocol;

    #[test]
    fn json_rows_follow_the_record_clock() {
        let mut d = MetricsDriver::new(
            Config::default(),
            DriverOptions {
                json_rows: true,
                clock_from_records: true,
                ..DriverOptions::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        let t0 = 1_800_000_000_000_000;
        for i in 0..5u64 {
            let mut l = RequestLog::new(L7Protocol::Dns);
            l.ip_dst = "10.0.0.53".into();
            l.port_dst = 53;
            l.end_time_us = t0 + i * 700_000;
            d.on_log(&l, &mut out).unwrap();
        }
        // Second 0 (0 and 0.7 s) closed by the clock, second 1 (1.4 s) by the series moving on to second 2.
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(r#""request":2"#), "{text}");
        d.finish(&mut out).unwrap();
        let rows: Vec<crate::MetricRow> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let secs: u64 = rows
            .iter()
            .filter(|r| r.window_s == 1)
            .map(|r| r.request)
            .sum();
        let mins: u64 = rows
            .iter()
            .filter(|r| r.window_s == 60)
            .map(|r| r.request)
            .sum();
        assert_eq!((secs, mins), (5, 5));
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn otlp_without_the_feature_is_an_error() {
        let r = MetricsDriver::new(
            Config::default(),
            DriverOptions {
                otlp: Some("http://127.0.0.1:4318".into()),
                ..DriverOptions::default()
            },
        );
        assert!(matches!(r, Err(DriverError::OtlpNotBuilt)));
    }
}
