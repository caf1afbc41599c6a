//! DNS and TLS parsers on real captures, through the Engine: the shared dev captures against their truth
//! files (what dig, curl and Python saw), and third-party captures against their projects' expected
//! output (Arkime `.test` session documents, Zeek `ssl.log` baselines).

mod support_pcap;

use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use serde_json::Value;
use std::collections::BTreeMap;

macro_rules! data {
    ($p:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/", $p)
    };
}

fn load(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn truth(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.to_string()).or_default() += 1;
    }
    m
}

/// The manifest's ground truth for `proto` in `pcap`, compared as conformance.py does.
fn assert_ground_truth(pcap: &str, proto: &str, mine: &[&RequestLog]) {
    let m: Value = serde_json::from_slice(&load(data!("manifest.json"))).unwrap();
    let sc = m["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pcap"] == pcap)
        .unwrap();
    let gt = &sc["ground_truth"][proto];
    let want = |k: &str| -> BTreeMap<String, usize> {
        gt[k]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
            .collect()
    };
    assert_eq!(
        mine.len() as u64,
        gt["expected_request_logs"].as_u64().unwrap()
    );
    let types = count(
        mine.iter()
            .map(|l| l.request_type.as_deref().unwrap_or("None")),
    );
    assert_eq!(types, want("by_request_type"));
    let codes: Vec<String> = mine
        .iter()
        .filter_map(|l| l.response_code.map(|c| c.to_string()))
        .collect();
    assert_eq!(
        count(codes.iter().map(String::as_str)),
        want("by_response_code")
    );
    let statuses = count(mine.iter().map(|l| l.response_status.as_str()));
    assert_eq!(statuses, want("by_status"));
}

fn of(logs: &[RequestLog], proto: L7Protocol, port: u16) -> Vec<&RequestLog> {
    logs.iter()
        .filter(|l| l.l7_protocol == proto && l.port_dst == port)
        .collect()
}

#[test]
fn dns_dev_capture_matches_dig() {
    let (logs, stats) = support_pcap::logs_from_pcap(&load(data!("dns.pcap")), &[15353]);
    let mine = of(&logs, L7Protocol::Dns, 15353);
    let truth = truth(data!("truth/dns.jsonl"));
    assert_eq!(mine.len(), truth.len(), "{stats:?}");
    assert_eq!(stats.orphan_responses, 0);
    assert_ground_truth("dns.pcap", "dns", &mine);
    for t in &truth {
        let id = t["req_id"].as_u64().unwrap();
        let l = mine
            .iter()
            .find(|l| l.request_id == Some(id))
            .unwrap_or_else(|| panic!("no log for id {id}"));
        assert_eq!(l.request_type.as_deref(), t["type"].as_str(), "{id}");
        assert_eq!(l.request_domain.as_deref(), t["domain"].as_str(), "{id}");
        assert_eq!(
            l.request_resource.as_deref(),
            t["resource"].as_str(),
            "{id}"
        );
        assert_eq!(l.response_code, t["code"].as_i64(), "{id}");
        assert_eq!(
            l.response_status.as_str(),
            t["status"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(l.l4_protocol.as_str(), t["l4"].as_str().unwrap(), "{id}");
        let answers: Vec<&str> = t["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let want = (!answers.is_empty()).then(|| answers.join(";"));
        assert_eq!(l.response_result, want, "{id}");
        assert!(l.response_duration_us.is_some());
    }
}

#[test]
fn tls_dev_capture_matches_clients() {
    let (logs, stats) = support_pcap::logs_from_pcap(&load(data!("tls.pcap")), &[18443]);
    let mine = of(&logs, L7Protocol::Tls, 18443);
    let truth = truth(data!("truth/tls.jsonl"));
    assert_eq!(mine.len(), truth.len(), "{stats:?}");
    assert_ground_truth("tls.pcap", "tls", &mine);
    // Logs come out in handshake order; so does the truth file.
    for (l, t) in mine.iter().zip(&truth) {
        assert_eq!(l.request_type.as_deref(), Some("ClientHello"));
        assert_eq!(l.request_domain.as_deref(), t["sni"].as_str());
        assert_eq!(l.request_resource.as_deref(), t["resource"].as_str());
        assert_eq!(l.response_code, t["code"].as_i64());
        assert_eq!(l.response_status.as_str(), t["status"].as_str().unwrap());
        let version = t["tls_version"]
            .as_str()
            .map(|v| v.trim_start_matches("TLSv"));
        assert_eq!(l.version.as_deref(), version);
        let result = l.response_result.clone().unwrap_or_default();
        match (t["alpn"].as_str(), version) {
            (Some(a), Some("1.2")) => assert!(result.contains(&format!("alpn={a}")), "{result}"),
            (Some(a), _) => assert!(result.contains("alpn_offered=") && result.contains(a)),
            (None, _) => assert!(!result.contains("alpn")),
        }
        if let Some(p) = t["client_port"].as_u64() {
            assert_eq!(u64::from(l.port_src), p);
        }
        if t["code"].as_i64() == Some(112) {
            assert_eq!(l.response_exception.as_deref(), Some("unrecognized_name"));
        }
    }
}

/// Arkime's expected DNS sessions: every (query host, qtype, status) it lists has a log.
#[test]
fn dns_arkime_captures() {
    let dir = data!("external/arkime/pcap/");
    let mut checked = 0;
    for name in [
        "dns-caa",
        "dns-dnskey",
        "dns-error",
        "dns-flags0000",
        "dns-https",
        "dns-mx",
        "dns-notify",
        "dns-punycode",
        "dns-tcp",
        "dns-udp",
        "dns-update",
        "dns-wiresharkrepo",
        "dnssec_synthetic",
    ] {
        let pcap = load(&format!("{dir}{name}.pcap"));
        let test: Value = serde_json::from_slice(&load(&format!("{dir}{name}.test"))).unwrap();
        let (logs, stats) = support_pcap::logs_from_pcap(&pcap, &[53]);
        let dns: Vec<&RequestLog> = logs
            .iter()
            .filter(|l| l.l7_protocol == L7Protocol::Dns)
            .collect();
        for s in test["sessions3"].as_array().unwrap() {
            for d in s["body"]["dns"].as_array().into_iter().flatten() {
                let host = d["queryHost"].as_str().unwrap();
                // Arkime shows IDNs decoded and the root as `<root>`; we keep the wire form.
                let host = match (d["puny"].as_array(), host) {
                    (Some(p), _) => p[0].as_str().unwrap().to_string(),
                    (None, "<root>") => ".".to_string(),
                    (None, h) => h.to_string(),
                };
                let qt = d["qt"].as_array().map(|a| a[0].as_str().unwrap());
                let qt = qt.unwrap_or_else(|| d["qt"].as_str().unwrap());
                let status = d["status"].as_str();
                let found = dns.iter().any(|l| {
                    // Arkime lowercases names; we keep the wire's case.
                    l.request_domain.as_deref().map(str::to_ascii_lowercase) == Some(host.clone())
                        && l.request_type.as_deref() == Some(qt)
                        && match status {
                            None => l.response_status == ResponseStatus::Timeout,
                            Some("NOERROR") => l.response_code == Some(0),
                            // Arkime spells NOTIMP (RFC 1035 "Not Implemented") as NOTIMPL.
                            Some("NOTIMPL") => l.response_code == Some(4),
                            Some(s) => l.response_exception.as_deref() == Some(s),
                        }
                });
                assert!(
                    found,
                    "{name}: no log for {host} {qt} {status:?}; logs: {:#?} {stats:?}",
                    dns.iter()
                        .map(|l| (&l.request_domain, &l.request_type, l.response_code))
                        .collect::<Vec<_>>()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

/// `dns-flags0110.pcap` holds the response before the query (its timestamps go backwards): the response
/// is an orphan and the query, never answered afterwards, a timeout; nothing is invented.
#[test]
fn dns_response_before_query_is_an_orphan() {
    let pcap = load(data!("external/arkime/pcap/dns-flags0110.pcap"));
    let (logs, stats) = support_pcap::logs_from_pcap(&pcap, &[53]);
    assert_eq!(stats.orphan_responses, 1);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request_domain.as_deref(), Some("start.ubuntu.com"));
    assert_eq!(logs[0].response_status, ResponseStatus::Timeout);
}

/// Zeek's ssl.log baselines: version, cipher, SNI and failed handshakes.
#[test]
fn tls_zeek_captures() {
    let traces = data!("external/zeek/Traces/tls/");
    let base = data!("external/zeek/Baseline/");
    let mut checked = 0;
    for (pcaps, log) in [
        (
            &["tls-conn-with-extensions"][..],
            "scripts.base.protocols.ssl.basic/ssl.log",
        ),
        (
            &["CVE-2015-3194"][..],
            "scripts.base.protocols.ssl.cve-2015-3194/ssl.log",
        ),
        (&["dhe"][..], "scripts.base.protocols.ssl.dhe/ssl.log"),
        (&["ecdhe"][..], "scripts.base.protocols.ssl.ecdhe/ssl.log"),
        (
            &["ecdsa-cert"][..],
            "scripts.base.protocols.ssl.ecdsa/ssl.log",
        ),
        (
            &["tls1.2"][..],
            "scripts.base.protocols.ssl.tls-1.2/ssl.log",
        ),
        (&["tls1_1"][..], "scripts.base.protocols.ssl.tls1_1/ssl.log"),
        (
            &["tls-1.2-handshake-failure"][..],
            "scripts.base.protocols.ssl.tls-1.2-handshake-failure/ssl.log",
        ),
        (
            &["tls13-ech"][..],
            "scripts.base.protocols.ssl.tls13-encrypted-client-hello/ssl.log",
        ),
        (
            &[
                "tls13draft16-chrome55.0.2879.0-canary-aborted",
                "tls13draft16-chrome55.0.2879.0-canary",
                "tls13draft16-ff52.a01-aborted",
                "tls13draft16-ff52.a01",
                "tls13_psk_succesfull",
                "hrr",
                "chrome-1250-tls-x25519-kyber",
            ][..],
            "scripts.base.protocols.ssl.tls13/ssl-out.log",
        ),
    ] {
        let text = std::fs::read_to_string(format!("{base}{log}")).unwrap();
        let fields: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("#fields"))
            .unwrap()
            .split('\t')
            .skip(1)
            .collect();
        let col = |row: &[&str], name: &str| -> Option<String> {
            let i = fields.iter().position(|f| *f == name)?;
            row.get(i).filter(|v| **v != "-").map(|v| v.to_string())
        };
        let mut logs = Vec::new();
        for p in pcaps {
            let bytes = load(&format!("{traces}{p}.pcap"));
            let (l, _) = support_pcap::logs_from_pcap(&bytes, &[443, 4433, 8443]);
            logs.extend(l.into_iter().filter(|l| l.l7_protocol == L7Protocol::Tls));
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let row: Vec<&str> = line.split('\t').collect();
            let port: u16 = col(&row, "id.orig_p").unwrap().parse().unwrap();
            let l = logs
                .iter()
                .find(|l| l.port_src == port)
                .unwrap_or_else(|| panic!("{log}: no log for client port {port}"));
            let version = col(&row, "version").map(|v| {
                v.trim_start_matches("TLSv")
                    .replace("10", "1.0")
                    .replace("11", "1.1")
                    .replace("12", "1.2")
                    .replace("13", "1.3")
            });
            let established = col(&row, "established").as_deref() == Some("T");
            assert_eq!(l.request_domain, col(&row, "server_name"), "{log} {port}");
            if established {
                assert_eq!(l.version, version, "{log} {port}");
                let cipher = col(&row, "cipher").unwrap();
                let result = l.response_result.clone().unwrap_or_default();
                assert!(
                    result.starts_with(&format!("cipher={cipher}")),
                    "{log} {port}: {result}"
                );
                assert_eq!(l.response_status, ResponseStatus::Ok, "{log} {port}");
            } else if let Some(alert) = col(&row, "last_alert") {
                assert_eq!(
                    l.response_exception.as_deref(),
                    Some(alert.as_str()),
                    "{log} {port}"
                );
                assert_eq!(
                    l.response_status,
                    ResponseStatus::ClientError,
                    "{log} {port}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}
