//! TCP reassembly of one direction: in-order delivery, bounded out-of-order buffer, explicit gaps.
//!
//! Sequence numbers are compared with wrapping arithmetic (RFC 1982 style, a window of 2^31), so streams that
//! cross the 2^32 boundary reassemble normally. A direction without a SYN starts at the first sequence number
//! seen. Bytes already delivered (retransmissions, duplicates, the overlapping head of a segment) are never
//! delivered twice; a hole that does not fill before the out-of-order cap is reached, or before the flow ends,
//! is delivered as `gap_before` on the next chunk so parsers can resynchronise.

use crate::counters::Counters;
use crate::Config;
use bytes::Bytes;
use fathom_model::{ChunkOrigin, Direction, FlowId, FlowKey, StreamChunk, StreamEvent};

#[derive(Debug)]
struct OooSeg {
    seq: u32,
    wire_len: u32,
    data: Bytes,
    ts_us: u64,
}

/// Per-direction statistics kept by the reassembler.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DirStats {
    pub payload: u64,
    pub retrans: u64,
    pub lost: u64,
    pub ooo: u64,
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub(crate) struct TcpDir {
    started: bool,
    next_seq: u32,
    pub isn: Option<u32>,
    pub first_seq: Option<u32>,
    ooo: Vec<OooSeg>,
    ooo_bytes: usize,
    pending_gap: u64,
    /// One past the highest sequence number known to have been sent (data or FIN), if any.
    highest: Option<u32>,
    /// Sequence number of this direction's FIN (one past its last data byte).
    fin_seq: Option<u32>,
    pub stats: DirStats,
}

/// Where chunks go.
pub(crate) struct Sink<'a> {
    pub flow_id: FlowId,
    pub key: FlowKey,
    pub dir: Direction,
    pub out: &'a mut Vec<StreamEvent>,
    pub counters: &'a mut Counters,
    pub ooo_total: &'a mut usize,
}

fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl TcpDir {
    /// A SYN from this direction with initial sequence number `isn`. Returns true for a repeated SYN.
    pub(crate) fn on_syn(&mut self, isn: u32) -> bool {
        if self.isn == Some(isn) {
            return true;
        }
        if !self.started {
            self.isn = Some(isn);
            self.next_seq = isn.wrapping_add(1);
            self.started = true;
        }
        false
    }

    /// A segment whose data starts at `seq`, `wire_len` bytes long on the wire, of which `data` was captured
    /// (`src` is the packet buffer `data` points into, for zero-copy slicing).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn segment(
        &mut self,
        cfg: &Config,
        sink: &mut Sink<'_>,
        mut seq: u32,
        mut wire_len: u32,
        mut data: &[u8],
        src: Option<&Bytes>,
        ts_us: u64,
    ) {
        if wire_len == 0 {
            return;
        }
        if !self.started {
            self.started = true;
            self.next_seq = seq;
        }
        let mut off = seq_diff(seq, self.next_seq);
        if off + i64::from(wire_len) <= 0 {
            self.stats.retrans += 1;
            sink.counters.tcp_retransmissions += 1;
            return;
        }
        if off < 0 {
            // Partial overlap: trim the already delivered head.
            self.stats.retrans += 1;
            sink.counters.tcp_retransmissions += 1;
            let trim = (-off) as u32;
            seq = seq.wrapping_add(trim);
            wire_len -= trim;
            data = data.get(trim as usize..).unwrap_or(&[]);
            off = 0;
        }
        if off == 0 {
            self.deliver(sink, seq, wire_len, data, src, ts_us);
            self.drain(sink);
            return;
        }
        // Ahead of a hole: buffer, unless a cap is reached.
        let len = data.len();
        if self.ooo.len() >= cfg.max_ooo_segments_per_direction
            || self.ooo_bytes + len > cfg.max_ooo_bytes_per_direction
            || *sink.ooo_total + len > cfg.max_ooo_bytes_total
        {
            sink.counters.tcp_ooo_overflows += 1;
            self.flush(sink);
            let off = seq_diff(seq, self.next_seq);
            if off + i64::from(wire_len) <= 0 {
                self.stats.retrans += 1;
                sink.counters.tcp_retransmissions += 1;
                return;
            }
            if off < 0 {
                let trim = (-off) as u32;
                seq = seq.wrapping_add(trim);
                wire_len -= trim;
                data = data.get(trim as usize..).unwrap_or(&[]);
            } else if off > 0 {
                self.declare_gap(sink, off as u64);
            }
            self.deliver(sink, seq, wire_len, data, src, ts_us);
            return;
        }
        // Exact duplicate of a buffered segment?
        if self
            .ooo
            .iter()
            .any(|s| s.seq == seq && s.wire_len >= wire_len && s.data.len() >= len)
        {
            self.stats.retrans += 1;
            sink.counters.tcp_retransmissions += 1;
            return;
        }
        self.stats.ooo += 1;
        sink.counters.tcp_out_of_order += 1;
        let next = self.next_seq;
        let at = self.ooo.partition_point(|s| seq_diff(s.seq, next) <= off);
        self.ooo.insert(
            at,
            OooSeg {
                seq,
                wire_len,
                data: Bytes::copy_from_slice(data),
                ts_us,
            },
        );
        self.ooo_bytes += len;
        *sink.ooo_total += len;
    }

    fn declare_gap(&mut self, sink: &mut Sink<'_>, n: u64) {
        self.pending_gap += n;
        self.stats.lost += n;
        sink.counters.tcp_lost_bytes += n;
        self.next_seq = self.next_seq.wrapping_add(n as u32);
    }

    fn deliver(
        &mut self,
        sink: &mut Sink<'_>,
        seq: u32,
        wire_len: u32,
        data: &[u8],
        src: Option<&Bytes>,
        ts_us: u64,
    ) {
        let data = &data[..data.len().min(wire_len as usize)];
        if !data.is_empty() {
            let bytes = match src {
                Some(b) => b.slice_ref(data),
                None => Bytes::copy_from_slice(data),
            };
            sink.counters.chunks += 1;
            sink.counters.chunk_bytes += data.len() as u64;
            sink.out.push(StreamEvent::Chunk(StreamChunk {
                flow_id: sink.flow_id,
                flow: sink.key,
                direction: sink.dir,
                time_us: ts_us,
                seq: Some(seq),
                gap_before: std::mem::take(&mut self.pending_gap),
                bytes,
                origin: ChunkOrigin::Packet,
            }));
        }
        let cut = u64::from(wire_len) - data.len() as u64;
        if cut > 0 {
            // Cut by the snap length: those bytes are a gap for parsers.
            self.pending_gap += cut;
            self.stats.lost += cut;
            sink.counters.tcp_lost_bytes += cut;
        }
        self.stats.payload += u64::from(wire_len);
        self.next_seq = seq.wrapping_add(wire_len);
    }

    /// Deliver buffered segments that became in order.
    fn drain(&mut self, sink: &mut Sink<'_>) {
        while let Some(first) = self.ooo.first() {
            let off = seq_diff(first.seq, self.next_seq);
            if off > 0 {
                break;
            }
            let seg = self.ooo.remove(0);
            self.ooo_bytes -= seg.data.len();
            *sink.ooo_total -= seg.data.len();
            if off + i64::from(seg.wire_len) <= 0 {
                self.stats.retrans += 1;
                sink.counters.tcp_retransmissions += 1;
                continue;
            }
            let trim = (-off) as u32;
            let data = seg.data.slice((trim as usize).min(seg.data.len())..);
            self.deliver(
                sink,
                seg.seq.wrapping_add(trim),
                seg.wire_len - trim,
                &data,
                Some(&data),
                seg.ts_us,
            );
        }
    }

    /// Note that the sender has used sequence numbers up to `end` (exclusive).
    pub(crate) fn saw_seq(&mut self, end: u32) {
        match self.highest {
            Some(h) if seq_diff(end, h) <= 0 => {}
            _ => self.highest = Some(end),
        }
    }

    /// A FIN at `seq` (the sequence number after the segment's data).
    pub(crate) fn on_fin(&mut self, seq: u32) {
        self.fin_seq.get_or_insert(seq);
    }

    /// At flow end, after [`TcpDir::flush`]: bytes the sender provably sent after the last delivered byte (the
    /// tail of the stream was lost; a later FIN or ACK's sequence number shows it) are counted as lost.
    pub(crate) fn account_tail_loss(&mut self, sink: &mut Sink<'_>) {
        // After a FIN the sender's ACKs carry FIN + 1: the FIN bounds the data.
        if let (true, Some(h)) = (self.started, self.fin_seq.or(self.highest)) {
            let missing = seq_diff(h, self.next_seq);
            if missing > 0 {
                self.stats.lost += missing as u64;
                sink.counters.tcp_lost_bytes += missing as u64;
                self.next_seq = h;
            }
        }
    }

    /// Declare every hole before buffered data lost and deliver all of it.
    pub(crate) fn flush(&mut self, sink: &mut Sink<'_>) {
        while let Some(first) = self.ooo.first() {
            let off = seq_diff(first.seq, self.next_seq);
            if off > 0 {
                self.declare_gap(sink, off as u64);
            }
            self.drain(sink);
        }
    }
}
