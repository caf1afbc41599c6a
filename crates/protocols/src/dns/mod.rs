//! DNS over UDP (one message per datagram) and TCP (RFC 1035 §4.2.2: a 2-byte length before each message,
//! several messages per segment, messages split across segments).
//!
//! One log per query: the query (QR = 0) is a request and the response (QR = 1) answers it by DNS id
//! ([`Correlation::ById`]); within a flow (for UDP, one client port) ids pair queries with responses even
//! out of order. Fields:
//! - `request_type`: the QTYPE name (`A`, `AAAA`, `HTTPS`, ..., `TYPE<n>` for unnamed types, RFC 3597); for a
//!   message without a question (possible for some opcodes), the opcode name (`NOTIFY`, `UPDATE`, `OPCODE<n>`).
//!   NOTIFY and UPDATE messages carry a question (the zone, type SOA) and are logged like queries.
//! - `request_domain` and `request_resource`: the QNAME in presentation form without the trailing dot
//!   (`www.example.com`; the root is `.`; bytes outside printable ASCII escaped as `\DDD`; IDNs stay in
//!   their `xn--` wire form). `endpoint` stays null: query names are not low-cardinality.
//! - `request_id`: the DNS id. `response_code`: the RCODE, extended by the EDNS OPT record when present.
//! - `response_status`: `ok` for NOERROR, `client_error` for FORMERR (1) and NXDOMAIN (3), `server_error`
//!   otherwise; `response_exception`: the RCODE mnemonic (`NXDOMAIN`, `REFUSED`, `RCODE<n>`) when not NOERROR.
//! - `response_result`: the answer section in presentation form, `;`-separated, e.g.
//!   `CNAME tundra2.svc.test.;A 127.0.194.200`, preceded by `TC;` when the TC (truncated) bit is set, cut
//!   at [`Limits::max_field_len`]. Types without a short presentation appear by name only.
//!
//! A response without its query (capture started mid-exchange) is an orphan, counted by the engine; a
//! query without a response becomes a `timeout` log at the end of the flow.
//!
//! Why our own parser: the crates considered (`hickory-proto`, `domain`, `simple-dns`, `dns-parser`) decode
//! whole messages into owned or heavyweight structures; we need the header, the first question and a
//! summary of the answers from a borrowed buffer, with explicit bounds on pointers and labels. That is
//! about 300 lines ([`wire`]), panic-free by construction (every read goes through `get`).
//!
//! Validity contract: nothing here panics on any input; [`probe`] never allocates.

pub mod wire;

use crate::{
    util, Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx,
    ParseError, ParseErrorKind, Probe, ProbeInput, Transports,
};
use fathom_model::{Direction, FlowKey, L4Protocol, L7Protocol, ResponseStatus};
use wire::{Header, Rcode, RecordType, HEADER_LEN};

/// Most questions accepted in one message (real traffic has one).
pub const MAX_QUESTIONS: usize = 4;
/// Largest message over TCP (the 2-byte length caps it anyway).
pub const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// The DNS protocol: detection and per-flow parsers.
#[derive(Debug, Clone, Copy, Default)]
pub struct DnsParser;

impl L7Parser for DnsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Dns
    }

    fn default_ports(&self) -> &[u16] {
        &[53, 5353]
    }

    fn transports(&self) -> Transports {
        Transports::Both
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload, input.flow.l4_protocol)
    }

    fn new_flow(&self, flow: &FlowKey, _limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(DnsFlow::new(flow.l4_protocol == L4Protocol::Udp))
    }
}

/// Header sanity for detection and resynchronisation. `whole` is the length of the complete message when
/// known (UDP, or a complete TCP frame).
fn plausible_header(h: &Header, whole: Option<usize>) -> bool {
    let op = h.opcode().0;
    if op == 3 || op > 6 || h.flags & 0x0040 != 0 {
        return false; // unassigned opcode, or the Z bit set
    }
    if h.qdcount as usize > MAX_QUESTIONS || (h.qdcount == 0 && !h.is_response()) {
        return false;
    }
    if !h.is_response() {
        // A query carries no rcode; a standard query no answers or authority.
        if h.rcode().0 != 0 || (op == 0 && (h.ancount != 0 || h.nscount != 0)) || h.arcount > 4 {
            return false;
        }
    }
    match whole {
        // Each record needs at least 11 bytes; each question 5.
        Some(len) => {
            (h.record_count() as usize) * 11 + (h.qdcount as usize) * 5 <= len.saturating_sub(12)
        }
        None => true,
    }
}

/// Check a message's header and question. `Yes` when the whole question parsed with a known class,
/// `Maybe` when the bytes end before the question does, `No` otherwise.
fn probe_message(b: &[u8], whole: bool) -> Probe {
    let Some(h) = Header::parse(b) else {
        return Probe::Maybe;
    };
    if !plausible_header(&h, whole.then_some(b.len())) {
        return Probe::No;
    }
    if h.qdcount == 0 {
        return Probe::Maybe;
    }
    match wire::Message::parse(b, MAX_QUESTIONS) {
        Ok(m) => match m.question {
            Some(q) if matches!(q.qclass & 0x7fff, 1 | 3 | 4 | 254 | 255) => Probe::Yes,
            _ => Probe::No,
        },
        Err(_) if !whole => Probe::Maybe,
        Err(_) => Probe::No,
    }
}

/// Cheap detection of DNS at the start of a UDP datagram or of a TCP stream. Never allocates.
pub fn probe(payload: &[u8], l4: L4Protocol) -> Probe {
    match l4 {
        L4Protocol::Udp => {
            if payload.len() < HEADER_LEN {
                return Probe::No;
            }
            probe_message(payload, true)
        }
        _ => {
            let Some(lb) = payload.get(..2) else {
                return Probe::Maybe;
            };
            let len = u16::from_be_bytes([lb[0], lb[1]]) as usize;
            if len < HEADER_LEN + 5 {
                return Probe::No;
            }
            let rest = payload.get(2..).unwrap_or_default();
            match rest.get(..len) {
                Some(frame) => probe_message(frame, true),
                None => probe_message(rest, false),
            }
        }
    }
}

/// Where to restart after a gap in a TCP stream.
enum Resync {
    /// A valid frame starts at this offset.
    Found(usize),
    /// Nothing before this offset can start a frame; wait for more bytes from there.
    Wait(usize),
}

/// Find the first offset in `data` where a complete, valid frame (plausible header, one question) starts.
fn resync(data: &[u8]) -> Resync {
    let mut i = 0;
    while i + 2 + HEADER_LEN <= data.len() {
        let len = u16::from_be_bytes([data[i], data[i + 1]]) as usize;
        let hdr = data.get(i + 2..).and_then(Header::parse);
        let plausible = len >= HEADER_LEN + 5
            && hdr.is_some_and(|h| h.qdcount == 1 && plausible_header(&h, None));
        if plausible {
            match data.get(i + 2..i + 2 + len) {
                Some(frame) => {
                    if probe_message(frame, true) == Probe::Yes {
                        return Resync::Found(i);
                    }
                }
                None => return Resync::Wait(i),
            }
        }
        i += 1;
    }
    Resync::Wait(i)
}

/// Per-flow DNS state: only whether each TCP direction must resynchronise after a gap.
#[derive(Debug, Clone)]
pub struct DnsFlow {
    datagram: bool,
    resync: [bool; 2],
}

impl DnsFlow {
    /// State for a UDP (`datagram`) or TCP flow.
    pub fn new(datagram: bool) -> DnsFlow {
        DnsFlow {
            datagram,
            resync: [false; 2],
        }
    }
}

/// Build the [`Message`] for one parsed DNS message spanning `start..end` of the stream.
pub fn to_message(
    m: &wire::Message<'_>,
    direction: Direction,
    start: u64,
    end: u64,
    limits: &Limits,
) -> Message {
    let h = m.header;
    let mut info = LogInfo {
        request_id: Some(u64::from(h.id)),
        ..LogInfo::default()
    };
    match m.question {
        Some(q) => {
            let name = q.name.to_text();
            info.request_type = Some(q.qtype.name());
            info.request_resource = Some(util::truncate(&name, limits.max_field_len).to_string());
            info.request_domain = info.request_resource.clone();
        }
        None => {
            info.request_type = Some(match h.opcode().as_str() {
                Some(s) => s.to_string(),
                None => format!("OPCODE{}", h.opcode().0),
            });
        }
    }
    let kind = if h.is_response() {
        let (result, rcode) = summarize(m, limits);
        info.response_code = Some(i64::from(rcode.0));
        info.response_status = Some(match rcode.0 {
            0 => ResponseStatus::Ok,
            _ if rcode.is_client_error() => ResponseStatus::ClientError,
            _ => ResponseStatus::ServerError,
        });
        if rcode.0 != 0 {
            info.response_exception = Some(match rcode.as_str() {
                Some(s) => s.to_string(),
                None => format!("RCODE{}", rcode.0),
            });
        }
        info.response_result = result;
        MessageKind::Response
    } else {
        MessageKind::Request
    };
    Message::new(
        direction,
        kind,
        Correlation::ById(u64::from(h.id)),
        start,
        end,
    )
    .with_info(info)
}

/// The answer summary (see the module docs) and the full rcode (EDNS-extended).
fn summarize(m: &wire::Message<'_>, limits: &Limits) -> (Option<String>, Rcode) {
    let mut s = String::new();
    let mut ext = 0u16;
    if m.header.truncated() {
        s.push_str("TC");
    }
    let max = limits.max_field_len;
    for (section, r) in m.records().take(limits.max_headers.max(1)) {
        if section == 0 && s.len() <= max {
            if !s.is_empty() {
                s.push(';');
            }
            wire::write_record(&mut s, m.bytes(), &r);
        } else if section == 2 && r.rtype == RecordType::OPT {
            ext = (r.ttl >> 24) as u16;
        }
    }
    let rcode = Rcode((ext << 4) | m.header.rcode().0);
    if s.is_empty() {
        return (None, rcode);
    }
    let cut = util::truncate(&s, max).len();
    s.truncate(cut);
    (Some(s), rcode)
}

impl FlowParser for DnsFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        if self.datagram || ctx.datagram {
            if data.is_empty() {
                return Ok(0);
            }
            let m = wire::Message::parse(data, MAX_QUESTIONS)?;
            out.push(to_message(
                &m,
                ctx.direction,
                ctx.pos(0),
                ctx.pos(data.len()),
                ctx.limits,
            ));
            return Ok(data.len());
        }
        let d = ctx.direction.index();
        let mut pos = 0;
        if self.resync[d] {
            match resync(data) {
                Resync::Found(i) => {
                    self.resync[d] = false;
                    pos = i;
                }
                Resync::Wait(i) => return Ok(i),
            }
        }
        while let Some(lb) = data.get(pos..pos + 2) {
            let len = u16::from_be_bytes([lb[0], lb[1]]) as usize;
            if len < HEADER_LEN {
                return Err(ParseError::new(ParseErrorKind::Invalid, pos));
            }
            if len > ctx.limits.max_message_len {
                return Err(ParseError::new(ParseErrorKind::TooLarge, pos));
            }
            let Some(frame) = data.get(pos + 2..pos + 2 + len) else {
                break;
            };
            match wire::Message::parse(frame, MAX_QUESTIONS) {
                Ok(m) => out.push(to_message(
                    &m,
                    ctx.direction,
                    ctx.pos(pos),
                    ctx.pos(pos + 2 + len),
                    ctx.limits,
                )),
                // Report the bad frame on its own: whole messages before it are kept.
                Err(e) if pos == 0 => return Err(e),
                Err(_) => break,
            }
            pos += 2 + len;
        }
        Ok(pos)
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        if !self.datagram {
            self.resync[direction.index()] = true;
        }
    }
}

#[cfg(test)]
mod tests;
