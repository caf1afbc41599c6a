#![no_main]
//! TLS: probe and the certificate walker on raw bytes, then the Engine over TCP chunks.
use fathom_protocols::tls;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let _ = tls::probe(data);
    let _ = tls::x509::summarize(data);
    let _ = tls::ServerHello::parse(data);
    let key = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 1,
        port_dst: 443,
        l4_protocol: L4Protocol::Tcp,
    };
    let limits = Limits::default();
    let mut f = tls::TlsFlow::new(&limits);
    let mut out = Vec::new();
    for direction in [Direction::ClientToServer, Direction::ServerToClient] {
        let ctx = fathom_protocols::ParseCtx {
            direction,
            flow: &key,
            stream_offset: 0,
            time_us: 0,
            limits: &limits,
            datagram: false,
        };
        if let Ok(n) = fathom_protocols::FlowParser::parse(&mut f, data, &ctx, &mut out) {
            assert!(n <= data.len());
        }
    }
    fathom_protocols::FlowParser::on_close(&mut f, [0, 0], &mut out);
    drive(Arc::new(tls::TlsParser), L4Protocol::Tcp, data);
});
