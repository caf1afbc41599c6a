#![no_main]
//! DNS: the message view and answer summary on raw bytes, then the Engine over UDP and TCP chunks.
use fathom_protocols::dns::{self, wire};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let _ = dns::probe(data, L4Protocol::Udp);
    let _ = dns::probe(data, L4Protocol::Tcp);
    if let Ok(m) = wire::Message::parse(data, dns::MAX_QUESTIONS) {
        let _ = dns::to_message(&m, fathom_model::Direction::ServerToClient, 0, 1, &Limits::default());
    }
    // The flow parser directly (no probe gate), TCP framing, both halves.
    let key = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 1,
        port_dst: 53,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits::default();
    let mut f = dns::DnsFlow::new(false);
    let mut out = Vec::new();
    let ctx = fathom_protocols::ParseCtx {
        direction: fathom_model::Direction::ClientToServer,
        flow: &key,
        stream_offset: 0,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    if let Ok(n) = fathom_protocols::FlowParser::parse(&mut f, data, &ctx, &mut out) {
        assert!(n <= data.len());
    }
    drive(Arc::new(dns::DnsParser), L4Protocol::Udp, data);
    drive(Arc::new(dns::DnsParser), L4Protocol::Tcp, data);
});
