// Shared by the fuzz targets (included with `include!`): drive one parser through the Engine with the
// input cut into chunks, alternating directions, with occasional gaps.
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{Engine, L7Parser, Limits};
use std::sync::Arc;

#[allow(dead_code)]
fn drive(parser: Arc<dyn L7Parser>, l4: L4Protocol, data: &[u8]) {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let flow = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst: 53,
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
