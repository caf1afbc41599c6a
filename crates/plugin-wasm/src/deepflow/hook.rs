//! DeepFlow's HTTP hooks (`on_http_req`, `on_http_resp`) as a Fathom [`MessageHook`].

use super::plugin::{add_tags, base_ctx, Failure};
use super::{
    ctx, result, DeepFlowInfo, DeepFlowPlugin, HOOK_HTTP_REQ, HOOK_HTTP_RESP, MAX_PAYLOAD_LEN,
};
use fathom_model::{L7Protocol, ResponseStatus};
use fathom_protocols::{HookInput, LogInfo, MessageHook, MessageKind};

/// DeepFlow's protocol numbers of the HTTP family (`L7Protocol` in DeepFlow's `public` crate).
fn deepflow_l7_number(p: &L7Protocol) -> Option<u8> {
    match p {
        L7Protocol::Http1 => Some(20),
        L7Protocol::Http2 => Some(21),
        L7Protocol::Grpc => Some(41),
        _ => None,
    }
}

/// Apply what an HTTP hook returned: the fields it sets override, attributes become tags.
fn apply_hook_result(rec: DeepFlowInfo, info: &mut LogInfo) {
    let r = rec.info;
    macro_rules! set {
        ($($f:ident),*) => { $( if r.$f.is_some() { info.$f = r.$f; } )* };
    }
    set!(
        version,
        request_type,
        request_domain,
        request_resource,
        endpoint,
        response_status,
        response_code,
        response_exception,
        response_result,
        trace_id,
        span_id,
        parent_span_id,
        x_request_id
    );
    add_tags(info, rec.attributes);
}

fn default_status(code: Option<i64>) -> ResponseStatus {
    match code {
        Some(400..=499) => ResponseStatus::ClientError,
        Some(500..=599) => ResponseStatus::ServerError,
        Some(_) => ResponseStatus::Ok,
        None => ResponseStatus::Unknown,
    }
}

impl MessageHook for DeepFlowPlugin {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn applies_to(&self, protocol: &L7Protocol) -> bool {
        self.hooks_http() && deepflow_l7_number(protocol).is_some()
    }

    fn on_message(&self, input: &HookInput<'_>, info: &mut LogInfo) {
        if self.shared.disabled() {
            return;
        }
        let Some(l7) = deepflow_l7_number(input.protocol) else {
            return;
        };
        let payload = &input.bytes[..input.bytes.len().min(MAX_PAYLOAD_LEN)];
        let base = base_ctx(
            input.flow,
            input.direction,
            l7,
            input.time_us,
            input.flow_id,
            payload.len(),
        );
        let outcome = match input.kind {
            MessageKind::Request if self.shared.bitmap & HOOK_HTTP_REQ != 0 => {
                let (ua, referer) = if *input.protocol == L7Protocol::Http1 {
                    (
                        ctx::http1_header(input.bytes, "user-agent").unwrap_or(""),
                        ctx::http1_header(input.bytes, "referer").unwrap_or(""),
                    )
                } else {
                    ("", "")
                };
                let path = info.request_resource.as_deref().unwrap_or("");
                let host = info.request_domain.as_deref().unwrap_or("");
                let mut req =
                    Vec::with_capacity(8 + path.len() + host.len() + ua.len() + referer.len());
                ctx::encode_http_req(path, host, ua, referer, &mut req);
                self.shared.call(
                    "on_http_req",
                    |s| s.on_http_req.clone(),
                    input.direction,
                    |call| {
                        base.encode(&mut call.base);
                        call.payload.extend_from_slice(payload);
                        call.http_req = Some(req);
                    },
                )
            }
            MessageKind::Response if self.shared.bitmap & HOOK_HTTP_RESP != 0 => {
                let code = info.response_code.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
                let status = info
                    .response_status
                    .unwrap_or_else(|| default_status(info.response_code));
                let resp = ctx::encode_http_resp(code, result::status_to_code(status));
                self.shared.call(
                    "on_http_resp",
                    |s| s.on_http_resp.clone(),
                    input.direction,
                    |call| {
                        base.encode(&mut call.base);
                        call.payload.extend_from_slice(payload);
                        call.http_resp = Some(resp);
                    },
                )
            }
            _ => return,
        };
        let Some(outcome) = outcome else { return };
        match outcome.ret {
            0 => {}
            1 => {
                if let Some(rec) = outcome.infos.and_then(|mut v| v.pop()) {
                    apply_hook_result(rec, info);
                }
            }
            r => self.shared.fail(
                "on_http_*",
                Failure::BadResult(format!("the HTTP hook returned {r}")),
            ),
        }
    }
}
