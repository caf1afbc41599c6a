//! MySQL / MariaDB client/server protocol.
//!
//! One log per command packet (`COM_*`), paired with the server's complete response (OK, ERR, EOF, a result
//! set with its column definitions and rows, a `COM_STMT_PREPARE` OK with its definitions, binary rows for
//! `COM_STMT_EXECUTE`, multi-result sets chained by `SERVER_MORE_RESULTS_EXISTS`). `COM_QUIT`,
//! `COM_STMT_CLOSE` and `COM_STMT_SEND_LONG_DATA` are one-way. The connection phase (greeting, handshake
//! response, authentication exchanges) produces no logs; it gives the default database (`request_domain`),
//! the capabilities (`CLIENT_DEPRECATE_EOF`, `CLIENT_COMPRESS`) and the SSL switch (the flow then stops with
//! [`crate::ParseErrorKind::Unsupported`]).
//!
//! Fields: `request_type` = command name; `request_resource` = SQL text for `COM_QUERY` /
//! `COM_STMT_PREPARE` / `COM_STMT_EXECUTE` (the prepared text, looked up by statement id in a bounded per-flow
//! map; `stmt_id=N` when unknown), `stmt_id=N` for the other statement commands, the schema for
//! `COM_INIT_DB`; `endpoint` = [`crate::util::sql_endpoint`] of the SQL, else the command name;
//! `request_domain` = the current database (handshake response, then `COM_INIT_DB`); `response_code` = ERR
//! code, `response_exception` = ERR message, status `client_error` for codes 2000–2999 and `server_error`
//! otherwise; `response_result` = `affected_rows=N` (OK), `rows=N` (result sets), `statement_id=N` (prepare).
//!
//! Framing: 3-byte little-endian length + sequence id; a 0xffffff length continues in the next packet (the
//! logical packet ends with the first shorter one). Packet payloads are never buffered whole: the parser looks
//! at a bounded prefix ([`Limits::max_field_len`] + 64 bytes) and skips the rest as it passes, so rows and
//! large statements cost no memory. The compressed protocol (`CLIENT_COMPRESS` negotiated by both sides) is
//! followed: each compressed packet (7-byte header) is inflated with zlib and the inner packets are parsed as
//! usual, with offsets mapped back to the compressed stream; a compressed packet must fit in
//! [`Limits::max_buffer_bytes`] and inflate to at most [`MAX_INFLATED`] bytes, else the direction
//! resynchronises (counted as `too_large`).
//!
//! Mid-stream starts and gaps: the client side resynchronises on a packet with sequence id 0, a known command
//! byte and a length ending exactly at a segment end; the server side drops everything until a command is
//! seen, then requires the response's first packet (sequence id 1). Requests pair with responses by an
//! internal command counter ([`Correlation::ById`]), so a lost response leaves its request a timeout instead of
//! shifting every later pair.
//!
//! No input panics; state is bounded by [`Limits`] ([`MAX_STATEMENTS`] prepared statements per flow).

pub mod wire;

use crate::util::{lossy, sql_endpoint};
use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use std::collections::VecDeque;
use wire::{caps, status, Command};

/// Most prepared statements remembered per flow (oldest forgotten first).
pub const MAX_STATEMENTS: usize = 64;
/// Largest inflated size of one compressed packet.
pub const MAX_INFLATED: usize = 1 << 20;
/// A packet length field that means "continued in the next packet".
const MAX_PACKET: usize = 0x00ff_ffff;

/// The MySQL / MariaDB parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct MysqlParser;

impl L7Parser for MysqlParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Mysql
    }

    fn default_ports(&self) -> &[u16] {
        &[3306]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload, input.direction)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(MysqlFlow::new(limits))
    }
}

fn printable(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c >= 0x20 && c != 0x7f || c == b'\n' || c == b'\r' || c == b'\t')
}

/// Cheap detection: a server greeting (protocol 10, printable version) is `Yes`; a command packet with sequence
/// id 0, a known command byte and a length that matches the payload exactly is `Yes` (SQL commands: printable
/// text; others: the command's fixed length, e.g. 1 for `COM_PING`), `Maybe` for the start of a longer SQL
/// command, and an ERR packet from the server is `Maybe`.
pub fn probe(payload: &[u8], direction: Direction) -> Probe {
    let Some(hdr) = payload.get(..5) else {
        return Probe::No;
    };
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
    let seq = hdr[3];
    if seq != 0 || len == 0 {
        return Probe::No;
    }
    let body = &payload[4..];
    match direction {
        Direction::ServerToClient => {
            if hdr[4] == 0x0a && (20..=1024).contains(&len) {
                let Some((ver, _)) = wire::cstr(body, 1) else {
                    return Probe::No;
                };
                if !ver.is_empty()
                    && ver.len() <= 64
                    && ver.first().is_some_and(u8::is_ascii_digit)
                    && printable(ver)
                {
                    return Probe::Yes;
                }
                return Probe::No;
            }
            if hdr[4] == 0xff && (3..=1024).contains(&len) && body.len() == len {
                return Probe::Maybe;
            }
            Probe::No
        }
        Direction::ClientToServer => {
            let cmd = Command(hdr[4]);
            if cmd.as_str().is_none() {
                return Probe::No;
            }
            // A whole packet (possibly followed by more) or the start of one.
            let whole = body.len() >= len;
            if whole && body.len() > len {
                // Something follows: it must look like another command packet.
                let next = &body[len..];
                if next.len() >= 5 && (next[3] != 0 || Command(next[4]).as_str().is_none()) {
                    return Probe::No;
                }
            }
            if cmd.carries_sql() {
                let text = &body[1..body.len().min(len).min(65)];
                if !text.is_empty() && printable(text) && len < MAX_PACKET {
                    return if whole { Probe::Yes } else { Probe::Maybe };
                }
                return Probe::No;
            }
            let plausible = match cmd {
                Command::QUIT | Command::PING | Command::STATISTICS => len == 1,
                Command::STMT_CLOSE | Command::STMT_RESET => len == 5,
                Command::STMT_EXECUTE => len >= 10,
                Command::INIT_DB => len > 1 && printable(&body[1..body.len().min(len)]),
                _ => false,
            };
            if plausible && whole {
                Probe::Yes
            } else {
                Probe::No
            }
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing seen yet: a greeting, or (mid-stream) a command.
    Start,
    /// Greeting seen; the client's handshake response comes next.
    Greeted,
    /// Handshake response seen; authentication exchanges until the server's OK / ERR.
    Auth,
    /// Command phase.
    Command,
}

/// What the response to a command looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// OK / ERR / EOF.
    Simple,
    /// OK / ERR / LOCAL INFILE / text result set(s).
    Query,
    /// OK / ERR / binary result set(s).
    Execute,
    /// PREPARE OK + definitions / ERR.
    Prepare,
    /// Column definitions until EOF / ERR.
    FieldList,
    /// One string packet.
    Statistics,
    /// Binary rows until EOF / ERR.
    Fetch,
    /// Authentication exchanges (auth switch, more data) until OK / ERR.
    ChangeUser,
}

#[derive(Debug)]
struct PendingCmd {
    id: u64,
    expect: Expect,
    /// SQL of a `COM_STMT_PREPARE`, remembered under the statement id the server assigns.
    prepare_sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RState {
    First,
    Cols { left: u64, binary: bool },
    ColsEof { binary: bool },
    Rows { binary: bool },
    PrepParams { left: u64, cols: u64 },
    PrepParamsEof { cols: u64 },
    PrepCols { left: u64 },
    PrepColsEof,
    Infile,
}

#[derive(Debug)]
struct Resp {
    cmd: PendingCmd,
    start: u64,
    state: RState,
    rows: u64,
    affected: Option<u64>,
    statement: Option<u32>,
    error: Option<(u16, String)>,
    /// The response ends with the packet in progress.
    done: bool,
}

/// Per-direction framing state.
#[derive(Debug, Default)]
struct Framer {
    /// Payload bytes of the current fragment still to pass.
    skip: usize,
    /// Inside a packet (between its header and its last payload byte).
    in_packet: bool,
    /// The current fragment had length 0xffffff: the next packet continues it.
    cont: bool,
    /// Direction lost sync (gap, mid-stream): resynchronise before parsing.
    lost: bool,
    /// Compressed-protocol state once compression is on.
    inflate: Option<Box<Inflate>>,
}

/// The compressed protocol's inner stream of one direction.
#[derive(Debug, Default)]
struct Inflate {
    /// Inflated bytes not yet consumed by the inner framer.
    buf: Vec<u8>,
    /// Virtual offset of `buf[0]` in the inner stream.
    base: u64,
    /// (inner start, outer start, outer end) of each compressed packet still referenced.
    map: VecDeque<(u64, u64, u64)>,
    inner: Framer,
}

/// The semantic state of one connection.
#[derive(Debug)]
struct Conv {
    stage: Stage,
    peek: usize,
    max_field: usize,
    max_pending: usize,
    server_caps: u32,
    server_ext_caps: u32,
    client_caps: u32,
    client_ext_caps: u32,
    db: Option<String>,
    statements: VecDeque<(u32, String)>,
    pending: VecDeque<PendingCmd>,
    resp: Option<Resp>,
    /// The command packet in progress (client side): its request message, emitted at its end.
    cmd_msg: Option<(Message, Option<PendingCmd>)>,
    next_id: u64,
    /// Turn compression on in both directions after the current server packet.
    compress_after_auth: bool,
}

/// Per-flow MySQL state.
#[derive(Debug)]
pub struct MysqlFlow {
    framers: [Framer; 2],
    /// Whether each direction has been parsed yet.
    seen: [bool; 2],
    conv: Conv,
    max_buffer: usize,
}

impl MysqlFlow {
    /// New state for one flow.
    pub fn new(limits: &Limits) -> MysqlFlow {
        let peek = (limits.max_field_len + 64)
            .max(256)
            .min(limits.max_buffer_bytes.max(512) / 2);
        MysqlFlow {
            framers: [Framer::default(), Framer::default()],
            seen: [false; 2],
            conv: Conv {
                stage: Stage::Start,
                peek,
                max_field: limits.max_field_len,
                max_pending: limits.max_exchanges_in_flight.max(1),
                server_caps: 0,
                server_ext_caps: 0,
                client_caps: 0,
                client_ext_caps: 0,
                db: None,
                statements: VecDeque::new(),
                pending: VecDeque::new(),
                resp: None,
                cmd_msg: None,
                next_id: 0,
                compress_after_auth: false,
            },
            max_buffer: limits.max_buffer_bytes,
        }
    }
}

/// What the framer tells the conversation.
enum Step {
    /// Keep going.
    Go,
    /// Stop parsing the flow.
    Stop(ParseErrorKind),
}

impl Framer {
    /// Consume whole packets (or passing payload) from `data` whose first byte is at absolute offset `base`.
    fn feed(
        &mut self,
        data: &[u8],
        base: u64,
        dir: Direction,
        conv: &mut Conv,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let mut i = 0usize;
        loop {
            if self.in_packet {
                let n = self.skip.min(data.len() - i);
                i += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(i);
                }
                self.in_packet = false;
                if !self.cont {
                    conv.packet_end(dir, base + i as u64, out);
                }
                continue;
            }
            let rest = &data[i..];
            if self.lost {
                match conv.resync(dir, rest) {
                    Some(true) => self.lost = false,
                    Some(false) => return Ok(data.len()),
                    None => return Ok(i),
                }
            }
            let Some(hdr) = rest.get(..4) else {
                return Ok(i);
            };
            let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
            let seq = hdr[3];
            if self.cont {
                self.cont = len == MAX_PACKET;
                i += 4;
                self.skip = len;
                self.in_packet = true;
                continue;
            }
            let want = len.min(conv.peek);
            let Some(prefix) = rest.get(4..4 + want) else {
                return Ok(i);
            };
            let start = base + i as u64;
            match conv.packet_start(dir, seq, len, prefix, start, out) {
                Step::Go => {}
                Step::Stop(kind) => return Err(ParseError::new(kind, i)),
            }
            self.cont = len == MAX_PACKET;
            i += 4;
            self.skip = len;
            self.in_packet = true;
        }
    }
}

impl Inflate {
    /// Consume compressed packets from `data` (absolute offset `base`), feeding the inner framer.
    fn feed(
        &mut self,
        data: &[u8],
        base: u64,
        dir: Direction,
        conv: &mut Conv,
        out: &mut Vec<Message>,
        max_buffer: usize,
    ) -> Result<usize, ParseError> {
        let mut i = 0usize;
        while let Some(hdr) = data.get(i..i + 7) {
            let clen = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
            let ulen = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], 0]) as usize;
            if clen + 7 > max_buffer || ulen > MAX_INFLATED {
                return Err(ParseError::new(ParseErrorKind::TooLarge, i));
            }
            let Some(body) = data.get(i + 7..i + 7 + clen) else {
                break;
            };
            let inner_start = self.base + self.buf.len() as u64;
            if ulen == 0 {
                self.buf.extend_from_slice(body);
            } else {
                let before = self.buf.len();
                let mut d = flate2::Decompress::new(true);
                self.buf.reserve(ulen);
                let ok = d
                    .decompress_vec(body, &mut self.buf, flate2::FlushDecompress::Finish)
                    .is_ok();
                if !ok || self.buf.len() - before != ulen {
                    self.buf.truncate(before);
                    return Err(ParseError::new(ParseErrorKind::BadValue, i));
                }
            }
            let outer_start = base + i as u64;
            i += 7 + clen;
            self.map
                .push_back((inner_start, outer_start, base + i as u64));
            let first_new = out.len();
            let consumed = self.inner.feed(&self.buf, self.base, dir, conv, out)?;
            self.buf.drain(..consumed.min(self.buf.len()));
            self.base += consumed as u64;
            for m in &mut out[first_new..] {
                m.start = self.outer(m.start, true);
                m.end = self.outer(m.end.saturating_sub(1), false);
                m.wire_bytes = m.end.saturating_sub(m.start);
            }
            // Forget mappings of compressed packets wholly consumed.
            while self.map.len() > 1 && self.map.get(1).is_some_and(|m| m.0 <= self.base) {
                self.map.pop_front();
            }
            if self.buf.len() > MAX_INFLATED {
                return Err(ParseError::new(ParseErrorKind::TooLarge, i));
            }
        }
        Ok(i)
    }

    /// The outer (compressed stream) offset for inner offset `pos`: the start of the compressed packet that
    /// holds it, or its end.
    fn outer(&self, pos: u64, start: bool) -> u64 {
        let k = self.map.partition_point(|m| m.0 <= pos);
        match self.map.get(k.saturating_sub(1)) {
            Some(&(_, s, e)) => {
                if start {
                    s
                } else {
                    e
                }
            }
            None => pos,
        }
    }
}

impl FlowParser for MysqlFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let d = ctx.direction.index();
        if !self.seen[d] {
            self.seen[d] = true;
            if ctx.stream_offset > 0 {
                // Bytes before these were never seen (capture started mid-stream, or the session dropped them
                // while detecting the protocol): resynchronise, and assume the server bytes not seen answered
                // every pending command but the last.
                self.framers[d].lost = true;
                if ctx.direction == Direction::ServerToClient {
                    while self.conv.pending.len() > 1 {
                        self.conv.pending.pop_front();
                    }
                }
            }
        }
        let framer = &mut self.framers[d];
        let r = match framer.inflate.as_mut() {
            Some(inf) => inf.feed(
                data,
                ctx.stream_offset,
                ctx.direction,
                &mut self.conv,
                out,
                self.max_buffer,
            ),
            None => framer.feed(data, ctx.stream_offset, ctx.direction, &mut self.conv, out),
        };
        if self.conv.compress_after_auth {
            // The server's OK ended the connection phase: everything after it is compressed. The OK itself is
            // the last uncompressed packet, so the server side switches at the end of this call's data.
            self.conv.compress_after_auth = false;
            for f in &mut self.framers {
                if f.inflate.is_none() {
                    f.inflate = Some(Box::default());
                }
            }
        }
        r
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        let f = &mut self.framers[direction.index()];
        *f = Framer {
            lost: true,
            inflate: f.inflate.take().map(|_| Box::default()),
            ..Framer::default()
        };
        if let Some(inf) = f.inflate.as_mut() {
            // Compressed packets cannot be found mid-stream: stay lost until the next compressed header we
            // trust (the inner framer resynchronises on its own).
            inf.inner.lost = true;
        }
        let conv = &mut self.conv;
        if direction == Direction::ClientToServer {
            conv.cmd_msg = None;
        }
        // Commands or responses were lost: the responses still to come cannot be matched to the commands
        // pending now. Forget them (their requests become timeouts) and pair again from the next command.
        conv.pending.clear();
        conv.resp = None;
        // The server side must find the next response's first packet.
        let s = &mut self.framers[Direction::ServerToClient.index()];
        s.lost = true;
        s.in_packet = false;
        s.cont = false;
        if let Some(inf) = s.inflate.as_mut() {
            inf.inner.lost = true;
        }
    }
}

impl Conv {
    fn deprecate_eof(&self) -> bool {
        self.client_caps & self.server_caps & caps::DEPRECATE_EOF != 0
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Decide whether `rest` (a lost direction's data) starts at a packet boundary: `Some(true)` yes,
    /// `Some(false)` drop it all, `None` need more bytes.
    fn resync(&mut self, dir: Direction, rest: &[u8]) -> Option<bool> {
        let hdr = rest.get(..5)?;
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
        let seq = hdr[3];
        match dir {
            Direction::ClientToServer => {
                let ok = seq == 0
                    && len >= 1
                    && Command(hdr[4]).as_str().is_some()
                    && (rest.len() == 4 + len
                        || rest
                            .get(4 + len..4 + len + 5)
                            .is_some_and(|n| n[3] == 0 && Command(n[4]).as_str().is_some()));
                if ok {
                    self.stage = Stage::Command;
                }
                Some(ok)
            }
            Direction::ServerToClient => {
                Some(self.resp.is_none() && !self.pending.is_empty() && seq == 1 && len >= 1)
            }
        }
    }

    fn packet_start(
        &mut self,
        dir: Direction,
        seq: u8,
        len: usize,
        p: &[u8],
        start: u64,
        out: &mut Vec<Message>,
    ) -> Step {
        match dir {
            Direction::ClientToServer => self.client_packet(seq, len, p, start, out),
            Direction::ServerToClient => {
                self.server_packet(seq, len, p, start);
                Step::Go
            }
        }
    }

    fn packet_end(&mut self, dir: Direction, end: u64, out: &mut Vec<Message>) {
        match dir {
            Direction::ClientToServer => {
                if let Some((mut msg, cmd)) = self.cmd_msg.take() {
                    msg.end = end;
                    msg.wire_bytes = end.saturating_sub(msg.start);
                    out.push(msg);
                    if let Some(cmd) = cmd {
                        if self.pending.len() >= self.max_pending {
                            self.pending.pop_front();
                        }
                        self.pending.push_back(cmd);
                    }
                }
            }
            Direction::ServerToClient => {
                if self.resp.as_ref().is_some_and(|r| r.done) {
                    if let Some(r) = self.resp.take() {
                        out.push(self.response_message(r, end));
                    }
                }
            }
        }
    }

    fn client_packet(
        &mut self,
        seq: u8,
        len: usize,
        p: &[u8],
        start: u64,
        _out: &mut Vec<Message>,
    ) -> Step {
        match self.stage {
            Stage::Greeted | Stage::Start if seq == 1 => {
                self.handshake_response(len, p);
                if len == p.len() && len <= 32 && self.client_caps & caps::SSL != 0 {
                    // SSLRequest: the rest of the connection is TLS.
                    return Step::Stop(ParseErrorKind::Unsupported);
                }
                self.stage = Stage::Auth;
                Step::Go
            }
            Stage::Auth if seq != 0 => Step::Go,
            _ if seq != 0 => Step::Go, // LOCAL INFILE contents, auth switch data
            _ => {
                let Some(&b) = p.first() else {
                    return Step::Go;
                };
                let cmd = Command(b);
                let Some(name) = cmd.as_str() else {
                    return Step::Stop(ParseErrorKind::Invalid);
                };
                self.stage = Stage::Command;
                self.command(cmd, name, len, p, start);
                Step::Go
            }
        }
    }

    fn handshake_response(&mut self, _len: usize, p: &[u8]) {
        let Some(c) = wire::u32_at(p, 0) else {
            return;
        };
        if c & caps::PROTOCOL_41 == 0 {
            return;
        }
        self.client_caps = c;
        self.client_ext_caps = if c & 1 == 0 {
            wire::u32_at(p, 28).unwrap_or(0)
        } else {
            0
        };
        // caps(4) max packet(4) charset(1) filler(23) user\0 auth [db\0]
        let Some((_user, mut i)) = wire::cstr(p, 32) else {
            return;
        };
        if c & caps::PLUGIN_AUTH_LENENC != 0 {
            let Some((n, used)) = wire::lenenc(p, i) else {
                return;
            };
            i = i.saturating_add(used).saturating_add(n as usize);
        } else if c & caps::SECURE_CONNECTION != 0 {
            let Some(&n) = p.get(i) else {
                return;
            };
            i += 1 + n as usize;
        } else {
            let Some((_, next)) = wire::cstr(p, i) else {
                return;
            };
            i = next;
        }
        if c & caps::CONNECT_WITH_DB != 0 {
            if let Some((db, _)) = wire::cstr(p, i) {
                if !db.is_empty() {
                    self.db = Some(lossy(db, self.max_field));
                }
            }
        }
    }

    fn statement(&self, id: u32) -> Option<&str> {
        self.statements
            .iter()
            .rev()
            .find(|(s, _)| *s == id)
            .map(|(_, sql)| sql.as_str())
    }

    fn command(&mut self, cmd: Command, name: &'static str, len: usize, p: &[u8], start: u64) {
        let body = p.get(1..).unwrap_or(&[]);
        let mut info = LogInfo {
            request_type: Some(name.to_string()),
            ..LogInfo::default()
        };
        let stmt_id = wire::u32_at(body, 0);
        let mut prepare_sql = None;
        match cmd {
            Command::QUERY | Command::STMT_PREPARE => {
                let sql = self.query_text(cmd, len, body);
                info.endpoint = sql_endpoint(&sql);
                if cmd == Command::STMT_PREPARE {
                    prepare_sql = Some(sql.clone());
                }
                info.request_resource = Some(sql);
            }
            Command::STMT_EXECUTE | Command::STMT_BULK_EXECUTE => {
                if let Some(id) = stmt_id {
                    match self.statement(id) {
                        Some(sql) => {
                            info.endpoint = sql_endpoint(sql);
                            info.request_resource = Some(sql.to_string());
                        }
                        None => info.request_resource = Some(format!("stmt_id={id}")),
                    }
                }
            }
            Command::STMT_RESET
            | Command::STMT_CLOSE
            | Command::STMT_FETCH
            | Command::STMT_SEND_LONG_DATA => {
                if let Some(id) = stmt_id {
                    info.request_resource = Some(format!("stmt_id={id}"));
                    if cmd == Command::STMT_CLOSE {
                        self.statements.retain(|(s, _)| *s != id);
                    }
                }
            }
            Command::FIELD_LIST | Command::CHANGE_USER => {
                // table\0 wildcard / user\0 auth...: the first string.
                let name = wire::cstr(body, 0).map(|x| x.0).unwrap_or(body);
                if !name.is_empty() {
                    info.request_resource = Some(lossy(name, self.max_field));
                }
            }
            Command::INIT_DB => {
                let db = lossy(body, self.max_field);
                if !db.is_empty() {
                    self.db = Some(db.clone());
                    info.request_resource = Some(db);
                }
            }
            _ => {}
        }
        if info.endpoint.is_none() {
            info.endpoint = Some(name.to_string());
        }
        info.request_domain = self.db.clone();
        let one_way = cmd.is_one_way();
        let id = self.next_id();
        let (kind, corr) = if one_way {
            (MessageKind::OneWay, Correlation::Unpaired)
        } else {
            (MessageKind::Request, Correlation::ById(id))
        };
        let msg = Message::new(Direction::ClientToServer, kind, corr, start, start).with_info(info);
        let pending = (!one_way).then_some(PendingCmd {
            id,
            expect: match cmd {
                Command::QUERY | Command::PROCESS_INFO => Expect::Query,
                Command::STMT_EXECUTE | Command::STMT_BULK_EXECUTE => Expect::Execute,
                Command::STMT_PREPARE => Expect::Prepare,
                Command::FIELD_LIST => Expect::FieldList,
                Command::STATISTICS => Expect::Statistics,
                Command::STMT_FETCH => Expect::Fetch,
                Command::CHANGE_USER => Expect::ChangeUser,
                _ => Expect::Simple,
            },
            prepare_sql,
        });
        self.cmd_msg = Some((msg, pending));
    }

    /// The SQL text of a `COM_QUERY` / `COM_STMT_PREPARE` payload (after the command byte).
    fn query_text(&self, cmd: Command, len: usize, body: &[u8]) -> String {
        let mut text = body;
        if cmd == Command::QUERY
            && self.client_caps & self.server_caps & caps::QUERY_ATTRIBUTES != 0
        {
            // parameter_count, parameter_set_count, then (when parameters) the bound attributes: only the
            // attribute-free form is decoded; with attributes the text is skipped past as far as possible.
            if let Some((n, u1)) = wire::lenenc(body, 0) {
                if let Some((_, u2)) = wire::lenenc(body, u1) {
                    if n == 0 {
                        text = body.get(u1 + u2..).unwrap_or(&[]);
                    } else {
                        text = skip_query_attributes(body, u1 + u2, n).unwrap_or(&[]);
                    }
                }
            }
        }
        let _ = len;
        lossy(text, self.max_field)
    }

    fn server_packet(&mut self, seq: u8, len: usize, p: &[u8], start: u64) {
        let b0 = p.first().copied();
        match self.stage {
            Stage::Start | Stage::Greeted if seq == 0 && b0 == Some(0x0a) => {
                self.greeting(p);
                self.stage = Stage::Greeted;
                return;
            }
            Stage::Start | Stage::Greeted => return,
            Stage::Auth => {
                match b0 {
                    Some(0x00) => {
                        self.stage = Stage::Command;
                        if self.client_caps & self.server_caps & caps::COMPRESS != 0 {
                            self.compress_after_auth = true;
                        }
                    }
                    Some(0xff) => self.stage = Stage::Command,
                    _ => {} // auth switch, more data
                }
                return;
            }
            Stage::Command => {}
        }
        if self.resp.is_none() {
            let Some(cmd) = self.pending.pop_front() else {
                return; // unsolicited (or mid-stream): nothing to pair with
            };
            self.resp = Some(Resp {
                cmd,
                start,
                state: RState::First,
                rows: 0,
                affected: None,
                statement: None,
                error: None,
                done: false,
            });
        }
        let deprecate_eof = self.deprecate_eof();
        let ext_meta =
            self.client_ext_caps & self.server_ext_caps & caps::MARIADB_CACHE_METADATA != 0;
        let max_field = self.max_field;
        let Some(r) = self.resp.as_mut() else {
            return;
        };
        let b0 = b0.unwrap_or(0);
        let is_err = b0 == 0xff;
        let is_eof = b0 == 0xfe && len < 9;
        let is_terminator = b0 == 0xfe && len < MAX_PACKET;
        let mut new_statement = None;
        if is_err {
            if let Some((code, msg)) = wire::err_packet(p) {
                r.error = Some((code, lossy(msg, max_field)));
            }
            r.done = true;
            return;
        }
        match r.state {
            RState::First => match r.cmd.expect {
                Expect::Statistics => r.done = true,
                Expect::ChangeUser => r.done = matches!(b0, 0x00 | 0xff),
                Expect::Simple => {
                    if b0 == 0x00 {
                        r.affected = wire::ok_packet(p).map(|x| x.0);
                    }
                    r.done = true;
                }
                Expect::FieldList => {
                    if is_eof {
                        r.done = true;
                    }
                }
                Expect::Fetch => {
                    r.state = RState::Rows { binary: true };
                    Self::row(r, is_terminator, len, p, deprecate_eof);
                }
                Expect::Prepare => {
                    if b0 == 0x00 && len >= 12 {
                        let id = wire::u32_at(p, 1).unwrap_or(0);
                        let cols = wire::u16_at(p, 5).unwrap_or(0) as u64;
                        let params = wire::u16_at(p, 7).unwrap_or(0) as u64;
                        r.statement = Some(id);
                        if let Some(sql) = r.cmd.prepare_sql.take() {
                            new_statement = Some((id, sql));
                        }
                        r.state = if params > 0 {
                            RState::PrepParams { left: params, cols }
                        } else if cols > 0 {
                            RState::PrepCols { left: cols }
                        } else {
                            r.done = true;
                            RState::First
                        };
                    } else {
                        r.done = true;
                    }
                }
                Expect::Query | Expect::Execute => {
                    let binary = r.cmd.expect == Expect::Execute;
                    if b0 == 0x00 {
                        let (affected, st) = wire::ok_packet(p).unwrap_or((0, 0));
                        r.affected = Some(r.affected.unwrap_or(0) + affected);
                        r.done = st & status::MORE_RESULTS_EXISTS == 0;
                    } else if b0 == 0xfb && !binary {
                        r.state = RState::Infile;
                    } else if is_eof {
                        r.done = true;
                    } else {
                        match wire::lenenc(p, 0) {
                            Some((n, used)) if n > 0 => {
                                let meta = !(binary && ext_meta) || p.get(used) != Some(&0);
                                r.state = if meta {
                                    RState::Cols { left: n, binary }
                                } else {
                                    RState::Rows { binary }
                                };
                            }
                            _ => r.done = true,
                        }
                    }
                }
            },
            RState::Cols { left, binary } => {
                r.state = if left > 1 {
                    RState::Cols {
                        left: left - 1,
                        binary,
                    }
                } else if deprecate_eof {
                    RState::Rows { binary }
                } else {
                    RState::ColsEof { binary }
                };
            }
            RState::ColsEof { binary } => {
                if is_eof {
                    let st = wire::eof_status(p);
                    if binary && st & status::CURSOR_EXISTS != 0 {
                        r.done = true;
                    } else {
                        r.state = RState::Rows { binary };
                    }
                } else {
                    r.state = RState::Rows { binary };
                    Self::row(r, is_terminator, len, p, deprecate_eof);
                }
            }
            RState::Rows { .. } => Self::row(r, is_terminator, len, p, deprecate_eof),
            RState::PrepParams { left, cols } => {
                r.state = if left > 1 {
                    RState::PrepParams {
                        left: left - 1,
                        cols,
                    }
                } else if !deprecate_eof {
                    RState::PrepParamsEof { cols }
                } else if cols > 0 {
                    RState::PrepCols { left: cols }
                } else {
                    r.done = true;
                    RState::First
                };
            }
            RState::PrepParamsEof { cols } => {
                if cols == 0 {
                    r.done = true;
                } else if is_eof {
                    r.state = RState::PrepCols { left: cols };
                } else if cols > 1 {
                    r.state = RState::PrepCols { left: cols - 1 };
                } else {
                    r.done = true;
                }
            }
            RState::PrepCols { left } => {
                if left > 1 {
                    r.state = RState::PrepCols { left: left - 1 };
                } else if deprecate_eof {
                    r.done = true;
                } else {
                    r.state = RState::PrepColsEof;
                }
            }
            RState::PrepColsEof | RState::Infile => {
                if b0 == 0x00 {
                    r.affected = wire::ok_packet(p).map(|x| x.0);
                }
                r.done = true;
            }
        }
        if let Some(s) = new_statement {
            self.statements.retain(|(id, _)| *id != s.0);
            if self.statements.len() >= MAX_STATEMENTS {
                self.statements.pop_front();
            }
            self.statements.push_back(s);
        }
    }

    /// A packet in the rows phase: a terminator (EOF / OK with 0xfe header) or a row.
    fn row(r: &mut Resp, is_terminator: bool, len: usize, p: &[u8], deprecate_eof: bool) {
        if !is_terminator {
            r.rows += 1;
            return;
        }
        let st = if deprecate_eof || len > 5 {
            wire::ok_packet(p).map(|x| x.1).unwrap_or(0)
        } else {
            wire::eof_status(p)
        };
        if st & status::MORE_RESULTS_EXISTS != 0 {
            r.state = RState::First;
        } else {
            r.done = true;
        }
    }

    fn greeting(&mut self, p: &[u8]) {
        // 0x0a, version\0, thread id(4), auth data(8), filler(1), caps lo(2), charset(1), status(2),
        // caps hi(2), auth len(1), reserved(10: MariaDB's extended caps in the last 4)
        let Some((_ver, i)) = wire::cstr(p, 1) else {
            return;
        };
        let lo = wire::u16_at(p, i + 13).unwrap_or(0) as u32;
        let hi = wire::u16_at(p, i + 18).unwrap_or(0) as u32;
        self.server_caps = lo | hi << 16;
        if self.server_caps & 1 == 0 {
            self.server_ext_caps = wire::u32_at(p, i + 27).unwrap_or(0);
        }
    }

    fn response_message(&self, r: Resp, end: u64) -> Message {
        let mut info = LogInfo::default();
        match r.error {
            Some((code, msg)) => {
                info.response_code = Some(code as i64);
                info.response_status = Some(if (2000..3000).contains(&code) {
                    ResponseStatus::ClientError
                } else {
                    ResponseStatus::ServerError
                });
                info.response_exception = Some(msg);
            }
            None => {
                info.response_status = Some(ResponseStatus::Ok);
                info.response_result = if let Some(id) = r.statement {
                    Some(format!("statement_id={id}"))
                } else if r.rows > 0 || matches!(r.state, RState::Rows { .. }) {
                    Some(format!("rows={}", r.rows))
                } else if matches!(r.cmd.expect, Expect::Query | Expect::Execute) {
                    r.affected.map(|a| format!("affected_rows={a}"))
                } else {
                    None
                };
            }
        }
        Message::new(
            Direction::ServerToClient,
            MessageKind::Response,
            Correlation::ById(r.cmd.id),
            r.start,
            end,
        )
        .with_info(info)
    }
}

/// Skip MySQL 8 query attributes (`n` parameters, from `i`) in a `COM_QUERY` payload: null bitmap, bind flag,
/// types and names, then values. `None` when a value type has no known size.
fn skip_query_attributes(b: &[u8], mut i: usize, n: u64) -> Option<&[u8]> {
    let n = usize::try_from(n).ok().filter(|&n| n <= 4096)?;
    let bitmap = i;
    i += n.div_ceil(8);
    let bound = *b.get(i)?;
    i += 1;
    if bound != 1 {
        return b.get(i..);
    }
    let mut types = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let t = *b.get(i)?;
        i += 2;
        let (len, used) = wire::lenenc(b, i)?;
        i = i
            .checked_add(used)?
            .checked_add(usize::try_from(len).ok()?)?;
        types.push(t);
    }
    for (k, t) in types.iter().enumerate() {
        let null = b
            .get(bitmap + k / 8)
            .is_some_and(|m| m & (1 << (k % 8)) != 0);
        if null {
            continue;
        }
        let size = match t {
            0x01 => 1,                                            // TINY
            0x02 | 0x0d => 2,                                     // SHORT, YEAR
            0x03 | 0x04 | 0x09 => 4,                              // LONG, FLOAT, INT24
            0x05 | 0x08 => 8,                                     // DOUBLE, LONGLONG
            0x06 => 0,                                            // NULL
            0x07 | 0x0a | 0x0b | 0x0c => 1 + *b.get(i)? as usize, // dates: length byte
            _ => {
                let (len, used) = wire::lenenc(b, i)?;
                used.checked_add(usize::try_from(len).ok()?)?
            }
        };
        i = i.checked_add(size)?;
    }
    b.get(i..)
}

#[cfg(test)]
mod tests;
