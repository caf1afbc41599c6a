//! Socket events to [`StreamEvent`]s: one flow per traced socket (and, for unconnected UDP, per peer), oriented
//! client → server.

use super::event::{Kind, Role, SockEvent, L4};
use crate::{dst_is_server, Counters};
use bytes::Bytes;
use fathom_model::{
    ChunkOrigin, CloseType, Direction, FlowEnd, FlowId, FlowKey, FlowRecord, L4Protocol,
    ProcessName, StreamChunk, StreamEvent, TapSide,
};
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;

/// Decides whether a local port is a listening (server) port.
pub(crate) trait ListenPorts {
    /// Whether `port` is a TCP port some local socket listens on.
    fn is_listening(&mut self, port: u16) -> bool;
}

/// Listening TCP ports from `/proc/net/tcp` and `/proc/net/tcp6`, re-read (at most every 200 ms) when a port is
/// not known yet.
#[derive(Debug, Default)]
pub(crate) struct ProcListenPorts {
    ports: HashSet<u16>,
    last_read: Option<std::time::Instant>,
}

impl ProcListenPorts {
    fn refresh(&mut self) {
        self.ports.clear();
        for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(path) {
                self.ports.extend(parse_listening(&text));
            }
        }
        self.last_read = Some(std::time::Instant::now());
    }
}

/// Local ports of the LISTEN (state `0A`) sockets of a `/proc/net/tcp{,6}` table.
pub(crate) fn parse_listening(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut f = line.split_whitespace();
        let local = f.nth(1)?;
        let state = f.nth(1)?;
        if state != "0A" {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

impl ListenPorts for ProcListenPorts {
    fn is_listening(&mut self, port: u16) -> bool {
        if self.ports.contains(&port) {
            return true;
        }
        let stale = self
            .last_read
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(200));
        if stale {
            self.refresh();
        }
        self.ports.contains(&port)
    }
}

struct Flow {
    id: FlowId,
    remote: (IpAddr, u16),
    key: FlowKey,
    last_us: u64,
    /// Bytes beyond the capture length, owed as `gap_before` to the next chunk, per direction.
    pending_gap: [u64; 2],
    /// TCP sequence number expected next, per direction (from the last event's `tcp_seq + len`).
    next_tcp_seq: [Option<u32>; 2],
    record: FlowRecord,
    /// The socket produced TLS plaintext (OpenSSL hooks): its ciphertext is not reported any more.
    tls_plaintext: bool,
}

/// One traced socket: its flows (one for TCP and connected UDP, one per peer for unconnected UDP).
struct Socket {
    /// The (pid, fd) that first used it.
    owner: (u32, u32),
    local: (IpAddr, u16),
    l4: L4,
    side: TapSide,
    comm: ProcessName,
    /// The kernel's per-socket event number expected next.
    next_seq: u32,
    flows: Vec<Flow>,
}

/// Losses and table sizes of the syscall flow table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlowStats {
    /// Events missing from a socket's numbering (lost in the kernel or the ring buffer).
    pub lost_events: u64,
    /// Events that arrived after a later event of the same socket.
    pub reordered_events: u64,
    /// Bytes received twice (e.g. `MSG_PEEK`) and dropped.
    pub duplicate_bytes: u64,
    /// Sockets ended early because the table was full.
    pub sockets_evicted: u64,
    /// TLS plaintext events (OpenSSL hooks) handled.
    pub tls_events: u64,
    /// Ciphertext events of sockets that produced plaintext, dropped.
    pub tls_ciphertext_dropped: u64,
}

/// Turns socket events into stream events.
pub(crate) struct SyscallFlows<L> {
    sockets: HashMap<u64, Socket>,
    /// (pid, fd) -> the socket it names: a new socket on the same fd means the old one was closed unseen.
    by_fd: HashMap<(u32, u32), u64>,
    /// pid -> the sockets it opened (ended when it exits).
    by_pid: HashMap<u32, Vec<u64>>,
    /// Sockets ended without a close (timeout, eviction, exit): their next event number, should they come back
    /// (bounded: oldest forgotten first).
    ended: HashMap<u64, u32>,
    ended_order: std::collections::VecDeque<u64>,
    flows_live: usize,
    next_id: FlowId,
    listen: L,
    /// Added to `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to get ns since the Unix epoch.
    clock_offset_ns: i128,
    idle_timeout_us: u64,
    max_sockets: usize,
    max_peers: usize,
    stats: FlowStats,
}

impl<L: ListenPorts> SyscallFlows<L> {
    pub(crate) fn new(
        listen: L,
        clock_offset_ns: i128,
        idle_timeout_us: u64,
        max_sockets: usize,
    ) -> Self {
        SyscallFlows {
            sockets: HashMap::new(),
            by_fd: HashMap::new(),
            by_pid: HashMap::new(),
            ended: HashMap::new(),
            ended_order: std::collections::VecDeque::new(),
            flows_live: 0,
            next_id: 1,
            listen,
            clock_offset_ns,
            idle_timeout_us,
            max_sockets: max_sockets.max(1),
            max_peers: 256,
            stats: FlowStats::default(),
        }
    }

    /// Losses and evictions so far.
    pub(crate) fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Sockets and flows currently tracked.
    pub(crate) fn live(&self) -> (usize, usize) {
        (self.sockets.len().max(self.by_fd.len()), self.flows_live)
    }

    fn epoch_us(&self, mono_ns: u64) -> u64 {
        let ns = i128::from(mono_ns) + self.clock_offset_ns;
        // The 64-bit division first (the 128-bit one is a library call, twice per event).
        match u64::try_from(ns) {
            Ok(ns) => ns / 1000,
            Err(_) => u64::try_from(ns / 1000).unwrap_or(0),
        }
    }

    /// Which side of its connection the traced process is, when the kernel did not see connect/accept.
    fn guess_side(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> TapSide {
        if self.listen.is_listening(local.1) {
            TapSide::ServerProcess
        } else if (remote.0.is_loopback() && self.listen.is_listening(remote.1))
            || dst_is_server(local.1, remote.1)
        {
            TapSide::ClientProcess
        } else {
            TapSide::ServerProcess
        }
    }

    /// End every flow of a socket.
    fn end_socket(
        &mut self,
        socket_id: u64,
        now_us: u64,
        close: CloseType,
        out: &mut Vec<StreamEvent>,
    ) {
        if let Some(s) = self.sockets.remove(&socket_id) {
            if self.by_fd.get(&s.owner) == Some(&socket_id) {
                self.by_fd.remove(&s.owner);
            }
            if let hashbrown::hash_map::Entry::Occupied(mut o) = self.by_pid.entry(s.owner.0) {
                o.get_mut().retain(|id| *id != socket_id);
                if o.get().is_empty() {
                    o.remove();
                }
            }
            if close != CloseType::Fin {
                self.remember_ended(socket_id, s.next_seq);
            }
            self.flows_live -= s.flows.len();
            for f in s.flows {
                out.push(end(f, now_us, close));
            }
        }
    }

    /// Make room for one more socket: the least recently active one ends (`evicted`).
    fn evict_one(&mut self, now_us: u64, counters: &mut Counters, out: &mut Vec<StreamEvent>) {
        let oldest = self
            .sockets
            .iter()
            .map(|(id, s)| (s.flows.iter().map(|f| f.last_us).max().unwrap_or(0), *id))
            .min();
        if let Some((_, id)) = oldest {
            let n = self.sockets.get(&id).map_or(0, |s| s.flows.len() as u64);
            counters.flows_evicted += n;
            self.stats.sockets_evicted += 1;
            self.end_socket(id, now_us, CloseType::Evicted, out);
        }
    }

    /// Handle one event.
    pub(crate) fn push(
        &mut self,
        e: &SockEvent<'_>,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let now_us = self.epoch_us(e.ts_exit_ns);
        let enter_us = self.epoch_us(e.ts_enter_ns);
        if e.kind == Kind::Exit {
            // The process is gone, and with it the sockets it opened (unless shared: they come back then).
            if let Some(ids) = self.by_pid.remove(&e.pid) {
                for id in ids {
                    // A socket the process shared (fork) may still be used by another one: keep its numbering.
                    let next = self.sockets.get(&id).map(|s| s.next_seq);
                    self.end_socket(id, now_us, CloseType::Fin, out);
                    if let Some(n) = next {
                        self.remember_ended(id, n);
                    }
                }
            }
            return;
        }
        if e.kind == Kind::Close {
            // A close of a socket never seen: every event before it (numbered from 0) was lost.
            let expected = match self.sockets.get(&e.socket_id) {
                Some(s) => s.next_seq,
                None => self.ended.remove(&e.socket_id).unwrap_or(0),
            };
            self.account_seq(e.socket_id, e.sock_seq, expected);
            self.end_socket(e.socket_id, now_us, CloseType::Fin, out);
            return;
        }
        if !self.sockets.contains_key(&e.socket_id) {
            if let Some(old) = self.by_fd.insert((e.pid, e.fd), e.socket_id) {
                // The fd now names another socket: the old one was closed without a close() the programs saw.
                self.end_socket(old, now_us, CloseType::Fin, out);
                self.by_fd.insert((e.pid, e.fd), e.socket_id);
            }
            if self.sockets.len() >= self.max_sockets {
                self.evict_one(now_us, counters, out);
            }
            let side = match e.role {
                Role::Client => TapSide::ClientProcess,
                Role::Server => TapSide::ServerProcess,
                Role::Unknown => self.guess_side(e.local, e.remote),
            };
            self.sockets.insert(
                e.socket_id,
                Socket {
                    owner: (e.pid, e.fd),
                    local: e.local,
                    l4: e.l4,
                    side,
                    comm: ProcessName::new(&String::from_utf8_lossy(e.comm)),
                    next_seq: self.ended.remove(&e.socket_id).unwrap_or(0),
                    flows: Vec::new(),
                },
            );
            self.by_pid.entry(e.pid).or_default().push(e.socket_id);
        }
        // One lookup for the rest: `sock` borrows only the socket table, the counters are other fields.
        let Some(sock) = self.sockets.get_mut(&e.socket_id) else {
            return;
        };
        count_seq(&mut self.stats, &mut sock.next_seq, e.sock_seq);
        match e.role {
            Role::Client => sock.side = TapSide::ClientProcess,
            Role::Server => sock.side = TapSide::ServerProcess,
            Role::Unknown => {}
        }
        if e.tls {
            self.stats.tls_events += 1;
        }
        if let Some(i) = sock.flows.iter().position(|f| f.remote == e.remote) {
            let data = matches!(e.kind, Kind::Egress | Kind::Ingress);
            let f = &mut sock.flows[i];
            if data && f.tls_plaintext && !e.tls {
                // Ciphertext moved outside an OpenSSL call: the socket's plaintext is what is reported.
                self.stats.tls_ciphertext_dropped += 1;
                return;
            }
            if e.tls && !f.tls_plaintext {
                if f.record.payload_byte_tx + f.record.payload_byte_rx > 0 {
                    // Ciphertext of this socket already went to the parsers: plaintext starts a new flow.
                    let f = sock.flows.swap_remove(i);
                    self.flows_live -= 1;
                    out.push(end(f, now_us, CloseType::Evicted));
                } else {
                    f.tls_plaintext = true;
                }
            }
        }
        let fi = match sock.flows.iter().position(|f| f.remote == e.remote) {
            Some(i) => i,
            None => {
                if sock.l4 == L4::Tcp && !sock.flows.is_empty() {
                    // A TCP socket names one peer: another one means the kernel reused the socket's state.
                    let old = std::mem::take(&mut sock.flows);
                    self.flows_live -= old.len();
                    for f in old {
                        out.push(end(f, now_us, CloseType::Fin));
                    }
                }
                if sock.flows.len() >= self.max_peers {
                    let (i, _) = sock
                        .flows
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, f)| f.last_us)
                        .unwrap_or((0, &sock.flows[0]));
                    let f = sock.flows.swap_remove(i);
                    counters.flows_evicted += 1;
                    self.flows_live -= 1;
                    out.push(end(f, now_us, CloseType::Evicted));
                }
                let (client, server) = match sock.side {
                    TapSide::ServerProcess => (e.remote, sock.local),
                    _ => (sock.local, e.remote),
                };
                let key = FlowKey {
                    ip_src: client.0,
                    ip_dst: server.0,
                    port_src: client.1,
                    port_dst: server.1,
                    l4_protocol: match sock.l4 {
                        L4::Tcp => L4Protocol::Tcp,
                        L4::Udp => L4Protocol::Udp,
                    },
                };
                let id = self.next_id;
                self.next_id += 1;
                counters.flows_created += 1;
                self.flows_live += 1;
                sock.flows.push(Flow {
                    id,
                    remote: e.remote,
                    key,
                    last_us: now_us,
                    pending_gap: [0; 2],
                    next_tcp_seq: [None; 2],
                    record: FlowRecord::new(&key, now_us),
                    tls_plaintext: e.tls,
                });
                sock.flows.len() - 1
            }
        };
        let side = sock.side;
        let Some(f) = sock.flows.get_mut(fi) else {
            return;
        };
        f.last_us = now_us;
        f.record.end_time_us = now_us;
        let outgoing = match e.kind {
            Kind::Egress => true,
            Kind::Ingress => false,
            // Connect/accept: the socket and its role are known now; no bytes.
            _ => return,
        };
        // Outgoing bytes exist when the call starts, incoming ones when it returns.
        let time_us = if outgoing { enter_us } else { now_us };
        let direction = match (side, outgoing) {
            (TapSide::ServerProcess, true) | (TapSide::ClientProcess | TapSide::Network, false) => {
                Direction::ServerToClient
            }
            _ => Direction::ClientToServer,
        };
        let di = direction.index();
        let len = u64::from(e.len);
        let mut data = e.data;
        let mut seq = e.tcp_seq;
        let mut gap_seq = 0u64;
        if let (Some(s), Some(want)) = (e.tcp_seq, f.next_tcp_seq[di]) {
            let d = s.wrapping_sub(want) as i32;
            if d > 0 {
                // Bytes between the last event and this one were never seen (lost events).
                gap_seq = d as u64;
            } else if d < 0 {
                // Bytes seen before (a peek, or a retried call): keep only the new ones.
                let dup = u64::from(d.unsigned_abs()).min(len);
                self.stats.duplicate_bytes += dup;
                let skip = (dup as usize).min(data.len());
                data = &data[skip..];
                seq = Some(s.wrapping_add(dup as u32));
                if dup == len {
                    return;
                }
            }
        }
        if let Some(s) = e.tcp_seq {
            let end_seq = s.wrapping_add(e.len);
            let keep = f.next_tcp_seq[di].is_none_or(|w| end_seq.wrapping_sub(w) as i32 > 0);
            if keep {
                f.next_tcp_seq[di] = Some(end_seq);
            }
        }
        let new_len = len - u64::from(seq.zip(e.tcp_seq).map_or(0, |(a, b)| a.wrapping_sub(b)));
        let lost = new_len.saturating_sub(data.len() as u64);
        match direction {
            Direction::ClientToServer => {
                f.record.payload_byte_tx += new_len;
                f.record.lost_byte_tx += lost + gap_seq;
            }
            Direction::ServerToClient => {
                f.record.payload_byte_rx += new_len;
                f.record.lost_byte_rx += lost + gap_seq;
            }
        }
        counters.tcp_lost_bytes += lost + gap_seq;
        if sock.l4 == L4::Udp {
            // One datagram per chunk; the part beyond the capture length is simply not there.
            if data.is_empty() {
                return;
            }
            f.pending_gap[di] = 0;
            seq = None;
        } else {
            f.pending_gap[di] += gap_seq;
            if data.is_empty() {
                f.pending_gap[di] += lost;
                return;
            }
        }
        let gap_before = std::mem::replace(
            &mut f.pending_gap[di],
            if sock.l4 == L4::Udp { 0 } else { lost },
        );
        counters.chunks += 1;
        counters.chunk_bytes += data.len() as u64;
        out.push(StreamEvent::Chunk(StreamChunk {
            flow_id: f.id,
            flow: f.key,
            direction,
            time_us,
            seq,
            gap_before,
            bytes: Bytes::copy_from_slice(data),
            origin: ChunkOrigin::Syscall {
                pid: e.pid,
                tid: e.tid,
                fd: e.fd,
                comm: sock.comm,
                syscall_trace_id: e.trace_id,
                tls_plaintext: e.tls,
                side,
            },
        }));
    }

    /// Remember where an unclosed socket's numbering stopped.
    fn remember_ended(&mut self, socket_id: u64, next_seq: u32) {
        const MAX_ENDED: usize = 16_384;
        if self.ended.insert(socket_id, next_seq).is_none() {
            self.ended_order.push_back(socket_id);
            while self.ended_order.len() > MAX_ENDED {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }

    /// Check an event's per-socket number against the one expected, count holes, and advance.
    fn account_seq(&mut self, socket_id: u64, got: u32, expected: u32) {
        let mut next = expected;
        count_seq(&mut self.stats, &mut next, got);
        if next != expected {
            if let Some(s) = self.sockets.get_mut(&socket_id) {
                s.next_seq = next;
            }
        }
    }

    /// End flows idle since before `now_us - idle_timeout`.
    pub(crate) fn expire(
        &mut self,
        now_us: u64,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let limit = now_us.saturating_sub(self.idle_timeout_us);
        let mut idle: Vec<Flow> = Vec::new();
        self.sockets.retain(|_, s| {
            let mut i = 0;
            while i < s.flows.len() {
                if s.flows[i].last_us < limit {
                    idle.push(s.flows.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            !s.flows.is_empty()
        });
        let sockets = &self.sockets;
        self.by_fd.retain(|_, id| sockets.contains_key(id));
        self.by_pid.retain(|_, ids| {
            ids.retain(|id| sockets.contains_key(id));
            !ids.is_empty()
        });
        idle.sort_unstable_by_key(|f| f.id);
        self.flows_live -= idle.len();
        for f in idle {
            counters.flows_timed_out += 1;
            out.push(end(f, now_us, CloseType::Timeout));
        }
    }

    /// End every flow (end of capture).
    pub(crate) fn finish(
        &mut self,
        now_us: u64,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let mut all: Vec<Flow> = self.sockets.drain().flat_map(|(_, s)| s.flows).collect();
        self.by_fd.clear();
        self.by_pid.clear();
        self.flows_live = 0;
        all.sort_unstable_by_key(|f| f.id);
        counters.flows_open_at_end += all.len() as u64;
        for f in all {
            let t = now_us.max(f.last_us);
            out.push(end(f, t, CloseType::OpenAtEnd));
        }
    }

    /// The current time, µs since the epoch, on the events' clock.
    pub(crate) fn now_us(&self, mono_ns: u64) -> u64 {
        self.epoch_us(mono_ns)
    }
}

/// Check an event's per-socket number `got` against the one expected (`next`), count holes, and advance `next`.
fn count_seq(stats: &mut FlowStats, next: &mut u32, got: u32) {
    let d = got.wrapping_sub(*next) as i32;
    if d > 0 {
        stats.lost_events += d as u64;
    } else if d < 0 {
        stats.reordered_events += 1;
    }
    if d >= 0 {
        *next = got.wrapping_add(1);
    }
}

fn end(f: Flow, time_us: u64, close: CloseType) -> StreamEvent {
    let mut record = f.record;
    record.close_type = close;
    record.end_time_us = record.end_time_us.max(time_us);
    StreamEvent::FlowEnd(Box::new(FlowEnd {
        flow_id: f.id,
        flow: f.key,
        time_us,
        record,
        out_of_order: [0; 2],
        zero_window: [0; 2],
        resets: [0; 2],
    }))
}

#[cfg(test)]
mod tests {
    use super::super::event::tests::{record, set_tls, Rec};
    use super::*;

    struct Fixed(&'static [u16]);
    impl ListenPorts for Fixed {
        fn is_listening(&mut self, port: u16) -> bool {
            self.0.contains(&port)
        }
    }

    fn chunks(out: &[StreamEvent]) -> Vec<&StreamChunk> {
        out.iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(c) => Some(c),
                StreamEvent::FlowEnd(_) => None,
            })
            .collect()
    }

    #[test]
    fn orients_both_processes_client_to_server() {
        let mut fl = SyscallFlows::new(Fixed(&[8080]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let cli = ([127, 0, 0, 1], 40000);
        let srv = ([127, 0, 0, 1], 8080);
        // Client (pid 10) writes the request, server (pid 20) reads it, writes the reply, client reads it.
        for r in [
            record(0, 10, 3, cli, srv, 1_000, 4, b"GET "),
            record(1, 20, 7, srv, cli, 2_000, 4, b"GET "),
            record(0, 20, 7, srv, cli, 3_000, 4, b"HTTP"),
            record(1, 10, 3, cli, srv, 4_000, 4, b"HTTP"),
        ] {
            fl.push(&SockEvent::parse(&r).unwrap(), &mut c, &mut out);
        }
        let ch = chunks(&out);
        assert_eq!(ch.len(), 4);
        for x in &ch {
            assert_eq!((x.flow.port_src, x.flow.port_dst), (40000, 8080));
        }
        let dirs: Vec<_> = ch.iter().map(|x| x.direction).collect();
        use Direction::*;
        assert_eq!(
            dirs,
            [
                ClientToServer,
                ClientToServer,
                ServerToClient,
                ServerToClient
            ]
        );
        let sides: Vec<_> = ch
            .iter()
            .map(|x| match &x.origin {
                ChunkOrigin::Syscall { side, .. } => *side,
                ChunkOrigin::Packet => TapSide::Network,
            })
            .collect();
        use TapSide::*;
        assert_eq!(
            sides,
            [ClientProcess, ServerProcess, ServerProcess, ClientProcess]
        );
        assert_ne!(ch[0].flow_id, ch[1].flow_id);
        assert_eq!(ch[0].flow_id, ch[3].flow_id);
        assert_eq!(ch[0].time_us, 1); // egress: entry time
        assert_eq!(ch[1].time_us, 3); // ingress: exit time
        assert_eq!(c.flows_created, 2);
    }

    #[test]
    fn truncation_becomes_gap_and_close_ends_flow() {
        let mut fl = SyscallFlows::new(Fixed(&[80]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let cli = ([10, 0, 0, 1], 50000);
        let srv = ([10, 0, 0, 2], 80);
        for r in [
            record(0, 10, 3, cli, srv, 1_000, 100, b"abcd"),
            record(0, 10, 3, cli, srv, 2_000, 4, b"efgh"),
            record(2, 10, 3, cli, srv, 3_000, 0, b""),
            record(0, 10, 3, cli, srv, 4_000, 4, b"next"),
        ] {
            fl.push(&SockEvent::parse(&r).unwrap(), &mut c, &mut out);
        }
        let ch = chunks(&out);
        assert_eq!(ch[0].gap_before, 0);
        assert_eq!(ch[1].gap_before, 96);
        assert_eq!(c.tcp_lost_bytes, 96);
        let StreamEvent::FlowEnd(end) = &out[2] else {
            panic!("expected a flow end, got {:?}", out[2]);
        };
        assert_eq!(end.record.close_type, CloseType::Fin);
        assert_eq!(end.record.payload_byte_tx, 104);
        assert_eq!(end.record.lost_byte_tx, 96);
        assert_ne!(ch[2].flow_id, ch[0].flow_id);
        fl.expire(1_000_000_000, &mut c, &mut out);
        assert!(
            matches!(out.last(), Some(StreamEvent::FlowEnd(e)) if e.record.close_type == CloseType::Timeout)
        );
        fl.finish(2_000_000_000, &mut c, &mut out);
        assert_eq!(c.flows_timed_out, 1);
    }

    /// OpenSSL plaintext: ciphertext seen before it (nginx's one-byte MSG_PEEK) ends that flow, ciphertext after
    /// it is dropped and counted, the plaintext chunks are marked.
    #[test]
    fn tls_plaintext_replaces_ciphertext() {
        let mut fl = SyscallFlows::new(Fixed(&[8443]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let srv = ([127, 0, 0, 1], 8443);
        let cli = ([127, 0, 0, 1], 40000);
        let tls = |mut r: Vec<u8>| {
            set_tls(&mut r);
            r
        };
        for r in [
            record(1, 20, 7, srv, cli, 1_000, 1, b"\x16"),
            tls(record(1, 20, 7, srv, cli, 2_000, 5, b"GET /")),
            record(0, 20, 7, srv, cli, 3_000, 4, b"\x17\x03\x03\x00"),
            tls(record(0, 20, 7, srv, cli, 4_000, 4, b"HTTP")),
        ] {
            fl.push(&SockEvent::parse(&r).unwrap(), &mut c, &mut out);
        }
        let StreamEvent::FlowEnd(first) = &out[1] else {
            panic!("expected the ciphertext flow to end: {out:?}");
        };
        assert_eq!(first.record.close_type, CloseType::Evicted);
        let ch = chunks(&out);
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0].bytes.as_ref(), b"\x16");
        let plain: Vec<_> = ch[1..]
            .iter()
            .map(|x| match &x.origin {
                ChunkOrigin::Syscall { tls_plaintext, .. } => (*tls_plaintext, x.bytes.as_ref()),
                ChunkOrigin::Packet => panic!("packet origin"),
            })
            .collect();
        assert_eq!(plain, [(true, &b"GET /"[..]), (true, &b"HTTP"[..])]);
        assert_ne!(ch[0].flow_id, ch[1].flow_id);
        assert_eq!(ch[1].flow_id, ch[2].flow_id);
        assert_eq!(ch[1].direction, Direction::ClientToServer);
        assert_eq!(ch[2].direction, Direction::ServerToClient);
        let st = fl.stats();
        assert_eq!((st.tls_events, st.tls_ciphertext_dropped), (2, 1));
    }

    fn push(
        fl: &mut SyscallFlows<Fixed>,
        c: &mut Counters,
        out: &mut Vec<StreamEvent>,
        r: Rec,
        d: &[u8],
    ) {
        let b = r.build(d);
        fl.push(&SockEvent::parse(&b).unwrap(), c, out);
    }

    /// Holes in a socket's event numbering are counted; with TCP sequence numbers the missing bytes become
    /// `gap_before`, and bytes seen twice (a peek) are dropped.
    #[test]
    fn lost_events_and_tcp_sequence_gaps() {
        let mut fl = SyscallFlows::new(Fixed(&[]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let base = Rec {
            role: 1,
            socket_id: 7,
            local: ([127, 0, 0, 1], 40000),
            remote: ([127, 0, 0, 1], 6379),
            ..Rec::default()
        };
        push(&mut fl, &mut c, &mut out, Rec { kind: 3, ..base }, b"");
        let data = |seq, tcp, len| Rec {
            sock_seq: seq,
            tcp_seq: Some(tcp),
            len,
            ..base
        };
        push(&mut fl, &mut c, &mut out, data(1, 1000, 4), b"abcd");
        // Events 2 and 3 (8 bytes) were lost.
        push(&mut fl, &mut c, &mut out, data(4, 1012, 4), b"mnop");
        // A re-read of the last 2 bytes plus 2 new ones.
        push(&mut fl, &mut c, &mut out, data(5, 1014, 4), b"opqr");
        let ch = chunks(&out);
        assert_eq!(ch.len(), 3);
        assert_eq!((ch[0].seq, ch[0].gap_before), (Some(1000), 0));
        assert_eq!((ch[1].seq, ch[1].gap_before), (Some(1012), 8));
        assert_eq!((ch[2].seq, &ch[2].bytes[..]), (Some(1016), &b"qr"[..]));
        assert_eq!(ch[2].gap_before, 0);
        let st = fl.stats();
        assert_eq!((st.lost_events, st.duplicate_bytes), (2, 2));
        assert_eq!(c.tcp_lost_bytes, 8);
        // The role came from connect: the local process is the client, whatever the ports say.
        assert_eq!(ch[0].flow.port_dst, 6379);
        assert!(matches!(
            ch[0].origin,
            ChunkOrigin::Syscall {
                side: TapSide::ClientProcess,
                ..
            }
        ));
        // An event numbered before the last one is counted as reordered, not lost.
        push(&mut fl, &mut c, &mut out, data(3, 1020, 1), b"s");
        assert_eq!(fl.stats().reordered_events, 1);
        push(
            &mut fl,
            &mut c,
            &mut out,
            Rec {
                kind: 2,
                sock_seq: 6,
                ..base
            },
            b"",
        );
        assert_eq!(fl.live(), (0, 0));
        assert_eq!(fl.stats().lost_events, 2);
        // A socket whose first three events were lost shows up with its close only.
        let closed = Rec {
            kind: 2,
            sock_seq: 3,
            socket_id: 8,
            ..base
        };
        push(&mut fl, &mut c, &mut out, closed, b"");
        assert_eq!(fl.stats().lost_events, 5);
    }

    /// An unconnected UDP server socket: one flow per peer, one chunk per datagram, trace ids passed on; a server
    /// role makes the peer the client.
    #[test]
    fn udp_flows_per_peer() {
        let mut fl = SyscallFlows::new(Fixed(&[]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let srv = Rec {
            l4: 17,
            role: 2,
            socket_id: 9,
            local: ([127, 0, 0, 1], 53),
            ..Rec::default()
        };
        for (i, peer) in [40001u16, 40002, 40001].into_iter().enumerate() {
            push(
                &mut fl,
                &mut c,
                &mut out,
                Rec {
                    kind: 1,
                    sock_seq: i as u32,
                    remote: ([127, 0, 0, 1], peer),
                    len: 5,
                    trace_id: 77,
                    ..srv
                },
                b"query",
            );
        }
        let ch = chunks(&out);
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0].flow.l4_protocol, L4Protocol::Udp);
        assert_eq!((ch[0].flow.port_src, ch[0].flow.port_dst), (40001, 53));
        assert_eq!(ch[0].direction, Direction::ClientToServer);
        assert_ne!(ch[0].flow_id, ch[1].flow_id);
        assert_eq!(ch[0].flow_id, ch[2].flow_id);
        assert_eq!(ch[0].seq, None);
        assert!(matches!(
            ch[0].origin,
            ChunkOrigin::Syscall {
                syscall_trace_id: 77,
                side: TapSide::ServerProcess,
                ..
            }
        ));
        assert_eq!(fl.live(), (1, 2));
        fl.expire(1_000_000_000_000, &mut c, &mut out);
        assert_eq!(fl.live(), (0, 0));
    }

    /// A full table ends its least recently active socket (`evicted`), and a new socket on a known fd ends the
    /// old one.
    #[test]
    fn table_is_capped_and_fd_reuse_ends_the_old_socket() {
        let mut fl = SyscallFlows::new(Fixed(&[]), 0, 60_000_000, 2);
        let mut c = Counters::default();
        let mut out = Vec::new();
        for (id, fd, ts) in [(1u64, 3u32, 1_000u64), (2, 4, 2_000), (3, 5, 3_000)] {
            push(
                &mut fl,
                &mut c,
                &mut out,
                Rec {
                    kind: 4,
                    socket_id: id,
                    fd,
                    role: 2,
                    ts_ns: ts * 1000,
                    ..Rec::default()
                },
                b"",
            );
        }
        assert_eq!(fl.live(), (2, 2));
        assert_eq!(fl.stats().sockets_evicted, 1);
        assert!(
            matches!(&out[0], StreamEvent::FlowEnd(e) if e.record.close_type == CloseType::Evicted)
        );
        // fd 5 now names socket 4: socket 3 ended.
        push(
            &mut fl,
            &mut c,
            &mut out,
            Rec {
                kind: 4,
                socket_id: 4,
                fd: 5,
                role: 2,
                ..Rec::default()
            },
            b"",
        );
        assert_eq!(fl.live(), (2, 2));
        assert!(
            matches!(out.last(), Some(StreamEvent::FlowEnd(e)) if e.record.close_type == CloseType::Fin)
        );
    }

    /// A process exit ends the sockets it opened; a socket it shared comes back with its numbering intact.
    #[test]
    fn process_exit_ends_its_sockets() {
        let mut fl = SyscallFlows::new(Fixed(&[]), 0, 60_000_000, 1024);
        let mut c = Counters::default();
        let mut out = Vec::new();
        let sock = Rec {
            pid: 10,
            socket_id: 5,
            role: 1,
            ..Rec::default()
        };
        push(&mut fl, &mut c, &mut out, Rec { kind: 3, ..sock }, b"");
        push(
            &mut fl,
            &mut c,
            &mut out,
            Rec {
                sock_seq: 1,
                len: 1,
                ..sock
            },
            b"x",
        );
        assert_eq!(fl.live(), (1, 1));
        push(
            &mut fl,
            &mut c,
            &mut out,
            Rec {
                kind: 5,
                pid: 10,
                ..Rec::default()
            },
            b"",
        );
        assert_eq!(fl.live(), (0, 0));
        assert!(
            matches!(out.last(), Some(StreamEvent::FlowEnd(e)) if e.record.close_type == CloseType::Fin)
        );
        // A child that inherited the socket goes on with it: no loss counted.
        push(
            &mut fl,
            &mut c,
            &mut out,
            Rec {
                pid: 11,
                sock_seq: 2,
                len: 1,
                ..sock
            },
            b"y",
        );
        assert_eq!(fl.live(), (1, 1));
        assert_eq!(fl.stats().lost_events, 0);
    }

    #[test]
    fn listening_ports_from_proc() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(parse_listening(text).collect::<Vec<_>>(), [8080]);
    }
}
