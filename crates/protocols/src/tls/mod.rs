//! TLS handshakes (SSL 3.0 to TLS 1.3) over TCP: one log per handshake.
//!
//! The request is the ClientHello; the response is the server's answer, and ends:
//! - TLS 1.2 and older: at the server's Finished, i.e. the first record after the server's
//!   ChangeCipherSpec (full and abbreviated handshakes alike);
//! - TLS 1.3: at the last record of the server's first flight (ServerHello, ChangeCipherSpec, and the
//!   encrypted EncryptedExtensions … Finished records). The server Finished is encrypted, so the flight is
//!   taken to end where the client's next flight begins (its ChangeCipherSpec or first encrypted record):
//!   the response covers every server record received before that. A HelloRetryRequest keeps the same
//!   handshake open (the client's second ClientHello is not a new log);
//! - on a plaintext alert from the server before that point: the handshake failed;
//! - at the end of the flow, with what was seen, when neither happened.
//!
//! Fields:
//! - request: `request_type` `ClientHello`; `request_domain`, `request_resource` and `endpoint` the SNI
//!   host name (null without SNI).
//! - response: `version` the negotiated version (`1.3` from the ServerHello `supported_versions`
//!   extension, else the ServerHello version: `1.2`, `1.1`, `1.0`, `ssl3`); `response_result` a
//!   `;`-separated list of `key=value`: `cipher=` the IANA cipher suite name (or `0x....`), `alpn=` the
//!   protocol the server selected when visible (TLS ≤ 1.2), otherwise `alpn_offered=` the client's list
//!   (comma-separated) when it offered one, and for TLS ≤ 1.2 the server certificate's `subject=`,
//!   `issuer=` (`CN=…,O=…`) and `not_after=` (RFC 3339); cut at [`Limits::max_field_len`].
//! - a fatal (or any plaintext) alert from the server, or a fatal plaintext alert from the client, during
//!   the handshake: `response_code` the alert description (e.g. 112), `response_exception` its RFC name
//!   (`unrecognized_name`), `response_status` `client_error`.
//!
//! After the handshake, records are skipped by their 5-byte headers without buffering or looking at the
//! payload; the flow stays owned by TLS. After a gap, a direction resynchronises on two chained record
//! headers and is treated as encrypted from then on (nothing after a gap is parsed as a handshake).
//! SSLv2-format ClientHellos are not recognised.
//!
//! Handshake messages are decoded with `tls-parser` (rusticata): record framing and handshake
//! reassembly across records are ours (bounded by [`Limits::max_message_len`]), and only ClientHello and
//! ServerHello go through `tls-parser`; certificates are read by the small DER walker in [`x509`].
//!
//! Validity contract: nothing here panics on any input; [`probe`] never allocates.

pub mod x509;

use crate::{
    util, Correlation, FlowParser, L7Parser, Limits, LogInfo, Message, MessageKind, ParseCtx,
    ParseError, ParseErrorKind, Probe, ProbeInput,
};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus};
use std::fmt::Write as _;
use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};

/// Largest record body accepted: 2^14 plus the 2048 bytes of expansion TLS 1.2 allows for ciphertext.
pub const MAX_RECORD_LEN: usize = 16384 + 2048;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 5;

/// A record content type (RFC 8446 §5.1). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentType(pub u8);

impl ContentType {
    /// change_cipher_spec.
    pub const CHANGE_CIPHER_SPEC: ContentType = ContentType(20);
    /// alert.
    pub const ALERT: ContentType = ContentType(21);
    /// handshake.
    pub const HANDSHAKE: ContentType = ContentType(22);
    /// application_data.
    pub const APPLICATION_DATA: ContentType = ContentType(23);
    /// heartbeat (RFC 6520).
    pub const HEARTBEAT: ContentType = ContentType(24);

    /// The RFC name, `None` for unassigned values.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            20 => "change_cipher_spec",
            21 => "alert",
            22 => "handshake",
            23 => "application_data",
            24 => "heartbeat",
            _ => return None,
        })
    }
}

/// An alert description (RFC 8446 §6 and the IANA registry). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    /// unrecognized_name (112).
    pub const UNRECOGNIZED_NAME: AlertDescription = AlertDescription(112);
    /// handshake_failure (40).
    pub const HANDSHAKE_FAILURE: AlertDescription = AlertDescription(40);

    /// The RFC name, `None` for unassigned values.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            21 => "decryption_failed",
            22 => "record_overflow",
            30 => "decompression_failure",
            40 => "handshake_failure",
            41 => "no_certificate",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            60 => "export_restriction",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            100 => "no_renegotiation",
            109 => "missing_extension",
            110 => "unsupported_extension",
            111 => "certificate_unobtainable",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            114 => "bad_certificate_hash_value",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => return None,
        })
    }
}

/// A protocol version on the wire (`0x0303` = TLS 1.2). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u16);

impl Version {
    /// TLS 1.2.
    pub const TLS12: Version = Version(0x0303);
    /// TLS 1.3.
    pub const TLS13: Version = Version(0x0304);

    /// The contract's version string (`1.3`, `1.2`, `1.1`, `1.0`, `ssl3`), `None` for other values.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0300 => "ssl3",
            0x0301 => "1.0",
            0x0302 => "1.1",
            0x0303 => "1.2",
            0x0304 => "1.3",
            _ => return None,
        })
    }

    /// The version string: [`Version::as_str`], or `1.3-draft<n>` for TLS 1.3 drafts (`0x7f<n>`).
    pub fn text(self) -> Option<String> {
        match self.as_str() {
            Some(s) => Some(s.to_string()),
            None if self.0 >> 8 == 0x7f => Some(format!("1.3-draft{}", self.0 & 0xff)),
            None => None,
        }
    }
}

/// The fields of a ServerHello we use. TLS 1.3 drafts before 22 have neither session id nor compression
/// (`tls-parser` decodes only draft 18 of those, so this one is ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello<'a> {
    /// The version field (`0x0303` for TLS 1.3, which negotiates in `supported_versions`).
    pub version: u16,
    /// The server random.
    pub random: &'a [u8],
    /// The selected cipher suite.
    pub cipher: u16,
    /// The raw extensions block, if any.
    pub ext: Option<&'a [u8]>,
}

impl<'a> ServerHello<'a> {
    /// Parse a whole ServerHello handshake message (with its 4-byte header).
    pub fn parse(msg: &'a [u8]) -> Option<ServerHello<'a>> {
        let b = msg.get(4..)?;
        let version = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let random = b.get(2..34)?;
        let mut p = 34;
        let draft = version >> 8 == 0x7f;
        if !draft {
            let sid = *b.get(p)? as usize;
            if sid > 32 {
                return None;
            }
            p += 1 + sid;
        }
        let cipher = u16::from_be_bytes([*b.get(p)?, *b.get(p + 1)?]);
        p += 2;
        if !draft {
            p += 1; // compression method
        }
        let ext = match b.get(p..p + 2) {
            Some(l) => {
                let n = u16::from_be_bytes([l[0], l[1]]) as usize;
                Some(b.get(p + 2..p + 2 + n)?)
            }
            None => None,
        };
        Some(ServerHello {
            version,
            random,
            cipher,
            ext,
        })
    }
}

/// The ServerHello random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// A record header: content type, version and body length, if the 5 bytes look like TLS.
fn record_header(h: &[u8]) -> Option<(ContentType, u16, usize)> {
    let h = h.get(..RECORD_HEADER_LEN)?;
    let ct = ContentType(h[0]);
    let version = u16::from_be_bytes([h[1], h[2]]);
    let len = u16::from_be_bytes([h[3], h[4]]) as usize;
    let ok = (20..=24).contains(&ct.0) && h[1] == 3 && h[2] <= 4 && len <= MAX_RECORD_LEN;
    ok.then_some((ct, version, len))
}

/// The TLS protocol: detection and per-flow parsers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsParser;

impl L7Parser for TlsParser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Tls
    }

    fn default_ports(&self) -> &[u16] {
        &[443, 8443, 993, 995, 465, 636, 853]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(TlsFlow::new(limits))
    }
}

/// Cheap detection at the start of a TCP stream: `Yes` for a handshake record starting with a ClientHello
/// or ServerHello, `Maybe` for other well-formed record headers (a capture that starts mid-connection),
/// `No` otherwise. Never allocates.
pub fn probe(payload: &[u8]) -> Probe {
    if payload.len() < RECORD_HEADER_LEN {
        // Check what there is of the header.
        let ok = match payload {
            [] => true,
            [t] => (20..=24).contains(t),
            [t, 3, ..] => (20..=24).contains(t),
            _ => false,
        };
        return if ok { Probe::Maybe } else { Probe::No };
    }
    let Some((ct, version, len)) = record_header(payload) else {
        return Probe::No;
    };
    match ct {
        ContentType::HANDSHAKE => {
            if len < 4 {
                return Probe::No;
            }
            let Some(&ht) = payload.get(5) else {
                return Probe::Maybe;
            };
            if ht != 1 && ht != 2 {
                return Probe::Maybe;
            }
            // The hello's own version (bytes 9-10) is 3.x as well.
            match payload.get(9..11) {
                Some([3, minor]) if *minor <= 4 => Probe::Yes,
                Some(_) => Probe::No,
                None => Probe::Maybe,
            }
        }
        ContentType::ALERT if len != 2 && version != 0x0303 => Probe::No,
        _ if version == 0x0300 => Probe::No,
        _ => Probe::Maybe,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// No handshake in progress.
    #[default]
    Idle,
    /// ClientHello sent, no ServerHello yet.
    AwaitServer,
    /// TLS ≤ 1.2 ServerHello seen; waiting for the server's CCS + Finished.
    Server12,
    /// TLS 1.3 ServerHello seen; the flight ends where the client's next flight begins.
    Server13,
}

/// State of the handshake in progress.
#[derive(Debug, Clone, Default)]
struct Handshake {
    phase: Phase,
    hrr: bool,
    server_ccs: bool,
    client_alpn: Option<String>,
    client_alert: Option<u8>,
    resp_start: Option<u64>,
    resp_end: u64,
    version: Option<String>,
    cipher: Option<u16>,
    alpn: Option<String>,
    cert: Option<x509::CertSummary>,
}

#[derive(Debug, Clone, Default)]
struct DirState {
    /// Body bytes of the current opaque record still to skip.
    skip: usize,
    skip_type: u8,
    skip_start: u64,
    /// Records of this direction are no longer plaintext (after its ChangeCipherSpec, a TLS 1.3
    /// ServerHello, or a gap).
    encrypted: bool,
    /// Reassembly of handshake messages split over records.
    hs_buf: Vec<u8>,
    /// Stream offset of the record holding the first byte of `hs_buf`.
    hs_start: u64,
    /// Resynchronise on record headers before parsing.
    resync: bool,
}

/// Per-flow TLS state.
#[derive(Debug, Clone)]
pub struct TlsFlow {
    dirs: [DirState; 2],
    hs: Handshake,
    max_field_len: usize,
}

impl TlsFlow {
    /// State for a new flow under `limits`.
    pub fn new(limits: &Limits) -> TlsFlow {
        TlsFlow {
            dirs: Default::default(),
            hs: Handshake::default(),
            max_field_len: limits.max_field_len,
        }
    }
}

/// Where to restart after a gap.
enum Resync {
    Found(usize),
    Wait(usize),
}

/// The first offset where a record header is followed, at its end, by another record header (or by the
/// end of `data` exactly).
fn resync(data: &[u8]) -> Resync {
    let mut i = 0;
    while i + RECORD_HEADER_LEN <= data.len() {
        if let Some((_, _, len)) = data.get(i..).and_then(record_header) {
            let next = i + RECORD_HEADER_LEN + len;
            if next == data.len() || data.get(next..).and_then(record_header).is_some() {
                return Resync::Found(i);
            }
            if next + RECORD_HEADER_LEN > data.len() {
                return Resync::Wait(i);
            }
        }
        i += 1;
    }
    Resync::Wait(i)
}

fn alert_text(desc: u8) -> String {
    match AlertDescription(desc).as_str() {
        Some(s) => s.to_string(),
        None => format!("alert_{desc}"),
    }
}

impl TlsFlow {
    /// The response message of the current handshake, ending it.
    fn finish_response(&mut self, alert: Option<u8>, out: &mut Vec<Message>) {
        let hs = std::mem::take(&mut self.hs);
        let Some(start) = hs.resp_start else {
            return;
        };
        let mut info = LogInfo {
            version: hs.version,
            ..LogInfo::default()
        };
        if let Some(desc) = alert.or(hs.client_alert) {
            info.response_code = Some(i64::from(desc));
            info.response_exception = Some(alert_text(desc));
            info.response_status = Some(ResponseStatus::ClientError);
        } else {
            info.response_status = Some(ResponseStatus::Ok);
        }
        let mut r = String::new();
        if let Some(c) = hs.cipher {
            match tls_parser::TlsCipherSuite::from_id(c) {
                Some(cs) => {
                    let _ = write!(r, "cipher={}", cs.name);
                }
                None => {
                    let _ = write!(r, "cipher=0x{c:04x}");
                }
            }
        }
        let mut kv = |k: &str, v: &str| {
            if !r.is_empty() {
                r.push(';');
            }
            r.push_str(k);
            r.push('=');
            r.push_str(v);
        };
        match (&hs.alpn, &hs.client_alpn) {
            (Some(a), _) => kv("alpn", a),
            (None, Some(offered)) if hs.cipher.is_some() => kv("alpn_offered", offered),
            _ => {}
        }
        if let Some(c) = &hs.cert {
            kv("subject", &c.subject);
            kv("issuer", &c.issuer);
            kv("not_after", &c.not_after);
        }
        if !r.is_empty() {
            info.response_result = Some(util::truncate(&r, self.max_field_len).to_string());
        }
        let end = hs.resp_end.max(start);
        out.push(
            Message::new(
                Direction::ServerToClient,
                MessageKind::Response,
                Correlation::Fifo,
                start,
                end,
            )
            .with_info(info),
        );
    }

    /// A record header of direction `d` starting at `start` was seen (possibly again, if its body was
    /// incomplete last time: must be idempotent).
    fn record_begin(
        &mut self,
        d: Direction,
        (ct, len): (ContentType, usize),
        start: u64,
        out: &mut Vec<Message>,
    ) {
        match d {
            Direction::ClientToServer => {
                // A plaintext alert is read first (it may be the reason the handshake ends).
                let alert = ct == ContentType::ALERT && len == 2 && !self.dirs[d.index()].encrypted;
                if self.hs.phase == Phase::Server13 && !alert {
                    self.finish_response(None, out);
                }
            }
            Direction::ServerToClient => {
                if self.hs.phase != Phase::Idle && self.hs.resp_start.is_none() {
                    self.hs.resp_start = Some(start);
                }
            }
        }
    }

    /// A whole record of direction `d` spanning `start..end`; `body` is given for plaintext records.
    fn record_done(
        &mut self,
        d: Direction,
        ct: ContentType,
        (start, end): (u64, u64),
        body: Option<&[u8]>,
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        let limits = ctx.limits;
        if d == Direction::ServerToClient && self.hs.phase != Phase::Idle {
            self.hs.resp_end = end;
        }
        let encrypted = self.dirs[d.index()].encrypted;
        match (ct, body) {
            (ContentType::CHANGE_CIPHER_SPEC, _) => {
                // In TLS 1.3 middlebox-compatibility mode a CCS is a dummy: around a HelloRetryRequest it
                // is followed by plaintext hellos.
                if !self.hs.hrr {
                    self.dirs[d.index()].encrypted = true;
                }
                if d == Direction::ServerToClient && self.hs.phase == Phase::Server12 {
                    self.hs.server_ccs = true;
                }
            }
            (ContentType::ALERT, Some(b)) if !encrypted && b.len() == 2 => {
                let (level, desc) = (b[0], b[1]);
                match d {
                    Direction::ServerToClient => {
                        if matches!(self.hs.phase, Phase::AwaitServer | Phase::Server12)
                            && !self.hs.server_ccs
                        {
                            self.finish_response(Some(desc), out);
                        }
                    }
                    Direction::ClientToServer => {
                        let fatal = (level == 2).then_some(desc);
                        if self.hs.phase == Phase::Server13 {
                            self.finish_response(fatal, out);
                        } else if fatal.is_some() && self.hs.phase != Phase::Idle {
                            self.hs.client_alert = fatal;
                        }
                    }
                }
            }
            (ContentType::HANDSHAKE, Some(b)) if !encrypted => {
                let dir = &mut self.dirs[d.index()];
                if dir.hs_buf.is_empty() {
                    dir.hs_start = start;
                }
                if dir.hs_buf.len() + b.len() > limits.max_message_len {
                    dir.hs_buf.clear();
                    return Err(ParseError::new(ParseErrorKind::TooLarge, 0));
                }
                dir.hs_buf.extend_from_slice(b);
                let buf = std::mem::take(&mut dir.hs_buf);
                let hs_start = dir.hs_start;
                let mut pos = 0;
                while let Some(h) = buf.get(pos..pos + 4) {
                    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
                    let Some(msg) = buf.get(pos..pos + 4 + len) else {
                        break;
                    };
                    let msg_start = if pos == 0 { hs_start } else { start };
                    self.handshake_message(d, msg, msg_start, end, limits, out);
                    pos += 4 + len;
                }
                let dir = &mut self.dirs[d.index()];
                let mut buf = buf;
                buf.drain(..pos);
                dir.hs_buf = buf;
                if !dir.hs_buf.is_empty() && pos > 0 {
                    dir.hs_start = start;
                }
            }
            _ => {
                // An opaque record (application data, encrypted handshake, heartbeat).
                if d == Direction::ServerToClient
                    && self.hs.phase == Phase::Server12
                    && self.hs.server_ccs
                {
                    // The server's encrypted Finished.
                    self.finish_response(None, out);
                }
            }
        }
        Ok(())
    }

    fn handshake_message(
        &mut self,
        d: Direction,
        msg: &[u8],
        start: u64,
        end: u64,
        limits: &Limits,
        out: &mut Vec<Message>,
    ) {
        let ht = msg.first().copied().unwrap_or(0);
        match (d, ht) {
            (Direction::ClientToServer, 1) => {
                if self.hs.phase == Phase::AwaitServer && self.hs.hrr {
                    self.hs.hrr = false; // the second ClientHello after a HelloRetryRequest
                    return;
                }
                let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) =
                    tls_parser::parse_tls_message_handshake(msg)
                else {
                    return;
                };
                let mut sni = None;
                let mut alpn = None;
                if let Some(ext) = ch.ext {
                    if let Ok((_, exts)) = tls_parser::parse_tls_client_hello_extensions(ext) {
                        for e in exts {
                            match e {
                                TlsExtension::SNI(names) => {
                                    sni = names
                                        .iter()
                                        .find(|(t, _)| t.0 == 0)
                                        .map(|(_, n)| util::lossy(n, limits.max_field_len));
                                }
                                TlsExtension::ALPN(list) => {
                                    let mut s = String::new();
                                    for p in list {
                                        if !s.is_empty() {
                                            s.push(',');
                                        }
                                        s.push_str(&String::from_utf8_lossy(p));
                                    }
                                    alpn = Some(s);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                self.hs = Handshake {
                    phase: Phase::AwaitServer,
                    client_alpn: alpn,
                    ..Handshake::default()
                };
                let info = LogInfo {
                    request_type: Some("ClientHello".to_string()),
                    request_domain: sni.clone(),
                    request_resource: sni.clone(),
                    endpoint: sni,
                    ..LogInfo::default()
                };
                out.push(
                    Message::new(
                        Direction::ClientToServer,
                        MessageKind::Request,
                        Correlation::Fifo,
                        start,
                        end,
                    )
                    .with_info(info),
                );
            }
            (Direction::ServerToClient, 2) => {
                let Some(sh) = ServerHello::parse(msg) else {
                    return;
                };
                if self.hs.phase == Phase::Idle {
                    // A ServerHello without a ClientHello (capture started mid-handshake): its response
                    // will be an orphan, counted by the engine.
                    self.hs.resp_start = Some(start);
                }
                if sh.random == HRR_RANDOM {
                    self.hs.hrr = true;
                    self.hs.phase = Phase::AwaitServer;
                    return;
                }
                let mut version = sh.version;
                if let Some(ext) = sh.ext {
                    if let Ok((_, exts)) = tls_parser::parse_tls_server_hello_extensions(ext) {
                        for e in exts {
                            match e {
                                TlsExtension::SupportedVersions(v) => {
                                    if let Some(v) = v.first() {
                                        version = v.0;
                                    }
                                }
                                TlsExtension::ALPN(list) => {
                                    self.hs.alpn =
                                        list.first().map(|p| util::lossy(p, limits.max_field_len));
                                }
                                _ => {}
                            }
                        }
                    }
                }
                self.hs.version = Version(version).text();
                self.hs.cipher = Some(sh.cipher);
                if version >= Version::TLS13.0 {
                    self.hs.phase = Phase::Server13;
                    self.dirs[d.index()].encrypted = true;
                } else {
                    self.hs.phase = Phase::Server12;
                }
            }
            (Direction::ServerToClient, 11)
                if self.hs.phase == Phase::Server12 && self.hs.cert.is_none() =>
            {
                // certificate_list<3>, then the first ASN.1Cert<3>.
                let first = msg.get(7..10).and_then(|l| {
                    let n = u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize;
                    msg.get(10..10 + n)
                });
                self.hs.cert = first.and_then(x509::summarize);
            }
            _ => {}
        }
    }
}

impl FlowParser for TlsFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let d = ctx.direction;
        let di = d.index();
        let mut pos = 0;
        if self.dirs[di].resync {
            match resync(data) {
                Resync::Found(i) => {
                    self.dirs[di].resync = false;
                    pos = i;
                }
                Resync::Wait(i) => return Ok(i),
            }
        }
        loop {
            let dir = &mut self.dirs[di];
            if dir.skip > 0 {
                let n = dir.skip.min(data.len().saturating_sub(pos));
                dir.skip -= n;
                pos += n;
                if dir.skip > 0 {
                    break;
                }
                let (ct, start) = (ContentType(dir.skip_type), dir.skip_start);
                self.record_done(d, ct, (start, ctx.pos(pos)), None, ctx, out)?;
                continue;
            }
            let Some(h) = data.get(pos..pos + RECORD_HEADER_LEN) else {
                break;
            };
            let Some((ct, _, len)) = record_header(h) else {
                return Err(ParseError::new(ParseErrorKind::Invalid, pos));
            };
            let start = ctx.pos(pos);
            self.record_begin(d, (ct, len), start, out);
            let plaintext = match ct {
                ContentType::CHANGE_CIPHER_SPEC => true,
                ContentType::ALERT | ContentType::HANDSHAKE => !self.dirs[di].encrypted,
                _ => false,
            };
            if plaintext {
                let Some(body) = data.get(pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len)
                else {
                    break;
                };
                pos += RECORD_HEADER_LEN + len;
                self.record_done(d, ct, (start, ctx.pos(pos)), Some(body), ctx, out)?;
            } else {
                pos += RECORD_HEADER_LEN;
                let dir = &mut self.dirs[di];
                dir.skip = len;
                dir.skip_type = ct.0;
                dir.skip_start = start;
                if len == 0 {
                    self.record_done(d, ct, (start, ctx.pos(pos)), None, ctx, out)?;
                }
            }
        }
        Ok(pos)
    }

    fn on_gap(&mut self, direction: Direction, _lost: u64) {
        let dir = &mut self.dirs[direction.index()];
        dir.resync = true;
        dir.skip = 0;
        dir.hs_buf.clear();
        dir.encrypted = true;
    }

    fn on_close(&mut self, _end_offsets: [u64; 2], out: &mut Vec<Message>) {
        if matches!(self.hs.phase, Phase::Server12 | Phase::Server13) {
            self.finish_response(None, out);
        }
    }
}

#[cfg(test)]
mod tests;
