//! MQTT: probe, then the flow parser over both directions with a split point and a gap.
#![no_main]
use fathom_model::{Direction, FlowKey, L4Protocol};
use fathom_protocols::{mqtt, L7Parser, Limits, ParseCtx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mqtt::probe(data);
    let flow = FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src: 40000,
        port_dst: 1883,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits { max_message_len: 256, ..Limits::default() };
    let mut f = mqtt::MqttParser.new_flow(&flow, &limits);
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut out = Vec::new();
    let mut offs = [0u64; 2];
    for (i, part) in [&data[..split], &data[split..], data].into_iter().enumerate() {
        let direction = if i == 1 { Direction::ServerToClient } else { Direction::ClientToServer };
        if i == 2 {
            f.on_gap(direction, 7);
            offs[0] += 7;
        }
        let d = direction.index();
        let ctx = ParseCtx { direction, flow: &flow, stream_offset: offs[d], time_us: 0, limits: &limits, datagram: false };
        if let Ok(n) = f.parse(part, &ctx, &mut out) {
            assert!(n <= part.len());
            offs[d] += n as u64;
        }
    }
    f.on_close(offs, &mut out);
});
