//! End to end: the agent pipeline on the shared HTTP/1 captures against the manifest's ground truth (counted as
//! `shared/tools/conformance.py logs` counts it) and the trace context / request ids of the truth files.

use fathom_model::{L7Protocol, RequestLog};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn manifest_scenario(pcap: &str) -> Value {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    m["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pcap"] == pcap)
        .unwrap()
        .clone()
}

fn truth(file: &str) -> Vec<Value> {
    std::fs::read_to_string(data(file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn counts<'a>(it: impl Iterator<Item = String> + 'a) -> Value {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    serde_json::to_value(m).unwrap()
}

/// The logs of one server, and the conformance figures computed from them.
fn check_server(logs: &[RequestLog], port: u16, gt: &Value) -> Vec<RequestLog> {
    let mine: Vec<RequestLog> = logs
        .iter()
        .filter(|l| l.port_dst == port && l.l7_protocol == L7Protocol::Http1)
        .cloned()
        .collect();
    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap(),
        "log count @{port}"
    );
    let by_type = counts(
        mine.iter()
            .map(|l| l.request_type.clone().unwrap_or_else(|| "None".into())),
    );
    assert_eq!(by_type, gt["by_request_type"], "by_request_type @{port}");
    let by_code = counts(
        mine.iter()
            .filter_map(|l| l.response_code)
            .map(|c| c.to_string()),
    );
    assert_eq!(by_code, gt["by_response_code"], "by_response_code @{port}");
    let by_status = counts(mine.iter().map(|l| l.response_status.as_str().to_string()));
    assert_eq!(by_status, gt["by_status"], "by_status @{port}");
    let by_error = counts(
        mine.iter()
            .filter(|l| l.response_code.is_none() && l.response_exception.is_some())
            .map(|l| {
                l.response_exception
                    .clone()
                    .unwrap_or_default()
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            }),
    );
    assert_eq!(by_error, gt["by_error_kind"], "by_error_kind @{port}");
    mine
}

/// Truth records with a trace context or request id must find a log of the same connection and resource
/// carrying the same values.
fn check_ids(mine: &[RequestLog], truth: &[Value]) {
    let mut checked = 0;
    for t in truth {
        let port = t["client_port"].as_u64().unwrap();
        let res = t["resource"].as_str().unwrap();
        let cands: Vec<&RequestLog> = mine
            .iter()
            .filter(|l| u64::from(l.port_src) == port && l.request_resource.as_deref() == Some(res))
            .collect();
        assert!(!cands.is_empty(), "no log for {t}");
        let ok = |l: &&RequestLog| {
            let tp = t["traceparent"]
                .as_str()
                .map(|tp| tp.split('-').collect::<Vec<_>>());
            let trace_ok = match &tp {
                Some(f) => {
                    l.trace_id.as_deref() == Some(f[1]) && l.span_id.as_deref() == Some(f[2])
                }
                None => l.trace_id.is_none(),
            };
            let x0_ok = t
                .get("x_request_id")
                .is_none_or(|x| l.x_request_id_0.as_deref() == x.as_str());
            let x1_ok = t
                .get("x_request_id_resp")
                .is_none_or(|x| l.x_request_id_1.as_deref() == x.as_str());
            trace_ok && x0_ok && x1_ok
        };
        assert!(cands.iter().any(ok), "ids of {t} not on {cands:?}");
        if t["traceparent"].is_string() || t["x_request_id"].is_string() {
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn http1_pcap_ground_truth_and_trace_ids() {
    let sc = manifest_scenario("http1.pcap");
    let (logs, stats) = fathom_agent::logs_from_pcap(&data("http1.pcap")).unwrap();
    let mine = check_server(&logs, 18080, &sc["ground_truth"]["http1"]);
    check_ids(&mine, &truth("truth/http1.jsonl"));
    assert_eq!(stats.engine.orphan_responses, 0);
    assert!(
        stats.engine.parse_errors.is_empty(),
        "{:?}",
        stats.engine.parse_errors
    );
    // Endpoints carry no ids and no query.
    for l in &mine {
        let e = l.endpoint.as_deref().unwrap();
        assert!(
            !e.contains('?') && !e.contains("123") && !e.contains("9f8e7d6c5b4a"),
            "{e}"
        );
    }
}

#[test]
fn microservices_http1_front_and_backend() {
    let sc = manifest_scenario("microservices.pcap");
    let (logs, stats) = fathom_agent::logs_from_pcap(&data("microservices.pcap")).unwrap();
    let all = truth("truth/microservices.jsonl");
    for (port, key, server) in [
        (18082, "http1@micro_front", "micro_front"),
        (18091, "http1@micro_backend", "micro_backend"),
    ] {
        let mine = check_server(&logs, port, &sc["ground_truth"][key]);
        let t: Vec<Value> = all
            .iter()
            .filter(|t| t["proto"] == "http1" && t["server"] == server)
            .cloned()
            .collect();
        check_ids(&mine, &t);
    }
    assert_eq!(stats.engine.orphan_responses, 0);
}
