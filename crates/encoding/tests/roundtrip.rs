//! Property tests: exact round trips, dictionary sync and merge, hostile input.

use fathom_encoding::{
    DecodeError, Encoder, GlobalDictionary, QueryTranslator, SyncMode, HEADER_LEN,
};
use fathom_model::{L4Protocol, L7Protocol, RequestLog, ResponseStatus, TapSide};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::of(s).boxed()
}

prop_compose! {
    fn arb_log()(
        proto in prop_oneof![Just("http1".to_string()), Just("redis".to_string()), "[a-z]{1,8}"],
        small in (opt("[A-Z]{1,6}"), opt("[a-z.]{0,12}"), opt("/[a-z/{}]{0,16}"), opt("1\\.[01]")),
        text in (opt(".{0,40}"), opt(".{0,20}"), opt(".{0,20}"), opt("[0-9a-f]{32}"), opt("[0-9a-f]{16}"), opt("[0-9a-f]{16}"), opt(".{0,12}"), opt(".{0,12}")),
        nums in (opt(any::<u64>()), opt(any::<i64>()), opt(any::<u32>()), opt(any::<u32>()), opt(any::<u64>()), opt(any::<u64>())),
        times in (any::<u64>(), any::<u64>(), opt(any::<u64>())),
        addr in ("[0-9.:a-f]{1,20}", "[0-9.:a-f]{1,20}", any::<u16>(), any::<u16>(), any::<bool>()),
        misc in (any::<u64>(), any::<u64>(), 0u8..3, 0u8..5, opt(any::<u32>()), opt(any::<u32>()), opt("[a-z]{1,10}")),
        tags in proptest::collection::btree_map("[a-z.]{1,10}", ".{0,16}", 0..6),
    ) -> RequestLog {
        RequestLog {
            l7_protocol: L7Protocol::from_name(&proto),
            request_type: small.0, request_domain: small.1, endpoint: small.2, version: small.3,
            request_resource: text.0, response_exception: text.1, response_result: text.2, trace_id: text.3,
            span_id: text.4, parent_span_id: text.5, x_request_id_0: text.6, x_request_id_1: text.7,
            request_id: nums.0, response_code: nums.1, req_tcp_seq: nums.2, resp_tcp_seq: nums.3,
            syscall_trace_id_request: nums.4, syscall_trace_id_response: nums.5,
            start_time_us: times.0, end_time_us: times.1, response_duration_us: times.2,
            ip_src: addr.0, ip_dst: addr.1, port_src: addr.2, port_dst: addr.3,
            l4_protocol: if addr.4 { L4Protocol::Tcp } else { L4Protocol::Udp },
            captured_request_byte: misc.0, captured_response_byte: misc.1,
            tap_side: [TapSide::Network, TapSide::ClientProcess, TapSide::ServerProcess][misc.2 as usize],
            response_status: [ResponseStatus::Ok, ResponseStatus::ClientError, ResponseStatus::ServerError,
                              ResponseStatus::Timeout, ResponseStatus::Unknown][misc.3 as usize],
            process_id: misc.4, thread_id: misc.5, process_name: misc.6,
            tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Several agents, several batches each, acknowledged or not, compressed or not: the server decodes every
    /// log exactly, and its merged dictionary translates every agent's tags.
    #[test]
    fn round_trip_and_merge(
        batches in proptest::collection::vec((0u64..3, proptest::collection::vec(arb_log(), 0..12), any::<bool>(), any::<bool>()), 1..8),
    ) {
        let mut agents: Vec<Encoder> = (0..3).map(|i| Encoder::new(100 + i, SyncMode::Acknowledged)).collect();
        let mut server = GlobalDictionary::default();
        for (agent, logs, ack, compress) in batches {
            let enc = &mut agents[agent as usize];
            enc.set_zstd(compress.then_some(3));
            let (seq, bytes) = enc.encode(&logs).unwrap();
            let got = server.decode(&bytes).unwrap();
            prop_assert_eq!(got.agent_id, 100 + agent);
            prop_assert_eq!(got.seq, seq);
            prop_assert_eq!(&got.logs, &logs);
            if ack {
                enc.ack(seq);
            }
            let q = QueryTranslator::new(server.dictionary());
            for log in &logs {
                for (k, v) in &log.tags {
                    let key = q.key(k).unwrap();
                    let pred = q.eq(k, v);
                    let id = server.dictionary().lookup(key, v).unwrap();
                    prop_assert!(pred.matches(key, id));
                    prop_assert_eq!(q.name(key, id), Some(v.as_str()));
                }
            }
        }
    }

    /// Arbitrary bytes after a valid header never panic.
    #[test]
    fn hostile_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), compress: bool) {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        let (_, mut valid) = enc.encode(&[]).unwrap();
        valid.truncate(HEADER_LEN);
        valid[5] = u8::from(compress);
        valid[24..28].copy_from_slice(&(body.len() as u32).to_le_bytes());
        valid[28..32].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&valid[..32]);
        h.update(&body);
        valid[32..36].copy_from_slice(&h.finalize().to_le_bytes());
        valid.extend_from_slice(&body);
        let _ = GlobalDictionary::default().decode(&valid);
    }
}

fn sample_logs(n: usize) -> Vec<RequestLog> {
    (0..n)
        .map(|i| {
            let mut l = RequestLog::new(L7Protocol::Http1);
            l.request_type = Some("GET".into());
            l.request_resource = Some(format!("/api/users/{i}"));
            l.start_time_us = 1_700_000_000_000_000 + i as u64 * 1000;
            l.end_time_us = l.start_time_us + 250;
            l.response_duration_us = Some(250);
            l.ip_src = "10.0.0.1".into();
            l.ip_dst = "10.0.0.2".into();
            l.tags.insert("k8s.pod".into(), format!("web-{}", i % 3));
            l
        })
        .collect()
}

/// Each string crosses the wire once: after an ack, a batch of the same logs carries no dictionary entry.
#[test]
fn acknowledged_entries_are_not_resent() {
    let logs = sample_logs(10);
    let mut enc = Encoder::new(7, SyncMode::Acknowledged);
    let mut server = GlobalDictionary::default();
    let (s1, b1) = enc.encode(&logs).unwrap();
    let (_, b2) = enc.encode(&logs).unwrap(); // not acked yet: entries repeated
    assert!(server.decode(&b1).unwrap().entries > 0);
    assert_eq!(
        server.decode(&b2).unwrap().entries,
        server.decode(&b1).unwrap().entries
    );
    enc.ack(s1);
    let (_, b3) = enc.encode(&logs).unwrap();
    let d3 = server.decode(&b3).unwrap();
    assert_eq!(d3.entries, 0);
    assert_eq!(d3.logs, logs);
    // Reliable mode: entries sent once, without acks.
    let mut rel = Encoder::new(8, SyncMode::Reliable);
    assert!(
        server
            .decode(&rel.encode(&logs).unwrap().1)
            .unwrap()
            .entries
            > 0
    );
    assert_eq!(
        server
            .decode(&rel.encode(&logs).unwrap().1)
            .unwrap()
            .entries,
        0
    );
}

/// A batch whose entries the server never saw is refused with a clear error, not decoded wrongly.
#[test]
fn missing_entries_are_an_error() {
    let logs = sample_logs(3);
    let mut enc = Encoder::new(9, SyncMode::Reliable);
    let _lost = enc.encode(&logs).unwrap();
    let (_, b2) = enc.encode(&logs).unwrap();
    let err = GlobalDictionary::default().decode(&b2).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownId { .. }), "{err}");
}

/// Every truncation and every single-byte corruption of a real batch is an error, never a panic.
#[test]
fn truncations_and_corruptions_are_errors() {
    let logs = sample_logs(20);
    for compress in [None, Some(3)] {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        enc.set_zstd(compress);
        let (_, b) = enc.encode(&logs).unwrap();
        for cut in 0..b.len() {
            assert!(GlobalDictionary::default().decode(&b[..cut]).is_err());
        }
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x41;
            assert!(
                GlobalDictionary::default().decode(&bad).is_err(),
                "flip at {i} accepted"
            );
        }
    }
    let err = GlobalDictionary::default().decode(b"FATB\x09").unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}
