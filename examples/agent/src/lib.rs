//! # fathom-agent (library part)
//!
//! The reference agent's pipeline, callable from tests and other programs: a capture thread (pcap file →
//! [`fathom_capture::FlowTable`] → [`StreamEvent`] batches) feeding, over a bounded crossbeam channel, the parse
//! stage ([`fathom_protocols::Engine`]) which produces [`RequestLog`]s and completes [`FlowRecord`]s with the
//! detected protocol. Memory is constant whatever the capture size: the channel holds at most
//! [`CHANNEL_BATCHES`] batches of at most [`fathom_capture::PacketCapture::DEFAULT_BATCH_PACKETS`] packets' events.
//!
//! - [`logs_from_pcap`] / [`flows_from_pcap`]: whole-capture helpers returning vectors (for tests).
//! - [`run_pcap`]: the streaming form used by the CLI: every log and flow goes to a callback as it is produced.
//! - [`Summary`]: the human summary printed without `--json`.
//! - [`json::write_log`]: the `--json logs` line of a log (what serde_json writes, faster).

pub mod json;

use anyhow::Context as _;
use fathom_capture::{CaptureError, Config, Counters, EventSource, FileSource, PacketCapture};
use fathom_model::{FlowRecord, RequestLog, ResponseStatus, StreamEvent};
use fathom_protocols::{Engine, EngineStats, L7Parser, Limits, MessageHook};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Batches in flight between the capture thread and the parse stage.
pub const CHANNEL_BATCHES: usize = 64;

/// Counters of one pipeline run.
#[derive(Debug, Clone, Default)]
pub struct PipelineStats {
    /// Capture stage: packets, drops by reason, flows, reassembly anomalies.
    pub capture: Counters,
    /// Parse stage: detection, parse errors, gaps, pairing.
    pub engine: EngineStats,
    /// Flow records produced.
    pub flows: u64,
    /// Request logs produced.
    pub logs: u64,
    /// Bytes of capture input read.
    pub input_bytes: u64,
    /// AF_PACKET ring counters (kernel drops, outgoing copies skipped ...), with `--iface`.
    #[cfg(all(feature = "afpacket", target_os = "linux"))]
    pub afpacket: Option<fathom_capture::AfPacketStats>,
}

/// A pipeline run that stopped at damaged input. Everything before the damage was delivered.
#[derive(Debug)]
pub struct DamagedCapture {
    /// Counters up to the damage.
    pub stats: Box<PipelineStats>,
    /// What is wrong, with its byte offset.
    pub error: CaptureError,
}

impl std::fmt::Display for DamagedCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for DamagedCapture {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What the pipeline produces, in order.
#[derive(Debug)]
pub enum Output<'a> {
    /// A request log.
    Log(&'a RequestLog),
    /// A finished flow (with `l7_protocol` set when detected).
    Flow(&'a FlowRecord),
    /// One batch of the source was handled and everything it produced was delivered: a point to flush buffered
    /// output. A live source delivers a batch, possibly empty, at least every poll (the eBPF source's
    /// `poll_timeout`), so this comes even while no traffic does.
    BatchDone,
}

/// Options of a pipeline run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Capture limits.
    pub capture: Config,
    /// Parser limits.
    pub limits: Limits,
    /// Shared counter of input bytes consumed, updated per batch (for a progress bar).
    pub progress: Option<Arc<AtomicU64>>,
    /// Run capture and parsing on the caller's thread instead of a capture thread plus a bounded channel.
    pub single_thread: bool,
    /// Parsers probed after the built-in ones (plugins, tests).
    pub extra_parsers: Vec<Arc<dyn L7Parser>>,
    /// Message hooks run on parsed messages, in order (plugins' HTTP hooks, tests).
    pub hooks: Vec<Arc<dyn MessageHook>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("capture", &self.capture)
            .field("limits", &self.limits)
            .field("single_thread", &self.single_thread)
            .field(
                "extra_parsers",
                &self
                    .extra_parsers
                    .iter()
                    .map(|p| p.protocol())
                    .collect::<Vec<_>>(),
            )
            .field(
                "hooks",
                &self
                    .hooks
                    .iter()
                    .map(|h| h.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Run the pipeline on an opened event source, delivering every log and flow to `out`.
///
/// The source runs on its own thread; the engine runs on the caller's thread.
///
/// # Errors
/// [`DamagedCapture`] when the source reports damaged input; `out` has seen everything before it.
pub fn run_source<S>(
    source: S,
    options: &RunOptions,
    mut out: impl FnMut(Output<'_>),
) -> Result<PipelineStats, DamagedCapture>
where
    S: EventSource + Send + 'static,
{
    if options.single_thread {
        return run_inline(source, options, out);
    }
    let (tx, rx) = crossbeam_channel::bounded::<Vec<StreamEvent>>(CHANNEL_BATCHES);
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<Vec<StreamEvent>>(CHANNEL_BATCHES);
    let progress = options.progress.clone();
    let capture = std::thread::Builder::new()
        .name("fathom-capture".into())
        .spawn(move || {
            let mut source = source;
            let result = loop {
                let mut batch = recycle_rx.try_recv().unwrap_or_default();
                let r = source.next_events(&mut batch);
                if let Some(p) = &progress {
                    p.store(source.position(), Ordering::Relaxed);
                }
                match r {
                    Ok(more) => {
                        // Empty batches too: the parse stage then reports `BatchDone` while idle.
                        if tx.send(batch).is_err() {
                            break Ok(());
                        }
                        if !more {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            (source.counters().clone(), source.position(), result)
        })
        .expect("spawning the capture thread");
    let mut parse = ParseStage::new(options);
    for mut batch in rx {
        parse.batch(&mut batch, &mut out);
        out(Output::BatchDone);
        let _ = recycle_tx.try_send(batch);
    }
    let (mut stats, engine) = parse.finish(&mut out);
    let (counters, position, result) = match capture.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    stats.capture = counters;
    stats.engine = engine.stats().clone();
    stats.input_bytes = position;
    match result {
        Ok(()) => Ok(stats),
        Err(error) => Err(DamagedCapture {
            stats: Box::new(stats),
            error,
        }),
    }
}

/// The parse stage: engine, pending logs and counters.
struct ParseStage {
    engine: Engine,
    stats: PipelineStats,
    logs: Vec<RequestLog>,
}

impl ParseStage {
    fn new(options: &RunOptions) -> ParseStage {
        let mut engine = Engine::new(fathom_protocols::builtin_parsers(), options.limits.clone());
        for p in &options.extra_parsers {
            engine.register(p.clone());
        }
        for h in &options.hooks {
            engine.add_hook(h.clone());
        }
        ParseStage {
            engine,
            stats: PipelineStats::default(),
            logs: Vec::new(),
        }
    }

    fn flush_logs(&mut self, out: &mut impl FnMut(Output<'_>)) {
        for l in self.logs.drain(..) {
            self.stats.logs += 1;
            out(Output::Log(&l));
        }
    }

    fn batch(&mut self, batch: &mut Vec<StreamEvent>, out: &mut impl FnMut(Output<'_>)) {
        // By reference: moving each event out of the batch showed in profiles (a chunk is ~170 bytes).
        for ev in batch.iter_mut() {
            match ev {
                StreamEvent::Chunk(c) => self.engine.on_chunk(c, &mut self.logs),
                StreamEvent::FlowEnd(end) => {
                    let proto = self.engine.on_flow_end(end, &mut self.logs);
                    self.flush_logs(out);
                    // The record's strings move out; the clone copies the rest (and empty strings).
                    let ip_src = std::mem::take(&mut end.record.ip_src);
                    let ip_dst = std::mem::take(&mut end.record.ip_dst);
                    let mut rec = end.record.clone();
                    rec.ip_src = ip_src;
                    rec.ip_dst = ip_dst;
                    rec.l7_protocol = proto.map(|p| p.as_str().to_string());
                    self.stats.flows += 1;
                    out(Output::Flow(&rec));
                }
            }
            if !self.logs.is_empty() {
                self.flush_logs(out);
            }
        }
        batch.clear();
    }

    fn finish(mut self, out: &mut impl FnMut(Output<'_>)) -> (PipelineStats, Engine) {
        self.engine.finish(&mut self.logs);
        self.flush_logs(out);
        (self.stats, self.engine)
    }
}

fn run_inline<S: EventSource>(
    mut source: S,
    options: &RunOptions,
    mut out: impl FnMut(Output<'_>),
) -> Result<PipelineStats, DamagedCapture> {
    let mut parse = ParseStage::new(options);
    let mut batch = Vec::new();
    let result = loop {
        let r = source.next_events(&mut batch);
        if let Some(p) = &options.progress {
            p.store(source.position(), Ordering::Relaxed);
        }
        parse.batch(&mut batch, &mut out);
        out(Output::BatchDone);
        match r {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let (mut stats, engine) = parse.finish(&mut out);
    stats.capture = source.counters().clone();
    stats.engine = engine.stats().clone();
    stats.input_bytes = source.position();
    match result {
        Ok(()) => Ok(stats),
        Err(error) => Err(DamagedCapture {
            stats: Box::new(stats),
            error,
        }),
    }
}

/// Run the pipeline on a pcap/pcapng file (plain or gzip), delivering every log and flow to `out` as produced.
///
/// # Errors
/// When the file cannot be opened or is not a capture (`anyhow` error), or is damaged: the error then
/// downcasts to [`DamagedCapture`], and `out` has seen everything before the damage.
pub fn run_pcap(
    path: &Path,
    options: &RunOptions,
    out: impl FnMut(Output<'_>),
) -> anyhow::Result<PipelineStats> {
    let source =
        FileSource::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let capture = PacketCapture::new(source, options.capture.clone());
    Ok(run_source(capture, options, out)?)
}

/// Run the pipeline on live socket data captured with eBPF (feature `ebpf`), until the source stops (after
/// `config.run_for`, or never). The source and the parse stage run on the caller's thread (whatever
/// [`RunOptions::single_thread`] says: see the comment in the code).
///
/// # Errors
/// When the eBPF programs cannot be loaded or attached (the error names the program, with the verifier log), or
/// the ring buffer cannot be read.
#[cfg(feature = "ebpf")]
pub fn run_ebpf(
    config: fathom_capture::EbpfConfig,
    options: &RunOptions,
    out: impl FnMut(Output<'_>),
) -> anyhow::Result<PipelineStats> {
    let source = fathom_capture::EbpfSource::start(config).context("cannot start eBPF capture")?;
    if let Some(path) = &source.stats().tracefs_mounted {
        eprintln!(
            "fathom-agent: tracefs was not mounted: mounted it at {}",
            path.display()
        );
    }
    tracing::info!(
        programs = fathom_capture::ebpf::PROGRAMS.len(),
        "eBPF capture started."
    );
    // One thread drains the ring buffer and parses: the agent shares the CPUs with the traced processes, and the
    // hand-over between a capture thread and the parse stage (channel wakeups, and every chunk's payload and
    // process name freed or released on the other thread) cost about a tenth of its CPU time. The 8 MiB ring
    // buffer holds the events that arrive while a batch is parsed.
    let inline = RunOptions {
        single_thread: true,
        ..options.clone()
    };
    let options = &inline;
    let loss = source.loss_handle();
    let stop = source.stop_handle();
    register_live_stop(&stop);
    let stats = run_source(source, options, out)?;
    let drops = loss.ring_drops.load(Ordering::Relaxed);
    let lost = loss.lost_events.load(Ordering::Relaxed);
    let untraced = loss.untraced_calls.load(Ordering::Relaxed);
    tracing::info!(
        events = loss.events.load(Ordering::Relaxed),
        ring_drops = drops,
        lost_events = lost,
        untraced_calls = untraced,
        "eBPF capture done."
    );
    if drops > 0 || lost > 0 {
        tracing::warn!(
            ring_drops = drops,
            lost_events = lost,
            "eBPF events were lost (ring buffer full or per-socket sequence gaps)."
        );
    }
    if untraced > 0 {
        tracing::warn!(
            untraced_calls = untraced,
            "Socket calls were not traced: the kernel could not give their threads eBPF task storage."
        );
    }
    Ok(stats)
}

/// Stop flags of the live captures running in this process (weak: a finished capture's flag just drops).
static LIVE_STOPS: std::sync::Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicBool>>> =
    std::sync::Mutex::new(Vec::new());

/// Register a live capture's stop flag so that [`stop_live_captures`] reaches it.
#[cfg(any(feature = "ebpf", all(feature = "afpacket", target_os = "linux")))]
fn register_live_stop(flag: &Arc<std::sync::atomic::AtomicBool>) {
    if let Ok(mut v) = LIVE_STOPS.lock() {
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(flag));
    }
}

/// Ask every live capture running in this process (`run_ebpf`, `run_iface`) to stop, as if its duration had
/// ended: the capture stops, buffered events are drained, flows end and the run returns its stats normally (so
/// the agent still prints its summary). Safe to call from any thread, e.g. a Ctrl-C handler. Returns how many
/// captures were asked to stop.
pub fn stop_live_captures() -> usize {
    let Ok(v) = LIVE_STOPS.lock() else {
        return 0;
    };
    let mut n = 0;
    for flag in v.iter().filter_map(std::sync::Weak::upgrade) {
        flag.store(true, Ordering::Relaxed);
        n += 1;
    }
    n
}

/// Run the pipeline on live packets from a network interface (feature `afpacket`): an AF_PACKET `TPACKET_V3`
/// ring per capture thread ([`fathom_capture::AfPacketConfig::threads`], one fanout group), each thread with its
/// own flow table, until the capture stops (after `config.run_for`, or never). The returned stats carry the
/// ring counters in [`PipelineStats::afpacket`].
///
/// # Errors
/// When the capture cannot start (invalid settings, unknown interface, no permission; the error says which), or
/// a ring cannot be read.
#[cfg(all(feature = "afpacket", target_os = "linux"))]
pub fn run_iface(
    config: &fathom_capture::AfPacketConfig,
    options: &RunOptions,
    out: impl FnMut(Output<'_>),
) -> anyhow::Result<PipelineStats> {
    let source = fathom_capture::AfPacketCapture::start(config, &options.capture)
        .with_context(|| format!("cannot capture on interface `{}`", config.iface))?;
    tracing::info!(
        iface = %config.iface,
        threads = config.threads,
        link_type = source.link_type().0,
        "AF_PACKET capture started."
    );
    let telemetry = source.telemetry();
    let stop = source.stop_handle();
    register_live_stop(&stop);
    let result = run_source(source, options, out);
    let ring = telemetry.snapshot();
    if ring.kernel_drops > 0 {
        tracing::warn!(
            drops = ring.kernel_drops,
            "AF_PACKET ring was full: the kernel dropped packets."
        );
    }
    match result {
        Ok(mut stats) => {
            stats.afpacket = Some(ring);
            Ok(stats)
        }
        Err(mut damaged) => {
            damaged.stats.afpacket = Some(ring);
            Err(damaged.into())
        }
    }
}

/// All request logs of a capture file, with the pipeline's counters.
///
/// Runs exactly the pipeline of `fathom-agent --pcap FILE --json logs` (default limits, built-in parsers);
/// logs are in the order the agent prints them.
///
/// # Errors
/// When the file cannot be read or is damaged (see [`run_pcap`]).
pub fn logs_from_pcap(path: &Path) -> anyhow::Result<(Vec<RequestLog>, PipelineStats)> {
    let mut logs = Vec::new();
    let stats = run_pcap(path, &RunOptions::default(), |o| {
        if let Output::Log(l) = o {
            logs.push(l.clone());
        }
    })?;
    Ok((logs, stats))
}

/// All flow records of a capture file (what `fathom-agent --pcap FILE --json flows` prints), in the order
/// flows end.
///
/// # Errors
/// When the file cannot be read or is damaged (see [`run_pcap`]).
pub fn flows_from_pcap(path: &Path) -> anyhow::Result<Vec<FlowRecord>> {
    let mut flows = Vec::new();
    run_pcap(path, &RunOptions::default(), |o| {
        if let Output::Flow(f) = o {
            flows.push(f.clone());
        }
    })?;
    Ok(flows)
}

/// Per-endpoint request counters of the human summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSummary {
    /// Requests (logs).
    pub requests: u64,
    /// Client errors.
    pub client_errors: u64,
    /// Server errors.
    pub server_errors: u64,
    /// Requests without a response.
    pub timeouts: u64,
    /// Response durations (µs) of paired logs, in a mergeable sketch (relative error of
    /// [`fathom_metrics::LatencySketch::relative_accuracy`]).
    pub latency: fathom_metrics::LatencySketch,
}

impl EndpointSummary {
    /// Errors of any class (client, server, timeout) as a percentage of requests.
    pub fn error_percent(&self) -> f64 {
        let errors = self.client_errors + self.server_errors + self.timeouts;
        if self.requests == 0 {
            0.0
        } else {
            errors as f64 * 100.0 / self.requests as f64
        }
    }
}

/// The human summary: flows per protocol and requests per protocol/server/endpoint.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Flows per detected protocol (`-` when none), split by transport.
    pub flows: BTreeMap<(String, String), u64>,
    /// Requests per (protocol, server `ip:port`, endpoint).
    pub endpoints: BTreeMap<(String, String, String), EndpointSummary>,
    /// Earliest request start and latest response end seen (µs), for request rates.
    pub span_us: Option<(u64, u64)>,
}

/// Most endpoints kept in a [`Summary`]; further ones are folded into `(other)`.
pub const MAX_SUMMARY_ENDPOINTS: usize = 10_000;

impl Summary {
    /// Count one pipeline output.
    pub fn add(&mut self, o: &Output<'_>) {
        match o {
            Output::Flow(f) => {
                let p = f.l7_protocol.clone().unwrap_or_else(|| "-".into());
                *self
                    .flows
                    .entry((p, f.l4_protocol.as_str().to_string()))
                    .or_default() += 1;
            }
            Output::Log(l) => {
                let server = match l.ip_dst.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", l.port_dst),
                    _ => format!("{}:{}", l.ip_dst, l.port_dst),
                };
                let mut key = (
                    l.l7_protocol.as_str().to_string(),
                    server,
                    l.endpoint.clone().unwrap_or_else(|| "-".into()),
                );
                if self.endpoints.len() >= MAX_SUMMARY_ENDPOINTS
                    && !self.endpoints.contains_key(&key)
                {
                    key.2 = "(other)".into();
                }
                let e = self.endpoints.entry(key).or_default();
                e.requests += 1;
                match l.response_status {
                    ResponseStatus::ClientError => e.client_errors += 1,
                    ResponseStatus::ServerError => e.server_errors += 1,
                    ResponseStatus::Timeout => e.timeouts += 1,
                    _ => {}
                }
                if let Some(d) = l.response_duration_us {
                    e.latency.add(d);
                }
                let (lo, hi) = self.span_us.unwrap_or((l.start_time_us, l.end_time_us));
                self.span_us = Some((lo.min(l.start_time_us), hi.max(l.end_time_us)));
            }
            Output::BatchDone => {}
        }
    }

    /// Render the summary and the counters as text.
    pub fn render(&self, stats: &PipelineStats) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let c = &stats.capture;
        let _ = writeln!(
            s,
            "Capture: {} packets, {} bytes; {} flows; {} request logs",
            c.packets, c.bytes, stats.flows, stats.logs
        );
        let _ = writeln!(s, "\nFlows per protocol:");
        let _ = writeln!(s, "  {:<12} {:<4} {:>10}", "protocol", "l4", "flows");
        for ((p, l4), n) in &self.flows {
            let _ = writeln!(s, "  {p:<12} {l4:<4} {n:>10}");
        }
        let span_s = self
            .span_us
            .map_or(0.0, |(lo, hi)| hi.saturating_sub(lo) as f64 / 1e6);
        let _ = writeln!(
            s,
            "\nRequests per endpoint (RED, busiest first; rate over the {span_s:.3} s the requests span):"
        );
        let _ = writeln!(
            s,
            "  {:<10} {:<24} {:<40} {:>8} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "protocol",
            "server",
            "endpoint",
            "requests",
            "req/s",
            "error%",
            "4xx/cli",
            "5xx/srv",
            "timeout",
            "p50_us",
            "p99_us",
            "max_us"
        );
        let mut rows: Vec<_> = self.endpoints.iter().collect();
        rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
        let q = |e: &EndpointSummary, q: f64| {
            e.latency
                .quantile_us(q)
                .map_or_else(|| "-".to_string(), |v| v.to_string())
        };
        for ((p, server, ep), e) in rows {
            let ep: String = ep.chars().take(40).collect();
            let rate = if span_s > 0.0 {
                format!("{:.1}", e.requests as f64 / span_s)
            } else {
                "-".to_string()
            };
            let max = e
                .latency
                .max()
                .map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = writeln!(
                s,
                "  {p:<10} {server:<24} {ep:<40} {:>8} {rate:>9} {:>7.1} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
                e.requests,
                e.error_percent(),
                e.client_errors,
                e.server_errors,
                e.timeouts,
                q(e, 0.5),
                q(e, 0.99),
                max
            );
        }
        let _ = writeln!(s, "\nCapture counters:");
        let _ = writeln!(
            s,
            "  tcp packets {}, udp packets {}, other IP {}, non-IP {}",
            c.tcp_packets, c.udp_packets, c.other_ip_packets, c.non_ip_packets
        );
        let u = &c.undecodable;
        let _ = writeln!(
            s,
            "  undecodable {} (link type {}, link header {}, ip header {}, tcp header {}, udp header {}, ipv6 fragment {})",
            u.total(), u.link_type, u.link_header, u.ip_header, u.tcp_header, u.udp_header, u.ipv6_fragment
        );
        let f = &c.fragments;
        let _ = writeln!(
            s,
            "  ipv4 fragments: received {}, reassembled {}, dropped timeout {}, cap {}, invalid {}",
            f.received, f.reassembled, f.dropped_timeout, f.dropped_cap, f.dropped_invalid
        );
        let _ = writeln!(
            s,
            "  flows: created {}, evicted {}, timed out {}, open at end {}, port reused {}",
            c.flows_created,
            c.flows_evicted,
            c.flows_timed_out,
            c.flows_open_at_end,
            c.flows_port_reused
        );
        let _ = writeln!(
            s,
            "  tcp: retransmissions {}, out of order {}, ooo overflows {}, lost bytes {}",
            c.tcp_retransmissions, c.tcp_out_of_order, c.tcp_ooo_overflows, c.tcp_lost_bytes
        );
        #[cfg(all(feature = "afpacket", target_os = "linux"))]
        if let Some(r) = &stats.afpacket {
            let _ = writeln!(
                s,
                "  af_packet: packets {}, bytes {}, kernel drops {}, ring freezes {}, outgoing copies skipped {}, truncated {}, malformed blocks {}",
                r.packets, r.bytes, r.kernel_drops, r.kernel_freezes, r.outgoing_skipped, r.truncated, r.malformed_blocks
            );
        }
        let e = &stats.engine;
        let _ = writeln!(s, "\nEngine counters:");
        let _ = writeln!(
            s,
            "  flows detected {:?}, unknown {}, unsupported {}, reprobes {}",
            e.flows_detected, e.flows_unknown, e.flows_unsupported, e.reprobes
        );
        let _ = writeln!(
            s,
            "  parse errors {:?}, bytes dropped {}, gaps {} ({} bytes), buffer overflows {}",
            e.parse_errors, e.bytes_dropped, e.gaps, e.gap_bytes, e.buffer_overflows
        );
        let _ = writeln!(
            s,
            "  orphan responses {}, requests evicted {}, timed out {}, events {}",
            e.orphan_responses, e.requests_evicted, e.requests_timed_out, e.events
        );
        s
    }
}
