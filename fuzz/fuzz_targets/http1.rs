//! HTTP/1 entry points: probe, head parsers, and the flow parser through the engine (both directions,
//! arbitrary splits and gaps). The first input bytes choose the split points.
#![no_main]

use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::http1::{parse_request, parse_response, probe};
use fathom_protocols::tracectx::{extract, TraceConfig};
use fathom_protocols::util::url_endpoint;
use fathom_protocols::{Engine, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_headers: 16,
        max_message_len: 4096,
        max_field_len: 64,
        ..Limits::default()
    };
    let cfg = TraceConfig::default();
    let _ = probe(data);
    let _ = parse_request(data, &limits, &cfg);
    let _ = parse_response(data, &limits, &cfg);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = url_endpoint(s, 64);
    }
    let pairs: Vec<(&[u8], &[u8])> = data.chunks(16).map(|c| c.split_at(c.len() / 2)).collect();
    let _ = extract(&cfg, pairs);

    // Stream: control bytes pick, per piece, direction / gap / length.
    let Some((&ctl, rest)) = data.split_first() else { return };
    let flow = FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "10.0.0.2".parse().unwrap(),
        port_src: 40000,
        port_dst: 80,
        l4_protocol: L4Protocol::Tcp,
    };
    let mut engine = Engine::new(fathom_protocols::builtin_parsers(), limits);
    let mut logs = Vec::new();
    let mut i = 0usize;
    let mut k = ctl as usize;
    let mut t = 0u64;
    while i < rest.len() {
        k = k.wrapping_mul(31).wrapping_add(rest[i] as usize);
        let len = 1 + k % 97;
        let end = (i + len).min(rest.len());
        let dir = if k % 3 == 0 { Direction::ServerToClient } else { Direction::ClientToServer };
        let gap = if k % 29 == 0 { (k % 50) as u64 } else { 0 };
        t += 1;
        engine.on_chunk(
            &StreamChunk {
                flow_id: 1,
                flow,
                direction: dir,
                time_us: t,
                seq: None,
                gap_before: gap,
                bytes: bytes::Bytes::copy_from_slice(&rest[i..end]),
                origin: ChunkOrigin::Packet,
            },
            &mut logs,
        );
        i = end;
    }
    engine.finish(&mut logs);
    for l in &logs {
        assert!(l.end_time_us >= l.start_time_us);
    }
});
