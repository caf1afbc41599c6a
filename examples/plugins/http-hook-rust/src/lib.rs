//! HTTP hooks as a Fathom WASM plugin (ABI v2), written with `fathom-plugin-guest`.
//!
//! Rules, on HTTP/1, HTTP/2 and gRPC messages:
//! - request: `endpoint` := the first segment of the path (`/users/42?x=1` → `/users`; `/pkg.Svc/Method` →
//!   `/pkg.Svc`; `/` → `/`); tags `hook.plugin = http-hook` and `hook.method = <method>`; on HTTP/1, tag
//!   `hook.user_agent = <User-Agent header>` when the request has one;
//! - response: tag `hook.status_class = <N>xx` from the HTTP status (not for gRPC, whose code is
//!   `grpc-status`).
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown`, then
//! `fathom-agent --pcap FILE --plugin target/wasm32-unknown-unknown/release/http_hook_plugin.wasm`.

use fathom_plugin_guest::{export_plugin, HookActions, HttpHook, HttpMessage, HttpProtocol};

/// The hooks.
pub struct Hooks;

/// The first path segment, without the query.
pub fn first_segment(path: &str) -> &str {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(i) => &path[..i + 1],
        None => path,
    }
}

impl HttpHook for Hooks {
    fn on_request(msg: &HttpMessage<'_>, out: &mut HookActions) {
        if let Some(path) = msg.path {
            out.endpoint = Some(first_segment(path).to_string());
        }
        out.tag("hook.plugin", "http-hook");
        if let Some(m) = msg.method {
            out.tag("hook.method", m);
        }
        if let Some(ua) = msg.header("user-agent") {
            out.tag("hook.user_agent", ua);
        }
    }

    fn on_response(msg: &HttpMessage<'_>, out: &mut HookActions) {
        if msg.protocol == HttpProtocol::Grpc {
            return;
        }
        if let Some(code) = msg.status {
            out.tag("hook.status_class", format!("{}xx", code / 100));
        }
    }
}

export_plugin!(hooks: Hooks);
