//! Metric batches (feature `metrics`): AutoMetrics rows ([`MetricRow`], [`L4Row`]) and, optionally, each
//! window's latency sketch, encoded with the same machinery as request logs.
//!
//! Series keys (protocol, server, endpoint, transport) are dictionary ids, run-length encoded (rows come sorted by
//! window then key, so runs are long); window starts are zigzag deltas; counters are varints; optional
//! quantiles are a presence bitmap plus varints; a sketch is its non-empty buckets as index gaps and counts.
//! The wire format is in `docs/encoding.md` ("Metric batches"); it shares the log batches' header, checksum,
//! compression, limits and dictionary sync.
//!
//! This module depends on `fathom-metrics` (not the reverse): metrics are computed upstream of encoding in the
//! agent, and `fathom-metrics` has no reason to know how rows are shipped. It sits behind a feature so that users
//! who encode only logs do not build the metrics crate.

use crate::batch::{
    end, merge_entries, open_batch, resolve, Cols, GlobalDictionary, MAX_AGENTS, MAX_ROWS,
    METRIC_MAGIC,
};
use crate::dict::Dictionary;
use crate::encoder::{put_runs, Encoder};
use crate::varint::{put_bytes, put_u64, unzigzag, zigzag, Reader};
use crate::{DecodeError, EncodeError, HEADER_LEN};
use fathom_metrics::{Closed, L4Row, LatencySketch, MetricRow};
use fathom_model::L4Protocol;

/// The dictionary key of metric servers (`ip:port`, service tag value or `__overflow__`). Interned on first use
/// like a tag key; names starting with `@` are reserved for built-in fields.
pub const SERVER_KEY: &str = "@server";

/// A RED row and, optionally, the latency sketch of its window (so a receiver can merge windows or compute other
/// quantiles exactly as the agent would).
#[derive(Debug, Clone, PartialEq)]
pub struct RedRecord {
    /// The row, as `--json metrics` prints it.
    pub row: MetricRow,
    /// The window's latency sketch.
    pub latency: Option<LatencySketch>,
}

impl From<MetricRow> for RedRecord {
    fn from(row: MetricRow) -> Self {
        RedRecord { row, latency: None }
    }
}

/// An L4 row and, optionally, the handshake-RTT sketch of its window.
#[derive(Debug, Clone, PartialEq)]
pub struct L4Record {
    /// The row.
    pub row: L4Row,
    /// The window's RTT sketch.
    pub rtt: Option<LatencySketch>,
}

impl From<L4Row> for L4Record {
    fn from(row: L4Row) -> Self {
        L4Record { row, rtt: None }
    }
}

/// The rows of one metric batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricBatch {
    /// RED rows.
    pub red: Vec<RedRecord>,
    /// L4 rows.
    pub l4: Vec<L4Record>,
}

impl From<Closed> for MetricBatch {
    /// The rows of closed windows, with their sketches when the aggregator kept them
    /// (`fathom_metrics::Config::keep_sketches`).
    fn from(c: Closed) -> Self {
        let mut latency = c.latency.into_iter();
        let mut rtt = c.rtt.into_iter();
        let with_latency = latency.len() == c.rows.len();
        let with_rtt = rtt.len() == c.l4_rows.len();
        MetricBatch {
            red: c
                .rows
                .into_iter()
                .map(|row| RedRecord {
                    row,
                    latency: latency.next().filter(|_| with_latency),
                })
                .collect(),
            l4: c
                .l4_rows
                .into_iter()
                .map(|row| L4Record {
                    row,
                    rtt: rtt.next().filter(|_| with_rtt),
                })
                .collect(),
        }
    }
}

/// A decoded metric batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMetrics {
    /// The sending agent.
    pub agent_id: u64,
    /// The batch's sequence number (shared with the agent's log batches: acknowledge it with
    /// [`Encoder::ack`]).
    pub seq: u64,
    /// Dictionary entries the batch carried.
    pub entries: usize,
    /// The rows, exactly as encoded.
    pub batch: MetricBatch,
}

const F_L7: usize = 0;
const F_ENDPOINT: usize = 4;
const F_L4: usize = 7;

/// Window starts (zigzag deltas) and lengths (runs).
fn put_windows(body: &mut Vec<u8>, tmp: &mut Vec<u8>, w: impl Iterator<Item = (u64, u32)>) {
    let mut col = Vec::new();
    let mut lens = Vec::new();
    let mut prev = 0i64;
    for (start, len) in w {
        put_u64(&mut col, zigzag((start as i64).wrapping_sub(prev)));
        prev = start as i64;
        lens.push(len);
    }
    put_bytes(body, &col);
    put_runs(body, tmp, &lens);
}

fn put_plain(body: &mut Vec<u8>, v: impl Iterator<Item = u64>) {
    let mut col = Vec::new();
    for x in v {
        put_u64(&mut col, x);
    }
    put_bytes(body, &col);
}

/// Presence bitmap, then the present values.
fn put_opt(body: &mut Vec<u8>, v: &[Option<u64>]) {
    let mut col = vec![0u8; v.len().div_ceil(8)];
    for (i, x) in v.iter().enumerate() {
        if x.is_some() {
            col[i / 8] |= 1 << (i % 8);
        }
    }
    for x in v.iter().flatten() {
        put_u64(&mut col, *x);
    }
    put_bytes(body, &col);
}

/// Presence bitmap, then per present sketch: scale, count, and when count > 0: zero count, sum, min, max - min,
/// bucket count, then per bucket the index (the first zigzag, later ones as the gap minus one) and the count.
fn put_sketches(body: &mut Vec<u8>, v: &[Option<&LatencySketch>]) {
    let mut col = vec![0u8; v.len().div_ceil(8)];
    for (i, x) in v.iter().enumerate() {
        if x.is_some() {
            col[i / 8] |= 1 << (i % 8);
        }
    }
    for s in v.iter().flatten() {
        put_u64(&mut col, u64::from(s.scale()));
        put_u64(&mut col, s.count());
        if let (Some(min), Some(max)) = (s.min(), s.max()) {
            put_u64(&mut col, s.zero_count());
            put_u64(&mut col, s.sum());
            put_u64(&mut col, min);
            put_u64(&mut col, max.wrapping_sub(min));
            put_u64(&mut col, s.buckets().count() as u64);
            let mut prev: Option<i32> = None;
            for (i, c) in s.buckets() {
                match prev {
                    None => put_u64(&mut col, zigzag(i64::from(i))),
                    Some(p) => put_u64(&mut col, (i64::from(i) - i64::from(p) - 1) as u64),
                }
                prev = Some(i);
                put_u64(&mut col, u64::from(c));
            }
        }
    }
    put_bytes(body, &col);
}

impl Encoder {
    /// Encode AutoMetrics rows (and any sketches) as one metric batch; returns its sequence number (shared with
    /// log batches) and bytes.
    ///
    /// # Errors
    /// [`EncodeError::TooManyMetricRows`] over [`MAX_ROWS`] RED or L4 rows, [`EncodeError::TooLarge`],
    /// [`EncodeError::Store`], [`EncodeError::Compress`].
    pub fn encode_metrics(&mut self, batch: &MetricBatch) -> Result<(u64, Vec<u8>), EncodeError> {
        let rows = batch.red.len().max(batch.l4.len());
        if rows > MAX_ROWS {
            return Err(EncodeError::TooManyMetricRows {
                rows,
                max: MAX_ROWS,
            });
        }
        let dict = self.dict.get();
        let fk = Dictionary::field_key;
        let server_key = dict.key_id(SERVER_KEY);
        let mut ids: [Vec<u32>; 5] = Default::default();
        for r in &batch.red {
            let r = &r.row;
            ids[0].push(dict.value_id(fk(F_L7), &r.l7_protocol).0);
            ids[1].push(dict.value_id(server_key, &r.server).0);
            ids[2].push(dict.opt_value_id(fk(F_ENDPOINT), r.endpoint.as_deref()).0);
        }
        for r in &batch.l4 {
            let r = &r.row;
            ids[3].push(dict.value_id(fk(F_L4), r.l4_protocol.as_str()).0);
            ids[4].push(dict.value_id(server_key, &r.server).0);
        }
        let marks = self.write_entries()?;
        let mut tmp = Vec::new();
        let body = &mut self.body;
        put_u64(body, u64::from(server_key.0));
        // RED rows.
        let red = &batch.red;
        put_u64(body, red.len() as u64);
        put_windows(
            body,
            &mut tmp,
            red.iter().map(|r| (r.row.window_start_us, r.row.window_s)),
        );
        for c in &ids[..3] {
            put_runs(body, &mut tmp, c);
        }
        let counters: [fn(&MetricRow) -> u64; 4] = [
            |r| r.request,
            |r| r.error_client,
            |r| r.error_server,
            |r| r.timeout,
        ];
        for f in counters {
            put_plain(body, red.iter().map(|r| f(&r.row)));
        }
        let quantiles: [fn(&MetricRow) -> Option<u64>; 4] = [
            |r| r.latency_p50_us,
            |r| r.latency_p90_us,
            |r| r.latency_p99_us,
            |r| r.latency_max_us,
        ];
        for f in quantiles {
            put_opt(body, &red.iter().map(|r| f(&r.row)).collect::<Vec<_>>());
        }
        put_plain(body, red.iter().map(|r| r.row.byte_request));
        put_plain(body, red.iter().map(|r| r.row.byte_response));
        put_sketches(
            body,
            &red.iter().map(|r| r.latency.as_ref()).collect::<Vec<_>>(),
        );
        // L4 rows.
        let l4 = &batch.l4;
        put_u64(body, l4.len() as u64);
        put_windows(
            body,
            &mut tmp,
            l4.iter().map(|r| (r.row.window_start_us, r.row.window_s)),
        );
        for c in &ids[3..] {
            put_runs(body, &mut tmp, c);
        }
        for f in L4_COUNTERS {
            put_plain(body, l4.iter().map(|r| f(&r.row)));
        }
        let quantiles: [fn(&L4Row) -> Option<u64>; 4] = [
            |r| r.rtt_p50_us,
            |r| r.rtt_p90_us,
            |r| r.rtt_p99_us,
            |r| r.rtt_max_us,
        ];
        for f in quantiles {
            put_opt(body, &l4.iter().map(|r| f(&r.row)).collect::<Vec<_>>());
        }
        put_sketches(body, &l4.iter().map(|r| r.rtt.as_ref()).collect::<Vec<_>>());
        self.finish(marks, METRIC_MAGIC)
    }
}

const L4_COUNTERS: [fn(&L4Row) -> u64; 13] = [
    |r| r.flow,
    |r| r.new_connection,
    |r| r.close_fin,
    |r| r.close_rst,
    |r| r.close_timeout,
    |r| r.retrans_tx,
    |r| r.retrans_rx,
    |r| r.packet_tx,
    |r| r.packet_rx,
    |r| r.byte_tx,
    |r| r.byte_rx,
    |r| r.lost_byte_tx,
    |r| r.lost_byte_rx,
];

/// Window starts and lengths.
fn windows(cols: &mut Cols<'_, '_>) -> Result<Vec<(u64, u32)>, DecodeError> {
    let starts = cols.plain(1)?;
    let lens = cols.run_column()?;
    let mut t = 0i64;
    let mut out = Vec::with_capacity(starts.len());
    for (s, l) in starts.into_iter().zip(lens) {
        t = t.wrapping_add(unzigzag(s));
        out.push((t as u64, l));
    }
    Ok(out)
}

/// The sketch column (see [`put_sketches`]).
fn sketches(cols: &mut Cols<'_, '_>) -> Result<Vec<Option<LatencySketch>>, DecodeError> {
    let mut c = cols.column()?;
    let rows = cols.rows;
    let bitmap = c.take(rows.div_ceil(8))?;
    let mut out = Vec::with_capacity(rows);
    let mut buckets = Vec::new();
    for i in 0..rows {
        if bitmap.get(i / 8).is_none_or(|b| b & (1 << (i % 8)) == 0) {
            out.push(None);
            continue;
        }
        let at = c.offset();
        let scale = u8::try_from(c.u64()?).unwrap_or(u8::MAX);
        let count = c.u64()?;
        let (mut zero, mut sum, mut min, mut max) = (0, 0, 0, 0);
        buckets.clear();
        if count > 0 {
            zero = c.u64()?;
            sum = c.u64()?;
            min = c.u64()?;
            max = min.wrapping_add(c.u64()?);
            // Each bucket takes at least two bytes: the count is checked against what is left.
            let n = c.count(c.remaining() / 2, "more sketch buckets than bytes")?;
            let mut prev: Option<i64> = None;
            for _ in 0..n {
                let raw = c.u64()?;
                let idx = match prev {
                    None => unzigzag(raw),
                    Some(p) => p
                        .saturating_add(i64::try_from(raw).unwrap_or(i64::MAX))
                        .saturating_add(1),
                };
                let Ok(idx32) = i32::try_from(idx) else {
                    return Err(DecodeError::BadValue {
                        offset: at,
                        what: "sketch bucket index out of range",
                    });
                };
                prev = Some(idx);
                buckets.push((idx32, c.u32()?));
            }
        }
        let s = LatencySketch::from_parts(scale, zero, count, sum, min, max, &buckets).ok_or(
            DecodeError::BadValue {
                offset: at,
                what: "inconsistent latency sketch",
            },
        )?;
        out.push(Some(s));
    }
    end(&c)?;
    Ok(out)
}

fn opt4(cols: &mut Cols<'_, '_>) -> Result<[Vec<Option<u64>>; 4], DecodeError> {
    Ok([cols.opt()?, cols.opt()?, cols.opt()?, cols.opt()?])
}

impl GlobalDictionary {
    /// Decode one metric batch: merge its dictionary entries, then rebuild its rows and sketches.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the offset of the first damage ([`DecodeError::WrongKind`] for a log batch);
    /// never panics.
    pub fn decode_metrics(&mut self, batch: &[u8]) -> Result<DecodedMetrics, DecodeError> {
        let (agent_id, seq, body) = open_batch(batch, METRIC_MAGIC)?;
        if !self.agents.contains_key(&agent_id) && self.agents.len() >= MAX_AGENTS {
            return Err(DecodeError::LimitExceeded {
                offset: 8,
                what: "too many agents",
            });
        }
        let agent = self.agents.entry(agent_id).or_default();
        let mut r = Reader::new(&body, HEADER_LEN);
        let entries = merge_entries(&mut self.dict, agent, &mut r)?;
        let dict = &self.dict;
        let agent = &*agent;
        let server_key = r.u32()?;
        let name = |k: u32, v: u32, at: usize| -> Result<String, DecodeError> {
            resolve(dict, agent, k, v, at)?.ok_or(DecodeError::BadValue {
                offset: at,
                what: "null series key",
            })
        };
        let fk = |f: usize| Dictionary::field_key(f).0;
        // RED rows.
        let rows = r.count(MAX_ROWS, "more rows than MAX_ROWS")?;
        let at = r.offset();
        let mut cols = Cols { r: &mut r, rows };
        let win = windows(&mut cols)?;
        let (proto, server, endpoint) =
            (cols.run_column()?, cols.run_column()?, cols.run_column()?);
        let counts = [
            cols.plain(1)?,
            cols.plain(1)?,
            cols.plain(1)?,
            cols.plain(1)?,
        ];
        let q = opt4(&mut cols)?;
        let (breq, bresp) = (cols.plain(1)?, cols.plain(1)?);
        let latency = sketches(&mut cols)?;
        let mut red = Vec::with_capacity(rows);
        for (i, sketch) in latency.into_iter().enumerate() {
            red.push(RedRecord {
                row: MetricRow {
                    window_start_us: win[i].0,
                    window_s: win[i].1,
                    l7_protocol: name(fk(F_L7), proto[i], at)?,
                    server: name(server_key, server[i], at)?,
                    endpoint: resolve(dict, agent, fk(F_ENDPOINT), endpoint[i], at)?,
                    request: counts[0][i],
                    error_client: counts[1][i],
                    error_server: counts[2][i],
                    timeout: counts[3][i],
                    latency_p50_us: q[0][i],
                    latency_p90_us: q[1][i],
                    latency_p99_us: q[2][i],
                    latency_max_us: q[3][i],
                    byte_request: breq[i],
                    byte_response: bresp[i],
                },
                latency: sketch,
            });
        }
        // L4 rows.
        let rows = r.count(MAX_ROWS, "more rows than MAX_ROWS")?;
        let at = r.offset();
        let mut cols = Cols { r: &mut r, rows };
        let win = windows(&mut cols)?;
        let (proto, server) = (cols.run_column()?, cols.run_column()?);
        let mut counts = Vec::with_capacity(L4_COUNTERS.len());
        for _ in L4_COUNTERS {
            counts.push(cols.plain(1)?);
        }
        let q = opt4(&mut cols)?;
        let rtt = sketches(&mut cols)?;
        let mut l4 = Vec::with_capacity(rows);
        for (i, sketch) in rtt.into_iter().enumerate() {
            let c = |k: usize| counts[k][i];
            l4.push(L4Record {
                row: L4Row {
                    window_start_us: win[i].0,
                    window_s: win[i].1,
                    l4_protocol: match name(fk(F_L4), proto[i], at)?.as_str() {
                        "tcp" => L4Protocol::Tcp,
                        "udp" => L4Protocol::Udp,
                        _ => {
                            return Err(DecodeError::BadValue {
                                offset: at,
                                what: "bad l4 protocol",
                            })
                        }
                    },
                    server: name(server_key, server[i], at)?,
                    flow: c(0),
                    new_connection: c(1),
                    close_fin: c(2),
                    close_rst: c(3),
                    close_timeout: c(4),
                    retrans_tx: c(5),
                    retrans_rx: c(6),
                    packet_tx: c(7),
                    packet_rx: c(8),
                    byte_tx: c(9),
                    byte_rx: c(10),
                    lost_byte_tx: c(11),
                    lost_byte_rx: c(12),
                    rtt_p50_us: q[0][i],
                    rtt_p90_us: q[1][i],
                    rtt_p99_us: q[2][i],
                    rtt_max_us: q[3][i],
                },
                rtt: sketch,
            });
        }
        if !r.is_empty() {
            return Err(DecodeError::BadValue {
                offset: r.offset(),
                what: "trailing bytes in the body",
            });
        }
        Ok(DecodedMetrics {
            agent_id,
            seq,
            entries,
            batch: MetricBatch { red, l4 },
        })
    }
}
