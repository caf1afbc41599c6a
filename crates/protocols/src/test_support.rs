//! Shared by the protocols' unit tests: drive one parser through an [`Engine`] over captured segments.

use crate::{Engine, EngineStats, L7Parser, Limits};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, StreamChunk};
use std::sync::Arc;

/// A loopback TCP flow from `port_src` to `port_dst`.
pub(crate) fn tcp_flow(port_src: u16, port_dst: u16) -> FlowKey {
    FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src,
        port_dst,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// One chunk of `flow` (flow id 1) from the client (`client`) or the server.
pub(crate) fn chunk(flow: FlowKey, client: bool, t: u64, bytes: &[u8], gap: u64) -> StreamChunk {
    StreamChunk {
        flow_id: 1,
        flow,
        direction: if client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        },
        time_us: t,
        seq: None,
        gap_before: gap,
        bytes: bytes::Bytes::copy_from_slice(bytes),
        origin: ChunkOrigin::Packet,
    }
}

/// Feed `(from client, bytes)` segments, 10 µs apart, through an engine holding only `parser`; each segment
/// longer than `split` is fed in two chunks cut there.
pub(crate) fn run_split(
    parser: Arc<dyn L7Parser>,
    flow: FlowKey,
    segs: &[(bool, &[u8])],
    split: Option<usize>,
) -> (Vec<RequestLog>, EngineStats) {
    let mut e = Engine::new(vec![parser], Limits::default());
    let mut logs = Vec::new();
    for (i, (c, b)) in segs.iter().enumerate() {
        let t = 1_000 + i as u64 * 10;
        match split {
            Some(k) if k < b.len() => {
                e.on_chunk(&chunk(flow, *c, t, &b[..k], 0), &mut logs);
                e.on_chunk(&chunk(flow, *c, t, &b[k..], 0), &mut logs);
            }
            _ => e.on_chunk(&chunk(flow, *c, t, b, 0), &mut logs),
        }
    }
    e.finish(&mut logs);
    (logs, e.stats().clone())
}
