//! The agent pipeline on the shared Redis and Kafka captures, checked against the manifest's ground truth
//! exactly as `shared/tools/conformance.py logs` computes it (logs filtered by server port and protocol), plus
//! per-record checks against `truth/*.jsonl`.

use fathom_model::RequestLog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap()
}

fn scenario<'a>(m: &'a Value, pcap: &str) -> &'a Value {
    m["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pcap"] == pcap)
        .unwrap()
}

fn counter<I: IntoIterator<Item = String>>(items: I) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

fn as_counter(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Logs of `proto` to `port`, checked against the ground truth `label` of `pcap`. Returns them.
fn check(pcap: &str, proto: &str, label: &str) -> Vec<RequestLog> {
    let m = manifest();
    let sc = scenario(&m, pcap);
    let port = sc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["protocol"] == proto)
        .unwrap()["port"]
        .as_u64()
        .unwrap();
    let gt = &sc["ground_truth"][label];
    let (logs, _stats) = fathom_agent::logs_from_pcap(&data(pcap)).unwrap();
    let mine: Vec<RequestLog> = logs
        .into_iter()
        .filter(|l| u64::from(l.port_dst) == port && l.l7_protocol.as_str() == proto)
        .collect();
    let j: Vec<Value> = mine
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .collect();
    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap(),
        "{pcap} {label}: log count"
    );
    assert_eq!(
        counter(
            j.iter()
                .map(|x| x["request_type"].as_str().unwrap_or("None").to_string())
        ),
        as_counter(&gt["by_request_type"]),
        "{pcap} {label}: by_request_type"
    );
    assert_eq!(
        counter(
            j.iter()
                .filter(|x| !x["response_code"].is_null())
                .map(|x| x["response_code"].to_string())
        ),
        as_counter(&gt["by_response_code"]),
        "{pcap} {label}: by_response_code"
    );
    assert_eq!(
        counter(
            j.iter()
                .map(|x| x["response_status"].as_str().unwrap().to_string())
        ),
        as_counter(&gt["by_status"]),
        "{pcap} {label}: by_status"
    );
    let kinds = j.iter().filter(|x| {
        x["response_code"].is_null()
            && x["response_exception"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
            && matches!(
                x["response_status"].as_str(),
                Some("client_error" | "server_error")
            )
    });
    assert_eq!(
        counter(kinds.map(|x| {
            let e = x["response_exception"].as_str().unwrap();
            e.split(' ')
                .next()
                .unwrap()
                .trim_end_matches(':')
                .to_string()
        })),
        as_counter(&gt["by_error_kind"]),
        "{pcap} {label}: by_error_kind"
    );
    mine
}

fn truth(file: &str) -> Vec<Value> {
    std::fs::read_to_string(data(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn redis_pcap_matches_ground_truth() {
    let logs = check("redis.pcap", "redis", "redis");
    // Per record: every truth record (type, "command key" prefix of its resource, status, error prefix) is
    // there, as often as the truth has it.
    let mut want = counter(truth("truth/redis.jsonl").iter().map(|t| {
        let res = t["resource"].as_str().unwrap();
        let mut words = res.split(' ');
        let first_two = match (words.next(), words.next()) {
            (Some(a), Some(b)) => format!("{a} {b}"),
            (Some(a), None) => a.to_string(),
            _ => String::new(),
        };
        format!(
            "{}|{}|{}|{}",
            t["type"].as_str().unwrap(),
            first_two,
            t["status"].as_str().unwrap(),
            t["code"].as_str().unwrap_or("-")
        )
    }));
    let got = counter(logs.iter().map(|l| {
        format!(
            "{}|{}|{}|{}",
            l.request_type.as_deref().unwrap_or(""),
            l.request_resource.as_deref().unwrap_or(""),
            l.response_status.as_str(),
            l.response_exception
                .as_deref()
                .and_then(|e| e.split(' ').next())
                .unwrap_or("-")
        )
    }));
    // The pub/sub pushes have no key: their resource is "message <channel>" on both sides.
    want.retain(|_, v| *v > 0);
    assert_eq!(got, want);
    // The pipelined burst: 5 exact pairs whose requests share one segment.
    let burst: Vec<_> = logs
        .iter()
        .filter(|l| {
            l.request_resource
                .as_deref()
                .is_some_and(|r| r.starts_with("SET user:p") || r.starts_with("GET user:p"))
        })
        .collect();
    assert_eq!(burst.len(), 5);
    assert!(burst
        .iter()
        .all(|l| l.req_tcp_seq.is_some() && l.response_duration_us.is_some()));
    let seqs: std::collections::BTreeSet<_> = burst.iter().map(|l| l.start_time_us).collect();
    assert_eq!(seqs.len(), 1, "one client write");
}

#[test]
fn microservices_redis_matches_ground_truth() {
    let logs = check("microservices.pcap", "redis", "redis");
    assert!(logs.iter().all(|l| l.request_resource.is_some()));
}

#[test]
fn kafka_pcap_matches_ground_truth() {
    let logs = check("kafka.pcap", "kafka", "kafka");
    // Per record: (client id, correlation id, API, version, topic, status) as librdkafka logged them. Its log
    // does not name the topics of Metadata requests (tshark's kafka.topic_name shows them: "orders", "audit"),
    // so Metadata resources are not compared.
    let want = counter(truth("truth/kafka.jsonl").iter().map(|t| {
        format!(
            "{}|{}|{}|{}|{}|{}",
            t["domain"].as_str().unwrap(),
            t["req_id"],
            t["type"].as_str().unwrap(),
            t["api_version"],
            if t["type"] == "Metadata" {
                "*"
            } else {
                t["resource"].as_str().unwrap_or("-")
            },
            t["status"].as_str().unwrap()
        )
    }));
    let got = counter(logs.iter().map(|l| {
        format!(
            "{}|{}|{}|{}|{}|{}",
            l.request_domain.as_deref().unwrap_or(""),
            l.request_id.unwrap_or(0),
            l.request_type.as_deref().unwrap_or(""),
            l.version.as_deref().unwrap_or(""),
            if l.request_type.as_deref() == Some("Metadata") {
                "*"
            } else {
                l.request_resource.as_deref().unwrap_or("-")
            },
            l.response_status.as_str()
        )
    }));
    assert_eq!(got, want);
}
