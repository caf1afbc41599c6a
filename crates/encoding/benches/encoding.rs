//! SmartEncoding benchmark: bytes per log for JSON lines with string tags (a), (a)+zstd (b), our batches (c) and
//! (c)+zstd (d), and encode/decode throughput in logs/s.
//!
//! Data: the request logs of the shared captures' ground truth (`../shared/data/truth/*.jsonl`: real types,
//! resources, domains, codes and statuses), cycled into batches of 10,000 logs with capture-like times, ports and
//! durations, each tagged as a log between two pods of a generated 500-pod Kubernetes cluster (client and server
//! side: pod, namespace, workload, node, service, and app/version/team labels: 16 tags per log).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{criterion_group, Criterion, Throughput};
use fathom_encoding::{Encoder, GlobalDictionary, L4Record, MetricBatch, RedRecord, SyncMode};
use fathom_model::RequestLog;
use gen::{make_logs, BATCH};
use std::io::Write;

#[path = "support/gen.rs"]
mod gen;

fn zstd_len(bytes: &[u8]) -> usize {
    zstd::bulk::compress(bytes, 3).map(|v| v.len()).unwrap_or(0)
}

fn report_sizes() {
    let batches: Vec<Vec<RequestLog>> = (0..5).map(|i| make_logs(BATCH, 0x9e37_79b9 + i)).collect();
    let n = (BATCH * batches.len()) as f64;
    let (mut a, mut b) = (0usize, 0usize);
    for logs in &batches {
        let mut json = Vec::new();
        for l in logs {
            serde_json::to_writer(&mut json, l).unwrap();
            json.push(b'\n');
        }
        a += json.len();
        b += zstd_len(&json);
    }
    let mut sizes = Vec::new();
    for level in [None, Some(3)] {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        enc.set_zstd(level);
        let mut server = GlobalDictionary::default();
        let (mut total, mut first) = (0usize, 0usize);
        for (i, logs) in batches.iter().enumerate() {
            let (_, bytes) = enc.encode(logs).unwrap();
            assert_eq!(&server.decode(&bytes).unwrap().logs, logs, "round trip");
            total += bytes.len();
            if i == 0 {
                first = bytes.len();
            }
        }
        sizes.push((total, first));
    }
    let per = |x: usize| x as f64 / n;
    let first_per = |x: usize| x as f64 / BATCH as f64;
    let mut o = std::io::stderr();
    let _ = writeln!(
        o,
        "\n== SmartEncoding sizes: {} batches of {BATCH} logs, 16 tags each ==",
        batches.len()
    );
    let _ = writeln!(o, "(a) JSON lines, string tags      {:8.1} B/log", per(a));
    let _ = writeln!(
        o,
        "(b) (a) + zstd-3 per batch       {:8.1} B/log  ({:.1}x smaller than a)",
        per(b),
        a as f64 / b as f64
    );
    let _ = writeln!(o, "(c) Fathom batches               {:8.1} B/log  ({:.1}x smaller than a, {:.2}x of b); first batch with its dictionary {:.1} B/log", per(sizes[0].0), a as f64 / sizes[0].0 as f64, sizes[0].0 as f64 / b as f64, first_per(sizes[0].1));
    let _ = writeln!(o, "(d) (c) + zstd-3                 {:8.1} B/log  ({:.1}x smaller than a); first batch {:.1} B/log", per(sizes[1].0), a as f64 / sizes[1].0 as f64, first_per(sizes[1].1));
}

/// Bytes per metric row: the RED rows as the agent prints them (`--json metrics`) against metric batches, rows
/// only and with each window's latency sketch; L4 rows likewise.
fn report_metric_sizes() {
    let all = gen::make_metrics(60_000, 120, 7);
    let mut o = std::io::stderr();
    for (name, rows) in [("RED", all.red.len()), ("L4", all.l4.len())] {
        let json: Vec<u8> = if name == "RED" {
            all.red
                .iter()
                .flat_map(|r| {
                    let mut v = serde_json::to_vec(&r.row).unwrap();
                    v.push(b'\n');
                    v
                })
                .collect()
        } else {
            all.l4
                .iter()
                .flat_map(|r| {
                    let mut v = serde_json::to_vec(&r.row).unwrap();
                    v.push(b'\n');
                    v
                })
                .collect()
        };
        let only = |keep_sketch: bool| {
            let mut b = MetricBatch::default();
            if name == "RED" {
                b.red = all
                    .red
                    .iter()
                    .map(|r| RedRecord {
                        row: r.row.clone(),
                        latency: r.latency.clone().filter(|_| keep_sketch),
                    })
                    .collect();
            } else {
                b.l4 = all
                    .l4
                    .iter()
                    .map(|r| L4Record {
                        row: r.row.clone(),
                        rtt: r.rtt.clone().filter(|_| keep_sketch),
                    })
                    .collect();
            }
            b
        };
        let mut sizes = Vec::new();
        for sketch in [false, true] {
            for level in [None, Some(3)] {
                // One batch per 1,000 rows, dictionary sent once (Reliable), like an agent shipping every few s.
                let batch = only(sketch);
                let mut enc = Encoder::new(1, SyncMode::Reliable);
                enc.set_zstd(level);
                let mut server = GlobalDictionary::default();
                let mut total = 0usize;
                let chunk = |v: usize| (0..v).step_by(1000).map(move |s| s..(s + 1000).min(v));
                for r in chunk(batch.red.len().max(batch.l4.len())) {
                    let part = MetricBatch {
                        red: batch.red.get(r.clone()).unwrap_or_default().to_vec(),
                        l4: batch.l4.get(r).unwrap_or_default().to_vec(),
                    };
                    let (_, bytes) = enc.encode_metrics(&part).unwrap();
                    assert_eq!(
                        server.decode_metrics(&bytes).unwrap().batch,
                        part,
                        "round trip"
                    );
                    total += bytes.len();
                }
                sizes.push(total);
            }
        }
        let zjson: usize = json
            .chunks(1000 * json.len() / rows.max(1))
            .map(zstd_len)
            .sum();
        let per = |x: usize| x as f64 / rows as f64;
        let _ = writeln!(o, "\n== SmartEncoding sizes: {rows} {name} metric rows (1 s and 1 min windows, 120 s of 500 logs/s), batches of 1,000 rows ==");
        let _ = writeln!(
            o,
            "(a) JSON lines                     {:8.1} B/row",
            per(json.len())
        );
        let _ = writeln!(
            o,
            "(b) (a) + zstd-3 per batch         {:8.1} B/row  ({:.1}x smaller than a)",
            per(zjson),
            json.len() as f64 / zjson as f64
        );
        let _ = writeln!(
            o,
            "(c) Fathom metric batches          {:8.1} B/row  ({:.1}x smaller than a)",
            per(sizes[0]),
            json.len() as f64 / sizes[0] as f64
        );
        let _ = writeln!(
            o,
            "(d) (c) + zstd-3                   {:8.1} B/row  ({:.1}x smaller than a)",
            per(sizes[1]),
            json.len() as f64 / sizes[1] as f64
        );
        let _ = writeln!(
            o,
            "(c') (c) with window sketches      {:8.1} B/row",
            per(sizes[2])
        );
        let _ = writeln!(
            o,
            "(d') (c') + zstd-3                 {:8.1} B/row",
            per(sizes[3])
        );
    }
}

fn throughput(c: &mut Criterion) {
    let logs = make_logs(BATCH, 42);
    let mut g = c.benchmark_group("smart_encoding");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut enc = Encoder::new(1, SyncMode::Reliable);
    let _ = enc.encode(&logs).unwrap(); // steady state: dictionary warm
    g.bench_function("encode_10k_logs", |b| b.iter(|| enc.encode(&logs).unwrap()));
    // Pre-interned tags: the tagging stage resolves a tag set once per flow (here: once per distinct set) and
    // every log of the flow carries the handle.
    let mut enc_t = Encoder::new(3, SyncMode::Reliable);
    let (bare, sets) = gen::split_tags(&mut enc_t, &logs);
    let _ = enc_t.encode_tagged(&bare, &sets).unwrap();
    g.bench_function("encode_10k_logs_pre_interned_tags", |b| {
        b.iter(|| enc_t.encode_tagged(&bare, &sets).unwrap())
    });
    let mut enc2 = Encoder::new(2, SyncMode::Reliable);
    let mut server = GlobalDictionary::default();
    server.decode(&enc2.encode(&logs).unwrap().1).unwrap();
    let (_, steady) = enc2.encode(&logs).unwrap();
    g.bench_function("decode_10k_logs", |b| {
        b.iter(|| server.decode(&steady).unwrap())
    });
    g.bench_function("json_serialize_10k_logs", |b| {
        let mut out = Vec::with_capacity(16 << 20);
        b.iter(|| {
            out.clear();
            for l in &logs {
                serde_json::to_writer(&mut out, l).unwrap();
            }
            out.len()
        })
    });
    g.finish();
    // Metric rows: a batch of 1,000 RED and L4 rows with their sketches, as an agent ships every few seconds.
    let all = gen::make_metrics(60_000, 120, 7);
    let part = MetricBatch {
        red: all.red.iter().take(1000).cloned().collect(),
        l4: all.l4.iter().take(1000).cloned().collect(),
    };
    let rows = (part.red.len() + part.l4.len()) as u64;
    let mut g = c.benchmark_group("metric_rows");
    g.throughput(Throughput::Elements(rows));
    let mut enc = Encoder::new(4, SyncMode::Reliable);
    let mut server = GlobalDictionary::default();
    server
        .decode_metrics(&enc.encode_metrics(&part).unwrap().1)
        .unwrap();
    let (_, steady) = enc.encode_metrics(&part).unwrap();
    g.bench_function("encode_with_sketches", |b| {
        b.iter(|| enc.encode_metrics(&part).unwrap())
    });
    g.bench_function("decode_with_sketches", |b| {
        b.iter(|| server.decode_metrics(&steady).unwrap())
    });
    g.bench_function("json_serialize_rows", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for r in &part.red {
                serde_json::to_writer(&mut out, &r.row).unwrap();
            }
            for r in &part.l4 {
                serde_json::to_writer(&mut out, &r.row).unwrap();
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, throughput);

fn main() {
    report_sizes();
    report_metric_sizes();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
