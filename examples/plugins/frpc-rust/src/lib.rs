//! FRPC, an invented binary RPC protocol, parsed by a Fathom WASM plugin written with `fathom-plugin-guest`.
//!
//! Wire format: `"FRPC"`, u8 kind (0 request, 1 response), u32 id (big-endian), u16 body length (big-endian),
//! body. A request body is the method name; a response body is a status byte (0 ok, 1 client error, 2 server
//! error) followed by an error text.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown`, then
//! `fathom-agent --pcap FILE --plugin target/wasm32-unknown-unknown/release/frpc_plugin.wasm`
//! (rename it `frpc.wasm` to have `"l7_protocol": "frpc"`).

use fathom_plugin_guest::{export_plugin, Direction, Msg, Parsed, Parser, Status, Verdict};

/// The FRPC parser.
pub struct Frpc;

const HEADER: usize = 11;

impl Parser for Frpc {
    fn probe(payload: &[u8], _dir: Direction) -> Verdict {
        if payload.starts_with(b"FRPC") {
            Verdict::Yes
        } else {
            Verdict::No
        }
    }

    fn parse<'a>(data: &'a [u8], _dir: Direction, after_gap: bool) -> Parsed<'a> {
        if data.len() < 4 {
            return Parsed::NeedMore;
        }
        if !data.starts_with(b"FRPC") {
            // After a gap: skip a byte and look again; otherwise this is not FRPC.
            return if after_gap {
                Parsed::Skip(1)
            } else {
                Parsed::NotMine
            };
        }
        if data.len() < HEADER {
            return Parsed::NeedMore;
        }
        let body_len = u16::from_be_bytes([data[9], data[10]]) as usize;
        let total = HEADER + body_len;
        if data.len() < total {
            return Parsed::NeedMore;
        }
        let id = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as u64;
        let body = &data[HEADER..total];
        match data[4] {
            0 => {
                let mut msg = Msg::request(total).id(id);
                if let Ok(method) = std::str::from_utf8(body) {
                    if !method.is_empty() {
                        msg = msg.request_type(method);
                    }
                }
                Parsed::Message(msg)
            }
            1 => {
                let Some((&st, text)) = body.split_first() else {
                    return Parsed::NotMine;
                };
                let status = match st {
                    0 => Status::Ok,
                    1 => Status::ClientError,
                    2 => Status::ServerError,
                    _ => return Parsed::NotMine,
                };
                let mut msg = Msg::response(total).id(id).status(status).code(st as i64);
                if st != 0 {
                    if let Ok(text) = std::str::from_utf8(text) {
                        if !text.is_empty() {
                            msg = msg.response_exception(text);
                        }
                    }
                }
                Parsed::Message(msg)
            }
            _ => Parsed::NotMine,
        }
    }
}

export_plugin!(parser: Frpc);
