// Shared by the fuzz targets (included with `include!`): drive one parser through the Engine with the
// input cut into chunks, alternating directions, with occasional gaps; or drive its flow parser directly,
// checking the `parse` contract (consumed <= len, start <= end).
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{Engine, L7Parser, Limits, ParseCtx};
use std::sync::Arc;

#[allow(dead_code)]
fn drive(parser: Arc<dyn L7Parser>, l4: L4Protocol, data: &[u8]) {
    drive_on_port(parser, l4, 53, data)
}

/// The flow parser alone on `data` cut into 37-byte pieces of alternating directions, with a gap every 11
/// pieces; every `parse` result is checked against the contract.
#[allow(dead_code)]
fn parser_direct(parser: &dyn L7Parser, port_dst: u16, data: &[u8]) {
    let key = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits { max_depth: 8, max_message_len: 256, ..Limits::default() };
    let mut p = parser.new_flow(&key, &limits);
    let mut out = Vec::new();
    let mut offset = [0u64; 2];
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for (n, piece) in data.chunks(37).enumerate() {
        let dir = if n % 3 == 2 { Direction::ServerToClient } else { Direction::ClientToServer };
        let d = dir.index();
        if n % 11 == 10 {
            p.on_gap(dir, 5);
            offset[d] += 5 + pending[d].len() as u64;
            pending[d].clear();
        }
        pending[d].extend_from_slice(piece);
        let ctx = ParseCtx {
            direction: dir,
            flow: &key,
            stream_offset: offset[d],
            time_us: n as u64,
            limits: &limits,
            datagram: false,
        };
        match p.parse(&pending[d], &ctx, &mut out) {
            Ok(used) => {
                assert!(used <= pending[d].len());
                pending[d].drain(..used);
                offset[d] += used as u64;
            }
            Err(_) => {
                let lost = pending[d].len() as u64;
                offset[d] += lost;
                pending[d].clear();
                p.on_gap(dir, lost);
            }
        }
        for m in &out {
            assert!(m.start <= m.end);
        }
    }
    p.on_close(offset, &mut out);
}

#[allow(dead_code)]
fn drive_on_port(parser: Arc<dyn L7Parser>, l4: L4Protocol, port_dst: u16, data: &[u8]) {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let flow = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst,
        l4_protocol: l4,
    };
    let mut engine = Engine::new(vec![parser], Limits::default());
    let mut logs = Vec::new();
    let mut i = 0u64;
    while !rest.is_empty() {
        // Chunk header: 2 bytes of length, direction and gap from the control byte and the counter.
        let len = match rest {
            [a, b, ..] => (u16::from_le_bytes([*a, *b]) as usize % 1500) + 1,
            _ => rest.len(),
        };
        rest = rest.get(2..).unwrap_or_default();
        let take = len.min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        rest = tail;
        let dir = if (ctl >> (i % 8)) & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let gap = if ctl & 0x80 != 0 && i % 5 == 3 { 7 } else { 0 };
        let chunk = StreamChunk {
            flow_id: 1,
            flow,
            direction: dir,
            time_us: 1_000 + i,
            seq: None,
            gap_before: gap,
            bytes: bytes::Bytes::copy_from_slice(bytes),
            origin: ChunkOrigin::Packet,
        };
        engine.on_chunk(&chunk, &mut logs);
        i += 1;
    }
    engine.finish(&mut logs);
}
