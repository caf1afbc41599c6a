//! MQTT 3.1, 3.1.1 and 5.0 over TCP.
//!
//! What one log is (design.md, "Per-protocol conventions"): CONNECT/CONNACK, SUBSCRIBE/SUBACK,
//! UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, PUBLISH QoS 1/PUBACK, PUBLISH QoS 2/PUBREC and PUBREL/PUBCOMP are
//! pairs; PUBLISH QoS 0 and DISCONNECT are one-way. Broker-to-subscriber PUBLISHes are logged like the
//! client's (the flow keeps its client → server orientation; the request simply travels server → client).
//! AUTH packets are protocol events (counted, not logged).
//!
//! Pairing: the engine's [`crate::ExchangeTable`] matches a response with a pending request of the
//! opposite direction carrying the same [`Correlation::ById`] key. Each pair kind has its own key space,
//! `kind << 16 | packet id`, so a PUBACK never answers a QoS 2 PUBLISH or a SUBSCRIBE with the same id, and
//! the client's and the broker's packet ids never mix (direction is part of the match).
//!
//! Fields: `request_type` = the request's packet name; PUBLISH: `request_resource` = `endpoint` = topic;
//! SUBSCRIBE/UNSUBSCRIBE: the topic filters joined with `,`; CONNECT: `request_domain` = client id;
//! `request_id` = packet id; `version` = `3.1`, `3.1.1` or `5` from the flow's CONNECT.
//! `response_code`: CONNACK's return / reason code (non-zero: `client_error`) and SUBACK's outcome (0 when
//! every subscription was granted, else the first failure code ≥ 0x80: `client_error`); MQTT 5 acks
//! (PUBACK, PUBREC, PUBCOMP, UNSUBACK) and DISCONNECT report their reason code only when it is a failure
//! (≥ 0x80), as granted-QoS values and implicit successes are not error codes.
//!
//! Detection without CONNECT: the probe accepts a CONNECT, or a run of at least two well-formed packets
//! (type/flag combinations per the specification, remaining length consistent with the content, UTF-8
//! topics), so a capture that starts mid-session is still recognised. After a gap (or at the start of a
//! direction that was not probed) the parser resynchronises on the same evidence before emitting anything.
//!
//! Version without CONNECT: it stays unknown (`version` null) until a packet proves it: a CONNACK,
//! PUBACK/PUBREC/PUBREL/PUBCOMP or DISCONNECT longer than its 3.1.1 size can only be MQTT 5. PUBLISH reads the
//! same in every version (properties come after the fields we log); for SUBSCRIBE, SUBACK, UNSUBSCRIBE and
//! UNSUBACK of an unknown version the 3.1.1 framing is tried first, then the MQTT 5 one.
//!
//! MQTT 5 PUBLISH properties (known-v5 flows only): a Topic Alias is remembered per direction (at most
//! [`MAX_ALIASES`]) so a later PUBLISH with an empty topic still gets its topic; a `traceparent` user property
//! (W3C "Trace Context: MQTT") fills `trace_id` / `span_id`, an `x-request-id` one `x_request_id`.
//!
//! Large PUBLISH payloads are not buffered: once the head (topic, packet id) is read, the rest is skipped
//! and the message is emitted when its last byte passes. Other packets longer than
//! [`Limits::max_message_len`] are `TooLarge` errors.

pub mod wire;

use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use wire::{FixedHeader, Packet, PacketType, Version};

/// The MQTT protocol parser (registered once, shared by all flows).
#[derive(Debug, Default, Clone)]
pub struct MqttParser;

/// Offsets scanned for a packet boundary by [`probe`] when the payload does not start with one.
const PROBE_SCAN: usize = 256;
/// Offsets scanned per `parse` call while resynchronising.
const RESYNC_SCAN: usize = 4096;

/// Cheap detection on the first payload of a flow direction.
///
/// `Yes` for a well-formed CONNECT or two or more well-formed packets in a row from the first byte, or
/// three in a row (one of them strong evidence) from a later offset; `Maybe` for a single plausible
/// packet; `No` otherwise.
pub fn probe(payload: &[u8]) -> Probe {
    // A CONNECT, even incomplete, is recognised by its protocol name and level.
    if let Ok(Some(h)) = wire::fixed_header(payload) {
        if h.ptype == PacketType::CONNECT {
            let vh = payload.get(h.header_len..).unwrap_or_default();
            let names: [&[u8]; 3] = [
                b"\x00\x04MQTT\x04",
                b"\x00\x04MQTT\x05",
                b"\x00\x06MQIsdp\x03",
            ];
            for name in names {
                if vh.len() >= name.len() && vh.starts_with(name) {
                    return Probe::Yes;
                }
                if name.starts_with(vh) {
                    return Probe::Maybe;
                }
            }
            return Probe::No;
        }
    }
    let c = wire::chain(payload, None, 3, usize::MAX);
    if c.connect || c.packets >= 2 {
        return Probe::Yes;
    }
    if c.packets == 1 && (c.at_end || c.partial) && c.strong {
        return Probe::Maybe;
    }
    if c.packets == 0 && c.partial && payload.len() >= 2 {
        return Probe::Maybe;
    }
    let mut maybe = false;
    for i in 1..payload.len().min(PROBE_SCAN) {
        let rest = payload.get(i..).unwrap_or_default();
        let c = wire::chain(rest, None, 3, usize::MAX);
        if c.packets >= 3 && c.strong {
            return Probe::Yes;
        }
        maybe |= c.packets >= 2 && c.strong;
    }
    if maybe {
        Probe::Maybe
    } else {
        Probe::No
    }
}

impl L7Parser for MqttParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Mqtt
    }

    fn default_ports(&self) -> &[u16] {
        &[1883]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(MqttFlow::new(limits))
    }
}

/// Per-direction synchronisation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// At a packet boundary.
    Synced,
    /// The first bytes of a direction: accept a single well-formed packet at offset 0, else resynchronise.
    Start,
    /// After a gap: look for a run of well-formed packets before trusting a boundary.
    Lost,
}

#[derive(Debug)]
struct DirState {
    sync: Sync,
    /// Payload bytes of the current (large) PUBLISH still to skip.
    skip: u64,
    /// The large PUBLISH being skipped, emitted when its last byte passes.
    pending: Option<Message>,
    /// MQTT 5 topic aliases set by this direction's PUBLISHes (alias → topic), at most [`MAX_ALIASES`].
    aliases: Vec<(u16, String)>,
}

/// Most MQTT 5 topic aliases remembered per direction (the oldest is forgotten first).
pub const MAX_ALIASES: usize = 64;

impl DirState {
    /// The topic of a PUBLISH: its own, or the one its MQTT 5 topic alias stands for. A PUBLISH with both
    /// sets the alias.
    fn topic_alias(&mut self, topic: &str, alias: Option<u16>, max: usize) -> Option<String> {
        let t = crate::util::truncate(topic, max);
        match (t.is_empty(), alias) {
            (false, Some(a)) => {
                self.aliases.retain(|(x, _)| *x != a);
                if self.aliases.len() >= MAX_ALIASES {
                    self.aliases.remove(0);
                }
                self.aliases.push((a, t.to_string()));
                Some(t.to_string())
            }
            (false, None) => Some(t.to_string()),
            (true, Some(a)) => self
                .aliases
                .iter()
                .find(|(x, _)| *x == a)
                .map(|(_, t)| t.clone()),
            (true, None) => None,
        }
    }
}

/// W3C trace context carried as MQTT 5 user properties (`traceparent`), as the W3C "Trace Context: MQTT"
/// note recommends.
fn trace_property(k: &str, v: &str, max: usize, info: &mut LogInfo) {
    if k.eq_ignore_ascii_case("traceparent") {
        let mut parts = v.split('-');
        if let (Some(_), Some(t), Some(s)) = (parts.next(), parts.next(), parts.next()) {
            info.trace_id = Some(crate::util::truncate(t, max).to_string());
            info.span_id = Some(crate::util::truncate(s, max).to_string());
        }
    } else if k.eq_ignore_ascii_case("x-request-id") {
        info.x_request_id = Some(crate::util::truncate(v, max).to_string());
    }
}

/// Per-flow MQTT state: the version (from CONNECT, or inferred) and each direction's position.
#[derive(Debug)]
pub struct MqttFlow {
    version: Option<Version>,
    dirs: [DirState; 2],
    max_field_len: usize,
}

/// Pair kinds, each its own correlation key space.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum Kind {
    Connect = 1,
    Ping = 2,
    Publish1 = 3,
    Publish2 = 4,
    Release = 5,
    Subscribe = 6,
    Unsubscribe = 7,
}

const fn key(kind: Kind, packet_id: u16) -> Correlation {
    Correlation::ById(((kind as u64) << 16) | packet_id as u64)
}

impl MqttFlow {
    /// Fresh state for a new flow.
    pub fn new(limits: &Limits) -> MqttFlow {
        let d = || DirState {
            sync: Sync::Start,
            skip: 0,
            pending: None,
            aliases: Vec::new(),
        };
        MqttFlow {
            version: None,
            dirs: [d(), d()],
            max_field_len: limits.max_field_len,
        }
    }

    /// The version known for this flow.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Find where to (re)start parsing: `Ok(offset)` of a trusted packet boundary, or `Err(consumed)` when
    /// no boundary is known yet (`consumed` bytes can be dropped).
    fn resync(&self, data: &[u8], start: bool, max_len: usize) -> Result<usize, usize> {
        let n = data.len().min(RESYNC_SCAN);
        let mut first_partial = None;
        for i in 0..n {
            let rest = data.get(i..).unwrap_or_default();
            let c = wire::chain(rest, self.version, 2, max_len);
            if c.packets >= 2 || c.connect {
                return Ok(i);
            }
            let first = start && i == 0;
            if c.packets == 1 && c.at_end && (c.strong || first) {
                return Ok(i);
            }
            if c.packets == 0 && c.big_publish {
                return Ok(i);
            }
            if c.partial && first_partial.is_none() {
                if first {
                    // The first bytes of a direction look like a packet: wait for the rest.
                    return Err(0);
                }
                first_partial = Some(i);
            }
        }
        // No confirmed boundary: keep the bytes from the first place that may still become one.
        Err(first_partial.unwrap_or(n))
    }

    fn info(&self, ptype: PacketType) -> LogInfo {
        LogInfo {
            version: self.version.map(|v| v.as_str().to_string()),
            request_type: Some(ptype.as_str().to_string()),
            ..LogInfo::default()
        }
    }

    /// Build the message for one decoded packet spanning `start..end`.
    fn message(&mut self, d: Direction, p: &Packet<'_>, start: u64, end: u64) -> Message {
        use MessageKind::*;
        let max = self.max_field_len;
        let (kind, corr, info) = match *p {
            Packet::Connect { version, client_id } => {
                self.version = Some(version);
                let mut info = self.info(PacketType::CONNECT);
                if !client_id.is_empty() {
                    info.request_domain = Some(crate::util::truncate(client_id, max).to_string());
                }
                (Request, key(Kind::Connect, 0), info)
            }
            Packet::Connack { code, v5 } => {
                if v5 && self.version.is_none() {
                    self.version = Some(Version::V5);
                }
                let v5 = self.version == Some(Version::V5);
                let info = LogInfo {
                    response_code: Some(code as i64),
                    response_status: Some(if code == 0 {
                        ResponseStatus::Ok
                    } else {
                        ResponseStatus::ClientError
                    }),
                    response_exception: (code != 0).then(|| connack_reason(code, v5).to_string()),
                    ..LogInfo::default()
                };
                (Response, key(Kind::Connect, 0), info)
            }
            Packet::Publish {
                qos,
                topic,
                packet_id,
                props,
            } => {
                let mut info = self.info(PacketType::PUBLISH);
                let mut alias = None;
                for p in wire::properties(props).flatten() {
                    match p {
                        wire::Property::Int(wire::prop::TOPIC_ALIAS, a) => alias = Some(a as u16),
                        wire::Property::User(k, v) => trace_property(k, v, max, &mut info),
                        _ => {}
                    }
                }
                let topic = self.dirs[d.index()].topic_alias(topic, alias, max);
                if let Some(t) = topic {
                    info.endpoint = Some(t.clone());
                    info.request_resource = Some(t);
                }
                info.request_id = packet_id.map(u64::from);
                let pid = packet_id.unwrap_or(0);
                match qos {
                    0 => (OneWay, Correlation::Unpaired, info),
                    1 => (Request, key(Kind::Publish1, pid), info),
                    _ => (Request, key(Kind::Publish2, pid), info),
                }
            }
            Packet::PubAck {
                ptype,
                packet_id,
                reason,
            } => {
                if reason.is_some() && self.version.is_none() {
                    self.version = Some(Version::V5);
                }
                if ptype == PacketType::PUBREL {
                    let mut info = self.info(PacketType::PUBREL);
                    info.request_id = Some(packet_id as u64);
                    (Request, key(Kind::Release, packet_id), info)
                } else {
                    let kind = match ptype.0 {
                        4 => Kind::Publish1,
                        5 => Kind::Publish2,
                        _ => Kind::Release,
                    };
                    (Response, key(kind, packet_id), failure_info(reason))
                }
            }
            Packet::Subscribe {
                ptype,
                packet_id,
                filters,
                with_options,
                v5,
            } => {
                if v5 && self.version.is_none() {
                    self.version = Some(Version::V5);
                }
                let mut info = self.info(ptype);
                let mut joined = String::new();
                for (f, _) in wire::topic_filters(filters, with_options).flatten() {
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(f);
                    if joined.len() >= max {
                        break;
                    }
                }
                let joined = crate::util::truncate(&joined, max).to_string();
                info.endpoint = Some(joined.clone());
                info.request_resource = Some(joined);
                info.request_id = Some(packet_id as u64);
                let kind = if ptype == PacketType::SUBSCRIBE {
                    Kind::Subscribe
                } else {
                    Kind::Unsubscribe
                };
                (Request, key(kind, packet_id), info)
            }
            Packet::SubAck {
                ptype,
                packet_id,
                codes,
            } => {
                let failure = codes.iter().copied().find(|&c| c >= 0x80);
                if ptype == PacketType::SUBACK {
                    let code = failure.unwrap_or(0);
                    let info = LogInfo {
                        response_code: Some(code as i64),
                        response_status: Some(if failure.is_some() {
                            ResponseStatus::ClientError
                        } else {
                            ResponseStatus::Ok
                        }),
                        response_exception: failure.map(|c| reason_name(c).to_string()),
                        ..LogInfo::default()
                    };
                    (Response, key(Kind::Subscribe, packet_id), info)
                } else {
                    (
                        Response,
                        key(Kind::Unsubscribe, packet_id),
                        failure_info(failure),
                    )
                }
            }
            Packet::PingReq => (Request, key(Kind::Ping, 0), self.info(PacketType::PINGREQ)),
            Packet::PingResp => (Response, key(Kind::Ping, 0), LogInfo::default()),
            Packet::Disconnect { reason } => {
                if reason.is_some() && self.version.is_none() {
                    self.version = Some(Version::V5);
                }
                let mut info = self.info(PacketType::DISCONNECT);
                info.fill_from(failure_info(reason));
                (OneWay, Correlation::Unpaired, info)
            }
            Packet::Auth { .. } => (Event, Correlation::Unpaired, LogInfo::default()),
        };
        Message::new(d, kind, corr, start, end).with_info(info)
    }
}

/// Response fields for an MQTT 5 reason code that may signal a failure (≥ 0x80); successes carry nothing.
fn failure_info(reason: Option<u8>) -> LogInfo {
    match reason {
        Some(r) if r >= 0x80 => LogInfo {
            response_code: Some(r as i64),
            response_status: Some(reason_status(r)),
            response_exception: Some(reason_name(r).to_string()),
            ..LogInfo::default()
        },
        _ => LogInfo::default(),
    }
}

/// Status class of an MQTT 5 failure reason code: the server's own trouble is `server_error`, a refused
/// request `client_error`.
const fn reason_status(r: u8) -> ResponseStatus {
    match r {
        0x80 | 0x83 | 0x88 | 0x89 | 0x8b | 0x97 | 0x9f => ResponseStatus::ServerError,
        _ => ResponseStatus::ClientError,
    }
}

/// MQTT 3.1/3.1.1 CONNACK return codes (3.1.1 §3.2.2.3) or MQTT 5 reason codes.
const fn connack_reason(code: u8, v5: bool) -> &'static str {
    if v5 || code >= 0x80 {
        return reason_name(code);
    }
    match code {
        0 => "Connection Accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "reserved",
    }
}

/// MQTT 5 reason code names (5.0 §2.4), lower case as the specification's table.
pub const fn reason_name(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "granted QoS 1",
        0x02 => "granted QoS 2",
        0x04 => "disconnect with will message",
        0x10 => "no matching subscribers",
        0x11 => "no subscription existed",
        0x18 => "continue authentication",
        0x19 => "re-authenticate",
        0x80 => "unspecified error",
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x83 => "implementation specific error",
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x89 => "server busy",
        0x8a => "banned",
        0x8b => "server shutting down",
        0x8c => "bad authentication method",
        0x8d => "keep alive timeout",
        0x8e => "session taken over",
        0x8f => "topic filter invalid",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x92 => "packet identifier not found",
        0x93 => "receive maximum exceeded",
        0x94 => "topic alias invalid",
        0x95 => "packet too large",
        0x96 => "message rate too high",
        0x97 => "quota exceeded",
        0x98 => "administrative action",
        0x99 => "payload format invalid",
        0x9a => "retain not supported",
        0x9b => "QoS not supported",
        0x9c => "use another server",
        0x9d => "server moved",
        0x9e => "shared subscriptions not supported",
        0x9f => "connection rate exceeded",
        0xa0 => "maximum connect time",
        0xa1 => "subscription identifiers not supported",
        0xa2 => "wildcard subscriptions not supported",
        _ => "unknown reason code",
    }
}

impl FlowParser for MqttFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let d = ctx.direction;
        let di = d.index();
        let max_len = ctx.limits.max_message_len;
        let mut pos = 0usize;
        loop {
            let dir = &mut self.dirs[di];
            if dir.skip > 0 || dir.pending.is_some() {
                let avail = (data.len() - pos.min(data.len())) as u64;
                let n = dir.skip.min(avail);
                pos += n as usize;
                dir.skip -= n;
                if dir.skip > 0 {
                    return Ok(pos);
                }
                if let Some(m) = dir.pending.take() {
                    out.push(m);
                }
            }
            if dir.sync != Sync::Synced {
                let start = dir.sync == Sync::Start;
                let rest = data.get(pos..).unwrap_or_default();
                match self.resync(rest, start, max_len) {
                    Ok(i) => {
                        pos += i;
                        self.dirs[di].sync = Sync::Synced;
                    }
                    Err(skipped) => {
                        if skipped > 0 {
                            // Bytes with no boundary: from now on, demand the stronger evidence.
                            self.dirs[di].sync = Sync::Lost;
                        }
                        return Ok(pos + skipped);
                    }
                }
            }
            let rest = data.get(pos..).unwrap_or_default();
            let h = match wire::fixed_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(pos),
                Err(e) => return Err(ParseError::new(e.kind, pos + e.offset)),
            };
            let total = h.total();
            if let Some(body) = rest.get(h.header_len..total) {
                let p = wire::packet(&h, body, self.version, false)
                    .map_err(|e| ParseError::new(e.kind, pos + h.header_len + e.offset))?;
                let m = self.message(d, &p, ctx.pos(pos), ctx.pos(pos + total));
                out.push(m);
                pos += total;
                continue;
            }
            // Incomplete packet.
            if total <= max_len {
                return Ok(pos);
            }
            if h.ptype != PacketType::PUBLISH {
                return Err(ParseError::new(ParseErrorKind::TooLarge, pos));
            }
            return self.large_publish(&h, rest, pos, ctx);
        }
    }

    fn on_gap(&mut self, direction: Direction, lost: u64) {
        let dir = &mut self.dirs[direction.index()];
        if dir.skip > 0 && lost <= dir.skip {
            // The gap fell inside a skipped PUBLISH payload: still at a known boundary.
            dir.skip -= lost;
            return;
        }
        dir.skip = 0;
        dir.pending = None;
        dir.sync = Sync::Lost;
    }
}

impl MqttFlow {
    /// A PUBLISH longer than `max_message_len`: read its head (topic, packet id) and skip the rest.
    fn large_publish(
        &mut self,
        h: &FixedHeader,
        rest: &[u8],
        pos: usize,
        ctx: &ParseCtx<'_>,
    ) -> Result<usize, ParseError> {
        let max_len = ctx.limits.max_message_len;
        let Some(tl) = rest.get(h.header_len..h.header_len + 2) else {
            return Ok(pos);
        };
        let topic_len = u16::from_be_bytes([tl[0], tl[1]]) as usize;
        let head = h.header_len + 2 + topic_len + if h.qos() > 0 { 2 } else { 0 };
        if head > max_len {
            return Err(ParseError::new(ParseErrorKind::TooLarge, pos));
        }
        let Some(body) = rest.get(h.header_len..head) else {
            return Ok(pos);
        };
        let p = wire::packet(h, body, self.version, true)
            .map_err(|e| ParseError::new(e.kind, pos + h.header_len + e.offset))?;
        let total = h.total();
        let m = self.message(ctx.direction, &p, ctx.pos(pos), ctx.pos(pos + total));
        let dir = &mut self.dirs[ctx.direction.index()];
        dir.skip = (total - rest.len()) as u64;
        dir.pending = Some(m);
        Ok(pos + rest.len())
    }
}

#[cfg(test)]
mod tests;
