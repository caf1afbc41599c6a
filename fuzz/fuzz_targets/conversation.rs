//! Shared by the SQL fuzz targets: turn fuzz input into a two-way conversation and run one parser on it,
//! directly (every `parse` contract checked) and through the `Engine` (detection, gaps, pairing).

use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{Engine, L7Parser, Limits, ParseCtx};
use std::sync::Arc;

/// Input layout: repeated `[control byte][len byte][len bytes]`; control bit 0 = direction, bit 1 = gap before.
pub fn run(parser: Arc<dyn L7Parser>, data: &[u8]) {
    let flow = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst: 5000,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits::default();
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        let _ = parser.probe(&fathom_protocols::ProbeInput {
            payload: data,
            direction: dir,
            flow: &flow,
        });
    }
    // Direct: the FlowParser alone, with the engine's buffering contract.
    let mut fp = parser.new_flow(&flow, &limits);
    let mut bufs: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut offs = [0u64; 2];
    let mut out = Vec::new();
    let mut chunks = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let ctl = data[i];
        let len = data[i + 1] as usize;
        let body = &data[(i + 2).min(data.len())..(i + 2 + len).min(data.len())];
        i += 2 + len;
        let dir = if ctl & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        chunks.push((dir, ctl & 2 != 0, body));
    }
    for (dir, gap, body) in &chunks {
        let d = dir.index();
        if *gap {
            offs[d] += bufs[d].len() as u64 + 7;
            bufs[d].clear();
            fp.on_gap(*dir, 7);
        }
        bufs[d].extend_from_slice(body);
        let ctx = ParseCtx {
            direction: *dir,
            flow: &flow,
            stream_offset: offs[d],
            time_us: 0,
            limits: &limits,
            datagram: false,
        };
        match fp.parse(&bufs[d], &ctx, &mut out) {
            Ok(n) => {
                assert!(n <= bufs[d].len());
                bufs[d].drain(..n);
                offs[d] += n as u64;
            }
            Err(_) => {
                offs[d] += bufs[d].len() as u64;
                bufs[d].clear();
                fp.on_gap(*dir, 0);
            }
        }
        for m in &out {
            assert!(m.start <= m.end);
        }
        out.clear();
    }
    fp.on_close(offs, &mut out);
    // Through the engine.
    let mut engine = Engine::new(vec![parser], limits.clone());
    let mut logs = Vec::new();
    for (k, (dir, gap, body)) in chunks.iter().enumerate() {
        engine.on_chunk(
            &StreamChunk {
                flow_id: 1,
                flow,
                direction: *dir,
                time_us: k as u64,
                seq: None,
                gap_before: if *gap { 7 } else { 0 },
                bytes: bytes::Bytes::copy_from_slice(body),
                origin: ChunkOrigin::Packet,
            },
            &mut logs,
        );
    }
    engine.finish(&mut logs);
}
