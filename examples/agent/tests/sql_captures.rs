//! The agent pipeline on the shared SQL captures: the manifest's ground truth for mysql and postgresql
//! (`mysql.pcap`, `postgresql.pcap`, and `microservices.pcap`'s postgresql), counted as
//! `shared/tools/conformance.py logs` counts it.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).expect("manifest"))
        .expect("json")
}

fn count<I: IntoIterator<Item = String>>(it: I) -> Value {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    serde_json::to_value(m).unwrap()
}

/// The agent's logs for `proto` on server `port` of `pcap`, as JSON objects.
fn logs(pcap: &str, proto: &str, port: u64) -> Vec<Value> {
    let (logs, _) = fathom_agent::logs_from_pcap(&data(pcap)).expect("pcap parses");
    logs.iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .filter(|x| {
            x["port_dst"].as_u64() == Some(port) && x["l7_protocol"].as_str() == Some(proto)
        })
        .collect()
}

/// Assert every ground-truth count conformance.py checks, for `label` of `scenario`.
fn check(scenario: &str, proto: &str, label: &str) {
    let m = manifest();
    let sc = m["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scenario"] == scenario)
        .expect("scenario");
    let port_key = label.split('@').nth(1).unwrap_or(proto);
    let port = sc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["protocol"] == proto && (s["port_key"] == port_key || label == proto))
        .expect("server")["port"]
        .as_u64()
        .unwrap();
    let gt = &sc["ground_truth"][label];
    let mine = logs(sc["pcap"].as_str().unwrap(), proto, port);
    let s = |x: &Value, k: &str| match &x[k] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap(),
        "{label}: logs"
    );
    assert_eq!(
        count(mine.iter().map(|x| s(x, "request_type"))),
        gt["by_request_type"],
        "{label}"
    );
    assert_eq!(
        count(
            mine.iter()
                .filter(|x| !x["response_code"].is_null())
                .map(|x| s(x, "response_code"))
        ),
        gt["by_response_code"],
        "{label}"
    );
    assert_eq!(
        count(mine.iter().map(|x| s(x, "response_status"))),
        gt["by_status"],
        "{label}"
    );
    let kinds = mine.iter().filter(|x| {
        x["response_code"].is_null()
            && x["response_exception"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
            && matches!(
                x["response_status"].as_str(),
                Some("client_error" | "server_error")
            )
    });
    let kinds = kinds.map(|x| {
        let e = x["response_exception"].as_str().unwrap();
        e.split(' ')
            .next()
            .unwrap()
            .trim_end_matches(':')
            .to_string()
    });
    assert_eq!(count(kinds), gt["by_error_kind"], "{label}");
    // One-way logs have no duration; everything else is paired.
    let one_way = mine
        .iter()
        .filter(|x| x["response_duration_us"].is_null())
        .count() as u64;
    assert_eq!(
        one_way,
        gt["one_way"].as_u64().unwrap() + gt["unanswered"].as_u64().unwrap(),
        "{label}"
    );
}

#[test]
fn mysql_capture_matches_ground_truth() {
    check("mysql", "mysql", "mysql");
}

#[test]
fn postgresql_capture_matches_ground_truth() {
    check("postgresql", "postgresql", "postgresql");
}

#[test]
fn microservices_postgresql_matches_ground_truth() {
    check("microservices", "postgresql", "postgresql");
}

#[test]
fn mysql_fields_follow_the_truth_file() {
    let got = logs("mysql.pcap", "mysql", 13306);
    let truth: Vec<Value> = std::fs::read_to_string(data("truth/mysql.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Same commands in the same order per connection (the agent orders logs by flow end).
    let mut by_port: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for l in &got {
        by_port
            .entry(l["port_src"].as_u64().unwrap())
            .or_default()
            .push(l);
    }
    let mut sequences: Vec<Vec<String>> = by_port
        .values()
        .map(|v| {
            v.iter()
                .map(|l| l["request_type"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let mut want: Vec<Vec<String>> = Vec::new();
    for conn in ["pymysql", "connector"] {
        want.push(
            truth
                .iter()
                .filter(|t| t["conn"] == conn)
                .map(|t| t["type"].as_str().unwrap().to_string())
                .collect(),
        );
    }
    sequences.sort();
    want.sort();
    assert_eq!(sequences, want);
    // COM_QUERY resources are the SQL the client sent; domains the database.
    for t in truth.iter().filter(|t| t["type"] == "COM_QUERY") {
        assert!(
            got.iter()
                .any(|l| l["request_resource"] == t["resource"]
                    && l["request_domain"] == t["domain"]),
            "{t}"
        );
    }
}

#[test]
fn postgresql_fields_follow_the_truth_file() {
    let got = logs("postgresql.pcap", "postgresql", 15432);
    let truth: Vec<Value> = std::fs::read_to_string(data("truth/postgresql.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for t in &truth {
        let code = t["code"].as_str();
        assert!(
            got.iter().any(|l| l["request_type"] == t["type"]
                && l["request_resource"] == t["resource"]
                && l["request_domain"] == t["domain"]
                && l["response_status"] == t["status"]
                && match code {
                    Some(c) => l["response_exception"]
                        .as_str()
                        .is_some_and(|e| e.starts_with(c)),
                    None => l["response_exception"].is_null(),
                }),
            "{t}"
        );
    }
}
