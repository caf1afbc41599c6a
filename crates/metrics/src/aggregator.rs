//! The [`Aggregator`]: logs and flow records in, closed window rows and exporter snapshots out.

use crate::l4::{L4Cell, L4Key, L4KeyRef, L4Row, L4Totals};
use crate::red::{MetricRow, RedCell, RedKeyRef, RedTotals};
use crate::sketch::{LatencySketch, DEFAULT_SCALE};
use crate::table::{Table, SEC_US};
use fathom_model::{FlowRecord, L4Protocol, RequestLog};

/// Aggregation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A tag whose value names the server instead of `ip:port` when a log carries it (e.g. `k8s.service`).
    pub service_tag: Option<String>,
    /// Cap on live RED series (overflow series excluded); past it, new keys go to the protocol's
    /// `__overflow__` series.
    pub max_series: usize,
    /// Cap on live L4 series; past it, new servers go to the transport's `__overflow__` series.
    pub max_l4_series: usize,
    /// Latency sketch scale (`γ = 2^(2^-scale)`), at most [`crate::sketch::MAX_SCALE`].
    pub sketch_scale: u8,
    /// Hand out each closed window's sketch with its row ([`Closed::latency`], [`Closed::rtt`]), e.g. to ship it
    /// to a server that merges windows; off by default (it clones one sketch per row).
    pub keep_sketches: bool,
    /// How long after its end a window is closed by [`Aggregator::advance`] (lets late records in).
    pub grace_us: u64,
    /// A series with no record for this long (and no open window) is forgotten, freeing its place under the cap.
    pub idle_evict_us: u64,
}

impl Config {
    /// Default cap on live RED series.
    pub const DEFAULT_MAX_SERIES: usize = 10_000;
    /// Default cap on live L4 series.
    pub const DEFAULT_MAX_L4_SERIES: usize = 10_000;
    /// Default grace: 1 s.
    pub const DEFAULT_GRACE_US: u64 = SEC_US;
    /// Default idle eviction: 5 min.
    pub const DEFAULT_IDLE_EVICT_US: u64 = 300 * SEC_US;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_tag: None,
            max_series: Config::DEFAULT_MAX_SERIES,
            max_l4_series: Config::DEFAULT_MAX_L4_SERIES,
            sketch_scale: DEFAULT_SCALE,
            keep_sketches: false,
            grace_us: Config::DEFAULT_GRACE_US,
            idle_evict_us: Config::DEFAULT_IDLE_EVICT_US,
        }
    }
}

/// Rows of the windows closed by one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closed {
    /// RED rows, sorted by window start, window length, protocol, server, endpoint.
    pub rows: Vec<MetricRow>,
    /// L4 rows, sorted by window start, window length, transport, server.
    pub l4_rows: Vec<L4Row>,
    /// With [`Config::keep_sketches`]: the latency sketch of each RED row's window (parallel to `rows`);
    /// otherwise empty.
    pub latency: Vec<LatencySketch>,
    /// With [`Config::keep_sketches`]: the RTT sketch of each L4 row's window (parallel to `l4_rows`);
    /// otherwise empty.
    pub rtt: Vec<LatencySketch>,
}

impl Closed {
    /// True when no window closed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.l4_rows.is_empty()
    }
}

/// The aggregator's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Logs observed.
    pub logs: u64,
    /// Flow records observed.
    pub flows: u64,
    /// Live RED series (overflow series excluded).
    pub series: usize,
    /// Live L4 series (overflow series excluded).
    pub l4_series: usize,
    /// Logs counted in an `__overflow__` series because the series cap was reached.
    pub overflow_logs: u64,
    /// Flow records counted in an `__overflow__` series.
    pub overflow_flows: u64,
    /// Logs older than their window's close, counted in the oldest open window.
    pub late_logs: u64,
    /// Flow records older than their window's close.
    pub late_flows: u64,
    /// RED series created (overflow series included).
    pub series_created: u64,
    /// RED series evicted after being idle.
    pub series_evicted: u64,
}

/// One RED series' cumulative totals, for exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedSeries {
    /// Protocol name.
    pub l7_protocol: String,
    /// Server (`ip:port`, tag value or `__overflow__`).
    pub server: String,
    /// Endpoint, if any.
    pub endpoint: Option<String>,
    /// Totals over every closed 1 s window since the series was created.
    pub totals: RedTotals,
}

/// One L4 series' cumulative totals, for exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Series {
    /// Transport.
    pub l4_protocol: L4Protocol,
    /// Server `ip:port` or `__overflow__`.
    pub server: String,
    /// Totals over every closed 1 s window since the series was created.
    pub totals: L4Totals,
}

/// Everything an exporter shows: cumulative series totals and the aggregator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// When the aggregator saw its first record (µs since the epoch), the start of every cumulative total.
    pub start_time_us: u64,
    /// The time of the snapshot (µs since the epoch): the last [`Aggregator::advance`] time.
    pub time_us: u64,
    /// RED series with at least one closed window, sorted by key.
    pub red: Vec<RedSeries>,
    /// L4 series with at least one closed window, sorted by key.
    pub l4: Vec<L4Series>,
    /// Counters.
    pub stats: Stats,
}

/// RED and L4 aggregation over 1 s and 1 min windows.
///
/// Feed it with [`Aggregator::observe_log`] and [`Aggregator::observe_flow`], move its clock with
/// [`Aggregator::advance`] (capture time for files, wall clock live) to get the rows of closed windows, and
/// call [`Aggregator::flush`] at the end. A log is counted at its `end_time_us` (when the exchange completed),
/// a flow record at its `end_time_us`.
pub struct Aggregator {
    config: Config,
    red: Table<RedCell>,
    l4: Table<L4Cell>,
    /// Start of the oldest open 1 s window.
    closed_until: u64,
    /// The next `advance` time at which a window may close.
    next_close_us: u64,
    start_us: Option<u64>,
    now_us: u64,
    logs: u64,
    flows: u64,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(config: Config) -> Aggregator {
        let scale = config.sketch_scale.min(crate::sketch::MAX_SCALE);
        let mut red = Table::new(config.max_series, scale);
        let mut l4 = Table::new(config.max_l4_series, scale);
        red.keep_sketches = config.keep_sketches;
        l4.keep_sketches = config.keep_sketches;
        Aggregator {
            red,
            l4,
            config,
            closed_until: 0,
            next_close_us: 0,
            start_us: None,
            now_us: 0,
            logs: 0,
            flows: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn note_time(&mut self, t: u64) {
        if self.start_us.is_none_or(|s| t < s) {
            self.start_us = Some(t);
        }
    }

    /// Count one request log. Allocation-free unless it creates a series or closes this series' 1 s window.
    #[inline]
    pub fn observe_log(&mut self, log: &RequestLog) {
        let t = if log.end_time_us != 0 {
            log.end_time_us
        } else {
            log.start_time_us
        };
        self.logs += 1;
        if self.start_us.is_none() {
            self.note_time(t);
        }
        let key = RedKeyRef::of(log, self.config.service_tag.as_deref());
        self.red
            .observe(key, t, self.closed_until, |cell| cell.add(log));
    }

    /// Count one ended flow.
    pub fn observe_flow(&mut self, flow: &FlowRecord) {
        let t = flow.end_time_us.max(flow.start_time_us);
        self.flows += 1;
        if self.start_us.is_none() {
            self.note_time(flow.start_time_us);
        }
        self.l4
            .observe(L4KeyRef::of(flow), t, self.closed_until, |cell| {
                cell.add(flow)
            });
    }

    /// Move the clock to `now_us`: close every window that ended at least `grace_us` before it, evict idle
    /// series, and return the rows of the closed windows (including windows a series closed by moving on).
    pub fn advance(&mut self, now_us: u64) -> Closed {
        self.now_us = self.now_us.max(now_us);
        if now_us >= self.next_close_us {
            let until = now_us.saturating_sub(self.config.grace_us);
            let until_sec = until - until % SEC_US;
            self.closed_until = self.closed_until.max(until_sec);
            let evict_before = until.saturating_sub(self.config.idle_evict_us);
            self.red.close(until, evict_before);
            self.l4.close(until, evict_before);
            self.next_close_us = until_sec + SEC_US + self.config.grace_us;
        }
        self.take()
    }

    /// Close every open window (end of a capture) and return the rows. Series and totals are kept.
    pub fn flush(&mut self) -> Closed {
        self.red.flush();
        self.l4.flush();
        self.take()
    }

    fn take(&mut self) -> Closed {
        let mut rows = std::mem::take(&mut self.red.pending);
        rows.sort_by(|(a, _), (b, _)| {
            (
                a.window_start_us,
                a.window_s,
                &a.l7_protocol,
                &a.server,
                &a.endpoint,
            )
                .cmp(&(
                    b.window_start_us,
                    b.window_s,
                    &b.l7_protocol,
                    &b.server,
                    &b.endpoint,
                ))
        });
        let mut l4_rows = std::mem::take(&mut self.l4.pending);
        l4_rows.sort_by(|(a, _), (b, _)| {
            (a.window_start_us, a.window_s, a.l4_protocol, &a.server).cmp(&(
                b.window_start_us,
                b.window_s,
                b.l4_protocol,
                &b.server,
            ))
        });
        let (rows, latency): (Vec<MetricRow>, Vec<Option<LatencySketch>>) =
            rows.into_iter().unzip();
        let (l4_rows, rtt): (Vec<L4Row>, Vec<Option<LatencySketch>>) = l4_rows.into_iter().unzip();
        Closed {
            rows,
            l4_rows,
            latency: latency.into_iter().flatten().collect(),
            rtt: rtt.into_iter().flatten().collect(),
        }
    }

    /// The aggregator's counters.
    pub fn stats(&self) -> Stats {
        let (r, l) = (&self.red.stats, &self.l4.stats);
        Stats {
            logs: self.logs,
            flows: self.flows,
            series: self.red.live(),
            l4_series: self.l4.live(),
            overflow_logs: r.overflow_records,
            overflow_flows: l.overflow_records,
            late_logs: r.late_records,
            late_flows: l.late_records,
            series_created: r.series_created,
            series_evicted: r.series_evicted,
        }
    }

    /// Cumulative totals of every series with a closed window, for exporters (Prometheus, OTLP).
    pub fn snapshot(&self) -> Snapshot {
        let mut red: Vec<RedSeries> = self
            .red
            .series()
            .filter(|(_, t)| t.request > 0)
            .map(|(k, t)| RedSeries {
                l7_protocol: k.protocol.as_str().to_string(),
                server: k.render_server(),
                endpoint: k.endpoint().map(str::to_string),
                totals: t.clone(),
            })
            .collect();
        red.sort_by(|a, b| {
            (&a.l7_protocol, &a.server, &a.endpoint).cmp(&(&b.l7_protocol, &b.server, &b.endpoint))
        });
        let mut l4: Vec<L4Series> = self
            .l4
            .series()
            .filter(|(_, t)| t.counts.flow > 0)
            .map(|(k, t)| L4Series {
                l4_protocol: k.l4,
                server: L4Key::render_server(k),
                totals: t.clone(),
            })
            .collect();
        l4.sort_by(|a, b| (a.l4_protocol, &a.server).cmp(&(b.l4_protocol, &b.server)));
        Snapshot {
            start_time_us: self.start_us.unwrap_or(0),
            time_us: self.now_us,
            red,
            l4,
            stats: self.stats(),
        }
    }
}
