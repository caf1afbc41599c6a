//! Generator of realistic tagged RequestLogs for the SmartEncoding benchmark and stress example.
//!
//! The request logs of the shared captures' ground truth (`../shared/data/truth/*.jsonl`: real types,
//! resources, domains, codes and statuses), cycled with capture-like times, ports and durations, each tagged as a
//! log between two pods of a generated 500-pod Kubernetes cluster (client and server side: pod, namespace,
//! workload, node, service, and app/version/team labels: 16 tags per log).
#![allow(dead_code)]

use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use std::collections::BTreeMap;

/// Logs per batch.
pub const BATCH: usize = 10_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Pod {
    ip: String,
    tags: Vec<(&'static str, String)>,
}

fn cluster(rng: &mut Rng) -> Vec<Pod> {
    let namespaces: Vec<String> = (0..20).map(|i| format!("team-{i:02}-prod")).collect();
    (0..500)
        .map(|i| {
            let workload = i / 5; // 100 workloads, 5 replicas each
            let ns = &namespaces[workload % namespaces.len()];
            let hash = format!("{:x}", rng.next() & 0xff_ffff);
            let w = format!("svc-{workload:03}");
            Pod {
                ip: format!("10.{}.{}.{}", 16 + i / 65536, (i / 256) % 256, i % 256 + 1),
                tags: vec![
                    ("pod", format!("{w}-7d9f{}-{hash}", workload % 10)),
                    ("namespace", ns.clone()),
                    ("workload", w.clone()),
                    (
                        "node",
                        format!("ip-10-0-{}-{}.ec2.internal", i % 50, (i * 7) % 250),
                    ),
                    ("service", w.clone()),
                    ("label.app", w.clone()),
                    (
                        "label.version",
                        format!("v1.{}.{}", workload % 7, workload % 3),
                    ),
                    ("label.team", format!("team-{:02}", workload % 20)),
                ],
            }
        })
        .collect()
}

fn truth_records() -> Vec<serde_json::Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/truth");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("shared truth files")
        .flatten()
        .collect();
    files.sort_by_key(|e| e.path());
    for f in files {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if v["kind"] != "event" {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// `n` tagged logs, deterministic for a seed.
pub fn make_logs(n: usize, seed: u64) -> Vec<RequestLog> {
    let mut rng = Rng(seed | 1);
    let pods = cluster(&mut rng);
    let truth = truth_records();
    let mut t = 1_795_742_375_000_000u64;
    (0..n)
        .map(|i| {
            let r = &truth[i % truth.len()];
            let s = |k: &str| r[k].as_str().map(str::to_string);
            let proto = r["proto"].as_str().unwrap_or("http1");
            let client = &pods[rng.below(500) as usize];
            let server_w =
                (r["resource"].as_str().unwrap_or("").len() * 31 + proto.len() * 7) % 100;
            let server = &pods[server_w * 5 + rng.below(5) as usize];
            t += rng.below(100);
            let dur = 50 + rng.below(5000);
            let mut log = RequestLog::new(L7Protocol::from_name(proto));
            log.version = Some(if proto == "http1" { "1.1" } else { "2" }.into())
                .filter(|_| proto.starts_with("http"));
            log.request_type = s("type");
            log.request_domain = s("domain");
            log.request_resource = s("resource");
            log.endpoint = s("resource").map(|r| r.split('?').next().unwrap_or("").to_string());
            log.request_id = r["req_id"].as_u64();
            log.response_code = r["code"].as_i64();
            log.response_status = match r["status"].as_str() {
                Some("client_error") => ResponseStatus::ClientError,
                Some("server_error") => ResponseStatus::ServerError,
                Some("timeout") => ResponseStatus::Timeout,
                _ => ResponseStatus::Ok,
            };
            log.trace_id = r["traceparent"]
                .as_str()
                .and_then(|tp| tp.split('-').nth(1))
                .map(str::to_string);
            log.x_request_id_0 = s("x_request_id");
            log.start_time_us = t;
            log.end_time_us = t + dur;
            log.response_duration_us = Some(dur);
            log.ip_src = client.ip.clone();
            log.ip_dst = server.ip.clone();
            log.port_src = 32768 + rng.below(28000) as u16;
            log.port_dst = [80, 8080, 6379, 5432, 3306, 9092, 1883, 53][server_w % 8];
            log.req_tcp_seq = Some(rng.next() as u32);
            log.resp_tcp_seq = Some(rng.next() as u32);
            log.captured_request_byte = 60 + rng.below(400);
            log.captured_response_byte = 100 + rng.below(2000);
            let mut tags = BTreeMap::new();
            for (side, pod) in [("src", client), ("dst", server)] {
                for (k, v) in &pod.tags {
                    tags.insert(format!("{side}.{k}"), v.clone());
                }
            }
            log.tags = tags;
            log
        })
        .collect()
}

/// The logs without their string tags, and one pre-interned [`fathom_encoding::TagSet`] per log, interned once
/// per distinct tag map (as a tagger would once per flow) and shared by every log that carries it.
pub fn split_tags(
    enc: &mut fathom_encoding::Encoder,
    logs: &[RequestLog],
) -> (Vec<RequestLog>, Vec<fathom_encoding::TagSet>) {
    let mut by_map: std::collections::HashMap<BTreeMap<String, String>, fathom_encoding::TagSet> =
        std::collections::HashMap::new();
    let mut bare = Vec::with_capacity(logs.len());
    let mut sets = Vec::with_capacity(logs.len());
    for l in logs {
        let mut b = l.clone();
        let tags = std::mem::take(&mut b.tags);
        let set = by_map
            .entry(tags)
            .or_insert_with_key(|t| enc.tag_set(t.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .clone();
        bare.push(b);
        sets.push(set);
    }
    (bare, sets)
}

/// AutoMetrics of `n` generated logs spread over `secs` seconds (and one flow record per 8 logs), from the real
/// aggregator with its sketches kept: 1 s and 1 min RED and L4 rows.
#[cfg(feature = "metrics")]
pub fn make_metrics(n: usize, secs: u64, seed: u64) -> fathom_encoding::MetricBatch {
    use fathom_metrics::{Aggregator, Config};
    use fathom_model::{CloseType, FlowKey, FlowRecord, L4Protocol};
    let mut agg = Aggregator::new(Config {
        keep_sketches: true,
        ..Config::default()
    });
    let mut logs = make_logs(n, seed);
    let t0 = logs.first().map_or(0, |l| l.start_time_us);
    let step = secs * 1_000_000 / n as u64;
    let mut closed = fathom_encoding::MetricBatch::default();
    for (i, l) in logs.iter_mut().enumerate() {
        let dur = l.end_time_us - l.start_time_us;
        l.start_time_us = t0 + i as u64 * step;
        l.end_time_us = l.start_time_us + dur;
        agg.observe_log(l);
        if i % 8 == 0 {
            let key = FlowKey {
                ip_src: l.ip_src.parse().unwrap_or([0, 0, 0, 0].into()),
                ip_dst: l.ip_dst.parse().unwrap_or([0, 0, 0, 0].into()),
                port_src: l.port_src,
                port_dst: l.port_dst,
                l4_protocol: L4Protocol::Tcp,
            };
            let mut f = FlowRecord::new(&key, l.start_time_us);
            f.end_time_us = l.end_time_us;
            f.packet_tx = 4 + (l.captured_request_byte % 7);
            f.packet_rx = 4 + (l.captured_response_byte % 9);
            f.byte_tx = 300 + l.captured_request_byte;
            f.byte_rx = 300 + l.captured_response_byte;
            f.rtt_us = Some(30 + dur % 400);
            f.close_type = CloseType::Fin;
            agg.observe_flow(&f);
        }
        if i % 1000 == 999 {
            let c = fathom_encoding::MetricBatch::from(agg.advance(l.end_time_us));
            closed.red.extend(c.red);
            closed.l4.extend(c.l4);
        }
    }
    let c = fathom_encoding::MetricBatch::from(agg.flush());
    closed.red.extend(c.red);
    closed.l4.extend(c.l4);
    closed
}
