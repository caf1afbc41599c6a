//! # fathom-metrics
//!
//! AutoMetrics: RED metrics (rate, errors, duration) per `(l7_protocol, server, endpoint)` and L4 metrics per
//! server endpoint, over 1 s and 1 min windows, from [`RequestLog`](fathom_model::RequestLog)s and
//! [`FlowRecord`](fathom_model::FlowRecord)s, with mergeable latency sketches, a series cap, and three outputs:
//! JSON rows ([`MetricRow`], [`L4Row`]), the Prometheus text format ([`prometheus`]), and OTLP/HTTP
//! (`otlp` feature).
//!
//! - [`Aggregator`]: `observe_log` / `observe_flow` on the hot path (no allocation unless a series is created
//!   or one of its windows closes), `advance(now_us)` to close windows (capture time for files, wall clock
//!   live), `flush()` at the end, `snapshot()` for exporters.
//! - [`LatencySketch`]: a DDSketch with base-2 exponential buckets; relative error ≤ 1.08 % at the default
//!   scale; merging is exact (the merge of 1 s windows is the sketch of the 1 min window).
//! - [`MetricsDriver`]: the aggregator plus its outputs (JSON rows on a writer, a [`prometheus::PrometheusServer`],
//!   OTLP pushes) and the clock, for agents: `on_log`, `on_flow`, `tick` (live), `finish`.
//! - Cardinality: past [`Config::max_series`] live series, new keys are counted in one `__overflow__` series
//!   per protocol and in [`Stats::overflow_logs`].
//!
//! The fields of every output are documented in `docs/metrics.md`.
//!
//! ```
//! use fathom_metrics::{Aggregator, Config, prometheus};
//! use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
//!
//! let mut agg = Aggregator::new(Config::default());
//! for (i, status) in [ResponseStatus::Ok, ResponseStatus::ServerError].into_iter().enumerate() {
//!     let mut log = RequestLog::new(L7Protocol::Http1);
//!     log.ip_dst = "10.0.0.2".into();
//!     log.port_dst = 80;
//!     log.endpoint = Some("/users".into());
//!     log.response_status = status;
//!     log.start_time_us = 1_700_000_040_000_000 + i as u64 * 1000;
//!     log.end_time_us = log.start_time_us + 250;
//!     log.response_duration_us = Some(250);
//!     agg.observe_log(&log);
//! }
//! // One minute later (plus the grace period) both the 1 s and the 1 min windows are closed.
//! let closed = agg.advance(1_700_000_102_000_000);
//! assert_eq!(closed.rows.len(), 2);
//! let second = &closed.rows[0];
//! assert_eq!((second.window_s, second.server.as_str()), (1, "10.0.0.2:80"));
//! assert_eq!((second.request, second.error_server), (2, 1));
//! assert_eq!(second.latency_p50_us, Some(250));
//! println!("{}", serde_json::to_string(second).unwrap());
//!
//! let text = prometheus::render(&agg.snapshot());
//! assert!(text.contains(r#"fathom_requests_total{l7_protocol="http1",server="10.0.0.2:80",endpoint="/users"} 2"#));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

mod aggregator;
mod driver;
mod l4;
pub mod prometheus;
mod red;
pub mod sketch;
mod table;

#[cfg(feature = "otlp")]
pub mod otlp;

pub use aggregator::{Aggregator, Closed, Config, L4Series, RedSeries, Snapshot, Stats};
pub use driver::{DriverError, DriverOptions, MetricsDriver};
pub use l4::{L4Counts, L4Row, L4Totals};
pub use red::{MetricRow, RedTotals, OVERFLOW};
pub use sketch::LatencySketch;
