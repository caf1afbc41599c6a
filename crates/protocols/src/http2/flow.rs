//! Per-connection HTTP/2 state: framing of both directions, HPACK per direction, and the streams in flight.
//!
//! One stream is one log. The request message is emitted when the client ends its half of the stream
//! (END_STREAM), or earlier when the response completes first, when the stream is reset, evicted, or when the
//! connection closes. The response message is emitted when the server ends its half (END_STREAM) or when either
//! side resets the stream. Server-pushed streams (PUSH_PROMISE) are one-way logs: the promised request and the
//! pushed response, both sent by the server.

use super::fields::{
    endpoint, grpc_status, http_status, reason_phrase, trace_context, GrpcCode, Summary,
};
use super::frame::{
    find_sync, flags, ErrorCode, FrameHeader, FrameType, SettingId, Sync, DEFAULT_MAX_FRAME_SIZE,
    HEADER_LEN, PREFACE,
};
use super::hpack::HpackState;
use crate::{
    Correlation, FlowParser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind,
};
use fathom_model::{Direction, L7Protocol, ResponseStatus};

const CLIENT: usize = 0;
const SERVER: usize = 1;
/// Largest frame size followed when looking for a frame boundary (RFC 9113's ceiling is 2^24 - 1).
const MAX_SYNC_FRAME: u32 = 1 << 24;

/// A header block being assembled (HEADERS or PUSH_PROMISE, then CONTINUATION frames).
#[derive(Debug)]
struct Block {
    stream_id: u32,
    /// The promised stream of a PUSH_PROMISE.
    promised: Option<u32>,
    buf: Vec<u8>,
    end_stream: bool,
    /// Absolute offset of the first frame of the block.
    start: u64,
    /// Frame bytes of the block so far.
    bytes: u64,
}

/// The payload of a frame being passed over without buffering (DATA, unknown types, large GOAWAY).
#[derive(Debug, Clone, Copy)]
struct Skip {
    remaining: u64,
    /// Stream ended by this frame (DATA with END_STREAM).
    end_stream: Option<u32>,
    /// Absolute end offset of the frame.
    end: u64,
}

#[derive(Debug)]
struct Dir {
    /// A parse call happened in this direction.
    started: bool,
    /// The parser stands on a frame boundary.
    synced: bool,
    /// Server direction seen from its start: its first frame must be SETTINGS.
    first_frame_pending: bool,
    hpack: HpackState,
    block: Option<Block>,
    skip: Option<Skip>,
    /// Largest frame the receiver of this direction allowed (SETTINGS_MAX_FRAME_SIZE), for resynchronisation.
    max_frame: u32,
    /// Absolute offset one past the last frame handled.
    cursor: u64,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            started: false,
            synced: false,
            first_frame_pending: false,
            hpack: HpackState::unknown(),
            block: None,
            skip: None,
            max_frame: DEFAULT_MAX_FRAME_SIZE,
            cursor: 0,
        }
    }
}

/// Frames of one stream in one direction.
#[derive(Debug, Default, Clone, Copy)]
struct Half {
    start: Option<u64>,
    end: u64,
    bytes: u64,
}

impl Half {
    fn add(&mut self, start: u64, end: u64, bytes: u64) {
        if self.start.is_none() {
            self.start = Some(start);
        }
        self.end = self.end.max(end);
        self.bytes += bytes;
    }
}

#[derive(Debug)]
struct Stream {
    id: u32,
    /// Promised by the server (PUSH_PROMISE): both halves travel server → client.
    pushed: bool,
    /// Request headers were seen (HEADERS from the client, or the PUSH_PROMISE block).
    req_seen: bool,
    req: Summary,
    resp: Summary,
    halves: [Half; 2],
    req_emitted: bool,
}

impl Stream {
    fn new(id: u32) -> Stream {
        Stream {
            id,
            pushed: false,
            req_seen: false,
            req: Summary::default(),
            resp: Summary::default(),
            halves: [Half::default(); 2],
            req_emitted: false,
        }
    }

    fn is_grpc(&self) -> bool {
        self.req
            .grpc_content_type
            .or(self.resp.grpc_content_type)
            .unwrap_or(false)
    }

    /// Merge a response header block (headers, then trailers). Informational (1xx) blocks are not the response.
    fn response_block(&mut self, s: Summary) {
        if matches!(s.status, Some(100..=199)) {
            return;
        }
        let r = &mut self.resp;
        r.status = r.status.or(s.status);
        r.grpc_content_type = r.grpc_content_type.or(s.grpc_content_type);
        r.grpc_status = r.grpc_status.or(s.grpc_status);
        if r.grpc_message.is_none() {
            r.grpc_message = s.grpc_message;
        }
        if r.x_request_id.is_none() {
            r.x_request_id = s.x_request_id;
        }
        r.fields += s.fields;
    }

    fn protocol(&self) -> Option<L7Protocol> {
        self.is_grpc().then_some(L7Protocol::Grpc)
    }

    fn request_info(&self) -> LogInfo {
        let grpc = self.is_grpc();
        let r = &self.req;
        let (trace_id, span_id) = trace_context(r.traceparent.as_deref());
        LogInfo {
            protocol: self.protocol(),
            version: Some("2".into()),
            request_type: r.method.clone(),
            request_domain: r.authority.clone().or_else(|| r.host.clone()),
            request_resource: r.path.clone(),
            endpoint: r.path.as_deref().map(|p| {
                if grpc {
                    p.split('?').next().unwrap_or(p).to_string()
                } else {
                    endpoint(p)
                }
            }),
            request_id: Some(u64::from(self.id)),
            trace_id,
            span_id,
            x_request_id: r.x_request_id.clone(),
            ..LogInfo::default()
        }
    }

    fn response_info(&self) -> LogInfo {
        let r = &self.resp;
        let (code, status, exception) = if self.is_grpc() {
            let code = r.grpc_status.or_else(|| {
                r.status
                    .filter(|s| *s != 200)
                    .map(|s| GrpcCode::from_http(s).0)
            });
            match code {
                Some(c) => {
                    let exc = (c != 0).then(|| match &r.grpc_message {
                        Some(m) if !m.is_empty() => m.clone(),
                        _ => GrpcCode(c).as_str().to_string(),
                    });
                    (Some(c), grpc_status(c), exc)
                }
                None => (None, ResponseStatus::Unknown, None),
            }
        } else {
            match r.status {
                Some(s) => {
                    let st = http_status(s);
                    let exc = st
                        .is_error()
                        .then(|| reason_phrase(s).map(str::to_string))
                        .flatten();
                    (Some(i64::from(s)), st, exc)
                }
                None => (None, ResponseStatus::Unknown, None),
            }
        };
        LogInfo {
            protocol: self.protocol(),
            version: Some("2".into()),
            request_id: Some(u64::from(self.id)),
            response_code: code,
            response_status: Some(status),
            response_exception: exception,
            x_request_id: r.x_request_id.clone(),
            ..LogInfo::default()
        }
    }
}

/// The HTTP/2 state of one connection (both directions).
#[derive(Debug)]
pub struct Http2Flow {
    dirs: [Dir; 2],
    /// Streams in flight, oldest first.
    streams: Vec<Stream>,
    max_streams: usize,
    max_block: usize,
    max_field: usize,
    preface_seen: bool,
    /// Highest client-initiated stream id opened so far (streams only open upwards).
    max_client_stream: u32,
}

impl Http2Flow {
    /// A connection parser obeying `limits`: header blocks up to [`Limits::max_message_len`] bytes, at most
    /// [`Limits::max_exchanges_in_flight`] streams, fields truncated to [`Limits::max_field_len`].
    pub fn new(limits: &Limits) -> Http2Flow {
        Http2Flow {
            dirs: [Dir::new(), Dir::new()],
            streams: Vec::new(),
            max_streams: limits.max_exchanges_in_flight.max(1),
            max_block: limits.max_message_len,
            max_field: limits.max_field_len,
            preface_seen: false,
            max_client_stream: 0,
        }
    }

    fn find(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    fn remove(&mut self, id: u32) -> Option<Stream> {
        let i = self.streams.iter().position(|s| s.id == id)?;
        Some(self.streams.remove(i))
    }

    /// Add a stream, evicting the oldest when the table is full (its request goes out, to time out in the
    /// session's exchange table).
    fn insert(&mut self, s: Stream, out: &mut Vec<Message>) -> &mut Stream {
        if self.streams.len() >= self.max_streams {
            let mut old = self.streams.remove(0);
            emit_request(&mut old, out);
        }
        self.streams.push(s);
        let last = self.streams.len() - 1;
        &mut self.streams[last]
    }

    fn account(&mut self, d: usize, id: u32, start: u64, end: u64) {
        if let Some(s) = self.find(id) {
            s.halves[d].add(start, end, end - start);
        }
    }

    /// First bytes of a direction: the preface (client) or the start of the server's frames.
    /// Returns the bytes to skip, or `None` to wait for more.
    fn start_dir(&mut self, d: usize, data: &[u8], offset: u64) -> Option<usize> {
        let dir = &mut self.dirs[d];
        if offset != 0 {
            dir.started = true;
            return Some(0);
        }
        if d == CLIENT {
            let n = data.len().min(PREFACE.len());
            if data.get(..n) == PREFACE.get(..n) {
                if n < PREFACE.len() {
                    return None;
                }
                dir.started = true;
                dir.synced = true;
                dir.hpack = HpackState::known();
                self.preface_seen = true;
                return Some(PREFACE.len());
            }
        } else if self.preface_seen {
            dir.synced = true;
            dir.hpack = HpackState::known();
            dir.first_frame_pending = true;
        }
        dir.started = true;
        Some(0)
    }

    fn finish_block(&mut self, d: usize, blk: Block, end: u64, out: &mut Vec<Message>) {
        let mut sum = Summary::default();
        let max = self.max_field;
        let outcome = self.dirs[d]
            .hpack
            .decode(&blk.buf, &mut |n, v| sum.observe(n, v, max));
        if outcome.truncated {
            // Not HPACK (a corrupted block, or a false frame boundary after a gap): use none of it.
            return;
        }
        let id = blk.stream_id;
        if let Some(promised) = blk.promised {
            if d == SERVER && promised != 0 && promised % 2 == 0 && self.find(promised).is_none() {
                let mut s = Stream::new(promised);
                s.pushed = true;
                s.req_seen = true;
                s.req = sum;
                s.halves[SERVER].add(blk.start, end, blk.bytes);
                self.insert(s, out);
            }
            return;
        }
        let opens = id % 2 == 1 && id > self.max_client_stream;
        if d == CLIENT {
            match self.find(id) {
                Some(s) => {
                    s.halves[CLIENT].add(blk.start, end, blk.bytes);
                    if !s.req_seen && !s.pushed {
                        s.req_seen = true;
                        s.req = sum;
                    }
                }
                None if opens => {
                    self.max_client_stream = id;
                    let mut s = Stream::new(id);
                    s.req_seen = true;
                    s.req = sum;
                    s.halves[CLIENT].add(blk.start, end, blk.bytes);
                    self.insert(s, out);
                }
                // Trailers or a late block of a stream already logged: nothing to do.
                None => return,
            }
        } else {
            match self.find(id) {
                Some(s) => {
                    s.halves[SERVER].add(blk.start, end, blk.bytes);
                    s.response_block(sum);
                }
                None if opens => {
                    // The request was never seen (capture joined mid-connection): the response alone is
                    // reported, and the session counts it as an orphan.
                    self.max_client_stream = id;
                    let mut s = Stream::new(id);
                    s.halves[SERVER].add(blk.start, end, blk.bytes);
                    s.response_block(sum);
                    self.insert(s, out);
                }
                None => return,
            }
        }
        if blk.end_stream {
            self.end_stream(d, id, end, out);
        }
    }

    fn end_stream(&mut self, d: usize, id: u32, end: u64, out: &mut Vec<Message>) {
        if d == CLIENT {
            if let Some(s) = self.find(id) {
                if !s.pushed {
                    emit_request(s, out);
                }
            }
            return;
        }
        let Some(mut s) = self.remove(id) else {
            return;
        };
        if s.pushed {
            emit_push(&s, end, None, out);
            return;
        }
        emit_request(&mut s, out);
        emit_response(&s, end, None, out);
    }

    fn reset(
        &mut self,
        d: usize,
        id: u32,
        code: ErrorCode,
        start: u64,
        end: u64,
        out: &mut Vec<Message>,
    ) {
        let server_cursor = self.dirs[SERVER].cursor;
        let Some(mut s) = self.remove(id) else {
            return;
        };
        s.halves[d].add(start, end, end - start);
        let status = if d == CLIENT {
            ResponseStatus::ClientError
        } else {
            ResponseStatus::ServerError
        };
        let reason = Some((status, code));
        if s.pushed {
            emit_push(&s, s.halves[SERVER].end.max(start), reason, out);
            return;
        }
        emit_request(&mut s, out);
        // A response message travels server → client: a reset sent by the client ends it at the server's
        // current position.
        let resp_end = if d == SERVER {
            end
        } else {
            s.halves[SERVER].end.max(server_cursor)
        };
        emit_response(&s, resp_end, reason, out);
    }

    fn on_frame(
        &mut self,
        d: usize,
        h: &FrameHeader,
        payload: &[u8],
        start: u64,
        end: u64,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseErrorKind> {
        let frame_bytes = end - start;
        match h.kind {
            FrameType::HEADERS | FrameType::PUSH_PROMISE => {
                let mut p = payload;
                let mut pad = 0usize;
                if h.has(flags::PADDED) {
                    pad = usize::from(*p.first().ok_or(ParseErrorKind::Invalid)?);
                    p = &p[1..];
                }
                let mut promised = None;
                if h.kind == FrameType::PUSH_PROMISE {
                    if d != SERVER {
                        return Err(ParseErrorKind::Invalid);
                    }
                    let b = p.get(..4).ok_or(ParseErrorKind::Invalid)?;
                    promised = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                    p = &p[4..];
                } else if h.has(flags::PRIORITY) {
                    p = p.get(5..).ok_or(ParseErrorKind::Invalid)?;
                }
                let frag_len = p.len().checked_sub(pad).ok_or(ParseErrorKind::Invalid)?;
                let blk = Block {
                    stream_id: h.stream_id,
                    promised,
                    buf: p[..frag_len].to_vec(),
                    end_stream: h.kind == FrameType::HEADERS && h.has(flags::END_STREAM),
                    start,
                    bytes: frame_bytes,
                };
                if h.has(flags::END_HEADERS) {
                    self.finish_block(d, blk, end, out);
                } else {
                    self.dirs[d].block = Some(blk);
                }
            }
            FrameType::CONTINUATION => {
                let dir = &mut self.dirs[d];
                let Some(mut blk) = dir.block.take() else {
                    if dir.hpack.is_known() {
                        return Err(ParseErrorKind::Invalid);
                    }
                    // The start of this block was lost (gap or join): nothing to decode.
                    return Ok(());
                };
                if blk.buf.len() + payload.len() > self.max_block {
                    dir.hpack.lose();
                    return Err(ParseErrorKind::TooLarge);
                }
                blk.buf.extend_from_slice(payload);
                blk.bytes += frame_bytes;
                if h.has(flags::END_HEADERS) {
                    self.finish_block(d, blk, end, out);
                } else {
                    dir.block = Some(blk);
                }
            }
            FrameType::SETTINGS if !h.has(flags::ACK) => {
                let other = &mut self.dirs[1 - d];
                for e in payload.chunks_exact(6) {
                    let id = SettingId(u16::from_be_bytes([e[0], e[1]]));
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    match id {
                        SettingId::HEADER_TABLE_SIZE => other.hpack.allow_table_size(v),
                        SettingId::MAX_FRAME_SIZE => {
                            other.max_frame = other
                                .max_frame
                                .max(v.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_SYNC_FRAME - 1));
                        }
                        _ => {}
                    }
                }
            }
            FrameType::RST_STREAM => {
                let b = payload.get(..4).ok_or(ParseErrorKind::Invalid)?;
                let code = ErrorCode(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                self.reset(d, h.stream_id, code, start, end, out);
            }
            // PRIORITY, PING, WINDOW_UPDATE (and GOAWAY, handled as a skipped frame) carry nothing a log needs.
            _ => {}
        }
        Ok(())
    }

    /// Frames that are passed over without buffering their payload.
    fn skipped(kind: FrameType) -> bool {
        matches!(kind, FrameType::DATA | FrameType::GOAWAY) || !kind.is_known()
    }
}

fn emit_request(s: &mut Stream, out: &mut Vec<Message>) {
    if s.req_emitted || !s.req_seen || s.pushed {
        return;
    }
    s.req_emitted = true;
    let h = s.halves[CLIENT];
    let start = h.start.unwrap_or(h.end);
    out.push(Message {
        direction: Direction::ClientToServer,
        kind: MessageKind::Request,
        correlation: Correlation::ById(u64::from(s.id)),
        start,
        end: h.end.max(start),
        wire_bytes: h.bytes,
        info: s.request_info(),
    });
}

fn rst_exception(info: &mut LogInfo, reason: Option<(ResponseStatus, ErrorCode)>) {
    if let Some((status, code)) = reason {
        info.response_status = Some(status);
        info.response_exception = Some(format!("RST_STREAM {}", code.as_str()));
    }
}

fn emit_response(
    s: &Stream,
    end: u64,
    reason: Option<(ResponseStatus, ErrorCode)>,
    out: &mut Vec<Message>,
) {
    let h = s.halves[SERVER];
    let start = h.start.unwrap_or(end).min(end);
    let mut info = s.response_info();
    rst_exception(&mut info, reason);
    out.push(Message {
        direction: Direction::ServerToClient,
        kind: MessageKind::Response,
        correlation: Correlation::ById(u64::from(s.id)),
        start,
        end,
        wire_bytes: h.bytes,
        info,
    });
}

/// A server push: one one-way log from the PUSH_PROMISE to the end of the pushed response.
fn emit_push(
    s: &Stream,
    end: u64,
    reason: Option<(ResponseStatus, ErrorCode)>,
    out: &mut Vec<Message>,
) {
    let h = s.halves[SERVER];
    let start = h.start.unwrap_or(end).min(end);
    let mut info = s.request_info();
    let resp = s.response_info();
    info.response_code = resp.response_code;
    info.response_status = resp.response_status;
    info.response_exception = resp.response_exception;
    rst_exception(&mut info, reason);
    out.push(Message {
        direction: Direction::ServerToClient,
        kind: MessageKind::OneWay,
        correlation: Correlation::Unpaired,
        start,
        end,
        wire_bytes: h.bytes,
        info,
    });
}

impl FlowParser for Http2Flow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let d = ctx.direction.index();
        let base = ctx.stream_offset;
        let mut pos = 0usize;
        if !self.dirs[d].started {
            match self.start_dir(d, data, base) {
                Some(n) => pos = n,
                None => return Ok(0),
            }
        }
        loop {
            let dir = &mut self.dirs[d];
            if let Some(skip) = dir.skip.as_mut() {
                let avail = (data.len() - pos) as u64;
                if avail < skip.remaining {
                    skip.remaining -= avail;
                    return Ok(data.len());
                }
                pos += skip.remaining as usize;
                let done = *skip;
                dir.skip = None;
                dir.cursor = done.end;
                if let Some(id) = done.end_stream {
                    self.end_stream(d, id, done.end, out);
                }
                continue;
            }
            if !dir.synced {
                match find_sync(&data[pos..], dir.max_frame) {
                    Sync::At(i) => {
                        pos += i;
                        dir.synced = true;
                    }
                    Sync::Wait(i) => return Ok(pos + i),
                }
            }
            let Some(h) = FrameHeader::parse(&data[pos..]) else {
                return Ok(pos);
            };
            let err = |kind| ParseError::new(kind, pos);
            if !h.follows_rules() {
                return Err(err(ParseErrorKind::Invalid));
            }
            if dir.first_frame_pending {
                dir.first_frame_pending = false;
                if h.kind != FrameType::SETTINGS || h.has(flags::ACK) {
                    dir.hpack.lose();
                }
            }
            if let Some(b) = &dir.block {
                if h.kind != FrameType::CONTINUATION || h.stream_id != b.stream_id {
                    // A header block interrupted: HPACK state is lost with it.
                    dir.block = None;
                    dir.hpack.lose();
                    return Err(err(ParseErrorKind::Invalid));
                }
            }
            let start = base + pos as u64;
            let end = start + h.frame_len() as u64;
            if Self::skipped(h.kind) {
                pos += HEADER_LEN;
                dir.skip = Some(Skip {
                    remaining: u64::from(h.length),
                    end_stream: (h.kind == FrameType::DATA && h.has(flags::END_STREAM))
                        .then_some(h.stream_id),
                    end,
                });
                if h.kind == FrameType::DATA {
                    self.account(d, h.stream_id, start, end);
                }
                continue;
            }
            if h.length as usize > self.max_block {
                if matches!(
                    h.kind,
                    FrameType::HEADERS | FrameType::PUSH_PROMISE | FrameType::CONTINUATION
                ) {
                    dir.block = None;
                    dir.hpack.lose();
                }
                return Err(err(ParseErrorKind::TooLarge));
            }
            let Some(frame) = data.get(pos..pos + h.frame_len()) else {
                return Ok(pos);
            };
            let payload = &frame[HEADER_LEN..];
            dir.cursor = end;
            let at = pos;
            pos += h.frame_len();
            self.on_frame(d, &h, payload, start, end, out)
                .map_err(|k| ParseError::new(k, at))?;
        }
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        let dir = &mut self.dirs[direction.index()];
        dir.started = true;
        dir.synced = false;
        dir.first_frame_pending = false;
        dir.block = None;
        dir.skip = None;
        // HPACK state of this direction is lost for the rest of the connection.
        dir.hpack.lose();
    }

    fn on_close(&mut self, _end_offsets: [u64; 2], out: &mut Vec<Message>) {
        for mut s in std::mem::take(&mut self.streams) {
            emit_request(&mut s, out);
        }
    }
}
