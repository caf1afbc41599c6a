//! TLS handshakes (placeholder).
use crate::{FlowParser, L7Parser, Limits, Probe, ProbeInput};
use fathom_model::{FlowKey, L7Protocol};

/// The TLS protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsParser;

impl L7Parser for TlsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Tls
    }
    fn probe(&self, _input: &ProbeInput<'_>) -> Probe {
        Probe::No
    }
    fn new_flow(&self, _flow: &FlowKey, _limits: &Limits) -> Box<dyn FlowParser> {
        unimplemented!()
    }
}
