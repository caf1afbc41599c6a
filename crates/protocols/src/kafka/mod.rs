//! Kafka: size-prefixed request/response framing for every API key and version, paired by correlation id.
//!
//! # What one log is
//! One request and its response, paired by correlation id ([`Correlation::ById`]). `request_type` is the API
//! name as in the Kafka protocol (`Produce`, `Fetch`, `ApiVersions`...; `Unknown` for keys newer than this
//! table), `request_id` the correlation id, `request_domain` the client id, `version` the API version.
//! `request_resource` is the first topic of Produce, Fetch, ListOffsets, Metadata, OffsetCommit and OffsetFetch
//! requests (topic-id-only versions and "all topics" Metadata requests have none); `endpoint` is that topic, or
//! the API name when the request names no topic. A Produce with `acks = 0` has no response by protocol design:
//! it is a one-way log.
//!
//! `response_code` is the first non-zero error code of the response (top level, topic or partition, in wire
//! order), null when all are zero; a non-zero code makes the status `server_error`, with the Kafka error name in
//! `response_exception`. One exception: an ApiVersions response with `UNSUPPORTED_VERSION` (35) is the
//! protocol's version negotiation (KIP-511: the client retries with the version the broker offers), not a
//! failure: it is `ok`, with code null and `response_result` = `UNSUPPORTED_VERSION`. This is how the shared
//! ground truth (librdkafka's own accounting) counts it.
//!
//! # Bodies
//! Bodies are walked by small static schemas (`schema.rs`) instead of the `kafka-protocol` crate: that crate
//! decodes whole messages into owned structures (maps, vectors and strings per partition) and brings a large
//! generated code base, while a log needs only a topic name and error codes. The walker borrows, never
//! allocates, and stops cleanly at the end of what it has. Responses are identified only by correlation id, so
//! the flow remembers the API key and version of each pending request (at most
//! [`Limits::max_exchanges_in_flight`]). A body that cannot be decoded never loses the log: it keeps the header
//! fields.
//!
//! # Large messages, gaps, mid-stream starts
//! Only the first [`Limits::max_message_len`] bytes of a message are needed to decode it; the rest is skipped
//! without buffering. Because every message states its size, the parser knows where the next message starts:
//! after a gap it skips exactly to that boundary when the boundary lies beyond the lost bytes. Otherwise it
//! resynchronises on a plausible header: a request header with a known API key, a plausible version and the
//! same client id as before; a response whose correlation id is pending. Messages it cannot place are dropped,
//! never guessed.
//!
//! Sizes above [`MAX_MESSAGE_SIZE`] are `TooLarge`. No input panics.

mod api;
mod schema;

pub use api::ApiKey;

use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use std::collections::VecDeque;

/// Largest message size accepted (the broker's default `socket.request.max.bytes`, 100 MiB).
pub const MAX_MESSAGE_SIZE: i32 = 100 * 1024 * 1024;
/// Smallest request: api_key, api_version, correlation_id and a client id length.
const MIN_REQUEST: i32 = 10;
/// Smallest response: a correlation id.
const MIN_RESPONSE: i32 = 4;
/// `UNSUPPORTED_VERSION`.
const UNSUPPORTED_VERSION: i16 = 35;

/// The Kafka [`L7Parser`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaParser;

impl L7Parser for KafkaParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Kafka
    }

    fn default_ports(&self) -> &[u16] {
        &[9092]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload, input.direction)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(KafkaFlow::new(limits))
    }
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A plausible request header at `data[at]`: size, known API key, plausible version, a client id that fits.
/// Returns the client id when it is plausible.
fn plausible_request(data: &[u8], at: usize) -> Option<Option<&[u8]>> {
    let size = be_i32(data, at)?;
    if !(MIN_REQUEST..=MAX_MESSAGE_SIZE).contains(&size) {
        return None;
    }
    let key = ApiKey(be_i16(data, at + 4)?);
    let version = be_i16(data, at + 6)?;
    if !key.is_known() || !(0..=api::MAX_PLAUSIBLE_VERSION).contains(&version) {
        return None;
    }
    let _corr = be_i32(data, at + 8)?;
    if !key.request_header_has_client_id(version) {
        return Some(None);
    }
    let len = be_i16(data, at + 12)?;
    if len == -1 {
        return Some(None);
    }
    if len < 0 || i32::from(len) > size - MIN_REQUEST {
        return None;
    }
    let id = data.get(at + 14..at + 14 + len as usize)?;
    id.iter()
        .all(|&b| (0x20..0x7f).contains(&b))
        .then_some(Some(id))
}

/// Cheap detection: a client payload starting with a plausible request header is `Yes`. Server payloads carry
/// only a size and a correlation id, which is no evidence: `No`.
pub fn probe(payload: &[u8], direction: Direction) -> Probe {
    if direction == Direction::ServerToClient {
        return Probe::No;
    }
    match plausible_request(payload, 0) {
        Some(_) => Probe::Yes,
        None => Probe::No,
    }
}

/// A request waiting for its response: what its response body needs.
#[derive(Debug, Clone, Copy)]
struct Pending {
    corr: i32,
    api: ApiKey,
    version: i16,
}

/// Per-direction framing state.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current message still to skip.
    skip: u64,
    /// The message to emit when the skip ends.
    held: Option<Message>,
    /// Absolute offset of the next message start, when known.
    boundary: Option<u64>,
    /// Skip to this absolute offset before parsing (after a gap with a known boundary).
    skip_to: Option<u64>,
    /// No boundary known: scan for a plausible header.
    resync: bool,
}

/// Per-flow Kafka state.
#[derive(Debug)]
pub struct KafkaFlow {
    dirs: [Framing; 2],
    pending: VecDeque<Pending>,
    max_pending: usize,
    /// The client id of the last request (for resynchronisation).
    client_id: Vec<u8>,
}

impl KafkaFlow {
    /// Fresh state for a flow.
    pub fn new(limits: &Limits) -> KafkaFlow {
        KafkaFlow {
            dirs: [Framing::default(), Framing::default()],
            pending: VecDeque::new(),
            max_pending: limits.max_exchanges_in_flight.max(1),
            client_id: Vec::new(),
        }
    }

    fn remember(&mut self, p: Pending) {
        if let Some(i) = self.pending.iter().position(|x| x.corr == p.corr) {
            self.pending.remove(i);
        }
        if self.pending.len() >= self.max_pending {
            self.pending.pop_front();
        }
        self.pending.push_back(p);
    }

    fn take_pending(&mut self, corr: i32) -> Option<Pending> {
        let i = self.pending.iter().position(|x| x.corr == corr)?;
        self.pending.remove(i)
    }

    /// Find a resynchronisation point at or after `from`. `(Some(at), _)` or `(None, keep_from)`.
    fn resync_scan(&self, data: &[u8], from: usize, dir: Direction) -> (Option<usize>, usize) {
        let last = data.len().saturating_sub(16);
        let mut at = from;
        while at < data.len() {
            let ok = match dir {
                Direction::ClientToServer => match plausible_request(data, at) {
                    Some(Some(id)) => self.client_id.is_empty() || id == self.client_id.as_slice(),
                    Some(None) => self.client_id.is_empty(),
                    None => false,
                },
                Direction::ServerToClient => match (be_i32(data, at), be_i32(data, at + 4)) {
                    (Some(size), Some(corr)) => {
                        (MIN_RESPONSE..=MAX_MESSAGE_SIZE).contains(&size)
                            && self.pending.iter().any(|p| p.corr == corr)
                    }
                    _ => false,
                },
            };
            if ok {
                return (Some(at), at);
            }
            if at >= last {
                // Too close to the end to judge: keep these bytes for the next call.
                return (None, at);
            }
            at += 1;
        }
        (None, data.len())
    }

    fn request_message(
        &mut self,
        msg: &[u8],
        start: u64,
        end: u64,
        limits: &Limits,
    ) -> Option<Message> {
        // msg = the message after its size field (possibly cut to the decode window).
        let api = ApiKey(be_i16(msg, 0)?);
        let version = be_i16(msg, 2)?;
        let corr = be_i32(msg, 4)?;
        let mut pos = 8;
        let mut info = LogInfo {
            request_type: Some(api_type(api)),
            version: Some(version.to_string()),
            request_id: Some(u64::from(corr as u32)),
            ..LogInfo::default()
        };
        let mut body_ok = true;
        if api.request_header_has_client_id(version) {
            match be_i16(msg, pos) {
                Some(-1) => pos += 2,
                Some(len) if len >= 0 => match msg.get(pos + 2..pos + 2 + len as usize) {
                    Some(id) => {
                        info.request_domain = Some(crate::util::lossy(id, limits.max_field_len));
                        if self.client_id.as_slice() != id && id.len() <= 256 {
                            self.client_id.clear();
                            self.client_id.extend_from_slice(id);
                        }
                        pos += 2 + len as usize;
                    }
                    None => body_ok = false,
                },
                _ => body_ok = false,
            }
        }
        let flex = api.is_flexible(version);
        if body_ok && flex {
            body_ok = skip_tagged(msg, &mut pos);
        }
        let mut acks = None;
        if body_ok {
            if let (Some(schema), Some(body)) = (schema::request_schema(api.0), msg.get(pos..)) {
                let (found, _) = schema::decode(schema, body, version, flex);
                if let Some(t) = found.topic {
                    let topic = crate::util::lossy(t, limits.max_field_len);
                    info.endpoint = Some(topic.clone());
                    info.request_resource = Some(topic);
                }
                acks = found.acks;
            }
        }
        if info.endpoint.is_none() {
            info.endpoint = info.request_type.clone();
        }
        let corr_id = Correlation::ById(u64::from(corr as u32));
        if api == ApiKey::PRODUCE && acks == Some(0) {
            info.response_status = Some(ResponseStatus::Ok);
            return Some(
                Message::new(
                    Direction::ClientToServer,
                    MessageKind::OneWay,
                    Correlation::Unpaired,
                    start,
                    end,
                )
                .with_info(info),
            );
        }
        self.remember(Pending { corr, api, version });
        Some(
            Message::new(
                Direction::ClientToServer,
                MessageKind::Request,
                corr_id,
                start,
                end,
            )
            .with_info(info),
        )
    }

    fn response_message(
        &mut self,
        msg: &[u8],
        start: u64,
        end: u64,
        whole: bool,
    ) -> Option<Message> {
        let corr = be_i32(msg, 0)?;
        let mut info = LogInfo::default();
        let mut status = ResponseStatus::Ok;
        if let Some(p) = self.take_pending(corr) {
            let mut pos = 4;
            let ok = !p.api.response_header_tagged(p.version) || skip_tagged(msg, &mut pos);
            if let (true, Some(schema), Some(body)) =
                (ok, schema::response_schema(p.api.0), msg.get(pos..))
            {
                let flex = p.api.is_flexible(p.version) && p.api != ApiKey::API_VERSIONS;
                let (found, exact) = schema::decode(&schema, body, p.version, flex);
                // A complete schema on a whole body must account for every byte; otherwise trust only what a
                // cut body or a prefix schema yielded.
                let trusted = exact || !schema.complete || !whole;
                if let (true, Some(code)) = (trusted, found.error) {
                    if p.api == ApiKey::API_VERSIONS && code == UNSUPPORTED_VERSION {
                        info.response_result = Some(error_name(code).to_owned());
                    } else {
                        info.response_code = Some(i64::from(code));
                        info.response_exception = Some(error_name(code).to_owned());
                        status = ResponseStatus::ServerError;
                    }
                }
            }
        }
        info.response_status = Some(status);
        Some(
            Message::new(
                Direction::ServerToClient,
                MessageKind::Response,
                Correlation::ById(u64::from(corr as u32)),
                start,
                end,
            )
            .with_info(info),
        )
    }
}

fn api_type(api: ApiKey) -> String {
    if api.is_known() {
        api.as_str().to_owned()
    } else {
        format!("Unknown({})", api.0)
    }
}

fn skip_tagged(msg: &[u8], pos: &mut usize) -> bool {
    fn uvarint(msg: &[u8], pos: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = *msg.get(*pos)?;
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let Some(n) = uvarint(msg, pos) else {
        return false;
    };
    for _ in 0..n {
        let (Some(_tag), Some(size)) = (uvarint(msg, pos), uvarint(msg, pos)) else {
            return false;
        };
        match pos.checked_add(size as usize) {
            Some(p) if p <= msg.len() => *pos = p,
            _ => return false,
        }
    }
    true
}

impl FlowParser for KafkaFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let dir = ctx.direction;
        let d = dir.index();
        let window = ctx.limits.max_message_len.max(64);
        let mut i = 0usize;
        loop {
            // Finish skipping the body of a large message.
            if self.dirs[d].skip > 0 {
                let n =
                    (data.len() - i).min(usize::try_from(self.dirs[d].skip).unwrap_or(usize::MAX));
                i += n;
                self.dirs[d].skip -= n as u64;
                if self.dirs[d].skip > 0 {
                    return Ok(i);
                }
                if let Some(m) = self.dirs[d].held.take() {
                    out.push(m);
                }
            }
            if let Some(to) = self.dirs[d].skip_to {
                let here = ctx.pos(i);
                if to > here {
                    self.dirs[d].skip = to - here;
                    self.dirs[d].skip_to = None;
                    continue;
                }
                self.dirs[d].skip_to = None;
                if to < here {
                    self.dirs[d].resync = true;
                }
            }
            if self.dirs[d].resync {
                match self.resync_scan(data, i, dir) {
                    (Some(at), _) => {
                        i = at;
                        self.dirs[d].resync = false;
                    }
                    (None, keep) => return Ok(keep),
                }
            }
            let Some(size) = be_i32(data, i) else {
                return Ok(i);
            };
            let min = if dir == Direction::ClientToServer {
                MIN_REQUEST
            } else {
                MIN_RESPONSE
            };
            if size > MAX_MESSAGE_SIZE {
                return Err(ParseError::new(ParseErrorKind::TooLarge, i));
            }
            if size < min {
                return Err(ParseError::new(ParseErrorKind::Invalid, i));
            }
            let size = size as usize;
            let start = ctx.pos(i);
            let end = start + 4 + size as u64;
            self.dirs[d].boundary = Some(end);
            let avail = data.len() - i - 4;
            let need = size.min(window);
            if avail < need {
                return Ok(i);
            }
            let whole = avail >= size;
            let msg = data.get(i + 4..i + 4 + size.min(avail)).unwrap_or(&[]);
            if dir == Direction::ClientToServer {
                match self.request_message(msg, start, end, ctx.limits) {
                    Some(m) if whole => out.push(m),
                    Some(m) => self.dirs[d].held = Some(m),
                    None => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                }
            } else if let Some(m) = self.response_message(msg, start, end, whole) {
                if whole {
                    out.push(m);
                } else {
                    self.dirs[d].held = Some(m);
                }
            }
            if whole {
                i += 4 + size;
            } else {
                i += 4 + avail;
                self.dirs[d].skip = (size - avail) as u64;
                return Ok(i);
            }
        }
    }

    fn on_gap(&mut self, direction: Direction, lost: u64) {
        let f = &mut self.dirs[direction.index()];
        if f.skip > lost {
            // Still inside the same large message: the boundary is intact.
            f.skip -= lost;
            return;
        }
        f.held = None;
        f.skip = 0;
        // The engine drops unconsumed bytes with the gap; the boundary recorded from the last size header
        // tells where the next message starts.
        match f.boundary {
            Some(b) => f.skip_to = Some(b),
            None => f.resync = true,
        }
    }
}

/// The Kafka error name of a code (the protocol's `Errors` table), `UNKNOWN_ERROR_CODE` for others.
pub const fn error_name(code: i16) -> &'static str {
    match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        0 => "NONE",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        4 => "INVALID_FETCH_SIZE",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        8 => "BROKER_NOT_AVAILABLE",
        9 => "REPLICA_NOT_AVAILABLE",
        10 => "MESSAGE_TOO_LARGE",
        11 => "STALE_CONTROLLER_EPOCH",
        12 => "OFFSET_METADATA_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        22 => "ILLEGAL_GENERATION",
        23 => "INCONSISTENT_GROUP_PROTOCOL",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        26 => "INVALID_SESSION_TIMEOUT",
        27 => "REBALANCE_IN_PROGRESS",
        28 => "INVALID_COMMIT_OFFSET_SIZE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        32 => "INVALID_TIMESTAMP",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        39 => "INVALID_REPLICA_ASSIGNMENT",
        40 => "INVALID_CONFIG",
        41 => "NOT_CONTROLLER",
        42 => "INVALID_REQUEST",
        43 => "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        44 => "POLICY_VIOLATION",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        47 => "INVALID_PRODUCER_EPOCH",
        48 => "INVALID_TXN_STATE",
        49 => "INVALID_PRODUCER_ID_MAPPING",
        50 => "INVALID_TRANSACTION_TIMEOUT",
        51 => "CONCURRENT_TRANSACTIONS",
        52 => "TRANSACTION_COORDINATOR_FENCED",
        53 => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        54 => "SECURITY_DISABLED",
        55 => "OPERATION_NOT_ATTEMPTED",
        56 => "KAFKA_STORAGE_ERROR",
        57 => "LOG_DIR_NOT_FOUND",
        58 => "SASL_AUTHENTICATION_FAILED",
        59 => "UNKNOWN_PRODUCER_ID",
        60 => "REASSIGNMENT_IN_PROGRESS",
        61 => "DELEGATION_TOKEN_AUTH_DISABLED",
        62 => "DELEGATION_TOKEN_NOT_FOUND",
        63 => "DELEGATION_TOKEN_OWNER_MISMATCH",
        64 => "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        65 => "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        66 => "DELEGATION_TOKEN_EXPIRED",
        67 => "INVALID_PRINCIPAL_TYPE",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        70 => "FETCH_SESSION_ID_NOT_FOUND",
        71 => "INVALID_FETCH_SESSION_EPOCH",
        72 => "LISTENER_NOT_FOUND",
        73 => "TOPIC_DELETION_DISABLED",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        76 => "UNSUPPORTED_COMPRESSION_TYPE",
        77 => "STALE_BROKER_EPOCH",
        78 => "OFFSET_NOT_AVAILABLE",
        79 => "MEMBER_ID_REQUIRED",
        80 => "PREFERRED_LEADER_NOT_AVAILABLE",
        81 => "GROUP_MAX_SIZE_REACHED",
        82 => "FENCED_INSTANCE_ID",
        83 => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        84 => "ELECTION_NOT_NEEDED",
        85 => "NO_REASSIGNMENT_IN_PROGRESS",
        86 => "GROUP_SUBSCRIBED_TO_TOPIC",
        87 => "INVALID_RECORD",
        88 => "UNSTABLE_OFFSET_COMMIT",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        90 => "PRODUCER_FENCED",
        91 => "RESOURCE_NOT_FOUND",
        92 => "DUPLICATE_RESOURCE",
        93 => "UNACCEPTABLE_CREDENTIAL",
        94 => "INCONSISTENT_VOTER_SET",
        95 => "INVALID_UPDATE_VERSION",
        96 => "FEATURE_UPDATE_FAILED",
        97 => "PRINCIPAL_DESERIALIZATION_FAILURE",
        98 => "SNAPSHOT_NOT_FOUND",
        99 => "POSITION_OUT_OF_RANGE",
        100 => "UNKNOWN_TOPIC_ID",
        101 => "DUPLICATE_BROKER_REGISTRATION",
        102 => "BROKER_ID_NOT_REGISTERED",
        103 => "INCONSISTENT_TOPIC_ID",
        104 => "INCONSISTENT_CLUSTER_ID",
        105 => "TRANSACTIONAL_ID_NOT_FOUND",
        106 => "FETCH_SESSION_TOPIC_ID_ERROR",
        107 => "INELIGIBLE_REPLICA",
        108 => "NEW_LEADER_ELECTED",
        109 => "OFFSET_MOVED_TO_TIERED_STORAGE",
        110 => "FENCED_MEMBER_EPOCH",
        111 => "UNRELEASED_INSTANCE_ID",
        112 => "UNSUPPORTED_ASSIGNOR",
        113 => "STALE_MEMBER_EPOCH",
        114 => "MISMATCHED_ENDPOINT_TYPE",
        115 => "UNSUPPORTED_ENDPOINT_TYPE",
        116 => "UNKNOWN_CONTROLLER_ID",
        117 => "UNKNOWN_SUBSCRIPTION_ID",
        118 => "TELEMETRY_TOO_LARGE",
        119 => "INVALID_REGISTRATION",
        120 => "TRANSACTION_ABORTABLE",
        _ => "UNKNOWN_ERROR_CODE",
    }
}

#[cfg(test)]
mod tests;
