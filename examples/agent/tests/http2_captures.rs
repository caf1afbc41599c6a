//! End to end: the agent pipeline on the shared HTTP/2 and gRPC captures, against the manifest's ground truth,
//! counted exactly as `shared/tools/conformance.py logs` counts (logs with `port_dst` = the server port and
//! `l7_protocol` = the protocol).

use fathom_model::RequestLog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn counts<'a>(it: impl Iterator<Item = String> + 'a) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    m
}

fn want_counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Check one scenario of the manifest for `proto`.
fn check(pcap: &str, proto: &str) -> Vec<RequestLog> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    let sc = manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pcap"] == pcap)
        .unwrap();
    let port = sc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["protocol"] == proto)
        .unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let gt = &sc["ground_truth"][proto];

    let (logs, _stats) = fathom_agent::logs_from_pcap(&data(pcap)).expect("pipeline runs");
    let mine: Vec<RequestLog> = logs
        .into_iter()
        .filter(|l| l.port_dst == port && l.l7_protocol.as_str() == proto)
        .collect();

    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap(),
        "{pcap}: {mine:#?}"
    );
    let by_type = counts(
        mine.iter()
            .map(|l| l.request_type.clone().unwrap_or_else(|| "None".into())),
    );
    assert_eq!(by_type, want_counts(&gt["by_request_type"]), "{pcap}");
    let by_code = counts(
        mine.iter()
            .filter_map(|l| l.response_code.map(|c| c.to_string())),
    );
    assert_eq!(by_code, want_counts(&gt["by_response_code"]), "{pcap}");
    let by_status = counts(mine.iter().map(|l| l.response_status.as_str().to_string()));
    assert_eq!(by_status, want_counts(&gt["by_status"]), "{pcap}");
    let by_error_kind = counts(
        mine.iter()
            .filter(|l| l.response_code.is_none() && l.response_status.is_error())
            .filter_map(|l| l.response_exception.as_deref())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.split(' ')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(':')
                    .to_string()
            }),
    );
    assert_eq!(by_error_kind, want_counts(&gt["by_error_kind"]), "{pcap}");
    mine
}

#[test]
fn http2_capture_matches_the_manifest() {
    let logs = check("http2.pcap", "http2");
    assert!(logs.iter().all(|l| l.version.as_deref() == Some("2")));
    assert!(logs.iter().all(|l| l.request_id.is_some()));
}

#[test]
fn grpc_capture_matches_the_manifest() {
    let logs = check("grpc.pcap", "grpc");
    let methods = counts(logs.iter().filter_map(|l| l.request_resource.clone()));
    // From truth/grpc.jsonl: 6 GetItem calls and 2 ListItems calls.
    assert_eq!(methods.get("/demo.v1.Catalog/GetItem"), Some(&6));
    assert_eq!(methods.get("/demo.v1.Catalog/ListItems"), Some(&2));
}
