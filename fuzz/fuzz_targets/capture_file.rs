//! Capture file bytes -> every stream event: never a panic, never a chunk after its flow's end, and a damaged
//! input always names an offset inside it.
#![no_main]

use fathom_capture::{Config, EventSource, FileSource, PacketCapture};
use fathom_model::StreamEvent;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let Ok(src) = FileSource::from_reader(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let config = Config {
        max_flows: 64,
        max_ooo_segments_per_direction: 8,
        max_frag_datagrams: 8,
        ..Config::default()
    };
    let mut cap = PacketCapture::new(src, config);
    let mut events = Vec::new();
    let mut ended = HashSet::new();
    loop {
        let r = cap.next_events(&mut events);
        for e in events.drain(..) {
            match e {
                StreamEvent::Chunk(c) => assert!(!ended.contains(&c.flow_id)),
                StreamEvent::FlowEnd(f) => assert!(ended.insert(f.flow_id)),
            }
        }
        match r {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if !cap_is_gzip(data) {
                    assert!(e.offset().unwrap_or(0) <= len);
                }
                break;
            }
        }
    }
});

fn cap_is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}
