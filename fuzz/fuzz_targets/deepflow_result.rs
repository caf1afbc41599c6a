#![no_main]
//! Arbitrary bytes into the DeepFlow-ABI result decoder (what a plugin hands `host_read_l7_protocol_info`):
//! the first byte picks the direction, the rest is the result. Never a panic; the decoder's caps hold.

use fathom_model::Direction;
use fathom_plugin_wasm::deepflow::result::{decode_result, MAX_ATTRIBUTES, MAX_FRAMES};
use fathom_plugin_wasm::MAX_FIELD_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&d, rest)) = data.split_first() else { return };
    let dir = if d & 1 == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    if let Ok(infos) = decode_result(rest, dir) {
        assert!(!infos.is_empty() && infos.len() <= MAX_FRAMES);
        for i in &infos {
            assert!(i.attributes.len() <= MAX_ATTRIBUTES);
            let l = &i.info;
            for s in [&l.request_type, &l.request_domain, &l.request_resource, &l.endpoint, &l.response_exception, &l.response_result, &l.trace_id].into_iter().flatten() {
                assert!(!s.is_empty() && s.len() <= MAX_FIELD_LEN);
            }
        }
    }
});
