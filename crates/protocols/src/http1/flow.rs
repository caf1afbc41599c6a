//! Per-flow HTTP/1 state: heads, body skipping, pipelining queue, interim responses, protocol switches,
//! resynchronisation.

use super::head::{self, Parsed};
use super::scan::{self, LineKind, Scan};
use super::Http1Config;
use crate::{
    Correlation, FlowParser, Limits, Message, MessageKind, ParseCtx, ParseError, ParseErrorKind,
};
use fathom_model::Direction;
use std::collections::VecDeque;
use std::sync::Arc;

/// Correlation id of a response with no known request (the engine counts it as an orphan).
const ORPHAN: u64 = u64::MAX;

/// Longest chunk-size line (size plus extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Inside the trailer section, this many trailer bytes seen.
    Trailer(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Body {
    /// Expecting a head.
    #[default]
    Head,
    /// Skipping a Content-Length body: bytes left.
    Length(u64),
    /// Skipping a chunked body.
    Chunked(Chunk),
    /// Response body delimited by the connection's close.
    UntilClose,
}

/// A message whose head was parsed and whose body is still passing.
#[derive(Debug)]
struct InFlight {
    msg: Message,
    /// Request: its sequence number. Response: the sequence number of the request it answers (None: orphan).
    seq: Option<u64>,
    body_seen: u64,
    expect_continue: bool,
}

#[derive(Debug, Default)]
struct Dir {
    role: Option<Role>,
    synced: bool,
    body: Body,
    cur: Option<InFlight>,
}

#[derive(Debug, Clone, Copy)]
struct ReqMeta {
    seq: u64,
    head: bool,
    connect: bool,
    upgrade: bool,
}

enum Step {
    Advance(usize),
    NeedMore,
    Switched(usize),
}

/// The HTTP/1 [`FlowParser`]: both directions of one connection.
///
/// Requests are emitted when their body has passed (start = first head byte, end = last body byte), responses
/// likewise. HTTP/1 answers in order (FIFO); this parser keeps its own bounded queue of the requests in flight
/// (to apply the HEAD, CONNECT and `Expect` rules to the right response) and tags each request and its answer
/// with [`Correlation::ById`] of the request's sequence number on the flow, so that the engine pairs exactly
/// as the queue says, including after a gap (see `resp_lost`). A response whose request body has not
/// finished yet is held back so that the engine always sees the request first.
#[derive(Debug)]
pub struct Http1Flow {
    cfg: Arc<Http1Config>,
    dirs: [Dir; 2],
    queue: VecDeque<ReqMeta>,
    next_seq: u64,
    /// Requests emitted so far (sequence numbers below this were emitted).
    emitted: u64,
    /// Responses waiting for their request to be emitted: (request seq, message).
    deferred: VecDeque<(u64, Message)>,
    /// Messages finished outside `parse` (by `on_gap`), emitted on the next call.
    pending_out: Vec<Message>,
    /// The request side waits for the answer to an Upgrade / CONNECT request before parsing more.
    wait_switch: bool,
    /// The connection switched protocols: nothing more to parse.
    switched: bool,
    /// The response side lost its place (gap or error): the next final response answers the newest request.
    resp_lost: bool,
    max_in_flight: usize,
}

impl Http1Flow {
    /// A new flow parser.
    pub fn new(cfg: Arc<Http1Config>, limits: &Limits) -> Http1Flow {
        Http1Flow {
            cfg,
            dirs: [Dir::default(), Dir::default()],
            queue: VecDeque::new(),
            next_seq: 0,
            emitted: 0,
            deferred: VecDeque::new(),
            pending_out: Vec::new(),
            wait_switch: false,
            switched: false,
            resp_lost: false,
            max_in_flight: limits.max_exchanges_in_flight.max(1),
        }
    }

    fn emit_request(&mut self, msg: Message, seq: Option<u64>, out: &mut Vec<Message>) {
        out.push(msg);
        if let Some(s) = seq {
            self.emitted = self.emitted.max(s + 1);
        }
        while self
            .deferred
            .front()
            .is_some_and(|(s, _)| *s < self.emitted)
        {
            if let Some((_, m)) = self.deferred.pop_front() {
                out.push(m);
            }
        }
    }

    fn emit_response(&mut self, msg: Message, seq: Option<u64>, out: &mut Vec<Message>) {
        match seq {
            Some(s) if s >= self.emitted => {
                if self.deferred.len() >= self.max_in_flight {
                    if let Some((_, m)) = self.deferred.pop_front() {
                        out.push(m);
                    }
                }
                self.deferred.push_back((s, msg));
            }
            _ => out.push(msg),
        }
    }

    /// Emit the message in flight in direction `d` (complete, or truncated at the last byte seen).
    fn finish(&mut self, d: usize, out: &mut Vec<Message>) {
        let dir = &mut self.dirs[d];
        dir.body = Body::Head;
        let Some(cur) = dir.cur.take() else {
            return;
        };
        match dir.role {
            Some(Role::Request) => self.emit_request(cur.msg, cur.seq, out),
            _ => self.emit_response(cur.msg, cur.seq, out),
        }
    }

    /// Forget direction `d`'s position (after a gap or an error): emit what is in flight, resynchronise.
    fn desync(&mut self, d: usize, out: &mut Vec<Message>) {
        self.finish(d, out);
        self.dirs[d].synced = false;
        if self.dirs[d].role != Some(Role::Request) {
            self.resp_lost = true;
        }
    }

    /// Emit everything held: messages in flight (requests first), then held-back responses.
    fn flush_all(&mut self, out: &mut Vec<Message>) {
        out.append(&mut self.pending_out);
        let order = match self.dirs[1].role {
            Some(Role::Request) => [1, 0],
            _ => [0, 1],
        };
        for d in order {
            self.finish(d, out);
        }
        out.extend(self.deferred.drain(..).map(|(_, m)| m));
    }

    fn advance(&mut self, d: usize, n: usize, end: u64) {
        if let Some(cur) = self.dirs[d].cur.as_mut() {
            cur.msg.wire_bytes += n as u64;
            cur.msg.end = end;
            cur.body_seen += n as u64;
        }
    }

    fn request_head(
        &mut self,
        d: usize,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<Option<usize>, ParseError> {
        let h = match head::parse_request(data, ctx.limits, &self.cfg.trace)? {
            Parsed::NeedMore => return Ok(None),
            Parsed::Complete(h) => h,
        };
        let start = ctx.stream_offset;
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg = Message {
            direction: ctx.direction,
            kind: MessageKind::Request,
            correlation: Correlation::ById(seq),
            start,
            end: start + h.len as u64,
            wire_bytes: h.len as u64,
            // Built in place: a Message is a few hundred bytes, moves show in profiles.
            info: h.log_info(ctx.limits, &self.cfg.trace),
        };
        let meta = ReqMeta {
            seq,
            head: h.method == "HEAD",
            connect: h.method == "CONNECT",
            upgrade: h.framing.upgrade,
        };
        if self.queue.len() >= self.max_in_flight {
            self.queue.pop_front();
        }
        self.queue.push_back(meta);
        if meta.connect || meta.upgrade {
            self.wait_switch = true;
        }
        let body = if h.framing.chunked {
            Body::Chunked(Chunk::Size)
        } else {
            match h.framing.content_length {
                Some(n) if n > 0 => Body::Length(n),
                _ => Body::Head,
            }
        };
        if body == Body::Head {
            self.emit_request(msg, Some(seq), out);
        } else {
            let dir = &mut self.dirs[d];
            dir.body = body;
            dir.cur = Some(InFlight {
                msg,
                seq: Some(seq),
                body_seen: 0,
                expect_continue: h.framing.expect_continue,
            });
        }
        Ok(Some(h.len))
    }

    fn response_head(
        &mut self,
        d: usize,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<Step, ParseError> {
        let h = match head::parse_response(data, ctx.limits, &self.cfg.trace)? {
            Parsed::NeedMore => return Ok(Step::NeedMore),
            Parsed::Complete(h) => h,
        };
        let start = ctx.stream_offset;
        let end = start + h.len as u64;
        if (100..200).contains(&h.code) && h.code != 101 {
            // Interim response (100 Continue, 103 Early Hints): not the answer, not paired.
            out.push(Message::new(
                ctx.direction,
                MessageKind::Event,
                Correlation::Unpaired,
                start,
                end,
            ));
            return Ok(Step::Advance(h.len));
        }
        if std::mem::take(&mut self.resp_lost) {
            // Responses were lost with the gap. A client that does not pipeline sends a request only after
            // the previous answer, so this response answers the newest request; the older ones stay
            // unanswered (the engine logs them as timeouts) rather than being paired with the wrong answer.
            while self.queue.len() > 1 {
                self.queue.pop_front();
            }
        }
        let meta = self.queue.pop_front();
        if let Some(m) = meta {
            // A final answer to an `Expect: 100-continue` request whose body never started: the client may
            // skip the body, so end the request at its head and look for the next request line.
            let rd = 1 - d;
            let abandon = self.dirs[rd].role == Some(Role::Request)
                && self.dirs[rd]
                    .cur
                    .as_ref()
                    .is_some_and(|c| c.seq == Some(m.seq) && c.expect_continue && c.body_seen == 0);
            if abandon {
                self.desync(rd, out);
            }
        }
        let seq = meta.map(|m| m.seq);
        let msg = Message {
            direction: ctx.direction,
            kind: MessageKind::Response,
            correlation: Correlation::ById(seq.unwrap_or(ORPHAN)),
            start,
            end,
            wire_bytes: end - start,
            // Built in place: a Message is a few hundred bytes, moves show in profiles.
            info: h.log_info(ctx.limits, &self.cfg.trace),
        };
        let switch =
            h.code == 101 || (meta.is_some_and(|m| m.connect) && (200..300).contains(&h.code));
        if switch {
            self.emit_response(msg, seq, out);
            self.flush_all(out);
            self.switched = true;
            return Ok(Step::Switched(h.len));
        }
        self.wait_switch = self.queue.iter().any(|m| m.connect || m.upgrade);
        let no_body = meta.is_some_and(|m| m.head) || h.code == 204 || h.code == 304;
        let body = if no_body {
            Body::Head
        } else if h.framing.chunked {
            Body::Chunked(Chunk::Size)
        } else {
            match h.framing.content_length {
                Some(0) => Body::Head,
                Some(n) => Body::Length(n),
                // RFC 9112 §6.3: no length and not chunked: the body runs to the connection's close.
                None => Body::UntilClose,
            }
        };
        if body == Body::Head {
            self.emit_response(msg, seq, out);
        } else {
            let dir = &mut self.dirs[d];
            dir.body = body;
            dir.cur = Some(InFlight {
                msg,
                seq,
                body_seen: 0,
                expect_continue: false,
            });
        }
        Ok(Step::Advance(h.len))
    }

    /// One step of a chunked body at `data` (positioned at `ctx.stream_offset`). Returns bytes consumed, or
    /// None when more bytes are needed.
    fn chunk_step(
        &mut self,
        d: usize,
        c: Chunk,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<Option<usize>, ParseError> {
        let at = ctx.stream_offset;
        let (n, next) = match c {
            Chunk::Size => {
                let window = data.get(..data.len().min(MAX_CHUNK_LINE)).unwrap_or(data);
                let Some(nl) = window.iter().position(|&b| b == b'\n') else {
                    if data.len() >= MAX_CHUNK_LINE {
                        return Err(ParseError::new(ParseErrorKind::TooLarge, 0));
                    }
                    return Ok(None);
                };
                let size = chunk_size(window.get(..nl).unwrap_or(&[]))?;
                let next = if size == 0 {
                    Chunk::Trailer(0)
                } else {
                    Chunk::Data(size)
                };
                (nl + 1, Some(next))
            }
            Chunk::Data(rem) => {
                let n = rem.min(data.len() as u64);
                let next = if n == rem {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem - n)
                };
                (n as usize, Some(next))
            }
            Chunk::DataEnd => match data {
                [b'\n', ..] => (1, Some(Chunk::Size)),
                [b'\r', b'\n', ..] => (2, Some(Chunk::Size)),
                [] | [b'\r'] => return Ok(None),
                _ => return Err(ParseError::new(ParseErrorKind::Invalid, 0)),
            },
            Chunk::Trailer(seen) => {
                let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                    if seen + data.len() >= ctx.limits.max_message_len {
                        return Err(ParseError::new(ParseErrorKind::TooLarge, 0));
                    }
                    return Ok(None);
                };
                let line = data.get(..nl).unwrap_or(&[]);
                if line.is_empty() || line == b"\r" {
                    (nl + 1, None)
                } else {
                    (nl + 1, Some(Chunk::Trailer(seen + nl + 1)))
                }
            }
        };
        self.advance(d, n, at + n as u64);
        match next {
            Some(c) => self.dirs[d].body = Body::Chunked(c),
            None => self.finish(d, out),
        }
        Ok(Some(n))
    }

    fn parse_inner(
        &mut self,
        d: usize,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
        pos: &mut usize,
    ) -> Result<(), ParseError> {
        let len = data.len();
        while *pos < len {
            let rest = data.get(*pos..).unwrap_or(&[]);
            let sub = ParseCtx {
                stream_offset: ctx.pos(*pos),
                ..*ctx
            };
            let dir = &mut self.dirs[d];
            if !dir.synced {
                let want = dir.role.map(|r| match r {
                    Role::Request => LineKind::Request,
                    Role::Response => LineKind::Response,
                });
                let found = scan::find_start(rest, want);
                let skipped = !matches!(found, Scan::Found(0, _) | Scan::Wait(0));
                let request_side = dir.role == Some(Role::Request)
                    || matches!(found, Scan::Found(_, LineKind::Request));
                if skipped && !request_side {
                    // Bytes skipped on the response side: answers may have been lost with them.
                    self.resp_lost = true;
                }
                let dir = &mut self.dirs[d];
                match found {
                    Scan::Found(off, kind) => {
                        *pos += off;
                        dir.synced = true;
                        dir.body = Body::Head;
                        dir.role = Some(match kind {
                            LineKind::Response => Role::Response,
                            _ => Role::Request,
                        });
                        continue;
                    }
                    Scan::Wait(off) => {
                        *pos += off;
                        return Ok(());
                    }
                    Scan::Skip => {
                        *pos = len;
                        return Ok(());
                    }
                }
            }
            match dir.body {
                Body::Head => match dir.role {
                    Some(Role::Request) => {
                        if self.wait_switch {
                            return Ok(());
                        }
                        match self
                            .request_head(d, rest, &sub, out)
                            .map_err(|e| shift(e, *pos))?
                        {
                            Some(n) => *pos += n,
                            None => return Ok(()),
                        }
                    }
                    _ => match self
                        .response_head(d, rest, &sub, out)
                        .map_err(|e| shift(e, *pos))?
                    {
                        Step::Advance(n) => *pos += n,
                        Step::NeedMore => return Ok(()),
                        Step::Switched(n) => {
                            return Err(ParseError::new(ParseErrorKind::Unsupported, *pos + n))
                        }
                    },
                },
                Body::Length(rem) => {
                    let n = rem.min(rest.len() as u64);
                    *pos += n as usize;
                    self.advance(d, n as usize, ctx.pos(*pos));
                    if n == rem {
                        self.finish(d, out);
                    } else {
                        self.dirs[d].body = Body::Length(rem - n);
                    }
                }
                Body::Chunked(c) => match self
                    .chunk_step(d, c, rest, &sub, out)
                    .map_err(|e| shift(e, *pos))?
                {
                    Some(n) => *pos += n,
                    None => return Ok(()),
                },
                Body::UntilClose => {
                    *pos = len;
                    self.advance(d, rest.len(), ctx.pos(len));
                }
            }
        }
        Ok(())
    }
}

fn shift(e: ParseError, by: usize) -> ParseError {
    ParseError::new(e.kind, e.offset.saturating_add(by))
}

/// The size of a chunk-size line (`1a3f;ext=1\r`): hex digits, then optional whitespace and extensions.
fn chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    }
    if digits > 15 {
        return Err(ParseError::new(ParseErrorKind::TooLarge, 0));
    }
    let rest = line.get(digits..).unwrap_or(&[]);
    if !rest
        .first()
        .is_none_or(|b| matches!(b, b';' | b' ' | b'\t' | b'\r'))
    {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    }
    let mut n = 0u64;
    for &b in line.get(..digits).unwrap_or(&[]) {
        let v = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = (n << 4) | u64::from(v);
    }
    Ok(n)
}

impl FlowParser for Http1Flow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        if self.switched {
            return Err(ParseError::new(ParseErrorKind::Unsupported, 0));
        }
        out.append(&mut self.pending_out);
        let d = ctx.direction.index();
        let mut pos = 0;
        match self.parse_inner(d, data, ctx, out, &mut pos) {
            Ok(()) => Ok(pos.min(data.len())),
            Err(e) => {
                if e.kind == ParseErrorKind::Unsupported {
                    self.flush_all(out);
                } else {
                    self.desync(d, out);
                }
                Err(e)
            }
        }
    }

    fn on_gap(&mut self, direction: Direction, lost: u64) {
        let d = direction.index();
        let dir = &mut self.dirs[d];
        match dir.body {
            // The gap lies inside a body of known length: still in step.
            Body::Length(rem) if lost < rem && dir.cur.is_some() => {
                dir.body = Body::Length(rem - lost);
                return;
            }
            Body::Chunked(Chunk::Data(rem)) if lost < rem && dir.cur.is_some() => {
                dir.body = Body::Chunked(Chunk::Data(rem - lost));
                return;
            }
            Body::UntilClose if dir.cur.is_some() => return,
            _ => {}
        }
        let mut out = std::mem::take(&mut self.pending_out);
        self.desync(d, &mut out);
        self.pending_out = out;
    }

    fn on_close(&mut self, _end_offsets: [u64; 2], out: &mut Vec<Message>) {
        self.flush_all(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r").ok(), Some(26));
        assert_eq!(chunk_size(b"0").ok(), Some(0));
        assert_eq!(chunk_size(b"FF;name=v\r").ok(), Some(255));
        assert!(chunk_size(b"\r").is_err());
        assert!(chunk_size(b"1g\r").is_err());
        assert!(chunk_size(b"1111111111111111").is_err());
    }
}
