//! The agent pipeline (capture → protocols) on the shared DNS and TLS captures, against the manifest's
//! ground truth, counted exactly as `shared/tools/conformance.py logs` counts it: logs whose `port_dst` is
//! the server port and whose `l7_protocol` is the protocol.

use fathom_model::RequestLog;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn count(it: impl Iterator<Item = String>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k).or_default() += 1;
    }
    m
}

fn check(pcap: &str, proto: &str) -> Vec<RequestLog> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data("manifest.json")).unwrap()).unwrap();
    let sc = manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pcap"] == pcap)
        .unwrap();
    let port = sc["servers"][0]["port"].as_u64().unwrap();
    let gt = &sc["ground_truth"][proto];
    let (logs, _stats) = fathom_agent::logs_from_pcap(&data(pcap)).unwrap();
    let mine: Vec<RequestLog> = logs
        .into_iter()
        .filter(|l| u64::from(l.port_dst) == port && l.l7_protocol.as_str() == proto)
        .collect();
    let want = |k: &str| -> BTreeMap<String, u64> {
        gt[k]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect()
    };
    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap(),
        "{pcap}"
    );
    let types = count(
        mine.iter()
            .map(|l| l.request_type.clone().unwrap_or_else(|| "None".into())),
    );
    assert_eq!(types, want("by_request_type"), "{pcap}");
    let codes = count(
        mine.iter()
            .filter_map(|l| l.response_code.map(|c| c.to_string())),
    );
    assert_eq!(codes, want("by_response_code"), "{pcap}");
    let statuses = count(mine.iter().map(|l| l.response_status.as_str().to_string()));
    assert_eq!(statuses, want("by_status"), "{pcap}");
    let kinds = count(
        mine.iter()
            .filter(|l| {
                l.response_code.is_none()
                    && l.response_exception.is_some()
                    && matches!(l.response_status.as_str(), "client_error" | "server_error")
            })
            .map(|l| {
                let e = l.response_exception.as_deref().unwrap_or_default();
                e.split(' ')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(':')
                    .to_string()
            }),
    );
    assert_eq!(kinds, want("by_error_kind"), "{pcap}");
    mine
}

#[test]
fn dns_capture_matches_ground_truth() {
    let logs = check("dns.pcap", "dns");
    let udp = logs
        .iter()
        .filter(|l| l.l4_protocol.as_str() == "udp")
        .count();
    assert_eq!((udp, logs.len() - udp), (10, 3));
    // Every query paired (the truth's DNS ids), with the answers dig printed.
    let cname = logs.iter().find(|l| l.request_id == Some(27629)).unwrap();
    assert_eq!(cname.request_domain.as_deref(), Some("www.svc.test"));
    assert_eq!(
        cname.response_result.as_deref(),
        Some("CNAME tundra2.svc.test.;A 127.0.194.200")
    );
}

#[test]
fn tls_capture_matches_ground_truth() {
    let logs = check("tls.pcap", "tls");
    let mut versions = count(logs.iter().filter_map(|l| l.version.clone()));
    versions.retain(|_, n| *n > 0);
    // tshark: ServerHello by version TLSv1.2: 2, TLSv1.3: 3.
    assert_eq!(
        versions,
        BTreeMap::from([("1.2".to_string(), 2), ("1.3".to_string(), 3)])
    );
    let snis = count(
        logs.iter()
            .map(|l| l.request_domain.clone().unwrap_or_else(|| "(none)".into())),
    );
    assert_eq!(
        snis,
        BTreeMap::from([
            ("(none)".to_string(), 1),
            ("api.example.test".to_string(), 3),
            ("nope.example.test".to_string(), 1),
            ("shop.example.test".to_string(), 2),
        ])
    );
}
