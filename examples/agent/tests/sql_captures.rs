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

fn external(path: &str) -> PathBuf {
    data("external").join(path)
}

fn all_logs(path: &Path, proto: &str) -> Vec<Value> {
    let (logs, _) = fathom_agent::logs_from_pcap(path).expect("pcap parses");
    logs.iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .filter(|x| x["l7_protocol"].as_str() == Some(proto))
        .collect()
}

/// Rows of a Zeek TSV log (or `.cut`): each a map from column name to value.
fn zeek_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("zeek log");
    let mut fields: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if fields.is_empty() {
            // `.cut` files: the first non-comment line names the columns.
            fields = cols.iter().map(|s| s.to_string()).collect();
            continue;
        }
        rows.push(
            fields
                .iter()
                .cloned()
                .zip(cols.iter().map(|s| s.to_string()))
                .collect(),
        );
    }
    rows
}

/// Zeek's mysql.log for the same trace: every command (logins aside, which are not request logs here) with
/// the same name and argument, and the same failures.
#[test]
fn zeek_mysql_traces_match_zeek_logs() {
    let cases = [
        ("auth.pcap", "auth"),
        (
            "caching_sha2_password-after-auth-switch.pcapng",
            "caching_sha2_password-after-auth-switch",
        ),
        (
            "mysql8-navicat-login-failed.pcap",
            "caching_sha2_password-auth-switch-to-test-sha256_password",
        ),
        ("caching_sha2_password.pcap", "caching_sha2_password"),
        ("change-user-error.pcap", "change-user-error"),
        ("change-user-success.pcap", "change-user-success"),
        ("many-query-attrs.pcap", "many-query-attr"),
        ("plain-amazon-rds.pcap", "plain-aws-rds"),
        ("mysql-9.0.0-query-attributes.pcap", "query-attr-non-string"),
        ("query-attr.pcap", "query-attr"),
        ("selects_with_new_proto.pcap", "selects_with_new_proto"),
        (
            "mysql-show-engine-innodb-status-no-password.pcap",
            "show-engine-innodb-status",
        ),
        ("mysql.pcap", "wireshark"),
    ];
    for (pcap, test) in cases {
        let ours = all_logs(&external(&format!("zeek/Traces/mysql/{pcap}")), "mysql");
        let zeek = zeek_rows(&external(&format!(
            "zeek/Baseline/scripts.base.protocols.mysql.{test}/mysql.log"
        )));
        let mut want: Vec<(String, String, bool)> = zeek
            .iter()
            .filter(|r| r["cmd"] != "login")
            .map(|r| {
                let cmd = format!("COM_{}", r["cmd"].to_ascii_uppercase());
                let arg = if r["arg"] == "(empty)" || r["arg"] == "-" {
                    String::new()
                } else {
                    r["arg"].clone()
                };
                (cmd, arg, r["success"] == "F")
            })
            .collect();
        let mut got: Vec<(String, String, bool)> = ours
            .iter()
            .map(|l| {
                (
                    l["request_type"].as_str().unwrap().to_string(),
                    l["request_resource"].as_str().unwrap_or("").to_string(),
                    matches!(
                        l["response_status"].as_str(),
                        Some("client_error" | "server_error")
                    ),
                )
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{pcap}");
    }
    // TLS after the SSL request: no logs, and the flow is counted unsupported.
    assert!(all_logs(&external("zeek/Traces/mysql/encrypted.pcap"), "mysql").is_empty());
}

/// Zeek's postgresql.log for the same trace: one Query per `simple_query`, with the same error codes.
#[test]
fn zeek_postgresql_traces_match_zeek_logs() {
    let cases = [
        ("greenhouse-app.pcap", "greenhouse-app", "postgresql.log"),
        (
            "psql-aws-ssl-disable-15432.pcap",
            "psql-aws-ssl-disable-15432",
            "postgresql.cut",
        ),
        (
            "psql-aws-ssl-disable.pcap",
            "psql-aws-ssl-disable",
            "postgresql.cut",
        ),
        (
            "psql-aws-ssl-require-15432.pcap",
            "psql-aws-ssl-require-15432",
            "postgresql.cut",
        ),
        (
            "psql-aws-ssl-require.pcap",
            "psql-aws-ssl-require",
            "postgresql.cut",
        ),
        (
            "psql-create-insert-select-delete-drop.pcap",
            "psql-create-insert-select",
            "postgresql.cut",
        ),
        (
            "psql-insert-fail-drop-fail.pcap",
            "psql-insert-fail-drop-fail",
            "postgresql.cut",
        ),
        ("psql-login-fail.pcap", "psql-login-fail", "postgresql.cut"),
        (
            "psql-login-no-role.pcap",
            "psql-login-no-role",
            "postgresql.cut",
        ),
        (
            "psql-login-no-sslrequest.pcap",
            "psql-login-no-sslrequest",
            "postgresql.cut",
        ),
        ("psql-select-now.pcap", "psql-select-now", "postgresql.cut"),
    ];
    for (pcap, test, file) in cases {
        let ours = all_logs(
            &external(&format!("zeek/Traces/postgresql/{pcap}")),
            "postgresql",
        );
        let zeek = zeek_rows(&external(&format!(
            "zeek/Baseline/scripts.base.protocols.postgresql.{test}/{file}"
        )));
        let mut want: Vec<(String, String)> = zeek
            .iter()
            .filter(|r| r["frontend"] == "simple_query")
            .map(|r| {
                let code = r["backend_arg"]
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("Code="))
                    .filter(|_| r["backend"].contains("error"))
                    .unwrap_or("")
                    .to_string();
                (r["frontend_arg"].clone(), code)
            })
            .collect();
        let mut got: Vec<(String, String)> = ours
            .iter()
            .map(|l| {
                assert_eq!(l["request_type"], "Query", "{pcap}");
                let code = l["response_exception"]
                    .as_str()
                    .unwrap_or("")
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string();
                // Zeek escapes control bytes as \xNN.
                let sql: String = l["request_resource"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .map(|c| {
                        if (c as u32) < 0x20 {
                            format!("\\x{:02x}", c as u32)
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                (sql, code)
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{pcap}");
    }
    // Not PostgreSQL on port 5432: never logged as PostgreSQL.
    for pcap in [
        "http-on-port-5432.pcap",
        "bad-startup-message-1.pcap",
        "bad-backend-message-1.pcap",
    ] {
        assert!(
            all_logs(
                &external(&format!("zeek/Traces/postgresql/{pcap}")),
                "postgresql"
            )
            .is_empty(),
            "{pcap}"
        );
    }
    let mysql = all_logs(
        &external("zeek/Traces/postgresql/mysql-on-port-5432.pcap"),
        "mysql",
    );
    assert_eq!(mysql.len(), 6);
}
