//! The encoder as first written (one pass per column, per-tag dictionary lookups), kept as a test oracle: the
//! fast encoder must write the very same bytes.

use super::Encoder;
use crate::batch::{
    F_DOMAIN, F_ENDPOINT, F_IP, F_L4, F_PROCESS, F_PROTO, F_STATUS, F_TAP, F_TYPE, F_VERSION,
    MAX_ROWS,
};
use crate::dict::{Dictionary, TagKeyId};
use crate::varint::{put_bytes, put_u64, zigzag};
use crate::EncodeError;
use fathom_model::RequestLog;
use hashbrown::HashMap;

#[derive(Default)]
struct TagSlot<'a> {
    key: &'a str,
    key_id: u32,
    column: usize,
    value: &'a str,
    value_id: u32,
}

/// Encode `logs` the original way.
pub(crate) fn encode(
    enc: &mut Encoder,
    logs: &[RequestLog],
) -> Result<(u64, Vec<u8>), EncodeError> {
    if logs.len() > MAX_ROWS {
        return Err(EncodeError::TooManyRows {
            rows: logs.len(),
            max: MAX_ROWS,
        });
    }
    let n = logs.len();
    // 1. Dictionary ids for every low-cardinality field and tag. Consecutive rows repeat most fields, so each
    //    column (and each tag position) remembers its previous string and id: a memcmp instead of a hash.
    let dict = enc.dict.get();
    let fk = Dictionary::field_key;
    let mut dict_cols: Vec<Vec<u32>> = (0..11).map(|_| Vec::with_capacity(n)).collect();
    let mut last: [(&str, u32); 11] = [("", 0); 11];
    // Tags: one column of value ids per key present in the batch (0 = absent on that row).
    let mut tag_cols: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut tag_col_of: HashMap<u32, usize> = HashMap::new();
    let mut tag_slots: Vec<TagSlot<'_>> = Vec::new();
    for (row, log) in logs.iter().enumerate() {
        let cols: [(usize, Option<&str>); 11] = [
            (F_PROTO, Some(log.l7_protocol.as_str())),
            (F_VERSION, log.version.as_deref()),
            (F_TYPE, log.request_type.as_deref()),
            (F_DOMAIN, log.request_domain.as_deref()),
            (F_ENDPOINT, log.endpoint.as_deref()),
            (F_STATUS, Some(log.response_status.as_str())),
            (F_IP, Some(&log.ip_src)),
            (F_IP, Some(&log.ip_dst)),
            (F_L4, Some(log.l4_protocol.as_str())),
            (F_TAP, Some(log.tap_side.as_str())),
            (F_PROCESS, log.process_name.as_deref()),
        ];
        for (c, ((field, value), (last_s, last_id))) in
            cols.into_iter().zip(last.iter_mut()).enumerate()
        {
            let id = match value {
                None => 0,
                Some(v) if *last_id != 0 && *last_s == v => *last_id,
                Some(v) => {
                    let id = dict.value_id(fk(field), v).0;
                    *last_s = v;
                    *last_id = id;
                    id
                }
            };
            dict_cols[c].push(id);
        }
        for (pos, (k, v)) in log.tags.iter().enumerate() {
            if tag_slots.len() <= pos {
                tag_slots.push(TagSlot::default());
            }
            let slot = &mut tag_slots[pos];
            if slot.key_id == 0 || slot.key != k.as_str() {
                slot.key = k;
                slot.key_id = dict.key_id(k).0;
                slot.column = *tag_col_of.entry(slot.key_id).or_insert_with(|| {
                    tag_cols.push((slot.key_id, Vec::with_capacity(n)));
                    tag_cols.len() - 1
                });
                slot.value_id = 0;
            }
            if slot.value_id == 0 || slot.value != v.as_str() {
                slot.value_id = dict.value_id(TagKeyId(slot.key_id), v).0;
                slot.value = v;
            }
            let col = &mut tag_cols[slot.column].1;
            col.resize(row, 0);
            col.push(slot.value_id);
        }
    }
    let marks = enc.write_entries()?;
    let body = &mut enc.body;
    let mut col_buf = Vec::new();
    // 4. Columns.
    put_u64(body, n as u64);
    let col = &mut col_buf;
    for c in &dict_cols {
        col.clear();
        put_runs(col, c.iter().copied());
        put_bytes(body, col);
    }
    col.clear();
    let mut prev = 0i64;
    for l in logs {
        let t = l.start_time_us as i64;
        put_u64(col, zigzag(t.wrapping_sub(prev)));
        prev = t;
    }
    put_bytes(body, col);
    col.clear();
    for l in logs {
        put_u64(
            col,
            zigzag((l.end_time_us as i64).wrapping_sub(l.start_time_us as i64)),
        );
    }
    put_bytes(body, col);
    put_opt(body, col, logs.iter().map(|l| l.response_duration_us));
    put_opt(body, col, logs.iter().map(|l| l.request_id));
    put_opt(body, col, logs.iter().map(|l| l.response_code.map(zigzag)));
    put_opt(body, col, logs.iter().map(|l| l.req_tcp_seq.map(u64::from)));
    put_opt(
        body,
        col,
        logs.iter().map(|l| l.resp_tcp_seq.map(u64::from)),
    );
    put_opt(body, col, logs.iter().map(|l| l.syscall_trace_id_request));
    put_opt(body, col, logs.iter().map(|l| l.syscall_trace_id_response));
    put_opt(body, col, logs.iter().map(|l| l.process_id.map(u64::from)));
    put_opt(body, col, logs.iter().map(|l| l.thread_id.map(u64::from)));
    col.clear();
    for l in logs {
        put_u64(col, u64::from(l.port_src));
    }
    put_bytes(body, col);
    col.clear();
    put_runs(col, logs.iter().map(|l| u32::from(l.port_dst)));
    put_bytes(body, col);
    col.clear();
    for l in logs {
        put_u64(col, l.captured_request_byte);
        put_u64(col, l.captured_response_byte);
    }
    put_bytes(body, col);
    let texts: [fn(&RequestLog) -> Option<&str>; 8] = [
        |l| l.request_resource.as_deref(),
        |l| l.response_exception.as_deref(),
        |l| l.response_result.as_deref(),
        |l| l.trace_id.as_deref(),
        |l| l.span_id.as_deref(),
        |l| l.parent_span_id.as_deref(),
        |l| l.x_request_id_0.as_deref(),
        |l| l.x_request_id_1.as_deref(),
    ];
    for f in texts {
        put_text(body, col, logs.iter().map(f));
    }
    col.clear();
    put_u64(col, tag_cols.len() as u64);
    for (key, ids) in &mut tag_cols {
        ids.resize(n, 0);
        put_u64(col, u64::from(*key));
        put_runs(col, ids.iter().copied());
    }
    put_bytes(body, col);

    enc.finish(marks, crate::MAGIC)
}

/// Run-length encoding: number of runs, then (length, value) pairs.
fn put_runs(out: &mut Vec<u8>, values: impl Iterator<Item = u32> + Clone) {
    let mut count = 0u64;
    let mut prev = None;
    for v in values.clone() {
        if prev != Some(v) {
            count += 1;
            prev = Some(v);
        }
    }
    put_u64(out, count);
    let mut run: Option<(u32, u64)> = None;
    for v in values {
        match &mut run {
            Some((last, len)) if *last == v => *len += 1,
            _ => {
                if let Some((last, len)) = run {
                    put_u64(out, len);
                    put_u64(out, u64::from(last));
                }
                run = Some((v, 1));
            }
        }
    }
    if let Some((last, len)) = run {
        put_u64(out, len);
        put_u64(out, u64::from(last));
    }
}

/// Optional integers: a presence bitmap, then the present values as varints.
fn put_opt(
    body: &mut Vec<u8>,
    col: &mut Vec<u8>,
    values: impl Iterator<Item = Option<u64>> + Clone,
) {
    col.clear();
    let n = values.clone().count();
    let start = col.len();
    col.resize(start + n.div_ceil(8), 0);
    for (i, v) in values.clone().enumerate() {
        if v.is_some() {
            col[start + i / 8] |= 1 << (i % 8);
        }
    }
    for v in values.flatten() {
        put_u64(col, v);
    }
    put_bytes(body, col);
}

/// Text deduplicated within the batch: the distinct strings, then per row an index (0 = null) run-length encoded.
fn put_text<'a>(
    body: &mut Vec<u8>,
    col: &mut Vec<u8>,
    values: impl Iterator<Item = Option<&'a str>>,
) {
    col.clear();
    let mut seen: HashMap<&'a str, u32> = HashMap::new();
    let mut uniq: Vec<&'a str> = Vec::new();
    let idx: Vec<u32> = values
        .map(|v| match v {
            None => 0,
            Some(s) => *seen.entry(s).or_insert_with(|| {
                uniq.push(s);
                uniq.len() as u32
            }),
        })
        .collect();
    put_u64(col, uniq.len() as u64);
    for s in &uniq {
        put_bytes(col, s.as_bytes());
    }
    put_runs(col, idx.iter().copied());
    put_bytes(body, col);
}
