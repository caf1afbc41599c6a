//! Arbitrary bytes through the FRPC plugin: no panic, consumed <= len, no sandbox failure.

mod common;

use common::{flow, frpc_ok, frpc_request};
use fathom_model::Direction;
use fathom_plugin_wasm::{PluginConfig, PluginHost};
use fathom_protocols::{L7Parser, Limits, ParseCtx, ProbeInput};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), prefix in any::<bool>(), gap in any::<bool>()) {
        let host = PluginHost::new(PluginConfig::default()).unwrap();
        let plugin = host.load("frpc", frpc_ok().as_bytes()).unwrap();
        let mut bytes = if prefix { frpc_request(9, "M") } else { Vec::new() };
        bytes.extend(&data);
        let f = flow(40000, 7000);
        let _ = plugin.probe(&ProbeInput { payload: &bytes, direction: Direction::ClientToServer, flow: &f });
        let limits = Limits::default();
        let mut parser = plugin.new_flow(&f, &limits);
        if gap {
            parser.on_gap(Direction::ClientToServer, 10);
        }
        let ctx = ParseCtx {
            direction: Direction::ClientToServer,
            flow: &f,
            stream_offset: 0,
            time_us: 0,
            limits: &limits,
            datagram: false,
        };
        let mut out = Vec::new();
        if let Ok(n) = parser.parse(&bytes, &ctx, &mut out) {
            prop_assert!(n <= bytes.len());
            for m in &out {
                prop_assert!(m.start < m.end && m.end <= n as u64);
            }
        }
        prop_assert_eq!(plugin.stats().failures(), 0);
    }
}
