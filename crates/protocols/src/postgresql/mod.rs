//! PostgreSQL frontend/backend protocol (version 3.0).
//!
//! What one log is (design.md): one simple `Query` (answered by its CommandComplete(s) / ErrorResponse /
//! EmptyQueryResponse, the response ending at ReadyForQuery: a Query carrying two statements is still one
//! log); one extended-protocol `Execute` (SQL from the Parse of the statement its Bind's portal uses,
//! answered by CommandComplete / ErrorResponse / EmptyQueryResponse / PortalSuspended); a `Parse` that fails
//! is one `Parse` log (and the messages the server then skips up to Sync produce none). A failing `Bind`,
//! `Describe` or `Close` is likewise logged under its own name. Startup, SSLRequest, GSSENCRequest,
//! CancelRequest, authentication, ParameterStatus, BackendKeyData, NoticeResponse, Sync, Flush and Terminate
//! are not logs (a NoticeResponse is never an error).
//!
//! How pairing works: the backend answers frontend messages strictly in order (ParseComplete, BindComplete,
//! ParameterDescription/RowDescription/NoData, DataRow..., CommandComplete per Execute, ReadyForQuery per
//! Sync/Query). The flow parser keeps the frontend messages awaiting an answer in a bounded queue and walks the
//! backend stream against it; it emits an exchange's Request message (with the frontend message's own start
//! and end offsets) together with its Response only once the backend has answered, so a Parse that turns out to
//! fail and the Executes the server skips are handled exactly. Pairs use [`Correlation::ById`] with an internal
//! counter. Requests still waiting when the flow closes are emitted alone (the session logs them as timeouts).
//!
//! Fields: `request_type` `Query` / `Execute` / `Parse` (or `Bind`, `Describe`, `Close` when those fail);
//! `request_resource` = SQL text (truncated to [`Limits::max_field_len`]); `endpoint` =
//! [`crate::util::sql_endpoint`]; `request_domain` = the startup message's `database` (else `user`);
//! `response_result` = the CommandComplete tag(s) (`SELECT 3`, `INSERT 0 1`; several joined with `; `);
//! `response_exception` = `SQLSTATE message`, `response_code` null; status `client_error` for SQLSTATE classes
//! 22, 23, 28, 42, else `server_error`.
//!
//! Bounds: messages are never buffered whole (a prefix of at most [`Limits::max_field_len`] + 256 bytes is
//! examined, the rest skipped as it passes); at most [`MAX_STATEMENTS`] named statements and portals and
//! `4 ×` [`Limits::max_exchanges_in_flight`] awaiting frontend messages per flow. An SSLRequest answered `S`
//! (or GSSENCRequest answered `G`) stops the flow with [`ParseErrorKind::Unsupported`].
//!
//! Mid-stream starts and gaps: a direction that lost sync looks for a chain of valid message headers that ends
//! exactly at the end of the data; every awaiting frontend message is forgotten (backend messages with nothing
//! to answer are ignored), so a gap costs the exchanges in flight, never a wrong pair. No input panics.

use crate::util::{lossy, sql_endpoint, truncate};
use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most named prepared statements (and, separately, portals) remembered per flow.
pub const MAX_STATEMENTS: usize = 64;
/// Largest message length accepted (the server's own limit is 1 GB).
pub const MAX_MESSAGE: usize = 1 << 30;
/// Protocol version 3.0 in a StartupMessage.
const PROTOCOL_3: u32 = 196_608;
/// SSLRequest code.
const SSL_REQUEST: u32 = 80_877_103;
/// GSSENCRequest code.
const GSSENC_REQUEST: u32 = 80_877_104;
/// CancelRequest code.
const CANCEL_REQUEST: u32 = 80_877_102;

/// The PostgreSQL parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresqlParser;

impl L7Parser for PostgresqlParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Postgresql
    }

    fn default_ports(&self) -> &[u16] {
        &[5432]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload, input.direction)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(PgFlow::new(limits))
    }
}

/// Frontend message types (after startup).
const fn frontend_type(t: u8) -> bool {
    matches!(
        t,
        b'Q' | b'P'
            | b'B'
            | b'D'
            | b'E'
            | b'S'
            | b'H'
            | b'C'
            | b'X'
            | b'F'
            | b'd'
            | b'c'
            | b'f'
            | b'p'
    )
}

/// Backend message types.
const fn backend_type(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'S'
            | b'K'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'E'
            | b'N'
            | b'I'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b't'
            | b's'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'A'
            | b'V'
            | b'v'
    )
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    let s = b.get(i..i.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn typed_ok(t: u8, dir: Direction) -> bool {
    match dir {
        Direction::ClientToServer => frontend_type(t),
        Direction::ServerToClient => backend_type(t),
    }
}

/// Walk typed message headers from `i`: `(headers validated, ends exactly at data end)`.
fn chain(data: &[u8], mut i: usize, dir: Direction, max: usize) -> (usize, bool) {
    let mut n = 0;
    while i < data.len() {
        let Some(&t) = data.get(i) else { break };
        let Some(len) = be32(data, i + 1) else {
            return (n, false);
        };
        let len = len as usize;
        if !typed_ok(t, dir) || !(4..=MAX_MESSAGE).contains(&len) {
            return (0, false);
        }
        n += 1;
        i += 1 + len;
        if n >= max {
            return (n, i == data.len());
        }
    }
    (n, i == data.len())
}

/// An untyped startup-phase packet at the start of `b`: `(length, code)`.
fn untyped(b: &[u8]) -> Option<(usize, u32)> {
    let len = be32(b, 0)? as usize;
    let code = be32(b, 4)?;
    let ok = match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        PROTOCOL_3 => (9..=10_000).contains(&len),
        _ => false,
    };
    ok.then_some((len, code))
}

/// Cheap detection: a StartupMessage (protocol 3.0), SSLRequest, GSSENCRequest or CancelRequest is `Yes`; a
/// `Query` or `Parse` whose length matches the data is `Yes`; other chains of valid message headers that end
/// exactly at the end of the data are `Maybe` (`Yes` for a backend chain ending with ReadyForQuery).
pub fn probe(payload: &[u8], direction: Direction) -> Probe {
    if direction == Direction::ClientToServer {
        if let Some((len, code)) = untyped(payload) {
            if code != PROTOCOL_3 {
                return if payload.len() == len {
                    Probe::Yes
                } else {
                    Probe::No
                };
            }
            // user\0name\0...: parameter names are printable.
            let key = payload
                .get(8..payload.len().min(len).min(24))
                .unwrap_or(&[]);
            return if key.first().is_some_and(u8::is_ascii_alphabetic)
                && key.iter().all(|&c| c == 0 || (0x20..0x7f).contains(&c))
            {
                Probe::Yes
            } else {
                Probe::No
            };
        }
    }
    let Some(&t) = payload.first() else {
        return Probe::No;
    };
    let (n, exact) = chain(payload, 0, direction, 64);
    if n == 0 {
        return Probe::No;
    }
    let Some(len) = be32(payload, 1) else {
        return Probe::No;
    };
    let len = len as usize;
    let body = payload.get(5..(1 + len).min(payload.len())).unwrap_or(&[]);
    let text_ok = |b: &[u8]| {
        b.iter()
            .take(64)
            .all(|&c| c >= 0x20 || c == b'\n' || c == b'\r' || c == b'\t' || c == 0)
    };
    match direction {
        Direction::ClientToServer => match t {
            b'Q' if exact && body.last() == Some(&0) && body.len() > 1 && text_ok(body) => {
                Probe::Yes
            }
            b'P' if exact && parse_shape(body) => Probe::Yes,
            _ if exact && len >= 4 => Probe::Maybe,
            _ => Probe::No,
        },
        Direction::ServerToClient => {
            if exact && payload.len() >= 6 {
                let z = &payload[payload.len() - 6..];
                if z[0] == b'Z' && be32(z, 1) == Some(5) && matches!(z[5], b'I' | b'T' | b'E') {
                    return Probe::Yes;
                }
            }
            if exact {
                Probe::Maybe
            } else {
                Probe::No
            }
        }
    }
}

/// A whole Parse body: `name\0 query\0 int16 n, n × int32`, with printable text.
fn parse_shape(body: &[u8]) -> bool {
    let Some((name, i)) = cstr(body, 0) else {
        return false;
    };
    let Some((query, j)) = cstr(body, i) else {
        return false;
    };
    let n = match body.get(j..j + 2) {
        Some(c) => u16::from_be_bytes([c[0], c[1]]) as usize,
        None => return false,
    };
    let printable = |b: &[u8]| {
        b.iter()
            .take(64)
            .all(|&c| c >= 0x20 || c.is_ascii_whitespace())
    };
    body.len() == j + 2 + 4 * n && !query.is_empty() && printable(name) && printable(query)
}

/// A frontend message awaiting the backend's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Query,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    FunctionCall,
}

impl OpKind {
    const fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "Query",
            OpKind::Parse => "Parse",
            OpKind::Bind => "Bind",
            OpKind::Describe => "Describe",
            OpKind::Execute => "Execute",
            OpKind::Close => "Close",
            OpKind::Sync => "Sync",
            OpKind::FunctionCall => "FunctionCall",
        }
    }
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    start: u64,
    end: u64,
    sql: Option<Arc<str>>,
    /// First backend byte attributed to this op.
    resp_start: Option<u64>,
    tags: Option<String>,
    error: Option<(String, String)>,
}

/// Per-direction framing.
#[derive(Debug, Default)]
struct Side {
    /// Bytes of the current message still to pass.
    skip: usize,
    /// Messages to release once the current message's last byte has passed.
    deferred: Vec<Message>,
    /// Lost sync: resynchronise before parsing.
    lost: bool,
}

/// Per-flow PostgreSQL state.
#[derive(Debug)]
pub struct PgFlow {
    sides: [Side; 2],
    /// Whether each direction has been parsed yet.
    seen: [bool; 2],
    /// The frontend is still in the untyped startup phase.
    startup: bool,
    /// The backend's next byte answers an SSLRequest / GSSENCRequest.
    ssl_answer: bool,
    db: Option<String>,
    statements: VecDeque<(String, Arc<str>)>,
    portals: VecDeque<(String, Arc<str>)>,
    ops: VecDeque<Op>,
    /// After an error in the extended protocol, the server ignores frontend messages until Sync.
    discard_until_sync: bool,
    next_id: u64,
    peek: usize,
    max_field: usize,
    max_ops: usize,
}

impl PgFlow {
    /// New state for one flow.
    pub fn new(limits: &Limits) -> PgFlow {
        PgFlow {
            sides: [Side::default(), Side::default()],
            seen: [false; 2],
            startup: true,
            ssl_answer: false,
            db: None,
            statements: VecDeque::new(),
            portals: VecDeque::new(),
            ops: VecDeque::new(),
            discard_until_sync: false,
            next_id: 0,
            peek: (limits.max_field_len + 256).min(limits.max_buffer_bytes.max(1024) / 2),
            max_field: limits.max_field_len,
            max_ops: limits.max_exchanges_in_flight.max(1) * 4,
        }
    }
}

impl FlowParser for PgFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let dir = ctx.direction;
        let d = dir.index();
        let base = ctx.stream_offset;
        if !self.seen[d] {
            self.seen[d] = true;
            if base > 0 {
                self.first_seen_late(dir);
            }
        }
        let mut i = 0usize;
        loop {
            // Pass the rest of the current message.
            if self.sides[d].skip > 0 {
                let n = self.sides[d].skip.min(data.len() - i);
                i += n;
                self.sides[d].skip -= n;
                if self.sides[d].skip > 0 {
                    return Ok(i);
                }
            }
            out.append(&mut self.sides[d].deferred);
            let rest = &data[i..];
            if rest.is_empty() {
                return Ok(i);
            }
            if self.sides[d].lost {
                match self.resync(dir, rest) {
                    Some(k) => {
                        i += k;
                        self.sides[d].lost = false;
                        continue;
                    }
                    None => return Ok(data.len()),
                }
            }
            let start = base + i as u64;
            if dir == Direction::ServerToClient && self.ssl_answer {
                self.ssl_answer = false;
                match rest[0] {
                    b'N' => {
                        i += 1;
                        continue;
                    }
                    b'S' | b'G' => return Err(ParseError::new(ParseErrorKind::Unsupported, i)),
                    _ => {} // an old server's ErrorResponse: typed
                }
            }
            if dir == Direction::ClientToServer && self.startup {
                let Some(head) = rest.get(..8) else {
                    return Ok(i);
                };
                match untyped(head) {
                    Some((len, code)) => {
                        let want = len.min(self.peek);
                        let Some(p) = rest.get(8..want) else {
                            return Ok(i);
                        };
                        match code {
                            SSL_REQUEST | GSSENC_REQUEST => self.ssl_answer = true,
                            PROTOCOL_3 => {
                                self.startup_message(p);
                                self.startup = false;
                            }
                            _ => {} // CancelRequest: the connection ends
                        }
                        i += 8;
                        self.sides[d].skip = len - 8;
                        continue;
                    }
                    None => self.startup = false, // mid-stream: typed messages
                }
            }
            let Some(hdr) = rest.get(..5) else {
                return Ok(i);
            };
            let t = hdr[0];
            let len = be32(hdr, 1).unwrap_or(0) as usize;
            if !typed_ok(t, dir) || len < 4 {
                return Err(ParseError::new(ParseErrorKind::Invalid, i));
            }
            if len > MAX_MESSAGE {
                return Err(ParseError::new(ParseErrorKind::TooLarge, i));
            }
            let want = (len - 4).min(self.peek);
            let Some(p) = rest.get(5..5 + want) else {
                return Ok(i);
            };
            let end = start + 1 + len as u64;
            let mut deferred = std::mem::take(&mut self.sides[d].deferred);
            match dir {
                Direction::ClientToServer => self.frontend(t, p, start, end),
                Direction::ServerToClient => self.backend(t, p, start, end, &mut deferred),
            }
            self.sides[d].deferred = deferred;
            i += 5;
            self.sides[d].skip = len - 4;
        }
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        let s = &mut self.sides[direction.index()];
        s.skip = 0;
        s.lost = true;
        // Released messages are whole; keep them (their bytes were all seen).
        // Awaiting frontend messages can no longer be matched with certainty.
        self.ops.clear();
        self.discard_until_sync = false;
        if direction == Direction::ServerToClient {
            self.ssl_answer = false;
        }
    }

    fn on_close(&mut self, _end_offsets: [u64; 2], out: &mut Vec<Message>) {
        for d in 0..2 {
            out.append(&mut self.sides[d].deferred);
        }
        // Queries and Executes never answered: requests alone (timeouts).
        while let Some(op) = self.ops.pop_front() {
            if matches!(op.kind, OpKind::Query | OpKind::Execute) {
                let id = self.id();
                out.push(self.request(&op, id));
            }
        }
    }
}

fn cstr(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let n = rest.iter().position(|&c| c == 0)?;
    Some((&rest[..n], i + n + 1))
}

/// SQLSTATE classes caused by the request.
fn sqlstate_status(code: &str) -> ResponseStatus {
    match code.get(..2) {
        Some("22" | "23" | "28" | "42") => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

impl PgFlow {
    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Find where a lost direction's data can be parsed from: the first offset that starts a chain of valid
    /// headers ending exactly at the end of `rest` (or at least 3 valid headers). `None`: drop it all.
    fn resync(&mut self, dir: Direction, rest: &[u8]) -> Option<usize> {
        if dir == Direction::ClientToServer {
            self.startup = false;
        }
        (0..rest.len()).find(|&k| {
            let (n, exact) = chain(rest, k, dir, 3);
            n >= 3 || (n >= 1 && exact)
        })
    }

    /// A direction's first bytes come after bytes this parser never saw (capture started mid-stream, or the
    /// session dropped them while detecting the protocol): resynchronise, and assume that the backend bytes
    /// not seen answered every frontend cycle but the last one.
    fn first_seen_late(&mut self, dir: Direction) {
        self.sides[dir.index()].lost = true;
        match dir {
            Direction::ClientToServer => self.startup = false,
            Direction::ServerToClient => {
                let ends: Vec<usize> = self
                    .ops
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| matches!(o.kind, OpKind::Sync | OpKind::Query))
                    .map(|(k, _)| k)
                    .collect();
                if ends.len() >= 2 {
                    let keep_from = ends[ends.len() - 2] + 1;
                    self.ops.drain(..keep_from);
                }
            }
        }
    }

    fn startup_message(&mut self, p: &[u8]) {
        let mut i = 0;
        let mut user = None;
        while let Some((key, next)) = cstr(p, i) {
            if key.is_empty() {
                break;
            }
            let Some((val, next2)) = cstr(p, next) else {
                break;
            };
            match key {
                b"database" if !val.is_empty() => self.db = Some(lossy(val, self.max_field)),
                b"user" => user = Some(lossy(val, self.max_field)),
                _ => {}
            }
            i = next2;
        }
        if self.db.is_none() {
            self.db = user;
        }
    }

    fn remember(map: &mut VecDeque<(String, Arc<str>)>, name: String, sql: Arc<str>) {
        map.retain(|(n, _)| *n != name);
        if map.len() >= MAX_STATEMENTS {
            map.pop_front();
        }
        map.push_back((name, sql));
    }

    fn lookup(map: &VecDeque<(String, Arc<str>)>, name: &[u8]) -> Option<Arc<str>> {
        map.iter()
            .rev()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, s)| s.clone())
    }

    fn push_op(&mut self, kind: OpKind, start: u64, end: u64, sql: Option<Arc<str>>) {
        if self.discard_until_sync {
            if kind == OpKind::Sync {
                self.discard_until_sync = false;
            } else {
                return;
            }
        }
        if self.ops.len() >= self.max_ops {
            self.ops.pop_front();
        }
        self.ops.push_back(Op {
            kind,
            start,
            end,
            sql,
            resp_start: None,
            tags: None,
            error: None,
        });
    }

    fn frontend(&mut self, t: u8, p: &[u8], start: u64, end: u64) {
        match t {
            b'Q' => {
                let sql = cstr(p, 0).map(|x| x.0).unwrap_or(p);
                let sql: Arc<str> = lossy(sql, self.max_field).into();
                self.push_op(OpKind::Query, start, end, Some(sql));
            }
            b'P' => {
                let Some((name, next)) = cstr(p, 0) else {
                    self.push_op(OpKind::Parse, start, end, None);
                    return;
                };
                let q = p.get(next..).unwrap_or(&[]);
                let q = cstr(q, 0).map(|x| x.0).unwrap_or(q);
                let sql: Arc<str> = lossy(q, self.max_field).into();
                let name = lossy(name, self.max_field);
                Self::remember(&mut self.statements, name, sql.clone());
                self.push_op(OpKind::Parse, start, end, Some(sql));
            }
            b'B' => {
                if let Some((portal, next)) = cstr(p, 0) {
                    if let Some((stmt, _)) = cstr(p, next) {
                        let sql =
                            Self::lookup(&self.statements, stmt).unwrap_or_else(|| Arc::from(""));
                        let portal = lossy(portal, self.max_field);
                        Self::remember(&mut self.portals, portal, sql);
                    }
                }
                self.push_op(OpKind::Bind, start, end, None);
            }
            b'E' => {
                let sql = cstr(p, 0)
                    .and_then(|(portal, _)| Self::lookup(&self.portals, portal))
                    .filter(|s| !s.is_empty());
                self.push_op(OpKind::Execute, start, end, sql);
            }
            b'D' => self.push_op(OpKind::Describe, start, end, None),
            b'C' => {
                if let (Some(&kind), Some((name, _))) = (p.first(), cstr(p, 1)) {
                    let map = if kind == b'S' {
                        &mut self.statements
                    } else {
                        &mut self.portals
                    };
                    map.retain(|(n, _)| n.as_bytes() != name);
                }
                self.push_op(OpKind::Close, start, end, None);
            }
            b'S' => self.push_op(OpKind::Sync, start, end, None),
            b'F' => self.push_op(OpKind::FunctionCall, start, end, None),
            _ => {} // Flush, Terminate, CopyData/Done/Fail, password / SASL messages
        }
    }

    /// Pop ops in front of the first one of `kinds` (they were answered implicitly or lost); return whether
    /// such an op is now at the front.
    fn front_is(&mut self, kinds: &[OpKind]) -> bool {
        let Some(k) = self.ops.iter().position(|o| kinds.contains(&o.kind)) else {
            return false;
        };
        self.ops.drain(..k);
        true
    }

    fn backend(&mut self, t: u8, p: &[u8], start: u64, end: u64, out: &mut Vec<Message>) {
        if let Some(op) = self.ops.front_mut() {
            if op.resp_start.is_none() && !matches!(t, b'N' | b'S' | b'A') {
                op.resp_start = Some(start);
            }
        }
        match t {
            b'1' => self.complete_simple(OpKind::Parse),
            b'2' => self.complete_simple(OpKind::Bind),
            b'3' => self.complete_simple(OpKind::Close),
            b'n' => self.complete_simple(OpKind::Describe),
            b'V' => self.complete_simple(OpKind::FunctionCall),
            b'T' if self.ops.front().is_some_and(|o| o.kind == OpKind::Describe) => {
                self.ops.pop_front();
            }
            b'C' | b'I' | b's' => {
                if !self.front_is(&[OpKind::Execute, OpKind::Query]) {
                    return;
                }
                let tag = match t {
                    b'C' => Some(lossy(cstr(p, 0).map(|x| x.0).unwrap_or(p), self.max_field)),
                    b's' => Some("PortalSuspended".to_string()),
                    _ => None,
                };
                let max = self.max_field;
                let Some(op) = self.ops.front_mut() else {
                    return;
                };
                if let Some(tag) = tag {
                    op.tags = Some(match op.tags.take() {
                        Some(prev) => truncate(&format!("{prev}; {tag}"), max).to_string(),
                        None => tag,
                    });
                }
                if op.kind == OpKind::Execute {
                    if let Some(op) = self.ops.pop_front() {
                        self.finish(op, end, out);
                    }
                }
            }
            b'E' => {
                let err = self.error_fields(p);
                let Some(op) = self.ops.front_mut() else {
                    return;
                };
                match op.kind {
                    OpKind::Query => {
                        if op.error.is_none() {
                            op.error = Some(err);
                        }
                    }
                    OpKind::Sync => {} // e.g. a commit failing at Sync: no request to blame
                    _ => {
                        op.error = Some(err);
                        if let Some(op) = self.ops.pop_front() {
                            self.finish(op, end, out);
                        }
                        // The server skips everything up to the next Sync.
                        match self.ops.iter().position(|o| o.kind == OpKind::Sync) {
                            Some(k) => {
                                self.ops.drain(..k);
                            }
                            None => {
                                self.ops.clear();
                                self.discard_until_sync = true;
                            }
                        }
                    }
                }
            }
            b'Z' => {
                while let Some(op) = self.ops.pop_front() {
                    match op.kind {
                        OpKind::Query => {
                            self.finish(op, end, out);
                            break;
                        }
                        OpKind::Sync => break,
                        _ => {} // skipped by the server or answered implicitly
                    }
                }
            }
            _ => {} // DataRow, ParameterDescription, notices, status, auth, copy
        }
    }

    fn complete_simple(&mut self, kind: OpKind) {
        if self.front_is(&[kind]) {
            self.ops.pop_front();
        }
    }

    fn error_fields(&self, p: &[u8]) -> (String, String) {
        let mut code = String::new();
        let mut msg = String::new();
        let mut i = 0;
        while let Some(&f) = p.get(i) {
            if f == 0 {
                break;
            }
            let Some((v, next)) = cstr(p, i + 1) else {
                // Truncated by the peek: take what there is.
                if f == b'M' {
                    msg = lossy(p.get(i + 1..).unwrap_or(&[]), self.max_field);
                }
                break;
            };
            match f {
                b'C' => code = lossy(v, 16),
                b'M' => msg = lossy(v, self.max_field),
                _ => {}
            }
            i = next;
        }
        (code, msg)
    }

    fn request(&self, op: &Op, id: u64) -> Message {
        let info = LogInfo {
            request_type: Some(op.kind.as_str().to_string()),
            request_domain: self.db.clone(),
            endpoint: op.sql.as_deref().and_then(sql_endpoint),
            request_resource: op.sql.as_deref().map(str::to_string),
            ..LogInfo::default()
        };
        Message::new(
            Direction::ClientToServer,
            MessageKind::Request,
            Correlation::ById(id),
            op.start,
            op.end,
        )
        .with_info(info)
    }

    /// Emit a finished exchange: the request, then its response ending at `end`.
    fn finish(&mut self, op: Op, end: u64, out: &mut Vec<Message>) {
        let id = self.id();
        out.push(self.request(&op, id));
        let mut info = LogInfo::default();
        match op.error {
            Some((code, msg)) => {
                info.response_status = Some(sqlstate_status(&code));
                let exc = if code.is_empty() {
                    msg
                } else {
                    format!("{code} {msg}")
                };
                info.response_exception = Some(truncate(&exc, self.max_field).to_string());
            }
            None => info.response_status = Some(ResponseStatus::Ok),
        }
        info.response_result = op.tags;
        let start = op.resp_start.unwrap_or(end).min(end);
        out.push(
            Message::new(
                Direction::ServerToClient,
                MessageKind::Response,
                Correlation::ById(id),
                start,
                end,
            )
            .with_info(info),
        );
    }
}

#[cfg(test)]
mod tests;
