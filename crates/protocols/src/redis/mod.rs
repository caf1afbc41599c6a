//! Redis: RESP2 and RESP3 (every type, streamed strings and aggregates, attributes, pushes) and inline commands.
//!
//! # What one log is
//! One command and its reply. `request_type` and `endpoint` are the command name in upper case (for container
//! commands such as `CLIENT SETNAME` only the first word: `CLIENT`). `request_resource` follows one short,
//! deterministic rule:
//! - `NAME` alone when the command has no argument, and for `AUTH`, `HELLO`, `PING`, `ECHO` (whose arguments
//!   are secrets or payloads);
//! - `NAME SUB` for container commands (`CLIENT`, `CONFIG`, `CLUSTER`, `COMMAND`, `SCRIPT`, `FUNCTION`, `MEMORY`,
//!   `OBJECT`, `XINFO`, `XGROUP`, `ACL`, `MODULE`, `SLOWLOG`, `LATENCY`, `DEBUG`, `PUBSUB`), the subcommand in
//!   upper case;
//! - otherwise `NAME first-argument` (the key, or the channel for `PUBLISH`/`SUBSCRIBE`), the argument as lossy
//!   UTF-8 cut to 128 bytes. Values are never logged: `SET user:1 hello` gives `SET user:1`.
//!
//! Error replies (`-ERR ...`, `-WRONGTYPE ...`, RESP3 blob errors) give `response_exception` = the error line,
//! `response_code` null, status `server_error`. Errors nested inside an aggregate (an `EXEC` result) do not
//! make the command fail.
//!
//! # Pairing
//! Replies come back in command order. The parser numbers commands and replies itself and pairs them with
//! [`Correlation::ById`], which lets it stop pairing when it cannot be sure (after a gap):
//! - pipelining: any number of commands per segment, replies paired in order;
//! - pub/sub: after a `(P|S)SUBSCRIBE` the connection is in subscribed mode; a `message`/`pmessage`/`smessage`
//!   push (RESP2 array in subscribed mode, or RESP3 `>` push) is a server-initiated one-way log of type
//!   `message` with resource `<kind> <channel>`. A subscribe-family command with N channels receives N
//!   confirmations: the first is its reply, the others are counted as events (as the ground truth counts one
//!   log per command). An argument-less `UNSUBSCRIBE` is answered once per subscription: confirmations are
//!   swallowed until the remaining count reaches 0;
//! - `MULTI`/`EXEC`: every queued command is its own log, answered by `+QUEUED`;
//! - a reply before any command (capture started mid-connection) is an orphan, never a log.
//!
//! # Gaps and mid-stream starts
//! After a gap (or a parse error) in either direction the number of lost commands or replies is unknown, so
//! pairing stops: commands are logged alone with status `unknown`, replies are counted as events. Each
//! direction resynchronises on a plausible message start (for commands `*N\r\n$M\r\n<name>\r\n`; for replies
//! a RESP type byte at a line start with a valid header). Pairing resumes after two lockstep rounds (one command,
//! then exactly one reply, twice), which is what request/response clients do; a pipelining client that keeps a
//! constant lag after a gap could defeat this heuristic.
//!
//! # Limits and validity
//! Nesting is bounded by [`Limits::max_depth`] (`TooMany`), bulk lengths by 512 MiB and lines by 64 KiB
//! (`TooLarge`). Bulk payloads are skipped, never buffered: a 100 MB `SET` costs no memory. No input panics.

mod resp;

use crate::{
    Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx, ParseError,
    ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use resp::{command_start, int_line, is_type_byte, line_end, plausible_command, Step};
pub use resp::{MAX_AGGREGATE_LEN, MAX_BULK_LEN, MAX_INLINE_LEN};
use std::collections::VecDeque;

/// Longest command argument kept in `request_resource`.
pub const MAX_RESOURCE_ARG: usize = 128;
/// Longest command argument captured from the wire (longer ones are cut).
const CAPTURE_MAX: usize = 256;
/// Most subscribe-family commands whose confirmation counts are remembered.
const MAX_CONFIRMS: usize = 64;
/// Lockstep rounds needed to resume pairing after a gap.
const RESYNC_ROUNDS: u32 = 2;
/// The correlation of a reply that answers nothing we saw (counted as an orphan by the engine).
const ORPHAN: Correlation = Correlation::ById(u64::MAX);

/// The Redis [`L7Parser`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisParser;

impl L7Parser for RedisParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Redis
    }

    fn default_ports(&self) -> &[u16] {
        &[6379]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload, input.direction)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(RedisFlow::new(limits))
    }
}

/// Inline commands recognised by the probe (upper case).
const INLINE_COMMANDS: &[&[u8]] = &[
    b"PING",
    b"QUIT",
    b"INFO",
    b"AUTH",
    b"HELLO",
    b"ECHO",
    b"SELECT",
    b"GET",
    b"SET",
    b"DEL",
    b"EXISTS",
    b"KEYS",
    b"DBSIZE",
    b"MONITOR",
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"FLUSHALL",
    b"FLUSHDB",
    b"INCR",
    b"TTL",
    b"TYPE",
    b"CONFIG",
    b"CLIENT",
    b"COMMAND",
    b"SCAN",
    b"MGET",
    b"MSET",
    b"SAVE",
    b"SHUTDOWN",
];

/// Inline words other text protocols also use (memcached, SMTP, FTP): never more than `Maybe`.
const AMBIGUOUS_INLINE: &[&[u8]] = &[b"GET", b"SET", b"QUIT", b"DEL", b"INCR", b"TYPE", b"SAVE"];

/// Cheap detection. A client RESP array of bulk strings whose first element is a plausible command name is
/// `Yes`; a complete upper-case inline line of a known command is `Yes` (`Maybe` for words other text protocols
/// share, such as `GET`); an HTTP request line is `No`; a server reply is `Maybe`.
pub fn probe(payload: &[u8], direction: Direction) -> Probe {
    match direction {
        Direction::ClientToServer => match command_start(payload, 0) {
            Step::Done(true, _) => Probe::Yes,
            Step::More if payload.len() >= 4 => Probe::Maybe,
            Step::More => Probe::No,
            _ => probe_inline(payload),
        },
        Direction::ServerToClient => probe_reply(payload),
    }
}

fn probe_inline(payload: &[u8]) -> Probe {
    let line_len = memchr::memchr(b'\n', payload).unwrap_or(payload.len());
    let line = payload.get(..line_len).unwrap_or(&[]);
    if line.windows(6).any(|w| w == b" HTTP/") {
        return Probe::No;
    }
    let word_len = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(line.len());
    let word = line.get(..word_len).unwrap_or(&[]);
    if !line
        .iter()
        .all(|&b| b == b'\r' || (0x20..0x7f).contains(&b))
    {
        return Probe::No;
    }
    if INLINE_COMMANDS.contains(&word) && line.ends_with(b"\r") && !AMBIGUOUS_INLINE.contains(&word)
    {
        // A whole upper-case inline line of a known command.
        Probe::Yes
    } else if INLINE_COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(word))
        || (plausible_command(word)
            && line.ends_with(b"\r")
            && word.iter().all(u8::is_ascii_uppercase))
    {
        // A known word in another case, or an upper-case word on a CRLF line: weak evidence (port 6379 decides).
        Probe::Maybe
    } else {
        Probe::No
    }
}

fn probe_reply(payload: &[u8]) -> Probe {
    let Some(&t) = payload.first() else {
        return Probe::No;
    };
    let ok = match t {
        b'+' | b'-' => match line_end(payload, 1, 512) {
            Step::Done(cr, _) => payload
                .get(1..cr)
                .is_some_and(|l| !l.is_empty() && l.iter().all(|&b| (0x20..0x7f).contains(&b))),
            _ => false,
        },
        b':' | b'$' | b'*' | b'%' | b'~' | b'>' => matches!(int_line(payload, 1), Step::Done(..)),
        b'_' => payload.starts_with(b"_\r\n"),
        _ => false,
    };
    if ok {
        Probe::Maybe
    } else {
        Probe::No
    }
}

/// Per-flow Redis state: a command scanner, a reply scanner and the pairing state.
#[derive(Debug)]
pub struct RedisFlow {
    cmd: CmdScan,
    reply: ReplyScan,
    pair: Pairing,
    max_depth: usize,
}

impl RedisFlow {
    /// Fresh state for a flow.
    pub fn new(limits: &Limits) -> RedisFlow {
        let max_depth = limits.max_depth.clamp(1, 256);
        RedisFlow {
            cmd: CmdScan::default(),
            reply: ReplyScan {
                stack: Vec::with_capacity(max_depth.min(16)),
                ..ReplyScan::default()
            },
            pair: Pairing {
                synced: true,
                ..Pairing::default()
            },
            max_depth,
        }
    }
}

/// Skip state shared by both scanners: bulk payload bytes, then the CRLF after them.
#[derive(Debug, Default, Clone, Copy)]
struct Skip {
    payload: u64,
    crlf: u8,
}

impl Skip {
    fn active(&self) -> bool {
        self.payload > 0 || self.crlf > 0
    }

    /// Advance over `data[*i..]`. `Ok(true)` when the skip is over, `Ok(false)` when the data ran out.
    #[inline]
    fn run(&mut self, data: &[u8], i: &mut usize) -> Result<bool, ParseError> {
        if self.payload > 0 {
            let avail = data.len().saturating_sub(*i) as u64;
            let n = avail.min(self.payload);
            *i += n as usize;
            self.payload -= n;
            if self.payload > 0 {
                return Ok(false);
            }
        }
        while self.crlf > 0 {
            let want = if self.crlf == 2 { b'\r' } else { b'\n' };
            match data.get(*i) {
                None => return Ok(false),
                Some(&b) if b == want => {
                    *i += 1;
                    self.crlf -= 1;
                }
                Some(_) => return Err(ParseError::new(ParseErrorKind::Invalid, *i)),
            }
        }
        Ok(true)
    }
}

/// The command (client → server) scanner.
#[derive(Debug, Default)]
struct CmdScan {
    /// Inside an array command.
    active: bool,
    start: u64,
    /// Elements still to read.
    remaining: u64,
    /// Index of the next element.
    index: u64,
    skip: Skip,
    name: Vec<u8>,
    arg1: Vec<u8>,
    /// Looking for a message start after a gap.
    resync: bool,
}

/// One stack frame of an open aggregate in a reply.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Values still to read; `u64::MAX` for a streamed aggregate (ends with `.`).
    left: u64,
    /// An attribute map: it does not count as a value of its parent.
    attr: bool,
}

const STREAMED: u64 = u64::MAX;

/// What the first element of a top-level aggregate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PubKind {
    #[default]
    None,
    Message,
    PMessage,
    SMessage,
    /// A subscribe-family confirmation.
    Confirm,
    /// Something else.
    Other,
}

impl PubKind {
    fn from_bytes(b: &[u8]) -> PubKind {
        let eq = |s: &[u8]| b.eq_ignore_ascii_case(s);
        if eq(b"message") {
            PubKind::Message
        } else if eq(b"pmessage") {
            PubKind::PMessage
        } else if eq(b"smessage") {
            PubKind::SMessage
        } else if eq(b"subscribe")
            || eq(b"psubscribe")
            || eq(b"ssubscribe")
            || eq(b"unsubscribe")
            || eq(b"punsubscribe")
            || eq(b"sunsubscribe")
        {
            PubKind::Confirm
        } else {
            PubKind::Other
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            PubKind::Message => "message",
            PubKind::PMessage => "pmessage",
            PubKind::SMessage => "smessage",
            _ => "",
        }
    }
}

/// The reply (server → client) scanner.
#[derive(Debug, Default)]
struct ReplyScan {
    active: bool,
    start: u64,
    stack: Vec<Frame>,
    skip: Skip,
    /// Inside a streamed string (`$?`): expecting `;N` chunks.
    streamed_str: bool,
    /// Type byte of the top-level value (after attributes).
    top: u8,
    /// Index of the next element of the top-level aggregate.
    elem: u64,
    kind: PubKind,
    /// Channel of a push (element 1, or 2 for `pmessage`).
    channel: Vec<u8>,
    /// Remaining-subscriptions count of a confirmation (element 2).
    count: Option<i64>,
    exception: Option<String>,
    resync: bool,
}

impl ReplyScan {
    fn reset(&mut self) {
        self.active = false;
        self.stack.clear();
        self.skip = Skip::default();
        self.streamed_str = false;
        self.top = 0;
        self.elem = 0;
        self.kind = PubKind::None;
        self.channel.clear();
        self.count = None;
        self.exception = None;
    }

    /// True when the next value read is an element of the top-level aggregate (depth 1, not in an attribute).
    fn at_top_element(&self) -> bool {
        self.stack.len() == 1
            && self.stack.first().is_some_and(|f| !f.attr)
            && matches!(self.top, b'*' | b'>')
    }
}

/// How extra subscribe confirmations are swallowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Extra {
    #[default]
    None,
    /// This many more confirmations belong to the command already answered.
    N(u32),
    /// Confirmations belong to the answered argument-less unsubscribe until the count reaches 0.
    UntilZero,
}

#[derive(Debug, Default)]
struct Pairing {
    next_req: u64,
    next_reply: u64,
    synced: bool,
    /// Lockstep rounds seen while not synced.
    rounds: u32,
    cmds_since_reply: u32,
    subscribed: bool,
    resp3: bool,
    /// Channel counts of subscribe-family commands not yet confirmed (0 = "all", argument-less).
    confirms: VecDeque<u32>,
    extra: Extra,
    /// Ids of paired commands whose replies were lost in a gap: answered with status unknown at the next
    /// chance (the next server-side parse, or the flow's end).
    lost: std::ops::Range<u64>,
}

impl Pairing {
    fn desync(&mut self) {
        if self.synced && self.next_reply < self.next_req {
            self.lost = self.next_reply..self.next_req;
            self.next_reply = self.next_req;
        }
        self.synced = false;
        self.rounds = 0;
        self.cmds_since_reply = 0;
        self.confirms.clear();
        self.extra = Extra::None;
    }
}

/// Container commands whose second word is a subcommand.
const CONTAINERS: &[&[u8]] = &[
    b"CLIENT",
    b"CONFIG",
    b"CLUSTER",
    b"COMMAND",
    b"SCRIPT",
    b"FUNCTION",
    b"MEMORY",
    b"OBJECT",
    b"XINFO",
    b"XGROUP",
    b"ACL",
    b"MODULE",
    b"SLOWLOG",
    b"LATENCY",
    b"DEBUG",
    b"PUBSUB",
];
/// Commands whose arguments are never logged.
const HIDDEN_ARGS: &[&[u8]] = &[b"AUTH", b"HELLO", b"PING", b"ECHO"];

fn is_subscribe(name: &[u8]) -> bool {
    matches!(name, b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE")
}

fn is_unsubscribe(name: &[u8]) -> bool {
    matches!(name, b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE")
}

fn lossy_string(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Fill the request fields of a command from its upper-cased name and first argument.
fn fill_command_info(info: &mut LogInfo, name: &[u8], arg1: Option<&[u8]>) {
    let name_s = lossy_string(name);
    let mut resource = String::with_capacity(name_s.len() + 1 + arg1.map_or(0, |a| a.len()));
    resource.push_str(&name_s);
    if let Some(arg) = arg1 {
        if !HIDDEN_ARGS.contains(&name) {
            resource.push(' ');
            let arg = arg.get(..MAX_RESOURCE_ARG).unwrap_or(arg);
            if CONTAINERS.contains(&name) {
                resource.push_str(&lossy_string(arg).to_ascii_uppercase());
            } else {
                match std::str::from_utf8(arg) {
                    Ok(s) => resource.push_str(s),
                    Err(_) => resource.push_str(crate::util::truncate(
                        &String::from_utf8_lossy(arg),
                        MAX_RESOURCE_ARG,
                    )),
                }
            }
        }
    }
    info.endpoint = Some(name_s.clone());
    info.request_type = Some(name_s);
    info.request_resource = Some(resource);
}

/// Push a message with empty fields and return them for filling in place (a [`LogInfo`] is large: building it
/// on the stack and moving it costs more than the parse).
fn push_message(
    out: &mut Vec<Message>,
    direction: Direction,
    kind: MessageKind,
    correlation: Correlation,
    start: u64,
    end: u64,
) -> Option<&mut LogInfo> {
    out.push(Message::new(direction, kind, correlation, start, end));
    out.last_mut().map(|m| &mut m.info)
}

/// A complete command (upper-cased `name`, first argument, argument count): emit it, paired or, while
/// unsynced, alone with status unknown.
fn emit_command(
    pair: &mut Pairing,
    name: &[u8],
    arg1: Option<&[u8]>,
    nargs: u64,
    (start, end): (u64, u64),
    out: &mut Vec<Message>,
) {
    if is_subscribe(name) || is_unsubscribe(name) {
        if is_subscribe(name) {
            pair.subscribed = true;
        }
        if pair.confirms.len() == MAX_CONFIRMS {
            pair.confirms.pop_front();
        }
        pair.confirms
            .push_back(u32::try_from(nargs).unwrap_or(u32::MAX));
    } else if name == b"RESET" {
        pair.subscribed = false;
    } else if name == b"HELLO" && arg1.and_then(|a| a.first()) == Some(&b'3') {
        pair.resp3 = true;
    }
    let p = pair;
    if !p.synced {
        if p.cmds_since_reply == 0 && p.rounds >= RESYNC_ROUNDS {
            // Lockstep observed: this command's reply is the next reply.
            p.synced = true;
            p.next_reply = p.next_req;
        } else {
            if p.cmds_since_reply > 0 {
                p.rounds = 0;
            }
            p.cmds_since_reply = p.cmds_since_reply.saturating_add(1);
            if let Some(info) = push_message(
                out,
                Direction::ClientToServer,
                MessageKind::OneWay,
                Correlation::Unpaired,
                start,
                end,
            ) {
                fill_command_info(info, name, arg1);
                info.response_status = Some(ResponseStatus::Unknown);
            }
            return;
        }
    }
    let id = p.next_req;
    p.next_req += 1;
    if let Some(info) = push_message(
        out,
        Direction::ClientToServer,
        MessageKind::Request,
        Correlation::ById(id),
        start,
        end,
    ) {
        fill_command_info(info, name, arg1);
    }
}

impl RedisFlow {
    fn finish_array_command(&mut self, end: u64, out: &mut Vec<Message>) {
        self.cmd.active = false;
        self.cmd.name.make_ascii_uppercase();
        let nargs = self.cmd.index.saturating_sub(1);
        let arg1 = (self.cmd.index > 1).then_some(self.cmd.arg1.as_slice());
        emit_command(
            &mut self.pair,
            &self.cmd.name,
            arg1,
            nargs,
            (self.cmd.start, end),
            out,
        );
    }

    fn parse_commands(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let mut i = 0usize;
        loop {
            if self.cmd.skip.active() {
                if !self.cmd.skip.run(data, &mut i)? {
                    return Ok(i);
                }
                self.cmd.index += 1;
                self.cmd.remaining -= 1;
            }
            if !self.cmd.active {
                if self.cmd.resync {
                    match resync_commands(data, i) {
                        (Some(at), _) => {
                            i = at;
                            self.cmd.resync = false;
                        }
                        (None, keep_from) => return Ok(keep_from),
                    }
                }
                let Some(&b) = data.get(i) else {
                    return Ok(i);
                };
                match b {
                    b'*' => match int_line(data, i + 1) {
                        Step::More => return Ok(i),
                        Step::Bad | Step::Done(None, _) => {
                            return Err(ParseError::new(ParseErrorKind::Invalid, i))
                        }
                        Step::Done(Some(n), next) => {
                            if n > MAX_AGGREGATE_LEN {
                                return Err(ParseError::new(ParseErrorKind::TooMany, i));
                            }
                            if n <= 0 {
                                // `*0` / `*-1`: Redis ignores an empty multibulk.
                                i = next;
                                continue;
                            }
                            self.cmd.active = true;
                            self.cmd.start = ctx.pos(i);
                            self.cmd.remaining = n as u64;
                            self.cmd.index = 0;
                            self.cmd.name.clear();
                            self.cmd.arg1.clear();
                            i = next;
                        }
                    },
                    b'\r' | b'\n' => {
                        // Empty inline lines are ignored by Redis.
                        i += 1;
                        continue;
                    }
                    _ => match self.inline_command(data, i, ctx, out)? {
                        Some(next) => {
                            i = next;
                            continue;
                        }
                        None => return Ok(i),
                    },
                }
            }
            // Read elements of the current array command.
            while self.cmd.remaining > 0 {
                match data.get(i) {
                    None => return Ok(i),
                    Some(b'$') => {}
                    Some(_) => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                }
                let (len, body) = match int_line(data, i + 1) {
                    Step::More => return Ok(i),
                    Step::Bad | Step::Done(None, _) => {
                        return Err(ParseError::new(ParseErrorKind::Invalid, i))
                    }
                    Step::Done(Some(n), body) => {
                        if n < 0 {
                            return Err(ParseError::new(ParseErrorKind::BadValue, i));
                        }
                        if n > MAX_BULK_LEN {
                            return Err(ParseError::new(ParseErrorKind::TooLarge, i));
                        }
                        (n as usize, body)
                    }
                };
                let end = body.saturating_add(len);
                if self.cmd.index < 2 {
                    // Capture the name / first argument: wait until its kept prefix is here.
                    let keep = len.min(CAPTURE_MAX);
                    let Some(part) = data.get(body..body + keep) else {
                        return Ok(i);
                    };
                    if self.cmd.index == 0 {
                        self.cmd.name.extend_from_slice(part);
                    } else {
                        self.cmd.arg1.extend_from_slice(part);
                    }
                }
                if data.len() >= end.saturating_add(2) {
                    if data.get(end..end + 2) != Some(b"\r\n") {
                        return Err(ParseError::new(ParseErrorKind::Invalid, end));
                    }
                    i = end + 2;
                    self.cmd.index += 1;
                    self.cmd.remaining -= 1;
                    continue;
                }
                // The payload (or its CRLF) continues beyond this buffer: skip it without buffering.
                let avail = data.len().saturating_sub(body).min(len);
                self.cmd.skip = Skip {
                    payload: (len - avail) as u64,
                    crlf: 2,
                };
                i = body + avail;
                if !self.cmd.skip.run(data, &mut i)? {
                    return Ok(i);
                }
                self.cmd.index += 1;
                self.cmd.remaining -= 1;
            }
            self.finish_array_command(ctx.pos(i), out);
        }
    }

    /// An inline command line at `data[i]`. `Ok(Some(next))` when consumed, `Ok(None)` when incomplete.
    fn inline_command(
        &mut self,
        data: &[u8],
        i: usize,
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<Option<usize>, ParseError> {
        let rest = data.get(i..).unwrap_or(&[]);
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest.len() > MAX_INLINE_LEN {
                return Err(ParseError::new(ParseErrorKind::TooLarge, i));
            }
            return Ok(None);
        };
        let line = rest.get(..nl).unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut words = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        let Some(name) = words.next() else {
            return Ok(Some(i + nl + 1));
        };
        if !plausible_command(name) || line.iter().any(|&b| b < 0x20 && b != b'\t') {
            return Err(ParseError::new(ParseErrorKind::Invalid, i));
        }
        self.cmd.name.clear();
        self.cmd.name.extend_from_slice(name);
        self.cmd.name.make_ascii_uppercase();
        let arg1 = words.next();
        let nargs = u64::from(arg1.is_some()) + words.count() as u64;
        emit_command(
            &mut self.pair,
            &self.cmd.name,
            arg1,
            nargs,
            (ctx.pos(i), ctx.pos(i + nl + 1)),
            out,
        );
        Ok(Some(i + nl + 1))
    }

    /// A complete reply: classify it and emit what it is.
    fn finish_reply(&mut self, end: u64, out: &mut Vec<Message>) {
        let r = &mut self.reply;
        let start = r.start;
        let top = r.top;
        let kind = r.kind;
        let is_push = top == b'>' || (top == b'*' && self.pair.subscribed && !self.pair.resp3);
        if top == b'>' {
            self.pair.resp3 = true;
        }
        let exception = r.exception.take();
        let p = &mut self.pair;
        if is_push
            && matches!(
                kind,
                PubKind::Message | PubKind::PMessage | PubKind::SMessage
            )
        {
            let mut resource = String::with_capacity(10 + r.channel.len());
            resource.push_str(kind.as_str());
            resource.push(' ');
            resource.push_str(&String::from_utf8_lossy(&r.channel));
            if let Some(info) = push_message(
                out,
                Direction::ServerToClient,
                MessageKind::OneWay,
                Correlation::Unpaired,
                start,
                end,
            ) {
                info.request_type = Some("message".to_owned());
                info.endpoint = Some("message".to_owned());
                info.request_resource = Some(resource);
                info.response_status = Some(ResponseStatus::Ok);
            }
            r.reset();
            return;
        }
        let event = |out: &mut Vec<Message>| {
            out.push(Message::new(
                Direction::ServerToClient,
                MessageKind::Event,
                Correlation::Unpaired,
                start,
                end,
            ));
        };
        if is_push && kind == PubKind::Confirm {
            let count = r.count;
            if count == Some(0) {
                p.subscribed = false;
            } else if count.is_some() {
                p.subscribed = true;
            }
            match p.extra {
                Extra::N(n) => {
                    p.extra = if n > 1 { Extra::N(n - 1) } else { Extra::None };
                    event(out);
                    r.reset();
                    return;
                }
                Extra::UntilZero => {
                    if count.unwrap_or(0) == 0 {
                        p.extra = Extra::None;
                    }
                    event(out);
                    r.reset();
                    return;
                }
                Extra::None => {
                    p.extra = match p.confirms.pop_front() {
                        Some(0) if count.unwrap_or(0) != 0 => Extra::UntilZero,
                        Some(n) if n > 1 => Extra::N(n - 1),
                        _ => Extra::None,
                    };
                }
            }
        } else if top == b'>' {
            // Other RESP3 pushes (client-side caching invalidations, ...): not logged.
            event(out);
            r.reset();
            return;
        }
        r.reset();
        if !p.synced {
            if p.cmds_since_reply == 1 {
                p.rounds += 1;
            } else {
                p.rounds = 0;
            }
            p.cmds_since_reply = 0;
            event(out);
            return;
        }
        let corr = if p.next_reply < p.next_req {
            let id = p.next_reply;
            p.next_reply += 1;
            Correlation::ById(id)
        } else {
            ORPHAN
        };
        if let Some(info) = push_message(
            out,
            Direction::ServerToClient,
            MessageKind::Response,
            corr,
            start,
            end,
        ) {
            match exception {
                Some(e) => {
                    info.response_status = Some(ResponseStatus::ServerError);
                    info.response_exception = Some(e);
                }
                None => info.response_status = Some(ResponseStatus::Ok),
            }
        }
    }

    /// A value ended: pop finished aggregates. Returns true when the whole reply is complete.
    fn value_done(&mut self) -> bool {
        let r = &mut self.reply;
        if r.at_top_element() {
            r.elem += 1;
        }
        loop {
            let Some(f) = r.stack.last_mut() else {
                return true;
            };
            if f.left == STREAMED {
                return false;
            }
            f.left = f.left.saturating_sub(1);
            if f.left > 0 {
                return false;
            }
            let attr = f.attr;
            r.stack.pop();
            if attr {
                // An attribute is not a value: the value it annotates follows.
                return false;
            }
            if r.at_top_element() {
                r.elem += 1;
            }
        }
    }

    fn push_frame(&mut self, left: u64, attr: bool, at: usize) -> Result<(), ParseError> {
        if self.reply.stack.len() >= self.max_depth {
            return Err(ParseError::new(ParseErrorKind::TooMany, at));
        }
        self.reply.stack.push(Frame { left, attr });
        Ok(())
    }

    /// Answer the commands whose replies a gap swallowed with status unknown, at stream offset `at`.
    fn flush_lost(&mut self, at: u64, out: &mut Vec<Message>) {
        for id in self.pair.lost.clone() {
            let info = LogInfo {
                response_status: Some(ResponseStatus::Unknown),
                ..LogInfo::default()
            };
            out.push(
                Message::new(
                    Direction::ServerToClient,
                    MessageKind::Response,
                    Correlation::ById(id),
                    at,
                    at,
                )
                .with_info(info),
            );
        }
        self.pair.lost = 0..0;
    }

    fn parse_replies(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        if !self.pair.lost.is_empty() {
            self.flush_lost(ctx.stream_offset, out);
        }
        let mut i = 0usize;
        loop {
            if self.reply.skip.active() {
                if !self.reply.skip.run(data, &mut i)? {
                    return Ok(i);
                }
                if !self.reply.streamed_str && self.value_done() {
                    self.finish_reply(ctx.pos(i), out);
                }
            }
            if !self.reply.active && self.reply.resync {
                match resync_replies(data, i) {
                    (Some(at), _) => {
                        i = at;
                        self.reply.resync = false;
                    }
                    (None, keep_from) => return Ok(keep_from),
                }
            }
            let Some(&t) = data.get(i) else {
                return Ok(i);
            };
            if !self.reply.active && (t == b'\r' || t == b'\n') {
                // Stray line ends between replies (seen from hand-made servers): tolerated.
                i += 1;
                continue;
            }
            if !self.reply.active {
                self.reply.active = true;
                self.reply.start = ctx.pos(i);
            }
            let top_level = self.reply.stack.is_empty();
            let capture_elem = self.reply.at_top_element().then_some(self.reply.elem);
            if self.reply.streamed_str {
                // `;N\r\n<N bytes>\r\n` chunks, `;0\r\n` ends the string.
                if t != b';' {
                    return Err(ParseError::new(ParseErrorKind::Invalid, i));
                }
                match int_line(data, i + 1) {
                    Step::More => return Ok(i),
                    Step::Bad | Step::Done(None, _) => {
                        return Err(ParseError::new(ParseErrorKind::Invalid, i))
                    }
                    Step::Done(Some(n), next) => {
                        if !(0..=MAX_BULK_LEN).contains(&n) {
                            return Err(ParseError::new(ParseErrorKind::TooLarge, i));
                        }
                        i = next;
                        if n == 0 {
                            self.reply.streamed_str = false;
                            if self.value_done() {
                                self.finish_reply(ctx.pos(i), out);
                            }
                        } else {
                            self.reply.skip = Skip {
                                payload: n as u64,
                                crlf: 2,
                            };
                        }
                        continue;
                    }
                }
            }
            if top_level && t != b'|' {
                self.reply.top = t;
            }
            match t {
                b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                    let (cr, next) = match line_end(data, i + 1, MAX_INLINE_LEN) {
                        Step::More => return Ok(i),
                        Step::Bad => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                        Step::Done(cr, next) => (cr, next),
                    };
                    let line = data.get(i + 1..cr).unwrap_or(&[]);
                    if t == b'-' && top_level {
                        self.reply.exception = Some(lossy_string(
                            line.get(..ctx.limits.max_field_len).unwrap_or(line),
                        ));
                    }
                    if let Some(e) = capture_elem {
                        self.capture(e, t, line);
                    }
                    i = next;
                    if self.value_done() {
                        self.finish_reply(ctx.pos(i), out);
                    }
                }
                b'$' | b'!' | b'=' => {
                    let (n, body) = match int_line(data, i + 1) {
                        Step::More => return Ok(i),
                        Step::Bad => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                        Step::Done(n, body) => (n, body),
                    };
                    let Some(n) = n else {
                        if t != b'$' {
                            return Err(ParseError::new(ParseErrorKind::Invalid, i));
                        }
                        self.reply.streamed_str = true;
                        i = body;
                        continue;
                    };
                    if n < 0 {
                        // Null bulk string (RESP2 `$-1`).
                        i = body;
                        if self.value_done() {
                            self.finish_reply(ctx.pos(i), out);
                        }
                        continue;
                    }
                    if n > MAX_BULK_LEN {
                        return Err(ParseError::new(ParseErrorKind::TooLarge, i));
                    }
                    let len = n as usize;
                    let wants_text =
                        (t == b'!' && top_level) || capture_elem.is_some_and(|e| e < 3);
                    if wants_text {
                        let keep = len.min(CAPTURE_MAX);
                        let Some(part) = data.get(body..body + keep) else {
                            return Ok(i);
                        };
                        if t == b'!' && top_level {
                            self.reply.exception = Some(lossy_string(part));
                        }
                        if let Some(e) = capture_elem {
                            self.capture(e, t, part);
                        }
                    }
                    let avail = data.len().saturating_sub(body).min(len);
                    self.reply.skip = Skip {
                        payload: (len - avail) as u64,
                        crlf: 2,
                    };
                    i = body + avail;
                    // The loop head finishes the skip (CRLF check) and the value.
                }
                b'*' | b'~' | b'%' | b'>' | b'|' => {
                    let (n, next) = match int_line(data, i + 1) {
                        Step::More => return Ok(i),
                        Step::Bad => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                        Step::Done(n, next) => (n, next),
                    };
                    if let Some(e) = capture_elem {
                        self.capture(e, t, b"");
                    }
                    i = next;
                    match n {
                        None => {
                            if t == b'|' {
                                return Err(ParseError::new(ParseErrorKind::Invalid, i));
                            }
                            self.push_frame(STREAMED, false, i)?;
                        }
                        Some(n) if n > MAX_AGGREGATE_LEN => {
                            return Err(ParseError::new(ParseErrorKind::TooMany, i))
                        }
                        Some(n) if n <= 0 => {
                            if n < 0 && t != b'*' {
                                return Err(ParseError::new(ParseErrorKind::Invalid, i));
                            }
                            if t != b'|' && self.value_done() {
                                self.finish_reply(ctx.pos(i), out);
                            }
                        }
                        Some(n) => {
                            let left = if matches!(t, b'%' | b'|') {
                                (n as u64) * 2
                            } else {
                                n as u64
                            };
                            self.push_frame(left, t == b'|', i)?;
                        }
                    }
                }
                b'.' => {
                    match (data.get(i + 1), data.get(i + 2)) {
                        (Some(b'\r'), Some(b'\n')) => {}
                        (None, _) | (Some(b'\r'), None) => return Ok(i),
                        _ => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
                    }
                    if self.reply.stack.last().map(|f| f.left) != Some(STREAMED) {
                        return Err(ParseError::new(ParseErrorKind::Invalid, i));
                    }
                    self.reply.stack.pop();
                    i += 3;
                    if self.value_done() {
                        self.finish_reply(ctx.pos(i), out);
                    }
                }
                _ => return Err(ParseError::new(ParseErrorKind::Invalid, i)),
            }
        }
    }

    /// Record what element `e` of the top-level aggregate says (kind, channel, count).
    fn capture(&mut self, e: u64, t: u8, text: &[u8]) {
        let r = &mut self.reply;
        match e {
            0 => {
                r.kind = if matches!(t, b'$' | b'+') {
                    PubKind::from_bytes(text)
                } else {
                    PubKind::Other
                };
            }
            1 | 2 => {
                let channel_elem = if r.kind == PubKind::PMessage { 2 } else { 1 };
                if e == channel_elem && matches!(t, b'$' | b'+') {
                    r.channel.clear();
                    r.channel
                        .extend_from_slice(text.get(..MAX_RESOURCE_ARG).unwrap_or(text));
                }
                if e == 2 && t == b':' {
                    r.count = std::str::from_utf8(text).ok().and_then(|s| s.parse().ok());
                }
            }
            _ => {}
        }
    }
}

/// Find the next plausible command start at or after `from`: at `from` itself (a segment start after a gap) or
/// just after a `\n`. Returns `(Some(pos), _)` when found, `(None, keep_from)` when not (bytes before `keep_from`
/// can be dropped; the rest may hold a start that is not complete yet).
fn resync_commands(data: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut at = from;
    loop {
        match command_start(data, at) {
            Step::Done(true, _) => return (Some(at), at),
            Step::More => return (None, at),
            _ => {}
        }
        let rest = data.get(at..).unwrap_or(&[]);
        match memchr::memchr(b'\n', rest) {
            Some(n) => at += n + 1,
            None => return (None, data.len()),
        }
    }
}

/// Find the next plausible reply start (a RESP type byte with a valid header) at `from` or after a `\n`.
fn resync_replies(data: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut at = from;
    loop {
        match reply_start(data, at) {
            Step::Done(true, _) => return (Some(at), at),
            Step::More => return (None, at),
            _ => {}
        }
        let rest = data.get(at..).unwrap_or(&[]);
        match memchr::memchr(b'\n', rest) {
            Some(n) => at += n + 1,
            None => return (None, data.len()),
        }
    }
}

fn reply_start(data: &[u8], i: usize) -> Step<bool> {
    let Some(&t) = data.get(i) else {
        return Step::More;
    };
    if !is_type_byte(t) {
        return Step::Done(false, i);
    }
    match t {
        b'+' | b'-' => match line_end(data, i + 1, 256) {
            Step::Done(cr, _) => {
                let line = data.get(i + 1..cr).unwrap_or(&[]);
                let ok = !line.is_empty() && line.iter().all(|&b| (0x20..0x7f).contains(&b));
                let ok = ok && (t == b'+' || line.first().is_some_and(|b| b.is_ascii_uppercase()));
                Step::Done(ok, i)
            }
            Step::More => Step::More,
            Step::Bad => Step::Done(false, i),
        },
        b':' | b'$' | b'*' | b'%' | b'~' | b'>' | b'!' | b'=' | b'|' | b'(' => {
            match int_line(data, i + 1) {
                Step::Done(..) => Step::Done(true, i),
                Step::More => Step::More,
                Step::Bad => Step::Done(false, i),
            }
        }
        b'_' => match (data.get(i + 1), data.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => Step::Done(true, i),
            (None, _) | (Some(b'\r'), None) => Step::More,
            _ => Step::Done(false, i),
        },
        _ => Step::Done(false, i),
    }
}

impl FlowParser for RedisFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        match ctx.direction {
            Direction::ClientToServer => self.parse_commands(data, ctx, out),
            Direction::ServerToClient => self.parse_replies(data, ctx, out),
        }
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        match direction {
            Direction::ClientToServer => {
                self.cmd.active = false;
                self.cmd.skip = Skip::default();
                self.cmd.resync = true;
            }
            Direction::ServerToClient => {
                self.reply.reset();
                self.reply.resync = true;
            }
        }
        self.pair.desync();
    }

    fn on_close(&mut self, end_offsets: [u64; 2], out: &mut Vec<Message>) {
        if !self.pair.lost.is_empty() {
            self.flush_lost(end_offsets[Direction::ServerToClient.index()], out);
        }
    }
}

#[cfg(test)]
mod tests;
