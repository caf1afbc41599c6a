//! Per-flow packets and frame bytes equal tshark's conversation tables on every shared capture.

mod common;

use common::*;
use fathom_capture::Config;

#[test]
fn flows_match_tshark_conversations() {
    let mut total = 0;
    let mut ok = 0;
    let mut bad = Vec::new();
    for path in captures() {
        let (ours, _, _) = our_flows(&path, Config::default());
        for l4 in ["tcp", "udp"] {
            // Exact per-stream counts from tshark fields.
            let theirs = tshark_streams(&path, l4);
            let mine: Vec<Conv> = ours
                .iter()
                .filter(|(p, _)| p == l4)
                .map(|(_, c)| c.clone())
                .collect();
            let mut want = multiset(theirs.clone());
            let mut got = multiset(mine.clone());
            for (c, n) in want.iter_mut() {
                let g = got.entry(c.clone()).or_default();
                let m = (*n).min(*g);
                *g -= m;
                total += *n;
                ok += m;
                if m < *n {
                    bad.push(format!(
                        "{} {l4}: tshark {c:?} x{n}, ours x{m}",
                        path.display()
                    ));
                }
            }
            for (c, n) in got {
                if n > 0 {
                    bad.push(format!(
                        "{} {l4}: extra flow of ours {c:?} x{n}",
                        path.display()
                    ));
                }
            }
            // The conversation table itself: frames each way (exact), bytes where tshark prints them exactly.
            for (a, b, fab, bab, fba, bba) in tshark_conv(&path, l4) {
                let found = mine.iter().any(|c| {
                    let (sa, sb) = (
                        c.get(&a).copied().unwrap_or_default(),
                        c.get(&b).copied().unwrap_or_default(),
                    );
                    sa.0 == fab
                        && sb.0 == fba
                        && bab.is_none_or(|x| x == sa.1)
                        && bba.is_none_or(|x| x == sb.1)
                });
                if !found {
                    bad.push(format!(
                        "{} conv,{l4}: {a} <-> {b} {fab}/{bab:?} {fba}/{bba:?} not found",
                        path.display()
                    ));
                }
            }
        }
    }
    for b in bad.iter().take(30) {
        eprintln!("{b}");
    }
    eprintln!("flows matching tshark: {ok}/{total}");
    assert!(bad.is_empty(), "{} mismatches", bad.len());
    assert!(total > 100);
}

#[test]
fn dev_captures_are_oriented_towards_their_servers() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir().join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for sc in manifest["scenarios"].as_array().unwrap() {
        let ports: Vec<u64> = sc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["port"].as_u64().unwrap())
            .collect();
        let path = data_dir().join(sc["pcap"].as_str().unwrap());
        let (_, ends, _) = our_flows(&path, Config::default());
        for f in ends {
            assert!(
                ports.contains(&u64::from(f.flow.port_dst)),
                "{}: {} not oriented to a server port {ports:?}",
                path.display(),
                f.flow
            );
            checked += 1;
        }
    }
    eprintln!("{checked} flows checked");
    assert!(checked > 50, "{checked}");
}
