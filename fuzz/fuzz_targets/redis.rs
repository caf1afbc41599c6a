#![no_main]
//! redis: the probe and one flow parser on raw bytes (both directions, pieces, gaps), then the Engine with
//! the input cut into chunks of alternating directions.
use fathom_protocols::redis::{self, RedisParser};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let _ = redis::probe(data, Direction::ClientToServer);
    let _ = redis::probe(data, Direction::ServerToClient);
    parser_direct(&RedisParser, 6379, data);
    drive_on_port(Arc::new(RedisParser), L4Protocol::Tcp, 6379, data);
});
