//! Decoding what a DeepFlow-ABI plugin hands to `host_read_l7_protocol_info`: a run of frames, each a
//! big-endian `u16` length then that many bytes.
//!
//! A frame starting with the two bytes `PB` carries a protobuf `AppInfo` (DeepFlow's
//! `agent/src/plugin/WasmPluginApi.proto`, written by the current `deepflow-wasm-go-sdk`; the length counts
//! the `PB`). Any other frame is the older hand-packed record of DeepFlow agents before the protobuf
//! encoding (still accepted by them, and by us): see [`decode_legacy`] for its layout.
//!
//! Validity contract: any byte string is accepted as input; decoding never panics, allocates at most a small
//! multiple of the input length, returns at most [`MAX_FRAMES`] records, and clips every string to
//! [`crate::MAX_FIELD_LEN`] bytes and every attribute list to [`MAX_ATTRIBUTES`] entries. The protobuf
//! messages are plain `prost` derives written here (no `protoc` at build time).

use crate::MAX_FIELD_LEN;
use fathom_model::{Direction, ResponseStatus};
use fathom_protocols::{LogInfo, MessageKind};

/// At most this many records are read from one result.
pub const MAX_FRAMES: usize = 64;
/// At most this many attributes are kept per record (the rest are dropped).
pub const MAX_ATTRIBUTES: usize = 64;

/// One message as a DeepFlow plugin described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeepFlowInfo {
    /// Request or response (from the protobuf `oneof`, else from the direction of the bytes).
    pub kind: Option<MessageKind>,
    /// The protocol's request id (`AppInfo.request_id`): pairs by id when set.
    pub request_id: Option<u32>,
    /// Request length in bytes, when the plugin said.
    pub req_len: Option<u32>,
    /// Response length in bytes, when the plugin said.
    pub resp_len: Option<u32>,
    /// The log fields (request or response half).
    pub info: LogInfo,
    /// `AppInfo.attributes`, clipped to [`MAX_ATTRIBUTES`].
    pub attributes: Vec<(String, String)>,
    /// `AppInfo.protocol_str`, when non-empty.
    pub protocol: Option<String>,
    /// `AppInfo.is_end`: `None` means "complete, nothing to merge"; `Some(false)` a part of a message whose
    /// following parts come in later records; `Some(true)` the last part.
    pub is_end: Option<bool>,
    /// `AppInfo.biz_type`.
    pub biz_type: Option<u32>,
}

/// Why a result could not be decoded. Small and `Copy`: offsets are into the whole result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultError {
    /// The result, or a frame, ends before its declared length (or the result is empty).
    Truncated {
        /// Where the missing bytes should start.
        offset: usize,
    },
    /// More than [`MAX_FRAMES`] frames.
    TooManyFrames,
    /// A `PB` frame whose protobuf does not decode as `AppInfo`.
    Protobuf {
        /// Offset of the frame.
        offset: usize,
    },
    /// A legacy frame that breaks its layout.
    Legacy {
        /// Offset of the frame.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl std::fmt::Display for ResultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResultError::Truncated { offset } => write!(f, "result truncated at byte {offset}"),
            ResultError::TooManyFrames => write!(f, "more than {MAX_FRAMES} records in one result"),
            ResultError::Protobuf { offset } => {
                write!(f, "the protobuf AppInfo at byte {offset} does not decode")
            }
            ResultError::Legacy { offset, what } => {
                write!(f, "legacy record at byte {offset}: {what}")
            }
        }
    }
}

impl std::error::Error for ResultError {}

/// The protobuf messages of `WasmPluginApi.proto`, as plain `prost` derives.
pub mod pb {
    #![allow(missing_docs)]

    /// `AppRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppRequest {
        #[prost(string, optional, tag = "1")]
        pub version: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub r#type: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub domain: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub resource: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub endpoint: Option<String>,
    }

    /// `AppResponse` (`status` is the `AppRespStatus` enum: 0 ok, 2 timeout, 3 server error, 4 client
    /// error, 5 unknown).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppResponse {
        #[prost(int32, optional, tag = "1")]
        pub status: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        pub code: Option<i32>,
        #[prost(string, optional, tag = "3")]
        pub exception: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub result: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub r#type: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub endpoint: Option<String>,
    }

    /// `AppTrace`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppTrace {
        #[prost(string, optional, tag = "1")]
        pub trace_id: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub span_id: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub parent_span_id: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub x_request_id: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub http_proxy_client: Option<String>,
        #[prost(string, repeated, tag = "6")]
        pub trace_ids: Vec<String>,
    }

    /// `KeyVal`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyVal {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub val: String,
    }

    /// The `info` oneof of `AppInfo`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Info {
        #[prost(message, tag = "10")]
        Req(AppRequest),
        #[prost(message, tag = "11")]
        Resp(AppResponse),
    }

    /// `AppInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AppInfo {
        #[prost(uint32, optional, tag = "1")]
        pub req_len: Option<u32>,
        #[prost(uint32, optional, tag = "2")]
        pub resp_len: Option<u32>,
        #[prost(uint32, optional, tag = "3")]
        pub request_id: Option<u32>,
        #[prost(oneof = "Info", tags = "10, 11")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "12")]
        pub trace: Option<AppTrace>,
        #[prost(string, optional, tag = "13")]
        pub protocol_str: Option<String>,
        #[prost(bool, optional, tag = "21")]
        pub is_end: Option<bool>,
        #[prost(bool, optional, tag = "22")]
        pub is_async: Option<bool>,
        #[prost(bool, optional, tag = "23")]
        pub is_reversed: Option<bool>,
        #[prost(message, repeated, tag = "31")]
        pub attributes: Vec<KeyVal>,
        #[prost(uint32, optional, tag = "32")]
        pub biz_type: Option<u32>,
        #[prost(string, optional, tag = "33")]
        pub biz_code: Option<String>,
        #[prost(string, optional, tag = "34")]
        pub biz_scenario: Option<String>,
        #[prost(string, optional, tag = "35")]
        pub biz_response_code: Option<String>,
    }
}

/// DeepFlow's `AppRespStatus` (and the status byte of the legacy record and of the HTTP response context).
pub fn status_from_code(code: i32) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        2 => ResponseStatus::Timeout,
        3 => ResponseStatus::ServerError,
        4 => ResponseStatus::ClientError,
        _ => ResponseStatus::Unknown,
    }
}

/// The DeepFlow status byte for one of ours.
pub fn status_to_code(status: ResponseStatus) -> u8 {
    match status {
        ResponseStatus::Ok => 0,
        ResponseStatus::Timeout => 2,
        ResponseStatus::ServerError => 3,
        ResponseStatus::ClientError => 4,
        ResponseStatus::Unknown => 5,
    }
}

/// Empty strings mean "not set" in DeepFlow results; long ones are clipped at a char boundary.
fn field(s: Option<String>) -> Option<String> {
    let mut s = s.filter(|s| !s.is_empty())?;
    if s.len() > MAX_FIELD_LEN {
        let mut cut = MAX_FIELD_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    Some(s)
}

/// Decode a whole `host_read_l7_protocol_info` result: the frames of messages seen travelling `direction`.
///
/// # Errors
/// [`ResultError`] when the framing or one record is malformed; nothing is returned then (as DeepFlow, which
/// drops the whole result).
pub fn decode_result(buf: &[u8], direction: Direction) -> Result<Vec<DeepFlowInfo>, ResultError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        let Some(len) = buf.get(off..off + 2) else {
            return Err(ResultError::Truncated { offset: off });
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let frame = buf
            .get(off + 2..off + 2 + len)
            .ok_or(ResultError::Truncated { offset: off + 2 })?;
        if out.len() == MAX_FRAMES {
            return Err(ResultError::TooManyFrames);
        }
        out.push(decode_frame(frame, direction, off)?);
        off += 2 + len;
        if off == buf.len() {
            return Ok(out);
        }
    }
}

/// One frame (without its length prefix); `at` is its offset, for errors.
pub fn decode_frame(
    frame: &[u8],
    direction: Direction,
    at: usize,
) -> Result<DeepFlowInfo, ResultError> {
    match frame.strip_prefix(b"PB") {
        Some(pb) => decode_pb(pb, direction, at),
        None => decode_legacy(frame, direction, at),
    }
}

fn kind_of(direction: Direction) -> MessageKind {
    match direction {
        Direction::ClientToServer => MessageKind::Request,
        Direction::ServerToClient => MessageKind::Response,
    }
}

fn decode_pb(bytes: &[u8], direction: Direction, at: usize) -> Result<DeepFlowInfo, ResultError> {
    use prost::Message as _;
    let app = pb::AppInfo::decode(bytes).map_err(|_| ResultError::Protobuf { offset: at })?;
    let mut d = DeepFlowInfo {
        request_id: app.request_id,
        req_len: app.req_len,
        resp_len: app.resp_len,
        protocol: field(app.protocol_str),
        is_end: app.is_end,
        biz_type: app.biz_type,
        ..DeepFlowInfo::default()
    };
    let info = &mut d.info;
    d.kind = Some(match app.info {
        Some(pb::Info::Req(r)) => {
            info.version = field(r.version);
            info.request_type = field(r.r#type);
            info.request_domain = field(r.domain);
            info.request_resource = field(r.resource);
            info.endpoint = field(r.endpoint);
            MessageKind::Request
        }
        Some(pb::Info::Resp(r)) => {
            info.response_status = r.status.map(status_from_code);
            info.response_code = r.code.map(i64::from);
            info.response_exception = field(r.exception);
            info.response_result = field(r.result);
            info.request_type = field(r.r#type);
            info.endpoint = field(r.endpoint);
            MessageKind::Response
        }
        None => kind_of(direction),
    });
    info.request_id = app.request_id.map(u64::from);
    if let Some(t) = app.trace {
        info.trace_id = field(t.trace_id).or_else(|| field(t.trace_ids.into_iter().next()));
        info.span_id = field(t.span_id);
        info.parent_span_id = field(t.parent_span_id);
        info.x_request_id = field(t.x_request_id);
    }
    d.attributes = app
        .attributes
        .into_iter()
        .take(MAX_ATTRIBUTES)
        .filter_map(|kv| {
            Some((
                field(Some(kv.key))?,
                field(Some(kv.val)).unwrap_or_default(),
            ))
        })
        .collect();
    Ok(d)
}

/// A cursor over a legacy record.
struct Legacy<'a> {
    buf: &'a [u8],
    off: usize,
    at: usize,
}

impl<'a> Legacy<'a> {
    fn err(&self, what: &'static str) -> ResultError {
        ResultError::Legacy {
            offset: self.at,
            what,
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ResultError> {
        let b = *self.buf.get(self.off).ok_or(self.err(what))?;
        self.off += 1;
        Ok(b)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ResultError> {
        let b = self.buf.get(self.off..self.off + 4).ok_or(self.err(what))?;
        self.off += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `u16` length then that many bytes; `None` (offset unchanged) when they are not all there.
    fn try_str(&mut self) -> Option<String> {
        let l = self.buf.get(self.off..self.off + 2)?;
        let l = u16::from_be_bytes([l[0], l[1]]) as usize;
        let s = self.buf.get(self.off + 2..self.off + 2 + l)?;
        self.off += 2 + l;
        Some(String::from_utf8_lossy(s).into_owned())
    }
    fn str(&mut self, what: &'static str) -> Result<Option<String>, ResultError> {
        match self.try_str() {
            Some(s) => Ok(field(Some(s))),
            None => Err(self.err(what)),
        }
    }
}

/// The hand-packed record of DeepFlow agents before the protobuf encoding (all integers big-endian):
///
/// ```text
/// req_len   u32   top bit set: present, low 31 bits the length
/// resp_len  u32   same
/// has_id    u8    0 or 1, then request_id u32 when 1
/// request (bytes travelling client to server): req_type, endpoint, domain, resource   (str each)
/// response (server to client): status u8 (0 ok, 2 no response, 3 server error, 4 client error),
///                              has_code u8 (0/1) then code i32 when 1, result, exception (str each)
/// protocol_str  str
/// merge     u8    top bit: the record is part of a message to merge; low bit: it is the last part
/// has_trace u8    0/1, then trace_id, span_id, parent_span_id (str each)
/// has_kv    u8    0/1, then (key str, val str) pairs up to the last byte
/// biz_type  u8
/// str = u16 length + bytes
/// ```
pub fn decode_legacy(
    frame: &[u8],
    direction: Direction,
    at: usize,
) -> Result<DeepFlowInfo, ResultError> {
    let mut c = Legacy {
        buf: frame,
        off: 0,
        at,
    };
    if frame.len() < 9 {
        return Err(c.err("shorter than 9 bytes"));
    }
    let mut d = DeepFlowInfo {
        kind: Some(kind_of(direction)),
        ..DeepFlowInfo::default()
    };
    let req_len = c.u32("req_len")?;
    d.req_len = (req_len >> 31 != 0).then_some(req_len & 0x7fff_ffff);
    let resp_len = c.u32("resp_len")?;
    d.resp_len = (resp_len >> 31 != 0).then_some(resp_len & 0x7fff_ffff);
    d.request_id = match c.u8("has_id")? {
        0 => None,
        1 => Some(c.u32("request_id")?),
        _ => return Err(c.err("has_id is neither 0 nor 1")),
    };
    let info = &mut d.info;
    info.request_id = d.request_id.map(u64::from);
    match direction {
        Direction::ClientToServer => {
            info.request_type = c.str("request type")?;
            info.endpoint = c.str("endpoint")?;
            info.request_domain = c.str("domain")?;
            info.request_resource = c.str("resource")?;
        }
        Direction::ServerToClient => {
            let status = c.u8("status")?;
            if !matches!(status, 0 | 2 | 3 | 4) {
                return Err(c.err("unknown status"));
            }
            info.response_status = Some(status_from_code(status.into()));
            info.response_code = match c.u8("has_code")? {
                0 => None,
                1 => Some(i64::from(c.u32("code")? as i32)),
                _ => return Err(c.err("has_code is neither 0 nor 1")),
            };
            info.response_result = c.str("result")?;
            info.response_exception = c.str("exception")?;
        }
    }
    d.protocol = c.str("protocol name")?;
    let merge = c.u8("merge flags")?;
    d.is_end = (merge & 0x80 != 0).then_some(merge & 1 != 0);
    match c.u8("has_trace")? {
        0 => {}
        1 => {
            info.trace_id = c.str("trace id")?;
            info.span_id = c.str("span id")?;
            info.parent_span_id = c.str("parent span id")?;
        }
        _ => return Err(c.err("has_trace is neither 0 nor 1")),
    }
    match c.u8("has_kv")? {
        0 => {}
        1 => {
            while let Some(key) = c.try_str() {
                let Some(val) = c.try_str() else { break };
                if d.attributes.len() < MAX_ATTRIBUTES {
                    if let Some(key) = field(Some(key)) {
                        d.attributes
                            .push((key, field(Some(val)).unwrap_or_default()));
                    }
                }
            }
        }
        _ => return Err(c.err("has_kv is neither 0 nor 1")),
    }
    d.biz_type = Some(c.u8("biz_type")?.into());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn pb_frame(app: &pb::AppInfo) -> Vec<u8> {
        let mut body = b"PB".to_vec();
        body.extend(app.encode_to_vec());
        frame(&body)
    }

    #[test]
    fn protobuf_request_and_response() {
        let req = pb::AppInfo {
            request_id: Some(7),
            req_len: Some(20),
            info: Some(pb::Info::Req(pb::AppRequest {
                r#type: Some("Get".into()),
                domain: Some(String::new()),
                resource: Some("/a".into()),
                endpoint: Some("a".into()),
                version: None,
            })),
            protocol_str: Some("FRPC".into()),
            attributes: vec![pb::KeyVal {
                key: "k".into(),
                val: "v".into(),
            }],
            trace: Some(pb::AppTrace {
                trace_ids: vec!["t1".into()],
                span_id: Some("s".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = pb::AppInfo {
            request_id: Some(7),
            info: Some(pb::Info::Resp(pb::AppResponse {
                status: Some(4),
                code: Some(-3),
                exception: Some("denied".into()),
                ..Default::default()
            })),
            is_end: Some(true),
            ..Default::default()
        };
        let mut buf = pb_frame(&req);
        buf.extend(pb_frame(&resp));
        let got = decode_result(&buf, Direction::ClientToServer).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, Some(MessageKind::Request));
        assert_eq!(got[0].info.request_type.as_deref(), Some("Get"));
        assert_eq!(got[0].info.request_domain, None);
        assert_eq!(got[0].info.request_id, Some(7));
        assert_eq!(got[0].info.trace_id.as_deref(), Some("t1"));
        assert_eq!(got[0].attributes, vec![("k".into(), "v".into())]);
        assert_eq!(got[0].protocol.as_deref(), Some("FRPC"));
        assert_eq!(got[0].req_len, Some(20));
        assert_eq!(got[1].kind, Some(MessageKind::Response));
        assert_eq!(
            got[1].info.response_status,
            Some(ResponseStatus::ClientError)
        );
        assert_eq!(got[1].info.response_code, Some(-3));
        assert_eq!(got[1].is_end, Some(true));
    }

    #[test]
    fn legacy_request_and_response() {
        // req_len present (5), resp_len absent, request id 9, 4 strings, protocol, merge, trace, kv, biz.
        let mut r = vec![0x80, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        for s in ["Get", "ep", "", "/res"] {
            r.extend((s.len() as u16).to_be_bytes());
            r.extend(s.as_bytes());
        }
        r.extend([0, 4]);
        r.extend(b"frpc");
        r.push(0x81);
        r.push(0);
        r.push(1);
        for s in ["k", "v"] {
            r.extend((s.len() as u16).to_be_bytes());
            r.extend(s.as_bytes());
        }
        r.push(3);
        let got = decode_result(&frame(&r), Direction::ClientToServer).unwrap();
        let g = &got[0];
        assert_eq!(g.req_len, Some(5));
        assert_eq!(g.resp_len, None);
        assert_eq!(g.request_id, Some(9));
        assert_eq!(g.info.request_type.as_deref(), Some("Get"));
        assert_eq!(g.info.endpoint.as_deref(), Some("ep"));
        assert_eq!(g.info.request_domain, None);
        assert_eq!(g.info.request_resource.as_deref(), Some("/res"));
        assert_eq!(g.protocol.as_deref(), Some("frpc"));
        assert_eq!(g.is_end, Some(true));
        assert_eq!(g.attributes, vec![("k".into(), "v".into())]);
        assert_eq!(g.biz_type, Some(3));

        let mut s = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0xff, 0xff, 0xff, 0xfe];
        s.extend([0, 0, 0, 4]);
        s.extend(b"boom");
        s.extend([0, 0, 0, 0, 0, 0, 0]);
        let got = decode_result(&frame(&s), Direction::ServerToClient).unwrap();
        assert_eq!(got[0].kind, Some(MessageKind::Response));
        assert_eq!(
            got[0].info.response_status,
            Some(ResponseStatus::ServerError)
        );
        assert_eq!(got[0].info.response_code, Some(-2));
        assert_eq!(got[0].info.response_exception.as_deref(), Some("boom"));
        assert_eq!(got[0].is_end, None);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            decode_result(&[], Direction::ClientToServer),
            Err(ResultError::Truncated { offset: 0 })
        );
        assert_eq!(
            decode_result(&[0, 9, b'P', b'B'], Direction::ClientToServer),
            Err(ResultError::Truncated { offset: 2 })
        );
        assert!(matches!(
            decode_result(&[0, 3, b'P', b'B', 0xff], Direction::ClientToServer),
            Err(ResultError::Protobuf { offset: 0 })
        ));
        assert!(matches!(
            decode_result(&[0, 3, 1, 2, 3], Direction::ClientToServer),
            Err(ResultError::Legacy { .. })
        ));
        let many: Vec<u8> = (0..=MAX_FRAMES)
            .flat_map(|_| [0u8, 2, b'P', b'B'])
            .collect();
        assert_eq!(
            decode_result(&many, Direction::ClientToServer),
            Err(ResultError::TooManyFrames)
        );
    }

    #[test]
    fn long_fields_are_clipped() {
        let app = pb::AppInfo {
            info: Some(pb::Info::Req(pb::AppRequest {
                resource: Some("é".repeat(MAX_FIELD_LEN)),
                ..Default::default()
            })),
            ..Default::default()
        };
        let got = decode_result(&pb_frame(&app), Direction::ClientToServer).unwrap();
        let r = got[0].info.request_resource.as_ref().unwrap();
        assert!(r.len() <= MAX_FIELD_LEN && r.len() >= MAX_FIELD_LEN - 1);
    }
}
