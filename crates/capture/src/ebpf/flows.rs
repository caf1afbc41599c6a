//! Socket events to [`StreamEvent`]s: one flow per traced (process, fd, socket), oriented client → server.

use super::event::{Kind, SockEvent};
use crate::{dst_is_server, Counters};
use bytes::Bytes;
use fathom_model::{
    ChunkOrigin, CloseType, Direction, FlowEnd, FlowId, FlowKey, FlowRecord, L4Protocol,
    StreamChunk, StreamEvent, TapSide,
};
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

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
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    key: FlowKey,
    side: TapSide,
    comm: Arc<str>,
    last_us: u64,
    /// Bytes beyond the capture length, owed as `gap_before` to the next chunk, per direction.
    pending_gap: [u64; 2],
    record: FlowRecord,
    /// The socket produced TLS plaintext (OpenSSL hooks): its ciphertext is not reported any more.
    tls_plaintext: bool,
}

/// Turns socket events into stream events.
pub(crate) struct SyscallFlows<L> {
    flows: HashMap<(u32, u32), Flow>,
    next_id: FlowId,
    listen: L,
    /// Added to `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to get ns since the Unix epoch.
    clock_offset_ns: i128,
    idle_timeout_us: u64,
    /// TLS plaintext events handled.
    pub(crate) tls_events: u64,
    /// Ciphertext events of sockets that produced plaintext, dropped.
    pub(crate) tls_ciphertext_dropped: u64,
}

impl<L: ListenPorts> SyscallFlows<L> {
    pub(crate) fn new(listen: L, clock_offset_ns: i128, idle_timeout_us: u64) -> Self {
        SyscallFlows {
            flows: HashMap::new(),
            next_id: 1,
            listen,
            clock_offset_ns,
            idle_timeout_us,
            tls_events: 0,
            tls_ciphertext_dropped: 0,
        }
    }

    fn epoch_us(&self, mono_ns: u64) -> u64 {
        u64::try_from((i128::from(mono_ns) + self.clock_offset_ns) / 1000).unwrap_or(0)
    }

    /// Which side of its connection the traced process is.
    fn side(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> TapSide {
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

    /// Handle one event.
    pub(crate) fn push(
        &mut self,
        e: &SockEvent<'_>,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let now_us = self.epoch_us(e.ts_exit_ns);
        let k = (e.pid, e.fd);
        if e.kind == Kind::Close {
            if let Some(f) = self.flows.remove(&k) {
                out.push(end(f, now_us, CloseType::Fin));
            }
            return;
        }
        if let Some(f) = self.flows.get(&k) {
            if f.local != e.local || f.remote != e.remote {
                // The fd now names another socket: its close went unseen.
                if let Some(f) = self.flows.remove(&k) {
                    out.push(end(f, now_us, CloseType::Fin));
                }
            }
        }
        if e.tls_plaintext {
            self.tls_events += 1;
        }
        if let Some(f) = self.flows.get_mut(&k) {
            if f.tls_plaintext && !e.tls_plaintext {
                // Ciphertext moved outside an OpenSSL call (e.g. a MSG_PEEK): its plaintext is reported.
                self.tls_ciphertext_dropped += 1;
                return;
            }
            if e.tls_plaintext && !f.tls_plaintext {
                if f.record.payload_byte_tx + f.record.payload_byte_rx > 0 {
                    // Ciphertext of this socket already went to the parsers: plaintext starts a new flow.
                    if let Some(f) = self.flows.remove(&k) {
                        out.push(end(f, now_us, CloseType::Evicted));
                    }
                } else {
                    f.tls_plaintext = true;
                }
            }
        }
        if !self.flows.contains_key(&k) {
            let side = self.side(e.local, e.remote);
            let (client, server) = match side {
                TapSide::ServerProcess => (e.remote, e.local),
                _ => (e.local, e.remote),
            };
            let key = FlowKey {
                ip_src: client.0,
                ip_dst: server.0,
                port_src: client.1,
                port_dst: server.1,
                l4_protocol: L4Protocol::Tcp,
            };
            let id = self.next_id;
            self.next_id += 1;
            counters.flows_created += 1;
            let record = FlowRecord::new(&key, now_us);
            let comm: Arc<str> = String::from_utf8_lossy(e.comm).into();
            self.flows.insert(
                k,
                Flow {
                    id,
                    local: e.local,
                    remote: e.remote,
                    key,
                    side,
                    comm,
                    last_us: now_us,
                    pending_gap: [0; 2],
                    record,
                    tls_plaintext: e.tls_plaintext,
                },
            );
        }
        let outgoing = e.kind == Kind::Egress;
        // Outgoing bytes exist when the call starts, incoming ones when it returns.
        let time_us = if outgoing {
            self.epoch_us(e.ts_enter_ns)
        } else {
            now_us
        };
        let Some(f) = self.flows.get_mut(&k) else {
            return;
        };
        let direction = match (f.side, outgoing) {
            (TapSide::ServerProcess, true) | (TapSide::ClientProcess | TapSide::Network, false) => {
                Direction::ServerToClient
            }
            _ => Direction::ClientToServer,
        };
        f.last_us = now_us;
        f.record.end_time_us = now_us;
        let len = u64::from(e.len);
        let lost = len.saturating_sub(e.data.len() as u64);
        let di = direction.index();
        match direction {
            Direction::ClientToServer => {
                f.record.payload_byte_tx += len;
                f.record.lost_byte_tx += lost;
            }
            Direction::ServerToClient => {
                f.record.payload_byte_rx += len;
                f.record.lost_byte_rx += lost;
            }
        }
        counters.tcp_lost_bytes += lost;
        if e.data.is_empty() {
            f.pending_gap[di] += lost;
            return;
        }
        let gap_before = std::mem::replace(&mut f.pending_gap[di], lost);
        counters.chunks += 1;
        counters.chunk_bytes += e.data.len() as u64;
        out.push(StreamEvent::Chunk(StreamChunk {
            flow_id: f.id,
            flow: f.key,
            direction,
            time_us,
            seq: None,
            gap_before,
            bytes: Bytes::copy_from_slice(e.data),
            origin: ChunkOrigin::Syscall {
                pid: e.pid,
                tid: e.tid,
                fd: e.fd,
                comm: f.comm.clone(),
                syscall_trace_id: 0,
                tls_plaintext: e.tls_plaintext,
                side: f.side,
            },
        }));
    }

    /// End flows idle since before `now_us - idle_timeout`.
    pub(crate) fn expire(
        &mut self,
        now_us: u64,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let limit = now_us.saturating_sub(self.idle_timeout_us);
        let mut idle: Vec<(u32, u32)> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last_us < limit)
            .map(|(k, _)| *k)
            .collect();
        idle.sort_unstable_by_key(|k| self.flows.get(k).map_or(0, |f| f.id));
        for k in idle {
            if let Some(f) = self.flows.remove(&k) {
                counters.flows_timed_out += 1;
                out.push(end(f, now_us, CloseType::Timeout));
            }
        }
    }

    /// End every flow (end of capture).
    pub(crate) fn finish(
        &mut self,
        now_us: u64,
        counters: &mut Counters,
        out: &mut Vec<StreamEvent>,
    ) {
        let mut all: Vec<Flow> = self.flows.drain().map(|(_, f)| f).collect();
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
    use super::super::event::tests::{record, set_tls};
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
        let mut fl = SyscallFlows::new(Fixed(&[8080]), 0, 60_000_000);
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
        let mut fl = SyscallFlows::new(Fixed(&[80]), 0, 60_000_000);
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
        let mut fl = SyscallFlows::new(Fixed(&[8443]), 0, 60_000_000);
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
        assert_eq!((fl.tls_events, fl.tls_ciphertext_dropped), (2, 1));
    }

    #[test]
    fn listening_ports_from_proc() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(parse_listening(text).collect::<Vec<_>>(), [8080]);
    }
}
