#![no_main]
//! kafka: the probe and one flow parser on raw bytes (both directions, pieces, gaps), then the Engine with
//! the input cut into chunks of alternating directions.
use fathom_protocols::kafka::{self, KafkaParser};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let _ = kafka::probe(data, Direction::ClientToServer);
    let _ = kafka::probe(data, Direction::ServerToClient);
    parser_direct(&KafkaParser, 9092, data);
    drive_on_port(Arc::new(KafkaParser), L4Protocol::Tcp, 9092, data);
});
