//! Columnar RequestLog batches: format constants and the server-side [`GlobalDictionary`] decoder (the agent-side
//! encoder is in `encoder.rs`).

use crate::dict::{Dictionary, TagKeyId, TagValueId, KEY_NAMES};
use crate::varint::{unzigzag, Reader};
use crate::DecodeError;
use fathom_model::{L4Protocol, L7Protocol, RequestLog, ResponseStatus, TapSide};
use hashbrown::HashMap;

/// The 4 magic bytes that start every batch.
pub const MAGIC: [u8; 4] = *b"FATB";
/// The 4 magic bytes that start every metric batch (`docs/encoding.md`, "Metric batches").
pub const METRIC_MAGIC: [u8; 4] = *b"FATM";
/// The batch format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 36;
/// Most rows in one batch.
pub const MAX_ROWS: usize = 1 << 20;
/// Largest body (uncompressed) in bytes; also caps decompression.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Most dictionary entries carried by one batch.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Most tags on one row (no longer a format limit: tags are per-key columns and [`MAX_TAG_KEYS`] bounds a
/// batch; kept for API compatibility).
pub const MAX_TAGS_PER_ROW: usize = 256;
/// Most distinct agents a [`GlobalDictionary`] tracks.
pub const MAX_AGENTS: usize = 1 << 16;

pub(crate) const FLAG_ZSTD: u8 = 1;

// Indices into FIELD_KEYS.
pub(crate) const F_PROTO: usize = 0;
pub(crate) const F_VERSION: usize = 1;
pub(crate) const F_TYPE: usize = 2;
pub(crate) const F_DOMAIN: usize = 3;
pub(crate) const F_ENDPOINT: usize = 4;
pub(crate) const F_STATUS: usize = 5;
pub(crate) const F_IP: usize = 6;
pub(crate) const F_L4: usize = 7;
pub(crate) const F_TAP: usize = 8;
pub(crate) const F_PROCESS: usize = 9;

/// Most distinct tag keys in one batch.
pub const MAX_TAG_KEYS: usize = 4096;

/// CRC32 over the header's first 32 bytes and the body as sent.
pub(crate) fn checksum(header: &[u8], wire: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..32]);
    h.update(wire);
    h.finalize()
}

/// One agent's local → global id mapping on the server.
#[derive(Debug, Default, Clone)]
pub(crate) struct AgentMap {
    /// Local key id → global key id (0 = unknown).
    keys: Vec<u32>,
    /// Per local key: local value id - 1 → global value id.
    values: Vec<Vec<u32>>,
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The sending agent.
    pub agent_id: u64,
    /// The batch's sequence number (acknowledge it with [`crate::Encoder::ack`] on the agent).
    pub seq: u64,
    /// Dictionary entries the batch carried.
    pub entries: usize,
    /// The logs, exactly as encoded.
    pub logs: Vec<RequestLog>,
}

/// Server side: one global dictionary merged from many agents, and the decoder of their batches.
///
/// Each agent numbers its strings itself; the server maps every agent-local `(key, id)` to a global id as the
/// entries arrive, so stored rows use global ids only and queries translate names once
/// ([`crate::QueryTranslator`]).
#[derive(Debug, Default)]
pub struct GlobalDictionary {
    pub(crate) dict: Dictionary,
    pub(crate) agents: HashMap<u64, AgentMap>,
}

impl GlobalDictionary {
    /// An empty global dictionary with a memory cap.
    pub fn new(cap_bytes: usize) -> GlobalDictionary {
        GlobalDictionary {
            dict: Dictionary::new(cap_bytes),
            agents: HashMap::new(),
        }
    }

    /// The merged dictionary (global ids).
    pub fn dictionary(&self) -> &Dictionary {
        &self.dict
    }

    /// Per local key id, the highest local id known from `agent` (to resume a reconnected agent with
    /// [`crate::Encoder::set_acked`]).
    pub fn watermarks(&self, agent: u64) -> Vec<u32> {
        self.agents.get(&agent).map_or_else(Vec::new, |a| {
            let mut w: Vec<u32> = a.values.iter().map(|v| v.len() as u32).collect();
            let keys = a.keys.len().saturating_sub(1) as u32;
            if w.is_empty() {
                w.push(keys);
            } else {
                w[0] = keys;
            }
            w
        })
    }

    /// The global id of an agent-local value.
    pub fn global_id(
        &self,
        agent: u64,
        local_key: u32,
        local_id: u32,
    ) -> Option<(TagKeyId, TagValueId)> {
        let a = self.agents.get(&agent)?;
        let gk = *a.keys.get(local_key as usize)?;
        if local_id == TagValueId::OVERFLOW.0 {
            return Some((TagKeyId(gk), TagValueId::OVERFLOW));
        }
        let gid = *a
            .values
            .get(local_key as usize)?
            .get(local_id.checked_sub(1)? as usize)?;
        Some((TagKeyId(gk), TagValueId(gid)))
    }

    /// Decode one batch: merge its dictionary entries, then rebuild its logs.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the offset of the first damage; never panics and never allocates more than the
    /// header's declared (and capped) body size plus what the rows need.
    pub fn decode(&mut self, batch: &[u8]) -> Result<DecodedBatch, DecodeError> {
        let (agent_id, seq, body) = open_batch(batch, MAGIC)?;
        if !self.agents.contains_key(&agent_id) && self.agents.len() >= MAX_AGENTS {
            return Err(DecodeError::LimitExceeded {
                offset: 8,
                what: "too many agents",
            });
        }
        let agent = self.agents.entry(agent_id).or_default();
        let mut r = Reader::new(&body, HEADER_LEN);
        let entries = merge_entries(&mut self.dict, agent, &mut r)?;
        let logs = decode_rows(&self.dict, agent, &mut r)?;
        if !r.is_empty() {
            return Err(DecodeError::BadValue {
                offset: r.offset(),
                what: "trailing bytes in the body",
            });
        }
        Ok(DecodedBatch {
            agent_id,
            seq,
            entries,
            logs,
        })
    }
}

/// Check a batch's header and checksum and return its agent id, sequence number and (decompressed) body.
pub(crate) fn open_batch(
    batch: &[u8],
    magic: [u8; 4],
) -> Result<(u64, u64, std::borrow::Cow<'_, [u8]>), DecodeError> {
    let h = batch.get(..HEADER_LEN).ok_or(DecodeError::Truncated {
        offset: batch.len(),
    })?;
    if h[..4] != magic {
        let kind = |m: &[u8]| match m {
            m if m == MAGIC => Some("request log"),
            m if m == METRIC_MAGIC => Some("metric"),
            _ => None,
        };
        return Err(match (kind(&h[..4]), kind(&magic)) {
            (Some(found), Some(expected)) => DecodeError::WrongKind { found, expected },
            _ => DecodeError::BadMagic,
        });
    }
    if h[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion {
            version: h[4],
            supported: VERSION,
        });
    }
    let flags = h[5];
    let le64 = |r: &[u8]| u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
    let le32 = |r: &[u8]| u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
    let agent_id = le64(&h[8..16]);
    let seq = le64(&h[16..24]);
    let raw_len = le32(&h[24..28]) as usize;
    let wire_len = le32(&h[28..32]) as usize;
    let crc = le32(&h[32..36]);
    if raw_len > MAX_BODY_BYTES {
        return Err(DecodeError::LimitExceeded {
            offset: 24,
            what: "body larger than MAX_BODY_BYTES",
        });
    }
    let wire = batch
        .get(HEADER_LEN..HEADER_LEN + wire_len)
        .ok_or(DecodeError::Truncated {
            offset: batch.len(),
        })?;
    if batch.len() != HEADER_LEN + wire_len {
        return Err(DecodeError::BadValue {
            offset: HEADER_LEN + wire_len,
            what: "trailing bytes after the body",
        });
    }
    let actual = checksum(&h[..32], wire);
    if actual != crc {
        return Err(DecodeError::Checksum {
            expected: crc,
            actual,
        });
    }
    let body: std::borrow::Cow<'_, [u8]> = if flags & FLAG_ZSTD != 0 {
        decompress(wire, raw_len)?.into()
    } else {
        if wire_len != raw_len {
            return Err(DecodeError::BadValue {
                offset: 24,
                what: "raw length differs from wire length without compression",
            });
        }
        wire.into()
    };
    Ok((agent_id, seq, body))
}

#[cfg(feature = "zstd")]
fn decompress(wire: &[u8], raw_len: usize) -> Result<Vec<u8>, DecodeError> {
    let out = zstd::bulk::decompress(wire, raw_len)
        .map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if out.len() != raw_len {
        return Err(DecodeError::Decompress(format!(
            "decompressed {} bytes, header says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(not(feature = "zstd"))]
fn decompress(_wire: &[u8], _raw_len: usize) -> Result<Vec<u8>, DecodeError> {
    Err(DecodeError::Decompress(
        "built without the zstd feature".into(),
    ))
}

pub(crate) fn merge_entries(
    dict: &mut Dictionary,
    agent: &mut AgentMap,
    r: &mut Reader<'_>,
) -> Result<usize, DecodeError> {
    let n = r.count(MAX_ENTRIES, "more dictionary entries than MAX_ENTRIES")?;
    for _ in 0..n {
        let at = r.offset();
        let key = r.u32()?;
        let id = r.u32()?;
        let value = r.str()?;
        if id == 0 || id == TagValueId::OVERFLOW.0 {
            return Err(DecodeError::BadValue {
                offset: at,
                what: "reserved dictionary id",
            });
        }
        let global = if key == KEY_NAMES {
            dict.key_id(value).0
        } else {
            let gk = agent
                .keys
                .get(key as usize)
                .copied()
                .filter(|&g| g != 0)
                .ok_or(DecodeError::UnknownId {
                    offset: at,
                    key: KEY_NAMES,
                    id: key,
                })?;
            dict.value_id(TagKeyId(gk), value).0
        };
        let slot = if key == KEY_NAMES {
            // keys[local key id] = global key id
            let list = &mut agent.keys;
            if list.is_empty() {
                list.push(0);
            }
            (list, id as usize)
        } else {
            let k = key as usize;
            if agent.values.len() <= k {
                agent.values.resize_with(k + 1, Vec::new);
            }
            (&mut agent.values[k], id as usize - 1)
        };
        let (list, i) = slot;
        if i < list.len() {
            list[i] = global;
        } else if i == list.len() {
            list.push(global);
        } else {
            return Err(DecodeError::BadValue {
                offset: at,
                what: "dictionary id skips ahead of the known ids",
            });
        }
    }
    Ok(n)
}

/// Reads columns back; every count is checked against the row count.
pub(crate) struct Cols<'a, 'b> {
    pub(crate) r: &'b mut Reader<'a>,
    pub(crate) rows: usize,
}

impl<'a> Cols<'a, '_> {
    pub(crate) fn column(&mut self) -> Result<Reader<'a>, DecodeError> {
        let at = self.r.offset();
        let bytes = self.r.bytes()?;
        Ok(Reader::new(
            bytes,
            at + (self.r.offset() - at - bytes.len()),
        ))
    }

    pub(crate) fn runs(&self, c: &mut Reader<'a>) -> Result<Vec<u32>, DecodeError> {
        let nruns = c.count(self.rows, "more runs than rows")?;
        let mut out = Vec::with_capacity(self.rows);
        for _ in 0..nruns {
            let at = c.offset();
            let len = c.count(self.rows - out.len(), "run longer than the rows left")?;
            let v = c.u32()?;
            if len == 0 {
                return Err(DecodeError::BadValue {
                    offset: at,
                    what: "empty run",
                });
            }
            out.extend(std::iter::repeat_n(v, len));
        }
        if out.len() != self.rows {
            return Err(DecodeError::BadValue {
                offset: c.offset(),
                what: "runs do not cover every row",
            });
        }
        Ok(out)
    }

    pub(crate) fn run_column(&mut self) -> Result<Vec<u32>, DecodeError> {
        let mut c = self.column()?;
        let v = self.runs(&mut c)?;
        end(&c)?;
        Ok(v)
    }

    pub(crate) fn plain(&mut self, per_row: usize) -> Result<Vec<u64>, DecodeError> {
        let mut c = self.column()?;
        let n = self.rows * per_row;
        let mut out = Vec::with_capacity(n.min(c.remaining()));
        for _ in 0..n {
            out.push(c.u64()?);
        }
        end(&c)?;
        Ok(out)
    }

    pub(crate) fn opt(&mut self) -> Result<Vec<Option<u64>>, DecodeError> {
        let mut c = self.column()?;
        let bitmap = c.take(self.rows.div_ceil(8))?;
        let mut out = Vec::with_capacity(self.rows);
        for i in 0..self.rows {
            let present = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            out.push(if present { Some(c.u64()?) } else { None });
        }
        end(&c)?;
        Ok(out)
    }

    fn text(&mut self) -> Result<Vec<Option<String>>, DecodeError> {
        let mut c = self.column()?;
        let n = c.count(self.rows, "more distinct strings than rows")?;
        let mut uniq = Vec::with_capacity(n);
        for _ in 0..n {
            uniq.push(c.str()?);
        }
        let at = c.offset();
        let idx = self.runs(&mut c)?;
        end(&c)?;
        idx.into_iter()
            .map(|i| match i {
                0 => Ok(None),
                i => uniq
                    .get(i as usize - 1)
                    .map(|s| Some((*s).to_string()))
                    .ok_or(DecodeError::BadValue {
                        offset: at,
                        what: "text index out of range",
                    }),
            })
            .collect()
    }
}

pub(crate) fn end(c: &Reader<'_>) -> Result<(), DecodeError> {
    if c.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::BadValue {
            offset: c.offset(),
            what: "trailing bytes in a column",
        })
    }
}

fn decode_rows(
    dict: &Dictionary,
    agent: &AgentMap,
    r: &mut Reader<'_>,
) -> Result<Vec<RequestLog>, DecodeError> {
    let rows = r.count(MAX_ROWS, "more rows than MAX_ROWS")?;
    let at = r.offset();
    let mut cols = Cols { r, rows };
    let mut ids: Vec<Vec<u32>> = Vec::with_capacity(11);
    for _ in 0..11 {
        ids.push(cols.run_column()?);
    }
    let starts = cols.plain(1)?;
    let lens = cols.plain(1)?;
    let duration = cols.opt()?;
    let request_id = cols.opt()?;
    let code = cols.opt()?;
    let req_seq = cols.opt()?;
    let resp_seq = cols.opt()?;
    let sys_req = cols.opt()?;
    let sys_resp = cols.opt()?;
    let pid = cols.opt()?;
    let tid = cols.opt()?;
    let port_src = cols.plain(1)?;
    let port_dst = cols.run_column()?;
    let bytes = cols.plain(2)?;
    let mut texts = Vec::with_capacity(8);
    for _ in 0..8 {
        texts.push(cols.text()?);
    }
    // Tags: per key, a run-length encoded column of value ids.
    let mut c = cols.column()?;
    let nkeys = c.count(MAX_TAG_KEYS, "more tag keys than MAX_TAG_KEYS")?;
    let mut tag_cols: Vec<(String, Vec<u32>, u32)> = Vec::with_capacity(nkeys);
    for _ in 0..nkeys {
        let at = c.offset();
        let k = c.u32()?;
        let key = resolve_key(dict, agent, k, at)?.to_string();
        let ids = cols.runs(&mut c)?;
        tag_cols.push((key, ids, k));
    }
    end(&c)?;
    let tag_at = c.offset();
    let local_key = |field: usize| Dictionary::field_key(field).0;
    let mut logs = Vec::with_capacity(rows);
    let mut t = 0i64;
    let u32_of = |v: Option<u64>, what| -> Result<Option<u32>, DecodeError> {
        v.map(|x| u32::try_from(x).map_err(|_| DecodeError::BadValue { offset: at, what }))
            .transpose()
    };
    let u16_of = |v: u64| {
        u16::try_from(v).map_err(|_| DecodeError::BadValue {
            offset: at,
            what: "port out of range",
        })
    };
    for i in 0..rows {
        let field = |f: usize, col: usize| resolve(dict, agent, local_key(f), ids[col][i], at);
        let proto = field(F_PROTO, 0)?.ok_or(DecodeError::BadValue {
            offset: at,
            what: "null protocol",
        })?;
        let status = field(F_STATUS, 5)?.unwrap_or_default();
        let l4 = field(F_L4, 8)?.unwrap_or_default();
        let tap = field(F_TAP, 9)?.unwrap_or_default();
        t = t.wrapping_add(unzigzag(starts[i]));
        let start = t as u64;
        let end_t = (t.wrapping_add(unzigzag(lens[i]))) as u64;
        let mut tags = std::collections::BTreeMap::new();
        for (key, ids, k) in &tag_cols {
            if let Some(v) = resolve(dict, agent, *k, ids[i], tag_at)? {
                tags.insert(key.clone(), v);
            }
        }
        let mut text = texts.iter().map(|c| c[i].clone());
        let mut next_text = || text.next().flatten();
        logs.push(RequestLog {
            l7_protocol: L7Protocol::from_name(&proto),
            version: field(F_VERSION, 1)?,
            request_type: field(F_TYPE, 2)?,
            request_domain: field(F_DOMAIN, 3)?,
            endpoint: field(F_ENDPOINT, 4)?,
            response_status: parse_status(&status).ok_or(DecodeError::BadValue {
                offset: at,
                what: "bad status",
            })?,
            ip_src: field(F_IP, 6)?.unwrap_or_default(),
            ip_dst: field(F_IP, 7)?.unwrap_or_default(),
            l4_protocol: match l4.as_str() {
                "udp" => L4Protocol::Udp,
                "tcp" => L4Protocol::Tcp,
                _ => {
                    return Err(DecodeError::BadValue {
                        offset: at,
                        what: "bad l4 protocol",
                    })
                }
            },
            tap_side: match tap.as_str() {
                "network" => TapSide::Network,
                "client_process" => TapSide::ClientProcess,
                "server_process" => TapSide::ServerProcess,
                _ => {
                    return Err(DecodeError::BadValue {
                        offset: at,
                        what: "bad tap side",
                    })
                }
            },
            process_name: field(F_PROCESS, 10)?,
            start_time_us: start,
            end_time_us: end_t,
            response_duration_us: duration[i],
            request_id: request_id[i],
            response_code: code[i].map(unzigzag),
            req_tcp_seq: u32_of(req_seq[i], "tcp seq out of range")?,
            resp_tcp_seq: u32_of(resp_seq[i], "tcp seq out of range")?,
            syscall_trace_id_request: sys_req[i],
            syscall_trace_id_response: sys_resp[i],
            process_id: u32_of(pid[i], "pid out of range")?,
            thread_id: u32_of(tid[i], "tid out of range")?,
            port_src: u16_of(port_src[i])?,
            port_dst: u16_of(u64::from(port_dst[i]))?,
            captured_request_byte: bytes[2 * i],
            captured_response_byte: bytes[2 * i + 1],
            request_resource: next_text(),
            response_exception: next_text(),
            response_result: next_text(),
            trace_id: next_text(),
            span_id: next_text(),
            parent_span_id: next_text(),
            x_request_id_0: next_text(),
            x_request_id_1: next_text(),
            tags,
        });
    }
    Ok(logs)
}

fn parse_status(s: &str) -> Option<ResponseStatus> {
    Some(match s {
        "ok" => ResponseStatus::Ok,
        "client_error" => ResponseStatus::ClientError,
        "server_error" => ResponseStatus::ServerError,
        "timeout" => ResponseStatus::Timeout,
        "unknown" => ResponseStatus::Unknown,
        _ => return None,
    })
}

fn resolve_key<'d>(
    dict: &'d Dictionary,
    agent: &AgentMap,
    k: u32,
    at: usize,
) -> Result<&'d str, DecodeError> {
    let gk = agent.keys.get(k as usize).copied().filter(|&g| g != 0);
    gk.and_then(|g| dict.key_name(TagKeyId(g)))
        .ok_or(DecodeError::UnknownId {
            offset: at,
            key: KEY_NAMES,
            id: k,
        })
}

pub(crate) fn resolve(
    dict: &Dictionary,
    agent: &AgentMap,
    k: u32,
    v: u32,
    at: usize,
) -> Result<Option<String>, DecodeError> {
    if v == 0 {
        return Ok(None);
    }
    let gk = agent.keys.get(k as usize).copied().filter(|&g| g != 0);
    let Some(gk) = gk else {
        return Err(DecodeError::UnknownId {
            offset: at,
            key: KEY_NAMES,
            id: k,
        });
    };
    if v == TagValueId::OVERFLOW.0 {
        return Ok(Some(crate::OVERFLOW_VALUE.to_string()));
    }
    let gid = agent
        .values
        .get(k as usize)
        .and_then(|l| l.get(v as usize - 1))
        .copied()
        .ok_or(DecodeError::UnknownId {
            offset: at,
            key: k,
            id: v,
        })?;
    dict.value(TagKeyId(gk), TagValueId(gid))
        .map(|s| Some(s.to_string()))
        .ok_or(DecodeError::UnknownId {
            offset: at,
            key: k,
            id: v,
        })
}
