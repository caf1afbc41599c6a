//! The session layer: per-flow detection, buffering, gap handling, pairing and RequestLog assembly.

use crate::hook::flow_hooked;
use crate::{
    Correlation, EndReason, ExchangeTable, FlowParser, HookInput, L7Parser, Limits, LogInfo,
    Message, MessageHook, MessageKind, ParseCtx, ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{
    ChunkOrigin, Direction, FlowEnd, FlowId, FlowKey, L4Protocol, L7Protocol, RequestLog,
    ResponseStatus, StreamChunk, StreamEvent, TapSide, TimestampUs,
};
use hashbrown::HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Most chunk marks (offset → time, seq) kept per direction for mapping message offsets to times.
const MAX_MARKS: usize = 256;
/// Most payload bytes buffered per direction while no probe has decided.
const MAX_DETECT_BYTES: usize = 4096;
/// Chunks probed (both directions together) before a flow is declared unknown.
const MAX_DETECT_CHUNKS: u32 = 8;
/// Payload bytes (both directions together) probed before a `Maybe` may win or a flow is declared unknown: a
/// flow cut into tiny segments is not decided on its first few bytes.
const MIN_DETECT_BYTES: u64 = 64;

/// Counters of the parsing stage. Every drop and anomaly lands in one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Flows whose protocol was detected, per protocol name.
    pub flows_detected: BTreeMap<String, u64>,
    /// Flows no probe claimed.
    pub flows_unknown: u64,
    /// Times a flow was re-probed after repeated parse errors.
    pub reprobes: u64,
    /// Parse errors, per error kind.
    pub parse_errors: BTreeMap<&'static str, u64>,
    /// Flows whose parser stopped for good (protocol switched to something unsupported, e.g. TLS).
    pub flows_unsupported: u64,
    /// Bytes dropped after parse errors or buffer overflows.
    pub bytes_dropped: u64,
    /// Capture gaps seen (count) and their total bytes.
    pub gaps: u64,
    /// Total bytes of capture gaps.
    pub gap_bytes: u64,
    /// Direction buffers that exceeded [`Limits::max_buffer_bytes`].
    pub buffer_overflows: u64,
    /// Responses with no pending request (capture started mid-exchange, or the request was lost).
    pub orphan_responses: u64,
    /// Requests evicted from a full exchange table (logged as timeouts).
    pub requests_evicted: u64,
    /// Requests that timed out (flow end or request timeout), logged as timeouts.
    pub requests_timed_out: u64,
    /// Protocol events that are not logged (heartbeats, ...).
    pub events: u64,
    /// RequestLogs produced.
    pub logs: u64,
}

/// The protocol detected on a flow, as reported at the flow's end.
pub type FlowProtocol = Option<L7Protocol>;

struct Mark {
    offset: u64,
    time_us: TimestampUs,
    seq: Option<u32>,
}

#[derive(Default)]
struct DirState {
    buf: Vec<u8>,
    /// Absolute stream offset of `buf[0]`.
    buf_offset: u64,
    /// Absolute stream offset one past the last byte received.
    next_offset: u64,
    marks: VecDeque<Mark>,
    origin: ChunkOrigin,
    /// Hooked flows only (boxed: unhooked flows pay one pointer).
    hook: Option<Box<HookKeep>>,
}

/// What a hooked flow keeps per direction for message hooks.
#[derive(Default)]
struct HookKeep {
    /// The first consumed bytes of the message in progress (at most [`Limits::max_hook_bytes`]), from
    /// absolute offset `offset`.
    buf: Vec<u8>,
    /// Absolute stream offset of `buf[0]`.
    offset: u64,
    /// Absolute stream offset one past the last message emitted in this direction (where the next starts).
    from: u64,
}

impl DirState {
    fn mark(&mut self, time_us: TimestampUs, seq: Option<u32>) {
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(Mark {
            offset: self.next_offset,
            time_us,
            seq,
        });
    }

    /// Capture time and TCP sequence number of the byte at absolute offset `pos`.
    fn locate(&self, pos: u64) -> (TimestampUs, Option<u32>) {
        // Messages usually start in one of the newest chunks: look there before searching all the marks.
        let n = self.marks.len();
        let i = if self.marks.back().is_some_and(|m| m.offset <= pos) {
            n
        } else if n >= 2 && self.marks[n - 2].offset <= pos {
            n - 1
        } else {
            self.marks.partition_point(|m| m.offset <= pos)
        };
        let m = match i {
            0 => self.marks.front(),
            _ => self.marks.get(i - 1),
        };
        match m {
            Some(m) => {
                let seq = m
                    .seq
                    .map(|s| s.wrapping_add(pos.saturating_sub(m.offset) as u32));
                (m.time_us, seq)
            }
            None => (0, None),
        }
    }

    /// Forget buffered bytes, returning how many were dropped.
    fn drop_buffer(&mut self) -> u64 {
        let n = self.buf.len() as u64;
        self.buf.clear();
        self.buf_offset = self.next_offset;
        if let Some(h) = self.hook.as_deref_mut() {
            h.buf.clear();
            h.offset = self.next_offset;
            h.from = self.next_offset;
        }
        n
    }

    /// The first bytes (at most `cap`) of the message spanning `start..end`, from what is held: the retained
    /// bytes of the message in progress, then the buffer. Copies into `scratch` only when the message spans
    /// both.
    fn message_bytes<'a>(
        &'a self,
        start: u64,
        end: u64,
        cap: usize,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        let want_end = end.min(start.saturating_add(cap as u64));
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if start >= self.buf_offset {
            if start >= buf_end {
                return &[];
            }
            let to = want_end.min(buf_end);
            return &self.buf[(start - self.buf_offset) as usize..(to - self.buf_offset) as usize];
        }
        let Some(h) = self.hook.as_deref() else {
            return &[];
        };
        let hook_end = h.offset + h.buf.len() as u64;
        if start < h.offset || start >= hook_end {
            return &[];
        }
        let head = &h.buf[(start - h.offset) as usize..];
        if want_end <= hook_end {
            return &head[..(want_end - start) as usize];
        }
        if hook_end != self.buf_offset {
            return head;
        }
        let to = want_end.min(buf_end);
        scratch.clear();
        scratch.extend_from_slice(head);
        scratch.extend_from_slice(&self.buf[..(to - self.buf_offset) as usize]);
        scratch
    }

    /// Hooked flows: after a parse that consumed `consumed` bytes of `buf` (not yet drained), keep the first
    /// `cap` bytes of the message in progress (from `hook_from` on).
    fn retain_for_hooks(&mut self, consumed: usize, cap: usize) {
        let h = self.hook.get_or_insert_with(Box::default);
        if h.from > h.offset {
            let k = (h.from - h.offset).min(h.buf.len() as u64);
            h.buf.drain(..k as usize);
            h.offset += k;
        }
        if h.buf.is_empty() {
            h.offset = h.from.max(self.buf_offset);
        }
        let consumed_end = self.buf_offset + consumed as u64;
        let cur_end = h.offset + h.buf.len() as u64;
        if cur_end < self.buf_offset || cur_end >= consumed_end {
            return;
        }
        let room = cap.saturating_sub(h.buf.len());
        let from = (cur_end - self.buf_offset) as usize;
        let to = consumed.min(from + room);
        h.buf.extend_from_slice(&self.buf[from..to]);
    }
}

struct Pending {
    msg: Message,
    start_us: TimestampUs,
    end_us: TimestampUs,
    seq: Option<u32>,
    origin: ChunkOrigin,
}

struct FlowState {
    key: FlowKey,
    parser: Option<(usize, Box<dyn FlowParser>)>,
    detect_chunks: u32,
    detect_bytes: u64,
    unknown: bool,
    unsupported: bool,
    consecutive_errors: u32,
    detected: Option<L7Protocol>,
    /// Some registered hook applies to the detected protocol.
    hooked: bool,
    dirs: [DirState; 2],
    table: ExchangeTable<Pending>,
}

/// The parsing stage: feed it stream events, get RequestLogs.
///
/// Bounded: per flow, at most [`Limits::max_buffer_bytes`] per direction and
/// [`Limits::max_exchanges_in_flight`] pending requests; the number of flows is bounded by the capture
/// source's flow table (every flow ends with a [`FlowEnd`]).
pub struct Engine {
    parsers: Vec<Arc<dyn L7Parser>>,
    hooks: Vec<Arc<dyn MessageHook>>,
    limits: Limits,
    flows: HashMap<FlowId, FlowState>,
    stats: EngineStats,
    scratch: Vec<Message>,
}

impl Engine {
    /// An engine that probes `parsers` in order.
    pub fn new(parsers: Vec<Arc<dyn L7Parser>>, limits: Limits) -> Engine {
        Engine {
            parsers,
            hooks: Vec::new(),
            limits,
            flows: HashMap::new(),
            stats: EngineStats::default(),
            scratch: Vec::new(),
        }
    }

    /// Add a parser after the built-in ones (plugins).
    pub fn register(&mut self, parser: Arc<dyn L7Parser>) {
        self.parsers.push(parser);
    }

    /// Add a [`MessageHook`], run after the ones already added on every request, response and one-way message
    /// of the protocols it applies to (flows detected from now on). With no hook, parsing costs what it did.
    pub fn add_hook(&mut self, hook: Arc<dyn MessageHook>) {
        self.hooks.push(hook);
    }

    /// The hooks added, in order.
    pub fn hooks(&self) -> &[Arc<dyn MessageHook>] {
        &self.hooks
    }

    /// The counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of flows with parser state.
    pub fn live_flows(&self) -> usize {
        self.flows.len()
    }

    /// Handle one capture event. For a flow end, returns the protocol detected on that flow.
    pub fn on_event(&mut self, event: &StreamEvent, out: &mut Vec<RequestLog>) -> FlowProtocol {
        match event {
            StreamEvent::Chunk(c) => {
                self.on_chunk(c, out);
                None
            }
            StreamEvent::FlowEnd(e) => self.on_flow_end(e, out),
        }
    }

    /// Handle payload bytes of one flow direction.
    pub fn on_chunk(&mut self, chunk: &StreamChunk, out: &mut Vec<RequestLog>) {
        let limits = &self.limits;
        let flow = self
            .flows
            .entry(chunk.flow_id)
            .or_insert_with(|| FlowState {
                key: chunk.flow,
                parser: None,
                detect_chunks: 0,
                detect_bytes: 0,
                unknown: false,
                unsupported: false,
                consecutive_errors: 0,
                detected: None,
                hooked: false,
                dirs: [DirState::default(), DirState::default()],
                table: ExchangeTable::new(limits.max_exchanges_in_flight),
            });
        let d = chunk.direction.index();
        if chunk.gap_before > 0 {
            self.stats.gaps += 1;
            self.stats.gap_bytes += chunk.gap_before;
            let dir = &mut flow.dirs[d];
            let dropped = dir.drop_buffer();
            dir.next_offset += chunk.gap_before;
            dir.buf_offset = dir.next_offset;
            if let Some((_, p)) = flow.parser.as_mut() {
                p.on_gap(chunk.direction, chunk.gap_before + dropped);
            }
        }
        {
            let dir = &mut flow.dirs[d];
            dir.mark(chunk.time_us, chunk.seq);
            set_origin(&mut dir.origin, &chunk.origin);
        }
        if flow.unknown || flow.unsupported {
            let dir = &mut flow.dirs[d];
            dir.next_offset += chunk.bytes.len() as u64;
            dir.buf_offset = dir.next_offset;
            return;
        }
        if flow.parser.is_none() {
            Self::detect(
                &self.parsers,
                &self.hooks,
                &self.limits,
                &mut self.stats,
                flow,
                chunk,
            );
            if flow.parser.is_none() {
                return;
            }
            // The bytes that decided detection are in the buffer: parse them below.
        } else {
            let dir = &mut flow.dirs[d];
            dir.buf.extend_from_slice(&chunk.bytes);
            dir.next_offset += chunk.bytes.len() as u64;
        }
        let datagram = chunk.flow.l4_protocol == L4Protocol::Udp;
        self.parse_buffered(chunk.flow_id, chunk.direction, chunk.time_us, datagram, out);
        self.expire(chunk.flow_id, chunk.time_us, out);
    }

    fn detect(
        parsers: &[Arc<dyn L7Parser>],
        hooks: &[Arc<dyn MessageHook>],
        limits: &Limits,
        stats: &mut EngineStats,
        flow: &mut FlowState,
        chunk: &StreamChunk,
    ) {
        let d = chunk.direction.index();
        // Bytes of the other direction buffered for detection cannot be parsed in order any more: drop them.
        let datagram = chunk.flow.l4_protocol == L4Protocol::Udp;
        {
            let dir = &mut flow.dirs[d];
            if datagram {
                dir.drop_buffer();
            }
            let room = MAX_DETECT_BYTES.saturating_sub(dir.buf.len());
            if room < chunk.bytes.len() {
                // Too much undecided data: keep only the newest bytes as a fresh start.
                let dropped = dir.drop_buffer();
                stats.bytes_dropped += dropped;
            }
            dir.buf.extend_from_slice(&chunk.bytes);
            dir.next_offset += chunk.bytes.len() as u64;
        }
        flow.detect_chunks += 1;
        flow.detect_bytes += chunk.bytes.len() as u64;
        let patience_over = flow.detect_chunks >= MAX_DETECT_CHUNKS
            && (flow.detect_bytes >= MIN_DETECT_BYTES || datagram);
        let input = ProbeInput {
            payload: &flow.dirs[d].buf,
            direction: chunk.direction,
            flow: &flow.key,
        };
        let mut best: Option<(usize, bool)> = None; // (index, port match)
        for (i, p) in parsers.iter().enumerate() {
            if !p.transports().allows(flow.key.l4_protocol) {
                continue;
            }
            match p.probe(&input) {
                Probe::Yes => {
                    best = Some((i, true));
                    break;
                }
                Probe::Maybe => {
                    let port = p.default_ports().contains(&flow.key.port_dst)
                        || p.default_ports().contains(&flow.key.port_src);
                    match best {
                        None => best = Some((i, port)),
                        Some((_, false)) if port => best = Some((i, port)),
                        _ => {}
                    }
                }
                Probe::No => {}
            }
        }
        let decided = match best {
            Some((i, true)) => Some(i),
            Some((i, false)) if patience_over => Some(i),
            _ => None,
        };
        if let Some(i) = decided {
            let parser = &parsers[i];
            let proto = parser.protocol();
            *stats
                .flows_detected
                .entry(proto.as_str().to_string())
                .or_default() += 1;
            flow.hooked = !hooks.is_empty() && flow_hooked(hooks, &proto);
            flow.detected = Some(proto);
            flow.parser = Some((i, parser.new_flow(&flow.key, limits)));
            flow.consecutive_errors = 0;
            let other = &mut flow.dirs[1 - d];
            stats.bytes_dropped += other.drop_buffer();
        } else if patience_over {
            flow.unknown = true;
            stats.flows_unknown += 1;
            for dir in &mut flow.dirs {
                dir.drop_buffer();
            }
        }
    }

    fn parse_buffered(
        &mut self,
        flow_id: FlowId,
        direction: Direction,
        time_us: TimestampUs,
        datagram: bool,
        out: &mut Vec<RequestLog>,
    ) {
        let Some(flow) = self.flows.get_mut(&flow_id) else {
            return;
        };
        let d = direction.index();
        let Some((_, parser)) = flow.parser.as_mut() else {
            return;
        };
        let dir = &mut flow.dirs[d];
        let ctx = ParseCtx {
            direction,
            flow: &flow.key,
            stream_offset: dir.buf_offset,
            time_us,
            limits: &self.limits,
            datagram,
        };
        let mut msgs = std::mem::take(&mut self.scratch);
        msgs.clear();
        let result = parser.parse(&dir.buf, &ctx, &mut msgs);
        if flow.hooked {
            // Before the consumed bytes leave the buffer: hooks may see them.
            let proto = flow.detected.clone().unwrap_or_default();
            run_hooks(
                &self.hooks,
                flow_id,
                &flow.key,
                &proto,
                &mut flow.dirs,
                &mut msgs,
                &self.limits,
            );
            if let Ok(consumed) = result {
                let consumed = consumed.min(flow.dirs[d].buf.len());
                flow.dirs[d].retain_for_hooks(consumed, self.limits.max_hook_bytes);
            }
        }
        let dir = &mut flow.dirs[d];
        match result {
            Ok(consumed) => {
                let consumed = consumed.min(dir.buf.len());
                dir.buf.drain(..consumed);
                dir.buf_offset += consumed as u64;
                if datagram {
                    // A datagram is never continued by the next one.
                    self.stats.bytes_dropped += dir.drop_buffer();
                }
                if !msgs.is_empty() {
                    flow.consecutive_errors = 0;
                }
                if dir.buf.len() > self.limits.max_buffer_bytes {
                    self.stats.buffer_overflows += 1;
                    let lost = dir.drop_buffer();
                    self.stats.bytes_dropped += lost;
                    parser.on_gap(direction, lost);
                }
            }
            Err(e) => {
                *self.stats.parse_errors.entry(e.kind.as_str()).or_default() += 1;
                let lost = dir.drop_buffer();
                self.stats.bytes_dropped += lost;
                if e.kind == ParseErrorKind::Unsupported {
                    self.stats.flows_unsupported += 1;
                    flow.unsupported = true;
                    flow.parser = None;
                } else {
                    parser.on_gap(direction, lost);
                    flow.consecutive_errors += 1;
                    if flow.consecutive_errors >= self.limits.max_consecutive_errors {
                        self.stats.reprobes += 1;
                        flow.parser = None;
                        flow.detect_chunks = 0;
                        flow.detect_bytes = 0;
                        flow.consecutive_errors = 0;
                    }
                }
            }
        }
        self.handle_messages(flow_id, &mut msgs, out);
        self.scratch = msgs;
    }

    fn handle_messages(
        &mut self,
        flow_id: FlowId,
        msgs: &mut Vec<Message>,
        out: &mut Vec<RequestLog>,
    ) {
        let Some(flow) = self.flows.get_mut(&flow_id) else {
            return;
        };
        let default_proto = flow.detected.clone().unwrap_or_default();
        for msg in msgs.drain(..) {
            let dir = &flow.dirs[msg.direction.index()];
            let (start_us, seq) = dir.locate(msg.start);
            let (end_us, _) = dir.locate(msg.end.saturating_sub(1).max(msg.start));
            let pending = Pending {
                origin: dir.origin.clone(),
                msg,
                start_us,
                end_us,
                seq,
            };
            match pending.msg.kind {
                MessageKind::Request => {
                    let (direction, corr) = (pending.msg.direction, pending.msg.correlation);
                    if let Some(old) = flow.table.insert(direction, corr, end_us, pending) {
                        self.stats.requests_evicted += 1;
                        out.push(build_log(
                            &flow.key,
                            &default_proto,
                            Some(old.request),
                            None,
                        ));
                        self.stats.logs += 1;
                    }
                }
                MessageKind::Response => {
                    match flow
                        .table
                        .take_match(pending.msg.direction, pending.msg.correlation)
                    {
                        Some(req) => {
                            out.push(build_log(
                                &flow.key,
                                &default_proto,
                                Some(req.request),
                                Some(pending),
                            ));
                            self.stats.logs += 1;
                        }
                        None => self.stats.orphan_responses += 1,
                    }
                }
                MessageKind::OneWay => {
                    out.push(build_log(&flow.key, &default_proto, None, Some(pending)));
                    self.stats.logs += 1;
                }
                MessageKind::Event => self.stats.events += 1,
            }
        }
    }

    fn expire(&mut self, flow_id: FlowId, now_us: TimestampUs, out: &mut Vec<RequestLog>) {
        let Some(flow) = self.flows.get_mut(&flow_id) else {
            return;
        };
        let Some(deadline) = now_us.checked_sub(self.limits.request_timeout_us) else {
            return;
        };
        let proto = flow.detected.clone().unwrap_or_default();
        for p in flow.table.expire(deadline) {
            self.stats.requests_timed_out += 1;
            self.stats.logs += 1;
            out.push(build_log(&flow.key, &proto, Some(p.request), None));
        }
    }

    /// Handle the end of a flow: flush the parser, turn pending requests into timeout logs, forget the flow.
    /// Returns the protocol detected on it.
    pub fn on_flow_end(&mut self, end: &FlowEnd, out: &mut Vec<RequestLog>) -> FlowProtocol {
        self.close_flow(end.flow_id, EndReason::FlowEnd, out)
    }

    fn close_flow(
        &mut self,
        flow_id: FlowId,
        _reason: EndReason,
        out: &mut Vec<RequestLog>,
    ) -> FlowProtocol {
        let mut msgs = std::mem::take(&mut self.scratch);
        msgs.clear();
        if let Some(flow) = self.flows.get_mut(&flow_id) {
            if let Some((_, parser)) = flow.parser.as_mut() {
                let ends = [flow.dirs[0].next_offset, flow.dirs[1].next_offset];
                parser.on_close(ends, &mut msgs);
            }
            if flow.hooked && !msgs.is_empty() {
                let proto = flow.detected.clone().unwrap_or_default();
                run_hooks(
                    &self.hooks,
                    flow_id,
                    &flow.key,
                    &proto,
                    &mut flow.dirs,
                    &mut msgs,
                    &self.limits,
                );
            }
        }
        self.handle_messages(flow_id, &mut msgs, out);
        self.scratch = msgs;
        let mut flow = self.flows.remove(&flow_id)?;
        let proto = flow.detected.clone().unwrap_or_default();
        for p in flow.table.drain() {
            self.stats.requests_timed_out += 1;
            self.stats.logs += 1;
            out.push(build_log(&flow.key, &proto, Some(p.request), None));
        }
        flow.detected
    }

    /// End of input: close every flow still open (pending requests become timeout logs).
    pub fn finish(&mut self, out: &mut Vec<RequestLog>) {
        let mut ids: Vec<FlowId> = self.flows.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.close_flow(id, EndReason::FlowEnd, out);
        }
    }
}

/// Hook tags into the log (the request's, then the response's: a later key wins).
#[cold]
fn merge_tags(log: &mut RequestLog, tags: Vec<(String, String)>) {
    for (k, v) in tags {
        log.tags.insert(k, v);
    }
}

/// Run the hooks that apply on each logged message of `msgs` (in order), with the message's first bytes.
fn run_hooks(
    hooks: &[Arc<dyn MessageHook>],
    flow_id: FlowId,
    key: &FlowKey,
    flow_proto: &L7Protocol,
    dirs: &mut [DirState; 2],
    msgs: &mut [Message],
    limits: &Limits,
) {
    let mut scratch = Vec::new();
    for msg in msgs.iter_mut() {
        let d = msg.direction.index();
        let keep = dirs[d].hook.get_or_insert_with(Box::default);
        keep.from = keep.from.max(msg.end);
        if msg.kind == MessageKind::Event {
            continue;
        }
        let protocol = msg
            .info
            .protocol
            .clone()
            .unwrap_or_else(|| flow_proto.clone());
        if !hooks.iter().any(|h| h.applies_to(&protocol)) {
            continue;
        }
        let dir = &dirs[d];
        let input = HookInput {
            protocol: &protocol,
            direction: msg.direction,
            kind: msg.kind,
            flow: key,
            flow_id,
            time_us: dir.locate(msg.start).0,
            bytes: dir.message_bytes(msg.start, msg.end, limits.max_hook_bytes, &mut scratch),
            message_len: msg.end.saturating_sub(msg.start),
        };
        for hook in hooks.iter().filter(|h| h.applies_to(&protocol)) {
            hook.on_message(&input, &mut msg.info);
        }
    }
}

/// `*dst = src.clone()`, field by field (no drop and rebuild of the enum per chunk).
fn set_origin(dst: &mut ChunkOrigin, src: &ChunkOrigin) {
    match (dst, src) {
        (
            ChunkOrigin::Syscall {
                pid,
                tid,
                fd,
                comm,
                syscall_trace_id,
                tls_plaintext,
                side,
            },
            ChunkOrigin::Syscall {
                pid: src_pid,
                tid: src_tid,
                fd: src_fd,
                comm: src_comm,
                syscall_trace_id: src_trace_id,
                tls_plaintext: src_tls,
                side: src_side,
            },
        ) => {
            *comm = *src_comm;
            *pid = *src_pid;
            *tid = *src_tid;
            *fd = *src_fd;
            *syscall_trace_id = *src_trace_id;
            *tls_plaintext = *src_tls;
            *side = *src_side;
        }
        (dst, src) => *dst = src.clone(),
    }
}

fn origin_fields(log: &mut RequestLog, origin: &ChunkOrigin) -> Option<u64> {
    match origin {
        ChunkOrigin::Packet => None,
        ChunkOrigin::Syscall {
            pid,
            tid,
            comm,
            syscall_trace_id,
            side,
            ..
        } => {
            log.tap_side = *side;
            log.process_id = Some(*pid);
            log.thread_id = Some(*tid);
            // The response's process is usually the request's: keep the name already set then.
            if log.process_name.as_deref() != Some(&**comm) {
                log.process_name = Some(comm.to_string());
            }
            (*syscall_trace_id != 0).then_some(*syscall_trace_id)
        }
    }
}

/// Assemble one RequestLog from a request and/or a response (or a one-way message in `response`).
fn build_log(
    flow: &FlowKey,
    default_proto: &L7Protocol,
    request: Option<Pending>,
    response: Option<Pending>,
) -> RequestLog {
    let mut log = RequestLog::new(default_proto.clone());
    log.set_flow(flow);
    log.tap_side = TapSide::Network;
    let mut info = LogInfo::default();
    let mut xrid0 = None;
    let mut xrid1 = None;
    // The messages are owned: their fields move into the log (no string copies).
    match (request, response) {
        (Some(req), resp) => {
            let mut rinfo = req.msg.info;
            xrid0 = rinfo.x_request_id.take();
            info = rinfo;
            log.start_time_us = req.start_us;
            log.req_tcp_seq = req.seq;
            log.captured_request_byte = req.msg.wire_bytes;
            log.syscall_trace_id_request = origin_fields(&mut log, &req.origin);
            match resp {
                Some(resp) => {
                    let mut sinfo = resp.msg.info;
                    xrid1 = sinfo.x_request_id.take();
                    if !sinfo.tags.is_empty() {
                        // The response's tags after the request's (a later key wins).
                        let t = std::mem::take(&mut sinfo.tags);
                        info.tags.extend(t);
                    }
                    // Response-side fields come from the response; request-side ones from the request.
                    let code = sinfo.response_code.take();
                    let status = sinfo.response_status.take();
                    let exc = sinfo.response_exception.take();
                    let result = sinfo.response_result.take();
                    info.response_code = code.or(info.response_code);
                    info.response_status = status.or(info.response_status);
                    info.response_exception = exc.or(info.response_exception);
                    info.response_result = result.or(info.response_result);
                    if sinfo.protocol.is_some() {
                        info.protocol = sinfo.protocol.take();
                    }
                    info.fill_from(sinfo);
                    log.end_time_us = resp.end_us.max(req.start_us);
                    log.response_duration_us = Some(log.end_time_us - log.start_time_us);
                    log.resp_tcp_seq = resp.seq;
                    log.captured_response_byte = resp.msg.wire_bytes;
                    log.syscall_trace_id_response = origin_fields(&mut log, &resp.origin);
                    log.response_status = info.response_status.unwrap_or(ResponseStatus::Ok);
                }
                None => {
                    log.end_time_us = req.end_us.max(req.start_us);
                    log.response_status = ResponseStatus::Timeout;
                }
            }
        }
        (None, Some(one)) => {
            let mut oinfo = one.msg.info;
            if one.msg.direction == Direction::ClientToServer {
                xrid0 = oinfo.x_request_id.take();
            } else {
                xrid1 = oinfo.x_request_id.take();
            }
            info = oinfo;
            log.start_time_us = one.start_us;
            log.end_time_us = one.end_us.max(one.start_us);
            log.req_tcp_seq = one.seq;
            log.captured_request_byte = one.msg.wire_bytes;
            log.syscall_trace_id_request = origin_fields(&mut log, &one.origin);
            log.response_status = info.response_status.unwrap_or(ResponseStatus::Ok);
        }
        (None, None) => {}
    }
    if let Some(p) = info.protocol {
        log.l7_protocol = p;
    }
    log.version = info.version;
    log.request_type = info.request_type;
    log.request_domain = info.request_domain;
    log.request_resource = info.request_resource;
    log.endpoint = info.endpoint;
    log.request_id = info.request_id;
    log.response_code = info.response_code;
    log.response_exception = info.response_exception;
    log.response_result = info.response_result;
    log.trace_id = info.trace_id;
    log.span_id = info.span_id;
    log.parent_span_id = info.parent_span_id;
    log.x_request_id_0 = xrid0;
    log.x_request_id_1 = xrid1;
    // Hook tags: the request's (or the one-way message's), then the response's.
    if !info.tags.is_empty() {
        merge_tags(&mut log, info.tags);
    }
    let _ = Correlation::Unpaired;
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_model::ProcessName;

    /// `set_origin` leaves exactly what a clone would.
    #[test]
    fn set_origin_is_a_clone() {
        let curl = ProcessName::new("curl");
        let syscall = |pid, comm: &ProcessName, trace| ChunkOrigin::Syscall {
            pid,
            tid: pid + 1,
            fd: 3,
            comm: *comm,
            syscall_trace_id: trace,
            tls_plaintext: trace % 2 == 0,
            side: if trace % 2 == 0 {
                TapSide::ClientProcess
            } else {
                TapSide::ServerProcess
            },
        };
        let other = ProcessName::new("curl ");
        let origins = [
            ChunkOrigin::Packet,
            syscall(1, &curl, 7),
            syscall(2, &curl, 8),
            syscall(3, &other, 9),
            syscall(4, &ProcessName::new("nginx"), 0),
        ];
        for a in &origins {
            for b in &origins {
                let mut dst = a.clone();
                set_origin(&mut dst, b);
                assert_eq!(&dst, b);
            }
        }
    }
}
