#![no_main]
//! redis: the probe and one flow parser on raw bytes (both directions, pieces, gaps), then the Engine with
//! the input cut into chunks of alternating directions.
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::redis::{self, RedisParser};
use fathom_protocols::{Engine, L7Parser, Limits, ParseCtx};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fn flow() -> FlowKey {
    FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst: 6379,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn parser_direct(data: &[u8]) {
    let key = flow();
    let limits = Limits { max_depth: 8, max_message_len: 256, ..Limits::default() };
    let mut p = RedisParser.new_flow(&key, &limits);
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
                offset[d] += pending[d].len() as u64;
                let lost = pending[d].len() as u64;
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

fn engine(data: &[u8]) {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let mut engine = Engine::new(vec![Arc::new(RedisParser) as Arc<dyn L7Parser>], Limits::default());
    let mut logs = Vec::new();
    let mut i = 0u64;
    while !rest.is_empty() {
        let len = match rest {
            [a, b, ..] => (u16::from_le_bytes([*a, *b]) as usize % 1500) + 1,
            _ => rest.len(),
        };
        rest = rest.get(2..).unwrap_or_default();
        let (bytes, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let dir = if (ctl >> (i % 7)) & 1 == 0 { Direction::ClientToServer } else { Direction::ServerToClient };
        let chunk = StreamChunk {
            flow_id: 1,
            flow: flow(),
            direction: dir,
            time_us: 1_000 + i,
            seq: None,
            gap_before: if ctl & 0x80 != 0 && i % 5 == 3 { 7 } else { 0 },
            bytes: bytes::Bytes::copy_from_slice(bytes),
            origin: ChunkOrigin::Packet,
        };
        engine.on_chunk(&chunk, &mut logs);
        i += 1;
    }
    engine.finish(&mut logs);
}

fuzz_target!(|data: &[u8]| {
    let _ = redis::probe(data, Direction::ClientToServer);
    let _ = redis::probe(data, Direction::ServerToClient);
    parser_direct(data);
    engine(data);
});
