//! Message hooks: user code that sees every parsed message of chosen protocols and edits its log fields.
//!
//! A [`MessageHook`] is registered with [`crate::Engine::add_hook`]. For each request, response and one-way
//! message (events are not logged and not hooked) of a protocol the hook [applies to](MessageHook::applies_to),
//! the engine calls [`MessageHook::on_message`] after the parser has emitted the message and before the
//! request/response pairing, with
//! - a [`HookInput`]: the message's protocol, direction, kind, flow, capture time and the first bytes of the
//!   message as they travelled on the wire (at most [`crate::Limits::max_hook_bytes`]; see
//!   [`HookInput::bytes`] for when they are truncated), and
//! - the message's [`LogInfo`], which the hook may edit: rewrite `endpoint`, `request_type`,
//!   `response_status`, `response_code`..., and add [`LogInfo::tags`], which end up in
//!   [`fathom_model::RequestLog::tags`].
//!
//! When the request and its response are merged into one RequestLog, request-side fields (type, domain,
//! resource, endpoint, ids, trace context) come from the request's `LogInfo` and response-side fields (status,
//! code, exception, result) from the response's, as for the parsers: a request hook rewrites the endpoint, a
//! response hook the status. A response hook that sets a request-side field only fills it when the request left
//! it empty. Tags of both halves are merged, the request's first; on a key set by both, the response's wins.
//!
//! Hooks run in registration order, each seeing the edits of the previous ones. A hook runs on the parse thread:
//! it must be quick and must not panic; it cannot fail the parse (a hook that cannot do its job leaves `info`
//! unchanged and counts its own failures, as the WASM plugin host does).
//!
//! Cost: with no hook registered the engine does no hook work (one flag test per parse call, an emptiness
//! test of the tags per log); the one thing every flow pays is the larger [`LogInfo`] (its `tags` vector),
//! measured at 2–3 % on the HTTP/1 engine benchmark. A flow whose protocol no hook applies to costs the same;
//! a hooked flow keeps up to `max_hook_bytes` of its current message per direction (so that a message whose
//! head and body arrive in different segments still shows its head to the hook).

use crate::{LogInfo, MessageKind};
use fathom_model::{Direction, FlowId, FlowKey, L7Protocol, TimestampUs};

/// What a hook sees of one message. Borrowed: valid for the duration of [`MessageHook::on_message`] only.
#[derive(Debug, Clone, Copy)]
pub struct HookInput<'a> {
    /// The message's protocol: the flow's, or the one the parser labelled the message with (gRPC messages of
    /// an HTTP/2 flow say [`L7Protocol::Grpc`]).
    pub protocol: &'a L7Protocol,
    /// Which way it travelled.
    pub direction: Direction,
    /// Request, response or one-way.
    pub kind: MessageKind,
    /// The flow, oriented client → server.
    pub flow: &'a FlowKey,
    /// The capture's id of the flow.
    pub flow_id: FlowId,
    /// Capture time of the message's first byte, µs since the Unix epoch.
    pub time_us: TimestampUs,
    /// The first bytes of the message, from its first byte on: at most [`crate::Limits::max_hook_bytes`], and
    /// fewer when the engine no longer holds them (see [`HookInput::is_truncated`]). Empty when the start of
    /// the message is not held at all. These are stream bytes from the message's start offset to its end
    /// offset: for HTTP/1 the head then the body (a body decoded from chunked encoding is not re-assembled); for
    /// HTTP/2 the frames of the stream, possibly interleaved with frames of other streams, header blocks still
    /// HPACK-coded (use the `LogInfo` fields the parser decoded).
    pub bytes: &'a [u8],
    /// Length of the message on the wire (end offset minus start offset).
    pub message_len: u64,
}

impl HookInput<'_> {
    /// True when [`HookInput::bytes`] holds less than the whole message.
    pub fn is_truncated(&self) -> bool {
        (self.bytes.len() as u64) < self.message_len
    }
}

/// Code run on every message of the protocols it applies to, able to edit the message's log fields.
///
/// ```
/// use fathom_model::L7Protocol;
/// use fathom_protocols::{HookInput, LogInfo, MessageHook, MessageKind};
///
/// /// Tags every HTTP request with its User-Agent class and folds `/users/<id>` endpoints.
/// struct Tagger;
/// impl MessageHook for Tagger {
///     fn applies_to(&self, p: &L7Protocol) -> bool {
///         matches!(p, L7Protocol::Http1 | L7Protocol::Http2)
///     }
///     fn on_message(&self, input: &HookInput<'_>, info: &mut LogInfo) {
///         if input.kind == MessageKind::Request {
///             if info.endpoint.as_deref().is_some_and(|e| e.starts_with("/users/")) {
///                 info.endpoint = Some("/users/:id".into());
///             }
///             let curl = input.bytes.windows(5).any(|w| w == b"curl/");
///             info.tags.push(("client".into(), if curl { "curl" } else { "other" }.into()));
///         }
///     }
/// }
/// # let mut engine = fathom_protocols::Engine::new(Vec::new(), fathom_protocols::Limits::default());
/// engine.add_hook(std::sync::Arc::new(Tagger));
/// ```
pub trait MessageHook: Send + Sync {
    /// A short name for diagnostics.
    fn name(&self) -> &str {
        "hook"
    }

    /// Whether the hook wants messages of `protocol`. Asked when a flow's protocol is detected (with the flow's
    /// protocol; for an HTTP/2 flow also with [`L7Protocol::Grpc`], since its messages may be gRPC) and for each
    /// message (with the message's protocol). Must be cheap and consistent.
    fn applies_to(&self, protocol: &L7Protocol) -> bool;

    /// Look at one message and edit its log fields. Must not panic; cannot fail the parse.
    fn on_message(&self, input: &HookInput<'_>, info: &mut LogInfo);
}

/// True when one of `hooks` may want messages of a flow detected as `protocol`.
pub(crate) fn flow_hooked(
    hooks: &[std::sync::Arc<dyn MessageHook>],
    protocol: &L7Protocol,
) -> bool {
    hooks.iter().any(|h| {
        h.applies_to(protocol)
            || (*protocol == L7Protocol::Http2 && h.applies_to(&L7Protocol::Grpc))
    })
}

#[cfg(all(test, feature = "proto-http1", feature = "proto-redis"))]
mod tests {
    use super::*;
    use crate::test_support::{chunk, tcp_flow};
    use crate::{builtin_parsers, Engine, Limits};
    use fathom_model::{RequestLog, ResponseStatus};
    use std::sync::{Arc, Mutex};

    /// Records what it sees; renames `/users/...` endpoints, tags requests with their User-Agent header and
    /// responses with their `Server` header, and counts a 404 as ok.
    #[derive(Default)]
    struct Probe {
        seen: Mutex<Vec<Seen>>,
    }

    /// Protocol, kind, bytes and message length of one hooked message.
    type Seen = (L7Protocol, MessageKind, Vec<u8>, u64);

    fn header<'a>(bytes: &'a [u8], name: &str) -> Option<&'a str> {
        let text = std::str::from_utf8(bytes).ok()?;
        let head = text.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    impl MessageHook for Probe {
        fn applies_to(&self, p: &L7Protocol) -> bool {
            *p == L7Protocol::Http1
        }
        fn on_message(&self, input: &HookInput<'_>, info: &mut LogInfo) {
            self.seen.lock().unwrap().push((
                input.protocol.clone(),
                input.kind,
                input.bytes.to_vec(),
                input.message_len,
            ));
            match input.kind {
                MessageKind::Request => {
                    if let Some(e) = info.endpoint.as_deref() {
                        if e.starts_with("/users/") {
                            info.endpoint = Some("user-service".into());
                        }
                    }
                    if let Some(ua) = header(input.bytes, "user-agent") {
                        info.tags.push(("ua".into(), ua.into()));
                    }
                    info.tags.push(("side".into(), "request".into()));
                }
                _ => {
                    if info.response_code == Some(404) {
                        info.response_status = Some(ResponseStatus::Ok);
                    }
                    if let Some(s) = header(input.bytes, "server") {
                        info.tags.push(("server".into(), s.into()));
                    }
                    info.tags.push(("side".into(), "response".into()));
                }
            }
        }
    }

    const REQ: &[u8] = b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8.0\r\n\r\n";
    const RESP_HEAD: &[u8] =
        b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 10\r\n\r\n";
    const REDIS_REQ: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";

    /// HTTP/1 on flow 1 (response body in two more segments), Redis on flow 2.
    fn run(hook: Option<Arc<Probe>>) -> Vec<RequestLog> {
        let mut e = Engine::new(builtin_parsers(), Limits::default());
        if let Some(h) = hook {
            e.add_hook(h);
        }
        let mut logs = Vec::new();
        let http = tcp_flow(40000, 80);
        e.on_chunk(&chunk(http, true, 1_000, REQ, 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_000, RESP_HEAD, 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_100, b"01234", 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_200, b"56789", 0), &mut logs);
        let mut redis = chunk(tcp_flow(40001, 6379), true, 3_000, REDIS_REQ, 0);
        redis.flow_id = 2;
        e.on_chunk(&redis, &mut logs);
        let mut reply = chunk(tcp_flow(40001, 6379), false, 3_100, b"$-1\r\n", 0);
        reply.flow_id = 2;
        e.on_chunk(&reply, &mut logs);
        e.finish(&mut logs);
        logs.sort_by_key(|l| l.start_time_us);
        logs
    }

    #[test]
    fn hooks_rewrite_fields_and_add_tags_from_both_sides() {
        let plain = run(None);
        let hook = Arc::new(Probe::default());
        let hooked = run(Some(hook.clone()));
        assert_eq!(plain.len(), 2);
        assert_eq!(hooked.len(), 2);
        let (p, h) = (&plain[0], &hooked[0]);
        assert_eq!(p.endpoint.as_deref(), Some("/users/{id}"));
        assert_eq!(p.response_status, ResponseStatus::ClientError);
        assert!(p.tags.is_empty());
        assert_eq!(h.endpoint.as_deref(), Some("user-service"));
        assert_eq!(h.response_status, ResponseStatus::Ok);
        assert_eq!(h.response_code, Some(404));
        let tags: Vec<(&str, &str)> = h
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // The response's "side" wins over the request's.
        assert_eq!(
            tags,
            vec![
                ("server", "nginx"),
                ("side", "response"),
                ("ua", "curl/8.0")
            ]
        );
        // Everything else is unchanged, and the Redis log is untouched.
        let mut h2 = h.clone();
        h2.endpoint = p.endpoint.clone();
        h2.response_status = p.response_status;
        h2.tags.clear();
        assert_eq!(&h2, p);
        assert_eq!(hooked[1], plain[1]);
        // The hook saw the request whole and the response's head and body although they came in three
        // segments; never the Redis messages.
        let seen = hook.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, L7Protocol::Http1);
        assert_eq!(seen[0].1, MessageKind::Request);
        assert_eq!(seen[0].2, REQ);
        assert_eq!(seen[0].3, REQ.len() as u64);
        let mut resp = RESP_HEAD.to_vec();
        resp.extend_from_slice(b"0123456789");
        assert_eq!(seen[1].1, MessageKind::Response);
        assert_eq!(seen[1].2, resp);
        assert_eq!(seen[1].3, resp.len() as u64);
    }

    #[test]
    fn hook_bytes_are_capped_and_flagged_truncated() {
        let hook = Arc::new(Probe::default());
        let mut e = Engine::new(
            builtin_parsers(),
            Limits {
                max_hook_bytes: 16,
                ..Limits::default()
            },
        );
        e.add_hook(hook.clone());
        let mut logs = Vec::new();
        let http = tcp_flow(40000, 80);
        // Two pipelined requests in one segment, then a response split mid-head: each hook input starts at
        // its own message's first byte.
        let mut two = REQ.to_vec();
        two.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
        e.on_chunk(&chunk(http, true, 1_000, &two, 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_000, &RESP_HEAD[..20], 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_100, &RESP_HEAD[20..], 0), &mut logs);
        e.on_chunk(&chunk(http, false, 2_200, b"0123456789", 0), &mut logs);
        e.finish(&mut logs);
        let seen = hook.seen.lock().unwrap();
        let got: Vec<(&[u8], u64)> = seen.iter().map(|s| (&s.2[..], s.3)).collect();
        assert_eq!(
            got,
            vec![
                (&REQ[..16], REQ.len() as u64),
                (&b"GET /b HTTP/1.1\r"[..], 19),
                (&RESP_HEAD[..16], RESP_HEAD.len() as u64 + 10),
            ]
        );
        let input = HookInput {
            protocol: &L7Protocol::Http1,
            direction: Direction::ClientToServer,
            kind: MessageKind::Request,
            flow: &tcp_flow(1, 2),
            flow_id: 1,
            time_us: 0,
            bytes: &REQ[..16],
            message_len: REQ.len() as u64,
        };
        assert!(input.is_truncated());
    }
}
