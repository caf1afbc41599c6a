//! HTTP/2 and gRPC: frames and HPACK through the session engine, plus the HPACK decoder and probe alone.
//!
//! Input layout: byte 0 selects options (bit 0: start the client stream with the connection preface, so that
//! HPACK decodes with a known dynamic table); then records of `[control][len][len bytes]`, where control bit 0
//! is the direction and bit 1 inserts a gap before the record.
#![no_main]

use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::http2::{frame, hpack::HpackState, probe, Http2Parser};
use fathom_protocols::{Engine, Limits};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let _ = probe(data);
    let _ = frame::find_sync(data, 1 << 20);
    let mut sink = |_: &[u8], _: &[u8]| {};
    let _ = HpackState::unknown().decode(data, &mut sink);
    let mut known = HpackState::known();
    for part in data.split(|b| *b == 0xff) {
        let _ = known.decode(part, &mut sink);
    }

    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let flow = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst: 50051,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits {
        max_message_len: 4096,
        max_exchanges_in_flight: 8,
        ..Limits::default()
    };
    let mut engine = Engine::new(vec![Arc::new(Http2Parser)], limits);
    let mut logs = Vec::new();
    let mut t = 1_000u64;
    let mut send = |dir: Direction, gap: u64, bytes: &[u8], logs: &mut Vec<_>| {
        t += 10;
        engine.on_chunk(
            &StreamChunk {
                flow_id: 1,
                flow,
                direction: dir,
                time_us: t,
                seq: Some(1),
                gap_before: gap,
                bytes: bytes::Bytes::copy_from_slice(bytes),
                origin: ChunkOrigin::Packet,
            },
            logs,
        );
    };
    if opts & 1 != 0 {
        send(Direction::ClientToServer, 0, frame::PREFACE, &mut logs);
    }
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let dir = if ctl & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let gap = u64::from((ctl >> 1) & 1) * 7;
        send(dir, gap, &tail[..n], &mut logs);
        rest = &tail[n..];
    }
    engine.finish(&mut logs);
});
